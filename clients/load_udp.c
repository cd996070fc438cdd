/* The datagram side of the worker. One message is one datagram; its echo must be one datagram
 * with the same bytes. Datagrams may be lost (counted when --timeout passes) or, in principle,
 * reordered: an echo is matched against the oldest messages in flight, and the ones it skips
 * over are counted as lost.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "clock.h"
#include "loader.h"
#include "stream.h"

#define UDP_BATCH 32     /* datagrams per sendmmsg/recvmmsg, and slots in each buffer */
#define MATCH_DEPTH 64   /* how far past the oldest message an echo is looked for */

/* Bytes per datagram slot in the buffers: one spare byte shows an over-long echo. */
static size_t udp_slot(const struct load_config *cfg)
{
	return cfg->size_hi + 1;
}

static void udp_flush(struct loader *w, struct lconn *c)
{
	const struct load_config *cfg = w->cfg;
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];

	while (c->nsent < c->count) {
		unsigned k = 0;
		int r;

		for (; k < UDP_BATCH && c->nsent + k < c->count; k++) {
			const struct msg *m = lconn_at(c, c->nsent + k);
			uint8_t *slot = w->wbuf + (size_t)k * udp_slot(w->cfg);

			stream_fill(cfg->seed, c->id, m->start_off, slot, m->size);
			iov[k].iov_base = slot;
			iov[k].iov_len = m->size;
			memset(&mm[k], 0, sizeof(mm[k]));
			mm[k].msg_hdr.msg_iov = &iov[k];
			mm[k].msg_hdr.msg_iovlen = 1;
		}
		r = sendmmsg(c->fd, mm, k, MSG_NOSIGNAL | (w->blocking ? 0 : MSG_DONTWAIT));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
				break;
			lconn_fail(w, c, err_kind_of(errno));
			return;
		}
		c->nsent += (uint32_t)r;
		if ((unsigned)r < k)
			break;
	}
	lconn_set_want_out(w, c, c->nsent < c->count);
}

static bool echo_matches(const struct loader *w, const struct lconn *c, const struct msg *m,
			 const uint8_t *p, size_t n)
{
	if (n != m->size)
		return false;
	return !w->cfg->verify || stream_check(w->cfg->seed, c->id, m->start_off, p, n) == n;
}

static void udp_consume(struct loader *w, struct lconn *c, const uint8_t *p, size_t n,
			bool truncated, uint64_t now)
{
	uint32_t depth = c->nsent < MATCH_DEPTH ? c->nsent : MATCH_DEPTH;

	if (!c->nsent) {
		w->c.extra_bytes += n;
		return;
	}
	for (uint32_t j = 0; !truncated && j < depth; j++) {
		if (echo_matches(w, c, lconn_at(c, j), p, n)) {
			w->c.lost += j;
			while (j--)
				lconn_pop(w, c, now);
			lconn_done(w, c, now);
			return;
		}
	}
	/* Matches nothing in flight: the oldest message came back damaged (or its echo grew). */
	w->c.mismatches++;
	lconn_at(c, 0)->bad = 1;
	lconn_done(w, c, now);
}

static void udp_readable(struct loader *w, struct lconn *c)
{
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];

	for (int round = 0; round < 4; round++) {
		uint64_t now;
		int r;

		for (unsigned k = 0; k < UDP_BATCH; k++) {
			iov[k].iov_base = w->rbuf + (size_t)k * udp_slot(w->cfg);
			iov[k].iov_len = udp_slot(w->cfg);
			memset(&mm[k], 0, sizeof(mm[k]));
			mm[k].msg_hdr.msg_iov = &iov[k];
			mm[k].msg_hdr.msg_iovlen = 1;
		}
		/* Blocking mode: wait (bounded by SO_RCVTIMEO) for one, then take what is there. */
		r = recvmmsg(c->fd, mm, UDP_BATCH,
			     w->blocking && !round ? MSG_WAITFORONE : MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				lconn_fail(w, c, err_kind_of(errno));
			return;
		}
		now = now_ns();
		for (int k = 0; k < r; k++)
			udp_consume(w, c, iov[k].iov_base, mm[k].msg_len,
				    (mm[k].msg_hdr.msg_flags & MSG_TRUNC) ||
				    mm[k].msg_len >= udp_slot(w->cfg), now);
		lconn_replenish(w, c, now);
		if (r < UDP_BATCH)
			break;
	}
}

static void udp_buffers(const struct load_config *cfg, size_t *rbuf, size_t *wbuf)
{
	*rbuf = *wbuf = UDP_BATCH * udp_slot(cfg);
}

static bool udp_unsent(const struct lconn *c)
{
	return c->nsent < c->count;
}

/* A datagram that long unanswered is lost; the connection goes on. */
static bool udp_expire(struct loader *w, struct lconn *c)
{
	w->c.lost++;
	lconn_pop(w, c, now_ns());
	return true;
}

/* A datagram socket has no end to announce: what is still owed was counted as lost. */
static bool udp_shutdown(struct loader *w, struct lconn *c)
{
	lconn_close(w, c);
	return false;
}

const struct transport transport_dgram = {
	.name = "udp",
	.socktype = SOCK_DGRAM,
	.buffers = udp_buffers,
	.flush = udp_flush,
	.readable = udp_readable,
	.unsent = udp_unsent,
	.expire = udp_expire,
	.shutdown = udp_shutdown,
};
