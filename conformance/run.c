/* The case scheduler (run.h). */
#include "run.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fnv.h"
#include "netio.h"
#include "prng.h"
#include "probe.h"
#include "target.h"

/* After a failed case: did the server die of it? A process on its way out (a sanitizer's leak
 * check at exit, say) may still exist while its listener already refuses, so the answer is
 * awaited, bounded by --timeout: until the process is gone (yes), or a connection is taken
 * (no: it still serves). Only a server that neither exits nor accepts waits the whole bound. */
static bool server_going(const struct target *t)
{
	uint64_t deadline = now_ns() + t->timeout_ns;

	for (;;) {
		int fd, rc;

		if (!probe_alive(t->pid))
			return true;
		if (now_ns() >= deadline)
			return false;
		rc = net_connect(&t->tcp, now_ns() + 100000000u, NULL, &fd);
		if (rc == 0) {
			close(fd);
			return !probe_alive(t->pid);
		}
		sleep_ns(10000000u);
	}
}

static void run_case(const struct conf_case *cc, const struct target *t, struct result *r)
{
	struct casectx c = { .t = t, .cc = cc, .r = r };
	const char *why = target_unmet_need(cc, t);

	memset(r, 0, sizeof(*r));
	c.start_ns = now_ns();
	c.deadline_ns = c.start_ns + (uint64_t)cc->builtin_ms * 1000000u + t->timeout_ns;
	/* Each case's random choices depend only on the seed and its ID: running a subset with
	 * --only reproduces exactly what the full run did. */
	c.rng = prng_mix(t->seed ^ fnv64(FNV64_INIT, (const uint8_t *)cc->id, strlen(cc->id)));
	if (why) {
		r->verdict = VERDICT_SKIP;
		snprintf(r->reason, sizeof(r->reason), "%s", why);
	} else {
		cc->fn(&c);
	}
	if (r->verdict == VERDICT_FAIL && t->pid && server_going(t))
		case_note(&c, "server_process", "gone (pid %d)", (int)t->pid);
	r->elapsed_ns = now_ns() - c.start_ns;
}

struct bg_job {
	pthread_t thread;
	struct run_item *it;
	const struct target *t;
	bool started;
};

static void *bg_main(void *arg)
{
	struct bg_job *j = arg;

	run_case(j->it->cc, j->t, &j->it->r);
	return NULL;
}

/* Prints, in catalogue order, every result that is ready and not yet printed. */
static void print_ready(struct run_item *items, int n, const bool *done, int *next,
	bool must_only)
{
	while (*next < n && done[*next])
		tap_case(stdout, &items[(*next)++], must_only);
}

/* With --overlap the RUN_BACKGROUND cases start at once on threads of their own; a RUN_ALONE
 * case first waits for them to end, so its measurements see only its own clients. */
void run_cases(struct run_item *items, int n, const struct target *t, bool overlap,
	bool must_only)
{
	struct bg_job *bg = calloc((size_t)n + 1, sizeof(*bg));
	bool *done = calloc((size_t)n + 1, sizeof(*done));
	int next_print = 0;

	if (!bg || !done)
		exit(1);
	for (int i = 0; overlap && i < n; i++) {
		if (!(items[i].cc->flags & RUN_BACKGROUND))
			continue;
		bg[i] = (struct bg_job){ .it = &items[i], .t = t };
		bg[i].started = pthread_create(&bg[i].thread, NULL, bg_main, &bg[i]) == 0;
	}
	for (int i = 0; i < n; i++) {
		if (bg[i].started || done[i])
			continue;   /* a background case: running, or joined already */
		if (items[i].cc->flags & RUN_ALONE) {
			for (int k = 0; k < n; k++)
				if (bg[k].started) {
					pthread_join(bg[k].thread, NULL);
					bg[k].started = false;
					done[k] = true;
				}
		}
		run_case(items[i].cc, t, &items[i].r);
		done[i] = true;
		print_ready(items, n, done, &next_print, must_only);
	}
	for (int k = 0; k < n; k++)
		if (bg[k].started) {
			pthread_join(bg[k].thread, NULL);
			done[k] = true;
		}
	print_ready(items, n, done, &next_print, must_only);
	free(bg);
	free(done);
}
