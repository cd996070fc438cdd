/* Client-side socket helpers (netio.h): deadline-bounded connect, send, recv, close. */
#include "netio.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "sock.h"

void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
		.tv_nsec = (long)(ns % 1000000000u) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void sleep_until_ns(uint64_t t)
{
	uint64_t now = now_ns();

	if (t > now)
		sleep_ns(t - now);
}

int net_connect_start(const struct endpoint *ep, const struct sockbufs *b, int type, int *fd)
{
	int s = socket(ep->family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -errno;
	/* Buffer sizes must be set before connect(): the window scale is fixed by the handshake. */
	if (b && b->rcvbuf > 0)
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &b->rcvbuf, sizeof(b->rcvbuf));
	if (b && b->sndbuf > 0)
		setsockopt(s, SOL_SOCKET, SO_SNDBUF, &b->sndbuf, sizeof(b->sndbuf));
	if (type == SOCK_STREAM && ep->family != AF_UNIX)
		sock_set_nodelay(s);
	if (connect(s, (const struct sockaddr *)&ep->sa, ep->len) < 0) {
		int err = errno;

		/* A unix socket whose listener's backlog is full says EAGAIN and does not go on
		 * connecting in the background: that is a failure here, not a wait. */
		if (err == EINPROGRESS) {
			*fd = s;
			return -EINPROGRESS;
		}
		close(s);
		return -err;
	}
	*fd = s;
	return 0;
}

int net_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

int net_wait(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		uint64_t now = now_ns();
		struct timespec ts;
		int n;

		if (now >= deadline_ns)
			return -ETIMEDOUT;
		ts.tv_sec = (time_t)((deadline_ns - now) / 1000000000u);
		ts.tv_nsec = (long)((deadline_ns - now) % 1000000000u);
		n = ppoll(&p, 1, &ts, NULL);
		if (n > 0)
			return p.revents;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int net_connect(const struct endpoint *ep, uint64_t deadline_ns, const struct sockbufs *b, int *fd)
{
	int rc = net_connect_start(ep, b, SOCK_STREAM, fd);

	if (rc != -EINPROGRESS)
		return rc;
	rc = net_wait(*fd, POLLOUT, deadline_ns);
	if (rc > 0)
		rc = net_connect_result(*fd);
	if (rc < 0) {
		close(*fd);
		*fd = -1;
		return rc;
	}
	return 0;
}

int net_send_all(int fd, const void *buf, size_t n, uint64_t deadline_ns)
{
	const uint8_t *p = buf;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = net_wait(fd, POLLOUT, deadline_ns);
		if (rc < 0)
			return rc;
	}
	return 0;
}

ssize_t net_recv(int fd, void *buf, size_t n, uint64_t deadline_ns)
{
	for (;;) {
		ssize_t r = recv(fd, buf, n, 0);

		if (r >= 0)
			return r;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = net_wait(fd, POLLIN, deadline_ns);
		if (rc < 0)
			return rc;
	}
}

int net_recv_exact(int fd, void *buf, size_t n, uint64_t deadline_ns, size_t *got)
{
	uint8_t *p = buf;
	size_t have = 0;
	int rc = 0;

	while (have < n) {
		ssize_t r = net_recv(fd, p + have, n - have, deadline_ns);

		if (r <= 0) {
			rc = r == 0 ? -EPIPE : (int)r;
			break;
		}
		have += (size_t)r;
	}
	if (got)
		*got = have;
	return rc;
}

int net_read_to_eof(int fd, uint64_t deadline_ns, uint64_t *extra)
{
	uint8_t buf[4096];

	*extra = 0;
	for (;;) {
		ssize_t r = net_recv(fd, buf, sizeof(buf), deadline_ns);

		if (r == 0)
			return 0;
		if (r < 0)
			return (int)r;
		*extra += (uint64_t)r;
	}
}

void net_close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

int net_wait_acked(int fd, uint64_t deadline_ns)
{
	for (;;) {
		int outq = 0;

		if (ioctl(fd, TIOCOUTQ, &outq) < 0)
			return -errno;
		if (outq == 0)
			return 0;
		if (now_ns() >= deadline_ns)
			return -ETIMEDOUT;
		sleep_ns(1000000);
	}
}

int net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

int net_echo_probe(const struct endpoint *ep, uint64_t deadline_ns, const char *msg)
{
	size_t n = strlen(msg), got;
	char back[256];
	int fd, rc;

	if (n > sizeof(back))
		return -EINVAL;
	rc = net_connect(ep, deadline_ns, NULL, &fd);
	if (rc < 0)
		return rc;
	rc = net_send_all(fd, msg, n, deadline_ns);
	if (rc == 0)
		rc = net_recv_exact(fd, back, n, deadline_ns, &got);
	if (rc == 0 && memcmp(back, msg, n) != 0)
		rc = -EBADMSG;
	close(fd);
	return rc;
}
