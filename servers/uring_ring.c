/* The ring layer (uring_ring.h): kernel negotiation, the probe, submission and completion. */
#include "uring_ring.h"
#include "uring_bufs.h"
#include "backend.h"
#include "clock.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

/* The best setup flags the kernel takes, tried in order (older kernels say EINVAL to newer
 * flags). SQPOLL: a kernel thread polls the SQ, so submitting needs no system call while it is
 * awake; DEFER_TASKRUN does not combine with it (the completions are not run by this thread). */
static int ring_setup(struct io_uring *ring, unsigned sq, unsigned cq, unsigned how)
{
	static const unsigned plain[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	static const unsigned sqpoll[] = {
		IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER,
		IORING_SETUP_SQPOLL,
	};
	const unsigned *flags = (how & UIO_SQPOLL) ? sqpoll : plain;
	size_t n = (how & UIO_SQPOLL) ? sizeof(sqpoll) / sizeof(sqpoll[0]) : sizeof(plain) / sizeof(plain[0]);
	int r = -EINVAL;

	for (size_t i = 0; i < n && r == -EINVAL; i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flags[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = cq;
		p.sq_thread_idle = SQPOLL_IDLE_MS;
		r = io_uring_queue_init_params(sq, ring, &p);
	}
	return r;
}

const char *uio_setup_why(int r)
{
	switch (r) {
	case -EPERM:
		return "io_uring_queue_init: Operation not permitted (io_uring disabled by sysctl or seccomp?)";
	case -ENOSYS:
		return "io_uring_queue_init: Function not implemented (kernel without io_uring, or blocked by seccomp)";
	case -ENOMEM:
		return "io_uring_queue_init: Cannot allocate memory (RLIMIT_MEMLOCK too low?)";
	case -EINVAL:
		return "io_uring_queue_init: Invalid argument (kernel too old for io_uring)";
	default:
		return "io_uring_queue_init failed";
	}
}

/* The backend's probe (backend.h): every opcode it uses, and provided buffer rings. A real
 * ring is set up and torn down, so it runs once, when the backend is started or listed. */
int uring_probe(const char **why)
{
	static const struct { int op; const char *why; } need[] = {
		{ IORING_OP_ACCEPT, "kernel lacks IORING_OP_ACCEPT (needs Linux 5.19)" },
		{ IORING_OP_RECV, "kernel lacks IORING_OP_RECV (needs Linux 5.19)" },
		{ IORING_OP_SEND, "kernel lacks IORING_OP_SEND (needs Linux 5.19)" },
		{ IORING_OP_RECVMSG, "kernel lacks IORING_OP_RECVMSG (needs Linux 5.19)" },
		{ IORING_OP_SENDMSG, "kernel lacks IORING_OP_SENDMSG (needs Linux 5.19)" },
		{ IORING_OP_POLL_ADD, "kernel lacks IORING_OP_POLL_ADD (needs Linux 5.19)" },
		{ IORING_OP_TIMEOUT, "kernel lacks IORING_OP_TIMEOUT (needs Linux 5.19)" },
		{ IORING_OP_ASYNC_CANCEL, "kernel lacks IORING_OP_ASYNC_CANCEL (needs Linux 5.19)" },
	};
	const char *dummy;
	struct io_uring ring;
	struct io_uring_probe *probe;
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	int r;

	if (!why)
		why = &dummy;
	r = ring_setup(&ring, 8, 16, 0);
	if (r < 0) {
		*why = uio_setup_why(r);
		return r;
	}
	probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		*why = "kernel lacks IORING_REGISTER_PROBE (needs Linux 5.19)";
		r = -EOPNOTSUPP;
		goto out;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]) && r == 0; i++) {
		if (!io_uring_opcode_supported(probe, need[i].op)) {
			*why = need[i].why;
			r = -EOPNOTSUPP;
		}
	}
	io_uring_free_probe(probe);
	if (r < 0)
		goto out;
	r = ubufs_ring_map(2, &br, &br_bytes);
	if (r < 0) {
		*why = "mmap of a provided buffer ring failed";
		goto out;
	}
	r = ubufs_ring_register(&ring, br, 2);
	if (r < 0)
		*why = "kernel lacks provided buffer rings (needs Linux 5.19)";
	else
		io_uring_unregister_buf_ring(&ring, UBUFS_GROUP);
	munmap(br, br_bytes);
out:
	io_uring_queue_exit(&ring);
	return r < 0 ? r : 0;
}


/* uring:sqpoll's probe: the backend's, then a ring with an SQ thread. */
int uring_probe_sqpoll(const char **why)
{
	struct io_uring ring;
	int r = uring_probe(why);

	if (r < 0)
		return r;
	r = ring_setup(&ring, 8, 16, UIO_SQPOLL);
	if (r < 0) {
		*why = r == -EPERM ? "IORING_SETUP_SQPOLL: not permitted here (needs Linux 5.11, or CAP_SYS_NICE before)"
				   : "IORING_SETUP_SQPOLL refused by the kernel";
		return r;
	}
	io_uring_queue_exit(&ring);
	return 0;
}

int uio_setup(struct uring_io *io, unsigned sq, unsigned cq, unsigned how)
{
	int r = ring_setup(&io->ring, sq, cq, how);

	io->up = r == 0;
	io->inflight = 0;
	io->sqpoll = r == 0 && (io->ring.flags & IORING_SETUP_SQPOLL);
	/* A registered ring fd (Linux 5.18) spares io_uring_enter the fd table lookup (fdget/
	 * fdput) on every call. Without it everything works the same, so a refusal is ignored. */
	if (r == 0)
		io->ring_fd_registered = io_uring_register_ring_fd(&io->ring) == 1;
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
