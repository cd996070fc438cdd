/* The blocking backend: one thread per connection, each doing recv then send-it-all with
 * blocking sockets (blocking_echo). The worker thread itself only accepts and echoes UDP (poll
 * on the listeners and the wake fd), so a client that stops reading blocks its own thread's
 * send and nobody else's. Stopping: conn_set_drain (blocking.h).
 */
#include "blocking.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct bconn {
	struct worker *w;
	struct conn_set *set;
	struct svc_source *src;
	int fd;
};

static void *conn_thread(void *arg)
{
	struct bconn bc = *(struct bconn *)arg;
	size_t cap = bc.w->cfg->bufsize;
	uint8_t *buf = malloc(cap);

	free(arg);
	blocking_echo(bc.w, bc.set, bc.fd, bc.src, buf, cap);
	free(buf);
	return NULL;
}

static void start_conn(struct worker *w, struct conn_set *cs, pthread_attr_t *attr, int fd)
{
	struct svc_source *src;
	struct bconn *bc;
	pthread_t tid;
	int fl = fcntl(fd, F_GETFL);

	if (!svc_admit(w, fd, &src)) {
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	sock_set_nodelay(fd);
	bc = malloc(sizeof(*bc));
	if (!bc || conn_set_add(cs, fd) < 0) {
		free(bc);
		close(fd);
		svc_release(w, src);
		return;
	}
	*bc = (struct bconn){ .w = w, .set = cs, .src = src, .fd = fd };
	if (pthread_create(&tid, attr, conn_thread, bc) != 0) {
		svc_log_once(w->svc, "thread", "cannot start a connection thread; refusing");
		stat_add(&w->stats.refused, 1);
		free(bc);
		svc_release(w, src);
		conn_set_remove_close(cs, fd);
	}
}

struct acceptor {
	struct worker *w;
	struct conn_set *cs;
	pthread_attr_t *attr;
};

static void accept_some(void *ctx, int lfd)
{
	struct acceptor *a = ctx;
	struct worker *w = a->w;

	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			start_conn(w, a->cs, a->attr, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN &&
		    !((errno == EMFILE || errno == ENFILE) && svc_shed_on_emfile(w, lfd)))
			usleep(100000);  /* a lasting error: back off instead of spinning */
		return;
	}
}

int blocking_run(struct worker *w)
{
	struct conn_set cs = CONN_SET_INIT;
	pthread_attr_t attr;
	struct acceptor a = { .w = w, .cs = &cs, .attr = &attr };
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, BLOCKING_STACK);
	rc = blocking_poll_loop(w, true, accept_some, &a);
	conn_set_drain(&cs, svc_drain_deadline_ns(w->svc));
	pthread_attr_destroy(&attr);
	conn_set_fini(&cs);
	return rc;
}
