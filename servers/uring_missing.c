/* Stands in for uring.c when liburing was not found at build time, so the backend is still
 * listed, with the reason it cannot be used. */
#include "backend.h"

#include <errno.h>

static int uring_missing_probe(const char **why)
{
	*why = "not compiled in (liburing was not found at build time; install liburing-dev and rebuild)";
	return -ENOSYS;
}

static int uring_missing_run(struct worker *w)
{
	(void)w;
	return -ENOSYS;
}

const struct backend backend_uring = {
	.name = "uring", .probe = uring_missing_probe, .run = uring_missing_run,
};
