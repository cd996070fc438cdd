#include "prefork.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct report {
	struct server_stats st;
	int failure;              /* server_failure() of the child */
};

static bool read_all(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* The child's whole life: its share, its workers, one ready byte, the stop signal, the
 * report. Never returns. */
static void child_main(struct server *s, int k, int fd, pid_t parent, const sigset_t *stop)
{
	struct report rep;
	const char *why;
	int sig, rc;

	/* The parent's SIGKILL must not leave servers behind; it may already be gone. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(1);
	server_keep_share(s, k);
	rc = server_start(s, &why);
	if (rc < 0) {
		fprintf(stderr, "echo-server: process %d: %s: %s\n", k, why, strerror(-rc));
		_exit(1);
	}
	write_all(fd, "r", 1);
	while (sigwait(stop, &sig) != 0)
		;
	server_stop(s);
	memset(&rep, 0, sizeof(rep));
	server_get_stats(s, &rep.st);
	rep.failure = server_failure(s);
	write_all(fd, &rep, sizeof(rep));
	server_close(s);
	_exit(rep.failure < 0 ? 1 : 0);
}

int prefork_start(struct prefork *pf, struct server *s, int n, const sigset_t *stop,
		  const char **why)
{
	pid_t parent = getpid();
	struct server_stats unused;

	*pf = (struct prefork){ .n = 0 };
	if (n > PREFORK_MAX) {
		*why = "too many processes";
		return -EINVAL;
	}
	fflush(NULL);   /* nothing buffered may be written twice */
	for (int k = 0; k < n; k++) {
		int p[2];
		pid_t pid;

		if (pipe2(p, O_CLOEXEC) < 0) {
			*why = "pipe failed";
			goto fail;
		}
		pid = fork();
		if (pid < 0) {
			close(p[0]);
			close(p[1]);
			*why = "fork failed";
			goto fail;
		}
		if (pid == 0) {
			close(p[0]);
			for (int j = 0; j < pf->n; j++)
				close(pf->fd[j]);
			child_main(s, k, p[1], parent, stop);
		}
		close(p[1]);
		pf->pid[pf->n] = pid;
		pf->fd[pf->n++] = p[0];
	}
	server_keep_share(s, -1);
	for (int k = 0; k < pf->n; k++) {
		char c;
		if (!read_all(pf->fd[k], &c, 1)) {
			*why = "a worker process failed to start";
			goto fail;
		}
	}
	return 0;
fail:
	prefork_stop(pf, &unused);
	return -ECHILD;
}

static bool exited_clean(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

pid_t prefork_reap_one(struct prefork *pf, bool *clean)
{
	for (int k = 0; k < pf->n; k++) {
		if (pf->pid[k] > 0 && waitpid(pf->pid[k], &pf->status[k], WNOHANG) == pf->pid[k]) {
			pid_t pid = pf->pid[k];
			pf->pid[k] = -pid;   /* reaped: its report pipe still says what it left */
			*clean = exited_clean(pf->status[k]);
			return pid;
		}
	}
	return 0;
}

int prefork_stop(struct prefork *pf, struct server_stats *sum)
{
	int rc = 0;

	memset(sum, 0, sizeof(*sum));
	for (int k = 0; k < pf->n; k++)
		if (pf->pid[k] > 0)
			kill(pf->pid[k], SIGTERM);
	for (int k = 0; k < pf->n; k++) {
		struct report rep;
		int status = 0;

		if (read_all(pf->fd[k], &rep, sizeof(rep))) {
			server_stats_add(sum, &rep.st);
			if (rep.failure < 0)
				rc = -1;
		} else {
			rc = -1;
		}
		close(pf->fd[k]);
		if (pf->pid[k] > 0 && waitpid(pf->pid[k], &status, 0) < 0)
			rc = -1;
		if (pf->pid[k] < 0)
			status = pf->status[k];   /* reaped before the stop */
		if (!exited_clean(status))
			rc = -1;
	}
	pf->n = 0;
	return rc;
}
