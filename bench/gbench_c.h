/* Google Benchmark from C: a thin C API over the C++ library (1.7.x), so echobench's
 * microbenchmarks are written in C like the rest of the tree. gbench_c.cc implements it.
 *
 * A benchmark is a C function that runs its measured work inside the keep-running loop:
 *
 *     static void bm_record(struct gb_state *st, void *arg)
 *     {
 *             struct hist *h = hist_new();          // set-up: not timed
 *             while (gb_keep_running(st))
 *                     hist_record(h, 1234);          // timed
 *             gb_set_items_processed(st, gb_iterations(st));
 *             hist_free(h);
 *     }
 *
 *     int main(int argc, char **argv)
 *     {
 *             struct gb_bench *b = gb_register("hist_record", bm_record, NULL);
 *             gb_bench_arg(b, 64);                   // optional: one run per argument set
 *             return gb_main(argc, argv);
 *     }
 *
 * The library calls the function several times (it grows the iteration count until the run
 * lasts --benchmark_min_time), so set-up before the loop must be cheap enough to repeat and
 * everything it allocates must be freed before returning. Every --benchmark_* flag of Google
 * Benchmark works (--benchmark_filter, --benchmark_format=json, --benchmark_out=FILE, ...).
 *
 * Misuse that Google Benchmark itself rejects (for example both an iteration count and a minimum
 * time on one benchmark, or pausing a paused timer) aborts the program with its message: these
 * are programming errors, not run-time conditions.
 */
#ifndef ECHOBENCH_GBENCH_C_H
#define ECHOBENCH_GBENCH_C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gb_bench;   /* a registered benchmark (a family: one run per argument set) */
struct gb_state;   /* the state of one run, handed to the benchmark function */

typedef void (*gb_fn)(struct gb_state *st, void *arg);

/* ---- Registration: call before gb_main(). ---- */

/* Registers fn under `name` (copied); fn is called as fn(st, arg). Returns the benchmark, to be
 * configured with the gb_bench_* calls below; registration cannot fail (out of memory aborts). */
struct gb_bench *gb_register(const char *name, gb_fn fn, void *arg);

/* Adds one run with a single argument x (read back with gb_range(st, 0)); the name gets "/x". */
void gb_bench_arg(struct gb_bench *b, int64_t x);
/* Adds one run with the n arguments v[0..n) (gb_range(st, i) = v[i]); the name gets "/v0/v1...". */
void gb_bench_args(struct gb_bench *b, const int64_t *v, size_t n);
/* Adds runs for lo, hi and the powers of the range multiplier (default 8) in between. */
void gb_bench_range(struct gb_bench *b, int64_t lo, int64_t hi);
/* Adds runs for lo, lo + step, ... up to and including hi. */
void gb_bench_dense_range(struct gb_bench *b, int64_t lo, int64_t hi, int step);
/* Sets the multiplier of later gb_bench_range() calls (>= 2). */
void gb_bench_range_multiplier(struct gb_bench *b, int mult);
/* Names the n arguments: the run name then reads "name/bytes:64" instead of "name/64". */
void gb_bench_arg_names(struct gb_bench *b, const char *const *names, size_t n);

/* Runs exactly n iterations (n > 0) instead of growing the count to reach the minimum time. */
void gb_bench_iterations(struct gb_bench *b, int64_t n);
/* Overrides --benchmark_min_time for this benchmark (seconds, > 0). */
void gb_bench_min_time(struct gb_bench *b, double seconds);
/* Overrides --benchmark_repetitions (n > 0); aggregates (mean, median, stddev, cv) follow. */
void gb_bench_repetitions(struct gb_bench *b, int n);
/* Times by the wall clock instead of this thread's CPU time: needed when the work happens in
 * other threads or in the kernel while this thread sleeps (for example an echo round trip). */
void gb_bench_real_time(struct gb_bench *b);
/* Reports the CPU time of the whole process (all threads) instead of the calling thread's. */
void gb_bench_process_cpu_time(struct gb_bench *b);
/* Runs the function in n threads at once (n > 0); see gb_thread_index(). */
void gb_bench_threads(struct gb_bench *b, int n);

enum gb_time_unit { GB_NS, GB_US, GB_MS, GB_S };
/* The unit in which times are printed and written to JSON (default nanoseconds). */
void gb_bench_unit(struct gb_bench *b, enum gb_time_unit unit);

/* ---- Inside a benchmark function. ---- */

/* True while another iteration should run. The timer starts at the first call. The function
 * must call it until it returns false before returning, unless it called gb_skip*() (it may
 * then return at once; after the error the loop ends at the next call). */
bool gb_keep_running(struct gb_state *st);
/* Like gb_keep_running() for n iterations at once (n > 0): true while another batch of n should
 * run; the last batch may overshoot the planned count, gb_iterations() says what really ran. */
bool gb_keep_running_batch(struct gb_state *st, int64_t n);

/* Stops and restarts the timer inside the loop, for per-iteration set-up that must not count.
 * Each pair costs about a microsecond: keep them out of loops over nanosecond-sized work. */
void gb_pause_timing(struct gb_state *st);
void gb_resume_timing(struct gb_state *st);

/* Argument i of this run (as given to gb_bench_arg/args/range); i must be below the number of
 * arguments registered (asserts otherwise). */
int64_t gb_range(const struct gb_state *st, size_t i);
/* Iterations completed so far: 0 before the loop starts, the run's total after it ends. */
int64_t gb_iterations(const struct gb_state *st);
/* Number of threads running this benchmark, and this thread's index in 0..threads-1. */
int gb_threads(const struct gb_state *st);
int gb_thread_index(const struct gb_state *st);

/* Counter flags, combined with |. Without flags a counter is reported as set. */
enum gb_counter_flags {
	GB_COUNTER_DEFAULT = 0,
	GB_COUNTER_RATE = 1 << 0,           /* divided by the run's time: "per second" */
	GB_COUNTER_AVG_THREADS = 1 << 1,    /* divided by the number of threads */
	GB_COUNTER_PER_ITERATION = 1 << 2,  /* the value is per iteration: multiplied by the count */
	GB_COUNTER_AVG_ITERATIONS = 1 << 3, /* divided by the number of iterations */
	GB_COUNTER_INVERT = 1 << 4,         /* 1/x, applied last (e.g. RATE|INVERT = seconds each) */
	GB_COUNTER_BASE_1024 = 1 << 5,      /* print with k = 1024 instead of 1000 */
};
/* Sets user counter `name` (copied) to value; it appears as a column on the console and as a
 * key of the run's JSON entry, after its flags are applied at the end of the run. Usually called
 * after the loop; setting it again replaces the value. In a threaded benchmark the values the
 * threads set are summed. */
void gb_set_counter(struct gb_state *st, const char *name, double value, unsigned flags);
/* Reports `bytes` processed in the whole run: JSON gets "bytes_per_second" (bytes / time). */
void gb_set_bytes_processed(struct gb_state *st, int64_t bytes);
/* Reports `items` processed in the whole run: JSON gets "items_per_second". */
void gb_set_items_processed(struct gb_state *st, int64_t items);
/* A free text shown after the run's figures and as "label" in JSON (copied). */
void gb_set_label(struct gb_state *st, const char *label);

/* Marks the run as failed with msg (copied): the loop ends after the current iteration (the
 * function should then return), the run is reported with error_occurred and msg, and gb_main()
 * returns 1. Call at most once per run. */
void gb_skip_with_error(struct gb_state *st, const char *msg);
/* Marks the run as not possible here (a missing kernel feature, for example): reported like an
 * error with the message "skipped: REASON", but gb_main() does not count it as a failure. */
void gb_skip(struct gb_state *st, const char *reason);
/* True once gb_skip_with_error() or gb_skip() was called in this run. */
bool gb_error_occurred(const struct gb_state *st);

/* Keeps the compiler from deleting a computation whose result is unused: the value behind p is
 * treated as read, and memory as possibly written, at this point. */
static inline void gb_do_not_optimize(const void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* ---- Running. ---- */

/* One reported result, as the console and JSON reporters see it. */
struct gb_result {
	const char *name;            /* "hist_record", "echo_rtt/epoll/64", "x/64_mean" */
	bool aggregate;              /* mean/median/stddev/cv over repetitions */
	int64_t iterations;
	double real_ns;              /* wall time per iteration */
	double cpu_ns;               /* CPU time per iteration */
	bool error;                  /* gb_skip_with_error() or gb_skip() was called */
	bool skipped;                /* ... and it was gb_skip() */
	const char *error_message;   /* "" without error */
	const char *label;           /* "" without label */
	const void *impl;            /* private: for gb_result_counter() */
};
typedef void (*gb_result_fn)(const struct gb_result *r, void *arg);

/* Calls fn(r, arg) for every result reported by gb_main() (set before it). The strings in *r
 * are valid only during the call. NULL removes the hook. */
void gb_on_result(gb_result_fn fn, void *arg);
/* Final value of counter `name` of a result, after its flags are applied (bytes_per_second,
 * items_per_second and user counters). Returns true and sets *value, or false when absent. */
bool gb_result_counter(const struct gb_result *r, const char *name, double *value);

/* Parses Google Benchmark's --benchmark_* flags out of argv and runs every registered benchmark
 * that matches --benchmark_filter. Returns 0 when all ran (gb_skip() runs and a filter that
 * matches nothing included), 1 when a run called gb_skip_with_error(), 2 when an argument is
 * unknown or a flag's value is bad (after one line on stderr naming it, before anything runs).
 * --help prints the flags and exits 0; an --benchmark_out file that cannot be opened exits 1
 * (Google Benchmark's own exit). Call once. */
int gb_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
