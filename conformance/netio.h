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

#endif
