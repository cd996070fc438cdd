/* What the blocking backends share (blocking.h): the connection set, the echo, the worker's
 * own poll loop. */
#include "blocking.h"
#include "clock.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int conn_set_add(struct conn_set *cs, int fd)
{
	int rc = 0;

	pthread_mutex_lock(&cs->lock);
	if (cs->closed) {
		rc = -ESHUTDOWN;
	} else if (cs->n == cs->cap) {
		int ncap = cs->cap ? cs->cap * 2 : 64;
		int *f = realloc(cs->fds, sizeof(*f) * (size_t)ncap);
		if (f) {
			cs->fds = f;
			cs->cap = ncap;
		} else {
			rc = -ENOMEM;
		}
	}
	if (rc == 0)
		cs->fds[cs->n++] = fd;
	pthread_mutex_unlock(&cs->lock);
	return rc;
}

void conn_set_remove_close(struct conn_set *cs, int fd)
{
	pthread_mutex_lock(&cs->lock);
	for (int i = 0; i < cs->n; i++) {
		if (cs->fds[i] == fd) {
			cs->fds[i] = cs->fds[--cs->n];
			break;
		}
	}
	close(fd);
	pthread_cond_broadcast(&cs->gone);
	pthread_mutex_unlock(&cs->lock);
}

static void shutdown_all(struct conn_set *cs, int how)
{
	pthread_mutex_lock(&cs->lock);
	cs->closed = true;
	for (int i = 0; i < cs->n; i++)
		shutdown(cs->fds[i], how);
	pthread_mutex_unlock(&cs->lock);
}

/* Waits until no connection is left or the monotonic deadline passes; true when none is left. */
static bool wait_empty(struct conn_set *cs, uint64_t deadline_ns)
{
	bool empty;

	pthread_mutex_lock(&cs->lock);
	while (cs->n > 0 && now_ns() < deadline_ns) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);  /* pthread_cond_timedwait's default clock */
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&cs->gone, &cs->lock, &ts);
	}
	empty = cs->n == 0;
	pthread_mutex_unlock(&cs->lock);
	return empty;
}

void conn_set_drain(struct conn_set *cs, uint64_t deadline_ns)
{
	shutdown_all(cs, SHUT_RD);
	if (!wait_empty(cs, deadline_ns)) {
		/* Past the deadline: make every blocked send fail, so the threads leave quickly. */
		shutdown_all(cs, SHUT_RDWR);
		wait_empty(cs, UINT64_MAX);
	}
}

void conn_set_fini(struct conn_set *cs)
{
	free(cs->fds);
	cs->fds = NULL;
}

/* Returns 0, or -errno: -EAGAIN when --idle-timeout passed with nothing sent (SO_SNDTIMEO). */
static int send_all(int fd, const uint8_t *p, size_t n, uint64_t *out)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		*out += (uint64_t)w;
	}
	return 0;
}

void blocking_echo(struct worker *w, struct conn_set *cs, int fd, struct svc_source *src,
		   uint8_t *buf, size_t bufsize)
{
	uint64_t in = 0, out = 0;
	int err = buf ? 0 : -ENOMEM;
	bool pending = false;

	/* The idle timeout of a thread that blocks per connection: the kernel times each blocking
	 * call, and a timed-out one moved no byte for the timeout (a send that moved some returns
	 * what it moved). No sweep: a blocked thread costs nothing. */
	svc_idle_sockopts(w->svc, fd);
	while (!err) {
		ssize_t r = recv(fd, buf, bufsize, 0);
		if (r == 0)
			break;  /* EOF: everything received has been sent back already */
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		in += (uint64_t)r;
		err = send_all(fd, buf, (size_t)r, &out);
		pending = err != 0;
	}
	stat_add(&w->stats.bytes_in, in);
	stat_add(&w->stats.bytes_out, out);
	if (err == -EAGAIN || err == -EWOULDBLOCK)
		svc_idle_closing(w, fd, pending);
	else if (err)
		stat_add(&w->stats.resets, 1);
	svc_release(w, src);
	conn_set_remove_close(cs, fd);
}

int blocking_poll_loop(struct worker *w, bool tcp, void (*on_listener)(void *ctx, int lfd),
		       void *ctx)
{
	struct pollfd pfd[2 * SERVER_MAX_LISTEN + 1];
	uint8_t *udp_buf = w->nudp ? malloc(UDP_BUF) : NULL;
	int n = 0, ntcp = tcp ? w->ntcp : 0;

	if (w->nudp && !udp_buf)
		return -ENOMEM;
	for (int i = 0; i < ntcp; i++)
		pfd[n++] = (struct pollfd){ .fd = w->tcp_fds[i], .events = POLLIN };
	for (int i = 0; i < w->nudp; i++)
		pfd[n++] = (struct pollfd){ .fd = w->udp_fds[i], .events = POLLIN };
	pfd[n++] = (struct pollfd){ .fd = w->wake_fd, .events = POLLIN };

	while (!(pfd[n - 1].revents & POLLIN)) {
		if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n - 1; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			if (i < ntcp)
				on_listener(ctx, pfd[i].fd);
			else
				udp_echo_ready(w, pfd[i].fd, udp_buf);
		}
	}
	free(udp_buf);
	return 0;
}
