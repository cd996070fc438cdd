#include "stream.h"

#include <string.h>

#include "prng.h"

static inline uint64_t stream_key(uint64_t seed, uint64_t key)
{
	return prng_mix(seed ^ prng_mix(key * PRNG_GOLDEN + 1));
}

/* Word k of the stream as it is laid out in memory (little-endian byte order on every host). */
static inline uint64_t word(uint64_t skey, uint64_t k)
{
	uint64_t w = prng_mix(skey + k * PRNG_GOLDEN);

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}

static inline uint8_t byte_of(uint64_t w, unsigned i)
{
	uint8_t b[8];

	memcpy(b, &w, 8);
	return b[i];
}

void stream_fill(uint64_t seed, uint64_t key, uint64_t offset, uint8_t *buf, size_t n)
{
	uint64_t skey = stream_key(seed, key);
	uint64_t k = offset / 8;
	unsigned head = (unsigned)(offset % 8);
	size_t i = 0;

	if (head) {
		uint64_t w = word(skey, k++);
		for (; head < 8 && i < n; head++)
			buf[i++] = byte_of(w, head);
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w = word(skey, k++);
		memcpy(buf + i, &w, 8);
	}
	if (i < n) {
		uint64_t w = word(skey, k);
		for (unsigned j = 0; i < n; j++)
			buf[i++] = byte_of(w, j);
	}
}

size_t stream_check(uint64_t seed, uint64_t key, uint64_t offset, const uint8_t *buf, size_t n)
{
	uint64_t skey = stream_key(seed, key);
	uint64_t k = offset / 8;
	unsigned head = (unsigned)(offset % 8);
	size_t i = 0;

	if (head) {
		uint64_t w = word(skey, k++);
		for (; head < 8 && i < n; head++, i++)
			if (buf[i] != byte_of(w, head))
				return i;
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w = word(skey, k++), got;
		memcpy(&got, buf + i, 8);
		if (got != w) {
			for (unsigned j = 0; j < 8; j++)
				if (buf[i + j] != byte_of(w, j))
					return i + j;
		}
	}
	if (i < n) {
		uint64_t w = word(skey, k);
		for (unsigned j = 0; i < n; j++, i++)
			if (buf[i] != byte_of(w, j))
				return i;
	}
	return n;
}
