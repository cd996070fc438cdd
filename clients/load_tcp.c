/* The stream transport (TCP and unix stream sockets). Messages are slices of one byte stream
 * per connection; payload bytes are never stored: they are a function of (seed, connection,
 * offset) (common/stream.h), so a partial write is finished by generating its rest again, and
 * what comes back is checked as it arrives, in whatever pieces it arrives. */
#include <errno.h>
#include <sys/socket.h>

#include "clock.h"
#include "loader.h"
#include "stream.h"

#define TCP_RBUF (256u << 10)
#define TCP_WBUF (64u << 10)

static void tcp_buffers(const struct load_config *cfg, size_t *rbuf, size_t *wbuf)
{
	*rbuf = TCP_RBUF;
	*wbuf = TCP_WBUF;
}

bool tcp_unsent(const struct lconn *c)
{
	return c->send_off < c->queued_off;
}

/* Churn: the engine reported the connecting socket (writable, or in error): the connect is
 * over. True when it succeeded; false when the transaction failed (counted by its cause). */
static bool connect_done(struct loader *w, struct lconn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		lconn_fail(w, c, err_kind_of(err));
		return false;
	}
	c->connecting = false;
	c->txn.connected = now_ns();
	w->connects += loader_in_window(w, c->txn.due);
	return true;
}

static void tcp_flush(struct loader *w, struct lconn *c)
{
	const struct load_config *cfg = w->cfg;

	if (c->connecting && !connect_done(w, c))
		return;

	while (c->send_off < c->queued_off) {
		uint64_t left = c->queued_off - c->send_off;
		size_t n = left < w->wbuf_len ? (size_t)left : w->wbuf_len;
		ssize_t r;

		stream_fill(cfg->seed, c->id, c->send_off, w->wbuf, n);
		r = send(c->fd, w->wbuf, n, MSG_NOSIGNAL | (w->blocking ? 0 : MSG_DONTWAIT));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			lconn_fail(w, c, err_kind_of(errno));
			return;
		}
		c->send_off += (uint64_t)r;
		if ((size_t)r < n)
			break;
	}
	lconn_set_want_out(w, c, c->send_off < c->queued_off);
}

void tcp_consume(struct loader *w, struct lconn *c, const uint8_t *p, size_t n, uint64_t now)
{
	const struct load_config *cfg = w->cfg;

	if (!c->txn.first)
		c->txn.first = now;   /* churn: the first reply (set once per transaction) */
	while (n) {
		struct msg *m;
		uint64_t end, take;

		if (!c->count || c->recv_off >= c->send_off) {
			w->c.extra_bytes += n;
			return;
		}
		m = lconn_at(c, 0);
		end = m->start_off + m->size;
		take = end - c->recv_off;
		if (take > n)
			take = n;
		if (take > c->send_off - c->recv_off)
			take = c->send_off - c->recv_off;
		if (cfg->verify && !m->bad &&
		    stream_check(cfg->seed, c->id, c->recv_off, p, (size_t)take) != take) {
			m->bad = 1;
			w->c.mismatches++;
		}
		c->recv_off += take;
		p += take;
		n -= (size_t)take;
		if (c->recv_off == end)
			lconn_done(w, c, now);
	}
}

static void tcp_readable(struct loader *w, struct lconn *c)
{
	if (c->connecting && !connect_done(w, c))
		return;
	/* Bounded rounds: one connection with a deep queue must not starve the others. */
	for (int round = 0; round < 4; round++) {
		/* Blocking mode waits (bounded by SO_RCVTIMEO) for the first read only. */
		ssize_t r = recv(c->fd, w->rbuf, w->rbuf_len,
				 w->blocking && !round ? 0 : MSG_DONTWAIT);
		uint64_t now;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (c->closing)
				lconn_close(w, c);   /* the end was reached; nothing more is owed */
			else
				lconn_fail(w, c, err_kind_of(errno));
			return;
		}
		if (r == 0) {
			if (c->closing)
				lconn_close(w, c);
			else
				lconn_fail(w, c, ERR_EOF);
			return;
		}
		if (c->closing)
			continue;            /* what was no longer awaited: discarded */
		now = now_ns();
		tcp_consume(w, c, w->rbuf, (size_t)r, now);
		if (c->dead)
			return;              /* churn: the transaction is over, its socket closed */
		lconn_replenish(w, c, now);
		if ((size_t)r < w->rbuf_len)
			break;
	}
}

/* A byte stream cannot skip a message: a reply that late fails the connection. */
bool tcp_expire(struct loader *w, struct lconn *c)
{
	lconn_fail(w, c, ERR_TIMEOUT);
	return false;
}

/* Our side first: the server reads our EOF, finishes and closes its side; we read its EOF
 * and close with nothing unread, so neither side sends a reset. */
static bool tcp_shutdown(struct loader *w, struct lconn *c)
{
	if (shutdown(c->fd, SHUT_WR) < 0) {
		lconn_close(w, c);
		return false;
	}
	c->closing = true;
	lconn_set_want_out(w, c, false);
	return true;
}

const struct transport transport_stream = {
	.name = "tcp",
	.socktype = SOCK_STREAM,
	.buffers = tcp_buffers,
	.flush = tcp_flush,
	.readable = tcp_readable,
	.unsent = tcp_unsent,
	.expire = tcp_expire,
	.shutdown = tcp_shutdown,
};
