/* The open loop's early-wake margin (pacing.h): buckets that err early, the margin covering
 * the high quantile of what was measured, following a machine that changes, and its bounds. */
#include "check.h"
#include "pacing.h"
#include "prng.h"

#define US UINT64_C(1000)

static void test_buckets(void)
{
	/* Every lateness lies in its bucket, and the bucket's top is at most 25 % above it. */
	for (uint64_t v = 0; v < (UINT64_C(1) << 26); v = v * 9 / 8 + 1) {
		unsigned b = pacing_bucket(v);

		CHECK(b < PACING_BUCKETS);
		CHECK(pacing_bucket_high(b) >= v);
		if (v >= 1024 && b < PACING_BUCKETS - 1)
			CHECK(pacing_bucket_high(b) <= v + v / 4);
		if (b > 0)
			CHECK(pacing_bucket_high(b - 1) < v);
	}
	CHECK_EQ(pacing_bucket(0), 0);
	CHECK_EQ(pacing_bucket(1023), 0);
	CHECK_EQ(pacing_bucket(1024), 1);
	CHECK_EQ(pacing_bucket_high(1), 1279);
	CHECK_EQ(pacing_bucket(UINT64_MAX), PACING_BUCKETS - 1);
}

static void test_margin_covers_the_quantile(void)
{
	struct pacing p;
	uint64_t rng = 7, late[400], above = 0;

	pacing_init(&p);
	CHECK_EQ(pacing_margin(&p), PACING_INITIAL_NS);
	/* Wake-ups like a virtual machine's: mostly 50-100 us late, 1 in 50 about 1 ms. */
	for (int i = 0; i < 400; i++) {
		late[i] = 50 * US + prng_below(&rng, 50 * US);
		if (prng_below(&rng, 50) == 0)
			late[i] = 900 * US + prng_below(&rng, 200 * US);
		pacing_woke(&p, late[i]);
	}
	for (int i = 0; i < 400; i++)
		above += late[i] > pacing_margin(&p);
	CHECK(above <= 2);                           /* at most 0.5 % would come late */
	CHECK(pacing_margin(&p) <= 1100 * US * 5 / 4);   /* and no earlier than that needs */
	/* The machine quietens: within a few half-lives the margin shrinks to its floor (the old
	 * wake-ups, about 20 per bucket, halve away in five). */
	for (int i = 0; i < 4 * (int)PACING_HALFLIFE; i++)
		pacing_woke(&p, 3 * US);
	CHECK(pacing_margin(&p) < 150 * US);
	for (int i = 0; i < 4 * (int)PACING_HALFLIFE; i++)
		pacing_woke(&p, 3 * US);
	CHECK_EQ(pacing_margin(&p), PACING_FLOOR_NS);
	/* A machine too busy to run the thread on time: the margin stops at the cap. */
	for (int i = 0; i < 100; i++)
		pacing_woke(&p, 30 * 1000 * US);
	CHECK_EQ(pacing_margin(&p), PACING_CAP_NS);
}

/* Polling pays only on a CPU nobody else wants: while the thread waits for its CPU more than
 * PACING_BUSY of the time, the margin covers a typical wake-up only (here 50 us, not the
 * 900 us of one in twenty); the full margin comes back when the CPU is free. */
static void test_busy_cpu_stops_polling(void)
{
	struct pacing p;

	pacing_init(&p);
	for (int i = 0; i < 100; i++)
		pacing_woke(&p, i % 20 ? 50 * US : 900 * US);
	CHECK(pacing_margin(&p) >= 900 * US);
	pacing_cpu_wait(&p, 0, PACING_WINDOW_NS);
	CHECK(!pacing_cpu_busy(&p));
	for (int i = 0; i < 3; i++)
		pacing_cpu_wait(&p, PACING_WINDOW_NS / 10, PACING_WINDOW_NS);   /* 10 % waiting */
	CHECK(pacing_cpu_busy(&p));
	CHECK(pacing_margin(&p) >= 50 * US && pacing_margin(&p) <= 50 * US * 5 / 4);
	for (int i = 0; i < 40; i++)
		pacing_cpu_wait(&p, 0, PACING_WINDOW_NS);
	CHECK(!pacing_cpu_busy(&p));
	CHECK(pacing_margin(&p) >= 900 * US);
	pacing_cpu_wait(&p, 5 * PACING_WINDOW_NS, PACING_WINDOW_NS);   /* clipped to the span */
	CHECK(p.cpu_wait < 0.2);                    /* not 5 x the weight */
}

static void test_too_few_samples(void)
{
	struct pacing p;

	pacing_init(&p);
	for (unsigned i = 0; i + 1 < PACING_MIN_SAMPLES; i++)
		pacing_woke(&p, 0);
	CHECK_EQ(pacing_margin(&p), PACING_INITIAL_NS);
	pacing_woke(&p, 0);
	CHECK_EQ(pacing_margin(&p), PACING_FLOOR_NS);
}

int main(void)
{
	test_buckets();
	test_margin_covers_the_quantile();
	test_busy_cpu_stops_polling();
	test_too_few_samples();
	printf("pacing: ok\n");
	return 0;
}
