/* A connection's pipe (conn.h, zero copy): bytes go socket -> pipe -> socket with splice(2),
 * as references to the pages the kernel received them in, so the server copies none of them.
 * The pipe is opened at the connection's first read and closed with the connection. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void conn_pool_init_pipes(struct conn_pool *p, size_t cap)
{
	*p = (struct conn_pool){ .cap = cap, .pipes = true };
}

int conn_pipe_open(struct conn *c)
{
	int fds[2];
	size_t size = c->cap < 4096 ? 4096 : c->cap > (1u << 30) ? 1u << 30 : c->cap;

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* Room for cap bytes in whole pages; a new pipe has 16 pages already (64 KiB, the default
	 * --bufsize): no system call for that. Refused (cap above fs.pipe-max-size, or the user's
	 * pipe pages used up): the pipe holds less than cap, which in_full handles. */
	if (size != 16 * 4096)
		(void)fcntl(fds[1], F_SETPIPE_SZ, (int)size);
	c->pipe_r = fds[0];
	c->pipe_w = fds[1];
	return 0;
}

void conn_pipe_close(struct conn *c)
{
	if (c->pipe_r < 0)
		return;
	close(c->pipe_r);   /* with whatever it still holds: the connection is over */
	close(c->pipe_w);
	c->pipe_r = c->pipe_w = -1;
}

/* SPLICE_F_NONBLOCK: neither the pipe nor the socket may block the loop (the socket is
 * O_NONBLOCK too). SPLICE_F_MOVE: pages are moved where they can be, not copied. */
ssize_t conn_pipe_in(struct conn *c, size_t room)
{
	ssize_t r = splice(c->fd, NULL, c->pipe_w, NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	if (r < 0)
		return errno == EINTR || errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r;
}

/* A peer that has gone gives EPIPE, and a SIGPIPE that the splice backend's threads block
 * (loop.c): splice cannot be told MSG_NOSIGNAL. */
ssize_t conn_pipe_out(struct conn *c)
{
	ssize_t w = splice(c->pipe_r, NULL, c->fd, NULL, c->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	if (w < 0)
		return errno == EINTR || errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return w;
}
