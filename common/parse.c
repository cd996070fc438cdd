#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Leading digits of s as an unsigned number; *end is what follows. Rejects signs and blanks,
 * which strtoull would silently accept ("-1" would wrap to 2^64-1). */
static int leading_u64(const char *s, uint64_t *v, char **end)
{
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno ? -EINVAL : 0;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;
	char *end;

	if (leading_u64(s, &v, &end) < 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* A number with an optional fraction and suffix: "10k", "1.5k", "0.5M". The result must be a whole
 * number ("1.5k" counts 1500; "1.5" alone, or "1.0001k", is rejected rather than rounded). */
static int scaled(const char *s, uint64_t base, uint64_t max, uint64_t *out)
{
	uint64_t v, mult = 1, frac = 0, scale = 1;
	char *end;

	if (leading_u64(s, &v, &end) < 0)
		return -EINVAL;
	if (*end == '.') {
		end++;
		if (!isdigit((unsigned char)*end))
			return -EINVAL;
		for (; isdigit((unsigned char)*end); end++) {
			if (scale == UINT64_C(1000000000000000000))  /* 18 fraction digits at most */
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*end - '0');
			scale *= 10;
		}
	}
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = base; end++; break;
	case 'm': case 'M': mult = base * base; end++; break;
	case 'g': case 'G': mult = base * base * base; end++; break;
	default: return -EINVAL;
	}
	if (*end != '\0' || (v && mult > UINT64_MAX / v) || v * mult > max)
		return -EINVAL;
	if (frac) {
		/* frac / scale * mult must be whole; mult <= 2^30 and frac < 10^18 would overflow in
		 * a plain product, so divide first by what scale and mult share. */
		uint64_t a = scale, b = mult;
		while (b) {
			uint64_t t = a % b;
			a = b;
			b = t;
		}
		uint64_t s2 = scale / a, m2 = mult / a;
		if (frac % s2 != 0)
			return -EINVAL;
		uint64_t add = frac / s2;
		if (m2 && add > UINT64_MAX / m2)
			return -EINVAL;
		add *= m2;
		if (add > max - v * mult)
			return -EINVAL;
		*out = v * mult + add;
		return 0;
	}
	*out = v * mult;
	return 0;
}

int parse_count(const char *s, uint64_t max, uint64_t *out)
{
	return scaled(s, 1000, max, out);
}

int parse_bytes(const char *s, uint64_t max, uint64_t *out)
{
	return scaled(s, 1024, max, out);
}

int parse_bytes_range(const char *s, uint64_t max, uint64_t *lo, uint64_t *hi)
{
	const char *dash = strchr(s, '-');
	char first[64];
	uint64_t a, b;

	if (!dash) {
		if (parse_bytes(s, max, &a) < 0)
			return -EINVAL;
		*lo = *hi = a;
		return 0;
	}
	if ((size_t)(dash - s) >= sizeof(first))
		return -EINVAL;
	memcpy(first, s, (size_t)(dash - s));
	first[dash - s] = '\0';
	if (parse_bytes(first, max, &a) < 0 || parse_bytes(dash + 1, max, &b) < 0 || a > b)
		return -EINVAL;
	*lo = a;
	*hi = b;
	return 0;
}

/* Exact, in integers (a double loses nanoseconds above 2^53 ns, about 104 days, and rounds
 * some fractions the wrong way): DIGITS[.DIGITS] or .DIGITS, then a unit. */
int parse_duration_ns(const char *s, uint64_t *out)
{
	static const struct { const char *suffix; uint64_t ns; } units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "ms", 1000000 }, { "s", 1000000000 },
		{ "m", UINT64_C(60000000000) }, { "h", UINT64_C(3600000000000) },
		{ "", 1000000000 },
	};
	const uint64_t limit = UINT64_C(1000000000000000000);   /* 1e18 ns, about 31 years */
	uint64_t whole = 0, frac = 0, scale = 1, unit = 0;
	size_t i = 0, digits = 0;

	for (; isdigit((unsigned char)s[i]); i++, digits++) {
		if (whole > limit)   /* already too long: keep reading, refuse below */
			continue;
		whole = whole * 10 + (uint64_t)(s[i] - '0');
	}
	if (s[i] == '.') {
		for (i++; isdigit((unsigned char)s[i]); i++, digits++) {
			if (scale == limit)   /* 18 fraction digits at most */
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(s[i] - '0');
			scale *= 10;
		}
	}
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]) && !unit; u++)
		if (strcmp(s + i, units[u].suffix) == 0)
			unit = units[u].ns;
	if (!digits || !unit || whole > limit / unit)
		return -EINVAL;
	/* frac / scale of a unit, rounded to the nearest ns (halves up). Divided first by what
	 * scale and unit share, frac * unit stays below lcm(scale, unit) <= 9e18: no overflow. */
	uint64_t a = scale, b = unit;
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	uint64_t num = frac * (unit / a), den = scale / a;
	uint64_t ns = whole * unit + num / den + (2 * (num % den) >= den);
	if (ns > limit)
		return -EINVAL;
	*out = ns;
	return 0;
}

/* Each half through parse_u64: sscanf's %llu would take blanks, signs and a wrapped "-1". */
int parse_k_of_n(const char *s, uint64_t max_n, uint64_t *k, uint64_t *n)
{
	const char *slash = strchr(s, '/');
	char first[24];
	uint64_t a, b;

	if (!slash || (size_t)(slash - s) >= sizeof(first))
		return -EINVAL;
	memcpy(first, s, (size_t)(slash - s));
	first[slash - s] = '\0';
	if (parse_u64(slash + 1, 1, max_n, &b) < 0 || parse_u64(first, 0, b - 1, &a) < 0)
		return -EINVAL;
	*k = a;
	*n = b;
	return 0;
}

const char *duration_format(uint64_t ns, char *buf, size_t len)
{
	static const struct { const char *unit; uint64_t ns; } units[] = {
		{ "h", UINT64_C(3600000000000) }, { "m", UINT64_C(60000000000) },
		{ "s", 1000000000 }, { "ms", 1000000 }, { "us", 1000 }, { "ns", 1 },
	};
	size_t i = 0;

	while (ns && ns % units[i].ns)
		i++;
	snprintf(buf, len, "%" PRIu64 "%s", ns / units[i].ns, ns ? units[i].unit : "");
	return buf;
}
