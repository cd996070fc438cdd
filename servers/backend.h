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

void svc_init(struct services *svc, const struct server_config *cfg);
void svc_fini(struct services *svc);
/* Sets the stop flag and, the first time, the drain deadline. */
void svc_begin_stop(struct services *svc);
bool svc_stopping(const struct services *svc);
uint64_t svc_drain_deadline_ns(const struct services *svc);
/* Records a worker's failure; true for the first one (the caller then raises the alarm). */
bool svc_fail(struct services *svc, int err);
int svc_failure(const struct services *svc);

/* Admission of a new TCP connection against --max-conns. Returns true and counts the connection
 * as accepted, or false and counts a refusal: the caller then closes the fd at once. Every admitted
 * connection must later be released exactly once. */
bool svc_admit(struct worker *w);
void svc_release(struct worker *w);

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
