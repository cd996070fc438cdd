/* echo-minserver: the least an epoll echo server can do, as a yardstick for echo-server's
 * epoll backend.
 *
 * One thread, one level-triggered epoll set, one fixed buffer per connection, no counters, no
 * timestamps, no options beyond the address. A readable connection gets one recv() and the
 * bytes go straight back with send(); only when the kernel takes part of them does the
 * connection stop reading (EPOLLOUT instead of EPOLLIN) until the rest is out, so a client that
 * does not read stalls only itself and memory stays one buffer per connection.
 *
 *   echo-minserver --listen 127.0.0.1:PORT      (PORT 0 = ephemeral; default 127.0.0.1:7007)
 *   echo-minserver --cost-ns 500 [--cost-per 64] ...
 *
 * --cost-ns makes it a calibrated yardstick: a server a known amount slower. Every --cost-per
 * bytes received on a connection (default 64) cost it a busy loop of N ns of CPU. The unit is
 * bytes, not reads: for a closed-loop echo of fixed-size messages of --cost-per bytes that is
 * exactly once per message however the kernel splits or merges them into recv() calls (a
 * per-read cost would charge a 64 KiB message arriving in 5 pieces 5 times, and 16 pipelined
 * messages arriving in one piece once). The remainder below --cost-per is carried per
 * connection to its next read.
 *
 * Prints `listening ADDR` once it accepts (the echo-server start-up contract in
 * docs/CONTRACTS.md) and exits 0 on SIGTERM or SIGINT, without draining: it is only ever
 * stopped after the load that measures it has ended.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "die.h"
#include "opt.h"
#include "sock.h"

/* The same per-connection buffer as echo-server's default --bufsize, so that the two differ in
 * their code only. Pages of it that a small message never reaches are never touched. */
#define BUF_SIZE 65536
#define MAX_EVENTS 256
#define COST_NS_MAX 100000000u   /* 100 ms per unit: past that the server only spins */

struct mconn {
	size_t off, len;       /* bytes of buf still to send: buf[off .. len) */
	uint64_t owed;         /* bytes received and not yet charged a cost unit (< cost_per) */
	char buf[BUF_SIZE];
};

static int ep;
static struct mconn **conns;   /* indexed by fd; sized by the fd limit, so never resized */
static long max_fds;
/* Freed connection buffers kept for the next connections (as echo-server's pool does): glibc
 * gives a freed 64 KiB block at the top of the heap back with brk(), a system call per
 * connection under churn that the yardstick would otherwise pay and the servers do not. */
#define SPARE_MAX 64
static struct mconn *spare[SPARE_MAX];
static int nspare;
static uint64_t cost_per = 64;  /* --cost-per: bytes per cost unit */
static double cost_iters;       /* loop iterations per cost unit (0: no cost) */

/* The busy loop behind --cost-ns. A store to a volatile per iteration: the compiler must keep
 * every iteration, and the loop touches no memory but one cache line. */
static volatile uint64_t spin_sink;

static void spin(uint64_t iters)
{
	for (uint64_t i = 0; i < iters; i++)
		spin_sink = i;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU ns per spin() iteration on this machine, now.
 *
 * Why a calibrated loop and not a loop that reads CLOCK_MONOTONIC until N ns have passed: the
 * cost must be CPU time, and the monotonic clock counts wall time, so a spin that is preempted
 * part-way (on a busy machine, the case the yardstick is for) would cost the server less CPU
 * than N, by however long it waited for the CPU. And each clock read is itself 20-50 ns (a
 * vDSO call; a system call where the clock source has no vDSO), which would quantise small
 * costs. Reading CLOCK_THREAD_CPUTIME_ID in the loop instead would count CPU time but is a
 * system call of a few hundred ns per read. So the loop is timed once, against the thread's
 * CPU clock (which does not advance while the thread waits for a CPU), over 5 trials of at
 * least 2 ms each, and the median is taken: one trial disturbed by an interrupt or a cache
 * flush does not set the cost. What a calibration cannot follow is a later change of the
 * CPU's speed (frequency, a busy SMT sibling): the cost is then that many iterations, which
 * is what makes two servers compared in the same minutes differ by the same work. */
static double calibrate(void)
{
	double trial[5];
	uint64_t iters = 1u << 16, t;

	for (;;) {   /* a trial long enough that the clock's resolution does not matter */
		t = thread_cpu_ns();
		spin(iters);
		t = thread_cpu_ns() - t;
		if (t >= 2000000 || iters >= (1ull << 40))
			break;
		iters *= 2;
	}
	for (int i = 0; i < 5; i++) {
		t = thread_cpu_ns();
		spin(iters);
		trial[i] = (double)(thread_cpu_ns() - t) / (double)iters;
	}
	for (int i = 1; i < 5; i++)   /* insertion sort: five values */
		for (int j = i; j > 0 && trial[j] < trial[j - 1]; j--) {
			double x = trial[j];
			trial[j] = trial[j - 1];
			trial[j - 1] = x;
		}
	return trial[2] > 0 ? trial[2] : 1e-3;
}

/* Charges the cost of n more bytes received on c: one unit per cost_per bytes. */
static void charge(struct mconn *c, size_t n)
{
	uint64_t units;

	if (cost_iters <= 0)
		return;
	c->owed += n;
	units = c->owed / cost_per;
	c->owed %= cost_per;
	if (units)
		spin((uint64_t)llround((double)units * cost_iters));
}

static int watch(int op, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	return epoll_ctl(ep, op, fd, &ev) < 0 ? -errno : 0;
}

static void drop(int fd)
{
	/* close() also removes fd from the epoll set: it is the only descriptor of the socket. */
	close(fd);
	if (nspare < SPARE_MAX)
		spare[nspare++] = conns[fd];
	else
		free(conns[fd]);
	conns[fd] = NULL;
}

/* Accepts every pending connection. Returns -EMFILE/-ENFILE when out of descriptors (the caller
 * stops watching the listener until a connection closes, rather than spin on it). */
static int accept_all(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				return -errno;
			/* EAGAIN: all taken; ECONNABORTED and friends: that one is gone, next. */
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			continue;
		}
		if (fd >= max_fds ||
		    !(conns[fd] = nspare ? spare[--nspare] : malloc(sizeof(*conns[fd])))) {
			close(fd);
			continue;
		}
		conns[fd]->off = conns[fd]->len = conns[fd]->owed = 0;
		sock_set_nodelay(fd);
		if (watch(EPOLL_CTL_ADD, fd, EPOLLIN) < 0)
			drop(fd);
	}
}

/* Sends what is pending. Returns 1 when all is out, 0 when the kernel took only part, -errno. */
static int flush(int fd, struct mconn *c)
{
	while (c->off < c->len) {
		ssize_t w = send(fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		c->off += (size_t)w;
	}
	c->off = c->len = 0;
	return 1;
}

static void serve(int fd)
{
	struct mconn *c = conns[fd];
	int r;

	if (c->len) {                   /* waiting for EPOLLOUT with an echo pending */
		r = flush(fd, c);
		if (r < 0 || (r == 1 && watch(EPOLL_CTL_MOD, fd, EPOLLIN) < 0))
			drop(fd);
		return;
	}
	ssize_t n = recv(fd, c->buf, BUF_SIZE, 0);

	if (n <= 0) {
		/* 0: the peer closed; EAGAIN/EINTR: a spurious wake, level triggering calls again. */
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			drop(fd);
		return;
	}
	charge(c, (size_t)n);
	c->len = (size_t)n;
	r = flush(fd, c);
	if (r < 0 || (r == 0 && watch(EPOLL_CTL_MOD, fd, EPOLLOUT) < 0))
		drop(fd);
}

static int listen_on(const char *text)
{
	struct endpoint addr;
	const char *why;
	char shown[ENDPOINT_TEXT_MAX];
	int one = 1, fd;

	if (endpoint_parse(text, &addr, &why) < 0)
		die(2, "bad address '%s': %s", text, why);
	fd = socket(addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(1, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&addr.sa, addr.len) < 0 || listen(fd, 4096) < 0)
		die(1, "cannot listen on %s: %s", text, strerror(errno));
	addr.len = sizeof(addr.sa);
	if (getsockname(fd, (struct sockaddr *)&addr.sa, &addr.len) < 0 ||
	    endpoint_format((struct sockaddr *)&addr.sa, addr.len, shown, sizeof(shown)) < 0)
		die(1, "getsockname: %s", strerror(errno));
	printf("listening %s\n", shown);
	fflush(stdout);
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cost-ns", required_argument, NULL, 'C' },
		{ "cost-per", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *listen_text = "127.0.0.1:7007";
	uint64_t cost_ns = 0;
	struct epoll_event evs[MAX_EVENTS];
	sigset_t stop;
	int opt, lfd, sfd;

	opterr = 0;     /* one line of our own instead of getopt's two */
	while ((opt = getopt_long(argc, argv, ":l:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_text = optarg;
			break;
		case 'C':
			cost_ns = opt_whole("--cost-ns", optarg, 0, COST_NS_MAX);
			break;
		case 'P':
			cost_per = opt_bytes("--cost-per", optarg, 1, 1u << 30);
			break;
		case 'h':
			printf("Usage: echo-minserver [--listen ADDR] [--cost-ns N [--cost-per BYTES]]\n"
			       "  -l, --listen ADDR     127.0.0.1:PORT, [::1]:PORT, HOST:PORT or "
			       "unix:/path; PORT 0 = ephemeral (default 127.0.0.1:7007)\n"
			       "      --cost-ns N       a busy loop of N ns of CPU (0 to %u; "
			       "calibrated at start) per --cost-per bytes received (default 0: none)\n"
			       "      --cost-per BYTES  bytes per cost unit, counted per connection "
			       "across reads: one unit per message of that size (default 64)\n"
			       "  -h, --help            this text\n"
			       "  -V, --version         the version\n"
			       "A minimal single-threaded level-triggered epoll echo server, the "
			       "yardstick for echo-server's epoll backend;\n"
			       "with --cost-ns, a yardstick a known CPU cost per message slower.\n"
			       "Prints `listening ADDR` once it accepts; SIGTERM or SIGINT stops it "
			       "(exit 0).\n", COST_NS_MAX);
			return 0;
		case 'V':
			printf("echo-minserver %s (epoll, level-triggered)\n", ECHOBENCH_VERSION);
			return 0;
		case ':':
			die(2, "option '%s' needs a value", argv[optind - 1]);
		default:
			die(2, "bad option '%s' (usage: echo-minserver [--listen ADDR] "
			    "[--cost-ns N [--cost-per BYTES]])",
			    argv[optind - 1]);
		}
	}
	if (optind != argc)
		die(2, "unexpected argument '%s'", argv[optind]);
	if (cost_ns) {
		double ns_per_iter = calibrate();

		cost_iters = (double)cost_ns / ns_per_iter;
		fprintf(stderr, "echo-minserver: cost %llu ns of CPU per %llu bytes received "
			"(%.0f loop iterations of %.3f ns)\n", (unsigned long long)cost_ns,
			(unsigned long long)cost_per, cost_iters, ns_per_iter);
	}

	/* The signals arrive as a readable fd in the same epoll set: no handler, no race. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	max_fds = sock_raise_nofile(1u << 20);
	if (max_fds <= 0)
		die(1, "cannot read RLIMIT_NOFILE: %s", strerror((int)-max_fds));
	conns = calloc((size_t)max_fds, sizeof(*conns));
	ep = epoll_create1(EPOLL_CLOEXEC);
	sfd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
	if (!conns || ep < 0 || sfd < 0)
		die(1, "setup: %s", strerror(errno ? errno : ENOMEM));
	lfd = listen_on(listen_text);
	if (watch(EPOLL_CTL_ADD, lfd, EPOLLIN) < 0 || watch(EPOLL_CTL_ADD, sfd, EPOLLIN) < 0)
		die(1, "epoll_ctl: %s", strerror(errno));

	int listening = 1;

	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);

		if (n < 0 && errno != EINTR)
			die(1, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == sfd)
				return 0;
			if (fd == lfd) {
				if (accept_all(lfd) < 0 && watch(EPOLL_CTL_DEL, lfd, 0) == 0)
					listening = 0;
				continue;
			}
			if (conns[fd]) {
				serve(fd);
				/* A descriptor came free: accept again if we had stopped. */
				if (!conns[fd] && !listening &&
				    watch(EPOLL_CTL_ADD, lfd, EPOLLIN) == 0)
					listening = 1;
			}
		}
	}
}
