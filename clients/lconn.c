/* What every transport shares about a connection: the ring of messages in flight, what
 * happens when one is answered (latency, counters, the refill rule of the mode), failure and
 * clean close; with --churn, the end of a transaction (its figures, its close, its slot handed
 * back to the pool). Called by the transports and the loop; calls neither. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
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

/* Churn: the transaction is over. Its socket closes as --close says: a FIN (our side then
 * holds the port in TIME_WAIT for 60 s, as any client that closes first does) or, with rst, a
 * reset through SO_LINGER 0 (no TIME_WAIT: a deviation from a normal client, for long runs).
 * The slot goes back to the pool; the loop gives it its next transaction (load_churn.c). */
static void txn_end(struct loader *w, struct lconn *c, uint64_t now)
{
	struct churn_pool *p = &w->pool;

	if (w->cfg->close_rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	drop(w, c);
	c->connecting = false;
	p->free[p->nfree++] = c->slot;
	latesplit_track(&p->split, p->nfree == 1, false, now);
}

/* The latency of something due at t_sched (a message; in churn a transaction), in the
 * histogram and its time block. */
static uint64_t record_latency(struct loader *w, uint64_t t_sched, uint64_t now)
{
	uint64_t lat = now - t_sched;
	uint64_t b = (t_sched - w->t_measure) * LOAD_CI_BLOCKS / w->cfg->duration_ns;

	hist_record(w->lat, lat);
	hist_record(w->block[b < LOAD_CI_BLOCKS ? b : LOAD_CI_BLOCKS - 1], lat);
	return lat;
}

/* Churn: the last message of the transaction is answered. Its latency (from its due time; the
 * uncorrected one from its connect), connect and first-reply times go in together, so the three
 * histograms count the same transactions. */
static void txn_done(struct loader *w, struct lconn *c, uint64_t now)
{
	uint64_t d = c->txn.due;

	w->done_total++;
	if (loader_in_window(w, d)) {
		uint64_t lat = record_latency(w, d, now);

		if (w->lat_unc)
			hist_record(w->lat_unc, now - c->txn.start);
		hist_record(w->connect, c->txn.connected - c->txn.start);
		hist_record(w->first_reply, c->txn.first - c->txn.connected);
		if (now < w->t_end) {
			w->c.transactions++;
			w->c.messages += w->cfg->churn_messages;
			w->c.bytes += c->queued_off;   /* each transaction's stream starts at 0 */
			c->answered += w->cfg->churn_messages;
			series_record(w->series, now - w->t_measure, lat);
		} else {
			w->c.drained++;
		}
	}
	txn_end(w, c, now);
}

/* Churn: a failed transaction counts by cause (those due in the window) and is not done. */
static void txn_fail(struct loader *w, struct lconn *c, enum err_kind kind)
{
	if (loader_in_window(w, c->txn.due)) {
		w->c.errors[kind]++;
		w->c.conns_failed++;
		if (c->send_off > c->recv_off)
			w->c.short_bytes += c->send_off - c->recv_off;
	}
	txn_end(w, c, now_ns());
}

void lconn_fail(struct loader *w, struct lconn *c, enum err_kind kind)
{
	if (c->dead)
		return;
	if (w->churn) {
		txn_fail(w, c, kind);
		return;
	}
	w->c.errors[kind]++;
	w->c.conns_failed++;
	if (c->send_off > c->recv_off)
		w->c.short_bytes += c->send_off - c->recv_off;
	/* What it owed from the window will never come. */
	for (uint32_t i = 0; i < c->count; i++)
		w->c.unanswered += loader_in_window(w, lconn_at(c, i)->t_sched);
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
	latesplit_track(&c->split, was_full, ring_full(w, c), now);
	if (c->count > w->inflight_max)
		w->inflight_max = c->count;
	w->pending++;
	if (loader_in_window(w, now) && !w->churn)   /* churn counts transactions (load_churn.c) */
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
	latesplit_track(&c->split, was_full, ring_full(w, c), now);
}

/* Messages due (closed loop: sent) inside the window count however late their answer: the
 * latency histogram takes them all. The throughput counts those answered inside the window;
 * the later ones are `drained`. */
void lconn_done(struct loader *w, struct lconn *c, uint64_t now)
{
	const struct msg *m = lconn_at(c, 0);

	if (w->churn) {
		lconn_pop(w, c, now);
		if (!c->count && !c->txn.left)
			txn_done(w, c, now);
		return;
	}
	w->done_total++;
	if (loader_in_window(w, m->t_sched)) {
		uint64_t lat = record_latency(w, m->t_sched, now);

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

/* The open loop's lateness, split (latesplit.h): the connection's slots are its ring. A
 * message due while the ring is full waits only for the server; a burst the client fires late
 * is its own lateness up to the moment its first message fills the ring, the server's after. */

/* Message idx of the connection (due at d) goes out now, `late` of its lateness the client's. */
static void queue_open(struct loader *w, struct lconn *c, uint64_t idx, uint64_t d,
		       uint64_t late, uint64_t now)
{
	if (loader_in_window(w, d))
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
		queue_open(w, c, idx, d, latesplit_owed_lateness(&c->split, idx, d), now);
	}
}

void lconn_owe(struct loader *w, struct lconn *c, uint64_t n, uint64_t now)
{
	open_pump(w, c, now);   /* owed messages only while the ring is full */
	for (; n; n--) {
		uint64_t idx = c->next_idx + c->owed, d = due_of(w, c, idx);
		uint64_t late = latesplit_free_time(&c->split, ring_full(w, c), d, now);

		if (loader_in_window(w, d))
			hist_record(w->lag, late);
		if (!c->owed && has_room(w, c)) {
			queue_open(w, c, idx, d, late, now);
			continue;
		}
		/* The ring is full: the rest of its lateness is the server's, from now on. */
		c->owed++;
		w->pending++;
		if (late)
			latesplit_owe(&c->split, idx);
	}
}

void lconn_replenish(struct loader *w, struct lconn *c, uint64_t now)
{
	if (c->closing || c->dead)
		return;
	if (w->churn) {
		/* The transaction's messages, -p at a time, whether the window has closed or not:
		 * a transaction started is finished. */
		for (; c->txn.left && c->count < w->pipeline; c->txn.left--)
			lconn_queue(w, c, now, now);
		return;
	}
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
