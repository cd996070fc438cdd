/* The services that every backend calls: admission against --max-conns, log-once, EMFILE
 * shedding, the UDP echo with its source guard, and the stop flag with its drain deadline. One
 * `struct services` per server, shared by its workers. */
#include "backend.h"
#include "clock.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DATAGRAMS_PER_WAKE 64   /* bounded so a datagram flood cannot starve TCP clients */

void svc_init(struct services *svc, const struct server_config *cfg)
{
	memset(svc, 0, sizeof(*svc));
	svc->cfg = cfg;
	pthread_mutex_init(&svc->log_lock, NULL);
	pthread_mutex_init(&svc->shed_lock, NULL);
}

void svc_fini(struct services *svc)
{
	pthread_mutex_destroy(&svc->log_lock);
	pthread_mutex_destroy(&svc->shed_lock);
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

bool svc_admit(struct worker *w)
{
	struct services *svc = w->svc;
	unsigned max = svc->cfg->max_conns, cur = atomic_load(&svc->live);

	do {
		if (max && cur >= max) {
			svc_log_once(svc, "max_conns", "refusing connections over --max-conns %u", max);
			stat_add(&w->stats.refused, 1);
			return false;
		}
	} while (!atomic_compare_exchange_weak(&svc->live, &cur, cur + 1));
	stat_add(&w->stats.accepted, 1);
	return true;
}

void svc_release(struct worker *w)
{
	atomic_fetch_sub(&w->svc->live, 1);
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
