/* Opens the connections before the clock starts. Non-blocking connects, at most MAX_PENDING
 * in progress, paced by --connect-rate, each bounded by --timeout. A datagram socket's
 * connect() only fixes the peer: it completes at once, through the same path. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "die.h"
#include "load.h"
#include "loader.h"
#include "sock.h"

/* Connects in flight at once. A burst larger than the listen backlog would only turn into SYN
 * retransmissions (1 s, 3 s later) and inflate connect latency for nothing. */
#define MAX_PENDING 512

struct attempt {
	int fd;
	uint64_t t_first;   /* first try (a unix connect may be retried) */
	uint64_t t_start;   /* connect() of the try in progress; 0 when none is */
};

static void fail(struct load_counts *counts, int *fd, int err)
{
	counts->errors[err_kind_of(err)]++;
	if (!counts->first_errno)
		counts->first_errno = err;
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

#define PORTS_PER_SOURCE_USE 0.75   /* of the ephemeral range: leave room for TIME_WAIT */

uint64_t load_ephemeral_ports(void)
{
	unsigned lo = 32768, hi = 60999;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo)
			lo = 32768, hi = 60999;
		fclose(f);
	}
	return (uint64_t)(hi - lo + 1);
}

void load_plan_sources(struct load_config *cfg)
{
	uint64_t ports = load_ephemeral_ports(), n = cfg->connections_total;
	uint64_t per = (uint64_t)((double)ports * PORTS_PER_SOURCE_USE);
	uint32_t target;

	if (cfg->target.family != AF_INET || cfg->tp->socktype != SOCK_STREAM)
		return;
	if (cfg->src_count) {
		uint64_t each = (n + cfg->src_count - 1) / cfg->src_count;

		if (each > ports)
			die(1, "%llu connections over %u source addresses are %llu per address, but "
			    "one source address has %llu ephemeral ports (ip_local_port_range): "
			    "widen --source", (unsigned long long)n, cfg->src_count,
			    (unsigned long long)each, (unsigned long long)ports);
		return;
	}
	if (n <= per)
		return;
	target = ntohl(((const struct sockaddr_in *)&cfg->target.sa)->sin_addr.s_addr);
	if (target >> 24 != 127)
		die(1, "%llu connections to %s need more than the %llu ephemeral ports of one "
		    "source address (ip_local_port_range): give --source A-B with local "
		    "addresses", (unsigned long long)n, cfg->target.text, (unsigned long long)ports);
	/* Loopback: any 127.0.0.0/8 address is local. 127.0.0.2 upwards. */
	cfg->src_count = (uint32_t)((n + per - 1) / per);
	if (cfg->src_count > LOAD_MAX_SOURCES)
		die(1, "%llu connections need more than %u source addresses", (unsigned long long)n,
		    LOAD_MAX_SOURCES);
	cfg->src_first = (127u << 24) | 2;
	cfg->src_auto = true;
}

/* Binds to source address number `src` (mod their count), the port left to connect(). */
static int bind_source(const struct load_config *cfg, int fd, uint64_t src)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int one = 1;

	sa.sin_addr.s_addr = htonl(cfg->src_first + (uint32_t)(src % cfg->src_count));
	/* The port is picked at connect() against the 4-tuple, not reserved at bind(): otherwise
	 * each address could hold one connection per port over every destination. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

int load_open_socket(const struct load_config *cfg, uint64_t src)
{
	int type = cfg->tp->socktype;
	int fd = socket(cfg->target.family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (type == SOCK_STREAM && cfg->target.family != AF_UNIX)
		sock_set_nodelay(fd);
	if (cfg->src_count) {
		int err = bind_source(cfg, fd, src);

		if (err < 0) {
			close(fd);
			return err;
		}
	}
	return fd;
}

long load_connect_all(const struct load_config *cfg, int *fds, struct hist *lat,
		      struct load_counts *counts)
{
	struct attempt *slots;
	struct epoll_event evs[64];
	uint64_t next = 0, first = 0, t_begin = now_ns(), npending = 0;
	long ok = 0;
	int ep, err = 0;

	for (uint64_t i = 0; i < cfg->connections; i++)
		fds[i] = -1;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -errno;
	if (load_signal_fd >= 0) {
		/* SIGINT/SIGTERM end a long connect phase too. */
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
		epoll_ctl(ep, EPOLL_CTL_ADD, load_signal_fd, &ev);
	}
	slots = calloc(cfg->connections, sizeof(*slots));
	if (!slots) {
		close(ep);
		return -ENOMEM;
	}

	while (next < cfg->connections || npending) {
		uint64_t now = now_ns(), wake = UINT64_MAX;
		int n, timeout_ms;

		if (load_stop_requested) {
			err = -EINTR;
			break;
		}
		/* Start the connects that pacing and the pending bound allow. */
		while (next < cfg->connections && npending < MAX_PENDING) {
			uint64_t due = cfg->connect_rate > 0 ?
				t_begin + (uint64_t)((double)next * 1e9 / cfg->connect_rate) : now;
			struct attempt *a = &slots[next];
			struct epoll_event ev = { .events = EPOLLOUT };

			if (due > now) {
				wake = due;
				break;
			}
			if (!a->t_first)
				a->t_first = now;
			/* Connection id i takes source address i. */
			a->fd = load_open_socket(cfg, cfg->id_base + next);
			if (a->fd == -EADDRNOTAVAIL || a->fd == -EADDRINUSE) {
				/* This source address has no port left (or is not local). */
				a->fd = -1;
				fail(counts, &fds[next], EADDRNOTAVAIL);
				next++;
				continue;
			}
			if (a->fd < 0) {
				err = a->fd;
				goto out;
			}
			fds[next] = a->fd;
			a->t_start = now_ns();
			if (connect(a->fd, (const struct sockaddr *)&cfg->target.sa,
				    cfg->target.len) == 0) {
				hist_record(lat, now_ns() - a->t_start);
				a->t_start = 0;
				ok++;
				next++;
				continue;
			}
			if (errno == EAGAIN && cfg->target.family == AF_UNIX) {
				/* A unix listener's backlog is full: nothing is in progress, so try
				 * again shortly, within --timeout of the first try. */
				int e = now - a->t_first >= cfg->timeout_ns ? ETIMEDOUT : 0;

				close(a->fd);
				fds[next] = a->fd = -1;
				a->t_start = 0;
				if (e) {
					counts->errors[ERR_TIMEOUT]++;
					if (!counts->first_errno)
						counts->first_errno = e;
					next++;
					continue;
				}
				wake = now + 1000000;
				break;
			}
			if (errno != EINPROGRESS) {
				fail(counts, &fds[next], errno);
				a->t_start = 0;
				next++;
				continue;
			}
			ev.data.u64 = next;
			if (epoll_ctl(ep, EPOLL_CTL_ADD, a->fd, &ev) < 0) {
				err = -errno;
				goto out;
			}
			npending++;
			next++;
		}
		/* Connects older than --timeout fail. They were started in index order, so the
		 * oldest pending one is the first still pending after `first`. */
		now = now_ns();
		while (first < next && (fds[first] < 0 || !slots[first].t_start))
			first++;
		while (first < next && npending) {
			struct attempt *a = &slots[first];

			if (fds[first] >= 0 && a->t_start) {
				if (now - a->t_start < cfg->timeout_ns) {
					if (a->t_start + cfg->timeout_ns < wake)
						wake = a->t_start + cfg->timeout_ns;
					break;
				}
				epoll_ctl(ep, EPOLL_CTL_DEL, fds[first], NULL);
				fail(counts, &fds[first], ETIMEDOUT);
				a->t_start = 0;
				npending--;
			}
			first++;
		}
		if (!npending && next >= cfg->connections)
			break;
		timeout_ms = wake == UINT64_MAX ? 100 : (int)((wake - now + 999999) / 1000000);
		if (timeout_ms > 100)
			timeout_ms = 100;   /* so that a stop request is seen promptly */
		n = epoll_wait(ep, evs, 64, timeout_ms);
		if (n < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t k = evs[i].data.u64;
			int soerr = 0;
			socklen_t len = sizeof(soerr);

			if (k == UINT64_MAX) {
				load_stop_requested = true;
				continue;
			}

			if (fds[k] < 0 || !slots[k].t_start)
				continue;
			epoll_ctl(ep, EPOLL_CTL_DEL, fds[k], NULL);
			npending--;
			if (getsockopt(fds[k], SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
				soerr = errno;
			if (soerr) {
				fail(counts, &fds[k], soerr);
			} else {
				hist_record(lat, now_ns() - slots[k].t_start);
				ok++;
			}
			slots[k].t_start = 0;
		}
	}
out:
	free(slots);
	close(ep);
	if (err) {
		for (uint64_t i = 0; i < cfg->connections; i++) {
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
		}
		return err;
	}
	return ok;
}
