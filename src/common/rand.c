#include "common/rand.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

void rt_rand_bytes(void *out, size_t n)
{
	if (RAND_bytes(out, (int)n) != 1) {
		fprintf(stderr, "rtsync: RAND_bytes failed\n");
		abort();
	}
}

void rt_rand_uuid(char out[RT_UUID_STRLEN + 1])
{
	unsigned char b[16];
	rt_rand_bytes(b, sizeof b);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, RT_UUID_STRLEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
}

void rt_rand_base64(char *out, size_t out_cap, size_t n_bytes)
{
	unsigned char b[64];
	if (n_bytes > sizeof b || out_cap < 4 * ((n_bytes + 2) / 3) + 1)
		abort();
	rt_rand_bytes(b, n_bytes);
	EVP_EncodeBlock((unsigned char *)out, b, (int)n_bytes);
}
