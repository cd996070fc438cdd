/* The echo server as a library: echo-server's main() and the in-process microbenchmarks in
 * bench/ both drive it through this interface.
 *
 * Life cycle: server_open() binds every listener (so the ports are known and errors such as
 * "address in use" come back before anything runs), server_start() starts the backend's
 * threads, server_stop() stops accepting, drains pending echo (bounded by drain_timeout_ns) and
 * joins, server_close() frees. All functions return 0 or -errno.
 */
#ifndef ECHOBENCH_SERVER_H
#define ECHOBENCH_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define SERVER_MAX_LISTEN 16
#define SERVER_WHY_MAX 256
#define SERVER_DEFAULT_LISTEN "127.0.0.1:7007"

struct server_config {
	const char *backend;             /* a name of the backend table (server_backend_name()) */
	struct endpoint listen[SERVER_MAX_LISTEN];  /* ep.udp: serve UDP only on that address */
	int nlisten;                     /* the defaults hold SERVER_DEFAULT_LISTEN */
	bool udp;                        /* also serve UDP echo beside each TCP address */
	unsigned threads;                /* event loops (each with its own SO_REUSEPORT listener) */
	unsigned processes;              /* prefork: listeners are bound for processes x threads
					  * workers; each process keeps its share (prefork.h) */
	unsigned max_conns;              /* 0: no limit beyond the fd limit */
	unsigned max_conns_per_source;   /* 0: none; else per source IP address, per process */
	uint64_t idle_timeout_ns;        /* 0: off; else close connections that moved no byte
					  * either way for this long (services.c) */
	size_t bufsize;                  /* per-connection echo buffer */
	uint64_t drain_timeout_ns;       /* how long server_stop() waits for pending echo */
	int failure_signal;              /* raised on the process when a worker dies (0: none) */
};

void server_config_defaults(struct server_config *cfg);

struct server_stats {
	uint64_t accepted;        /* TCP connections accepted and served */
	uint64_t refused;         /* accepted then closed at once: max-conns (per source too),
				   * FD_SETSIZE, EMFILE */
	uint64_t resets;          /* connections that ended in ECONNRESET/EPIPE/other errors */
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t datagrams;       /* UDP datagrams echoed */
	uint64_t dropped;         /* UDP datagrams dropped (privileged source port, send failure) */
	uint64_t idle_closed;     /* connections closed by --idle-timeout (not counted in resets) */
};

/* Adds every count of st to sum: the one place that lists them, for threads and processes. */
void server_stats_add(struct server_stats *sum, const struct server_stats *st);

struct server;

/* Binds the listeners. On failure the one-line reason is written to why (the caller's
 * SERVER_WHY_MAX bytes). */
int server_open(const struct server_config *cfg, struct server **out, char *why);
/* Prefork (cfg->processes > 1), after fork(): process k (0 <= k < processes) keeps only its own
 * workers' listeners (and the shared unix ones) and leaves the unix paths to the parent; the
 * parent (k < 0) keeps none of the per-worker sockets, so a child that dies takes its queue
 * with it, and it unlinks the unix paths at server_close(). */
void server_keep_share(struct server *s, int k);
int server_listener_count(const struct server *s);
/* Canonical text of listener i with its real port: "127.0.0.1:40123", "udp:127.0.0.1:40123",
 * "unix:/tmp/x.sock". */
const char *server_listener_text(const struct server *s, int i);
int server_start(struct server *s, const char **why);
void server_stop(struct server *s);
/* 0, or the -errno a worker died with (the server then no longer serves everything it
 * listens on, and should be stopped). */
int server_failure(const struct server *s);
void server_get_stats(const struct server *s, struct server_stats *out);
void server_close(struct server *s);

/* The backend table (backends.c): backends and variants compiled in, in a fixed order. Entry i
 * for i = 0, 1, ... until the name is NULL. */
const char *server_backend_name(int i);
const char *server_backend_summary(int i);
/* A table lookup only: says nothing about whether the backend works here. */
bool server_backend_known(const char *name);
/* 0 when the backend works on this kernel, else -errno with *why saying why not (-ENOENT for
 * a name not in the table). May set up kernel objects (io_uring): call it once, when starting
 * or listing. */
int server_backend_probe(const char *name, const char **why);

#endif
