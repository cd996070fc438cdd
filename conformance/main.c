/* echo-conform: runs the catalogue against an echo server and says, case by case, which
 * behaviours hold. See docs/CONFORMANCE.md for the cases and what each checks.
 *
 * This file: the options, the case selection and the order of things. Discovery of what the
 * target offers is target.c, the scheduler run.c, the output report.c. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "clock.h"
#include "conform.h"
#include "die.h"
#include "opt.h"
#include "probe.h"
#include "report.h"
#include "run.h"
#include "sock.h"
#include "spawn.h"
#include "target.h"

/* How long --exec's server may take to print its `listening` lines or to accept. */
#define EXEC_START_NS 10000000000ull

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
"  TARGET                  127.0.0.1:PORT, [::1]:PORT, HOST:PORT, unix:/path, or udp:ADDR\n"
"                          (the same address, UDP cases run as with --udp)\n"
"      --list              print the catalogue (ID, level, needs, long, description)\n"
"      --only ID,...       run only these cases; ID* matches a prefix (HALF-CLOSE-*)\n"
"      --skip ID,...       do not run these cases\n"
"      --timeout DUR       how long a case waits for the server on top of its own pauses\n"
"                          (default 5s)\n"
"      --json FILE         also write the results as JSON to FILE\n"
"      --must-only         SHOULD-level failures are shown (TAP # TODO) but not counted\n"
"      --server-pid PID    the server's pid: enables the white-box cases (fds, CPU, RSS,\n"
"                          fd limit)\n"
"      --exec CMD          start the server as /bin/sh -c 'exec CMD', take TARGET from its\n"
"                          `listening ADDR` lines (or wait for TARGET to accept when given),\n"
"                          use its pid, stop it (SIGTERM) at the end; {port} in CMD is\n"
"                          replaced by a free loopback port, which becomes TARGET\n"
"  -u, --udp               run the UDP cases (they also run when TARGET answers UDP)\n"
"      --overlap           run the cases that mostly wait in the background, alongside the\n"
"                          quick ones (about 8 s faster); only for servers that serve\n"
"                          every client independently\n"
"      --seed N            seed of every random choice (default 24301)\n"
"  -h, --help              this text\n"
"  -V, --version           the version\n"
"Exit status: 0 no case failed, 1 a case failed or the server could not be reached,\n"
"2 usage error.\n";

/* Usage errors: one line on stderr, exit 2 (docs/CONTRACTS.md). */
#define usage_error(...) die(EXIT_USAGE, __VA_ARGS__)

/* Marks the cases an --only/--skip list names (conf_select), or ends with a usage error. */
static void select_cases(const char *list, const char *opt, bool *mark)
{
	char bad[64];

	if (conf_select(list, mark, bad, sizeof(bad)) == 0)
		return;
	if (bad[0])
		usage_error("%s: no case is called '%s' (see --list)", opt, bad);
	usage_error("%s: empty list: name at least one case (see --list)", opt);
}

static void parse_args(int argc, char **argv)
{
	/* docs/CONTRACTS.md "One option vocabulary": short letters only where they mean the same
	 * in every program. */
	enum { O_LIST = 256, O_ONLY, O_SKIP, O_TIMEOUT, O_JSON, O_MUST_ONLY, O_SERVER_PID, O_EXEC,
		O_SEED, O_OVERLAP };
	static const struct option opts[] = {
		{ "list", no_argument, NULL, O_LIST },
		{ "only", required_argument, NULL, O_ONLY },
		{ "skip", required_argument, NULL, O_SKIP },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "json", required_argument, NULL, O_JSON },
		{ "must-only", no_argument, NULL, O_MUST_ONLY },
		{ "server-pid", required_argument, NULL, O_SERVER_PID },
		{ "exec", required_argument, NULL, O_EXEC },
		{ "udp", no_argument, NULL, 'u' },
		{ "seed", required_argument, NULL, O_SEED },
		{ "overlap", no_argument, NULL, O_OVERLAP },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":uhV", opts, NULL)) != -1) {
		switch (ch) {
		case O_LIST: cfg.list = true; break;
		case O_ONLY: cfg.only = optarg; break;
		case O_SKIP: cfg.skip = optarg; break;
		case O_JSON: cfg.json = optarg; break;
		case O_MUST_ONLY: cfg.must_only = true; break;
		case O_EXEC: cfg.exec = optarg; break;
		case 'u': cfg.udp = true; break;
		case O_OVERLAP: cfg.overlap = true; break;
		case O_TIMEOUT:
			cfg.timeout_ns = opt_duration_ns("--timeout", optarg, 1, 3600000000000ull);
			break;
		case O_SERVER_PID:   /* the kernel's largest pid_max */
			cfg.pid = (pid_t)opt_whole("--server-pid", optarg, 1, 4194304);
			break;
		case O_SEED: cfg.seed = opt_whole("--seed", optarg, 0, UINT64_MAX); break;
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

/* The selected cases, in catalogue order, as run items; *n is how many. */
static struct run_item *select_items(int *n)
{
	bool *run_it = calloc((size_t)conf_ncases, sizeof(*run_it));
	bool *skip = calloc((size_t)conf_ncases, sizeof(*skip));
	struct run_item *items = calloc((size_t)conf_ncases, sizeof(*items));

	if (!run_it || !skip || !items)
		exit(1);
	if (cfg.only)
		select_cases(cfg.only, "--only", run_it);
	else
		for (int i = 0; i < conf_ncases; i++)
			run_it[i] = true;
	if (cfg.skip)
		select_cases(cfg.skip, "--skip", skip);
	*n = 0;
	for (int i = 0; i < conf_ncases; i++) {
		if (!run_it[i] || skip[i])
			continue;
		items[*n].cc = &conf_cases[i];
		items[*n].n = *n + 1;
		items[*n].counted = !(cfg.must_only && conf_cases[i].level == LEVEL_SHOULD);
		(*n)++;
	}
	free(run_it);
	free(skip);
	if (*n == 0)
		usage_error("--skip leaves no case to run");
	return items;
}

/* The target's address (TARGET, or --exec's server's) into t->tcp. A udp:ADDR TARGET names the
 * same server: its TCP side is the same address, and the UDP cases run as with --udp. */
static int resolve_target(struct target *t, const struct spawned *sp, char *why, size_t n)
{
	static char port_target[32];
	const char *text = cfg.target, *bad;

	if (!text && sp->port) {
		snprintf(port_target, sizeof(port_target), "127.0.0.1:%d", sp->port);
		text = port_target;
	}
	for (int i = 0; !text && i < sp->nlines; i++)
		if (strncmp(sp->lines[i], "udp:", 4) != 0)
			text = sp->lines[i];
	if (!text) {
		snprintf(why, n, "no usable TCP `listening` line");
		return -EINVAL;
	}
	if (endpoint_parse(text, &t->tcp, &bad) < 0) {
		snprintf(why, n, "bad address '%s': %s", text, bad);
		return -EINVAL;
	}
	if (t->tcp.udp) {
		t->tcp.udp = 0;
		cfg.udp = true;
	}
	return 0;
}

int main(int argc, char **argv)
{
	/* Static, so they stay reachable (not a leak) on every early exit. */
	static struct spawned sp;
	static struct target t;
	static struct run_item *items;
	static char server_exit[96], error[256];
	struct run_info info = { 0 };
	FILE *json = NULL;
	int nrun = 0, failed;
	uint64_t t0;

	parse_args(argc, argv);
	if (cfg.list) {
		list_cases(stdout);
		return 0;
	}
	items = select_items(&nrun);
	if (cfg.target && resolve_target(&t, &sp, error, sizeof(error)) < 0)
		usage_error("%s", error);
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
		const char *why;
		bool want_lines = !cfg.target && !strstr(cfg.exec, "{port}");

		if (spawn_server(cfg.exec, want_lines, EXEC_START_NS, &sp, &why) < 0 ||
				(!cfg.target && resolve_target(&t, &sp, error, sizeof(error)) < 0)) {
			if (!error[0])
				snprintf(error, sizeof(error), "%s", why);
			spawn_stop(&sp, server_exit, sizeof(server_exit));
			fprintf(stderr, "echo-conform: --exec '%s': %s (the server %s)\n", cfg.exec,
				error, server_exit[0] ? server_exit : "did not start");
			return 1;
		}
		t.pid = sp.pid;
	}
	if (target_wait_accepting(&t, cfg.exec ? &sp : NULL,
			cfg.exec ? EXEC_START_NS : cfg.timeout_ns, error, sizeof(error)) < 0) {
		printf("TAP version 13\n1..0\nBail out! %s\n", error);
		fprintf(stderr, "echo-conform: %s\n", error);
		info.error = error;
		nrun = 0;
	} else {
		target_discover(&t, cfg.exec ? &sp : NULL, cfg.udp);
		tap_header(stdout, &t, nrun);
		t0 = now_ns();
		run_cases(items, nrun, &t, cfg.overlap, cfg.must_only);
		info.elapsed_s = (double)(now_ns() - t0) / 1e9;
	}
	if (cfg.exec) {
		spawn_stop(&sp, server_exit, sizeof(server_exit));
		if (!info.error)
			printf("# server (pid %d) %s after SIGTERM\n", (int)t.pid, server_exit);
		info.server_exit = server_exit;
	}
	if (info.error) {
		info.exit_code = 1;
	} else {
		failed = tap_summary(stdout, items, nrun, cfg.must_only, info.elapsed_s);
		info.exit_code = failed ? 1 : 0;
		info.udp_target = t.udp_ok ? t.udp.text : NULL;
		info.ipv6_target = t.v6_ok ? t.v6.text : NULL;
		info.server_pid = (int)t.pid;
	}
	if (json) {
		info.target = t.tcp.text;
		json_write(json, &info, items, nrun);
		if (fclose(json) != 0) {
			fprintf(stderr, "echo-conform: writing --json file '%s' failed\n", cfg.json);
			return 1;
		}
	}
	free(items);
	return info.exit_code;
}
