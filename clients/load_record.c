/* The lossless record of a run (--hist-out, clients/histio.h) and its offline merge (--merge),
 * and the percentile confidence intervals of latency_ci_us (clients/latci.h).
 *
 * A record holds every histogram whole (latency, uncorrected latency, connect, send lag, slot
 * wait, wake-up lateness, the LOAD_CI_BLOCKS time blocks, messages per connection), every
 * counter, and the run's shape as reals whose merge policy says how hosts combine: rates and
 * CPU seconds add up, windows and the busiest thread take the largest, sizes and completeness
 * the smallest; the engine goes by name. Merging records and reporting gives the figures one
 * run over all their connections would have given: counts added, percentiles from the merged
 * buckets. The per-interval series is not in the record.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "histio.h"
#include "latci.h"
#include "load.h"
#include "loader.h"

static const struct { const char *key; double pct; } ci_pcts[] = {
	{ "p50", 50 }, { "p90", 90 }, { "p99", 99 }, { "p999", 99.9 }, { "p9999", 99.99 },
};

/* The counters of struct load_counts and struct load_result, by name. */
#define COUNTERS(X) \
	X("messages", c.messages) X("bytes", c.bytes) X("drained", c.drained) \
	X("sent", c.sent) X("mismatches", c.mismatches) X("short_bytes", c.short_bytes) \
	X("extra_bytes", c.extra_bytes) X("lost", c.lost) X("unanswered", c.unanswered) \
	X("errors_refused", c.errors[ERR_REFUSED]) X("errors_reset", c.errors[ERR_RESET]) \
	X("errors_timeout", c.errors[ERR_TIMEOUT]) X("errors_eof", c.errors[ERR_EOF]) \
	X("errors_other", c.errors[ERR_OTHER]) X("connections_lost", c.conns_failed) \
	X("connections", connections) X("connected", connected) X("threads", threads) \
	X("starved_connections", starved) X("transactions", c.transactions) \
	X("no_local_port", c.no_port)

static int put_hist(struct histio_record *rec, const char *name, const struct hist *h, int err)
{
	return err ? err : h ? histio_put_hist(rec, name, h) : 0;
}

static int build(struct histio_record *rec, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;
	char name[HISTIO_NAME_MAX];
	int err = 0;

	err = put_hist(rec, "latency", r->lat, err);
	err = put_hist(rec, "latency_uncorrected", r->lat_unc, err);
	err = put_hist(rec, "connect", r->connect, err);
	err = put_hist(rec, "first_reply", r->first_reply, err);
	err = put_hist(rec, "send_lag", r->lag, err);
	err = put_hist(rec, "slot_wait", r->slot_wait, err);
	err = put_hist(rec, "wake_late", r->wake_late, err);
	err = put_hist(rec, "msgs_per_conn", r->per_conn, err);
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++) {
		snprintf(name, sizeof(name), "block%u", b);
		err = put_hist(rec, name, r->block[b], err);
	}
#define PUT(n, field) if (!err) err = histio_put_counter(rec, n, r->field);
	COUNTERS(PUT)
#undef PUT
	struct { const char *name; double v; enum histio_policy p; } reals[] = {
		{ "mode", cfg->mode, HISTIO_MAX },
		{ "datagrams", cfg->tp->socktype == SOCK_DGRAM, HISTIO_MAX },
		{ "unix", cfg->target.family == AF_UNIX, HISTIO_MAX },
		{ "size_min", (double)cfg->size_lo, HISTIO_MIN },
		{ "size_max", (double)cfg->size_hi, HISTIO_MAX },
		{ "pipeline", (double)r->pipeline, HISTIO_MAX },
		{ "verify", cfg->verify, HISTIO_MIN },
		{ "seed", (double)cfg->seed, HISTIO_MAX },
		{ "warmup_s", cfg->warmup_ns / 1e9, HISTIO_MAX },
		{ "duration_asked_s", cfg->duration_ns / 1e9, HISTIO_MAX },
		{ "duration_s", r->duration_s, HISTIO_MAX },
		{ "wall_s", r->wall_s, HISTIO_MAX },
		{ "rate_target", r->rate_target, HISTIO_SUM },
		{ "user_s", r->user_s, HISTIO_SUM },
		{ "sys_s", r->sys_s, HISTIO_SUM },
		{ "busiest_thread", r->busiest, HISTIO_MAX },
		{ "start_lag_us", r->start_lag_us, HISTIO_MAX },
		{ "complete", r->complete, HISTIO_MIN },
		{ "spin_s", r->spin_s, HISTIO_SUM },
		{ "cpu_wait_s", r->cpu_wait_s, HISTIO_SUM },
		{ "wake_early_us", r->wake_early_us, HISTIO_MAX },
		{ "inflight_max", (double)r->inflight_max, HISTIO_MAX },
		{ "processes", (double)cfg->processes, HISTIO_SUM },
		{ "source_first", (double)cfg->src_first, HISTIO_MIN },
		{ "source_count", (double)cfg->src_count, HISTIO_MAX },
		{ "churn", cfg->churn, HISTIO_MAX },
		{ "churn_messages", cfg->churn ? (double)cfg->churn_messages : 0, HISTIO_MAX },
		{ "close_rst", cfg->close_rst, HISTIO_MAX },
	};
	for (unsigned i = 0; !err && i < sizeof(reals) / sizeof(reals[0]); i++)
		err = histio_put_real(rec, reals[i].name, reals[i].v, reals[i].p);
	/* The engine by name: a counter `engine.NAME` of the records that ran it, so that
	 * merged records say whether they all ran the same one. */
	if (!err && cfg->engine) {
		snprintf(name, sizeof(name), "engine.%s", cfg->engine->name);
		err = histio_put_counter(rec, name, 1);
	}
	return err;
}

int record_write(FILE *f, const struct load_result *r)
{
	struct histio_record *rec = malloc(sizeof(*rec));
	int err;

	if (!rec)
		return -ENOMEM;
	histio_init(rec);
	err = build(rec, r);
	if (!err)
		err = histio_write(f, rec);
	histio_free(rec);
	free(rec);
	return err;
}

static double real_or(const struct histio_record *rec, const char *name, double dflt)
{
	double v;

	return histio_real(rec, name, &v) == 0 ? v : dflt;
}

static void take_hist(struct hist *dst, const struct histio_record *rec, const char *name)
{
	const struct hist *h = histio_hist(rec, name);

	if (dst && h)
		hist_merge(dst, h);
}

#define TWO_64 18446744073709551616.0

/* A real that holds a whole number (a size, a seed, a count), saturated: build() wrote it as
 * a double, which rounds the largest ones (a seed of 2^64 - 1) up to 2^64, beyond uint64_t. */
static uint64_t u64_or(const struct histio_record *rec, const char *name, uint64_t dflt)
{
	double v = real_or(rec, name, (double)dflt);

	return v >= TWO_64 ? UINT64_MAX : v > 0 ? (uint64_t)v : 0;
}

/* The range of each real build() writes: a record from another host is checked against it
 * before it is merged, so that nothing downstream meets a size of -5, a mode of 7 or a window
 * of 10^300 seconds. Reals not listed are kept and merged, but not used. */
static const struct { const char *name; double lo, hi; bool time; } shape[] = {
	{ "mode", 0, MODE_STREAM, false }, { "datagrams", 0, 1, false }, { "unix", 0, 1, false },
	{ "size_min", 0, TWO_64, false }, { "size_max", 0, TWO_64, false },
	{ "pipeline", 0, TWO_64, false }, { "verify", 0, 1, false }, { "seed", 0, TWO_64, false },
	/* Times: up to 10^9 s (31 years), which keeps every product in ns within 64 bits; a time
	 * comes from nanoseconds, so a positive one is at least 1 ns (below, every rate over it
	 * would be infinite). */
	{ "warmup_s", 0, 1e9, true }, { "duration_asked_s", 0, 1e9, true },
	{ "duration_s", 0, 1e9, true }, { "wall_s", 0, 1e9, true }, { "user_s", 0, 1e9, true },
	{ "sys_s", 0, 1e9, true }, { "start_lag_us", -1e15, 1e15, false },
	{ "rate_target", 0, 1e15, false }, { "busiest_thread", 0, 1e3, false },
	{ "complete", 0, 1, false }, { "engine", 0, 1, false }, { "processes", 0, 1e9, false },
	{ "spin_s", 0, 1e9, true }, { "cpu_wait_s", 0, 1e9, true },
	{ "wake_early_us", 0, 1e15, false }, { "inflight_max", 0, TWO_64, false },
	{ "source_first", 0, 4294967295.0, false }, { "source_count", 0, LOAD_MAX_SOURCES, false },
	{ "churn", 0, 1, false }, { "churn_messages", 0, LOAD_MAX_CHURN_MESSAGES, false },
	{ "close_rst", 0, 1, false },
};

static int check_shape(const struct histio_record *rec, char *why, size_t n)
{
	for (unsigned i = 0; i < sizeof(shape) / sizeof(shape[0]); i++) {
		double v;

		if (histio_real(rec, shape[i].name, &v) < 0)
			continue;
		if (!(v >= shape[i].lo && v <= shape[i].hi) || (shape[i].time && v > 0 && v < 1e-9)) {
			snprintf(why, n, "real '%s' is %.17g, outside %.17g to %.17g%s", shape[i].name,
				 v, shape[i].lo, shape[i].hi, shape[i].time ? " (and 0 or >= 1 ns)" : "");
			return -EINVAL;
		}
	}
	if (real_or(rec, "source_first", 0) + real_or(rec, "source_count", 0) > 4294967296.0) {
		snprintf(why, n, "the source range runs past 255.255.255.255");
		return -EINVAL;
	}
	return 0;
}

/* The engine every merged record ran, by name; NULL when they differ or none says. Records
 * written before engines went by name carry a real `engine`: 0 epoll, 1 uring. */
static const struct engine *recorded_engine(const struct histio_record *rec)
{
	static const char *const before_names[] = { "epoll", "uring" };
	const struct engine *found = NULL, *e;
	char name[HISTIO_NAME_MAX];
	double old;
	uint64_t n;

	for (unsigned i = 0; (e = engine_at(i)); i++) {
		snprintf(name, sizeof(name), "engine.%s", e->name);
		if (histio_counter(rec, name, &n) < 0 || !n)
			continue;
		if (found)
			return NULL;
		found = e;
	}
	if (histio_real(rec, "engine", &old) == 0) {
		e = old == 0 || old == 1 ? engine_find(before_names[(int)old]) : NULL;
		if (found && found != e)
			return NULL;
		found = e;
	}
	return found;
}

/* The merged record -> the configuration a report needs, and the result. */
int record_unpack(struct load_result *r, struct load_config *cfg, const struct histio_record *rec,
		  unsigned nfiles)
{
	char name[16];
	int err;

	cfg->mode = (enum load_mode)u64_or(rec, "mode", MODE_CLOSED);
	cfg->tp = real_or(rec, "datagrams", 0) > 0 ? &transport_dgram : &transport_stream;
	cfg->target.family = real_or(rec, "unix", 0) > 0 ? AF_UNIX : AF_INET;
	snprintf(cfg->target.text, sizeof(cfg->target.text), "merged %u records", nfiles);
	cfg->size_lo = u64_or(rec, "size_min", 0);
	cfg->size_hi = u64_or(rec, "size_max", 0);
	cfg->verify = real_or(rec, "verify", 1) > 0;
	cfg->seed = u64_or(rec, "seed", 0);
	cfg->warmup_ns = (uint64_t)(real_or(rec, "warmup_s", 0) * 1e9);
	cfg->duration_ns = (uint64_t)(real_or(rec, "duration_asked_s", 0) * 1e9);
	cfg->rate = real_or(rec, "rate_target", 0);
	cfg->engine = recorded_engine(rec);
	cfg->processes = u64_or(rec, "processes", 1);
	cfg->src_first = (uint32_t)u64_or(rec, "source_first", 0);
	cfg->src_count = (uint32_t)u64_or(rec, "source_count", 0);
	cfg->churn = real_or(rec, "churn", 0) > 0;
	cfg->churn_messages = u64_or(rec, "churn_messages", 0);
	cfg->close_rst = real_or(rec, "close_rst", 0) > 0;
	if ((err = result_init(r, cfg)) < 0)
		return err;
	take_hist(r->lat, rec, "latency");
	take_hist(r->lat_unc, rec, "latency_uncorrected");
	take_hist(r->connect, rec, "connect");
	take_hist(r->first_reply, rec, "first_reply");
	take_hist(r->lag, rec, "send_lag");
	take_hist(r->slot_wait, rec, "slot_wait");
	take_hist(r->wake_late, rec, "wake_late");
	take_hist(r->per_conn, rec, "msgs_per_conn");
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++) {
		snprintf(name, sizeof(name), "block%u", b);
		take_hist(r->block[b], rec, name);
	}
#define GET(n, field) histio_counter(rec, n, &r->field);
	COUNTERS(GET)
#undef GET
	r->pipeline = u64_or(rec, "pipeline", 1);
	r->duration_s = real_or(rec, "duration_s", 0);
	r->wall_s = real_or(rec, "wall_s", 0);
	r->rate_target = cfg->rate;
	r->user_s = real_or(rec, "user_s", 0);
	r->sys_s = real_or(rec, "sys_s", 0);
	r->busiest = real_or(rec, "busiest_thread", 0);
	r->spin_s = real_or(rec, "spin_s", 0);
	r->cpu_wait_s = real_or(rec, "cpu_wait_s", 0);
	r->wake_early_us = real_or(rec, "wake_early_us", 0);
	r->inflight_max = (uint64_t)real_or(rec, "inflight_max", 0);
	r->start_lag_us = real_or(rec, "start_lag_us", -1);
	r->complete = real_or(rec, "complete", 0) > 0;
	if (!r->complete)
		snprintf(r->error, sizeof(r->error), "at least one of the merged runs was "
			 "incomplete");
	return 0;
}

/* Before the split, send_lag held both the client's lateness and the wait for a slot: such a
 * record cannot be merged with today's, nor its send_lag check evaluated as today's is. */
static bool old_open_loop(const struct histio_record *rec)
{
	return real_or(rec, "mode", MODE_CLOSED) == MODE_OPEN && histio_hist(rec, "send_lag") &&
		!histio_hist(rec, "slot_wait");
}

int record_merge_stream(struct histio_record *all, struct histio_record *one, FILE *f,
			char *why, size_t n)
{
	int err = histio_read(f, one);

	if (!err && (err = check_shape(one, why, n)) < 0)
		return err;
	if (!err && old_open_loop(one)) {
		snprintf(why, n, "an open-loop record from before send_lag and slot_wait were "
			 "split (it has no slot_wait): record it again");
		return -EINVAL;
	}
	if (!err && all->n && (real_or(all, "churn", 0) != real_or(one, "churn", 0) ||
			       real_or(all, "churn_messages", 0) != real_or(one, "churn_messages", 0))) {
		/* Transactions of K messages and anything else are not one unit: their counts
		 * would not add up. */
		snprintf(why, n, "a --churn record merges only with --churn records of the same "
			 "--churn-messages");
		return -EINVAL;
	}
	if (!err)
		err = histio_merge(all, one);
	if (err)
		snprintf(why, n, "%s", err == -EINVAL ? (one->error[0] ? one->error : all->error) :
			 err == -EOVERFLOW ? all->error : strerror(-err));
	return err;
}

int record_merge_files(struct load_result *r, struct load_config *cfg)
{
	struct histio_record *all = malloc(sizeof(*all)), *one = malloc(sizeof(*one));
	char why[HISTIO_ERROR_MAX + 64];
	unsigned n = 0;
	int err = 0;

	if (!all || !one) {
		fprintf(stderr, "echo-load: out of memory\n");
		free(all);
		free(one);
		return -ENOMEM;
	}
	histio_init(all);
	histio_init(one);
	for (char **p = cfg->merge_files; *p && !err; p++, n++) {
		FILE *f = fopen(*p, "r");

		if (!f) {
			err = -errno;
			fprintf(stderr, "echo-load: cannot read '%s': %s\n", *p, strerror(errno));
			break;
		}
		err = record_merge_stream(all, one, f, why, sizeof(why));
		fclose(f);
		if (err)
			fprintf(stderr, "echo-load: '%s': %s\n", *p, why);
	}
	if (!err && (err = record_unpack(r, cfg, all, n)) < 0)
		fprintf(stderr, "echo-load: out of memory\n");
	histio_free(all);
	histio_free(one);
	free(all);
	free(one);
	return err;
}

/* The interval of ci_pcts[i], or -1 when not resolved. */
static int ci_of(const struct load_result *r, unsigned i, struct latci *ci)
{
	const struct hist *const *blocks = (const struct hist *const *)r->block;

	memset(ci, 0, sizeof(*ci));
	ci->why = LATCI_FEW;
	if (latci_compute(r->lat, blocks, LOAD_CI_BLOCKS, ci_pcts[i].pct, ci) < 0 || !ci->resolved)
		return -1;
	return 0;
}

void report_ci_human(FILE *f, const struct load_result *r)
{
	fputs("  Latency 95 % CI (us):", f);
	for (unsigned i = 0; i < sizeof(ci_pcts) / sizeof(ci_pcts[0]); i++) {
		struct latci ci;

		if (ci_of(r, i, &ci) < 0)
			fprintf(f, " %s %s", ci_pcts[i].key, latci_unresolved_text(ci.why));
		else
			fprintf(f, " %s [%.2f, %.2f]", ci_pcts[i].key, ci.lo_ns / 1000.0,
				ci.hi_ns / 1000.0);
		fputc(i + 1 < sizeof(ci_pcts) / sizeof(ci_pcts[0]) ? ',' : '\n', f);
	}
}

void report_ci_json(FILE *f, const struct load_result *r)
{
	fputc('{', f);
	for (unsigned i = 0; i < sizeof(ci_pcts) / sizeof(ci_pcts[0]); i++) {
		struct latci ci;

		fprintf(f, "%s\"%s\": ", i ? ", " : "", ci_pcts[i].key);
		if (ci_of(r, i, &ci) < 0)
			fprintf(f, "\"%s\"", latci_unresolved_text(ci.why));
		else
			fprintf(f, "[%.3f, %.3f]", ci.lo_ns / 1000.0, ci.hi_ns / 1000.0);
	}
	fputc('}', f);
}
