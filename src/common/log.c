#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum rt_log_level g_level = RT_LOG_INFO;
static bool g_is_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int rt_log_level_parse(const char *s)
{
	if (!strcasecmp(s, "debug"))
		return RT_LOG_DEBUG;
	if (!strcasecmp(s, "info"))
		return RT_LOG_INFO;
	if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning"))
		return RT_LOG_WARN;
	if (!strcasecmp(s, "error"))
		return RT_LOG_ERROR;
	return -1;
}

void rt_log_setup(enum rt_log_level level, bool is_json)
{
	g_level = level;
	g_is_json = is_json;
}

bool rt_log_enabled(enum rt_log_level level)
{
	return level >= g_level;
}

/* Appends s to out as the body of a JSON string (without quotes). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	for (; *s && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	return n;
}

void rt_log(enum rt_log_level level, const char *fmt, ...)
{
	if (!rt_log_enabled(level))
		return;
	char msg[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

	char line[4096];
	size_t n;
	if (g_is_json) {
		n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", when,
				     level_names[level]);
		n += json_escape(line + n, sizeof line - n - 4, msg);
		n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
	} else {
		int w = snprintf(line, sizeof line, "%s %-5s %s\n", when, level_names[level], msg);
		n = w < 0 ? 0 : (size_t)w;
		if (n >= sizeof line) {
			n = sizeof line;
			line[n - 1] = '\n';
		}
	}
	ssize_t rc = write(STDERR_FILENO, line, n);
	(void)rc;
}
