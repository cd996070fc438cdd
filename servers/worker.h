/* The worker life cycle: one thread per worker running its backend's run(), each given its
 * share of the listeners and a wake eventfd; stop wakes and joins them; stats are summed. */
#ifndef ECHOBENCH_WORKER_H
#define ECHOBENCH_WORKER_H

#include <pthread.h>

#include "backend.h"
#include "listen.h"

struct crew {
	struct worker *w;
	pthread_t *tids;
	int n, started;
};

/* Prepares n workers of backend b over the listeners of set and starts their threads. Returns
 * 0, or -errno with *why (static text); workers already started are then stopped. */
int crew_start(struct crew *c, int n, const struct backend *b, struct services *svc,
	       const struct listen_set *set, const char **why);
/* Wakes every started worker (their wake_fd) and joins them. */
void crew_stop(struct crew *c);
void crew_stats(const struct crew *c, struct server_stats *out);
void crew_free(struct crew *c);

#endif
