#include "payload.h"

#include <string.h>

/* splitmix64's finaliser: every input bit flips about half the output bits, so neighbouring
 * words, connections and seeds give unrelated bytes (a shifted or swapped slice is caught). */
static inline uint64_t mix(uint64_t z)
{
	z ^= z >> 30;
	z *= UINT64_C(0xbf58476d1ce4e5b9);
	z ^= z >> 27;
	z *= UINT64_C(0x94d049bb133111eb);
	z ^= z >> 31;
	return z;
}

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

static inline uint64_t stream_key(uint64_t seed, uint64_t conn)
{
	return mix(seed ^ mix(conn * GOLDEN + 1));
}

/* Word k of the stream as it is laid out in memory (little-endian byte order on every host). */
static inline uint64_t word(uint64_t key, uint64_t k)
{
	uint64_t w = mix(key + k * GOLDEN);

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

void payload_fill(uint64_t seed, uint64_t conn, uint64_t offset, uint8_t *buf, size_t n)
{
	uint64_t key = stream_key(seed, conn);
	uint64_t k = offset / 8;
	unsigned head = (unsigned)(offset % 8);
	size_t i = 0;

	if (head) {
		uint64_t w = word(key, k++);
		for (; head < 8 && i < n; head++)
			buf[i++] = byte_of(w, head);
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w = word(key, k++);
		memcpy(buf + i, &w, 8);
	}
	if (i < n) {
		uint64_t w = word(key, k);
		for (unsigned j = 0; i < n; j++)
			buf[i++] = byte_of(w, j);
	}
}

size_t payload_check(uint64_t seed, uint64_t conn, uint64_t offset, const uint8_t *buf, size_t n)
{
	uint64_t key = stream_key(seed, conn);
	uint64_t k = offset / 8;
	unsigned head = (unsigned)(offset % 8);
	size_t i = 0;

	if (head) {
		uint64_t w = word(key, k++);
		for (; head < 8 && i < n; head++, i++)
			if (buf[i] != byte_of(w, head))
				return i;
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w = word(key, k++), got;
		memcpy(&got, buf + i, 8);
		if (got != w) {
			for (unsigned j = 0; j < 8; j++)
				if (buf[i + j] != byte_of(w, j))
					return i + j;
		}
	}
	if (i < n) {
		uint64_t w = word(key, k);
		for (unsigned j = 0; i < n; j++, i++)
			if (buf[i] != byte_of(w, j))
				return i;
	}
	return n;
}
