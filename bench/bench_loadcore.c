/* Microbenchmarks of the load client's per-message work (clients/hist.h, common/stream.h):
 * what echo-load spends on each message besides the system calls.
 *
 *   hist_record               one latency recorded (items/s = records per second)
 *   hist_percentile           one percentile read from a histogram of 100k values
 *   hist_merge                one whole-histogram merge, as done once per thread at the end
 *   payload_fill/N            stream_fill of N payload bytes (bytes_per_second)
 *   payload_check/N           stream_check of N echoed bytes
 *   payload_fill_check/N      both: the client's cost per echoed message of N bytes
 *
 * Any Google Benchmark flag works (--benchmark_filter=payload, --benchmark_format=json).
 */
#include <stdlib.h>

#include "gbench_c.h"
#include "hist.h"
#include "stream.h"

#define NVALUES 4096          /* latencies cycled through by hist_record (a power of two) */
#define SEED 0x5eedULL
#define CONN 7

/* Latencies spread log-uniformly over 1 us .. ~67 ms, so records land all over the buckets
 * as real ones do (a constant value would keep one bucket hot in cache). */
static uint64_t values[NVALUES];

static void make_values(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < NVALUES; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		values[i] = (1000u << (x % 17)) + (x >> 40) % 1000u;
	}
}

static struct hist *filled_hist(struct gb_state *st, uint64_t n)
{
	struct hist *h = hist_new();

	if (!h) {
		gb_skip_with_error(st, "hist_new: out of memory");
		return NULL;
	}
	for (uint64_t i = 0; i < n; i++)
		hist_record(h, values[i % NVALUES]);
	return h;
}

static void bm_hist_record(struct gb_state *st, void *arg)
{
	struct hist *h = filled_hist(st, 0);
	unsigned i = 0;

	if (!h)
		return;
	while (gb_keep_running(st))
		hist_record(h, values[i++ % NVALUES]);
	gb_do_not_optimize(h);
	if (hist_count(h) != (uint64_t)gb_iterations(st))
		gb_skip_with_error(st, "hist_count differs from the records made");
	gb_set_items_processed(st, gb_iterations(st));
	hist_free(h);
}

static void bm_hist_percentile(struct gb_state *st, void *arg)
{
	struct hist *h = filled_hist(st, 100000);
	uint64_t sum = 0;

	if (!h)
		return;
	while (gb_keep_running(st))
		sum += hist_percentile(h, 99.0);
	gb_do_not_optimize(&sum);
	gb_set_items_processed(st, gb_iterations(st));
	hist_free(h);
}

static void bm_hist_merge(struct gb_state *st, void *arg)
{
	struct hist *src = filled_hist(st, 100000);
	struct hist *dst = src ? hist_new() : NULL;

	if (src && !dst)
		gb_skip_with_error(st, "hist_new: out of memory");
	if (!dst) {
		hist_free(src);
		return;
	}
	while (gb_keep_running(st))
		hist_merge(dst, src);
	gb_do_not_optimize(dst);
	gb_set_items_processed(st, gb_iterations(st));
	hist_free(dst);
	hist_free(src);
}

enum payload_op { FILL = 1, CHECK = 2, FILL_CHECK = 3 };

/* Consecutive slices of one connection's stream, as a client sends and verifies them. */
static void bm_payload(struct gb_state *st, void *arg)
{
	enum payload_op op = (enum payload_op)(uintptr_t)arg;
	size_t n = (size_t)gb_range(st, 0);
	uint8_t *buf = malloc(n);
	uint64_t off = 0;

	if (!buf) {
		gb_skip_with_error(st, "out of memory");
		return;
	}
	if (op == CHECK)
		stream_fill(SEED, CONN, 0, buf, n);
	while (gb_keep_running(st)) {
		if (op & FILL)
			stream_fill(SEED, CONN, off, buf, n);
		gb_do_not_optimize(buf);
		if ((op & CHECK) && stream_check(SEED, CONN, off, buf, n) != n) {
			gb_skip_with_error(st, "stream_check found a mismatch in its own data");
			break;
		}
		/* check-only re-verifies the same slice: its data was generated for offset 0 */
		if (op & FILL)
			off += n;
	}
	gb_set_bytes_processed(st, gb_iterations(st) * (int64_t)n);
	free(buf);
}

static void register_payload(const char *name, enum payload_op op)
{
	struct gb_bench *b = gb_register(name, bm_payload, (void *)(uintptr_t)op);

	gb_bench_arg(b, 64);
	gb_bench_arg(b, 4096);
	gb_bench_arg(b, 65536);
}

int main(int argc, char **argv)
{
	make_values();
	gb_register("hist_record", bm_hist_record, NULL);
	gb_register("hist_percentile", bm_hist_percentile, NULL);
	gb_bench_unit(gb_register("hist_merge", bm_hist_merge, NULL), GB_US);
	register_payload("payload_fill", FILL);
	register_payload("payload_check", CHECK);
	register_payload("payload_fill_check", FILL_CHECK);
	return gb_main(argc, argv);
}
