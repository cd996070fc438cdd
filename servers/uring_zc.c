/* uring:zc, zero-copy sends (IORING_OP_SEND_ZC, Linux 6.0): the kernel sends from our provided
 * buffer instead of copying it into the socket, and posts two completions per send: the result
 * (with IORING_CQE_F_MORE when a notification follows) and, once it no longer reads the buffer,
 * a notification (IORING_CQE_F_NOTIF). A buffer goes back into the ring only when it is off its
 * connection's queue and every notification for it has arrived: reused any earlier, the next
 * receive could overwrite bytes the kernel is still sending (one client would get another's).
 *
 * For TCP the kernel is done with a buffer when the peer has acknowledged its bytes, so a
 * client that does not read keeps them: the connection counts such buffers against its QLIMIT
 * (zcheld) and stops receiving, its bytes count as out only when the kernel is done, and a
 * stopping server waits for them as for any pending echo; past the drain deadline such a
 * connection is reset, which makes the kernel drop them and let go of the buffers. On loopback the receiving socket gets
 * a copy of the pages anyway (a local peer could otherwise hold a sender's memory): the report
 * flag asks the kernel to say so in each notification (IORING_NOTIF_USAGE_ZC_COPIED).
 * A unix socket refuses zero copy (EOPNOTSUPP): that connection sends plainly from then on. */
#include <errno.h>
#include <sys/socket.h>

#include "uring_state.h"

void uring_zc_prep(struct uring *u, uint32_t i, struct io_uring_sqe *sqe, uint8_t *p,
		   uint32_t n)
{
	struct uconn *c = &u->conns[i];
	struct bq *b = &u->bq[c->qhead];

	io_uring_prep_send_zc(sqe, c->fd, p, n, MSG_NOSIGNAL, u->zc_report ? ZC_REPORT_USAGE : 0);
	b->zc++;
	b->owner = i;
	b->gen = c->gen;
}

uint32_t uring_zc_done(struct uring *u, int bid)
{
	struct bq *b = &u->bq[bid];
	struct uconn *c = &u->conns[b->owner];

	if (!b->zc || --b->zc)
		return NO_SLOT;
	/* After the drain deadline, or from a connection reset as idle: dropped by the reset, not
	 * delivered. */
	if (!u->aborting && !(c->gen == b->gen && c->idle == IDLE_RESET))
		stat_add(&u->w->stats.bytes_out, b->zcbytes);
	b->zcbytes = 0;
	if (!b->popped)
		return NO_SLOT;      /* still on its queue: more of it to send */
	b->popped = 0;
	ubufs_give(&u->bufs, bid);
	if (c->fd < 0 || c->gen != b->gen || !c->zcheld)
		return NO_SLOT;      /* its connection has gone */
	c->zcheld--;
	return b->owner;
}

int uring_zc_result(struct uring *u, struct uconn *c, int res, uint32_t flags, int bid)
{
	if (res > 0)
		u->bq[bid].zcbytes += (uint32_t)res;
	if (!(flags & IORING_CQE_F_MORE))
		uring_zc_done(u, bid);   /* no notification comes for this one */
	if (res == -EINVAL && u->zc_report) {
		u->zc_report = false;    /* a kernel before 6.2 refuses the report: without it */
		return -EAGAIN;
	}
	if (res == -EOPNOTSUPP) {
		c->copy = 1;             /* a unix socket: zero copy is for TCP and UDP */
		return -EAGAIN;
	}
	return res;
}
