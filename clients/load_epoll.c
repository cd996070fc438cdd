/* The epoll engine: level-triggered readiness over the thread's sockets; the transports do the
 * I/O themselves (send/recv, sendmmsg/recvmmsg) when a socket is ready. EPOLLOUT is armed only
 * while a write waits (lconn_set_want_out). */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"

#define MAX_EVENTS 256

static int ep_probe(const char **why)
{
	(void)why;
	return 0;
}

static bool ep_supports(const struct transport *tp)
{
	return true;
}

static int ep_setup(struct loader *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->stop_fd, &ev) < 0)
		goto fail;
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];

		ev.events = EPOLLIN | w->tp->events;
		ev.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			goto fail;
	}
	return 0;
fail:
	snprintf(w->error_text, sizeof(w->error_text), "epoll: %s", strerror(errno));
	return -errno;
}

static void ep_free(struct loader *w)
{
	if (w->ep >= 0)
		close(w->ep);
	w->ep = -1;
}

static int ep_wait(struct loader *w, uint64_t now, uint64_t deadline)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t wait = deadline > now ? deadline - now : 0;
	struct timespec ts = { (time_t)(wait / 1000000000u), (long)(wait % 1000000000u) };
	int n = epoll_pwait2(w->ep, evs, MAX_EVENTS, &ts, NULL);

	if (n < 0 && errno == ENOSYS) {
		/* Kernels before 5.11: millisecond timeouts, rounded up so we never spin. */
		n = epoll_wait(w->ep, evs, MAX_EVENTS, (int)((wait + 999999) / 1000000));
	}
	if (n < 0) {
		if (errno != EINTR) {
			w->error = -errno;
			snprintf(w->error_text, sizeof(w->error_text), "epoll_wait: %s",
				 strerror(errno));
		}
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct lconn *c = evs[i].data.ptr;

		if (!c) {
			load_stop_requested = true;
			continue;
		}
		if (c->dead)
			continue;   /* failed earlier in this batch */
		conn_dispatch(w, c, evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
	}
	return n;
}

static void ep_forget(struct loader *w, struct lconn *c)
{
	if (w->ep >= 0)
		epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

const struct engine engine_epoll = {
	.name = "epoll",
	.blocking_ok = true,
	.probe = ep_probe,
	.supports = ep_supports,
	.setup = ep_setup,
	.free = ep_free,
	.wait = ep_wait,
	.forget = ep_forget,
};
