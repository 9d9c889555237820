/*
 * Conflict detection and resolution for one row write: given the row as it
 * is now, the values the writer last saw (`base`) and the values it wants
 * (`changes`), decide what to apply under a strategy. A pure function over
 * JSON values, shared by every store backend, which runs it inside the
 * write's transaction between reading the current row and writing it.
 *
 * A column conflicts when the writer gave a base value for it, the current
 * value differs from that base, and the current value also differs from what
 * the writer wants (two writers making the same change do not conflict).
 * Values compare as JSON, numbers by value (1 equals 1.0).
 *
 *   strategy  no conflict   conflicts                          row gone, with a base
 *   reject    apply all     apply nothing, RT_WRITE_CONFLICT   RT_WRITE_CONFLICT
 *   merge     apply all     apply the others, RT_WRITE_MERGED  RT_WRITE_CONFLICT
 *   lww       apply all     apply all, RT_WRITE_APPLIED        RT_WRITE_MISSING
 *                           (conflicts still reported)
 *
 * A row that is gone with no base (or under lww) is RT_WRITE_MISSING with
 * every change in `apply`: the caller decides (an upsert inserts, an update
 * or a delete affects nothing).
 * A delete has no changes: under reject and merge it is refused when any base
 * column conflicts (current differs from base); under lww it always applies.
 *
 * Ownership: inputs are borrowed; rt_conflict_decide() fills a result whose
 *            JSON members are new references, freed by rt_conflict_result_deinit().
 * Threads:   any thread.
 * Limits:    none beyond the inputs' sizes.
 */
#ifndef RT_STORE_CONFLICT_H
#define RT_STORE_CONFLICT_H

#include <jansson.h>
#include <stdbool.h>

enum rt_write_strategy {
	RT_STRATEGY_REJECT,
	RT_STRATEGY_MERGE,
	RT_STRATEGY_LWW,
};

enum rt_write_outcome {
	RT_WRITE_APPLIED,  /* every change applied */
	RT_WRITE_MERGED,   /* the non-conflicting changes applied, conflicts reported */
	RT_WRITE_CONFLICT, /* nothing applied */
	RT_WRITE_MISSING,  /* the row does not exist and nothing forbids writing it */
};

struct rt_conflict_result {
	enum rt_write_outcome outcome;
	json_t *apply;     /* object: the columns to write (empty for a delete or nothing) */
	json_t *conflicts; /* array of column names, in the order of `base` */
	bool is_delete;    /* apply the delete */
};

/*
 * Decides one write. current: the row now (object) or NULL when it does not
 * exist. base: object or NULL (no base: nothing can conflict). changes: the
 * object of new values, or NULL for a delete. Returns 0, or RT_EINVAL when an
 * argument has the wrong JSON type (result untouched).
 */
int rt_conflict_decide(const json_t *current, const json_t *base, const json_t *changes,
		       enum rt_write_strategy strategy, struct rt_conflict_result *out);
void rt_conflict_result_deinit(struct rt_conflict_result *r);

/* JSON equality with numbers compared by value (1 == 1.0). */
bool rt_conflict_values_equal(const json_t *a, const json_t *b);

/* Parses "reject", "merge", "lww" (also "last-write-wins"). Returns 0 or RT_EINVAL. */
int rt_conflict_strategy_parse(const char *s, enum rt_write_strategy *out);
const char *rt_conflict_strategy_name(enum rt_write_strategy s);
const char *rt_conflict_outcome_name(enum rt_write_outcome o);

#endif
