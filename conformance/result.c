/* The verdict API the cases use (conform.h): failures, skips, notes, random numbers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "conform.h"
#include "prng.h"

static struct kv *next_kv(struct casectx *c, const char *key)
{
	struct result *r = c->r;
	struct kv *kv;

	/* A key given twice keeps its latest value: cases may refine a figure as they go. */
	for (int i = 0; i < r->nkv; i++)
		if (strcmp(r->kv[i].key, key) == 0)
			return &r->kv[i];
	if (r->nkv == RESULT_MAX_KV)
		return NULL;
	kv = &r->kv[r->nkv++];
	snprintf(kv->key, sizeof(kv->key), "%s", key);
	return kv;
}

void case_note(struct casectx *c, const char *key, const char *fmt, ...)
{
	struct kv *kv = next_kv(c, key);
	va_list ap;

	if (!kv)
		return;
	va_start(ap, fmt);
	vsnprintf(kv->val, sizeof(kv->val), fmt, ap);
	va_end(ap);
	kv->number = false;
}

void case_num(struct casectx *c, const char *key, double v)
{
	struct kv *kv = next_kv(c, key);

	if (!kv)
		return;
	if (v == (double)(long long)v)
		snprintf(kv->val, sizeof(kv->val), "%lld", (long long)v);
	else
		snprintf(kv->val, sizeof(kv->val), "%.3f", v);
	kv->number = true;
}

void case_fail(struct casectx *c, const char *expected, const char *seen_fmt, ...)
{
	char seen[sizeof(((struct kv *)0)->val)];
	va_list ap;

	if (c->r->verdict == VERDICT_FAIL)
		return;
	va_start(ap, seen_fmt);
	vsnprintf(seen, sizeof(seen), seen_fmt, ap);
	va_end(ap);
	c->r->verdict = VERDICT_FAIL;
	case_note(c, "expected", "%s", expected);
	case_note(c, "seen", "%s", seen);
}

void case_skip(struct casectx *c, const char *why_fmt, ...)
{
	va_list ap;

	if (c->r->verdict == VERDICT_FAIL)
		return;
	va_start(ap, why_fmt);
	vsnprintf(c->r->reason, sizeof(c->r->reason), why_fmt, ap);
	va_end(ap);
	c->r->verdict = VERDICT_SKIP;
}

uint64_t case_grace_ns(const struct casectx *c, uint64_t strict_ns)
{
	return strict_ns + c->t->timeout_ns;
}

void case_time_limit(struct casectx *c, const char *name, uint64_t elapsed_ns,
	uint64_t limit_ns)
{
	char key[32];

	snprintf(key, sizeof(key), "%s_s", name);
	case_num(c, key, (double)elapsed_ns / 1e9);
	snprintf(key, sizeof(key), "%s_limit_s", name);
	case_num(c, key, (double)limit_ns / 1e9);
	if (elapsed_ns > limit_ns) {
		snprintf(key, sizeof(key), "%s_over_by_s", name);
		case_num(c, key, (double)(elapsed_ns - limit_ns) / 1e9);
		c->r->over_limit = true;
	}
}

void case_progress(struct casectx *c, uint64_t cap_ns)
{
	uint64_t want = now_ns() + c->t->timeout_ns;

	if (want > cap_ns)
		want = cap_ns;
	if (want > c->deadline_ns)
		c->deadline_ns = want;
}

uint64_t case_rand(struct casectx *c)
{
	return prng_next(&c->rng);
}

uint64_t case_rand_range(struct casectx *c, uint64_t lo, uint64_t hi)
{
	return lo + prng_below(&c->rng, hi - lo + 1);
}

uint64_t case_ms_left(const struct casectx *c)
{
	uint64_t now = now_ns();

	return now >= c->deadline_ns ? 0 : (c->deadline_ns - now) / 1000000u;
}

const char *errno_name(int err)
{
	static _Thread_local char other[24];

	switch (err) {
	case 0: return "no error";
	case ECONNRESET: return "ECONNRESET";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNABORTED: return "ECONNABORTED";
	case EPIPE: return "EPIPE";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EMFILE: return "EMFILE";
	case ENFILE: return "ENFILE";
	case ENOMEM: return "ENOMEM";
	case EMSGSIZE: return "EMSGSIZE";
	case EBADMSG: return "EBADMSG (wrong bytes)";
	case EAGAIN: return "EAGAIN";
	case EPERM: return "EPERM";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	}
	snprintf(other, sizeof(other), "errno %d", err);
	return other;
}
