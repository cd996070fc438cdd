/* The harness of the conn.h unit tests (test_conn.c), driven by hand on non-blocking AF_UNIX
 * socketpairs: `srv` is the connection's end, `peer` plays the client.
 *
 * AF_UNIX stream sockets charge queued bytes to the sender's SO_SNDBUF, so a small SO_SNDBUF on
 * `srv` makes the connection's sends partial (or EAGAIN) as soon as the peer stops reading, and a
 * small one on `peer` keeps the peer from queueing much ahead. Closing a unix socket that still
 * has unread data marks its partner with ECONNRESET, as TCP does with RST.
 *
 * Every conn_progress() call is checked against the contract of conn.h (progress()): it returns
 * at once, the buffer never holds more than cap, pending = bytes_in - bytes_out, and the mask it
 * returns is the one conn_wants() reports. A SIGALRM watchdog turns a call that blocks, or a loop
 * that stops making progress, into a failure instead of a hung test.
 */
#ifndef ECHOBENCH_TEST_CONN_HARNESS_H
#define ECHOBENCH_TEST_CONN_HARNESS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

#define WATCHDOG_S 20
#define SMALL_SOCKBUF 4096

/* Every peer sends the deterministic stream (STREAM_SEED, 0) of common/stream.h, so a lost,
 * repeated or reordered byte shows at its own position. */
#define STREAM_SEED 862

struct pair {
	int srv, peer;
	uint64_t sent, received;   /* by the peer */
	bool peer_eof;             /* the peer has read EOF */
};

/* The storage the suite runs with: buffers (false) or the splice backend's pipes (true). */
extern bool harness_pipes;
extern volatile sig_atomic_t got_sigpipe;

void on_sigpipe(int sig);
void on_alarm(int sig);
void pair_open(struct pair *p, int sockbuf);
void pair_close(struct pair *p);
/* The peer sends up to `max` further bytes of the stream, never more than `limit` in all.
 * Returns the bytes sent now (0 when the socket is full). */
size_t peer_send(struct pair *p, size_t max, uint64_t limit);
/* The peer reads up to `max` bytes and checks them against the stream. Returns the bytes read
 * now; sets peer_eof on end of stream. */
size_t peer_recv(struct pair *p, size_t max);
bool fd_readable(int fd);
/* One conn_progress() call, checked against the contract in conn.h. */
int progress(struct conn *c);
void start(const char *name);
/* conn_init() for fd with cap, with the storage harness_pipes says. */
void conn_begin(struct conn *c, int fd, size_t cap);

#endif
