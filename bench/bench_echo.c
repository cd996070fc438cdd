/* One echo round trip on loopback per backend: a message of N bytes written on a TCP connection
 * to an in-process echo server (servers/server.h, one event-loop thread on 127.0.0.1:0) and
 * read back whole. The time is wall time (the work is in the kernel and the server thread,
 * while this thread sleeps in recv), so it is the latency of one request/response at
 * concurrency 1, not the server's throughput under load (that is echo-load's job).
 *
 *   echo_rtt/BACKEND/64       items_per_second = round trips per second
 *   echo_rtt/BACKEND/4096     bytes_per_second = payload echoed per second (one direction)
 *
 * A backend that cannot run on this kernel is reported as "skipped: REASON". Every socket wait
 * is bounded by IO_TIMEOUT_S, so a stuck backend fails the run instead of hanging it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "addr.h"
#include "gbench_c.h"
#include "server.h"
#include "sock.h"
#include "stream.h"

#define IO_TIMEOUT_S 5

struct echo_run {
	struct server *srv;
	int fd;
	uint8_t *out, *in;
	char open_why[SERVER_WHY_MAX];
};

static void echo_run_close(struct echo_run *r)
{
	if (r->fd >= 0)
		close(r->fd);
	if (r->srv) {
		server_stop(r->srv);
		server_close(r->srv);
	}
	free(r->out);
	free(r->in);
}

/* Starts the server and connects to it. Returns 0, or -errno with *why naming the step. */
static int echo_run_open(struct echo_run *r, const char *backend, size_t n, const char **why)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	struct server_config cfg;
	struct server *srv;
	struct endpoint ep;
	int ret;

	r->srv = NULL;
	r->fd = -1;
	r->out = r->in = NULL;
	server_config_defaults(&cfg);
	cfg.backend = backend;
	cfg.threads = 1;
	cfg.nlisten = 1;
	if ((ret = endpoint_parse("127.0.0.1:0", &cfg.listen[0], why)) < 0)
		return ret;
	if ((ret = server_open(&cfg, &srv, r->open_why)) < 0) {
		*why = r->open_why;
		return ret;
	}
	if ((ret = server_start(srv, why)) < 0) {
		/* server_stop() is for a started server: this one only needs closing */
		server_close(srv);
		return ret;
	}
	r->srv = srv;
	if ((ret = endpoint_parse(server_listener_text(r->srv, 0), &ep, why)) < 0)
		return ret;
	*why = "connect to the in-process server";
	r->fd = socket(ep.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->fd < 0)
		return -errno;
	/* SO_SNDTIMEO also bounds connect() on Linux. */
	if (setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
	    setsockopt(r->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
	    connect(r->fd, (const struct sockaddr *)&ep.sa, ep.len) < 0)
		return -errno;
	/* Without it Nagle holds back small writes and the round trip measures delayed ACKs. */
	if ((ret = sock_set_nodelay(r->fd)) < 0)
		return ret;
	*why = "out of memory";
	r->out = malloc(n);
	r->in = malloc(n);
	if (!r->out || !r->in)
		return -ENOMEM;
	stream_fill(1, 0, 0, r->out, n);
	return 0;
}

/* Sends out[0..n) and reads n bytes back. Returns 0, -EPROTO when the echo differs, -ETIMEDOUT
 * when a wait ran out, -ECONNRESET when the server closed, or another -errno. */
static int round_trip(struct echo_run *r, size_t n)
{
	size_t done;
	ssize_t k;

	for (done = 0; done < n; done += (size_t)k) {
		k = send(r->fd, r->out + done, n - done, MSG_NOSIGNAL);
		if (k < 0 && errno != EINTR)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (k < 0)
			k = 0;
	}
	for (done = 0; done < n; done += (size_t)k) {
		k = recv(r->fd, r->in + done, n - done, 0);
		if (k == 0)
			return -ECONNRESET;
		if (k < 0 && errno != EINTR)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (k < 0)
			k = 0;
	}
	return memcmp(r->out, r->in, n) == 0 ? 0 : -EPROTO;
}

/* One row of the backend table, probed once in main(). */
struct bench_backend {
	const char *name;
	const char *unusable;   /* NULL, or why it cannot run here */
};

static void bm_echo_rtt(struct gb_state *st, void *arg)
{
	const struct bench_backend *bb = arg;
	const char *backend = bb->name;
	size_t n = (size_t)gb_range(st, 0);
	struct echo_run r;
	const char *why = "";
	char msg[256];
	int ret;

	if (bb->unusable) {
		snprintf(msg, sizeof msg, "backend %s: %s", backend, bb->unusable);
		gb_skip(st, msg);
		return;
	}
	if ((ret = echo_run_open(&r, backend, n, &why)) < 0) {
		snprintf(msg, sizeof msg, "%s: %s: %s", backend, why, strerror(-ret));
		gb_skip_with_error(st, msg);
	}
	while (gb_keep_running(st)) {
		if ((ret = round_trip(&r, n)) < 0) {
			snprintf(msg, sizeof msg, "%s: round trip of %zu bytes: %s", backend, n,
				 ret == -EPROTO ? "echo differs from what was sent" : strerror(-ret));
			gb_skip_with_error(st, msg);
			break;
		}
	}
	gb_set_items_processed(st, gb_iterations(st));
	gb_set_bytes_processed(st, gb_iterations(st) * (int64_t)n);
	echo_run_close(&r);
}

int main(int argc, char **argv)
{
	static struct bench_backend bbs[64];

	for (int i = 0; server_backend_name(i) && i < 64; i++) {
		struct bench_backend *bb = &bbs[i];
		char bench_name[64];
		struct gb_bench *b;
		const char *why;

		bb->name = server_backend_name(i);
		bb->unusable = server_backend_probe(bb->name, &why) < 0 ? why : NULL;
		snprintf(bench_name, sizeof bench_name, "echo_rtt/%s", bb->name);
		b = gb_register(bench_name, bm_echo_rtt, bb);
		gb_bench_arg(b, 64);
		gb_bench_arg(b, 4096);
		gb_bench_real_time(b);
		gb_bench_unit(b, GB_US);
	}
	return gb_main(argc, argv);
}
