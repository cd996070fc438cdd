/* The provided-buffer pool of one io_uring worker: a buffer ring (group UBUFS_GROUP) whose
 * buffers the kernel picks for IOSQE_BUFFER_SELECT receives, allocated on demand.
 *
 * Life cycle. A recv armed with IOSQE_BUFFER_SELECT names no memory. When data is there the
 * kernel takes the next buffer of the group from the ring, fills it and reports its id in the
 * completion (IORING_CQE_F_BUFFER, id in cqe->flags >> IORING_CQE_BUFFER_SHIFT): ubufs_take().
 * From then on the buffer belongs to that connection alone: it holds the echo while the send is
 * in flight and goes back into the ring (ubufs_give) only after the last byte is sent. Giving it
 * back earlier is the classic bug: the kernel hands it to another connection's recv, which
 * overwrites data still being sent, and one client receives another's bytes.
 *
 * The kernel may also consume a buffer for a completion that carries no data (EOF, errors):
 * whenever IORING_CQE_F_BUFFER is set the buffer is ours and must be given back.
 *
 * A recv that finds no data yet puts its buffer back and waits, so idle connections hold none.
 * A recv issued while the ring is empty fails at once with -ENOBUFS; it does not wait (the
 * caller parks the connection until ubufs_free() > 0).
 *
 * The ring has room for `entries` buffers, but they are allocated on demand, when the free ones
 * run low: memory follows the number of connections with echo in flight (at most one buffer
 * each), not the ring size. `entries` is the wanted count rounded up to a power of two: past
 * that many peers that do not read, further connections wait for a buffer to return, since
 * bounded memory comes first.
 */
#ifndef ECHOBENCH_URING_BUFS_H
#define ECHOBENCH_URING_BUFS_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uring_util.h"

#define UBUFS_GROUP 0

struct services;

struct ubufs {
	struct services *svc;          /* for the log-once of an allocation failure */
	struct uru_bufring ring;   /* the kernel's side (uring_util.h) */
	unsigned entries;    /* ring slots (power of two) and the cap on buffers */
	uint32_t bsize;
	uint8_t **mem;       /* mem[bid], allocated on demand */
	unsigned total;      /* buffers allocated (and given to the kernel at least once) */
	unsigned held;       /* buffers taken by completions and not yet given back */
};

/* A pool of at most `want` (rounded to a power of two, within the kernel's limits) buffers of
 * bsize bytes, registered with ring. Returns 0 or -errno with *why naming the step. */
int ubufs_open(struct ubufs *b, struct io_uring *ring, unsigned want, size_t bsize,
	       struct services *svc, const char **why);
/* kernel_done: no operation can touch the buffers any more, so they may be freed; otherwise
 * they are leaked (better than the kernel writing into freed memory). */
void ubufs_close(struct ubufs *b, bool kernel_done);

/* The buffer id a completion's flags carry (IORING_CQE_F_BUFFER set), now held by the caller;
 * -1 when the id is not ours. */
int ubufs_take(struct ubufs *b, uint32_t cqe_flags);
void ubufs_give(struct ubufs *b, int bid);

/* More buffers (up to the cap), for when a receive found the ring empty (-ENOBUFS). A
 * multishot recv needs a free buffer even to find that no data is there: it ends with ENOBUFS
 * whenever the ring is empty at that moment, so the pool must grow past the buffers held. */
void ubufs_grow(struct ubufs *b);

static inline unsigned ubufs_free(const struct ubufs *b)
{
	return b->total - b->held;
}

static inline uint8_t *ubufs_mem(const struct ubufs *b, int bid)
{
	return b->mem[bid];
}

#endif
