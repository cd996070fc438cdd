/* Deterministic test bytes: byte `offset` of stream (seed, key) is a pure function of those three
 * numbers, so a sender fills any slice and a receiver checks any slice without keeping a copy,
 * whatever the fragmentation on either side, and two streams with different keys (connections,
 * clients) are told apart. Used by echo-load (key = connection), echo-conform (key = client) and
 * the tests.
 *
 * Bytes come from 8-byte words, word k = prng_mix(stream key + k * golden), laid out
 * little-endian on every host; a slice may start and end anywhere inside a word. Both functions
 * run at several GB/s and never allocate. */
#ifndef ECHOBENCH_STREAM_H
#define ECHOBENCH_STREAM_H

#include <stddef.h>
#include <stdint.h>

/* Writes the n bytes of stream (seed, key) starting at `offset` into buf. */
void stream_fill(uint64_t seed, uint64_t key, uint64_t offset, uint8_t *buf, size_t n);

/* Compares buf[0..n) with the bytes of stream (seed, key) starting at `offset`. Returns n when
 * all match, else the index (0..n-1) of the first byte that differs. */
size_t stream_check(uint64_t seed, uint64_t key, uint64_t offset, const uint8_t *buf, size_t n);

#endif
