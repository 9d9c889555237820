/*
 * Process-wide logging to stderr, as text lines or one JSON object per line.
 * A line is written with a single write(2), so lines from several threads
 * never interleave.
 *
 * Ownership: nothing is retained; messages are formatted on the stack.
 * Threads:   rt_log() is thread-safe; rt_log_setup() is called once at start.
 * Limits:    a line is cut at 4 KiB.
 */
#ifndef RT_COMMON_LOG_H
#define RT_COMMON_LOG_H

#include <stdbool.h>

enum rt_log_level { RT_LOG_DEBUG, RT_LOG_INFO, RT_LOG_WARN, RT_LOG_ERROR };

/* Parses "debug", "info", "warn"/"warning", "error"; returns -1 for anything else. */
int rt_log_level_parse(const char *s);

/* Sets the threshold and format (is_json: one JSON object per line). */
void rt_log_setup(enum rt_log_level level, bool is_json);

bool rt_log_enabled(enum rt_log_level level);

/* Logs one line when level passes the threshold. */
void rt_log(enum rt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rt_debug(...)                                                                    \
	do {                                                                             \
		if (rt_log_enabled(RT_LOG_DEBUG))                                        \
			rt_log(RT_LOG_DEBUG, __VA_ARGS__);                               \
	} while (0)
#define rt_info(...) rt_log(RT_LOG_INFO, __VA_ARGS__)
#define rt_warn(...) rt_log(RT_LOG_WARN, __VA_ARGS__)
#define rt_error(...) rt_log(RT_LOG_ERROR, __VA_ARGS__)

#endif
