/* One load thread: an event loop over its share of the connections (its engine says how it
 * learns that they can move bytes), in three phases. The window: messages go out (closed
 * loop: as answers come; open loop: on schedule, paced by pacing.h). The drain: nothing new
 * is started, what is owed for the window gets --timeout to come back. The close: our side is
 * shut down and the server's EOF awaited (bounded by --timeout), so that a clean run leaves no
 * reset on either side.
 *
 * Per message nothing is allocated: the in-flight ring of each connection and the buffers are
 * sized once here (--pipeline unbounded: a ring doubles when full, lconn.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "loader.h"
#include "series.h"

#define STREAM_WINDOW (256u << 10)   /* --stream: bytes in flight per connection, at least */
#define STREAM_MAX_MSGS 4096u        /* ...in at most this many messages (tiny sizes) */
#define SCAN_NS (100 * UINT64_C(1000000))   /* reply timeouts are checked this often */

#define UNBOUNDED_FIRST 8u           /* --pipeline unbounded: a ring's first size */

/* --pipeline unbounded: what one connection may have in flight. A stream message unanswered
 * for --timeout fails its connection (a datagram is lost) at the next scan, so no more than
 * (--timeout + one scan) of its share of the rate is ever in flight; rings grow in powers of
 * two up to that. */
uint32_t loader_ring_limit(const struct load_config *cfg)
{
	double most = cfg->rate / (double)cfg->connections *
		((double)(cfg->timeout_ns + SCAN_NS) / 1e9) + UNBOUNDED_FIRST;
	uint64_t lim = UNBOUNDED_FIRST;

	while ((double)lim < most && lim < (UINT64_C(1) << 31))
		lim *= 2;
	return (uint32_t)lim;
}

/* Messages in flight per connection: --pipeline, or in --stream enough of them to keep
 * STREAM_WINDOW bytes on the way. In the open loop --pipeline is the most that may be in
 * flight (default 1, as in wrk2): when the server stalls, due messages wait their turn and
 * their latency still counts from their due time. */
static uint64_t ring_need(const struct load_config *cfg)
{
	uint64_t k = cfg->pipeline ? cfg->pipeline : UNBOUNDED_FIRST;

	if (cfg->mode == MODE_STREAM) {
		uint64_t w = (STREAM_WINDOW + cfg->size_hi - 1) / cfg->size_hi;
		if (w > STREAM_MAX_MSGS)
			w = STREAM_MAX_MSGS;
		if (w > k)
			k = w;
	}
	return k;
}

static int alloc_hists(struct loader *w, const struct load_config *cfg)
{
	w->lat = hist_new();
	if (!w->lat)
		return -ENOMEM;
	if (cfg->churn && (!(w->connect = hist_new()) || !(w->first_reply = hist_new())))
		return -ENOMEM;
	if (cfg->mode == MODE_OPEN) {
		w->lat_unc = hist_new();
		w->lag = hist_new();
		w->slot_wait = hist_new();
		w->wake_late = hist_new();
		if (!w->lat_unc || !w->lag || !w->slot_wait || !w->wake_late)
			return -ENOMEM;
		pacing_init(&w->pacing);
	}
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
		if (!(w->block[b] = hist_new()))
			return -ENOMEM;
	w->series = series_new(cfg->duration_ns, cfg->interval_ns);
	return w->series ? 0 : -ENOMEM;
}

int loader_setup(struct loader *w, const struct load_config *cfg, int index, const int *fds,
		 const uint64_t *ids, uint32_t n)
{
	uint32_t cap = (uint32_t)ring_need(cfg);

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	w->tp = cfg->tp;
	w->eng = cfg->engine;
	w->index = index;
	w->stop_fd = w->schedstat_fd = -1;
	w->nconns = w->live = n;
	w->churn = cfg->churn;
	w->pipeline = cap;
	w->unbounded = cfg->mode == MODE_OPEN && !cfg->pipeline;
	w->ring_limit = w->unbounded ? loader_ring_limit(cfg) : cap;
	w->conns = calloc(n, sizeof(*w->conns));
	for (uint32_t i = 0; w->conns && i < n; i++)
		w->conns[i].fd = fds[i];   /* owned from here on: loader_free closes them */
	w->tp->buffers(cfg, &w->rbuf_len, &w->wbuf_len);
	w->rbuf = malloc(w->rbuf_len);
	w->wbuf = malloc(w->wbuf_len);
	if (!w->conns || alloc_hists(w, cfg) < 0 || !w->rbuf || !w->wbuf)
		return -ENOMEM;
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->stop_fd < 0)
		return -errno;
	for (uint32_t i = 0; i < n; i++) {
		struct lconn *c = &w->conns[i];

		c->slot = i;
		c->id = ids[i];
		c->rng = cfg->seed ^ (ids[i] * UINT64_C(0xd1b54a32d192ed03));
		c->cap = cap;
		c->ring = malloc(cap * sizeof(*c->ring));
		if (!c->ring)
			return -ENOMEM;
	}
	if (w->churn) {
		w->live = 0;   /* churn: sockets open, none until transactions start */
		return churn_setup(w);
	}
	return 0;
}

void loader_free(struct loader *w)
{
	/* The engine first: an io_uring request may still refer to a socket or a buffer. */
	if (w->eng)
		w->eng->free(w);
	for (uint32_t i = 0; w->conns && i < w->nconns; i++) {
		if (w->conns[i].fd >= 0)
			close(w->conns[i].fd);
		free(w->conns[i].ring);
	}
	free(w->conns);
	free(w->pool.free);
	free(w->rbuf);
	free(w->wbuf);
	hist_free(w->lat);
	hist_free(w->connect);
	hist_free(w->first_reply);
	hist_free(w->lat_unc);
	hist_free(w->lag);
	hist_free(w->slot_wait);
	hist_free(w->wake_late);
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
		hist_free(w->block[b]);
	series_free(w->series);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->schedstat_fd >= 0)
		close(w->schedstat_fd);
}

void loader_start_clock(struct loader *w, uint64_t t0)
{
	const struct load_config *cfg = w->cfg;

	w->t_start = t0;
	w->t_measure = t0 + cfg->warmup_ns;
	w->t_end = w->t_measure + cfg->duration_ns;
	if (cfg->mode == MODE_OPEN) {
		/* This loader's share of the total rate, in proportion to its connections. */
		double rate = cfg->rate * (double)w->nconns / (double)cfg->connections;
		double interval = 1e9 / cfg->rate;
		/* Stagger the loaders so that their ticks interleave instead of coinciding, and
		 * the processes of --phase K/N likewise. */
		double phase = interval * w->index / (double)cfg->threads +
			interval * (double)cfg->phase_k / (double)cfg->phase_n;

		ratesched_init(&w->rs, t0 + (uint64_t)phase, rate);
		ratesched_stop_at(&w->rs, w->t_end);
	}
}

static void fire_ticks(struct loader *w, uint64_t now)
{
	uint64_t first, n;

	if (w->churn) {
		churn_fire(w, now);
		return;
	}
	n = ratesched_take(&w->rs, now, &first);
	if (!n)
		return;
	if (n >= w->nconns) {
		/* A burst (we were late, or the rate is high): whole rounds at once. */
		for (uint32_t s = 0; s < w->nconns; s++) {
			struct lconn *c = &w->conns[s];
			uint64_t k0 = first + ((s + w->nconns - first % w->nconns) % w->nconns);
			uint64_t mine = k0 < first + n ? (first + n - 1 - k0) / w->nconns + 1 : 0;

			if (c->dead)
				continue;
			lconn_owe(w, c, mine, now);
			w->tp->flush(w, c);
		}
		return;
	}
	for (uint64_t k = first; k < first + n; k++) {
		struct lconn *c = &w->conns[k % w->nconns];

		if (c->dead)
			continue;
		lconn_owe(w, c, 1, now);
		w->tp->flush(w, c);
	}
}

/* The oldest message of each connection must be answered within --timeout: a stream that
 * stalls that long fails (timeout); a datagram that long unanswered is lost. */
static void scan_timeouts(struct loader *w, uint64_t now)
{
	const struct load_config *cfg = w->cfg;

	for (uint32_t i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];
		bool popped = false;

		while (!c->dead && c->count && now - lconn_at(c, 0)->t_sent > cfg->timeout_ns) {
			if (!w->tp->expire(w, c))
				break;
			popped = true;
		}
		if (popped) {
			lconn_replenish(w, c, now);
			conn_dispatch(w, c, false);
		}
	}
}

static int wait_events(struct loader *w, uint64_t now, uint64_t deadline)
{
	return w->eng->wait(w, now, deadline);
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static void publish(struct loader *w)
{
	atomic_store_explicit(&w->progress_done, w->done_total, memory_order_relaxed);
	atomic_store_explicit(&w->progress_errors, w->c.conns_failed + w->c.lost +
			      w->c.mismatches, memory_order_relaxed);
}

/* One connection, one message at a time, closed loop, messages that fit in the socket
 * buffers: a blocking send and a blocking receive are the fewest system calls per round trip
 * (one fewer than epoll's), so echo-load costs what the minimal client costs. Every wait
 * stays bounded: SO_RCVTIMEO and SO_SNDTIMEO of BLOCKING_SLICE_MS, after which the deadlines
 * and the stop flag are checked. Anything deeper uses the event loop: a blocking send of many
 * messages would stall on a full socket while their echoes wait unread. */
#define BLOCKING_SLICE_MS 100
#define BLOCKING_MAX_SIZE (16u << 10)

static bool set_blocking(int fd, bool on)
{
	struct timeval tv = { 0, on ? BLOCKING_SLICE_MS * 1000 : 0 };
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
		fcntl(fd, F_SETFL, on ? fl & ~O_NONBLOCK : fl | O_NONBLOCK) == 0;
}

static bool use_blocking(struct loader *w)
{
	const struct load_config *cfg = w->cfg;

	if (!w->eng->blocking_ok || cfg->mode != MODE_CLOSED || cfg->churn || w->nconns != 1 ||
	    cfg->pipeline != 1 || cfg->size_hi > BLOCKING_MAX_SIZE)
		return false;
	return set_blocking(w->conns[0].fd, true);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The due time of the next tick that can go out as soon as it is due. A tick for a connection
 * whose ring is full waits for an answer anyway (the event wakes us), and polling for it
 * would only take CPU from the server. Looks a bounded number of ticks ahead. */
static uint64_t next_sendable_due(const struct loader *w)
{
	uint64_t k = w->rs.next;

	if (w->churn)
		return churn_next_due(w);

	for (uint32_t i = 0; i < 64 && i < w->nconns; i++, k++) {
		const struct lconn *c = &w->conns[k % w->nconns];

		if (k >= w->rs.limit)
			return UINT64_MAX;
		if (!c->dead && c->count < c->cap)
			break;
	}
	return k >= w->rs.limit ? UINT64_MAX : ratesched_due(&w->rs, k);
}

/* How long this thread has waited, runnable, for a CPU (the second field of
 * /proc/thread-self/schedstat, ns); 0 when unknown. */
static uint64_t run_delay(const struct loader *w)
{
	char buf[96];
	unsigned long long run = 0, delay = 0;
	ssize_t n;

	if (w->schedstat_fd < 0 || (n = pread(w->schedstat_fd, buf, sizeof(buf) - 1, 0)) <= 0)
		return 0;
	buf[n] = '\0';
	return sscanf(buf, "%llu %llu", &run, &delay) == 2 ? delay : 0;
}

/* A timed wait (deadline) returned with nothing to do: how late, for the report, and for the
 * margin the part that polling cures. Time spent runnable but not running (the run delay
 * accrued meanwhile, `delay`) is a busy machine: a polling thread waits for a CPU just the
 * same, so it is left out of the margin. */
static void woke(struct loader *w, uint64_t deadline, uint64_t delay0)
{
	uint64_t t = now_ns(), late = t > deadline ? t - deadline : 0, delay1 = run_delay(w);
	uint64_t queued = delay0 && delay1 > delay0 ? delay1 - delay0 : 0;

	pacing_woke(&w->pacing, late > queued ? late - queued : 0);
	if (t >= w->t_measure && t < w->t_end)
		hist_record(w->wake_late, late);
}

/* Every PACING_WINDOW_NS: how much of it the thread waited, runnable, for a CPU. */
static void sample_cpu_wait(struct loader *w, uint64_t now)
{
	uint64_t delay = run_delay(w);

	if (w->cpu_t && delay >= w->cpu_delay) {
		pacing_cpu_wait(&w->pacing, delay - w->cpu_delay, now - w->cpu_t);
		if (w->cpu_t >= w->t_measure && w->cpu_t < w->t_end)
			w->cpu_wait_ns += delay - w->cpu_delay;
	}
	w->cpu_t = now;
	w->cpu_delay = delay;
}

/* Open loop, nothing to do before the next due time of a connection with room: sleep until
 * the margin before it (or `deadline`), or poll when that is near. */
static void pace(struct loader *w, uint64_t now, uint64_t deadline)
{
	uint64_t due = next_sendable_due(w), early = pacing_margin(&w->pacing), delay0, t;

	if (now - w->cpu_t >= PACING_WINDOW_NS)
		sample_cpu_wait(w, now);
	if (due <= now + early) {
		/* Poll without sleeping; the time found idle is spin, not load. */
		if (now >= w->t_measure && early > w->wake_early_max)
			w->wake_early_max = early;
		t = now_ns();
		if (wait_events(w, t, t) == 0)
			w->spin_ns += now_ns() - t;
		return;
	}
	deadline = min_u64(deadline, due - early);
	delay0 = run_delay(w);
	if (wait_events(w, now, deadline) == 0)
		woke(w, deadline, delay0);
}

/* Churn: when the next wait must end. Free slots with a transaction to start (closed loop:
 * in the window; open loop: one that waits) end it at once, or when the wait for a local port
 * is over. */
static uint64_t churn_deadline(const struct loader *w, uint64_t now, uint64_t deadline)
{
	const struct churn_pool *p = &w->pool;

	if (!w->churn)
		return deadline;
	if (w->cfg->mode == MODE_OPEN)
		return p->nfree && p->owed ? now : deadline;
	if (!p->nfree || now >= w->t_end)
		return deadline;
	return min_u64(deadline, p->retry_at > now ? p->retry_at : now);
}

/* The window (warmup included): until t_end, or until stopped or every connection is gone
 * (churn: slots outlive their transactions' sockets). */
static void run_window(struct loader *w)
{
	const struct load_config *cfg = w->cfg;
	uint64_t next_scan = now_ns() + SCAN_NS;

	while (!w->error && !load_stop_requested && (w->live || w->churn)) {
		uint64_t now = now_ns(), deadline;

		publish(w);
		/* Before the end check: a tick due just before t_end still goes, however late
		 * we woke up (the schedule itself never yields ticks at or after t_end). */
		if (cfg->mode == MODE_OPEN)
			fire_ticks(w, now);
		else if (w->churn)
			churn_refill(w, now);
		if (now >= w->t_end)
			break;
		if (now >= next_scan) {
			scan_timeouts(w, now);
			next_scan = now + SCAN_NS;
		}
		if (w->blocking) {
			conn_dispatch(w, &w->conns[0], true);
			continue;
		}
		deadline = churn_deadline(w, now, min_u64(w->t_end, next_scan));
		if (cfg->mode == MODE_OPEN)
			pace(w, now, deadline);
		else
			wait_events(w, now, deadline);
	}
}

/* After the window: nothing new, what is owed for the window gets --timeout to come back. */
static void drain(struct loader *w)
{
	uint64_t now = now_ns(), stop_at = (now > w->t_end ? now : w->t_end) + w->cfg->timeout_ns;
	uint64_t next_scan = now + SCAN_NS;

	while (!w->error && !load_stop_requested && (w->live || w->churn) && w->pending) {
		now = now_ns();
		publish(w);
		if (now >= stop_at)
			break;
		if (w->churn)
			churn_refill(w, now);   /* open loop: what was due in the window still starts */
		if (now >= next_scan) {
			scan_timeouts(w, now);
			next_scan = now + SCAN_NS;
		}
		wait_events(w, now, churn_deadline(w, now, min_u64(stop_at, next_scan)));
	}
	/* What was due in the window and never answered. */
	if (w->churn) {
		churn_give_up(w);
		return;
	}
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];

		if (c->dead)
			continue;
		for (uint32_t j = 0; j < c->count; j++) {
			uint64_t t = lconn_at(c, j)->t_sched;
			w->c.unanswered += t >= w->t_measure && t < w->t_end;
		}
		w->c.unanswered += c->owed;
		w->pending -= c->count + c->owed;
		c->count = c->nsent = 0;
		c->owed = 0;
	}
}

/* Our side ends first, then the server's EOF is awaited (bounded): a clean close. When
 * stopped by a signal, no waiting. */
static void close_all(struct loader *w)
{
	uint64_t stop_at = now_ns() + w->cfg->timeout_ns;

	for (uint32_t i = 0; i < w->nconns; i++)
		if (!w->conns[i].dead)
			w->tp->shutdown(w, &w->conns[i]);
	while (!w->error && !load_stop_requested && w->live) {
		uint64_t now = now_ns();

		if (now >= stop_at)
			break;
		wait_events(w, now, stop_at);
	}
	for (uint32_t i = 0; i < w->nconns; i++)
		lconn_close(w, &w->conns[i]);
}

void *loader_main(void *arg)
{
	struct loader *w = arg;
	uint64_t now = now_ns(), cpu0 = thread_cpu_ns(), wall;

	/* The default 50 us timer slack would make every scheduled send late by up to that. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	if (w->cfg->mode == MODE_OPEN)
		w->schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	/* The engine is set up here, in the thread that uses it: an io_uring ring with
	 * SINGLE_ISSUER|DEFER_TASKRUN belongs to the task that created it. */
	int err = w->eng->setup(w);

	if (err < 0) {
		w->error = err;
		w->t_stopped = now_ns();
		close_all(w);
		return NULL;
	}
	w->blocking = use_blocking(w);
	if (w->cfg->mode != MODE_OPEN && !w->churn) {
		for (uint32_t i = 0; i < w->nconns; i++) {
			lconn_replenish(w, &w->conns[i], now);
			conn_dispatch(w, &w->conns[i], false);
		}
	}
	run_window(w);
	now = now_ns();
	w->t_stopped = now;
	wall = now - w->t_start;
	if (wall > 0) {
		uint64_t cpu = thread_cpu_ns() - cpu0;
		w->busy = (double)(cpu > w->spin_ns ? cpu - w->spin_ns : 0) / (double)wall;
	}
	if (!w->live && !w->churn && now < w->t_end)
		w->stopped_early = true;
	if (w->blocking) {
		w->blocking = false;
		if (!w->conns[0].dead && !set_blocking(w->conns[0].fd, false))
			lconn_fail(w, &w->conns[0], ERR_OTHER);
	}
	drain(w);
	publish(w);
	close_all(w);
	return NULL;
}
