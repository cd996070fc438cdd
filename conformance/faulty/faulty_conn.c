/* faulty-echo's connections: one connection's life (the echo queue, reading, sending, the end
 * of a connection), accepting, and UDP, each with the faults that live there. The loops that
 * drive them are in faulty_echo.c; faulty.h says what is where.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "sock.h"
#include "faulty.h"

struct server srv = { .listen_fd = -1, .udp_fd = -1, .reserve_fd = -1, .last_accepted = -1 };

/* ---- connections ---- */

void conn_free(int i, bool close_fd)
{
	struct conn *c = srv.conns[i];

	if (close_fd)
		close(c->fd);
	free(c->q);
	free(c->held);
	free(c);
	srv.conns[i] = NULL;
}

static int queue_append(struct conn *c, const uint8_t *p, size_t n)
{
	if (c->head + c->len + n > c->cap) {
		if (c->len)
			memmove(c->q, c->q + c->head, c->len);
		c->head = 0;
		if (c->len + n > c->cap) {
			size_t cap = c->cap ? c->cap : 4096;
			while (cap < c->len + n)
				cap *= 2;
			uint8_t *q = realloc(c->q, cap);
			if (!q)
				return -ENOMEM;
			c->q = q;
			c->cap = cap;
		}
	}
	memcpy(c->q + c->head + c->len, p, n);
	c->len += n;
	return 0;
}

/* A connection that ended in an error: the fault that cannot take it exits here. */
static void conn_error(int i, int err)
{
	if (has_fault(F_EXIT_ON_RESET) && (err == ECONNRESET || err == EPIPE)) {
		fprintf(stderr, "faulty-echo: %s on a connection: exiting\n", strerror(err));
		exit(1);
	}
	conn_free(i, true);
}

/* The client has sent its FIN and everything owed is sent: end our side. */
static void conn_finish(int i)
{
	struct conn *c = srv.conns[i];

	if (has_fault(F_NO_CLOSE)) {
		c->zombie = true;
		return;
	}
	if (has_fault(F_LEAK_FD)) {
		shutdown(c->fd, SHUT_RDWR);
		conn_free(i, false);
		return;
	}
	conn_free(i, true);
}

/* Sends what is queued. 0, or -errno when the connection failed. */
static int conn_flush(struct conn *c)
{
	int flags = MSG_NOSIGNAL | (has_fault(F_BLOCK_LOOP) ? 0 : MSG_DONTWAIT);

	while (c->len > 0) {
		ssize_t n = send(c->fd, c->q + c->head, c->len, flags);

		if (has_fault(F_SHORT_WRITE)) {
			/* The bug: assume send() took everything. */
			c->head = c->len = 0;
			return n < 0 && errno != EAGAIN ? -errno : 0;
		}
		if (n > 0) {
			c->head += (size_t)n;
			c->len -= (size_t)n;
			c->last_io_ns = now_ns();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (has_fault(F_SPIN_EOF) && c->eof)
				continue;   /* the bug: retry at once instead of waiting for POLLOUT */
			return 0;
		}
		return -errno;
	}
	c->head = 0;
	return 0;
}

/* New bytes from connection i, after the faults that change data have had their way. */
static int conn_data(int i, uint8_t *p, size_t n)
{
	struct conn *c = srv.conns[i], *to = c;
	int rc;

	if (has_fault(F_CORRUPT_DEEP) && c->in_off <= 1000000 && 1000000 < c->in_off + n)
		p[1000000 - c->in_off] ^= 0x20;
	c->in_off += n;
	if (has_fault(F_TRUNCATE_4096) && n > 4096)
		n = 4096;
	if (has_fault(F_CROSSTALK) && srv.last_accepted >= 0 && srv.last_accepted < srv.maxconns &&
			srv.conns[srv.last_accepted])
		to = srv.conns[srv.last_accepted];
	if (has_fault(F_PREFIX) && queue_append(to, (const uint8_t *)PREFIX, strlen(PREFIX)) < 0)
		return -ENOMEM;
	if (has_fault(F_REORDER)) {
		if (!c->held) {
			c->held = malloc(READ_SIZE);
			if (!c->held)
				return -ENOMEM;
			memcpy(c->held, p, n);
			c->held_len = n;
			c->held_ns = now_ns();
			return 0;
		}
		/* The chunk that came second goes out first. */
		rc = queue_append(to, p, n);
		if (rc == 0)
			rc = queue_append(to, c->held, c->held_len);
		free(c->held);
		c->held = NULL;
		return rc < 0 ? rc : conn_flush(to);
	}
	rc = queue_append(to, p, n);
	return rc < 0 ? rc : conn_flush(to);
}

void conn_release_held(struct conn *c)
{
	if (c->held) {
		queue_append(c, c->held, c->held_len);
		free(c->held);
		c->held = NULL;
		conn_flush(c);
	}
}

static void conn_eof(int i)
{
	struct conn *c = srv.conns[i];

	c->eof = true;
	if (has_fault(F_RST_ON_FIN)) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		conn_free(i, true);
		return;
	}
	if (has_fault(F_DROP_PENDING)) {
		conn_free(i, true);
		return;
	}
	conn_release_held(c);
	int rc = conn_flush(c);   /* spin-eof spins in here */
	if (rc < 0)
		conn_error(i, -rc);
	else if (c->len == 0)
		conn_finish(i);
}

void conn_readable(int i)
{
	static uint8_t buf[READ_SIZE];
	struct conn *c = srv.conns[i];
	size_t want = has_fault(F_REORDER) ? 16 * 1024 : READ_SIZE;
	ssize_t n;

	if (has_fault(F_EOF_BATCH)) {
		/* Drain the socket into one batch; the bug: EOF at the end of the batch throws the
		 * whole batch away. */
		uint8_t *batch = NULL;
		size_t blen = 0, bcap = 0;
		for (;;) {
			n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n <= 0)
				break;
			if (blen + (size_t)n > bcap) {
				/* Doubling: a batch of megabytes costs linear time, so that the
				 * fault is the dropped batch and never a slow server. */
				size_t ncap = bcap ? 2 * bcap : 2 * sizeof(buf);
				while (ncap < blen + (size_t)n)
					ncap *= 2;
				uint8_t *b = realloc(batch, ncap);
				if (!b)
					break;
				batch = b;
				bcap = ncap;
			}
			memcpy(batch + blen, buf, (size_t)n);
			blen += (size_t)n;
		}
		if (n == 0) {
			free(batch);
			conn_free(i, true);
			return;
		}
		int err = n < 0 && errno != EAGAIN ? errno : 0;
		int rc = blen ? conn_data(i, batch, blen) : 0;
		free(batch);
		if (err || rc < 0)
			conn_error(i, err ? err : -rc);
		return;
	}
	n = recv(c->fd, buf, want, MSG_DONTWAIT);
	if (n > 0) {
		c->last_io_ns = now_ns();
		int rc = conn_data(i, buf, (size_t)n);
		if (rc < 0)
			conn_error(i, -rc);
	} else if (n == 0) {
		conn_eof(i);
	} else if (errno != EAGAIN && errno != EINTR) {
		conn_error(i, errno);
	}
}

void conn_writable(int i)
{
	struct conn *c = srv.conns[i];
	int rc = conn_flush(c);

	if (rc < 0)
		conn_error(i, -rc);
	else if (c->eof && c->len == 0)
		conn_finish(i);
}

/* ---- accepting ---- */

static int conn_add(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	int i;

	if (!c)
		return -ENOMEM;
	for (i = 0; i < srv.maxconns && srv.conns[i]; i++)
		;
	if (i == srv.maxconns) {
		int n = srv.maxconns ? srv.maxconns * 2 : 64;
		struct conn **a = realloc(srv.conns, sizeof(*a) * (size_t)n);
		if (!a) {
			free(c);
			return -ENOMEM;
		}
		memset(a + srv.maxconns, 0, sizeof(*a) * (size_t)(n - srv.maxconns));
		srv.conns = a;
		srv.maxconns = n;
	}
	c->fd = fd;
	c->last_io_ns = now_ns();
	srv.conns[i] = c;
	return i;
}

static bool peer_is_ipv6(int fd)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);

	return getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin6_family == AF_INET6 &&
		!IN6_IS_ADDR_V4MAPPED(&sa.sin6_addr);
}

void accept_ready(void)
{
	int sndbuf = SMALL_SNDBUF;
	bool small = has_fault(F_DROP_PENDING) || has_fault(F_SHORT_WRITE) || has_fault(F_SPIN_EOF);

	for (;;) {
		int flags = SOCK_CLOEXEC | (has_fault(F_BLOCK_LOOP) ? 0 : SOCK_NONBLOCK);
		int fd = accept4(srv.listen_fd, NULL, NULL, flags);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				if (has_fault(F_EMFILE_SPIN))
					return;   /* the bug: the listener stays readable, poll returns at once */
				/* Give up the reserve fd to accept and close one, so the client hears at
				 * once and the listener stops being readable. */
				close(srv.reserve_fd);
				fd = accept(srv.listen_fd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				srv.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			}
			return;
		}
		if (has_fault(F_CRASH_OVER_1024) && fd >= 1024) {
			fprintf(stderr, "faulty-echo: fd %d >= FD_SETSIZE: *** bit out of range ***\n", fd);
			abort();
		}
		if (has_fault(F_IPV6_BROKEN) && peer_is_ipv6(fd)) {
			close(fd);
			continue;
		}
		if (small)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		sock_set_nodelay(fd);
		int i = conn_add(fd);
		if (i < 0) {
			close(fd);
			return;
		}
		srv.last_accepted = i;
		srv.accepted++;
		if (has_fault(F_LISTENER_LIMIT) && srv.accepted >= 1000) {
			close(srv.listen_fd);
			srv.listen_fd = -1;
			return;
		}
		if (has_fault(F_TINY_BACKLOG)) {
			usleep(1000);
			return;
		}
	}
}

/* ---- UDP ---- */

void udp_ready(void)
{
	static uint8_t buf[65536 + sizeof(PREFIX)];
	static struct sockaddr_storage prev;
	static socklen_t prev_len;
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	size_t off = has_fault(F_PREFIX) ? strlen(PREFIX) : 0;
	ssize_t n = recvfrom(srv.udp_fd, buf + off, 65536, MSG_DONTWAIT,
		(struct sockaddr *)&from, &flen);

	if (n < 0)
		return;
	if (has_fault(F_UDP_DROP_EMPTY) && n == 0)
		return;
	if (has_fault(F_PREFIX))
		memcpy(buf, PREFIX, off);
	if (has_fault(F_TRUNCATE_4096) && n > 4096)
		n = 4096;
	const struct sockaddr_storage *to = &from;
	socklen_t tlen = flen;
	if (has_fault(F_UDP_CROSSTALK) && prev_len) {
		to = &prev;
		tlen = prev_len;
	}
	sendto(srv.udp_fd, buf, (size_t)n + off, MSG_DONTWAIT, (const struct sockaddr *)to, tlen);
	if (has_fault(F_UDP_CROSSTALK)) {
		prev = from;
		prev_len = flen;
	}
}
