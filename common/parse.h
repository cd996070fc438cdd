/* Number, size and duration arguments, parsed the same way by every echobench tool.
 * Each returns 0 or -EINVAL (nothing written to *out on error) and never prints: the caller
 * names the option in its one-line message. */
#ifndef ECHOBENCH_PARSE_H
#define ECHOBENCH_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Whole number in [min, max]; no suffix. "12" */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Count with optional decimal suffix k/M/G (x1000): "10k" = 10000. wrk's convention. A
 * fraction of at most 18 digits may come before the suffix when the result is whole ("1.5k"). */
int parse_count(const char *s, uint64_t max, uint64_t *out);

/* Byte size with optional binary suffix k/K, m/M, g/G (x1024): "64k" = 65536. */
int parse_bytes(const char *s, uint64_t max, uint64_t *out);

/* Byte size or range "LO-HI" (inclusive, LO <= HI), each part as parse_bytes. A single value
 * gives lo == hi. */
int parse_bytes_range(const char *s, uint64_t max, uint64_t *lo, uint64_t *hi);

/* Duration in nanoseconds, at most 1e18 (about 31 years): a number with suffix ns, us, ms, s, m
 * or h; a bare number is seconds. "500ms", "10s", "2m". Fractions of at most 18 digits are
 * allowed ("1.5s", ".5s") and rounded to the nearest nanosecond (halves up); the value is
 * exact (no floating point). */
int parse_duration_ns(const char *s, uint64_t *out);

/* "K/N": two whole numbers with 0 <= K < N <= max_n ("1/4"). */
int parse_k_of_n(const char *s, uint64_t max_n, uint64_t *k, uint64_t *n);

/* A duration as a person writes it and parse_duration_ns() reads it back: the largest unit
 * that divides it ("24h", "90s", "1500us"; 0 is "0"). Returns buf. */
const char *duration_format(uint64_t ns, char *buf, size_t len);

#endif
