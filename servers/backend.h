/* The private interface between the server core and its backends.
 *
 * The core (server.c with listen.c and worker.c) binds the listeners and starts `threads`
 * workers; each worker runs its backend's run() on its own thread with its own share of
 * listeners (TCP listeners are per-worker SO_REUSEPORT sockets; a unix listener is shared by all
 * workers). Every backend and variant is one row of the table in backends.c:
 *
 *   blocking.c      thread per connection; blocking_pool.c a pool of threads (blocking.h)
 *   loop.c          one event loop for select, poll and epoll, over the mux_ops of mux.h
 *                   (and splice: epoll with each connection's echo in a pipe, conn_pipe.c)
 *   uring*.c        io_uring completions
 *
 * What backends call back into (admission, log-once, EMFILE shedding, the UDP echo and its
 * source guard, the stop flag and drain deadline) is services.c, declared below.
 *
 * Stopping: server_stop() sets `stopping`, fixes the drain deadline and makes every worker's
 * wake_fd (an eventfd) readable. A worker then closes or ignores its listeners, stops reading
 * new data, keeps sending what is pending until nothing is or the deadline passes, closes its
 * connections and returns from run().
 */
#ifndef ECHOBENCH_BACKEND_H
#define ECHOBENCH_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

/* Above any UDP payload (65507 bytes over IPv4, 65527 over IPv6). */
#define UDP_BUF 65536

#define SVC_LOG_KEYS 16

struct svc_source;

/* What all workers of one server share; only services.c touches the fields. */
struct services {
	const struct server_config *cfg;
	atomic_bool stopping;
	_Atomic uint64_t drain_deadline_ns;
	_Atomic unsigned live;         /* admitted connections not yet released */
	_Atomic int failed;            /* first -errno a worker died with */
	pthread_mutex_t log_lock;
	pthread_mutex_t shed_lock;
	const char *logged[SVC_LOG_KEYS];
	/* --max-conns-per-source: the source addresses with connections, hashed (services.c) */
	pthread_mutex_t src_lock;
	struct svc_source **src_bucket;
	size_t src_nbucket;            /* a power of two; 0: no per-source cap */
	uint64_t src_seed;             /* random: sources cannot be chosen to share a chain */
};

struct backend;
struct mux_ops;

struct worker {
	struct services *svc;
	const struct server_config *cfg;
	const struct backend *backend;    /* the table row: run() may read its flags */
	int index;
	int tcp_fds[SERVER_MAX_LISTEN];   /* listening sockets, non-blocking */
	int ntcp;
	int udp_fds[SERVER_MAX_LISTEN];   /* bound datagram sockets, non-blocking */
	int nudp;
	int wake_fd;                      /* eventfd; readable once the server is stopping */
	int reserve_fd;                   /* kept open to be given up on EMFILE (see below) */
	struct server_stats stats;        /* updated with stat_add() below */
	uint64_t sweep_ns;                /* --idle-timeout: when the next sweep is due */
};

/* Variant flags, read by the run function of the row that names them. */
enum {
	BACKEND_EDGE = 1,         /* epoll: edge-triggered interest, set once per connection */
	BACKEND_SINGLESHOT = 2,   /* uring: one accept per submission instead of multishot */
	BACKEND_SQPOLL = 4,       /* uring: a kernel thread polls the submission queue */
	BACKEND_SPLICE = 8,       /* loop: echo through a pipe with splice(2) (conn.h) */
	BACKEND_ZC = 16,          /* uring: zero-copy sends (IORING_OP_SEND_ZC) */
};

struct backend {
	const char *name;         /* "epoll", or a variant "epoll:et" */
	const char *summary;      /* one phrase for --help */
	/* 0 when usable here, else -errno and *why (static text). NULL: always usable. */
	int (*probe)(const char **why);
	/* Thread body. Returns 0 or -errno (a failure here is a run-time error of the server). */
	int (*run)(struct worker *w);
	const struct mux_ops *mux;   /* loop_run: the multiplexer (mux.h) */
	unsigned flags;
};

/* The table (backends.c) and the run/probe functions it names. */
const struct backend *backend_find(const char *name);
int blocking_run(struct worker *w);
int blocking_pool_run(struct worker *w);
int loop_run(struct worker *w);
int uring_run(struct worker *w);
int uring_probe(const char **why);
int uring_probe_sqpoll(const char **why);   /* uring_probe, and SQPOLL can be set up */
int uring_probe_zc(const char **why);       /* uring_probe, and IORING_OP_SEND_ZC */

/* ---- services.c ---- */

/* Returns 0 or -ENOMEM. */
int svc_init(struct services *svc, const struct server_config *cfg);
void svc_fini(struct services *svc);
/* Sets the stop flag and, the first time, the drain deadline. */
void svc_begin_stop(struct services *svc);
bool svc_stopping(const struct services *svc);
uint64_t svc_drain_deadline_ns(const struct services *svc);
/* Records a worker's failure; true for the first one (the caller then raises the alarm). */
bool svc_fail(struct services *svc, int err);
int svc_failure(const struct services *svc);

/* Admission of the new TCP connection fd against --max-conns and --max-conns-per-source.
 * Returns true and counts the connection as accepted, or false and counts a refusal: the caller
 * then closes the fd at once. *src is what the connection holds of its source's count (NULL
 * when there is no per-source cap, for unix sockets, or for a peer gone before it was asked):
 * the caller keeps it with the connection. Every admitted connection must later be released
 * exactly once, with its *src (its address cannot be asked again: a reset socket has none). */
bool svc_admit(struct worker *w, int fd, struct svc_source **src);
void svc_release(struct worker *w, struct svc_source *src);

/* --idle-timeout. A connection is idle when it has moved no byte either way (nothing received,
 * nothing sent) for idle_timeout_ns. Nothing pending and nothing received: the peer is silent.
 * Echo pending and none of it sent: the peer stopped reading (and, its window being full,
 * stopped sending too); closing it gives back the buffer it holds (docs/CONTRACTS.md).
 *
 * Event loops and rings need no timer per connection: each keeps an idle_mark per connection
 * and sweeps them all when svc_sweep_due() says (every svc period: a quarter of the timeout,
 * at most a second), waking for it through the timeout of the wait they already do. A
 * connection is then closed between idle_timeout_ns and 1.5 times that after its last byte. The
 * blocking backends let the kernel time their blocking calls instead (SO_RCVTIMEO and
 * SO_SNDTIMEO, svc_idle_sockopts). */
struct idle_mark {
	uint64_t moved;       /* the connection's bytes in + out at the last sweep */
	uint64_t since_ns;    /* the sweep that saw them change last, or the accept */
};

/* A new connection's mark (no clock read when the timeout is off). */
void svc_idle_start(const struct services *svc, struct idle_mark *m);
/* When the worker's next sweep is due (CLOCK_MONOTONIC ns): a bound for its wait. 0: never
 * (the timeout is off). */
uint64_t svc_sweep_next(struct worker *w);
/* The time now, when a sweep is due (the next is then scheduled), else 0. */
uint64_t svc_sweep_due(struct worker *w);
/* At a sweep, for one connection: moved is its bytes in + out so far. True when it is idle and
 * to be closed now: then the caller calls svc_idle_closing() and closes it. events (POLLIN,
 * POLLOUT) is what a readiness-driven connection waits for: when the socket has it ready now,
 * the connection is not idle, the server was late (a loop behind on its events on a busy
 * machine). 0 for completion-driven ones, whose completions were all handled before the sweep. */
bool svc_idle_expired(const struct services *svc, struct idle_mark *m, int fd, uint64_t moved,
		      short events, uint64_t now);
/* Counts an idle close of fd, just before close(). With echo pending the close sends RST
 * (SO_LINGER 0): a FIN would tell the peer its echo was complete. */
void svc_idle_closing(struct worker *w, int fd, bool pending);
/* Blocking sockets: a recv that gets nothing for the timeout, or a send that moves nothing for
 * it, fails with EAGAIN (each is an idle close). No-op when the timeout is off. */
void svc_idle_sockopts(const struct services *svc, int fd);

/* Logs a refusal reason once per server (e.g. "fd 1024 >= FD_SETSIZE"): the count goes on in the
 * stats, the log does not flood. */
void svc_log_once(struct services *svc, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Counters may be touched by several threads (the blocking backend); relaxed atomics are enough
 * since they are only read after the workers are joined. */
static inline void stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* RFC 862 UDP echo guard: datagrams from source ports below 1024 are dropped, so two echo (or
 * chargen) services cannot be made to bounce packets between each other forever. */
bool udp_source_allowed(const struct sockaddr *sa);

/* Echoes up to a bounded batch of datagrams waiting on the non-blocking socket fd, through buf
 * (UDP_BUF bytes), counting each as echoed or dropped. For readiness-driven backends. */
void udp_echo_ready(struct worker *w, int fd, uint8_t *buf);

/* Accepting under fd exhaustion: on EMFILE/ENFILE, frees the reserve fd, accepts and closes one
 * pending connection (so the client is told at once and the listener stops being readable),
 * then takes the reserve again. Returns true when it shed a connection. Without this a
 * level-triggered loop spins on a listener it cannot accept from. */
bool svc_shed_on_emfile(struct worker *w, int listen_fd);

#endif
