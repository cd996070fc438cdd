/* Output of echo-conform: the catalogue (--list), TAP 13 on stdout as each case ends, JSON for
 * machines at the end. The formats are documented in docs/CONFORMANCE.md. */
#ifndef ECHOBENCH_REPORT_H
#define ECHOBENCH_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "conform.h"

struct run_item {
	const struct conf_case *cc;
	int n;                        /* TAP test number */
	struct result r;
	bool counted;                 /* a failure here makes the exit status 1 */
};

struct run_info {
	const char *target;
	const char *udp_target;       /* NULL: UDP cases not run */
	const char *ipv6_target;      /* NULL: none */
	int server_pid;               /* 0: unknown */
	unsigned long long seed;
	double timeout_s;
	bool must_only;
	double elapsed_s;
	int exit_code;
	const char *server_exit;      /* how an --exec server ended, or NULL */
	const char *error;            /* why nothing ran (TAP "Bail out!"), or NULL */
};

/* "ok 3 - ID description", a directive (# SKIP / # TODO) when there is one, and for a failure
 * the YAML block with level, expected, seen, the case's figures and elapsed_ms. */
void tap_case(FILE *out, const struct run_item *it, bool must_only);
void json_write(FILE *f, const struct run_info *info, const struct run_item *items, int n);

/* --list: one line per case: ID, level, needs, `long` or `-`, description. */
void list_cases(FILE *out);
/* "TAP version 13", the comment lines saying what was found out about the target, the plan. */
void tap_header(FILE *out, const struct target *t, int n);
/* The closing comment line; returns how many counted cases failed. */
int tap_summary(FILE *out, const struct run_item *items, int n, bool must_only, double elapsed_s);

#endif
