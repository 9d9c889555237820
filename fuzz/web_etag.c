/*
 * Fuzz target: If-None-Match values (rt_web_etag_matches, src/web/web.h).
 *
 * Checked: it never reads past the value; the tag alone and "*" match; a
 * trailing ", " changes no answer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/web.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *inm = malloc(size + 1);
	memcpy(inm, data, size);
	inm[size] = 0;
	static const char etag[] = "\"0123456789abcdef0123\"";
	bool m = rt_web_etag_matches(inm, etag);
	/* a list that is exactly the tag matches */
	if (!strcmp(inm, etag))
		CHECK(m);
	/* the same list with a trailing ", " answers the same */
	char *more = malloc(size + 3);
	memcpy(more, inm, strlen(inm));
	memcpy(more + strlen(inm), ", ", 3);
	CHECK(rt_web_etag_matches(more, etag) == m);
	CHECK(rt_web_etag_matches("*", etag));
	free(more);
	free(inm);
	return 0;
}
