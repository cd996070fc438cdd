/* The provided-buffer pool (uring_bufs.h has its life cycle). */
#include "uring_bufs.h"
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MAX (16u << 20)         /* largest provided buffer we register */
#define RING_MIN 16u
#define RING_MAX 32768u             /* the kernel's limit on buffer ring entries */

/* Allocates more buffers: half as many again as there are (at least 16), up to `entries`. */
void ubufs_grow(struct ubufs *b)
{
	unsigned want = b->total / 2 > 16 ? b->total / 2 : 16;
	int added = 0;

	if (want > b->entries - b->total)
		want = b->entries - b->total;
	for (unsigned i = 0; i < want; i++) {
		unsigned bid = b->total + (unsigned)added;

		b->mem[bid] = malloc(b->bsize);
		if (!b->mem[bid])
			break;
		uru_bufring_add(&b->ring, b->mem[bid], b->bsize, (unsigned short)bid, added);
		added++;
	}
	if (added) {
		uru_bufring_publish(&b->ring, added);
		b->total += (unsigned)added;
	} else if (want) {
		svc_log_once(b->svc, "uring-bufs", "uring: cannot allocate receive buffers");
	}
}

int ubufs_open(struct ubufs *b, struct io_uring *ring, unsigned want, size_t bsize,
	       struct services *svc, const char **why)
{
	int r;

	*b = (struct ubufs){ .svc = svc, .entries = RING_MIN };
	b->bsize = bsize > BUF_MAX ? BUF_MAX : (uint32_t)bsize;
	while (b->entries < want && b->entries < RING_MAX)
		b->entries *= 2;
	*why = "out of memory";
	b->mem = calloc(b->entries, sizeof(*b->mem));
	if (!b->mem)
		return -ENOMEM;
	*why = "cannot set up a provided buffer ring";
	r = uru_bufring_open(&b->ring, ring, b->entries, UBUFS_GROUP);
	if (r < 0)
		return r;
	ubufs_grow(b);
	return 0;
}

void ubufs_close(struct ubufs *b, bool kernel_done)
{
	if (kernel_done) {
		for (unsigned i = 0; i < b->total; i++)
			free(b->mem[i]);
		uru_bufring_close(&b->ring, NULL);   /* the ring is gone: so is the registration */
	}
	free(b->mem);
	*b = (struct ubufs){ 0 };
}

int ubufs_take(struct ubufs *b, uint32_t cqe_flags)
{
	unsigned bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;

	if (bid >= b->total)
		return -1;
	b->held++;
	if (ubufs_free(b) < 4 + b->total / 8 && b->total < b->entries)
		ubufs_grow(b);
	return (int)bid;
}

void ubufs_give(struct ubufs *b, int bid)
{
	uru_bufring_give(&b->ring, b->mem[bid], b->bsize, (unsigned short)bid);
	b->held--;
}
