/* The io_uring pieces that echo-server's uring backend (servers/uring_*.c) and echo-load's
 * uring engine (clients/load_uring.c) share: ring setup with flag fallback, the opcode probe,
 * the provided-buffer ring, and the one table of messages for their failures.
 *
 * Built only where liburing is (meson: uring_util_dep defines ECHOBENCH_HAVE_URING); without
 * it only URU_NOT_BUILT is here, the reason both programs' stand-ins give.
 *
 * Kernel versions of what is set up here (liburing is 2.3, older than the kernels we run on,
 * so anything newer is probed at run time):
 *   IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN  6.1, else COOP_TASKRUN 5.19, else none
 *   IORING_SETUP_SUBMIT_ALL                     5.18 (dropped with the others on older kernels)
 *   IORING_SETUP_SQPOLL without privileges      5.11
 *   io_uring_register_ring_fd                   5.18 (else not used: only an optimisation)
 *   IORING_REGISTER_PROBE                       5.6
 *   IORING_FEAT_EXT_ARG (wait with a timeout)   5.11
 *   IORING_REGISTER_PBUF_RING                   5.19
 */
#ifndef ECHOBENCH_URING_UTIL_H
#define ECHOBENCH_URING_UTIL_H

#define URU_NOT_BUILT "not compiled in (liburing was not found at build time; install " \
	"liburing-dev and rebuild)"

#ifdef ECHOBENCH_HAVE_URING

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>

/* How long an SQPOLL thread spins on an empty SQ before it sleeps (and needs a wake-up): a
 * timer that fires more often than this keeps it spinning for good. */
#define URU_SQPOLL_IDLE_MS 10

enum {
	URU_SQPOLL = 1,        /* uru_setup: an SQ thread submits (with SINGLE_ISSUER if taken) */
};

/* Sets up ring with SQ and CQ sizes (clamped to the kernel's limits) and the best flags the
 * kernel takes: SINGLE_ISSUER|DEFER_TASKRUN (completions run only when this thread waits,
 * which suits one ring per thread), else COOP_TASKRUN, else none, each with SUBMIT_ALL (an
 * SQE that fails does not hold back the ones after it); older kernels say EINVAL to newer
 * flags and get the next best. With URU_SQPOLL: an SQ thread instead. Registers the ring fd
 * where the kernel can, which spares every io_uring_enter an fd lookup. Returns 0 or -errno
 * (uru_setup_why() says it in one line). */
int uru_setup(struct io_uring *ring, unsigned sq, unsigned cq, unsigned how);

/* The one-line reason for a failed uru_setup(err < 0) with those `how` flags: the one table
 * of io_uring setup errors. Static text. */
const char *uru_setup_why(int err, unsigned how);

enum {
	URU_NEED_EXT_ARG = 1,  /* uru_probe: waits with a timeout need no SQE (5.11) */
	URU_NEED_BUFRING = 2,  /* uru_probe: provided buffer rings (5.19) */
};

/* Whether this kernel has io_uring with every opcode of ops[0..n) and the features in `need`:
 * a small ring is set up and torn down, so call it once (when starting or listing). Returns 0,
 * or -errno with *why (static text) naming the first piece missing and the Linux that has it. */
int uru_probe(const int *ops, size_t n, unsigned need, const char **why);

/* Whether ring's kernel has opcode op (false when it cannot say: before 5.6). */
bool uru_has_op(struct io_uring *ring, int op);

/* "kernel lacks IORING_OP_X (needs Linux V)": static text for the opcodes echobench uses. */
const char *uru_op_why(int op);

/* A provided buffer ring of `entries` slots (a power of two, at most 32768), registered as
 * buffer group `bgid`. The buffers themselves are the caller's: uru_bufring_add() hands one
 * to the kernel, which picks it for an IOSQE_BUFFER_SELECT receive and reports its id in the
 * completion (IORING_CQE_F_BUFFER, id in cqe->flags >> IORING_CQE_BUFFER_SHIFT). */
struct uru_bufring {
	struct io_uring_buf_ring *br;
	size_t bytes;          /* of the mapping */
	unsigned entries;
	unsigned short bgid;
};

/* Maps (page aligned, as the kernel wants) and registers. Returns 0 or -errno. */
int uru_bufring_open(struct uru_bufring *b, struct io_uring *ring, unsigned entries,
		     unsigned short bgid);
/* Unregisters (ring may be NULL: the ring is gone, and with it the registration) and unmaps. */
void uru_bufring_close(struct uru_bufring *b, struct io_uring *ring);

/* Queues buffer bid at addr (len bytes) as the offset-th of a batch; uru_bufring_publish(n)
 * then hands the batch of n to the kernel. */
static inline void uru_bufring_add(struct uru_bufring *b, void *addr, unsigned len,
				   unsigned short bid, int offset)
{
	io_uring_buf_ring_add(b->br, addr, len, bid, io_uring_buf_ring_mask(b->entries), offset);
}

static inline void uru_bufring_publish(struct uru_bufring *b, int n)
{
	io_uring_buf_ring_advance(b->br, n);
}

/* Gives one buffer back to the kernel: only once nothing reads from it any more (the echo
 * sent, the data checked), or the kernel hands it to the next receive while it is in use. */
static inline void uru_bufring_give(struct uru_bufring *b, void *addr, unsigned len,
				    unsigned short bid)
{
	uru_bufring_add(b, addr, len, bid, 0);
	uru_bufring_publish(b, 1);
}

#endif /* ECHOBENCH_HAVE_URING */
#endif
