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

/* Open loop: how late message m, due at t_sched and sent at `now`, went out, split in two.
 * Its slot was handed back at m->t_sched by the message that used it before (lconn_pop: the
 * time a client on time would have had it back; 0 for a slot never used). Until then the
 * message waited for the server (slot_wait, part of its corrected latency anyway); after that
 * the client was late (send_lag). A burst the client fires late is its own lateness, not a
 * wait: the slots it finds full were taken late, and lconn_pop subtracts that. */
static void split_lateness(struct loader *w, struct msg *m, uint64_t t_sched, uint64_t now)
{
	uint64_t ready = t_sched, late;

	if (m->t_sched > ready)
		ready = m->t_sched;
	if (ready > now)
		ready = now;
	late = now - ready;
	m->late_ns = late > UINT32_MAX ? UINT32_MAX : (uint32_t)late;
	if (in_window(w, t_sched)) {
		hist_record(w->lag, late);
		hist_record(w->slot_wait, ready - t_sched);
	}
}

void lconn_queue(struct loader *w, struct lconn *c, uint64_t t_sched, uint64_t now)
{
	struct msg *m = lconn_at(c, c->count);

	if (w->slot_wait)
		split_lateness(w, m, t_sched, now);
	m->start_off = c->queued_off;
	m->size = draw_size(w->cfg, c);
	m->t_sched = t_sched;
	m->t_sent = now;
	m->bad = 0;
	c->queued_off += m->size;
	c->count++;
	if (c->count > w->inflight_max)
		w->inflight_max = c->count;
	w->pending++;
	if (in_window(w, now))
		w->c.sent++;
}

void lconn_pop(struct loader *w, struct lconn *c, uint64_t now)
{
	struct msg *m = lconn_at(c, 0);

	/* Had the client sent it on time, its answer would have come back that much sooner (the
	 * server's time for it unchanged). */
	if (w->slot_wait)
		m->t_sched = now > m->late_ns ? now - m->late_ns : 0;
	c->head = c->head + 1 == c->cap ? 0 : c->head + 1;
	c->count--;
	if (c->nsent)
		c->nsent--;
	w->pending--;
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
 * Returns false when it cannot grow: the message then waits for a slot. Only a full ring
 * grows, so every slot it had is in flight, and the new ones are free (zeroed): the slot
 * order of open_pump holds on. */
static bool grow(struct loader *w, struct lconn *c)
{
	uint32_t cap = c->cap * 2 < w->ring_limit ? c->cap * 2 : w->ring_limit;
	struct msg *ring;

	if (cap <= c->cap || !(ring = calloc(cap, sizeof(*ring))))
		return false;
	for (uint32_t i = 0; i < c->count; i++)
		ring[i] = *lconn_at(c, i);
	free(c->ring);
	c->ring = ring;
	c->cap = cap;
	c->head = 0;
	return true;
}

/* Open loop: queue what is due, as far as the ring allows. Message i of the connection in
 * slot s is tick i * nconns + s of the loader's schedule, so its due time needs no storage.
 * Message i takes ring slot i % cap, the one message i - cap handed back (the ring is FIFO). */
static void open_pump(struct loader *w, struct lconn *c, uint64_t now)
{
	while (c->owed && (c->count < c->cap || (w->unbounded && grow(w, c)))) {
		uint64_t k = c->next_idx * w->nconns + c->slot;

		c->owed--;
		w->pending--;   /* lconn_queue counts it again */
		lconn_queue(w, c, ratesched_due(&w->rs, k), now);
		c->next_idx++;
	}
}

void lconn_owe(struct loader *w, struct lconn *c, uint64_t n, uint64_t now)
{
	c->owed += n;
	w->pending += n;
	open_pump(w, c, now);
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
