/* The one-line error every echobench program ends with: "PROGRAM: message" on stderr, then
 * exit(status) (2 for usage errors, 1 for run-time failures; see docs/CONTRACTS.md). */
#ifndef ECHOBENCH_DIE_H
#define ECHOBENCH_DIE_H

/* The exit status of a usage error (bad option, value or address). */
#define EXIT_USAGE 2

void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
