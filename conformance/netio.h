/* Client-side socket helpers for the cases. Sockets are non-blocking; every call that waits takes
 * an absolute CLOCK_MONOTONIC deadline (ns) and returns -ETIMEDOUT past it. All return 0 (or a
 * count) on success and -errno on failure. */
#ifndef ECHOBENCH_NETIO_H
#define ECHOBENCH_NETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "conform.h"

/* Buffer sizes asked for before connect(); 0 keeps the kernel's (autotuned) default. */
struct sockbufs {
	int rcvbuf;
	int sndbuf;
};

/* Starts a non-blocking connect: 0 when already connected, -EINPROGRESS while the handshake
 * runs (finish with net_connect_result once writable), else -errno. *fd is set whenever the
 * return is 0 or -EINPROGRESS. */
int net_connect_start(const struct endpoint *ep, const struct sockbufs *b, int type, int *fd);
int net_connect_result(int fd);
/* Connects and waits for the handshake. TCP_NODELAY is set: the cases control segmentation. */
int net_connect(const struct endpoint *ep, uint64_t deadline_ns, const struct sockbufs *b,
	int *fd);

/* poll() on one fd: the revents seen (> 0), -ETIMEDOUT, or -errno. */
int net_wait(int fd, short events, uint64_t deadline_ns);

int net_send_all(int fd, const void *buf, size_t n, uint64_t deadline_ns);
/* One recv: bytes (> 0), 0 at EOF, -ETIMEDOUT, or -errno (-ECONNRESET...). */
ssize_t net_recv(int fd, void *buf, size_t n, uint64_t deadline_ns);
/* Reads exactly n bytes; *got says how many arrived before an error, EOF (-EPIPE) or timeout. */
int net_recv_exact(int fd, void *buf, size_t n, uint64_t deadline_ns, size_t *got);
/* Reads until EOF. *extra counts bytes that arrived first. 0 at EOF, else -errno/-ETIMEDOUT. */
int net_read_to_eof(int fd, uint64_t deadline_ns, uint64_t *extra);

/* Closes with SO_LINGER {1, 0}: the kernel sends RST instead of FIN. */
void net_close_rst(int fd);
/* Waits until everything written has been acknowledged by the peer's kernel (TIOCOUTQ == 0). */
int net_wait_acked(int fd, uint64_t deadline_ns);
int net_local_port(int fd);

/* connect, send msg, read it back, close: the "is it still serving?" probe of many cases.
 * 0, -EBADMSG when different bytes come back, or -errno. */
int net_echo_probe(const struct endpoint *ep, uint64_t deadline_ns, const char *msg);

void sleep_ns(uint64_t ns);
/* Sleeps until t (CLOCK_MONOTONIC ns), or returns at once when t has passed. */
void sleep_until_ns(uint64_t t);

/* One echo conversation on a connected socket: send `total` bytes (explicit `data`, or the
 * pattern stream `seed`) with the given write sizes and pauses, read them back concurrently
 * (or only after sending) with the given read sizes, pauses and rate, and compare every byte.
 * Fields after the marker are results. */
struct flow {
	const uint8_t *data;
	uint64_t seed;
	uint64_t total;
	size_t wmin, wmax;            /* write sizes, uniform in [wmin, wmax]; 0: 64 KiB */
	unsigned wpause_every;        /* pause after every k-th write (0: never) */
	uint64_t wpause_ns;
	size_t rmin, rmax;            /* read sizes; 0: 64 KiB */
	unsigned rpause_every;
	uint64_t rpause_ns;
	uint64_t read_rate;           /* bytes/s the reader accepts; 0: as fast as it can */
	bool read_after_send;         /* do not read until everything is written */
	bool shut_wr;                 /* SHUT_WR right after the last byte is written */
	bool expect_eof;              /* after `total` bytes the server must close: read to EOF */
	bool hash;                    /* FNV-1a of both directions, for the report */
	/* results */
	uint64_t sent, rcvd, extra;
	int64_t mismatch;             /* stream offset of the first wrong byte, -1: none */
	uint8_t want, got;
	bool eof;                     /* EOF seen */
	int err;                      /* errno of the send/recv that failed, 0: none */
	bool timed_out;
	uint64_t hash_sent, hash_rcvd;
	uint64_t elapsed_ns;
};

void flow_init(struct flow *f, uint64_t seed, uint64_t total);
/* Runs the conversation until done, a mismatch, an error, EOF, or the case deadline. Returns 0
 * when every byte came back intact (then EOF, when expected), -1 otherwise. */
int flow_run(struct casectx *c, int fd, struct flow *f);
/* Records the flow's figures, and on failure the verdict: `expected` says what should have
 * happened, the seen text is derived from the results. */
void flow_report(struct casectx *c, const struct flow *f, const char *expected);

#endif
