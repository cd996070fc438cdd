/* echo-load's internals: the run configuration, the per-thread workers and the merged result.
 *
 *   load_options.c   command line -> struct load_config (exit 2 on bad input)
 *   load_connect.c   opens the connections before the clock starts (paced, timed, bounded)
 *   load_worker.c    one epoll loop per thread: closed loop, open loop and stream over TCP/unix
 *   load_udp.c       the datagram side of the worker (batched with sendmmsg/recvmmsg)
 *   load_report.c    the human table, JSON, CSV
 *   echo_load.c      main: ties them together, progress, signals, exit code
 */
#ifndef ECHOBENCH_LOAD_H
#define ECHOBENCH_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "hist.h"
#include "ratesched.h"

enum load_mode { MODE_CLOSED, MODE_OPEN, MODE_STREAM };

enum err_kind { ERR_REFUSED, ERR_RESET, ERR_TIMEOUT, ERR_EOF, ERR_OTHER, ERR_KINDS };
extern const char *const err_kind_name[ERR_KINDS];
enum err_kind err_kind_of(int err);   /* errno -> kind */

struct load_config {
	struct endpoint target;
	const char *target_arg;
	bool udp;
	enum load_mode mode;
	uint64_t connections;
	uint64_t pipeline;          /* messages in flight per connection (closed loop, stream) */
	uint64_t threads;
	double rate;                /* open loop: messages per second, all connections together */
	uint64_t size_lo, size_hi;
	uint64_t duration_ns, warmup_ns, timeout_ns;
	double connect_rate;        /* connections opened per second; 0 = as fast as possible */
	uint64_t seed;
	bool verify;
	bool progress;
	bool csv_header;
	const char *json_path, *hgrm_path, *csv_path;
};

/* Everything a worker counts; summed over workers at the end. */
struct load_counts {
	uint64_t messages;          /* completed inside the measured window */
	uint64_t bytes;             /* echoed bytes of those messages */
	uint64_t mismatches;        /* messages whose echo differed from what was sent */
	uint64_t short_bytes;       /* sent but never echoed, on connections that failed */
	uint64_t extra_bytes;       /* received beyond what was sent */
	uint64_t lost;              /* datagrams never answered (UDP) */
	uint64_t unanswered;        /* open loop: scheduled in the window, unanswered at the end */
	uint64_t errors[ERR_KINDS]; /* failed connections by cause (connect and mid-run) */
	uint64_t conns_failed;      /* connections that failed mid-run */
	int first_errno;            /* the first failure's errno, for the one-line reason */
};

/* One message in flight, or queued to go (open loop, partial writes). */
struct msg {
	uint64_t start_off;         /* offset of its first byte in the connection's stream */
	uint64_t t_sched;           /* due time: latency counts from here */
	uint64_t t_sent;            /* when it was handed to the socket: uncorrected latency */
	uint32_t size;
	uint32_t bad;               /* a mismatch has been counted for it */
};

struct conn {
	int fd;
	bool dead;
	bool want_out;              /* EPOLLOUT is armed */
	uint32_t slot;              /* index in its worker's array: picks its open-loop ticks */
	uint64_t id;                /* global connection number: names its payload stream */
	uint64_t send_off;          /* bytes handed to the socket */
	uint64_t queued_off;        /* end of the last queued message */
	uint64_t recv_off;          /* bytes received and checked */
	struct msg *ring;           /* in-flight messages, oldest at head */
	uint32_t mask, head, count;
	uint32_t nsent;             /* UDP: ring entries from head already sent */
	uint64_t next_idx;          /* open loop: the connection's next message number */
	uint64_t owed;              /* open loop: messages due but not yet queued (ring full) */
	uint64_t rng;               /* size draws */
};

struct worker {
	const struct load_config *cfg;
	int index;
	pthread_t thread;
	int ep;
	int stop_fd;                /* eventfd: readable when main asks every worker to stop */
	struct conn *conns;
	uint32_t nconns, live;
	uint32_t pipeline;          /* closed loop and stream: messages kept in flight */
	bool blocking;              /* one connection, closed loop: no event loop (see worker) */
	uint64_t pending;           /* messages queued or in flight on live connections */
	uint8_t *rbuf, *wbuf;
	size_t rbuf_len, wbuf_len;
	size_t udp_slot;            /* UDP: bytes per datagram slot in rbuf/wbuf */
	uint64_t t_measure, t_end;  /* the measured window [t_measure, t_end) */
	struct ratesched rs;
	struct hist *lat;           /* from due time (closed loop: send time) */
	struct hist *lat_unc;       /* open loop: from the actual send */
	struct load_counts c;
	uint64_t done_total;        /* messages answered, warmup included (progress) */
	uint64_t t_stopped;
	bool stopped_early;         /* its connections all failed before t_end */
	int error;                  /* 0 or -errno of an internal failure (epoll) */
	char error_text[160];
	_Atomic uint64_t progress_done, progress_errors;
};

extern atomic_bool load_stop_requested;
extern int load_signal_fd;      /* signalfd of SIGINT/SIGTERM, or -1 */

/* load_options.c: fills cfg; on bad input prints one line and exits 2. */
void load_parse_options(int argc, char **argv, struct load_config *cfg);

/* load_connect.c: opens cfg->connections connections (TCP/unix: non-blocking connects, paced
 * by --connect-rate, each bounded by --timeout; UDP: connected datagram sockets). fds[i] is the
 * socket of connection i or -1; connect latencies go to lat, failures to counts->errors.
 * Returns the number connected, or -errno of a local failure. */
long load_connect_all(const struct load_config *cfg, int *fds, struct hist *lat,
		      struct load_counts *counts);

/* load_worker.c */
int worker_setup(struct worker *w, const struct load_config *cfg, int index, const int *fds,
		 const uint64_t *ids, uint32_t n);
void worker_free(struct worker *w);
void *worker_main(void *arg);
void worker_start_clock(struct worker *w, uint64_t t0);

/* Shared with load_udp.c. */
void conn_fail(struct worker *w, struct conn *c, enum err_kind kind);
void conn_queue(struct worker *w, struct conn *c, uint64_t t_sched, uint64_t now);
void conn_done(struct worker *w, struct conn *c, uint64_t now);
/* After answers: closed loop tops up to the pipeline depth, open loop queues what is due. */
void conn_replenish(struct worker *w, struct conn *c, uint64_t now);
void conn_set_want_out(struct worker *w, struct conn *c, bool on);
void udp_flush(struct worker *w, struct conn *c);
void udp_readable(struct worker *w, struct conn *c);

struct load_result {
	const struct load_config *cfg;
	struct hist *lat, *lat_unc, *connect;
	struct load_counts c;
	uint64_t connected;         /* connections that were established */
	uint64_t threads;
	uint64_t pipeline;          /* in flight per connection as run */
	double duration_s;          /* measured window actually run */
	bool complete;
	char error[512];
};

/* load_report.c: each returns 0 or -errno. */
int report_human(FILE *f, const struct load_result *r);
int report_json(FILE *f, const struct load_result *r);
int report_csv(FILE *f, const struct load_result *r, bool header);

const char *mode_name(enum load_mode m);

#endif
