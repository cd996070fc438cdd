/* faulty-echo: an echo server with one named fault, chosen by --fault. Each fault is a bug seen
 * in real echo servers (docs/CONFORMANCE.md lists which conformance cases it must fail); with
 * --fault none it is a correct server, the baseline the faults are measured against.
 *
 * The server is a single poll() loop over non-blocking sockets, small on purpose so that each
 * fault is one visible `if` at the place where the bug lives. It honours the echo-server
 * start-up contract: binds (port 0 allowed), prints `listening ADDR` lines, exits 0 on SIGTERM.
 *
 * Two choices make the faults show deterministically: under the faults that act on pending
 * echo (drop-pending, short-write, spin-eof) accepted sockets get a 16 KiB send buffer, so echo
 * owed to a slow reader waits in this server's own queue rather than in an autotuned kernel
 * buffer (only there: with one 64 KiB loopback segment in flight, delayed ACKs make bulk
 * transfers crawl); and the per-connection queue stops reading at 256 KiB (backpressure),
 * except under the unbounded-queue fault.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "sock.h"

enum fault {
	F_NONE, F_PREFIX, F_TRUNCATE_4096, F_CORRUPT_DEEP, F_REORDER, F_CROSSTALK,
	F_SHORT_WRITE, F_DROP_PENDING, F_EOF_BATCH, F_NO_CLOSE, F_RST_ON_FIN, F_LEAK_FD,
	F_IDLE_TIMEOUT, F_ONE_AT_A_TIME, F_BLOCK_LOOP, F_UNBOUNDED_QUEUE, F_SPIN_EOF,
	F_EXIT_ON_RESET, F_TINY_BACKLOG, F_LISTENER_LIMIT, F_CRASH_OVER_1024, F_EMFILE_SPIN,
	F_IPV6_BROKEN, F_UDP_DROP_EMPTY, F_UDP_CROSSTALK,
};

static const struct {
	const char *name;
	const char *what;
} faults[] = {
	[F_NONE] = { "none", "no fault: a correct echo server" },
	[F_PREFIX] = { "prefix", "replies \"|From Server| \" + data, like a tutorial server" },
	[F_TRUNCATE_4096] = { "truncate-4096", "echoes at most 4096 bytes of each read or datagram" },
	[F_CORRUPT_DEEP] = { "corrupt-deep", "flips one bit of byte 1,000,000 of each stream" },
	[F_REORDER] = { "reorder", "holds a chunk up to 50 ms and sends the next one first" },
	[F_CROSSTALK] = { "crosstalk", "echoes to the most recently accepted client (one global "
		"client fd)" },
	[F_SHORT_WRITE] = { "short-write", "ignores short writes: what send() did not take is "
		"lost" },
	[F_DROP_PENDING] = { "drop-pending", "on EOF closes at once, dropping echo not yet sent" },
	[F_EOF_BATCH] = { "eof-batch", "reads until EAGAIN; a batch that ends in EOF is dropped" },
	[F_NO_CLOSE] = { "no-close", "never closes after the client's FIN (CLOSE-WAIT forever)" },
	[F_RST_ON_FIN] = { "rst-on-fin", "answers the client's FIN with RST" },
	[F_LEAK_FD] = { "leak-fd", "after the client's FIN calls shutdown() but never close()" },
	[F_IDLE_TIMEOUT] = { "idle-timeout", "closes a connection after 2.5 s without a byte from "
		"the client (a read timeout)" },
	[F_ONE_AT_A_TIME] = { "one-at-a-time", "serves one client at a time (iterative server)" },
	[F_BLOCK_LOOP] = { "block-loop", "blocking send(): a client that does not read blocks "
		"everyone" },
	[F_UNBOUNDED_QUEUE] = { "unbounded-queue", "keeps reading from a client that does not "
		"read, into memory without bound" },
	[F_SPIN_EOF] = { "spin-eof", "after a half-close, flushes pending echo in a busy loop" },
	[F_EXIT_ON_RESET] = { "exit-on-reset", "exits when a connection ends in ECONNRESET/EPIPE "
		"(like a SIGPIPE death)" },
	[F_TINY_BACKLOG] = { "tiny-backlog", "listen backlog 1 and 1 ms per accept (like a "
		"fork-per-connection server)" },
	[F_LISTENER_LIMIT] = { "listener-limit", "closes its listener after 1000 connections" },
	[F_CRASH_OVER_1024] = { "crash-over-1024", "aborts on an fd >= 1024 (select's FD_SETSIZE, "
		"as glibc's fortified FD_SET does)" },
	[F_EMFILE_SPIN] = { "emfile-spin", "on EMFILE retries accept at once: a busy loop" },
	[F_IPV6_BROKEN] = { "ipv6-broken", "closes connections from IPv6 peers at once (knows only "
		"sockaddr_in)" },
	[F_UDP_DROP_EMPTY] = { "udp-drop-empty", "ignores empty UDP datagrams" },
	[F_UDP_CROSSTALK] = { "udp-crosstalk", "answers each datagram to the previous datagram's "
		"sender" },
};
#define NFAULTS ((int)(sizeof(faults) / sizeof(faults[0])))

#define PREFIX "|From Server| "
#define QUEUE_CAP (256 * 1024)
#define READ_SIZE (64 * 1024)
#define SMALL_SNDBUF (16 * 1024)

struct conn {
	int fd;
	uint8_t *q;                    /* pending echo: q[head .. head+len) */
	size_t head, len, cap;
	uint64_t in_off;               /* bytes read so far (corrupt-deep) */
	bool eof;
	bool zombie;                   /* no-close: kept, never polled again */
	uint64_t last_io_ns;           /* idle-timeout */
	uint8_t *held;                 /* reorder: a chunk waiting for its successor */
	size_t held_len;
	uint64_t held_ns;
};

/* The server's whole state: one process, one poll loop. */
static struct {
	enum fault fault;
	int listen_fd, udp_fd, reserve_fd;
	struct conn **conns;
	int nconns, maxconns;
	int last_accepted;             /* crosstalk */
	unsigned long accepted;
	volatile sig_atomic_t stop;
} srv = { .listen_fd = -1, .udp_fd = -1, .reserve_fd = -1, .last_accepted = -1 };

/* Is this the fault chosen by --fault? Each fault is one such test where its bug lives. */
static bool has_fault(enum fault f)
{
	return srv.fault == f;
}

static void on_signal(int sig)
{
	(void)sig;
	srv.stop = 1;
}

/* ---- connections ---- */

static void conn_free(int i, bool close_fd)
{
	struct conn *c = srv.conns[i];

	if (close_fd)
		close(c->fd);
	free(c->q);
	free(c->held);
	free(c);
	srv.conns[i] = NULL;
}

static int queue_append(struct conn *c, const uint8_t *p, size_t n)
{
	if (c->head + c->len + n > c->cap) {
		if (c->len)
			memmove(c->q, c->q + c->head, c->len);
		c->head = 0;
		if (c->len + n > c->cap) {
			size_t cap = c->cap ? c->cap : 4096;
			while (cap < c->len + n)
				cap *= 2;
			uint8_t *q = realloc(c->q, cap);
			if (!q)
				return -ENOMEM;
			c->q = q;
			c->cap = cap;
		}
	}
	memcpy(c->q + c->head + c->len, p, n);
	c->len += n;
	return 0;
}

/* A connection that ended in an error: the fault that cannot take it exits here. */
static void conn_error(int i, int err)
{
	if (has_fault(F_EXIT_ON_RESET) && (err == ECONNRESET || err == EPIPE)) {
		fprintf(stderr, "faulty-echo: %s on a connection: exiting\n", strerror(err));
		exit(1);
	}
	conn_free(i, true);
}

/* The client has sent its FIN and everything owed is sent: end our side. */
static void conn_finish(int i)
{
	struct conn *c = srv.conns[i];

	if (has_fault(F_NO_CLOSE)) {
		c->zombie = true;
		return;
	}
	if (has_fault(F_LEAK_FD)) {
		shutdown(c->fd, SHUT_RDWR);
		conn_free(i, false);
		return;
	}
	conn_free(i, true);
}

/* Sends what is queued. 0, or -errno when the connection failed. */
static int conn_flush(struct conn *c)
{
	int flags = MSG_NOSIGNAL | (has_fault(F_BLOCK_LOOP) ? 0 : MSG_DONTWAIT);

	while (c->len > 0) {
		ssize_t n = send(c->fd, c->q + c->head, c->len, flags);

		if (has_fault(F_SHORT_WRITE)) {
			/* The bug: assume send() took everything. */
			c->head = c->len = 0;
			return n < 0 && errno != EAGAIN ? -errno : 0;
		}
		if (n > 0) {
			c->head += (size_t)n;
			c->len -= (size_t)n;
			c->last_io_ns = now_ns();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (has_fault(F_SPIN_EOF) && c->eof)
				continue;   /* the bug: retry at once instead of waiting for POLLOUT */
			return 0;
		}
		return -errno;
	}
	c->head = 0;
	return 0;
}

/* New bytes from connection i, after the faults that change data have had their way. */
static int conn_data(int i, uint8_t *p, size_t n)
{
	struct conn *c = srv.conns[i], *to = c;
	int rc;

	if (has_fault(F_CORRUPT_DEEP) && c->in_off <= 1000000 && 1000000 < c->in_off + n)
		p[1000000 - c->in_off] ^= 0x20;
	c->in_off += n;
	if (has_fault(F_TRUNCATE_4096) && n > 4096)
		n = 4096;
	if (has_fault(F_CROSSTALK) && srv.last_accepted >= 0 && srv.last_accepted < srv.maxconns &&
			srv.conns[srv.last_accepted])
		to = srv.conns[srv.last_accepted];
	if (has_fault(F_PREFIX) && queue_append(to, (const uint8_t *)PREFIX, strlen(PREFIX)) < 0)
		return -ENOMEM;
	if (has_fault(F_REORDER)) {
		if (!c->held) {
			c->held = malloc(READ_SIZE);
			if (!c->held)
				return -ENOMEM;
			memcpy(c->held, p, n);
			c->held_len = n;
			c->held_ns = now_ns();
			return 0;
		}
		/* The chunk that came second goes out first. */
		rc = queue_append(to, p, n);
		if (rc == 0)
			rc = queue_append(to, c->held, c->held_len);
		free(c->held);
		c->held = NULL;
		return rc < 0 ? rc : conn_flush(to);
	}
	rc = queue_append(to, p, n);
	return rc < 0 ? rc : conn_flush(to);
}

static void conn_release_held(struct conn *c)
{
	if (c->held) {
		queue_append(c, c->held, c->held_len);
		free(c->held);
		c->held = NULL;
		conn_flush(c);
	}
}

static void conn_eof(int i)
{
	struct conn *c = srv.conns[i];

	c->eof = true;
	if (has_fault(F_RST_ON_FIN)) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		conn_free(i, true);
		return;
	}
	if (has_fault(F_DROP_PENDING)) {
		conn_free(i, true);
		return;
	}
	conn_release_held(c);
	int rc = conn_flush(c);   /* spin-eof spins in here */
	if (rc < 0)
		conn_error(i, -rc);
	else if (c->len == 0)
		conn_finish(i);
}

static void conn_readable(int i)
{
	static uint8_t buf[READ_SIZE];
	struct conn *c = srv.conns[i];
	size_t want = has_fault(F_REORDER) ? 16 * 1024 : READ_SIZE;
	ssize_t n;

	if (has_fault(F_EOF_BATCH)) {
		/* Drain the socket into one batch; the bug: EOF at the end of the batch throws the
		 * whole batch away. */
		uint8_t *batch = NULL;
		size_t blen = 0;
		for (;;) {
			n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n <= 0)
				break;
			uint8_t *b = realloc(batch, blen + (size_t)n);
			if (!b)
				break;
			batch = b;
			memcpy(batch + blen, buf, (size_t)n);
			blen += (size_t)n;
		}
		if (n == 0) {
			free(batch);
			conn_free(i, true);
			return;
		}
		int err = n < 0 && errno != EAGAIN ? errno : 0;
		int rc = blen ? conn_data(i, batch, blen) : 0;
		free(batch);
		if (err || rc < 0)
			conn_error(i, err ? err : -rc);
		return;
	}
	n = recv(c->fd, buf, want, MSG_DONTWAIT);
	if (n > 0) {
		c->last_io_ns = now_ns();
		int rc = conn_data(i, buf, (size_t)n);
		if (rc < 0)
			conn_error(i, -rc);
	} else if (n == 0) {
		conn_eof(i);
	} else if (errno != EAGAIN && errno != EINTR) {
		conn_error(i, errno);
	}
}

static void conn_writable(int i)
{
	struct conn *c = srv.conns[i];
	int rc = conn_flush(c);

	if (rc < 0)
		conn_error(i, -rc);
	else if (c->eof && c->len == 0)
		conn_finish(i);
}

/* ---- accepting ---- */

static int conn_add(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	int i;

	if (!c)
		return -ENOMEM;
	for (i = 0; i < srv.maxconns && srv.conns[i]; i++)
		;
	if (i == srv.maxconns) {
		int n = srv.maxconns ? srv.maxconns * 2 : 64;
		struct conn **a = realloc(srv.conns, sizeof(*a) * (size_t)n);
		if (!a) {
			free(c);
			return -ENOMEM;
		}
		memset(a + srv.maxconns, 0, sizeof(*a) * (size_t)(n - srv.maxconns));
		srv.conns = a;
		srv.maxconns = n;
	}
	c->fd = fd;
	c->last_io_ns = now_ns();
	srv.conns[i] = c;
	return i;
}

static bool peer_is_ipv6(int fd)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);

	return getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin6_family == AF_INET6 &&
		!IN6_IS_ADDR_V4MAPPED(&sa.sin6_addr);
}

static void accept_ready(void)
{
	int sndbuf = SMALL_SNDBUF;
	bool small = has_fault(F_DROP_PENDING) || has_fault(F_SHORT_WRITE) || has_fault(F_SPIN_EOF);

	for (;;) {
		int flags = SOCK_CLOEXEC | (has_fault(F_BLOCK_LOOP) ? 0 : SOCK_NONBLOCK);
		int fd = accept4(srv.listen_fd, NULL, NULL, flags);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				if (has_fault(F_EMFILE_SPIN))
					return;   /* the bug: the listener stays readable, poll returns at once */
				/* Give up the reserve fd to accept and close one, so the client hears at
				 * once and the listener stops being readable. */
				close(srv.reserve_fd);
				fd = accept(srv.listen_fd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				srv.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			}
			return;
		}
		if (has_fault(F_CRASH_OVER_1024) && fd >= 1024) {
			fprintf(stderr, "faulty-echo: fd %d >= FD_SETSIZE: *** bit out of range ***\n", fd);
			abort();
		}
		if (has_fault(F_IPV6_BROKEN) && peer_is_ipv6(fd)) {
			close(fd);
			continue;
		}
		if (small)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		sock_set_nodelay(fd);
		int i = conn_add(fd);
		if (i < 0) {
			close(fd);
			return;
		}
		srv.last_accepted = i;
		srv.accepted++;
		if (has_fault(F_LISTENER_LIMIT) && srv.accepted >= 1000) {
			close(srv.listen_fd);
			srv.listen_fd = -1;
			return;
		}
		if (has_fault(F_TINY_BACKLOG)) {
			usleep(1000);
			return;
		}
	}
}

/* ---- UDP ---- */

static void udp_ready(void)
{
	static uint8_t buf[65536 + sizeof(PREFIX)];
	static struct sockaddr_storage prev;
	static socklen_t prev_len;
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	size_t off = has_fault(F_PREFIX) ? strlen(PREFIX) : 0;
	ssize_t n = recvfrom(srv.udp_fd, buf + off, 65536, MSG_DONTWAIT,
		(struct sockaddr *)&from, &flen);

	if (n < 0)
		return;
	if (has_fault(F_UDP_DROP_EMPTY) && n == 0)
		return;
	if (has_fault(F_PREFIX))
		memcpy(buf, PREFIX, off);
	if (has_fault(F_TRUNCATE_4096) && n > 4096)
		n = 4096;
	const struct sockaddr_storage *to = &from;
	socklen_t tlen = flen;
	if (has_fault(F_UDP_CROSSTALK) && prev_len) {
		to = &prev;
		tlen = prev_len;
	}
	sendto(srv.udp_fd, buf, (size_t)n + off, MSG_DONTWAIT, (const struct sockaddr *)to, tlen);
	if (has_fault(F_UDP_CROSSTALK)) {
		prev = from;
		prev_len = flen;
	}
}

/* ---- the loops ---- */

static void timers(void)
{
	uint64_t now = now_ns();

	for (int i = 0; i < srv.maxconns; i++) {
		struct conn *c = srv.conns[i];
		if (!c || c->zombie)
			continue;
		if (c->held && now - c->held_ns >= 50000000u)
			conn_release_held(c);
		/* A read timeout: only a connection waiting for the client, with nothing owed. */
		if (has_fault(F_IDLE_TIMEOUT) && !c->eof && c->len == 0 &&
				now - c->last_io_ns >= 2500000000u)
			conn_free(i, true);
	}
}

static void poll_loop(void)
{
	struct pollfd *pf = NULL;
	int *idx = NULL, cap = 0;

	while (!srv.stop) {
		int n = 0;

		if (cap < srv.maxconns + 2) {
			cap = srv.maxconns + 66;
			pf = realloc(pf, sizeof(*pf) * (size_t)cap);
			idx = realloc(idx, sizeof(*idx) * (size_t)cap);
			if (!pf || !idx)
				exit(1);
		}
		if (srv.listen_fd >= 0) {
			pf[n] = (struct pollfd){ .fd = srv.listen_fd, .events = POLLIN };
			idx[n++] = -1;
		}
		if (srv.udp_fd >= 0) {
			pf[n] = (struct pollfd){ .fd = srv.udp_fd, .events = POLLIN };
			idx[n++] = -2;
		}
		for (int i = 0; i < srv.maxconns; i++) {
			struct conn *c = srv.conns[i];
			short ev = 0;

			if (!c || c->zombie)
				continue;
			if (!c->eof && (has_fault(F_UNBOUNDED_QUEUE) || c->len < QUEUE_CAP))
				ev |= POLLIN;
			if (c->len > 0)
				ev |= POLLOUT;
			pf[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			idx[n++] = i;
		}
		int timeout = has_fault(F_REORDER) ? 10 : has_fault(F_IDLE_TIMEOUT) ? 100 : 1000;
		int rv = poll(pf, (nfds_t)n, timeout);
		if (rv < 0 && errno != EINTR)
			exit(1);
		for (int k = 0; rv > 0 && k < n; k++) {
			short re = pf[k].revents;
			int i = idx[k];

			if (!re)
				continue;
			if (i == -1) {
				accept_ready();
				continue;
			}
			if (i == -2) {
				udp_ready();
				continue;
			}
			if (!srv.conns[i] || srv.conns[i]->fd != pf[k].fd)
				continue;   /* freed (or replaced) earlier in this round */
			if (re & (POLLIN | POLLERR | POLLHUP)) {
				if (pf[k].events & POLLIN)
					conn_readable(i);
				else if (!(pf[k].events & POLLOUT))
					continue;
			}
			if (srv.conns[i] && (re & (POLLOUT | POLLERR | POLLHUP)) &&
					(pf[k].events & POLLOUT))
				conn_writable(i);
		}
		timers();
	}
	free(pf);
	free(idx);
}

/* one-at-a-time: the textbook iterative server. */
static void iterative_loop(void)
{
	static uint8_t buf[READ_SIZE];
	int fl = fcntl(srv.listen_fd, F_GETFL);

	fcntl(srv.listen_fd, F_SETFL, fl & ~O_NONBLOCK);
	while (!srv.stop) {
		int fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		for (;;) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0), off = 0;
			if (n <= 0)
				break;
			while (off < n) {
				ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
				if (w <= 0)
					break;
				off += w;
			}
			if (off < n)
				break;
		}
		close(fd);
	}
}

/* ---- set-up ---- */

static int open_listeners(const struct endpoint *ep, bool udp)
{
	struct endpoint real = *ep;
	socklen_t len = sizeof(real.sa);
	int one = 1, zero = 0;
	bool any6 = ep->family == AF_INET6 &&
		IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&ep->sa)->sin6_addr);

	srv.listen_fd = socket(ep->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv.listen_fd < 0)
		return -errno;
	setsockopt(srv.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (any6)
		setsockopt(srv.listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(srv.listen_fd, (const struct sockaddr *)&ep->sa, ep->len) < 0 ||
			listen(srv.listen_fd, has_fault(F_TINY_BACKLOG) ? 1 : SOMAXCONN) < 0 ||
			getsockname(srv.listen_fd, (struct sockaddr *)&real.sa, &len) < 0)
		return -errno;
	real.len = len;
	if (udp) {
		srv.udp_fd = socket(ep->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (srv.udp_fd < 0)
			return -errno;
		if (any6)
			setsockopt(srv.udp_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		/* UDP on the same port as TCP, as the start-up contract says. */
		if (bind(srv.udp_fd, (const struct sockaddr *)&real.sa, real.len) < 0)
			return -errno;
	}
	endpoint_format((struct sockaddr *)&real.sa, real.len, real.text, sizeof(real.text));
	if (any6) {
		/* A dual-stack listener answers on both loopbacks: name them both. */
		int port = endpoint_port(&real);
		printf("listening 127.0.0.1:%d\nlistening [::1]:%d\n", port, port);
		if (udp)
			printf("listening udp:127.0.0.1:%d\nlistening udp:[::1]:%d\n", port, port);
	} else {
		printf("listening %s\n", real.text);
		if (udp)
			printf("listening udp:%s\n", real.text);
	}
	fflush(stdout);
	return 0;
}

static void usage(FILE *f)
{
	fputs("Usage: faulty-echo [--fault NAME] [--listen ADDR] [--udp] [--list]\n"
		"An echo server with one named fault (default none: correct), for testing\n"
		"echo-conform. Prints `listening ADDR` lines; SIGTERM stops it.\n"
		"  -f, --fault NAME    see --list\n"
		"  -l, --listen ADDR   127.0.0.1:PORT, [::1]:PORT, [::]:PORT (dual stack);"
		" default 127.0.0.1:0\n"
		"  -u, --udp           also echo UDP on the same port\n"
		"      --list          one line per fault: NAME description\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n", f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fault", required_argument, NULL, 'f' },
		{ "listen", required_argument, NULL, 'l' },
		{ "udp", no_argument, NULL, 'u' },
		{ "list", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_text = "127.0.0.1:0", *why;
	struct endpoint ep;
	bool udp = false;
	int ch, rc;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":f:l:uhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': {
			int f;
			for (f = 0; f < NFAULTS && strcmp(optarg, faults[f].name) != 0; f++)
				;
			if (f == NFAULTS) {
				fprintf(stderr, "faulty-echo: unknown fault '%s' (see --list)\n",
					optarg);
				return 2;
			}
			srv.fault = (enum fault)f;
			break;
		}
		case 'l': listen_text = optarg; break;
		case 'u': udp = true; break;
		case 'L':
			for (int f = 0; f < NFAULTS; f++)
				printf("%-16s %s\n", faults[f].name, faults[f].what);
			return 0;
		case 'h': usage(stdout); return 0;
		case 'V': printf("faulty-echo %s\n", ECHOBENCH_VERSION); return 0;
		case ':':
			fprintf(stderr, "faulty-echo: option '%s' needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "faulty-echo: unknown option '%s' (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "faulty-echo: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (endpoint_parse(listen_text, &ep, &why) < 0 || ep.family == AF_UNIX) {
		fprintf(stderr, "faulty-echo: bad address '%s': %s\n", listen_text,
			ep.family == AF_UNIX ? "unix sockets are not supported" : why);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (has_fault(F_CRASH_OVER_1024)) {
		/* The abort is the point; a core file is not. */
		struct rlimit nocore = { 0, 0 };
		setrlimit(RLIMIT_CORE, &nocore);
	}
	/* 1,100 clients need more than the usual 1024 fds. */
	sock_raise_nofile(4096);
	srv.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* The iterative server is a TCP story; it would never get to a UDP socket. */
	rc = open_listeners(&ep, udp && !has_fault(F_ONE_AT_A_TIME));
	if (rc < 0) {
		fprintf(stderr, "faulty-echo: cannot listen on %s: %s\n", listen_text, strerror(-rc));
		return 1;
	}
	if (has_fault(F_ONE_AT_A_TIME))
		iterative_loop();
	else
		poll_loop();
	return 0;
}
