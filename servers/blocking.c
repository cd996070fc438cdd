/* The blocking backend: one thread per connection, each doing recv then send-it-all with
 * blocking sockets. The worker thread itself only accepts and echoes UDP (poll on the
 * listeners and the wake fd), so a client that stops reading blocks its own thread's send and
 * nobody else's.
 *
 * Stopping: the worker shuts down the read side of every connection (their recv returns 0, as
 * at a client's EOF, so each thread finishes sending what it holds and exits), waits for them
 * until the drain deadline, then shuts them down completely so that a send blocked on a
 * non-reading client fails with EPIPE, and waits for the last threads to leave.
 */
#include "backend.h"
#include "clock.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define THREAD_STACK (256 * 1024)

struct conn_set {            /* the live connection fds, for shutdown() at stop */
	pthread_mutex_t lock;
	pthread_cond_t gone;
	int *fds;
	int n, cap;
};

struct bconn {
	struct worker *w;
	struct conn_set *set;
	int fd;
};

static int set_add(struct conn_set *cs, int fd)
{
	int rc = 0;

	pthread_mutex_lock(&cs->lock);
	if (cs->n == cs->cap) {
		int ncap = cs->cap ? cs->cap * 2 : 64;
		int *f = realloc(cs->fds, sizeof(*f) * (size_t)ncap);
		if (f) {
			cs->fds = f;
			cs->cap = ncap;
		} else {
			rc = -ENOMEM;
		}
	}
	if (rc == 0)
		cs->fds[cs->n++] = fd;
	pthread_mutex_unlock(&cs->lock);
	return rc;
}

/* Removes fd and closes it under the lock, so the stop path can never shutdown() a number that
 * has meanwhile been reused by another open. */
static void set_remove_close(struct conn_set *cs, int fd)
{
	pthread_mutex_lock(&cs->lock);
	for (int i = 0; i < cs->n; i++) {
		if (cs->fds[i] == fd) {
			cs->fds[i] = cs->fds[--cs->n];
			break;
		}
	}
	close(fd);
	pthread_cond_broadcast(&cs->gone);
	pthread_mutex_unlock(&cs->lock);
}

static void set_shutdown_all(struct conn_set *cs, int how)
{
	pthread_mutex_lock(&cs->lock);
	for (int i = 0; i < cs->n; i++)
		shutdown(cs->fds[i], how);
	pthread_mutex_unlock(&cs->lock);
}

/* Waits until no connection is left or the monotonic deadline passes; true when none is left. */
static bool set_wait_empty(struct conn_set *cs, uint64_t deadline_ns)
{
	bool empty;

	pthread_mutex_lock(&cs->lock);
	while (cs->n > 0 && now_ns() < deadline_ns) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);  /* pthread_cond_timedwait's default clock */
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&cs->gone, &cs->lock, &ts);
	}
	empty = cs->n == 0;
	pthread_mutex_unlock(&cs->lock);
	return empty;
}

static bool send_all(int fd, const uint8_t *p, size_t n, uint64_t *out)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += w;
		n -= (size_t)w;
		*out += (uint64_t)w;
	}
	return true;
}

static void *conn_thread(void *arg)
{
	struct bconn bc = *(struct bconn *)arg;
	size_t cap = bc.w->cfg->bufsize;
	uint8_t *buf = malloc(cap);
	uint64_t in = 0, out = 0;
	bool broken = !buf;

	free(arg);
	while (!broken) {
		ssize_t r = recv(bc.fd, buf, cap, 0);
		if (r == 0)
			break;  /* EOF: everything received has been sent back already */
		if (r < 0) {
			if (errno == EINTR)
				continue;
			broken = true;
			break;
		}
		in += (uint64_t)r;
		broken = !send_all(bc.fd, buf, (size_t)r, &out);
	}
	free(buf);
	stat_add(&bc.w->stats.bytes_in, in);
	stat_add(&bc.w->stats.bytes_out, out);
	if (broken)
		stat_add(&bc.w->stats.resets, 1);
	svc_release(bc.w);
	set_remove_close(bc.set, bc.fd);
	return NULL;
}

static void start_conn(struct worker *w, struct conn_set *cs, pthread_attr_t *attr, int fd)
{
	struct bconn *bc;
	pthread_t tid;
	int fl = fcntl(fd, F_GETFL);

	if (!svc_admit(w)) {
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	sock_set_nodelay(fd);
	bc = malloc(sizeof(*bc));
	if (!bc || set_add(cs, fd) < 0) {
		free(bc);
		close(fd);
		svc_release(w);
		return;
	}
	*bc = (struct bconn){ .w = w, .set = cs, .fd = fd };
	if (pthread_create(&tid, attr, conn_thread, bc) != 0) {
		svc_log_once(w->svc, "thread", "cannot start a connection thread; refusing");
		stat_add(&w->stats.refused, 1);
		free(bc);
		svc_release(w);
		set_remove_close(cs, fd);
	}
}

static void accept_some(struct worker *w, struct conn_set *cs, pthread_attr_t *attr, int lfd)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			start_conn(w, cs, attr, fd);
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
	struct conn_set cs = { .lock = PTHREAD_MUTEX_INITIALIZER, .gone = PTHREAD_COND_INITIALIZER };
	struct pollfd pfd[2 * SERVER_MAX_LISTEN + 1];
	pthread_attr_t attr;
	uint8_t *udp_buf = w->nudp ? malloc(UDP_BUF) : NULL;
	int n = 0;

	if (w->nudp && !udp_buf)
		return -ENOMEM;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	for (int i = 0; i < w->ntcp; i++)
		pfd[n++] = (struct pollfd){ .fd = w->tcp_fds[i], .events = POLLIN };
	for (int i = 0; i < w->nudp; i++)
		pfd[n++] = (struct pollfd){ .fd = w->udp_fds[i], .events = POLLIN };
	pfd[n++] = (struct pollfd){ .fd = w->wake_fd, .events = POLLIN };

	while (!(pfd[n - 1].revents & POLLIN)) {
		if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n - 1; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			if (i < w->ntcp)
				accept_some(w, &cs, &attr, pfd[i].fd);
			else
				udp_echo_ready(w, pfd[i].fd, udp_buf);
		}
	}

	set_shutdown_all(&cs, SHUT_RD);
	if (!set_wait_empty(&cs, svc_drain_deadline_ns(w->svc))) {
		/* Past the deadline: make every blocked send fail. The threads then leave quickly,
		 * and they must all be gone before cs (on this stack) goes away. */
		set_shutdown_all(&cs, SHUT_RDWR);
		set_wait_empty(&cs, UINT64_MAX);
	}
	pthread_attr_destroy(&attr);
	free(udp_buf);
	free(cs.fds);
	return 0;
}
