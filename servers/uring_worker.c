/* A worker's io_uring backend from setup to teardown: the ring and the buffer pool are set up,
 * completions are waited for and handed to the state machine (uring.c) until the server stops,
 * pending echo is drained until the deadline, then everything still in flight is cancelled and
 * awaited before the memory the kernel may write into is freed. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "uring_state.h"

static int uring_open(struct uring *u, struct worker *w)
{
	const struct server_config *cfg = w->cfg;
	const char *why;
	unsigned how;
	int r;

	u->w = w;
	u->free_head = NO_SLOT;
	for (int i = 0; i < w->ntcp; i++)
		u->lis[u->nlis++] = (struct ulisten){ .fd = w->tcp_fds[i] };
	for (int k = 0; k < w->nudp; k++)
		u->udp[u->nudp++] = (struct uudp){ .fd = w->udp_fds[k] };
	u->udp_buf = u->nudp ? malloc(UDP_BUF) : NULL;
	if (u->nudp && !u->udp_buf)
		return -ENOMEM;
	u->mshot = !(w->backend->flags & BACKEND_SINGLESHOT);
	u->zc = u->zc_report = w->backend->flags & BACKEND_ZC;
	how = (w->backend->flags & BACKEND_SQPOLL) ? URU_SQPOLL : 0;
	r = uio_setup(&u->io, SQ_ENTRIES, CQ_ENTRIES, how);
	if (r < 0) {
		svc_log_once(w->svc, "uring-init", "uring: %s", uru_setup_why(r, how));
		return r;
	}
	r = ubufs_open(&u->bufs, &u->io.ring, cfg->max_conns ? cfg->max_conns : RING_DEFAULT,
		       cfg->bufsize, w->svc, &why);
	if (r < 0) {
		svc_log_once(w->svc, "uring-bufring", "uring: %s: %s", why, strerror(-r));
		return r;
	}
	u->bq = calloc(u->bufs.entries, sizeof(*u->bq));
	return u->bq ? 0 : -ENOMEM;
}

/* kernel_done: no operation can touch our memory any more, so the buffers may be freed. */
static void uring_free(struct uring *u, bool kernel_done)
{
	uio_exit(&u->io);
	ubufs_close(&u->bufs, kernel_done);
	free(u->udp_buf);   /* the kernel never writes into it: it is ours at once */
	free(u->conns);
	free(u->bq);
	free(u->nobuf.v);
	free(u->nosqe.v);
	free(u);
}

/* Waits for completions until `until` (CLOCK_MONOTONIC ns) or forever (0), handles them, then
 * retries and re-arms what needs it. */
static int uring_wait(struct uring *u, uint64_t until)
{
	int r = uio_wait(&u->io, until, uring_dispatch, u);

	if (r == 0)
		uring_sweep(u);
	return r;
}

static void uring_close(struct uring *u)
{
	uint64_t end;

	/* Everything still in flight (idle recvs, sends past the deadline, timers) is cancelled
	 * and its completion awaited: the kernel must be done with our buffers before they go. */
	u->stopping = true;
	u->aborting = true;
	/* uring:zc: a connection whose sent bytes the kernel still holds (a peer that does not
	 * read) is reset now (uring_conn_close), which frees them and brings the notifications
	 * that give our buffers back; one with operations in flight goes when they end. */
	for (uint32_t i = 0; i < u->nslots; i++)
		if (u->conns[i].fd >= 0 && u->conns[i].zcheld && !u->conns[i].recv &&
		    !u->conns[i].send)
			uring_conn_close(u, i, 0);
	uio_cancel_all(&u->io, ud(OP_CANCEL, 0));
	end = now_ns() + CANCEL_WAIT_NS;
	while (u->io.inflight > 0 && now_ns() < end)
		if (uring_wait(u, end) < 0)
			break;
	for (uint32_t i = 0; i < u->nslots; i++) {
		if (u->conns[i].fd >= 0) {
			u->conns[i].recv = 0;
			u->conns[i].send = 0;
			uring_conn_close(u, i, 0);
		}
	}
	if (u->io.inflight > 0)
		svc_log_once(u->w->svc, "uring-leak", "uring: %u operations not cancelled at exit",
				u->io.inflight);
	/* With operations left the kernel might still write into our buffers: leaking them beats
	 * corrupting the heap. */
	uring_free(u, u->io.inflight == 0);
}

int uring_run(struct worker *w)
{
	struct uring *u = calloc(1, sizeof(*u));
	uint64_t deadline;
	int r, err = 0;

	if (!u)
		return -ENOMEM;
	r = uring_open(u, w);
	if (r < 0) {
		uring_free(u, true);
		return r;
	}
	uring_wake_arm(u);
	uring_sweep(u);
	while (!u->stopping) {
		uint64_t now;

		/* With --idle-timeout and connections open, the wait ends for the idle sweep. */
		r = uring_wait(u, u->nlive ? svc_sweep_next(w) : 0);
		if (r < 0) {
			err = r;
			svc_log_once(w->svc, "uring-wait", "uring: waiting for completions: %s",
					strerror(-r));
			uring_begin_stop(u);
		}
		if (!u->stopping && (now = svc_sweep_due(w)) != 0)
			uring_sweep_idle(u, now);
	}
	/* Drain: send what is pending, until every connection has closed or the deadline. */
	deadline = svc_drain_deadline_ns(w->svc);
	while (u->nlive > 0 && now_ns() < deadline && err == 0)
		err = uring_wait(u, deadline);
	uring_close(u);
	return err;
}
