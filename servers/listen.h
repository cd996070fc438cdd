/* Binding the listeners of one server: every --listen address once per worker (TCP, and UDP on
 * the same port with --udp), the real ports, and the texts of the ready lines. */
#ifndef ECHOBENCH_LISTEN_H
#define ECHOBENCH_LISTEN_H

#include <stdbool.h>

#include "server.h"

#define LISTEN_TEXT_MAX (ENDPOINT_TEXT_MAX + 8)

struct listener {
	int fd;
	bool udp;
	bool shared;          /* one fd for all workers (unix sockets: no SO_REUSEPORT) */
	int worker;           /* owning worker when not shared */
	char text[LISTEN_TEXT_MAX];
};

struct listen_set {
	struct listener *ls;
	int nls;
	char (*texts)[LISTEN_TEXT_MAX];     /* distinct listener texts, for the ready lines */
	int ntexts;
	char unix_paths[SERVER_MAX_LISTEN][108]; /* unlinked at close */
	int nunix;
};

/* Binds cfg's addresses for nworkers workers. Returns 0, or -errno with the one-line reason
 * written to why (why_len bytes, owned by the caller); the set is then empty. */
int listen_set_open(struct listen_set *set, const struct server_config *cfg, int nworkers,
		    char *why, size_t why_len);
/* Closes every listener (and unlinks the unix paths when unlink_paths). */
void listen_set_close(struct listen_set *set, bool unlink_paths);
/* Closes the listeners owned by workers outside [first, first + n) (a prefork child keeps its
 * own share). Shared listeners stay. */
void listen_set_keep(struct listen_set *set, int first, int n);

#endif
