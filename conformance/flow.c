/* The flow engine (flow.h): writes, reads and checks one echo conversation. */
#include "flow.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "fnv.h"
#include "netio.h"
#include "stream.h"

/* Largest single send/recv of a flow: above the 65537-byte case, so "one write" is one call. */
#define IO_CHUNK (128 * 1024)

void flow_init(struct flow *f, uint64_t seed, uint64_t total)
{
	memset(f, 0, sizeof(*f));
	f->seed = seed;
	f->total = total;
	f->mismatch = -1;
}

static size_t pick_size(struct casectx *c, size_t lo, size_t hi)
{
	size_t n;

	if (lo == 0)
		return 64 * 1024;
	n = hi <= lo ? lo : (size_t)case_rand_range(c, lo, hi);
	return n < IO_CHUNK ? n : IO_CHUNK;
}

static void flow_expected(const struct flow *f, uint64_t off, uint8_t *buf, size_t n)
{
	if (f->data)
		memcpy(buf, f->data + off, n);
	else
		stream_fill(f->seed, 0, off, buf, n);
}

/* Checks bytes just received at stream offset f->rcvd; false at the first wrong byte. */
static bool flow_check(struct flow *f, const uint8_t *got, size_t n, uint8_t *scratch)
{
	size_t in_stream = f->rcvd >= f->total ? 0
		: (size_t)(f->total - f->rcvd < n ? f->total - f->rcvd : n);

	flow_expected(f, f->rcvd, scratch, in_stream);
	for (size_t i = 0; i < in_stream; i++) {
		if (got[i] != scratch[i]) {
			f->mismatch = (int64_t)(f->rcvd + i);
			f->want = scratch[i];
			f->got = got[i];
			f->rcvd += i;
			return false;
		}
	}
	if (f->hash)
		f->hash_rcvd = fnv64(f->hash_rcvd, got, in_stream);
	f->rcvd += in_stream;
	f->extra += n - in_stream;
	return n == in_stream;
}

int flow_run(struct casectx *c, int fd, struct flow *f)
{
	uint8_t *wbuf = malloc(IO_CHUNK), *rbuf = malloc(IO_CHUNK), *scratch = malloc(IO_CHUNK);
	uint64_t t0 = now_ns(), next_write = 0, next_read = 0, read_start = 0;
	unsigned nwrites = 0, nreads = 0;
	bool shut = false;
	int rc = -1;

	if (!wbuf || !rbuf || !scratch) {
		f->err = ENOMEM;
		goto out;
	}
	if (f->hash) {
		f->hash_sent = FNV64_INIT;
		f->hash_rcvd = FNV64_INIT;
	}
	for (;;) {
		bool writing = f->sent < f->total;
		uint64_t now = now_ns(), wake = c->deadline_ns;
		struct pollfd p = { .fd = fd };
		size_t rlen = 0;

		if (!writing && f->shut_wr && !shut) {
			if (shutdown(fd, SHUT_WR) < 0) {
				f->err = errno;
				break;
			}
			shut = true;
		}
		if (f->rcvd >= f->total && (!f->expect_eof || f->eof) && !writing) {
			rc = 0;
			break;
		}
		if (f->eof)   /* EOF before everything came back */
			break;
		if (now >= c->deadline_ns) {
			f->timed_out = true;
			break;
		}
		if (writing) {
			if (now >= next_write)
				p.events |= POLLOUT;
			else if (next_write < wake)
				wake = next_write;
		}
		if (!writing || !f->read_after_send) {
			if (read_start == 0)
				read_start = now;
			rlen = pick_size(c, f->rmin, f->rmax);
			if (f->read_rate) {
				/* Token bucket with a 16 KiB burst: the reader takes read_rate bytes/s. */
				uint64_t budget = f->read_rate * (now - read_start) / 1000000000u + 16384;
				uint64_t taken = f->rcvd + f->extra;

				if (budget <= taken) {
					uint64_t t = read_start + (taken + 1024 - 16384) * 1000000000u /
						f->read_rate;
					rlen = 0;
					if (t < wake)
						wake = t;
				} else if (budget - taken < rlen) {
					rlen = (size_t)(budget - taken);
				}
			}
			if (rlen > 0 && now < next_read) {
				if (next_read < wake)
					wake = next_read;
				rlen = 0;
			}
			if (rlen > 0)
				p.events |= POLLIN;
		}
		if (p.events == 0) {
			sleep_until_ns(wake);
			continue;
		}
		int rv = net_wait(fd, p.events, wake);
		if (rv == -ETIMEDOUT)
			continue;
		if (rv < 0) {
			f->err = -rv;
			break;
		}
		if ((rv & (POLLIN | POLLERR | POLLHUP)) && (p.events & POLLIN)) {
			ssize_t n = recv(fd, rbuf, rlen, 0);

			if (n > 0) {
				if (!flow_check(f, rbuf, (size_t)n, scratch))
					break;
				if (f->rpause_every && ++nreads % f->rpause_every == 0)
					next_read = now_ns() + f->rpause_ns;
			} else if (n == 0) {
				f->eof = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				f->err = errno;
				break;
			}
		}
		if ((rv & (POLLOUT | POLLERR | POLLHUP)) && (p.events & POLLOUT)) {
			size_t len = pick_size(c, f->wmin, f->wmax);
			ssize_t n;

			if (len > f->total - f->sent)
				len = (size_t)(f->total - f->sent);
			flow_expected(f, f->sent, wbuf, len);
			n = send(fd, wbuf, len, MSG_NOSIGNAL);
			if (n > 0) {
				if (f->hash)
					f->hash_sent = fnv64(f->hash_sent, wbuf, (size_t)n);
				f->sent += (uint64_t)n;
				if (f->wpause_every && ++nwrites % f->wpause_every == 0)
					next_write = now_ns() + f->wpause_ns;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				f->err = errno;
				break;
			}
		}
	}
out:
	f->elapsed_ns = now_ns() - t0;
	free(wbuf);
	free(rbuf);
	free(scratch);
	return rc;
}

void flow_report(struct casectx *c, const struct flow *f, const char *expected)
{
	case_num(c, "bytes_sent", (double)f->sent);
	case_num(c, "bytes_received", (double)f->rcvd);
	if (f->hash) {
		case_note(c, "sent_fnv1a64", "%016llx", (unsigned long long)f->hash_sent);
		case_note(c, "received_fnv1a64", "%016llx", (unsigned long long)f->hash_rcvd);
	}
	case_num(c, "flow_ms", (double)f->elapsed_ns / 1e6);
	if (f->mismatch >= 0)
		case_fail(c, expected, "byte %lld came back as 0x%02x, expected 0x%02x",
			(long long)f->mismatch, f->got, f->want);
	else if (f->extra)
		case_fail(c, expected, "%llu bytes more than were sent",
			(unsigned long long)f->extra);
	else if (f->err)
		case_fail(c, expected, "%s after %llu of %llu bytes came back (%llu sent)",
			errno_name(f->err), (unsigned long long)f->rcvd,
			(unsigned long long)f->total, (unsigned long long)f->sent);
	else if (f->eof && f->rcvd < f->total)
		case_fail(c, expected, "EOF after %llu of %llu bytes came back (%llu sent)",
			(unsigned long long)f->rcvd, (unsigned long long)f->total,
			(unsigned long long)f->sent);
	else if (f->timed_out && f->rcvd >= f->total)
		case_fail(c, expected, "all %llu bytes came back but no EOF within the timeout",
			(unsigned long long)f->rcvd);
	else if (f->timed_out)
		case_fail(c, expected, "timed out with %llu of %llu bytes back (%llu sent)",
			(unsigned long long)f->rcvd, (unsigned long long)f->total,
			(unsigned long long)f->sent);
}
