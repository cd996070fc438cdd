/* Number, size and duration option values for every echobench program's command line: parsed
 * as common/parse.h reads them, and a bad one ends the program as a usage error (exit 2) with
 * one line naming the option, the value and what was expected:
 * "PROGRAM: bad --threads 'abc': expected a whole number from 1 to 256". */
#ifndef ECHOBENCH_OPT_H
#define ECHOBENCH_OPT_H

#include <stdint.h>

/* Whole number in [min, max], no suffix (parse_u64). */
uint64_t opt_whole(const char *opt, const char *s, uint64_t min, uint64_t max);

/* Count in [min, max] with optional suffix k, M, G (x1000; parse_count). */
uint64_t opt_count(const char *opt, const char *s, uint64_t min, uint64_t max);

/* Byte size in [min, max] with optional suffix k, M, G (x1024; parse_bytes). */
uint64_t opt_bytes(const char *opt, const char *s, uint64_t min, uint64_t max);

/* Duration in nanoseconds in [min_ns, max_ns] (parse_duration_ns). */
uint64_t opt_duration_ns(const char *opt, const char *s, uint64_t min_ns, uint64_t max_ns);

#endif
