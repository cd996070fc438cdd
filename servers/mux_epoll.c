/* epoll: the kernel keeps the interest set, so a poll costs O(ready), not O(watched). */
#include "mux.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EPOLL_BATCH 256

struct epoll_state {
	int epfd;
	struct epoll_event ev[EPOLL_BATCH];
};

static void *epoll_create_state(void)
{
	struct epoll_state *st = malloc(sizeof(*st));

	if (!st)
		return NULL;
	st->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (st->epfd < 0) {
		free(st);
		return NULL;
	}
	return st;
}

static void epoll_destroy(void *state)
{
	struct epoll_state *st = state;

	close(st->epfd);
	free(st);
}

static int epoll_set(void *state, int fd, int old_mask, int new_mask)
{
	struct epoll_state *st = state;
	struct epoll_event ev = { .data.fd = fd };
	int op;

	if (old_mask == new_mask)
		return 0;
	if (new_mask & MUX_READ)
		ev.events |= EPOLLIN;
	if (new_mask & MUX_WRITE)
		ev.events |= EPOLLOUT;
	if (new_mask & MUX_EDGE)
		ev.events |= EPOLLET;
	op = !old_mask ? EPOLL_CTL_ADD : !new_mask ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	return epoll_ctl(st->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static int epoll_poll(void *state, int timeout_ms, struct mux_event *out, int max)
{
	struct epoll_state *st = state;
	int n = epoll_wait(st->epfd, st->ev, max < EPOLL_BATCH ? max : EPOLL_BATCH, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint32_t e = st->ev[i].events;

		out[i].fd = st->ev[i].data.fd;
		out[i].mask = (e & (EPOLLIN | EPOLLERR | EPOLLHUP) ? MUX_READ : 0) |
			      (e & (EPOLLOUT | EPOLLERR | EPOLLHUP) ? MUX_WRITE : 0);
	}
	return n;
}

const struct mux_ops mux_epoll = {
	.name = "epoll",
	.close_removes = true,
	.create = epoll_create_state,
	.destroy = epoll_destroy,
	.set = epoll_set,
	.poll = epoll_poll,
};
