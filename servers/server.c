/* The server core: listeners, workers, admission, stop and drain. Backends (backend.h) do the
 * I/O; this file is the same for all of them. */
#include "backend.h"
#include "clock.h"
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SERVER_MAX_THREADS 256
#define LOG_ONCE_KEYS 16

struct listener {
	int fd;
	bool udp;
	bool shared;          /* one fd for all workers (unix sockets: no SO_REUSEPORT) */
	int worker;           /* owning worker when not shared */
	char text[ENDPOINT_TEXT_MAX + 8];
};

struct server {
	struct server_config cfg;
	const struct backend *backend;
	struct listener *ls;
	int nls;
	char (*texts)[ENDPOINT_TEXT_MAX + 8];   /* distinct listener texts, for the ready lines */
	int ntexts;
	char unix_paths[SERVER_MAX_LISTEN][108]; /* unlinked at close */
	int nunix;
	struct worker *workers;
	pthread_t *tids;
	int nworkers, started;
	atomic_bool stopping;
	_Atomic uint64_t drain_deadline_ns;
	_Atomic unsigned live;
	pthread_mutex_t log_lock;
	pthread_mutex_t shed_lock;
	_Atomic int failed;            /* first -errno a worker died with */
	const char *logged[LOG_ONCE_KEYS];
	char why[256];
};

static const struct backend *const backends[] = {
	&backend_blocking, &backend_select, &backend_poll, &backend_epoll, &backend_uring,
};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

const char *const server_backend_names[] = { "blocking", "select", "poll", "epoll", "uring", NULL };

static const struct backend *find_backend(const char *name)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

int server_backend_probe(const char *name, const char **why)
{
	const struct backend *b = find_backend(name);

	if (!b) {
		*why = "no such backend (try --list-backends)";
		return -ENOENT;
	}
	*why = NULL;
	return b->probe ? b->probe(why) : 0;
}

void server_config_defaults(struct server_config *cfg)
{
	const char *why;

	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = "epoll";
	endpoint_parse("127.0.0.1:7007", &cfg->listen[0], &why);
	cfg->nlisten = 0;             /* the default applies only when none is given */
	cfg->threads = 1;
	cfg->bufsize = 64 * 1024;
	cfg->drain_timeout_ns = 2000000000ull;
}

bool server_stopping(const struct server *s)
{
	return atomic_load(&s->stopping);
}

uint64_t server_drain_deadline_ns(const struct server *s)
{
	return atomic_load(&s->drain_deadline_ns);
}

bool server_admit(struct worker *w)
{
	struct server *s = w->srv;
	unsigned max = s->cfg.max_conns, cur = atomic_load(&s->live);

	do {
		if (max && cur >= max) {
			server_log_once(s, "max_conns", "refusing connections over --max-conns %u", max);
			stat_add(&w->stats.refused, 1);
			return false;
		}
	} while (!atomic_compare_exchange_weak(&s->live, &cur, cur + 1));
	stat_add(&w->stats.accepted, 1);
	return true;
}

void server_release(struct worker *w)
{
	atomic_fetch_sub(&w->srv->live, 1);
}

void server_log_once(struct server *s, const char *key, const char *fmt, ...)
{
	va_list ap;
	int i;

	pthread_mutex_lock(&s->log_lock);
	for (i = 0; i < LOG_ONCE_KEYS && s->logged[i]; i++)
		if (strcmp(s->logged[i], key) == 0)
			break;
	if (i < LOG_ONCE_KEYS && !s->logged[i]) {
		s->logged[i] = key;
		fprintf(stderr, "echo-server: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&s->log_lock);
}

bool udp_source_allowed(const struct sockaddr *sa)
{
	int port = -1;

	if (sa->sa_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6)
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return port < 0 || port >= 1024;
}

bool server_shed_on_emfile(struct worker *w, int listen_fd)
{
	struct server *s = w->srv;
	int fd = -1;

	server_log_once(s, "emfile",
			"accept: out of file descriptors; shedding new connections until some close");
	/* One worker at a time: the fd freed by close() goes to whichever thread opens next, so
	 * two workers shedding at once could take each other's reserve. */
	pthread_mutex_lock(&s->shed_lock);
	if (w->reserve_fd < 0)  /* lost in an earlier round: take it back when fds allow */
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (w->reserve_fd >= 0) {
		close(w->reserve_fd);
		fd = accept(listen_fd, NULL, NULL);
		if (fd >= 0) {
			close(fd);
			stat_add(&w->stats.refused, 1);
		}
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	pthread_mutex_unlock(&s->shed_lock);
	return fd >= 0;
}

/* ---- listeners ---- */

static int set_why(struct server *s, const char *what, const char *addr, int err)
{
	snprintf(s->why, sizeof(s->why), "%s %s: %s", what, addr, strerror(err));
	return -err;
}

/* A unix socket path that exists is taken over only when nobody answers on it (a leftover of a
 * server that died); one that answers is "in use", like a TCP port. */
static int unix_claim(struct server *s, const struct endpoint *ep)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)&ep->sa;
	struct stat st;
	int fd, rc, err;

	if (lstat(un->sun_path, &st) < 0)
		return 0;  /* nothing there: bind() will say what else may be wrong */
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(s->why, sizeof(s->why), "bind %s: the path exists and is not a socket",
			 ep->text);
		return -EEXIST;
	}
	/* Non-blocking: a live server with a full backlog answers EAGAIN instead of making us
	 * wait; anything but "refused" means somebody is there. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return set_why(s, "socket", ep->text, errno);
	rc = connect(fd, (const struct sockaddr *)un, ep->len);
	err = errno;
	close(fd);
	if (rc == 0 || err != ECONNREFUSED)
		return set_why(s, "bind", ep->text, EADDRINUSE);
	unlink(un->sun_path);
	return 0;
}

static int open_socket(struct server *s, const struct endpoint *ep, bool udp, bool reuseport,
		       int *out)
{
	int one = 1, zero = 0, rc;
	int fd = socket(ep->family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);

	if (fd < 0)
		return set_why(s, "socket", ep->text, errno);
	if (ep->family != AF_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Only with several workers: otherwise a second server on the same port would
		 * silently share it instead of failing with "address in use". */
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	}
	if (ep->family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ep->sa;
		/* [::] is dual stack (IPv4 clients arrive as ::ffff:a.b.c.d); other v6 addresses
		 * are v6 only, whatever the sysctl default says. */
		int v6only = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ? 0 : 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&ep->sa, ep->len) < 0) {
		rc = set_why(s, "bind", ep->text, errno);
		close(fd);
		return rc;
	}
	/* The kernel caps the backlog at net.core.somaxconn; asking for more takes that maximum. */
	if (!udp && listen(fd, 65535) < 0) {
		rc = set_why(s, "listen", ep->text, errno);
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

static int add_listener(struct server *s, int fd, bool udp, bool shared, int worker,
			const char *text)
{
	struct listener *l = &s->ls[s->nls++];

	*l = (struct listener){ .fd = fd, .udp = udp, .shared = shared, .worker = worker };
	snprintf(l->text, sizeof(l->text), "%s%s", udp ? "udp:" : "", text);
	for (int i = 0; i < s->ntexts; i++)
		if (strcmp(s->texts[i], l->text) == 0)
			return 0;
	memcpy(s->texts[s->ntexts++], l->text, sizeof(l->text));
	return 0;
}

static void drop_listeners_from(struct server *s, int first)
{
	while (s->nls > first)
		close(s->ls[--s->nls].fd);
}

/* Binds one --listen address for every worker (TCP, and UDP on the same port when asked). With
 * port 0 the first socket picks the port and the others take the same one; if UDP finds that
 * port taken, the whole address is tried again on a new port. */
static int open_endpoint(struct server *s, const struct endpoint *want)
{
	struct endpoint ep = *want;
	int first = s->nls, ntexts = s->ntexts, rc = 0;
	bool any_port = endpoint_port(want) == 0;
	bool reuse = s->nworkers > 1;

	if (ep.family == AF_UNIX) {
		int fd;
		if ((rc = unix_claim(s, &ep)) < 0 || (rc = open_socket(s, &ep, false, false, &fd)) < 0)
			return rc;
		snprintf(s->unix_paths[s->nunix++], sizeof(s->unix_paths[0]), "%s",
			 ((struct sockaddr_un *)&ep.sa)->sun_path);
		return add_listener(s, fd, false, true, 0, ep.text);
	}
	if (reuse && !any_port) {
		/* SO_REUSEPORT would let our workers join a port that another server (of the same
		 * user, also with SO_REUSEPORT) already serves: try the port alone first, so a port in
		 * use fails here as it does with one worker. */
		int probe;
		if ((rc = open_socket(s, &ep, false, false, &probe)) < 0)
			return rc;
		close(probe);
	}
	for (int attempt = 0; attempt < 20; attempt++) {
		rc = 0;
		ep = *want;
		for (int w = 0; w < s->nworkers && rc == 0; w++) {
			int fd;
			rc = open_socket(s, &ep, false, reuse, &fd);
			if (rc < 0)
				break;
			if (w == 0 && any_port) {
				struct endpoint got = ep;
				got.len = sizeof(got.sa);
				getsockname(fd, (struct sockaddr *)&got.sa, &got.len);
				endpoint_set_port(&ep, endpoint_port(&got));
			}
			add_listener(s, fd, false, false, w, ep.text);
		}
		/* UDP rides along on IP addresses only; a unix address stays stream-only. */
		for (int w = 0; w < s->nworkers && rc == 0 && s->cfg.udp; w++) {
			int fd;
			rc = open_socket(s, &ep, true, reuse, &fd);
			if (rc == 0)
				add_listener(s, fd, true, false, w, ep.text);
		}
		if (rc == 0)
			return 0;
		drop_listeners_from(s, first);
		s->ntexts = ntexts;
		if (rc != -EADDRINUSE || !any_port)
			break;
	}
	return rc;
}

int server_open(const struct server_config *cfg, struct server **out, const char **why)
{
	struct server *s = calloc(1, sizeof(*s));
	int rc = 0;

	*why = "out of memory";
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	if (s->cfg.nlisten == 0) {
		endpoint_parse("127.0.0.1:7007", &s->cfg.listen[0], why);
		s->cfg.nlisten = 1;
	}
	pthread_mutex_init(&s->log_lock, NULL);
	pthread_mutex_init(&s->shed_lock, NULL);
	s->backend = find_backend(cfg->backend);
	s->nworkers = cfg->threads ? (int)cfg->threads : 1;
	if (!s->backend || s->nworkers > SERVER_MAX_THREADS || cfg->bufsize == 0) {
		*why = !s->backend ? "unknown backend" : cfg->bufsize == 0 ? "bufsize must be > 0"
									 : "too many threads";
		free(s);
		return -EINVAL;
	}
	size_t maxls = (size_t)s->cfg.nlisten * (size_t)s->nworkers * 2;
	s->ls = calloc(maxls, sizeof(*s->ls));
	s->texts = calloc((size_t)s->cfg.nlisten * 2, sizeof(*s->texts));
	if (!s->ls || !s->texts) {
		server_close(s);
		return -ENOMEM;
	}
	for (int i = 0; i < s->cfg.nlisten && rc == 0; i++) {
		rc = open_endpoint(s, &s->cfg.listen[i]);
	}
	if (rc < 0) {
		*why = s->why;
		/* The caller prints *why after server_close() has freed s: keep a copy. */
		static _Thread_local char why_copy[256];
		snprintf(why_copy, sizeof(why_copy), "%s", s->why);
		*why = why_copy;
		server_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int server_listener_count(const struct server *s)
{
	return s->ntexts;
}

const char *server_listener_text(const struct server *s, int i)
{
	return i >= 0 && i < s->ntexts ? s->texts[i] : NULL;
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int rc = w->srv->backend->run(w);

	if (rc < 0) {
		int none = 0;
		fprintf(stderr, "echo-server: %s worker %d failed: %s\n", w->srv->backend->name,
			w->index, strerror(-rc));
		/* Its listener would keep queueing connections nobody accepts: stop everything. */
		if (atomic_compare_exchange_strong(&w->srv->failed, &none, rc) &&
		    w->srv->cfg.failure_signal)
			kill(getpid(), w->srv->cfg.failure_signal);
	}
	return (void *)(intptr_t)rc;
}

int server_start(struct server *s, const char **why)
{
	int rc;

	*why = "out of memory";
	s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
	s->tids = calloc((size_t)s->nworkers, sizeof(*s->tids));
	if (!s->workers || !s->tids)
		return -ENOMEM;
	for (int i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];

		*w = (struct worker){ .srv = s, .cfg = &s->cfg, .index = i };
		for (int j = 0; j < s->nls; j++) {
			struct listener *l = &s->ls[j];
			if (!l->shared && l->worker != i)
				continue;
			if (l->udp)
				w->udp_fds[w->nudp++] = l->fd;
			else
				w->tcp_fds[w->ntcp++] = l->fd;
		}
		w->reserve_fd = -1;
		w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->wake_fd < 0) {
			*why = "eventfd failed";
			return -errno;
		}
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	for (; s->started < s->nworkers; s->started++) {
		rc = pthread_create(&s->tids[s->started], NULL, worker_main, &s->workers[s->started]);
		if (rc) {
			*why = "cannot start worker thread";
			server_stop(s);
			return -rc;
		}
	}
	return 0;
}

void server_stop(struct server *s)
{
	uint64_t one = 1;

	if (!atomic_exchange(&s->stopping, true))
		atomic_store(&s->drain_deadline_ns, now_ns() + s->cfg.drain_timeout_ns);
	for (int i = 0; i < s->started; i++)
		if (write(s->workers[i].wake_fd, &one, sizeof(one)) < 0) { /* already signalled */ }
	for (int i = 0; i < s->started; i++)
		pthread_join(s->tids[i], NULL);
	s->started = 0;
}

int server_failure(const struct server *s)
{
	return atomic_load(&s->failed);
}

void server_get_stats(const struct server *s, struct server_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; s->workers && i < s->nworkers; i++) {
		const struct server_stats *w = &s->workers[i].stats;
		out->accepted += w->accepted;
		out->refused += w->refused;
		out->resets += w->resets;
		out->bytes_in += w->bytes_in;
		out->bytes_out += w->bytes_out;
		out->datagrams += w->datagrams;
		out->dropped += w->dropped;
	}
}

void server_close(struct server *s)
{
	if (!s)
		return;
	if (s->started)
		server_stop(s);
	drop_listeners_from(s, 0);
	for (int i = 0; i < s->nunix; i++)
		unlink(s->unix_paths[i]);
	for (int i = 0; s->workers && i < s->nworkers; i++) {
		if (s->workers[i].wake_fd >= 0)
			close(s->workers[i].wake_fd);
		if (s->workers[i].reserve_fd >= 0)
			close(s->workers[i].reserve_fd);
	}
	pthread_mutex_destroy(&s->log_lock);
	pthread_mutex_destroy(&s->shed_lock);
	free(s->workers);
	free(s->tids);
	free(s->ls);
	free(s->texts);
	free(s);
}
