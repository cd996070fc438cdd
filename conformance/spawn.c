#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "netio.h"

static void *drain_main(void *arg)
{
	struct spawned *s = arg;
	char buf[4096];

	/* Polls with a timeout rather than blocking in read(): a grandchild of the server (a
	 * fork-per-connection server's child) may hold the pipe open after the server is gone. */
	while (!atomic_load(&s->stop_drain)) {
		int rv = net_wait(s->out_fd, POLLIN, now_ns() + 100000000u);

		if (rv > 0 && read(s->out_fd, buf, sizeof(buf)) <= 0)
			break;
	}
	return NULL;
}

static void child_exec(const char *cmd, int out_w)
{
	size_t n = strlen(cmd) + 6;
	char *line = malloc(n);
	int devnull = open("/dev/null", O_RDONLY);

	/* Should echo-conform die, the server goes with it instead of lingering on the port; and
	 * in a process group of its own, whatever it forks (a fork-per-connection server's
	 * children) can be stopped with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	setpgid(0, 0);
	if (!line || devnull < 0)
		_exit(127);
	snprintf(line, n, "exec %s", cmd);
	dup2(devnull, 0);
	dup2(out_w, 1);
	signal(SIGPIPE, SIG_DFL);
	execl("/bin/sh", "sh", "-c", line, (char *)NULL);
	_exit(127);
}

/* Reads stdout lines until the deadline; records `listening` addresses. Returns 0 once one is
 * seen and 200 ms more have passed (or the stream ended after one). */
static int read_listening(struct spawned *s, uint64_t deadline, const char **why)
{
	char buf[4096];
	size_t have = 0;

	for (;;) {
		uint64_t now = now_ns(), until = deadline;
		int rv;

		if (s->nlines && now + 200000000u < until)
			until = now + 200000000u;
		rv = net_wait(s->out_fd, POLLIN, until);
		if (rv == -ETIMEDOUT) {
			if (s->nlines)
				return 0;
			*why = "the server printed no `listening ADDR` line in time";
			return -ETIMEDOUT;
		}
		ssize_t r = read(s->out_fd, buf + have, sizeof(buf) - 1 - have);
		if (r <= 0) {
			if (s->nlines)
				return 0;
			*why = "the server exited (or closed stdout) before printing `listening ADDR`";
			return -EPIPE;
		}
		have += (size_t)r;
		buf[have] = '\0';
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			if (strncmp(line, "listening ", 10) == 0 && s->nlines < SPAWN_MAX_LINES)
				snprintf(s->lines[s->nlines++], sizeof(s->lines[0]), "%s", line + 10);
			line = nl + 1;
		}
		have = strlen(line);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			have = 0;   /* an endless line: drop it */
	}
}

int spawn_server(const char *cmd, bool want_lines, uint64_t timeout_ns, struct spawned *s,
	const char **why)
{
	int p[2], rc;

	memset(s, 0, sizeof(*s));
	if (pipe2(p, O_CLOEXEC) < 0) {
		*why = "pipe() failed";
		return -errno;
	}
	s->pid = fork();
	if (s->pid < 0) {
		*why = "fork() failed";
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (s->pid == 0)
		child_exec(cmd, p[1]);
	setpgid(s->pid, s->pid);   /* also here: no window in which a kill(-pid) would miss it */
	close(p[1]);
	s->out_fd = p[0];
	if (want_lines) {
		rc = read_listening(s, now_ns() + timeout_ns, why);
		if (rc < 0)
			return rc;
	}
	if (pthread_create(&s->drain, NULL, drain_main, s) == 0)
		s->draining = true;
	return 0;
}

void spawn_stop(struct spawned *s, char *buf, size_t n)
{
	uint64_t until = now_ns() + 5000000000u;
	int status = 0;
	pid_t r;

	if (s->pid <= 0)
		return;
	kill(-s->pid, SIGTERM);
	while ((r = waitpid(s->pid, &status, WNOHANG)) == 0 && now_ns() < until)
		sleep_ns(10000000);
	if (r == 0) {
		kill(-s->pid, SIGKILL);
		r = waitpid(s->pid, &status, 0);
		snprintf(buf, n, "did not stop within 5 s of SIGTERM: killed");
	} else if (r < 0) {
		snprintf(buf, n, "unknown (waitpid: %s)", strerror(errno));
	} else if (WIFEXITED(status)) {
		snprintf(buf, n, "exited %d", WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		snprintf(buf, n, "killed by signal %d", WTERMSIG(status));
	}
	/* Children it left behind (the group outlives its leader) go too. */
	kill(-s->pid, SIGKILL);
	if (s->draining) {
		atomic_store(&s->stop_drain, true);
		pthread_join(s->drain, NULL);
	}
	close(s->out_fd);
	s->pid = 0;
}
