/* echo-load: measures an echo server (throughput, latency, byte-exact echo) without being the
 * bottleneck. See load.h for the map of the source files and `echo-load --help` for use.
 *
 * A run: parse options, raise the open-file limit, open the connections (their latency is
 * measured separately), start the clock, run one worker thread per share of the connections
 * for warmup + duration, merge what the workers counted, write the reports. The main thread
 * meanwhile prints progress and turns SIGINT/SIGTERM into a prompt, orderly stop.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "clock.h"
#include "die.h"
#include "load.h"
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

static void *worker_thread(void *arg)
{
	uint64_t one = 1;

	worker_main(arg);
	/* Wakes main at once instead of at its next progress tick. */
	if (write(done_fd, &one, sizeof(one)) < 0)
		return NULL;
	return NULL;
}

static void stop_workers(struct worker *ws, uint64_t n)
{
	uint64_t one = 1;

	load_stop_requested = true;
	for (uint64_t i = 0; i < n; i++)
		if (write(ws[i].stop_fd, &one, sizeof(one)) < 0)
			continue;   /* the flag alone stops it within one wait */
}

static void progress_line(struct worker *ws, uint64_t n, uint64_t t0, uint64_t *last_done,
			  uint64_t *last_t)
{
	uint64_t done = 0, errs = 0, now = now_ns();

	for (uint64_t i = 0; i < n; i++) {
		done += atomic_load_explicit(&ws[i].progress_done, memory_order_relaxed);
		errs += atomic_load_explicit(&ws[i].progress_errors, memory_order_relaxed);
	}
	fprintf(stderr, "echo-load: %6.1fs %12.0f msgs/s  errors %llu\n", (now - t0) / 1e9,
		(double)(done - *last_done) * 1e9 / (double)(now - *last_t),
		(unsigned long long)errs);
	*last_done = done;
	*last_t = now;
}

/* Waits for every worker, bounded: past the last moment they can run, they are told to stop. */
static bool wait_workers(const struct load_config *cfg, struct worker *ws, uint64_t n,
			 int sigfd, uint64_t t0)
{
	uint64_t finished = 0, last_done = 0, last_t = t0, next_progress = t0 + 1000000000u;
	uint64_t hard_end = ws[0].t_end + cfg->timeout_ns + 2000000000u;
	bool interrupted = false;

	while (finished < n) {
		struct pollfd p[2] = { { sigfd, POLLIN, 0 }, { done_fd, POLLIN, 0 } };
		uint64_t now = now_ns(), wake = cfg->progress ? next_progress : now + 1000000000u;
		int r;

		if (now >= hard_end && !load_stop_requested)
			stop_workers(ws, n);
		r = poll(p, 2, wake > now ? (int)((wake - now + 999999) / 1000000) : 0);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && (p[0].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) > 0) {
				interrupted = true;
				stop_workers(ws, n);
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

static void describe_errors(char *buf, size_t len, const struct load_counts *c)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned k = 0; k < ERR_KINDS; k++) {
		if (!c->errors[k] || used >= len)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%llu %s", used ? ", " : "",
					 (unsigned long long)c->errors[k], err_kind_name[k]);
	}
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

static int write_reports(const struct load_result *r, struct out *json, struct out *csv,
			 struct out *hgrm)
{
	const struct load_config *cfg = r->cfg;
	/* stdout carries JSON or CSV when asked: the human table moves to stderr. */
	FILE *human = json->f == stdout || csv->f == stdout || hgrm->f == stdout ? stderr : stdout;
	int err = 0;

	if (r->connected)
		report_human(human, r);
	if (json->f)
		err |= close_out(json, report_json(json->f, r));
	if (csv->f)
		err |= close_out(csv, report_csv(csv->f, r, cfg->csv_header));
	if (hgrm->f)
		err |= close_out(hgrm, hist_write_hgrm(r->lat, hgrm->f, 1000.0));
	return err ? -EIO : 0;
}

/* Sums the workers into res and decides whether the run is complete. */
static void merge_run(const struct load_config *cfg, struct load_result *res, struct worker *ws,
		      uint64_t n, bool interrupted)
{
	uint64_t measured_end = 0, early = 0, answered = 0;
	char why[160];

	for (uint64_t t = 0; t < n; t++) {
		struct worker *w = &ws[t];
		uint64_t end = w->t_stopped < w->t_end ? w->t_stopped : w->t_end;

		hist_merge(res->lat, w->lat);
		if (res->lat_unc && w->lat_unc)
			hist_merge(res->lat_unc, w->lat_unc);
		res->c.messages += w->c.messages;
		res->c.bytes += w->c.bytes;
		res->c.mismatches += w->c.mismatches;
		res->c.short_bytes += w->c.short_bytes;
		res->c.extra_bytes += w->c.extra_bytes;
		res->c.lost += w->c.lost;
		res->c.unanswered += w->c.unanswered;
		res->c.conns_failed += w->c.conns_failed;
		for (unsigned k = 0; k < ERR_KINDS; k++)
			res->c.errors[k] += w->c.errors[k];
		if (end > measured_end)
			measured_end = end;
		early += w->stopped_early;
		answered += w->done_total;
		if (w->error && res->complete) {
			res->complete = false;
			snprintf(res->error, sizeof(res->error), "%s", w->error_text);
		}
	}
	res->duration_s = measured_end > ws[0].t_measure ?
		(double)(measured_end - ws[0].t_measure) / 1e9 : 0.0;
	if (!res->complete)
		return;
	describe_errors(why, sizeof(why), &res->c);
	if (interrupted) {
		res->complete = false;
		snprintf(res->error, sizeof(res->error), "interrupted after %.2fs of measurement",
			 res->duration_s);
	} else if (early == n && !answered) {
		res->complete = false;
		snprintf(res->error, sizeof(res->error), "no answer from %s: every connection "
			 "failed (%s)", cfg->target.text, why);
	} else if (early == n) {
		res->complete = false;
		snprintf(res->error, sizeof(res->error), "every connection to %s was lost after "
			 "%.2fs of measurement (%s)", cfg->target.text, res->duration_s, why);
	}
}

/* Reports, the one-line verdict on stderr, and the exit status. */
static int finish_run(struct load_result *r, struct out *json, struct out *csv,
		      struct out *hgrm)
{
	const struct load_config *cfg = r->cfg;
	char verdict[600] = "";

	if (r->complete && !r->c.messages) {
		r->complete = false;
		snprintf(r->error, sizeof(r->error), "no message was answered inside the measured "
			 "window");
	}
	if (!r->complete)
		snprintf(verdict, sizeof(verdict), "%s", r->error);
	else if (cfg->verify && (r->c.mismatches || r->c.extra_bytes))
		snprintf(verdict, sizeof(verdict), "echo mismatch: %llu messages came back different "
			 "from what was sent, %llu bytes more than sent",
			 (unsigned long long)r->c.mismatches, (unsigned long long)r->c.extra_bytes);
	if (write_reports(r, json, csv, hgrm) < 0 && !verdict[0])
		return 1;
	if (verdict[0]) {
		fprintf(stderr, "echo-load: %s\n", verdict);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct load_config cfg;
	struct load_result res;
	struct out json, csv, hgrm;
	struct worker *ws = NULL;
	uint64_t nthreads = 0, t0 = 0;
	int *fds;
	uint64_t *ids;
	long connected, need, got;
	sigset_t sigs;
	int sigfd, code = 0;

	load_parse_options(argc, argv, &cfg);
	open_out(&json, cfg.json_path, "--json", "w");
	open_out(&csv, cfg.csv_path, "--csv", "a");
	open_out(&hgrm, cfg.hgrm_path, "--hgrm", "w");

	signal(SIGPIPE, SIG_IGN);
	/* Signals go to main through a signalfd; workers inherit the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigfd = load_signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sigfd < 0 || done_fd < 0)
		die(1, "cannot set up signals: %s", strerror(errno));

	/* One fd per connection, two per worker, and a few for stdio and outputs. */
	need = (long)(cfg.connections + 2 * cfg.threads + 16);
	got = sock_raise_nofile((uint64_t)need);
	if (got >= 0 && got < need)
		die(1, "%llu connections need %ld open files but RLIMIT_NOFILE allows at most %ld "
		      "(hard limit); raise it (ulimit -Hn) or use fewer connections",
		      (unsigned long long)cfg.connections, need, got);

	memset(&res, 0, sizeof(res));
	res.cfg = &cfg;
	res.connect = hist_new();
	res.lat = hist_new();
	res.lat_unc = cfg.mode == MODE_OPEN ? hist_new() : NULL;
	fds = calloc(cfg.connections, sizeof(*fds));
	ids = calloc(cfg.connections, sizeof(*ids));
	if (!res.connect || !res.lat || (cfg.mode == MODE_OPEN && !res.lat_unc) || !fds || !ids)
		die(1, "out of memory");

	connected = load_connect_all(&cfg, fds, res.connect, &res.c);
	res.connected = connected > 0 ? (uint64_t)connected : 0;
	res.complete = true;
	if (connected < 0) {
		res.complete = false;
		if (connected == -EINTR)
			snprintf(res.error, sizeof(res.error), "interrupted while connecting");
		else
			snprintf(res.error, sizeof(res.error), "cannot connect: %s",
				 strerror((int)-connected));
	} else if (connected == 0) {
		char why[160];

		describe_errors(why, sizeof(why), &res.c);
		res.complete = false;
		snprintf(res.error, sizeof(res.error), "cannot connect to %s: %s (every connection "
			 "failed: %s)", cfg.target.text, strerror(res.c.first_errno), why);
	} else {
		uint64_t n = 0;
		int err = 0;

		/* Compact the connected sockets; connection i keeps id i (its payload stream). */
		for (uint64_t i = 0; i < cfg.connections; i++) {
			if (fds[i] >= 0) {
				fds[n] = fds[i];
				ids[n++] = i;
			}
		}
		nthreads = cfg.threads < n ? cfg.threads : n;
		ws = calloc(nthreads, sizeof(*ws));
		if (!ws)
			die(1, "out of memory");
		/* Worker t takes connections t, t+T, t+2T...: shares differ by one at most. */
		for (uint64_t t = 0; t < nthreads && !err; t++) {
			uint64_t m = 0;
			int *wf = malloc(((n + nthreads - 1) / nthreads) * sizeof(*wf));
			uint64_t *wi = malloc(((n + nthreads - 1) / nthreads) * sizeof(*wi));

			if (!wf || !wi)
				die(1, "out of memory");
			for (uint64_t j = t; j < n; j += nthreads) {
				wf[m] = fds[j];
				wi[m++] = ids[j];
			}
			err = worker_setup(&ws[t], &cfg, (int)t, wf, wi, (uint32_t)m);
			free(wf);
			free(wi);
		}
		if (err)
			die(1, "cannot set up the workers: %s", strerror(-err));
		res.threads = nthreads;
		res.pipeline = ws[0].pipeline;
		t0 = now_ns();
		for (uint64_t t = 0; t < nthreads; t++)
			worker_start_clock(&ws[t], t0);
		for (uint64_t t = 0; t < nthreads; t++) {
			err = pthread_create(&ws[t].thread, NULL, worker_thread, &ws[t]);
			if (err) {
				/* Those started are stopped and joined; the run is reported as such. */
				stop_workers(ws, t);
				for (uint64_t u = 0; u < t; u++)
					pthread_join(ws[u].thread, NULL);
				die(1, "cannot start a thread: %s", strerror(err));
			}
		}
		merge_run(&cfg, &res, ws, nthreads, wait_workers(&cfg, ws, nthreads, sigfd, t0));
	}
	code = finish_run(&res, &json, &csv, &hgrm);
	for (uint64_t t = 0; t < nthreads; t++)
		worker_free(&ws[t]);
	free(ws);
	free(fds);
	free(ids);
	hist_free(res.lat);
	hist_free(res.lat_unc);
	hist_free(res.connect);
	return code;
}
