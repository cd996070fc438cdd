/* libFuzzer target: the result records that `echo-load --merge` reads (histio_read, copied
 * back over ssh from other hosts), their merge, and the reports made from the merge.
 *
 * The input is one to four record files separated by NUL bytes (a NUL never belongs to a
 * record). Each is read as it is, and once more with its end line's checksum recomputed over
 * the bytes before it, so that mutations reach the checks behind the checksum instead of all
 * failing on it. Properties, besides crashes, leaks and UB:
 *   - an accepted record written, read and written again gives the same text;
 *   - a failed merge leaves the merged record unchanged (all or nothing);
 *   - the merged record is itself a valid record (written, it reads back);
 *   - the JSON report of the merge is valid JSON (no nan, inf or broken strings), and the
 *     CSV line has no nan or inf field.
 * A broken property aborts, which libFuzzer reports with the input. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "histio.h"
#include "load.h"

/* echo_load.c (main) is not linked in; these are its. */
atomic_bool load_stop_requested;
int load_signal_fd = -1;

#define MAX_PARTS 4

#define MUST(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz-histio: property failed at %s:%d: %s\n", __FILE__, \
			__LINE__, #cond); \
		abort(); \
	} } while (0)

/* The record's text, malloc'd (the caller frees); NULL when writing failed. */
static char *to_text(const struct histio_record *r, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	MUST(f);
	int err = histio_write(f, r);
	MUST(fclose(f) == 0);
	if (err) {
		free(buf);
		return NULL;
	}
	return buf;
}

static FILE *reader(const char *text, size_t len)
{
	FILE *f = fmemopen((void *)text, len, "r");

	MUST(f);
	return f;
}

/* Written, read, written: the same text. */
static void check_round_trip(const struct histio_record *r)
{
	struct histio_record *again = malloc(sizeof(*again));
	size_t n1, n2;
	char *t1 = to_text(r, &n1), *t2;
	FILE *f;

	MUST(again && t1);
	histio_init(again);
	f = reader(t1, n1);
	if (histio_read(f, again) != 0) {
		fprintf(stderr, "fuzz-histio: a record as written does not read back: %s\n%s",
			again->error, t1);
		abort();
	}
	fclose(f);
	t2 = to_text(again, &n2);
	MUST(t2 && n1 == n2 && memcmp(t1, t2, n1) == 0);
	free(t1);
	free(t2);
	histio_free(again);
	free(again);
}

/* Every item's name, kind and values (a histogram's count, extremes and sums; its buckets
 * change only with its count), hashed: equal before and after a failed merge. */
static uint64_t fingerprint(const struct histio_record *r)
{
	uint64_t h = fnv64(FNV64_INIT, (const uint8_t *)&r->n, sizeof(r->n));

	for (unsigned i = 0; i < r->n; i++) {
		const struct histio_item *it = &r->item[i];
		uint64_t v[6] = { it->kind, it->counter, it->policy, 0, 0, 0 };
		double real = it->real, sumsq = it->hist ? hist_sumsq(it->hist) : 0;

		if (it->hist) {
			v[3] = hist_count(it->hist);
			v[4] = hist_min(it->hist) ^ hist_max(it->hist) << 1;
			v[5] = hist_sum(it->hist);
		}
		h = fnv64(h, (const uint8_t *)it->name, strlen(it->name));
		h = fnv64(h, (const uint8_t *)v, sizeof(v));
		h = fnv64(h, (const uint8_t *)&real, sizeof(real));
		h = fnv64(h, (const uint8_t *)&sumsq, sizeof(sumsq));
	}
	return h;
}

/* The part with its end line's checksum recomputed (malloc'd), or NULL when it has none. */
static char *fix_checksum(const char *p, size_t n, size_t *out_len)
{
	static const char key[] = "\nend items=";
	const char *end = NULL;
	char items[24], *out;
	size_t k = 0;

	for (const char *q = p; q + sizeof(key) - 1 <= p + n; q++)
		if (memcmp(q, key, sizeof(key) - 1) == 0)
			end = q + 1;
	if (!end)
		return NULL;
	const char *it = end + sizeof(key) - 2;
	while (it + k < p + n && it[k] != ' ' && it[k] != '\n' && k < sizeof(items) - 1) {
		items[k] = it[k];
		k++;
	}
	items[k] = '\0';
	/* The rest after the end line (data after it is an error the reader must catch). */
	const char *nl = memchr(end, '\n', (size_t)(p + n - end));
	const char *rest = nl ? nl + 1 : p + n;
	uint64_t h = fnv64(FNV64_INIT, (const uint8_t *)p, (size_t)(end - p));
	size_t body = (size_t)(end - p), tail = (size_t)(p + n - rest);

	out = malloc(body + 64 + tail);
	MUST(out);
	memcpy(out, p, body);
	int w = snprintf(out + body, 64, "end items=%s fnv1a=%016llx\n", items,
			 (unsigned long long)h);
	memcpy(out + body + w, rest, tail);
	*out_len = body + (size_t)w + tail;
	return out;
}

/* A minimal JSON checker (RFC 8259): returns the end of the value at p, or NULL. */
static const char *json_value(const char *p, int depth);

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
						return NULL;
				p += 4;
			} else if (!*p || !strchr("\"\\/bfnrt", *p)) {
				return NULL;
			}
		}
	}
	return p + 1;
}

static const char *json_number(const char *p)
{
	const char *d;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return NULL;
	if (*p == '.') {
		d = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == d)
			return NULL;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		d = p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == d)
			return NULL;
	}
	return p;
}

static const char *json_value(const char *p, int depth)
{
	p = json_ws(p);
	if (depth > 32)
		return NULL;
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';

		p = json_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (!(p = json_string(json_ws(p))))
					return NULL;
				p = json_ws(p);
				if (*p++ != ':')
					return NULL;
			}
			if (!(p = json_value(p, depth + 1)))
				return NULL;
			p = json_ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	if (*p == '"')
		return json_string(p);
	if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	return json_number(p);
}

/* The merged record through what `echo-load --merge --json --csv --hgrm` does with it. */
static void check_reports(const struct histio_record *all, unsigned nfiles)
{
	struct load_config cfg;
	struct load_result res;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	memset(&cfg, 0, sizeof(cfg));
	cfg.merge_files = (char *[]){ NULL };
	MUST(record_unpack(&res, &cfg, all, nfiles) == 0);
	result_evaluate(&res);

	f = open_memstream(&buf, &len);
	MUST(f && report_json(f, &res) == 0 && fclose(f) == 0);
	const char *end = json_value(buf, 0);
	if (!end || *json_ws(end) || strlen(buf) != len) {
		fprintf(stderr, "fuzz-histio: the JSON report is not valid JSON:\n%s\n", buf);
		abort();
	}
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	MUST(f && report_csv(f, &res, true) == 0 && fclose(f) == 0);
	for (char *tok = strtok(buf, ",\n"); tok; tok = strtok(NULL, ",\n")) {
		if (strstr(tok, "nan") == tok + (*tok == '-') || strstr(tok, "inf") == tok + (*tok == '-')) {
			fprintf(stderr, "fuzz-histio: a CSV field is '%s'\n", tok);
			abort();
		}
	}
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	MUST(f);
	MUST(report_human(f, &res) == 0);
	MUST(hist_write_hgrm(res.lat, f, 1000.0) == 0);
	MUST(fclose(f) == 0);
	free(buf);
	result_free(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct histio_record *all = malloc(sizeof(*all)), *one = malloc(sizeof(*one));
	const char *p = (const char *)data, *stop = p + size;
	unsigned merged = 0;
	char why[HISTIO_ERROR_MAX + 64];

	MUST(all && one);
	histio_init(all);
	histio_init(one);
	for (unsigned part = 0; part < MAX_PARTS && p < stop; part++) {
		const char *nul = memchr(p, '\0', (size_t)(stop - p));
		size_t n = nul ? (size_t)(nul - p) : (size_t)(stop - p), fixed_len = 0;
		char *fixed = n ? fix_checksum(p, n, &fixed_len) : NULL;
		const char *texts[2] = { p, fixed };
		size_t lens[2] = { n, fixed_len };

		/* A record whose checksum was right needs no second read. */
		if (fixed && fixed_len == n && memcmp(fixed, p, n) == 0)
			lens[1] = 0;
		for (int v = 0; v < 2 && lens[v]; v++) {
			uint64_t before = fingerprint(all);
			FILE *f = reader(texts[v], lens[v]);
			int err;

			err = record_merge_stream(all, one, f, why, sizeof(why));
			fclose(f);
			/* histio_read() leaves an error only when it refused the record: a record
			 * it accepted must round-trip, one it refused must be left empty. */
			if (!one->error[0])
				check_round_trip(one);
			else
				MUST(err && one->n == 0 && !strchr(one->error, '\n'));
			if (err) {
				MUST(why[0] && !strchr(why, '\n'));
				MUST(fingerprint(all) == before);
			} else {
				merged++;
			}
		}
		free(fixed);
		p += n + 1;
	}
	if (merged) {
		check_round_trip(all);
		check_reports(all, merged);
	}
	histio_free(all);
	histio_free(one);
	free(all);
	free(one);
	return 0;
}
