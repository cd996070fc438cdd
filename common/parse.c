#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
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
			if (scale >= UINT64_C(100000000000000000))  /* 18 fraction digits at most */
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

int parse_duration_ns(const char *s, uint64_t *out)
{
	static const struct { const char *suffix; double ns; } units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 }, { "m", 60e9 },
		{ "h", 3600e9 }, { "", 1e9 },
	};
	char *end;
	double v;

	/* Plain decimal only: strtod would also take hex ("0x10") and exponents ("1e3"). */
	size_t digits = strspn(s, "0123456789.");
	if (digits == 0 || strchr(s, 'x') || strchr(s, 'X') ||
	    ((s[digits] == 'e' || s[digits] == 'E') && isdigit((unsigned char)s[digits + 1])))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || !isfinite(v) || v < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			double ns = v * units[i].ns;
			if (ns > 1e18)
				return -EINVAL;
			*out = (uint64_t)(ns + 0.5);
			return 0;
		}
	}
	return -EINVAL;
}
