/* blocking:pool: blocking I/O on a pool of threads that take connections from the listeners
 * themselves, instead of a thread created for every connection (`blocking`), which costs a
 * thread creation and exit per transaction under connection churn.
 *
 * The pool's threads wait in epoll_wait() on one epoll set shared by the pool, where each
 * listener is registered EPOLLONESHOT: the one thread that gets a listener's event accepts one
 * connection and re-arms the listener before it serves, so each arrival wakes one thread (no
 * thundering herd, no hand-over between threads). The thread serves the connection to its end
 * (blocking_echo: recv, send it all, until EOF), then waits again. Why not threads blocked in
 * accept() itself, one system call fewer: accept() reserves its descriptor before it sleeps, so
 * idle threads would hold descriptors that /proc does not show and that a lowered fd limit
 * does not take back (echo-conform's LIMIT-EMFILE found no EMFILE to test after a burst).
 *
 * How it bounds concurrency, and what happens to connection N+1:
 *   - The pool starts with POOL_CORE threads and grows by one whenever a thread takes a
 *     connection while no other thread is idle, so one thread always waits for the next
 *     connection until the pool has POOL_MAX threads. Long connections, and clients that never
 *     read (each blocks only its own thread's send), are served at once up to POOL_MAX: the
 *     conformance cases with hundreds of concurrent clients pass, which a fixed pool could not
 *     (its connection N+1 would wait for a connection that may never end).
 *   - Threads beyond the core that have taken nothing for POOL_IDLE_MS leave, so a burst does
 *     not keep its threads.
 *   - With POOL_MAX threads busy, connection N+1 is not accepted: the kernel completes its
 *     handshake and it waits in the listen backlog (its bytes in its receive buffer) until one
 *     of the threads finishes a connection; past the backlog (somaxconn) the kernel drops its
 *     SYN and the client retries. --max-conns refuses beyond N as in every backend (a thread
 *     accepts the connection and closes it at once).
 *   - Memory: a thread's stack (BLOCKING_STACK, touched only as used) and its --bufsize echo
 *     buffer, allocated once per thread, not per connection.
 *
 * Stopping: the wake eventfd is in the same epoll set (level-triggered, so every waiting thread
 * sees it); busy threads finish as conn_set_drain() (blocking.h) ends their connections, and
 * the worker waits for every thread before it returns.
 */
#include "blocking.h"
#include "sock.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define POOL_CORE 8
#define POOL_MAX 4096
#define POOL_IDLE_MS 1000

struct pool {
	struct worker *w;
	struct conn_set cs;
	int epfd;                /* the listeners (one-shot) and the wake fd */
	pthread_attr_t attr;
	pthread_mutex_t lock;    /* n, idle */
	pthread_cond_t left;     /* a thread left */
	int n, idle;             /* threads, and those waiting for a connection */
	atomic_bool stopping;
};

static void *pool_thread(void *arg);

static void thread_gone(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->n--;
	p->idle--;
	pthread_cond_broadcast(&p->left);
	pthread_mutex_unlock(&p->lock);
}

/* One more thread, counted in (as idle) before it starts. */
static int spawn(struct pool *p)
{
	pthread_t tid;
	int rc;

	pthread_mutex_lock(&p->lock);
	p->n++;
	p->idle++;
	pthread_mutex_unlock(&p->lock);
	rc = pthread_create(&tid, &p->attr, pool_thread, p);
	if (rc) {
		svc_log_once(p->w->svc, "pool-thread",
			     "blocking:pool: cannot start a thread; the pool stops growing for now");
		thread_gone(p);
	}
	return -rc;
}

/* A thread took a connection: with no other one idle, the pool grows by one, so that a thread
 * still waits for the next connection. */
static void took(struct pool *p)
{
	bool grow;

	pthread_mutex_lock(&p->lock);
	p->idle--;
	grow = p->idle == 0 && p->n < POOL_MAX && !atomic_load(&p->stopping);
	pthread_mutex_unlock(&p->lock);
	if (grow)
		spawn(p);
}

static void done(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->idle++;
	pthread_mutex_unlock(&p->lock);
}

/* An idle thread that waited POOL_IDLE_MS for nothing: true (and counted out) when the pool is
 * above its core and this thread leaves. */
static bool retire(struct pool *p)
{
	bool leave;

	pthread_mutex_lock(&p->lock);
	leave = p->n > POOL_CORE;
	if (leave) {
		p->n--;
		p->idle--;
		pthread_cond_broadcast(&p->left);
	}
	pthread_mutex_unlock(&p->lock);
	return leave;
}

static void arm(struct pool *p, int lfd, int op)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.fd = lfd };

	if (epoll_ctl(p->epfd, op, lfd, &ev) < 0)
		svc_log_once(p->w->svc, "pool-arm", "blocking:pool: epoll_ctl on a listener failed");
}

static void serve(struct pool *p, int fd, uint8_t *buf)
{
	struct worker *w = p->w;
	struct svc_source *src;

	if (atomic_load(&p->stopping) || !svc_admit(w, fd, &src)) {
		close(fd);
		return;
	}
	if (conn_set_add(&p->cs, fd) < 0) {   /* the set closed: the server is stopping */
		close(fd);
		svc_release(w, src);
		return;
	}
	sock_set_nodelay(fd);
	blocking_echo(w, &p->cs, fd, src, buf, w->cfg->bufsize);
}

/* Takes one connection from listener lfd, whose one-shot event this thread got, and re-arms it
 * for the others. Returns the fd, or -1 when there was none (or an error was handled). */
static int take(struct pool *p, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);   /* blocking: the thread's own I/O */
	int err = errno;

	if (fd < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ECONNABORTED &&
	    !((err == EMFILE || err == ENFILE) && svc_shed_on_emfile(p->w, lfd)))
		usleep(100000);   /* a lasting error: back off before the listener is armed again */
	arm(p, lfd, EPOLL_CTL_MOD);
	return fd;
}

static void *pool_thread(void *arg)
{
	struct pool *p = arg;
	uint8_t *buf = malloc(p->w->cfg->bufsize);

	while (buf && !atomic_load(&p->stopping)) {
		struct epoll_event ev;
		int n = epoll_wait(p->epfd, &ev, 1, POOL_IDLE_MS);

		if (n == 0 && retire(p)) {
			free(buf);
			return NULL;
		}
		if (n <= 0)
			continue;
		if (ev.data.fd == p->w->wake_fd)
			break;    /* the server stops (the eventfd stays readable: all threads see it) */
		int fd = take(p, ev.data.fd);

		if (fd >= 0) {
			took(p);
			serve(p, fd, buf);
			done(p);
		}
	}
	if (!buf)
		svc_log_once(p->w->svc, "pool-buf", "blocking:pool: no memory for a thread's buffer");
	free(buf);
	thread_gone(p);
	return NULL;
}

static int pool_open(struct pool *p)
{
	struct epoll_event wake = { .events = EPOLLIN, .data.fd = p->w->wake_fd };

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->w->wake_fd, &wake) < 0)
		return -errno;
	for (int i = 0; i < p->w->ntcp; i++)
		arm(p, p->w->tcp_fds[i], EPOLL_CTL_ADD);
	for (int i = 0; i < POOL_CORE; i++)
		if (spawn(p) < 0)
			return p->n ? 0 : -EAGAIN;   /* fewer threads than the core: still serving */
	return 0;
}

int blocking_pool_run(struct worker *w)
{
	struct pool *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return -ENOMEM;
	*p = (struct pool){ .w = w, .cs = CONN_SET_INIT, .epfd = -1 };
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->left, NULL);
	pthread_attr_init(&p->attr);
	pthread_attr_setdetachstate(&p->attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&p->attr, BLOCKING_STACK);
	rc = pool_open(p);
	if (rc == 0)
		rc = blocking_poll_loop(w, false, NULL, NULL);   /* UDP, and the stop request */
	atomic_store(&p->stopping, true);
	conn_set_drain(&p->cs, svc_drain_deadline_ns(w->svc));
	pthread_mutex_lock(&p->lock);
	while (p->n > 0)
		pthread_cond_wait(&p->left, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (p->epfd >= 0)
		close(p->epfd);
	pthread_attr_destroy(&p->attr);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->left);
	conn_set_fini(&p->cs);
	free(p);
	return rc;
}
