/* The three views of one result: the human table (wrk's style), JSON and CSV. Units as in
 * docs/CONTRACTS.md: rates SI (MB/s = 10^6 B/s), latencies in microseconds, null in JSON and
 * an empty CSV field where a value does not apply. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "json.h"
#include "load.h"
#include "loader.h"
#include "series.h"

static const struct { const char *key; const char *label; double pct; } pcts[] = {
	{ "p50", "p50", 50 }, { "p90", "p90", 90 }, { "p99", "p99", 99 },
	{ "p999", "p99.9", 99.9 }, { "p9999", "p99.99", 99.99 },
};
#define NPCTS (sizeof(pcts) / sizeof(pcts[0]))

const char *mode_name(const struct load_config *cfg)
{
	if (cfg->churn)
		return "churn";
	switch (cfg->mode) {
	case MODE_OPEN: return "open";
	case MODE_STREAM: return "stream";
	default: return "closed";
	}
}

const char *transport_name(const struct load_config *cfg)
{
	if (cfg->target.family == AF_UNIX)
		return "unix";   /* stream sockets only (load_options.c) */
	return cfg->tp->name;
}

void source_text(const struct load_config *cfg, char *buf, size_t len)
{
	if (!cfg->src_count)
		snprintf(buf, len, "%s", "");
	else
		ipv4_range_format(cfg->src_first, cfg->src_first + cfg->src_count - 1, buf, len);
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static double per_sec(uint64_t n, double s) { return s > 0 ? (double)n / s : 0.0; }

/* Open loop: the share of the window the load threads spent runnable, waiting for a CPU. */
static double cpu_wait_share(const struct load_result *r)
{
	double span = (double)r->threads * r->duration_s;

	return span > 0 ? r->cpu_wait_s / span : NAN;
}

static int finish(FILE *f)
{
	return fflush(f) != 0 || ferror(f) ? -EIO : 0;
}

/* SI units in the style of wrk: 1.23k, 4.56MB (10^3 steps, as every rate in echobench). */
static const char *scaled(double v, const char *unit, char *buf, size_t n)
{
	static const char *const pfx[] = { "", "k", "M", "G", "T" };
	unsigned i = 0;

	while (fabs(v) >= 1000 && i < 4) {
		v /= 1000;
		i++;
	}
	snprintf(buf, n, "%.2f%s%s", v, pfx[i], unit);
	return buf;
}

static void human_row(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f, "    %-12s", name);
	if (!h || !hist_count(h)) {
		fprintf(f, " (no samples)\n");
		return;
	}
	for (unsigned i = 0; i < NPCTS; i++)
		fprintf(f, " %9.2f", us(hist_percentile(h, pcts[i].pct)));
	fprintf(f, " %9.2f %9.2f %9.2f\n", us(hist_max(h)), hist_mean(h) / 1000.0,
		hist_stdev(h) / 1000.0);
}

static void human_header(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;
	char size[48];

	if (cfg->size_lo == cfg->size_hi)
		snprintf(size, sizeof(size), "%llu B", (unsigned long long)cfg->size_lo);
	else
		snprintf(size, sizeof(size), "%llu-%llu B", (unsigned long long)cfg->size_lo,
			 (unsigned long long)cfg->size_hi);
	fprintf(f, "Running %.2fs test @ %s (%s, %s engine, %s%s%s)\n", cfg->duration_ns / 1e9,
		cfg->target.text, transport_name(cfg), cfg->engine ? cfg->engine->name : "unknown",
		cfg->churn ? "churn, " : "", cfg->mode == MODE_OPEN ? "open loop" :
		cfg->mode == MODE_STREAM ? "stream" : "closed loop",
		cfg->warmup_ns ? ", after warmup" : "");
	if (cfg->churn)
		fprintf(f, "  Transactions: connect, %llu message%s, close (%s)\n",
			(unsigned long long)cfg->churn_messages, cfg->churn_messages == 1 ? "" : "s",
			cfg->close_rst ? "rst: SO_LINGER 0" : "fin");
	fprintf(f, "  %llu threads and %llu connections, ", (unsigned long long)r->threads,
		(unsigned long long)r->connections);
	if (cfg->processes > 1)
		fprintf(f, "in %llu processes, ", (unsigned long long)cfg->processes);
	if (cfg->mode == MODE_OPEN && !r->pipeline)
		fprintf(f, "%.0f msgs/s scheduled, in flight unbounded, ", r->rate_target);
	else if (cfg->mode == MODE_OPEN)
		fprintf(f, "%.0f msgs/s scheduled, at most %llu in flight each, ", r->rate_target,
			(unsigned long long)r->pipeline);
	else
		fprintf(f, "%llu in flight each, ", (unsigned long long)r->pipeline);
	fprintf(f, "%s messages, seed %llu%s\n", size, (unsigned long long)cfg->seed,
		cfg->verify ? "" : ", not verified");
}

static void human_health(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;

	if (cfg->churn)
		fprintf(f, "  Slots: %llu; transactions: %llu connected, %llu failed; %llu slots "
			"finished none in the window", (unsigned long long)r->connections,
			(unsigned long long)r->connected, (unsigned long long)r->c.conns_failed,
			(unsigned long long)r->starved);
	else
		fprintf(f, "  Connections: %llu of %llu connected, %llu lost, %llu without a reply "
			"in the window", (unsigned long long)r->connected,
			(unsigned long long)r->connections, (unsigned long long)r->c.conns_failed,
			(unsigned long long)r->starved);
	fprintf(f, "; msgs per %s min %llu, median %llu, max %llu\n",
		cfg->churn ? "slot" : "connection", (unsigned long long)hist_min(r->per_conn),
		(unsigned long long)hist_percentile(r->per_conn, 50),
		(unsigned long long)hist_max(r->per_conn));
	if (cfg->mode == MODE_OPEN)
		fprintf(f, "  Rate (%s/s): target %.2f, %s %.2f, answered %.2f\n",
			cfg->churn ? "transactions" : "msgs", r->rate_target,
			cfg->churn ? "started" : "sent", result_rate_sent(r), result_rate_achieved(r));
	if (r->lag && hist_count(r->lag)) {
		fprintf(f, "  Send lag, the client's own (us): p50 %.2f, p99 %.2f, max %.2f; "
			"waits for a slot (us): p50 %.2f, p99 %.2f, max %.2f, %.1f %% of messages\n",
			us(hist_percentile(r->lag, 50)), us(hist_percentile(r->lag, 99)),
			us(hist_max(r->lag)), us(hist_percentile(r->slot_wait, 50)),
			us(hist_percentile(r->slot_wait, 99)), us(hist_max(r->slot_wait)),
			result_slot_wait_share(r) * 100);
		fprintf(f, "  Pacing: woke up to %.0f us early and polled %.3fs; waited for a CPU "
			"%.1f %% of the time; timer wake-ups late (us) p50 %.2f, p99 %.2f, max "
			"%.2f\n", r->wake_early_us, r->spin_s, cpu_wait_share(r) * 100,
			us(hist_percentile(r->wake_late, 50)), us(hist_percentile(r->wake_late, 99)),
			us(hist_max(r->wake_late)));
	}
	fprintf(f, "  Client CPU: user %.2fs, sys %.2fs, busiest thread %.0f %%\n", r->user_s,
		r->sys_s, r->busiest * 100);
	fprintf(f, "  Wall %.2fs; answered after the window %llu", r->wall_s,
		(unsigned long long)r->c.drained);
	if (r->start_lag_us >= 0)
		fprintf(f, "; started %.0f us after --start-at", r->start_lag_us);
	fputc('\n', f);
	fputs("  Checks:", f);
	for (unsigned i = 0; i < CHECKS; i++)
		fprintf(f, " %s %s%s", r->checks[i].name, r->checks[i].ok ? "ok" : "FAILED",
			i + 1 < CHECKS ? "," : "\n");
}

int report_human(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;
	char a[32], b[32];

	human_header(f, r);
	fputs("  Latency (us)", f);
	for (unsigned i = 0; i < NPCTS; i++)
		fprintf(f, " %9s", pcts[i].label);
	fprintf(f, " %9s %9s %9s\n", "max", "mean", "stdev");
	human_row(f, cfg->churn ? "transaction" : cfg->mode == MODE_OPEN ? "corrected" : "echo",
		  r->lat);
	if (cfg->mode == MODE_OPEN)
		human_row(f, "uncorrected", r->lat_unc);
	human_row(f, "connect", r->connect);
	if (cfg->churn)
		human_row(f, "first reply", r->first_reply);
	if (hist_count(r->lat))
		report_ci_human(f, r);
	fputs("  ", f);
	if (cfg->churn)
		fprintf(f, "%llu transactions, ", (unsigned long long)r->c.transactions);
	fprintf(f, "%llu messages, %s echoed in %.2fs\n", (unsigned long long)r->c.messages,
		scaled((double)r->c.bytes, "B", a, sizeof(a)), r->duration_s);
	fprintf(f, "  Errors: refused %llu, reset %llu, timeout %llu, eof %llu, other %llu",
		(unsigned long long)r->c.errors[ERR_REFUSED],
		(unsigned long long)r->c.errors[ERR_RESET],
		(unsigned long long)r->c.errors[ERR_TIMEOUT],
		(unsigned long long)r->c.errors[ERR_EOF],
		(unsigned long long)r->c.errors[ERR_OTHER]);
	fprintf(f, "; mismatches %llu", (unsigned long long)r->c.mismatches);
	if (r->c.short_bytes || r->c.extra_bytes)
		fprintf(f, ", short %llu B, extra %llu B", (unsigned long long)r->c.short_bytes,
			(unsigned long long)r->c.extra_bytes);
	fprintf(f, ", lost %llu, unanswered %llu", (unsigned long long)r->c.lost,
		(unsigned long long)r->c.unanswered);
	if (cfg->churn)
		fprintf(f, "; transactions: failed %llu, no local port %llu",
			(unsigned long long)r->c.conns_failed, (unsigned long long)r->c.no_port);
	fputc('\n', f);
	human_health(f, r);
	if (cfg->churn)
		fprintf(f, "Transactions/sec: %10.2f\n", per_sec(r->c.transactions, r->duration_s));
	fprintf(f, "Msgs/sec: %10.2f\n", per_sec(r->c.messages, r->duration_s));
	fprintf(f, "Transfer/sec: %s/s\n",
		scaled(per_sec(r->c.bytes, r->duration_s), "B", b, sizeof(b)));
	if (!r->complete)
		fprintf(f, "INCOMPLETE: %s\n", r->error);
	for (unsigned i = 0; i < CHECKS; i++)
		if (!r->checks[i].ok)
			fprintf(f, "WARNING: %s\n", r->checks[i].reason);
	return finish(f);
}

/* A JSON number, or null for NAN. */
static void jnum(FILE *f, double v)
{
	if (isnan(v) || isinf(v))
		fputs("null", f);
	else
		fprintf(f, "%.3f", v);
}

static void json_latency(FILE *f, const struct hist *h)
{
	if (!h) {
		fputs("null", f);
		return;
	}
	fputc('{', f);
	for (unsigned i = 0; i < NPCTS; i++)
		fprintf(f, "\"%s\": %.3f, ", pcts[i].key, us(hist_percentile(h, pcts[i].pct)));
	fprintf(f, "\"max\": %.3f, \"min\": %.3f, \"mean\": %.3f, \"stdev\": %.3f, "
		"\"count\": %llu}", us(hist_max(h)), us(hist_min(h)), hist_mean(h) / 1000.0,
		hist_stdev(h) / 1000.0, (unsigned long long)hist_count(h));
}

static void json_intervals(FILE *f, const struct series *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('[', f);
	for (unsigned i = 0; i < series_len(s); i++) {
		double span = series_span_ns(s, i) / 1e9;
		uint64_t n = series_answers(s, i);

		fprintf(f, "%s{\"start_s\": %.3f, \"duration_s\": %.3f, \"messages\": %llu, "
			"\"msgs_per_sec\": %.3f, \"p50_us\": ", i ? ", " : "",
			series_start_ns(s, i) / 1e9, span, (unsigned long long)n,
			span > 0 ? n / span : 0.0);
		jnum(f, n ? us(series_percentile(s, i, 50)) : NAN);
		fputs(", \"p99_us\": ", f);
		jnum(f, n ? us(series_percentile(s, i, 99)) : NAN);
		fputc('}', f);
	}
	fputc(']', f);
}

static void json_checks(FILE *f, const struct load_result *r)
{
	bool first = true;

	fputs(", \"checks\": [", f);
	for (unsigned i = 0; i < CHECKS; i++) {
		const struct check *k = &r->checks[i];

		fprintf(f, "%s{\"name\": \"%s\", \"ok\": %s, \"value\": ", i ? ", " : "", k->name,
			k->ok ? "true" : "false");
		jnum(f, k->value);
		fputs(", \"limit\": ", f);
		jnum(f, k->limit);
		fputc('}', f);
	}
	fprintf(f, "], \"valid\": %s, \"invalid_reasons\": [", r->valid ? "true" : "false");
	for (unsigned i = 0; i < CHECKS; i++) {
		if (r->checks[i].ok)
			continue;
		fputs(first ? "" : ", ", f);
		json_write_string(f, r->checks[i].reason);
		first = false;
	}
	fputc(']', f);
}

/* {p50, p99, max} in microseconds, or null. */
static void json_short(FILE *f, const struct hist *h)
{
	if (h && hist_count(h))
		fprintf(f, "{\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}",
			us(hist_percentile(h, 50)), us(hist_percentile(h, 99)), us(hist_max(h)));
	else
		fputs("null", f);
}

/* Open loop: how late sends went, whose lateness it was, and what punctuality cost. */
static void json_lateness(FILE *f, const struct load_result *r)
{
	bool open = r->lag && hist_count(r->lag);

	fputs(", \"send_lag_us\": ", f);
	json_short(f, open ? r->lag : NULL);
	fputs(", \"slot_wait_us\": ", f);
	json_short(f, open ? r->slot_wait : NULL);
	fputs(", \"slot_wait_share\": ", f);
	if (open)
		fprintf(f, "%.6f", result_slot_wait_share(r));
	else
		fputs("null", f);
	fputs(", \"pacing\": ", f);
	if (r->cfg->mode == MODE_OPEN) {
		fprintf(f, "{\"wake_early_us\": %.3f, \"spin_s\": %.6f, \"cpu_wait_share\": ",
			r->wake_early_us, r->spin_s);
		jnum(f, cpu_wait_share(r));
		fputs(", \"wake_late_us\": ", f);
		json_short(f, r->wake_late);
		fputc('}', f);
	} else {
		fputs("null", f);
	}
	fputs(", \"inflight_max\": ", f);
	jnum(f, r->cfg->mode == MODE_OPEN ? (double)r->inflight_max : NAN);
}

static void json_health(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;

	fputs(", \"rate_target\": ", f);
	jnum(f, cfg->mode == MODE_OPEN ? r->rate_target : NAN);
	fprintf(f, ", \"rate_sent\": %.3f, \"rate_achieved\": %.3f, \"wall_s\": %.6f, "
		"\"drained_after_window\": %llu", result_rate_sent(r),
		result_rate_achieved(r), r->wall_s, (unsigned long long)r->c.drained);
	json_lateness(f, r);
	fprintf(f, ", \"client_cpu\": {\"user_s\": %.3f, \"sys_s\": %.3f, "
		"\"busiest_thread\": %.4f}", r->user_s, r->sys_s, r->busiest);
	fputs(", \"latency_ci_us\": ", f);
	report_ci_json(f, r);
	fputs(", \"intervals\": ", f);
	json_intervals(f, r->series);
	fprintf(f, ", \"msgs_per_conn\": {\"min\": %llu, \"median\": %llu, \"max\": %llu}, "
		"\"starved_connections\": %llu, \"connections_lost\": %llu, \"start_lag_us\": ",
		(unsigned long long)hist_min(r->per_conn),
		(unsigned long long)hist_percentile(r->per_conn, 50),
		(unsigned long long)hist_max(r->per_conn), (unsigned long long)r->starved,
		(unsigned long long)r->c.conns_failed);
	jnum(f, r->start_lag_us >= 0 ? r->start_lag_us : NAN);
	json_checks(f, r);
}

/* Churn's own fields, null in the other modes. */
static void json_churn(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;

	if (!cfg->churn) {
		fputs(", \"transactions\": null, \"transactions_per_sec\": null, "
		      "\"churn_messages\": null, \"close\": null, \"no_local_port\": null", f);
		return;
	}
	fprintf(f, ", \"transactions\": %llu, \"transactions_per_sec\": %.3f, "
		"\"churn_messages\": %llu, \"close\": \"%s\", \"no_local_port\": %llu",
		(unsigned long long)r->c.transactions, per_sec(r->c.transactions, r->duration_s),
		(unsigned long long)cfg->churn_messages, cfg->close_rst ? "rst" : "fin",
		(unsigned long long)r->c.no_port);
}

int report_json(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;

	fprintf(f, "{\"tool\": \"echo-load\", \"version\": \"%s\", \"target\": ", ECHOBENCH_VERSION);
	json_write_string(f, cfg->target.text);
	fprintf(f, ", \"transport\": \"%s\", \"mode\": \"%s\", \"engine\": ", transport_name(cfg),
		mode_name(cfg));
	if (cfg->engine)
		fprintf(f, "\"%s\"", cfg->engine->name);
	else
		fputs("null", f);
	fprintf(f, ", \"processes\": %llu, \"source\": ", (unsigned long long)cfg->processes);
	if (cfg->src_count) {
		char src[64];

		source_text(cfg, src, sizeof(src));
		json_write_string(f, src);
	} else {
		fputs("null", f);
	}
	fprintf(f, ", \"source_auto\": %s", cfg->src_auto ? "true" : "false");
	fprintf(f, ", \"connections\": %llu, \"connected\": %llu, \"threads\": %llu, "
		"\"pipeline\": ",
		(unsigned long long)r->connections, (unsigned long long)r->connected,
		(unsigned long long)r->threads);
	if (r->pipeline)
		fprintf(f, "%llu", (unsigned long long)r->pipeline);
	else
		fputs("\"unbounded\"", f);
	if (cfg->size_lo == cfg->size_hi)
		fprintf(f, ", \"size\": %llu", (unsigned long long)cfg->size_lo);
	else
		fprintf(f, ", \"size\": \"%llu-%llu\"", (unsigned long long)cfg->size_lo,
			(unsigned long long)cfg->size_hi);
	fprintf(f, ", \"size_min\": %llu, \"size_max\": %llu, \"rate\": ",
		(unsigned long long)cfg->size_lo, (unsigned long long)cfg->size_hi);
	jnum(f, cfg->mode == MODE_OPEN ? r->rate_target : NAN);
	fprintf(f, ", \"seed\": %llu, \"verify\": %s, \"duration_s\": %.6f, \"warmup_s\": %.6f",
		(unsigned long long)cfg->seed, cfg->verify ? "true" : "false", r->duration_s,
		cfg->warmup_ns / 1e9);
	fprintf(f, ", \"messages\": %llu, \"bytes\": %llu, \"msgs_per_sec\": %.3f, "
		"\"bytes_per_sec\": %.3f",
		(unsigned long long)r->c.messages, (unsigned long long)r->c.bytes,
		per_sec(r->c.messages, r->duration_s), per_sec(r->c.bytes, r->duration_s));
	json_churn(f, r);
	fputs(", \"latency_us\": ", f);
	json_latency(f, r->lat);
	fputs(", \"latency_uncorrected_us\": ", f);
	json_latency(f, cfg->mode == MODE_OPEN ? r->lat_unc : NULL);
	fputs(", \"connect_us\": ", f);
	json_latency(f, r->connect);
	fputs(", \"first_reply_us\": ", f);
	json_latency(f, cfg->churn ? r->first_reply : NULL);
	fputs(", \"errors\": {", f);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		fprintf(f, "%s\"%s\": %llu", k ? ", " : "", err_kind_name[k],
			(unsigned long long)r->c.errors[k]);
	fprintf(f, "}, \"mismatches\": %llu, \"short_bytes\": %llu, \"extra_bytes\": %llu, "
		"\"lost\": %llu, \"unanswered\": %llu",
		(unsigned long long)r->c.mismatches, (unsigned long long)r->c.short_bytes,
		(unsigned long long)r->c.extra_bytes, (unsigned long long)r->c.lost,
		(unsigned long long)r->c.unanswered);
	json_health(f, r);
	fprintf(f, ", \"complete\": %s, \"error\": ", r->complete ? "true" : "false");
	json_write_string(f, r->complete ? NULL : r->error);
	fputs("}\n", f);
	return finish(f);
}

static void csv_text(FILE *f, const char *s)
{
	/* RFC 4180: quote every text field; double the quotes inside. */
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s == '\n' ? ' ' : *s, f);
	}
	fputc('"', f);
}

/* A CSV number, or an empty field for NAN (JSON's null). */
static void cnum(FILE *f, double v)
{
	if (isnan(v) || isinf(v))
		fputc(',', f);
	else
		fprintf(f, ",%.3f", v);
}

static void csv_latency(FILE *f, const struct hist *h)
{
	for (unsigned i = 0; i < NPCTS; i++)
		cnum(f, h ? us(hist_percentile(h, pcts[i].pct)) : NAN);
	cnum(f, h ? us(hist_max(h)) : NAN);
	cnum(f, h ? hist_mean(h) / 1000.0 : NAN);
	cnum(f, h ? hist_stdev(h) / 1000.0 : NAN);
}

static void csv_header(FILE *f)
{
	static const char *const lat_cols[] = { "p50", "p90", "p99", "p999", "p9999", "max",
		"mean", "stdev" };

	fputs("target,transport,mode,connections,threads,pipeline,size_min,size_max,rate,"
	      "duration_s,messages,bytes,msgs_per_sec,bytes_per_sec,transactions,"
	      "transactions_per_sec,churn_messages", f);
	for (unsigned i = 0; i < 8; i++)
		fprintf(f, ",latency_%s_us", lat_cols[i]);
	for (unsigned i = 0; i < 8; i++)
		fprintf(f, ",uncorrected_%s_us", lat_cols[i]);
	for (unsigned i = 0; i < 8; i++)
		fprintf(f, ",connect_%s_us", lat_cols[i]);
	for (unsigned i = 0; i < 8; i++)
		fprintf(f, ",first_reply_%s_us", lat_cols[i]);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		fprintf(f, ",errors_%s", err_kind_name[k]);
	fputs(",mismatches,short_bytes,extra_bytes,lost,unanswered,rate_target,rate_sent,"
	      "rate_achieved,wall_s,drained_after_window,send_lag_p50_us,send_lag_p99_us,"
	      "send_lag_max_us,slot_wait_p50_us,slot_wait_p99_us,slot_wait_max_us,"
	      "slot_wait_share,spin_s,client_user_s,client_sys_s,busiest_thread,"
	      "starved_connections,valid,complete,error\n", f);
}

int report_csv(FILE *f, const struct load_result *r, bool header)
{
	const struct load_config *cfg = r->cfg;
	bool open = cfg->mode == MODE_OPEN, lag = r->lag && hist_count(r->lag);

	if (header)
		csv_header(f);
	csv_text(f, cfg->target.text);
	fprintf(f, ",%s,%s,%llu,%llu,", transport_name(cfg), mode_name(cfg),
		(unsigned long long)r->connections, (unsigned long long)r->threads);
	if (r->pipeline)
		fprintf(f, "%llu", (unsigned long long)r->pipeline);
	else
		fputs("unbounded", f);
	fprintf(f, ",%llu,%llu", (unsigned long long)cfg->size_lo,
		(unsigned long long)cfg->size_hi);
	cnum(f, open ? r->rate_target : NAN);
	fprintf(f, ",%.6f,%llu,%llu,%.3f,%.3f", r->duration_s,
		(unsigned long long)r->c.messages, (unsigned long long)r->c.bytes,
		per_sec(r->c.messages, r->duration_s), per_sec(r->c.bytes, r->duration_s));
	if (cfg->churn)
		fprintf(f, ",%llu,%.3f,%llu", (unsigned long long)r->c.transactions,
			per_sec(r->c.transactions, r->duration_s),
			(unsigned long long)cfg->churn_messages);
	else
		fputs(",,,", f);
	csv_latency(f, r->lat);
	csv_latency(f, open ? r->lat_unc : NULL);
	csv_latency(f, r->connect);
	csv_latency(f, cfg->churn ? r->first_reply : NULL);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		fprintf(f, ",%llu", (unsigned long long)r->c.errors[k]);
	fprintf(f, ",%llu,%llu,%llu,%llu,%llu", (unsigned long long)r->c.mismatches,
		(unsigned long long)r->c.short_bytes, (unsigned long long)r->c.extra_bytes,
		(unsigned long long)r->c.lost, (unsigned long long)r->c.unanswered);
	cnum(f, open ? r->rate_target : NAN);
	fprintf(f, ",%.3f,%.3f,%.6f,%llu", result_rate_sent(r), result_rate_achieved(r),
		r->wall_s, (unsigned long long)r->c.drained);
	cnum(f, lag ? us(hist_percentile(r->lag, 50)) : NAN);
	cnum(f, lag ? us(hist_percentile(r->lag, 99)) : NAN);
	cnum(f, lag ? us(hist_max(r->lag)) : NAN);
	cnum(f, lag ? us(hist_percentile(r->slot_wait, 50)) : NAN);
	cnum(f, lag ? us(hist_percentile(r->slot_wait, 99)) : NAN);
	cnum(f, lag ? us(hist_max(r->slot_wait)) : NAN);
	cnum(f, lag ? result_slot_wait_share(r) : NAN);
	cnum(f, open ? r->spin_s : NAN);
	fprintf(f, ",%.3f,%.3f,%.4f,%llu,%s,%s,", r->user_s, r->sys_s, r->busiest,
		(unsigned long long)r->starved, r->valid ? "true" : "false",
		r->complete ? "true" : "false");
	csv_text(f, r->complete ? "" : r->error);
	fputc('\n', f);
	return finish(f);
}
