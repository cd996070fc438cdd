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
 *
 * Prints `listening ADDR` once it accepts (the echo-server start-up contract in
 * docs/CONTRACTS.md) and exits 0 on SIGTERM or SIGINT, without draining: it is only ever
 * stopped after the load that measures it has ended.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "die.h"
#include "sock.h"

/* The same per-connection buffer as echo-server's default --bufsize, so that the two differ in
 * their code only. Pages of it that a small message never reaches are never touched. */
#define BUF_SIZE 65536
#define MAX_EVENTS 256

struct mconn {
	size_t off, len;       /* bytes of buf still to send: buf[off .. len) */
	char buf[BUF_SIZE];
};

static int ep;
static struct mconn **conns;   /* indexed by fd; sized by the fd limit, so never resized */
static long max_fds;

static int watch(int op, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	return epoll_ctl(ep, op, fd, &ev) < 0 ? -errno : 0;
}

static void drop(int fd)
{
	/* close() also removes fd from the epoll set: it is the only descriptor of the socket. */
	close(fd);
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
		if (fd >= max_fds || !(conns[fd] = malloc(sizeof(*conns[fd])))) {
			close(fd);
			continue;
		}
		conns[fd]->off = conns[fd]->len = 0;
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
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *listen_text = "127.0.0.1:7007";
	struct epoll_event evs[MAX_EVENTS];
	sigset_t stop;
	int opt, lfd, sfd;

	opterr = 0;     /* one line of our own instead of getopt's two */
	while ((opt = getopt_long(argc, argv, ":l:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_text = optarg;
			break;
		case 'h':
			printf("Usage: echo-minserver [--listen ADDR]\n"
			       "  -l, --listen ADDR   127.0.0.1:PORT, [::1]:PORT, HOST:PORT or "
			       "unix:/path; PORT 0 = ephemeral (default 127.0.0.1:7007)\n"
			       "  -h, --help          this text\n"
			       "  -V, --version       the version\n"
			       "A minimal single-threaded level-triggered epoll echo server, the "
			       "yardstick for echo-server's epoll backend.\n"
			       "Prints `listening ADDR` once it accepts; SIGTERM or SIGINT stops it "
			       "(exit 0).\n");
			return 0;
		case 'V':
			printf("echo-minserver %s (epoll, level-triggered)\n", ECHOBENCH_VERSION);
			return 0;
		case ':':
			die(2, "option '%s' needs a value", argv[optind - 1]);
		default:
			die(2, "bad option '%s' (usage: echo-minserver [--listen ADDR])",
			    argv[optind - 1]);
		}
	}
	if (optind != argc)
		die(2, "unexpected argument '%s'", argv[optind]);

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
