/* Discovery of what the target offers (target.h). */
#include "target.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "netio.h"
#include "probe.h"

int target_wait_accepting(const struct target *t, struct spawned *sp, uint64_t wait_ns,
	char *why, size_t n)
{
	uint64_t until = now_ns() + wait_ns;
	char how[96];
	int fd, rc;

	do {
		if (sp && spawn_exited(sp, how, sizeof(how))) {
			snprintf(why, n, "the server %s before %s accepted a connection", how,
				t->tcp.text);
			return -ESRCH;
		}
		rc = net_connect(&t->tcp, until, NULL, &fd);
		if (rc == 0) {
			close(fd);
			return 0;
		}
		sleep_ns(50000000);
	} while (now_ns() < until);
	snprintf(why, n, "cannot connect to %s: %s", t->tcp.text, errno_name(-rc));
	return rc;
}

/* Does the target answer UDP? One byte, two tries of 300 ms. */
static bool udp_answers(const struct endpoint *ep)
{
	int fd;
	bool ok = false;

	if (net_connect_start(ep, NULL, SOCK_DGRAM, &fd) < 0)
		return false;
	for (int i = 0; i < 2 && !ok; i++) {
		char b = 'u';
		if (send(fd, &b, 1, 0) == 1 && net_wait(fd, POLLIN, now_ns() + 300000000u) > 0)
			ok = recv(fd, &b, 1, 0) == 1;
	}
	close(fd);
	return ok;
}

static bool is_ipv4_loopback(const struct endpoint *ep)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ep->sa;

	return ep->family == AF_INET && (ntohl(in->sin_addr.s_addr) >> 24) == 127;
}

static void find_ipv6(struct target *t, const struct spawned *sp)
{
	const char *why;
	int fd, rc;

	if (t->tcp.family == AF_UNIX) {
		snprintf(t->v6_why, sizeof(t->v6_why), "the target is a unix socket");
		return;
	}
	if (t->tcp.family == AF_INET6) {
		t->v6 = t->tcp;
		t->v6_ok = true;
		return;
	}
	for (int i = 0; sp && i < sp->nlines; i++)
		if (sp->lines[i][0] == '[' && endpoint_parse(sp->lines[i], &t->v6, &why) == 0) {
			t->v6_ok = true;
			return;
		}
	if (!is_ipv4_loopback(&t->tcp)) {
		snprintf(t->v6_why, sizeof(t->v6_why), "no IPv6 address known for %s", t->tcp.text);
		return;
	}
	/* The same port on ::1: where a dual-stack or second listener would be. */
	endpoint_parse("[::1]:0", &t->v6, &why);
	endpoint_set_port(&t->v6, endpoint_port(&t->tcp));
	rc = net_connect(&t->v6, now_ns() + 1000000000u, NULL, &fd);
	if (rc == 0) {
		close(fd);
		t->v6_ok = true;
	} else {
		snprintf(t->v6_why, sizeof(t->v6_why), "the server does not listen on %s (%s)",
			t->v6.text, errno_name(-rc));
	}
}

static void find_udp(struct target *t, const struct spawned *sp, bool force_udp)
{
	const char *why;

	t->udp = t->tcp;
	for (int i = 0; sp && i < sp->nlines; i++)
		if (strncmp(sp->lines[i], "udp:", 4) == 0 &&
				endpoint_parse(sp->lines[i] + 4, &t->udp, &why) == 0) {
			t->udp_ok = true;
			return;
		}
	if (t->tcp.family == AF_UNIX) {
		t->udp_why = "the target is a unix socket";
		return;
	}
	if (force_udp || udp_answers(&t->udp))
		t->udp_ok = true;
	else
		t->udp_why = "the target does not answer UDP (--udp makes these cases run and fail)";
}

void target_discover(struct target *t, const struct spawned *sp, bool force_udp)
{
	t->local = t->tcp.family != AF_UNIX && probe_tcp_listening(endpoint_port(&t->tcp));
	find_udp(t, sp, force_udp);
	find_ipv6(t, sp);
}

const char *target_unmet_need(const struct conf_case *cc, const struct target *t)
{
	if ((cc->needs & NEED_PID) && !t->pid)
		return "white-box case: needs the server's pid (--server-pid or --exec)";
	if ((cc->needs & NEED_UDP) && !t->udp_ok)
		return t->udp_why;
	if ((cc->needs & NEED_IP) && t->tcp.family == AF_UNIX)
		return "needs a TCP target (this one is a unix socket)";
	if ((cc->needs & NEED_LOCAL) && !t->local)
		return "needs a TCP target whose sockets show in this namespace's /proc/net/tcp";
	return NULL;
}
