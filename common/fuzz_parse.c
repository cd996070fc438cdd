/* libFuzzer target: the number, size, range, duration and K/N parsers (parse.h) on any string.
 * Every parser gets the same input. Besides crashes and sanitizer reports it checks what
 * each accepted value must satisfy: the input follows the documented grammar, the value is
 * the exact one the text denotes (computed here independently, in 128-bit integers), and
 * the value printed and parsed again is the same value. A broken property aborts, which
 * libFuzzer reports as a finding with its input. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

typedef unsigned __int128 u128;

#define MUST(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz-parse: property failed at %s:%d: %s (input '%s')\n", \
			__FILE__, __LINE__, #cond, input); \
		abort(); \
	} } while (0)

static const char *input;

static int digit(char c) { return c >= '0' && c <= '9'; }

/* The decimal number at the start of s: integer digits, then an optional '.' and fraction
 * digits. Sets *whole, *frac (fraction digits as an integer), *fdigits (how many); returns the length,
 * 0 when s does not start with one. Values are capped (*big set) rather than wrapped. */
static size_t decimal(const char *s, int need_int, u128 *whole, u128 *frac, unsigned *fdigits,
		      int *big)
{
	size_t i = 0;

	*whole = *frac = 0;
	*fdigits = 0;
	*big = 0;
	for (; digit(s[i]); i++) {
		if (*whole > (u128)UINT64_MAX * 1000000000u)
			*big = 1;
		else
			*whole = *whole * 10 + (unsigned)(s[i] - '0');
	}
	if (need_int && i == 0)
		return 0;
	if (s[i] == '.') {
		size_t j = i + 1;

		for (; digit(s[j]); j++, ++*fdigits) {
			if (*fdigits >= 30)
				*big = 1;
			else
				*frac = *frac * 10 + (unsigned)(s[j] - '0');
		}
		if (j == i + 1)   /* "1." has no fraction digits */
			return need_int ? 0 : (i ? j : 0);
		i = j;
	}
	return i;
}

static u128 pow10_(unsigned n)
{
	u128 p = 1;

	while (n--)
		p *= 10;
	return p;
}

/* Counts (base 1000) and byte sizes (base 1024). */
static void check_scaled(const char *s, uint64_t base,
			 int (*parse)(const char *, uint64_t, uint64_t *))
{
	uint64_t v, w, small = 1 << 20;
	u128 whole, frac, mult = 1;
	unsigned fd;
	int big;
	char buf[32];

	if (parse(s, UINT64_MAX, &v) < 0) {
		MUST(parse(s, small, &w) < 0);
		return;
	}
	/* Accepted: DIGITS[.DIGITS][kKmMgG], nothing else. */
	size_t n = decimal(s, 1, &whole, &frac, &fd, &big);
	MUST(n > 0 && !big);
	switch (s[n]) {
	case '\0': break;
	case 'k': case 'K': mult = base; n++; break;
	case 'm': case 'M': mult = (u128)base * base; n++; break;
	case 'g': case 'G': mult = (u128)base * base * base; n++; break;
	default: MUST(!"an accepted value has a known suffix");
	}
	MUST(s[n] == '\0');
	/* Exactly whole * mult + frac * mult / 10^fd, and that must be a whole number. */
	MUST((frac * mult) % pow10_(fd) == 0);
	MUST(whole * mult + frac * mult / pow10_(fd) == v);
	/* The same answer under a smaller maximum, when the value fits it. */
	MUST((parse(s, small, &w) == 0) == (v <= small));
	/* Printed and parsed again. */
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	MUST(parse(buf, UINT64_MAX, &w) == 0 && w == v);
}

static void check_u64(const char *s)
{
	uint64_t v, w;
	char buf[32];

	if (parse_u64(s, 0, UINT64_MAX, &v) < 0)
		return;
	MUST(strspn(s, "0123456789") == strlen(s) && *s);
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	MUST(parse_u64(buf, 0, UINT64_MAX, &w) == 0 && w == v);
	MUST(parse_u64(s, v, v, &w) == 0 && w == v);
	MUST(v == 0 || parse_u64(s, 0, v - 1, &w) < 0);
}

static void check_range(const char *s)
{
	uint64_t lo, hi, a, b;
	char buf[64];

	if (parse_bytes_range(s, UINT64_MAX, &lo, &hi) < 0)
		return;
	MUST(lo <= hi);
	const char *dash = strchr(s, '-');
	if (!dash) {
		MUST(parse_bytes(s, UINT64_MAX, &a) == 0 && a == lo && lo == hi);
	} else {
		char left[64];
		size_t l = (size_t)(dash - s);

		MUST(l < sizeof(left));
		memcpy(left, s, l);
		left[l] = '\0';
		MUST(parse_bytes(left, UINT64_MAX, &a) == 0 && a == lo);
		MUST(parse_bytes(dash + 1, UINT64_MAX, &b) == 0 && b == hi);
	}
	snprintf(buf, sizeof(buf), "%" PRIu64 "-%" PRIu64, lo, hi);
	MUST(parse_bytes_range(buf, UINT64_MAX, &a, &b) == 0 && a == lo && b == hi);
}

/* duration_format() writes what parse_duration_ns() reads back as the same value. */
static void check_duration_text(uint64_t ns)
{
	char buf[32];
	uint64_t w;

	duration_format(ns, buf, sizeof(buf));
	MUST(parse_duration_ns(buf, &w) == 0 && w == ns);
}

static void check_duration(const char *s)
{
	static const struct { const char *unit; uint64_t ns; } units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "ms", 1000000 }, { "s", 1000000000 },
		{ "m", 60000000000u }, { "h", 3600000000000u }, { "", 1000000000 },
	};
	u128 whole, frac, exact, p;
	uint64_t v;
	unsigned fd, u;
	int big, ok = parse_duration_ns(s, &v) == 0;
	size_t n = decimal(s, 0, &whole, &frac, &fd, &big);

	for (u = 0; n && u < sizeof(units) / sizeof(units[0]); u++)
		if (strcmp(s + n, units[u].unit) == 0)
			break;
	if (!n || u == sizeof(units) / sizeof(units[0])) {
		/* Not DIGITS[.DIGITS]UNIT: must be refused. */
		MUST(!ok);
		return;
	}
	if (fd > 18) {   /* parse.h: at most 18 fraction digits */
		MUST(!ok);
		return;
	}
	if (big) {
		if (ok)
			MUST(v <= UINT64_C(1000000000000000000));
		return;
	}
	/* The exact value, rounded to the nearest nanosecond (halves up). */
	p = pow10_(fd);
	exact = whole * units[u].ns + (frac * units[u].ns + p / 2) / p;
	if (exact > UINT64_C(1000000000000000000)) {
		MUST(!ok);
		return;
	}
	MUST(ok);
	MUST(v == exact);
	check_duration_text(v);
}

static void check_k_of_n(const char *s)
{
	uint64_t k, n, a, b;
	char buf[48];
	const char *slash = strchr(s, '/');

	if (parse_k_of_n(s, UINT64_MAX, &k, &n) < 0) {
		MUST(parse_k_of_n(s, 1000000, &k, &n) < 0);
		return;
	}
	/* Accepted: DIGITS/DIGITS, each half what parse_u64 reads, K < N. */
	MUST(slash && strspn(s, "0123456789") == (size_t)(slash - s) && slash > s);
	MUST(parse_u64(slash + 1, 0, UINT64_MAX, &b) == 0 && b == n);
	snprintf(buf, sizeof(buf), "%.*s", (int)(slash - s), s);
	MUST(parse_u64(buf, 0, UINT64_MAX, &a) == 0 && a == k);
	MUST(k < n);
	MUST((parse_k_of_n(s, 1000000, &a, &b) == 0) == (n <= 1000000));
	snprintf(buf, sizeof(buf), "%" PRIu64 "/%" PRIu64, k, n);
	MUST(parse_k_of_n(buf, UINT64_MAX, &a, &b) == 0 && a == k && b == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[256];

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	input = s;
	check_u64(s);
	check_scaled(s, 1000, parse_count);
	check_scaled(s, 1024, parse_bytes);
	check_range(s);
	check_duration(s);
	check_k_of_n(s);
	if (size >= 8) {   /* any duration up to the limit, as raw bytes */
		uint64_t ns;

		memcpy(&ns, data, sizeof(ns));
		check_duration_text(ns % (UINT64_C(1000000000000000000) + 1));
	}
	return 0;
}
