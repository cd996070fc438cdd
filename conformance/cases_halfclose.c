/* Half-close (RFC 9293 §3.6): the client's FIN only says "no more data from me". The server
 * still owes every byte it has not echoed, and closes its side only after sending them; it never
 * answers the FIN with RST and never drops what is pending. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"
#include "stream.h"

/* N bytes, then (once the server's kernel has acknowledged them and the server has had 100 ms
 * to read) SHUT_WR: the FIN arrives on its own, after the data. A small receive buffer keeps
 * most of a large echo waiting in the server when the FIN comes. */
static void half_close_n(struct casectx *c, uint64_t n)
{
	const struct sockbufs b = { .rcvbuf = 16 * 1024, .sndbuf = 1 << 20 };
	char expected[96];
	uint8_t *data = NULL;
	struct flow f;
	int fd, rc;

	snprintf(expected, sizeof(expected), "%llu bytes back, then EOF (no RST)",
		(unsigned long long)n);
	fd = case_connect(c, &c->t->tcp, &b, expected);
	if (fd < 0)
		return;
	flow_init(&f, case_rand(c), n);
	if (n) {
		data = malloc(n);
		if (!data) {
			case_fail(c, expected, "malloc failed");
			goto out;
		}
		stream_fill(f.seed, 0, 0, data, n);
		rc = net_send_all(fd, data, n, c->deadline_ns);
		if (rc < 0) {
			case_fail(c, expected, "sending failed: %s", errno_name(-rc));
			goto out;
		}
		uint64_t ack_until = now_ns() + SEC;
		net_wait_acked(fd, ack_until < c->deadline_ns ? ack_until : c->deadline_ns);
		sleep_ns(100 * MS);
	}
	if (shutdown(fd, SHUT_WR) < 0) {
		case_fail(c, expected, "shutdown(SHUT_WR) failed");
		goto out;
	}
	f.sent = n;
	f.expect_eof = true;
	flow_run(c, fd, &f);
	flow_report(c, &f, expected);
out:
	free(data);
	close(fd);
}

void case_half_close_0(struct casectx *c) { half_close_n(c, 0); }
void case_half_close_5(struct casectx *c) { half_close_n(c, 5); }
void case_half_close_100000(struct casectx *c) { half_close_n(c, 100000); }

void case_half_close_delayed_3s(struct casectx *c)
{
	const uint64_t n = 256 * 1024;
	const char *expected = "256 KiB sent, SHUT_WR, nothing read for 3 s: then all 256 KiB "
		"back and EOF";
	/* Everything fits in our send buffer at once; the 8 KiB receive buffer leaves most of
	 * the echo with the server for the whole 3 s. */
	const struct sockbufs b = { .rcvbuf = 8 * 1024, .sndbuf = 2 << 20 };
	uint8_t *data = malloc(n);
	struct flow f;
	int fd, rc;

	if (!data) {
		case_fail(c, expected, "malloc failed");
		return;
	}
	fd = case_connect(c, &c->t->tcp, &b, expected);
	if (fd < 0)
		goto out;
	flow_init(&f, case_rand(c), n);
	stream_fill(f.seed, 0, 0, data, n);
	rc = net_send_all(fd, data, n, c->deadline_ns);
	if (rc == 0 && shutdown(fd, SHUT_WR) < 0)
		rc = -1;
	if (rc < 0) {
		case_fail(c, expected, "sending 256 KiB and SHUT_WR failed: %s", errno_name(-rc));
		close(fd);
		goto out;
	}
	sleep_ns(3 * SEC);
	f.sent = n;
	f.expect_eof = true;
	flow_run(c, fd, &f);
	flow_report(c, &f, expected);
	close(fd);
out:
	free(data);
}

void case_half_close_slow_drain(struct casectx *c)
{
	const struct sockbufs b = { .rcvbuf = 64 * 1024 };
	struct flow f;

	/* Written as fast as the server takes it, SHUT_WR right after the last byte, read at
	 * 2 MiB/s: the server holds megabytes of echo when the FIN arrives and must drain them
	 * all before its own FIN. */
	flow_init(&f, case_rand(c), 8 << 20);
	f.read_rate = 2 << 20;
	f.rmin = f.rmax = 16 * 1024;
	f.shut_wr = true;
	f.expect_eof = true;
	case_flow(c, &c->t->tcp, &b, &f,
		"8 MiB, SHUT_WR with most of it pending, read at 2 MiB/s: all back, then EOF");
}

void case_half_close_same_flight(struct casectx *c)
{
	const char *expected = "1000 bytes arriving with the FIN in one segment: all back, then EOF";
	const uint64_t n = 1000;
	uint8_t data[1000];
	struct flow f;
	int one = 1, fd, rc;

	fd = case_connect(c, &c->t->tcp, NULL, expected);
	if (fd < 0)
		return;
	flow_init(&f, case_rand(c), n);
	stream_fill(f.seed, 0, 0, data, n);
	/* Corked, the data waits in our send queue; shutdown() then puts the FIN on that same
	 * segment and pushes it. The server reads data and EOF in one go. */
	setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one));
	rc = net_send_all(fd, data, n, c->deadline_ns);
	if (rc == 0 && shutdown(fd, SHUT_WR) < 0)
		rc = -1;
	if (rc < 0) {
		case_fail(c, expected, "sending with TCP_CORK and SHUT_WR failed");
		close(fd);
		return;
	}
	f.sent = n;
	f.expect_eof = true;
	flow_run(c, fd, &f);
	flow_report(c, &f, expected);
	close(fd);
}
