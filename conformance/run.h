/* Running the selected cases: one at a time, or with --overlap the cases that mostly wait on
 * threads of their own alongside the others. Each result is printed (TAP) as soon as it and
 * every case before it have ended, so the output stays in catalogue order. */
#ifndef ECHOBENCH_RUN_H
#define ECHOBENCH_RUN_H

#include <stdbool.h>

#include "conform.h"
#include "report.h"

/* items[0..n) name their cases (cc, n, counted); their results are filled in. */
void run_cases(struct run_item *items, int n, const struct target *t, bool overlap,
	bool must_only);

#endif
