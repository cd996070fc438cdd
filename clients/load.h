/* echo-load's parts and what they exchange: the run configuration, the counters, the merged
 * result and its self-checks.
 *
 *   load_options.c   command line -> struct load_config (exit 2 on bad input)
 *   load_connect.c   opens the connections before the clock starts (paced, timed, bounded)
 *   loader.h         one load thread and its transports (loader.c, lconn.c, load_tcp.c,
 *                    load_udp.c)
 *   series.c         the --intervals time series
 *   load_result.c    merges the threads into struct load_result and evaluates the checks
 *   load_report.c    the human table, JSON, CSV
 *   load_record.c    --hist-out and --merge (histio.h), latency_ci_us (latci.h)
 *   echo_load.c      main: ties them together, progress, signals, exit code
 */
#ifndef ECHOBENCH_LOAD_H
#define ECHOBENCH_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "hist.h"

#define LOAD_CI_BLOCKS 10        /* equal time blocks of the window for latency_ci_us */

enum load_mode { MODE_CLOSED, MODE_OPEN, MODE_STREAM };

enum err_kind { ERR_REFUSED, ERR_RESET, ERR_TIMEOUT, ERR_EOF, ERR_OTHER, ERR_KINDS };
extern const char *const err_kind_name[ERR_KINDS];
enum err_kind err_kind_of(int err);   /* errno -> kind */

struct transport;
struct engine;

#define LOAD_MAX_SOURCES 256     /* --source: addresses in the range, at most */
#define LOAD_MAX_CHURN_MESSAGES 1000000   /* --churn-messages, at most */

struct load_config {
	struct endpoint target;
	const char *target_arg;
	const struct transport *tp; /* streams (TCP, unix) or datagrams (UDP) */
	const struct engine *engine; /* epoll or uring (--engine) */
	bool engine_set;            /* --engine was given: no silent fallback */
	uint32_t src_first;         /* --source: first IPv4 address (host order), src_count of
				     * them; connection id i binds to src_first + i % src_count */
	uint32_t src_count;         /* 0: no --source (the kernel picks) */
	bool src_auto;              /* chosen by echo-load because -c needs it */
	uint64_t processes;         /* --processes: forked load processes (1: none) */
	uint64_t id_base;           /* the global id of this process's first connection */
	uint64_t connections_total; /* over every process (== connections without --processes) */
	int ready_fd, go_fd;        /* a --processes child: says "connected", awaits the start */
	enum load_mode mode;
	bool churn;                 /* --churn: connect, K messages, close per transaction; mode
				     * is MODE_CLOSED (-c at once) or MODE_OPEN (-R per second) */
	uint64_t churn_messages;    /* --churn-messages K */
	bool close_rst;             /* --close rst: SO_LINGER 0, no TIME_WAIT on our side */
	uint64_t connections;
	uint64_t pipeline;          /* messages in flight per connection (open loop: at most) */
	uint64_t threads;
	double rate;                /* open loop: messages per second, all connections together */
	uint64_t size_lo, size_hi;
	uint64_t duration_ns, warmup_ns, timeout_ns, interval_ns;
	double connect_rate;        /* connections opened per second; 0 = as fast as possible */
	double start_at;            /* CLOCK_REALTIME seconds to start at; 0 = at once */
	uint64_t phase_k, phase_n;  /* --phase K/N: open-loop schedule offset by K/N interval */
	uint64_t seed;
	bool verify;
	bool progress;
	bool csv_header;
	bool strict;
	const char *json_path, *hgrm_path, *csv_path, *hist_out_path;
	char **merge_files;         /* --merge: the record files (NULL-terminated), no TARGET */
};

/* Everything a thread counts; summed over threads at the end. */
struct load_counts {
	/* --churn: a transaction counts where a message does (due or started in the window, done
	 * in it: transactions; after it: drained; never: unanswered); `sent` counts transactions
	 * started, `errors` and conns_failed transactions that failed. messages = K x those done. */
	uint64_t transactions;
	uint64_t no_port;           /* churn: starts that found no local port (the client's) */
	uint64_t messages;          /* due (closed loop: sent) and answered inside the window */
	uint64_t bytes;             /* echoed bytes of those messages */
	uint64_t drained;           /* due inside the window, answered after it (within timeout) */
	uint64_t sent;              /* messages handed to the socket inside the window */
	uint64_t mismatches;        /* messages whose echo differed from what was sent */
	uint64_t short_bytes;       /* sent but never echoed, on connections that failed */
	uint64_t extra_bytes;       /* received beyond what was sent */
	uint64_t lost;              /* datagrams never answered (UDP) */
	uint64_t unanswered;        /* due in the window, never answered */
	uint64_t errors[ERR_KINDS]; /* failed connections by cause (connect and mid-run) */
	uint64_t conns_failed;      /* connections that failed mid-run */
	int first_errno;            /* the first failure's errno, for the one-line reason */
};

enum check_id { CHECK_RATE, CHECK_SEND_LAG, CHECK_CLIENT_CPU, CHECK_VERIFY, CHECK_CONNECTIONS,
		CHECKS };

struct check {
	const char *name;
	bool ok;
	double value, limit;        /* NAN: does not apply (null in JSON) */
	char reason[320];           /* one line when not ok */
};

struct load_result {
	const struct load_config *cfg;
	struct hist *lat, *lat_unc, *connect;
	struct hist *first_reply;   /* churn: connect done to the first echoed byte */
	struct hist *lag;           /* open loop: the client's own lateness per message */
	struct hist *slot_wait;     /* open loop: the wait for a free slot per message (0: none) */
	struct hist *wake_late;     /* open loop: how late the threads' timed waits returned */
	struct hist *per_conn;      /* messages answered in the window, one value per connection */
	struct hist *block[LOAD_CI_BLOCKS];
	struct series *series;
	struct load_counts c;
	uint64_t connections;       /* asked for */
	uint64_t connected;         /* connections that were established (churn: transactions) */
	uint64_t threads;
	uint64_t pipeline;          /* in flight per connection as run; 0: unbounded */
	uint64_t inflight_max;      /* open loop: the most one connection had in flight */
	double spin_s;              /* open loop: time the threads polled for due times */
	double wake_early_us;       /* open loop: the largest early-wake margin a thread used */
	double cpu_wait_s;          /* open loop: time the threads waited, runnable, for a CPU */
	double rate_target;         /* open loop: msgs/s asked for (merged: the sum), else 0 */
	uint64_t starved;           /* connections with no answer in the window */
	double duration_s;          /* measured window actually run */
	double wall_s;              /* the whole run: warmup, window, drain and close */
	double user_s, sys_s;       /* the process's CPU time */
	double busiest;             /* highest fraction of its time one load thread was on CPU */
	double start_lag_us;        /* --start-at: how late the start was; < 0: not asked */
	bool complete;
	char error[512];
	struct check checks[CHECKS];
	bool valid;
};

extern atomic_bool load_stop_requested;
extern int load_signal_fd;      /* signalfd of SIGINT/SIGTERM, or -1 */

/* load_options.c: fills cfg; on bad input prints one line and exits 2. */
void load_parse_options(int argc, char **argv, struct load_config *cfg);

/* load_connect.c: opens cfg->connections connections (non-blocking connects, paced by
 * --connect-rate, each bounded by --timeout). fds[i] is the socket of connection i or -1;
 * connect latencies go to lat, failures to counts->errors. Returns the number connected, or
 * -errno of a local failure. */
long load_connect_all(const struct load_config *cfg, int *fds, struct hist *lat,
		      struct load_counts *counts);

/* load_connect.c: --source: the range given, or the one picked when -c needs more local
 * ports than one address has. Exits 1 (naming the limit) when the ports cannot suffice. */
void load_plan_sources(struct load_config *cfg);
uint64_t load_ephemeral_ports(void);   /* ports one source address has (ip_local_port_range) */
/* A non-blocking socket for the target, bound to source address number `src` of --source
 * (mod their count), if any. The fd, or -errno (-EADDRNOTAVAIL, -EADDRINUSE: no local port). */
int load_open_socket(const struct load_config *cfg, uint64_t src);

/* load_procs.c: --processes: forks them, each with its share of the connections and threads,
 * and merges their records (the --merge path) into r. Returns in the parent only. */
typedef int load_child_fn(struct load_config *cfg, const char *record_path);
int load_run_processes(struct load_config *cfg, struct load_result *r, load_child_fn *child);

/* load_result.c */
struct loader;
int result_init(struct load_result *r, const struct load_config *cfg);
void result_free(struct load_result *r);
/* No connection at all (connected <= 0: the count, or -errno of load_connect_all). */
void result_no_connection(struct load_result *r, long connected);
/* Sums the threads into r and decides whether the run is complete. */
void result_merge_loaders(struct load_result *r, const struct loader *ws, uint64_t n,
			  bool interrupted);
void result_evaluate(struct load_result *r);   /* fills checks and valid */
/* A complete run in which nothing was answered in the window becomes incomplete, saying so. */
void result_require_answers(struct load_result *r);
/* Answered in the window, per second (churn: transactions). */
double result_rate_achieved(const struct load_result *r);
double result_rate_sent(const struct load_result *r);
/* Open loop: the fraction of the window's messages that waited for a slot; NAN otherwise. */
double result_slot_wait_share(const struct load_result *r);

/* load_report.c: each returns 0 or -errno. */
int report_human(FILE *f, const struct load_result *r);
int report_json(FILE *f, const struct load_result *r);
int report_csv(FILE *f, const struct load_result *r, bool header);

/* load_record.c: the lossless record of --hist-out (clients/histio.h) and --merge, and the
 * percentile confidence intervals (clients/latci.h). */
int record_write(FILE *f, const struct load_result *r);
/* Reads and merges cfg->merge_files, then fills cfg (the runs' shape) and r (result_init
 * included); on failure prints one line and returns -errno. */
int record_merge_files(struct load_result *r, struct load_config *cfg);
/* Its two steps (clients/fuzz_histio.c drives them from memory). record_merge_stream: reads
 * one record from f into `one` (histio_read), checks that the run's shape in it is in range,
 * and merges it into `all`; 0, or -errno with a one-line reason in why. record_unpack: the
 * merged record -> cfg (the runs' shape) and r (result_init included); 0 or -ENOMEM. */
struct histio_record;
int record_merge_stream(struct histio_record *all, struct histio_record *one, FILE *f,
			char *why, size_t n);
int record_unpack(struct load_result *r, struct load_config *cfg, const struct histio_record *rec,
		  unsigned nfiles);
void report_ci_json(FILE *f, const struct load_result *r);   /* "unresolved" or [lo, hi] */
void report_ci_human(FILE *f, const struct load_result *r);

const char *mode_name(const struct load_config *cfg);   /* closed, open, stream, churn */
const char *transport_name(const struct load_config *cfg);
/* "127.0.0.2-127.0.0.9", or "" without --source. */
void source_text(const struct load_config *cfg, char *buf, size_t len);

#endif
