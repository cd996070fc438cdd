/* Stands in for load_uring.c when liburing was not found at build time (meson option `uring`
 * disabled or absent): --engine uring then exits 1 with this reason. */
#include <errno.h>

#include "loader.h"
#include "uring_util.h"

static int missing_probe(const char **why)
{
	*why = URU_NOT_BUILT;
	return -ENOSYS;
}

static bool missing_supports(const struct transport *tp)
{
	return tp->socktype == SOCK_STREAM;
}

static int missing_setup(struct loader *w)
{
	return -ENOSYS;
}

static void missing_free(struct loader *w) {}

static int missing_wait(struct loader *w, uint64_t now, uint64_t deadline)
{
	return -1;
}

static void missing_forget(struct loader *w, struct lconn *c) {}

const struct engine engine_uring = {
	.name = "uring",
	.probe = missing_probe,
	.supports = missing_supports,
	.setup = missing_setup,
	.free = missing_free,
	.wait = missing_wait,
	.forget = missing_forget,
};
