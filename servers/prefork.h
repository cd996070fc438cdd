/* Prefork, as nginx does it: `echo-server --processes N` forks N worker processes after binding,
 * each keeping its own SO_REUSEPORT listeners (server_keep_share) and running its own event
 * loops or rings. One process holds at most RLIMIT_NOFILE fds; N processes hold N times that.
 *
 * The parent serves nothing: it forwards SIGTERM/SIGINT to the children, collects each child's
 * stats through a pipe and sums them into one summary. A child that dies makes the whole server
 * stop with a failure, as a dying worker thread does. Children get SIGTERM when the parent dies
 * (PR_SET_PDEATHSIG), so they never outlive it.
 */
#ifndef ECHOBENCH_PREFORK_H
#define ECHOBENCH_PREFORK_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "server.h"

#define PREFORK_MAX 64

struct prefork {
	pid_t pid[PREFORK_MAX];
	int fd[PREFORK_MAX];     /* read end of each child's report pipe */
	int status[PREFORK_MAX]; /* wait status of a child reaped early (pid then negated) */
	int n;
};

/* Forks n children over the bound server s; each waits for a signal of `stop` (blocked in the
 * caller), drains and reports. Returns once every child serves (0), or -errno with *why when
 * one could not start (the others are then stopped). Only the parent returns. */
int prefork_start(struct prefork *pf, struct server *s, int n, const sigset_t *stop,
		  const char **why);
/* Pid of a child that has exited (reaped), or 0 when all still run; *clean says whether it
 * exited 0, i.e. it was asked to stop (a SIGINT to the whole process group from a terminal
 * reaches the children too), as opposed to dying. */
pid_t prefork_reap_one(struct prefork *pf, bool *clean);
/* Sends SIGTERM to every child, waits for their reports and sums them into *sum. Returns 0, or
 * -1 when a child failed or died without reporting. */
int prefork_stop(struct prefork *pf, struct server_stats *sum);

#endif
