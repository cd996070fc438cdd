/* Unit tests of the shared io_uring helpers (uring_util.h): the one message table, the probe
 * (a real opcode passes, a made-up one is named as missing), setup with the registered ring
 * fd, and a buffer ring that the kernel really picks from. Exit 77 where io_uring cannot run. */
#include "check.h"
#include "uring_util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_messages(void)
{
	static const int errs[] = { -EPERM, -ENOSYS, -ENOMEM, -EINVAL, -EMFILE };

	/* Each errno its own line, and each names the call. */
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *a = uru_setup_why(errs[i], 0);

		CHECK(strncmp(a, "io_uring_setup", 14) == 0);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(a, uru_setup_why(errs[j], 0)) != 0);
	}
	CHECK(strstr(uru_setup_why(-EPERM, URU_SQPOLL), "SQPOLL") != NULL);
	CHECK(strstr(uru_op_why(IORING_OP_SEND_ZC), "IORING_OP_SEND_ZC (needs Linux 6.0)"));
	CHECK(strstr(uru_op_why(IORING_OP_SPLICE), "IORING_OP_SPLICE"));
}

int main(void)
{
	static const int ops[] = { IORING_OP_RECV, IORING_OP_SEND };
	/* Far past any kernel's last opcode (6.18 has about 60), within the probe's 256. */
	static const int bogus[] = { IORING_OP_RECV, 250 };
	const char *why = NULL;
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct uru_bufring br;
	char bufs[2][64];
	int sv[2], r;

	test_messages();
	r = uru_probe(ops, 2, URU_NEED_EXT_ARG | URU_NEED_BUFRING, &why);
	if (r < 0)
		SKIP("io_uring cannot run here: %s", why);
	r = uru_probe(bogus, 2, 0, &why);
	CHECK_EQ(r, -EOPNOTSUPP);
	CHECK(strstr(why, "kernel lacks") != NULL);

	CHECK_EQ(uru_setup(&ring, 8, 16, 0), 0);
	CHECK(uru_has_op(&ring, IORING_OP_RECV));
	CHECK(!uru_has_op(&ring, 250));
	CHECK_EQ(uru_bufring_open(&br, &ring, 2, 3), 0);
	uru_bufring_add(&br, bufs[0], sizeof(bufs[0]), 0, 0);
	uru_bufring_add(&br, bufs[1], sizeof(bufs[1]), 1, 1);
	uru_bufring_publish(&br, 2);

	/* A receive from group 3 lands in one of our buffers, and says which. */
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CHECK_EQ(write(sv[1], "hello", 5), 5);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv(sqe, sv[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 3;
	CHECK_EQ(io_uring_submit_and_wait(&ring, 1), 1);
	CHECK_EQ(io_uring_peek_cqe(&ring, &cqe), 0);
	CHECK_EQ(cqe->res, 5);
	CHECK(cqe->flags & IORING_CQE_F_BUFFER);
	unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	CHECK(bid < 2);
	CHECK(memcmp(bufs[bid], "hello", 5) == 0);
	io_uring_cqe_seen(&ring, cqe);
	uru_bufring_give(&br, bufs[bid], sizeof(bufs[bid]), (unsigned short)bid);
	uru_bufring_close(&br, &ring);
	CHECK(br.br == NULL);
	io_uring_queue_exit(&ring);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
