#include "opt.h"

#include <inttypes.h>
#include <stdio.h>

#include "die.h"
#include "parse.h"

static void __attribute__((noreturn)) bad(const char *opt, const char *s, const char *what, uint64_t min, uint64_t max,
		const char *suffix)
{
	if (min == 0 && max == UINT64_MAX)
		die(EXIT_USAGE, "bad %s '%s': expected %s%s", opt, s, what, suffix);
	die(EXIT_USAGE, "bad %s '%s': expected %s from %" PRIu64 " to %" PRIu64 "%s", opt, s, what,
	    min, max, suffix);
}

uint64_t opt_whole(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_u64(s, min, max, &v) < 0)
		bad(opt, s, "a whole number", min, max, "");
	return v;
}

uint64_t opt_count(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_count(s, max, &v) < 0 || v < min)
		bad(opt, s, "a count", min, max, " (suffix k, M)");
	return v;
}

uint64_t opt_bytes(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_bytes(s, max, &v) < 0 || v < min)
		bad(opt, s, "a byte size", min, max, " (suffix k, M, G)");
	return v;
}

uint64_t opt_duration_ns(const char *opt, const char *s, uint64_t min_ns, uint64_t max_ns)
{
	char lo[32], hi[32], range[80] = "";
	uint64_t v;

	if (parse_duration_ns(s, &v) == 0 && v >= min_ns && v <= max_ns)
		return v;
	duration_format(min_ns, lo, sizeof(lo));
	duration_format(max_ns, hi, sizeof(hi));
	if (max_ns == UINT64_MAX) {
		if (min_ns)
			snprintf(range, sizeof(range), " (at least %s)", lo);
	} else if (min_ns <= 1)
		snprintf(range, sizeof(range), " (%sat most %s)", min_ns ? "above 0, " : "", hi);
	else
		snprintf(range, sizeof(range), " (from %s to %s)", lo, hi);
	die(EXIT_USAGE, "bad %s '%s': expected a duration such as 500ms, 10s or 2m%s", opt, s,
	    range);
}
