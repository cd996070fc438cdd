/* Limits: bursts of connects, churn, many connections at once, and running out of fds. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"

void case_limit_burst_200(struct casectx *c)
{
	enum { N = 200 };
	const char *expected = "200 connects issued at once all complete within 1 s, and each "
		"connection echoes";
	struct pollfd pf[N];
	int fds[N], connected = 0, echoed = 0;
	uint64_t t0 = now_ns(), window = t0 + SEC;

	for (int i = 0; i < N; i++)
		fds[i] = -1;
	for (int i = 0; i < N; i++) {
		int rc = net_connect_start(&c->t->tcp, NULL, SOCK_STREAM, &fds[i]);

		if (rc < 0 && rc != -EINPROGRESS) {
			fds[i] = -1;
			case_fail(c, expected, "connect %d failed at once: %s", i + 1,
				errno_name(-rc));
			goto out;
		}
	}
	/* Handshakes the kernel could not queue (a full accept queue drops the SYN) are retried
	 * by the client after 1 s: so "all within 1 s" is "the backlog took the burst". */
	bool done[N] = { false };
	while (connected < N && now_ns() < window) {
		int n = 0, idx[N];
		for (int i = 0; i < N; i++)
			if (!done[i]) {
				pf[n] = (struct pollfd){ .fd = fds[i], .events = POLLOUT };
				idx[n++] = i;
			}
		int ms = (int)((window - now_ns()) / MS) + 1;
		if (poll(pf, (nfds_t)n, ms) <= 0)
			continue;
		for (int k = 0; k < n; k++) {
			if (!(pf[k].revents & (POLLOUT | POLLERR | POLLHUP)))
				continue;
			int rc = net_connect_result(pf[k].fd);
			if (rc < 0) {
				case_fail(c, expected, "connect %d failed: %s", idx[k] + 1,
					errno_name(-rc));
				goto out;
			}
			done[idx[k]] = true;
			connected++;
		}
	}
	case_num(c, "connected_within_1s", connected);
	case_num(c, "last_connect_ms", (double)(now_ns() - t0) / 1e6);
	if (connected < N) {
		case_fail(c, expected, "only %d of %d connects completed within 1 s (listen backlog "
			"too small or accept too slow)", connected, N);
		goto out;
	}
	for (int i = 0; i < N; i++) {
		if (send(fds[i], "b", 1, MSG_NOSIGNAL) != 1) {
			case_fail(c, expected, "send on connection %d failed: %s", i + 1,
				errno_name(errno));
			goto out;
		}
	}
	for (int i = 0; i < N; i++) {
		char back;
		ssize_t r = net_recv(fds[i], &back, 1, c->deadline_ns);

		if (r != 1 || back != 'b') {
			case_fail(c, expected, "connection %d: %s instead of its echo", i + 1,
				r == 0 ? "EOF" : r < 0 ? errno_name((int)-r) : "a wrong byte");
			break;
		}
		echoed++;
	}
	case_num(c, "echoed", echoed);
out:
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void case_limit_churn_10k(struct casectx *c)
{
	enum { N = 10000 };
	const char *expected = "10,000 connect/echo/close cycles all echo, leaving nothing behind";
	struct leakcheck lk;
	uint64_t t0;
	int i;

	leak_begin(c, &lk);
	t0 = now_ns();
	for (i = 0; i < N; i++) {
		char msg[16], back[16];
		size_t got;
		int fd, rc;

		fd = case_connect(c, &c->t->tcp, NULL, expected);
		if (fd < 0)
			break;
		leak_add_port(&lk, fd);
		snprintf(msg, sizeof(msg), "cycle %08d\n", i);
		rc = net_send_all(fd, msg, 15, c->deadline_ns);
		if (rc == 0)
			rc = net_recv_exact(fd, back, 15, c->deadline_ns, &got);
		close(fd);
		if (rc == 0 && memcmp(msg, back, 15) != 0)
			rc = -EBADMSG;
		if (rc < 0) {
			case_fail(c, expected, "cycle %d: %s", i + 1, errno_name(-rc));
			break;
		}
	}
	case_num(c, "cycles", i);
	case_num(c, "cycles_per_s", i / ((double)(now_ns() - t0) / 1e9));
	leak_end(c, &lk, 2 * SEC);
	case_check_serving(c);
}

/* LIMIT-CONNS-1100 */
enum conn_state { CS_IDLE, CS_CONNECTING, CS_WAITING, CS_ECHOED, CS_REFUSED, CS_BAD };

struct lconn {
	int fd;
	enum conn_state st;
	char msg[8];
	size_t got;
	char back[8];
};

#define LIMIT_N 1100
#define LIMIT_MIN_ECHOED 900
#define LIMIT_IN_FLIGHT 32

/* Reads what a waiting connection got: its whole message back makes it CS_ECHOED, a wrong byte
 * CS_BAD, an end (EOF/RST) before any byte CS_REFUSED, an end after some bytes CS_BAD. */
static void lconn_on_readable(struct lconn *k)
{
	ssize_t r = recv(k->fd, k->back + k->got, sizeof(k->back) - k->got, 0);

	if (r < 0 && errno == EAGAIN)
		return;
	if (r <= 0) {
		k->st = k->got == 0 ? CS_REFUSED : CS_BAD;
		return;
	}
	k->got += (size_t)r;
	if (memcmp(k->back, k->msg, k->got) != 0)
		k->st = CS_BAD;
	else if (k->got == sizeof(k->msg))
		k->st = CS_ECHOED;
}

void case_limit_conns_1100(struct casectx *c)
{
	const char *expected = "1,100 connections open at once: each is echoed, or (past a limit "
		"of the server's) closed at once; at least 900 echoed; the server survives";
	struct lconn *cs = calloc(LIMIT_N, sizeof(*cs));
	struct pollfd *pf = calloc(LIMIT_N, sizeof(*pf));
	int *idx = calloc(LIMIT_N, sizeof(*idx));
	int next = 0, count[CS_BAD + 1] = { 0 };
	struct rlimit rl;

	if (!cs || !pf || !idx) {
		case_fail(c, expected, "calloc failed");
		goto out;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < LIMIT_N + 64) {
		case_skip(c, "echo-conform's own fd limit (%llu) is below %d",
			(unsigned long long)rl.rlim_cur, LIMIT_N + 64);
		goto out;
	}
	for (int i = 0; i < LIMIT_N; i++) {
		cs[i].fd = -1;
		snprintf(cs[i].msg, sizeof(cs[i].msg) + 1, "c%05d\n", i);
	}
	/* Round 1: connect (a few handshakes at a time) and echo one message on each; every
	 * connection stays open. */
	for (;;) {
		int n = 0, inflight = 0, open_q = 0;

		for (int i = 0; i < next; i++)
			if (cs[i].st == CS_CONNECTING)
				inflight++;
		while (inflight < LIMIT_IN_FLIGHT && next < LIMIT_N) {
			int rc;

			/* Paced: a small backlog is LIMIT-BURST-200's business, not this case's. */
			case_pace_connect(c);
			rc = net_connect_start(&c->t->tcp, NULL, SOCK_STREAM, &cs[next].fd);

			if (rc < 0 && rc != -EINPROGRESS) {
				case_fail(c, expected, "connect %d failed: %s", next + 1,
					errno_name(-rc));
				goto close_all;
			}
			cs[next++].st = CS_CONNECTING;
			inflight++;
		}
		for (int i = 0; i < next; i++) {
			if (cs[i].st == CS_CONNECTING || cs[i].st == CS_WAITING) {
				pf[n] = (struct pollfd){ .fd = cs[i].fd,
					.events = cs[i].st == CS_CONNECTING ? POLLOUT : POLLIN };
				idx[n++] = i;
				open_q++;
			}
		}
		if (open_q == 0 && next == LIMIT_N)
			break;
		uint64_t now = now_ns();
		if (now >= c->deadline_ns)
			break;
		if (poll(pf, (nfds_t)n, (int)((c->deadline_ns - now) / MS) + 1) <= 0)
			continue;
		for (int k = 0; k < n; k++) {
			struct lconn *x = &cs[idx[k]];

			if (!pf[k].revents)
				continue;
			if (x->st == CS_CONNECTING) {
				int rc = net_connect_result(x->fd);
				if (rc == -ECONNRESET) {
					x->st = CS_REFUSED;
					continue;
				}
				if (rc < 0) {
					case_fail(c, expected, "connect %d failed: %s", idx[k] + 1,
						errno_name(-rc));
					goto close_all;
				}
				/* 7 bytes fit in any send buffer: one send() is enough. */
				if (send(x->fd, x->msg, sizeof(x->msg), MSG_NOSIGNAL) !=
						(ssize_t)sizeof(x->msg))
					x->st = CS_REFUSED;
				else
					x->st = CS_WAITING;
			} else {
				lconn_on_readable(x);
			}
		}
	}
	/* Round 2: every connection echoed in round 1 is still open and echoes again, all at
	 * the same time. */
	for (int i = 0; i < LIMIT_N; i++) {
		if (cs[i].st != CS_ECHOED)
			continue;
		cs[i].got = 0;
		cs[i].msg[0] = 'C';
		if (send(cs[i].fd, cs[i].msg, sizeof(cs[i].msg), MSG_NOSIGNAL) !=
				(ssize_t)sizeof(cs[i].msg))
			cs[i].st = CS_BAD;
		else
			cs[i].st = CS_WAITING;
	}
	for (;;) {
		int n = 0;
		uint64_t now = now_ns();

		for (int i = 0; i < LIMIT_N; i++)
			if (cs[i].st == CS_WAITING) {
				pf[n] = (struct pollfd){ .fd = cs[i].fd, .events = POLLIN };
				idx[n++] = i;
			}
		if (n == 0 || now >= c->deadline_ns)
			break;
		if (poll(pf, (nfds_t)n, (int)((c->deadline_ns - now) / MS) + 1) <= 0)
			continue;
		for (int k = 0; k < n; k++)
			if (pf[k].revents) {
				lconn_on_readable(&cs[idx[k]]);
				/* Closed after answering once: the server dropped a served client. */
				if (cs[idx[k]].st == CS_REFUSED)
					cs[idx[k]].st = CS_BAD;
			}
	}
	for (int i = 0; i < LIMIT_N; i++)
		count[cs[i].st]++;
	case_num(c, "echoed", count[CS_ECHOED]);
	case_num(c, "refused_cleanly", count[CS_REFUSED]);
	case_num(c, "no_answer", count[CS_WAITING] + count[CS_CONNECTING] + count[CS_IDLE]);
	case_num(c, "wrong_or_dropped", count[CS_BAD]);
	if (count[CS_BAD])
		case_fail(c, expected, "%d connections got wrong bytes or were closed after being "
			"served", count[CS_BAD]);
	else if (count[CS_WAITING] + count[CS_CONNECTING] + count[CS_IDLE])
		case_fail(c, expected, "%d connections neither echoed nor closed by the timeout "
			"(%d echoed)", count[CS_WAITING] + count[CS_CONNECTING] + count[CS_IDLE],
			count[CS_ECHOED]);
	else if (count[CS_ECHOED] < LIMIT_MIN_ECHOED)
		case_fail(c, expected, "only %d of %d echoed (%d refused)", count[CS_ECHOED],
			LIMIT_N, count[CS_REFUSED]);
close_all:
	for (int i = 0; i < LIMIT_N; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	case_check_serving(c);
out:
	free(cs);
	free(pf);
	free(idx);
}

void case_limit_emfile(struct casectx *c)
{
	enum { EXTRA_FDS = 8, CLIENTS = 32 };
	const char *expected = "at its fd limit (EMFILE) the server does not spin (under 5% CPU) "
		"and serves again once connections close";
	pid_t pid = c->t->pid;
	struct rlimit old, low;
	int fds[CLIENTS], count, served = 0;
	long limit;
	uint64_t cpu0, cpu1, t0;

	/* The previous case's connections may still be closing: start from a settled count. */
	if (probe_fds_settled(pid, now_ns() + 2 * SEC, &count) < 0 ||
			probe_fd_limit_for(pid, EXTRA_FDS, &limit) < 0 ||
			prlimit(pid, RLIMIT_NOFILE, NULL, &old) < 0) {
		case_skip(c, "cannot read the server's fds or fd limit");
		return;
	}
	/* Lower the server's soft limit to leave it 8 free fds: a few more accepts and it hits
	 * EMFILE, without us opening thousands of connections. */
	low = old;
	low.rlim_cur = (rlim_t)limit;
	if (low.rlim_cur > old.rlim_cur) {
		case_skip(c, "the server's fd limit (%llu) is already below %llu",
			(unsigned long long)old.rlim_cur, (unsigned long long)low.rlim_cur);
		return;
	}
	if (prlimit(pid, RLIMIT_NOFILE, &low, NULL) < 0) {
		case_skip(c, "cannot lower the server's fd limit: %s", errno_name(errno));
		return;
	}
	case_num(c, "server_fd_limit_set", (double)low.rlim_cur);
	for (int i = 0; i < CLIENTS; i++) {
		fds[i] = -1;
		if (net_connect(&c->t->tcp, now_ns() + 500 * MS, NULL, &fds[i]) == 0)
			send(fds[i], "e", 1, MSG_NOSIGNAL);
	}
	sleep_ns(300 * MS);
	for (int i = 0; i < CLIENTS; i++) {
		char b;
		if (fds[i] >= 0 && recv(fds[i], &b, 1, MSG_DONTWAIT) == 1)
			served++;
	}
	case_num(c, "served_at_limit", served);
	if (served == CLIENTS) {
		/* It took 32 connections with room for 8 more fds: it does not spend an fd per
		 * connection (io_uring direct descriptors, say), so there is no EMFILE to meet. */
		case_skip(c, "the server served all %d connections with its fd limit at %llu: it "
			"never met EMFILE", CLIENTS, (unsigned long long)low.rlim_cur);
		goto restore;
	}
	t0 = now_ns();
	if (probe_cpu_ns(pid, &cpu0) < 0) {
		case_fail(c, expected, "server process %d is gone", (int)pid);
		goto restore;
	}
	sleep_ns(SEC);
	if (probe_cpu_ns(pid, &cpu1) < 0) {
		case_fail(c, expected, "server process %d died at its fd limit", (int)pid);
		goto restore;
	}
	double pct = 100.0 * (double)(cpu1 - cpu0) / (double)(now_ns() - t0);
	case_num(c, "cpu_percent_at_limit", pct);
	if (pct > 5)
		case_fail(c, expected, "the server used %.0f%% CPU for 1 s while at its fd limit "
			"(busy loop on EMFILE)", pct);
restore:
	for (int i = 0; i < CLIENTS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	prlimit(pid, RLIMIT_NOFILE, &old, NULL);
	if (!probe_alive(pid))
		return;
	/* Recovery: the freed fds let it accept again. */
	uint64_t until = now_ns() + 2 * SEC;
	int rc;
	do {
		rc = net_echo_probe(&c->t->tcp, now_ns() + 500 * MS, "recovered?\n");
		if (rc < 0)
			sleep_ns(100 * MS);
	} while (rc < 0 && now_ns() < until);
	if (rc < 0)
		case_fail(c, expected, "2 s after the connections closed a new one still fails: %s",
			errno_name(-rc));
}
