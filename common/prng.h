/* splitmix64: the one pseudo-random generator of echobench (payload streams, size draws, test
 * data). Chosen because it is tiny, has no bad seeds and its finaliser alone is a good hash:
 * every input bit flips about half of the output bits, so neighbouring keys give unrelated
 * output. Not for anything secret. */
#ifndef ECHOBENCH_PRNG_H
#define ECHOBENCH_PRNG_H

#include <stdint.h>

#define PRNG_GOLDEN UINT64_C(0x9e3779b97f4a7c15)

/* splitmix64's finaliser: a bijective 64-bit mix. */
static inline uint64_t prng_mix(uint64_t z)
{
	z ^= z >> 30;
	z *= UINT64_C(0xbf58476d1ce4e5b9);
	z ^= z >> 27;
	z *= UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* The next number of the sequence whose state is *s (any initial value is fine). */
static inline uint64_t prng_next(uint64_t *s)
{
	*s += PRNG_GOLDEN;
	return prng_mix(*s);
}

/* A uniform draw in [0, n) for n > 0 (bias below 2^-32 for n < 2^32: fine for size draws). */
static inline uint64_t prng_below(uint64_t *s, uint64_t n)
{
	return prng_next(s) % n;
}

#endif
