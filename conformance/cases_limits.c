/* Limits: bursts of connects, churn, many connections at once, and running out of fds. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"

/* LIMIT-CHURN-10K and LIMIT-CONNS-1100 last as long as the server needs (a fork-per-connection
 * server takes 5-20 s): while it makes progress, their deadline moves on, up to this cap
 * (plus --timeout). */
#define PROGRESS_CAP_NS (60 * SEC)

/* Retransmissions the kernel made on this client socket (its SYN, while connecting). */
static unsigned syn_retransmits(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return 0;
	return ti.tcpi_total_retrans;
}

void case_limit_burst_200(struct casectx *c)
{
	enum { N = 200 };
	const char *expected = "200 connects issued at once are all taken by the listen backlog "
		"(no SYN dropped and retried after 1 s), and each connection echoes";
	struct pollfd pf[N];
	int fds[N], connected = 0, echoed = 0, retried = 0;
	uint64_t t0 = now_ns(), last = t0, until = t0 + case_grace_ns(c, SEC);
	bool done[N] = { false };

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
	/* A handshake the kernel could not queue (a full accept queue drops the SYN) is retried by
	 * the client after 1 s. The verdict counts those retries (TCP_INFO), which do not depend
	 * on how fast this machine is; when the handshakes completed is reported beside it. */
	while (connected < N && now_ns() < until) {
		int n = 0, idx[N];
		for (int i = 0; i < N; i++)
			if (!done[i]) {
				pf[n] = (struct pollfd){ .fd = fds[i], .events = POLLOUT };
				idx[n++] = i;
			}
		int ms = (int)((until - now_ns()) / MS) + 1;
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
			last = now_ns();
			retried += syn_retransmits(pf[k].fd) > 0;
		}
		/* Past the first retry, a pending handshake that was retried decides the verdict:
		 * no need to wait for the later retries. */
		if (now_ns() >= t0 + SEC + 100 * MS) {
			int pending_retried = 0;
			for (int i = 0; i < N; i++)
				pending_retried += !done[i] && syn_retransmits(fds[i]) > 0;
			if (pending_retried) {
				retried += pending_retried;
				break;
			}
		}
	}
	retried = 0;
	for (int i = 0; i < N; i++)
		retried += !done[i] || syn_retransmits(fds[i]) > 0;
	case_num(c, "connected", connected);
	case_num(c, "syn_retried_or_pending", retried);
	if (connected == N)
		case_time_limit(c, "all_connected", last - t0, SEC);
	if (retried) {
		case_fail(c, expected, "%d of %d connects were not taken at once: SYN dropped and "
			"retried, or not completed (listen backlog too small or accept too slow)",
			retried, N);
		goto out;
	}
	case_progress(c, UINT64_MAX);   /* the echo round gets --timeout of its own */
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
	/* 10 s is the limit reported; a server that keeps cycling is not cut off before the cap. */
	uint64_t nominal = c->deadline_ns - t0, cap = t0 + PROGRESS_CAP_NS + c->t->timeout_ns;
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
			case_fail(c, expected, "cycle %d: %s%s", i + 1, errno_name(-rc),
				rc == -ETIMEDOUT && now_ns() >= cap ? " (still going at the cap: "
				"too slow to finish)" : "");
			break;
		}
		case_progress(c, cap);
	}
	case_num(c, "cycles", i);
	case_num(c, "cycles_per_s", i / ((double)(now_ns() - t0) / 1e9));
	if (i == N)
		case_time_limit(c, "cycles", now_ns() - t0, nominal);
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
	uint64_t t0 = now_ns(), nominal = c->deadline_ns - t0;
	uint64_t cap = t0 + PROGRESS_CAP_NS + c->t->timeout_ns;

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
			case_progress(c, cap);
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
				case_progress(c, cap);
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
	if (count[CS_WAITING] + count[CS_CONNECTING] + count[CS_IDLE] == 0)
		case_time_limit(c, "all_answered", now_ns() - t0, nominal);
	if (count[CS_BAD])
		case_fail(c, expected, "%d connections got wrong bytes or were closed after being "
			"served", count[CS_BAD]);
	else if (count[CS_WAITING] + count[CS_CONNECTING] + count[CS_IDLE])
		case_fail(c, expected, "%d connections neither echoed nor closed %s (%d echoed)",
			count[CS_WAITING] + count[CS_CONNECTING] + count[CS_IDLE],
			now_ns() >= cap ? "by the cap (still progressing: too slow)" :
			"while nothing progressed for the timeout", count[CS_ECHOED]);
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

/* LIMIT-EMFILE, one attempt: lowers the server's fd limit to leave it EXTRA_FDS free fds and
 * connects CLIENTS clients (fds[]). Returns how many were served; *fds_grew is how many fds the
 * server gained meanwhile. */
enum { EMFILE_EXTRA_FDS = 8, EMFILE_CLIENTS = 32 };

static int emfile_attempt(struct casectx *c, const struct rlimit *old, int fds[], int *fds_grew)
{
	pid_t pid = c->t->pid;
	struct rlimit low = *old;
	int count, after, served = 0, was = -1;
	long limit;
	uint64_t t0, last_change;

	/* The previous case's connections may still be closing (a thread-per-connection server
	 * closes them from threads that are themselves still exiting): start from a settled
	 * count. */
	if (probe_fds_settled(pid, now_ns() + 2 * SEC, &count) < 0 ||
			probe_fd_limit_for(pid, EMFILE_EXTRA_FDS, &limit) < 0)
		return -ESRCH;
	low.rlim_cur = (rlim_t)limit;
	if (low.rlim_cur > old->rlim_cur)
		return -ERANGE;
	if (prlimit(pid, RLIMIT_NOFILE, &low, NULL) < 0)
		return -errno;
	case_num(c, "server_fd_limit_set", (double)low.rlim_cur);
	for (int i = 0; i < EMFILE_CLIENTS; i++) {
		fds[i] = -1;
		if (net_connect(&c->t->tcp, now_ns() + 500 * MS, NULL, &fds[i]) == 0)
			send(fds[i], "e", 1, MSG_NOSIGNAL);
	}
	/* Served = echoed. Wait at least 300 ms, then until nothing new is served for 200 ms (a
	 * slow server is still catching up), at most 2 s. */
	t0 = last_change = now_ns();
	bool got[EMFILE_CLIENTS] = { false };
	for (;;) {
		for (int i = 0; i < EMFILE_CLIENTS; i++) {
			char b;
			if (!got[i] && fds[i] >= 0 && recv(fds[i], &b, 1, MSG_DONTWAIT) == 1) {
				got[i] = true;
				served++;
			}
		}
		uint64_t now = now_ns();
		if (served != was) {
			was = served;
			last_change = now;
		}
		if (served == EMFILE_CLIENTS || now >= t0 + 2 * SEC ||
				(now >= t0 + 300 * MS && now >= last_change + 200 * MS))
			break;
		sleep_ns(20 * MS);
	}
	*fds_grew = probe_fds(pid, &after, NULL) == 0 ? after - count : 0;
	return served;
}

void case_limit_emfile(struct casectx *c)
{
	const char *expected = "at its fd limit (EMFILE) the server does not spin (under 5% CPU) "
		"and serves again once connections close";
	pid_t pid = c->t->pid;
	struct rlimit old;
	int fds[EMFILE_CLIENTS], served = 0, grew = 0, attempt;

	for (int i = 0; i < EMFILE_CLIENTS; i++)
		fds[i] = -1;
	if (prlimit(pid, RLIMIT_NOFILE, NULL, &old) < 0) {
		case_skip(c, "cannot read the server's fd limit: %s", errno_name(errno));
		return;
	}
	/* All served while the server's fd count grew by as many: fds of an earlier case closed
	 * after the count looked settled, so it had more room than planned. Try again. */
	for (attempt = 1; attempt <= 3; attempt++) {
		served = emfile_attempt(c, &old, fds, &grew);
		if (served != EMFILE_CLIENTS || grew < EMFILE_CLIENTS || attempt == 3)
			break;
		for (int i = 0; i < EMFILE_CLIENTS; i++) {
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
		}
		prlimit(pid, RLIMIT_NOFILE, &old, NULL);
	}
	case_num(c, "attempts", attempt);
	if (served == -ERANGE) {
		case_skip(c, "the server's fd limit (%llu) leaves it fewer than %d free fds already",
			(unsigned long long)old.rlim_cur, EMFILE_EXTRA_FDS);
		return;
	}
	if (served < 0) {
		case_skip(c, "cannot read the server's fds or lower its fd limit: %s",
			errno_name(-served));
		goto restore;
	}
	case_num(c, "served_at_limit", served);
	case_num(c, "server_fds_grew_by", grew);
	if (served == EMFILE_CLIENTS) {
		/* It took 32 connections with room for 8 more fds: it does not spend an fd per
		 * connection (io_uring direct descriptors, say), so there is no EMFILE to meet. */
		case_skip(c, "the server served all %d connections with its fd limit lowered to "
			"leave 8 free fds: it never met EMFILE", EMFILE_CLIENTS);
		goto restore;
	}
	case_expect_cpu_quiet(c, expected, 5, "cpu_percent_at_limit", "while at its fd limit");
restore:
	for (int i = 0; i < EMFILE_CLIENTS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	prlimit(pid, RLIMIT_NOFILE, &old, NULL);
	if (!probe_alive(pid))
		return;
	/* Recovery: the freed fds let it accept again. 2 s is the limit reported; the verdict
	 * waits for the generous bound. */
	uint64_t t0 = now_ns(), until = t0 + case_grace_ns(c, 2 * SEC);
	int rc;
	do {
		rc = net_echo_probe(&c->t->tcp, now_ns() + 500 * MS, "recovered?\n");
		if (rc < 0)
			sleep_ns(100 * MS);
	} while (rc < 0 && now_ns() < until);
	if (rc < 0)
		case_fail(c, expected, "%.1f s after the connections closed a new one still fails: "
			"%s", (double)(now_ns() - t0) / 1e9, errno_name(-rc));
	else
		case_time_limit(c, "recovery", now_ns() - t0, 2 * SEC);
}
