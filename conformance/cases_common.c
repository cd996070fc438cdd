#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"

int case_connect(struct casectx *c, const struct endpoint *ep, const struct sockbufs *b,
	const char *expected)
{
	int fd, rc = net_connect(ep, c->deadline_ns, b, &fd);

	if (rc < 0) {
		case_fail(c, expected, "connect to %s failed: %s", ep->text, errno_name(-rc));
		return -1;
	}
	return fd;
}

void case_pace_connect(struct casectx *c)
{
	uint64_t until = now_ns() + 50 * MS;
	int port = endpoint_port(&c->t->tcp);

	if (!c->t->local)
		return;
	if (until > c->deadline_ns)
		until = c->deadline_ns;
	while (probe_accept_queue(port) > 0 && now_ns() < until)
		sleep_ns(100000);
}

void case_flow(struct casectx *c, const struct endpoint *ep, const struct sockbufs *b,
	struct flow *f, const char *expected)
{
	int fd = case_connect(c, ep, b, expected);

	if (fd < 0)
		return;
	flow_run(c, fd, f);
	flow_report(c, f, expected);
	close(fd);
}

void case_check_serving(struct casectx *c)
{
	const struct target *t = c->t;
	uint64_t until = now_ns() + 2 * SEC;
	int rc;

	if (t->pid && !probe_alive(t->pid)) {
		case_fail(c, "server process still running", "server process %d is gone",
			(int)t->pid);
		return;
	}
	if (until > c->deadline_ns)
		until = c->deadline_ns;
	rc = net_echo_probe(&t->tcp, until, "still serving?\n");
	if (rc < 0)
		case_fail(c, "a new connection is still echoed", "%s on a new connection",
			errno_name(-rc));
}

void leak_begin(struct casectx *c, struct leakcheck *lk)
{
	const struct target *t = c->t;
	uint64_t until = now_ns() + SEC;

	lk->have_fds = false;
	lk->ports = t->local ? calloc(1, sizeof(*lk->ports)) : NULL;
	if (t->pid && probe_fds_settled(t->pid, until, &lk->fds_before) == 0) {
		lk->have_fds = true;
		case_num(c, "server_fds_before", lk->fds_before);
	}
}

void leak_add_port(struct leakcheck *lk, int fd)
{
	if (lk->ports)
		portset_add(lk->ports, net_local_port(fd));
}

void leak_end(struct casectx *c, struct leakcheck *lk, uint64_t within_ns)
{
	const struct target *t = c->t;
	uint64_t t0 = now_ns(), until = t0 + case_grace_ns(c, within_ns);
	bool all_closed = true;

	/* The verdict waits for the generous bound; `within_ns` is reported as the limit. */
	if (until > c->deadline_ns && c->deadline_ns > t0 + within_ns)
		until = c->deadline_ns;
	if (lk->ports) {
		int left = 0;

		probe_tcp_wait_closed(endpoint_port(&t->tcp), lk->ports, until, &left);
		case_num(c, "server_sockets_left_open", left);
		if (left) {
			all_closed = false;
			case_fail(c, "the server closes every connection the client ended",
				"%d server-side sockets still ESTABLISHED or CLOSE-WAIT after %.1f s",
				left, (double)(now_ns() - t0) / 1e9);
		}
		free(lk->ports);
		lk->ports = NULL;
	}
	if (lk->have_fds) {
		int now_fds = 0;

		probe_fds_down_to(t->pid, lk->fds_before, until, &now_fds);
		case_num(c, "server_fds_after", now_fds);
		if (now_fds > lk->fds_before) {
			all_closed = false;
			case_fail(c, "the server's fd count returns to its baseline",
				"%d fds open, %d before (%d not closed after %.1f s)", now_fds,
				lk->fds_before, now_fds - lk->fds_before,
				(double)(now_ns() - t0) / 1e9);
		}
	}
	if (!t->local && !t->pid)
		case_note(c, "leak_check", "not possible: no server pid and the target is not a "
			"local TCP address");
	else if (all_closed)
		case_time_limit(c, "release", now_ns() - t0, within_ns);
}

static int cpu_quiet(struct casectx *c, double limit_pct, double *pct, int *windows)
{
	uint64_t until = now_ns() + case_grace_ns(c, SEC);

	*pct = 1e9;
	*windows = 0;
	do {
		uint64_t cpu0, cpu1, t0 = now_ns();
		double p;

		if (probe_cpu_ns(c->t->pid, &cpu0) < 0)
			return -ESRCH;
		sleep_ns(SEC);
		if (probe_cpu_ns(c->t->pid, &cpu1) < 0)
			return -ESRCH;
		p = 100.0 * (double)(cpu1 - cpu0) / (double)(now_ns() - t0);
		(*windows)++;
		if (p < *pct)
			*pct = p;
	} while (*pct > limit_pct && now_ns() + SEC <= until);
	return 0;
}

int case_expect_cpu_quiet(struct casectx *c, const char *expected, double limit_pct,
			  const char *metric, const char *during)
{
	double pct;
	int windows;

	if (cpu_quiet(c, limit_pct, &pct, &windows) < 0) {
		case_fail(c, expected, "server process %d died %s", (int)c->t->pid, during);
		return -ESRCH;
	}
	case_num(c, metric, pct);
	case_num(c, "cpu_windows_1s", windows);
	if (pct > limit_pct)
		case_fail(c, expected, "the server used %.0f%% CPU or more in each of %d windows of "
			"1 s %s (a busy loop)", pct, windows, during);
	return 0;
}
