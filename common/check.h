/* Assertions for the C unit tests: on failure they print the expression, both values and the
 * line, and exit 1 (meson: fail). SKIP exits 77 (meson: skip) with the reason. */
#ifndef ECHOBENCH_CHECK_H
#define ECHOBENCH_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		exit(1); \
	} } while (0)

#define CHECK_EQ(a, b) do { \
	long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	if (check_a_ != check_b_) { \
		fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", \
			__FILE__, __LINE__, #a, #b, check_a_, check_b_); \
		exit(1); \
	} } while (0)

#define SKIP(...) do { \
	fprintf(stderr, "SKIP: " __VA_ARGS__); fputc('\n', stderr); exit(77); } while (0)

#endif
