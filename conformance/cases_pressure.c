/* Backpressure and fairness: a client that does not read stalls only itself; the server neither
 * loses its data nor buffers it without bound. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"
#include "stream.h"

/* Writes the pattern stream without reading until no progress for `stall_ns`, `want` bytes are
 * in, or `max_ns` passes. Calls sample() every 50 ms when given. Returns bytes sent. */
static uint64_t write_until_stalled(int fd, uint64_t seed, uint64_t want, uint64_t stall_ns,
	uint64_t max_ns, void (*sample)(void *), void *arg)
{
	uint8_t *buf = malloc(64 * 1024);
	uint64_t sent = 0, t0 = now_ns(), last_progress = t0, next_sample = t0;

	if (!buf)
		return 0;
	while (sent < want) {
		uint64_t now = now_ns();
		size_t n = want - sent < 64 * 1024 ? (size_t)(want - sent) : 64 * 1024;
		ssize_t w;

		if (sample && now >= next_sample) {
			sample(arg);
			next_sample = now + 50 * MS;
		}
		if (now - last_progress >= stall_ns || now - t0 >= max_ns)
			break;
		stream_fill(seed, 0, sent, buf, n);
		w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			sent += (uint64_t)w;
			last_progress = now_ns();
		} else if (w < 0 && errno != EAGAIN) {
			break;
		} else {
			net_wait(fd, POLLOUT, now + 20 * MS);
		}
	}
	free(buf);
	return sent;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void case_bp_stall_64m(struct casectx *c)
{
	const char *expected = "while client A sends 64 MiB without reading, client B's round trips "
		"are not held up (p99 under 500 ms; 50 ms is the SHOULD figure, reported); then all "
		"64 MiB reach A intact";
	enum { ROUNDS = 400 };
	uint64_t *rtt = calloc(ROUNDS, sizeof(*rtt));
	int a = -1, b = -1, rounds = 0;
	struct flow f;
	uint64_t stalled_at;

	if (!rtt) {
		case_fail(c, expected, "calloc failed");
		return;
	}
	a = case_connect(c, &c->t->tcp, NULL, expected);
	if (a < 0)
		goto out;
	flow_init(&f, case_rand(c), 64 << 20);
	stalled_at = write_until_stalled(a, f.seed, f.total, 300 * MS, 3 * SEC, NULL, NULL);
	case_num(c, "a_bytes_before_stall", (double)stalled_at);
	b = case_connect(c, &c->t->tcp, NULL, expected);
	if (b < 0)
		goto out;
	/* B: 400 round trips of 32 bytes paced over 1 s, while A's echo is blocked. */
	uint64_t start = now_ns();
	while (rounds < ROUNDS) {
		char msg[32], back[32];
		uint64_t t0;
		size_t got;
		int rc;

		sleep_until_ns(start + (uint64_t)rounds * (SEC / ROUNDS));
		t0 = now_ns();
		memset(msg, 'a' + rounds % 26, sizeof(msg));
		rc = net_send_all(b, msg, sizeof(msg), t0 + SEC);
		if (rc == 0)
			rc = net_recv_exact(b, back, sizeof(back), t0 + SEC, &got);
		if (rc == 0 && memcmp(msg, back, sizeof(msg)) != 0)
			rc = -EBADMSG;
		if (rc < 0) {
			case_fail(c, expected, "client B, round trip %d: %s%s", rounds + 1,
				errno_name(-rc), rc == -ETIMEDOUT ? " (no echo within 1 s: the server "
				"is blocked by client A)" : "");
			goto out;
		}
		rtt[rounds++] = now_ns() - t0;
	}
	qsort(rtt, (size_t)rounds, sizeof(*rtt), cmp_u64);
	uint64_t p99 = rtt[(size_t)ceil(rounds * 0.99) - 1];
	case_num(c, "b_round_trips", rounds);
	case_num(c, "b_p50_ms", (double)rtt[rounds / 2] / 1e6);
	case_num(c, "b_p99_ms", (double)p99 / 1e6);
	case_num(c, "b_max_ms", (double)rtt[rounds - 1] / 1e6);
	/* 50 ms is the SHOULD figure, reported; the verdict takes ten times that. A client really
	 * stuck behind A waits for its 1 s round-trip bound, while a correct server on a busy
	 * machine (a CPU shared with other work) can miss 50 ms by scheduling alone. */
	case_time_limit(c, "b_p99", p99, 50 * MS);
	if (p99 >= 500 * MS)
		case_fail(c, expected, "client B's p99 round trip was %.1f ms", (double)p99 / 1e6);
	/* Now A reads: every byte of the 64 MiB must arrive, in order. */
	f.sent = stalled_at;
	flow_run(c, a, &f);
	flow_report(c, &f, expected);
out:
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	free(rtt);
}

void case_bp_slow_reader(struct casectx *c)
{
	const struct sockbufs b = { .rcvbuf = 32 * 1024 };
	struct flow f;

	flow_init(&f, case_rand(c), 2 << 20);
	f.read_rate = 2 << 20;
	f.rmin = f.rmax = 4096;
	case_flow(c, &c->t->tcp, &b, &f, "2 MiB written at full speed, read at 2 MiB/s: every "
		"byte back, in order");
}

struct rss_watch {
	pid_t pid;
	long base_kib, peak_kib;
};

static void rss_sample(void *arg)
{
	struct rss_watch *w = arg;
	long kib;

	if (probe_rss_kib(w->pid, &kib) == 0 && kib > w->peak_kib)
		w->peak_kib = kib;
}

void case_bp_rss_nonreader(struct casectx *c)
{
	const char *expected = "a client pushing 32 MiB without reading grows the server's RSS by "
		"less than 16 MiB; then every byte it sent comes back";
	const struct sockbufs b = { .rcvbuf = 16 * 1024, .sndbuf = 256 * 1024 };
	struct rss_watch w = { .pid = c->t->pid };
	struct flow f;
	uint64_t sent;
	int fd;

	if (probe_rss_kib(w.pid, &w.base_kib) < 0) {
		case_skip(c, "cannot read /proc/%d/status", (int)w.pid);
		return;
	}
	w.peak_kib = w.base_kib;
	fd = case_connect(c, &c->t->tcp, &b, expected);
	if (fd < 0)
		return;
	flow_init(&f, case_rand(c), 32 << 20);
	sent = write_until_stalled(fd, f.seed, f.total, 500 * MS, 1500 * MS, rss_sample, &w);
	rss_sample(&w);
	case_num(c, "bytes_pushed", (double)sent);
	case_num(c, "server_rss_before_kib", (double)w.base_kib);
	case_num(c, "server_rss_peak_kib", (double)w.peak_kib);
	if (w.peak_kib - w.base_kib >= 16 * 1024)
		case_fail(c, expected, "server RSS grew by %ld KiB while the client did not read "
			"(%llu bytes pushed)", w.peak_kib - w.base_kib, (unsigned long long)sent);
	/* Read back what was sent (and nothing more is sent). */
	f.total = sent;
	f.sent = sent;
	flow_run(c, fd, &f);
	flow_report(c, &f, expected);
	close(fd);
}
