/* The ring layer of the io_uring backend: negotiation with the kernel (setup flags, the probe of
 * every piece the backend uses), and the submission/completion plumbing that knows nothing of
 * echo: SQEs counted as in flight, one wait that submits too, completions handed to a callback.
 *
 * io_uring features the backend uses (through liburing 2.3) and the kernel each needs (setup,
 * the probe and the buffer ring are common/uring_util.h, shared with echo-load):
 *   IORING_OP_ACCEPT multishot (IORING_ACCEPT_MULTISHOT)          5.19
 *   IORING_OP_RECV + IOSQE_BUFFER_SELECT from a provided buffer
 *     ring (IORING_REGISTER_PBUF_RING)                             5.19
 *   multishot recv (IORING_RECV_MULTISHOT)                         6.0
 *     capped at N bytes per arm (sqe->optlen)                      6.17 (else single shot)
 *   IORING_OP_SEND                                                 5.6
 *   IORING_OP_POLL_ADD (the stop eventfd)                          5.1
 *   IORING_OP_RECVMSG, IORING_OP_SENDMSG (UDP)                     5.3
 *   IORING_OP_TIMEOUT (accept back-off after EMFILE)               5.4
 *   IORING_OP_ASYNC_CANCEL, IORING_ASYNC_CANCEL_ANY                5.5, 5.19
 *   IORING_FEAT_EXT_ARG (wait with a timeout, no SQE needed)       5.11
 *   IORING_OP_SEND_ZC (uring:zc only; probed)                      6.0
 *     IORING_SEND_ZC_REPORT_USAGE                                  6.2 (else not asked)
 *   ring flags, registered ring fd, SQPOLL: uring_util.h
 * So the backend needs Linux 5.19; uring_probe() says which piece is missing on an older kernel.
 */
#ifndef ECHOBENCH_URING_RING_H
#define ECHOBENCH_URING_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "uring_util.h"

struct uring_io {
	struct io_uring ring;
	uint32_t inflight;   /* operations whose last completion has not arrived */
	bool up;             /* ring set up (and to be torn down) */
	bool sqpoll;         /* an SQ thread submits (IORING_SETUP_SQPOLL) */
};

/* One completion: the SQE's user_data, cqe->res, cqe->flags. */
typedef void uio_handler(void *ctx, uint64_t data, int res, uint32_t flags);

/* Sets up the ring with uru_setup() (how: URU_SQPOLL or 0). Returns 0 or -errno. */
int uio_setup(struct uring_io *io, unsigned sq, unsigned cq, unsigned how);
void uio_exit(struct uring_io *io);

/* An SQE (counted in flight), submitting what is queued when the SQ is full. NULL only when the
 * kernel refuses submissions; callers then park their work and retry after the next wait. */
struct io_uring_sqe *uio_sqe(struct uring_io *io);
/* Cancels the operation whose user_data is target (0 with all: every operation); the cancel's
 * own completion carries user_data `tag`. Without an SQE nothing is sent (uio_cancel_all at
 * teardown catches what is left). */
void uio_cancel(struct uring_io *io, uint64_t target, uint64_t tag);
void uio_cancel_all(struct uring_io *io, uint64_t tag);
/* Submits, waits for at least one completion until `until` (CLOCK_MONOTONIC ns; 0: no limit),
 * then hands every completion to fn. Interruptions and timeouts count as success. */
int uio_wait(struct uring_io *io, uint64_t until, uio_handler *fn, void *ctx);

#endif
