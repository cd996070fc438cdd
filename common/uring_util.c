/* The shared io_uring pieces (uring_util.h): setup with fallback, the probe, the buffer ring,
 * and the messages for their failures. */
#include "uring_util.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int uru_setup(struct io_uring *ring, unsigned sq, unsigned cq, unsigned how)
{
	static const unsigned plain[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		0,
	};
	/* DEFER_TASKRUN does not combine with SQPOLL: the completions are not run by us. */
	static const unsigned sqpoll[] = {
		IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SQPOLL,
	};
	const unsigned *flags = (how & URU_SQPOLL) ? sqpoll : plain;
	size_t n = (how & URU_SQPOLL) ? sizeof(sqpoll) / sizeof(sqpoll[0])
				      : sizeof(plain) / sizeof(plain[0]);
	int r = -EINVAL;

	for (size_t i = 0; i < n && r == -EINVAL; i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flags[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = cq;
		p.sq_thread_idle = URU_SQPOLL_IDLE_MS;
		r = io_uring_queue_init_params(sq, ring, &p);
	}
	if (r == 0)
		(void)io_uring_register_ring_fd(ring);   /* refused before 5.18: no harm */
	return r;
}

const char *uru_setup_why(int err, unsigned how)
{
	if (how & URU_SQPOLL) {
		if (err == -EPERM)
			return "io_uring_setup with SQPOLL: not permitted (needs Linux 5.11, or "
			       "CAP_SYS_NICE before)";
		if (err == -EINVAL)
			return "io_uring_setup with SQPOLL: refused by the kernel";
	}
	switch (err) {
	case -EPERM:
		return "io_uring_setup: not permitted (io_uring disabled by sysctl "
		       "kernel.io_uring_disabled, or by seccomp)";
	case -ENOSYS:
		return "io_uring_setup: not implemented (kernel without io_uring, or blocked by "
		       "seccomp)";
	case -ENOMEM:
		return "io_uring_setup: cannot allocate memory (RLIMIT_MEMLOCK too low?)";
	case -EINVAL:
		return "io_uring_setup: invalid argument (kernel too old for io_uring)";
	case -EMFILE:
	case -ENFILE:
		return "io_uring_setup: out of file descriptors";
	default:
		return "io_uring_setup failed";
	}
}

static const struct {
	int op;
	const char *why;
} op_text[] = {
	{ IORING_OP_POLL_ADD, "kernel lacks IORING_OP_POLL_ADD (needs Linux 5.1)" },
	{ IORING_OP_RECVMSG, "kernel lacks IORING_OP_RECVMSG (needs Linux 5.3)" },
	{ IORING_OP_SENDMSG, "kernel lacks IORING_OP_SENDMSG (needs Linux 5.3)" },
	{ IORING_OP_TIMEOUT, "kernel lacks IORING_OP_TIMEOUT (needs Linux 5.4)" },
	{ IORING_OP_ACCEPT, "kernel lacks IORING_OP_ACCEPT (needs Linux 5.5)" },
	{ IORING_OP_ASYNC_CANCEL, "kernel lacks IORING_OP_ASYNC_CANCEL (needs Linux 5.5)" },
	{ IORING_OP_RECV, "kernel lacks IORING_OP_RECV (needs Linux 5.6)" },
	{ IORING_OP_SEND, "kernel lacks IORING_OP_SEND (needs Linux 5.6)" },
	{ IORING_OP_SPLICE, "kernel lacks IORING_OP_SPLICE (needs Linux 5.7)" },
	{ IORING_OP_SEND_ZC, "kernel lacks IORING_OP_SEND_ZC (needs Linux 6.0)" },
};

const char *uru_op_why(int op)
{
	for (size_t i = 0; i < sizeof(op_text) / sizeof(op_text[0]); i++)
		if (op_text[i].op == op)
			return op_text[i].why;
	return "kernel lacks an io_uring operation echobench needs";
}

bool uru_has_op(struct io_uring *ring, int op)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool has = p && io_uring_opcode_supported(p, op);

	if (p)
		io_uring_free_probe(p);
	return has;
}

int uru_probe(const int *ops, size_t n, unsigned need, const char **why)
{
	struct io_uring ring;
	struct io_uring_probe *p;
	int r = uru_setup(&ring, 8, 16, 0);

	if (r < 0) {
		*why = uru_setup_why(r, 0);
		return r;
	}
	p = io_uring_get_probe_ring(&ring);
	if (!p) {
		*why = "kernel cannot list its io_uring operations (IORING_REGISTER_PROBE needs "
		       "Linux 5.6)";
		r = -EOPNOTSUPP;
	}
	for (size_t i = 0; p && r == 0 && i < n; i++) {
		if (!io_uring_opcode_supported(p, ops[i])) {
			*why = uru_op_why(ops[i]);
			r = -EOPNOTSUPP;
		}
	}
	if (p)
		io_uring_free_probe(p);
	if (r == 0 && (need & URU_NEED_EXT_ARG) && !(ring.features & IORING_FEAT_EXT_ARG)) {
		*why = "kernel's io_uring cannot wait with a timeout (IORING_FEAT_EXT_ARG needs "
		       "Linux 5.11)";
		r = -EOPNOTSUPP;
	}
	if (r == 0 && (need & URU_NEED_BUFRING)) {
		struct uru_bufring b;

		r = uru_bufring_open(&b, &ring, 2, 0);
		if (r < 0)
			*why = r == -ENOMEM ? "cannot map a provided buffer ring (out of memory)"
					    : "kernel lacks provided buffer rings (needs Linux 5.19)";
		else
			uru_bufring_close(&b, &ring);
	}
	io_uring_queue_exit(&ring);
	return r;
}

int uru_bufring_open(struct uru_bufring *b, struct io_uring *ring, unsigned entries,
		     unsigned short bgid)
{
	struct io_uring_buf_reg reg;
	long page = sysconf(_SC_PAGESIZE);
	size_t len = entries * sizeof(struct io_uring_buf);
	void *p;
	int r;

	*b = (struct uru_bufring){ .entries = entries, .bgid = bgid };
	if (page <= 0)
		page = 4096;
	len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
	/* liburing 2.3 has no helper that maps the ring: mmap gives the page alignment. */
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	b->br = p;
	b->bytes = len;
	io_uring_buf_ring_init(b->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = entries;
	reg.bgid = bgid;
	r = io_uring_register_buf_ring(ring, &reg, 0);
	if (r < 0) {
		munmap(b->br, b->bytes);
		*b = (struct uru_bufring){ 0 };
	}
	return r;
}

void uru_bufring_close(struct uru_bufring *b, struct io_uring *ring)
{
	if (!b->br)
		return;
	if (ring)
		io_uring_unregister_buf_ring(ring, b->bgid);
	munmap(b->br, b->bytes);
	*b = (struct uru_bufring){ 0 };
}
