/*
 * Allocation for the server: out of memory aborts loudly with the size and the
 * call site, so callers never carry an ENOMEM path the process cannot recover
 * from anyway. The client library does not use these (it returns RT_ENOMEM).
 *
 * Ownership: returned memory belongs to the caller; release it with free().
 * Threads:   thread-safe.
 * Limits:    none beyond the system allocator's.
 */
#ifndef RT_COMMON_ALLOC_H
#define RT_COMMON_ALLOC_H

#include <stddef.h>

#define rt_xmalloc(n) rt_xmalloc_at((n), __FILE__, __LINE__)
#define rt_xcalloc(c, n) rt_xcalloc_at((c), (n), __FILE__, __LINE__)
#define rt_xrealloc(p, n) rt_xrealloc_at((p), (n), __FILE__, __LINE__)
#define rt_xstrdup(s) rt_xstrndup_at((s), (size_t)-1, __FILE__, __LINE__)
#define rt_xstrndup(s, n) rt_xstrndup_at((s), (n), __FILE__, __LINE__)

void *rt_xmalloc_at(size_t n, const char *file, int line);
void *rt_xcalloc_at(size_t count, size_t n, const char *file, int line);
void *rt_xrealloc_at(void *p, size_t n, const char *file, int line);
/* Copies at most n bytes of s (stopping at a NUL) and terminates the copy. */
char *rt_xstrndup_at(const char *s, size_t n, const char *file, int line);

#endif
