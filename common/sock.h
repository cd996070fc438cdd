/* Small socket helpers shared by the server, the load client and the conformance suite.
 * All return 0 or -errno. */
#ifndef ECHOBENCH_SOCK_H
#define ECHOBENCH_SOCK_H

#include <stdint.h>

int sock_set_nonblock(int fd);
int sock_set_nodelay(int fd);

/* Raises the soft RLIMIT_NOFILE towards want (capped by the hard limit). Returns the soft limit
 * now in force (which may be below want) or -errno. */
long sock_raise_nofile(uint64_t want);

#endif
