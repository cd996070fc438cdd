#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "die.h"
#include "load.h"
#include "loader.h"
#include "opt.h"
#include "parse.h"
#include "series.h"

#define DAY_NS (UINT64_C(86400) * 1000000000u)
#define UDP_MAX_PAYLOAD 65507u
#define MAX_PIPELINE 65536u
#define INFLIGHT_BYTES (UINT64_C(1) << 30)   /* in-flight records, at most */

static const char usage_head[] =
"Usage: echo-load [options] TARGET\n"
"       echo-load --merge FILE... [--json FILE|-] [--hgrm FILE] [--csv FILE|-]\n"
"Measures an echo server: throughput, latency (HDR histogram) and byte-exact echo, and\n"
"checks itself: rate, send lag, client CPU, verify, connections (JSON \"checks\").\n"
"TARGET: 127.0.0.1:PORT, [::1]:PORT, HOST:PORT, unix:/path, or udp:ADDR (same as --udp)\n"
"\n"
"  -c, --connections N     connections (default 10)\n"
"  -p, --pipeline K        messages in flight per connection (default 1); with --rate the\n"
"                          most that may be in flight, later ones wait their turn;\n"
"                          'unbounded' (with --rate): none ever waits for a slot\n"
"  -R, --rate N            open loop: N messages/s in total on a fixed schedule, whatever the\n"
"                          server does; latency counts from each scheduled time (coordinated\n"
"                          omission corrected), the uncorrected figure from the actual send.\n"
"                          Suffixes k, M (x1000), fractions allowed (1.5k)\n"
"      --stream            each connection writes continuously and reads back (bytes/s)\n"
"      --churn             each transaction connects, sends --churn-messages messages, checks\n"
"                          their echo and closes; -c transactions at once, or with --rate\n"
"                          N transactions/s on a schedule (at most -c in progress; one due\n"
"                          when all -c are busy waits, its latency counted from its due time)\n"
"      --churn-messages K  messages per transaction (default 1), -p of them in flight\n"
"      --close fin|rst     how a transaction closes: fin (default; our side keeps TIME_WAIT)\n"
"                          or rst (SO_LINGER 0: a reset, no TIME_WAIT; not what clients do)\n"
"  -u, --udp               datagrams to TARGET's UDP port\n"
"  -s, --size B|LO-HI      message size, or a range drawn per message (default 64;\n"
"                          --stream: 16k). Suffixes k, M (x1024)\n"
"  -d, --duration D        measured time (default 10s). Suffixes ms, s, m\n"
"      --warmup D          load before the measurement, excluded from every figure (default 0)\n"
"  -t, --threads N         threads (default: the CPUs it may run on, at most one per\n"
"                          connection); with --processes, the total over the processes\n";

/* After the engine lines (load_engines.c prints them from its table). */
static const char usage_tail[] =
"      --processes N       spread the connections over N forked processes, each under its\n"
"                          own open-file limit; their histograms are merged exactly\n"
"      --source A[-B]      bind each connection to a source IPv4 address from the range,\n"
"                          round robin (e.g. 127.0.0.2-127.0.0.9); automatic on loopback\n"
"                          when -c needs more ports than one address has\n"
"      --connect-rate N    open at most N connections per second (default: no pacing)\n"
"      --timeout D         bound on a connect, on each reply, on the drain of what is owed\n"
"                          after the window and on the close (default 5s)\n"
"      --seed N            seed of payloads and size draws (default 1)\n"
"      --no-verify         do not compare echoed bytes (mismatches then do not fail the run)\n"
"      --intervals MS      length of the intervals of the JSON time series (default 1000,\n"
"                          x10 as needed to keep a run within 3600 intervals)\n"
"      --start-at T        connect, then start at Unix time T (seconds, fractions allowed)\n"
"      --phase K/N         open loop: shift the schedule by K/N of one interval (N hosts\n"
"                          sharing a rate, K = 0..N-1, do not send together)\n"
"      --strict            exit 3 when a check fails\n"
"      --json FILE|-       write the results as one JSON object\n"
"      --hgrm FILE|-       write the latency distribution (HdrHistogram .hgrm, microseconds)\n"
"      --csv FILE|-        append one CSV line with the results\n"
"      --csv-header        write the CSV header line first\n"
"      --hist-out FILE     write the lossless, mergeable histograms and counters\n"
"      --merge             the arguments are --hist-out files: merge them and report\n"
"      --progress          progress once a second on stderr (default when it is a terminal)\n"
"  -h, --help              this text\n"
"  -V, --version           version\n"
"At most one of --json, --hgrm, --csv may be '-' (stdout); the table then goes to stderr.\n"
"\n"
"Exit status: 0 success, 1 run-time failure (no server, server lost, echo mismatch),\n"
"2 bad usage, 3 a check failed (only with --strict).\n";

enum {
	OPT_STREAM = 256, OPT_WARMUP, OPT_CONNECT_RATE, OPT_SEED, OPT_NO_VERIFY,
	OPT_JSON, OPT_HGRM, OPT_CSV, OPT_CSV_HEADER, OPT_PROGRESS, OPT_TIMEOUT, OPT_INTERVALS,
	OPT_START_AT, OPT_PHASE, OPT_STRICT, OPT_HIST_OUT, OPT_MERGE, OPT_ENGINE, OPT_PROCESSES,
	OPT_SOURCE, OPT_CHURN, OPT_CHURN_MESSAGES, OPT_CLOSE,
};

static const struct option long_opts[] = {
	{ "connections",  required_argument, NULL, 'c' },
	{ "pipeline",     required_argument, NULL, 'p' },
	{ "rate",         required_argument, NULL, 'R' },
	{ "stream",       no_argument,       NULL, OPT_STREAM },
	{ "churn",        no_argument,       NULL, OPT_CHURN },
	{ "churn-messages", required_argument, NULL, OPT_CHURN_MESSAGES },
	{ "close",        required_argument, NULL, OPT_CLOSE },
	{ "udp",          no_argument,       NULL, 'u' },
	{ "size",         required_argument, NULL, 's' },
	{ "duration",     required_argument, NULL, 'd' },
	{ "warmup",       required_argument, NULL, OPT_WARMUP },
	{ "threads",      required_argument, NULL, 't' },
	{ "connect-rate", required_argument, NULL, OPT_CONNECT_RATE },
	{ "timeout",      required_argument, NULL, OPT_TIMEOUT },
	{ "seed",         required_argument, NULL, OPT_SEED },
	{ "no-verify",    no_argument,       NULL, OPT_NO_VERIFY },
	{ "json",         required_argument, NULL, OPT_JSON },
	{ "hgrm",         required_argument, NULL, OPT_HGRM },
	{ "csv",          required_argument, NULL, OPT_CSV },
	{ "csv-header",   no_argument,       NULL, OPT_CSV_HEADER },
	{ "progress",     no_argument,       NULL, OPT_PROGRESS },
	{ "intervals",    required_argument, NULL, OPT_INTERVALS },
	{ "start-at",     required_argument, NULL, OPT_START_AT },
	{ "phase",        required_argument, NULL, OPT_PHASE },
	{ "strict",       no_argument,       NULL, OPT_STRICT },
	{ "hist-out",     required_argument, NULL, OPT_HIST_OUT },
	{ "merge",        no_argument,       NULL, OPT_MERGE },
	{ "engine",       required_argument, NULL, OPT_ENGINE },
	{ "processes",    required_argument, NULL, OPT_PROCESSES },
	{ "source",       required_argument, NULL, OPT_SOURCE },
	{ "help",         no_argument,       NULL, 'h' },
	{ "version",      no_argument,       NULL, 'V' },
	{ 0, 0, 0, 0 },
};

/* The CPUs this process may run on (taskset, the driver's placement), not those online: two
 * open-loop threads polling on one CPU would delay each other's sends. */
static unsigned long cores(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned long)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned long)n : 1;
}

/* --intervals: a bare number is milliseconds; a unit may be given (500ms, 2s). */
static uint64_t interval_arg(const char *s)
{
	uint64_t v;

	if (parse_u64(s, 1, 86400000, &v) == 0)
		return v * 1000000u;
	if (parse_duration_ns(s, &v) == 0 && v >= 1000000 && v <= DAY_NS)
		return v;
	die(2, "bad --intervals '%s': expected milliseconds (1000) or a duration (500ms, 2s)", s);
}

static double start_at_arg(const char *s)
{
	char *end;
	double t;

	errno = 0;
	t = strtod(s, &end);
	if (errno || end == s || *end || !(t > 0) || !isfinite(t))
		die(2, "bad --start-at '%s': expected a Unix time in seconds, e.g. 1767225600.5", s);
	if (t > (double)time(NULL) + 86400)
		die(2, "bad --start-at '%s': more than a day from now", s);
	return t;
}

static void phase_arg(const char *s, struct load_config *cfg)
{
	uint64_t k, n;

	if (parse_k_of_n(s, 1000000, &k, &n) < 0)
		die(2, "bad --phase '%s': expected K/N with 0 <= K < N, e.g. 1/4", s);
	cfg->phase_k = k;
	cfg->phase_n = n;
}

/* --pipeline K, or `unbounded` (0 here): the open loop never waits for a slot. */
static uint64_t pipeline_arg(const char *s)
{
	uint64_t v;

	if (strcmp(s, "unbounded") == 0)
		return 0;
	if (parse_count(s, MAX_PIPELINE, &v) < 0 || v < 1)
		die(2, "bad --pipeline '%s': expected a count from 1 to %u (suffix k) or unbounded "
		    "(with --rate)", s, MAX_PIPELINE);
	return v;
}

/* --source A or A-B: IPv4 addresses, A <= B, at most LOAD_MAX_SOURCES of them. */
static void source_arg(const char *s, struct load_config *cfg)
{
	uint32_t first, last;
	const char *why;

	if (ipv4_range_parse(s, &first, &last, &why) < 0)
		die(2, "bad --source '%s': %s", s, why);
	if (last - first >= LOAD_MAX_SOURCES)
		die(2, "bad --source '%s': at most %u addresses", s, LOAD_MAX_SOURCES);
	cfg->src_first = first;
	cfg->src_count = last - first + 1;
}

/* --close fin|rst. */
static bool close_arg(const char *s)
{
	if (strcmp(s, "fin") == 0)
		return false;
	if (strcmp(s, "rst") == 0)
		return true;
	die(2, "bad --close '%s': expected fin or rst", s);
}

/* --churn and what only it takes. */
static void churn_checks(const struct load_config *cfg, bool stream, bool udp, bool k_set,
			 bool close_set)
{
	if (!cfg->churn) {
		if (k_set || close_set)
			die(2, "%s shapes --churn's transactions: it needs --churn",
			    k_set ? "--churn-messages" : "--close");
		return;
	}
	if (stream)
		die(2, "--churn and --stream exclude each other");
	if (udp || cfg->target.udp)
		die(2, "--churn connects per transaction: it needs a stream target, not --udp");
	if (!cfg->pipeline)
		die(2, "--pipeline unbounded is for the open loop's messages; --churn keeps -p of a "
		    "transaction's messages in flight (1 to %u)", MAX_PIPELINE);
	if (cfg->connect_rate > 0)
		die(2, "--connect-rate paces the connections opened before the run; --churn opens "
		    "one per transaction: pace them with --rate");
}

/* At most one output may be stdout: two would interleave there. */
static void one_stdout(const struct load_config *cfg)
{
	const char *outs[] = { cfg->json_path, cfg->hgrm_path, cfg->csv_path, cfg->hist_out_path };
	const char *names[] = { "--json", "--hgrm", "--csv", "--hist-out" };
	int first = -1;

	for (int i = 0; i < 4; i++) {
		if (!outs[i] || strcmp(outs[i], "-") != 0)
			continue;
		if (first >= 0)
			die(2, "%s - and %s - both write to stdout: give one of them a FILE",
			    names[first], names[i]);
		first = i;
	}
}

/* Everything that concerns the target: address, transport, sizes that depend on it. */
static void target_checks(struct load_config *cfg, bool udp, const char *size_arg)
{
	const char *why;

	if (endpoint_parse(cfg->target_arg, &cfg->target, &why) < 0)
		die(2, "bad address '%s': %s", cfg->target_arg, why);
	if (cfg->target.udp)
		udp = true;
	if (udp && cfg->target.family == AF_UNIX)
		die(2, "--udp needs an IP address, not '%s'", cfg->target_arg);
	if (cfg->mode == MODE_STREAM && udp)
		die(2, "--stream needs a stream socket, not --udp");
	/* The one place where the transport is chosen. */
	cfg->tp = udp ? &transport_dgram : &transport_stream;
	if (udp && cfg->size_hi > UDP_MAX_PAYLOAD)
		die(2, "bad --size '%s': a UDP datagram holds at most %u bytes", size_arg,
		    UDP_MAX_PAYLOAD);
}

/* The version, and each engine with whether it runs here (tests read this to skip). */
static void print_version(void)
{
	printf("echo-load %s\n", ECHOBENCH_VERSION);
	engine_version(stdout);
}

static void print_usage(void)
{
	fputs(usage_head, stdout);
	engine_usage(stdout);
	fputs(usage_tail, stdout);
}

void load_parse_options(int argc, char **argv, struct load_config *cfg)
{
	const char *size_arg = NULL;
	bool threads_set = false, stream = false, udp = false, merge = false, intervals_set = false;
	bool k_set = false, close_set = false;
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = MODE_CLOSED;
	cfg->connections = 10;
	cfg->pipeline = 1;
	cfg->duration_ns = 10 * UINT64_C(1000000000);
	cfg->timeout_ns = 5 * UINT64_C(1000000000);
	cfg->interval_ns = UINT64_C(1000000000);
	cfg->phase_n = 1;
	cfg->seed = 1;
	cfg->verify = true;
	cfg->progress = isatty(STDERR_FILENO);
	cfg->engine = engine_default();
	cfg->processes = 1;
	cfg->ready_fd = cfg->go_fd = -1;
	cfg->churn_messages = 1;

	opterr = 0;   /* our own one-line messages, with exit 2 */
	while ((opt = getopt_long(argc, argv, ":c:p:R:s:d:t:uhV", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cfg->connections = opt_count("--connections", optarg, 1, 1000000);
			break;
		case 'p': cfg->pipeline = pipeline_arg(optarg); break;
		case 'R':
			cfg->rate = (double)opt_count("--rate", optarg, 1, 1000000000);
			cfg->mode = MODE_OPEN;
			break;
		case OPT_STREAM: stream = true; break;
		case OPT_CHURN: cfg->churn = true; break;
		case OPT_CHURN_MESSAGES:
			cfg->churn_messages = opt_count("--churn-messages", optarg, 1,
							  LOAD_MAX_CHURN_MESSAGES);
			k_set = true;
			break;
		case OPT_CLOSE:
			cfg->close_rst = close_arg(optarg);
			close_set = true;
			break;
		case 'u': udp = true; break;
		case 's':
			size_arg = optarg;
			if (parse_bytes_range(optarg, 64u << 20, &cfg->size_lo, &cfg->size_hi) < 0 ||
			    cfg->size_lo < 1)
				die(2, "bad --size '%s': expected BYTES or LO-HI, 1..64M each "
					    "(suffix k, M)", optarg);
			break;
		case 'd': cfg->duration_ns = opt_duration_ns("--duration", optarg, 1, DAY_NS); break;
		case OPT_WARMUP: cfg->warmup_ns = opt_duration_ns("--warmup", optarg, 0, DAY_NS); break;
		case OPT_TIMEOUT:
			cfg->timeout_ns = opt_duration_ns("--timeout", optarg, 1000000, DAY_NS);
			break;
		case 't':
			cfg->threads = opt_count("--threads", optarg, 1, 1024);
			threads_set = true;
			break;
		case OPT_CONNECT_RATE:
			cfg->connect_rate = (double)opt_count("--connect-rate", optarg, 1, 10000000);
			break;
		case OPT_SEED:
			cfg->seed = opt_whole("--seed", optarg, 0, UINT64_MAX);
			break;
		case OPT_NO_VERIFY: cfg->verify = false; break;
		case OPT_INTERVALS:
			cfg->interval_ns = interval_arg(optarg);
			intervals_set = true;
			break;
		case OPT_START_AT: cfg->start_at = start_at_arg(optarg); break;
		case OPT_PHASE: phase_arg(optarg, cfg); break;
		case OPT_STRICT: cfg->strict = true; break;
		case OPT_JSON: cfg->json_path = optarg; break;
		case OPT_HGRM: cfg->hgrm_path = optarg; break;
		case OPT_CSV: cfg->csv_path = optarg; break;
		case OPT_HIST_OUT: cfg->hist_out_path = optarg; break;
		case OPT_MERGE: merge = true; break;
		case OPT_ENGINE:
			cfg->engine = engine_arg(optarg);
			cfg->engine_set = true;
			break;
		case OPT_PROCESSES:
			cfg->processes = opt_count("--processes", optarg, 1, 1024);
			break;
		case OPT_SOURCE: source_arg(optarg, cfg); break;
		case OPT_CSV_HEADER: cfg->csv_header = true; break;
		case OPT_PROGRESS: cfg->progress = true; break;
		case 'h': print_usage(); exit(0);
		case 'V': print_version(); exit(0);
		case ':':
			die(2, "option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt && optopt < 256)
				die(2, "unknown option '-%c' (try --help)", optopt);
			die(2, "unknown option '%s' (try --help)", argv[optind - 1]);
		}
	}
	one_stdout(cfg);
	if (cfg->csv_header && !cfg->csv_path)
		die(2, "--csv-header needs --csv FILE");
	if (merge) {
		if (cfg->churn || k_set || close_set)
			die(2, "--merge reads histogram files; --churn, --churn-messages and --close "
			    "do not apply");
		if (cfg->engine_set || cfg->processes > 1 || cfg->src_count)
			die(2, "--merge reads histogram files; --engine, --processes and --source "
			    "do not apply");
		if (optind == argc)
			die(2, "--merge needs at least one --hist-out FILE to read");
		if (cfg->hist_out_path)
			die(2, "--merge reads histogram files; --hist-out does not apply");
		cfg->merge_files = argv + optind;
		return;
	}
	if (optind == argc)
		die(2, "missing TARGET, e.g. 127.0.0.1:7007 (try --help)");
	if (optind + 1 < argc)
		die(2, "unexpected argument '%s' after TARGET", argv[optind + 1]);
	cfg->target_arg = argv[optind];

	if (stream && cfg->rate > 0)
		die(2, "--stream and --rate exclude each other");
	if (stream)
		cfg->mode = MODE_STREAM;
	if (!size_arg)
		cfg->size_lo = cfg->size_hi = cfg->mode == MODE_STREAM ? 16384 : 64;
	target_checks(cfg, udp, size_arg);
	churn_checks(cfg, stream, udp, k_set, close_set);
	engine_check_transport(cfg);
	if (cfg->src_count && cfg->target.family != AF_INET)
		die(2, "--source binds IPv4 addresses: the target '%s' is not an IPv4 address",
		    cfg->target_arg);
	if (cfg->processes > cfg->connections)
		die(2, "--processes %llu is more than --connections %llu: each process needs one",
		    (unsigned long long)cfg->processes, (unsigned long long)cfg->connections);
	cfg->connections_total = cfg->connections;
	if (cfg->mode == MODE_OPEN && !cfg->churn &&
	    cfg->rate < (double)cfg->connections / 3600.0)
		die(2, "--rate %.0f is too low for %llu connections (at least one message per "
			    "connection per hour)", cfg->rate, (unsigned long long)cfg->connections);
	if (cfg->phase_k && cfg->mode != MODE_OPEN)
		die(2, "--phase shifts the open-loop schedule: it needs --rate");
	/* In-flight records: sizeof(struct msg) (32 bytes) per message slot. */
	if (cfg->connections * cfg->pipeline * sizeof(struct msg) > INFLIGHT_BYTES)
		die(2, "--connections %llu x --pipeline %llu needs more than 1 GiB of in-flight "
		    "records; use fewer of either", (unsigned long long)cfg->connections,
		    (unsigned long long)cfg->pipeline);
	if (!cfg->pipeline && cfg->mode != MODE_OPEN)
		die(2, "--pipeline unbounded is for the open loop (--rate): a closed loop keeps "
		    "exactly -p messages in flight");
	if (!cfg->pipeline && cfg->connections * loader_ring_limit(cfg) * sizeof(struct msg) >
	    INFLIGHT_BYTES)
		die(2, "--pipeline unbounded at --rate %.0f with --timeout %.1fs may hold more than "
		    "1 GiB of in-flight records (rate x timeout messages); lower either",
		    cfg->rate, cfg->timeout_ns / 1e9);
	/* A long run without --intervals gets longer intervals rather than an error. */
	while (!intervals_set && cfg->duration_ns / cfg->interval_ns >= SERIES_MAX_INTERVALS)
		cfg->interval_ns *= 10;
	if (cfg->duration_ns / cfg->interval_ns >= SERIES_MAX_INTERVALS)
		die(2, "--intervals %.0fms is too short for --duration %.0fs: at most %u intervals",
		    cfg->interval_ns / 1e6, cfg->duration_ns / 1e9, SERIES_MAX_INTERVALS);
	if (!threads_set)
		cfg->threads = cores();
	if (cfg->threads < cfg->processes)
		cfg->threads = cfg->processes;   /* at least one per process */
	if (cfg->threads > cfg->connections)
		cfg->threads = cfg->connections;
}
