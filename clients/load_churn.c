/* --churn, the loop's side. A load thread's connections are slots; each transaction takes a
 * free one: it opens a socket, connects, sends --churn-messages messages (-p at a time), checks
 * their echo and closes. Closed loop: a slot starts its next transaction as soon as its last
 * one ends. Open loop: transaction k of the thread's schedule is due at start + k / rate
 * (ratesched.h); it starts on a free slot when due or, when every slot is busy, waits for one,
 * in due order, its latency still counting from its due time. So -c bounds the transactions in
 * progress (each thread has its share): sockets, local ports and memory stay bounded when the
 * server falls behind, and its back-pressure shows in slot_wait and the latency, as with the
 * in-flight ring of the other modes (the lateness split, latesplit.h, is the same code).
 *
 * The rest of a transaction happens below: the connect's end in the transport (load_tcp.c),
 * the answers, the end and the slot's return in lconn.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "loader.h"

/* Closed loop, no local port left: the slots wait this long before the next try, rather than
 * spin on connect() until a TIME_WAIT ends. */
#define RETRY_NS (10 * UINT64_C(1000000))

int churn_setup(struct loader *w)
{
	struct churn_pool *p = &w->pool;

	p->free = malloc((w->nconns ? w->nconns : 1) * sizeof(*p->free));
	if (!p->free)
		return -ENOMEM;
	for (uint32_t i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];

		c->dead = true;               /* idle: no socket until a transaction takes it */
		c->slot_id = c->id;
		p->free[i] = w->nconns - 1 - i;   /* slot 0 on top */
	}
	p->nfree = w->nconns;
	return 0;
}

static void internal(struct loader *w, const char *what, int err)
{
	w->error = -err;
	snprintf(w->error_text, sizeof(w->error_text), "%s: %s", what, strerror(err));
}

enum start_result {
	STARTED,     /* a transaction is in progress, or has failed already (refused at once) */
	NO_PORT,     /* no local port was left: counted, the slot stays free */
	NOT_STARTED, /* the closed loop's window closed before the connect, or w->error */
};

/* Starts a transaction due at `due` (0: at its connect(), the closed loop) on the free slot on
 * top of the pool. */
static enum start_result start(struct loader *w, uint64_t due, uint64_t now)
{
	const struct load_config *cfg = w->cfg;
	struct churn_pool *p = &w->pool;
	struct lconn *c = &w->conns[p->free[p->nfree - 1]];
	/* Slot i's transactions go round the --source addresses from address i on, so that the
	 * slots in progress at once use different ones. */
	int fd = load_open_socket(cfg, c->slot_id + c->txn.seq), err = 0;
	uint64_t t;

	if (fd == -EADDRNOTAVAIL || fd == -EADDRINUSE) {
		w->c.no_port++;
		return NO_PORT;
	}
	if (fd < 0) {
		internal(w, "socket", -fd);
		return NOT_STARTED;
	}
	t = now_ns();
	if (!due && t >= w->t_end) {
		/* Closed loop: a transaction counts when its connect() is in the window; this
		 * one would not, yet the server would serve it. */
		close(fd);
		return NOT_STARTED;
	}
	if (connect(fd, (const struct sockaddr *)&cfg->target.sa, cfg->target.len) < 0)
		err = errno;
	if (err == EADDRNOTAVAIL) {
		close(fd);
		w->c.no_port++;
		return NO_PORT;
	}
	p->nfree--;
	latesplit_track(&p->split, false, p->nfree == 0, now);
	c->fd = fd;
	c->dead = c->closing = false;
	c->connecting = c->want_out = err == EINPROGRESS;
	c->head = c->count = c->nsent = 0;
	c->send_off = c->queued_off = c->recv_off = 0;
	/* The payload's key: unique over every slot of every process (slot ids are global, below
	 * connections_total), so that bytes of another transaction's stream are a mismatch. */
	c->id = c->slot_id + cfg->connections_total * c->txn.seq;
	c->txn.seq++;
	c->txn.due = due ? due : t;
	c->txn.start = t;
	c->txn.connected = err ? 0 : now_ns();
	c->txn.first = 0;
	c->txn.left = cfg->churn_messages;
	w->live++;
	w->c.sent += loader_in_window(w, c->txn.due);
	if (err && err != EINPROGRESS) {
		lconn_fail(w, c, err_kind_of(err));
		return STARTED;
	}
	w->connects += !err && loader_in_window(w, c->txn.due);
	if ((err = w->eng->adopt(w, c)) < 0) {
		internal(w, "adding a socket to the engine", -err);
		lconn_close(w, c);
		return NOT_STARTED;
	}
	lconn_replenish(w, c, now);
	if (!c->connecting)
		w->tp->flush(w, c);   /* connected at once (a unix socket) */
	return STARTED;
}

/* Open loop: the transaction due at d starts now, `late` of its delay the client's own; the
 * rest was the wait for a slot (the server's). */
static void start_due(struct loader *w, uint64_t d, uint64_t late, uint64_t now)
{
	bool in = loader_in_window(w, d);
	enum start_result r = start(w, d, now);

	if (r == STARTED && in)
		hist_record(w->slot_wait, now - d > late ? now - d - late : 0);
	else if (r == NO_PORT)
		w->c.unanswered += in;   /* it never starts */
}

void churn_refill(struct loader *w, uint64_t now)
{
	struct churn_pool *p = &w->pool;
	/* At most one start per slot free on entry: a connect refused at once frees its slot
	 * again, and the loop must still get to its events, timeouts and deadlines. */
	uint32_t n = p->nfree;

	if (w->cfg->mode == MODE_OPEN) {
		/* What is owed goes first, in due order, each on a slot as it frees. */
		for (; n && p->owed && p->nfree && !w->error; n--) {
			uint64_t idx = p->next++, d = ratesched_due(&w->rs, idx);

			p->owed--;
			w->pending--;
			start_due(w, d, latesplit_owed_lateness(&p->split, idx, d), now);
		}
		return;
	}
	if (now < p->retry_at)
		return;
	for (; n && p->nfree && now < w->t_end && !w->error; n--) {
		enum start_result r = start(w, 0, now);

		if (r == NO_PORT)
			p->retry_at = now + RETRY_NS;
		if (r != STARTED)
			return;
	}
}

void churn_fire(struct loader *w, uint64_t now)
{
	struct churn_pool *p = &w->pool;
	uint64_t first, n;

	churn_refill(w, now);
	n = ratesched_take(&w->rs, now, &first);
	for (uint64_t k = first; k < first + n && !w->error; k++) {
		uint64_t d = ratesched_due(&w->rs, k);
		uint64_t late = latesplit_free_time(&p->split, p->nfree == 0, d, now);

		if (loader_in_window(w, d))
			hist_record(w->lag, late);
		if (!p->owed && p->nfree) {
			start_due(w, d, late, now);
			continue;
		}
		/* Every slot busy (or others wait already): the rest of its wait is the server's. */
		if (!p->owed)
			p->next = k;
		p->owed++;
		w->pending++;
		if (late)
			latesplit_owe(&p->split, k);
	}
}

uint64_t churn_next_due(const struct loader *w)
{
	const struct churn_pool *p = &w->pool;

	if (!p->nfree)
		return UINT64_MAX;    /* the end of a transaction wakes the loop */
	if (p->owed)
		return 0;             /* a slot is free for what waits: at once */
	return ratesched_next_due(&w->rs);
}

void churn_give_up(struct loader *w)
{
	struct churn_pool *p = &w->pool;

	for (uint32_t i = 0; i < w->nconns; i++) {
		struct lconn *c = &w->conns[i];

		if (c->dead)
			continue;
		w->c.unanswered += loader_in_window(w, c->txn.due);
		lconn_close(w, c);
	}
	for (; p->owed; p->owed--, p->next++) {
		w->c.unanswered += loader_in_window(w, ratesched_due(&w->rs, p->next));
		w->pending--;
	}
}
