/* faulty-echo's shared parts. What is where:
 *   faulty_conn.c  one connection's life: the echo queue, reading, sending, the end of a
 *                  connection, accepting, UDP; and the server state `srv` they all act on.
 *   faulty_echo.c  the fault table (names, --list text), the poll and iterative loops, the
 *                  timers, the listeners, options and main.
 * faulty_echo.c calls into faulty_conn.c; faulty_conn.c calls nothing in faulty_echo.c (srv is
 * defined there, has_fault() is inline here), so the two files form no cycle.
 */
#ifndef FAULTY_H
#define FAULTY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fault {
	F_NONE, F_PREFIX, F_TRUNCATE_4096, F_CORRUPT_DEEP, F_REORDER, F_CROSSTALK,
	F_SHORT_WRITE, F_DROP_PENDING, F_EOF_BATCH, F_NO_CLOSE, F_RST_ON_FIN, F_LEAK_FD,
	F_IDLE_TIMEOUT, F_ONE_AT_A_TIME, F_BLOCK_LOOP, F_UNBOUNDED_QUEUE, F_SPIN_EOF,
	F_EXIT_ON_RESET, F_TINY_BACKLOG, F_LISTENER_LIMIT, F_CRASH_OVER_1024, F_EMFILE_SPIN,
	F_IPV6_BROKEN, F_UDP_DROP_EMPTY, F_UDP_CROSSTALK,
};

/* Two choices make the faults show deterministically: under the faults that act on pending
 * echo (drop-pending, short-write, spin-eof) accepted sockets get a 16 KiB send buffer, so echo
 * owed to a slow reader waits in this server's own queue rather than in an autotuned kernel
 * buffer (only there: with one 64 KiB loopback segment in flight, delayed ACKs make bulk
 * transfers crawl); and the per-connection queue stops reading at 256 KiB (backpressure),
 * except under the unbounded-queue fault. */
#define PREFIX "|From Server| "
#define QUEUE_CAP (256 * 1024)
#define READ_SIZE (64 * 1024)
#define SMALL_SNDBUF (16 * 1024)

struct conn {
	int fd;
	uint8_t *q;                    /* pending echo: q[head .. head+len) */
	size_t head, len, cap;
	uint64_t in_off;               /* bytes read so far (corrupt-deep) */
	bool eof;
	bool zombie;                   /* no-close: kept, never polled again */
	uint64_t last_io_ns;           /* idle-timeout */
	uint8_t *held;                 /* reorder: a chunk waiting for its successor */
	size_t held_len;
	uint64_t held_ns;
};

/* The server's whole state: one process, one poll loop. */
struct server {
	enum fault fault;
	int listen_fd, udp_fd, reserve_fd;
	struct conn **conns;
	int nconns, maxconns;
	int last_accepted;             /* crosstalk */
	unsigned long accepted;
	volatile sig_atomic_t stop;
};

extern struct server srv;

/* Is this the fault chosen by --fault? Each fault is one such test where its bug lives. */
static inline bool has_fault(enum fault f)
{
	return srv.fault == f;
}

/* faulty_conn.c, called from the loops. */
void conn_free(int i, bool close_fd);
void conn_release_held(struct conn *c);
void conn_readable(int i);
void conn_writable(int i);
void accept_ready(void);
void udp_ready(void);

#endif
