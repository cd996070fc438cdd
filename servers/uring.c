/* The io_uring backend: echo driven by completions, not by readiness.
 *
 * io_uring features used (through liburing 2.3) and the kernel each needs:
 *   IORING_OP_ACCEPT multishot (IORING_ACCEPT_MULTISHOT)          5.19
 *   IORING_OP_RECV + IOSQE_BUFFER_SELECT from a provided buffer
 *     ring (IORING_REGISTER_PBUF_RING)                             5.19
 *   IORING_OP_SEND                                                 5.6
 *   IORING_OP_POLL_ADD (the stop eventfd)                          5.1
 *   IORING_OP_RECVMSG, IORING_OP_SENDMSG (UDP)                     5.3
 *   IORING_OP_TIMEOUT (accept back-off after EMFILE)               5.4
 *   IORING_OP_ASYNC_CANCEL, IORING_ASYNC_CANCEL_ANY                5.5, 5.19
 *   IORING_REGISTER_PROBE (uring_probe)                            5.6
 *   IORING_FEAT_EXT_ARG (wait with a timeout, no SQE needed)       5.11
 *   IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN 6.1, else COOP_TASKRUN 5.19, else none
 * So the backend needs Linux 5.19; uring_probe() says which piece is missing on an older kernel.
 *
 * Per connection exactly one operation is in flight: a recv, or the send of what that recv
 * brought. The next recv is armed only when the echo is fully sent, which is the backpressure:
 * a peer that does not read stalls only its own connection, holding one buffer (see the
 * provided buffer life cycle above buf_grow() for the cap).
 *
 * user_data is (slot << 8 | op), and every completion goes through one switch in dispatch().
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend.h"
#include "clock.h"
#include "sock.h"

enum op {
	OP_WAKE = 1,    /* poll on the stop eventfd */
	OP_ACCEPT,      /* multishot accept on listener <slot> */
	OP_TIMER,       /* back-off before re-arming accept on listener <slot> */
	OP_RECV,        /* recv into a provided buffer, connection <slot> */
	OP_SEND,        /* send of (the rest of) the echo, connection <slot> */
	OP_UDP_RECV,    /* recvmsg on datagram socket <slot> */
	OP_UDP_SEND,    /* sendmsg of the datagram back, socket <slot> */
	OP_CANCEL,      /* our own cancel requests: their result needs no action */
};

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096
#define BGID 0
#define BUF_MAX (16u << 20)         /* largest provided buffer we register */
#define RING_MIN 16u
#define RING_MAX 32768u             /* the kernel's limit on buffer ring entries */
#define RING_DEFAULT 4096u          /* buffer cap per worker without --max-conns */
#define UDP_BUF 65536               /* above any UDP payload (65507 IPv4, 65527 IPv6) */
#define ACCEPT_BACKOFF_NS 10000000  /* 10 ms between accept attempts while out of fds */
#define CANCEL_WAIT_NS 1000000000ull
#define NO_SLOT UINT32_MAX

enum park { PARK_NONE, PARK_NOBUF, PARK_NOSQE };

struct uconn {
	int fd;             /* -1: slot is free */
	int bid;            /* provided buffer holding the pending echo, -1: none */
	uint32_t len, off;  /* echo pending: buffer[off .. len) */
	uint8_t op;         /* OP_RECV or OP_SEND in flight, 0: none */
	uint8_t parked;     /* enum park: waiting on a list for a buffer or an SQE */
	uint32_t next_free;
};

struct idxvec {
	uint32_t *v;
	size_t n, cap;
};

struct ulisten {
	int fd;
	bool armed;                   /* a multishot accept is in flight */
	bool timer;                   /* a back-off timeout is in flight */
	struct __kernel_timespec ts;  /* read by the kernel at submission: must outlive it */
};

enum udp_state { UDP_IDLE, UDP_RECV, UDP_WANT_SEND, UDP_SEND };

struct uudp {
	int fd;
	enum udp_state state;
	struct msghdr msg;
	struct iovec iov;
	struct sockaddr_storage peer;
	uint8_t *buf;
};

struct uring {
	struct worker *w;
	struct io_uring ring;
	bool stopping;       /* stop asked: read nothing new */
	bool aborting;       /* drain deadline passed: send nothing more either */
	uint32_t inflight;   /* operations whose last completion has not arrived */

	/* Provided buffers: see the life cycle comment above buf_grow(). */
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	unsigned entries;    /* ring slots (power of two) and the cap on buffers */
	uint32_t bsize;
	uint8_t **mem;       /* mem[bid], allocated on demand */
	unsigned total;      /* buffers allocated (and given to the kernel at least once) */
	unsigned held;       /* buffers taken by completions and not yet given back */

	struct uconn *conns;
	uint32_t nslots, free_head, nlive;
	struct idxvec nobuf, nosqe;

	struct ulisten lis[SERVER_MAX_LISTEN];
	int nlis;
	struct uudp udp[SERVER_MAX_LISTEN];
	int nudp;
	int udp_sending;
};

static inline uint64_t ud(enum op op, uint32_t slot)
{
	return (uint64_t)slot << 8 | (uint64_t)op;
}

/* DEFER_TASKRUN runs completions only when this thread waits, which suits one ring per worker;
 * older kernels reject the flags with EINVAL and get the next best. */
static int ring_setup(struct io_uring *ring, unsigned sq, unsigned cq)
{
	static const unsigned flags[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]) && r == -EINVAL; i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flags[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = cq;
		r = io_uring_queue_init_params(sq, ring, &p);
	}
	return r;
}

static const char *init_why(int r)
{
	switch (r) {
	case -EPERM:
		return "io_uring_queue_init: Operation not permitted (io_uring disabled by sysctl or seccomp?)";
	case -ENOSYS:
		return "io_uring_queue_init: Function not implemented (kernel without io_uring, or blocked by seccomp)";
	case -ENOMEM:
		return "io_uring_queue_init: Cannot allocate memory (RLIMIT_MEMLOCK too low?)";
	case -EINVAL:
		return "io_uring_queue_init: Invalid argument (kernel too old for io_uring)";
	default:
		return "io_uring_queue_init failed";
	}
}

static int br_map(unsigned entries, struct io_uring_buf_ring **out, size_t *bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = entries * sizeof(struct io_uring_buf);
	void *p;

	if (page <= 0)
		page = 4096;
	len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
	/* The kernel wants the ring page aligned; mmap gives that (liburing 2.3 has no helper). */
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	*bytes = len;
	io_uring_buf_ring_init(*out);
	return 0;
}

static int br_register(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries)
{
	struct io_uring_buf_reg reg;

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br;
	reg.ring_entries = entries;
	reg.bgid = BGID;
	return io_uring_register_buf_ring(ring, &reg, 0);
}

static int uring_probe(const char **why)
{
	static const struct { int op; const char *why; } need[] = {
		{ IORING_OP_ACCEPT, "kernel lacks IORING_OP_ACCEPT (needs Linux 5.19)" },
		{ IORING_OP_RECV, "kernel lacks IORING_OP_RECV (needs Linux 5.19)" },
		{ IORING_OP_SEND, "kernel lacks IORING_OP_SEND (needs Linux 5.19)" },
		{ IORING_OP_RECVMSG, "kernel lacks IORING_OP_RECVMSG (needs Linux 5.19)" },
		{ IORING_OP_SENDMSG, "kernel lacks IORING_OP_SENDMSG (needs Linux 5.19)" },
		{ IORING_OP_POLL_ADD, "kernel lacks IORING_OP_POLL_ADD (needs Linux 5.19)" },
		{ IORING_OP_TIMEOUT, "kernel lacks IORING_OP_TIMEOUT (needs Linux 5.19)" },
		{ IORING_OP_ASYNC_CANCEL, "kernel lacks IORING_OP_ASYNC_CANCEL (needs Linux 5.19)" },
	};
	const char *dummy;
	struct io_uring ring;
	struct io_uring_probe *probe;
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	int r;

	if (!why)
		why = &dummy;
	r = ring_setup(&ring, 8, 16);
	if (r < 0) {
		*why = init_why(r);
		return r;
	}
	probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		*why = "kernel lacks IORING_REGISTER_PROBE (needs Linux 5.19)";
		r = -EOPNOTSUPP;
		goto out;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]) && r == 0; i++) {
		if (!io_uring_opcode_supported(probe, need[i].op)) {
			*why = need[i].why;
			r = -EOPNOTSUPP;
		}
	}
	io_uring_free_probe(probe);
	if (r < 0)
		goto out;
	r = br_map(2, &br, &br_bytes);
	if (r < 0) {
		*why = "mmap of a provided buffer ring failed";
		goto out;
	}
	r = br_register(&ring, br, 2);
	if (r < 0)
		*why = "kernel lacks provided buffer rings (needs Linux 5.19)";
	else
		io_uring_unregister_buf_ring(&ring, BGID);
	munmap(br, br_bytes);
out:
	io_uring_queue_exit(&ring);
	return r < 0 ? r : 0;
}

/* An SQE, submitting what is queued when the SQ is full. NULL only when the kernel refuses to
 * take submissions at all; callers then park their work and retry after the next wait. */
static struct io_uring_sqe *uring_sqe(struct uring *u)
{
	for (int tries = 0; tries < 4; tries++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

		if (sqe) {
			u->inflight++;
			return sqe;
		}
		int r = io_uring_submit(&u->ring);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			break;
	}
	return NULL;
}

static void uring_cancel(struct uring *u, uint64_t target)
{
	struct io_uring_sqe *sqe = uring_sqe(u);

	/* Without an SQE the request is cancelled by the CANCEL_ANY at teardown instead. */
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, target, 0);
	io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, 0));
}

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

/* Provided buffers: life cycle.
 *
 * A recv armed with IOSQE_BUFFER_SELECT names no memory. When data is there the kernel takes the
 * next buffer of group BGID from the ring, fills it and reports its id in the completion
 * (IORING_CQE_F_BUFFER, id in cqe->flags >> IORING_CQE_BUFFER_SHIFT). From then on the buffer
 * belongs to that connection alone: it holds the echo while the send is in flight and goes back
 * into the ring (buf_give) only after the last byte is sent. Giving it back earlier is the
 * classic bug: the kernel hands it to another connection's recv, which overwrites data still
 * being sent, and one client receives another's bytes.
 *
 * The kernel may also consume a buffer for a completion that carries no data (EOF, errors):
 * whenever IORING_CQE_F_BUFFER is set the buffer is ours and must be given back.
 *
 * A recv that finds no data yet puts its buffer back and waits, so idle connections hold none.
 * A recv issued while the ring is empty fails at once with -ENOBUFS; it does not wait. Such a
 * connection parks on u->nobuf and is re-armed once the ring has a buffer again.
 *
 * The ring has room for `entries` buffers, but they are allocated on demand, when the free ones
 * run low: memory follows the number of connections with echo in flight (at most one buffer
 * each), not the ring size. `entries` is --max-conns rounded up to a power of two (4096 without
 * it): past that many peers that do not read, further connections wait for a buffer to return,
 * since bounded memory comes first.
 */
static void buf_grow(struct uring *u)
{
	unsigned want = u->total / 2 > 16 ? u->total / 2 : 16;
	int added = 0;

	if (want > u->entries - u->total)
		want = u->entries - u->total;
	for (unsigned i = 0; i < want; i++) {
		unsigned bid = u->total + (unsigned)added;

		u->mem[bid] = malloc(u->bsize);
		if (!u->mem[bid])
			break;
		io_uring_buf_ring_add(u->br, u->mem[bid], u->bsize, (unsigned short)bid,
				      io_uring_buf_ring_mask(u->entries), added);
		added++;
	}
	if (added) {
		io_uring_buf_ring_advance(u->br, added);
		u->total += (unsigned)added;
	} else if (want) {
		server_log_once(u->w->srv, "uring-bufs", "uring: cannot allocate receive buffers");
	}
}

static unsigned buf_free(const struct uring *u)
{
	return u->total - u->held;
}

static int buf_take(struct uring *u, uint32_t flags)
{
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;

	if (bid >= u->total)
		return -1;
	u->held++;
	if (buf_free(u) < 4 + u->total / 8 && u->total < u->entries)
		buf_grow(u);
	return (int)bid;
}

static void buf_give(struct uring *u, int bid)
{
	io_uring_buf_ring_add(u->br, u->mem[bid], u->bsize, (unsigned short)bid,
			      io_uring_buf_ring_mask(u->entries), 0);
	io_uring_buf_ring_advance(u->br, 1);
	u->held--;
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

/* Ends a connection that has nothing in flight. err < 0: it broke (counted as a reset). */
static void conn_close(struct uring *u, uint32_t i, int err)
{
	struct uconn *c = &u->conns[i];

	if (err < 0)
		stat_add(&u->w->stats.resets, 1);
	if (c->bid >= 0)
		buf_give(u, c->bid);
	close(c->fd);
	server_release(u->w);
	c->fd = -1;
	c->bid = -1;
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
		conn_close(u, i, -ENOMEM);
		return;
	}
	c->parked = (uint8_t)why;
}

/* The one place that decides what a connection does next: send what is pending, else give the
 * buffer back and receive again (or close, once stopping). */
static void conn_next(struct uring *u, uint32_t i)
{
	struct uconn *c = &u->conns[i];
	struct io_uring_sqe *sqe;

	if (c->op)
		return;
	if (c->bid >= 0 && c->off < c->len && !u->aborting) {
		sqe = uring_sqe(u);
		if (!sqe) {
			conn_park(u, i, PARK_NOSQE);
			return;
		}
		io_uring_prep_send(sqe, c->fd, u->mem[c->bid] + c->off, c->len - c->off, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud(OP_SEND, i));
		c->op = OP_SEND;
		return;
	}
	if (c->bid >= 0) {
		buf_give(u, c->bid);
		c->bid = -1;
	}
	if (u->stopping) {
		conn_close(u, i, 0);
		return;
	}
	sqe = uring_sqe(u);
	if (!sqe) {
		conn_park(u, i, PARK_NOSQE);
		return;
	}
	io_uring_prep_recv(sqe, c->fd, NULL, u->bsize, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud(OP_RECV, i));
	c->op = OP_RECV;
}

static void conn_open(struct uring *u, int fd)
{
	uint32_t i;

	if (!server_admit(u->w)) {
		close(fd);
		return;
	}
	(void)sock_set_nodelay(fd);  /* fails on unix sockets, which have no Nagle */
	i = slot_alloc(u);
	if (i == NO_SLOT) {
		server_log_once(u->w->srv, "uring-slots", "uring: out of memory for connections");
		close(fd);
		server_release(u->w);
		return;
	}
	u->conns[i] = (struct uconn){ .fd = fd, .bid = -1, .next_free = NO_SLOT };
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
		server_shed_on_emfile(u->w, l->fd);
	struct io_uring_sqe *sqe = uring_sqe(u);

	if (!sqe)
		return;
	l->ts.tv_sec = 0;
	l->ts.tv_nsec = ACCEPT_BACKOFF_NS;
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

	c->op = 0;
	if (flags & IORING_CQE_F_BUFFER)
		bid = buf_take(u, flags);
	if (res > 0 && bid >= 0) {
		stat_add(&u->w->stats.bytes_in, (uint64_t)res);
		c->bid = bid;
		c->len = (uint32_t)res;
		c->off = 0;
		conn_next(u, i);
		return;
	}
	if (bid >= 0)
		buf_give(u, bid);
	if (res == -ENOBUFS && !u->stopping) {
		conn_park(u, i, PARK_NOBUF);
		return;
	}
	if ((res == -EINTR || res == -EAGAIN) && !u->stopping) {
		conn_next(u, i);
		return;
	}
	if (res > 0)
		res = -EIO;     /* data without a buffer: cannot happen with BUFFER_SELECT */
	/* res == 0 is EOF: nothing is pending by construction, so close now sends FIN. */
	conn_close(u, i, res == -ECANCELED ? 0 : res);
}

static void on_send(struct uring *u, uint32_t i, int res)
{
	struct uconn *c = &u->conns[i];

	c->op = 0;
	if (res == -EINTR || res == -EAGAIN) {
		conn_next(u, i);
		return;
	}
	if (res <= 0) {
		conn_close(u, i, res == -ECANCELED ? 0 : res == 0 ? -EIO : res);
		return;
	}
	stat_add(&u->w->stats.bytes_out, (uint64_t)res);
	c->off += (uint32_t)res;    /* a short send: conn_next() sends the rest */
	conn_next(u, i);
}

static void udp_next(struct uring *u, int k)
{
	struct uudp *d = &u->udp[k];
	struct io_uring_sqe *sqe;

	if (d->state == UDP_WANT_SEND && !u->aborting) {
		sqe = uring_sqe(u);
		if (!sqe)
			return;     /* uring_sweep() tries again */
		io_uring_prep_sendmsg(sqe, d->fd, &d->msg, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud(OP_UDP_SEND, (uint32_t)k));
		d->state = UDP_SEND;
		u->udp_sending++;
		return;
	}
	if (d->state == UDP_WANT_SEND)
		d->state = UDP_IDLE;
	if (d->state != UDP_IDLE || u->stopping)
		return;
	sqe = uring_sqe(u);
	if (!sqe)
		return;
	memset(&d->msg, 0, sizeof(d->msg));
	d->msg.msg_name = &d->peer;
	d->msg.msg_namelen = sizeof(d->peer);
	d->iov.iov_base = d->buf;
	d->iov.iov_len = UDP_BUF;
	d->msg.msg_iov = &d->iov;
	d->msg.msg_iovlen = 1;
	/* MSG_TRUNC: the result is the datagram's real size, so an oversized one is seen. */
	io_uring_prep_recvmsg(sqe, d->fd, &d->msg, MSG_TRUNC);
	io_uring_sqe_set_data64(sqe, ud(OP_UDP_RECV, (uint32_t)k));
	d->state = UDP_RECV;
}

static void on_udp_recv(struct uring *u, uint32_t k, int res)
{
	struct uudp *d = &u->udp[k];

	d->state = UDP_IDLE;
	if (res < 0) {
		udp_next(u, (int)k);
		return;
	}
	if (res > UDP_BUF || !udp_source_allowed((const struct sockaddr *)&d->peer)) {
		stat_add(&u->w->stats.dropped, 1);
	} else {
		d->iov.iov_len = (size_t)res;  /* 0 is a datagram too: it is echoed empty */
		d->state = UDP_WANT_SEND;
	}
	udp_next(u, (int)k);
}

static void on_udp_send(struct uring *u, uint32_t k, int res)
{
	struct uudp *d = &u->udp[k];

	d->state = UDP_IDLE;
	u->udp_sending--;
	stat_add(res < 0 ? &u->w->stats.dropped : &u->w->stats.datagrams, 1);
	udp_next(u, (int)k);
}

static void wake_arm(struct uring *u)
{
	struct io_uring_sqe *sqe = uring_sqe(u);

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
static void begin_stop(struct uring *u)
{
	u->stopping = true;
	for (int i = 0; i < u->nlis; i++)
		if (u->lis[i].armed)
			uring_cancel(u, ud(OP_ACCEPT, (uint32_t)i));
	for (int k = 0; k < u->nudp; k++)
		if (u->udp[k].state == UDP_RECV)
			uring_cancel(u, ud(OP_UDP_RECV, (uint32_t)k));
	for (uint32_t i = 0; i < u->nslots; i++)
		if (u->conns[i].fd >= 0 && u->conns[i].op == OP_RECV)
			uring_cancel(u, ud(OP_RECV, i));
}

/* The eventfd becomes readable only when the server stops; an interrupted poll is re-armed. */
static void on_wake(struct uring *u, int res)
{
	if ((res == -EINTR || res == -EAGAIN) && !server_stopping(u->w->srv)) {
		wake_arm(u);
		return;
	}
	begin_stop(u);
}

static void dispatch(struct uring *u, uint64_t data, int res, uint32_t flags)
{
	uint32_t slot = (uint32_t)(data >> 8);

	if (!(flags & IORING_CQE_F_MORE))
		u->inflight--;
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
		on_send(u, slot, res);
		break;
	case OP_UDP_RECV:
		on_udp_recv(u, slot, res);
		break;
	case OP_UDP_SEND:
		on_udp_send(u, slot, res);
		break;
	case OP_CANCEL:
		break;
	}
}

static void reap(struct uring *u)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		uint64_t data = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		uint32_t flags = cqe->flags;

		/* Seen before handling: handlers may submit, and the CQ slot is then free. */
		io_uring_cqe_seen(&u->ring, cqe);
		dispatch(u, data, res, flags);
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
static void uring_sweep(struct uring *u)
{
	if (u->nosqe.n)
		retry_parked(u, &u->nosqe, PARK_NOSQE);
	if (u->nobuf.n && (buf_free(u) > 0 || u->stopping))
		retry_parked(u, &u->nobuf, PARK_NOBUF);
	for (int i = 0; i < u->nlis && !u->stopping; i++) {
		struct ulisten *l = &u->lis[i];
		struct io_uring_sqe *sqe;

		if (l->armed || l->timer)
			continue;
		sqe = uring_sqe(u);
		if (!sqe)
			break;
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, (uint32_t)i));
		l->armed = true;
	}
	for (int k = 0; k < u->nudp; k++)
		udp_next(u, k);
}

static int uring_open(struct uring *u, struct worker *w)
{
	const struct server_config *cfg = w->cfg;
	unsigned want = cfg->max_conns ? cfg->max_conns : RING_DEFAULT;
	int r;

	u->w = w;
	u->free_head = NO_SLOT;
	u->bsize = cfg->bufsize == 0 ? 65536 : cfg->bufsize > BUF_MAX ? BUF_MAX : (uint32_t)cfg->bufsize;
	u->entries = RING_MIN;
	while (u->entries < want && u->entries < RING_MAX)
		u->entries *= 2;
	u->mem = calloc(u->entries, sizeof(*u->mem));
	if (!u->mem)
		return -ENOMEM;
	for (int i = 0; i < w->ntcp; i++)
		u->lis[u->nlis++] = (struct ulisten){ .fd = w->tcp_fds[i] };
	for (int k = 0; k < w->nudp; k++) {
		struct uudp *d = &u->udp[u->nudp];

		d->fd = w->udp_fds[k];
		d->state = UDP_IDLE;
		d->buf = malloc(UDP_BUF);
		if (!d->buf)
			return -ENOMEM;
		u->nudp++;
	}
	r = br_map(u->entries, &u->br, &u->br_bytes);
	if (r < 0)
		return r;
	r = ring_setup(&u->ring, SQ_ENTRIES, CQ_ENTRIES);
	if (r < 0) {
		server_log_once(w->srv, "uring-init", "uring: %s", init_why(r));
		return r;
	}
	r = br_register(&u->ring, u->br, u->entries);
	if (r < 0) {
		server_log_once(w->srv, "uring-bufring", "uring: cannot register a buffer ring: %s",
				strerror(-r));
		io_uring_queue_exit(&u->ring);
		return r;
	}
	buf_grow(u);
	return 0;
}

/* kernel_done: no operation can touch our memory any more, so the buffers may be freed. */
static void uring_free(struct uring *u, bool kernel_done)
{
	if (kernel_done) {
		for (unsigned b = 0; b < u->total; b++)
			free(u->mem[b]);
		for (int k = 0; k < u->nudp; k++)
			free(u->udp[k].buf);
		if (u->br)
			munmap(u->br, u->br_bytes);
	}
	free(u->mem);
	free(u->conns);
	free(u->nobuf.v);
	free(u->nosqe.v);
	free(u);
}

/* Waits for completions until `until` (CLOCK_MONOTONIC ns) or forever (0). */
static int uring_wait(struct uring *u, uint64_t until)
{
	struct io_uring_cqe *cqe;
	int r;

	if (!until) {
		r = io_uring_submit_and_wait(&u->ring, 1);
	} else {
		uint64_t now = now_ns();
		uint64_t left = until > now ? until - now : 0;
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(left / 1000000000u),
			.tv_nsec = (long long)(left % 1000000000u),
		};

		r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	}
	if (r == -EINTR || r == -EAGAIN || r == -EBUSY || r == -ETIME)
		r = 0;
	if (r >= 0) {
		reap(u);
		uring_sweep(u);
	}
	return r < 0 ? r : 0;
}

static void uring_close(struct uring *u)
{
	struct io_uring_sqe *sqe;
	uint64_t end;

	/* Everything still in flight (idle recvs, sends past the deadline, timers) is cancelled
	 * and its completion awaited: the kernel must be done with our buffers before they go. */
	u->stopping = true;
	u->aborting = true;
	sqe = uring_sqe(u);
	if (sqe) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, 0));
	}
	end = now_ns() + CANCEL_WAIT_NS;
	while (u->inflight > 0 && now_ns() < end)
		if (uring_wait(u, end) < 0)
			break;
	for (uint32_t i = 0; i < u->nslots; i++) {
		if (u->conns[i].fd >= 0) {
			u->conns[i].op = 0;
			conn_close(u, i, 0);
		}
	}
	io_uring_queue_exit(&u->ring);
	if (u->inflight > 0)
		server_log_once(u->w->srv, "uring-leak", "uring: %u operations not cancelled at exit",
				u->inflight);
	/* With operations left the kernel might still write into our buffers: leaking them beats
	 * corrupting the heap. */
	uring_free(u, u->inflight == 0);
}

static int uring_run(struct worker *w)
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
	wake_arm(u);
	uring_sweep(u);
	while (!u->stopping) {
		r = uring_wait(u, 0);
		if (r < 0) {
			err = r;
			server_log_once(w->srv, "uring-wait", "uring: waiting for completions: %s",
					strerror(-r));
			begin_stop(u);
		}
	}
	/* Drain: send what is pending, until every connection has closed or the deadline. */
	deadline = server_drain_deadline_ns(w->srv);
	while ((u->nlive > 0 || u->udp_sending > 0) && now_ns() < deadline && err == 0)
		err = uring_wait(u, deadline);
	uring_close(u);
	return err;
}

const struct backend backend_uring = {
	.name = "uring",
	.probe = uring_probe,
	.run = uring_run,
};
