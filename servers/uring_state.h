/* The io_uring backend's state, shared by uring.c (the completion state machine) and
 * uring_worker.c (a worker's ring from setup to drain and teardown). Nothing else includes it. */
#ifndef ECHOBENCH_URING_STATE_H
#define ECHOBENCH_URING_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "uring_bufs.h"
#include "uring_ring.h"

enum op {
	OP_WAKE = 1,    /* poll on the stop eventfd */
	OP_ACCEPT,      /* multishot accept on listener <slot> */
	OP_TIMER,       /* back-off before re-arming accept on listener <slot> */
	OP_RECV,        /* recv into a provided buffer, connection <slot> */
	OP_SEND,        /* send of (the rest of) the echo, connection <slot> */
	OP_UDP_POLL,    /* readiness of datagram socket <slot> */
	OP_CANCEL,      /* our own cancel requests: their result needs no action */
};

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096
#define RING_DEFAULT 4096u          /* buffer cap per worker without --max-conns */
#define ACCEPT_BACKOFF_NS 10000000  /* 10 ms between accept attempts while out of fds */
#define CANCEL_WAIT_NS 1000000000ull
#define NO_SLOT UINT32_MAX

enum park { PARK_NONE, PARK_NOBUF, PARK_NOSQE };

/* IORING_SEND_ZC_REPORT_USAGE (Linux 6.2, after liburing 2.3): the notification's res then says
 * whether the kernel copied the data after all (IORING_NOTIF_USAGE_ZC_COPIED, bit 31). */
#define ZC_REPORT_USAGE (1U << 3)

/* Multishot recv: buffers a connection may hold before its recv is cancelled (backpressure). */
#define QLIMIT 2

struct uconn {
	int fd;             /* -1: slot is free */
	int err;            /* < 0: broken; close once nothing is in flight */
	int32_t qhead, qtail; /* echo pending: held buffers in order (links in uring.bq), -1: none */
	uint32_t off;       /* bytes of the head buffer already sent */
	uint16_t nq;        /* buffers queued */
	uint8_t recv;       /* a recv is in flight (multishot: armed until its last CQE) */
	uint8_t send;       /* a send is in flight */
	uint8_t cancelling; /* CANCEL_RECV | CANCEL_SEND asked and not completed */
	uint8_t eof;        /* the peer sent FIN: close once the queue is sent */
	uint8_t parked;     /* enum park: waiting on a list for a buffer or an SQE */
	uint8_t copy;       /* uring:zc: this socket has no zero copy (unix): plain sends */
	uint16_t zcheld;    /* uring:zc: its sent buffers still awaiting notifications; they count
			     * against QLIMIT, or a client that does not read would make the
			     * socket's whole send buffer out of our buffers */
	uint8_t idle;       /* enum idle_end: found idle by the sweep; ends as if broken */
	uint32_t gen;       /* tells this connection from earlier users of the slot */
	uint32_t next_free;
	uint64_t moved;     /* bytes received + sent: the idle sweep's sign of life */
	struct idle_mark mark;
	struct svc_source *src;   /* its share of --max-conns-per-source */
};

enum idle_end { IDLE_NO, IDLE_FIN, IDLE_RESET };   /* RESET: echo pending is dropped */

enum { CANCEL_RECV = 1, CANCEL_SEND = 2 };

/* Per buffer id: how many bytes it holds and the next buffer of the same connection's queue.
 * uring:zc: a zero-copy send reads the buffer until its notification arrives, so the buffer goes
 * back into the ring only when it is off its queue (popped) and no notification is awaited. */
struct bq {
	uint32_t len;
	int32_t next;
	uint16_t zc;        /* zero-copy sends from it whose notification has not arrived */
	uint8_t popped;     /* sent and off its queue, waiting for those notifications */
	uint32_t owner, gen;  /* the connection (slot, generation) that sent from it */
	uint32_t zcbytes;   /* bytes those sends took: counted as out once the kernel is done */
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

struct uudp {
	int fd;
	bool armed;         /* a poll is in flight */
};

struct uring {
	struct worker *w;
	struct uring_io io;  /* the ring (uring_ring.h) */
	bool stopping;       /* stop asked: read nothing new */
	bool aborting;       /* drain deadline passed: send nothing more either */
	bool starved;        /* a recv found the buffer ring empty in this pass */
	bool mshot;          /* multishot recv: wanted by the variant and not refused by the kernel */
	bool zc;             /* uring:zc: sends are IORING_OP_SEND_ZC */
	bool zc_report;      /* ... asking whether the kernel copied after all (Linux 6.2) */

	struct ubufs bufs;   /* provided buffers (uring_bufs.h) */
	struct bq *bq;       /* [bufs.entries] */

	struct uconn *conns;
	uint32_t nslots, free_head, nlive;
	uint32_t gen_next;
	struct idxvec nobuf, nosqe;

	struct ulisten lis[SERVER_MAX_LISTEN];
	int nlis;
	struct uudp udp[SERVER_MAX_LISTEN];
	int nudp;
	uint8_t *udp_buf;    /* UDP_BUF bytes, shared by the datagram sockets */
};

static inline uint64_t ud(enum op op, uint32_t slot)
{
	return (uint64_t)slot << 8 | (uint64_t)op;
}

/* A send's user_data also names its buffer (bits 40..55), which its notification releases. */
static inline uint64_t ud_buf(enum op op, uint32_t slot, int bid)
{
	return (uint64_t)(uint16_t)bid << 40 | ud(op, slot);
}

/* uring.c: what uring_worker.c drives. */
void uring_dispatch(void *ctx, uint64_t data, int res, uint32_t flags);  /* one completion */
void uring_sweep(struct uring *u);       /* after a wait: retry parked work, re-arm */
void uring_wake_arm(struct uring *u);    /* watch the stop eventfd */
void uring_begin_stop(struct uring *u);  /* stop reading anything new */
void uring_conn_close(struct uring *u, uint32_t i, int err);
void uring_sweep_idle(struct uring *u, uint64_t now);   /* --idle-timeout, when due */

/* uring_zc.c: zero-copy sends (uring:zc). */
void uring_zc_prep(struct uring *u, uint32_t i, struct io_uring_sqe *sqe, uint8_t *p,
		   uint32_t n);
/* A zero-copy send's result CQE: the result to handle as a plain send's (-EAGAIN: send again). */
int uring_zc_result(struct uring *u, struct uconn *c, int res, uint32_t flags, int bid);
/* The kernel is done with one send from buffer bid (its notification, or a result that says
 * none comes). Returns the slot of the live connection that may receive again, else NO_SLOT. */
uint32_t uring_zc_done(struct uring *u, int bid);

#endif
