/* Deterministic payload bytes: the byte at position `offset` of connection `conn`'s stream under
 * run seed `seed` is a pure function of those three numbers. A sender fills any slice of the
 * stream and a receiver checks any slice, whatever the fragmentation on either side.
 *
 * Bytes come from 8-byte words, word k = mix(seed, conn, k) (a splitmix64-style finaliser),
 * laid out little-endian; a slice may start and end anywhere inside a word. Both functions run
 * at several GB/s and never allocate.
 *
 * For datagrams, use one `conn` per socket and the offset of the datagram's first byte in the
 * sequence of everything sent on it; for TCP, the byte offset in the stream.
 */
#ifndef ECHOBENCH_PAYLOAD_H
#define ECHOBENCH_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Writes the n stream bytes starting at `offset` into buf. */
void payload_fill(uint64_t seed, uint64_t conn, uint64_t offset, uint8_t *buf, size_t n);

/* Compares buf[0..n) with the stream bytes starting at `offset`. Returns n when all match,
 * else the index (0..n-1) of the first byte that differs. */
size_t payload_check(uint64_t seed, uint64_t conn, uint64_t offset, const uint8_t *buf,
		     size_t n);

#endif
