/* echo-conform: runs the catalogue against an echo server and says, case by case, which
 * behaviours hold. See docs/CONFORMANCE.md for the cases and what each checks. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "die.h"
#include "addr.h"
#include "clock.h"
#include "conform.h"
#include "netio.h"
#include "parse.h"
#include "pattern.h"
#include "probe.h"
#include "report.h"
#include "sock.h"
#include "spawn.h"

static struct config {
	const char *target;
	const char *only;
	const char *skip;
	const char *json;
	const char *exec;
	uint64_t timeout_ns;
	uint64_t seed;
	pid_t pid;
	bool list;
	bool must_only;
	bool udp;
	bool overlap;
} cfg = {
	.timeout_ns = 5000000000ull,
	.seed = 0x5eed,
};

static const char usage_text[] =
"Usage: echo-conform [options] TARGET\n"
"       echo-conform [options] --exec 'CMD' [TARGET]\n"
"Runs the echo-server conformance catalogue against TARGET and prints TAP 13 on stdout.\n"
"  TARGET                  127.0.0.1:PORT, [::1]:PORT, HOST:PORT or unix:/path\n"
"  -l, --list              print the catalogue (ID, level, needs, description) and exit\n"
"  -o, --only ID,...       run only these cases; ID* matches a prefix (HALF-CLOSE-*)\n"
"  -s, --skip ID,...       do not run these cases\n"
"  -t, --timeout DUR       how long a case waits for the server on top of its own pauses\n"
"                          (default 5s)\n"
"  -j, --json FILE         also write the results as JSON to FILE\n"
"  -m, --must-only         SHOULD-level failures are shown (TAP # TODO) but not counted\n"
"  -p, --server-pid PID    the server's pid: enables the white-box cases (fds, CPU, RSS,\n"
"                          fd limit)\n"
"  -e, --exec CMD          start the server as /bin/sh -c 'exec CMD', take TARGET from its\n"
"                          `listening ADDR` lines (or wait for TARGET to accept when given),\n"
"                          use its pid, stop it (SIGTERM) at the end\n"
"  -u, --udp               run the UDP cases (they also run when TARGET answers UDP)\n"
"      --overlap           run the cases that mostly wait in the background, alongside the\n"
"                          quick ones (about 8 s faster); only for servers that serve\n"
"                          every client independently\n"
"      --seed N            seed of every random choice (default 24301)\n"
"  -h, --help              this text\n"
"  -V, --version           the version\n"
"Exit status: 0 no case failed, 1 a case failed or the server could not be reached,\n"
"2 usage error.\n";

/* Exactly one line on stderr, exit 2. */
/* Usage errors: one line on stderr, exit 2 (docs/CONTRACTS.md). */
#define usage_error(...) die(2, __VA_ARGS__)

/* Marks the cases an --only/--skip list names. Every item must match at least one case. */
static void select_cases(const char *list, const char *opt, bool *mark)
{
	char *copy = strdup(list), *save = NULL;

	if (!copy)
		exit(1);
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t len = strlen(tok);
		bool prefix = len > 0 && tok[len - 1] == '*', any = false;

		for (int i = 0; i < conf_ncases; i++) {
			const char *id = conf_cases[i].id;
			if (prefix ? strncmp(id, tok, len - 1) == 0 : strcmp(id, tok) == 0) {
				mark[i] = true;
				any = true;
			}
		}
		if (!any)
			usage_error("%s: no case is called '%s' (see --list)", opt, tok);
	}
	free(copy);
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "list", no_argument, NULL, 'l' },
		{ "only", required_argument, NULL, 'o' },
		{ "skip", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", required_argument, NULL, 'j' },
		{ "must-only", no_argument, NULL, 'm' },
		{ "server-pid", required_argument, NULL, 'p' },
		{ "exec", required_argument, NULL, 'e' },
		{ "udp", no_argument, NULL, 'u' },
		{ "seed", required_argument, NULL, 'S' },
		{ "overlap", no_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":lo:s:t:j:mp:e:uhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': cfg.list = true; break;
		case 'o': cfg.only = optarg; break;
		case 's': cfg.skip = optarg; break;
		case 'j': cfg.json = optarg; break;
		case 'm': cfg.must_only = true; break;
		case 'e': cfg.exec = optarg; break;
		case 'u': cfg.udp = true; break;
		case 'O': cfg.overlap = true; break;
		case 't':
			if (parse_duration_ns(optarg, &cfg.timeout_ns) < 0 || cfg.timeout_ns == 0 ||
					cfg.timeout_ns > 3600000000000ull)
				usage_error("bad --timeout '%s': give a duration such as 500ms, 5s, 2m",
					optarg);
			break;
		case 'p':
			if (parse_u64(optarg, 1, 4194304, &v) < 0)
				usage_error("bad --server-pid '%s': not a process id", optarg);
			cfg.pid = (pid_t)v;
			break;
		case 'S':
			if (parse_u64(optarg, 0, UINT64_MAX, &cfg.seed) < 0)
				usage_error("bad --seed '%s': give a whole number", optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("echo-conform %s (%d cases)\n", ECHOBENCH_VERSION, conf_ncases);
			exit(0);
		case ':':
			usage_error("option '%s' needs a value", argv[optind - 1]);
			break;
		default:
			usage_error("unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		cfg.target = argv[optind++];
	if (optind < argc)
		usage_error("unexpected argument '%s': give one TARGET", argv[optind]);
	if (cfg.list)
		return;
	if (!cfg.target && !cfg.exec)
		usage_error("no TARGET given (an address, or --exec CMD; see --help)");
	if (cfg.pid && cfg.exec)
		usage_error("give --server-pid or --exec, not both");
	if (cfg.pid && !probe_alive(cfg.pid))
		usage_error("bad --server-pid '%d': no such process", (int)cfg.pid);
}

static void print_list(void)
{
	for (int i = 0; i < conf_ncases; i++) {
		const struct conf_case *cc = &conf_cases[i];
		char needs[64] = "";

		if (cc->needs & NEED_PID)
			strcat(needs, "pid,");
		if (cc->needs & NEED_UDP)
			strcat(needs, "udp,");
		if (cc->needs & NEED_LOCAL)
			strcat(needs, "local,");
		if (cc->needs & NEED_IP)
			strcat(needs, "ip,");
		if (needs[0])
			needs[strlen(needs) - 1] = '\0';
		else
			strcpy(needs, "-");
		printf("%-24s %-6s %-9s %s\n", cc->id, cc->level == LEVEL_MUST ? "MUST" : "SHOULD",
			needs, cc->desc);
	}
}

/* Does TARGET answer UDP? One byte, two tries of 300 ms. */
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

static void find_udp(struct target *t, const struct spawned *sp)
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
	if (cfg.udp || udp_answers(&t->udp))
		t->udp_ok = true;
	else
		t->udp_why = "the target does not answer UDP (--udp makes these cases run and fail)";
}

static const char *unmet_need(const struct conf_case *cc, const struct target *t)
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

static void run_case(const struct conf_case *cc, const struct target *t, struct result *r)
{
	struct casectx c = { .t = t, .cc = cc, .r = r };
	const char *why = unmet_need(cc, t);

	memset(r, 0, sizeof(*r));
	c.start_ns = now_ns();
	c.deadline_ns = c.start_ns + (uint64_t)cc->builtin_ms * 1000000u + t->timeout_ns;
	/* Each case's random choices depend only on the seed and its ID: running a subset with
	 * --only reproduces exactly what the full run did. */
	c.rng = pattern_mix(t->seed ^ fnv64(FNV64_INIT, (const uint8_t *)cc->id,
		strlen(cc->id))) | 1;
	if (why) {
		r->verdict = VERDICT_SKIP;
		snprintf(r->reason, sizeof(r->reason), "%s", why);
	} else {
		cc->fn(&c);
	}
	if (r->verdict == VERDICT_FAIL && t->pid && !probe_alive(t->pid))
		case_note(&c, "server_process", "gone (pid %d)", (int)t->pid);
	r->elapsed_ns = now_ns() - c.start_ns;
}

struct bg_job {
	pthread_t thread;
	struct run_item *it;
	const struct target *t;
	bool started;
};

static void *bg_main(void *arg)
{
	struct bg_job *j = arg;

	run_case(j->it->cc, j->t, &j->it->r);
	return NULL;
}

/* Prints, in catalogue order, every result that is ready and not yet printed. */
static void print_ready(struct run_item *items, int nrun, const bool *done, int *next)
{
	while (*next < nrun && done[*next])
		tap_case(stdout, &items[(*next)++], cfg.must_only);
}

/* Runs the selected cases into items (in catalogue order). With --overlap the RUN_BACKGROUND
 * cases start at once on threads of their own; a RUN_ALONE case first waits for them to end, so
 * its measurements see only its own clients. Results print in order either way. */
static void run_all(struct run_item *items, int nrun, const bool *run_it, const struct target *t)
{
	struct bg_job *bg = calloc((size_t)nrun, sizeof(*bg));
	bool *done = calloc((size_t)nrun, sizeof(*done));
	int next_print = 0;

	if (!bg || !done)
		exit(1);
	for (int i = 0, n = 0; i < conf_ncases; i++) {
		if (!run_it[i])
			continue;
		items[n].cc = &conf_cases[i];
		items[n].n = n + 1;
		items[n].counted = !(cfg.must_only && conf_cases[i].level == LEVEL_SHOULD);
		n++;
	}
	for (int i = 0; cfg.overlap && i < nrun; i++) {
		if (!(items[i].cc->run & RUN_BACKGROUND))
			continue;
		bg[i] = (struct bg_job){ .it = &items[i], .t = t };
		bg[i].started = pthread_create(&bg[i].thread, NULL, bg_main, &bg[i]) == 0;
	}
	for (int i = 0; i < nrun; i++) {
		if (bg[i].started || done[i])
			continue;   /* a background case: running, or joined already */
		if (items[i].cc->run & RUN_ALONE) {
			for (int k = 0; k < nrun; k++)
				if (bg[k].started) {
					pthread_join(bg[k].thread, NULL);
					bg[k].started = false;
					done[k] = true;
				}
		}
		run_case(items[i].cc, t, &items[i].r);
		done[i] = true;
		print_ready(items, nrun, done, &next_print);
	}
	for (int k = 0; k < nrun; k++)
		if (bg[k].started) {
			pthread_join(bg[k].thread, NULL);
			done[k] = true;
		}
	print_ready(items, nrun, done, &next_print);
	free(bg);
	free(done);
}

/* The server must take a connection before anything else is worth running. */
static int preflight(const struct target *t, uint64_t wait_ns, int *err)
{
	uint64_t until = now_ns() + wait_ns;
	int fd, rc;

	do {
		rc = net_connect(&t->tcp, until, NULL, &fd);
		if (rc == 0) {
			close(fd);
			return 0;
		}
		sleep_ns(50000000);
	} while (now_ns() < until);
	*err = -rc;
	return -1;
}

int main(int argc, char **argv)
{
	static struct spawned sp;
	static struct target t;
	static char server_exit[96];
	/* Static, so it stays reachable (not a leak) on every early return from main. */
	static bool *run_it;
	static struct run_item *items;
	struct run_info info = { 0 };
	const char *why;
	FILE *json = NULL;
	int nrun = 0, err, failed_counted = 0, failed_must = 0, failed_should = 0, skipped = 0;
	uint64_t t0;

	run_it = calloc((size_t)conf_ncases, sizeof(*run_it));
	if (!run_it)
		return 1;
	parse_args(argc, argv);
	if (cfg.list) {
		print_list();
		return 0;
	}
	if (cfg.only)
		select_cases(cfg.only, "--only", run_it);
	else
		for (int i = 0; i < conf_ncases; i++)
			run_it[i] = true;
	if (cfg.skip) {
		bool *skip = calloc((size_t)conf_ncases, sizeof(*skip));
		if (!skip)
			return 1;
		select_cases(cfg.skip, "--skip", skip);
		for (int i = 0; i < conf_ncases; i++)
			run_it[i] = run_it[i] && !skip[i];
		free(skip);
	}
	if (cfg.target && endpoint_parse(cfg.target, &t.tcp, &why) < 0)
		usage_error("bad address '%s': %s", cfg.target, why);
	if (cfg.json && !(json = fopen(cfg.json, "w")))
		usage_error("cannot write --json file '%s': %s", cfg.json, strerror(errno));

	signal(SIGPIPE, SIG_IGN);
	/* LIMIT-CONNS-1100 holds 1,100 sockets at once. */
	sock_raise_nofile(4096);
	t.timeout_ns = cfg.timeout_ns;
	t.seed = cfg.seed;
	t.pid = cfg.pid;
	info.seed = (unsigned long long)cfg.seed;
	info.timeout_s = (double)cfg.timeout_ns / 1e9;
	info.must_only = cfg.must_only;

	if (cfg.exec) {
		if (spawn_server(cfg.exec, !cfg.target, 10000000000ull, &sp, &why) < 0) {
			fprintf(stderr, "echo-conform: --exec '%s': %s\n", cfg.exec, why);
			spawn_stop(&sp, server_exit, sizeof(server_exit));
			return 1;
		}
		t.pid = sp.pid;
		if (!cfg.target) {
			for (int i = 0; i < sp.nlines && !cfg.target; i++)
				if (strncmp(sp.lines[i], "udp:", 4) != 0)
					cfg.target = sp.lines[i];
			if (!cfg.target || endpoint_parse(cfg.target, &t.tcp, &why) < 0) {
				fprintf(stderr, "echo-conform: --exec '%s': no usable TCP `listening` "
					"line\n", cfg.exec);
				spawn_stop(&sp, server_exit, sizeof(server_exit));
				return 1;
			}
		}
	}
	if (preflight(&t, cfg.exec ? 10000000000ull : cfg.timeout_ns, &err) < 0) {
		static char msg[200];

		snprintf(msg, sizeof(msg), "cannot connect to %s: %s", t.tcp.text, errno_name(err));
		printf("TAP version 13\n1..0\nBail out! %s\n", msg);
		fprintf(stderr, "echo-conform: %s\n", msg);
		if (cfg.exec) {
			spawn_stop(&sp, server_exit, sizeof(server_exit));
			info.server_exit = server_exit;
		}
		if (json) {
			info.target = t.tcp.text;
			info.error = msg;
			info.exit_code = 1;
			json_write(json, &info, NULL, 0);
			fclose(json);
		}
		return 1;
	}
	t.local = t.tcp.family != AF_UNIX && probe_tcp_listening(endpoint_port(&t.tcp));
	find_udp(&t, cfg.exec ? &sp : NULL);
	find_ipv6(&t, cfg.exec ? &sp : NULL);

	for (int i = 0; i < conf_ncases; i++)
		nrun += run_it[i];
	items = calloc((size_t)nrun, sizeof(*items));
	if (!items)
		return 1;
	printf("TAP version 13\n");
	char pidtext[24] = "unknown";
	if (t.pid)
		snprintf(pidtext, sizeof(pidtext), "%d", (int)t.pid);
	printf("# echo-conform %s: target %s, server pid %s, seed %llu, timeout %.3gs\n",
		ECHOBENCH_VERSION, t.tcp.text, pidtext, (unsigned long long)t.seed,
		(double)t.timeout_ns / 1e9);
	printf("# udp: %s\n", t.udp_ok ? t.udp.text : t.udp_why);
	printf("# ipv6: %s\n", t.v6_ok ? t.v6.text : t.v6_why);
	printf("1..%d\n", nrun);
	fflush(stdout);

	t0 = now_ns();
	run_all(items, nrun, run_it, &t);
	for (int i = 0; i < nrun; i++) {
		const struct run_item *it = &items[i];

		if (it->r.verdict == VERDICT_SKIP)
			skipped++;
		if (it->r.verdict != VERDICT_FAIL)
			continue;
		failed_counted += it->counted;
		failed_must += it->cc->level == LEVEL_MUST;
		failed_should += it->cc->level == LEVEL_SHOULD;
	}
	info.elapsed_s = (double)(now_ns() - t0) / 1e9;
	if (cfg.exec) {
		spawn_stop(&sp, server_exit, sizeof(server_exit));
		printf("# server (pid %d) %s after SIGTERM\n", (int)t.pid, server_exit);
		info.server_exit = server_exit;
	}
	printf("# %d passed, %d failed (MUST %d, SHOULD %d%s), %d skipped, in %.1f s\n",
		nrun - failed_must - failed_should - skipped, failed_must + failed_should,
		failed_must, failed_should, cfg.must_only ? ", SHOULD not counted" : "", skipped,
		info.elapsed_s);
	info.exit_code = failed_counted ? 1 : 0;
	if (json) {
		info.target = t.tcp.text;
		info.udp_target = t.udp_ok ? t.udp.text : NULL;
		info.ipv6_target = t.v6_ok ? t.v6.text : NULL;
		info.server_pid = (int)t.pid;
		json_write(json, &info, items, nrun);
		if (fclose(json) != 0) {
			fprintf(stderr, "echo-conform: writing --json file '%s' failed\n", cfg.json);
			return 1;
		}
	}
	free(items);
	free(run_it);
	return info.exit_code;
}
