/* echo-minclient: the least a closed-loop echo client can do, as a yardstick for echo-load.
 *
 * One message of --size bytes in flight per connection, a constant buffer, no timestamps, no
 * verification beyond counting bytes. One connection: blocking send/recv, the shortest
 * possible round trip. More: one level-triggered epoll loop per thread. Prints
 *   msgs_per_sec=N          (and, for one connection)   rtt_avg_us=N
 *
 * --stream: each connection sends -s bytes at a time as fast as the server takes them and reads
 * whatever comes back, without waiting for it; the bytes read are discarded in the kernel
 * (recv with MSG_TRUNC: no copy to user space), so the client spends less per byte than an
 * echo server that copies. Prints  bytes_per_sec=N  (echoed bytes read back per second).
 *
 * --churn: connection churn instead (netperf's TCP_CRR): each of the -c loops connects, sends
 * one message of -s bytes, reads its echo, closes, and starts again, until -d is over. Prints
 *   transactions_per_sec=N  failed=N
 * (failed: transactions whose connect, send or read failed; any makes the exit status 1).
 * The client closes first, so its sockets wait in TIME_WAIT; Linux reuses those ports for new
 * connections on loopback after a second (net.ipv4.tcp_tw_reuse = 2, the default), and
 * --source A-B spreads the connections over several local addresses for more ports.
 *
 * Every wait is bounded (SO_RCVTIMEO / epoll timeout) and the run stops by itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
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
	uint64_t msgs;         /* messages echoed; with --churn, transactions completed */
	uint64_t failed;       /* --churn: transactions that failed */
	int err;
};

/* --churn's target and source addresses, shared read-only by the threads. */
static struct endpoint target;
static uint32_t src_first, src_count;   /* --source: host-order IPv4 range; 0: none */

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

/* --stream: every connection sends and reads at once, level-triggered; msgs counts bytes. */
static void *run_stream(void *arg)
{
	struct mthread *t = arg;
	static _Thread_local char out[MAX_SIZE];
	struct epoll_event evs[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0) {
		t->err = -errno;
		return NULL;
	}
	for (size_t i = 0; i < t->n; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = &t->conns[i] };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, t->conns[i].fd, &ev) < 0) {
			t->err = -errno;
			close(ep);
			return NULL;
		}
	}
	while (now_ns() < t->end) {
		int n = epoll_wait(ep, evs, 256, 100);

		for (int i = 0; i < n && !t->err; i++) {
			struct mconn *c = evs[i].data.ptr;

			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
				/* MSG_TRUNC on a TCP socket: the bytes are dropped, not copied. */
				ssize_t r = recv(c->fd, NULL, 1 << 20, MSG_TRUNC | MSG_DONTWAIT);

				if (r > 0)
					t->msgs += (uint64_t)r;
				else if (r == 0 || (errno != EAGAIN && errno != EINTR))
					t->err = r == 0 ? -ECONNRESET : -errno;
			}
			if (!t->err && (evs[i].events & EPOLLOUT) &&
			    send(c->fd, out, t->size, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
			    errno != EAGAIN && errno != EINTR)
				t->err = -errno;
		}
	}
	close(ep);
	return NULL;
}

/* --churn: one transaction loop. fd < 0 between transactions. */
struct ctx {
	int fd;
	size_t sent, got;
};

/* Opens the next transaction's connection and sends its message as far as it can. Returns 0
 * or -errno (the transaction failed before it started). */
static int churn_open(struct ctx *c, int ep, size_t size, const char *out, uint64_t n)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	ssize_t w;

	c->sent = c->got = 0;
	c->fd = socket(target.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (src_count) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		int one = 1;

		sa.sin_addr.s_addr = htonl(src_first + (uint32_t)(n % src_count));
		/* The port is chosen by connect() against the whole 4-tuple, not reserved here. */
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto fail;
	}
	if (connect(c->fd, (struct sockaddr *)&target.sa, target.len) < 0 && errno != EINPROGRESS)
		goto fail;
	/* On loopback the handshake is usually over when connect() returns: send at once, and
	 * wait for writability only when the socket is still connecting (EAGAIN). */
	w = send(c->fd, out, size, MSG_NOSIGNAL);
	if (w < 0 && errno != EAGAIN && errno != ENOTCONN)
		goto fail;
	c->sent = w > 0 ? (size_t)w : 0;
	if (c->sent < size)
		ev.events = EPOLLOUT;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		goto fail;
	return 0;
fail:;
	int err = -errno;

	close(c->fd);
	c->fd = -1;
	return err;
}

/* Moves one transaction on. Returns 1 when it completed, 0 when it waits, -errno when it
 * failed; either end closes the connection. */
static int churn_step(struct ctx *c, int ep, size_t size, const char *out, char *in)
{
	if (c->sent < size) {
		ssize_t w = send(c->fd, out + c->sent, size - c->sent, MSG_NOSIGNAL);

		if (w < 0)
			return errno == EAGAIN || errno == ENOTCONN || errno == EINTR ? 0 : -errno;
		c->sent += (size_t)w;
		if (c->sent == size) {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

			if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
				return -errno;
		}
		return 0;
	}
	ssize_t r = recv(c->fd, in, MAX_SIZE, MSG_DONTWAIT);

	if (r < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (r == 0)
		return -ECONNRESET;   /* the server closed before echoing everything */
	c->got += (size_t)r;
	return c->got >= size;
}

static void *run_churn(void *arg)
{
	struct mthread *t = arg;
	static _Thread_local char out[MAX_SIZE], in[MAX_SIZE];
	struct epoll_event evs[256];
	struct ctx *cs = calloc(t->n, sizeof(*cs));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t started = 0;

	if (ep < 0 || !cs) {
		t->err = ep < 0 ? -errno : -ENOMEM;
		free(cs);
		return NULL;
	}
	for (size_t i = 0; i < t->n; i++)
		while (churn_open(&cs[i], ep, t->size, out, started++) < 0 && now_ns() < t->end)
			t->failed++;
	while (now_ns() < t->end) {
		int n = epoll_wait(ep, evs, 256, 100);

		for (int i = 0; i < n; i++) {
			struct ctx *c = evs[i].data.ptr;
			int r = churn_step(c, ep, t->size, out, in);

			if (r == 0)
				continue;
			if (r > 0)
				t->msgs++;
			else
				t->failed++;
			close(c->fd);   /* also leaves the epoll set */
			while (churn_open(c, ep, t->size, out, started++) < 0 && now_ns() < t->end)
				t->failed++;
		}
	}
	for (size_t i = 0; i < t->n; i++)   /* unfinished at the end: neither done nor failed */
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	close(ep);
	free(cs);
	return NULL;
}

/* --source A or A-B: IPv4 addresses, A <= B. */
static void source_arg(const char *s)
{
	char a[INET_ADDRSTRLEN] = "", b[INET_ADDRSTRLEN] = "";
	const char *dash = strchr(s, '-');
	size_t la = dash ? (size_t)(dash - s) : strlen(s);
	struct in_addr ia, ib;

	if (la >= sizeof(a) || (dash && strlen(dash + 1) >= sizeof(b)))
		die(2, "bad --source (an IPv4 address or a range A-B):", s);
	memcpy(a, s, la);
	snprintf(b, sizeof(b), "%s", dash ? dash + 1 : a);
	if (inet_pton(AF_INET, a, &ia) != 1 || inet_pton(AF_INET, b, &ib) != 1 ||
	    ntohl(ib.s_addr) < ntohl(ia.s_addr) || ntohl(ib.s_addr) - ntohl(ia.s_addr) > 65535)
		die(2, "bad --source (an IPv4 address or a range A-B):", s);
	src_first = ntohl(ia.s_addr);
	src_count = ntohl(ib.s_addr) - src_first + 1;
}

#define USAGE "usage: echo-minclient [-c N] [-s BYTES] [-d DUR] [-t N] [--stream | --churn " \
	"[--source A-B]] TARGET"

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "churn", no_argument, NULL, 'C' },
		{ "stream", no_argument, NULL, 'T' },
		{ "source", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool churn = false, stream = false;
	uint64_t conns = 1, size = 64, dur = 2000000000u, threads = 0, lo, hi;
	struct endpoint ep;
	const char *why;
	struct mthread *ts;
	struct mconn *cs;
	uint64_t msgs = 0, failed = 0, t0, t1;
	int opt;
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);

	opterr = 0;     /* one line of our own instead of getopt's two */
	while ((opt = getopt_long(argc, argv, "c:s:d:t:h", longopts, NULL)) != -1) {
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
		case 'C':
			churn = true;
			break;
		case 'T':
			stream = true;
			break;
		case 'S':
			source_arg(optarg);
			break;
		case 'h':
			printf("%s\n"
			       "  -c N              connections, or with --churn concurrent transaction "
			       "loops (default 1)\n"
			       "  -s BYTES          message size, 1 to 64k (default 64)\n"
			       "  -d DUR            how long (default 2s)\n"
			       "  -t N              threads (default: one per CPU, at most -c)\n"
			       "      --stream      each connection writes continuously and reads back "
			       "(bytes/s)\n"
			       "      --churn       connection churn: connect, one message, its echo, "
			       "close, per transaction\n"
			       "      --source A-B  --churn: bind each connection to a source IPv4 "
			       "address from the range\n"
			       "  -h, --help        this text\n"
			       "The least a closed-loop echo client can do; prints key=value figures.\n",
			       USAGE);
			return 0;
		default:
			die(2, USAGE, NULL);
		}
	}
	if (optind + 1 != argc)
		die(2, USAGE, NULL);
	if (endpoint_parse(argv[optind], &ep, &why) < 0) {
		fprintf(stderr, "echo-minclient: bad address '%s': %s\n", argv[optind], why);
		return 2;
	}
	if (src_count && (!churn || ep.family != AF_INET))
		die(2, "--source needs --churn and an IPv4 target", NULL);
	if (churn && ep.family == AF_UNIX)
		die(2, "--churn needs a TCP target", NULL);
	if (churn && stream)
		die(2, "--churn and --stream exclude each other", NULL);
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
	target = ep;
	for (uint64_t i = 0; i < conns && !churn; i++) {
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
		if (pthread_create(&ts[i].tid, NULL, churn ? run_churn : stream ? run_stream :
				   conns == 1 ? run_blocking : run_epoll, &ts[i]))
			die(1, "cannot start a thread", NULL);
	}
	for (uint64_t i = 0; i < threads; i++) {
		pthread_join(ts[i].tid, NULL);
		msgs += ts[i].msgs;
		failed += ts[i].failed;
		if (ts[i].err)
			die(1, "connection failed:", strerror(-ts[i].err));
	}
	t1 = now_ns();
	if (churn || stream) {
		if (churn)
			printf("transactions_per_sec=%.1f\ntransactions=%llu\nfailed=%llu\n",
			       (double)msgs * 1e9 / (double)(t1 - t0), (unsigned long long)msgs,
			       (unsigned long long)failed);
		else
			printf("bytes_per_sec=%.1f\nbytes=%llu\n",
			       (double)msgs * 1e9 / (double)(t1 - t0), (unsigned long long)msgs);
		for (uint64_t i = 0; i < conns && !churn; i++)
			close(cs[i].fd);
		free(cs);
		free(ts);
		return failed ? 1 : 0;
	}
	printf("msgs_per_sec=%.1f\n", (double)msgs * 1e9 / (double)(t1 - t0));
	if (conns == 1 && msgs)
		printf("rtt_avg_us=%.3f\n", (double)(t1 - t0) / 1e3 / (double)msgs);
	for (uint64_t i = 0; i < conns; i++)
		close(cs[i].fd);
	free(cs);
	free(ts);
	return 0;
}
