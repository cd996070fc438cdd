#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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

static void describe_status(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exited %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, n, "ended (status 0x%x)", (unsigned)status);
}

bool spawn_exited(struct spawned *s, char *buf, size_t n)
{
	if (!s->reaped && s->pid > 0 && waitpid(s->pid, &s->status, WNOHANG) == s->pid)
		s->reaped = true;
	if (s->reaped && buf)
		describe_status(s->status, buf, n);
	return s->reaped;
}

/* A port nothing listens on right now, on 127.0.0.1 (0 if none could be had). The server is
 * told to bind it: between our close and its bind another program could take it, which shows
 * as the server failing to start. */
static int free_loopback_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
			getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

char *spawn_exec_line(const char *cmd, int port)
{
	static const char key[] = "{port}";
	size_t count = 0, n;
	char num[16], *line, *o;

	for (const char *p = strstr(cmd, key); p; p = strstr(p + 1, key))
		count++;
	snprintf(num, sizeof(num), "%d", port);
	n = 5 + strlen(cmd) + count * strlen(num) + 1;
	line = malloc(n);
	if (!line)
		return NULL;
	o = line + sprintf(line, "exec ");
	for (const char *p = cmd; *p;) {
		if (strncmp(p, key, sizeof(key) - 1) == 0) {
			o += sprintf(o, "%s", num);
			p += sizeof(key) - 1;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return line;
}

static void child_exec(const char *line, int out_w)
{
	int devnull = open("/dev/null", O_RDONLY);

	/* Should echo-conform die, the server goes with it instead of lingering on the port; and
	 * in a process group of its own, whatever it forks (a fork-per-connection server's
	 * children) can be stopped with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	setpgid(0, 0);
	if (devnull < 0)
		_exit(127);
	dup2(devnull, 0);
	dup2(out_w, 1);
	signal(SIGPIPE, SIG_DFL);
	execl("/bin/sh", "sh", "-c", line, (char *)NULL);
	_exit(127);
}

size_t spawn_take_lines(struct spawned *s, char *buf, size_t have, size_t cap)
{
	char *line = buf, *end = buf + have, *nl;

	/* memchr, not strchr: a NUL the server prints must not hide the lines after it. */
	while ((nl = memchr(line, '\n', (size_t)(end - line))) != NULL) {
		size_t len = (size_t)(nl - line);

		if (len > 10 && memcmp(line, "listening ", 10) == 0 && !memchr(line, '\0', len) &&
		    len - 10 < sizeof(s->lines[0]) && s->nlines < SPAWN_MAX_LINES) {
			memcpy(s->lines[s->nlines], line + 10, len - 10);
			s->lines[s->nlines++][len - 10] = '\0';
		}
		line = nl + 1;
	}
	have = (size_t)(end - line);
	memmove(buf, line, have);
	return have == cap ? 0 : have;   /* an endless line: drop it */
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
		/* Short waits: a server that exits while something it started keeps our pipe open
		 * is noticed at once, not at the deadline. */
		if (!s->nlines && until > now + 100000000u)
			until = now + 100000000u;
		rv = net_wait(s->out_fd, POLLIN, until);
		if (rv == -ETIMEDOUT && !s->nlines && spawn_exited(s, NULL, 0)) {
			*why = "the server exited before printing `listening ADDR`";
			return -ESRCH;
		}
		if (rv == -ETIMEDOUT && !s->nlines && now_ns() < deadline)
			continue;
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
			*why = "its stdout closed before a `listening ADDR` line";
			return -EPIPE;
		}
		have = spawn_take_lines(s, buf, have + (size_t)r, sizeof(buf) - 1);
	}
}

int spawn_server(const char *cmd, bool want_lines, uint64_t timeout_ns, struct spawned *s,
	const char **why)
{
	int p[2], rc;
	char *line;

	memset(s, 0, sizeof(*s));
	if (strstr(cmd, "{port}") && (s->port = free_loopback_port()) == 0) {
		*why = "no free loopback port for {port}";
		return -EADDRNOTAVAIL;
	}
	line = spawn_exec_line(cmd, s->port);
	if (!line) {
		*why = "out of memory";
		return -ENOMEM;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		free(line);
		*why = "pipe() failed";
		return -errno;
	}
	s->pid = fork();
	if (s->pid < 0) {
		rc = -errno;
		*why = "fork() failed";
		close(p[0]);
		close(p[1]);
		free(line);
		return rc;
	}
	if (s->pid == 0)
		child_exec(line, p[1]);
	free(line);
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

	if (s->pid <= 0)
		return;
	if (!spawn_exited(s, NULL, 0)) {
		kill(-s->pid, SIGTERM);
		while (!spawn_exited(s, NULL, 0) && now_ns() < until)
			sleep_ns(10000000);
	}
	if (!s->reaped) {
		kill(-s->pid, SIGKILL);
		if (waitpid(s->pid, &s->status, 0) == s->pid)
			s->reaped = true;
		snprintf(buf, n, "did not stop within 5 s of SIGTERM: killed");
	} else {
		describe_status(s->status, buf, n);
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
