/* Unit test of the C wrapper (gbench_c.h): benchmarks with known answers are run through
 * gb_main() and their reported results, seen through gb_on_result(), are checked: arguments
 * reach gb_range() and the run's name, fixed iteration counts are honoured, counter flags give
 * the documented values, paused time is not counted, skips are not failures and errors are.
 *
 * Extra arguments are passed to gb_main(), so `test-gbench-c --benchmark_format=json` shows the
 * same runs as JSON. Exit 0 pass, 1 fail.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gbench_c.h"

#define SLEEP_NS 20000000L   /* 20 ms per iteration of the pause/resume pair */
#define FIXED_ITERS 1000

#define MAX_RESULTS 32
static struct seen {
	char name[64];
	struct gb_result r;
	double loops, r0, r1, avg, per_iter, rate, inverse, threads_sum, threads_avg;
	double bytes_ps, items_ps;
} seen[MAX_RESULTS];
static int nseen;

static void sleep_ns(long ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static double counter(const struct gb_result *r, const char *name)
{
	double v;

	return gb_result_counter(r, name, &v) ? v : NAN;
}

static void collect(const struct gb_result *r, void *arg)
{
	struct seen *s;

	CHECK(nseen < MAX_RESULTS);
	s = &seen[nseen++];
	snprintf(s->name, sizeof s->name, "%s", r->name);
	s->r = *r;
	s->r.name = s->name;
	s->r.error_message = r->error ? (r->skipped ? "skip" : "fail") : "";  /* see find() */
	s->r.label = "";
	s->loops = counter(r, "loops");
	s->r0 = counter(r, "r0");
	s->r1 = counter(r, "r1");
	s->avg = counter(r, "avg");
	s->per_iter = counter(r, "per_iter");
	s->rate = counter(r, "rate");
	s->inverse = counter(r, "inverse");
	s->threads_sum = counter(r, "threads_sum");
	s->threads_avg = counter(r, "threads_avg");
	s->bytes_ps = counter(r, "bytes_per_second");
	s->items_ps = counter(r, "items_per_second");
	if (r->error)
		fprintf(stderr, "result %s: error '%s'\n", r->name, r->error_message);
}

static const struct seen *find(const char *name)
{
	const struct seen *hit = NULL;

	for (int i = 0; i < nseen; i++) {
		if (strcmp(seen[i].name, name) == 0) {
			if (hit) {
				fprintf(stderr, "result %s reported twice\n", name);
				exit(1);
			}
			hit = &seen[i];
		}
	}
	if (!hit) {
		fprintf(stderr, "no result named %s\n", name);
		exit(1);
	}
	return hit;
}

static bool near(double got, double want, double rel)
{
	return fabs(got - want) <= rel * fabs(want);
}

#define CHECK_NEAR(got, want, rel) do { \
	double g_ = (got), w_ = (want); \
	if (!near(g_, w_, rel)) { \
		fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s ~ %s (%g vs %g)\n", \
			__FILE__, __LINE__, #got, #want, g_, w_); \
		exit(1); \
	} } while (0)

/* Arguments: echoes range(0) and range(1) as counters so the check can match them to the name. */
static void bm_args(struct gb_state *st, void *arg)
{
	while (gb_keep_running(st))
		;
	gb_set_counter(st, "r0", (double)gb_range(st, 0), GB_COUNTER_DEFAULT);
	gb_set_counter(st, "r1", (double)gb_range(st, 1), GB_COUNTER_DEFAULT);
}

/* Fixed iteration count and the counter flags. */
static void bm_counters(struct gb_state *st, void *arg)
{
	int64_t loops = 0;
	volatile uint64_t sink = 0;

	while (gb_keep_running(st)) {
		for (int i = 0; i < 1000; i++)
			sink += (uint64_t)i;
		loops++;
	}
	gb_set_counter(st, "loops", (double)loops, GB_COUNTER_DEFAULT);
	gb_set_counter(st, "avg", 3.0 * (double)loops, GB_COUNTER_AVG_ITERATIONS);
	gb_set_counter(st, "per_iter", 5.0, GB_COUNTER_PER_ITERATION);
	gb_set_counter(st, "rate", (double)loops, GB_COUNTER_RATE);
	gb_set_counter(st, "inverse", 4.0, GB_COUNTER_INVERT);
	gb_set_bytes_processed(st, loops * 64);
	gb_set_items_processed(st, loops);
}

/* Batches: the loop runs whole batches and gb_iterations() counts them all. */
static void bm_batch(struct gb_state *st, void *arg)
{
	int64_t loops = 0;

	while (gb_keep_running_batch(st, 10))
		loops += 10;
	gb_set_counter(st, "loops", (double)loops, GB_COUNTER_DEFAULT);
	if (gb_iterations(st) != loops)
		gb_skip_with_error(st, "gb_iterations() differs from the batches run");
}

/* Paused: each iteration sleeps SLEEP_NS with the timer stopped, so almost nothing is timed. */
static void bm_paused(struct gb_state *st, void *arg)
{
	while (gb_keep_running(st)) {
		gb_pause_timing(st);
		sleep_ns(SLEEP_NS);
		gb_resume_timing(st);
	}
}

/* Not paused: the same sleep is timed (real time), so each iteration lasts at least SLEEP_NS. */
static void bm_unpaused(struct gb_state *st, void *arg)
{
	while (gb_keep_running(st))
		sleep_ns(SLEEP_NS);
}

/* Threads: every thread adds 1 to threads_sum; threads_avg divides the sum by the threads. */
static void bm_threads(struct gb_state *st, void *arg)
{
	while (gb_keep_running(st))
		;
	gb_set_counter(st, "threads_sum", 1.0, GB_COUNTER_DEFAULT);
	gb_set_counter(st, "threads_avg", 7.0, GB_COUNTER_AVG_THREADS);
	if (gb_threads(st) != 2 || gb_thread_index(st) < 0 || gb_thread_index(st) > 1)
		gb_skip_with_error(st, "wrong thread count or index");
}

static void bm_skip(struct gb_state *st, void *arg)
{
	gb_skip(st, "not here");   /* and return at once, as gbench_c.h allows */
}

static void bm_fail(struct gb_state *st, void *arg)
{
	while (gb_keep_running(st))
		gb_skip_with_error(st, "broken on purpose");
	gb_set_label(st, "after the error");
}

int main(int argc, char **argv)
{
	static const int64_t args1[] = { 3, 70 }, args2[] = { 5, 9 };
	static const char *const names[] = { "a", "b" };
	char *av[16] = { argv[0], "--benchmark_min_time=0.01" };
	int ac = 2, rc;
	struct gb_bench *b;
	const struct seen *s;

	for (int i = 1; i < argc && ac < 15; i++)
		av[ac++] = argv[i];

	b = gb_register("t_args", bm_args, NULL);
	gb_bench_args(b, args1, 2);
	gb_bench_args(b, args2, 2);
	b = gb_register("t_named", bm_args, NULL);
	gb_bench_arg_names(b, names, 2);
	gb_bench_args(b, args1, 2);
	b = gb_register("t_counters", bm_counters, NULL);
	gb_bench_iterations(b, FIXED_ITERS);
	b = gb_register("t_batch", bm_batch, NULL);
	gb_bench_iterations(b, 95);
	b = gb_register("t_paused", bm_paused, NULL);
	gb_bench_iterations(b, 4);
	gb_bench_real_time(b);
	b = gb_register("t_unpaused", bm_unpaused, NULL);
	gb_bench_iterations(b, 4);
	gb_bench_real_time(b);
	b = gb_register("t_threads", bm_threads, NULL);
	gb_bench_threads(b, 2);
	gb_bench_iterations(b, 50);
	gb_register("t_skip", bm_skip, NULL);
	gb_register("t_fail", bm_fail, NULL);

	gb_on_result(collect, NULL);
	rc = gb_main(ac, av);
	CHECK_EQ(rc, 1);   /* t_fail, and only t_fail (checked below) */

	/* Iteration names carry the arguments; the counters prove gb_range() saw the same ones. */
	s = find("t_args/3/70");
	CHECK_EQ(s->r0, 3);
	CHECK_EQ(s->r1, 70);
	s = find("t_args/5/9");
	CHECK_EQ(s->r0, 5);
	CHECK_EQ(s->r1, 9);
	s = find("t_named/a:3/b:70");
	CHECK_EQ(s->r0, 3);

	s = find("t_counters/iterations:1000");
	CHECK(!s->r.error);
	CHECK_EQ(s->r.iterations, FIXED_ITERS);
	CHECK_EQ(s->loops, FIXED_ITERS);
	CHECK_NEAR(s->avg, 3.0, 1e-9);
	CHECK_NEAR(s->per_iter, 5.0 * FIXED_ITERS, 1e-9);
	CHECK_NEAR(s->inverse, 0.25, 1e-9);
	/* Rates divide by the run's CPU time (real time only with gb_bench_real_time()). */
	CHECK(s->r.cpu_ns > 0 && s->r.real_ns > 0);
	CHECK_NEAR(s->rate, FIXED_ITERS / (s->r.cpu_ns * FIXED_ITERS * 1e-9), 1e-6);
	CHECK_NEAR(s->items_ps, s->rate, 1e-9);
	CHECK_NEAR(s->bytes_ps, 64 * s->rate, 1e-9);

	s = find("t_batch/iterations:95");
	CHECK(!s->r.error);
	CHECK_EQ(s->loops, 100);        /* 95 rounded up to whole batches of 10 */
	CHECK_EQ(s->r.iterations, 100);

	/* Paused sleep is not timed, unpaused is; 20 ms against well under 10 ms leaves a wide
	 * margin for a loaded machine. */
	s = find("t_unpaused/iterations:4/real_time");
	CHECK(s->r.real_ns >= SLEEP_NS);
	s = find("t_paused/iterations:4/real_time");
	CHECK_EQ(s->r.iterations, 4);
	if (!(s->r.real_ns < SLEEP_NS / 2)) {
		fprintf(stderr, "paused sleep was timed: %.0f ns per iteration\n", s->r.real_ns);
		return 1;
	}

	s = find("t_threads/iterations:50/threads:2");
	CHECK(!s->r.error);
	CHECK_EQ(s->threads_sum, 2);
	CHECK_NEAR(s->threads_avg, 7.0, 1e-9);

	s = find("t_skip");
	CHECK(s->r.error && s->r.skipped);
	s = find("t_fail");
	CHECK(s->r.error && !s->r.skipped);

	for (int i = 0; i < nseen; i++)
		CHECK(!seen[i].r.error || strcmp(seen[i].name, "t_skip") == 0 ||
		      strcmp(seen[i].name, "t_fail") == 0);
	printf("gbench shim: %d results checked\n", nseen);
	return 0;
}
