#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "netio.h"

int probe_fds(pid_t pid, int *count, int *highest)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0, hi = -1;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		int fd = atoi(de->d_name);
		n++;
		if (fd > hi)
			hi = fd;
	}
	closedir(d);
	*count = n;
	if (highest)
		*highest = hi;
	return 0;
}

int probe_fd_limit_for(pid_t pid, int extra, long *limit)
{
	enum { MAXFD = 1 << 16 };
	uint8_t *open_fd = calloc(MAXFD, 1);
	char path[64];
	struct dirent *de;
	DIR *d;
	int free_slots = 0;

	if (!open_fd)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d) {
		free(open_fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name);
		if (de->d_name[0] != '.' && fd >= 0 && fd < MAXFD)
			open_fd[fd] = 1;
	}
	closedir(d);
	for (long l = 0; l < MAXFD; l++) {
		free_slots += !open_fd[l];
		if (free_slots == extra) {
			*limit = l + 1;
			free(open_fd);
			return 0;
		}
	}
	free(open_fd);
	return -ERANGE;
}

int probe_fds_settled(pid_t pid, uint64_t until_ns, int *count)
{
	int prev = -1, rc;

	for (;;) {
		int n;

		rc = probe_fds(pid, &n, NULL);
		if (rc < 0)
			return rc;
		*count = n;
		if (n == prev || now_ns() >= until_ns)
			return 0;
		prev = n;
		sleep_ns(100000000);
	}
}

int probe_fds_down_to(pid_t pid, int want, uint64_t until_ns, int *count)
{
	for (;;) {
		int rc = probe_fds(pid, count, NULL);

		if (rc < 0)
			return rc;
		if (*count <= want || now_ns() >= until_ns)
			return 0;
		sleep_ns(20000000);
	}
}

static int read_small_file(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got;

	if (!f)
		return -errno;
	got = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[got] = '\0';
	return 0;
}

/* Tick-based (10 ms) user + system time of the whole process, from /proc/PID/stat. */
static int cpu_ns_from_stat(pid_t pid, uint64_t *ns)
{
	char path[64], buf[1024];
	unsigned long long utime, stime;
	const char *p;
	int rc;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	rc = read_small_file(path, buf, sizeof(buf));
	if (rc < 0)
		return rc;
	/* The command name in parentheses may hold spaces: fields are counted after the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			&utime, &stime) != 2)
		return -EPROTO;
	*ns = (utime + stime) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
	return 0;
}

int probe_cpu_ns(pid_t pid, uint64_t *ns)
{
	struct timespec ts;
	clockid_t clk;

	/* The process CPU clock counts every thread the process ever had, in nanoseconds. A sum
	 * over the live threads (task/N/schedstat) would go backwards when a thread exits in the
	 * window, as a thread-per-connection server's threads do after the previous case: the
	 * difference wrapped round and a correct server "used" billions of percent. */
	if (clock_getcpuclockid(pid, &clk) == 0 && clock_gettime(clk, &ts) == 0) {
		*ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		return 0;
	}
	/* Not allowed to read its clock: the totals of /proc/PID/stat, also monotonic. */
	return cpu_ns_from_stat(pid, ns);
}

int probe_rss_kib(pid_t pid, long *kib)
{
	char path[64], buf[4096];
	const char *p;
	int rc;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	rc = read_small_file(path, buf, sizeof(buf));
	if (rc < 0)
		return rc;
	p = strstr(buf, "\nVmRSS:");
	if (!p || sscanf(p + 7, "%ld", kib) != 1)
		return -EPROTO;
	return 0;
}

bool probe_alive(pid_t pid)
{
	char path[64], buf[512];
	const char *p;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_small_file(path, buf, sizeof(buf)) < 0)
		return false;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static int scan_table(const char *path, int server_port, const struct portset *peers,
	int counts[TCPS_MAX], bool *listening)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f)) {   /* header */
		fclose(f);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, rport, st;

		if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%x %x", &lport, &rport,
				&st) != 3)
			continue;
		if ((int)lport != server_port || st >= TCPS_MAX)
			continue;
		if (st == TCPS_LISTEN) {
			if (listening)
				*listening = true;
			continue;
		}
		if (counts && (!peers || portset_has(peers, (int)rport)))
			counts[st]++;
	}
	fclose(f);
	return 0;
}

static int listener_queue(const char *path, int server_port)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int queued = -ENOENT;

	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return -ENOENT;
	}
	/* Listeners come first in the file: stop at the first other state, so the cost does not
	 * grow with the thousands of TIME-WAIT sockets a churn test leaves. */
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, st, rxq;

		if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%x", &lport, &st,
				&rxq) != 3 || st != TCPS_LISTEN)
			break;
		if ((int)lport == server_port) {
			queued = (int)rxq;   /* for a listener: the accept queue length */
			break;
		}
	}
	fclose(f);
	return queued;
}

int probe_accept_queue(int server_port)
{
	int q = listener_queue("/proc/net/tcp", server_port);

	return q >= 0 ? q : listener_queue("/proc/net/tcp6", server_port);
}

int probe_tcp_states(int server_port, const struct portset *peers, int counts[TCPS_MAX])
{
	int rc4, rc6;

	memset(counts, 0, sizeof(int) * TCPS_MAX);
	rc4 = scan_table("/proc/net/tcp", server_port, peers, counts, NULL);
	rc6 = scan_table("/proc/net/tcp6", server_port, peers, counts, NULL);
	return rc4 < 0 && rc6 < 0 ? rc4 : 0;
}

bool probe_tcp_listening(int server_port)
{
	bool l = false;

	scan_table("/proc/net/tcp", server_port, NULL, NULL, &l);
	scan_table("/proc/net/tcp6", server_port, NULL, NULL, &l);
	return l;
}

int probe_tcp_wait_closed(int server_port, const struct portset *peers, uint64_t until_ns,
	int *left)
{
	for (;;) {
		int counts[TCPS_MAX];
		int rc = probe_tcp_states(server_port, peers, counts);

		if (rc < 0)
			return rc;
		*left = counts[TCPS_ESTABLISHED] + counts[TCPS_CLOSE_WAIT];
		if (*left == 0 || now_ns() >= until_ns)
			return 0;
		sleep_ns(20000000);
	}
}
