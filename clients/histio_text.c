/* The text form of a histogram record: writing it (every line feeds a checksum) and reading it
 * back, rejecting anything foreign, inconsistent or damaged with a one-line reason. The record
 * itself and its merge are in histio.c. */
#include "histio.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "histio_item.h"
#include "parse.h"

#define MAGIC "echobench-hist"
#define LINE_MAX_BYTES 1000
#define MAX_TOKENS 8

/* The checksum (FNV-1a, fnv.h) catches a changed byte anywhere in the body (a count edited or
 * flipped by a bad copy) that the consistency checks would not. */

/* Writing: every line goes through emit(), which also feeds the checksum. */
struct writer {
	FILE *f;
	uint64_t hash;
	int failed;
};

__attribute__((format(printf, 2, 3)))
static void emit(struct writer *w, const char *fmt, ...)
{
	char line[LINE_MAX_BYTES + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Every line we write is far below the limit (names are short, numbers have at most
	 * 24 characters); a longer one would be a bug here, not a property of the data. */
	if (n < 0 || n >= (int)sizeof(line)) {
		w->failed = 1;
		return;
	}
	w->hash = fnv64(w->hash, (const uint8_t *)line, (size_t)n);
	if (fwrite(line, 1, (size_t)n, w->f) != (size_t)n)
		w->failed = 1;
}

static void write_hist(struct writer *w, const struct histio_item *it)
{
	const struct hist *h = it->hist;
	unsigned nb = 0, i;
	uint64_t n;

	for (i = hist_next_bucket(h, 0, &n); i < HIST_NBUCKETS; i = hist_next_bucket(h, i + 1, &n))
		nb++;
	/* %.17g: enough digits for strtod to give back the same double. */
	emit(w, "hist %s count=%llu min=%llu max=%llu sum=%llu sumsq=%.17g buckets=%u\n",
	     it->name, (unsigned long long)hist_count(h), (unsigned long long)hist_min(h),
	     (unsigned long long)hist_max(h), (unsigned long long)hist_sum(h), hist_sumsq(h), nb);
	for (i = hist_next_bucket(h, 0, &n); i < HIST_NBUCKETS; i = hist_next_bucket(h, i + 1, &n))
		emit(w, "%u %llu\n", i, (unsigned long long)n);
}

int histio_write(FILE *f, const struct histio_record *r)
{
	struct writer w = { .f = f, .hash = FNV64_INIT };

	emit(&w, "%s %d sub_bits=%d max_bits=%d unit=ns\n", MAGIC, HISTIO_VERSION, HIST_SUB_BITS,
	     HIST_MAX_BITS);
	for (unsigned i = 0; i < r->n; i++) {
		const struct histio_item *it = &r->item[i];

		switch (it->kind) {
		case HISTIO_HIST:
			write_hist(&w, it);
			break;
		case HISTIO_COUNTER:
			emit(&w, "counter %s %llu\n", it->name, (unsigned long long)it->counter);
			break;
		case HISTIO_REAL:
			emit(&w, "real %s %s %.17g\n", it->name, histio_policy_word[it->policy], it->real);
			break;
		}
	}
	/* The end line is not part of its own checksum. */
	if (fprintf(f, "end items=%u fnv1a=%016llx\n", r->n, (unsigned long long)w.hash) < 0)
		w.failed = 1;
	if (fflush(f) != 0 || ferror(f) || w.failed)
		return -EIO;
	return 0;
}

/* Reading. */
struct reader {
	FILE *f;
	struct histio_record *r;
	char line[LINE_MAX_BYTES + 1];    /* the current line, newline removed */
	size_t len;                       /* bytes of it read, even when it was refused */
	unsigned lineno;
	uint64_t hash;
	char *tok[MAX_TOKENS];
	int ntok;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct reader *rd, const char *fmt, ...)
{
	char msg[HISTIO_ERROR_MAX - 20];     /* room for "line N: " */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rd->lineno)
		snprintf(rd->r->error, sizeof(rd->r->error), "line %u: %s", rd->lineno, msg);
	else
		snprintf(rd->r->error, sizeof(rd->r->error), "%s", msg);
	return -EINVAL;
}

/* The next line, newline removed, not yet split. 1: a line; 0: end of file; <0: error.
 * Read byte by byte into a fixed buffer, so that garbage (a binary file, a line of a gigabyte)
 * costs no memory and every byte is checked. */
static int raw_line(struct reader *rd, int hashed)
{
	size_t n = 0;
	int c;

	rd->len = 0;
	while ((c = getc(rd->f)) != EOF) {
		if (n == 0)
			rd->lineno++;
		if (n == LINE_MAX_BYTES)
			return fail(rd, "line longer than %d bytes", LINE_MAX_BYTES);
		rd->line[n++] = (char)c;
		rd->len = n;
		if (c == '\0')
			return fail(rd, "NUL byte in line");
		if (c == '\n')
			break;
	}
	if (ferror(rd->f))
		return -EIO;
	if (n == 0)
		return 0;
	if (rd->line[n - 1] != '\n')
		return fail(rd, "truncated: last line has no newline");
	if (hashed)
		rd->hash = fnv64(rd->hash, (const uint8_t *)rd->line, n);
	rd->line[n - 1] = '\0';
	return 1;
}

/* Splits the current line into space-separated tokens: 0 or -EINVAL. */
static int tokenize(struct reader *rd)
{
	char *p;

	rd->ntok = 0;
	for (p = rd->line; ; ) {
		char *sp = strchr(p, ' ');

		if (rd->ntok == MAX_TOKENS)
			return fail(rd, "too many fields");
		rd->tok[rd->ntok++] = p;
		if (!sp)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	for (int i = 0; i < rd->ntok; i++)
		if (!*rd->tok[i])
			return fail(rd, "empty field (fields are separated by one space)");
	return 0;
}

/* The next line, split. 1: a line; 0: end of file; <0: error. */
static int next_line(struct reader *rd, int hashed)
{
	int err = raw_line(rd, hashed);

	if (err <= 0)
		return err;
	err = tokenize(rd);
	return err < 0 ? err : 1;
}

/* "key=NUMBER" */
static int keyed_u64(struct reader *rd, int i, const char *key, uint64_t *out)
{
	size_t k = strlen(key);

	if (i >= rd->ntok || strncmp(rd->tok[i], key, k) != 0 || rd->tok[i][k] != '=' ||
	    parse_u64(rd->tok[i] + k + 1, 0, UINT64_MAX, out) < 0)
		return fail(rd, "expected %s=NUMBER", key);
	return 0;
}

static int parse_real(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	/* ERANGE for a value too small to represent is fine (the writer never makes one, but it
	 * is still a number); too large or not finite is not. */
	return *s && !*end && isfinite(*out) ? 0 : -EINVAL;
}

static int new_item(struct reader *rd, const char *name, enum histio_kind kind,
		    struct histio_item **out)
{
	int err;

	if (!histio_name_ok(name))
		return fail(rd, "bad name (1-%d characters of A-Z a-z 0-9 _ . -)",
			    HISTIO_NAME_MAX - 1);
	if (histio_find_any(rd->r, name))
		return fail(rd, "name '%s' given twice", name);
	err = histio_slot(rd->r, name, kind, out);
	if (err == -ENOSPC)
		return fail(rd, "more than %d items", HISTIO_ITEMS_MAX);
	return err;
}

static int read_hist(struct reader *rd)
{
	uint64_t count, min, max, sum, nb, prev = 0;
	struct histio_item *it;
	double sumsq;
	int err;

	if (rd->ntok != 8)
		return fail(rd, "expected: hist NAME count= min= max= sum= sumsq= buckets=");
	if ((err = keyed_u64(rd, 2, "count", &count)) || (err = keyed_u64(rd, 3, "min", &min)) ||
	    (err = keyed_u64(rd, 4, "max", &max)) || (err = keyed_u64(rd, 5, "sum", &sum)))
		return err;
	if (strncmp(rd->tok[6], "sumsq=", 6) != 0 || parse_real(rd->tok[6] + 6, &sumsq) < 0)
		return fail(rd, "expected sumsq=REAL");
	if ((err = keyed_u64(rd, 7, "buckets", &nb)))
		return err;
	if (nb > HIST_NBUCKETS)
		return fail(rd, "more buckets than the histogram has");
	if ((err = new_item(rd, rd->tok[1], HISTIO_HIST, &it)))
		return err;
	for (uint64_t b = 0; b < nb; b++) {
		uint64_t index, n;

		err = next_line(rd, 1);
		if (err <= 0)
			return err < 0 ? err : fail(rd, "truncated: %llu of %llu buckets of '%s'",
						    (unsigned long long)b, (unsigned long long)nb,
						    it->name);
		if (rd->ntok != 2 || parse_u64(rd->tok[0], 0, HIST_NBUCKETS - 1, &index) < 0 ||
		    parse_u64(rd->tok[1], 1, UINT64_MAX, &n) < 0)
			return fail(rd, "expected a bucket: INDEX COUNT (index < %u, count > 0)",
				    HIST_NBUCKETS);
		if (b && index <= prev)
			return fail(rd, "bucket indexes not increasing");
		prev = index;
		if (hist_add_bucket(it->hist, (unsigned)index, n) < 0)
			return fail(rd, "bucket counts overflow");
	}
	if (hist_count(it->hist) != count)
		return fail(rd, "buckets of '%s' add up to %llu, count says %llu", it->name,
			    (unsigned long long)hist_count(it->hist), (unsigned long long)count);
	if (hist_set_exact(it->hist, min, max, sum, sumsq) < 0)
		return fail(rd, "min, max, sum or sumsq of '%s' do not fit its buckets", it->name);
	return 0;
}

static int read_header(struct reader *rd)
{
	uint64_t version, sub, bits;
	size_t m = strlen(MAGIC " ");
	int err = raw_line(rd, 1);

	/* Name a foreign file as such, before any complaint about its first line's bytes. */
	if (memcmp(rd->line, MAGIC " ", rd->len < m ? rd->len : m) != 0 || (err > 0 && rd->len < m))
		return fail(rd, "not an echobench histogram file (no '%s' header)", MAGIC);
	if (err <= 0)
		return err < 0 ? err : fail(rd, "empty file: not an echobench histogram file");
	if ((err = tokenize(rd)) < 0)
		return err;
	if (rd->ntok < 2 || parse_u64(rd->tok[1], 0, UINT64_MAX, &version) < 0)
		return fail(rd, "bad version");
	if (version != HISTIO_VERSION)
		return fail(rd, "version %s; this build reads version %d", rd->tok[1],
			    HISTIO_VERSION);
	if (rd->ntok != 5 || (err = keyed_u64(rd, 2, "sub_bits", &sub)) ||
	    (err = keyed_u64(rd, 3, "max_bits", &bits)) || strcmp(rd->tok[4], "unit=ns") != 0)
		return err ? err : fail(rd, "bad header");
	if (sub != HIST_SUB_BITS || bits != HIST_MAX_BITS)
		return fail(rd, "bucket geometry sub_bits=%llu max_bits=%llu; this build has "
			    "sub_bits=%d max_bits=%d", (unsigned long long)sub,
			    (unsigned long long)bits, HIST_SUB_BITS, HIST_MAX_BITS);
	return 0;
}

static int read_end(struct reader *rd)
{
	uint64_t items, hash;
	char *end;
	int err;

	if (rd->ntok != 3 || (err = keyed_u64(rd, 1, "items", &items)) ||
	    strncmp(rd->tok[2], "fnv1a=", 6) != 0 || strlen(rd->tok[2]) != 6 + 16)
		return fail(rd, "expected: end items=N fnv1a=HEX16");
	if (strspn(rd->tok[2] + 6, "0123456789abcdef") != 16)
		return fail(rd, "bad checksum field");
	hash = strtoull(rd->tok[2] + 6, &end, 16);
	if (items != rd->r->n)
		return fail(rd, "end line says %llu items, file has %u", (unsigned long long)items,
			    rd->r->n);
	if (hash != rd->hash)
		return fail(rd, "checksum mismatch: the file was altered or damaged");
	err = next_line(rd, 0);
	if (err < 0)
		return err;
	if (err > 0)
		return fail(rd, "data after the end line");
	return 0;
}

static int read_body(struct reader *rd)
{
	struct histio_item *it;
	int err;

	if ((err = read_header(rd)))
		return err;
	for (;;) {
		/* The end line is hashed by nobody: remember the hash before reading it. */
		uint64_t before = rd->hash;

		err = next_line(rd, 1);
		if (err < 0)
			return err;
		if (err == 0)
			return fail(rd, "truncated: no end line");
		if (strcmp(rd->tok[0], "end") == 0) {
			rd->hash = before;
			return read_end(rd);
		}
		if (strcmp(rd->tok[0], "hist") == 0) {
			if ((err = read_hist(rd)))
				return err;
		} else if (strcmp(rd->tok[0], "counter") == 0) {
			uint64_t v;

			if (rd->ntok != 3 || parse_u64(rd->tok[2], 0, UINT64_MAX, &v) < 0)
				return fail(rd, "expected: counter NAME NUMBER");
			if ((err = new_item(rd, rd->tok[1], HISTIO_COUNTER, &it)))
				return err;
			it->counter = v;
		} else if (strcmp(rd->tok[0], "real") == 0) {
			enum histio_policy p = 0;
			double v;

			for (int k = HISTIO_SUM; k <= HISTIO_MIN && rd->ntok == 4; k++)
				if (strcmp(rd->tok[2], histio_policy_word[k]) == 0)
					p = (enum histio_policy)k;
			if (rd->ntok != 4 || !p || parse_real(rd->tok[3], &v) < 0)
				return fail(rd, "expected: real NAME sum|max|min FINITE-NUMBER");
			if ((err = new_item(rd, rd->tok[1], HISTIO_REAL, &it)))
				return err;
			it->real = v;
			it->policy = p;
		} else {
			return fail(rd, "unknown line kind '%.40s'", rd->tok[0]);
		}
	}
}

int histio_read(FILE *f, struct histio_record *r)
{
	struct reader rd = { .f = f, .r = r, .hash = FNV64_INIT };
	int err;

	histio_free(r);
	err = read_body(&rd);
	if (err) {
		char why[HISTIO_ERROR_MAX];

		if (err == -ENOMEM || err == -EIO)
			snprintf(r->error, sizeof(r->error), "%s", strerror(-err));
		memcpy(why, r->error, sizeof(why));
		histio_free(r);
		memcpy(r->error, why, sizeof(why));
	}
	return err;
}
