/* The io_uring backend: the completion state machine. Echo is driven by completions, not by
 * readiness. Three layers, one file each, and a worker's life cycle over them:
 *   uring_ring.c   the ring: kernel negotiation and probing (with the features used and the
 *                  kernel each needs), submission and completion plumbing
 *   uring_bufs.c   the provided-buffer pool (its life cycle is in uring_bufs.h)
 *   uring.c        this file: per connection, listener and datagram socket, what to submit next
 *                  (its state is in uring_state.h)
 *   uring_worker.c setup, the wait loop, the drain and the teardown of one worker's ring
 *
 * Per connection at most one recv and one send are in flight. A recv's data goes on the
 * connection's queue of held buffers (in order) and is sent from there; a buffer goes back into
 * the ring only when its last byte is sent.
 *
 * Receiving: one multishot recv per connection (IORING_RECV_MULTISHOT) stays armed across
 * messages and posts one CQE per arrival, each with its own provided buffer. Backpressure: it
 * is cancelled once QLIMIT buffers are queued, and capped by the kernel at one buffer's worth
 * of bytes per arm (sqe->optlen, Linux 6.17: without the cap the kernel fills up to 32 buffers
 * per wake-up before a cancel arrives, and a client that did not read held 2.4 MB); it is
 * re-armed only when the queue is fully sent. So a peer that does not read stalls only its own
 * connection, holding about one buffer (test_many_stalled_clients_hold_bounded_memory: 64-120
 * KiB per stalled client, as with epoll). The end of a multishot (no IORING_CQE_F_MORE:
 * cap reached, cancelled, EOF, error, or -ENOBUFS when the ring was empty) is just "no recv in
 * flight": conn_next() re-arms when the queue is empty. -ENOBUFS grows the pool once per pass,
 * since a multishot recv needs a free buffer even to find there is no data (with a pool grown
 * only on take, 119,085 of 122,730 recvs ended in ENOBUFS at 256 connections). A kernel that
 * refuses the capped multishot (EINVAL) gets single-shot recv from then on: the run-time probe.
 *
 * What one echoed message costs, 256 connections x 128 B closed loop:
 *   before: two SQEs (send, re-armed recv), two CQEs (recv, send), no system call of its own
 *           (every SQE of a pass goes in the one io_uring_enter that also waits).
 *   now:    one SQE (the send) and two CQEs; the recv stays armed. This is `uring` against
 *           `uring:singleshot`, which keeps the old single-shot recv and accept: server CPU per
 *           message 0.956-0.984 (medians of 5 pairs, pinned and unpinned), msgs/s 1.00-1.12;
 *           command: bench/io_models.py --only uring-epoll --epoll uring:singleshot --uring uring
 *   also:   registered ring fd (io_uring_register_ring_fd, Linux 5.18): no fd lookup per
 *           io_uring_enter; kept though too small to measure here.
 * What did not help (measured, not kept):
 *   - fixed files (each accepted fd registered into a sparse table, IOSQE_FIXED_FILE on recv
 *     and send): server CPU per message 1.01 (0.96-1.06) of plain fds over 6 pairs, pinned,
 *     so one fget/fput per operation is not where the time goes; accepting as direct
 *     descriptors would also cost a close_direct SQE per connection and TCP_NODELAY by hand.
 *   - recv/send bundles (IORING_RECVSEND_BUNDLE, 6.10): a bundle helps only when one receive
 *     spans several buffers; with --bufsize buffers (64 KiB) and 128 B messages it never does,
 *     and a send bundle sends from a ring of buffers in ring order, not a connection's queue.
 *   - uring:sqpoll: a kernel thread polls the SQ, so a pass needs io_uring_enter only to wait.
 *     On this 2-CPU machine the thread takes the CPU the client needs (server CPU per message
 *     1.7x of `uring`, with the poller counted); it is a variant to compare, not the default.
 * The `uring:singleshot` variant uses no multishot at all (accept or recv), for comparison.
 *
 * user_data is (slot << 8 | op), and every completion goes through one switch in uring_dispatch().
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend.h"
#include "clock.h"
#include "sock.h"
#include "uring_bufs.h"
#include "uring_ring.h"
#include "uring_state.h"


static int idxvec_push(struct idxvec *q, uint32_t i)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		uint32_t *v = realloc(q->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		q->v = v;
		q->cap = cap;
	}
	q->v[q->n++] = i;
	return 0;
}

static uint32_t slot_alloc(struct uring *u)
{
	if (u->free_head == NO_SLOT) {
		uint32_t n = u->nslots ? u->nslots * 2 : 256;
		struct uconn *c = realloc(u->conns, (size_t)n * sizeof(*c));

		if (!c)
			return NO_SLOT;
		for (uint32_t i = u->nslots; i < n; i++) {
			c[i].fd = -1;
			c[i].next_free = i + 1 < n ? i + 1 : NO_SLOT;
		}
		u->conns = c;
		u->free_head = u->nslots;
		u->nslots = n;
	}
	uint32_t i = u->free_head;

	u->free_head = u->conns[i].next_free;
	return i;
}

static void queue_push(struct uring *u, struct uconn *c, int bid, uint32_t len)
{
	u->bq[bid] = (struct bq){ .len = len, .next = -1 };   /* not in use: zc is 0 */
	if (c->qtail >= 0)
		u->bq[c->qtail].next = bid;
	else
		c->qhead = bid;
	c->qtail = bid;
	c->nq++;
}

/* The head buffer is sent (or dropped): back into the ring for the next recv of anyone. */
static void queue_pop(struct uring *u, struct uconn *c)
{
	int bid = c->qhead;

	c->qhead = u->bq[bid].next;
	if (c->qhead < 0)
		c->qtail = -1;
	c->nq--;
	c->off = 0;
	if (u->bq[bid].zc) {
		u->bq[bid].popped = 1;   /* given back when its last notification arrives */
		c->zcheld++;
	} else
		ubufs_give(&u->bufs, bid);
}

/* Ends a connection that has nothing in flight. err < 0: it broke (counted as a reset). */
void uring_conn_close(struct uring *u, uint32_t i, int err)
{
	struct uconn *c = &u->conns[i];

	if (c->idle != IDLE_NO)
		svc_idle_closing(u->w, c->fd, c->idle == IDLE_RESET);
	else if (err < 0)
		stat_add(&u->w->stats.resets, 1);
	while (c->nq)
		queue_pop(u, c);
	if (c->zcheld && u->aborting) {
		/* Past the drain deadline with zero-copy bytes the peer never took: a reset drops
		 * them, so the kernel lets go of our buffers (their notifications come). */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	svc_release(u->w, c->src);
	c->fd = -1;
	c->parked = PARK_NONE;
	c->next_free = u->free_head;
	u->free_head = i;
	u->nlive--;
}

static void conn_park(struct uring *u, uint32_t i, enum park why)
{
	struct uconn *c = &u->conns[i];

	if (c->parked != PARK_NONE)
		return;
	if (idxvec_push(why == PARK_NOBUF ? &u->nobuf : &u->nosqe, i) < 0) {
		c->err = -ENOMEM;   /* closed once its operations are done */
		return;
	}
	c->parked = (uint8_t)why;
}

static void conn_cancel(struct uring *u, uint32_t i, enum op op, uint8_t bit)
{
	struct uconn *c = &u->conns[i];

	if (c->cancelling & bit)
		return;
	c->cancelling |= bit;
	/* A send's user_data also names its buffer, always the head of the queue while it is in
	 * flight: the cancel must name it too, or it finds nothing. */
	uio_cancel(&u->io, op == OP_SEND ? ud_buf(op, i, c->qhead) : ud(op, i), ud(OP_CANCEL, 0));
}

static void arm_recv(struct uring *u, uint32_t i, struct io_uring_sqe *sqe)
{
	struct uconn *c = &u->conns[i];

	io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);   /* len 0: the buffer's size */
	if (u->mshot) {
		sqe->ioprio |= IORING_RECV_MULTISHOT;
		/* sqe->optlen (Linux 6.17; file_index in liburing 2.3's layout): the multishot ends
		 * after this many bytes. Without it the kernel goes on filling buffers (up to 32
		 * per wake-up) before our cancel arrives: 2.4 MB held per stalled client. */
		sqe->file_index = u->bufs.bsize;
	}
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = UBUFS_GROUP;
	io_uring_sqe_set_data64(sqe, ud(OP_RECV, i));
	c->recv = 1;
}

/* The one place that decides what a connection does next: send what is pending; receive while
 * little is pending (multishot) or nothing is (single shot); cancel what is no longer wanted;
 * close once it is broken, or at EOF or stop with nothing left to send, and nothing in flight. */
static void conn_next(struct uring *u, uint32_t i)
{
	struct uconn *c = &u->conns[i];
	struct io_uring_sqe *sqe;
	bool dead = c->err < 0 || u->aborting;
	unsigned held = c->nq + c->zcheld;
	bool want_recv = !dead && !c->eof && !u->stopping && (u->mshot ? held < QLIMIT : held == 0);

	if (c->parked != PARK_NONE)
		return;
	if (dead && !c->send)
		while (c->nq)
			queue_pop(u, c);
	if (c->nq && !c->send && !dead) {
		sqe = uio_sqe(&u->io);
		if (!sqe) {
			conn_park(u, i, PARK_NOSQE);
			return;
		}
		uint8_t *p = ubufs_mem(&u->bufs, c->qhead) + c->off;
		uint32_t n = u->bq[c->qhead].len - c->off;

		if (u->zc && !c->copy)
			uring_zc_prep(u, i, sqe, p, n);
		else
			io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud_buf(OP_SEND, i, c->qhead));
		c->send = 1;
	}
	if (c->recv && !want_recv)
		conn_cancel(u, i, OP_RECV, CANCEL_RECV);
	if (dead && c->send && c->err < 0)
		conn_cancel(u, i, OP_SEND, CANCEL_SEND);
	/* uring:zc: sent data the kernel still reads from our buffers is pending echo too. */
	if (!c->recv && !c->send && !c->nq && (dead || ((c->eof || u->stopping) && !c->zcheld))) {
		uring_conn_close(u, i, c->err);
		return;
	}
	/* Re-armed only when everything is sent: a peer that does not read stalls itself. */
	if (!c->recv && !c->nq && want_recv) {
		sqe = uio_sqe(&u->io);
		if (!sqe) {
			conn_park(u, i, PARK_NOSQE);
			return;
		}
		arm_recv(u, i, sqe);
	}
}

static void conn_open(struct uring *u, int fd)
{
	struct svc_source *src;
	uint32_t i;

	if (!svc_admit(u->w, fd, &src)) {
		close(fd);
		return;
	}
	(void)sock_set_nodelay(fd);  /* fails on unix sockets, which have no Nagle */
	i = slot_alloc(u);
	if (i == NO_SLOT) {
		svc_log_once(u->w->svc, "uring-slots", "uring: out of memory for connections");
		close(fd);
		svc_release(u->w, src);
		return;
	}
	u->conns[i] = (struct uconn){ .fd = fd, .qhead = -1, .qtail = -1, .next_free = NO_SLOT,
				      .gen = ++u->gen_next, .src = src };
	svc_idle_start(u->w->svc, &u->conns[i].mark);
	u->nlive++;
	conn_next(u, i);
}

static void on_accept(struct uring *u, uint32_t li, int res, uint32_t flags)
{
	struct ulisten *l = &u->lis[li];

	if (!(flags & IORING_CQE_F_MORE))
		l->armed = false;   /* multishot ended; uring_sweep() arms it again */
	if (res >= 0) {
		if (u->stopping)
			close(res);
		else
			conn_open(u, res);
		return;
	}
	if (u->stopping || res == -ECANCELED)
		return;
	if (res == -ECONNABORTED || res == -EINTR || res == -EAGAIN || res == -EPROTO ||
	    res == -EPERM)
		return;     /* this connection's problem only: accept the next one at once */
	/* EMFILE, ENFILE, ENOBUFS, ENOMEM: re-arming at once would fail again at once. Shed one
	 * pending connection so its client hears about it, and try again after a pause. */
	if (res == -EMFILE || res == -ENFILE)
		svc_shed_on_emfile(u->w, l->fd);
	struct io_uring_sqe *sqe = uio_sqe(&u->io);

	if (!sqe)
		return;
	l->ts.tv_sec = 0;
	/* Under SQPOLL each re-arm wakes the SQ thread, which then spins for its idle time: a
	 * 10 ms timer kept it spinning for good (a whole CPU while out of fds). Forty idle times
	 * apart, it spins about a fortieth of the time. */
	l->ts.tv_nsec = u->io.sqpoll ? 40 * URU_SQPOLL_IDLE_MS * 1000000L : ACCEPT_BACKOFF_NS;
	io_uring_prep_timeout(sqe, &l->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud(OP_TIMER, li));
	l->timer = true;
}

static void on_timer(struct uring *u, uint32_t li)
{
	u->lis[li].timer = false;
}

static void on_recv(struct uring *u, uint32_t i, int res, uint32_t flags)
{
	struct uconn *c = &u->conns[i];
	int bid = -1;

	if (!(flags & IORING_CQE_F_MORE)) {
		c->recv = 0;    /* single shot, or the multishot ended: conn_next() decides */
		c->cancelling &= (uint8_t)~CANCEL_RECV;
	}
	if (flags & IORING_CQE_F_BUFFER)
		bid = ubufs_take(&u->bufs, flags);
	if (res > 0 && bid >= 0) {
		stat_add(&u->w->stats.bytes_in, (uint64_t)res);
		c->moved += (uint64_t)res;
		queue_push(u, c, bid, (uint32_t)res);
		conn_next(u, i);
		return;
	}
	if (bid >= 0)
		ubufs_give(&u->bufs, bid);
	if (c->recv)
		return;     /* a CQE of a multishot that goes on (none carries no data, but be safe) */
	if (res == -EINVAL && u->mshot) {
		/* The run-time probe of multishot recv with its byte limit (Linux 6.17): refused,
		 * so single shot from now on, since bounded memory per client comes first. */
		svc_log_once(u->w->svc, "uring-mshot",
			     "uring: multishot recv with a byte limit refused by the kernel (needs Linux 6.17); using single-shot recv");
		u->mshot = false;
	} else if (res == -ENOBUFS && !u->stopping) {
		u->starved = true;  /* the pool grows once per pass, in uring_sweep() */
		if (!c->nq)
			conn_park(u, i, PARK_NOBUF);  /* else re-armed once the queue is sent */
	} else if (res == 0) {
		c->eof = 1;     /* close (FIN) once the queue is sent */
	} else if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
		c->err = res;
	} else if (res > 0) {
		c->err = -EIO;  /* data without a buffer: cannot happen with BUFFER_SELECT */
	}
	conn_next(u, i);
}

static void on_send(struct uring *u, uint32_t i, int res, uint32_t flags, int bid)
{
	struct uconn *c = &u->conns[i];
	bool zc = u->zc && !c->copy;    /* this send was a zero-copy one */

	if (flags & IORING_CQE_F_NOTIF) {   /* only zero-copy sends have these */
		uint32_t owner = uring_zc_done(u, bid);

		if (owner != NO_SLOT)
			conn_next(u, owner);
		return;
	}
	c->send = 0;
	c->cancelling &= (uint8_t)~CANCEL_SEND;
	if (zc)
		res = uring_zc_result(u, c, res, flags, bid);
	if (res > 0) {
		if (!zc)   /* zero copy: counted when the kernel is done with them */
			stat_add(&u->w->stats.bytes_out, (uint64_t)res);
		c->moved += (uint64_t)res;
		c->off += (uint32_t)res;    /* a short send: conn_next() sends the rest */
		if (c->off >= u->bq[c->qhead].len)
			queue_pop(u, c);
	} else if (res == 0) {
		c->err = -EIO;
	} else if (res != -EINTR && res != -EAGAIN && res != -ECANCELED) {
		c->err = res;   /* ECANCELED: we cancelled it, the connection is over already */
	}
	conn_next(u, i);
}

/* Datagrams are echoed through the one readiness-driven loop every backend shares
 * (udp_echo_ready): io_uring only says when the socket is readable. A recvmsg/sendmsg pair per
 * datagram would cost the same two operations and a second copy of the UDP rules. */
static void udp_arm(struct uring *u, int k)
{
	struct uudp *d = &u->udp[k];
	struct io_uring_sqe *sqe;

	if (d->armed || u->stopping)
		return;
	sqe = uio_sqe(&u->io);
	if (!sqe)
		return;     /* uring_sweep() tries again */
	io_uring_prep_poll_add(sqe, d->fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud(OP_UDP_POLL, (uint32_t)k));
	d->armed = true;
}

static void on_udp_poll(struct uring *u, uint32_t k, int res)
{
	u->udp[k].armed = false;
	if (res > 0 && !u->stopping)
		udp_echo_ready(u->w, u->udp[k].fd, u->udp_buf);
	udp_arm(u, (int)k);
}

void uring_wake_arm(struct uring *u)
{
	struct io_uring_sqe *sqe = uio_sqe(&u->io);

	if (!sqe) {
		/* Without a way to hear the stop request the worker could never end. */
		u->stopping = true;
		return;
	}
	/* A poll, not a read: the eventfd is O_NONBLOCK, and on kernels where eventfd lacks
	 * FMODE_NOWAIT a read of it would complete at once with -EAGAIN instead of waiting. */
	io_uring_prep_poll_add(sqe, u->w->wake_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud(OP_WAKE, 0));
}

/* Stop accepting, stop reading: cancel accepts and idle recvs. Sends in flight go on. */
void uring_begin_stop(struct uring *u)
{
	u->stopping = true;
	for (int i = 0; i < u->nlis; i++)
		if (u->lis[i].armed)
			uio_cancel(&u->io, ud(OP_ACCEPT, (uint32_t)i), ud(OP_CANCEL, 0));
	for (int k = 0; k < u->nudp; k++)
		if (u->udp[k].armed)
			uio_cancel(&u->io, ud(OP_UDP_POLL, (uint32_t)k), ud(OP_CANCEL, 0));
	for (uint32_t i = 0; i < u->nslots; i++)
		if (u->conns[i].fd >= 0 && u->conns[i].recv)
			conn_cancel(u, i, OP_RECV, CANCEL_RECV);
}

/* The eventfd becomes readable only when the server stops; an interrupted poll is re-armed. */
static void on_wake(struct uring *u, int res)
{
	if ((res == -EINTR || res == -EAGAIN) && !svc_stopping(u->w->svc)) {
		uring_wake_arm(u);
		return;
	}
	uring_begin_stop(u);
}

void uring_dispatch(void *ctx, uint64_t data, int res, uint32_t flags)
{
	struct uring *u = ctx;

	uint32_t slot = (uint32_t)(data >> 8);   /* bits 8..39 */

	switch ((enum op)(data & 0xff)) {
	case OP_WAKE:
		on_wake(u, res);
		break;
	case OP_ACCEPT:
		on_accept(u, slot, res, flags);
		break;
	case OP_TIMER:
		on_timer(u, slot);
		break;
	case OP_RECV:
		on_recv(u, slot, res, flags);
		break;
	case OP_SEND:
		on_send(u, slot, res, flags, (int)(data >> 40));
		break;
	case OP_UDP_POLL:
		on_udp_poll(u, slot, res);
		break;
	case OP_CANCEL:
		break;
	}
}

/* A connection idle for --idle-timeout ends as a broken one does (conn_next: its operations
 * cancelled, then closed), counted as idle instead. A parked one waits for the server (a buffer,
 * an SQE), not for its peer: it is not judged. */
void uring_sweep_idle(struct uring *u, uint64_t now)
{
	for (uint32_t i = 0; i < u->nslots; i++) {
		struct uconn *c = &u->conns[i];
		bool pending = c->nq || c->zcheld;

		if (c->fd < 0 || c->err < 0 || c->parked != PARK_NONE ||
		    !svc_idle_expired(u->w->svc, &c->mark, c->fd, c->moved, 0, now))
			continue;
		c->idle = pending ? IDLE_RESET : IDLE_FIN;
		c->err = -ETIMEDOUT;
		conn_next(u, i);
	}
}

static void retry_parked(struct uring *u, struct idxvec *q, enum park why)
{
	struct idxvec todo = *q;

	*q = (struct idxvec){ 0 };
	for (size_t k = 0; k < todo.n; k++) {
		uint32_t i = todo.v[k];
		struct uconn *c = &u->conns[i];

		/* A slot closed and reused meanwhile may be listed twice: the flag decides. */
		if (c->fd < 0 || c->parked != why)
			continue;
		c->parked = PARK_NONE;
		conn_next(u, i);
	}
	free(todo.v);
}

/* After each batch of completions: retry work that found no SQE or no buffer, re-arm
 * listeners and datagram sockets whose operation ended. A handful of fds: a scan is cheap. */
void uring_sweep(struct uring *u)
{
	if (u->starved && u->bufs.total < u->bufs.entries)
		ubufs_grow(&u->bufs);
	u->starved = false;
	if (u->nosqe.n)
		retry_parked(u, &u->nosqe, PARK_NOSQE);
	if (u->nobuf.n && (ubufs_free(&u->bufs) > 0 || u->stopping))
		retry_parked(u, &u->nobuf, PARK_NOBUF);
	for (int i = 0; i < u->nlis && !u->stopping; i++) {
		struct ulisten *l = &u->lis[i];
		struct io_uring_sqe *sqe;

		if (l->armed || l->timer)
			continue;
		sqe = uio_sqe(&u->io);
		if (!sqe)
			break;
		if (u->w->backend->flags & BACKEND_SINGLESHOT)
			io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
		else
			io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, (uint32_t)i));
		l->armed = true;
	}
	for (int k = 0; k < u->nudp; k++)
		udp_arm(u, k);
}

