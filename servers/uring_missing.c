/* Stands in for the uring*.c files when liburing was not found at build time, so the backend is
 * still listed, with the reason it cannot be used. */
#include "backend.h"
#include "uring_util.h"

#include <errno.h>

int uring_probe(const char **why)
{
	*why = URU_NOT_BUILT;
	return -ENOSYS;
}

int uring_probe_sqpoll(const char **why)
{
	return uring_probe(why);
}

int uring_probe_zc(const char **why)
{
	return uring_probe(why);
}

int uring_run(struct worker *w)
{
	(void)w;
	return -ENOSYS;
}
