#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void *worker_thread(void *arg)
{
	struct worker *w = arg;
	int rc = w->backend->run(w);

	if (rc < 0) {
		fprintf(stderr, "echo-server: %s worker %d failed: %s\n", w->backend->name, w->index,
			strerror(-rc));
		/* Its listener would keep queueing connections nobody accepts: stop everything. */
		if (svc_fail(w->svc, rc) && w->cfg->failure_signal)
			kill(getpid(), w->cfg->failure_signal);
	}
	return (void *)(intptr_t)rc;
}

static int worker_init(struct worker *w, int index, const struct backend *b,
		       struct services *svc, const struct listen_set *set)
{
	*w = (struct worker){ .svc = svc, .cfg = svc->cfg, .backend = b, .index = index,
			      .wake_fd = -1, .reserve_fd = -1 };
	for (int j = 0; j < set->nls; j++) {
		const struct listener *l = &set->ls[j];

		if (!l->shared && l->worker != index)
			continue;
		if (l->udp)
			w->udp_fds[w->nudp++] = l->fd;
		else
			w->tcp_fds[w->ntcp++] = l->fd;
	}
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return 0;
}

int crew_start(struct crew *c, int n, const struct backend *b, struct services *svc,
	       const struct listen_set *set, const char **why)
{
	int rc;

	*c = (struct crew){ .n = n };
	*why = "out of memory";
	c->w = calloc((size_t)n, sizeof(*c->w));
	c->tids = calloc((size_t)n, sizeof(*c->tids));
	if (!c->w || !c->tids)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		c->w[i] = (struct worker){ .wake_fd = -1, .reserve_fd = -1 };
	for (int i = 0; i < n; i++) {
		if ((rc = worker_init(&c->w[i], i, b, svc, set)) < 0) {
			*why = "eventfd failed";
			return rc;
		}
	}
	for (; c->started < n; c->started++) {
		rc = pthread_create(&c->tids[c->started], NULL, worker_thread, &c->w[c->started]);
		if (rc) {
			*why = "cannot start worker thread";
			svc_begin_stop(svc);
			crew_stop(c);
			return -rc;
		}
	}
	return 0;
}

void crew_stop(struct crew *c)
{
	uint64_t one = 1;

	for (int i = 0; i < c->started; i++)
		if (write(c->w[i].wake_fd, &one, sizeof(one)) < 0) { /* already signalled */ }
	for (int i = 0; i < c->started; i++)
		pthread_join(c->tids[i], NULL);
	c->started = 0;
}

void crew_stats(const struct crew *c, struct server_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; c->w && i < c->n; i++)
		server_stats_add(out, &c->w[i].stats);
}

void crew_free(struct crew *c)
{
	if (c->started)
		crew_stop(c);
	for (int i = 0; c->w && i < c->n; i++) {
		if (c->w[i].wake_fd >= 0)
			close(c->w[i].wake_fd);
		if (c->w[i].reserve_fd >= 0)
			close(c->w[i].reserve_fd);
	}
	free(c->w);
	free(c->tids);
	*c = (struct crew){ 0 };
}
