/* Binding: unix path take-over, SO_REUSEPORT per worker, UDP on the TCP port, port 0. */
#include "listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct binder {                 /* one listen_set_open() call */
	struct listen_set *set;
	int nworkers;
	bool udp;                   /* --udp: UDP beside each TCP address */
	char *why;
	size_t why_len;
};

static int set_why(struct binder *b, const char *what, const char *addr, int err)
{
	snprintf(b->why, b->why_len, "%s %s: %s", what, addr, strerror(err));
	return -err;
}

/* A unix socket path that exists is taken over only when nobody answers on it (a leftover of a
 * server that died); one that answers is "in use", like a TCP port. */
static int unix_claim(struct binder *b, const struct endpoint *ep)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)&ep->sa;
	struct stat st;
	int fd, rc, err;

	if (lstat(un->sun_path, &st) < 0)
		return 0;  /* nothing there: bind() will say what else may be wrong */
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(b->why, b->why_len, "bind %s: the path exists and is not a socket", ep->text);
		return -EEXIST;
	}
	/* Non-blocking: a live server with a full backlog answers EAGAIN instead of making us
	 * wait; anything but "refused" means somebody is there. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return set_why(b, "socket", ep->text, errno);
	rc = connect(fd, (const struct sockaddr *)un, ep->len);
	err = errno;
	close(fd);
	if (rc == 0 || err != ECONNREFUSED)
		return set_why(b, "bind", ep->text, EADDRINUSE);
	unlink(un->sun_path);
	return 0;
}

static int open_socket(struct binder *b, const struct endpoint *ep, bool udp, bool reuseport,
		       int *out)
{
	int one = 1, zero = 0, rc;
	int fd = socket(ep->family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);

	if (fd < 0)
		return set_why(b, "socket", ep->text, errno);
	if (ep->family != AF_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Only with several workers: otherwise a second server on the same port would
		 * silently share it instead of failing with "address in use". */
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	}
	if (ep->family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ep->sa;
		/* [::] is dual stack (IPv4 clients arrive as ::ffff:a.b.c.d); other v6 addresses
		 * are v6 only, whatever the sysctl default says. */
		int v6only = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ? 0 : 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&ep->sa, ep->len) < 0) {
		rc = set_why(b, "bind", ep->text, errno);
		close(fd);
		return rc;
	}
	/* The kernel caps the backlog at net.core.somaxconn; asking for more takes that maximum. */
	if (!udp && listen(fd, 65535) < 0) {
		rc = set_why(b, "listen", ep->text, errno);
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

static void add_listener(struct listen_set *set, int fd, bool udp, bool shared, int worker,
			 const char *text)
{
	struct listener *l = &set->ls[set->nls++];

	*l = (struct listener){ .fd = fd, .udp = udp, .shared = shared, .worker = worker };
	snprintf(l->text, sizeof(l->text), "%s%s", udp ? "udp:" : "", text);
	for (int i = 0; i < set->ntexts; i++)
		if (strcmp(set->texts[i], l->text) == 0)
			return;
	memcpy(set->texts[set->ntexts++], l->text, sizeof(l->text));
}

static void drop_listeners_from(struct listen_set *set, int first)
{
	while (set->nls > first)
		close(set->ls[--set->nls].fd);
}

/* Binds one --listen address for every worker: TCP, plus UDP on the same port with --udp, or
 * UDP alone for a udp:ADDR address. With port 0 the first socket picks the port and the others
 * take the same one; if the second protocol finds that port taken, the whole address is tried
 * again on a new port. */
static int open_endpoint(struct binder *b, const struct endpoint *want)
{
	struct listen_set *set = b->set;
	int first = set->nls, ntexts = set->ntexts, rc = 0;
	bool any_port = endpoint_port(want) == 0;
	bool tcp = !want->udp, udp = want->udp || b->udp;

	if (want->family == AF_UNIX) {
		int fd;
		if ((rc = unix_claim(b, want)) < 0 || (rc = open_socket(b, want, false, false, &fd)) < 0)
			return rc;
		snprintf(set->unix_paths[set->nunix++], sizeof(set->unix_paths[0]), "%s",
			 ((const struct sockaddr_un *)&want->sa)->sun_path);
		add_listener(set, fd, false, true, 0, want->text);
		return 0;
	}
	if (b->nworkers > 1 && !any_port) {
		/* SO_REUSEPORT would let our workers join a port that another server (of the same
		 * user, also with SO_REUSEPORT) already serves: try the port alone first, so a port in
		 * use fails here as it does with one worker. */
		int probe;
		if ((rc = open_socket(b, want, !tcp, false, &probe)) < 0)
			return rc;
		close(probe);
	}
	for (int attempt = 0; attempt < 20; attempt++) {
		struct endpoint ep = *want;

		rc = 0;
		/* The first protocol: TCP, or UDP alone for udp:ADDR. */
		for (int w = 0; w < b->nworkers && rc == 0; w++) {
			int fd;
			rc = open_socket(b, &ep, !tcp, b->nworkers > 1, &fd);
			if (rc < 0)
				break;
			if (w == 0 && any_port) {
				struct endpoint got = ep;
				got.len = sizeof(got.sa);
				getsockname(fd, (struct sockaddr *)&got.sa, &got.len);
				endpoint_set_port(&ep, endpoint_port(&got));
			}
			add_listener(set, fd, !tcp, false, w, ep.text);
		}
		/* --udp: UDP rides along on the same port. */
		for (int w = 0; w < b->nworkers && rc == 0 && tcp && udp; w++) {
			int fd;
			rc = open_socket(b, &ep, true, b->nworkers > 1, &fd);
			if (rc == 0)
				add_listener(set, fd, true, false, w, ep.text);
		}
		if (rc == 0)
			return 0;
		drop_listeners_from(set, first);
		set->ntexts = ntexts;
		if (rc != -EADDRINUSE || !any_port)
			break;
	}
	return rc;
}

int listen_set_open(struct listen_set *set, const struct server_config *cfg, int nworkers,
		    char *why, size_t why_len)
{
	struct binder b = { .set = set, .nworkers = nworkers, .udp = cfg->udp, .why = why,
			    .why_len = why_len };
	size_t maxls = (size_t)cfg->nlisten * (size_t)nworkers * 2;
	int rc = 0;

	memset(set, 0, sizeof(*set));
	set->ls = calloc(maxls ? maxls : 1, sizeof(*set->ls));
	set->texts = calloc((size_t)cfg->nlisten * 2 + 1, sizeof(*set->texts));
	if (!set->ls || !set->texts) {
		snprintf(why, why_len, "out of memory");
		rc = -ENOMEM;
	}
	for (int i = 0; i < cfg->nlisten && rc == 0; i++)
		rc = open_endpoint(&b, &cfg->listen[i]);
	if (rc < 0)
		listen_set_close(set, false);
	return rc;
}

void listen_set_keep(struct listen_set *set, int first, int n)
{
	int k = 0;

	for (int i = 0; i < set->nls; i++) {
		struct listener *l = &set->ls[i];

		if (!l->shared && (l->worker < first || l->worker >= first + n)) {
			close(l->fd);
			continue;
		}
		if (!l->shared)
			l->worker -= first;
		set->ls[k++] = *l;
	}
	set->nls = k;
}

void listen_set_close(struct listen_set *set, bool unlink_paths)
{
	drop_listeners_from(set, 0);
	for (int i = 0; unlink_paths && i < set->nunix; i++)
		unlink(set->unix_paths[i]);
	set->nunix = 0;
	free(set->ls);
	free(set->texts);
	set->ls = NULL;
	set->texts = NULL;
	set->ntexts = 0;
}
