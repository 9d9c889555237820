#include "common/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_oom(size_t n, const char *file, int line)
{
	fprintf(stderr, "rtsync: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
	abort();
}

void *rt_xmalloc_at(size_t n, const char *file, int line)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die_oom(n, file, line);
	return p;
}

void *rt_xcalloc_at(size_t count, size_t n, const char *file, int line)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		die_oom(count * n, file, line);
	return p;
}

void *rt_xrealloc_at(void *p, size_t n, const char *file, int line)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die_oom(n, file, line);
	return q;
}

char *rt_xstrndup_at(const char *s, size_t n, const char *file, int line)
{
	size_t len = strnlen(s, n);
	char *p = rt_xmalloc_at(len + 1, file, line);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}
