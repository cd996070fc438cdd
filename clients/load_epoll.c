/* The epoll engine: level-triggered readiness over the thread's sockets; the transports do the
 * I/O themselves (send/recv, sendmmsg/recvmmsg) when a socket is ready. EPOLLOUT is armed only
 * while a write waits (the want_out hook). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"

#define MAX_EVENTS 256

/* w->eng_state: the thread's epoll instance. */
static int *ep_of(const struct loader *w)
{
	return w->eng_state;
}

/* What a socket is watched for besides writability: a stream's half-close (EPOLLRDHUP) shows
 * the server's EOF without a read. */
static uint32_t base_events(const struct loader *w)
{
	return EPOLLIN | (w->tp->socktype == SOCK_STREAM ? EPOLLRDHUP : 0);
}

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
	int *ep = malloc(sizeof(*ep)), err;

	if (!ep) {
		errno = ENOMEM;
		goto fail;
	}
	w->eng_state = ep;
	*ep = epoll_create1(EPOLL_CLOEXEC);
	if (*ep < 0 || epoll_ctl(*ep, EPOLL_CTL_ADD, w->stop_fd, &ev) < 0)
		goto fail;
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];

		if (c->fd < 0)
			continue;   /* a churn slot: its transactions' sockets come later (adopt) */
		ev.events = base_events(w);
		ev.data.ptr = c;
		if (epoll_ctl(*ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			goto fail;
	}
	return 0;
fail:
	err = errno;
	snprintf(w->error_text, sizeof(w->error_text), "epoll: %s", strerror(err));
	return -err;
}

static void ep_free(struct loader *w)
{
	int *ep = ep_of(w);

	if (!ep)
		return;
	if (*ep >= 0)
		close(*ep);
	free(ep);
	w->eng_state = NULL;
}

static int ep_wait(struct loader *w, uint64_t now, uint64_t deadline)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t wait = deadline > now ? deadline - now : 0;
	struct timespec ts = { (time_t)(wait / 1000000000u), (long)(wait % 1000000000u) };
	int n = epoll_pwait2(*ep_of(w), evs, MAX_EVENTS, &ts, NULL);

	if (n < 0 && errno == ENOSYS) {
		/* Kernels before 5.11: millisecond timeouts, rounded up so we never spin. */
		n = epoll_wait(*ep_of(w), evs, MAX_EVENTS, (int)((wait + 999999) / 1000000));
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
	/* A churn socket is closed next and no other fd refers to it: the close takes it out of
	 * the set, one system call fewer per transaction. */
	if (w->churn)
		return;
	if (ep_of(w) && *ep_of(w) >= 0)
		epoll_ctl(*ep_of(w), EPOLL_CTL_DEL, c->fd, NULL);
}

/* Level-triggered EPOLLOUT would wake the loop at every pass while the socket has room, so it
 * is armed only while a write waits. */
static int ep_want_out(struct loader *w, struct lconn *c, bool on)
{
	struct epoll_event ev = { .events = base_events(w) | (on ? EPOLLOUT : 0), .data.ptr = c };

	return epoll_ctl(*ep_of(w), EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

/* Churn: a transaction's socket, its connect usually in progress: EPOLLOUT reports the end. */
static int ep_adopt(struct loader *w, struct lconn *c)
{
	struct epoll_event ev = { .events = base_events(w) | (c->want_out ? EPOLLOUT : 0),
		.data.ptr = c };

	return epoll_ctl(*ep_of(w), EPOLL_CTL_ADD, c->fd, &ev) < 0 ? -errno : 0;
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
	.want_out = ep_want_out,
	.adopt = ep_adopt,
};
