/* select: two fd_sets of interest, copied before each call because select() overwrites its
 * arguments with the result. fd_set is a fixed bitmap of FD_SETSIZE bits: FD_SET on a larger
 * fd writes past it, so loop.c refuses such fds (fd_limit) before they get here. */
#include "mux.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/select.h>

struct select_state {
	fd_set rd, wr;
	int maxfd;        /* highest fd with interest, -1 when none */
	int next;         /* fairness: where the previous poll stopped reporting */
};

static void *select_create(void)
{
	struct select_state *st = malloc(sizeof(*st));

	if (!st)
		return NULL;
	FD_ZERO(&st->rd);
	FD_ZERO(&st->wr);
	st->maxfd = -1;
	st->next = 0;
	return st;
}

static void select_destroy(void *state)
{
	free(state);
}

static int select_set(void *state, int fd, int old_mask, int new_mask)
{
	struct select_state *st = state;

	if (fd < 0 || fd >= FD_SETSIZE)
		return -EBADF;
	if (new_mask & MUX_READ) FD_SET(fd, &st->rd); else FD_CLR(fd, &st->rd);
	if (new_mask & MUX_WRITE) FD_SET(fd, &st->wr); else FD_CLR(fd, &st->wr);
	if (new_mask && fd > st->maxfd)
		st->maxfd = fd;
	while (st->maxfd >= 0 && !FD_ISSET(st->maxfd, &st->rd) && !FD_ISSET(st->maxfd, &st->wr))
		st->maxfd--;
	return 0;
}

static int select_poll(void *state, int timeout_ms, struct mux_event *out, int max)
{
	struct select_state *st = state;
	fd_set rd = st->rd, wr = st->wr;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	int n = st->maxfd + 1, ready, k = 0;

	ready = select(n, &rd, &wr, NULL, timeout_ms < 0 ? NULL : &tv);
	if (ready < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n && k < max && ready > 0; i++) {
		int fd = (st->next + i) % n;
		int mask = (FD_ISSET(fd, &rd) ? MUX_READ : 0) | (FD_ISSET(fd, &wr) ? MUX_WRITE : 0);

		if (!mask)
			continue;
		ready -= (mask & MUX_READ ? 1 : 0) + (mask & MUX_WRITE ? 1 : 0);
		out[k++] = (struct mux_event){ .fd = fd, .mask = mask };
		st->next = (fd + 1) % n;
	}
	return k;
}

const struct mux_ops mux_select = {
	.name = "select",
	.fd_limit = FD_SETSIZE,
	.create = select_create,
	.destroy = select_destroy,
	.set = select_set,
	.poll = select_poll,
};
