/* poll: an array of pollfd, one slot per watched fd; slot_of[] maps an fd to its slot so that
 * changing or removing interest is O(1) (removal moves the last slot into the hole). */
#include "mux.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

struct poll_state {
	struct pollfd *fds;
	int n, cap;
	int *slot_of;     /* fd -> index in fds, -1 when not watched */
	int slot_cap;
	int next;         /* where the previous poll stopped reporting: fairness across polls */
};

static void *poll_create(void)
{
	return calloc(1, sizeof(struct poll_state));
}

static void poll_destroy(void *state)
{
	struct poll_state *st = state;

	free(st->fds);
	free(st->slot_of);
	free(st);
}

static int grow(struct poll_state *st, int fd)
{
	if (fd >= st->slot_cap) {
		int ncap = st->slot_cap ? st->slot_cap : 64;
		while (ncap <= fd)
			ncap *= 2;
		int *s = realloc(st->slot_of, sizeof(*s) * (size_t)ncap);
		if (!s)
			return -ENOMEM;
		for (int i = st->slot_cap; i < ncap; i++)
			s[i] = -1;
		st->slot_of = s;
		st->slot_cap = ncap;
	}
	if (st->n == st->cap) {
		int ncap = st->cap ? st->cap * 2 : 64;
		struct pollfd *f = realloc(st->fds, sizeof(*f) * (size_t)ncap);
		if (!f)
			return -ENOMEM;
		st->fds = f;
		st->cap = ncap;
	}
	return 0;
}

static int poll_set(void *state, int fd, int old_mask, int new_mask)
{
	struct poll_state *st = state;
	short ev = (short)((new_mask & MUX_READ ? POLLIN : 0) | (new_mask & MUX_WRITE ? POLLOUT : 0));
	int slot;

	if (!old_mask && !new_mask)
		return 0;
	if (!old_mask) {
		int rc = grow(st, fd);
		if (rc < 0)
			return rc;
		st->slot_of[fd] = st->n;
		st->fds[st->n++] = (struct pollfd){ .fd = fd, .events = ev };
		return 0;
	}
	slot = st->slot_of[fd];
	if (new_mask) {
		st->fds[slot].events = ev;
		return 0;
	}
	st->fds[slot] = st->fds[--st->n];
	st->slot_of[st->fds[slot].fd] = slot;
	st->slot_of[fd] = -1;
	return 0;
}

static int poll_poll(void *state, int timeout_ms, struct mux_event *out, int max)
{
	struct poll_state *st = state;
	int ready = poll(st->fds, (nfds_t)st->n, timeout_ms), k = 0;

	if (ready < 0)
		return errno == EINTR ? 0 : -errno;
	/* Report from where the last call stopped, so when more than max are ready the fds at
	 * the end of the array are not always the ones left waiting. */
	for (int i = 0; i < st->n && k < max && ready > 0; i++) {
		int s = (st->next + i) % st->n;
		short re = st->fds[s].revents;

		if (!re)
			continue;
		ready--;
		out[k].fd = st->fds[s].fd;
		out[k].mask = (re & (POLLIN | POLLERR | POLLHUP | POLLNVAL) ? MUX_READ : 0) |
			      (re & (POLLOUT | POLLERR | POLLHUP | POLLNVAL) ? MUX_WRITE : 0);
		k++;
		st->next = (s + 1) % st->n;
	}
	return k;
}

const struct mux_ops mux_poll = {
	.name = "poll",
	.create = poll_create,
	.destroy = poll_destroy,
	.set = poll_set,
	.poll = poll_poll,
};
