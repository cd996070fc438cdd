/* The io_uring engine (--engine uring): completions instead of readiness, for stream sockets.
 *
 * What a message costs with epoll: a wakeup from epoll_wait (shared by the ready sockets), then a
 * recv() and a send() of its own, two system calls per message at the least. Here a loop pass
 * is one io_uring_enter that submits every send queued since the last pass and waits for
 * completions; a message has no system call of its own:
 *   - each connection keeps one multishot recv armed (IORING_RECV_MULTISHOT, Linux 6.0) that
 *     picks its buffer from a provided buffer ring shared by the thread: no re-arm per message,
 *     and memory is per thread, not per connection. The echo is checked (tcp_consume, shared
 *     with the epoll engine) straight from that buffer, which is then handed back at once.
 *     Where multishot is refused (-EINVAL), a single-shot recv is armed again after each one.
 *   - at most one send is in flight per connection, from its own small staging buffer (the
 *     payload is regenerated from common/stream.h, as in load_tcp.c); MSG_WAITALL makes the
 *     kernel finish a stream send itself (6.0), and a short one is resubmitted for the rest.
 *   - the ring is SINGLE_ISSUER|DEFER_TASKRUN (6.1, else COOP_TASKRUN, else plain), so that
 *     completions run only when we ask for them, in our thread, batched; its fd is registered
 *     (io_uring_register_ring_fd) so that io_uring_enter skips the fd lookup. Setup, probe and
 *     buffer ring are common/uring_util.h, shared with echo-server's uring backend.
 *   - the sockets are registered files (IOSQE_FIXED_FILE, slot = connection) where the kernel
 *     can cancel by slot (6.0): a profile showed fget/fput and sock_from_file at about 2 % of
 *     the engine's CPU, which the table lookup removes.
 * Registered send buffers would not help a send that copies 128 bytes. What is left per message
 * is the kernel's TCP path (on loopback the sender also runs the receiver's softirq: most of
 * the client's CPU in a profile), which no engine removes.
 *
 * A socket is closed only after an IORING_OP_ASYNC_CANCEL by fd (or slot) has been submitted
 * for it while the fd still names it, and its slot emptied; completions that arrive for a dead
 * connection are ignored, but a buffer they carry is handed back.
 *
 * user_data is (slot << 3 | op).
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "loader.h"
#include "stream.h"
#include "uring_util.h"

enum op { OP_RECV = 1, OP_SEND, OP_STOP, OP_CANCEL };

#define BGID 0
#define SEND_MAX (64u << 10)        /* staging buffer per connection, at most */
#define BUF_MIN (4u << 10)          /* provided buffer size, at least... */
#define BUF_MAX (64u << 10)         /* ...and at most */
#define BUFS_BYTES (32u << 20)      /* provided buffers per thread, at most this much */
#define RING_MAX_BUFS 4096u
#define SQ_MAX 4096u

struct uconn {
	uint32_t pos, end;          /* the send in flight: sbuf[pos, end) still to go */
	bool sending;               /* a send is in flight */
	bool recv_armed;            /* a recv is in flight (multishot: until one without F_MORE) */
};

struct ustate {
	struct io_uring ring;
	bool ring_ok;
	bool multishot;             /* multishot recv accepted by this kernel */
	bool fixed;                 /* the sockets are registered files: sqe->fd is the slot */
	struct uru_bufring br;
	unsigned nbufs;             /* power of two */
	size_t bsize;
	uint8_t *bufs;              /* nbufs x bsize */
	uint8_t *sbufs;             /* nconns x slen */
	size_t slen;
	struct uconn *uc;
};

static uint64_t ud(uint64_t slot, enum op op) { return slot << 3 | op; }

static int ur_probe(const char **why)
{
	static const int ops[] = {
		IORING_OP_RECV, IORING_OP_SEND, IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD,
	};

	return uru_probe(ops, sizeof(ops) / sizeof(ops[0]), URU_NEED_EXT_ARG | URU_NEED_BUFRING,
			 why);
}

static bool ur_supports(const struct transport *tp)
{
	return tp->socktype == SOCK_STREAM;
}

/* An SQE's file: the registered slot when the sockets are registered (no fget/fput per
 * operation), else the fd. */
static void set_file(struct ustate *u, struct io_uring_sqe *sqe, const struct lconn *c)
{
	if (u->fixed) {
		sqe->fd = (int)c->slot;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
}

static struct io_uring_sqe *get_sqe(struct ustate *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		/* The SQ is full: hand it to the kernel now, within this pass. */
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static void arm_recv(struct loader *w, struct lconn *c)
{
	struct ustate *u = w->eng_state;
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe) {
		lconn_fail(w, c, ERR_OTHER);
		return;
	}
	if (u->multishot)
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, c->fd, NULL, u->bsize, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	set_file(u, sqe, c);
	io_uring_sqe_set_data64(sqe, ud(c->slot, OP_RECV));
	u->uc[c->slot].recv_armed = true;
}

static void submit_send(struct loader *w, struct lconn *c)
{
	struct ustate *u = w->eng_state;
	struct uconn *uc = &u->uc[c->slot];
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe) {
		lconn_fail(w, c, ERR_OTHER);
		return;
	}
	io_uring_prep_send(sqe, c->fd, u->sbufs + (size_t)c->slot * u->slen + uc->pos,
			   uc->end - uc->pos, MSG_NOSIGNAL | MSG_WAITALL);
	set_file(u, sqe, c);
	io_uring_sqe_set_data64(sqe, ud(c->slot, OP_SEND));
	uc->sending = true;
}

/* The transport's flush: the next piece of the stream goes out, one send at a time. The bytes
 * count as handed to the socket (send_off) from the submission on. */
static void ur_flush(struct loader *w, struct lconn *c)
{
	struct ustate *u = w->eng_state;
	struct uconn *uc = &u->uc[c->slot];
	uint64_t left = c->queued_off - c->send_off;
	size_t n = left < u->slen ? (size_t)left : u->slen;

	if (uc->sending || c->dead || c->closing || !left)
		return;
	stream_fill(w->cfg->seed, c->id, c->send_off, u->sbufs + (size_t)c->slot * u->slen, n);
	uc->pos = 0;
	uc->end = (uint32_t)n;
	c->send_off += n;
	submit_send(w, c);
}

static void ur_readable(struct loader *w, struct lconn *c)
{
	(void)w;
	(void)c;   /* completions bring the bytes: see on_recv */
}

/* Our side first, as in load_tcp.c: the server sees our EOF, we await its EOF. A send still
 * in flight ends with EPIPE, which is expected now. */
static bool ur_shutdown(struct loader *w, struct lconn *c)
{
	if (shutdown(c->fd, SHUT_WR) < 0) {
		lconn_close(w, c);
		return false;
	}
	c->closing = true;
	return true;
}

static const struct transport transport_stream_uring = {
	.name = "tcp",
	.socktype = SOCK_STREAM,
	.buffers = NULL,
	.flush = ur_flush,
	.readable = ur_readable,
	.unsent = tcp_unsent,
	.expire = tcp_expire,
	.shutdown = ur_shutdown,
};

static size_t clamp_sz(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static int buf_ring_init(struct ustate *u)
{
	int r = uru_bufring_open(&u->br, &u->ring, u->nbufs, BGID);

	if (r < 0)
		return r;
	for (unsigned i = 0; i < u->nbufs; i++)
		uru_bufring_add(&u->br, u->bufs + (size_t)i * u->bsize, (unsigned)u->bsize,
				(unsigned short)i, (int)i);
	uru_bufring_publish(&u->br, (int)u->nbufs);
	return 0;
}

/* Every connection's socket in the ring's file table, at its slot: the connections exist
 * before the engine starts and are never replaced, so the table is filled once. */
static int register_sockets(struct loader *w, struct ustate *u)
{
	int *fds;
	int r;

	/* A closed connection's operations are cancelled by slot (IORING_ASYNC_CANCEL_FD_FIXED),
	 * which came in Linux 6.0 with IORING_OP_SEND_ZC: without it, plain fds. */
	if (!uru_has_op(&u->ring, IORING_OP_SEND_ZC))
		return -EOPNOTSUPP;
	fds = malloc(w->nconns * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	for (uint32_t i = 0; i < w->nconns; i++)
		fds[i] = w->conns[i].fd;
	r = io_uring_register_files(&u->ring, fds, w->nconns);
	free(fds);
	return r;
}

static int ur_setup(struct loader *w)
{
	const struct load_config *cfg = w->cfg;
	struct ustate *u = calloc(1, sizeof(*u));
	uint64_t want = cfg->size_hi * w->pipeline;
	unsigned sq = 16, nb = 16;
	const char *what = "out of memory";
	struct io_uring_sqe *sqe;
	int r = -ENOMEM;

	if (!u)
		goto fail;
	w->eng_state = u;
	w->tp = &transport_stream_uring;
	u->slen = clamp_sz(want, 1, SEND_MAX);
	u->bsize = clamp_sz(want, BUF_MIN, BUF_MAX);
	/* One buffer per connection, up to the cap: a buffer is held only between a recv's
	 * completion and its check, so running short costs a re-arm, not correctness. */
	while (nb < w->nconns && nb < RING_MAX_BUFS && (size_t)nb * 2 * u->bsize <= BUFS_BYTES)
		nb *= 2;
	u->nbufs = nb;
	while (sq < 2 * w->nconns + 8 && sq < SQ_MAX)
		sq *= 2;
	u->uc = calloc(w->nconns, sizeof(*u->uc));
	u->sbufs = malloc((size_t)w->nconns * u->slen);
	u->bufs = malloc((size_t)u->nbufs * u->bsize);
	if (!u->uc || !u->sbufs || !u->bufs)
		goto fail;
	/* CQ room for a recv, a send and a cancel per connection, and the stop poll. */
	if ((r = uru_setup(&u->ring, sq, 4 * w->nconns + 16, 0)) < 0) {
		snprintf(w->error_text, sizeof(w->error_text), "--engine uring: %s",
			 uru_setup_why(r, 0));
		return r;
	}
	u->ring_ok = true;
	what = "io_uring_register_buf_ring";
	if ((r = buf_ring_init(u)) < 0)
		goto fail;
	u->multishot = true;
	u->fixed = register_sockets(w, u) == 0;   /* an optimisation: fine when refused */
	sqe = get_sqe(u);
	io_uring_prep_poll_add(sqe, w->stop_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud(0, OP_STOP));
	for (uint32_t i = 0; i < w->nconns; i++)
		arm_recv(w, &w->conns[i]);
	return 0;
fail:
	snprintf(w->error_text, sizeof(w->error_text), "--engine uring: %s: %s", what,
		 strerror(-r));
	return r;
}

static void ur_free(struct loader *w)
{
	struct ustate *u = w->eng_state;

	if (!u)
		return;
	if (u->ring_ok)
		io_uring_queue_exit(&u->ring);   /* cancels what is still in flight */
	uru_bufring_close(&u->br, NULL);
	free(u->bufs);
	free(u->sbufs);
	free(u->uc);
	free(u);
	w->eng_state = NULL;
}

static void give_back(struct ustate *u, unsigned bid)
{
	uru_bufring_give(&u->br, u->bufs + (size_t)bid * u->bsize, (unsigned)u->bsize,
			 (unsigned short)bid);
}

static void on_recv(struct loader *w, struct lconn *c, const struct io_uring_cqe *cqe)
{
	struct ustate *u = w->eng_state;
	struct uconn *uc = &u->uc[c->slot];
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		uc->recv_armed = false;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0 && !c->dead && !c->closing) {
			uint64_t now = now_ns();

			tcp_consume(w, c, u->bufs + (size_t)bid * u->bsize, (size_t)res, now);
			lconn_replenish(w, c, now);
		}
		give_back(u, bid);
	}
	if (c->dead)
		return;
	if (res == 0) {
		if (c->closing)
			lconn_close(w, c);
		else
			lconn_fail(w, c, ERR_EOF);
		return;
	}
	if (res < 0 && res != -ENOBUFS) {
		if (res == -EINVAL && u->multishot) {
			u->multishot = false;   /* before 6.0: single-shot from now on */
		} else {
			if (c->closing)
				lconn_close(w, c);
			else
				lconn_fail(w, c, err_kind_of(-res));
			return;
		}
	}
	/* -ENOBUFS: every buffer was taken when it came; they are back now. */
	if (!uc->recv_armed)
		arm_recv(w, c);
	if (!c->dead && !c->closing && tcp_unsent(c))
		ur_flush(w, c);
}

static void on_send(struct loader *w, struct lconn *c, int res)
{
	struct ustate *u = w->eng_state;
	struct uconn *uc = &u->uc[c->slot];

	uc->sending = false;
	if (c->dead || c->closing)
		return;   /* EPIPE after our shutdown, or a cancel: nothing more is owed */
	if (res < 0) {
		lconn_fail(w, c, err_kind_of(-res));
		return;
	}
	uc->pos += (uint32_t)res;
	if (uc->pos < uc->end)
		submit_send(w, c);   /* short (a kernel before 6.0): the rest, in order */
	else
		ur_flush(w, c);
}

static int ur_wait(struct loader *w, uint64_t now, uint64_t deadline)
{
	struct ustate *u = w->eng_state;
	uint64_t wait = deadline > now ? deadline - now : 0;
	struct __kernel_timespec ts = { (long long)(wait / 1000000000u),
					(long long)(wait % 1000000000u) };
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);

	if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
		w->error = r;
		snprintf(w->error_text, sizeof(w->error_text), "io_uring_enter: %s", strerror(-r));
		return -1;
	}
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);
		struct lconn *c = &w->conns[d >> 3];

		n++;
		switch ((enum op)(d & 7)) {
		case OP_RECV: on_recv(w, c, cqe); break;
		case OP_SEND: on_send(w, c, cqe->res); break;
		case OP_STOP: load_stop_requested = true; break;
		case OP_CANCEL: break;
		}
	}
	io_uring_cq_advance(&u->ring, n);
	return (int)n;
}

static void ur_forget(struct loader *w, struct lconn *c)
{
	struct ustate *u = w->eng_state;
	struct uconn *uc;
	struct io_uring_sqe *sqe;

	if (!u || !u->ring_ok)
		return;
	uc = &u->uc[c->slot];
	if (uc->recv_armed || uc->sending) {
		/* The cancel must reach the kernel while the fd (or slot) still names this socket. */
		sqe = get_sqe(u);
		if (!sqe)
			return;
		if (u->fixed)
			io_uring_prep_cancel_fd(sqe, (int)c->slot,
						IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
		else
			io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ud(c->slot, OP_CANCEL));
		io_uring_submit(&u->ring);
		uc->recv_armed = uc->sending = false;
	}
	if (u->fixed) {
		/* The table holds its own reference: without this, close() would not close. */
		int none = -1;

		io_uring_register_files_update(&u->ring, c->slot, &none, 1);
	}
}

const struct engine engine_uring = {
	.name = "uring",
	.blocking_ok = false,
	.probe = ur_probe,
	.supports = ur_supports,
	.setup = ur_setup,
	.free = ur_free,
	.wait = ur_wait,
	.forget = ur_forget,
};
