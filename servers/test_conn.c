/* Unit tests of the per-connection echo state machine (conn.h), run twice: with buffers, and
 * with the splice backend's pipes (conn_pool_init_pipes) as the storage. The harness, and the
 * contract every conn_progress() call is checked against: test_conn_harness.h. */
#include "check.h"
#include "test_conn_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_init_and_idle(void)
{
	struct pair p;
	struct conn c;

	start("init and idle: wants READ, EAGAIN gives a mask, not a block");
	pair_open(&p, 0);
	conn_begin(&c, p.srv, 1000);
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
	conn_begin(&c, p.srv, 4096);
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
	conn_begin(&c, p.srv, cap);
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
	conn_begin(&c, p.srv, cap);
	r = stall(&c, &p, total);
	/* Stalled: the buffer is full (a pipe: full, or its slots are, in_full), the connection
	 * waits to write only, and does not read although bytes wait on its socket (which is
	 * what stalls the peer). */
	CHECK(p.sent < total);
	CHECK(c.len == cap || (harness_pipes && c.in_full));
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
	conn_begin(&c, p.srv, 4096);
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
	conn_begin(&c, p.srv, cap);
	stall(&c, &p, UINT64_MAX);
	CHECK(c.len == cap || (harness_pipes && c.in_full));
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
	conn_begin(&c, p.srv, 4096);
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
	conn_begin(&c, p.srv, 4096);
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
	conn_begin(&c, p.srv, 20000);
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
	conn_begin(&c, p.srv, 4096);
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
	conn_begin(&c, p.srv, 30000);
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

/* The pipe is the connection's own: opened at its first read attempt, kept while it lives (so idle
 * connections and the fd count follow the connections), closed by conn_free. A run of tiny
 * writes fills the pipe's slots before its bytes reach cap: the connection must still move
 * everything, without asking to read while its pipe is full (in_full). */
static void test_pipe_per_connection(void)
{
	struct pair p;
	struct conn c;
	int pr;

	start("pipes: opened at the first read, kept, closed with the connection; full slots");
	pair_open(&p, 0);   /* room for 40 tiny messages (unix sockets charge ~1 KiB each) */
	conn_begin(&c, p.srv, 65536);
	CHECK_EQ(c.pipe_r, -1);                       /* no read yet: no pipe yet */
	CHECK_EQ(progress(&c), CONN_WANT_READ);
	for (int i = 0; i < 40; i++)
		CHECK_EQ(peer_send(&p, 1, 40), 1);    /* 40 pieces, one pipe slot each */
	for (int i = 0; i < 1000 && c.bytes_out < 40; i++)
		progress(&c);
	CHECK_EQ(c.bytes_out, 40);
	CHECK(c.pipe_r >= 0 && !c.in_full);
	pr = c.pipe_r;
	for (int i = 0; i < 100 && p.received < 40; i++)
		peer_recv(&p, 65536);
	CHECK_EQ(p.received, 40);
	CHECK_EQ(progress(&c), CONN_WANT_READ);
	CHECK_EQ(c.pipe_r, pr);                       /* idle: the pipe stays */
	conn_free(&c);
	CHECK_EQ(c.pipe_r, -1);
	CHECK(fcntl(pr, F_GETFD) < 0 && errno == EBADF);
	pair_close(&p);
}

static void suite(void)
{
	test_init_and_idle();
	test_small_echo();
	if (harness_pipes)
		test_pipe_per_connection();
	else
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
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_sigpipe };
	sigset_t pipe_sig;

	/* A send without MSG_NOSIGNAL would raise SIGPIPE: record it instead of dying, to say
	 * so clearly. */
	sigemptyset(&sa.sa_mask);
	CHECK_EQ(sigaction(SIGPIPE, &sa, NULL), 0);
	sa.sa_handler = on_alarm;
	CHECK_EQ(sigaction(SIGALRM, &sa, NULL), 0);

	fprintf(stderr, "# storage: buffers\n");
	suite();
	CHECK_EQ(got_sigpipe, 0);
	/* splice(2) cannot be told MSG_NOSIGNAL: the splice backend's threads block SIGPIPE
	 * (loop.c), and so does this one for the pipe suite. */
	fprintf(stderr, "# storage: pipes (splice)\n");
	harness_pipes = true;
	sigemptyset(&pipe_sig);
	sigaddset(&pipe_sig, SIGPIPE);
	CHECK_EQ(pthread_sigmask(SIG_BLOCK, &pipe_sig, NULL), 0);
	suite();
	CHECK_EQ(got_sigpipe, 0);
	fprintf(stderr, "ok\n");
	return 0;
}
