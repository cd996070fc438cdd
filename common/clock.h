/* Time for measurement: CLOCK_MONOTONIC in nanoseconds. Not CLOCK_REALTIME, which NTP may step
 * backwards in the middle of a run. */
#ifndef ECHOBENCH_CLOCK_H
#define ECHOBENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
