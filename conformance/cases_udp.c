/* UDP echo (RFC 862): each datagram comes back as one datagram with the same bytes, to the
 * socket that sent it. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"
#include "stream.h"

#define UDP_MAX 65507

static int udp_socket(struct casectx *c, const char *expected)
{
	int fd, rc = net_connect_start(&c->t->udp, NULL, SOCK_DGRAM, &fd);

	if (rc < 0) {
		case_fail(c, expected, "UDP socket towards %s: %s", c->t->udp.text,
			errno_name(-rc));
		return -1;
	}
	return fd;
}

/* One datagram of n bytes; the reply must be one datagram with the same n bytes. Three tries
 * (UDP may lose a datagram), 1 s each. */
static void udp_size(struct casectx *c, size_t n)
{
	char expected[96];
	uint8_t *out = malloc(UDP_MAX), *in = malloc(UDP_MAX + 1);
	int fd, tries = 0;

	snprintf(expected, sizeof(expected), "a %zu-byte datagram comes back as one identical "
		"datagram", n);
	if (!out || !in) {
		case_fail(c, expected, "malloc failed");
		goto out;
	}
	fd = udp_socket(c, expected);
	if (fd < 0)
		goto out;
	stream_fill(case_rand(c), 0, 0, out, n);
	for (;;) {
		uint64_t until = now_ns() + SEC;
		int rv;

		if (until > c->deadline_ns)
			until = c->deadline_ns;
		if (send(fd, out, n, 0) != (ssize_t)n) {
			case_fail(c, expected, "send: %s", errno_name(errno));
			break;
		}
		tries++;
		rv = net_wait(fd, POLLIN, until);
		if (rv == -ETIMEDOUT && tries < 3 && now_ns() < c->deadline_ns)
			continue;
		if (rv < 0) {
			case_fail(c, expected, "no reply to %d datagrams", tries);
			break;
		}
		/* MSG_TRUNC: the real length even if the reply is longer than expected. */
		ssize_t r = recv(fd, in, UDP_MAX + 1, MSG_TRUNC);
		if (r < 0)
			case_fail(c, expected, "recv: %s", errno_name(errno));
		else if ((size_t)r != n)
			case_fail(c, expected, "the reply had %zd bytes", r);
		else if (memcmp(in, out, n) != 0)
			case_fail(c, expected, "the reply had the right length but other bytes");
		break;
	}
	case_num(c, "datagrams_sent", tries);
	close(fd);
out:
	free(out);
	free(in);
}

void case_udp_size_0(struct casectx *c) { udp_size(c, 0); }
void case_udp_size_1(struct casectx *c) { udp_size(c, 1); }
void case_udp_size_1472(struct casectx *c) { udp_size(c, 1472); }
void case_udp_size_65507(struct casectx *c) { udp_size(c, 65507); }

/* UDP-MANY-1000: 10 sockets x 100 datagrams, each tagged with its socket and sequence. */
enum { USOCKS = 10, UPER = 100, UWINDOW = 8, UMSG = 64 };

struct usock {
	int fd;
	int next;                       /* next sequence number to send */
	int answered;
	uint64_t sent_at[UPER];         /* 0: not outstanding */
	uint8_t seen[UPER];
	int resends;
};

static void udp_msg(uint8_t *buf, uint64_t seed, int sock, int seq)
{
	char tag[32];
	int n = snprintf(tag, sizeof(tag), "s%02d q%03d ", sock, seq);

	stream_fill(seed, (uint64_t)(sock * 1000 + seq), 0, buf, UMSG);
	memcpy(buf, tag, (size_t)n);
}

void case_udp_many_1000(struct casectx *c)
{
	const char *expected = "1000 datagrams from 10 sockets: each comes back to its own "
		"socket, unchanged, none crossed";
	struct usock us[USOCKS];
	struct pollfd pf[USOCKS];
	uint64_t seed = case_rand(c);
	int answered = 0, crossed = 0, resends = 0;

	for (int s = 0; s < USOCKS; s++) {
		memset(&us[s], 0, sizeof(us[s]));
		us[s].fd = udp_socket(c, expected);
		if (us[s].fd < 0) {
			for (int k = 0; k < s; k++)
				close(us[k].fd);
			return;
		}
	}
	while (answered < USOCKS * UPER && !case_failed(c)) {
		uint64_t now = now_ns();

		if (now >= c->deadline_ns) {
			case_fail(c, expected, "timed out with %d of 1000 answered", answered);
			break;
		}
		/* Keep up to UWINDOW datagrams outstanding per socket; resend one that has waited
		 * 300 ms (loss is allowed in UDP, crossing is not). */
		for (int s = 0; s < USOCKS; s++) {
			struct usock *u = &us[s];
			int outstanding = 0;
			uint8_t msg[UMSG];

			for (int q = 0; q < u->next; q++) {
				if (!u->sent_at[q] || u->seen[q])
					continue;
				outstanding++;
				if (now - u->sent_at[q] > 300 * MS) {
					udp_msg(msg, seed, s, q);
					send(u->fd, msg, UMSG, 0);
					u->sent_at[q] = now;
					resends++;
				}
			}
			while (outstanding < UWINDOW && u->next < UPER) {
				udp_msg(msg, seed, s, u->next);
				send(u->fd, msg, UMSG, 0);
				u->sent_at[u->next++] = now;
				outstanding++;
			}
			pf[s] = (struct pollfd){ .fd = u->fd, .events = POLLIN };
		}
		if (poll(pf, USOCKS, 50) <= 0)
			continue;
		for (int s = 0; s < USOCKS; s++) {
			uint8_t in[UMSG + 1], want[UMSG];
			int sock, seq;
			ssize_t r;

			if (!(pf[s].revents & POLLIN))
				continue;
			while ((r = recv(us[s].fd, in, sizeof(in), MSG_DONTWAIT)) >= 0) {
				in[r < (ssize_t)sizeof(in) ? r : UMSG] = '\0';
				if (r != UMSG || sscanf((char *)in, "s%d q%d", &sock, &seq) != 2 ||
						sock < 0 || sock >= USOCKS || seq < 0 || seq >= UPER) {
					case_fail(c, expected, "socket %d received a %zd-byte datagram "
						"that none of them sent", s, r);
					break;
				}
				udp_msg(want, seed, sock, seq);
				if (memcmp(in, want, UMSG) != 0) {
					case_fail(c, expected, "datagram s%02d q%03d came back changed",
						sock, seq);
					break;
				}
				if (sock != s) {
					crossed++;
					case_fail(c, expected, "socket %d received socket %d's datagram "
						"%d", s, sock, seq);
					break;
				}
				if (!us[s].seen[seq]) {
					us[s].seen[seq] = 1;
					answered++;
				}
			}
		}
	}
	case_num(c, "answered", answered);
	case_num(c, "resent", resends);
	case_num(c, "crossed", crossed);
	for (int s = 0; s < USOCKS; s++)
		close(us[s].fd);
}
