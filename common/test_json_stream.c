/* Unit test of the shared JSON string writer and the deterministic stream. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "prng.h"
#include "stream.h"

static void check_json(const char *in, const char *want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CHECK(f);
	json_write_string(f, in);
	CHECK(fclose(f) == 0);
	if (strcmp(buf, want) != 0) {
		fprintf(stderr, "json_write_string: got %s want %s\n", buf, want);
		exit(1);
	}
	free(buf);
}

int main(void)
{
	check_json("plain", "\"plain\"");
	check_json("a\"b\\c", "\"a\\\"b\\\\c\"");
	check_json("l1\nl2\r\t", "\"l1\\nl2\\r\\t\"");
	check_json("\x01\x1f", "\"\\u0001\\u001f\"");
	check_json("\x7f", "\"\x7f\"");
	check_json(NULL, "null");

	/* Any slice of a stream equals the same slice of a whole fill, at every alignment. */
	uint8_t whole[256], part[256];

	stream_fill(7, 3, 0, whole, sizeof whole);
	for (size_t off = 0; off < 40; off++)
		for (size_t n = 0; n + off <= 64; n += 5) {
			stream_fill(7, 3, off, part, n);
			CHECK(memcmp(part, whole + off, n) == 0);
			CHECK_EQ(stream_check(7, 3, off, whole + off, n), n);
		}
	/* A flipped byte is found at its index; another key or seed does not match. */
	memcpy(part, whole, 100);
	part[37] ^= 1;
	CHECK_EQ(stream_check(7, 3, 0, part, 100), 37);
	CHECK(stream_check(7, 4, 0, whole, 64) < 64);
	CHECK(stream_check(8, 3, 0, whole, 64) < 64);

	/* prng_below stays in range and reaches both ends. */
	uint64_t s = 1;
	int seen_lo = 0, seen_hi = 0;

	for (int i = 0; i < 10000; i++) {
		uint64_t v = prng_below(&s, 10);
		CHECK(v < 10);
		seen_lo |= v == 0;
		seen_hi |= v == 9;
	}
	CHECK(seen_lo && seen_hi);
	return 0;
}
