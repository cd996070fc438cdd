/* Echo correctness: bytes back equal bytes sent, for any values, sizes, fragmentation and
 * number of clients (RFC 862). */
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

/* Big enough that a "one write" case is accepted by one send() call. */
static const struct sockbufs big_sndbuf = { .sndbuf = 1 << 20 };

void case_echo_bytes_256(struct casectx *c)
{
	static const uint8_t tail[] = "\r\n\r\n\0\n\r\0\n\n\r\r";
	uint8_t data[1024];
	struct flow f;

	/* Ascending, descending, then line-ending and NUL runs: text-minded servers trip here. */
	for (int i = 0; i < 256; i++) {
		data[i] = (uint8_t)i;
		data[256 + i] = (uint8_t)(255 - i);
	}
	for (int i = 512; i < 1024; i++)
		data[i] = tail[i % (sizeof(tail) - 1)];
	flow_init(&f, 0, sizeof(data));
	f.data = data;
	f.wmin = f.wmax = sizeof(data);
	case_flow(c, &c->t->tcp, &big_sndbuf, &f, "all 1024 bytes (every value 0-255) back unchanged");
}

void case_echo_onebyte_2000(struct casectx *c)
{
	struct flow f;

	flow_init(&f, case_rand(c), 2000);
	f.wmin = f.wmax = 1;
	case_flow(c, &c->t->tcp, NULL, &f, "2000 one-byte writes echoed in order");
}

void case_echo_pipeline_5000(struct casectx *c)
{
	enum { N = 5000, LINE = 23 };   /* "message 00001 of 05000\n" */
	uint8_t *data = malloc((size_t)N * LINE + 1);
	struct flow f;

	if (!data) {
		case_fail(c, "memory for the test data", "malloc failed");
		return;
	}
	for (int i = 0; i < N; i++)
		snprintf((char *)data + (size_t)i * LINE, LINE + 1, "message %05d of %05d\n", i + 1,
			N);
	flow_init(&f, 0, (uint64_t)N * LINE);
	f.data = data;
	f.wmin = f.wmax = (size_t)N * LINE;
	case_flow(c, &c->t->tcp, &big_sndbuf, &f,
		"5000 newline-terminated messages sent in one write come back in order");
	free(data);
}

static void echo_size(struct casectx *c, size_t n)
{
	char expected[96];
	struct flow f;

	snprintf(expected, sizeof(expected), "a %zu-byte write comes back unchanged", n);
	flow_init(&f, case_rand(c), n);
	f.wmin = f.wmax = n;
	case_flow(c, &c->t->tcp, &big_sndbuf, &f, expected);
}

void case_echo_size_1(struct casectx *c) { echo_size(c, 1); }
void case_echo_size_4095(struct casectx *c) { echo_size(c, 4095); }
void case_echo_size_4096(struct casectx *c) { echo_size(c, 4096); }
void case_echo_size_4097(struct casectx *c) { echo_size(c, 4097); }
void case_echo_size_65535(struct casectx *c) { echo_size(c, 65535); }
void case_echo_size_65536(struct casectx *c) { echo_size(c, 65536); }
void case_echo_size_65537(struct casectx *c) { echo_size(c, 65537); }

static void echo_bulk(struct casectx *c, uint64_t n, const char *expected)
{
	struct flow f;

	flow_init(&f, case_rand(c), n);
	f.hash = true;
	case_flow(c, &c->t->tcp, NULL, &f, expected);
}

void case_echo_bulk_1m(struct casectx *c)
{
	echo_bulk(c, 1 << 20, "1 MiB back intact (same FNV-1a hash) while reading concurrently");
}

void case_echo_bulk_16m(struct casectx *c)
{
	echo_bulk(c, 16 << 20, "16 MiB back intact (same FNV-1a hash) while reading concurrently");
}

void case_echo_frag_write(struct casectx *c)
{
	struct flow f;

	/* Writes of 1..3000 bytes with short pauses, so they travel as separate segments. */
	flow_init(&f, case_rand(c), 256 * 1024);
	f.wmin = 1;
	f.wmax = 3000;
	f.wpause_every = 8;
	f.wpause_ns = 200000;
	case_flow(c, &c->t->tcp, NULL, &f, "256 KiB in random 1-3000 byte writes back intact");
}

void case_echo_frag_read(struct casectx *c)
{
	/* A small receive buffer and small, paused reads: the server's sends come up short and
	 * must be completed, not dropped. */
	const struct sockbufs b = { .rcvbuf = 32 * 1024 };
	struct flow f;

	flow_init(&f, case_rand(c), 1 << 20);
	f.rmin = 1;
	f.rmax = 1500;
	f.rpause_every = 16;
	f.rpause_ns = 200000;
	case_flow(c, &c->t->tcp, &b, &f, "1 MiB read back in random 1-1500 byte reads, intact");
}

void case_echo_ipv6(struct casectx *c)
{
	struct flow f;

	if (!c->t->v6_ok) {
		case_skip(c, "%s", c->t->v6_why);
		return;
	}
	case_note(c, "address", "%s", c->t->v6.text);
	flow_init(&f, case_rand(c), 64 * 1024);
	case_flow(c, &c->t->v6, NULL, &f, "64 KiB echoed over IPv6");
}

/* ECHO-CLIENTS-200: every client's own bytes come back to it and to no one else. */
#define NCLIENTS 200
#define CLIENT_BYTES (16 * 1024)
#define CLIENT_CHUNK 4096

struct client {
	int fd;
	uint8_t *data;
	size_t sent, rcvd;
};

/* Which other client's data holds these bytes (for the report), or -1. */
static int whose_bytes(const struct client *cl, int self, const uint8_t *p, size_t n)
{
	if (n < 8)
		return -1;
	for (int j = 0; j < NCLIENTS; j++)
		if (j != self && memmem(cl[j].data, CLIENT_BYTES, p, 8))
			return j;
	return -1;
}

static int clients_connect(struct casectx *c, struct client *cl)
{
	/* One at a time, paced to the server's accept queue: this case is about cross-talk, not
	 * the listen backlog (LIMIT-BURST-200 is). All 200 stay connected. */
	for (int i = 0; i < NCLIENTS; i++) {
		int rc;

		case_pace_connect(c);
		rc = net_connect(&c->t->tcp, c->deadline_ns, NULL, &cl[i].fd);
		if (rc < 0) {
			case_fail(c, "200 clients connected at once", "connect %d failed: %s", i + 1,
				errno_name(-rc));
			return -1;
		}
	}
	return 0;
}

/* Closes the clients and, after a failure, waits (at most 2 s) until the server has closed its
 * side of each: a server that mixes up clients would otherwise go on sending their leftover
 * bytes to whichever client comes next, and fail the next case by chance. */
static void clients_close(struct casectx *c, struct client *cl)
{
	struct portset *ports = case_failed(c) && c->t->local ? calloc(1, sizeof(*ports)) : NULL;
	int left;

	for (int i = 0; cl && i < NCLIENTS; i++) {
		if (cl[i].fd >= 0) {
			if (ports)
				portset_add(ports, net_local_port(cl[i].fd));
			close(cl[i].fd);
		}
		free(cl[i].data);
	}
	if (ports)
		probe_tcp_wait_closed(endpoint_port(&c->t->tcp), ports, now_ns() + 2 * SEC, &left);
	free(ports);
}

void case_echo_clients_200(struct casectx *c)
{
	struct client *cl = calloc(NCLIENTS, sizeof(*cl));
	struct pollfd *pf = calloc(NCLIENTS, sizeof(*pf));
	uint8_t buf[CLIENT_CHUNK * 2];
	int complete = 0;

	if (!cl || !pf) {
		case_fail(c, "memory for 200 clients", "calloc failed");
		goto out;
	}
	for (int i = 0; i < NCLIENTS; i++) {
		cl[i].fd = -1;
		cl[i].data = malloc(CLIENT_BYTES);
		if (!cl[i].data) {
			case_fail(c, "memory for 200 clients", "malloc failed");
			goto out;
		}
		/* One stream per client (key = client): a wrong byte is traced to its owner. */
		stream_fill(c->t->seed ^ (0xc11e47ull << 16), (uint64_t)i, 0, cl[i].data,
			CLIENT_BYTES);
	}
	if (clients_connect(c, cl) < 0)
		goto out;
	/* All 200 are connected: now every client sends its 16 KiB in 4 KiB pieces, round robin,
	 * while all of them read. */
	while (complete < NCLIENTS) {
		uint64_t now = now_ns();

		if (now >= c->deadline_ns) {
			case_fail(c, "each of 200 clients gets exactly its own 16 KiB back",
				"timed out: %d of 200 clients had all their bytes back", complete);
			break;
		}
		for (int i = 0; i < NCLIENTS; i++) {
			pf[i].fd = cl[i].rcvd < CLIENT_BYTES ? cl[i].fd : -1;
			pf[i].events = POLLIN | (cl[i].sent < CLIENT_BYTES ? POLLOUT : 0);
		}
		if (poll(pf, NCLIENTS, (int)((c->deadline_ns - now) / MS) + 1) <= 0)
			continue;
		for (int i = 0; i < NCLIENTS && !case_failed(c); i++) {
			struct client *k = &cl[i];

			if ((pf[i].revents & POLLOUT) && k->sent < CLIENT_BYTES) {
				ssize_t w = send(k->fd, k->data + k->sent, CLIENT_CHUNK, MSG_NOSIGNAL);
				if (w > 0)
					k->sent += (size_t)w;
			}
			if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			ssize_t r = recv(k->fd, buf, sizeof(buf), 0);
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r <= 0) {
				case_fail(c, "each of 200 clients gets exactly its own 16 KiB back",
					"client %d: %s after %zu of %d bytes", i + 1,
					r == 0 ? "EOF" : errno_name(errno), k->rcvd, CLIENT_BYTES);
				break;
			}
			if (k->rcvd + (size_t)r > CLIENT_BYTES ||
					memcmp(buf, k->data + k->rcvd, (size_t)r) != 0) {
				size_t off = 0;
				while (off < (size_t)r && k->rcvd + off < CLIENT_BYTES &&
						buf[off] == k->data[k->rcvd + off])
					off++;
				int who = whose_bytes(cl, i, buf + off, (size_t)r - off);
				if (who >= 0)
					case_fail(c, "each of 200 clients gets exactly its own 16 KiB back",
						"client %d received client %d's bytes at offset %zu",
						i + 1, who + 1, k->rcvd + off);
				else
					case_fail(c, "each of 200 clients gets exactly its own 16 KiB back",
						"client %d: wrong byte at offset %zu", i + 1,
						k->rcvd + off);
				break;
			}
			k->rcvd += (size_t)r;
			if (k->rcvd == CLIENT_BYTES)
				complete++;
		}
		if (case_failed(c))
			break;
	}
	case_num(c, "clients_complete", complete);
out:
	clients_close(c, cl);
	free(cl);
	free(pf);
}
