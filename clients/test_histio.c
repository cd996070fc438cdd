/* histio: merging the files of two disjoint sample sets gives exactly the histogram of their
 * union; a write/read round trip is identical; garbage, damaged, foreign and truncated files are
 * rejected with a reason, never crash, and leave the record empty. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fnv.h"
#include "hist.h"
#include "histio.h"
#include "prng.h"

static uint64_t seed = 7;

/* Log-uniform over 1 ns .. 10 s (every bucket size), with a heavier tail mixed in. */
static uint64_t draw(void)
{
	double u = (double)(prng_next(&seed) >> 11) / 9007199254740992.0;

	if (prng_below(&seed, 100) == 0)
		return 1000000000 + prng_below(&seed, 5000000000);
	return (uint64_t)exp(u * log(1e10));
}

/* The record as text, in a malloc'd buffer. */
static char *to_text(const struct histio_record *r, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	CHECK(f);
	CHECK_EQ(histio_write(f, r), 0);
	CHECK_EQ(fclose(f), 0);
	return buf;
}

static int from_text(const char *text, size_t len, struct histio_record *r)
{
	/* fmemopen refuses a zero size: an empty file is /dev/null's content. */
	FILE *f = len ? fmemopen((void *)text, len, "r") : fopen("/dev/null", "r");
	int err;

	CHECK(f);
	err = histio_read(f, r);
	fclose(f);
	return err;
}

static void check_same_hist(const struct hist *a, const struct hist *b, int same_sumsq)
{
	static const double pcts[] = { 0.001, 0.1, 1, 5, 10, 25, 33.3, 50, 66.7, 75, 90, 95, 99,
		99.5, 99.9, 99.95, 99.99, 99.999, 99.9999 };
	uint64_t na, nb;
	unsigned i, j;

	CHECK_EQ(hist_count(a), hist_count(b));
	CHECK_EQ(hist_min(a), hist_min(b));
	CHECK_EQ(hist_max(a), hist_max(b));
	CHECK_EQ(hist_sum(a), hist_sum(b));
	CHECK(hist_mean(a) == hist_mean(b));
	if (same_sumsq)
		CHECK(hist_sumsq(a) == hist_sumsq(b));
	else    /* the same squares added in another order */
		CHECK(fabs(hist_sumsq(a) - hist_sumsq(b)) <= hist_sumsq(a) * 1e-12);
	for (i = hist_next_bucket(a, 0, &na), j = hist_next_bucket(b, 0, &nb);
	     i < HIST_NBUCKETS || j < HIST_NBUCKETS;
	     i = hist_next_bucket(a, i + 1, &na), j = hist_next_bucket(b, j + 1, &nb)) {
		CHECK_EQ(i, j);
		CHECK_EQ(na, nb);
	}
	for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++)
		CHECK_EQ(hist_percentile(a, pcts[k]), hist_percentile(b, pcts[k]));
	for (int k = 0; k <= 10000; k++)
		CHECK_EQ(hist_percentile(a, k / 100.0), hist_percentile(b, k / 100.0));
}

/* A record as echo-load would write it, from n samples. */
static void fill(struct histio_record *r, struct hist *lat, struct hist *unc, size_t n,
		 struct hist *all_lat, struct hist *all_unc, int with_connect, int with_errors)
{
	hist_reset(lat);
	hist_reset(unc);
	for (size_t i = 0; i < n; i++) {
		uint64_t v = draw(), w = v / 2 + prng_below(&seed, 1000);

		hist_record(lat, v);
		hist_record(unc, w);
		hist_record(all_lat, v);
		hist_record(all_unc, w);
	}
	/* Order as the writer likes it: counters first here, a real in the middle. */
	CHECK_EQ(histio_put_counter(r, "messages", n), 0);
	CHECK_EQ(histio_put_hist(r, "latency", lat), 0);
	CHECK_EQ(histio_put_real(r, "window_s", with_connect ? 3.0 : 2.5, HISTIO_MAX), 0);
	CHECK_EQ(histio_put_hist(r, "latency_uncorrected", unc), 0);
	CHECK_EQ(histio_put_counter(r, "bytes", n * 64), 0);
	CHECK_EQ(histio_put_real(r, "cpu_s", 0.25, HISTIO_SUM), 0);
	CHECK_EQ(histio_put_real(r, "start_spread_s", with_connect ? 0.001 : 0.002, HISTIO_MIN), 0);
	if (with_connect) {
		hist_reset(lat);
		hist_record_n(lat, 50000, 16);
		CHECK_EQ(histio_put_hist(r, "connect", lat), 0);
	}
	if (with_errors)
		CHECK_EQ(histio_put_counter(r, "errors", 3), 0);
}

static void test_merge_is_union(void)
{
	struct hist *lat = hist_new(), *unc = hist_new(), *all_lat = hist_new(),
		*all_unc = hist_new();
	struct histio_record a, b, ra, rb;
	char *ta, *tb;
	size_t la, lb;
	uint64_t v;
	double x;

	CHECK(lat && unc && all_lat && all_unc);
	histio_init(&a);
	histio_init(&b);
	histio_init(&ra);
	histio_init(&rb);
	fill(&a, lat, unc, 30000, all_lat, all_unc, 1, 0);
	fill(&b, lat, unc, 17001, all_lat, all_unc, 0, 1);
	/* Through files, as the driver merges hosts' results. */
	ta = to_text(&a, &la);
	tb = to_text(&b, &lb);
	CHECK_EQ(from_text(ta, la, &ra), 0);
	CHECK_EQ(from_text(tb, lb, &rb), 0);
	CHECK_EQ(histio_merge(&ra, &rb), 0);

	check_same_hist(histio_hist(&ra, "latency"), all_lat, 0);
	check_same_hist(histio_hist(&ra, "latency_uncorrected"), all_unc, 0);
	CHECK_EQ(hist_count(histio_hist(&ra, "connect")), 16);
	CHECK_EQ(histio_counter(&ra, "messages", &v), 0);
	CHECK_EQ(v, 47001);
	CHECK_EQ(histio_counter(&ra, "bytes", &v), 0);
	CHECK_EQ(v, 47001 * 64);
	CHECK_EQ(histio_counter(&ra, "errors", &v), 0);   /* only in b: appended */
	CHECK_EQ(v, 3);
	CHECK_EQ(histio_real(&ra, "window_s", &x), 0);
	CHECK(x == 3.0);
	CHECK_EQ(histio_real(&ra, "cpu_s", &x), 0);
	CHECK(x == 0.5);
	CHECK_EQ(histio_real(&ra, "start_spread_s", &x), 0);
	CHECK(x == 0.001);
	CHECK_EQ(ra.n, 9);
	CHECK(strcmp(ra.item[8].name, "errors") == 0);
	CHECK_EQ(histio_counter(&ra, "latency", &v), -ENOENT);   /* wrong kind */
	CHECK(histio_hist(&ra, "nothing") == NULL);

	/* The merge is the same whichever side it starts from (percentiles included). */
	CHECK_EQ(from_text(ta, la, &ra), 0);
	CHECK_EQ(histio_merge(&rb, &ra), 0);
	check_same_hist(histio_hist(&rb, "latency"), all_lat, 0);

	free(ta);
	free(tb);
	histio_free(&a);
	histio_free(&b);
	histio_free(&ra);
	histio_free(&rb);
	hist_free(lat);
	hist_free(unc);
	hist_free(all_lat);
	hist_free(all_unc);
}

static void test_round_trip(void)
{
	struct hist *lat = hist_new(), *unc = hist_new(), *x1 = hist_new(), *x2 = hist_new();
	struct histio_record a, b;
	char *t1, *t2;
	size_t l1, l2;

	CHECK(lat && unc && x1 && x2);
	histio_init(&a);
	histio_init(&b);
	fill(&a, lat, unc, 5000, x1, x2, 1, 1);
	CHECK_EQ(histio_put_hist(&a, "empty", NULL), 0);
	hist_reset(lat);
	hist_record(lat, UINT64_MAX);          /* clamped into the top bucket, max exact */
	hist_record(lat, 0);
	CHECK_EQ(histio_put_hist(&a, "extremes", lat), 0);
	CHECK_EQ(histio_put_real(&a, "tiny", 1e-300, HISTIO_SUM), 0);
	CHECK_EQ(histio_put_real(&a, "third", 1.0 / 3.0, HISTIO_SUM), 0);
	CHECK_EQ(histio_put_real(&a, "negative", -2.5e10, HISTIO_MIN), 0);
	CHECK_EQ(histio_put_counter(&a, "big", UINT64_MAX), 0);
	t1 = to_text(&a, &l1);
	CHECK_EQ(from_text(t1, l1, &b), 0);
	CHECK_EQ(b.n, a.n);
	for (unsigned i = 0; i < a.n; i++) {
		CHECK(strcmp(a.item[i].name, b.item[i].name) == 0);    /* order kept */
		CHECK_EQ(a.item[i].kind, b.item[i].kind);
		if (a.item[i].kind == HISTIO_HIST)
			check_same_hist(a.item[i].hist, b.item[i].hist, 1);
		CHECK(a.item[i].counter == b.item[i].counter);
		CHECK(memcmp(&a.item[i].real, &b.item[i].real, sizeof(double)) == 0);
		CHECK_EQ(a.item[i].policy, b.item[i].policy);
	}
	CHECK_EQ(hist_max(histio_hist(&b, "extremes")), UINT64_MAX);
	t2 = to_text(&b, &l2);
	CHECK_EQ(l1, l2);
	CHECK(memcmp(t1, t2, l1) == 0);
	free(t1);
	free(t2);
	histio_free(&a);
	histio_free(&b);
	hist_free(lat);
	hist_free(unc);
	hist_free(x1);
	hist_free(x2);
}

static void expect_rejected(const char *text, size_t len, const char *why_part)
{
	struct histio_record r;
	int err;

	histio_init(&r);
	CHECK_EQ(histio_put_counter(&r, "stale", 1), 0);   /* must be gone afterwards */
	err = from_text(text, len, &r);
	if (err != -EINVAL || !r.error[0] || r.n != 0 ||
	    (why_part && !strstr(r.error, why_part))) {
		fprintf(stderr, "not rejected as expected (err %d, n %u, error '%s', want '%s'):\n"
			"%.*s\n", err, r.n, r.error, why_part ? why_part : "",
			(int)(len > 300 ? 300 : len), text);
		exit(1);
	}
	histio_free(&r);
}

/* A small valid file to damage. */
static char *small_file(size_t *len)
{
	struct histio_record r;
	struct hist *h = hist_new();
	char *t;

	CHECK(h);
	histio_init(&r);
	for (uint64_t v = 900; v < 300000; v = v * 5 / 4)
		hist_record_n(h, v, v % 7 + 1);
	CHECK_EQ(histio_put_hist(&r, "latency", h), 0);
	CHECK_EQ(histio_put_counter(&r, "messages", 123), 0);
	CHECK_EQ(histio_put_real(&r, "window_s", 2.5, HISTIO_MAX), 0);
	t = to_text(&r, len);
	histio_free(&r);
	hist_free(h);
	return t;
}

/* Replaces the first occurrence of `from` in the text with `to`, and fixes the checksum, so
 * that a consistency check (not the checksum) has to catch it. */
static char *edit(const char *text, const char *from, const char *to, size_t *len)
{
	const char *at = strstr(text, from), *end_line;
	size_t n = strlen(text) + strlen(to) + 64;
	char *out = malloc(n), *e;
	uint64_t h;
	unsigned items;

	CHECK(at && out);
	snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	end_line = strstr(out, "\nend items=");
	CHECK(end_line);
	h = fnv64(FNV64_INIT, (const uint8_t *)out, (size_t)(end_line + 1 - out));
	e = (char *)end_line + 1;
	CHECK(sscanf(e, "end items=%u", &items) == 1);
	sprintf(e, "end items=%u fnv1a=%016llx\n", items, (unsigned long long)h);
	*len = strlen(out);
	return out;
}

static void expect_edit_rejected(const char *text, const char *from, const char *to,
				 const char *why_part)
{
	size_t len;
	char *t = edit(text, from, to, &len);

	expect_rejected(t, len, why_part);
	free(t);
}

static void test_rejects(void)
{
	size_t len;
	char *good = small_file(&len), *bad = malloc(len + 1);
	struct histio_record r;
	char buf[4096];

	CHECK(bad);
	histio_init(&r);
	CHECK_EQ(from_text(good, len, &r), 0);             /* the base file is fine */
	histio_free(&r);
	{       /* and edit() alone keeps it fine */
		size_t l2;
		char *same = edit(good, "messages", "messages", &l2);

		CHECK_EQ(from_text(same, l2, &r), 0);
		histio_free(&r);
		free(same);
	}

	/* Empty, foreign, other version or geometry. */
	expect_rejected("", 0, "empty");
	expect_rejected("hello\n", 6, "not an echobench");
	{
		struct hist *h = hist_new();
		char *hg = NULL;
		size_t hl;
		FILE *f = open_memstream(&hg, &hl);

		CHECK(h && f);
		hist_record(h, 1234);
		CHECK_EQ(hist_write_hgrm(h, f, 1000.0), 0);
		fclose(f);
		expect_rejected(hg, hl, "not an echobench");
		free(hg);
		hist_free(h);
	}
	expect_edit_rejected(good, "echobench-hist 1 ", "echobench-hist 2 ", "version 2");
	expect_edit_rejected(good, "sub_bits=10", "sub_bits=7", "geometry");
	expect_edit_rejected(good, "unit=ns", "unit=us", "header");

	/* Damaged, with a correct checksum: the consistency checks catch it. */
	expect_edit_rejected(good, "count=", "count=1", "add up");
	expect_edit_rejected(good, "min=", "min=1", "do not fit");
	expect_edit_rejected(good, " max=", " max=9", "do not fit");
	expect_edit_rejected(good, "sum=", "sum=9", "do not fit");
	expect_edit_rejected(good, "sumsq=", "sumsq=-", "sumsq");
	expect_edit_rejected(good, "sumsq=", "sumsq=inf", "sumsq");
	expect_edit_rejected(good, "\n900 ", "\n99999999 ", "bucket");
	expect_edit_rejected(good, "\n900 ", "\n-900 ", "bucket");
	expect_edit_rejected(good, "\n900 5\n", "\n900 0\n", "bucket");
	expect_edit_rejected(good, "\n1125 ", "\n800 ", "increasing");
	expect_edit_rejected(good, "counter messages 123", "counter latency 123", "twice");
	expect_edit_rejected(good, "counter messages 123", "counter mess/ages 123", "bad name");
	expect_edit_rejected(good, "counter messages 123", "counter messages -1", "counter");
	expect_edit_rejected(good, "counter messages 123", "counter messages 99999999999999999999",
			     "counter");
	expect_edit_rejected(good, "counter messages 123", "counter  messages 123", "empty field");
	expect_edit_rejected(good, "counter messages 123", "gauge messages 123", "unknown");
	expect_edit_rejected(good, "real window_s max 2.5", "real window_s mean 2.5", "real");
	expect_edit_rejected(good, "real window_s max 2.5", "real window_s max nan", "real");
	expect_edit_rejected(good, "real window_s max 2.5", "real window_s max 1e999", "real");
	expect_edit_rejected(good, "real window_s max 2.5", "real window_s max 2.5x", "real");
	expect_edit_rejected(good, "end items=3", "end items=4", "items");
	expect_edit_rejected(good, "hist latency", "hist latency a", "fields");
	expect_edit_rejected(good, " buckets=", " bins=", "buckets=");
	expect_edit_rejected(good, "\nend ", "\nx\nend ", "unknown");
	expect_edit_rejected(good, "\ncounter", "\n\ncounter", "empty field");

	/* After the end line, and a line too long. */
	memcpy(buf, good, len);
	memcpy(buf + len, "more\n", 5);
	expect_rejected(buf, len + 5, "after the end");
	memset(buf, 'x', sizeof(buf));
	expect_rejected(buf, sizeof(buf), "not an echobench");
	memcpy(buf, good, (size_t)(strchr(good, '\n') - good) + 1);    /* the header, then */
	expect_rejected(buf, sizeof(buf), "longer");

	/* Any single changed byte anywhere (the checksum, or a field that no longer parses). */
	for (size_t i = 0; i < len; i++) {
		static const char subst[] = { '0', '7', ' ', '\n', '\0', 'e' };

		for (size_t k = 0; k < sizeof(subst); k++) {
			if (good[i] == subst[k])
				continue;
			memcpy(bad, good, len);
			bad[i] = subst[k];
			expect_rejected(bad, len, NULL);
		}
	}

	/* Truncated anywhere: no end line, a partial line, a missing bucket. */
	for (size_t cut = 0; cut < len; cut++)
		expect_rejected(good, cut, NULL);
	expect_rejected(good, strstr(good, "\nend ") - good + 1, "truncated");
	{
		size_t l2;
		char *t = edit(good, "buckets=", "buckets=9", &l2);   /* claims more buckets */
		const char *first_bucket = strstr(good, "\n900 ");

		expect_rejected(t, l2, "bucket");
		free(t);
		expect_rejected(good, (size_t)(strchr(first_bucket + 1, '\n') - good) + 1,
				"truncated: 1 of");
	}

	/* Random garbage: bytes, and printable lines. */
	for (int trial = 0; trial < 2000; trial++) {
		size_t n = 1 + prng_below(&seed, sizeof(buf) - 1);
		int printable = trial & 1;

		for (size_t i = 0; i < n; i++)
			buf[i] = printable ? (prng_below(&seed, 12) == 0 ? '\n' :
					      (char)(' ' + prng_below(&seed, 95)))
					   : (char)prng_next(&seed);
		if (trial % 4 == 1)     /* a valid header, then garbage */
			memcpy(buf, good, n < 49 ? n : 49);
		expect_rejected(buf, n, NULL);
	}
	free(bad);
	free(good);
}

static void test_put_and_merge_errors(void)
{
	struct histio_record a, b;
	char name[HISTIO_NAME_MAX + 1];
	uint64_t v;
	double x;

	histio_init(&a);
	histio_init(&b);
	CHECK_EQ(histio_put_counter(&a, "", 1), -EINVAL);
	CHECK_EQ(histio_put_counter(&a, "a b", 1), -EINVAL);
	memset(name, 'n', sizeof(name) - 1);
	name[HISTIO_NAME_MAX] = '\0';
	CHECK_EQ(histio_put_counter(&a, name, 1), -EINVAL);          /* 48 characters */
	name[HISTIO_NAME_MAX - 1] = '\0';
	CHECK_EQ(histio_put_counter(&a, name, 1), 0);                /* 47 */
	CHECK_EQ(histio_put_real(&a, "r", NAN, HISTIO_MAX), -EINVAL);
	CHECK_EQ(histio_put_real(&a, "r", 1, (enum histio_policy)9), -EINVAL);
	CHECK_EQ(histio_put_real(&a, "r", 1, HISTIO_MAX), 0);
	CHECK_EQ(histio_put_real(&a, "r", 4, HISTIO_MAX), 0);        /* replaced */
	CHECK_EQ(histio_real(&a, "r", &x), 0);
	CHECK(x == 4);
	CHECK_EQ(histio_put_hist(&a, "r", NULL), -EEXIST);
	CHECK_EQ(histio_put_counter(&a, "c", 5), 0);

	/* Kind and policy conflicts leave dst unchanged. */
	CHECK_EQ(histio_put_counter(&b, "new", 1), 0);
	CHECK_EQ(histio_put_hist(&b, "c", NULL), 0);
	CHECK_EQ(histio_merge(&a, &b), -EINVAL);
	CHECK(strstr(a.error, "'c'"));
	CHECK_EQ(a.n, 3);
	histio_free(&b);
	CHECK_EQ(histio_put_real(&b, "r", 1, HISTIO_SUM), 0);
	CHECK_EQ(histio_merge(&a, &b), -EINVAL);
	CHECK(strstr(a.error, "policy") || strstr(a.error, "merges by"));
	CHECK_EQ(histio_merge(&a, &a), -EINVAL);
	histio_free(&b);
	CHECK_EQ(histio_put_counter(&b, "c", UINT64_MAX), 0);
	CHECK_EQ(histio_merge(&a, &b), -EOVERFLOW);
	CHECK_EQ(histio_counter(&a, "c", &v), 0);
	CHECK_EQ(v, 5);
	histio_free(&b);
	/* Too many items: all or nothing. */
	for (int i = 0; i < HISTIO_ITEMS_MAX - 2; i++) {
		snprintf(name, sizeof(name), "x%d", i);
		CHECK_EQ(histio_put_hist(&b, name, NULL), 0);
	}
	CHECK_EQ(histio_put_counter(&b, "one-more", 1), 0);
	CHECK_EQ(histio_put_counter(&b, "two-more", 1), 0);
	CHECK_EQ(histio_put_counter(&b, "three", 1), -ENOSPC);
	CHECK_EQ(histio_merge(&a, &b), -ENOSPC);
	CHECK_EQ(a.n, 3);
	/* Merging into an empty record copies. */
	histio_free(&a);
	CHECK_EQ(histio_merge(&a, &b), 0);
	CHECK_EQ(a.n, HISTIO_ITEMS_MAX);
	histio_free(&a);
	histio_free(&b);
}

/* Found with fuzz_histio.c's property that a merged record is a valid record: two histograms
 * of 2^63 samples each merged into a count that wrapped to 0 (and a sum that wrapped), a record
 * that no longer read back. Now the merge refuses, all or nothing. */
static void test_hist_merge_overflow(void)
{
	struct histio_record a, b;
	struct hist *h = hist_new();
	size_t len;
	char *text;

	CHECK(h);
	histio_init(&a);
	histio_init(&b);
	hist_record_n(h, 1, UINT64_C(1) << 63);
	CHECK_EQ(histio_put_hist(&a, "latency", h), 0);
	CHECK_EQ(histio_put_counter(&a, "messages", 1), 0);
	CHECK_EQ(histio_put_hist(&b, "latency", h), 0);
	CHECK_EQ(histio_put_counter(&b, "messages", 2), 0);
	CHECK_EQ(histio_merge(&a, &b), -EOVERFLOW);
	CHECK(strstr(a.error, "'latency'") && strstr(a.error, "overflows"));
	CHECK_EQ(hist_count(histio_hist(&a, "latency")), UINT64_C(1) << 63);
	text = to_text(&a, &len);       /* unchanged, and still a record */
	histio_free(&b);
	CHECK_EQ(from_text(text, len, &b), 0);
	free(text);
	/* One sample fewer fits. */
	histio_free(&b);
	hist_reset(h);
	hist_record_n(h, 1, (UINT64_C(1) << 63) - 1);
	CHECK_EQ(histio_put_hist(&b, "latency", h), 0);
	CHECK_EQ(histio_merge(&a, &b), 0);
	CHECK_EQ(hist_count(histio_hist(&a, "latency")), UINT64_MAX);
	text = to_text(&a, &len);
	histio_free(&b);
	CHECK_EQ(from_text(text, len, &b), 0);
	free(text);
	/* Sums of squares (a file may give any finite one) that add up to infinity. */
	histio_free(&a);
	histio_free(&b);
	hist_reset(h);
	CHECK_EQ(hist_add_bucket(h, 5, 2), 0);
	CHECK_EQ(hist_set_exact(h, 5, 5, 10, 1e308), 0);
	CHECK_EQ(histio_put_hist(&a, "latency", h), 0);
	CHECK_EQ(histio_merge(&b, &a), 0);
	CHECK_EQ(histio_merge(&b, &a), -EOVERFLOW);
	CHECK(hist_sumsq(histio_hist(&b, "latency")) == 1e308);
	histio_free(&a);
	histio_free(&b);
	hist_free(h);
}

int main(void)
{
	test_hist_merge_overflow();
	test_put_and_merge_errors();
	test_round_trip();
	test_merge_is_union();
	test_rejects();
	puts("histio: ok");
	return 0;
}
