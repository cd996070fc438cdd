/* The server core as a library (server.h): one server is its configuration, the services its
 * workers share (services.c), its listeners (listen.c) and its workers (worker.c). Backends
 * (backend.h) do the I/O; this file is the same for all of them. */
#include "server.h"
#include "backend.h"
#include "listen.h"
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVER_MAX_THREADS 256
#define SERVER_MAX_WORKERS 1024   /* threads x processes */

struct server {
	struct server_config cfg;
	const struct backend *backend;
	struct services svc;
	struct listen_set listeners;
	struct crew crew;
	int nworkers;         /* worker threads of this process */
	int nbound;           /* workers the listeners were bound for: all processes' */
	bool unlink_paths;    /* this process removes the unix socket paths at close */
};

void server_config_defaults(struct server_config *cfg)
{
	const char *why;

	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = "epoll";
	endpoint_parse(SERVER_DEFAULT_LISTEN, &cfg->listen[0], &why);
	cfg->nlisten = 1;
	cfg->threads = 1;
	cfg->processes = 1;
	cfg->bufsize = 64 * 1024;
	cfg->drain_timeout_ns = 2000000000ull;
}

int server_open(const struct server_config *cfg, struct server **out, char *why)
{
	struct server *s;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(why, SERVER_WHY_MAX, "out of memory");
		return -ENOMEM;
	}
	s->cfg = *cfg;
	s->backend = backend_find(cfg->backend);
	s->nworkers = cfg->threads ? (int)cfg->threads : 1;
	s->nbound = s->nworkers * (cfg->processes > 1 ? (int)cfg->processes : 1);
	s->unlink_paths = true;
	if (!s->backend || s->nworkers > SERVER_MAX_THREADS || cfg->bufsize == 0 ||
	    cfg->nlisten < 1 || s->nbound > SERVER_MAX_WORKERS) {
		snprintf(why, SERVER_WHY_MAX, "%s", !s->backend ? "unknown backend" :
			 cfg->bufsize == 0 ? "bufsize must be > 0" :
			 cfg->nlisten < 1 ? "no address to listen on" : "too many threads");
		free(s);
		return -EINVAL;
	}
	rc = svc_init(&s->svc, &s->cfg);
	if (rc < 0) {
		snprintf(why, SERVER_WHY_MAX, "out of memory");
		svc_fini(&s->svc);
		free(s);
		return rc;
	}
	rc = listen_set_open(&s->listeners, &s->cfg, s->nbound, why, SERVER_WHY_MAX);
	if (rc < 0) {
		server_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void server_keep_share(struct server *s, int k)
{
	if (k < 0) {
		listen_set_keep(&s->listeners, 0, 0);
		return;
	}
	listen_set_keep(&s->listeners, k * s->nworkers, s->nworkers);
	s->unlink_paths = false;
}

int server_listener_count(const struct server *s)
{
	return s->listeners.ntexts;
}

const char *server_listener_text(const struct server *s, int i)
{
	return i >= 0 && i < s->listeners.ntexts ? s->listeners.texts[i] : NULL;
}

int server_start(struct server *s, const char **why)
{
	return crew_start(&s->crew, s->nworkers, s->backend, &s->svc, &s->listeners, why);
}

void server_stop(struct server *s)
{
	svc_begin_stop(&s->svc);
	crew_stop(&s->crew);
}

int server_failure(const struct server *s)
{
	return svc_failure(&s->svc);
}

void server_stats_add(struct server_stats *sum, const struct server_stats *st)
{
	sum->accepted += st->accepted;
	sum->refused += st->refused;
	sum->resets += st->resets;
	sum->bytes_in += st->bytes_in;
	sum->bytes_out += st->bytes_out;
	sum->datagrams += st->datagrams;
	sum->dropped += st->dropped;
	sum->idle_closed += st->idle_closed;
}

void server_get_stats(const struct server *s, struct server_stats *out)
{
	crew_stats(&s->crew, out);
}

void server_close(struct server *s)
{
	if (!s)
		return;
	if (s->crew.started)
		server_stop(s);
	crew_free(&s->crew);
	listen_set_close(&s->listeners, s->unlink_paths);
	svc_fini(&s->svc);
	free(s);
}
