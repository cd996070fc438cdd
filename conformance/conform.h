/* echo-conform: the conformance suite for echo servers.
 *
 * The catalogue (catalogue.c) is one table of cases, in the manner of libuv's benchmark-list.h:
 * a stable ID, a level, flags saying what the case needs, and one function. A case function
 * talks to the target through flow.h (echo conversations) and netio.h (socket helpers), looks
 * inside the server through probe.h when it is allowed to, and records its verdict with the
 * case_*() calls below. It never prints: report.c turns the results into TAP and JSON.
 *
 * Every wait in a case is bounded by c->deadline_ns, which is the case's own built-in pauses
 * (builtin_ms) plus the per-case --timeout.
 */
#ifndef ECHOBENCH_CONFORM_H
#define ECHOBENCH_CONFORM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"

enum level { LEVEL_MUST, LEVEL_SHOULD };
enum verdict { VERDICT_PASS, VERDICT_FAIL, VERDICT_SKIP };

/* What a case needs; it is skipped with a reason when the target does not offer it
 * (target.c). */
#define NEED_PID   0x1u  /* white-box: the server's pid (--server-pid or --exec) */
#define NEED_UDP   0x2u  /* the target answers UDP (or --udp) */
#define NEED_LOCAL 0x4u  /* a TCP target whose sockets show in this namespace's /proc/net/tcp */
#define NEED_IP    0x8u  /* an IP target (not unix:) */

/* What the suite knows about the server under test. Read-only while cases run. */
struct target {
	struct endpoint tcp;          /* TARGET */
	struct endpoint udp;          /* where UDP cases send (same address as TARGET by default) */
	bool udp_ok;
	const char *udp_why;          /* why UDP cases are skipped when !udp_ok */
	struct endpoint v6;           /* an IPv6 address of the same server */
	bool v6_ok;
	char v6_why[256];
	pid_t pid;                    /* 0: unknown */
	bool local;                   /* its listener is visible in /proc/net/tcp{,6} */
	uint64_t timeout_ns;          /* --timeout */
	uint64_t seed;                /* --seed: every random choice of every case derives from it */
};

#define RESULT_MAX_KV 24

struct kv {
	char key[32];
	char val[240];
	bool number;                  /* print bare in YAML/JSON */
};

struct result {
	enum verdict verdict;
	char reason[200];             /* skip reason */
	struct kv kv[RESULT_MAX_KV];
	int nkv;
	uint64_t elapsed_ns;
	bool over_limit;              /* a strict time limit was missed: show the YAML block even
	                               * when the case passed (case_time_limit) */
};

struct casectx {
	const struct target *t;
	const struct conf_case *cc;
	uint64_t start_ns;
	uint64_t deadline_ns;
	uint64_t rng;                 /* per-case prng state, derived from seed and ID */
	struct result *r;
};

typedef void (*case_fn)(struct casectx *c);

/* Flags of a case. RUN_*: how it may share the server with others under --overlap. */
#define RUN_BACKGROUND 0x1u  /* mostly waits on one connection: may run alongside others */
#define RUN_ALONE      0x2u  /* measures the server (fds, CPU, RSS, latency, limits) */
#define CASE_LONG      0x4u  /* takes seconds by design: `long` in --list, for quick runs to
                              * leave out */

struct conf_case {
	const char *id;
	enum level level;
	unsigned needs;
	unsigned builtin_ms;          /* time the case spends by design (pauses, rate limits) */
	case_fn fn;
	unsigned flags;               /* RUN_* (0: with the other black-box cases), CASE_LONG */
	const char *desc;
};

extern const struct conf_case conf_cases[];
extern const int conf_ncases;

/* --only/--skip: marks (mark[i] = true) the cases a comma list names, by ID or by prefix
 * ending in '*'. 0, or -EINVAL when an item names no case (copied into bad) or the list names
 * none (bad is ""). */
int conf_select(const char *list, bool *mark, char *bad, size_t n);

/* Verdicts. The first failure wins: its expected/seen pair is what the YAML block shows, and
 * later calls only add detail. */
void case_fail(struct casectx *c, const char *expected, const char *seen_fmt, ...)
	__attribute__((format(printf, 3, 4)));
void case_skip(struct casectx *c, const char *why_fmt, ...)
	__attribute__((format(printf, 2, 3)));
void case_note(struct casectx *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void case_num(struct casectx *c, const char *key, double v);
static inline bool case_failed(const struct casectx *c)
{
	return c->r->verdict == VERDICT_FAIL;
}

/* Time limits (docs/CONFORMANCE.md "Time and verdicts"). A limit that a correct server meets
 * on a fast machine but not necessarily on a slow or busy one is checked in two steps: the
 * verdict waits for the generous bound case_grace_ns(strict) = strict + --timeout, and
 * case_time_limit() reports the strict figure: <name>_s, <name>_limit_s and, when over,
 * <name>_over_by_s (seconds), shown in a YAML block even when the case passes. */
uint64_t case_grace_ns(const struct casectx *c, uint64_t strict_ns);
void case_time_limit(struct casectx *c, const char *name, uint64_t elapsed_ns,
	uint64_t limit_ns);
/* For cases whose length grows with the server's speed (thousands of connections): progress
 * moves the case's deadline to now + --timeout, never past cap_ns. A hung server still fails
 * after --timeout without progress; a slow one that keeps going is not cut off. */
void case_progress(struct casectx *c, uint64_t cap_ns);

/* Random numbers for a case (common/prng.h): reproducible from --seed. */
uint64_t case_rand(struct casectx *c);
/* Uniform in [lo, hi]. */
uint64_t case_rand_range(struct casectx *c, uint64_t lo, uint64_t hi);

/* Name of an errno value for diagnostics ("ECONNRESET"), or its number as text. */
const char *errno_name(int err);

/* Milliseconds left before the case deadline (0 when past it). */
uint64_t case_ms_left(const struct casectx *c);

#endif
