/* The private interface between the server core (server.c) and its backends.
 *
 * server.c binds the listeners and starts `threads` workers; each worker runs backend->run on
 * its own thread with its own share of listeners (TCP listeners are per-worker SO_REUSEPORT
 * sockets; a unix listener is shared by all workers). A backend is one small table, filled with
 * designated initialisers:
 *
 *   blocking.c      thread per connection
 *   loop.c          one event loop for select, poll and epoll, over the mux_ops of mux.h
 *   uring.c         io_uring completions
 *
 * Stopping: server_stop() sets `stopping`, fixes `drain_deadline_ns` and makes every worker's
 * wake_fd (an eventfd) readable. A worker then closes or ignores its listeners, stops reading
 * new data, keeps sending what is pending until nothing is or the deadline passes, closes its
 * connections and returns from run().
 */
#ifndef ECHOBENCH_BACKEND_H
#define ECHOBENCH_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

struct worker {
	struct server *srv;
	const struct server_config *cfg;
	int index;
	int tcp_fds[SERVER_MAX_LISTEN];   /* listening sockets, non-blocking */
	int ntcp;
	int udp_fds[SERVER_MAX_LISTEN];   /* bound datagram sockets, non-blocking */
	int nudp;
	int wake_fd;                      /* eventfd; readable once the server is stopping */
	int reserve_fd;                   /* kept open to be given up on EMFILE (see below) */
	struct server_stats stats;        /* updated with the stat_add() helpers below */
};

struct backend {
	const char *name;
	/* 0 when usable here, else -errno and *why (static text). NULL: always usable. */
	int (*probe)(const char **why);
	/* Thread body. Returns 0 or -errno (a failure here is a run-time error of the server). */
	int (*run)(struct worker *w);
};

extern const struct backend backend_blocking, backend_select, backend_poll, backend_epoll,
	backend_uring;

/* Shared by all workers of one server. */
bool server_stopping(const struct server *s);
uint64_t server_drain_deadline_ns(const struct server *s);

/* Admission of a new TCP connection against --max-conns. Returns true and counts the connection
 * as accepted, or false and counts a refusal: the caller then closes the fd at once. Every admitted
 * connection must later be released exactly once. */
bool server_admit(struct worker *w);
void server_release(struct worker *w);

/* Logs a refusal reason once per server (e.g. "fd 1024 >= FD_SETSIZE"): the count goes on in the
 * stats, the log does not flood. */
void server_log_once(struct server *s, const char *key, const char *fmt, ...)
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

/* Accepting under fd exhaustion: on EMFILE/ENFILE, frees the reserve fd, accepts and closes one
 * pending connection (so the client is told at once and the listener stops being readable),
 * then takes the reserve again. Returns true when it shed a connection. Without this a
 * level-triggered loop spins on a listener it cannot accept from. */
bool server_shed_on_emfile(struct worker *w, int listen_fd);

#endif
