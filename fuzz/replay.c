/*
 * Replays fuzz inputs without libFuzzer: linked with one fuzz target, it runs
 * LLVMFuzzerTestOneInput over every file named on the command line and every
 * regular file in every directory named (sorted by name, not recursive), so
 * the seed corpora run in the normal test suite under the sanitizers.
 *
 * Exits 0 after printing how many inputs ran; 1 when an argument is missing,
 * a directory holds no input, or a file cannot be read; 2 without arguments.
 * A failing input crashes the process, as under libFuzzer; its path is
 * printed first ("replay: failed on PATH").
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Present when built with a sanitizer: called before it ends the process. */
extern void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static const char *current; /* the input being run */

static void say_current(void)
{
	if (!current)
		return;
	static const char pre[] = "replay: failed on ";
	ssize_t rc = write(STDERR_FILENO, pre, sizeof pre - 1);
	rc = write(STDERR_FILENO, current, strlen(current));
	rc = write(STDERR_FILENO, "\n", 1);
	(void)rc;
}

static void on_fatal_signal(int sig)
{
	say_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void watch_crashes(void)
{
	/* abort() from a target's checks; sanitizers leave SIGABRT alone. */
	signal(SIGABRT, on_fatal_signal);
	if (__sanitizer_set_death_callback) {
		__sanitizer_set_death_callback(say_current);
	} else {
		/* Without a sanitizer nobody else handles these. */
		signal(SIGSEGV, on_fatal_signal);
		signal(SIGBUS, on_fatal_signal);
		signal(SIGFPE, on_fatal_signal);
		signal(SIGILL, on_fatal_signal);
	}
}

/* Runs one file. Returns 0, or -1 if it cannot be read. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? 2 * cap : 4096;
			uint8_t *p = realloc(data, cap);
			if (!p) {
				fprintf(stderr, "replay: %s: out of memory\n", path);
				free(data);
				fclose(f);
				return -1;
			}
			data = p;
		}
		size_t n = fread(data + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	int rc = ferror(f) ? -1 : 0;
	fclose(f);
	if (rc) {
		fprintf(stderr, "replay: %s: read error\n", path);
		free(data);
		return -1;
	}
	/* An exact-size copy, so that ASan sees any read past the input. */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact) {
		free(data);
		return -1;
	}
	if (len)
		memcpy(exact, data, len);
	free(data);
	current = path;
	LLVMFuzzerTestOneInput(exact, len);
	current = NULL;
	free(exact);
	return 0;
}

static int skip_entry(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Runs every regular file in dir. Returns how many ran, or -1. */
static long run_dir(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, skip_entry, alphasort);
	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	long ran = 0;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(dir) + strlen(names[i]->d_name) + 2;
		char *path = malloc(len);
		if (!path) {
			rc = -1;
			break;
		}
		snprintf(path, len, "%s/%s", dir, names[i]->d_name);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) != 0)
				rc = -1;
			else
				ran++;
		}
		free(path);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc ? -1 : ran;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	watch_crashes();
	long total = 0;
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			rc = 1;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			long n = run_dir(argv[i]);
			if (n < 0) {
				rc = 1;
			} else if (n == 0) {
				fprintf(stderr, "replay: %s: no inputs\n", argv[i]);
				rc = 1;
			} else {
				total += n;
			}
		} else if (run_file(argv[i]) != 0) {
			rc = 1;
		} else {
			total++;
		}
	}
	printf("replay: %ld inputs ran\n", total);
	return rc;
}
