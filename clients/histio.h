/* One echo-load result record (named histograms, integer counters and real values) as a
 * lossless, mergeable, versioned text file: echo-load --hist-out writes one per run (per load
 * host), echo-load --merge and the driver read and merge them. The format is described in
 * clients/README.md, "Histogram files"; docs/CONTRACTS.md fixes the rule: merging adds bucket
 * counts, sums and extremes exactly, and percentiles are computed from the merged counts.
 *
 * A record keeps its items in the order they were put (or read), so a file written from a
 * record and read back lists them in the same order, and merging appends the source's new
 * names after the destination's.
 *
 * Kinds of item, and how histio_merge() combines two items of the same name:
 *   hist     a struct hist (hist.h): bucket counts, count, sum and sum of squares are added;
 *            min of the minima, max of the maxima. Exact: merging the histograms of two sample
 *            sets gives the histogram of their union.
 *   counter  an unsigned 64-bit integer (messages, bytes, mismatches, errors...): added.
 *   real     a finite double, with a merge policy chosen by the writer and stored in the file
 *            beside the value, so that every reader combines it the same way:
 *              HISTIO_SUM  added (for example a figure that is a part of a total),
 *              HISTIO_MAX  the larger (for example window_s, wall_s: hosts that run side by
 *                          side span the longest of their windows),
 *              HISTIO_MIN  the smaller.
 *            Two items of one name with different policies do not merge (-EINVAL).
 *
 * Every function returns 0 or -errno; on -EINVAL from histio_read() and histio_merge() the
 * record's `error` holds a one-line reason (no newline) for the caller to print.
 * Not thread safe. */
#ifndef ECHOBENCH_HISTIO_H
#define ECHOBENCH_HISTIO_H

#include <stdint.h>
#include <stdio.h>

#include "hist.h"

#define HISTIO_VERSION 1
#define HISTIO_NAME_MAX 48       /* bytes of a name including its NUL: 1..47 characters */
#define HISTIO_ITEMS_MAX 128     /* items per record (echo-load writes about 60) */
#define HISTIO_ERROR_MAX 160

enum histio_kind { HISTIO_HIST = 1, HISTIO_COUNTER, HISTIO_REAL };
enum histio_policy { HISTIO_SUM = 1, HISTIO_MAX, HISTIO_MIN };

struct histio_item {
	enum histio_kind kind;
	char name[HISTIO_NAME_MAX];         /* [A-Za-z0-9_.-]+ */
	struct hist *hist;                  /* HISTIO_HIST: owned by the record */
	uint64_t counter;                   /* HISTIO_COUNTER */
	double real;                        /* HISTIO_REAL */
	enum histio_policy policy;          /* HISTIO_REAL */
};

struct histio_record {
	unsigned n;
	struct histio_item item[HISTIO_ITEMS_MAX];
	char error[HISTIO_ERROR_MAX];       /* why the last histio_read/histio_merge failed */
};

/* An empty record. histio_free() releases the histograms it owns and leaves it empty (ready
 * for reuse). A record must be initialised once before any other call. */
void histio_init(struct histio_record *r);
void histio_free(struct histio_record *r);

/* Adding items. Each takes a name of 1..HISTIO_NAME_MAX-1 characters from [A-Za-z0-9_.-].
 * histio_put_hist: the record's histogram of that name (created empty on first use) absorbs h
 *   (hist_merge), so putting per-thread histograms one by one gives their sum. h may be NULL to
 *   create an empty one.
 * histio_put_counter / histio_put_real: set the value (replacing an earlier one of that name;
 *   a real's policy is replaced too). A real must be finite.
 * Errors: -EINVAL bad name, bad policy or non-finite real; -EEXIST the name is taken by an item
 * of another kind; -ENOSPC HISTIO_ITEMS_MAX items already; -ENOMEM. */
int histio_put_hist(struct histio_record *r, const char *name, const struct hist *h);
int histio_put_counter(struct histio_record *r, const char *name, uint64_t value);
int histio_put_real(struct histio_record *r, const char *name, double value,
		    enum histio_policy policy);

/* Looking items up by name: the item, or NULL when the record has no item of that name and
 * kind. */
const struct histio_item *histio_find(const struct histio_record *r, const char *name,
				      enum histio_kind kind);
/* Shorthands: the histogram (NULL when absent); 0 and the value in *out, or -ENOENT. */
const struct hist *histio_hist(const struct histio_record *r, const char *name);
int histio_counter(const struct histio_record *r, const char *name, uint64_t *out);
int histio_real(const struct histio_record *r, const char *name, double *out);

/* Writes the record as one file's text. 0, or -EIO when the stream failed (checked with fflush
 * and ferror; the caller still fcloses and should check that too). */
int histio_write(FILE *f, const struct histio_record *r);

/* Reads one file's text into r (initialised; its previous items are freed first). The whole
 * stream must be exactly one record: anything that is not (another format, another version or
 * bucket geometry, a line that does not parse, a name given twice, bucket counts that do not
 * add up to the count, extremes or sums that do not fit the buckets, a checksum that does not
 * match, a missing end line (a truncated file), data after the end line, a line over 1000
 * bytes or with a NUL byte) gives -EINVAL with the reason in r->error, prefixed with the line
 * number ("line 7: ..."), and leaves r empty. -ENOMEM or -EIO (read error) likewise leave r
 * empty. */
int histio_read(FILE *f, struct histio_record *r);

/* dst += src, item by item by name: see the kinds above; names only in src are appended to dst
 * in src's order. All or nothing: on -EINVAL (an item of the same name but another kind, or a
 * real with another policy; reason in dst->error), -EOVERFLOW (a counter, a histogram's count
 * or sum would pass 2^64 - 1, or a sum would be infinite; reason in dst->error), -ENOSPC (too
 * many items) or -ENOMEM, dst is unchanged. src may be empty; src == dst is not allowed. */
int histio_merge(struct histio_record *dst, const struct histio_record *src);

#endif
