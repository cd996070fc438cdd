/* The services that every backend calls: admission against --max-conns and
 * --max-conns-per-source, the idle timeout's rule and sweep schedule, log-once, EMFILE shedding,
 * the UDP echo with its source guard, and the stop flag with its drain deadline. One
 * `struct services` per server (per process with --processes), shared by its workers. */
#include "backend.h"
#include "clock.h"
#include "fnv.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define DATAGRAMS_PER_WAKE 64   /* bounded so a datagram flood cannot starve TCP clients */
#define SRC_BUCKETS_MIN 1024u
#define SRC_BUCKETS_MAX 65536u
#define SWEEP_MIN_NS 1000000ull      /* the idle sweep's period: a quarter of the timeout, */
#define SWEEP_MAX_NS 1000000000ull   /* within 1 ms .. 1 s */

/* A source address with admitted connections; freed when its last one is released. */
struct svc_source {
	struct svc_source *next;   /* hash chain */
	unsigned n;                /* its connections */
	uint8_t addr[16];          /* IPv6; IPv4 as IPv4-mapped (source_of) */
};

int svc_init(struct services *svc, const struct server_config *cfg)
{
	size_t n = SRC_BUCKETS_MIN;

	memset(svc, 0, sizeof(*svc));
	svc->cfg = cfg;
	pthread_mutex_init(&svc->log_lock, NULL);
	pthread_mutex_init(&svc->shed_lock, NULL);
	pthread_mutex_init(&svc->src_lock, NULL);
	if (!cfg->max_conns_per_source)
		return 0;
	/* Chains stay short up to about the connections --max-conns allows. */
	while (n < cfg->max_conns && n < SRC_BUCKETS_MAX)
		n *= 2;
	svc->src_bucket = calloc(n, sizeof(*svc->src_bucket));
	if (!svc->src_bucket)
		return -ENOMEM;
	svc->src_nbucket = n;
	/* A hash whose seed a client could know would let it pick addresses that share a chain. */
	if (getrandom(&svc->src_seed, sizeof(svc->src_seed), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(svc->src_seed))
		svc->src_seed = now_ns() ^ (uint64_t)getpid() << 40;
	return 0;
}

void svc_fini(struct services *svc)
{
	for (size_t b = 0; b < svc->src_nbucket; b++) {
		while (svc->src_bucket[b]) {   /* none when every connection was released */
			struct svc_source *s = svc->src_bucket[b];

			svc->src_bucket[b] = s->next;
			free(s);
		}
	}
	free(svc->src_bucket);
	svc->src_bucket = NULL;
	pthread_mutex_destroy(&svc->log_lock);
	pthread_mutex_destroy(&svc->shed_lock);
	pthread_mutex_destroy(&svc->src_lock);
}

void svc_begin_stop(struct services *svc)
{
	if (!atomic_exchange(&svc->stopping, true))
		atomic_store(&svc->drain_deadline_ns, now_ns() + svc->cfg->drain_timeout_ns);
}

bool svc_stopping(const struct services *svc)
{
	return atomic_load(&svc->stopping);
}

uint64_t svc_drain_deadline_ns(const struct services *svc)
{
	return atomic_load(&svc->drain_deadline_ns);
}

bool svc_fail(struct services *svc, int err)
{
	int none = 0;

	return atomic_compare_exchange_strong(&svc->failed, &none, err);
}

int svc_failure(const struct services *svc)
{
	return atomic_load(&svc->failed);
}

/* The peer address of fd as 16 bytes, IPv4 as IPv4-mapped IPv6 so that one client counts the
 * same on an IPv4 and on a dual-stack listener. False for unix sockets (local peers: not
 * capped) and for a peer already gone (reset before we asked: its first recv ends it). */
static bool source_of(int fd, uint8_t key[16])
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return false;
	if (ss.ss_family == AF_INET) {
		static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

		memcpy(key, mapped, sizeof(mapped));
		memcpy(key + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		return true;
	}
	if (ss.ss_family == AF_INET6) {
		memcpy(key, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		return true;
	}
	return false;
}

static struct svc_source **source_chain(struct services *svc, const uint8_t key[16])
{
	return &svc->src_bucket[fnv64(svc->src_seed, key, 16) & (svc->src_nbucket - 1)];
}

/* Counts fd's connection against its source's cap. False: refused (at the cap, or no memory
 * for a new source: refusing is the bounded choice). */
static bool admit_source(struct services *svc, int fd, struct svc_source **out)
{
	struct svc_source *s, **chain;
	uint8_t key[16];
	bool ok = true;

	*out = NULL;
	if (!svc->src_nbucket || !source_of(fd, key))
		return true;
	chain = source_chain(svc, key);
	pthread_mutex_lock(&svc->src_lock);
	for (s = *chain; s && memcmp(s->addr, key, sizeof(s->addr)) != 0; s = s->next)
		;
	if (!s && (s = calloc(1, sizeof(*s))) != NULL) {
		memcpy(s->addr, key, sizeof(s->addr));
		s->next = *chain;
		*chain = s;
	}
	if (!s || s->n >= svc->cfg->max_conns_per_source)
		ok = false;
	else
		s->n++;
	pthread_mutex_unlock(&svc->src_lock);
	if (ok)
		*out = s;
	return ok;
}

static void release_source(struct services *svc, struct svc_source *src)
{
	struct svc_source **p;

	pthread_mutex_lock(&svc->src_lock);
	if (--src->n == 0) {
		for (p = source_chain(svc, src->addr); *p != src; p = &(*p)->next)
			;
		*p = src->next;
		free(src);
	}
	pthread_mutex_unlock(&svc->src_lock);
}

bool svc_admit(struct worker *w, int fd, struct svc_source **src)
{
	struct services *svc = w->svc;
	unsigned max = svc->cfg->max_conns, cur = atomic_load(&svc->live);

	*src = NULL;
	do {
		if (max && cur >= max) {
			svc_log_once(svc, "max_conns", "refusing connections over --max-conns %u", max);
			stat_add(&w->stats.refused, 1);
			return false;
		}
	} while (!atomic_compare_exchange_weak(&svc->live, &cur, cur + 1));
	if (!admit_source(svc, fd, src)) {
		atomic_fetch_sub(&svc->live, 1);
		svc_log_once(svc, "max_conns_per_source",
			     "refusing connections over --max-conns-per-source %u from one address",
			     svc->cfg->max_conns_per_source);
		stat_add(&w->stats.refused, 1);
		return false;
	}
	stat_add(&w->stats.accepted, 1);
	return true;
}

void svc_release(struct worker *w, struct svc_source *src)
{
	if (src)
		release_source(w->svc, src);
	atomic_fetch_sub(&w->svc->live, 1);
}

static uint64_t sweep_period_ns(const struct services *svc)
{
	uint64_t p = svc->cfg->idle_timeout_ns / 4;

	return p < SWEEP_MIN_NS ? SWEEP_MIN_NS : p > SWEEP_MAX_NS ? SWEEP_MAX_NS : p;
}

void svc_idle_start(const struct services *svc, struct idle_mark *m)
{
	*m = (struct idle_mark){ .since_ns = svc->cfg->idle_timeout_ns ? now_ns() : 0 };
}

uint64_t svc_sweep_next(struct worker *w)
{
	if (!w->cfg->idle_timeout_ns)
		return 0;
	if (!w->sweep_ns)
		w->sweep_ns = now_ns() + sweep_period_ns(w->svc);
	return w->sweep_ns;
}

uint64_t svc_sweep_due(struct worker *w)
{
	uint64_t now;

	if (!w->cfg->idle_timeout_ns)
		return 0;
	now = now_ns();
	if (now < w->sweep_ns)
		return 0;
	w->sweep_ns = now + sweep_period_ns(w->svc);
	return now;
}

bool svc_idle_expired(const struct services *svc, struct idle_mark *m, int fd, uint64_t moved,
		      short events, uint64_t now)
{
	struct pollfd p = { .fd = fd, .events = events };

	if (moved != m->moved) {
		m->moved = moved;
		m->since_ns = now;   /* the last byte moved after the previous sweep: not before now */
		return false;
	}
	if (now - m->since_ns < svc->cfg->idle_timeout_ns)
		return false;
	/* One system call per connection found idle, not per connection swept. */
	return !events || !(poll(&p, 1, 0) > 0 && (p.revents & events));
}

void svc_idle_closing(struct worker *w, int fd, bool pending)
{
	if (pending) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	stat_add(&w->stats.idle_closed, 1);
}

void svc_idle_sockopts(const struct services *svc, int fd)
{
	uint64_t ns = svc->cfg->idle_timeout_ns;
	struct timeval tv = { .tv_sec = (time_t)(ns / 1000000000u),
			      .tv_usec = (suseconds_t)(ns % 1000000000u / 1000u) };

	if (!ns)
		return;
	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		tv.tv_usec = 1;   /* zero would mean no timeout at all */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void svc_log_once(struct services *svc, const char *key, const char *fmt, ...)
{
	va_list ap;
	int i;

	pthread_mutex_lock(&svc->log_lock);
	for (i = 0; i < SVC_LOG_KEYS && svc->logged[i]; i++)
		if (strcmp(svc->logged[i], key) == 0)
			break;
	if (i < SVC_LOG_KEYS && !svc->logged[i]) {
		svc->logged[i] = key;
		fprintf(stderr, "echo-server: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&svc->log_lock);
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

void udp_echo_ready(struct worker *w, int fd, uint8_t *buf)
{
	for (int i = 0; i < DATAGRAMS_PER_WAKE; i++) {
		struct sockaddr_storage src;
		socklen_t slen = sizeof(src);
		/* MSG_TRUNC makes recvfrom return the real length, so an oversized datagram is
		 * dropped rather than echoed cut short. */
		ssize_t n = recvfrom(fd, buf, UDP_BUF, MSG_TRUNC | MSG_DONTWAIT,
				     (struct sockaddr *)&src, &slen);

		if (n < 0)
			return;
		if (n > UDP_BUF || !udp_source_allowed((struct sockaddr *)&src) ||
		    sendto(fd, buf, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&src, slen) < 0)
			stat_add(&w->stats.dropped, 1);
		else
			stat_add(&w->stats.datagrams, 1);
	}
}

bool svc_shed_on_emfile(struct worker *w, int listen_fd)
{
	struct services *svc = w->svc;
	int fd = -1;

	svc_log_once(svc, "emfile",
		     "accept: out of file descriptors; shedding new connections until some close");
	/* One worker at a time: the fd freed by close() goes to whichever thread opens next, so
	 * two workers shedding at once could take each other's reserve. */
	pthread_mutex_lock(&svc->shed_lock);
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
	pthread_mutex_unlock(&svc->shed_lock);
	return fd >= 0;
}
