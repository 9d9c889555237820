/*
 * Feature flags (docs/flags.md): a flag set read from a JSON document, and
 * each flag's answer for one user from the claims of the user's JWT.
 *
 * A flag set (struct rt_flagset) is immutable once parsed and shared by
 * reference count; struct rt_flags holds the current one, swaps it whole
 * when the file is read again (SIGHUP) or edited (REST, CLI), and counts
 * the swaps in a generation that readers check with one atomic load. Users
 * of the flags keep a reference and their own answers computed from it
 * (per session and channel), and compute them again when the generation
 * moves: no lock is taken per message.
 *
 * Flags named after a built-in feature (RT_FLAG_FEATURES: "broadcast", or
 * "broadcast.<anything>") switch that feature; other flags are the
 * application's, boolean or with weighted variants. A flag may be scoped to
 * channels and tables (globs); it applies only where its scope matches.
 * For one user a flag is on when it is enabled, the user's claims match its
 * targeting ("when"), and the user's bucket is inside its rollout. The
 * bucket and the variant come from SHA-256 of (flag name, JWT sub): the
 * same user gets the same answer across restarts and edits of other flags.
 *
 * Ownership: rt_flags owns its current set; rt_flags_current() returns a
 *            reference the caller releases with rt_flagset_unref(). JSON
 *            results are new references owned by the caller.
 * Threads:   every rt_flags function but new/free is thread-safe; a flag
 *            set is read-only and may be evaluated from any thread.
 * Limits:    RT_FLAGS_MAX_DOC bytes of document, RT_FLAGS_MAX flags,
 *            RT_FLAGS_MAX_VARIANTS variants, RT_FLAGS_MAX_LIST entries per
 *            list (targeting values, globs), RT_FLAGS_MAX_NAME bytes per name.
 */
#ifndef RT_FLAGS_FLAGS_H
#define RT_FLAGS_FLAGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define RT_FLAGS_MAX_DOC (1u << 20)
#define RT_FLAGS_MAX 512
#define RT_FLAGS_MAX_VARIANTS 16
#define RT_FLAGS_MAX_LIST 64
#define RT_FLAGS_MAX_NAME 64
#define RT_FLAGS_MAX_GLOB 256
/* A rollout is in millionths: buckets 0 .. RT_FLAGS_BUCKETS - 1. */
#define RT_FLAGS_BUCKETS 1000000u

/* The built-in features, one bit each in a features-off mask. */
#define RT_FLAG_FEATURES(X)                                                              \
	X(BROADCAST, "broadcast")                                                        \
	X(PRESENCE, "presence")                                                          \
	X(POSTGRES_CHANGES, "postgres_changes")                                          \
	X(LIVE_QUERIES, "live_queries")                                                  \
	X(NOTIFICATIONS, "notifications")                                                \
	X(DOCUMENTS, "documents")                                                        \
	X(WRITES, "writes")

enum rt_flag_feature_idx {
#define RT_FF(name, text) RT_FLAG_IDX_##name,
	RT_FLAG_FEATURES(RT_FF)
#undef RT_FF
	RT_FLAG_N_FEATURES
};

enum {
#define RT_FF(name, text) RT_FLAG_##name = 1u << RT_FLAG_IDX_##name,
	RT_FLAG_FEATURES(RT_FF)
#undef RT_FF
};

/* The feature's name ("broadcast"), or NULL for a bit that is none. */
const char *rt_flag_feature_name(unsigned bit);

struct rt_flagset;
struct rt_flags;

/* Who a flag is evaluated for: the JWT's sub (may be NULL) and its whole
 * claims object (may be NULL). */
struct rt_flag_user {
	const char *sub;
	const json_t *claims;
};

/* Where: a channel's sub-topic (NULL: not on a channel, e.g. REST) and the
 * tables involved (a channel's postgres_changes tables, a write's table;
 * "*" stands for every table). */
struct rt_flag_scope {
	const char *channel;
	const char *const *tables;
	size_t n_tables;
};

/* One flag's answer: off, on, or on with a variant (a string of the set). */
struct rt_flag_answer {
	bool is_on;
	const char *variant; /* NULL for a boolean flag or when off */
};

/*
 * Parses a flag-set document ({"flags": {name: definition, ...}}, the format
 * of docs/flags.md; NULL or {} is the empty set). Every member is checked:
 * an unknown key, a wrong type, a name or list over the limits is an error.
 * Returns the set with one reference, or NULL with the reason in err.
 */
struct rt_flagset *rt_flagset_parse(const json_t *doc, char *err, size_t err_cap);
/* Checks one flag's definition as rt_flagset_parse() would. 0 or -1. */
int rt_flagset_check_flag(const char *name, const json_t *def, char *err, size_t err_cap);
struct rt_flagset *rt_flagset_ref(struct rt_flagset *fs);
void rt_flagset_unref(struct rt_flagset *fs);
size_t rt_flagset_count(const struct rt_flagset *fs);

/* The user's bucket for a flag: SHA-256 of name, a NUL and sub, reduced to
 * 0 .. RT_FLAGS_BUCKETS - 1; the variant bucket uses other bytes of the
 * same digest. sub may be NULL (treated as ""). */
uint32_t rt_flags_bucket(const char *name, const char *sub);
uint32_t rt_flags_variant_bucket(const char *name, const char *sub);

/*
 * The answer of flag `name` for user, ignoring its scope. Returns 0, or
 * RT_ENOTFOUND when the set has no such flag. Does not count an exposure.
 */
int rt_flagset_eval(const struct rt_flagset *fs, const char *name, const struct rt_flag_user *u,
		    struct rt_flag_answer *out);

/* The built-in features that are off for user in scope: the RT_FLAG_* bits
 * of every feature one of whose flags applies there and is off. */
unsigned rt_flagset_features_off(const struct rt_flagset *fs, const struct rt_flag_user *u,
				 const struct rt_flag_scope *scope);

/*
 * What the client is told: {name: true | false | "variant"} for every flag
 * that applies in scope (app flags and feature flags alike). With
 * count_exposures, each answer counts one exposure of its flag and variant
 * in the metrics. A new object.
 */
json_t *rt_flagset_view(const struct rt_flagset *fs, const struct rt_flag_user *u,
			const struct rt_flag_scope *scope, bool count_exposures);

/* The set's document as it was parsed (a new reference). */
json_t *rt_flagset_doc(const struct rt_flagset *fs);

/* ---- the current set ---- */

/*
 * Flags read from path (NULL: none, kept in memory only). A missing file is
 * the empty set, and is created by the first edit. Returns 0, or -1 with
 * the reason in err when the file cannot be read or is not a valid set.
 */
int rt_flags_new(const char *path, struct rt_flags **out, char *err, size_t err_cap);
void rt_flags_free(struct rt_flags *f);
/* The current set: a reference for the caller. */
struct rt_flagset *rt_flags_current(struct rt_flags *f);
/* Grows by one on every swap of the current set (one atomic load). */
uint64_t rt_flags_generation(const struct rt_flags *f);
/* Reads the file again; on an error the current set stays (logged). */
int rt_flags_reload(struct rt_flags *f, char *err, size_t err_cap);

/*
 * Edits, each validated, written to the file (a new file renamed over the
 * old one) and then made current. Return 0; RT_EINVAL with the reason in err
 * for a bad name, definition or document; RT_ENOTFOUND (delete) when there
 * is no such flag; RT_EIO when the file cannot be written (nothing changes).
 */
int rt_flags_put(struct rt_flags *f, const char *name, const json_t *def, char *err,
		 size_t err_cap);
int rt_flags_replace(struct rt_flags *f, const json_t *doc, char *err, size_t err_cap);
int rt_flags_delete(struct rt_flags *f, const char *name, char *err, size_t err_cap);

/* Appends the flags' metrics (exposures per flag and variant, evaluations,
 * reloads) in the Prometheus text format. */
void rt_flags_render_metrics(struct rt_flags *f, struct rt_buf *out);

/* Counts evaluations done for sessions (a view or a features mask). */
void rt_flags_count_evaluations(struct rt_flags *f, uint64_t n);

#endif
