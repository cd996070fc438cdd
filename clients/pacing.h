/* Open-loop pacing: how long before a due time a load thread stops sleeping and polls instead,
 * so that the send goes out on time. A timer wake-up comes late by an amount that depends on
 * the machine: tens of microseconds on a busy host, about a millisecond on a virtual machine
 * whose idle vCPU halts. The margin is learnt in the run itself, as Treadmill does: a high
 * quantile (PACING_QUANTILE) of how late the thread's own timed waits returned, less the time
 * it then waited for a CPU (the loader subtracts that: a polling thread would have waited for
 * a CPU just the same), over its recent waits (counts halve every PACING_HALFLIFE samples, so
 * the margin follows the machine as it changes), between PACING_FLOOR_NS and PACING_CAP_NS.
 * Waking earlier costs CPU: the thread polls from the margin on (the loader counts that time
 * apart, `spin`).
 *
 * Polling pays only on a CPU nobody else wants. Where other work wants the thread's CPU (it
 * spends more than PACING_BUSY of its time runnable but waiting for it, a running mean over
 * windows of PACING_WINDOW_NS), a polling thread is a CPU hog that the scheduler preempts
 * and no longer favours at its wake-ups, and the server loses the CPU it polls on: the margin
 * then covers a typical wake-up only (PACING_BUSY_QUANTILE), until the CPU is free again. The
 * cap, likewise: a wake-up later than that is a machine too busy to run the thread, which
 * polling does not cure.
 */
#ifndef ECHOBENCH_PACING_H
#define ECHOBENCH_PACING_H

#include <stdint.h>

#define PACING_QUANTILE 0.995
#define PACING_BUSY_QUANTILE 0.9
#define PACING_HALFLIFE 512u                          /* samples */
#define PACING_MIN_SAMPLES 16u                        /* before: the initial margin */
#define PACING_INITIAL_NS (80 * UINT64_C(1000))
#define PACING_FLOOR_NS (20 * UINT64_C(1000))
#define PACING_CAP_NS (2 * UINT64_C(1000000))
#define PACING_WINDOW_NS (10 * UINT64_C(1000000))
#define PACING_BUSY 0.01                              /* of the time waiting for a CPU */
#define PACING_BUSY_WEIGHT 0.125                      /* of the newest window in the mean */
/* Lateness buckets: below 1 us, then 4 per power of two up to 2^25 ns (34 ms), the rest in
 * the last. A bucket's upper bound is at most 25 % above its values: the margin errs early. */
#define PACING_BUCKETS (1 + 4 * 15 + 1)

struct pacing {
	uint32_t count[PACING_BUCKETS];
	uint32_t since_decay;
	uint64_t samples;
	uint64_t margin_ns;         /* the margin learnt from the wake-ups */
	uint64_t busy_margin_ns;    /* the same at PACING_BUSY_QUANTILE */
	double cpu_wait;            /* running mean of the share of time waiting for a CPU */
};

void pacing_init(struct pacing *p);
/* A timed wait returned late_ns after its deadline (0: on time) with nothing to do. */
void pacing_woke(struct pacing *p, uint64_t late_ns);
/* Over the last span_ns, the thread waited waited_ns for a CPU (runnable, not running). */
void pacing_cpu_wait(struct pacing *p, uint64_t waited_ns, uint64_t span_ns);
static inline int pacing_cpu_busy(const struct pacing *p) { return p->cpu_wait > PACING_BUSY; }
/* The margin to use now. */
static inline uint64_t pacing_margin(const struct pacing *p)
{
	return pacing_cpu_busy(p) ? p->busy_margin_ns : p->margin_ns;
}

/* For the unit test: the bucket of a lateness, and the largest lateness it holds. */
unsigned pacing_bucket(uint64_t late_ns);
uint64_t pacing_bucket_high(unsigned b);

#endif
