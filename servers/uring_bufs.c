/* The provided-buffer pool (uring_bufs.h has its life cycle). */
#include "uring_bufs.h"
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BUF_MAX (16u << 20)         /* largest provided buffer we register */
#define RING_MIN 16u
#define RING_MAX 32768u             /* the kernel's limit on buffer ring entries */

int ubufs_ring_map(unsigned entries, struct io_uring_buf_ring **out, size_t *bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = entries * sizeof(struct io_uring_buf);
	void *p;

	if (page <= 0)
		page = 4096;
	len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
	/* The kernel wants the ring page aligned; mmap gives that (liburing 2.3 has no helper). */
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	*bytes = len;
	io_uring_buf_ring_init(*out);
	return 0;
}

int ubufs_ring_register(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries)
{
	struct io_uring_buf_reg reg;

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br;
	reg.ring_entries = entries;
	reg.bgid = UBUFS_GROUP;
	return io_uring_register_buf_ring(ring, &reg, 0);
}

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
		io_uring_buf_ring_add(b->br, b->mem[bid], b->bsize, (unsigned short)bid,
				      io_uring_buf_ring_mask(b->entries), added);
		added++;
	}
	if (added) {
		io_uring_buf_ring_advance(b->br, added);
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
	*why = "cannot map a buffer ring";
	r = ubufs_ring_map(b->entries, &b->br, &b->br_bytes);
	if (r < 0)
		return r;
	*why = "cannot register a buffer ring";
	r = ubufs_ring_register(ring, b->br, b->entries);
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
		if (b->br)
			munmap(b->br, b->br_bytes);
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
	io_uring_buf_ring_add(b->br, b->mem[bid], b->bsize, (unsigned short)bid,
			      io_uring_buf_ring_mask(b->entries), 0);
	io_uring_buf_ring_advance(b->br, 1);
	b->held--;
}
