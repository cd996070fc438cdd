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
 *
 * Zero copy (the splice backend, conn_pool_init_pipes()): the storage is a pipe instead of a
 * buffer, and the bytes go socket -> pipe -> socket with splice(2), as page references that
 * never reach user space (conn_pipe.c). Everything else is the same state machine: at most cap
 * bytes are in the pipe (the same bound and the same backpressure), and EOF, draining and errors
 * follow the same rules. The pipe is the connection's own, opened at its first read and closed
 * with it (conn_free): a pool of empty pipes, as of buffers, would keep descriptors open after
 * their connections closed, which a server's fd count must not show. A pipe also has a limit of its own, in page-sized slots: a splice into it may
 * find it full of small pieces before cap bytes are in it, and a nonblocking splice says EAGAIN
 * for that and for an empty socket alike; so after an EAGAIN with bytes pending the
 * connection stops asking to read (in_full) until a write has emptied some of it.
 */
#ifndef ECHOBENCH_CONN_H
#define ECHOBENCH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum conn_want {
	CONN_WANT_READ = 1,   /* poll for readability */
	CONN_WANT_WRITE = 2,  /* poll for writability */
};

/* Free buffers of one size, for the connections of one thread. */
struct conn_pool {
	void **free;
	int n, keep;
	size_t cap;
	bool pipes;           /* conn_pool_init_pipes(): the connections splice through pipes */
};

void conn_pool_init(struct conn_pool *p, size_t cap, int keep);
/* No buffers: the connections of this pool splice through a pipe each, of cap bytes at most
 * (its size is set to cap rounded up to whole pages, as far as the kernel allows). */
void conn_pool_init_pipes(struct conn_pool *p, size_t cap);
void conn_pool_fini(struct conn_pool *p);

struct conn {
	int fd;
	bool eof;             /* the peer has shut down its sending side */
	bool draining;        /* the server is stopping: read nothing new */
	bool edge;            /* edge-triggered polling: read until EAGAIN or EOF, since a FIN
			       * that came with the last data gets no edge of its own */
	bool more;            /* the last conn_progress() stopped at its work bound, not at
			       * EAGAIN: with edge-triggered polling, call it again unasked */
	bool in_full;         /* pipes: a splice in said EAGAIN with bytes pending (see above) */
	int pipe_r, pipe_w;     /* pipes: the pipe while anything is pending, else -1 */
	uint8_t *buf;           /* NULL while nothing is pending */
	struct conn_pool *pool; /* where buf comes from; NULL: malloc/free */
	size_t cap, head, len;  /* pending bytes are buf[head .. head+len) modulo cap */
	uint64_t bytes_in, bytes_out;
};

/* Prepares c for fd with buffers of cap bytes (cap > 0) from pool (NULL: malloc; a pipe pool:
 * pipes, and cap must be the pool's). Allocates nothing yet. Returns 0. The fd must be
 * non-blocking. */
int conn_init(struct conn *c, int fd, size_t cap, struct conn_pool *pool);

/* Gives the buffer (or pipe) back; does not close the fd. */
void conn_free(struct conn *c);

/* Moves as much data as the socket allows (bounded work per call, so one busy connection
 * cannot starve the others of a loop). Returns:
 *   > 0   a mask of enum conn_want: poll for these next;
 *   0     finished: EOF seen and everything echoed (or draining and nothing pending);
 *         close the fd;
 *   < 0   -errno (ECONNRESET, EPIPE, ENOMEM for no buffer, EMFILE for no pipe, ...): the
 *         connection is broken; close the fd.
 * Sends use MSG_NOSIGNAL: a peer that vanished gives -EPIPE, not a SIGPIPE. */
int conn_progress(struct conn *c);

/* The mask conn_progress() would return now, without doing I/O. */
int conn_wants(const struct conn *c);

/* conn_pipe.c, for conn.c: open and close a connection's pipe, and splice through it.
 * conn_pipe_in/out return bytes moved (in: 0 is EOF), or -errno (-EAGAIN: nothing now). */
int conn_pipe_open(struct conn *c);
void conn_pipe_close(struct conn *c);
ssize_t conn_pipe_in(struct conn *c, size_t room);
ssize_t conn_pipe_out(struct conn *c);

#endif
