/* echo-minclient: the least a closed-loop echo client can do, as a yardstick for echo-load.
 *
 * One message of --size bytes in flight per connection, a constant buffer, no timestamps, no
 * verification beyond counting bytes. One connection: blocking send/recv, the shortest
 * possible round trip. More: one level-triggered epoll loop per thread. Prints
 *   msgs_per_sec=N          (and, for one connection)   rtt_avg_us=N
 * Every wait is bounded (SO_RCVTIMEO / epoll timeout) and the run stops by itself.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "opt.h"
#include "parse.h"
#include "sock.h"

#define MAX_SIZE 65536

struct mconn {
	int fd;
	size_t got;        /* bytes of the current echo received */
};

struct mthread {
	pthread_t tid;
	struct mconn *conns;
	size_t n;
	size_t size;
	uint64_t end;
	uint64_t msgs;
	int err;
};

static void die(int code, const char *msg, const char *arg)
{
	fprintf(stderr, "echo-minclient: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
	exit(code);
}

static int send_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t r = send(fd, buf, n, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One connection, blocking: send, receive the echo, again. */
static void *run_blocking(void *arg)
{
	struct mthread *t = arg;
	static char out[MAX_SIZE], in[MAX_SIZE];
	int fd = t->conns[0].fd;
	struct timeval tv = { 1, 0 };   /* a vanished server cannot hang us */

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* The clock is read every 64 messages only: the loop stays timestamp-free. */
	for (;;) {
		if ((t->msgs & 63) == 0 && now_ns() >= t->end)
			break;
		if ((t->err = send_all(fd, out, t->size)) < 0)
			break;
		for (size_t got = 0; got < t->size;) {
			ssize_t r = recv(fd, in, sizeof(in), 0);
			if (r <= 0) {
				t->err = r < 0 ? -errno : -ECONNRESET;
				if (t->err == -EINTR)
					continue;
				return NULL;
			}
			got += (size_t)r;
		}
		t->msgs++;
	}
	return NULL;
}

/* Several connections: level-triggered epoll, one message in flight on each. */
static void *run_epoll(void *arg)
{
	struct mthread *t = arg;
	static _Thread_local char out[MAX_SIZE], in[MAX_SIZE];
	struct epoll_event evs[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0) {
		t->err = -errno;
		return NULL;
	}
	for (size_t i = 0; i < t->n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->conns[i] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, t->conns[i].fd, &ev) < 0 ||
		    send_all(t->conns[i].fd, out, t->size) < 0) {
			t->err = -errno;
			close(ep);
			return NULL;
		}
	}
	while (now_ns() < t->end) {
		int n = epoll_wait(ep, evs, 256, 100);

		for (int i = 0; i < n; i++) {
			struct mconn *c = evs[i].data.ptr;
			ssize_t r = recv(c->fd, in, sizeof(in), MSG_DONTWAIT);

			if (r <= 0) {
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				t->err = r < 0 ? -errno : -ECONNRESET;
				close(ep);
				return NULL;
			}
			c->got += (size_t)r;
			if (c->got >= t->size) {
				/* Echo servers answer a message before the next is sent: no overlap. */
				c->got -= t->size;
				t->msgs++;
				if ((t->err = send_all(c->fd, out, t->size)) < 0) {
					close(ep);
					return NULL;
				}
			}
		}
	}
	close(ep);
	return NULL;
}

int main(int argc, char **argv)
{
	uint64_t conns = 1, size = 64, dur = 2000000000u, threads = 0, lo, hi;
	struct endpoint ep;
	const char *why;
	struct mthread *ts;
	struct mconn *cs;
	uint64_t msgs = 0, t0, t1;
	int opt;
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);

	while ((opt = getopt(argc, argv, "c:s:d:t:")) != -1) {
		switch (opt) {
		case 'c':
			conns = opt_count("-c", optarg, 1, 100000);
			break;
		case 's':
			if (parse_bytes_range(optarg, MAX_SIZE, &lo, &hi) < 0 || lo != hi || !lo)
				die(2, "bad -s (1..64k, one size)", optarg);
			size = lo;
			break;
		case 'd':
			dur = opt_duration_ns("-d", optarg, 1, 600000000000u);
			break;
		case 't':
			threads = opt_whole("-t", optarg, 1, 1024);
			break;
		default:
			die(2, "usage: echo-minclient [-c N] [-s BYTES] [-d DUR] [-t N] TARGET", NULL);
		}
	}
	if (optind + 1 != argc)
		die(2, "usage: echo-minclient [-c N] [-s BYTES] [-d DUR] [-t N] TARGET", NULL);
	if (endpoint_parse(argv[optind], &ep, &why) < 0) {
		fprintf(stderr, "echo-minclient: bad address '%s': %s\n", argv[optind], why);
		return 2;
	}
	if (!threads)
		threads = nproc > 0 ? (uint64_t)nproc : 1;
	if (threads > conns)
		threads = conns;
	signal(SIGPIPE, SIG_IGN);
	sock_raise_nofile(conns + 64);
	cs = calloc(conns, sizeof(*cs));
	ts = calloc(threads, sizeof(*ts));
	if (!cs || !ts)
		die(1, "out of memory", NULL);
	for (uint64_t i = 0; i < conns; i++) {
		cs[i].fd = socket(ep.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&ep.sa, ep.len) < 0)
			die(1, "cannot connect:", strerror(errno));
		if (ep.family != AF_UNIX)
			sock_set_nodelay(cs[i].fd);
	}
	t0 = now_ns();
	for (uint64_t i = 0, first = 0; i < threads; i++) {
		uint64_t n = conns / threads + (i < conns % threads);

		ts[i] = (struct mthread){ .conns = cs + first, .n = n, .size = size,
					  .end = t0 + dur };
		first += n;
		if (pthread_create(&ts[i].tid, NULL, conns == 1 ? run_blocking : run_epoll, &ts[i]))
			die(1, "cannot start a thread", NULL);
	}
	for (uint64_t i = 0; i < threads; i++) {
		pthread_join(ts[i].tid, NULL);
		msgs += ts[i].msgs;
		if (ts[i].err)
			die(1, "connection failed:", strerror(-ts[i].err));
	}
	t1 = now_ns();
	printf("msgs_per_sec=%.1f\n", (double)msgs * 1e9 / (double)(t1 - t0));
	if (conns == 1 && msgs)
		printf("rtt_avg_us=%.3f\n", (double)(t1 - t0) / 1e3 / (double)msgs);
	for (uint64_t i = 0; i < conns; i++)
		close(cs[i].fd);
	free(cs);
	free(ts);
	return 0;
}
