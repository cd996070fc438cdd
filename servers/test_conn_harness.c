/* The harness of test_conn.c (test_conn_harness.h): socketpairs, the peer's deterministic
 * stream, and one conn_progress() call checked against the contract of conn.h. */
#include "test_conn_harness.h"
#include "check.h"
#include "clock.h"
#include "stream.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool harness_pipes;
volatile sig_atomic_t got_sigpipe;


void on_sigpipe(int sig)
{
	got_sigpipe = 1;
}

void on_alarm(int sig)
{
	static const char msg[] = "test_conn: watchdog: a call blocked or a loop made no progress\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)r;
	_exit(1);
}

void pair_open(struct pair *p, int sockbuf)
{
	int sv[2];

	memset(p, 0, sizeof(*p));
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	p->srv = sv[0];
	p->peer = sv[1];
	if (sockbuf > 0) {
		for (int i = 0; i < 2; i++) {
			CHECK_EQ(setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &sockbuf, sizeof(sockbuf)), 0);
			CHECK_EQ(setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &sockbuf, sizeof(sockbuf)), 0);
		}
	}
}

void pair_close(struct pair *p)
{
	if (p->srv >= 0)
		close(p->srv);
	if (p->peer >= 0)
		close(p->peer);
}

/* The peer sends up to `max` further bytes of the stream, never more than `limit` in all.
 * Returns the bytes sent now (0 when the socket is full). */
size_t peer_send(struct pair *p, size_t max, uint64_t limit)
{
	uint8_t chunk[65536];
	size_t n = max < sizeof(chunk) ? max : sizeof(chunk);
	ssize_t r;

	if (limit - p->sent < n)
		n = (size_t)(limit - p->sent);
	if (n == 0)
		return 0;
	stream_fill(STREAM_SEED, 0, p->sent, chunk, n);
	r = send(p->peer, chunk, n, MSG_NOSIGNAL);
	if (r < 0) {
		CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
		return 0;
	}
	p->sent += (uint64_t)r;
	return (size_t)r;
}

/* The peer reads up to `max` bytes and checks them against the stream. Returns the bytes read
 * now; sets peer_eof on end of stream. */
size_t peer_recv(struct pair *p, size_t max)
{
	uint8_t chunk[65536];
	size_t n = max < sizeof(chunk) ? max : sizeof(chunk);
	ssize_t r = recv(p->peer, chunk, n, 0);

	if (r < 0) {
		CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
		return 0;
	}
	if (r == 0) {
		p->peer_eof = true;
		return 0;
	}
	size_t ok = stream_check(STREAM_SEED, 0, p->received, chunk, (size_t)r);
	if (ok < (size_t)r) {
		fprintf(stderr, "echoed byte %llu differs from the byte sent there\n",
			(unsigned long long)(p->received + ok));
		exit(1);
	}
	p->received += (uint64_t)r;
	CHECK(p->received <= p->sent);
	return (size_t)r;
}

bool fd_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* One conn_progress() call, checked against the contract in conn.h. */
int progress(struct conn *c)
{
	uint64_t t0 = now_ns();
	int r = conn_progress(c);

	CHECK(now_ns() - t0 < 1000000000u);   /* returned at once instead of waiting */
	CHECK(c->len <= c->cap);               /* the backpressure bound */
	CHECK(c->bytes_out <= c->bytes_in);
	CHECK_EQ(c->bytes_in - c->bytes_out, c->len);
	if (r > 0) {
		CHECK_EQ(r & ~(CONN_WANT_READ | CONN_WANT_WRITE), 0);
		CHECK_EQ(r, conn_wants(c));
		/* Pending data must be asked to be written, and nothing else: a WRITE wanted with
		 * nothing pending spins a level-triggered loop on an always-writable socket. */
		CHECK_EQ(!!(r & CONN_WANT_WRITE), c->len > 0);
		/* A full buffer must not ask to read (that is the bound), an empty one that can
		 * still receive must (else the connection stalls for ever). */
		if (c->len == c->cap || c->eof || c->draining)
			CHECK(!(r & CONN_WANT_READ));
		if (c->len == 0 && !c->eof && !c->draining)
			CHECK(r & CONN_WANT_READ);
	} else if (r == 0) {
		CHECK(c->eof || c->draining);
		CHECK_EQ(c->len, 0);
		CHECK_EQ(conn_wants(c), 0);
	}
	return r;
}

void start(const char *name)
{
	fprintf(stderr, "# %s\n", name);
	alarm(WATCHDOG_S);
}


/* Pools for conn_begin() in pipe mode: a connection keeps a pointer to its pool, and a test has
 * at most two connections at once. */
static struct conn_pool pipe_pools[4];
static int next_pool;

void conn_begin(struct conn *c, int fd, size_t cap)
{
	struct conn_pool *pool = NULL;

	if (harness_pipes) {
		pool = &pipe_pools[next_pool++ % 4];
		conn_pool_init_pipes(pool, cap);
	}
	CHECK_EQ(conn_init(c, fd, cap, pool), 0);
}
