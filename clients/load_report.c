#include <errno.h>
#include <math.h>
#include <string.h>

#include "load.h"

static const struct { const char *key; double pct; } pcts[] = {
	{ "p50", 50 }, { "p90", 90 }, { "p99", 99 }, { "p999", 99.9 }, { "p9999", 99.99 },
};
#define NPCTS (sizeof(pcts) / sizeof(pcts[0]))

const char *mode_name(enum load_mode m)
{
	switch (m) {
	case MODE_OPEN: return "open";
	case MODE_STREAM: return "stream";
	default: return "closed";
	}
}

static const char *transport(const struct load_config *cfg)
{
	if (cfg->udp)
		return "udp";
	return cfg->target.family == AF_UNIX ? "unix" : "tcp";
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static double per_sec(uint64_t n, double s) { return s > 0 ? (double)n / s : 0.0; }

static int finish(FILE *f)
{
	return fflush(f) != 0 || ferror(f) ? -EIO : 0;
}

/* Human units in the style of wrk: 1.23k, 4.56MB. */
static const char *scaled(double v, const char *unit, double base, char *buf, size_t n)
{
	static const char *const pfx[] = { "", "k", "M", "G", "T" };
	unsigned i = 0;

	while (fabs(v) >= base && i < 4) {
		v /= base;
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

int report_human(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;
	char a[32], b[32], size[48];

	if (cfg->size_lo == cfg->size_hi)
		snprintf(size, sizeof(size), "%llu B", (unsigned long long)cfg->size_lo);
	else
		snprintf(size, sizeof(size), "%llu-%llu B", (unsigned long long)cfg->size_lo,
			 (unsigned long long)cfg->size_hi);
	fprintf(f, "Running %.2fs test @ %s (%s, %s%s)\n", cfg->duration_ns / 1e9,
		cfg->target.text, transport(cfg),
		cfg->mode == MODE_OPEN ? "open loop" : cfg->mode == MODE_STREAM ? "stream" :
		"closed loop",
		cfg->warmup_ns ? ", after warmup" : "");
	fprintf(f, "  %llu threads and %llu connections, ", (unsigned long long)r->threads,
		(unsigned long long)cfg->connections);
	if (cfg->mode == MODE_OPEN)
		fprintf(f, "%.0f msgs/s scheduled, ", cfg->rate);
	else
		fprintf(f, "%llu in flight each, ", (unsigned long long)r->pipeline);
	fprintf(f, "%s messages, seed %llu%s\n", size, (unsigned long long)cfg->seed,
		cfg->verify ? "" : ", not verified");
	fprintf(f, "  Latency (us) %9s %9s %9s %9s %9s %9s %9s %9s\n", "p50", "p90", "p99",
		"p99.9", "p99.99", "max", "mean", "stdev");
	human_row(f, cfg->mode == MODE_OPEN ? "corrected" : "echo", r->lat);
	if (cfg->mode == MODE_OPEN)
		human_row(f, "uncorrected", r->lat_unc);
	human_row(f, "connect", r->connect);
	fprintf(f, "  %llu messages, %s echoed in %.2fs\n", (unsigned long long)r->c.messages,
		scaled((double)r->c.bytes, "B", 1024, a, sizeof(a)), r->duration_s);
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
	if (cfg->udp)
		fprintf(f, ", lost %llu", (unsigned long long)r->c.lost);
	if (cfg->mode == MODE_OPEN)
		fprintf(f, ", unanswered %llu", (unsigned long long)r->c.unanswered);
	fputc('\n', f);
	fprintf(f, "Msgs/sec: %10.2f\n", per_sec(r->c.messages, r->duration_s));
	fprintf(f, "Transfer/sec: %s\n",
		scaled(per_sec(r->c.bytes, r->duration_s), "B", 1024, b, sizeof(b)));
	if (!r->complete)
		fprintf(f, "INCOMPLETE: %s\n", r->error);
	return finish(f);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
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

int report_json(FILE *f, const struct load_result *r)
{
	const struct load_config *cfg = r->cfg;

	fprintf(f, "{\"tool\": \"echo-load\", \"version\": \"%s\", \"target\": ", ECHOBENCH_VERSION);
	json_string(f, cfg->target.text);
	fprintf(f, ", \"transport\": \"%s\", \"mode\": \"%s\"", transport(cfg),
		mode_name(cfg->mode));
	fprintf(f, ", \"connections\": %llu, \"connected\": %llu, \"threads\": %llu, "
		"\"pipeline\": %llu",
		(unsigned long long)cfg->connections, (unsigned long long)r->connected,
		(unsigned long long)r->threads, (unsigned long long)r->pipeline);
	if (cfg->size_lo == cfg->size_hi)
		fprintf(f, ", \"size\": %llu", (unsigned long long)cfg->size_lo);
	else
		fprintf(f, ", \"size\": \"%llu-%llu\"", (unsigned long long)cfg->size_lo,
			(unsigned long long)cfg->size_hi);
	fprintf(f, ", \"size_min\": %llu, \"size_max\": %llu", (unsigned long long)cfg->size_lo,
		(unsigned long long)cfg->size_hi);
	if (cfg->mode == MODE_OPEN)
		fprintf(f, ", \"rate\": %.3f", cfg->rate);
	else
		fputs(", \"rate\": null", f);
	fprintf(f, ", \"seed\": %llu, \"verify\": %s, \"duration_s\": %.6f, \"warmup_s\": %.6f",
		(unsigned long long)cfg->seed, cfg->verify ? "true" : "false", r->duration_s,
		cfg->warmup_ns / 1e9);
	fprintf(f, ", \"messages\": %llu, \"bytes\": %llu, \"msgs_per_sec\": %.3f, "
		"\"bytes_per_sec\": %.3f",
		(unsigned long long)r->c.messages, (unsigned long long)r->c.bytes,
		per_sec(r->c.messages, r->duration_s), per_sec(r->c.bytes, r->duration_s));
	fputs(", \"latency_us\": ", f);
	json_latency(f, r->lat);
	fputs(", \"latency_uncorrected_us\": ", f);
	json_latency(f, cfg->mode == MODE_OPEN ? r->lat_unc : NULL);
	fputs(", \"connect_us\": ", f);
	json_latency(f, r->connect);
	fputs(", \"errors\": {", f);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		fprintf(f, "%s\"%s\": %llu", k ? ", " : "", err_kind_name[k],
			(unsigned long long)r->c.errors[k]);
	fprintf(f, "}, \"mismatches\": %llu, \"short_bytes\": %llu, \"extra_bytes\": %llu, "
		"\"lost\": %llu, \"unanswered\": %llu, \"complete\": %s, \"error\": ",
		(unsigned long long)r->c.mismatches, (unsigned long long)r->c.short_bytes,
		(unsigned long long)r->c.extra_bytes, (unsigned long long)r->c.lost,
		(unsigned long long)r->c.unanswered, r->complete ? "true" : "false");
	if (r->complete)
		fputs("null", f);
	else
		json_string(f, r->error);
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

static void csv_latency(FILE *f, const struct hist *h)
{
	for (unsigned i = 0; i < NPCTS; i++)
		fprintf(f, ",%.3f", h ? us(hist_percentile(h, pcts[i].pct)) : 0.0);
	fprintf(f, ",%.3f,%.3f,%.3f", h ? us(hist_max(h)) : 0.0, h ? hist_mean(h) / 1000.0 : 0.0,
		h ? hist_stdev(h) / 1000.0 : 0.0);
}

int report_csv(FILE *f, const struct load_result *r, bool header)
{
	const struct load_config *cfg = r->cfg;
	static const char *const lat_cols[] = { "p50", "p90", "p99", "p999", "p9999", "max",
		"mean", "stdev" };

	if (header) {
		fputs("target,transport,mode,connections,threads,pipeline,size_min,size_max,rate,"
		      "duration_s,messages,bytes,msgs_per_sec,bytes_per_sec", f);
		for (unsigned i = 0; i < 8; i++)
			fprintf(f, ",latency_%s_us", lat_cols[i]);
		for (unsigned i = 0; i < 8; i++)
			fprintf(f, ",uncorrected_%s_us", lat_cols[i]);
		for (unsigned i = 0; i < 8; i++)
			fprintf(f, ",connect_%s_us", lat_cols[i]);
		for (unsigned k = 0; k < ERR_KINDS; k++)
			fprintf(f, ",errors_%s", err_kind_name[k]);
		fputs(",mismatches,short_bytes,extra_bytes,lost,unanswered,complete,error\n", f);
	}
	csv_text(f, cfg->target.text);
	fprintf(f, ",%s,%s,%llu,%llu,%llu,%llu,%llu,%.3f,%.6f,%llu,%llu,%.3f,%.3f", transport(cfg),
		mode_name(cfg->mode), (unsigned long long)cfg->connections,
		(unsigned long long)r->threads, (unsigned long long)r->pipeline,
		(unsigned long long)cfg->size_lo, (unsigned long long)cfg->size_hi,
		cfg->mode == MODE_OPEN ? cfg->rate : 0.0, r->duration_s,
		(unsigned long long)r->c.messages, (unsigned long long)r->c.bytes,
		per_sec(r->c.messages, r->duration_s), per_sec(r->c.bytes, r->duration_s));
	csv_latency(f, r->lat);
	csv_latency(f, cfg->mode == MODE_OPEN ? r->lat_unc : NULL);
	csv_latency(f, r->connect);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		fprintf(f, ",%llu", (unsigned long long)r->c.errors[k]);
	fprintf(f, ",%llu,%llu,%llu,%llu,%llu,%s,", (unsigned long long)r->c.mismatches,
		(unsigned long long)r->c.short_bytes, (unsigned long long)r->c.extra_bytes,
		(unsigned long long)r->c.lost, (unsigned long long)r->c.unanswered,
		r->complete ? "true" : "false");
	csv_text(f, r->complete ? "" : r->error);
	fputc('\n', f);
	return finish(f);
}
