/* The run's result: the load threads summed into one struct load_result, and the self-checks
 * that say how far its figures can be trusted (clients/README.md, "How far to trust a figure").
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "load.h"
#include "loader.h"
#include "series.h"

int result_init(struct load_result *r, const struct load_config *cfg)
{
	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->connections = cfg->connections;
	r->start_lag_us = -1;
	r->connect = hist_new();
	r->lat = hist_new();
	r->per_conn = hist_new();
	if (!r->connect || !r->lat || !r->per_conn)
		return -ENOMEM;
	if (cfg->churn && !(r->first_reply = hist_new()))
		return -ENOMEM;
	if (cfg->mode == MODE_OPEN && (!(r->lat_unc = hist_new()) || !(r->lag = hist_new()) ||
				       !(r->slot_wait = hist_new()) || !(r->wake_late = hist_new())))
		return -ENOMEM;
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
		if (!(r->block[b] = hist_new()))
			return -ENOMEM;
	if (!cfg->merge_files && !(r->series = series_new(cfg->duration_ns, cfg->interval_ns)))
		return -ENOMEM;
	return 0;
}

void result_free(struct load_result *r)
{
	hist_free(r->connect);
	hist_free(r->first_reply);
	hist_free(r->lat);
	hist_free(r->lat_unc);
	hist_free(r->lag);
	hist_free(r->slot_wait);
	hist_free(r->wake_late);
	hist_free(r->per_conn);
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
		hist_free(r->block[b]);
	series_free(r->series);
}

static void add_counts(struct load_counts *d, const struct load_counts *s)
{
	d->transactions += s->transactions;
	d->no_port += s->no_port;
	d->messages += s->messages;
	d->bytes += s->bytes;
	d->drained += s->drained;
	d->sent += s->sent;
	d->mismatches += s->mismatches;
	d->short_bytes += s->short_bytes;
	d->extra_bytes += s->extra_bytes;
	d->lost += s->lost;
	d->unanswered += s->unanswered;
	d->conns_failed += s->conns_failed;
	for (unsigned k = 0; k < ERR_KINDS; k++)
		d->errors[k] += s->errors[k];
}

static void describe_errors(char *buf, size_t len, const struct load_counts *c)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned k = 0; k < ERR_KINDS; k++) {
		if (!c->errors[k] || used >= len)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%llu %s", used ? ", " : "",
					 (unsigned long long)c->errors[k], err_kind_name[k]);
	}
}

void result_no_connection(struct load_result *r, long connected)
{
	char why[160];

	r->complete = false;
	if (connected == -EINTR) {
		snprintf(r->error, sizeof(r->error), "interrupted while connecting");
	} else if (connected < 0) {
		snprintf(r->error, sizeof(r->error), "cannot connect: %s",
			 strerror((int)-connected));
	} else {
		describe_errors(why, sizeof(why), &r->c);
		snprintf(r->error, sizeof(r->error), "cannot connect to %s: %s (every connection "
			 "failed: %s)", r->cfg->target.text, strerror(r->c.first_errno), why);
	}
}

static void process_cpu(struct load_result *r)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return;
	r->user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	r->sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

void result_merge_loaders(struct load_result *r, const struct loader *ws, uint64_t n,
			  bool interrupted)
{
	uint64_t measured_end = 0, early = 0, answered = 0;
	char why[160];

	if (r->cfg->churn)
		r->connected = 0;   /* counted per transaction below */
	for (uint64_t t = 0; t < n; t++) {
		const struct loader *w = &ws[t];
		uint64_t end = w->t_stopped < w->t_end ? w->t_stopped : w->t_end;

		hist_merge(r->lat, w->lat);
		if (r->first_reply && w->first_reply) {
			hist_merge(r->connect, w->connect);
			hist_merge(r->first_reply, w->first_reply);
			r->connected += w->connects;
		}
		if (r->lat_unc && w->lat_unc) {
			hist_merge(r->lat_unc, w->lat_unc);
			hist_merge(r->lag, w->lag);
			hist_merge(r->slot_wait, w->slot_wait);
			hist_merge(r->wake_late, w->wake_late);
			r->spin_s += (double)w->spin_ns / 1e9;
			r->cpu_wait_s += (double)w->cpu_wait_ns / 1e9;
			if (w->wake_early_max / 1000.0 > r->wake_early_us)
				r->wake_early_us = (double)w->wake_early_max / 1000.0;
			if (w->inflight_max > r->inflight_max)
				r->inflight_max = w->inflight_max;
		}
		for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
			hist_merge(r->block[b], w->block[b]);
		series_merge(r->series, w->series);
		add_counts(&r->c, &w->c);
		for (uint32_t i = 0; i < w->nconns; i++) {
			hist_record(r->per_conn, w->conns[i].answered);
			r->starved += !w->conns[i].answered;
		}
		if (w->busy > r->busiest)
			r->busiest = w->busy;
		if (end > measured_end)
			measured_end = end;
		early += w->stopped_early;
		answered += w->done_total;
		if (w->error && r->complete) {
			r->complete = false;
			snprintf(r->error, sizeof(r->error), "%s", w->error_text);
		}
	}
	process_cpu(r);
	r->duration_s = measured_end > ws[0].t_measure ?
		(double)(measured_end - ws[0].t_measure) / 1e9 : 0.0;
	if (!r->complete)
		return;
	describe_errors(why, sizeof(why), &r->c);
	if (interrupted) {
		r->complete = false;
		snprintf(r->error, sizeof(r->error), "interrupted after %.2fs of measurement",
			 r->duration_s);
	} else if (early == n && !answered) {
		r->complete = false;
		snprintf(r->error, sizeof(r->error), "no answer from %s: every connection "
			 "failed (%s)", r->cfg->target.text, why);
	} else if (early == n) {
		r->complete = false;
		snprintf(r->error, sizeof(r->error), "every connection to %s was lost after "
			 "%.2fs of measurement (%s)", r->cfg->target.text, r->duration_s, why);
	}
}

double result_rate_achieved(const struct load_result *r)
{
	uint64_t n = r->cfg->churn ? r->c.transactions : r->c.messages;

	return r->duration_s > 0 ? (double)n / r->duration_s : 0.0;
}

/* What the rates count. */
static const char *unit(const struct load_result *r)
{
	return r->cfg->churn ? "transactions" : "msgs";
}

void result_require_answers(struct load_result *r)
{
	char why[160];

	if (!r->complete || r->c.messages)
		return;
	r->complete = false;
	if (!r->cfg->churn) {
		snprintf(r->error, sizeof(r->error), "no message was answered inside the measured "
			 "window");
		return;
	}
	describe_errors(why, sizeof(why), &r->c);
	snprintf(r->error, sizeof(r->error), "no transaction with %s completed inside the "
		 "measured window (failed: %s; no local port: %llu)", r->cfg->target.text,
		 why[0] ? why : "none", (unsigned long long)r->c.no_port);
}

double result_rate_sent(const struct load_result *r)
{
	return r->duration_s > 0 ? (double)r->c.sent / r->duration_s : 0.0;
}

static struct check *set(struct load_result *r, enum check_id id, const char *name, bool ok,
			 double value, double limit)
{
	struct check *k = &r->checks[id];

	k->name = name;
	k->ok = ok;
	k->value = value;
	k->limit = limit;
	k->reason[0] = '\0';
	return k;
}

static void check_rate(struct load_result *r)
{
	const struct load_config *cfg = r->cfg;
	double got = result_rate_achieved(r), want = r->rate_target;
	uint64_t missing = r->c.unanswered + r->c.lost;
	struct check *k;

	if (cfg->mode != MODE_OPEN) {
		set(r, CHECK_RATE, "rate", true, got, NAN);
		return;
	}
	k = set(r, CHECK_RATE, "rate", fabs(got - want) <= 0.05 * want && !missing, got, want);
	if (!k->ok)
		snprintf(k->reason, sizeof(k->reason), "rate: %.0f %s/s answered in the window "
			 "of %.0f asked (%+.1f %%), %llu unanswered", got, unit(r), want,
			 want > 0 ? (got - want) / want * 100 : 0.0, (unsigned long long)missing);
}

/* Only the client's own lateness counts: a message that waited for a slot (the server had
 * not answered the connection's -p messages yet) waited for the server, and that wait is in
 * its corrected latency already (slot_wait_us). */
static void check_send_lag(struct load_result *r)
{
	double p99, limit;
	struct check *k;

	if (r->cfg->mode != MODE_OPEN || !r->lag || !hist_count(r->lag)) {
		set(r, CHECK_SEND_LAG, "send_lag", true, NAN, NAN);
		return;
	}
	p99 = hist_percentile(r->lag, 99) / 1000.0;
	/* 10 % of the mean interval between two sends of one load thread, at least 1 ms. */
	limit = 0.1 * 1e6 * (double)r->threads / r->rate_target;
	if (limit < 1000)
		limit = 1000;
	k = set(r, CHECK_SEND_LAG, "send_lag", p99 <= limit, p99, limit);
	if (!k->ok)
		snprintf(k->reason, sizeof(k->reason), "send_lag: the client itself %s late, p99 "
			 "%.0f us after the due time with a slot free (limit %.0f us); waits for "
			 "the server's answers are not counted",
			 r->cfg->churn ? "started transactions" : "sent", p99, limit);
}

double result_slot_wait_share(const struct load_result *r)
{
	uint64_t zero = 0;

	if (!r->slot_wait || !hist_count(r->slot_wait))
		return NAN;
	/* Bucket 0 holds exactly the value 0 (hist.h: exact below 2048 ns). */
	if (hist_next_bucket(r->slot_wait, 0, &zero) != 0)
		zero = 0;
	return 1.0 - (double)zero / (double)hist_count(r->slot_wait);
}

static void check_cpu(struct load_result *r)
{
	struct check *k = set(r, CHECK_CLIENT_CPU, "client_cpu", r->busiest < 0.9, r->busiest,
			      0.9);

	if (!k->ok)
		snprintf(k->reason, sizeof(k->reason), "client_cpu: a load thread was %.0f %% busy "
			 "(limit 90 %%): the client may be what was measured; use more threads",
			 r->busiest * 100);
}

static void check_verify(struct load_result *r)
{
	uint64_t bad = r->c.mismatches + r->c.extra_bytes;
	struct check *k = set(r, CHECK_VERIFY, "verify", !bad, (double)r->c.mismatches, 0);

	if (!k->ok)
		snprintf(k->reason, sizeof(k->reason), "verify: %llu messages came back different, "
			 "%llu bytes more than sent", (unsigned long long)r->c.mismatches,
			 (unsigned long long)r->c.extra_bytes);
}

/* Churn: every transaction succeeded, every slot finished one in the window (closed loop: in
 * the open loop a slot has work only when the schedule needs it), and no start found the
 * client's own local ports exhausted. The reason names what went wrong. */
static void check_transactions(struct load_result *r)
{
	uint64_t starved = r->cfg->mode == MODE_OPEN ? 0 : r->starved;
	uint64_t bad = r->c.conns_failed + starved + r->c.no_port;
	struct check *k = set(r, CHECK_CONNECTIONS, "connections", !bad,
			      (double)r->c.conns_failed, 0);
	char why[128];
	size_t n = sizeof(k->reason), used;

	if (k->ok)
		return;
	describe_errors(why, sizeof(why), &r->c);
	used = (size_t)snprintf(k->reason, n, "connections:");
	if (r->c.conns_failed && used < n)
		used += (size_t)snprintf(k->reason + used, n - used, " %llu transactions failed "
					 "(%s);", (unsigned long long)r->c.conns_failed, why);
	if (starved && used < n)
		used += (size_t)snprintf(k->reason + used, n - used, " %llu of %llu slots finished "
					 "none in the window;", (unsigned long long)starved,
					 (unsigned long long)r->connections);
	if (r->c.no_port && used < n)
		used += (size_t)snprintf(k->reason + used, n - used, " %llu starts found no local "
					 "port (the client's limit, not the server's);",
					 (unsigned long long)r->c.no_port);
	if (used < n)
		k->reason[used - 1] = '\0';   /* the last ';' */
}

static void check_connections(struct load_result *r)
{
	uint64_t bad = (r->connections - r->connected) + r->c.conns_failed + r->starved;
	uint64_t healthy = r->connections > bad ? r->connections - bad : 0;
	struct check *k = set(r, CHECK_CONNECTIONS, "connections", !bad, (double)healthy,
			      (double)r->connections);

	if (!k->ok)
		snprintf(k->reason, sizeof(k->reason), "connections: %llu of %llu connected, %llu "
			 "lost, %llu got no reply in the window",
			 (unsigned long long)r->connected, (unsigned long long)r->connections,
			 (unsigned long long)r->c.conns_failed, (unsigned long long)r->starved);
}

void result_evaluate(struct load_result *r)
{
	check_rate(r);
	check_send_lag(r);
	check_cpu(r);
	check_verify(r);
	if (r->cfg->churn)
		check_transactions(r);
	else
		check_connections(r);
	r->valid = true;
	for (unsigned i = 0; i < CHECKS; i++)
		r->valid &= r->checks[i].ok;
}
