/* One event loop per thread (level-triggered epoll). Per message nothing is allocated: the
 * in-flight ring of each connection, the read buffer and the write buffer are sized once here.
 * Payload bytes are never stored: they are a function of (seed, connection, offset), so a
 * partial write is finished by generating its rest again, and what comes back is checked as it
 * arrives, in whatever pieces it arrives.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "clock.h"
#include "load.h"
#include "payload.h"

#define MAX_EVENTS 256
#define TCP_RBUF (256u << 10)
#define TCP_WBUF (64u << 10)
#define STREAM_WINDOW (256u << 10)   /* --stream: bytes in flight per connection, at least */
#define STREAM_MAX_MSGS 4096u        /* ...in at most this many messages (tiny sizes) */
#define UDP_BATCH 32
#define SCAN_NS (100 * UINT64_C(1000000))   /* reply timeouts are checked this often */

const char *const err_kind_name[ERR_KINDS] = { "refused", "reset", "timeout", "eof", "other" };

enum err_kind err_kind_of(int err)
{
	switch (err) {
	case ECONNREFUSED: case ENOENT: return ERR_REFUSED;   /* ENOENT: no unix socket file */
	case ECONNRESET: case EPIPE: case ECONNABORTED: return ERR_RESET;
	case ETIMEDOUT: return ERR_TIMEOUT;
	default: return ERR_OTHER;
	}
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 1;

	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint32_t draw_size(const struct load_config *cfg, struct conn *c)
{
	uint64_t span = cfg->size_hi - cfg->size_lo + 1;

	if (span == 1)
		return (uint32_t)cfg->size_lo;
	return (uint32_t)(cfg->size_lo + splitmix(&c->rng) % span);
}

/* Messages in flight per connection: --pipeline, or in --stream enough of them to keep
 * STREAM_WINDOW bytes on the way. In the open loop --pipeline is the most that may be in
 * flight (default 1, as in wrk2): when the server stalls, due messages wait their turn and
 * their latency still counts from their due time. */
static uint64_t ring_need(const struct load_config *cfg, uint64_t *pipeline_out)
{
	uint64_t k = cfg->pipeline;

	if (cfg->mode == MODE_STREAM) {
		uint64_t w = (STREAM_WINDOW + cfg->size_hi - 1) / cfg->size_hi;
		if (w > STREAM_MAX_MSGS)
			w = STREAM_MAX_MSGS;
		if (w > k)
			k = w;
	}
	*pipeline_out = k;
	return k;
}

int worker_setup(struct worker *w, const struct load_config *cfg, int index, const int *fds,
		 const uint64_t *ids, uint32_t n)
{
	uint64_t pipeline;
	uint32_t cap = pow2_at_least(ring_need(cfg, &pipeline));

	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	w->index = index;
	w->ep = w->stop_fd = -1;
	w->nconns = w->live = n;
	w->pipeline = (uint32_t)pipeline;
	w->conns = calloc(n, sizeof(*w->conns));
	w->lat = hist_new();
	if (cfg->mode == MODE_OPEN)
		w->lat_unc = hist_new();
	if (cfg->udp) {
		w->udp_slot = cfg->size_hi + 1;   /* one spare byte shows an over-long echo */
		w->rbuf_len = w->wbuf_len = UDP_BATCH * w->udp_slot;
	} else {
		w->rbuf_len = TCP_RBUF;
		w->wbuf_len = TCP_WBUF;
	}
	w->rbuf = malloc(w->rbuf_len);
	w->wbuf = malloc(w->wbuf_len);
	if (!w->conns || !w->lat || (cfg->mode == MODE_OPEN && !w->lat_unc) || !w->rbuf ||
	    !w->wbuf)
		return -ENOMEM;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->ep < 0 || w->stop_fd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->stop_fd, &ev) < 0)
		return -errno;
	for (uint32_t i = 0; i < n; i++) {
		struct conn *c = &w->conns[i];

		c->fd = fds[i];
		c->slot = i;
		c->id = ids[i];
		c->rng = cfg->seed ^ (ids[i] * UINT64_C(0xd1b54a32d192ed03));
		c->mask = cap - 1;
		c->ring = malloc(cap * sizeof(*c->ring));
		if (!c->ring)
			return -ENOMEM;
		ev.events = EPOLLIN | (cfg->udp ? 0 : EPOLLRDHUP);
		ev.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			return -errno;
	}
	return 0;
}

void worker_free(struct worker *w)
{
	for (uint32_t i = 0; w->conns && i < w->nconns; i++) {
		if (w->conns[i].fd >= 0)
			close(w->conns[i].fd);
		free(w->conns[i].ring);
	}
	free(w->conns);
	free(w->rbuf);
	free(w->wbuf);
	hist_free(w->lat);
	hist_free(w->lat_unc);
	if (w->ep >= 0)
		close(w->ep);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
}

void worker_start_clock(struct worker *w, uint64_t t0)
{
	const struct load_config *cfg = w->cfg;

	w->t_measure = t0 + cfg->warmup_ns;
	w->t_end = w->t_measure + cfg->duration_ns;
	if (cfg->mode == MODE_OPEN) {
		/* This worker's share of the total rate, in proportion to its connections. */
		double rate = cfg->rate * (double)w->nconns / (double)cfg->connections;
		/* Stagger the workers so that their ticks interleave instead of coinciding. */
		uint64_t phase = (uint64_t)(1e9 / cfg->rate * w->index);

		ratesched_init(&w->rs, t0 + phase, rate);
		ratesched_stop_at(&w->rs, w->t_end);
	}
}

void conn_set_want_out(struct worker *w, struct conn *c, bool on)
{
	struct epoll_event ev;

	if (c->want_out == on || c->dead || w->blocking)
		return;
	ev.events = EPOLLIN | (w->cfg->udp ? 0 : EPOLLRDHUP) | (on ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = on;
}

void conn_fail(struct worker *w, struct conn *c, enum err_kind kind)
{
	if (c->dead)
		return;
	c->dead = true;
	w->c.errors[kind]++;
	w->c.conns_failed++;
	if (!w->cfg->udp && c->send_off > c->recv_off)
		w->c.short_bytes += c->send_off - c->recv_off;
	w->pending -= c->count + c->owed;
	epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	w->live--;
}

void conn_queue(struct worker *w, struct conn *c, uint64_t t_sched, uint64_t now)
{
	struct msg *m = &c->ring[(c->head + c->count) & c->mask];

	m->start_off = c->queued_off;
	m->size = draw_size(w->cfg, c);
	m->t_sched = t_sched;
	m->t_sent = now;
	m->bad = 0;
	c->queued_off += m->size;
	c->count++;
	w->pending++;
}

/* The message at the head of the ring has been answered (correctly or not: m->bad). */
void conn_done(struct worker *w, struct conn *c, uint64_t now)
{
	const struct msg *m = &c->ring[c->head];
	bool open = w->cfg->mode == MODE_OPEN;

	w->done_total++;
	/* Closed loop: messages sent and answered inside the window. Open loop: messages due
	 * inside the window, however late their answer (that lateness is what we measure). */
	if (m->t_sched >= w->t_measure && m->t_sched < w->t_end && (open || now < w->t_end)) {
		hist_record(w->lat, now - m->t_sched);
		if (open)
			hist_record(w->lat_unc, now - m->t_sent);
		w->c.messages++;
		w->c.bytes += m->size;
	}
	c->head = (c->head + 1) & c->mask;
	c->count--;
	if (c->nsent)
		c->nsent--;
	w->pending--;
}

static void tcp_flush(struct worker *w, struct conn *c)
{
	const struct load_config *cfg = w->cfg;

	while (c->send_off < c->queued_off) {
		uint64_t left = c->queued_off - c->send_off;
		size_t n = left < w->wbuf_len ? (size_t)left : w->wbuf_len;
		ssize_t r;

		payload_fill(cfg->seed, c->id, c->send_off, w->wbuf, n);
		r = send(c->fd, w->wbuf, n, MSG_NOSIGNAL | (w->blocking ? 0 : MSG_DONTWAIT));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_fail(w, c, err_kind_of(errno));
			return;
		}
		c->send_off += (uint64_t)r;
		if ((size_t)r < n)
			break;
	}
	conn_set_want_out(w, c, c->send_off < c->queued_off);
}

static void flush(struct worker *w, struct conn *c)
{
	if (w->cfg->udp)
		udp_flush(w, c);
	else
		tcp_flush(w, c);
}

/* Closed loop and stream: keep `pipeline` messages in flight until the window closes. */
static void refill(struct worker *w, struct conn *c, uint64_t now, uint32_t want)
{
	if (now >= w->t_end)
		return;
	while (c->count < want)
		conn_queue(w, c, now, now);
}

/* Open loop: queue what is due, as far as the ring allows. Message i of the connection in
 * slot s is tick i * nconns + s of the worker's schedule, so its due time needs no storage. */
static void open_pump(struct worker *w, struct conn *c, uint64_t now)
{
	while (c->owed && c->count <= c->mask) {
		uint64_t k = c->next_idx * w->nconns + c->slot;

		c->owed--;
		w->pending--;   /* conn_queue counts it again */
		conn_queue(w, c, ratesched_due(&w->rs, k), now);
		c->next_idx++;
	}
}

void conn_replenish(struct worker *w, struct conn *c, uint64_t now)
{
	if (w->cfg->mode == MODE_OPEN)
		open_pump(w, c, now);
	else
		refill(w, c, now, w->pipeline);
}

static void tcp_consume(struct worker *w, struct conn *c, const uint8_t *p, size_t n,
			uint64_t now)
{
	const struct load_config *cfg = w->cfg;

	while (n) {
		struct msg *m;
		uint64_t end, take;

		if (!c->count || c->recv_off >= c->send_off) {
			w->c.extra_bytes += n;
			return;
		}
		m = &c->ring[c->head];
		end = m->start_off + m->size;
		take = end - c->recv_off;
		if (take > n)
			take = n;
		if (take > c->send_off - c->recv_off)
			take = c->send_off - c->recv_off;
		if (cfg->verify && !m->bad &&
		    payload_check(cfg->seed, c->id, c->recv_off, p, (size_t)take) != take) {
			m->bad = 1;
			w->c.mismatches++;
		}
		c->recv_off += take;
		p += take;
		n -= (size_t)take;
		if (c->recv_off == end)
			conn_done(w, c, now);
	}
}

static void tcp_readable(struct worker *w, struct conn *c)
{
	/* Bounded rounds: one connection with a deep queue must not starve the others. */
	for (int round = 0; round < 4; round++) {
		/* Blocking mode waits (bounded by SO_RCVTIMEO) for the first read only. */
		ssize_t r = recv(c->fd, w->rbuf, w->rbuf_len,
				 w->blocking && !round ? 0 : MSG_DONTWAIT);
		uint64_t now;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_fail(w, c, err_kind_of(errno));
			return;
		}
		if (r == 0) {
			conn_fail(w, c, ERR_EOF);
			return;
		}
		now = now_ns();
		tcp_consume(w, c, w->rbuf, (size_t)r, now);
		conn_replenish(w, c, now);
		if ((size_t)r < w->rbuf_len)
			break;
	}
}

static void fire_ticks(struct worker *w, uint64_t now)
{
	uint64_t first, n = ratesched_take(&w->rs, now, &first);

	if (!n)
		return;
	if (n >= w->nconns) {
		/* A burst (we were late, or the rate is high): whole rounds at once. */
		for (uint32_t s = 0; s < w->nconns; s++) {
			struct conn *c = &w->conns[s];
			uint64_t k0 = first + ((s + w->nconns - first % w->nconns) % w->nconns);
			uint64_t mine = k0 < first + n ? (first + n - 1 - k0) / w->nconns + 1 : 0;

			if (c->dead)
				continue;
			c->owed += mine;
			w->pending += mine;
			open_pump(w, c, now);
			flush(w, c);
		}
		return;
	}
	for (uint64_t k = first; k < first + n; k++) {
		struct conn *c = &w->conns[k % w->nconns];

		if (c->dead)
			continue;
		c->owed++;
		w->pending++;
		open_pump(w, c, now);
		flush(w, c);
	}
}

/* The oldest message of each connection must be answered within --timeout: a TCP connection
 * that stalls that long fails (timeout); a datagram that long unanswered is lost. */
static void scan_timeouts(struct worker *w, uint64_t now)
{
	const struct load_config *cfg = w->cfg;

	for (uint32_t i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];
		bool popped = false;

		while (!c->dead && c->count && now - c->ring[c->head].t_sent > cfg->timeout_ns) {
			if (!cfg->udp) {
				conn_fail(w, c, ERR_TIMEOUT);
				break;
			}
			w->c.lost++;
			c->head = (c->head + 1) & c->mask;
			c->count--;
			if (c->nsent)
				c->nsent--;
			w->pending--;
			popped = true;
		}
		if (popped) {
			conn_replenish(w, c, now);
			flush(w, c);
		}
	}
}

static void wait_events(struct worker *w, uint64_t now, uint64_t deadline)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t wait = deadline > now ? deadline - now : 0;
	struct timespec ts = { (time_t)(wait / 1000000000u), (long)(wait % 1000000000u) };
	int n = epoll_pwait2(w->ep, evs, MAX_EVENTS, &ts, NULL);

	if (n < 0 && errno == ENOSYS) {
		/* Kernels before 5.11: millisecond timeouts, rounded up so we never spin. */
		n = epoll_wait(w->ep, evs, MAX_EVENTS, (int)((wait + 999999) / 1000000));
	}
	if (n < 0) {
		if (errno != EINTR) {
			w->error = -errno;
			snprintf(w->error_text, sizeof(w->error_text), "epoll_wait: %s",
				 strerror(errno));
		}
		return;
	}
	for (int i = 0; i < n; i++) {
		struct conn *c = evs[i].data.ptr;

		if (!c) {
			load_stop_requested = true;
			continue;
		}
		if (c->dead)
			continue;   /* failed earlier in this batch */
		if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
			if (w->cfg->udp)
				udp_readable(w, c);
			else
				tcp_readable(w, c);
		}
		if (!c->dead && (w->cfg->udp ? c->nsent < c->count : c->send_off < c->queued_off))
			flush(w, c);
	}
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* A worker with one connection in the closed loop needs no event loop: a blocking send and a
 * blocking receive are the fewest system calls per round trip (one fewer than epoll's), so
 * echo-load costs what the minimal client costs. Every wait stays bounded: SO_RCVTIMEO and
 * SO_SNDTIMEO of BLOCKING_SLICE_MS, after which the deadlines and the stop flag are checked. */
#define BLOCKING_SLICE_MS 100

static bool use_blocking(struct worker *w)
{
	struct timeval tv = { 0, BLOCKING_SLICE_MS * 1000 };
	int fd = w->conns[0].fd, fl;

	if (w->cfg->mode != MODE_CLOSED || w->nconns != 1)
		return false;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return false;
	return true;
}

static void run_blocking(struct worker *w)
{
	struct conn *c = &w->conns[0];
	uint64_t now = now_ns(), next_scan = now + SCAN_NS;

	refill(w, c, now, w->pipeline);
	flush(w, c);
	while (!load_stop_requested && !c->dead) {
		now = now_ns();
		atomic_store_explicit(&w->progress_done, w->done_total, memory_order_relaxed);
		atomic_store_explicit(&w->progress_errors, w->c.conns_failed + w->c.lost +
				      w->c.mismatches, memory_order_relaxed);
		if (now >= w->t_end)
			break;
		if (now >= next_scan) {
			scan_timeouts(w, now);
			next_scan = now + SCAN_NS;
		}
		if (w->cfg->udp)
			udp_readable(w, c);
		else
			tcp_readable(w, c);
		if (!c->dead && (w->cfg->udp ? c->nsent < c->count : c->send_off < c->queued_off))
			flush(w, c);
	}
}

void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct load_config *cfg = w->cfg;
	uint64_t now = now_ns(), next_scan = now + SCAN_NS, stop_at = w->t_end;
	bool draining = false;

	/* The default 50 us timer slack would make every scheduled send late by up to that. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	w->blocking = use_blocking(w);
	if (w->blocking) {
		run_blocking(w);
		goto finish;
	}
	if (cfg->mode != MODE_OPEN) {
		for (uint32_t i = 0; i < w->nconns; i++) {
			refill(w, &w->conns[i], now, w->pipeline);
			flush(w, &w->conns[i]);
		}
	}
	while (!w->error && !load_stop_requested && w->live) {
		now = now_ns();
		atomic_store_explicit(&w->progress_done, w->done_total, memory_order_relaxed);
		atomic_store_explicit(&w->progress_errors, w->c.conns_failed + w->c.lost +
				      w->c.mismatches, memory_order_relaxed);
		/* Before the end check: a tick due just before t_end still goes, however late
		 * we woke up (the schedule itself never yields ticks at or after t_end). */
		if (cfg->mode == MODE_OPEN)
			fire_ticks(w, now);
		if (now >= w->t_end && !draining) {
			if (cfg->mode != MODE_OPEN)
				break;
			/* Open loop: what was due inside the window gets --timeout to come back. */
			draining = true;
			stop_at = w->t_end + cfg->timeout_ns;
		}
		if (draining && (!w->pending || now >= stop_at))
			break;
		if (now >= next_scan) {
			scan_timeouts(w, now);
			next_scan = now + SCAN_NS;
		}
		wait_events(w, now, min_u64(min_u64(stop_at, next_scan),
				cfg->mode == MODE_OPEN ? ratesched_next_due(&w->rs) : UINT64_MAX));
	}
finish:
	now = now_ns();
	w->t_stopped = now;
	if (!w->live && now < w->t_end)
		w->stopped_early = true;
	if (cfg->mode == MODE_OPEN) {
		/* What was due in the window and never answered. */
		for (uint32_t i = 0; i < w->nconns; i++) {
			struct conn *c = &w->conns[i];

			for (uint32_t j = 0; !c->dead && j < c->count; j++) {
				const struct msg *m = &c->ring[(c->head + j) & c->mask];
				if (m->t_sched >= w->t_measure && m->t_sched < w->t_end)
					w->c.unanswered++;
			}
			if (!c->dead)
				w->c.unanswered += c->owed;
		}
	}
	atomic_store_explicit(&w->progress_done, w->done_total, memory_order_relaxed);
	return NULL;
}
