#include "histio.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "histio_item.h"


const char *const histio_kind_word[] = {
	[HISTIO_HIST] = "hist", [HISTIO_COUNTER] = "counter", [HISTIO_REAL] = "real",
};
const char *const histio_policy_word[] = {
	[HISTIO_SUM] = "sum", [HISTIO_MAX] = "max", [HISTIO_MIN] = "min",
};

int histio_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= HISTIO_NAME_MAX)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

void histio_init(struct histio_record *r)
{
	memset(r, 0, sizeof(*r));
}

void histio_free(struct histio_record *r)
{
	for (unsigned i = 0; i < r->n; i++)
		hist_free(r->item[i].hist);
	histio_init(r);
}

struct histio_item *histio_find_any(const struct histio_record *r, const char *name)
{
	for (unsigned i = 0; i < r->n; i++)
		if (strcmp(r->item[i].name, name) == 0)
			return (struct histio_item *)&r->item[i];
	return NULL;
}

const struct histio_item *histio_find(const struct histio_record *r, const char *name,
				      enum histio_kind kind)
{
	const struct histio_item *it = histio_find_any(r, name);

	return it && it->kind == kind ? it : NULL;
}

/* The item of that name and kind, appended when new. */
int histio_slot(struct histio_record *r, const char *name, enum histio_kind kind,
		struct histio_item **out)
{
	struct histio_item *it;

	if (!histio_name_ok(name))
		return -EINVAL;
	it = histio_find_any(r, name);
	if (it) {
		if (it->kind != kind)
			return -EEXIST;
		*out = it;
		return 0;
	}
	if (r->n >= HISTIO_ITEMS_MAX)
		return -ENOSPC;
	it = &r->item[r->n];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	strcpy(it->name, name);
	if (kind == HISTIO_HIST && !(it->hist = hist_new()))
		return -ENOMEM;
	r->n++;
	*out = it;
	return 0;
}

int histio_put_hist(struct histio_record *r, const char *name, const struct hist *h)
{
	struct histio_item *it;
	int err = histio_slot(r, name, HISTIO_HIST, &it);

	if (err)
		return err;
	if (h)
		hist_merge(it->hist, h);
	return 0;
}

int histio_put_counter(struct histio_record *r, const char *name, uint64_t value)
{
	struct histio_item *it;
	int err = histio_slot(r, name, HISTIO_COUNTER, &it);

	if (err)
		return err;
	it->counter = value;
	return 0;
}

int histio_put_real(struct histio_record *r, const char *name, double value,
		    enum histio_policy policy)
{
	struct histio_item *it;
	int err;

	if (!isfinite(value) || policy < HISTIO_SUM || policy > HISTIO_MIN)
		return -EINVAL;
	err = histio_slot(r, name, HISTIO_REAL, &it);
	if (err)
		return err;
	it->real = value;
	it->policy = policy;
	return 0;
}

const struct hist *histio_hist(const struct histio_record *r, const char *name)
{
	const struct histio_item *it = histio_find(r, name, HISTIO_HIST);

	return it ? it->hist : NULL;
}

int histio_counter(const struct histio_record *r, const char *name, uint64_t *out)
{
	const struct histio_item *it = histio_find(r, name, HISTIO_COUNTER);

	if (!it)
		return -ENOENT;
	*out = it->counter;
	return 0;
}

int histio_real(const struct histio_record *r, const char *name, double *out)
{
	const struct histio_item *it = histio_find(r, name, HISTIO_REAL);

	if (!it)
		return -ENOENT;
	*out = it->real;
	return 0;
}

__attribute__((format(printf, 2, 3)))
static int merge_fail(struct histio_record *dst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst->error, sizeof(dst->error), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Would hist_merge(a, b) pass 2^64 - 1 in the count or the sum, or make the sum of squares
 * infinite? (A bucket's count is at most the count, so it cannot overflow alone.) */
static int hist_overflows(const struct hist *a, const struct hist *b)
{
	return hist_count(a) > UINT64_MAX - hist_count(b) || hist_sum(a) > UINT64_MAX - hist_sum(b) ||
	       !isfinite(hist_sumsq(a) + hist_sumsq(b));
}

int histio_merge(struct histio_record *dst, const struct histio_record *src)
{
	struct hist *fresh[HISTIO_ITEMS_MAX] = { 0 };
	unsigned added = 0;

	if (src == dst)
		return merge_fail(dst, "cannot merge a record into itself");
	/* Check everything first, and allocate what is new, so that a failure changes nothing. */
	for (unsigned i = 0; i < src->n; i++) {
		const struct histio_item *s = &src->item[i];
		const struct histio_item *d = histio_find_any(dst, s->name);

		if (!d) {
			if (dst->n + added >= HISTIO_ITEMS_MAX)
				goto nospace;
			if (s->kind == HISTIO_HIST && !(fresh[added] = hist_new()))
				goto nomem;
			added++;
		} else if (d->kind != s->kind) {
			for (unsigned k = 0; k < added; k++)
				hist_free(fresh[k]);
			return merge_fail(dst, "'%s' is a %s in one record and a %s in the other",
					  s->name, histio_kind_word[d->kind], histio_kind_word[s->kind]);
		} else if (s->kind == HISTIO_REAL && d->policy != s->policy) {
			for (unsigned k = 0; k < added; k++)
				hist_free(fresh[k]);
			return merge_fail(dst, "real '%s' merges by %s in one record and by %s in "
					  "the other", s->name, histio_policy_word[d->policy],
					  histio_policy_word[s->policy]);
		} else if ((s->kind == HISTIO_COUNTER && d->counter > UINT64_MAX - s->counter) ||
			   (s->kind == HISTIO_REAL && s->policy == HISTIO_SUM &&
			    !isfinite(d->real + s->real)) ||
			   (s->kind == HISTIO_HIST && hist_overflows(d->hist, s->hist))) {
			for (unsigned k = 0; k < added; k++)
				hist_free(fresh[k]);
			snprintf(dst->error, sizeof(dst->error), "%s '%s' overflows",
				 histio_kind_word[s->kind], s->name);
			return -EOVERFLOW;
		}
	}
	added = 0;
	for (unsigned i = 0; i < src->n; i++) {
		const struct histio_item *s = &src->item[i];
		struct histio_item *d = histio_find_any(dst, s->name);

		if (!d) {
			d = &dst->item[dst->n++];
			*d = *s;
			d->hist = fresh[added++];
			if (s->kind == HISTIO_HIST)
				hist_merge(d->hist, s->hist);
			continue;
		}
		switch (s->kind) {
		case HISTIO_HIST:
			hist_merge(d->hist, s->hist);
			break;
		case HISTIO_COUNTER:
			d->counter += s->counter;
			break;
		case HISTIO_REAL:
			if (s->policy == HISTIO_SUM)
				d->real += s->real;
			else if (s->policy == HISTIO_MAX ? s->real > d->real : s->real < d->real)
				d->real = s->real;
			break;
		}
	}
	return 0;
nospace:
	for (unsigned k = 0; k < added; k++)
		hist_free(fresh[k]);
	snprintf(dst->error, sizeof(dst->error), "more than %d items", HISTIO_ITEMS_MAX);
	return -ENOSPC;
nomem:
	for (unsigned k = 0; k < added; k++)
		hist_free(fresh[k]);
	snprintf(dst->error, sizeof(dst->error), "out of memory");
	return -ENOMEM;
}
