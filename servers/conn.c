#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* One call does at most this many read/write rounds, so a connection that always has data
 * (a streaming client on loopback) yields to the others in its loop. */
#define CONN_ROUNDS 8

void conn_pool_init(struct conn_pool *p, size_t cap, int keep)
{
	*p = (struct conn_pool){ .cap = cap, .keep = keep };
}

void conn_pool_fini(struct conn_pool *p)
{
	while (p->n > 0)
		free(p->free[--p->n]);
	free(p->free);
	p->free = NULL;
}

static bool piped(const struct conn *c)
{
	return c->pool && c->pool->pipes;
}

static int buf_take(struct conn *c)
{
	struct conn_pool *p = c->pool;

	c->buf = p && p->n > 0 ? p->free[--p->n] : malloc(c->cap);
	return c->buf ? 0 : -ENOMEM;
}

static void buf_give(struct conn *c)
{
	struct conn_pool *p = c->pool;

	if (!c->buf)
		return;
	if (p && p->n < p->keep) {
		if (!p->free)
			p->free = malloc(sizeof(*p->free) * (size_t)p->keep);
		if (p->free) {
			p->free[p->n++] = c->buf;
			c->buf = NULL;
			return;
		}
	}
	free(c->buf);
	c->buf = NULL;
}

int conn_init(struct conn *c, int fd, size_t cap, struct conn_pool *pool)
{
	*c = (struct conn){ .fd = fd, .cap = cap, .pool = pool && pool->cap == cap ? pool : NULL,
			    .pipe_r = -1, .pipe_w = -1 };
	return 0;
}

void conn_free(struct conn *c)
{
	if (piped(c))
		conn_pipe_close(c);
	else
		buf_give(c);
}

int conn_wants(const struct conn *c)
{
	int want = 0;

	if (!c->eof && !c->draining && c->len < c->cap && !c->in_full)
		want |= CONN_WANT_READ;
	if (c->len > 0)
		want |= CONN_WANT_WRITE;
	return want;
}

/* The free space of the ring (callers ensure len < cap) as up to two iovecs (after the pending bytes, then from the
 * start of the buffer), so one readv fills the ring without moving data. */
static int free_iov(const struct conn *c, struct iovec iov[2])
{
	size_t tail = (c->head + c->len) % c->cap;

	if (tail >= c->head) {  /* pending bytes do not wrap: free space is after them, then before */
		iov[0] = (struct iovec){ c->buf + tail, c->cap - tail };
		iov[1] = (struct iovec){ c->buf, c->head };
	} else {                /* pending bytes wrap: free space is the gap between their ends */
		iov[0] = (struct iovec){ c->buf + tail, c->head - tail };
		iov[1] = (struct iovec){ c->buf, 0 };
	}
	return iov[1].iov_len ? 2 : 1;
}

static int pending_iov(const struct conn *c, struct iovec iov[2])
{
	size_t first = c->cap - c->head;

	if (first > c->len)
		first = c->len;
	iov[0] = (struct iovec){ c->buf + c->head, first };
	iov[1] = (struct iovec){ c->buf, c->len - first };
	return iov[1].iov_len ? 2 : 1;
}

/* Returns bytes read (> 0), 0 for EOF, -EAGAIN or another -errno. */
static ssize_t conn_read(struct conn *c)
{
	struct iovec iov[2];
	ssize_t r;
	int n;

	if (piped(c)) {
		if (c->pipe_w < 0 && (r = conn_pipe_open(c)) < 0)
			return r;
		r = conn_pipe_in(c, c->cap - c->len);
		if (r == -EAGAIN && c->len > 0)
			c->in_full = true;   /* a full pipe or an empty socket: write first */
		goto got;
	}
	if (!c->buf && buf_take(c) < 0)
		return -ENOMEM;
	n = free_iov(c, iov);
	/* recv when the free space is one piece (nearly always: the ring restarts at 0 whenever
	 * it empties): readv copies and checks an iovec array first, which cost the epoll backend
	 * about 2 % of its CPU per message against the minimal server. */
	r = n == 1 ? recv(c->fd, iov[0].iov_base, iov[0].iov_len, 0) : readv(c->fd, iov, n);
	if (r < 0)
		return errno == EINTR ? -EAGAIN : -errno;
got:
	if (r < 0)
		return r;
	if (r == 0) {
		c->eof = true;
		return 0;
	}
	c->len += (size_t)r;
	c->bytes_in += (uint64_t)r;
	return r;
}

static ssize_t conn_write(struct conn *c)
{
	struct iovec iov[2];
	struct msghdr msg = { .msg_iov = iov };
	ssize_t w;

	if (piped(c)) {
		w = conn_pipe_out(c);
		if (w < 0)
			return w;
		c->in_full = false;
		c->len -= (size_t)w;
		c->bytes_out += (uint64_t)w;
		return w;
	}
	msg.msg_iovlen = (size_t)pending_iov(c, iov);
	/* send/sendmsg, not writev: only they take MSG_NOSIGNAL, so a vanished peer gives EPIPE
	 * instead of a SIGPIPE that would kill the whole server. send when the pending bytes are
	 * one piece: sendmsg copies a msghdr and an iovec array first (as readv above). */
	w = msg.msg_iovlen == 1 ? send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
				: sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	if (w < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	c->head = (c->head + (size_t)w) % c->cap;
	c->len -= (size_t)w;
	c->bytes_out += (uint64_t)w;
	if (c->len == 0)
		c->head = 0;  /* keeps the next read in one piece */
	return w;
}

int conn_progress(struct conn *c)
{
	bool rx_empty = false, tx_full = false;
	int round;

	for (round = 0; round < CONN_ROUNDS; round++) {
		bool moved = false;
		ssize_t r;

		if (!rx_empty && (conn_wants(c) & CONN_WANT_READ)) {
			size_t room = c->cap - c->len;
			r = conn_read(c);
			if (r < 0 && r != -EAGAIN)
				return (int)r;
			/* A stream read that returns less than it was offered has emptied the receive
			 * queue: asking again now would only say EAGAIN. Skipping that saves a system
			 * call per message; the (level-triggered) poll reports data that comes later. */
			rx_empty = r == -EAGAIN || (r > 0 && (size_t)r < room && !c->edge);
			moved = r > 0;
		}
		if (!tx_full && c->len > 0) {
			size_t pending = c->len;
			r = conn_write(c);
			if (r < 0 && r != -EAGAIN)
				return (int)r;
			tx_full = r == -EAGAIN || (r >= 0 && (size_t)r < pending);  /* likewise */
			moved = moved || r > 0;
		}
		if (!moved)
			break;
	}
	c->more = round == CONN_ROUNDS;
	if (c->len == 0 && !piped(c))
		buf_give(c);   /* nothing pending: an idle connection holds no buffer */
	if ((c->eof || c->draining) && c->len == 0)
		return 0;
	return conn_wants(c);
}
