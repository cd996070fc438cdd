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
#include "load.h"
#include "payload.h"

#define UDP_BATCH 32
#define MATCH_DEPTH 64   /* how far past the oldest message an echo is looked for */

void udp_flush(struct worker *w, struct conn *c)
{
	const struct load_config *cfg = w->cfg;
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];

	while (c->nsent < c->count) {
		unsigned k = 0;
		int r;

		for (; k < UDP_BATCH && c->nsent + k < c->count; k++) {
			const struct msg *m = &c->ring[(c->head + c->nsent + k) & c->mask];
			uint8_t *slot = w->wbuf + (size_t)k * w->udp_slot;

			payload_fill(cfg->seed, c->id, m->start_off, slot, m->size);
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
			conn_fail(w, c, err_kind_of(errno));
			return;
		}
		c->nsent += (uint32_t)r;
		c->send_off = c->ring[(c->head + c->nsent - 1) & c->mask].start_off +
			c->ring[(c->head + c->nsent - 1) & c->mask].size;
		if ((unsigned)r < k)
			break;
	}
	conn_set_want_out(w, c, c->nsent < c->count);
}

static bool echo_matches(const struct worker *w, const struct conn *c, const struct msg *m,
			 const uint8_t *p, size_t n)
{
	if (n != m->size)
		return false;
	return !w->cfg->verify || payload_check(w->cfg->seed, c->id, m->start_off, p, n) == n;
}

static void drop_head(struct worker *w, struct conn *c)
{
	c->head = (c->head + 1) & c->mask;
	c->count--;
	if (c->nsent)
		c->nsent--;
	w->pending--;
}

static void udp_consume(struct worker *w, struct conn *c, const uint8_t *p, size_t n,
			bool truncated, uint64_t now)
{
	uint32_t depth = c->nsent < MATCH_DEPTH ? c->nsent : MATCH_DEPTH;

	if (!c->nsent) {
		w->c.extra_bytes += n;
		return;
	}
	for (uint32_t j = 0; !truncated && j < depth; j++) {
		if (echo_matches(w, c, &c->ring[(c->head + j) & c->mask], p, n)) {
			w->c.lost += j;
			while (j--)
				drop_head(w, c);
			conn_done(w, c, now);
			return;
		}
	}
	/* Matches nothing in flight: the oldest message came back damaged (or its echo grew). */
	w->c.mismatches++;
	c->ring[c->head].bad = 1;
	conn_done(w, c, now);
}

void udp_readable(struct worker *w, struct conn *c)
{
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];

	for (int round = 0; round < 4; round++) {
		uint64_t now;
		int r;

		for (unsigned k = 0; k < UDP_BATCH; k++) {
			iov[k].iov_base = w->rbuf + (size_t)k * w->udp_slot;
			iov[k].iov_len = w->udp_slot;
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
				conn_fail(w, c, err_kind_of(errno));
			return;
		}
		now = now_ns();
		for (int k = 0; k < r; k++)
			udp_consume(w, c, iov[k].iov_base, mm[k].msg_len,
				    (mm[k].msg_hdr.msg_flags & MSG_TRUNC) || mm[k].msg_len >= w->udp_slot,
				    now);
		conn_replenish(w, c, now);
		if (r < UDP_BATCH)
			break;
	}
}
