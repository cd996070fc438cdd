/* Helpers shared by the case files (cases_*.c): the steps many cases repeat, each recording
 * the failure in the case's result so the case itself stays a readable script. */
#ifndef ECHOBENCH_CASES_H
#define ECHOBENCH_CASES_H

#include <stdbool.h>

#include "conform.h"
#include "flow.h"
#include "netio.h"
#include "probe.h"

#define MS (1000000ull)
#define SEC (1000000000ull)

/* Connects to ep; on failure records it (the case fails) and returns -1. */
int case_connect(struct casectx *c, const struct endpoint *ep, const struct sockbufs *b,
	const char *expected);

/* Before a connect in a case that is not about the listen backlog: waits (at most 50 ms) until
 * the server has accepted every queued connection. A server with a tiny backlog (socat's is 5)
 * drops the SYNs of quick successive connects, and the 1 s SYN retry would fail a case about
 * something else; LIMIT-BURST-200 alone measures the backlog. No-op for non-local targets. */
void case_pace_connect(struct casectx *c);

/* Connect, run the flow, report it, close. */
void case_flow(struct casectx *c, const struct endpoint *ep, const struct sockbufs *b,
	struct flow *f, const char *expected);

/* The server is still alive (when its pid is known) and a new connection is echoed. */
void case_check_serving(struct casectx *c);

/* Resource checks around something that should leave nothing behind: the fd count of the
 * server (white-box, with its pid) and its sockets towards the case's client ports in
 * /proc/net/tcp (when the target is local). */
struct leakcheck {
	bool have_fds;
	int fds_before;
	struct portset *ports;        /* client ports the case used */
};
void leak_begin(struct casectx *c, struct leakcheck *lk);
/* Waits up to `within_ns` for the server to let go; records failures. Frees lk->ports. */
void leak_end(struct casectx *c, struct leakcheck *lk, uint64_t within_ns);
void leak_add_port(struct leakcheck *lk, int fd);

/* "The server does not spin": its CPU use over a 1 s window is at most limit_pct of one CPU.
 * Windows are measured one after another until one is under the limit, for at most
 * case_grace_ns(1 s): a server still finishing earlier work (a thread-per-connection server's
 * threads exiting after the previous case) gets quiet in a later window, a busy loop never
 * does. Records the lowest window as `metric` and their count as "cpu_windows_1s", and fails
 * the case when no window was quiet or the process is gone; `during` ends both messages
 * ("while idle"). 0, or -ESRCH when the process is gone. */
int case_expect_cpu_quiet(struct casectx *c, const char *expected, double limit_pct,
			  const char *metric, const char *during);

#endif
