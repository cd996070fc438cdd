/* The echo state machine of one TCP connection, shared by the select, poll and epoll backends.
 *
 * A connection owns a bounded ring buffer. conn_progress() reads into free space and writes out
 * what is pending, as far as the socket allows without blocking, and says what it waits for
 * next. The bound is the backpressure: when the buffer is full (the peer sends but does not
 * read) the connection stops asking to read, so the kernel's receive window fills and the peer
 * is stalled, not the server, and memory stays at bufsize per connection.
 *
 * The buffer exists only while echo is pending: it is taken when a read is due and given back
 * as soon as everything read has been sent, so an idle connection holds no buffer (a few dozen
 * bytes of struct conn). With a pool (conn_pool) taking and giving back is a pointer move; the
 * pool keeps at most `keep` free buffers, so memory follows the connections with echo pending,
 * not the connections open.
 *
 * End of stream (RFC 9293 3.6, simplex close): a 0 from recv marks EOF; everything pending is
 * still sent; only then is the connection finished, and closing it sends FIN. Since everything
 * the peer sent has been read by then, close() cannot turn into RST.
 */
#ifndef ECHOBENCH_CONN_H
#define ECHOBENCH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum conn_want {
	CONN_WANT_READ = 1,   /* poll for readability */
	CONN_WANT_WRITE = 2,  /* poll for writability */
};

/* Free buffers of one size, for the connections of one thread. */
struct conn_pool {
	void **free;
	int n, keep;
	size_t cap;
};

void conn_pool_init(struct conn_pool *p, size_t cap, int keep);
void conn_pool_fini(struct conn_pool *p);

struct conn {
	int fd;
	bool eof;             /* the peer has shut down its sending side */
	bool draining;        /* the server is stopping: read nothing new */
	bool edge;            /* edge-triggered polling: read until EAGAIN or EOF, since a FIN
			       * that came with the last data gets no edge of its own */
	bool more;            /* the last conn_progress() stopped at its work bound, not at
			       * EAGAIN: with edge-triggered polling, call it again unasked */
	uint8_t *buf;           /* NULL while nothing is pending */
	struct conn_pool *pool; /* where buf comes from; NULL: malloc/free */
	size_t cap, head, len;  /* pending bytes are buf[head .. head+len) modulo cap */
	uint64_t bytes_in, bytes_out;
};

/* Prepares c for fd with buffers of cap bytes (cap > 0) from pool (NULL: malloc). Allocates
 * nothing yet. Returns 0. The fd must be non-blocking. */
int conn_init(struct conn *c, int fd, size_t cap, struct conn_pool *pool);

/* Gives the buffer back; does not close the fd. */
void conn_free(struct conn *c);

/* Moves as much data as the socket allows (bounded work per call, so one busy connection
 * cannot starve the others of a loop). Returns:
 *   > 0   a mask of enum conn_want: poll for these next;
 *   0     finished: EOF seen and everything echoed (or draining and nothing pending);
 *         close the fd;
 *   < 0   -errno (ECONNRESET, EPIPE, ENOMEM for no buffer, ...): the connection is broken;
 *         close the fd.
 * Sends use MSG_NOSIGNAL: a peer that vanished gives -EPIPE, not a SIGPIPE. */
int conn_progress(struct conn *c);

/* The mask conn_progress() would return now, without doing I/O. */
int conn_wants(const struct conn *c);

#endif
