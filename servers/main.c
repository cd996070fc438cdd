/* echo-server: an RFC 862 echo server with interchangeable I/O backends. Options, the ready
 * lines and signals live here; serving is server.c and the backends. */
#include "server.h"
#include "prefork.h"
#include "die.h"
#include "opt.h"
#include "sock.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* --idle-timeout's range: below 10 ms a timeout would close connections between two packets
 * of a busy client; a week is beyond any use and keeps every timeval in range. */
#define IDLE_MIN_NS 10000000ull
#define IDLE_MAX_NS (7 * 86400 * 1000000000ull)

/* Every usage error is one line that points at --help. */
#define usage_error(fmt, ...) die(EXIT_USAGE, fmt " (see --help)", __VA_ARGS__)

/* The backend names of the table, separated by sep, into buf. */
static const char *backend_names(char *buf, size_t n, const char *sep)
{
	size_t len = 0;

	buf[0] = 0;
	for (int i = 0; server_backend_name(i) && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? sep : "",
					server_backend_name(i));
	return buf;
}

static void usage(void)
{
	fputs("Usage: echo-server [options]\n"
	      "  -b, --backend NAME       one of the backends below (default epoll)\n"
	      "      --list               list the backends and whether they work here\n"
	      "                           (alias: --list-backends)\n"
	      "  -l, --listen ADDR        127.0.0.1:PORT, [::1]:PORT, [::]:PORT (dual stack), HOST:PORT,\n"
	      "                           unix:/path, udp:ADDR (UDP only); repeatable; PORT 0 = ephemeral\n"
	      "                           (default " SERVER_DEFAULT_LISTEN ")\n"
	      "  -u, --udp                also serve UDP echo (RFC 862) on the same IP addresses and ports\n"
	      "  -t, --threads N          workers, each with its own SO_REUSEPORT listener (default 1)\n"
	      "      --processes N        prefork: N worker processes with --threads workers each, every\n"
	      "                           one with its own listener; one summary for all (default 1)\n"
	      "  -m, --max-conns N        refuse (accept and close) connections beyond N (default: no limit)\n"
	      "      --max-conns-per-source N\n"
	      "                           refuse connections beyond N from one source IP address\n"
	      "                           (per process with --processes; default: no limit)\n"
	      "      --idle-timeout DUR   close a connection that moved no byte either way for DUR: FIN,\n"
	      "                           or RST when echo it did not read is dropped (default: off)\n"
	      "  -B, --bufsize BYTES      per-connection echo buffer, e.g. 64k (default 64k)\n"
	      "  -D, --drain-timeout DUR  on SIGTERM/SIGINT, how long to flush pending echo (default 2s)\n"
	      "  -h, --help               this text\n"
	      "  -V, --version            the version and the backends compiled in\n"
	      "Backends:\n", stdout);
	for (int i = 0; server_backend_name(i); i++)
		printf("  %-24s %s\n", server_backend_name(i), server_backend_summary(i));
	fputs("Once listening it prints `listening ADDR` per listener (real port) on stdout. On SIGTERM or\n"
	      "SIGINT it stops accepting, drains, prints one summary line on stderr and exits 0.\n"
	      "Exit status: 0 stopped cleanly, 1 run-time failure (bind, backend), 2 usage error.\n",
	      stdout);
}

/* One line per row of the table; each backend is probed here, once. */
static int list_backends(void)
{
	for (int i = 0; server_backend_name(i); i++) {
		const char *why;
		if (server_backend_probe(server_backend_name(i), &why) == 0)
			printf("%s usable\n", server_backend_name(i));
		else
			printf("%s unusable: %s\n", server_backend_name(i), why);
	}
	return 0;
}

static void parse_args(int argc, char **argv, struct server_config *cfg)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "list", no_argument, NULL, 'L' },
		{ "list-backends", no_argument, NULL, 'L' },
		{ "listen", required_argument, NULL, 'l' },
		{ "udp", no_argument, NULL, 'u' },
		{ "threads", required_argument, NULL, 't' },
		{ "processes", required_argument, NULL, 'P' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "max-conns-per-source", required_argument, NULL, 'S' },
		{ "idle-timeout", required_argument, NULL, 'I' },
		{ "bufsize", required_argument, NULL, 'B' },
		{ "drain-timeout", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	char names[512];
	bool listen_given = false;
	const char *why;
	int c;

	opterr = 0;  /* our own one-line messages instead of getopt's */
	while ((c = getopt_long(argc, argv, ":b:l:ut:m:B:D:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (!server_backend_known(optarg))
				usage_error("unknown backend '%s' (backends: %s)", optarg,
					    backend_names(names, sizeof(names), " "));
			cfg->backend = optarg;
			break;
		case 'L': exit(list_backends());
		case 'l':
			if (!listen_given)   /* the first --listen replaces the default */
				cfg->nlisten = 0;
			listen_given = true;
			if (cfg->nlisten == SERVER_MAX_LISTEN)
				usage_error("too many --listen addresses (at most %s)", "16");
			if (endpoint_parse(optarg, &cfg->listen[cfg->nlisten], &why) < 0)
				die(EXIT_USAGE, "bad address '%s': %s", optarg, why);
			cfg->nlisten++;
			break;
		case 'u': cfg->udp = true; break;
		case 't': cfg->threads = (unsigned)opt_whole("--threads", optarg, 1, 256); break;
		case 'P':
			cfg->processes = (unsigned)opt_whole("--processes", optarg, 1, PREFORK_MAX);
			break;
		case 'm': cfg->max_conns = (unsigned)opt_whole("--max-conns", optarg, 1, 1u << 30); break;
		case 'S':
			cfg->max_conns_per_source =
				(unsigned)opt_whole("--max-conns-per-source", optarg, 1, 1u << 30);
			break;
		case 'I':
			cfg->idle_timeout_ns = opt_duration_ns("--idle-timeout", optarg, IDLE_MIN_NS,
							       IDLE_MAX_NS);
			break;
		case 'B': cfg->bufsize = opt_bytes("--bufsize", optarg, 1, 1ull << 30); break;
		case 'D':
			cfg->drain_timeout_ns = opt_duration_ns("--drain-timeout", optarg, 0, UINT64_MAX);
			break;
		case 'h': usage(); exit(0);
		case 'V':
			printf("echo-server %s (backends: %s)\n", ECHOBENCH_VERSION,
			       backend_names(names, sizeof(names), " "));
			exit(0);
		case ':':
			usage_error("option '%s' needs a value", argv[optind - 1]);
			break;
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
}

static void print_ready(const struct server *srv)
{
	for (int i = 0; i < server_listener_count(srv); i++)
		printf("listening %s\n", server_listener_text(srv, i));
	fflush(stdout);
}

static void print_summary(const char *backend, const struct server_stats *st)
{
	fprintf(stderr, "echo-server: stopped: backend=%s accepted=%llu refused=%llu resets=%llu "
		"bytes_in=%llu bytes_out=%llu datagrams=%llu dropped=%llu idle_closed=%llu\n", backend,
		(unsigned long long)st->accepted, (unsigned long long)st->refused,
		(unsigned long long)st->resets, (unsigned long long)st->bytes_in,
		(unsigned long long)st->bytes_out, (unsigned long long)st->datagrams,
		(unsigned long long)st->dropped, (unsigned long long)st->idle_closed);
}

/* Threads in this process: serve until SIGTERM/SIGINT (or a worker's failure, which raises
 * SIGTERM), drain, sum. Like serve_processes(): -1 when serving never began (no summary), 0
 * stopped cleanly, 1 a worker failed. */
static int serve_threads(struct server *srv, const sigset_t *stop, struct server_stats *st)
{
	const char *why;
	int sig, rc = server_start(srv, &why);

	if (rc < 0) {
		fprintf(stderr, "echo-server: %s: %s\n", why, strerror(-rc));
		return -1;
	}
	print_ready(srv);
	while (sigwait(stop, &sig) != 0)
		;
	server_stop(srv);
	server_get_stats(srv, st);
	return server_failure(srv) < 0 ? 1 : 0;
}

/* --processes: the children serve; here we wait for a stop signal or a child's death. */
static int serve_processes(struct server *srv, unsigned n, const sigset_t *stop,
			   struct server_stats *st)
{
	struct prefork pf;
	sigset_t waitset = *stop;
	const char *why;
	pid_t dead = 0;
	bool clean = false;
	int sig, rc;

	rc = prefork_start(&pf, srv, (int)n, stop, &why);
	if (rc < 0) {
		fprintf(stderr, "echo-server: %s\n", why);
		return -1;
	}
	print_ready(srv);
	sigaddset(&waitset, SIGCHLD);
	while (!dead) {
		if (sigwait(&waitset, &sig) != 0)
			continue;
		if (sig != SIGCHLD)
			break;
		dead = prefork_reap_one(&pf, &clean);
	}
	if (dead && !clean)
		fprintf(stderr, "echo-server: worker process %d died; stopping\n", (int)dead);
	rc = prefork_stop(&pf, st);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct server_config cfg;
	struct server_stats st = { 0 };
	struct server *srv;
	char open_why[SERVER_WHY_MAX];
	const char *why;
	sigset_t stop_signals;
	int rc;

	server_config_defaults(&cfg);
	parse_args(argc, argv, &cfg);

	/* Belt and braces: every send uses MSG_NOSIGNAL, but a peer that vanishes must never
	 * kill the server through a path we missed. */
	signal(SIGPIPE, SIG_IGN);
	/* Thousands of clients need thousands of fds: take what the hard limit allows. */
	sock_raise_nofile(UINT64_MAX);
	if (server_backend_probe(cfg.backend, &why) < 0)
		die(1, "backend %s cannot run here: %s", cfg.backend, why);
	cfg.failure_signal = SIGTERM;  /* a dying worker wakes the sigwait() */
	rc = server_open(&cfg, &srv, open_why);
	if (rc < 0) {
		fprintf(stderr, "echo-server: %s\n", open_why);
		return 1;
	}
	/* Blocked before workers (threads or processes) start, so they inherit the mask and only
	 * sigwait() sees these; SIGCHLD tells the prefork parent that a child died. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	{
		sigset_t block = stop_signals;
		sigaddset(&block, SIGCHLD);
		pthread_sigmask(SIG_BLOCK, &block, NULL);
	}
	if (cfg.processes > 1)
		rc = serve_processes(srv, cfg.processes, &stop_signals, &st);
	else
		rc = serve_threads(srv, &stop_signals, &st);
	if (rc >= 0)
		print_summary(cfg.backend, &st);
	server_close(srv);
	return rc == 0 ? 0 : 1;
}
