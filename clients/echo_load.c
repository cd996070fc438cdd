/* echo-load: measures an echo server (throughput, latency, byte-exact echo) without being the
 * bottleneck. See load.h for the map of the source files and `echo-load --help` for use.
 *
 * A run: parse options, raise the open-file limit, open the connections (their latency is
 * measured separately), wait for --start-at if given, start the clock, run one load thread per
 * share of the connections for warmup + duration (+ drain and close), merge what the threads
 * counted, check the result, write the reports. The main thread meanwhile prints progress and
 * turns SIGINT/SIGTERM into a prompt, orderly stop.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "die.h"
#include "load.h"
#include "loader.h"
#include "sock.h"

atomic_bool load_stop_requested;
int load_signal_fd = -1;

static int done_fd = -1;

struct out {
	const char *path;
	FILE *f;
};

static void open_out(struct out *o, const char *path, const char *opt, const char *mode)
{
	o->path = path;
	o->f = NULL;
	if (!path)
		return;
	if (strcmp(path, "-") == 0) {
		o->f = stdout;
		return;
	}
	o->f = fopen(path, mode);
	if (!o->f)
		die(2, "cannot write %s '%s': %s", opt, path, strerror(errno));
}

static void *loader_thread(void *arg)
{
	uint64_t one = 1;

	loader_main(arg);
	/* Wakes main at once instead of at its next progress tick. */
	if (write(done_fd, &one, sizeof(one)) < 0)
		return NULL;
	return NULL;
}

static void stop_loaders(struct loader *ws, uint64_t n)
{
	uint64_t one = 1;

	load_stop_requested = true;
	for (uint64_t i = 0; i < n; i++)
		if (write(ws[i].stop_fd, &one, sizeof(one)) < 0)
			continue;   /* the flag alone stops it within one wait */
}

static void progress_line(struct loader *ws, uint64_t n, uint64_t t0, uint64_t *last_done,
			  uint64_t *last_t)
{
	uint64_t done = 0, errs = 0, now = now_ns();

	for (uint64_t i = 0; i < n; i++) {
		done += atomic_load_explicit(&ws[i].progress_done, memory_order_relaxed);
		errs += atomic_load_explicit(&ws[i].progress_errors, memory_order_relaxed);
	}
	fprintf(stderr, "echo-load: %6.1fs %12.0f %s/s  errors %llu\n", (now - t0) / 1e9,
		(double)(done - *last_done) * 1e9 / (double)(now - *last_t),
		ws[0].churn ? "transactions" : "msgs", (unsigned long long)errs);
	*last_done = done;
	*last_t = now;
}

/* Waits for every worker, bounded: past the last moment they can run, they are told to stop. */
static bool wait_loaders(const struct load_config *cfg, struct loader *ws, uint64_t n,
			 int sigfd, uint64_t t0)
{
	uint64_t finished = 0, last_done = 0, last_t = t0, next_progress = t0 + 1000000000u;
	uint64_t hard_end = ws[0].t_end + 2 * cfg->timeout_ns + 2000000000u;   /* drain, close */
	bool interrupted = false;

	while (finished < n) {
		struct pollfd p[2] = { { sigfd, POLLIN, 0 }, { done_fd, POLLIN, 0 } };
		uint64_t now = now_ns(), wake = cfg->progress ? next_progress : now + 1000000000u;
		int r;

		if (now >= hard_end && !load_stop_requested)
			stop_loaders(ws, n);
		r = poll(p, 2, wake > now ? (int)((wake - now + 999999) / 1000000) : 0);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && (p[0].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) > 0) {
				interrupted = true;
				stop_loaders(ws, n);
			}
		}
		if (r > 0 && (p[1].revents & POLLIN)) {
			uint64_t k;
			if (read(done_fd, &k, sizeof(k)) == sizeof(k))
				finished += k;
		}
		if (cfg->progress && now_ns() >= next_progress && finished < n) {
			progress_line(ws, n, t0, &last_done, &last_t);
			next_progress += 1000000000u;
		}
	}
	for (uint64_t i = 0; i < n; i++)
		pthread_join(ws[i].thread, NULL);
	return interrupted;
}

/* Closes an output; a failed write or close is reported once, naming the file. */
static int close_out(struct out *o, int err)
{
	if (!o->f)
		return 0;
	if (o->f != stdout && fclose(o->f) != 0)
		err = -EIO;
	else if (o->f == stdout && fflush(stdout) != 0)
		err = -EIO;
	if (err)
		fprintf(stderr, "echo-load: cannot write '%s'\n", o->path);
	o->f = NULL;
	return err;
}

struct outs {
	struct out json, csv, hgrm, hist;
};

static void open_outs(const struct load_config *cfg, struct outs *o)
{
	open_out(&o->json, cfg->json_path, "--json", "w");
	open_out(&o->csv, cfg->csv_path, "--csv", "a");
	open_out(&o->hgrm, cfg->hgrm_path, "--hgrm", "w");
	open_out(&o->hist, cfg->hist_out_path, "--hist-out", "w");
}

static int write_reports(const struct load_result *r, struct outs *o)
{
	const struct load_config *cfg = r->cfg;
	/* stdout carries JSON, CSV or a histogram when asked: the human table moves to stderr. */
	FILE *human = o->json.f == stdout || o->csv.f == stdout || o->hgrm.f == stdout ||
		o->hist.f == stdout ? stderr : stdout;
	int err = 0;

	if (r->connected)
		report_human(human, r);
	if (o->json.f)
		err |= close_out(&o->json, report_json(o->json.f, r));
	if (o->csv.f)
		err |= close_out(&o->csv, report_csv(o->csv.f, r, cfg->csv_header));
	if (o->hgrm.f)
		err |= close_out(&o->hgrm, hist_write_hgrm(r->lat, o->hgrm.f, 1000.0));
	if (o->hist.f)
		err |= close_out(&o->hist, record_write(o->hist.f, r));
	return err ? -EIO : 0;
}

/* Reports, the one-line verdict on stderr, and the exit status. */
static int finish_run(struct load_result *r, struct outs *o)
{
	const struct load_config *cfg = r->cfg;
	char verdict[600] = "";

	result_require_answers(r);
	result_evaluate(r);
	if (cfg->churn && r->c.no_port)
		fprintf(stderr, "echo-load: %llu transactions could not start, no local port left "
			"(the client's limit, not the server's): a closed connection holds its port "
			"60 s in TIME_WAIT and one source address has %llu (ip_local_port_range); give "
			"--source A-B or --close rst\n", (unsigned long long)r->c.no_port,
			(unsigned long long)load_ephemeral_ports());
	if (!r->complete)
		snprintf(verdict, sizeof(verdict), "%s", r->error);
	else if (cfg->verify && (r->c.mismatches || r->c.extra_bytes))
		snprintf(verdict, sizeof(verdict), "echo mismatch: %llu messages came back different "
			 "from what was sent, %llu bytes more than sent",
			 (unsigned long long)r->c.mismatches, (unsigned long long)r->c.extra_bytes);
	if (write_reports(r, o) < 0 && !verdict[0])
		return 1;
	if (verdict[0]) {
		fprintf(stderr, "echo-load: %s\n", verdict);
		return 1;
	}
	return cfg->strict && !r->valid ? 3 : 0;
}

static double realtime_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --start-at: sleeps (signals still end it) and polls the last 2 ms, so that hosts given the
 * same T start together. Returns how late the start was, in microseconds. */
static double wait_start(double at, int sigfd)
{
	for (;;) {
		double left = at - realtime_s();
		struct pollfd p = { sigfd, POLLIN, 0 };

		if (left <= 0 || load_stop_requested)
			break;
		if (left > 0.002) {
			int ms = (int)((left - 0.002) * 1000);
			if (poll(&p, 1, ms > 100 ? 100 : ms) > 0)
				load_stop_requested = true;
		}
	}
	return (realtime_s() - at) * 1e6;
}

/* A --processes child: tells the parent it has connected, then waits for the common start
 * (the parent closes the go pipe once every child is ready). */
static void await_go(const struct load_config *cfg, int sigfd)
{
	char b = 1;

	if (write(cfg->ready_fd, &b, 1) < 0)
		return;
	for (;;) {
		struct pollfd p[2] = { { cfg->go_fd, POLLIN, 0 }, { sigfd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		if (p[1].revents & POLLIN) {
			load_stop_requested = true;
			return;
		}
		if (p[0].revents)
			return;   /* EOF: go */
	}
}

/* Splits the connected sockets among the threads and starts them. Connection i keeps id i
 * (its payload stream). Returns the threads, with *n set. */
static struct loader *start_loaders(const struct load_config *cfg, struct load_result *res,
				    int *fds, uint64_t *ids, uint64_t *nthreads, int sigfd)
{
	struct loader *ws;
	uint64_t n = 0, t0;
	int err = 0;

	for (uint64_t i = 0; i < cfg->connections; i++) {
		if (cfg->churn)
			fds[i] = -1;
		if (fds[i] >= 0 || cfg->churn) {
			fds[n] = fds[i];
			ids[n++] = cfg->id_base + i;
		}
	}
	*nthreads = cfg->threads < n ? cfg->threads : n;
	ws = calloc(*nthreads, sizeof(*ws));
	if (!ws)
		die(1, "out of memory");
	/* Thread t takes connections t, t+T, t+2T...: shares differ by one at most. */
	for (uint64_t t = 0; t < *nthreads && !err; t++) {
		uint64_t m = 0, per = (n + *nthreads - 1) / *nthreads;
		int *wf = malloc(per * sizeof(*wf));
		uint64_t *wi = malloc(per * sizeof(*wi));

		if (!wf || !wi)
			die(1, "out of memory");
		for (uint64_t j = t; j < n; j += *nthreads) {
			wf[m] = fds[j];
			wi[m++] = ids[j];
		}
		err = loader_setup(&ws[t], cfg, (int)t, wf, wi, (uint32_t)m);
		free(wf);
		free(wi);
	}
	if (err)
		die(1, "cannot set up the load threads: %s", strerror(-err));
	res->threads = *nthreads;
	res->pipeline = cfg->pipeline ? ws[0].pipeline : 0;   /* 0: unbounded */
	if (cfg->go_fd >= 0)
		await_go(cfg, sigfd);
	if (cfg->start_at > 0)
		res->start_lag_us = wait_start(cfg->start_at, sigfd);
	t0 = now_ns();
	for (uint64_t t = 0; t < *nthreads; t++)
		loader_start_clock(&ws[t], t0);
	for (uint64_t t = 0; t < *nthreads; t++) {
		err = pthread_create(&ws[t].thread, NULL, loader_thread, &ws[t]);
		if (err) {
			/* Those started are stopped and joined; the run is reported as such. */
			stop_loaders(ws, t);
			for (uint64_t u = 0; u < t; u++)
				pthread_join(ws[u].thread, NULL);
			die(1, "cannot start a thread: %s", strerror(err));
		}
	}
	return ws;
}

static int setup_signals(void)
{
	sigset_t sigs;
	int sigfd;

	signal(SIGPIPE, SIG_IGN);
	/* Signals go to main through a signalfd; the threads inherit the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigfd = load_signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sigfd < 0 || done_fd < 0)
		die(1, "cannot set up signals: %s", strerror(errno));
	return sigfd;
}

/* Connects and runs the load threads in this process; fills res (result_init done). */
static void run_here(struct load_config *cfg, struct load_result *res, struct loader **wsp,
		     uint64_t *nthreads)
{
	int sigfd = setup_signals();
	long connected, need, got;
	int *fds;
	uint64_t *ids;

	/* One fd per connection, two per thread, and a few for stdio and outputs. */
	need = (long)(cfg->connections + 2 * cfg->threads + 16);
	got = sock_raise_nofile((uint64_t)need);
	if (got >= 0 && got < need)
		die(1, "%llu connections need %ld open files but RLIMIT_NOFILE (open files per "
		      "process, hard limit) allows at most %ld: use --processes, or raise it "
		      "(ulimit -Hn)", (unsigned long long)cfg->connections, need, got);
	fds = calloc(cfg->connections, sizeof(*fds));
	ids = calloc(cfg->connections, sizeof(*ids));
	if (!fds || !ids)
		die(1, "out of memory");
	res->rate_target = cfg->mode == MODE_OPEN ? cfg->rate : 0;
	/* Churn: slots, not connections; each transaction connects on its own (load_churn.c). */
	connected = cfg->churn ? (long)cfg->connections :
		load_connect_all(cfg, fds, res->connect, &res->c);
	res->connected = connected > 0 ? (uint64_t)connected : 0;
	res->complete = true;
	if (connected > 0 && res->c.errors[ERR_OTHER] && res->c.first_errno == EADDRNOTAVAIL)
		fprintf(stderr, "echo-load: %llu connections failed with no local port left: "
			"ephemeral ports per source address (ip_local_port_range, %llu) ran out; "
			"give --source A-B\n", (unsigned long long)res->c.errors[ERR_OTHER],
			(unsigned long long)load_ephemeral_ports());
	if (connected <= 0) {
		if (cfg->go_fd >= 0)
			await_go(cfg, sigfd);   /* the others still start together */
		result_no_connection(res, connected);
	} else {
		bool interrupted;
		struct loader *ws = start_loaders(cfg, res, fds, ids, nthreads, sigfd);
		uint64_t t_run = ws[0].t_start;

		interrupted = wait_loaders(cfg, ws, *nthreads, sigfd, ws[0].t_start);
		res->wall_s = (double)(now_ns() - t_run) / 1e9;
		result_merge_loaders(res, ws, *nthreads, interrupted);
		*wsp = ws;
	}
	free(fds);
	free(ids);
}

/* A --processes child: runs its share and writes its record for the parent to merge. Its
 * failures are told on stderr; the parent reports the merged run. */
static int run_child(struct load_config *cfg, const char *record_path)
{
	struct load_result res;
	struct loader *ws = NULL;
	uint64_t nthreads = 0;
	FILE *f;
	int err;

	if (result_init(&res, cfg) < 0)
		die(1, "out of memory");
	run_here(cfg, &res, &ws, &nthreads);
	if (!res.complete)
		fprintf(stderr, "echo-load: the process of connections %llu-%llu: %s\n",
			(unsigned long long)cfg->id_base,
			(unsigned long long)(cfg->id_base + cfg->connections - 1), res.error);
	f = fopen(record_path, "w");
	err = f ? record_write(f, &res) : -errno;
	if (f && fclose(f) != 0 && !err)
		err = -EIO;
	for (uint64_t t = 0; t < nthreads; t++)
		loader_free(&ws[t]);
	free(ws);
	result_free(&res);
	if (err)
		die(1, "cannot write the record '%s': %s", record_path, strerror(-err));
	return 0;
}

int main(int argc, char **argv)
{
	struct load_config cfg;
	struct load_result res;
	struct outs outs;
	struct loader *ws = NULL;
	uint64_t nthreads = 0;
	int code = 0;

	load_parse_options(argc, argv, &cfg);
	open_outs(&cfg, &outs);
	if (cfg.merge_files) {
		if (record_merge_files(&res, &cfg) < 0)
			exit(1);
		code = finish_run(&res, &outs);
		result_free(&res);
		return code;
	}
	engine_choose(&cfg);
	load_plan_sources(&cfg);
	if (cfg.processes > 1) {
		if (load_run_processes(&cfg, &res, run_child) < 0)
			exit(1);
	} else {
		if (result_init(&res, &cfg) < 0)
			die(1, "out of memory");
		run_here(&cfg, &res, &ws, &nthreads);
	}
	code = finish_run(&res, &outs);
	for (uint64_t t = 0; t < nthreads; t++)
		loader_free(&ws[t]);
	free(ws);
	result_free(&res);
	return code;
}
