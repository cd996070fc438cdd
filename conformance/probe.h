/* Looking at the server from the side: /proc/PID (white-box cases, when its pid is known) and
 * /proc/net/tcp{,6} (any TCP server in this network namespace). All return 0 or -errno. */
#ifndef ECHOBENCH_PROBE_H
#define ECHOBENCH_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Open fds of the process (entries of /proc/PID/fd) and the highest fd number among them. */
int probe_fds(pid_t pid, int *count, int *highest);
/* The RLIMIT_NOFILE soft limit at which the process can open exactly `extra` more fds: new fds
 * take the lowest free numbers, so the holes below the limit count, not the highest fd. */
int probe_fd_limit_for(pid_t pid, int extra, long *limit);
/* Waits (up to until_ns) for the fd count to hold still for 100 ms, then gives it: a baseline
 * taken while the server is still closing the previous case's connections would be wrong. */
int probe_fds_settled(pid_t pid, uint64_t until_ns, int *count);
/* Waits (up to until_ns) for the fd count to come down to at most `want`; *count is the last
 * value read. */
int probe_fds_down_to(pid_t pid, int want, uint64_t until_ns, int *count);
/* CPU time used so far by the process (all its threads, exited ones included), in ns:
 * monotonic, so a difference is never negative. */
int probe_cpu_ns(pid_t pid, uint64_t *ns);
/* Resident set size in KiB (VmRSS). */
int probe_rss_kib(pid_t pid, long *kib);
/* The process exists and is not a zombie. */
bool probe_alive(pid_t pid);

/* TCP socket states as /proc/net/tcp numbers them. */
enum tcp_state {
	TCPS_ESTABLISHED = 1, TCPS_SYN_SENT, TCPS_SYN_RECV, TCPS_FIN_WAIT1, TCPS_FIN_WAIT2,
	TCPS_TIME_WAIT, TCPS_CLOSE, TCPS_CLOSE_WAIT, TCPS_LAST_ACK, TCPS_LISTEN, TCPS_CLOSING,
	TCPS_MAX
};

/* A set of client ports (the connections a case made), as a bitmap. */
struct portset {
	uint8_t bits[65536 / 8];
};
static inline void portset_add(struct portset *s, int port)
{
	if (port > 0 && port < 65536)
		s->bits[port >> 3] |= (uint8_t)(1u << (port & 7));
}
static inline bool portset_has(const struct portset *s, int port)
{
	return port > 0 && port < 65536 && (s->bits[port >> 3] >> (port & 7)) & 1;
}

/* Counts, per state, the server-side sockets (local port = server_port) whose peer port is in
 * `peers` (NULL: any peer). Reads /proc/net/tcp and /proc/net/tcp6 (a dual-stack listener's
 * IPv4 connections show in tcp6). */
int probe_tcp_states(int server_port, const struct portset *peers, int counts[TCPS_MAX]);
/* Connections waiting in the accept queue of the listener on server_port (ss's Recv-Q), or
 * -ENOENT when there is no such listener here. */
int probe_accept_queue(int server_port);
/* True when a socket listens on server_port in this network namespace. */
bool probe_tcp_listening(int server_port);
/* Waits (up to until_ns) until no server-side socket towards `peers` is ESTABLISHED or
 * CLOSE-WAIT; *left is how many still are. */
int probe_tcp_wait_closed(int server_port, const struct portset *peers, uint64_t until_ns,
	int *left);

#endif
