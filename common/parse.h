/* Number, size and duration arguments, parsed the same way by every echobench tool.
 * Each returns 0 or -EINVAL (nothing written to *out on error) and never prints: the caller
 * names the option in its one-line message. */
#ifndef ECHOBENCH_PARSE_H
#define ECHOBENCH_PARSE_H

#include <stdint.h>

/* Whole number in [min, max]; no suffix. "12" */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Count with optional decimal suffix k/M/G (x1000): "10k" = 10000. wrk's convention. */
int parse_count(const char *s, uint64_t max, uint64_t *out);

/* Byte size with optional binary suffix k/K, m/M, g/G (x1024): "64k" = 65536. */
int parse_bytes(const char *s, uint64_t max, uint64_t *out);

/* Byte size or range "LO-HI" (inclusive, LO <= HI), each part as parse_bytes. A single value
 * gives lo == hi. */
int parse_bytes_range(const char *s, uint64_t max, uint64_t *lo, uint64_t *hi);

/* Duration in nanoseconds: a number with suffix ns, us, ms, s, m or h; a bare number is seconds.
 * Fractions are allowed ("1.5s"). "500ms", "10s", "2m". */
int parse_duration_ns(const char *s, uint64_t *out);

#endif
