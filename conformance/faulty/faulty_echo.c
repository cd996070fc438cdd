/* faulty-echo: an echo server with one named fault, chosen by --fault. Each fault is a bug seen
 * in real echo servers (docs/CONFORMANCE.md lists which conformance cases it must fail); with
 * --fault none it is a correct server, the baseline the faults are measured against.
 *
 * The server is a single poll() loop over non-blocking sockets, small on purpose so that each
 * fault is one visible `if` at the place where the bug lives. It honours the echo-server
 * start-up contract: binds (port 0 allowed), prints `listening ADDR` lines, exits 0 on SIGTERM.
 * This file holds the fault table, the loops, set-up and options; one connection's life is in
 * faulty_conn.c (faulty.h says what is where, and why the faults show deterministically).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "sock.h"
#include "faulty.h"

static const struct {
	const char *name;
	const char *what;
} faults[] = {
	[F_NONE] = { "none", "no fault: a correct echo server" },
	[F_PREFIX] = { "prefix", "replies \"|From Server| \" + data, like a tutorial server" },
	[F_TRUNCATE_4096] = { "truncate-4096", "echoes at most 4096 bytes of each read or datagram" },
	[F_CORRUPT_DEEP] = { "corrupt-deep", "flips one bit of byte 1,000,000 of each stream" },
	[F_REORDER] = { "reorder", "holds a chunk up to 50 ms and sends the next one first" },
	[F_CROSSTALK] = { "crosstalk", "echoes to the most recently accepted client (one global "
		"client fd)" },
	[F_SHORT_WRITE] = { "short-write", "ignores short writes: what send() did not take is "
		"lost" },
	[F_DROP_PENDING] = { "drop-pending", "on EOF closes at once, dropping echo not yet sent" },
	[F_EOF_BATCH] = { "eof-batch", "reads until EAGAIN; a batch that ends in EOF is dropped" },
	[F_NO_CLOSE] = { "no-close", "never closes after the client's FIN (CLOSE-WAIT forever)" },
	[F_RST_ON_FIN] = { "rst-on-fin", "answers the client's FIN with RST" },
	[F_LEAK_FD] = { "leak-fd", "after the client's FIN calls shutdown() but never close()" },
	[F_IDLE_TIMEOUT] = { "idle-timeout", "closes a connection after 2.5 s without a byte from "
		"the client (a read timeout)" },
	[F_ONE_AT_A_TIME] = { "one-at-a-time", "serves one client at a time (iterative server)" },
	[F_BLOCK_LOOP] = { "block-loop", "blocking send(): a client that does not read blocks "
		"everyone" },
	[F_UNBOUNDED_QUEUE] = { "unbounded-queue", "keeps reading from a client that does not "
		"read, into memory without bound" },
	[F_SPIN_EOF] = { "spin-eof", "after a half-close, flushes pending echo in a busy loop" },
	[F_EXIT_ON_RESET] = { "exit-on-reset", "exits when a connection ends in ECONNRESET/EPIPE "
		"(like a SIGPIPE death)" },
	[F_TINY_BACKLOG] = { "tiny-backlog", "listen backlog 1 and 1 ms per accept (like a "
		"fork-per-connection server)" },
	[F_LISTENER_LIMIT] = { "listener-limit", "closes its listener after 1000 connections" },
	[F_CRASH_OVER_1024] = { "crash-over-1024", "aborts on an fd >= 1024 (select's FD_SETSIZE, "
		"as glibc's fortified FD_SET does)" },
	[F_EMFILE_SPIN] = { "emfile-spin", "on EMFILE retries accept at once: a busy loop" },
	[F_IPV6_BROKEN] = { "ipv6-broken", "closes connections from IPv6 peers at once (knows only "
		"sockaddr_in)" },
	[F_UDP_DROP_EMPTY] = { "udp-drop-empty", "ignores empty UDP datagrams" },
	[F_UDP_CROSSTALK] = { "udp-crosstalk", "answers each datagram to the previous datagram's "
		"sender" },
};
#define NFAULTS ((int)(sizeof(faults) / sizeof(faults[0])))

static void on_signal(int sig)
{
	(void)sig;
	srv.stop = 1;
}

/* ---- the loops ---- */

static void timers(void)
{
	uint64_t now = now_ns();

	for (int i = 0; i < srv.maxconns; i++) {
		struct conn *c = srv.conns[i];
		if (!c || c->zombie)
			continue;
		if (c->held && now - c->held_ns >= 50000000u)
			conn_release_held(c);
		/* A read timeout: only a connection waiting for the client, with nothing owed. */
		if (has_fault(F_IDLE_TIMEOUT) && !c->eof && c->len == 0 &&
				now - c->last_io_ns >= 2500000000u)
			conn_free(i, true);
	}
}

static void poll_loop(void)
{
	struct pollfd *pf = NULL;
	int *idx = NULL, cap = 0;

	while (!srv.stop) {
		int n = 0;

		if (cap < srv.maxconns + 2) {
			cap = srv.maxconns + 66;
			pf = realloc(pf, sizeof(*pf) * (size_t)cap);
			idx = realloc(idx, sizeof(*idx) * (size_t)cap);
			if (!pf || !idx)
				exit(1);
		}
		if (srv.listen_fd >= 0) {
			pf[n] = (struct pollfd){ .fd = srv.listen_fd, .events = POLLIN };
			idx[n++] = -1;
		}
		if (srv.udp_fd >= 0) {
			pf[n] = (struct pollfd){ .fd = srv.udp_fd, .events = POLLIN };
			idx[n++] = -2;
		}
		for (int i = 0; i < srv.maxconns; i++) {
			struct conn *c = srv.conns[i];
			short ev = 0;

			if (!c || c->zombie)
				continue;
			if (!c->eof && (has_fault(F_UNBOUNDED_QUEUE) || c->len < QUEUE_CAP))
				ev |= POLLIN;
			if (c->len > 0)
				ev |= POLLOUT;
			pf[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			idx[n++] = i;
		}
		int timeout = has_fault(F_REORDER) ? 10 : has_fault(F_IDLE_TIMEOUT) ? 100 : 1000;
		int rv = poll(pf, (nfds_t)n, timeout);
		if (rv < 0 && errno != EINTR)
			exit(1);
		for (int k = 0; rv > 0 && k < n; k++) {
			short re = pf[k].revents;
			int i = idx[k];

			if (!re)
				continue;
			if (i == -1) {
				accept_ready();
				continue;
			}
			if (i == -2) {
				udp_ready();
				continue;
			}
			if (!srv.conns[i] || srv.conns[i]->fd != pf[k].fd)
				continue;   /* freed (or replaced) earlier in this round */
			if (re & (POLLIN | POLLERR | POLLHUP)) {
				if (pf[k].events & POLLIN)
					conn_readable(i);
				else if (!(pf[k].events & POLLOUT))
					continue;
			}
			if (srv.conns[i] && (re & (POLLOUT | POLLERR | POLLHUP)) &&
					(pf[k].events & POLLOUT))
				conn_writable(i);
		}
		timers();
	}
	free(pf);
	free(idx);
}

/* one-at-a-time: the textbook iterative server. */
static void iterative_loop(void)
{
	static uint8_t buf[READ_SIZE];
	int fl = fcntl(srv.listen_fd, F_GETFL);

	fcntl(srv.listen_fd, F_SETFL, fl & ~O_NONBLOCK);
	while (!srv.stop) {
		int fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		for (;;) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0), off = 0;
			if (n <= 0)
				break;
			while (off < n) {
				ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
				if (w <= 0)
					break;
				off += w;
			}
			if (off < n)
				break;
		}
		close(fd);
	}
}

/* ---- set-up ---- */

static int open_listeners(const struct endpoint *ep, bool udp)
{
	struct endpoint real = *ep;
	socklen_t len = sizeof(real.sa);
	int one = 1, zero = 0;
	bool any6 = ep->family == AF_INET6 &&
		IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&ep->sa)->sin6_addr);

	srv.listen_fd = socket(ep->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv.listen_fd < 0)
		return -errno;
	setsockopt(srv.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (any6)
		setsockopt(srv.listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(srv.listen_fd, (const struct sockaddr *)&ep->sa, ep->len) < 0 ||
			listen(srv.listen_fd, has_fault(F_TINY_BACKLOG) ? 1 : SOMAXCONN) < 0 ||
			getsockname(srv.listen_fd, (struct sockaddr *)&real.sa, &len) < 0)
		return -errno;
	real.len = len;
	if (udp) {
		srv.udp_fd = socket(ep->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (srv.udp_fd < 0)
			return -errno;
		if (any6)
			setsockopt(srv.udp_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		/* UDP on the same port as TCP, as the start-up contract says. */
		if (bind(srv.udp_fd, (const struct sockaddr *)&real.sa, real.len) < 0)
			return -errno;
	}
	endpoint_format((struct sockaddr *)&real.sa, real.len, real.text, sizeof(real.text));
	if (any6) {
		/* A dual-stack listener answers on both loopbacks: name them both. */
		int port = endpoint_port(&real);
		printf("listening 127.0.0.1:%d\nlistening [::1]:%d\n", port, port);
		if (udp)
			printf("listening udp:127.0.0.1:%d\nlistening udp:[::1]:%d\n", port, port);
	} else {
		printf("listening %s\n", real.text);
		if (udp)
			printf("listening udp:%s\n", real.text);
	}
	fflush(stdout);
	return 0;
}

static void usage(FILE *f)
{
	fputs("Usage: faulty-echo [--fault NAME] [--listen ADDR] [--udp] [--list]\n"
		"An echo server with one named fault (default none: correct), for testing\n"
		"echo-conform. Prints `listening ADDR` lines; SIGTERM stops it.\n"
		"  -f, --fault NAME    see --list\n"
		"  -l, --listen ADDR   127.0.0.1:PORT, [::1]:PORT, [::]:PORT (dual stack);"
		" default 127.0.0.1:0\n"
		"  -u, --udp           also echo UDP on the same port\n"
		"      --list          one line per fault: NAME description\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n", f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fault", required_argument, NULL, 'f' },
		{ "listen", required_argument, NULL, 'l' },
		{ "udp", no_argument, NULL, 'u' },
		{ "list", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_text = "127.0.0.1:0", *why;
	struct endpoint ep;
	bool udp = false;
	int ch, rc;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":f:l:uhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': {
			int f;
			for (f = 0; f < NFAULTS && strcmp(optarg, faults[f].name) != 0; f++)
				;
			if (f == NFAULTS) {
				fprintf(stderr, "faulty-echo: unknown fault '%s' (see --list)\n",
					optarg);
				return 2;
			}
			srv.fault = (enum fault)f;
			break;
		}
		case 'l': listen_text = optarg; break;
		case 'u': udp = true; break;
		case 'L':
			for (int f = 0; f < NFAULTS; f++)
				printf("%-16s %s\n", faults[f].name, faults[f].what);
			return 0;
		case 'h': usage(stdout); return 0;
		case 'V': printf("faulty-echo %s\n", ECHOBENCH_VERSION); return 0;
		case ':':
			fprintf(stderr, "faulty-echo: option '%s' needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "faulty-echo: unknown option '%s' (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "faulty-echo: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (endpoint_parse(listen_text, &ep, &why) < 0 || ep.family == AF_UNIX) {
		fprintf(stderr, "faulty-echo: bad address '%s': %s\n", listen_text,
			ep.family == AF_UNIX ? "unix sockets are not supported" : why);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (has_fault(F_CRASH_OVER_1024)) {
		/* The abort is the point; a core file is not. */
		struct rlimit nocore = { 0, 0 };
		setrlimit(RLIMIT_CORE, &nocore);
	}
	/* 1,100 clients need more than the usual 1024 fds. */
	sock_raise_nofile(4096);
	srv.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* The iterative server is a TCP story; it would never get to a UDP socket. */
	rc = open_listeners(&ep, udp && !has_fault(F_ONE_AT_A_TIME));
	if (rc < 0) {
		fprintf(stderr, "faulty-echo: cannot listen on %s: %s\n", listen_text, strerror(-rc));
		return 1;
	}
	if (has_fault(F_ONE_AT_A_TIME))
		iterative_loop();
	else
		poll_loop();
	return 0;
}
