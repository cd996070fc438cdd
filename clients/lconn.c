/* What every transport shares about a connection: the ring of messages in flight, what
 * happens when one is answered (latency, counters, the refill rule of the mode), failure and
 * clean close. Called by the transports and the loop; calls neither. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "loader.h"
#include "prng.h"
#include "series.h"

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

static bool in_window(const struct loader *w, uint64_t t)
{
	return t >= w->t_measure && t < w->t_end;
}

struct msg *lconn_at(const struct lconn *c, uint32_t i)
{
	uint32_t k = c->head + i;

	return &c->ring[k >= c->cap ? k - c->cap : k];
}

/* Only changes reach the engine: a readiness engine pays a system call for each. */
void lconn_set_want_out(struct loader *w, struct lconn *c, bool on)
{
	if (c->want_out == on || c->dead || w->blocking || !w->eng->want_out)
		return;
	if (w->eng->want_out(w, c, on) == 0)
		c->want_out = on;
}

static void drop(struct loader *w, struct lconn *c)
{
	w->pending -= c->count + c->owed;
	c->count = c->nsent = 0;
	c->owed = 0;
	w->eng->forget(w, c);
	close(c->fd);
	c->fd = -1;
	c->dead = true;
	w->live--;
}

void lconn_fail(struct loader *w, struct lconn *c, enum err_kind kind)
{
	if (c->dead)
		return;
	w->c.errors[kind]++;
	w->c.conns_failed++;
	if (c->send_off > c->recv_off)
		w->c.short_bytes += c->send_off - c->recv_off;
	/* What it owed from the window will never come. */
	for (uint32_t i = 0; i < c->count; i++)
		w->c.unanswered += in_window(w, lconn_at(c, i)->t_sched);
	w->c.unanswered += c->owed;
	drop(w, c);
}

void lconn_close(struct loader *w, struct lconn *c)
{
	if (!c->dead)
		drop(w, c);
}

static uint32_t draw_size(const struct load_config *cfg, struct lconn *c)
{
	uint64_t span = cfg->size_hi - cfg->size_lo + 1;

	if (span == 1)
		return (uint32_t)cfg->size_lo;
	return (uint32_t)(cfg->size_lo + prng_below(&c->rng, span));
}

/* The connection's slots all hold messages waiting for the server: a full ring, that cannot
 * grow (--pipeline unbounded grows up to w->ring_limit). */
static bool ring_full(const struct loader *w, const struct lconn *c)
{
	return c->count >= c->cap && (!w->unbounded || c->cap >= w->ring_limit);
}

/* Open loop: c->t_change is when ring_full() last changed; that one step of history splits
 * the time since a due time into free and full. An answer that frees a slot which an owed
 * message takes at once (the same `now`) changes nothing: the ring stays full. */
static void track(const struct loader *w, struct lconn *c, bool was_full, uint64_t now)
{
	if (ring_full(w, c) == was_full)
		return;
	if (c->t_change == now) {
		c->t_change = c->t_before;
	} else {
		c->t_before = c->t_change;
		c->t_change = now;
	}
}

void lconn_queue(struct loader *w, struct lconn *c, uint64_t t_sched, uint64_t now)
{
	struct msg *m = lconn_at(c, c->count);
	bool was_full = ring_full(w, c);

	m->start_off = c->queued_off;
	m->size = draw_size(w->cfg, c);
	m->t_sched = t_sched;
	m->t_sent = now;
	m->bad = 0;
	c->queued_off += m->size;
	c->count++;
	track(w, c, was_full, now);
	if (c->count > w->inflight_max)
		w->inflight_max = c->count;
	w->pending++;
	if (in_window(w, now))
		w->c.sent++;
}

void lconn_pop(struct loader *w, struct lconn *c, uint64_t now)
{
	bool was_full = ring_full(w, c);

	c->head = c->head + 1 == c->cap ? 0 : c->head + 1;
	c->count--;
	if (c->nsent)
		c->nsent--;
	w->pending--;
	track(w, c, was_full, now);
}

/* Messages due (closed loop: sent) inside the window count however late their answer: the
 * latency histogram takes them all. The throughput counts those answered inside the window;
 * the later ones are `drained`. */
void lconn_done(struct loader *w, struct lconn *c, uint64_t now)
{
	const struct msg *m = lconn_at(c, 0);

	w->done_total++;
	if (in_window(w, m->t_sched)) {
		uint64_t lat = now - m->t_sched;
		uint64_t b = (m->t_sched - w->t_measure) * LOAD_CI_BLOCKS / w->cfg->duration_ns;

		hist_record(w->lat, lat);
		hist_record(w->block[b < LOAD_CI_BLOCKS ? b : LOAD_CI_BLOCKS - 1], lat);
		if (w->lat_unc)
			hist_record(w->lat_unc, now - m->t_sent);
		if (now < w->t_end) {
			w->c.messages++;
			w->c.bytes += m->size;
			c->answered++;
			series_record(w->series, now - w->t_measure, lat);
		} else {
			w->c.drained++;
		}
	}
	lconn_pop(w, c, now);
}

/* --pipeline unbounded: a full ring doubles (in order, oldest first) up to w->ring_limit.
 * Returns false when it cannot grow: the message then waits for a slot. */
static bool grow(struct loader *w, struct lconn *c)
{
	uint32_t cap = c->cap * 2 < w->ring_limit ? c->cap * 2 : w->ring_limit;
	struct msg *ring;

	if (cap <= c->cap || !(ring = malloc(cap * sizeof(*ring))))
		return false;
	for (uint32_t i = 0; i < c->count; i++)
		ring[i] = *lconn_at(c, i);
	free(c->ring);
	c->ring = ring;
	c->cap = cap;
	c->head = 0;
	return true;
}

/* The open loop's lateness, split. Between a message's due time and its send, at each moment
 * either its connection had a slot free, and the message was late by the client's own doing
 * (the tick fired late, or an older message of the connection was still to send: send_lag),
 * or every slot held a message waiting for the server's answer (slot_wait: the server's, and
 * inside the corrected latency already). A message due while the ring is full waits only for
 * the server; a burst the client fires late is its own lateness up to the moment its first
 * message fills the ring, the server's after.
 *
 * free_time(): how long, between due time d and now, the connection had a slot free. Exact
 * when the ring changed at most once since d, that is unless the client took longer than a
 * round trip to fire the tick (its lateness is then large whichever way it is split). */
static uint64_t free_time(const struct loader *w, const struct lconn *c, uint64_t d,
			  uint64_t now)
{
	bool full = ring_full(w, c);
	uint64_t t = c->t_change < now ? c->t_change : now;

	if (now <= d)
		return 0;
	if (t <= d)
		return full ? 0 : now - d;
	return full ? t - d : now - t;
}

/* A message owed behind a full ring was late by the client's doing only when the ring filled
 * after its due time: owed messages up to c->gate[i].last take their lateness from
 * c->gate[i].t_full. Consecutive ones share a gate; with more gates pending than fit, the
 * last one is stretched (the waits of the messages it then covers come out shorter). */
static void owe_gate(struct lconn *c, uint64_t idx)
{
	unsigned n = c->ngates;

	if (n && c->gate[n - 1].t_full == c->t_change) {
		c->gate[n - 1].last = idx;
	} else if (n < LCONN_GATES) {
		c->gate[n].last = idx;
		c->gate[n].t_full = c->t_change;
		c->ngates++;
	} else {
		c->gate[n - 1].last = idx;
	}
}

static uint64_t owed_lateness(struct lconn *c, uint64_t idx, uint64_t d)
{
	while (c->ngates && c->gate[0].last < idx) {
		c->gate[0] = c->gate[1];
		c->ngates--;
	}
	return c->ngates && c->gate[0].t_full > d ? c->gate[0].t_full - d : 0;
}

/* Message idx of the connection (due at d) goes out now, `late` of its lateness the client's. */
static void queue_open(struct loader *w, struct lconn *c, uint64_t idx, uint64_t d,
		       uint64_t late, uint64_t now)
{
	if (in_window(w, d))
		hist_record(w->slot_wait, now - d > late ? now - d - late : 0);
	lconn_queue(w, c, d, now);
	c->next_idx = idx + 1;
}

/* Message i of the connection in slot s is tick i * nconns + s of the loader's schedule, so its
 * due time needs no storage. */
static uint64_t due_of(const struct loader *w, const struct lconn *c, uint64_t idx)
{
	return ratesched_due(&w->rs, idx * w->nconns + c->slot);
}

static bool has_room(struct loader *w, struct lconn *c)
{
	return c->count < c->cap || (w->unbounded && grow(w, c));
}

/* Open loop: queue what is owed, oldest first, as far as the ring allows. */
static void open_pump(struct loader *w, struct lconn *c, uint64_t now)
{
	while (c->owed && has_room(w, c)) {
		uint64_t idx = c->next_idx, d = due_of(w, c, idx);

		c->owed--;
		w->pending--;   /* lconn_queue counts it again */
		queue_open(w, c, idx, d, owed_lateness(c, idx, d), now);
	}
}

void lconn_owe(struct loader *w, struct lconn *c, uint64_t n, uint64_t now)
{
	open_pump(w, c, now);   /* owed messages only while the ring is full */
	for (; n; n--) {
		uint64_t idx = c->next_idx + c->owed, d = due_of(w, c, idx);
		uint64_t late = free_time(w, c, d, now);

		if (in_window(w, d))
			hist_record(w->lag, late);
		if (!c->owed && has_room(w, c)) {
			queue_open(w, c, idx, d, late, now);
			continue;
		}
		/* The ring is full: the rest of its lateness is the server's, from now on. */
		c->owed++;
		w->pending++;
		if (late)
			owe_gate(c, idx);
	}
}

void lconn_replenish(struct loader *w, struct lconn *c, uint64_t now)
{
	if (c->closing || c->dead)
		return;
	if (w->cfg->mode == MODE_OPEN) {
		open_pump(w, c, now);
		return;
	}
	/* Closed loop and stream: keep `pipeline` messages in flight until the window closes. */
	if (now >= w->t_end)
		return;
	while (c->count < w->pipeline)
		lconn_queue(w, c, now, now);
}
