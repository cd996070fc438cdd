/* Test data that needs no storage: byte i of stream `seed` is a pure function of (seed, i), so a
 * case can send 64 MiB and check what comes back at any offset without keeping a copy, and two
 * clients with different seeds can tell whose data they received. */
#ifndef ECHOBENCH_PATTERN_H
#define ECHOBENCH_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t pattern_mix(uint64_t x)
{
	/* splitmix64's finaliser: every input bit flips about half of the output bits. */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The 8 bytes of stream `seed` at offsets 8*word .. 8*word+7. */
static inline uint64_t pattern_word(uint64_t seed, uint64_t word)
{
	return pattern_mix(seed * 0x100000001b3ull ^ word);
}

/* Bytes [off, off+n) of stream `seed` into buf. */
static inline void pattern_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	while (n > 0) {
		uint64_t w = pattern_word(seed, off >> 3);
		unsigned skip = (unsigned)(off & 7);
		size_t take = 8 - skip < n ? 8 - skip : n;
		uint8_t bytes[8];

		memcpy(bytes, &w, 8);
		memcpy(buf, bytes + skip, take);
		buf += take;
		off += take;
		n -= take;
	}
}

/* FNV-1a, 64 bit: the hash the YAML blocks show for bulk transfers. */
#define FNV64_INIT 0xcbf29ce484222325ull
static inline uint64_t fnv64(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

#endif
