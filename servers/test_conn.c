/* Unit tests of the per-connection echo state machine (conn.h), driven by hand on non-blocking
 * AF_UNIX socketpairs: `srv` is the connection's end, `peer` plays the client.
 *
 * AF_UNIX stream sockets charge queued bytes to the sender's SO_SNDBUF, so a small SO_SNDBUF on
 * `srv` makes the connection's sends partial (or EAGAIN) as soon as the peer stops reading, and a
 * small one on `peer` keeps the peer from queueing much ahead. Closing a unix socket that still
 * has unread data marks its partner with ECONNRESET, as TCP does with RST.
 *
 * Every conn_progress() call is checked against the contract of conn.h (progress()): it returns
 * at once, the buffer never holds more than cap, pending = bytes_in - bytes_out, and the mask it
 * returns is the one conn_wants() reports. A SIGALRM watchdog turns a call that blocks, or a loop
 * that stops making progress, into a failure instead of a hung test.
 */
#include "check.h"
#include "clock.h"
#include "conn.h"
#include "stream.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WATCHDOG_S 20
#define SMALL_SOCKBUF 4096

static volatile sig_atomic_t got_sigpipe;

static void on_sigpipe(int sig)
{
	got_sigpipe = 1;
}

static void on_alarm(int sig)
{
	static const char msg[] = "test_conn: watchdog: a call blocked or a loop made no progress\n";
	ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)r;
	_exit(1);
}

/* Every peer sends the deterministic stream (STREAM_SEED, 0) of common/stream.h, so a lost,
 * repeated or reordered byte shows at its own position. */
#define STREAM_SEED 862

struct pair {
	int srv, peer;
	uint64_t sent, received;   /* by the peer */
	bool peer_eof;             /* the peer has read EOF */
};

static void pair_open(struct pair *p, int sockbuf)
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

static void pair_close(struct pair *p)
{
	if (p->srv >= 0)
		close(p->srv);
	if (p->peer >= 0)
		close(p->peer);
}

/* The peer sends up to `max` further bytes of the stream, never more than `limit` in all.
 * Returns the bytes sent now (0 when the socket is full). */
static size_t peer_send(struct pair *p, size_t max, uint64_t limit)
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
static size_t peer_recv(struct pair *p, size_t max)
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

static bool fd_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* One conn_progress() call, checked against the contract in conn.h. */
static int progress(struct conn *c)
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

static void start(const char *name)
{
	fprintf(stderr, "# %s\n", name);
	alarm(WATCHDOG_S);
}

static void test_init_and_idle(void)
{
	struct pair p;
	struct conn c;

	start("init and idle: wants READ, EAGAIN gives a mask, not a block");
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 1000, NULL), 0);
	CHECK_EQ(c.fd, p.srv);
	CHECK_EQ(c.cap, 1000);
	CHECK_EQ(c.len, 0);
	CHECK(!c.eof && !c.draining);
	CHECK_EQ(c.bytes_in, 0);
	CHECK_EQ(c.bytes_out, 0);
	CHECK_EQ(conn_wants(&c), CONN_WANT_READ);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(progress(&c), CONN_WANT_READ);
	CHECK_EQ(c.bytes_in, 0);
	conn_free(&c);
	pair_close(&p);
}

static void test_small_echo(void)
{
	struct pair p;
	struct conn c;
	int r = 0;

	start("small echo");
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 4096, NULL), 0);
	CHECK_EQ(peer_send(&p, 5, 5), 5);
	for (int i = 0; i < 100 && c.bytes_out < 5; i++)
		r = progress(&c);
	CHECK_EQ(r, CONN_WANT_READ);
	CHECK_EQ(c.bytes_in, 5);
	CHECK_EQ(c.bytes_out, 5);
	CHECK_EQ(peer_recv(&p, 100), 5);
	/* The connection goes on: a second message on the same stream. */
	CHECK_EQ(peer_send(&p, 300, 305), 300);
	for (int i = 0; i < 100 && c.bytes_out < 305; i++)
		progress(&c);
	CHECK_EQ(c.bytes_out, 305);
	for (int i = 0; i < 100 && p.received < 305; i++)
		peer_recv(&p, 65536);
	CHECK_EQ(p.received, 305);
	CHECK(!p.peer_eof);
	conn_free(&c);
	pair_close(&p);
}

/* The buffer exists only while echo is pending: none before the first byte, none once it is
 * echoed, one while the peer does not read; with a pool the same buffer comes back, and the pool
 * keeps no more than `keep`. */
static void test_buffer_only_while_pending(void)
{
	struct conn_pool pool;
	struct pair p;
	struct conn c, d;
	uint8_t *first;

	start("buffer held only while echo is pending; pooled buffers are reused, at most keep");
	conn_pool_init(&pool, 4096, 1);
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 4096, &pool), 0);
	CHECK(c.buf == NULL);
	CHECK_EQ(progress(&c), CONN_WANT_READ);
	CHECK(c.buf == NULL);                        /* nothing read: nothing taken */
	CHECK_EQ(peer_send(&p, 100, 100), 100);
	for (int i = 0; i < 100 && c.bytes_out < 100; i++)
		progress(&c);
	CHECK_EQ(c.bytes_out, 100);
	CHECK(c.buf == NULL);                        /* all echoed: given back */
	CHECK_EQ(pool.n, 1);
	first = pool.free[0];
	CHECK_EQ(peer_recv(&p, 1000), 100);
	/* The peer stops reading: the echo stays pending, and so does the buffer. */
	while (peer_send(&p, 65536, 1 << 20) > 0 || progress(&c) != CONN_WANT_WRITE)
		;
	CHECK(c.buf == first && c.len > 0 && pool.n == 0);
	/* A second connection needs its own buffer: the pool is empty, so malloc. */
	CHECK_EQ(conn_init(&d, p.peer, 4096, &pool), 0);
	conn_free(&c);                               /* back to the pool (keep = 1) */
	CHECK_EQ(pool.n, 1);
	d.buf = malloc(4096);
	CHECK(d.buf != NULL);
	conn_free(&d);                               /* the pool is full: freed */
	CHECK_EQ(pool.n, 1);
	conn_pool_fini(&pool);
	pair_close(&p);
}

/* Full-duplex stream of `total` bytes through a buffer of `cap` with small socket buffers. The
 * peer reads at most `read_max` per round, slower than it sends, so the connection's sends are
 * partial or EAGAIN again and again (the peer must read less per round than the connection
 * moves), and the ring wraps at every offset when cap is odd. */
static void test_stream(size_t cap, uint64_t total, size_t send_max, size_t read_max)
{
	struct pair p;
	struct conn c;
	uint64_t rounds = 0, write_pending = 0;
	char name[128];

	snprintf(name, sizeof(name), "stream: %llu bytes through cap %zu (partial writes, wrap)",
		 (unsigned long long)total, cap);
	start(name);
	pair_open(&p, SMALL_SOCKBUF);
	CHECK_EQ(conn_init(&c, p.srv, cap, NULL), 0);
	while (p.received < total) {
		int r;

		CHECK(++rounds < 50 * total + 1000);
		peer_send(&p, send_max, total);
		r = progress(&c);
		CHECK(r > 0);
		if (r & CONN_WANT_WRITE)
			write_pending++;
		peer_recv(&p, read_max);
		CHECK(!p.peer_eof);
	}
	CHECK_EQ(c.bytes_in, total);
	CHECK_EQ(c.bytes_out, total);
	/* The test exercised what it claims: sends did not take everything at once. */
	CHECK(write_pending > 0);
	conn_free(&c);
	pair_close(&p);
}

/* Runs conn and peer, the peer sending but never reading, until nothing moves any more.
 * Returns the connection's mask at that point. */
static int stall(struct conn *c, struct pair *p, uint64_t limit)
{
	int still = 0, r = 0;

	for (uint64_t rounds = 0; still < 3; rounds++) {
		uint64_t in = c->bytes_in, out = c->bytes_out;
		size_t sent;

		CHECK(rounds < 1000000);
		sent = peer_send(p, 65536, limit);
		r = progress(c);
		CHECK(r > 0);
		still = (sent == 0 && in == c->bytes_in && out == c->bytes_out) ? still + 1 : 0;
	}
	return r;
}

static void test_backpressure(void)
{
	const size_t cap = 10000;
	const uint64_t total = 1 << 20;
	struct pair p;
	struct conn c;
	uint64_t in_at_stall;
	int r;

	start("backpressure: a peer that never reads is bounded by cap, then resumes");
	pair_open(&p, SMALL_SOCKBUF);
	CHECK_EQ(conn_init(&c, p.srv, cap, NULL), 0);
	r = stall(&c, &p, total);
	/* Stalled: the buffer is full, the connection waits to write only, and does not read
	 * although bytes wait on its socket (which is what stalls the peer). */
	CHECK(p.sent < total);
	CHECK_EQ(c.len, cap);
	CHECK_EQ(r, CONN_WANT_WRITE);
	CHECK_EQ(conn_wants(&c), CONN_WANT_WRITE);
	CHECK(fd_readable(p.srv));
	in_at_stall = c.bytes_in;
	for (int i = 0; i < 10; i++)
		CHECK_EQ(progress(&c), CONN_WANT_WRITE);
	CHECK_EQ(c.bytes_in, in_at_stall);

	/* The peer reads now: everything it sent comes back intact and in order, and the rest of
	 * the stream goes through. */
	for (uint64_t rounds = 0; p.received < total; rounds++) {
		CHECK(rounds < 1000000);
		peer_recv(&p, 65536);
		r = progress(&c);
		CHECK(r > 0);
		peer_send(&p, 65536, total);
	}
	CHECK_EQ(p.sent, total);
	CHECK_EQ(c.bytes_in, total);
	CHECK_EQ(c.bytes_out, total);
	CHECK_EQ(progress(&c), CONN_WANT_READ);
	conn_free(&c);
	pair_close(&p);
}

/* The peer sends n bytes and shuts its sending side before the connection ran at all. */
static void test_eof_immediate(uint64_t n)
{
	struct pair p;
	struct conn c;
	int r = 1;
	char name[96];

	snprintf(name, sizeof(name), "EOF: %llu bytes then SHUT_WR, all echoed, then 0",
		 (unsigned long long)n);
	start(name);
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 4096, NULL), 0);
	CHECK_EQ(peer_send(&p, n, n), n);
	CHECK_EQ(shutdown(p.peer, SHUT_WR), 0);
	for (int i = 0; i < 100 && r > 0; i++)
		r = progress(&c);
	CHECK_EQ(r, 0);
	CHECK(c.eof);
	CHECK_EQ(c.bytes_in, n);
	CHECK_EQ(c.bytes_out, n);
	conn_free(&c);
	close(p.srv);
	p.srv = -1;
	for (int i = 0; i < 100 && !p.peer_eof; i++)
		peer_recv(&p, 65536);
	CHECK_EQ(p.received, n);
	CHECK(p.peer_eof);
	pair_close(&p);
}

/* EOF while the buffer is full and more waits in the socket: nothing may be lost, and the
 * connection is finished only once every byte is out. */
static void test_eof_with_pending(void)
{
	const size_t cap = 65536;
	struct pair p;
	struct conn c;
	int r = 1;

	start("EOF with pending data: every byte echoed before conn_progress returns 0");
	pair_open(&p, SMALL_SOCKBUF);
	CHECK_EQ(conn_init(&c, p.srv, cap, NULL), 0);
	stall(&c, &p, UINT64_MAX);
	CHECK_EQ(c.len, cap);
	CHECK(fd_readable(p.srv));
	CHECK_EQ(shutdown(p.peer, SHUT_WR), 0);
	/* With a full buffer the connection cannot see the EOF yet, and must not finish. */
	for (int i = 0; i < 5; i++)
		CHECK_EQ(progress(&c), CONN_WANT_WRITE);

	/* A slow reader: a little per round. */
	for (uint64_t rounds = 0; r > 0; rounds++) {
		CHECK(rounds < 1000000);
		peer_recv(&p, 1000);
		r = progress(&c);
		CHECK(r >= 0);
		if (c.eof && r > 0)
			CHECK_EQ(r, CONN_WANT_WRITE);
	}
	CHECK(c.eof);
	CHECK_EQ(c.bytes_in, p.sent);
	CHECK_EQ(c.bytes_out, p.sent);
	conn_free(&c);
	close(p.srv);
	p.srv = -1;
	for (uint64_t rounds = 0; !p.peer_eof; rounds++) {
		CHECK(rounds < 1000000);
		peer_recv(&p, 65536);
	}
	CHECK_EQ(p.received, p.sent);
	pair_close(&p);
}

/* The peer closes completely before its bytes are echoed: the echo cannot be delivered, which
 * is an error (-EPIPE or -ECONNRESET), never a clean 0, and never a SIGPIPE. */
static void test_peer_closed(void)
{
	struct pair p;
	struct conn c;
	int r = 1;

	start("peer closed with echo owed: negative errno, no SIGPIPE");
	got_sigpipe = 0;
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 4096, NULL), 0);
	CHECK_EQ(peer_send(&p, 100, 100), 100);
	close(p.peer);
	p.peer = -1;
	for (int i = 0; i < 100 && r > 0; i++)
		r = progress(&c);
	CHECK(r == -EPIPE || r == -ECONNRESET);
	CHECK_EQ(got_sigpipe, 0);
	conn_free(&c);
	pair_close(&p);
}

/* The peer leaves unread echo behind and closes: the kernel marks the connection reset. */
static void test_peer_reset(void)
{
	struct pair p;
	struct conn c;
	int r = 1;

	start("peer reset (closed with unread data): negative errno, no SIGPIPE");
	got_sigpipe = 0;
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 4096, NULL), 0);
	CHECK_EQ(peer_send(&p, 10, 10), 10);
	for (int i = 0; i < 100 && c.bytes_out < 10; i++)
		progress(&c);
	CHECK_EQ(c.bytes_out, 10);
	close(p.peer);   /* the 10 echoed bytes are still unread */
	p.peer = -1;
	for (int i = 0; i < 100 && r > 0; i++)
		r = progress(&c);
	CHECK(r == -ECONNRESET || r == -EPIPE);
	CHECK_EQ(got_sigpipe, 0);
	conn_free(&c);
	pair_close(&p);
}

/* A peer that vanishes while the connection is blocked on a full socket with data pending. */
static void test_peer_gone_while_stalled(void)
{
	struct pair p;
	struct conn c;
	int r = 1;

	start("peer gone while echo is pending: negative errno, no SIGPIPE");
	got_sigpipe = 0;
	pair_open(&p, SMALL_SOCKBUF);
	CHECK_EQ(conn_init(&c, p.srv, 20000, NULL), 0);
	stall(&c, &p, UINT64_MAX);
	close(p.peer);
	p.peer = -1;
	for (int i = 0; i < 1000 && r > 0; i++)
		r = progress(&c);
	CHECK(r == -ECONNRESET || r == -EPIPE);
	CHECK_EQ(got_sigpipe, 0);
	conn_free(&c);
	pair_close(&p);
}

static void test_draining_idle(void)
{
	struct pair p;
	struct conn c;

	start("draining with nothing pending: finished at once, reads nothing new");
	pair_open(&p, 0);
	CHECK_EQ(conn_init(&c, p.srv, 4096, NULL), 0);
	CHECK_EQ(peer_send(&p, 100, 100), 100);   /* arrives after the server began stopping */
	c.draining = true;
	CHECK_EQ(conn_wants(&c), 0);
	CHECK_EQ(progress(&c), 0);
	CHECK_EQ(c.bytes_in, 0);
	conn_free(&c);
	pair_close(&p);
}

static void test_draining_pending(void)
{
	struct pair p;
	struct conn c;
	uint64_t in_at_drain;
	int r = 1;

	start("draining with echo pending: flushes it all, reads nothing new, then 0");
	pair_open(&p, SMALL_SOCKBUF);
	CHECK_EQ(conn_init(&c, p.srv, 30000, NULL), 0);
	stall(&c, &p, UINT64_MAX);
	CHECK(c.len > 0);
	c.draining = true;
	in_at_drain = c.bytes_in;
	CHECK_EQ(conn_wants(&c), CONN_WANT_WRITE);
	for (uint64_t rounds = 0; r > 0; rounds++) {
		CHECK(rounds < 1000000);
		peer_recv(&p, 2000);
		peer_send(&p, 65536, UINT64_MAX);   /* the peer keeps talking: not read any more */
		r = progress(&c);
		CHECK(r >= 0);
		if (r > 0)
			CHECK_EQ(r, CONN_WANT_WRITE);
		CHECK_EQ(c.bytes_in, in_at_drain);
	}
	CHECK_EQ(c.bytes_out, in_at_drain);
	conn_free(&c);
	/* The peer gets exactly what the connection had read, intact. */
	for (uint64_t rounds = 0; p.received < in_at_drain; rounds++) {
		CHECK(rounds < 1000000);
		peer_recv(&p, 65536);
		CHECK(!p.peer_eof);
	}
	CHECK_EQ(p.received, in_at_drain);
	pair_close(&p);
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_sigpipe };

	/* A send without MSG_NOSIGNAL would raise SIGPIPE: record it instead of dying, to say
	 * so clearly. */
	sigemptyset(&sa.sa_mask);
	CHECK_EQ(sigaction(SIGPIPE, &sa, NULL), 0);
	sa.sa_handler = on_alarm;
	CHECK_EQ(sigaction(SIGALRM, &sa, NULL), 0);

	test_init_and_idle();
	test_small_echo();
	test_buffer_only_while_pending();
	test_stream(1, 20000, 3, 1);
	test_stream(7, 200000, 100, 5);
	test_stream(4096, 2 << 20, 65536, 3000);
	test_stream(65536, 4 << 20, 65536, 5000);
	test_backpressure();
	test_eof_immediate(0);
	test_eof_immediate(5);
	test_eof_immediate(4096);
	test_eof_immediate(10000);
	test_eof_with_pending();
	test_peer_closed();
	test_peer_reset();
	test_peer_gone_while_stalled();
	test_draining_idle();
	test_draining_pending();
	CHECK_EQ(got_sigpipe, 0);
	fprintf(stderr, "ok\n");
	return 0;
}
