/*
 * Internals shared by the files of src/notify: compiled rules, templates,
 * filters and preferences (rule.c), the service and its tables (notify.c),
 * and the REST face (http.c).
 *
 * Ownership: a struct rt_nrule owns everything it points to except its
 *            table (the store's schema); a rule set is reference-counted.
 * Threads:   rules are immutable once compiled: read them from any thread.
 * Limits:    as notify.h says.
 */
#ifndef RT_NOTIFY_NOTIFY_INT_H
#define RT_NOTIFY_NOTIFY_INT_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "notify/notify.h"
#include "store/query.h"
#include "store/store.h"

enum rt_ntype { RT_NTYPE_INFO, RT_NTYPE_SUCCESS, RT_NTYPE_WARNING, RT_NTYPE_ERROR, RT_NTYPE_N };
enum rt_nprio { RT_NPRIO_LOW, RT_NPRIO_NORMAL, RT_NPRIO_HIGH, RT_NPRIO_URGENT, RT_NPRIO_N };

const char *rt_ntype_name(int t);
const char *rt_nprio_name(int p);
/* -1 when s is no type / priority name. */
int rt_ntype_parse(const char *s);
int rt_nprio_parse(const char *s);

/* ---- templates ---- */

enum rt_tpl_kind { RT_TPL_TEXT, RT_TPL_NEW, RT_TPL_OLD, RT_TPL_TABLE, RT_TPL_EVENT, RT_TPL_COUNT };

struct rt_tpl_part {
	enum rt_tpl_kind kind;
	char *text; /* RT_TPL_TEXT: the literal; NEW/OLD: the column */
};

struct rt_tpl {
	struct rt_tpl_part *parts;
	size_t n_parts;
};

/* What a template is rendered against (any member may be NULL / 0). */
struct rt_tpl_env {
	const json_t *new_row, *old_row;
	const char *table, *event;
	long long count;
};

/*
 * Compiles text: literals and placeholders {{new.col}}, {{old.col}},
 * {{table}}, {{event}}, {{count}} (blanks inside the braces allowed). With t
 * set, columns must be t's. has_count says whether {{count}} is allowed.
 * Returns 0, or -1 with the reason in err ("unknown placeholder {{x}}",
 * "column requests.x does not exist", "template is longer than 2048 bytes",
 * "unclosed {{"). An empty text compiles to an empty template.
 */
int rt_tpl_parse(const char *text, const struct rt_store_table *t, bool has_count,
		 struct rt_tpl *out, char *err, size_t err_cap);
void rt_tpl_deinit(struct rt_tpl *tpl);
/*
 * Renders into out (appended), at most max bytes (cut on a UTF-8 boundary).
 * A string value goes in as it is, null or a missing column as "", other
 * values as compact JSON; control characters become spaces. With
 * is_url_value each placeholder's text is percent-encoded (a value put into
 * a query string cannot add parameters).
 */
void rt_tpl_render(const struct rt_tpl *tpl, const struct rt_tpl_env *env, bool is_url_value,
		   size_t max, struct rt_buf *out);
bool rt_tpl_is_empty(const struct rt_tpl *tpl);

/* ---- filters: the REST grammar plus `changed` ---- */

/* col=changed[.from.<v>][.to.<v>]: the column's value differs between the old
 * and new row (UPDATE only), from/to compare the text forms. */
struct rt_changed_cond {
	char *column;
	char *from; /* NULL: any */
	char *to;   /* NULL: any */
};

struct rt_nfilter {
	struct rt_query q; /* the REST part (filters only) */
	struct rt_changed_cond *changed;
	size_t n_changed;
};

/*
 * Parses a filter string (REST grammar, `&`-separated, plus `changed`
 * conditions) and checks its columns against t. Returns 0, or -1 with the
 * reason in err. text may be NULL or "" (matches every change).
 */
int rt_nfilter_parse(const char *text, const struct rt_store_table *t, struct rt_nfilter *out,
		     char *err, size_t err_cap);
void rt_nfilter_deinit(struct rt_nfilter *f);
/* Whether change ch passes: the REST part on the new row (old for DELETE),
 * every changed condition on old and new (false unless an UPDATE). */
bool rt_nfilter_match(const struct rt_nfilter *f, const struct rt_change *ch);
/* The text form templates and `changed` compare: a string as it is, null
 * (or NULL) as "null", others as compact JSON. Caller frees. */
char *rt_notify_value_text(const json_t *v);

/* ---- rules ---- */

enum rt_nrcpt_kind { RT_NRCPT_COLUMN, RT_NRCPT_USERS, RT_NRCPT_QUERY };

struct rt_nrcpt {
	enum rt_nrcpt_kind kind;
	char *column;                    /* COLUMN: of the rule's table (an id, or an array) */
	char **users;                    /* USERS */
	size_t n_users;
	const struct rt_store_table *qt; /* QUERY: the table read */
	char *qcolumn;                   /* QUERY: the column holding user ids */
	struct rt_tpl qfilter;           /* QUERY: the filter, rendered per change */
};

struct rt_nrule {
	char *name;
	const struct rt_store_table *t;
	bool on[3]; /* by enum rt_change_type */
	struct rt_nfilter filter;
	struct rt_nrcpt *rcpts;
	size_t n_rcpts;
	struct rt_tpl title, message, link;
	int type, priority;
	char *category; /* "" when none */
	/* grouping: window_ms 0 is off */
	uint64_t window_ms;
	struct rt_tpl group_key, group_title, group_message;
	json_t *def; /* the definition as given (for GET) */
};

/*
 * Compiles one rule definition (an object) against store's schema. name_hint
 * (may be NULL) is used when the definition has no "name". Returns the rule,
 * or NULL with the reason in err (which member, why).
 */
struct rt_nrule *rt_nrule_parse(struct rt_store *store, const json_t *def, const char *name_hint,
				char *err, size_t err_cap);
void rt_nrule_free(struct rt_nrule *r);

/*
 * Parses a recipients spec: {"column"}, {"users"}, {"user"}, {"query":
 * {"table", "select", "filter"?}}, or an array of them. t (may be NULL for
 * direct sends: no column spec then) is the rule's table. Fills *out (an
 * array the caller frees with rt_nrcpts_free). Returns 0 or -1 with err.
 */
int rt_nrcpts_parse(struct rt_store *store, const json_t *spec, const struct rt_store_table *t,
		    struct rt_nrcpt **out, size_t *n, char *err, size_t err_cap);
void rt_nrcpts_free(struct rt_nrcpt *r, size_t n);
/*
 * The recipients for env (a change's rows; NULL rows for direct sends):
 * distinct user ids appended to users (a JSON array of strings), at most
 * RT_NOTIFY_MAX_RECIPIENTS. Queries run on store as the server. Returns 0,
 * or -1 when a query failed (logged; what was found is kept).
 */
int rt_nrcpts_resolve(struct rt_store *store, const struct rt_nrcpt *r, size_t n,
		      const struct rt_tpl_env *env, json_t *users);
/* Whether s is a user id: 1 to RT_NOTIFY_MAX_USER_ID bytes of valid UTF-8
 * without control characters. */
bool rt_notify_valid_user(const char *s);

/* ---- preferences ---- */

struct rt_nprefs {
	char **muted;           /* muted categories */
	size_t n_muted;
	int min_priority;       /* below it: dropped */
	bool has_quiet;         /* quiet hours: [start, end) minutes of the day */
	int quiet_start, quiet_end, utc_offset_min;
	unsigned channels[RT_NTYPE_N]; /* RT_NCHAN_* bits per type */
};

#define RT_NCHAN_LIVE 1u  /* pushed to connected sessions */
#define RT_NCHAN_INBOX 2u /* kept unread in the inbox (else kept as read) */

void rt_nprefs_default(struct rt_nprefs *p);
void rt_nprefs_deinit(struct rt_nprefs *p);
/* Parses a preferences object (missing members keep their defaults).
 * Returns 0, or -1 with the reason in err. */
int rt_nprefs_parse(const json_t *j, struct rt_nprefs *out, char *err, size_t err_cap);
/* The object form (new reference). */
json_t *rt_nprefs_json(const struct rt_nprefs *p);

enum rt_nverdict { RT_NV_DELIVER, RT_NV_HOLD, RT_NV_DROP };
/*
 * What p says of a notification of category, type and priority at now_ms:
 * DROP (muted, under the minimum priority, or a type with no channel), HOLD
 * (quiet hours: *until_ms is when they end; urgent ones are never held), or
 * DELIVER. *chans gets the type's channels.
 */
enum rt_nverdict rt_nprefs_decide(const struct rt_nprefs *p, const char *category, int type,
				  int priority, int64_t now_ms, int64_t *until_ms,
				  unsigned *chans);

/* ---- the service (notify.c), shared with the REST face (http.c) ---- */

struct ruleset;
struct pref_entry;

struct rt_notify {
	struct rt_store *store;
	struct rt_hub *hub;
	int64_t (*now_ms)(void);
	uint64_t retain_ms, archive_after_ms;
	char *rules_path;
	/* change thread */
	sqlite3 *feed_db;
	uint64_t pos;       /* the last position turned into notifications */
	uint64_t saved_pos; /* the position the database holds */
	uint64_t saved_ms, released_ms, pruned_ms; /* monotonic */
	bool is_gap_logged;
	/* REST and direct sends (pool threads), one at a time */
	pthread_mutex_t api_mu;
	sqlite3 *api_db;
	pthread_mutex_t rules_mu; /* the pointer */
	struct ruleset *rules;
	pthread_mutex_t prefs_mu;
	struct pref_entry *prefs;
	_Atomic uint64_t n_written, n_pushed, n_held;
};

/* One notification to write: for a recipient, from a rule (with the rows it
 * renders against) or a direct send. Borrowed pointers. */
struct rt_nsvc_item {
	const char *user;
	const struct rt_nrule *rule;     /* NULL: a direct send */
	const struct rt_tpl_env *env;    /* with rule */
	uint64_t pos;                    /* the change's position (0: none) */
	const char *dedup;               /* unique key (NULL: none) */
	int type, priority;
	const char *category, *title, *message, *link;
	const json_t *data;              /* may be NULL */
};

/* Events to publish once their transaction commits. */
struct rt_nsvc_outbox {
	json_t *items; /* [{user, event, payload}] */
	json_t *users; /* user → unread count */
	json_t *index; /* "<id>:<user>" → index in items */
};

int rt_nsvc_open_db(const char *path, sqlite3 **out, char *err, size_t err_cap);
sqlite3_stmt *rt_nsvc_prepare(sqlite3 *db, const char *sql);
int rt_nsvc_exec(sqlite3 *db, const char *sql);
extern const char rt_nsvc_columns[];
/* A row of rt_nsvc_columns as the API shows it (new reference). */
json_t *rt_nsvc_row_json(sqlite3_stmt *st);
json_t *rt_nsvc_get(sqlite3 *db, int64_t id);
/* Unread top-level notifications of user delivered by now. */
long long rt_nsvc_unread(sqlite3 *db, const char *user, int64_t now);

/* The current rule set (a reference: rt_nsvc_rules_unref). */
struct ruleset *rt_nsvc_rules(struct rt_notify *n);
void rt_nsvc_rules_unref(struct ruleset *rs);
size_t rt_nsvc_rules_count(const struct ruleset *rs);
const struct rt_nrule *rt_nsvc_rule_at(const struct ruleset *rs, size_t i, const char **source);
/* Compiles the rules table on db into the current set. */
void rt_nsvc_rules_reload(struct rt_notify *n, sqlite3 *db);
int rt_nsvc_rule_store(sqlite3 *db, const char *name, const json_t *def, const char *source,
		       int64_t now);

int rt_nsvc_prefs_read(sqlite3 *db, const char *user, struct rt_nprefs *out);
void rt_nsvc_prefs_forget(struct rt_notify *n, const char *user);

/*
 * Writes one notification inside db's open transaction: the recipient's
 * preferences drop, hold or pass it, grouping folds it into a summary, and
 * the events to publish go to o (may be NULL). *id_out (may be NULL) gets
 * the new row's id (0: dropped, a duplicate, or folded). Returns 0 or -1.
 */
int rt_nsvc_write(struct rt_notify *n, sqlite3 *db, const struct rt_nsvc_item *it, int64_t now,
		  struct rt_nsvc_outbox *o, int64_t *id_out);
void rt_nsvc_outbox_init(struct rt_nsvc_outbox *o);
void rt_nsvc_outbox_deinit(struct rt_nsvc_outbox *o);
void rt_nsvc_outbox_count(struct rt_nsvc_outbox *o, sqlite3 *db, int64_t now);
void rt_nsvc_outbox_flush(struct rt_notify *n, struct rt_nsvc_outbox *o);
/* Publishes one event on user's channel (payload borrowed). */
void rt_nsvc_publish(struct rt_notify *n, const char *user, const char *event, json_t *payload);

#endif
