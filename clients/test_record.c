/* load_record.c: what `echo-load --merge` does with a record from another host. A record out
 * of the shape echo-load writes is refused with a reason that names the value, before it is
 * merged; what is accepted gives reports without undefined conversions or infinities. The
 * cases are what fuzz_histio.c found. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "histio.h"
#include "load.h"

/* Defined by echo_load.c, which is not linked in. */
atomic_bool load_stop_requested;
int load_signal_fd = -1;

/* A small record as echo-load writes it, with one real set to `value`. */
static char *record_text(const char *name, double value, size_t *len)
{
	struct histio_record *r = malloc(sizeof(*r));
	struct hist *h = hist_new();
	char *buf = NULL;
	FILE *f;

	CHECK(r && h);
	histio_init(r);
	hist_record_n(h, 40000, 100);
	CHECK_EQ(histio_put_hist(r, "latency", h), 0);
	CHECK_EQ(histio_put_counter(r, "messages", 100), 0);
	CHECK_EQ(histio_put_counter(r, "sent", 100), 0);
	CHECK_EQ(histio_put_counter(r, "connections", 1), 0);
	CHECK_EQ(histio_put_counter(r, "connected", 1), 0);
	CHECK_EQ(histio_put_real(r, "mode", 1, HISTIO_MAX), 0);
	CHECK_EQ(histio_put_real(r, "duration_s", 0.5, HISTIO_MAX), 0);
	CHECK_EQ(histio_put_real(r, "rate_target", 200, HISTIO_SUM), 0);
	CHECK_EQ(histio_put_real(r, "complete", 1, HISTIO_MIN), 0);
	CHECK_EQ(histio_put_real(r, name, value, HISTIO_MAX), 0);
	f = open_memstream(&buf, len);
	CHECK(f);
	CHECK_EQ(histio_write(f, r), 0);
	CHECK_EQ(fclose(f), 0);
	histio_free(r);
	free(r);
	hist_free(h);
	return buf;
}

/* Merges the record with `name` = value; 0 or -errno, reason in why. With unpack, also makes
 * the JSON report, returned in *json (malloc'd). */
static int merge(const char *name, double value, char *why, size_t n, struct load_config *cfg,
		 char **json)
{
	struct histio_record *all = malloc(sizeof(*all)), *one = malloc(sizeof(*one));
	struct load_result res;
	size_t len, jlen;
	char *text = record_text(name, value, &len);
	FILE *f = fmemopen(text, len, "r");
	int err;

	CHECK(all && one && f);
	histio_init(all);
	histio_init(one);
	why[0] = '\0';
	err = record_merge_stream(all, one, f, why, n);
	fclose(f);
	if (!err && json) {
		memset(cfg, 0, sizeof(*cfg));
		cfg->merge_files = (char *[]){ NULL };
		CHECK_EQ(record_unpack(&res, cfg, all, 1), 0);
		result_evaluate(&res);
		f = open_memstream(json, &jlen);
		CHECK(f);
		CHECK_EQ(report_json(f, &res), 0);
		CHECK_EQ(fclose(f), 0);
		result_free(&res);
	}
	histio_free(all);
	histio_free(one);
	free(all);
	free(one);
	free(text);
	return err;
}

/* No value printed as inf or nan (a value, not a word inside a string). */
static int finite_json(const char *json)
{
	return !strstr(json, ": inf") && !strstr(json, ": -inf") && !strstr(json, ": nan") &&
	       !strstr(json, ": -nan");
}

static void expect_refused(const char *name, double value)
{
	char why[256];

	CHECK_EQ(merge(name, value, why, sizeof(why), NULL, NULL), -EINVAL);
	if (!strstr(why, name)) {
		fprintf(stderr, "reason for %s = %g does not name it: %s\n", name, value, why);
		exit(1);
	}
}

int main(void)
{
	struct load_config cfg;
	char why[256], *json;

	/* Values no echo-load writes: each was cast to an integer type it does not fit (UB), or
	 * reached the report as a mode or an engine out of range. */
	expect_refused("size_min", -5);
	expect_refused("size_max", 1e30);
	expect_refused("mode", 7);
	expect_refused("engine", 1e30);
	expect_refused("source_first", -1);
	expect_refused("source_count", 1e12);
	expect_refused("warmup_s", 1e300);
	/* A window below 1 ns made every rate infinite: "msgs_per_sec": inf is not JSON. */
	expect_refused("duration_s", 4.9406564584124654e-324);

	/* --seed 18446744073709551615 is written as the double 2^64, which was converted back to
	 * an integer it does not fit (undefined; 0 here): it saturates now. */
	CHECK_EQ(merge("seed", 18446744073709551615.0, why, sizeof(why), &cfg, &json), 0);
	CHECK(strstr(json, "\"seed\": 18446744073709551615,"));
	CHECK(finite_json(json));
	CHECK(strstr(json, "\"mode\": \"open\""));
	free(json);
	/* The edges of the ranges are fine. */
	CHECK_EQ(merge("duration_s", 1e-9, why, sizeof(why), &cfg, &json), 0);
	CHECK(finite_json(json));
	free(json);
	CHECK_EQ(merge("source_count", LOAD_MAX_SOURCES, why, sizeof(why), NULL, NULL), 0);
	expect_refused("source_count", LOAD_MAX_SOURCES + 1);
	/* Reals echo-load does not know are kept, not judged. */
	CHECK_EQ(merge("from_the_future", -1e300, why, sizeof(why), NULL, NULL), 0);
	puts("record: ok");
	return 0;
}
