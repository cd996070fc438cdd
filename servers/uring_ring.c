/* The ring layer (uring_ring.h): kernel negotiation, the probe, submission and completion. */
#include "uring_ring.h"
#include "backend.h"
#include "clock.h"

#include <errno.h>
#include <string.h>

/* The backend's probe (backend.h): every opcode it uses, and provided buffer rings. A real
 * ring is set up and torn down, so it runs once, when the backend is started or listed. */
int uring_probe(const char **why)
{
	static const int ops[] = {
		IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SEND, IORING_OP_RECVMSG,
		IORING_OP_SENDMSG, IORING_OP_POLL_ADD, IORING_OP_TIMEOUT, IORING_OP_ASYNC_CANCEL,
	};
	const char *dummy;

	return uru_probe(ops, sizeof(ops) / sizeof(ops[0]), URU_NEED_EXT_ARG | URU_NEED_BUFRING,
			 why ? why : &dummy);
}

/* uring:sqpoll's probe: the backend's, then a ring with an SQ thread. */
int uring_probe_sqpoll(const char **why)
{
	struct io_uring ring;
	int r = uring_probe(why);

	if (r < 0)
		return r;
	r = uru_setup(&ring, 8, 16, URU_SQPOLL);
	if (r < 0) {
		*why = uru_setup_why(r, URU_SQPOLL);
		return r;
	}
	io_uring_queue_exit(&ring);
	return 0;
}

/* uring:zc's probe: the backend's, then zero-copy send (6.0). */
int uring_probe_zc(const char **why)
{
	static const int ops[] = { IORING_OP_SEND_ZC };
	int r = uring_probe(why);

	return r < 0 ? r : uru_probe(ops, 1, 0, why);
}

int uio_setup(struct uring_io *io, unsigned sq, unsigned cq, unsigned how)
{
	int r = uru_setup(&io->ring, sq, cq, how);

	io->up = r == 0;
	io->inflight = 0;
	io->sqpoll = r == 0 && (io->ring.flags & IORING_SETUP_SQPOLL);
	return r;
}

void uio_exit(struct uring_io *io)
{
	if (io->up)
		io_uring_queue_exit(&io->ring);
	io->up = false;
}

struct io_uring_sqe *uio_sqe(struct uring_io *io)
{
	for (int tries = 0; tries < 4; tries++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

		if (sqe) {
			io->inflight++;
			return sqe;
		}
		int r = io_uring_submit(&io->ring);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			break;
		/* With SQPOLL the thread takes the SQEs when it gets to them: wait for room. */
		if (io->sqpoll)
			(void)io_uring_sqring_wait(&io->ring);
	}
	return NULL;
}

void uio_cancel(struct uring_io *io, uint64_t target, uint64_t tag)
{
	struct io_uring_sqe *sqe = uio_sqe(io);

	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, target, 0);
	io_uring_sqe_set_data64(sqe, tag);
}

void uio_cancel_all(struct uring_io *io, uint64_t tag)
{
	struct io_uring_sqe *sqe = uio_sqe(io);

	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, tag);
}

int uio_wait(struct uring_io *io, uint64_t until, uio_handler *fn, void *ctx)
{
	struct io_uring_cqe *cqe;
	int r;

	if (!until) {
		r = io_uring_submit_and_wait(&io->ring, 1);
	} else {
		uint64_t now = now_ns();
		uint64_t left = until > now ? until - now : 0;
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(left / 1000000000u),
			.tv_nsec = (long long)(left % 1000000000u),
		};

		r = io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, &ts, NULL);
	}
	if (r == -EINTR || r == -EAGAIN || r == -EBUSY || r == -ETIME)
		r = 0;
	if (r < 0)
		return r;
	while (io_uring_peek_cqe(&io->ring, &cqe) == 0) {
		uint64_t data = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		uint32_t flags = cqe->flags;

		/* Seen before handling: handlers may submit, and the CQ slot is then free. */
		io_uring_cqe_seen(&io->ring, cqe);
		if (!(flags & IORING_CQE_F_MORE))
			io->inflight--;
		fn(ctx, data, res, flags);
	}
	return 0;
}
