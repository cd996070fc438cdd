/* Disconnects and resets: whatever way a client leaves (FIN, SHUT_WR, RST, before or after
 * accept, mid-stream), the server lets go of the connection promptly, leaks nothing and goes on
 * serving. An idle client is never dropped (RFC 862: the client ends the connection). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"
#include "stream.h"

void case_disc_close_1s(struct casectx *c)
{
	const char *expected = "after the client's close() the server closes its side within 1 s "
		"(and, white-box, frees its fd)";
	struct portset *ports = calloc(1, sizeof(*ports));
	const struct target *t = c->t;
	struct flow f;
	int fd, left = 0, fds_before = 0, fds_after = 0;
	bool have_fds = false;
	uint64_t t0;

	if (!ports) {
		case_fail(c, expected, "calloc failed");
		return;
	}
	if (t->pid && probe_fds_settled(t->pid, now_ns() + SEC, &fds_before) == 0)
		have_fds = true;
	fd = case_connect(c, &t->tcp, NULL, expected);
	if (fd < 0)
		goto out;
	portset_add(ports, net_local_port(fd));
	flow_init(&f, case_rand(c), 100);
	if (flow_run(c, fd, &f) < 0) {
		flow_report(c, &f, "100 bytes echoed before the close");
		close(fd);
		goto out;
	}
	close(fd);
	/* The verdict waits for the generous bound; the 1 s of the case's name is reported. */
	t0 = now_ns();
	uint64_t until = t0 + case_grace_ns(c, SEC);
	if (until > c->deadline_ns)
		until = c->deadline_ns;
	probe_tcp_wait_closed(endpoint_port(&t->tcp), ports, until, &left);
	if (!left)
		case_time_limit(c, "server_close", now_ns() - t0, SEC);
	if (left)
		case_fail(c, expected, "the server's socket is still ESTABLISHED or CLOSE-WAIT "
			"%.1f s after the client closed", (double)(now_ns() - t0) / 1e9);
	if (have_fds) {
		probe_fds_down_to(t->pid, fds_before, until, &fds_after);
		case_num(c, "server_fds_before", fds_before);
		case_num(c, "server_fds_after", fds_after);
		if (fds_after > fds_before)
			case_fail(c, expected, "the server's socket is closed at the TCP level, but "
				"%.1f s later it holds %d fds, %d before the client came",
				(double)(now_ns() - t0) / 1e9, fds_after, fds_before);
		else
			case_time_limit(c, "server_close", now_ns() - t0, SEC);
	}
out:
	free(ports);
}

enum empty_close { BY_FIN, BY_SHUT_WR, BY_RST };

/* 60 connections that carry no data and end in one way; then nothing is left behind. */
static void disc_empty(struct casectx *c, enum empty_close how)
{
	static const char *const expected[] = {
		[BY_FIN] = "60 empty connections closed by FIN: nothing left behind, still serving",
		[BY_SHUT_WR] = "60 empty connections half-closed: each gets EOF, nothing left behind",
		[BY_RST] = "60 empty connections reset: nothing left behind, still serving",
	};
	struct leakcheck lk;

	leak_begin(c, &lk);
	for (int i = 0; i < 60 && !case_failed(c); i++) {
		int fd;

		case_pace_connect(c);
		fd = case_connect(c, &c->t->tcp, NULL, expected[how]);
		uint64_t extra;
		int rc;

		if (fd < 0)
			break;
		leak_add_port(&lk, fd);
		switch (how) {
		case BY_FIN:
			close(fd);
			break;
		case BY_RST:
			net_close_rst(fd);
			break;
		case BY_SHUT_WR:
			shutdown(fd, SHUT_WR);
			rc = net_read_to_eof(fd, c->deadline_ns, &extra);
			if (rc < 0)
				case_fail(c, expected[how], "connection %d: %s instead of EOF after "
					"SHUT_WR", i + 1, errno_name(-rc));
			else if (extra)
				case_fail(c, expected[how], "connection %d: %llu bytes came back, none "
					"were sent", i + 1, (unsigned long long)extra);
			close(fd);
			break;
		}
	}
	leak_end(c, &lk, SEC);
	case_check_serving(c);
}

void case_disc_empty_fin(struct casectx *c) { disc_empty(c, BY_FIN); }
void case_disc_empty_shutwr(struct casectx *c) { disc_empty(c, BY_SHUT_WR); }
void case_disc_empty_rst(struct casectx *c) { disc_empty(c, BY_RST); }

void case_disc_idle_5s(struct casectx *c)
{
	const char *expected = "an idle connection stays open 5 s and still echoes";
	struct flow f;
	int fd, rv;
	uint64_t t0;

	fd = case_connect(c, &c->t->tcp, NULL, expected);
	if (fd < 0)
		return;
	flow_init(&f, case_rand(c), 64);
	if (flow_run(c, fd, &f) < 0) {
		flow_report(c, &f, expected);
		goto out;
	}
	t0 = now_ns();
	/* Anything readable during the idle time is wrong: EOF, RST or unrequested bytes. */
	rv = net_wait(fd, POLLIN, t0 + 5 * SEC);
	if (rv != -ETIMEDOUT) {
		uint8_t b;
		ssize_t r = recv(fd, &b, 1, 0);

		case_fail(c, expected, "after %.1f s idle: %s", (double)(now_ns() - t0) / 1e9,
			r == 0 ? "EOF (server closed)" : r < 0 ? errno_name(errno)
			: "a byte arrived unasked");
		goto out;
	}
	flow_init(&f, case_rand(c), 64);
	flow_run(c, fd, &f);
	flow_report(c, &f, expected);
out:
	close(fd);
}

/* Sends up to `want` bytes without reading, until the pipe is full or `for_ns` passes. */
static uint64_t push_unread(int fd, uint64_t seed, uint64_t want, uint64_t for_ns)
{
	uint8_t buf[64 * 1024];
	uint64_t sent = 0, until = now_ns() + for_ns;

	while (sent < want && now_ns() < until) {
		size_t n = want - sent < sizeof(buf) ? (size_t)(want - sent) : sizeof(buf);
		ssize_t w;

		stream_fill(seed, 0, sent, buf, n);
		w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			sent += (uint64_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN)
			break;
		if (net_wait(fd, POLLOUT, now_ns() + 100 * MS) == -ETIMEDOUT)
			break;   /* the server stopped reading: as much as the pipe holds is in */
	}
	return sent;
}

/* One connection sends `want` bytes without reading (see push_unread), then is left one of two
 * ways; either way the server must let go of it and go on serving. */
enum unread_end { END_RST, END_CLOSE_AFTER_ECHO };

static void rst_unread(struct casectx *c, const char *expected, const struct sockbufs *b,
		       const char *metric, uint64_t want, uint64_t for_ns, enum unread_end how)
{
	struct leakcheck lk;
	int fd;

	leak_begin(c, &lk);
	fd = case_connect(c, &c->t->tcp, b, expected);
	if (fd >= 0) {
		leak_add_port(&lk, fd);
		case_num(c, metric, (double)push_unread(fd, case_rand(c), want, for_ns));
		if (how == END_RST) {
			net_close_rst(fd);
		} else {
			/* Wait for the echo to start, so close() finds unread data and resets
			 * while the server still has echo to send. */
			net_wait(fd, POLLIN, now_ns() + SEC);
			close(fd);
		}
	}
	leak_end(c, &lk, SEC);
	case_check_serving(c);
}

void case_rst_midstream(struct casectx *c)
{
	const struct sockbufs b = { .rcvbuf = 16 * 1024 };

	rst_unread(c, "a reset in mid-stream: the server survives, frees the connection "
		   "and goes on serving", &b, "bytes_sent_before_rst", 256 * 1024, 500 * MS,
		   END_RST);
}

void case_rst_close_unread(struct casectx *c)
{
	const struct sockbufs b = { .rcvbuf = 16 * 1024, .sndbuf = 4 << 20 };

	rst_unread(c, "1 MiB sent, closed without reading (server meets ECONNRESET/EPIPE): "
		   "the server survives and goes on serving", &b, "bytes_sent", 1 << 20, SEC,
		   END_CLOSE_AFTER_ECHO);
}

void case_rst_before_accept(struct casectx *c)
{
	const char *expected = "50 connections reset right after the handshake (before accept): "
		"the server keeps accepting";
	struct leakcheck lk;

	leak_begin(c, &lk);
	for (int i = 0; i < 50; i++) {
		int fd;

		case_pace_connect(c);
		fd = case_connect(c, &c->t->tcp, NULL, expected);
		if (fd < 0)
			break;
		leak_add_port(&lk, fd);
		net_close_rst(fd);
	}
	leak_end(c, &lk, SEC);
	case_check_serving(c);
}
