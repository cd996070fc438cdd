/* What histio.c (the record, its merge) and histio_text.c (its text form) share and nobody
 * else needs: the item table's names and the one way to add an item. */
#ifndef ECHOBENCH_HISTIO_ITEM_H
#define ECHOBENCH_HISTIO_ITEM_H

#include "histio.h"

extern const char *const histio_kind_word[];    /* indexed by enum histio_kind */
extern const char *const histio_policy_word[];  /* indexed by enum histio_policy */

/* 1 when s is a valid item name (1..HISTIO_NAME_MAX-1 characters of [A-Za-z0-9_.-]). */
int histio_name_ok(const char *s);

/* The item of that name, whatever its kind, or NULL. */
struct histio_item *histio_find_any(const struct histio_record *r, const char *name);

/* The item of that name and kind, appended when new. -EINVAL (bad name), -EEXIST (the name
 * has another kind), -ENOSPC, -ENOMEM. */
int histio_slot(struct histio_record *r, const char *name, enum histio_kind kind,
		struct histio_item **out);

#endif
