/* The open loop's lateness split (lconn.c): time a message spent due while its connection's
 * slots all waited for the server is the server's (slot_wait); time it spent due with a slot
 * free is the client's (send_lag), including a late burst up to the moment its first message
 * fills the ring. Time is simulated: every call gets the `now` the scenario says. */
#include <stdlib.h>

#include "check.h"
#include "hist.h"
#include "loader.h"
#include "series.h"

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)
#define S UINT64_C(1000000000)
#define T0 S                      /* the window starts at 1 s: a slot free "since 0" is free */
#define RTT (30 * US)

static void never(struct loader *w, struct lconn *c) {}

static const struct engine fake_engine = { .name = "fake", .forget = never };

static struct load_config cfg;

/* One loader with one connection of `cap` slots, open loop at 1000 msgs/s from T0: message i
 * is due at T0 + i ms. */
static void setup(struct loader *w, struct lconn *c, uint32_t cap, bool unbounded)
{
	cfg = (struct load_config){ .mode = MODE_OPEN, .connections = 1, .threads = 1,
		.pipeline = unbounded ? 0 : cap, .rate = 1000, .size_lo = 64, .size_hi = 64,
		.duration_ns = S, .interval_ns = S, .timeout_ns = S, .seed = 1 };
	*w = (struct loader){ .cfg = &cfg, .eng = &fake_engine, .nconns = 1, .live = 1,
		.pipeline = cap, .unbounded = unbounded, .ring_limit = unbounded ? 64 : cap,
		.t_start = T0, .t_measure = T0, .t_end = T0 + S };
	w->lat = hist_new();
	w->lat_unc = hist_new();
	w->lag = hist_new();
	w->slot_wait = hist_new();
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
		w->block[b] = hist_new();
	w->series = series_new(S, S);
	CHECK(w->lat && w->lat_unc && w->lag && w->slot_wait && w->block[9] && w->series);
	CHECK_EQ(ratesched_init(&w->rs, T0, cfg.rate), 0);
	*c = (struct lconn){ .fd = -1, .cap = cap, .ring = calloc(cap, sizeof(struct msg)) };
	CHECK(c->ring);
	w->conns = c;
}

static void teardown(struct loader *w, struct lconn *c)
{
	hist_free(w->lat);
	hist_free(w->lat_unc);
	hist_free(w->lag);
	hist_free(w->slot_wait);
	for (unsigned b = 0; b < LOAD_CI_BLOCKS; b++)
		hist_free(w->block[b]);
	series_free(w->series);
	free(c->ring);
}

/* The oldest message is answered at `now`, and what is owed goes out at once. */
static void answer(struct loader *w, struct lconn *c, uint64_t now)
{
	lconn_done(w, c, now);
	lconn_replenish(w, c, now);
}

static uint64_t zeros(const struct hist *h)
{
	uint64_t n = 0;

	return hist_next_bucket(h, 0, &n) == 0 ? n : 0;
}

/* -p 1, the client on time, the server stalls 5 ms on message 0: messages 1-4 come due with
 * the slot taken. Each waits for the server until the answer frees the slot; none is late on
 * the client's side. */
static void test_server_stall_is_slot_wait(void)
{
	struct loader w;
	struct lconn c;
	uint64_t t;

	setup(&w, &c, 1, false);
	lconn_owe(&w, &c, 1, T0);                       /* message 0, on time */
	for (uint64_t i = 1; i <= 4; i++)
		lconn_owe(&w, &c, 1, T0 + i * MS);      /* due on time, the slot is taken */
	CHECK_EQ(c.count, 1);
	CHECK_EQ(c.owed, 4);
	t = T0 + 5 * MS;                                /* the stall ends */
	for (int i = 0; i < 5; i++, t += RTT)
		answer(&w, &c, t);
	CHECK_EQ(hist_count(w.lag), 5);
	CHECK_EQ(hist_max(w.lag), 0);                   /* the client was never late */
	CHECK_EQ(hist_count(w.slot_wait), 5);
	CHECK_EQ(zeros(w.slot_wait), 1);                /* message 0 found its slot free */
	CHECK_EQ(hist_max(w.slot_wait), 4 * MS);        /* message 1: due at 1 ms, sent at 5 */
	/* Message 4, due at 4 ms, went out after three more round trips: still the server's. */
	CHECK_EQ(hist_min(w.slot_wait), 0);
	CHECK(hist_percentile(w.slot_wait, 50) >= 2 * MS);
	teardown(&w, &c);
}

/* -p 1, the server fast, the client wakes 5 ms late and fires ticks 0-4 at once. Until then
 * the slot was free: 5, 4, 3, 2, 1 ms are the client's. Message 0 then fills the ring, and
 * messages 1-4 wait for the round trips before them: those few microseconds are the
 * server's. */
static void test_late_burst_is_client_lag(void)
{
	struct loader w;
	struct lconn c;
	uint64_t t = T0 + 5 * MS;

	setup(&w, &c, 1, false);
	lconn_owe(&w, &c, 5, t);
	CHECK_EQ(c.count, 1);
	CHECK_EQ(c.owed, 4);
	CHECK_EQ(hist_count(w.lag), 5);                 /* booked when the ticks fire */
	CHECK_EQ(hist_max(w.lag), 5 * MS);              /* message 0: due at 0, fired at 5 ms */
	CHECK_EQ(hist_min(w.lag), 1 * MS);              /* message 4: due at 4 */
	for (int i = 0; i < 5; i++) {
		t += RTT;
		answer(&w, &c, t);
	}
	CHECK_EQ(hist_count(w.slot_wait), 5);
	CHECK_EQ(zeros(w.slot_wait), 1);
	CHECK_EQ(hist_max(w.slot_wait), 4 * RTT);       /* message 4 waited for four round trips */
	teardown(&w, &c);
}

/* Both: the client sends message 0 2 ms late; the server takes 10 ms to answer it. Message 1,
 * due at 1 ms, had its slot free until 2 ms (the client's 1 ms), then waited for message 0's
 * answer until 12 ms (the server's 10 ms). */
static void test_both_are_split(void)
{
	struct loader w;
	struct lconn c;

	setup(&w, &c, 1, false);
	lconn_owe(&w, &c, 2, T0 + 2 * MS);
	answer(&w, &c, T0 + 12 * MS);
	CHECK_EQ(hist_count(w.lag), 2);
	CHECK_EQ(hist_max(w.lag), 2 * MS);
	CHECK_EQ(hist_min(w.lag), 1 * MS);
	CHECK_EQ(hist_max(w.slot_wait), 10 * MS);
	CHECK_EQ(zeros(w.slot_wait), 1);
	teardown(&w, &c);
}

/* A slow server keeps the connection backlogged. The client, late once (message 1 fired
 * 800 us late with its slot free), is late once: the messages behind it, each due while the
 * ring was full, wait for the server only (a lateness carried along the backlog would be
 * charged to the client again and again). */
static void test_one_late_fire_is_not_inherited(void)
{
	struct loader w;
	struct lconn c;

	setup(&w, &c, 1, false);
	lconn_owe(&w, &c, 1, T0);
	answer(&w, &c, T0 + 100 * US);
	lconn_owe(&w, &c, 1, T0 + 1800 * US);           /* message 1, due at 1 ms */
	for (uint64_t i = 2; i <= 6; i++)
		lconn_owe(&w, &c, 1, T0 + i * MS);       /* on time, behind a busy server */
	for (uint64_t i = 1; i <= 6; i++)
		answer(&w, &c, T0 + (7 + 3 * i) * MS);
	CHECK_EQ(hist_count(w.lag), 7);
	CHECK_EQ(hist_max(w.lag), 800 * US);
	CHECK_EQ(hist_percentile(w.lag, 85), 0);        /* only message 1 was the client's */
	CHECK_EQ(zeros(w.slot_wait), 2);                /* messages 0 and 1 */
	CHECK_EQ(hist_max(w.slot_wait), 22 * MS - 6 * MS);  /* message 6, sent at 22 ms */
	teardown(&w, &c);
}

/* The loop does not wake for the ticks of a connection whose ring is full: it waits for the
 * answer. Message 2 (due at 2 ms) is taken only after message 0's answer at 5 ms freed the
 * slot that owed message 1 took at once: the ring never had a slot free for it, so none of
 * its lateness is the client's. */
static void test_ticks_taken_after_the_answer(void)
{
	struct loader w;
	struct lconn c;

	setup(&w, &c, 1, false);
	lconn_owe(&w, &c, 1, T0);
	lconn_owe(&w, &c, 1, T0 + 1 * MS);
	answer(&w, &c, T0 + 5 * MS);                    /* message 1 goes at once */
	lconn_owe(&w, &c, 1, T0 + 5 * MS + 100 * US);   /* message 2, due at 2 ms */
	CHECK_EQ(c.owed, 1);
	CHECK_EQ(hist_max(w.lag), 0);
	answer(&w, &c, T0 + 6 * MS);
	CHECK_EQ(hist_max(w.slot_wait), 4 * MS);
	teardown(&w, &c);
}

/* -p 2: message i takes the slot message i - 2 hands back. The server holds messages 0 and 1
 * until 10 ms; messages 2 and 3 (due at 2 and 3 ms) wait 8 and 7 ms. */
static void test_deeper_pipeline(void)
{
	struct loader w;
	struct lconn c;

	setup(&w, &c, 2, false);
	for (uint64_t i = 0; i < 4; i++)
		lconn_owe(&w, &c, 1, T0 + i * MS);
	CHECK_EQ(c.count, 2);
	answer(&w, &c, T0 + 10 * MS);
	answer(&w, &c, T0 + 10 * MS);
	CHECK_EQ(hist_count(w.slot_wait), 4);
	CHECK_EQ(zeros(w.slot_wait), 2);
	CHECK_EQ(hist_max(w.slot_wait), 8 * MS);
	CHECK_EQ(hist_max(w.lag), 0);
	teardown(&w, &c);
}

/* --pipeline unbounded: the ring grows instead of making anyone wait, up to its limit, and
 * keeps the messages in order. */
static void test_unbounded_never_waits(void)
{
	struct loader w;
	struct lconn c;

	setup(&w, &c, 2, true);
	for (uint64_t i = 0; i < 40; i++)
		lconn_owe(&w, &c, 1, T0 + i * MS);
	CHECK_EQ(c.count, 40);
	CHECK_EQ(c.owed, 0);
	CHECK_EQ(c.cap, 64);
	CHECK_EQ(w.inflight_max, 40);
	CHECK_EQ(zeros(w.slot_wait), 40);
	for (uint32_t i = 0; i < 40; i++)
		CHECK_EQ(lconn_at(&c, i)->t_sched, T0 + i * MS);
	for (uint64_t i = 40; i < 70; i++)
		lconn_owe(&w, &c, 1, T0 + i * MS);
	CHECK_EQ(c.count, 64);                          /* the limit: the rest wait */
	CHECK_EQ(c.owed, 6);
	for (int i = 0; i < 64; i++)
		answer(&w, &c, T0 + 80 * MS);
	CHECK_EQ(c.owed, 0);
	CHECK_EQ(hist_count(w.lat), 64);
	CHECK_EQ(hist_count(w.lag), 70);
	CHECK_EQ(hist_max(w.lag), 0);
	CHECK_EQ(zeros(w.slot_wait), 64);               /* those 6 waited for the server */
	CHECK_EQ(hist_max(w.slot_wait), 80 * MS - 64 * MS);
	teardown(&w, &c);
}

int main(void)
{
	test_server_stall_is_slot_wait();
	test_late_burst_is_client_lag();
	test_both_are_split();
	test_one_late_fire_is_not_inherited();
	test_ticks_taken_after_the_answer();
	test_deeper_pipeline();
	test_unbounded_never_waits();
	printf("lconn: ok\n");
	return 0;
}
