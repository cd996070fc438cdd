/* The one table of backends and variants. Usage text, `--list`, `--version`, the `-b` error
 * text, the unit test and the Python tests (through `echo-server --list`) all derive from it:
 * adding a backend or a variant is one row here (plus its run function). */
#include "backend.h"
#include "mux.h"

#include <errno.h>
#include <string.h>

static const struct backend table[] = {
	{ .name = "blocking", .summary = "thread per connection", .run = blocking_run },
	{ .name = "blocking:pool", .summary = "blocking, on a pool of threads that accept themselves (grows while all are busy)",
	  .run = blocking_pool_run },
	{ .name = "select", .summary = "event loop over select(2)", .run = loop_run,
	  .mux = &mux_select },
	{ .name = "poll", .summary = "event loop over poll(2)", .run = loop_run, .mux = &mux_poll },
	{ .name = "epoll", .summary = "event loop over epoll(7)", .run = loop_run,
	  .mux = &mux_epoll },
	{ .name = "epoll:et", .summary = "epoll, edge-triggered: one epoll_ctl per connection",
	  .run = loop_run, .mux = &mux_epoll, .flags = BACKEND_EDGE },
	{ .name = "splice", .summary = "epoll, echo spliced through a pipe per connection (zero copy)",
	  .run = loop_run, .mux = &mux_epoll, .flags = BACKEND_SPLICE },
	{ .name = "uring", .summary = "io_uring completions", .probe = uring_probe,
	  .run = uring_run },
	{ .name = "uring:singleshot", .summary = "io_uring without multishot: one accept, one recv per submission",
	  .probe = uring_probe, .run = uring_run, .flags = BACKEND_SINGLESHOT },
	{ .name = "uring:sqpoll", .summary = "io_uring with a kernel thread polling submissions (SQPOLL)",
	  .probe = uring_probe_sqpoll, .run = uring_run, .flags = BACKEND_SQPOLL },
	{ .name = "uring:zc", .summary = "io_uring with zero-copy sends (IORING_OP_SEND_ZC)",
	  .probe = uring_probe_zc, .run = uring_run, .flags = BACKEND_ZC },
};
#define NTABLE (int)(sizeof(table) / sizeof(table[0]))

const struct backend *backend_find(const char *name)
{
	for (int i = 0; i < NTABLE; i++)
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	return NULL;
}

const char *server_backend_name(int i)
{
	return i >= 0 && i < NTABLE ? table[i].name : NULL;
}

const char *server_backend_summary(int i)
{
	return i >= 0 && i < NTABLE ? table[i].summary : NULL;
}

bool server_backend_known(const char *name)
{
	return backend_find(name) != NULL;
}

int server_backend_probe(const char *name, const char **why)
{
	const struct backend *b = backend_find(name);

	if (!b) {
		*why = "no such backend (see --list)";
		return -ENOENT;
	}
	*why = NULL;
	return b->probe ? b->probe(why) : 0;
}
