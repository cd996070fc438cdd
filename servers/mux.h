/* The multiplexer interface: the only thing that differs between the select, poll and epoll
 * backends. Everything above it (accepting, connections, UDP, draining) is loop.c, written once.
 * Each multiplexer keeps its state behind one opaque pointer and lives in one short file.
 *
 * Interest is level-triggered by default: a ready fd is reported again on every poll until it is
 * served, which is what select and poll can do and keeps loop.c the same for all three. The
 * epoll:et variant registers connections once, edge-triggered (MUX_EDGE).
 */
#ifndef ECHOBENCH_MUX_H
#define ECHOBENCH_MUX_H

#include <stdbool.h>

enum {
	MUX_READ = 1,
	MUX_WRITE = 2,
	/* Edge-triggered: report an fd when it becomes ready, not while it is. Only epoll has
	 * it (EPOLLET); loop.c asks for it only with the epoll:et variant (BACKEND_EDGE). */
	MUX_EDGE = 4,
};

struct mux_event {
	int fd;
	int mask;  /* MUX_READ | MUX_WRITE; errors and hang-ups are reported as both */
};

struct mux_ops {
	const char *name;
	/* Largest fd + 1 it can watch (FD_SETSIZE for select), or 0 for no limit. */
	int fd_limit;
	/* Closing an fd takes it out of the set by itself (epoll: the interest goes with the last
	 * descriptor of the file, and loop.c never duplicates one), so loop.c skips the set(0)
	 * before close(): a system call per connection that churn pays for nothing. */
	bool close_removes;
	void *(*create)(void);                       /* NULL on failure, errno set */
	void (*destroy)(void *state);
	/* Sets the interest of fd to mask (0 removes it). Returns 0 or -errno. */
	int (*set)(void *state, int fd, int old_mask, int new_mask);
	/* Waits up to timeout_ms (-1: forever) and fills at most max events. Returns the count,
	 * 0 on timeout or EINTR, or -errno. */
	int (*poll)(void *state, int timeout_ms, struct mux_event *out, int max);
};

extern const struct mux_ops mux_select, mux_poll, mux_epoll;

#endif
