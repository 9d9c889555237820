/*
 * Randomness from OpenSSL's CSPRNG: raw bytes, UUID v4 strings, and short
 * base64 tokens (presence phx_ref values, generated secrets).
 *
 * Ownership: callers pass the output buffers.
 * Threads:   thread-safe.
 * Limits:    aborts if the CSPRNG fails (it never should once seeded).
 */
#ifndef RT_COMMON_RAND_H
#define RT_COMMON_RAND_H

#include <stddef.h>

#define RT_UUID_STRLEN 36

void rt_rand_bytes(void *out, size_t n);
/* Writes a lowercase UUID v4 and a NUL: out must hold RT_UUID_STRLEN + 1 bytes. */
void rt_rand_uuid(char out[RT_UUID_STRLEN + 1]);
/* Writes the standard base64 of n_bytes random bytes plus a NUL; out_cap must be
 * at least 4 * ((n_bytes + 2) / 3) + 1. */
void rt_rand_base64(char *out, size_t out_cap, size_t n_bytes);

#endif
