/* --exec: echo-conform starts the server under test itself, so it knows its pid (white-box
 * cases) and its address (the `listening ADDR` lines of the start-up contract). */
#ifndef ECHOBENCH_SPAWN_H
#define ECHOBENCH_SPAWN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPAWN_MAX_LINES 16

struct spawned {
	pid_t pid;
	int out_fd;                   /* the server's stdout */
	pthread_t drain;              /* keeps reading it, so a chatty server never blocks */
	bool draining;
	atomic_bool stop_drain;
	char lines[SPAWN_MAX_LINES][160];   /* the ADDR of each `listening ADDR` line */
	int nlines;
	bool reaped;                  /* it exited and was waited for: `status` says how */
	int status;
	int port;                     /* the port substituted for {port}, or 0 */
};

/* Runs `/bin/sh -c 'exec CMD'` (exec: the pid we hold is the server's, not a shell's) with
 * stdin from /dev/null and stdout piped to us. Every `{port}` in CMD is replaced by a free
 * loopback port (s->port), for servers that cannot print a `listening` line. With want_lines,
 * waits up to timeout_ns for the first `listening` line (then 200 ms for more), and stops
 * waiting at once when the server exits. 0, or -errno with *why set. */
int spawn_server(const char *cmd, bool want_lines, uint64_t timeout_ns, struct spawned *s,
	const char **why);
/* Has the server exited? Reaps it; then describes how ("exited 3", "killed by signal 9"). */
bool spawn_exited(struct spawned *s, char *buf, size_t n);
/* SIGTERM to its process group, up to 5 s for the server to exit, then SIGKILL to what is left
 * of the group. Describes how the server ended ("exited 0", "killed by signal 6") in buf. */
void spawn_stop(struct spawned *s, char *buf, size_t n);

/* The parts of spawn_server() that read what the server prints and what the user wrote (the
 * fuzz target drives them alone):
 * spawn_take_lines: buf holds `have` bytes read from the server; records the ADDR of every
 * complete `listening ADDR` line (one that fits s->lines, without a NUL byte) and moves the
 * unfinished last line to the front of buf. Returns its length, or 0 when it fills the `cap`
 * bytes the buffer has (an endless line is dropped).
 * spawn_exec_line: "exec CMD" with every {port} replaced by port, malloc'd; NULL when out of
 * memory. */
size_t spawn_take_lines(struct spawned *s, char *buf, size_t have, size_t cap);
char *spawn_exec_line(const char *cmd, int port);

#endif
