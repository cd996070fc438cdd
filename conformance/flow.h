/* The echo "flow" engine of the cases: one conversation on a connected socket, driven by the
 * case's deadline and random choices, with its verdict recorded through conform.h. Built on the
 * socket helpers of netio.h. */
#ifndef ECHOBENCH_FLOW_H
#define ECHOBENCH_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conform.h"

/* One echo conversation on a connected socket: send `total` bytes (explicit `data`, or the
 * common/stream.h stream `seed`, key 0) with the given write sizes and pauses, read them back concurrently
 * (or only after sending) with the given read sizes, pauses and rate, and compare every byte.
 * Fields after the marker are results. */
struct flow {
	const uint8_t *data;
	uint64_t seed;
	uint64_t total;
	size_t wmin, wmax;            /* write sizes, uniform in [wmin, wmax]; 0: 64 KiB */
	unsigned wpause_every;        /* pause after every k-th write (0: never) */
	uint64_t wpause_ns;
	size_t rmin, rmax;            /* read sizes; 0: 64 KiB */
	unsigned rpause_every;
	uint64_t rpause_ns;
	uint64_t read_rate;           /* bytes/s the reader accepts; 0: as fast as it can */
	bool read_after_send;         /* do not read until everything is written */
	bool shut_wr;                 /* SHUT_WR right after the last byte is written */
	bool expect_eof;              /* after `total` bytes the server must close: read to EOF */
	bool hash;                    /* FNV-1a of both directions, for the report */
	/* results */
	uint64_t sent, rcvd, extra;
	int64_t mismatch;             /* stream offset of the first wrong byte, -1: none */
	uint8_t want, got;
	bool eof;                     /* EOF seen */
	int err;                      /* errno of the send/recv that failed, 0: none */
	bool timed_out;
	uint64_t hash_sent, hash_rcvd;
	uint64_t elapsed_ns;
};

void flow_init(struct flow *f, uint64_t seed, uint64_t total);
/* Runs the conversation until done, a mismatch, an error, EOF, or the case deadline. Returns 0
 * when every byte came back intact (then EOF, when expected), -1 otherwise. */
int flow_run(struct casectx *c, int fd, struct flow *f);
/* Records the flow's figures, and on failure the verdict: `expected` says what should have
 * happened, the seen text is derived from the results. */
void flow_report(struct casectx *c, const struct flow *f, const char *expected);

#endif
