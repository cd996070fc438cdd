/* The open-loop schedule: exact due times without drift, catch-up after a stall, the end. */
#include <errno.h>
#include <stdio.h>

#include "check.h"
#include "ratesched.h"

#define MS UINT64_C(1000000)
#define S UINT64_C(1000000000)

static void test_due_times(void)
{
	struct ratesched rs;

	CHECK_EQ(ratesched_init(&rs, 5000, 1000), 0);
	for (uint64_t k = 0; k < 100000; k += 997)
		CHECK_EQ(ratesched_due(&rs, k), 5000 + k * MS);
	/* A period that is no whole number of ns: no drift after millions of ticks. */
	CHECK_EQ(ratesched_init(&rs, 0, 3), 0);
	CHECK(ratesched_due(&rs, 3) - S <= 1 || S - ratesched_due(&rs, 3) <= 1);
	CHECK_EQ(ratesched_due(&rs, 3000000), 1000000 * S);
	CHECK_EQ(ratesched_init(&rs, 0, 7e6), 0);
	CHECK_EQ(ratesched_due(&rs, 7000000 * 60), 60 * S);
	CHECK_EQ(ratesched_init(&rs, 0, 0), -EINVAL);
	CHECK_EQ(ratesched_init(&rs, 0, -5), -EINVAL);
}

static void test_take_and_stall(void)
{
	struct ratesched rs;
	uint64_t first, n;

	ratesched_init(&rs, 10 * S, 1000);
	CHECK_EQ(ratesched_take(&rs, 10 * S - 1, &first), 0);   /* nothing before the start */
	CHECK_EQ(ratesched_take(&rs, 10 * S, &first), 1);
	CHECK_EQ(first, 0);
	CHECK_EQ(ratesched_take(&rs, 10 * S, &first), 0);       /* taken once only */
	CHECK_EQ(ratesched_next_due(&rs), 10 * S + MS);
	n = ratesched_take(&rs, 10 * S + 5 * MS + MS / 2, &first);
	CHECK_EQ(n, 5);
	CHECK_EQ(first, 1);
	/* A stall of a second: every missed tick comes at once, with its original due time. */
	n = ratesched_take(&rs, 11 * S, &first);
	CHECK_EQ(first, 6);
	CHECK_EQ(n, 995);
	CHECK_EQ(ratesched_due(&rs, first), 10 * S + 6 * MS);
	CHECK_EQ(ratesched_next_due(&rs), 11 * S + MS);
}

static void test_end(void)
{
	struct ratesched rs;
	uint64_t first, total = 0, t = 0, step = 1;

	/* 7/s for 10 s: exactly 70 ticks due before the end, whatever the wake-up pattern. */
	ratesched_init(&rs, 0, 7);
	ratesched_stop_at(&rs, 10 * S);
	while (t < 12 * S) {
		total += ratesched_take(&rs, t, &first);
		step = step * 3 % 1000003;
		t += step * 1000;
	}
	CHECK_EQ(total, 70);
	CHECK_EQ(ratesched_next_due(&rs), UINT64_MAX);
	CHECK_EQ(ratesched_take(&rs, 100 * S, &first), 0);
	/* An end on a tick excludes that tick. */
	ratesched_init(&rs, 0, 1000);
	ratesched_stop_at(&rs, S);
	CHECK_EQ(ratesched_take(&rs, 2 * S, &first), 1000);
	CHECK_EQ(first, 0);
	/* An end before the start: nothing at all. */
	ratesched_init(&rs, 5 * S, 1000);
	ratesched_stop_at(&rs, S);
	CHECK_EQ(ratesched_take(&rs, 10 * S, &first), 0);
}

int main(void)
{
	test_due_times();
	test_take_and_stall();
	test_end();
	puts("ratesched: ok");
	return 0;
}
