/* --processes N: the connections spread over N forked load processes, so that each stays under
 * its own open-file limit (RLIMIT_NOFILE is per process, and often cannot be raised).
 *
 * Child k takes the connections [k*C/N, (k+1)*C/N) with their global ids (payload streams and
 * --source addresses follow the id, as in one process), its share of the threads and of an
 * open-loop rate, with its schedule shifted by k/N of an interval so the children interleave.
 * Each child connects, says so on the ready pipe, and waits; once every child is ready (or
 * gone) the parent closes the go pipe and they start together. Each writes its lossless record
 * (clients/histio.h) to a file in a private temporary directory, and the parent merges them
 * through the --merge path (record_merge_files): counts add up, percentiles come from merged
 * buckets. SIGINT/SIGTERM to the parent stop the children (SIGTERM), which still report.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "die.h"
#include "load.h"
#include "sock.h"

struct child {
	pid_t pid;
	int status;
	bool exited;
	char path[64];
};

/* Reaps the children that have exited; returns how many are still running. */
static uint64_t reap(struct child *ch, uint64_t n)
{
	uint64_t alive = 0;

	for (uint64_t k = 0; k < n; k++) {
		if (!ch[k].exited && waitpid(ch[k].pid, &ch[k].status, WNOHANG) == ch[k].pid)
			ch[k].exited = true;
		alive += !ch[k].exited;
	}
	return alive;
}

static void stop_children(struct child *ch, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++)
		if (!ch[k].exited)
			kill(ch[k].pid, SIGTERM);
}

/* Child k's share of the configuration. */
static void share(struct load_config *cfg, uint64_t k, uint64_t n)
{
	uint64_t c = cfg->connections_total, t = cfg->threads;
	uint64_t lo = k * c / n, hi = (k + 1) * c / n;

	cfg->id_base = lo;
	cfg->connections = hi - lo;
	cfg->threads = t / n + (k < t % n);
	if (cfg->threads > cfg->connections)
		cfg->threads = cfg->connections;
	if (cfg->mode == MODE_OPEN) {
		cfg->rate = cfg->rate * (double)(hi - lo) / (double)c;
		cfg->phase_k = k * cfg->phase_n + cfg->phase_k;
		cfg->phase_n *= n;
	}
	cfg->processes = 1;   /* its record counts one; the merge adds them up */
	cfg->progress = false;
}

/* Polls the signal fd (and fd, when >= 0) for up to 100 ms. Returns true on a signal. */
static bool poll_signal(int sigfd, int fd)
{
	struct pollfd p[2] = { { sigfd, POLLIN, 0 }, { fd, POLLIN, 0 } };
	struct signalfd_siginfo si;

	if (poll(p, fd >= 0 ? 2 : 1, 100) > 0 && (p[0].revents & POLLIN) &&
	    read(sigfd, &si, sizeof(si)) > 0)
		return true;
	return false;
}

static int merge(struct load_config *cfg, struct load_result *r, struct child *ch, uint64_t n)
{
	char *files[n + 1];
	char target[sizeof(cfg->target.text)];
	uint64_t processes = cfg->processes;
	int err;

	for (uint64_t k = 0; k < n; k++)
		files[k] = ch[k].path;
	files[n] = NULL;
	memcpy(target, cfg->target.text, sizeof(target));
	cfg->merge_files = files;
	err = record_merge_files(r, cfg);
	cfg->merge_files = NULL;
	memcpy(cfg->target.text, target, sizeof(target));
	cfg->processes = processes;
	if (!err && !r->complete)
		snprintf(r->error, sizeof(r->error), "at least one of the %llu load processes did "
			 "not complete its run (its reason is above)", (unsigned long long)n);
	return err;
}

int load_run_processes(struct load_config *cfg, struct load_result *r, load_child_fn *child)
{
	uint64_t n = cfg->processes, per = (cfg->connections_total + n - 1) / n;
	uint64_t tper = (cfg->threads + n - 1) / n, ready = 0;
	long need = (long)(per + 2 * tper + 16), got = sock_raise_nofile((uint64_t)need);
	char dir[] = "/tmp/echo-load.XXXXXX";
	int ready_p[2], go_p[2], sigfd, err = 0;
	bool interrupted = false;
	struct child *ch;
	sigset_t sigs;

	if (got >= 0 && got < need)
		die(1, "--processes %llu: %llu connections per process need %ld open files but "
		    "RLIMIT_NOFILE (open files per process, hard limit) allows at most %ld: use "
		    "more processes", (unsigned long long)n, (unsigned long long)per, need, got);
	ch = calloc(n, sizeof(*ch));
	if (!ch || !mkdtemp(dir) || pipe2(ready_p, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(go_p, O_CLOEXEC) < 0)
		die(1, "cannot set up --processes: %s", strerror(errno ? errno : ENOMEM));
	/* Blocked before the fork: each child reads its own signals through its signalfd. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	fflush(NULL);
	for (uint64_t k = 0; k < n; k++) {
		snprintf(ch[k].path, sizeof(ch[k].path), "%s/p%llu.hist", dir, (unsigned long long)k);
		ch[k].pid = fork();
		if (ch[k].pid < 0) {
			fprintf(stderr, "echo-load: cannot fork load process %llu of %llu: %s\n",
				(unsigned long long)k + 1, (unsigned long long)n, strerror(errno));
			stop_children(ch, k);
			n = k;
			err = -EAGAIN;
			break;
		}
		if (ch[k].pid == 0) {
			close(ready_p[0]);
			close(go_p[1]);
			cfg->ready_fd = ready_p[1];
			cfg->go_fd = go_p[0];
			share(cfg, k, n);
			exit(child(cfg, ch[k].path));
		}
	}
	close(ready_p[1]);
	close(go_p[0]);
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		die(1, "cannot set up signals: %s", strerror(errno));
	/* Every child connected (or gone): start them together. */
	/* A child that wrote "ready" waits for go; one that exited before will not write. */
	while (!err && ready + (n - reap(ch, n)) < n) {
		char buf[64];
		ssize_t got_bytes;

		if (poll_signal(sigfd, ready_p[0])) {
			interrupted = true;
			stop_children(ch, n);
			break;
		}
		got_bytes = read(ready_p[0], buf, sizeof(buf));
		if (got_bytes > 0)
			ready += (uint64_t)got_bytes;
		else if (got_bytes == 0)
			break;   /* every child has closed its end */
	}
	close(go_p[1]);
	while (reap(ch, n)) {
		if (poll_signal(sigfd, -1) && !interrupted) {
			interrupted = true;
			stop_children(ch, n);
		}
	}
	close(ready_p[0]);
	close(sigfd);
	for (uint64_t k = 0; k < n && !err; k++) {
		if (WIFEXITED(ch[k].status) && WEXITSTATUS(ch[k].status) == 0)
			continue;
		fprintf(stderr, "echo-load: load process %llu of %llu %s %d without its record\n",
			(unsigned long long)k + 1, (unsigned long long)n,
			WIFSIGNALED(ch[k].status) ? "was killed by signal" : "exited with status",
			WIFSIGNALED(ch[k].status) ? WTERMSIG(ch[k].status) :
			WEXITSTATUS(ch[k].status));
		err = -ECHILD;
	}
	if (!err)
		err = merge(cfg, r, ch, n);
	for (uint64_t k = 0; k < n; k++)
		unlink(ch[k].path);
	rmdir(dir);
	free(ch);
	if (!err && interrupted) {
		r->complete = false;
		snprintf(r->error, sizeof(r->error), "interrupted after %.2fs of measurement",
			 r->duration_s);
	}
	return err;
}
