/* Payload generation and checking: any fragmentation gives the same bytes, every damaged byte is
 * found at its index, streams of other connections and seeds differ. Prints the speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clock.h"
#include "payload.h"

#define LEN 4096

static uint64_t state = 7;

static uint64_t rnd(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static void test_fragments(void)
{
	static uint8_t whole[LEN], parts[LEN];

	for (uint64_t base = 0; base < 64; base += 7) {
		payload_fill(3, 11, base, whole, LEN);
		CHECK_EQ(payload_check(3, 11, base, whole, LEN), LEN);
		/* Filled in random pieces (any start inside a word): identical. */
		for (size_t at = 0; at < LEN;) {
			size_t n = 1 + rnd() % 37;
			if (n > LEN - at)
				n = LEN - at;
			payload_fill(3, 11, base + at, parts + at, n);
			at += n;
		}
		CHECK(memcmp(whole, parts, LEN) == 0);
		/* Checked in random pieces: every piece matches. */
		for (size_t at = 0; at < LEN;) {
			size_t n = 1 + rnd() % 53;
			if (n > LEN - at)
				n = LEN - at;
			CHECK_EQ(payload_check(3, 11, base + at, whole + at, n), n);
			at += n;
		}
	}
}

static void test_damage(void)
{
	static uint8_t buf[LEN];

	/* A flipped byte anywhere (word heads, middles, tails) is reported at its index. */
	for (uint64_t off = 0; off < 16; off++) {
		for (size_t j = 0; j < 300; j++) {
			payload_fill(9, 2, off, buf, 300);
			buf[j] ^= 0x40;
			CHECK_EQ(payload_check(9, 2, off, buf, 300), j);
		}
	}
	/* A slice checked at the wrong offset (a lost or duplicated byte) fails at once. */
	payload_fill(9, 2, 1000, buf, 256);
	CHECK(payload_check(9, 2, 1001, buf, 256) < 16);
	CHECK(payload_check(9, 2, 999, buf, 256) < 16);
	/* Zero bytes always match. */
	CHECK_EQ(payload_check(9, 2, 5, buf, 0), 0);
}

static void test_streams_differ(void)
{
	static uint8_t a[256], b[256];

	payload_fill(1, 0, 0, a, sizeof(a));
	payload_fill(1, 1, 0, b, sizeof(b));
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK(payload_check(1, 1, 0, a, sizeof(a)) < 8);
	payload_fill(2, 0, 0, b, sizeof(b));
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	/* Deterministic: the same triple, the same bytes. */
	payload_fill(1, 0, 0, b, sizeof(b));
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	/* Not trivially periodic: words differ from each other. */
	CHECK(memcmp(a, a + 8, 8) != 0);
	/* All 256 byte values turn up in a modest stream (servers must pass every value). */
	{
		static uint8_t big[1 << 16];
		int seen[256] = { 0 }, distinct = 0;

		payload_fill(5, 5, 0, big, sizeof(big));
		for (size_t i = 0; i < sizeof(big); i++)
			distinct += !seen[big[i]]++;
		CHECK_EQ(distinct, 256);
	}
}

static void report_speed(void)
{
	enum { SZ = 1 << 20, ROUNDS = 256 };
	uint8_t *buf = malloc(SZ);
	uint64_t t0, t1, t2;
	size_t ok = 0;

	CHECK(buf);
	t0 = now_ns();
	for (int r = 0; r < ROUNDS; r++)
		payload_fill(1, (uint64_t)r, 0, buf, SZ);
	t1 = now_ns();
	for (int r = 0; r < ROUNDS; r++)
		ok += payload_check(1, ROUNDS - 1, 0, buf, SZ) == SZ;
	t2 = now_ns();
	CHECK_EQ(ok, ROUNDS);
	printf("payload_fill %.2f GB/s, payload_check %.2f GB/s\n",
	       (double)SZ * ROUNDS / (double)(t1 - t0), (double)SZ * ROUNDS / (double)(t2 - t1));
	free(buf);
}

int main(void)
{
	test_fragments();
	test_damage();
	test_streams_differ();
	report_speed();
	puts("payload: ok");
	return 0;
}
