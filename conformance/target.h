/* What the server under test offers, found out before the cases run (docs/CONFORMANCE.md "What
 * the suite finds out before the cases run"): that it accepts at all, whether its sockets are
 * visible here, its UDP and IPv6 addresses; and which cases it cannot serve, with the reason. */
#ifndef ECHOBENCH_TARGET_H
#define ECHOBENCH_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "conform.h"
#include "spawn.h"

/* Waits (up to wait_ns) until TARGET takes a connection. With sp (--exec), a server that exits
 * meanwhile ends the wait at once. 0, or -errno (*why: what happened, for one line). */
int target_wait_accepting(const struct target *t, struct spawned *sp, uint64_t wait_ns,
	char *why, size_t n);

/* Fills t->local, t->udp*, t->v6* from what the server printed (sp, may be NULL) and from
 * probes. force_udp (--udp, or a udp:ADDR TARGET): UDP cases run even without an answer. */
void target_discover(struct target *t, const struct spawned *sp, bool force_udp);

/* Why the case cannot run against this target, or NULL when it can. */
const char *target_unmet_need(const struct conf_case *cc, const struct target *t);

#endif
