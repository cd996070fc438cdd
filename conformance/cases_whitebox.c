/* White-box cases: with the server's pid, look at what it holds (fds) and what it burns (CPU)
 * when it should be doing nothing. */
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cases.h"
#include "clock.h"
#include "stream.h"

void case_wb_fd_baseline(struct casectx *c)
{
	enum { N = 50 };
	const char *expected = "after 50 clients echo and disconnect, the server's fd count is "
		"back at its baseline within 1 s";
	struct leakcheck lk;
	int fds[N], opened = 0, peak = 0;

	leak_begin(c, &lk);
	for (; opened < N; opened++) {
		struct flow f;

		fds[opened] = case_connect(c, &c->t->tcp, NULL, expected);
		if (fds[opened] < 0)
			break;
		leak_add_port(&lk, fds[opened]);
		flow_init(&f, case_rand(c), 1000);
		if (flow_run(c, fds[opened], &f) < 0) {
			flow_report(c, &f, expected);
			opened++;
			break;
		}
	}
	if (probe_fds(c->t->pid, &peak, NULL) == 0)
		case_num(c, "server_fds_with_50_clients", peak);
	/* A third leave by FIN, a third by SHUT_WR then close, a third by RST. The half-closed
	 * ones wait for the server's EOF together, for at most 1 s. */
	uint64_t eof_until = now_ns() + SEC;
	if (eof_until > c->deadline_ns)
		eof_until = c->deadline_ns;
	for (int i = 1; i < opened; i += 3)
		shutdown(fds[i], SHUT_WR);
	for (int i = 0; i < opened; i++) {
		if (i % 3 == 1) {
			uint64_t extra;
			net_read_to_eof(fds[i], eof_until, &extra);
		}
		if (i % 3 == 2)
			net_close_rst(fds[i]);
		else
			close(fds[i]);
	}
	leak_end(c, &lk, SEC);
}

void case_wb_idle_cpu(struct casectx *c)
{
	const char *expected = "with one idle client and one half-closed client that is not "
		"reading its echo, the server uses under 5% of a CPU";
	const struct sockbufs small = { .rcvbuf = 8 * 1024, .sndbuf = 1 << 20 };
	uint64_t seed = case_rand(c);
	uint8_t *data = malloc(256 * 1024);
	struct flow f;
	int idle = -1, slow = -1;

	if (!data) {
		case_fail(c, expected, "malloc failed");
		return;
	}
	idle = case_connect(c, &c->t->tcp, NULL, expected);
	if (idle < 0)
		goto out;
	flow_init(&f, case_rand(c), 100);
	if (flow_run(c, idle, &f) < 0) {
		flow_report(c, &f, expected);
		goto out;
	}
	/* The second client owes itself 256 KiB of echo it does not read: the server must wait
	 * for it in poll, not in a loop. */
	slow = case_connect(c, &c->t->tcp, &small, expected);
	if (slow < 0)
		goto out;
	stream_fill(seed, 0, 0, data, 256 * 1024);
	if (net_send_all(slow, data, 256 * 1024, c->deadline_ns) < 0 || shutdown(slow, SHUT_WR)) {
		case_fail(c, expected, "could not send 256 KiB and SHUT_WR");
		goto out;
	}
	sleep_ns(200 * MS);
	if (case_expect_cpu_quiet(c, expected, 5, "cpu_percent_idle", "while idle") < 0)
		goto out;
	/* The windows may have used the case's time: the read-back gets --timeout of its own. */
	case_progress(c, UINT64_MAX);
	/* And the waiting echo is still all there. */
	flow_init(&f, seed, 256 * 1024);
	f.sent = f.total;
	f.expect_eof = true;
	flow_run(c, slow, &f);
	flow_report(c, &f, expected);
out:
	if (idle >= 0)
		close(idle);
	if (slow >= 0)
		close(slow);
	free(data);
}
