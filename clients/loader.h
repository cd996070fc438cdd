/* The inside of one load thread: its connections (struct lconn), the thread itself (struct
 * loader), and the transport table through which the thread moves bytes.
 *
 *   lconn.c      what every transport shares: the in-flight ring (queue, pop, answer), the
 *                refill rules of the closed and open loop, failure and clean close
 *   load_tcp.c   transport_stream: TCP and unix stream sockets (byte stream, partial writes)
 *   load_udp.c   transport_dgram: UDP (one message = one datagram, batched sendmmsg/recvmmsg)
 *   load_epoll.c engine_epoll: readiness from epoll; the transports do the I/O
 *   load_uring.c engine_uring: completions from io_uring; its own stream transport submits
 *                sends and receives and shares the checking with load_tcp.c (tcp_consume)
 *   load_engines.c  the table of engines (--engine, --version, the record, the fallbacks)
 *   load_churn.c --churn: starts transactions on free slots (closed loop, or the schedule's)
 *   loader.c     the thread: schedule, timeouts, drain and close at the end, over an engine
 *
 * Dependencies go one way: loader.c -> load_churn.c -> engines -> transports -> lconn.c. A
 * transport never calls the loop, and lconn.c never calls a transport; the only calls back up
 * go through the engine's hooks in w->eng (`want_out` when a write must wait for room, `forget`
 * before a socket is closed; load_churn.c's `adopt` for a transaction's new socket), so nothing
 * below the engines names one. lconn.c hands a churn slot back to the pool (a free list the
 * loop reads): the loop, not lconn.c, starts its next transaction.
 */
#ifndef ECHOBENCH_LOADER_H
#define ECHOBENCH_LOADER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"
#include "latesplit.h"
#include "load.h"
#include "pacing.h"
#include "ratesched.h"

/* One message in flight, or queued to go (open loop, partial writes). 32 bytes: the memory of
 * a message in flight (clients/README.md, "--pipeline unbounded"). */
struct msg {
	uint64_t start_off;         /* offset of its first byte in the connection's stream */
	uint64_t t_sched;           /* due time: latency counts from here */
	uint64_t t_sent;            /* when it was handed to the socket: uncorrected latency */
	uint32_t size;
	uint32_t bad;               /* a mismatch has been counted for it */
};

struct lconn {
	int fd;
	bool dead;                  /* closed: failed, or closed cleanly at the end */
	bool closing;               /* our side is shut down; waiting for the server's EOF */
	bool want_out;              /* the engine was asked to report room to write */
	uint32_t slot;              /* index in its loader's array: picks its open-loop ticks */
	uint64_t id;                /* global connection number: the key of its payload stream */
	uint64_t send_off;          /* bytes handed to the socket (streams) */
	uint64_t queued_off;        /* end of the last queued message */
	uint64_t recv_off;          /* bytes received and checked (streams) */
	struct msg *ring;           /* in-flight messages, oldest at head */
	uint32_t cap, head, count;  /* ring capacity (pipeline depth), oldest index, entries */
	uint32_t nsent;             /* datagrams: ring entries from head already sent */
	uint64_t next_idx;          /* open loop: the connection's next message number */
	uint64_t owed;              /* open loop: messages due but not yet queued (ring full) */
	struct latesplit split;     /* open loop: the ring's lateness split */
	uint64_t rng;               /* size draws */
	uint64_t answered;          /* messages answered inside the measured window */
	/* --churn: the connection is a slot that transactions take in turn; `id` (the payload's
	 * key) is the transaction's, slot_id the slot's global number. Idle: dead, fd -1. */
	bool connecting;            /* connect() in progress */
	uint64_t slot_id;
	struct {
		uint64_t due;       /* latency counts from here (closed loop: the connect start) */
		uint64_t start;     /* connect() called: connect time, uncorrected latency */
		uint64_t connected; /* connect completed: first-reply time counts from here */
		uint64_t first;     /* the first echoed byte arrived */
		uint64_t left;      /* messages still to queue */
		uint64_t seq;       /* transactions this slot has started */
	} txn;
};

struct loader;

/* How bytes move for one kind of socket. Chosen once from the options (load_options.c). */
struct transport {
	const char *name;           /* "tcp" (streams, also unix sockets) or "udp" */
	int socktype;               /* SOCK_STREAM or SOCK_DGRAM */
	/* Read buffer and write buffer sizes for this configuration. */
	void (*buffers)(const struct load_config *cfg, size_t *rbuf, size_t *wbuf);
	/* Sends what is queued, as far as the socket takes it; for the rest it asks to be told
	 * when the socket has room (lconn_set_want_out). */
	void (*flush)(struct loader *w, struct lconn *c);
	/* Reads what has arrived (bounded rounds), matches it to the ring, refills. */
	void (*readable)(struct loader *w, struct lconn *c);
	/* Something queued is not yet sent. */
	bool (*unsent)(const struct lconn *c);
	/* The oldest message waited longer than --timeout for its answer. Returns true when
	 * the connection goes on (the message was given up), false when it failed. */
	bool (*expire)(struct loader *w, struct lconn *c);
	/* The end: starts a clean close. Returns true when the server's EOF is to be awaited
	 * (c->closing), false when the connection is closed already. */
	bool (*shutdown)(struct loader *w, struct lconn *c);
};

extern const struct transport transport_stream, transport_dgram;

/* load_tcp.c, shared by every engine's stream I/O: checks `n` echoed bytes against the ring
 * and completes the messages they finish. */
void tcp_consume(struct loader *w, struct lconn *c, const uint8_t *p, size_t n, uint64_t now);
bool tcp_unsent(const struct lconn *c);
bool tcp_expire(struct loader *w, struct lconn *c);

/* How a load thread learns that a socket can move bytes (readiness or completion) and how the
 * I/O is submitted. Scheduling, recording and checks stay in loader.c and lconn.c. One row per
 * engine in load_engines.c; chosen once (--engine). */
struct engine {
	const char *name;           /* what --engine, --version, the JSON and the record say */
	bool blocking_ok;           /* one connection, -p 1: blocking send/recv may replace it */
	/* Can it run here? 0, or -errno with *why set (not compiled in, kernel too old...). */
	int (*probe)(const char **why);
	/* Whether it moves this transport's bytes (uring: streams only). */
	bool (*supports)(const struct transport *tp);
	/* In the load thread, before the first message: the wait mechanism over w->conns. May
	 * replace w->tp by the engine's own I/O for that transport. 0 or -errno (w->error_text). */
	int (*setup)(struct loader *w);
	void (*free)(struct loader *w);
	/* Submits what is queued, waits for events until deadline (polls when it has passed) and
	 * handles them. Returns their number, or -1 (w->error set unless interrupted). */
	int (*wait)(struct loader *w, uint64_t now, uint64_t deadline);
	/* c's socket is about to be closed: nothing may refer to it afterwards. */
	void (*forget)(struct loader *w, struct lconn *c);
	/* A write waits for room (on) or no longer does (off): report c writable meanwhile.
	 * 0 or -errno. NULL: the engine learns that by itself (a completion). */
	int (*want_out)(struct loader *w, struct lconn *c, bool on);
	/* --churn: c's socket was opened after setup (its connect may be in progress, then
	 * c->want_out is set): watch it. 0 or -errno. NULL: the engine does not run churn. */
	int (*adopt)(struct loader *w, struct lconn *c);
};

/* load_engines.c: the table. Row 0 is the default (README.md says how it was chosen); where
 * the engine run would not carry the transport or cannot run here, the first row that can
 * replaces it unless --engine asked for it. */
const struct engine *engine_at(unsigned i);        /* row i, NULL past the end */
const char *engine_summary(unsigned i);
const struct engine *engine_default(void);
const struct engine *engine_find(const char *name);   /* NULL when there is none */
const struct engine *engine_arg(const char *s);        /* --engine: exits 2 when unknown */
void engine_usage(FILE *f);                           /* the --engine lines of --help */
void engine_version(FILE *f);                         /* `engine NAME: usable|unavailable` */
void engine_check_transport(const struct load_config *cfg);   /* asked for, cannot: exit 2 */
void engine_choose(struct load_config *cfg);   /* at run time: probes, falls back, or exit 1 */

/* The time series of --intervals: per interval, answers and a coarse latency histogram. */
struct series;

/* --churn: a load thread's slots not running a transaction, and (open loop) the transactions
 * due while none was free. Full (every slot busy) is the state whose changes the lateness
 * split follows. */
struct churn_pool {
	uint32_t *free;             /* indexes of free slots, a stack */
	uint32_t nfree;
	uint64_t owed;              /* open loop: due, waiting for a slot: ticks next.. */
	uint64_t next;
	struct latesplit split;
	uint64_t retry_at;          /* closed loop, no local port was left: no start before */
};

struct loader {
	const struct load_config *cfg;
	const struct transport *tp;
	const struct engine *eng;
	void *eng_state;            /* the engine's own (uring: the ring, buffers) */
	int index;
	pthread_t thread;
	int stop_fd;                /* eventfd: readable when main asks every loader to stop */
	struct lconn *conns;
	uint32_t nconns, live;
	uint32_t pipeline;          /* closed loop and stream: messages kept in flight; open
				     * loop: the most (the ring's size), or its first size when
				     * unbounded */
	bool unbounded;             /* open loop, --pipeline unbounded: rings grow, up to... */
	uint32_t ring_limit;        /* ...this many messages (what --timeout lets pile up) */
	uint32_t inflight_max;      /* the most messages one connection had in flight */
	bool blocking;              /* one connection, -p 1, closed loop: no event loop */
	bool churn;                 /* --churn: conns are slots (load_churn.c) */
	struct churn_pool pool;
	struct hist *connect;       /* churn: connect time of each transaction */
	struct hist *first_reply;   /* churn: connect done to first echoed byte */
	uint64_t connects;          /* churn: transactions (due in the window) that connected */
	uint64_t pending;           /* messages queued or in flight on live connections */
	uint8_t *rbuf, *wbuf;
	size_t rbuf_len, wbuf_len;
	uint64_t t_start;           /* warmup starts (the clock of --start-at, if any) */
	uint64_t t_measure, t_end;  /* the measured window [t_measure, t_end) */
	struct ratesched rs;
	struct hist *lat;           /* from due time (closed loop: send time) */
	struct hist *lat_unc;       /* open loop: from the actual send */
	struct hist *lag;           /* open loop: the client's own lateness (send_lag) */
	struct hist *slot_wait;     /* open loop: the wait for a free slot (the server's) */
	struct hist *block[LOAD_CI_BLOCKS];   /* lat, split into equal time blocks of the window */
	struct series *series;
	struct load_counts c;
	uint64_t done_total;        /* messages answered, warmup included (progress) */
	uint64_t t_stopped;
	bool stopped_early;         /* its connections all failed before t_end */
	uint64_t spin_ns;           /* time spent polling for a due time: not load work */
	struct pacing pacing;       /* open loop: how early to stop sleeping before a due time */
	struct hist *wake_late;     /* open loop: how late timed waits returned (in the window) */
	uint64_t wake_early_max;    /* the largest margin used in the window */
	int schedstat_fd;           /* open loop: /proc/thread-self/schedstat, or -1 */
	uint64_t cpu_t, cpu_delay;  /* the last sample of the time waiting for a CPU */
	uint64_t cpu_wait_ns;       /* time waiting for a CPU in the window */
	double busy;                /* fraction of its time on CPU, spin excluded */
	int error;                  /* 0 or -errno of an internal failure (epoll) */
	char error_text[160];
	_Atomic uint64_t progress_done, progress_errors;
};

static inline bool loader_in_window(const struct loader *w, uint64_t t)
{
	return t >= w->t_measure && t < w->t_end;
}

/* The one dispatch of an event: read what came (and refill), then send what waits. */
static inline void conn_dispatch(struct loader *w, struct lconn *c, bool readable)
{
	if (readable)
		w->tp->readable(w, c);
	if (!c->dead && !c->closing && w->tp->unsent(c))
		w->tp->flush(w, c);
}

/* lconn.c */
void lconn_set_want_out(struct loader *w, struct lconn *c, bool on);
void lconn_fail(struct loader *w, struct lconn *c, enum err_kind kind);
void lconn_close(struct loader *w, struct lconn *c);     /* clean: no error counted */
struct msg *lconn_at(const struct lconn *c, uint32_t i);  /* i-th oldest in flight */
void lconn_queue(struct loader *w, struct lconn *c, uint64_t t_sched, uint64_t now);
/* Drops the oldest (answered, or given up at `now`) and hands its slot back. */
void lconn_pop(struct loader *w, struct lconn *c, uint64_t now);
void lconn_done(struct loader *w, struct lconn *c, uint64_t now);   /* oldest answered */
/* After answers: closed loop tops up to the pipeline depth, open loop queues what is due. */
void lconn_replenish(struct loader *w, struct lconn *c, uint64_t now);
/* Open loop: `n` more ticks of this connection fell due. */
void lconn_owe(struct loader *w, struct lconn *c, uint64_t n, uint64_t now);

/* load_churn.c: the loop's side of --churn (transactions started on free slots). */
int churn_setup(struct loader *w);
void churn_refill(struct loader *w, uint64_t now);   /* free slots take what may start */
void churn_fire(struct loader *w, uint64_t now);     /* open loop: what fell due */
uint64_t churn_next_due(const struct loader *w);     /* pacing: next start that can go */
void churn_give_up(struct loader *w);   /* after the drain: what is left is unanswered */

/* loader.c */
int loader_setup(struct loader *w, const struct load_config *cfg, int index, const int *fds,
		 const uint64_t *ids, uint32_t n);
void loader_free(struct loader *w);
void *loader_main(void *arg);
void loader_start_clock(struct loader *w, uint64_t t0);
/* --pipeline unbounded: the most messages one connection may hold in flight. */
uint32_t loader_ring_limit(const struct load_config *cfg);

#endif
