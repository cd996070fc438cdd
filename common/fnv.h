/* FNV-1a, 64 bit: the checksum of a result record (clients/histio_text.c), the hash the YAML
 * blocks show for bulk transfers (conformance/flow.c), and the hash of a case ID that makes each
 * case's random choices its own (conformance/run.c). Not a defence against tampering. */
#ifndef ECHOBENCH_FNV_H
#define ECHOBENCH_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV64_INIT 0xcbf29ce484222325ull

static inline uint64_t fnv64(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

#endif
