/*
 * Helpers shared by the unit tests: a deterministic random sequence
 * (xorshift64*) for feeding parsers input in random chunks that replay the
 * same way on every run.
 */
#ifndef RT_TESTS_TESTUTIL_H
#define RT_TESTS_TESTUTIL_H

#include <stdint.h>

static uint64_t rng_state;

static inline void rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 1;
}

static inline uint32_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * UINT64_C(2685821657736338717)) >> 32);
}

#endif
