/* The event loop shared by the select, poll and epoll backends: accepting, the connections
 * (conn.c), UDP echo and draining are written once here; only the multiplexer (mux.h) differs.
 *
 * Level-triggered (select, poll, epoll): a connection's interest follows conn_progress()'s mask,
 * one mux->set() (an epoll_ctl) per change. Edge-triggered (epoll:et, BACKEND_EDGE): a
 * connection is registered once for both directions and never modified; conn_progress() runs
 * on every edge until EAGAIN, and a connection that stopped at its work bound instead
 * (conn->more) waits on the `again` list, served after the next poll (which then does not
 * block), since no new edge would report it.
 *
 * --idle-timeout: the wait's timeout also brings the idle sweep (services.c decides what is
 * idle and when a sweep is due); a sweep walks the slots once, with no I/O but for the
 * connections found idle.
 */
#include "backend.h"
#include "conn.h"
#include "mux.h"
#include "clock.h"
#include "sock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOOP_EVENTS 256
#define ACCEPTS_PER_WAKE 64   /* bounded so a connect storm cannot starve established clients */
#define POOL_KEEP 64          /* free echo buffers kept for reuse: bounds idle memory */
#define ACCEPT_PAUSE_NS 100000000ull  /* after EMFILE with nothing to shed: 100 ms */

enum fd_kind { FD_NONE, FD_LISTEN, FD_UDP, FD_WAKE, FD_CONN };

/* A connection of the loop: the echo state machine and what the services keep for it. */
struct lconn {
	struct conn c;
	struct idle_mark idle;
	struct svc_source *src;  /* its share of --max-conns-per-source */
};

struct fd_slot {
	unsigned char kind;
	unsigned char mask;      /* interest registered with the multiplexer */
	unsigned char again;     /* on the again list (edge-triggered) */
	struct lconn *conn;      /* FD_CONN only */
};

struct loop {
	struct worker *w;
	const struct mux_ops *mux;
	void *mux_state;
	struct fd_slot *slots;   /* indexed by fd */
	int nslots;
	int live;                /* connections open */
	bool stopping;
	uint64_t accept_resume_ns;  /* nonzero: accepting paused until then */
	uint8_t *udp_buf;
	struct conn_pool pool;   /* echo buffers of connections with echo pending (conn.h) */
	bool edge;               /* BACKEND_EDGE: connections are edge-triggered */
	int *again;              /* connections to serve without an event (edge-triggered) */
	int nagain, capagain;
	int *spare;              /* the other list, swapped in while `again` is being served */
	int capspare;
};

static struct fd_slot *slot(struct loop *l, int fd)
{
	if (fd >= l->nslots) {
		int n = l->nslots ? l->nslots : 256;
		while (n <= fd)
			n *= 2;
		struct fd_slot *s = realloc(l->slots, sizeof(*s) * (size_t)n);
		if (!s)
			return NULL;
		memset(s + l->nslots, 0, sizeof(*s) * (size_t)(n - l->nslots));
		l->slots = s;
		l->nslots = n;
	}
	return &l->slots[fd];
}

static int watch(struct loop *l, int fd, int kind, int mask)
{
	struct fd_slot *s = slot(l, fd);
	int rc;

	if (!s)
		return -ENOMEM;
	rc = l->mux->set(l->mux_state, fd, s->mask, mask);
	if (rc < 0)
		return rc;
	s->kind = (unsigned char)kind;
	s->mask = (unsigned char)mask;
	return 0;
}

static void conn_close(struct loop *l, int fd, int err)
{
	struct fd_slot *s = &l->slots[fd];
	struct lconn *lc = s->conn;
	struct conn *c = &lc->c;

	if (!l->mux->close_removes)
		l->mux->set(l->mux_state, fd, s->mask, 0);
	if (err)
		stat_add(&l->w->stats.resets, 1);
	stat_add(&l->w->stats.bytes_in, c->bytes_in);
	stat_add(&l->w->stats.bytes_out, c->bytes_out);
	conn_free(c);
	*s = (struct fd_slot){ 0 };
	close(fd);
	l->live--;
	svc_release(l->w, lc->src);
	free(lc);
}

static void serve_again(struct loop *l, int fd)
{
	if (l->slots[fd].again)
		return;
	if (l->nagain == l->capagain) {
		int cap = l->capagain ? l->capagain * 2 : 64;
		int *a = realloc(l->again, sizeof(*a) * (size_t)cap);
		if (!a)
			return;   /* the connection waits for its next edge: late, not lost */
		l->again = a;
		l->capagain = cap;
	}
	l->again[l->nagain++] = fd;
	l->slots[fd].again = 1;
}

static void conn_serve(struct loop *l, int fd)
{
	int rc = conn_progress(&l->slots[fd].conn->c);

	if (rc <= 0) {
		conn_close(l, fd, rc < 0);
		return;
	}
	if (l->edge) {         /* interest stays READ|WRITE|EDGE */
		if (l->slots[fd].conn->c.more)
			serve_again(l, fd);
		return;
	}
	if (l->mux->set(l->mux_state, fd, l->slots[fd].mask, rc) < 0)
		conn_close(l, fd, 1);
	else
		l->slots[fd].mask = (unsigned char)rc;
}

static void conn_open(struct loop *l, int fd)
{
	struct svc_source *src;
	struct lconn *lc;

	if (l->mux->fd_limit && fd >= l->mux->fd_limit) {
		/* select's fd_set cannot hold it: FD_SET would write past the bitmap. */
		svc_log_once(l->w->svc, "fd_limit",
				"%s: refusing connections whose fd >= %d (FD_SETSIZE); counted as refused",
				l->mux->name, l->mux->fd_limit);
		stat_add(&l->w->stats.refused, 1);
		close(fd);
		return;
	}
	if (!svc_admit(l->w, fd, &src)) {
		close(fd);
		return;
	}
	lc = malloc(sizeof(*lc));
	if (!lc || conn_init(&lc->c, fd, l->w->cfg->bufsize, &l->pool) < 0) {
		free(lc);
		close(fd);
		svc_release(l->w, src);
		return;
	}
	lc->c.edge = l->edge;
	lc->src = src;
	svc_idle_start(l->w->svc, &lc->idle);
	sock_set_nodelay(fd);  /* fails harmlessly on unix sockets */
	l->live++;
	if (watch(l, fd, FD_CONN, l->edge ? MUX_READ | MUX_WRITE | MUX_EDGE : CONN_WANT_READ) < 0) {
		conn_free(&lc->c);
		free(lc);
		close(fd);
		l->live--;
		svc_release(l->w, src);
		return;
	}
	l->slots[fd].conn = lc;
}

static void set_accepting(struct loop *l, bool on)
{
	for (int i = 0; i < l->w->ntcp; i++)
		watch(l, l->w->tcp_fds[i], FD_LISTEN, on ? MUX_READ : 0);
}

static void on_listener(struct loop *l, int lfd)
{
	for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_open(l, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN ||
		    ((errno == EMFILE || errno == ENFILE) && svc_shed_on_emfile(l->w, lfd)))
			return;
		/* Out of fds with nothing to shed, or ENOBUFS/ENOMEM/...: the listener stays
		 * readable, so stop watching it for a while instead of waking to fail again. */
		set_accepting(l, false);
		l->accept_resume_ns = now_ns() + ACCEPT_PAUSE_NS;
		return;
	}
}

static void begin_drain(struct loop *l)
{
	uint64_t v;

	if (read(l->w->wake_fd, &v, sizeof(v)) < 0) { /* nothing to do: stopping either way */ }
	l->stopping = true;
	set_accepting(l, false);
	for (int i = 0; i < l->w->nudp; i++)
		watch(l, l->w->udp_fds[i], FD_UDP, 0);
	watch(l, l->w->wake_fd, FD_WAKE, 0);
	for (int fd = 0; fd < l->nslots; fd++) {
		if (l->slots[fd].kind == FD_CONN) {
			l->slots[fd].conn->c.draining = true;
			conn_serve(l, fd);
		}
	}
}

/* Connections that stopped at their work bound, in the order they did; a fd closed (or
 * reused) meanwhile is served only if it is a connection now, which is harmless. */
static void serve_again_list(struct loop *l)
{
	int *list = l->again, n = l->nagain, cap = l->capagain;

	/* Served connections may queue themselves again: onto the other list. */
	l->again = l->spare;
	l->capagain = l->capspare;
	l->nagain = 0;
	for (int i = 0; i < n; i++)
		l->slots[list[i]].again = 0;
	for (int i = 0; i < n; i++)
		if (l->slots[list[i]].kind == FD_CONN)
			conn_serve(l, list[i]);
	l->spare = list;
	l->capspare = cap;
}

/* --idle-timeout: closes the connections that moved no byte for that long. */
static void sweep_idle(struct loop *l, uint64_t now)
{
	for (int fd = 0; fd < l->nslots; fd++) {
		struct lconn *lc = l->slots[fd].conn;
		int want;

		if (l->slots[fd].kind != FD_CONN)
			continue;
		want = conn_wants(&lc->c);
		if (!svc_idle_expired(l->w->svc, &lc->idle, fd, lc->c.bytes_in + lc->c.bytes_out,
				      (short)((want & CONN_WANT_READ ? POLLIN : 0) |
					      (want & CONN_WANT_WRITE ? POLLOUT : 0)), now))
			continue;
		svc_idle_closing(l->w, fd, lc->c.len > 0);
		conn_close(l, fd, 0);
	}
}

static int loop_init(struct loop *l)
{
	int rc;

	if (l->w->backend->flags & BACKEND_SPLICE) {
		sigset_t pipe_sig;

		/* splice(2) cannot be told MSG_NOSIGNAL: with SIGPIPE blocked in this thread a
		 * vanished peer gives EPIPE, also where the process does not ignore SIGPIPE (the
		 * library's in-process users); echo-server ignores it anyway. */
		sigemptyset(&pipe_sig);
		sigaddset(&pipe_sig, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &pipe_sig, NULL);
		conn_pool_init_pipes(&l->pool, l->w->cfg->bufsize);
	} else
		conn_pool_init(&l->pool, l->w->cfg->bufsize, POOL_KEEP);
	l->udp_buf = l->w->nudp ? malloc(UDP_BUF) : NULL;
	if (l->w->nudp && !l->udp_buf)
		return -ENOMEM;
	l->mux_state = l->mux->create();
	if (!l->mux_state)
		return -errno;
	for (int i = 0; i < l->w->nudp; i++)
		if ((rc = watch(l, l->w->udp_fds[i], FD_UDP, MUX_READ)) < 0)
			return rc;
	set_accepting(l, true);
	return watch(l, l->w->wake_fd, FD_WAKE, MUX_READ);
}

static void loop_fini(struct loop *l)
{
	for (int fd = 0; fd < l->nslots; fd++)
		if (l->slots[fd].kind == FD_CONN)
			conn_close(l, fd, 0);
	if (l->mux_state)
		l->mux->destroy(l->mux_state);
	free(l->slots);
	free(l->again);
	free(l->spare);
	free(l->udp_buf);
	conn_pool_fini(&l->pool);
}

int loop_run(struct worker *w)
{
	const struct mux_ops *mux = w->backend->mux;
	struct mux_event ev[LOOP_EVENTS];
	struct loop l = { .w = w, .mux = mux, .edge = w->backend->flags & BACKEND_EDGE };
	int rc = loop_init(&l);

	while (rc == 0) {
		uint64_t now = now_ns();
		int timeout = -1, n;

		if (l.stopping) {
			uint64_t deadline = svc_drain_deadline_ns(w->svc);
			if (l.live == 0 || now >= deadline)
				break;
			uint64_t ms = (deadline - now) / 1000000 + 1;
			timeout = ms > 1000 ? 1000 : (int)ms;  /* long drains: wake once a second */
		}
		if (l.accept_resume_ns) {
			if (now >= l.accept_resume_ns) {
				l.accept_resume_ns = 0;
				if (!l.stopping)
					set_accepting(&l, true);
			} else {
				int ms = (int)((l.accept_resume_ns - now) / 1000000) + 1;
				timeout = timeout < 0 || ms < timeout ? ms : timeout;
			}
		}
		if (!l.stopping && l.live > 0 && svc_sweep_next(w)) {
			uint64_t next = svc_sweep_next(w);
			int ms = next > now ? (int)((next - now) / 1000000) + 1 : 0;
			timeout = timeout < 0 || ms < timeout ? ms : timeout;
		}
		if (l.nagain)
			timeout = 0;
		n = mux->poll(l.mux_state, timeout, ev, LOOP_EVENTS);
		if (n < 0) {
			rc = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			int fd = ev[i].fd;

			/* An earlier event of this batch may have closed fd (and a new connection
			 * may even have reused it): the slot says what fd is now. */
			switch (fd < l.nslots ? l.slots[fd].kind : FD_NONE) {
			case FD_CONN:   conn_serve(&l, fd); break;
			case FD_LISTEN: if (!l.stopping) on_listener(&l, fd); break;
			case FD_UDP:    udp_echo_ready(w, fd, l.udp_buf); break;
			case FD_WAKE:   begin_drain(&l); break;
			default:        break;
			}
		}
		serve_again_list(&l);
		if (!l.stopping && (now = svc_sweep_due(w)) != 0)
			sweep_idle(&l, now);
	}
	loop_fini(&l);
	return rc;
}
