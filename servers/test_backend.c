/* test-backend [NAME]: every row of the backend table (or NAME alone) through the server
 * library, in process, as TAP: probe (a skip with the probe's reason when it cannot run here: a
 * kernel or build without io_uring), then a 256 KiB echo read back while sending, a half-close
 * that must give exactly the bytes back and then EOF, and a stop whose stats account for every
 * byte. CHECK failures exit 1 at once, which TAP reports as a failed run. */
#include "check.h"
#include "server.h"
#include "stream.h"

#include <stdio.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAYLOAD (256 * 1024)

/* Sends all of out while reading what comes back into in; then SHUT_WR and reads to EOF.
 * Returns the bytes received, or -errno. Every wait is bounded (poll timeouts). */
static long echo_through(int fd, const unsigned char *out, size_t n, unsigned char *in)
{
	size_t sent = 0, got = 0;
	bool shut = false;

	for (int idle = 0; idle < 50;) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0) };
		int r = poll(&p, 1, 100);

		if (r < 0)
			return -errno;
		if (r == 0) {
			idle++;
			continue;
		}
		if ((p.revents & POLLOUT) && sent < n) {
			ssize_t w = send(fd, out + sent, n - sent > 8192 ? 8192 : n - sent, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN)
				return -errno;
			sent += w > 0 ? (size_t)w : 0;
		}
		if (sent == n && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t rd = recv(fd, in + got, n + 1 - got, MSG_DONTWAIT);
			if (rd == 0)
				return (long)got;  /* EOF */
			if (rd < 0 && errno != EAGAIN)
				return -errno;
			got += rd > 0 ? (size_t)rd : 0;
		}
	}
	return -ETIMEDOUT;
}

static void one_backend(const char *name, unsigned char *out, unsigned char *in)
{
	struct server_config cfg;
	struct server_stats st;
	struct server *srv;
	struct endpoint ep;
	char open_why[SERVER_WHY_MAX];
	const char *why;
	int fd;
	long got;

	server_config_defaults(&cfg);
	cfg.backend = name;
	cfg.bufsize = 4096;  /* far below the payload: the echo must wrap and wait on the peer */
	CHECK_EQ(endpoint_parse("127.0.0.1:0", &cfg.listen[0], &why), 0);
	cfg.nlisten = 1;
	CHECK_EQ(server_open(&cfg, &srv, open_why), 0);
	CHECK_EQ(server_start(srv, &why), 0);
	CHECK_EQ(endpoint_parse(server_listener_text(srv, 0), &ep, &why), 0);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(fd >= 0);
	CHECK(connect(fd, (struct sockaddr *)&ep.sa, ep.len) == 0 || errno == EINPROGRESS);
	got = echo_through(fd, out, PAYLOAD, in);
	CHECK_EQ(got, PAYLOAD);
	CHECK(memcmp(in, out, PAYLOAD) == 0);
	close(fd);

	server_stop(srv);
	server_get_stats(srv, &st);
	CHECK_EQ(st.accepted, 1);
	CHECK_EQ(st.bytes_in, PAYLOAD);
	CHECK_EQ(st.bytes_out, PAYLOAD);
	CHECK_EQ(st.resets, 0);
	CHECK_EQ(server_failure(srv), 0);
	server_close(srv);
}

int main(int argc, char **argv)
{
	unsigned char *out = malloc(PAYLOAD), *in = malloc(PAYLOAD + 1);
	int n = 0;

	CHECK(argc <= 2 && out && in);
	CHECK(argc < 2 || server_backend_known(argv[1]));
	stream_fill(1, 0, 0, out, PAYLOAD);
	for (int i = 0; server_backend_name(i); i++)
		n += argc < 2 || strcmp(argv[1], server_backend_name(i)) == 0;
	printf("1..%d\n", n);
	n = 0;
	for (int i = 0; server_backend_name(i); i++) {
		const char *name = server_backend_name(i), *why;

		if (argc == 2 && strcmp(argv[1], name) != 0)
			continue;
		n++;
		if (server_backend_probe(name, &why) < 0) {
			printf("ok %d - %s # SKIP cannot run here: %s\n", n, name, why);
			continue;
		}
		fflush(stdout);
		one_backend(name, out, in);
		printf("ok %d - %s\n", n, name);
	}
	free(out);
	free(in);
	return 0;
}
