/* What the two blocking backends share (blocking.c: a thread per connection; blocking_pool.c:
 * a pool of threads): the set of live connections, which the stop path shuts down, and the
 * echo of one connection on a blocking socket.
 *
 * Stopping: the worker shuts down the read side of every connection (each recv returns 0, as at
 * a client's EOF, so each thread finishes sending what it holds), waits until the drain deadline,
 * then shuts them down completely so that a send blocked on a non-reading client fails with
 * EPIPE, and waits for the last connections to end (conn_set_drain). */
#ifndef ECHOBENCH_BLOCKING_H
#define ECHOBENCH_BLOCKING_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define BLOCKING_STACK (256 * 1024)   /* per thread: the echo loop needs little */

struct conn_set {            /* the live connection fds, for shutdown() at stop */
	pthread_mutex_t lock;
	pthread_cond_t gone;
	int *fds;
	int n, cap;
	bool closed;             /* stopping: no connection joins any more */
};

#define CONN_SET_INIT { .lock = PTHREAD_MUTEX_INITIALIZER, .gone = PTHREAD_COND_INITIALIZER }

/* Adds fd. Returns 0, -ENOMEM, or -ESHUTDOWN once the set is closed (the caller then closes
 * the fd: the server is stopping and would never shut it down). */
int conn_set_add(struct conn_set *cs, int fd);
/* Removes fd and closes it under the lock, so the stop path can never shutdown() a number that
 * has meanwhile been reused by another open. */
void conn_set_remove_close(struct conn_set *cs, int fd);
/* The stop path: closes the set to newcomers, shuts every connection's read side, waits until
 * none is left or the drain deadline passes, then shuts them down completely and waits for the
 * last one (they all must be gone before the set's memory goes). */
void conn_set_drain(struct conn_set *cs, uint64_t deadline_ns);
void conn_set_fini(struct conn_set *cs);

/* Echoes the blocking socket fd until EOF, an error or --idle-timeout, through buf (bufsize
 * bytes; NULL: the connection fails at once). Counts its bytes and a reset or idle close,
 * releases its admission (src: svc_admit's), removes it from cs and closes it. */
void blocking_echo(struct worker *w, struct conn_set *cs, int fd, struct svc_source *src,
		   uint8_t *buf, size_t bufsize);

/* The worker thread's own loop: polls the wake fd, the datagram sockets (echoed with
 * udp_echo_ready) and, when tcp, the TCP listeners (on_listener(ctx, fd) when one is readable),
 * until the server stops. Returns 0 or -ENOMEM. */
int blocking_poll_loop(struct worker *w, bool tcp, void (*on_listener)(void *ctx, int lfd),
		       void *ctx);

#endif
