/* The one table of load engines, and the rules that pick a row. The --engine option (its
 * values, its error text, its usage lines), `--version`'s engine lines, the result record's
 * engine (by name) and the fallbacks all derive from it: adding an engine is its file (a
 * `const struct engine`, loader.h) plus one row here, and its source in clients/meson.build.
 * The first row is the default. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "die.h"
#include "loader.h"

extern const struct engine engine_epoll, engine_uring;

static const struct {
	const struct engine *e;
	const char *summary;        /* one line of --help */
} table[] = {
	{ &engine_epoll, "level-triggered readiness, send/recv per message" },
	{ &engine_uring, "io_uring completions; TCP and unix streams only" },
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

const struct engine *engine_at(unsigned i)
{
	return i < NTABLE ? table[i].e : NULL;
}

const char *engine_summary(unsigned i)
{
	return i < NTABLE ? table[i].summary : NULL;
}

const struct engine *engine_default(void)
{
	return table[0].e;
}

const struct engine *engine_find(const char *name)
{
	for (unsigned i = 0; i < NTABLE; i++)
		if (strcmp(table[i].e->name, name) == 0)
			return table[i].e;
	return NULL;
}

/* Whether row e runs this configuration: its transport, and --churn (an engine without the
 * adopt hook does not open sockets during the run). */
static bool carries(const struct engine *e, const struct load_config *cfg)
{
	return e->supports(cfg->tp) && (!cfg->churn || e->adopt);
}

/* "epoll or uring", "a, b or c": the rows that run cfg (every row when cfg is NULL). */
static void names(char *buf, size_t len, const struct load_config *cfg)
{
	unsigned n = 0, k = 0;
	size_t used = 0;

	for (unsigned i = 0; i < NTABLE; i++)
		n += !cfg || carries(table[i].e, cfg);
	buf[0] = '\0';
	for (unsigned i = 0; i < NTABLE && used < len; i++) {
		if (cfg && !carries(table[i].e, cfg))
			continue;
		k++;
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 k == 1 ? "" : k == n ? " or " : ", ", table[i].e->name);
	}
}

const struct engine *engine_arg(const char *s)
{
	const struct engine *e = engine_find(s);
	char all[128];

	if (e)
		return e;
	names(all, sizeof(all), NULL);
	die(EXIT_USAGE, "bad --engine '%s': expected %s", s, all);
}

void engine_usage(FILE *f)
{
	fprintf(f, "      --engine E          how load threads move bytes (default %s):\n",
		engine_default()->name);
	for (unsigned i = 0; i < NTABLE; i++)
		fprintf(f, "                            %-6s %s\n", table[i].e->name,
			table[i].summary);
}

/* Tests and the driver read these lines (`engine NAME: usable ...`) to know what runs here. */
void engine_version(FILE *f)
{
	for (unsigned i = 0; i < NTABLE; i++) {
		const char *why = "";
		int r = table[i].e->probe(&why);

		fprintf(f, "engine %s: %s%s%s\n", table[i].e->name, r < 0 ? "unavailable: " : "usable",
			r < 0 ? why : "", i == 0 ? " (default)" : "");
	}
}

void engine_check_transport(const struct load_config *cfg)
{
	char can[128];

	if (!cfg->engine_set || carries(cfg->engine, cfg))
		return;
	names(can, sizeof(can), cfg);
	if (cfg->engine->supports(cfg->tp))
		die(EXIT_USAGE, "--engine %s does not run --churn (it sets up its sockets once, "
		    "before the run); --churn runs on --engine %s", cfg->engine->name, can);
	die(EXIT_USAGE, "--engine %s does not carry %s; %s runs on --engine %s", cfg->engine->name,
	    cfg->tp->socktype == SOCK_DGRAM ? "datagrams" : "streams",
	    cfg->tp->socktype == SOCK_DGRAM ? "--udp" : "a stream target", can);
}

void engine_choose(struct load_config *cfg)
{
	const char *why = "";

	if (carries(cfg->engine, cfg) && cfg->engine->probe(&why) == 0)
		return;
	if (cfg->engine_set)
		die(1, "--engine %s cannot run here: %s", cfg->engine->name, why);
	/* Not asked for: the first row that carries this transport and runs here (the JSON's
	 * `engine` says which one ran). */
	for (unsigned i = 0; i < NTABLE; i++) {
		if (carries(table[i].e, cfg) && table[i].e->probe(&why) == 0) {
			cfg->engine = table[i].e;
			return;
		}
	}
	die(1, "no load engine can run here (the last refused: %s)", why);
}
