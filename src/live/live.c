/*
 * Live queries (live.h, docs/live.md): definitions, maintained queries
 * (windows and aggregates), their history of hops, and subscribers.
 *
 * Everything below the request queue belongs to the change thread (or, in
 * process, to the single caller): maintained queries, subscribers and their
 * messages are never touched by two threads.
 */
#include "live/live.h"

#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pgval.h"
#include "net/ws.h"
#include "proto/phx.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

#define LINGER_MS 30000
/* Adaptive folding: while a worker has more messages than this waiting, a
 * message that is due waits (the next changes fold into it), for at most
 * FOLD_MAX_MS, so the number of messages follows what the sockets take. */
#define FOLD_BACKLOG 256
#define FOLD_MAX_MS 100
#define MIN_RESERVE 8

/* ---- definitions ---- */

struct out { /* one output key of a result row */
	char *key;
	size_t col;             /* column (a plain column or a group) */
	enum rt_query_agg fn;   /* RT_QUERY_AGG_NONE: the column's value */
	size_t acc;             /* aggregate: its accumulator (COUNT of rows: unused) */
	bool is_rows;           /* count(): rows, not a column's values */
};

struct ord {
	size_t col;
	bool is_desc, is_nulls_first;
};

struct rt_live_def {
	char *id;
	const struct rt_store_table *t;
	char *canon; /* schema, table and query text: equal texts, equal definitions */
	char *text;  /* the query text */
	struct rt_query q;
	bool is_agg;
	struct out *outs;
	size_t n_outs;
	struct ord *ord; /* windows: order then primary key; aggregates: order then groups */
	size_t n_ord;
	size_t *groups, n_groups; /* aggregates: group columns */
	size_t *accs, n_accs;     /* aggregates: aggregated columns, distinct */
	bool *acc_lo, *acc_hi;    /* per aggregated column: its min(), its max() selected */
	size_t *pk, n_pk;
};

static const char *agg_name(enum rt_query_agg fn)
{
	switch (fn) {
	case RT_QUERY_AGG_COUNT: return "count";
	case RT_QUERY_AGG_SUM: return "sum";
	case RT_QUERY_AGG_AVG: return "avg";
	case RT_QUERY_AGG_MIN: return "min";
	case RT_QUERY_AGG_MAX: return "max";
	case RT_QUERY_AGG_NONE: break;
	}
	return "";
}

void rt_live_def_free(struct rt_live_def *d)
{
	if (!d)
		return;
	free(d->id);
	free(d->canon);
	free(d->text);
	rt_query_deinit(&d->q);
	for (size_t i = 0; i < d->n_outs; i++)
		free(d->outs[i].key);
	free(d->outs);
	free(d->ord);
	free(d->groups);
	free(d->accs);
	free(d->acc_lo);
	free(d->acc_hi);
	free(d->pk);
	free(d);
}

const char *rt_live_def_id(const struct rt_live_def *d)
{
	return d->id;
}

static long col_index(const struct rt_store_table *t, const char *name)
{
	for (size_t i = 0; i < t->n_cols; i++)
		if (!strcmp(t->cols[i].name, name))
			return (long)i;
	return -1;
}

static bool has_index(const size_t *v, size_t n, size_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

static void add_out(struct rt_live_def *d, const char *key, size_t col, enum rt_query_agg fn,
		    bool is_rows)
{
	d->outs = rt_xrealloc(d->outs, (d->n_outs + 1) * sizeof *d->outs);
	struct out *o = &d->outs[d->n_outs++];
	*o = (struct out){.key = rt_xstrdup(key), .col = col, .fn = fn, .is_rows = is_rows};
	if (fn != RT_QUERY_AGG_NONE && !is_rows) {
		size_t a = 0;
		while (a < d->n_accs && d->accs[a] != col)
			a++;
		if (a == d->n_accs) {
			d->accs = rt_xrealloc(d->accs, (d->n_accs + 1) * sizeof *d->accs);
			d->acc_lo = rt_xrealloc(d->acc_lo, (d->n_accs + 1) * sizeof *d->acc_lo);
			d->acc_hi = rt_xrealloc(d->acc_hi, (d->n_accs + 1) * sizeof *d->acc_hi);
			d->acc_lo[d->n_accs] = d->acc_hi[d->n_accs] = false;
			d->accs[d->n_accs++] = col;
		}
		o->acc = a;
		d->acc_lo[a] |= fn == RT_QUERY_AGG_MIN;
		d->acc_hi[a] |= fn == RT_QUERY_AGG_MAX;
	}
}

static void add_ord(struct rt_live_def *d, size_t col, bool is_desc, enum rt_query_nulls nulls)
{
	for (size_t i = 0; i < d->n_ord; i++)
		if (d->ord[i].col == col)
			return; /* an earlier key already decides it */
	d->ord = rt_xrealloc(d->ord, (d->n_ord + 1) * sizeof *d->ord);
	bool nf = nulls == RT_QUERY_NULLS_FIRST || (nulls == RT_QUERY_NULLS_DEFAULT && is_desc);
	d->ord[d->n_ord++] = (struct ord){.col = col, .is_desc = is_desc, .is_nulls_first = nf};
}

/* Fills outputs, groups and order from the parsed query. */
static int def_shape(struct rt_live_def *d, char *err, size_t err_cap)
{
	const struct rt_store_table *t = d->t;
	const struct rt_query *q = &d->q;
	for (size_t i = 0; i < q->n_select; i++)
		if (q->select[i].agg != RT_QUERY_AGG_NONE)
			d->is_agg = true;
	for (size_t i = 0; i < t->n_cols; i++)
		if (t->cols[i].is_pk) {
			d->pk = rt_xrealloc(d->pk, (d->n_pk + 1) * sizeof *d->pk);
			d->pk[d->n_pk++] = i;
		}
	if (!d->n_pk) {
		snprintf(err, err_cap, "RTS400: table %s has no primary key", t->name);
		return -1;
	}
	if (!q->n_select) {
		for (size_t i = 0; i < t->n_cols; i++)
			add_out(d, t->cols[i].name, i, RT_QUERY_AGG_NONE, false);
	}
	for (size_t i = 0; i < q->n_select; i++) {
		const struct rt_query_select *s = &q->select[i];
		if (s->column && !strcmp(s->column, "*")) {
			if (d->is_agg) {
				snprintf(err, err_cap,
					 "RTS400: select * cannot be grouped; name the group columns");
				return -1;
			}
			for (size_t k = 0; k < t->n_cols; k++)
				add_out(d, t->cols[k].name, k, RT_QUERY_AGG_NONE, false);
			continue;
		}
		long c = s->column ? col_index(t, s->column) : -1;
		if (s->column && c < 0) {
			snprintf(err, err_cap, "42703: column %s.%s does not exist", t->name, s->column);
			return -1;
		}
		const char *key = s->alias ? s->alias : s->agg ? agg_name(s->agg) : s->column;
		if ((s->agg == RT_QUERY_AGG_SUM || s->agg == RT_QUERY_AGG_AVG) &&
		    rt_pgval_class_of(t->cols[c].type) != RT_PGVAL_NUM) {
			snprintf(err, err_cap, "42883: function %s(%s) does not exist", agg_name(s->agg),
				 rt_pgval_type_display(t->cols[c].type));
			return -1;
		}
		add_out(d, key, c < 0 ? 0 : (size_t)c, s->agg, !s->column);
		if (d->is_agg && s->agg == RT_QUERY_AGG_NONE) {
			d->groups = rt_xrealloc(d->groups, (d->n_groups + 1) * sizeof *d->groups);
			d->groups[d->n_groups++] = (size_t)c;
		}
	}
	char why[300];
	if (rt_store_check_columns(t, &q->where, why, sizeof why)) {
		snprintf(err, err_cap, "42703: %s", why);
		return -1;
	}
	for (size_t i = 0; i < q->n_order; i++) {
		long c = col_index(t, q->order[i].column);
		if (c < 0) {
			snprintf(err, err_cap, "42703: column %s.%s does not exist", t->name,
				 q->order[i].column);
			return -1;
		}
		if (d->is_agg && !has_index(d->groups, d->n_groups, (size_t)c)) {
			snprintf(err, err_cap,
				 "RTS400: with aggregates order may name only group columns (%s)",
				 q->order[i].column);
			return -1;
		}
		add_ord(d, (size_t)c, q->order[i].is_desc, q->order[i].nulls);
	}
	if (!d->is_agg && q->limit >= 0 && (q->limit > RT_LIVE_MAX_ROWS ||
					     q->offset > RT_LIVE_MAX_ROWS - q->limit)) {
		snprintf(err, err_cap, "RTS413: offset plus limit may be at most %d", RT_LIVE_MAX_ROWS);
		return -1;
	}
	if (d->is_agg) {
		if (q->limit >= 0 || q->offset > 0) {
			snprintf(err, err_cap, "RTS400: limit and offset are not supported with aggregates");
			return -1;
		}
		for (size_t i = 0; i < d->n_groups; i++)
			add_ord(d, d->groups[i], false, RT_QUERY_NULLS_DEFAULT);
	} else {
		for (size_t i = 0; i < d->n_pk; i++)
			add_ord(d, d->pk[i], false, RT_QUERY_NULLS_DEFAULT);
	}
	if (q->n_on_conflict || q->n_columns) {
		snprintf(err, err_cap, "RTS400: on_conflict and columns are for writes");
		return -1;
	}
	return 0;
}

struct rt_live_def *rt_live_def_parse(struct rt_store *store, const json_t *entry, char *err,
				      size_t err_cap)
{
	const char *id = json_string_value(json_object_get(entry, "id"));
	const char *table = json_string_value(json_object_get(entry, "table"));
	const json_t *js = json_object_get(entry, "schema");
	const json_t *jq = json_object_get(entry, "query");
	if (!json_is_object(entry) || !id || !table || (js && !json_is_string(js)) ||
	    (jq && !json_is_string(jq) && !json_is_null(jq))) {
		snprintf(err, err_cap, "RTS400: a live query is {\"id\", \"table\", \"schema\"?, "
				       "\"query\"?} with string values");
		return NULL;
	}
	size_t id_len = strlen(id);
	if (!id_len || id_len > RT_LIVE_MAX_ID) {
		snprintf(err, err_cap, "RTS400: a live query id is 1 to %d bytes", RT_LIVE_MAX_ID);
		return NULL;
	}
	const char *schema = js ? json_string_value(js) : "public";
	const struct rt_store_table *t = rt_store_table(store, schema, table);
	if (!t) {
		snprintf(err, err_cap, "PGRST205: Could not find the table '%s.%s' in the schema cache",
			 schema, table);
		return NULL;
	}
	const char *qs = jq && json_is_string(jq) ? json_string_value(jq) : "";
	size_t qs_len = json_is_string(jq) ? json_string_length(jq) : 0;
	if (strlen(qs) != qs_len) {
		snprintf(err, err_cap, "PGRST100: a query string cannot hold a NUL byte");
		return NULL;
	}
	struct rt_live_def *d = rt_xcalloc(1, sizeof *d);
	d->id = rt_xstrdup(id);
	d->t = t;
	char perr[256];
	if (rt_query_parse(qs, qs_len, &d->q, perr, sizeof perr)) {
		snprintf(err, err_cap, "PGRST100: %s", perr);
		rt_live_def_free(d);
		return NULL;
	}
	if (def_shape(d, err, err_cap)) {
		rt_live_def_free(d);
		return NULL;
	}
	struct rt_buf c;
	rt_buf_init(&c);
	rt_buf_printf(&c, "%s%c%s%c", t->schema, 0x1f, t->name, 0x1f);
	rt_buf_append(&c, qs, qs_len);
	d->canon = rt_buf_detach(&c, NULL);
	d->text = rt_xstrdup(qs);
	return d;
}

int rt_live_opts_parse(const json_t *obj, struct rt_live_opts *o, char *err, size_t err_cap)
{
	*o = (struct rt_live_opts){0};
	if (!obj)
		return 0;
	static const char *const names[] = {"throttle_ms", "debounce_ms", "max_wait_ms"};
	unsigned *fields[] = {&o->throttle_ms, &o->debounce_ms, &o->max_wait_ms};
	for (size_t i = 0; i < 3; i++) {
		const json_t *v = json_object_get(obj, names[i]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > RT_LIVE_MAX_WINDOW_MS) {
			snprintf(err, err_cap, "%s must be an integer from 0 to %d", names[i],
				 RT_LIVE_MAX_WINDOW_MS);
			return -1;
		}
		*fields[i] = (unsigned)json_integer_value(v);
	}
	if (o->throttle_ms && o->debounce_ms) {
		snprintf(err, err_cap, "throttle_ms and debounce_ms cannot be combined");
		return -1;
	}
	if (o->debounce_ms && !o->max_wait_ms)
		o->max_wait_ms = 4 * o->debounce_ms;
	if (o->max_wait_ms && o->max_wait_ms < o->debounce_ms)
		o->max_wait_ms = o->debounce_ms;
	return 0;
}

/* ---- values and rows ---- */

static const char *type_of(const char *column, void *ctx)
{
	const struct rt_store_column *c = rt_store_column(ctx, column);
	return c ? c->type : NULL;
}

/* Compares two non-null values of a column of type `type` as PostgreSQL
 * orders them (text by bytes). */
static int cmp_value(const char *type, const json_t *a, const json_t *b)
{
	switch (rt_pgval_class_of(type)) {
	case RT_PGVAL_NUM: {
		struct rt_pgval_num x, y;
		if (rt_pgval_num_of_json(a, &x) && rt_pgval_num_of_json(b, &y))
			return rt_pgval_num_cmp(&x, &y);
		break;
	}
	case RT_PGVAL_BOOL: {
		bool x, y;
		if (rt_pgval_bool_of_json(a, &x) && rt_pgval_bool_of_json(b, &y))
			return (int)x - (int)y;
		break;
	}
	case RT_PGVAL_TEXT:
		break;
	}
	char *oa = NULL, *ob = NULL;
	const char *sa = rt_pgval_text_of_json(a, &oa), *sb = rt_pgval_text_of_json(b, &ob);
	int c = strcmp(sa ? sa : "", sb ? sb : "");
	free(oa);
	free(ob);
	return c < 0 ? -1 : c > 0;
}

static const json_t *value_of(const struct rt_live_def *d, const json_t *row, size_t col)
{
	const json_t *v = json_object_get(row, d->t->cols[col].name);
	return v && !json_is_null(v) ? v : NULL;
}

/* The definition's total order over rows (or groups, as rows of their values). */
static int cmp_rows(const struct rt_live_def *d, const json_t *a, const json_t *b)
{
	for (size_t i = 0; i < d->n_ord; i++) {
		const struct ord *o = &d->ord[i];
		const json_t *x = value_of(d, a, o->col), *y = value_of(d, b, o->col);
		int c;
		if (!x || !y)
			c = !x && !y ? 0 : (!x) == o->is_nulls_first ? -1 : 1;
		else
			c = cmp_value(d->t->cols[o->col].type, x, y) * (o->is_desc ? -1 : 1);
		if (c)
			return c;
	}
	return 0;
}

/* The JSON array text of a row's values at cols: a row's or a group's key. */
static char *key_of(const struct rt_live_def *d, const json_t *row, const size_t *cols, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const json_t *v = value_of(d, row, cols[i]);
		json_array_append_new(a, v ? json_deep_copy(v) : json_null());
	}
	char *s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s ? s : rt_xstrdup("[]");
}

/* ---- maintained queries ---- */

/*
 * The change index: per table, the maintained queries by the values of their
 * top-level `eq` conjuncts (the definition's and the visibility's), so that
 * a change visits only the queries whose eq conjuncts its old or new row
 * satisfies, and the queries without any (the scan list). A row that does
 * not satisfy a query's eq conjuncts cannot match its filter, and a change
 * neither of whose rows matches leaves a query as it is.
 */
struct ix_bucket { /* the queries of one signature with one tuple of values */
	char *key;
	struct ix_sig *sig;
	struct rt_live_query **qs;
	size_t n_qs, cap_qs;
	UT_hash_handle hh;
};

struct ix_sig { /* the queries of one table indexed by the same columns */
	size_t *cols; /* ascending */
	enum rt_pgval_class *cls; /* their comparison classes */
	size_t n_cols;
	struct ix_bucket *buckets;
	size_t n_queries;
	struct ix_sig *next;
};

struct ix_table {
	const struct rt_store_table *t;
	struct rt_live_query **scan; /* without an indexable conjunct */
	size_t n_scan, cap_scan;
	struct ix_sig *sigs;
	size_t n_queries;
	UT_hash_handle hh;
};

struct wrow { /* a held row of a window */
	char *key;
	json_t *row; /* the whole row; never modified once held */
	UT_hash_handle hh;
};

struct acc { /* one aggregated column of one group */
	long long nn; /* non-null values */
	bool is_real; /* the sum is a double (a real column, or int64 overflow) */
	long long isum;
	double dsum;
	json_t *lo, *hi; /* extremes (NULL: none or stale) */
	bool lo_stale, hi_stale;
};

struct group {
	char *key;
	json_t *vals; /* a row object holding the group columns */
	long long n;  /* rows */
	struct acc *accs;
	json_t *out;  /* the output row as last computed */
	/* per batch */
	uint64_t stamp;
	bool was_in;
	json_t *was_out;
	UT_hash_handle hh;
};

struct hop { /* a result key touched at a position */
	uint64_t pos;
	char *key;
	bool was_in;  /* in the result before this hop */
	bool is_move; /* may have moved (or entered, or left) */
};

struct snap { /* the result's entries before a batch (windows) */
	const char *key; /* borrowed from the held row (kept alive by row ref) */
	char *key_own;
	json_t *row;
	UT_hash_handle hh;
};

struct rt_live_query {
	char *key;             /* definition canon + visibility canon */
	struct rt_live_def *d; /* owned */
	char *role;
	json_t *claims;
	enum rt_policy_verdict vis;
	struct rt_query_node pred; /* RT_POLICY_ROWS */
	uint64_t pol_version;
	unsigned users; /* subscriber entries and in-process opens */
	bool is_listed; /* in rt_live's table (counted in the metrics) */
	uint64_t idle_since_ms;
	bool is_broken; /* an error after opening: no longer maintained */
	char *error;    /* its text */

	uint64_t valid_from; /* the first read's position: changes at or below are in it */
	/* an aggregate's first read, exactly (PostgreSQL: which changes after
	 * valid_from its snapshot already counts); dropped once past it */
	struct rt_read_mark mark;
	uint64_t skip_to;    /* changes at or below are in the state already (re-reads) */
	uint64_t settle_pos; /* the state may reflect changes up to here */
	uint64_t pos;        /* the position the state reflects */
	uint64_t changed_pos; /* the position of the newest hop */

	/* windows */
	struct wrow **rows; /* held, in order */
	size_t n_rows, cap_rows;
	struct wrow *by_key;
	bool is_complete;   /* every matching row is held */
	size_t target;      /* rows to hold after a read */
	/* aggregates */
	struct group *groups; /* by key */
	struct group **sorted;
	size_t n_sorted;
	struct group **touched;
	size_t n_touched, cap_touched;

	/* per batch */
	uint64_t stamp;
	struct snap *before;
	bool needs_reread;

	/* history */
	struct hop *hops; /* ring */
	size_t hop_head, n_hops;
	uint64_t floor; /* diffs from positions below this cannot be made */

	/* one rendered diff, for subscribers at the same position */
	uint64_t cache_since, cache_pos;
	char *cache_text;

	/* the change index: where q is listed, and the change that last visited it */
	struct ix_table *ix_t;
	struct ix_bucket *ix_b; /* NULL: in ix_t's scan list */
	uint64_t visit;

	UT_hash_handle hh;
};

/* ---- subscribers ---- */

struct entry {
	char *id;
	struct rt_live_query *q; /* NULL with error */
	char *error;             /* "CODE: message" still to send */
	uint64_t since;          /* the position the client's copy reflects */
	bool needs_result, is_resync;
};

struct rt_live_sub {
	char *key;
	char *topic;
	enum rt_phx_vsn vsn; /* the only frame its socket reads */
	char *role;
	json_t *claims;
	struct rt_live_opts o;
	uint64_t resume_pos;
	struct entry *e;
	size_t n_e;
	uint64_t sent_ms, dirty_ms, quiet_ms; /* last message; first and last unsent change */
	uint64_t seen_pos; /* the newest change of its queries noticed */
	bool is_dirty;
	struct rt_live_sub *prev, *next;
};

enum req_kind { REQ_NEW, REQ_ADD, REQ_REMOVE, REQ_FREE };

struct req {
	enum req_kind kind;
	struct rt_live_sub *s;
	json_t *queries; /* REQ_ADD: the definitions, to parse on the change thread */
	char *id;
	struct req *next;
};

struct shared { /* one rendered message for the subscribers with the same entries */
	char *sig;      /* per entry: its query, position and id (binary, sig_len bytes) */
	size_t sig_len;
	char *payload;  /* NULL: nothing to send */
	size_t len;
	UT_hash_handle hh;
};

struct rt_live {
	struct rt_store *store;
	struct rt_hub *hub;
	pthread_mutex_t mu; /* requests */
	struct req *reqs;
	/* change thread */
	struct rt_live_query *queries;
	struct ix_table *ix; /* the queries by table and eq conjuncts */
	struct rt_live_query **batch; /* the queries a batch touched */
	size_t n_batch, cap_batch;
	uint64_t visit;
	struct shared *shared; /* the messages of one pass over the subscribers */
	struct rt_live_sub *subs;
	uint64_t stamp;
	uint64_t pol_version;
	size_t n_subscriptions;
	uint64_t n_applied;
	uint64_t last_pos;
	bool is_backed_up; /* this pass: the workers hold a backlog (folding) */
};

struct rt_live *rt_live_new(struct rt_store *store, struct rt_hub *hub)
{
	struct rt_live *l = rt_xcalloc(1, sizeof *l);
	l->store = store;
	l->hub = hub;
	pthread_mutex_init(&l->mu, NULL);
	l->pol_version = rt_store_policies_version(store);
	l->last_pos = rt_store_last_pos(store);
	return l;
}

/* ---- reading from the store ---- */

static struct rt_auth who_of(const struct rt_live_query *q)
{
	return (struct rt_auth){.role = q->role, .claims = q->claims, .topic = NULL};
}

/* Stops q's maintenance with message ("CODE: text"). */
static void set_error(struct rt_live_query *q, const char *message)
{
	if (q->is_broken)
		return;
	q->is_broken = true;
	q->error = rt_xstrdup(message);
}

/* A read of q's table under q's requester: the definition's filters (and
 * extra conditions), the given select and order, limit rows. */
static int read_rows(struct rt_live *l, struct rt_live_query *q, struct rt_query_select *sel,
		     size_t n_sel, const struct rt_query_node *extra, size_t n_extra, bool is_ordered,
		     long long limit, json_t **rows, uint64_t *pos, struct rt_read_mark *mark)
{
	const struct rt_live_def *d = q->d;
	struct rt_query_node *kids = rt_xcalloc(1 + n_extra, sizeof *kids);
	kids[0] = d->q.where; /* shallow: nothing here is freed */
	for (size_t i = 0; i < n_extra; i++)
		kids[1 + i] = extra[i];
	struct rt_query_order *order = NULL;
	size_t n_order = 0;
	if (is_ordered) {
		order = rt_xcalloc(d->n_ord ? d->n_ord : 1, sizeof *order);
		for (size_t i = 0; i < d->n_ord; i++)
			order[n_order++] = (struct rt_query_order){
				.column = d->t->cols[d->ord[i].col].name,
				.is_desc = d->ord[i].is_desc,
				.nulls = d->ord[i].is_nulls_first ? RT_QUERY_NULLS_FIRST
								  : RT_QUERY_NULLS_LAST};
	}
	struct rt_query rq = {.select = sel, .n_select = n_sel, .order = order, .n_order = n_order,
			      .limit = limit, .offset = 0};
	rq.where = (struct rt_query_node){.kind = RT_QUERY_AND, .children = kids,
					  .n_children = 1 + n_extra};
	struct rt_auth who = who_of(q);
	struct rt_read r = {
		.table = d->t, .query = &rq, .position = pos, .mark = mark, .who = &who};
	struct rt_store_error e = {0};
	atomic_fetch_add(&rt_metrics_live_reads, 1);
	int rc = rt_store_read(l->store, &r, rows, NULL, &e);
	if (rc) {
		char msg[700];
		snprintf(msg, sizeof msg, "%s: %s", e.code[0] ? e.code : "RTS500", e.message);
		set_error(q, msg);
	}
	free(kids);
	free(order);
	return rc;
}

/* ---- windows ---- */

static size_t need_of(const struct rt_live_def *d)
{
	return d->q.limit < 0 ? SIZE_MAX : (size_t)(d->q.offset + d->q.limit);
}

static void wrow_free(struct wrow *w)
{
	free(w->key);
	json_decref(w->row);
	free(w);
}

static void window_clear(struct rt_live_query *q)
{
	HASH_CLEAR(hh, q->by_key);
	for (size_t i = 0; i < q->n_rows; i++)
		wrow_free(q->rows[i]);
	q->n_rows = 0;
}

/* Where row goes among the held rows (the first held row after it). */
static size_t window_find(const struct rt_live_query *q, const json_t *row)
{
	size_t lo = 0, hi = q->n_rows;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_rows(q->d, q->rows[mid]->row, row) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void window_insert(struct rt_live_query *q, char *key, json_t *row)
{
	size_t at = window_find(q, row);
	if (q->n_rows == q->cap_rows) {
		q->cap_rows = q->cap_rows ? 2 * q->cap_rows : 32;
		q->rows = rt_xrealloc(q->rows, q->cap_rows * sizeof *q->rows);
	}
	memmove(&q->rows[at + 1], &q->rows[at], (q->n_rows - at) * sizeof *q->rows);
	struct wrow *w = rt_xmalloc(sizeof *w);
	*w = (struct wrow){.key = key, .row = row};
	q->rows[at] = w;
	q->n_rows++;
	HASH_ADD_KEYPTR(hh, q->by_key, w->key, strlen(w->key), w);
}

static size_t window_index(const struct rt_live_query *q, const struct wrow *w)
{
	size_t at = window_find(q, w->row);
	while (at < q->n_rows && q->rows[at] != w)
		at++; /* equal order: keys differ, so at most the pk decides */
	return at;
}

static void window_remove(struct rt_live_query *q, struct wrow *w)
{
	size_t at = window_index(q, w);
	HASH_DEL(q->by_key, w);
	if (at < q->n_rows) {
		memmove(&q->rows[at], &q->rows[at + 1], (q->n_rows - at - 1) * sizeof *q->rows);
		q->n_rows--;
	}
	wrow_free(w);
}

/* Reads the window's first target rows again. */
static int window_read(struct rt_live *l, struct rt_live_query *q, uint64_t *pos)
{
	const struct rt_live_def *d = q->d;
	size_t need = need_of(d);
	long long ask = RT_STORE_MAX_ROWS; /* a read returns at most this many */
	if (need != SIZE_MAX) {
		size_t target = need + (need > MIN_RESERVE ? need : MIN_RESERVE);
		ask = target < RT_STORE_MAX_ROWS ? (long long)target : RT_STORE_MAX_ROWS;
	}
	json_t *rows = NULL;
	if (read_rows(l, q, NULL, 0, NULL, 0, true, ask, &rows, pos, NULL))
		return -1;
	if (need == SIZE_MAX && json_array_size(rows) > RT_LIVE_MAX_ROWS) {
		json_decref(rows);
		set_error(q, "RTS413: the result holds more than 9999 rows; add a limit");
		return -1;
	}
	window_clear(q);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		char *key = key_of(d, row, d->pk, d->n_pk);
		struct wrow *old;
		HASH_FIND_STR(q->by_key, key, old);
		if (old) { /* a store that returned a row twice */
			free(key);
			continue;
		}
		window_insert(q, key, json_incref(row));
	}
	q->is_complete = (long long)json_array_size(rows) < ask;
	q->target = (size_t)ask;
	json_decref(rows);
	return 0;
}

/* ---- aggregates ---- */

static void group_free(const struct rt_live_def *d, struct group *g)
{
	for (size_t i = 0; g->accs && i < d->n_accs; i++) {
		json_decref(g->accs[i].lo);
		json_decref(g->accs[i].hi);
	}
	free(g->accs);
	free(g->key);
	json_decref(g->vals);
	json_decref(g->out);
	json_decref(g->was_out);
	free(g);
}

static void groups_clear(struct rt_live_query *q)
{
	struct group *g, *tmp;
	HASH_ITER(hh, q->groups, g, tmp) {
		HASH_DEL(q->groups, g);
		group_free(q->d, g);
	}
	free(q->sorted);
	q->sorted = NULL;
	q->n_sorted = 0;
	q->n_touched = 0;
}

static int by_group(const void *a, const void *b, void *ctx)
{
	const struct group *x = *(struct group *const *)a, *y = *(struct group *const *)b;
	int c = cmp_rows(ctx, x->vals, y->vals);
	return c ? c : strcmp(x->key, y->key);
}

static void groups_sort(struct rt_live_query *q)
{
	q->n_sorted = HASH_COUNT(q->groups);
	q->sorted = rt_xrealloc(q->sorted, (q->n_sorted ? q->n_sorted : 1) * sizeof *q->sorted);
	size_t i = 0;
	for (struct group *g = q->groups; g; g = g->hh.next)
		q->sorted[i++] = g;
	qsort_r(q->sorted, q->n_sorted, sizeof *q->sorted, by_group, (void *)q->d);
}

static size_t group_index(const struct rt_live_query *q, const struct group *g)
{
	size_t lo = 0, hi = q->n_sorted;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct group *m = q->sorted[mid];
		int c = cmp_rows(q->d, m->vals, g->vals);
		if (!c)
			c = strcmp(m->key, g->key);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct group *group_new(const struct rt_live_def *d, const json_t *row, char *key)
{
	struct group *g = rt_xcalloc(1, sizeof *g);
	g->key = key;
	g->vals = json_object();
	for (size_t i = 0; i < d->n_groups; i++) {
		const char *name = d->t->cols[d->groups[i]].name;
		const json_t *v = json_object_get(row, name);
		json_object_set_new(g->vals, name, v ? json_deep_copy(v) : json_null());
	}
	g->accs = rt_xcalloc(d->n_accs ? d->n_accs : 1, sizeof *g->accs);
	for (size_t i = 0; i < d->n_accs; i++)
		g->accs[i].is_real = !rt_pgval_is_int_type(d->t->cols[d->accs[i]].type);
	return g;
}

static json_t *num_json(const struct acc *a)
{
	return a->is_real ? json_real(a->dsum) : json_integer(a->isum);
}

static json_t *group_out(const struct rt_live_def *d, const struct group *g)
{
	json_t *o = json_object();
	for (size_t i = 0; i < d->n_outs; i++) {
		const struct out *u = &d->outs[i];
		const struct acc *a = u->is_rows || u->fn == RT_QUERY_AGG_NONE ? NULL : &g->accs[u->acc];
		json_t *v = NULL;
		switch (u->fn) {
		case RT_QUERY_AGG_NONE:
			v = json_incref(json_object_get(g->vals, d->t->cols[u->col].name));
			break;
		case RT_QUERY_AGG_COUNT:
			v = json_integer(a ? a->nn : g->n);
			break;
		case RT_QUERY_AGG_SUM:
			v = a->nn ? num_json(a) : NULL;
			break;
		case RT_QUERY_AGG_AVG:
			v = a->nn ? json_real((a->is_real ? a->dsum : (double)a->isum) / (double)a->nn)
				  : NULL;
			break;
		case RT_QUERY_AGG_MIN:
			v = a->nn && a->lo ? json_incref(a->lo) : NULL;
			break;
		case RT_QUERY_AGG_MAX:
			v = a->nn && a->hi ? json_incref(a->hi) : NULL;
			break;
		}
		json_object_set_new(o, u->key, v ? v : json_null());
	}
	return o;
}

static void acc_add(const struct rt_live_def *d, size_t i, struct acc *a, const json_t *v, int sign)
{
	const char *type = d->t->cols[d->accs[i]].type;
	a->nn += sign;
	if (rt_pgval_class_of(type) == RT_PGVAL_NUM) {
		struct rt_pgval_num x;
		if (rt_pgval_num_of_json(v, &x)) {
			long long r;
			if (!a->is_real && x.is_int &&
			    !__builtin_add_overflow(a->isum, sign * x.i, &r)) {
				a->isum = r;
			} else {
				if (!a->is_real) {
					a->is_real = true;
					a->dsum = (double)a->isum;
				}
				a->dsum += sign * x.d;
			}
		}
	}
	/* only the extremes the definition selects are kept (and read again) */
	bool has_lo = d->acc_lo[i], has_hi = d->acc_hi[i];
	if (sign > 0) {
		if (has_lo && !a->lo_stale && (!a->lo || cmp_value(type, v, a->lo) < 0)) {
			json_decref(a->lo);
			a->lo = json_deep_copy(v);
		}
		if (has_hi && !a->hi_stale && (!a->hi || cmp_value(type, v, a->hi) > 0)) {
			json_decref(a->hi);
			a->hi = json_deep_copy(v);
		}
	} else {
		if (has_lo && a->lo && cmp_value(type, v, a->lo) <= 0)
			a->lo_stale = true;
		if (has_hi && a->hi && cmp_value(type, v, a->hi) >= 0)
			a->hi_stale = true;
	}
}

/* Notes g as touched in this batch (its state before, for the hops). */
static void group_touch(struct rt_live_query *q, struct group *g, bool was_in)
{
	if (g->stamp == q->stamp)
		return;
	g->stamp = q->stamp;
	g->was_in = was_in;
	json_decref(g->was_out);
	g->was_out = was_in && g->out ? json_incref(g->out) : NULL;
	if (q->n_touched == q->cap_touched) {
		q->cap_touched = q->cap_touched ? 2 * q->cap_touched : 16;
		q->touched = rt_xrealloc(q->touched, q->cap_touched * sizeof *q->touched);
	}
	q->touched[q->n_touched++] = g;
}

/* Adds (sign 1) or removes (-1) one row's contribution. */
static void group_apply(struct rt_live_query *q, const json_t *row, int sign)
{
	const struct rt_live_def *d = q->d;
	char *key = key_of(d, row, d->groups, d->n_groups);
	struct group *g;
	HASH_FIND_STR(q->groups, key, g);
	if (!g) {
		g = group_new(d, row, key);
		HASH_ADD_KEYPTR(hh, q->groups, g->key, strlen(g->key), g);
		group_touch(q, g, false);
	} else {
		free(key);
		group_touch(q, g, true);
	}
	g->n += sign;
	for (size_t i = 0; i < d->n_accs; i++) {
		const json_t *v = value_of(d, row, d->accs[i]);
		if (v)
			acc_add(d, i, &g->accs[i], v, sign);
	}
}

/* The select of an aggregate read: groups, rows, then per column its
 * non-null count, sum (numeric columns) and the extremes selected. */
static struct rt_query_select *agg_select(const struct rt_live_def *d, bool with_groups,
					  bool with_sums, size_t *n)
{
	struct rt_query_select *s = rt_xcalloc(d->n_groups + 1 + 4 * d->n_accs, sizeof *s);
	size_t k = 0;
	for (size_t i = 0; with_groups && i < d->n_groups; i++)
		s[k++] = (struct rt_query_select){.column = rt_xstrdup(d->t->cols[d->groups[i]].name)};
	s[k++] = (struct rt_query_select){.alias = rt_xstrdup("_n"), .agg = RT_QUERY_AGG_COUNT};
	for (size_t i = 0; i < d->n_accs; i++) {
		const char *c = d->t->cols[d->accs[i]].name;
		char a[32];
		snprintf(a, sizeof a, "_k%zu", i);
		s[k++] = (struct rt_query_select){rt_xstrdup(c), rt_xstrdup(a), RT_QUERY_AGG_COUNT};
		if (with_sums && rt_pgval_class_of(d->t->cols[d->accs[i]].type) == RT_PGVAL_NUM) {
			snprintf(a, sizeof a, "_s%zu", i);
			s[k++] = (struct rt_query_select){rt_xstrdup(c), rt_xstrdup(a), RT_QUERY_AGG_SUM};
		}
		if (d->acc_lo[i]) {
			snprintf(a, sizeof a, "_l%zu", i);
			s[k++] = (struct rt_query_select){rt_xstrdup(c), rt_xstrdup(a),
							  RT_QUERY_AGG_MIN};
		}
		if (d->acc_hi[i]) {
			snprintf(a, sizeof a, "_h%zu", i);
			s[k++] = (struct rt_query_select){rt_xstrdup(c), rt_xstrdup(a),
							  RT_QUERY_AGG_MAX};
		}
	}
	*n = k;
	return s;
}

static void select_free(struct rt_query_select *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].column);
		free(s[i].alias);
	}
	free(s);
}

static const json_t *get_acc(const json_t *row, const char *prefix, size_t i)
{
	char a[32];
	snprintf(a, sizeof a, "%s%zu", prefix, i);
	const json_t *v = json_object_get(row, a);
	return v && !json_is_null(v) ? v : NULL;
}

/* Sets a group's accumulators from a row of an aggregate read. */
static void acc_load(const struct rt_live_def *d, struct group *g, const json_t *r,
		     bool with_sums)
{
	for (size_t i = 0; i < d->n_accs; i++) {
		struct acc *a = &g->accs[i];
		const json_t *k = get_acc(r, "_k", i), *lo = get_acc(r, "_l", i),
			     *hi = get_acc(r, "_h", i);
		if (with_sums) {
			a->nn = k ? (long long)json_number_value(k) : 0;
			const json_t *s = get_acc(r, "_s", i);
			struct rt_pgval_num x = {0};
			if (s && rt_pgval_num_of_json(s, &x) && x.is_int && !a->is_real) {
				a->isum = x.i;
			} else if (s) {
				a->is_real = true;
				a->dsum = json_number_value(s);
			}
		}
		json_decref(a->lo);
		json_decref(a->hi);
		a->lo = lo ? json_deep_copy(lo) : NULL;
		a->hi = hi ? json_deep_copy(hi) : NULL;
		a->lo_stale = a->hi_stale = false;
	}
}

static int groups_read(struct rt_live *l, struct rt_live_query *q, uint64_t *pos)
{
	const struct rt_live_def *d = q->d;
	size_t n_sel;
	struct rt_query_select *sel = agg_select(d, true, true, &n_sel);
	json_t *rows = NULL;
	rt_read_mark_deinit(&q->mark);
	int rc = read_rows(l, q, sel, n_sel, NULL, 0, false, RT_STORE_MAX_ROWS, &rows, pos,
			   &q->mark);
	select_free(sel, n_sel);
	if (rc)
		return -1;
	if (json_array_size(rows) > RT_LIVE_MAX_ROWS) {
		json_decref(rows);
		set_error(q, "RTS413: the result holds more than 9999 groups");
		return -1;
	}
	groups_clear(q);
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r) {
		const json_t *n = json_object_get(r, "_n");
		if (d->n_groups && (!n || json_number_value(n) <= 0))
			continue;
		char *key = key_of(d, r, d->groups, d->n_groups);
		struct group *g;
		HASH_FIND_STR(q->groups, key, g);
		if (g) {
			free(key);
			continue;
		}
		g = group_new(d, r, key);
		g->n = n ? (long long)json_number_value(n) : 0;
		acc_load(d, g, r, true);
		HASH_ADD_KEYPTR(hh, q->groups, g->key, strlen(g->key), g);
	}
	json_decref(rows);
	if (!d->n_groups && !q->groups) { /* the whole table is one group, even empty */
		struct group *g = group_new(d, NULL, rt_xstrdup("[]"));
		HASH_ADD_KEYPTR(hh, q->groups, g->key, strlen(g->key), g);
	}
	for (struct group *g = q->groups; g; g = g->hh.next) {
		json_decref(g->out);
		g->out = group_out(d, g);
	}
	groups_sort(q);
	return 0;
}

/* The value of a group column as a filter literal. */
static char *literal_of(const json_t *v)
{
	if (json_is_string(v))
		return rt_xstrdup(json_string_value(v));
	if (json_is_true(v))
		return rt_xstrdup("true");
	if (json_is_false(v))
		return rt_xstrdup("false");
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
	return s ? s : rt_xstrdup("");
}

/* Reads the extremes of one group again. */
static int group_reread(struct rt_live *l, struct rt_live_query *q, struct group *g,
			uint64_t *pos)
{
	const struct rt_live_def *d = q->d;
	struct rt_query_node *conds = rt_xcalloc(d->n_groups ? d->n_groups : 1, sizeof *conds);
	char **vals = rt_xcalloc(d->n_groups ? d->n_groups : 1, sizeof *vals);
	for (size_t i = 0; i < d->n_groups; i++) {
		const char *name = d->t->cols[d->groups[i]].name;
		const json_t *v = json_object_get(g->vals, name);
		bool is_null = !v || json_is_null(v);
		vals[i] = is_null ? rt_xstrdup("null") : literal_of(v);
		conds[i] = (struct rt_query_node){.kind = RT_QUERY_COND, .column = (char *)name,
						  .op = is_null ? RT_QUERY_IS : RT_QUERY_EQ,
						  .values = &vals[i], .n_values = 1};
	}
	size_t n_sel;
	struct rt_query_select *sel = agg_select(d, false, false, &n_sel);
	json_t *rows = NULL;
	int rc = read_rows(l, q, sel, n_sel, conds, d->n_groups, false, 1, &rows, pos, NULL);
	select_free(sel, n_sel);
	for (size_t i = 0; i < d->n_groups; i++)
		free(vals[i]);
	free(vals);
	free(conds);
	if (rc)
		return -1;
	const json_t *r = json_array_get(rows, 0);
	acc_load(d, g, r ? r : json_object(), false);
	json_decref(rows);
	return 0;
}

/* ---- history ---- */

static void hop_push(struct rt_live_query *q, uint64_t pos, const char *key, bool was_in,
		     bool is_move)
{
	if (!q->hops)
		q->hops = rt_xcalloc(RT_LIVE_HISTORY, sizeof *q->hops);
	if (q->n_hops == RT_LIVE_HISTORY) {
		struct hop *old = &q->hops[q->hop_head];
		if (old->pos > q->floor)
			q->floor = old->pos;
		free(old->key);
		q->hop_head = (q->hop_head + 1) % RT_LIVE_HISTORY;
		q->n_hops--;
	}
	struct hop *h = &q->hops[(q->hop_head + q->n_hops) % RT_LIVE_HISTORY];
	*h = (struct hop){.pos = pos, .key = rt_xstrdup(key), .was_in = was_in, .is_move = is_move};
	q->n_hops++;
	q->changed_pos = pos;
	free(q->cache_text);
	q->cache_text = NULL;
}

static void history_clear(struct rt_live_query *q, uint64_t floor)
{
	for (size_t i = 0; i < q->n_hops; i++)
		free(q->hops[(q->hop_head + i) % RT_LIVE_HISTORY].key);
	q->n_hops = 0;
	q->hop_head = 0;
	q->floor = floor;
	free(q->cache_text);
	q->cache_text = NULL;
}

/* Whether q can tell what changed since position since. */
static bool history_reaches(const struct rt_live_query *q, uint64_t since)
{
	return since >= q->floor && since >= q->valid_from && since <= q->pos;
}

/* ---- the result and its slices ---- */

static json_t *project(const struct rt_live_def *d, const json_t *row)
{
	json_t *o = json_object();
	for (size_t i = 0; i < d->n_outs; i++) {
		const json_t *v = json_object_get(row, d->t->cols[d->outs[i].col].name);
		json_object_set_new(o, d->outs[i].key, v ? json_deep_copy(v) : json_null());
	}
	return o;
}

/* The result's range of held rows: [*from, *to). */
static void slice_of(const struct rt_live_query *q, size_t *from, size_t *to)
{
	size_t off = (size_t)q->d->q.offset;
	size_t need = need_of(q->d);
	*from = off < q->n_rows ? off : q->n_rows;
	*to = need < q->n_rows ? need : q->n_rows;
}

static void snap_clear(struct rt_live_query *q)
{
	struct snap *s, *tmp;
	HASH_ITER(hh, q->before, s, tmp) {
		HASH_DEL(q->before, s);
		json_decref(s->row);
		free(s->key_own);
		free(s);
	}
}

/* Takes the window's result before a batch first changes it. */
static void window_snap(struct rt_live_query *q)
{
	size_t from, to;
	slice_of(q, &from, &to);
	for (size_t i = from; i < to; i++) {
		struct snap *s = rt_xmalloc(sizeof *s);
		s->key_own = rt_xstrdup(q->rows[i]->key);
		s->key = s->key_own;
		s->row = json_incref(q->rows[i]->row);
		HASH_ADD_KEYPTR(hh, q->before, s->key, strlen(s->key), s);
	}
}

static bool same_outputs(const struct rt_live_def *d, const json_t *a, const json_t *b)
{
	if (a == b)
		return true;
	for (size_t i = 0; i < d->n_outs; i++) {
		const char *c = d->t->cols[d->outs[i].col].name;
		const json_t *x = json_object_get(a, c), *y = json_object_get(b, c);
		if (!json_equal(x ? x : json_null(), y ? y : json_null()))
			return false;
	}
	return true;
}

static bool same_order(const struct rt_live_def *d, const json_t *a, const json_t *b)
{
	if (a == b)
		return true;
	for (size_t i = 0; i < d->n_ord; i++) {
		const char *c = d->t->cols[d->ord[i].col].name;
		const json_t *x = json_object_get(a, c), *y = json_object_get(b, c);
		if (!json_equal(x ? x : json_null(), y ? y : json_null()))
			return false;
	}
	return true;
}

/* Records the batch's hops at pos: the result before against now. */
static void window_hops(struct rt_live_query *q, uint64_t pos)
{
	size_t from, to;
	slice_of(q, &from, &to);
	for (size_t i = from; i < to; i++) {
		const struct wrow *w = q->rows[i];
		struct snap *s;
		HASH_FIND_STR(q->before, w->key, s);
		if (!s) {
			hop_push(q, pos, w->key, false, true);
			continue;
		}
		if (!same_order(q->d, s->row, w->row))
			hop_push(q, pos, w->key, true, true);
		else if (!same_outputs(q->d, s->row, w->row))
			hop_push(q, pos, w->key, true, false);
		HASH_DEL(q->before, s);
		json_decref(s->row);
		free(s->key_own);
		free(s);
	}
	struct snap *s, *tmp;
	HASH_ITER(hh, q->before, s, tmp) {
		hop_push(q, pos, s->key, true, true);
		HASH_DEL(q->before, s);
		json_decref(s->row);
		free(s->key_own);
		free(s);
	}
}

static void group_hops(struct rt_live_query *q, uint64_t pos)
{
	const struct rt_live_def *d = q->d;
	bool is_resort = false;
	for (size_t i = 0; i < q->n_touched; i++) {
		struct group *g = q->touched[i];
		bool is_in = g->n > 0 || !d->n_groups;
		if (is_in) {
			json_decref(g->out);
			g->out = group_out(d, g);
		}
		if (g->was_in && !is_in)
			hop_push(q, pos, g->key, true, true);
		else if (!g->was_in && is_in)
			hop_push(q, pos, g->key, false, true);
		else if (is_in && !json_equal(g->was_out, g->out))
			hop_push(q, pos, g->key, true, false);
		json_decref(g->was_out);
		g->was_out = NULL;
		is_resort |= g->was_in != is_in;
	}
	q->n_touched = 0;
	struct group *g, *tmp;
	HASH_ITER(hh, q->groups, g, tmp) {
		if (g->n <= 0 && d->n_groups) {
			HASH_DEL(q->groups, g);
			group_free(d, g);
			is_resort = true;
		}
	}
	if (is_resort)
		groups_sort(q);
}

/* ---- applying changes ---- */

static bool row_matches(const struct rt_live_query *q, const json_t *row)
{
	if (!row)
		return false;
	void *t = (void *)q->d->t;
	if (rt_policy_eval(&q->d->q.where, row, type_of, t) != 1)
		return false;
	switch (q->vis) {
	case RT_POLICY_ALLOW_ALL:
		return true;
	case RT_POLICY_ROWS:
		return rt_policy_eval(&q->pred, row, type_of, t) == 1;
	case RT_POLICY_DENY_ALL:
	case RT_POLICY_OPAQUE:
		break;
	}
	return false;
}

static void begin_batch(struct rt_live_query *q, uint64_t stamp)
{
	if (q->stamp == stamp)
		return;
	q->stamp = stamp;
	q->needs_reread = false;
	if (!q->d->is_agg)
		window_snap(q);
}

static void window_apply(struct rt_live_query *q, const struct rt_change *ch)
{
	const struct rt_live_def *d = q->d;
	/* A held row matched when it was read or inserted, and the old row of
	 * its next change is that version: an old row that does not match is
	 * not held, so most changes cost a filter check, not a key (an old row
	 * without all its columns — PostgreSQL's key only — is looked up). A
	 * new row that does not match is not held either, unless its old row is
	 * (removed above). */
	bool is_old = ch->old_record && (json_object_size(ch->old_record) < d->t->n_cols ||
					 row_matches(q, ch->old_record));
	bool is_new = ch->record && ch->type != RT_CHANGE_DELETE && row_matches(q, ch->record);
	if (is_old) {
		char *k = key_of(d, ch->old_record, d->pk, d->n_pk);
		struct wrow *w;
		HASH_FIND_STR(q->by_key, k, w);
		free(k);
		if (w)
			window_remove(q, w);
	}
	if (is_new) {
		char *k = key_of(d, ch->record, d->pk, d->n_pk);
		struct wrow *w;
		HASH_FIND_STR(q->by_key, k, w);
		if (w) /* an insert of a row already held (a re-read saw it) */
			window_remove(q, w);
		if ((q->is_complete ||
		     (q->n_rows && cmp_rows(d, ch->record, q->rows[q->n_rows - 1]->row) < 0))) {
			window_insert(q, k, json_deep_copy(ch->record));
			k = NULL;
		}
		free(k);
	}
	if (!q->is_complete && q->n_rows < need_of(d))
		q->needs_reread = true;
}

static void group_change(struct rt_live_query *q, const struct rt_change *ch)
{
	if (ch->old_record && json_object_size(ch->old_record) < q->d->t->n_cols) {
		/* PostgreSQL without REPLICA IDENTITY FULL: only the old key */
		char msg[300];
		snprintf(msg, sizeof msg,
			 "RTS501: aggregates need the whole old row of a change; run ALTER TABLE %s "
			 "REPLICA IDENTITY FULL", q->d->t->name);
		set_error(q, msg);
		return;
	}
	if (ch->old_record && ch->type != RT_CHANGE_INSERT && row_matches(q, ch->old_record))
		group_apply(q, ch->old_record, -1);
	if (ch->record && ch->type != RT_CHANGE_DELETE && row_matches(q, ch->record))
		group_apply(q, ch->record, 1);
}

/* Ends a batch at pos: re-reads what ran dry, trims, records the hops. */
static void end_batch(struct rt_live *l, struct rt_live_query *q, uint64_t pos)
{
	const struct rt_live_def *d = q->d;
	if (d->is_agg) {
		for (size_t i = 0; i < q->n_touched; i++) {
			struct group *g = q->touched[i];
			bool is_stale = false;
			for (size_t k = 0; k < d->n_accs; k++) {
				struct acc *a = &g->accs[k];
				if (a->nn <= 0) {
					json_decref(a->lo);
					json_decref(a->hi);
					a->lo = a->hi = NULL;
					a->lo_stale = a->hi_stale = false;
				}
				is_stale |= a->lo_stale || a->hi_stale;
			}
			uint64_t rp = 0;
			if (is_stale && (g->n > 0) && !group_reread(l, q, g, &rp) && rp > q->settle_pos)
				q->settle_pos = rp;
		}
		if (!q->is_broken)
			group_hops(q, pos);
		return;
	}
	if (q->needs_reread) {
		uint64_t rp = 0;
		if (!window_read(l, q, &rp)) {
			if (rp > q->skip_to)
				q->skip_to = rp;
			if (rp > q->settle_pos)
				q->settle_pos = rp;
		}
	} else if (need_of(d) == SIZE_MAX && q->n_rows > RT_LIVE_MAX_ROWS) {
		set_error(q, "RTS413: the result holds more than 9999 rows; add a limit");
	} else if (q->target && q->n_rows > 2 * q->target) {
		while (q->n_rows > q->target) {
			struct wrow *w = q->rows[q->n_rows - 1];
			HASH_DEL(q->by_key, w);
			q->n_rows--;
			wrow_free(w);
		}
		q->is_complete = false;
	}
	if (!q->is_broken)
		window_hops(q, pos);
	snap_clear(q);
}

/* ---- the change index ---- */

/* A value's index form under class cls, appended to out: values that
 * compare equal (rt_pgval_compare) get the same form; false when the value
 * equals nothing (a NULL comparison). Numbers go by their double: equal
 * numbers have equal doubles; distinct ones may share a form, which costs a
 * visit, never a miss. */
static bool norm_num(const struct rt_pgval_num *x, struct rt_buf *out)
{
	double d = x->d;
	if (isnan(d)) {
		rt_buf_append_str(out, "nan");
		return true;
	}
	if (d == 0)
		d = 0; /* -0 */
	if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d)
		rt_buf_printf(out, "%lld", (long long)d); /* the same form, cheaper */
	else
		rt_buf_printf(out, "%.17g", d);
	return true;
}

static bool norm_literal(enum rt_pgval_class cls, const char *s, struct rt_buf *out)
{
	switch (cls) {
	case RT_PGVAL_NUM: {
		struct rt_pgval_num x;
		return rt_pgval_parse_num(s, &x) && norm_num(&x, out);
	}
	case RT_PGVAL_BOOL: {
		bool b;
		if (!rt_pgval_parse_bool(s, &b))
			return false;
		rt_buf_append_byte(out, b ? 't' : 'f');
		return true;
	}
	case RT_PGVAL_TEXT:
		break;
	}
	rt_buf_append_str(out, s);
	return true;
}

static bool norm_value(enum rt_pgval_class cls, const json_t *v, struct rt_buf *out)
{
	if (!v || json_is_null(v))
		return false;
	switch (cls) {
	case RT_PGVAL_NUM: {
		struct rt_pgval_num x;
		return rt_pgval_num_of_json(v, &x) && norm_num(&x, out);
	}
	case RT_PGVAL_BOOL: {
		bool b;
		if (!rt_pgval_bool_of_json(v, &b))
			return false;
		rt_buf_append_byte(out, b ? 't' : 'f');
		return true;
	}
	case RT_PGVAL_TEXT:
		break;
	}
	char *owned;
	const char *t = rt_pgval_text_of_json(v, &owned);
	if (t)
		rt_buf_append_str(out, t); /* up to a NUL, as strcmp compares */
	free(owned);
	return t != NULL;
}

struct eq_conj {
	size_t col;
	const char *value;
};

#define IX_MAX_COLS 8

/* Collects the top-level eq conjuncts of n (through non-negated ANDs), the
 * first per column. */
static void eq_collect(const struct rt_store_table *t, const struct rt_query_node *n,
		       struct eq_conj *out, size_t *n_out, int depth)
{
	if (n->is_negated || depth > 8)
		return;
	if (n->kind == RT_QUERY_AND) {
		for (size_t i = 0; i < n->n_children; i++)
			eq_collect(t, &n->children[i], out, n_out, depth + 1);
		return;
	}
	if (n->kind != RT_QUERY_COND || n->op != RT_QUERY_EQ || n->n_values != 1 || !n->column ||
	    !n->values[0])
		return;
	long c = col_index(t, n->column);
	if (c < 0 || *n_out == IX_MAX_COLS)
		return; /* a column the table lacks is NULL: not indexed */
	for (size_t i = 0; i < *n_out; i++)
		if (out[i].col == (size_t)c)
			return;
	out[(*n_out)++] = (struct eq_conj){.col = (size_t)c, .value = n->values[0]};
}

static int by_col(const void *a, const void *b)
{
	const struct eq_conj *x = a, *y = b;
	return x->col < y->col ? -1 : x->col > y->col;
}

static void push_query(struct rt_live_query ***v, size_t *n, size_t *cap, struct rt_live_query *q)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 8;
		*v = rt_xrealloc(*v, *cap * sizeof **v);
	}
	(*v)[(*n)++] = q;
}

static void drop_query(struct rt_live_query **v, size_t *n, const struct rt_live_query *q)
{
	for (size_t i = 0; i < *n; i++)
		if (v[i] == q) {
			memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof *v);
			--*n;
			return;
		}
}

/* Lists q in the index: under the values of its eq conjuncts (the
 * definition's and the visibility's), or in its table's scan list. */
static void ix_add(struct rt_live *l, struct rt_live_query *q)
{
	const struct rt_store_table *t = q->d->t;
	struct ix_table *it;
	HASH_FIND_PTR(l->ix, &t, it);
	if (!it) {
		it = rt_xcalloc(1, sizeof *it);
		it->t = t;
		HASH_ADD_PTR(l->ix, t, it);
	}
	it->n_queries++;
	q->ix_t = it;
	q->ix_b = NULL;
	struct eq_conj eq[IX_MAX_COLS];
	size_t n_eq = 0;
	if (q->vis == RT_POLICY_ALLOW_ALL || q->vis == RT_POLICY_ROWS) {
		eq_collect(t, &q->d->q.where, eq, &n_eq, 0);
		if (q->vis == RT_POLICY_ROWS)
			eq_collect(t, &q->pred, eq, &n_eq, 0);
	}
	qsort(eq, n_eq, sizeof *eq, by_col);
	/* The values joined by 0x1f: two tuples may share a key (a visit too
	 * many), equal tuples always do. */
	struct rt_buf k;
	rt_buf_init(&k);
	bool is_indexed = n_eq > 0;
	for (size_t i = 0; i < n_eq && is_indexed; i++) {
		is_indexed = norm_literal(rt_pgval_class_of(t->cols[eq[i].col].type), eq[i].value, &k);
		rt_buf_append_byte(&k, 0x1f);
	}
	if (!is_indexed) { /* no eq conjunct, or one no value equals (rare): scanned */
		rt_buf_deinit(&k);
		push_query(&it->scan, &it->n_scan, &it->cap_scan, q);
		return;
	}
	struct ix_sig *sig = it->sigs;
	for (; sig; sig = sig->next) {
		bool is_same = sig->n_cols == n_eq;
		for (size_t i = 0; i < n_eq && is_same; i++)
			is_same = sig->cols[i] == eq[i].col;
		if (is_same)
			break;
	}
	if (!sig) {
		sig = rt_xcalloc(1, sizeof *sig);
		sig->cols = rt_xcalloc(n_eq, sizeof *sig->cols);
		sig->cls = rt_xcalloc(n_eq, sizeof *sig->cls);
		for (size_t i = 0; i < n_eq; i++) {
			sig->cols[i] = eq[i].col;
			sig->cls[i] = rt_pgval_class_of(t->cols[eq[i].col].type);
		}
		sig->n_cols = n_eq;
		LL_APPEND(it->sigs, sig);
	}
	sig->n_queries++;
	struct ix_bucket *b;
	HASH_FIND_STR(sig->buckets, k.data, b);
	if (!b) {
		b = rt_xcalloc(1, sizeof *b);
		b->key = rt_buf_detach(&k, NULL);
		b->sig = sig;
		HASH_ADD_KEYPTR(hh, sig->buckets, b->key, strlen(b->key), b);
	} else {
		rt_buf_deinit(&k);
	}
	push_query(&b->qs, &b->n_qs, &b->cap_qs, q);
	q->ix_b = b;
}

/* Takes q out of the index; a table, signature or bucket goes with its
 * last query. */
static void ix_del(struct rt_live *l, struct rt_live_query *q)
{
	struct ix_table *it = q->ix_t;
	if (!it)
		return;
	struct ix_bucket *b = q->ix_b;
	if (!b) {
		drop_query(it->scan, &it->n_scan, q);
	} else {
		struct ix_sig *sig = b->sig;
		drop_query(b->qs, &b->n_qs, q);
		if (!b->n_qs) {
			HASH_DEL(sig->buckets, b);
			free(b->key);
			free(b->qs);
			free(b);
		}
		if (!--sig->n_queries) {
			LL_DELETE(it->sigs, sig);
			free(sig->cols);
			free(sig->cls);
			free(sig);
		}
	}
	q->ix_t = NULL;
	q->ix_b = NULL;
	if (!--it->n_queries) {
		HASH_DEL(l->ix, it);
		free(it->scan);
		free(it);
	}
}

/* Applies ch to q, at most once per change. */
static void visit_query(struct rt_live *l, struct rt_live_query *q, const struct rt_change *ch,
			uint64_t last_pos)
{
	if (q->visit == l->visit)
		return;
	q->visit = l->visit;
	if (q->is_broken || last_pos <= q->pos || ch->pos <= q->skip_to || ch->pos <= q->pos)
		return;
	if (q->mark.xmax) { /* the first read's snapshot still tells */
		if (rt_read_mark_is_past(&q->mark, ch))
			rt_read_mark_deinit(&q->mark);
		else if (rt_read_mark_has(&q->mark, ch))
			return;
	}
	if (q->stamp != l->stamp) {
		begin_batch(q, l->stamp);
		push_query(&l->batch, &l->n_batch, &l->cap_batch, q);
	}
	l->n_applied++;
	atomic_fetch_add(&rt_metrics_live_applied, 1);
	if (q->d->is_agg)
		group_change(q, ch);
	else
		window_apply(q, ch);
}

/* Visits the queries of it whose eq conjuncts row satisfies. */
static void visit_row(struct rt_live *l, const struct ix_table *it, const json_t *row,
		      const struct rt_change *ch, uint64_t last_pos, struct rt_buf *k)
{
	const struct rt_store_table *t = it->t;
	for (const struct ix_sig *sig = it->sigs; sig; sig = sig->next) {
		rt_buf_reset(k);
		bool is_some = true;
		for (size_t i = 0; i < sig->n_cols && is_some; i++) {
			is_some = norm_value(sig->cls[i],
					     json_object_get(row, t->cols[sig->cols[i]].name), k);
			rt_buf_append_byte(k, 0x1f);
		}
		if (!is_some)
			continue;
		struct ix_bucket *b;
		HASH_FIND_STR(sig->buckets, k->data, b);
		for (size_t i = 0; b && i < b->n_qs; i++)
			visit_query(l, b->qs[i], ch, last_pos);
	}
}

/* Applies one change to the queries it may concern: those whose eq
 * conjuncts its old or new row satisfies and those without any; every
 * query of its table when the old row carries only its key. */
static void visit_change(struct rt_live *l, const struct rt_change *ch, uint64_t last_pos,
			 struct rt_buf *k)
{
	struct ix_table *it;
	HASH_FIND_PTR(l->ix, &ch->table, it);
	if (!it)
		return;
	l->visit++;
	const json_t *old = ch->old_record;
	const json_t *rec = ch->type != RT_CHANGE_DELETE ? ch->record : NULL;
	if (old && json_object_size(old) < it->t->n_cols) {
		for (struct rt_live_query *q = l->queries; q; q = q->hh.next)
			if (q->ix_t == it)
				visit_query(l, q, ch, last_pos);
		return;
	}
	for (size_t i = 0; i < it->n_scan; i++)
		visit_query(l, it->scan[i], ch, last_pos);
	if (old)
		visit_row(l, it, old, ch, last_pos, k);
	if (rec)
		visit_row(l, it, rec, ch, last_pos, k);
}

/* ---- opening and closing ---- */

static void query_free(struct rt_live_query *q)
{
	if (q->is_listed)
		atomic_fetch_sub(&rt_metrics_live_queries, 1);
	if (!q->d->is_agg)
		window_clear(q);
	else
		groups_clear(q);
	snap_clear(q);
	history_clear(q, 0);
	rt_read_mark_deinit(&q->mark);
	free(q->hops);
	free(q->rows);
	free(q->touched);
	free(q->sorted);
	if (q->vis == RT_POLICY_ROWS)
		rt_query_node_deinit(&q->pred);
	rt_live_def_free(q->d);
	free(q->role);
	json_decref(q->claims);
	free(q->key);
	free(q->error);
	free(q);
}

/* Takes q out of the table and the index. */
static void query_unlist(struct rt_live *l, struct rt_live_query *q)
{
	HASH_DEL(l->queries, q);
	ix_del(l, q);
}

/* The maintained query of d for who: shared when one exists. Takes d. */
static struct rt_live_query *query_get(struct rt_live *l, struct rt_live_def *d,
				       const struct rt_auth *who, char *err, size_t err_cap)
{
	struct rt_policies *pol = rt_store_policies(l->store);
	uint64_t version = rt_store_policies_version(l->store);
	struct rt_query_node pred = {.kind = RT_QUERY_AND};
	enum rt_policy_verdict v = rt_policies_predicate(pol, d->t->schema, d->t->name,
							 RT_POLICY_SELECT, false, who, &pred);
	rt_policies_unref(pol);
	if (v == RT_POLICY_OPAQUE) {
		snprintf(err, err_cap,
			 "RTS501: the row-level security of %s uses expressions live queries cannot "
			 "evaluate", d->t->name);
		rt_live_def_free(d);
		return NULL;
	}
	struct rt_buf k;
	rt_buf_init(&k);
	rt_buf_append_str(&k, d->canon);
	rt_buf_printf(&k, "%cv%llu%c%s%c", 0x1e, (unsigned long long)version, 0x1f, who->role,
		      0x1f);
	rt_buf_append_byte(&k, v == RT_POLICY_ALLOW_ALL ? 'A' : v == RT_POLICY_DENY_ALL ? 'D' : 'R');
	if (v == RT_POLICY_ROWS)
		rt_policy_canon(&pred, &k);
	rt_buf_append_byte(&k, 0);
	struct rt_live_query *q;
	HASH_FIND_STR(l->queries, k.data, q);
	if (q && !q->is_broken) {
		rt_buf_deinit(&k);
		if (v == RT_POLICY_ROWS)
			rt_query_node_deinit(&pred);
		rt_live_def_free(d);
		q->users++;
		return q;
	}
	q = rt_xcalloc(1, sizeof *q);
	q->key = rt_buf_detach(&k, NULL);
	q->d = d;
	q->role = rt_xstrdup(who->role);
	q->claims = who->claims ? json_deep_copy(who->claims) : NULL;
	q->vis = v;
	if (v == RT_POLICY_ROWS)
		q->pred = pred;
	q->pol_version = version;
	uint64_t pos = 0;
	/* The store applies the requester's policies to the read itself. */
	int rc = d->is_agg ? groups_read(l, q, &pos) : window_read(l, q, &pos);
	if (rc) {
		snprintf(err, err_cap, "%s", q->error ? q->error : "RTS500: the query could not be read");
		query_free(q);
		return NULL;
	}
	q->valid_from = q->skip_to = q->settle_pos = q->pos = q->floor = pos;
	q->users = 1;
	HASH_ADD_KEYPTR(hh, l->queries, q->key, strlen(q->key), q);
	ix_add(l, q);
	q->is_listed = true;
	atomic_fetch_add(&rt_metrics_live_queries, 1);
	return q;
}

static void query_put(struct rt_live *l, struct rt_live_query *q)
{
	if (--q->users)
		return;
	q->idle_since_ms = rt_mono_ms();
	if (q->is_broken) {
		query_unlist(l, q);
		query_free(q);
	}
}

/* ---- rendering ---- */

static json_t *result_json(const struct rt_live_query *q, bool is_resync)
{
	json_t *rows = json_array(), *keys = json_array();
	if (q->d->is_agg) {
		for (size_t i = 0; i < q->n_sorted; i++) {
			json_array_append(rows, q->sorted[i]->out);
			json_array_append_new(keys, json_string(q->sorted[i]->key));
		}
	} else {
		size_t from, to;
		slice_of(q, &from, &to);
		for (size_t i = from; i < to; i++) {
			json_array_append_new(rows, project(q->d, q->rows[i]->row));
			json_array_append_new(keys, json_string(q->rows[i]->key));
		}
	}
	json_t *o = json_pack("{s:s,s:o,s:o}", "kind", "result", "keys", keys, "rows", rows);
	if (is_resync)
		json_object_set_new(o, "resync", json_true());
	return o;
}

struct net { /* a key's net change since a position */
	const char *key;
	bool was_in, is_move;
	UT_hash_handle hh;
};

struct placed {
	size_t index;
	json_t *op;
};

static int by_index(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Whether key is in the result now: its row (borrowed) and index. */
static bool current_of(const struct rt_live_query *q, const char *key, json_t **row,
		       size_t *index)
{
	if (q->d->is_agg) {
		struct group *g;
		HASH_FIND_STR(q->groups, key, g);
		if (!g || (q->d->n_groups && g->n <= 0))
			return false;
		*row = g->out;
		*index = group_index(q, g);
		return true;
	}
	struct wrow *w;
	HASH_FIND_STR(q->by_key, key, w);
	if (!w)
		return false;
	size_t at = window_index(q, w), from, to;
	slice_of(q, &from, &to);
	if (at < from || at >= to)
		return false;
	*row = w->row;
	*index = at - from;
	return true;
}

/* The ops taking a copy at position since to the current result. */
static json_t *diff_ops(const struct rt_live_query *q, uint64_t since)
{
	struct net *nets = NULL;
	for (size_t i = 0; i < q->n_hops; i++) {
		const struct hop *h = &q->hops[(q->hop_head + i) % RT_LIVE_HISTORY];
		if (h->pos <= since)
			continue;
		struct net *n;
		HASH_FIND_STR(nets, h->key, n);
		if (!n) {
			n = rt_xmalloc(sizeof *n);
			*n = (struct net){.key = h->key, .was_in = h->was_in};
			HASH_ADD_KEYPTR(hh, nets, n->key, strlen(n->key), n);
		}
		n->is_move |= h->is_move;
	}
	json_t *leaves = json_array(), *changes = json_array();
	struct placed *pl = NULL;
	size_t n_pl = 0, cap_pl = 0;
	struct net *n, *tmp;
	HASH_ITER(hh, nets, n, tmp) {
		json_t *row = NULL;
		size_t index = 0;
		bool is_in = current_of(q, n->key, &row, &index);
		json_t *out = is_in ? (q->d->is_agg ? json_incref(row) : project(q->d, row)) : NULL;
		if (n->was_in && !is_in) {
			json_array_append_new(leaves, json_pack("{s:s,s:s}", "op", "leave", "key",
								 n->key));
		} else if (is_in && (!n->was_in || n->is_move)) {
			if (n_pl == cap_pl) {
				cap_pl = cap_pl ? 2 * cap_pl : 16;
				pl = rt_xrealloc(pl, cap_pl * sizeof *pl);
			}
			pl[n_pl++] = (struct placed){
				index, json_pack("{s:s,s:s,s:I,s:O}", "op", n->was_in ? "move" : "enter",
						 "key", n->key, "index", (json_int_t)index, "row", out)};
		} else if (is_in) {
			json_array_append_new(changes, json_pack("{s:s,s:s,s:O}", "op", "change", "key",
								  n->key, "row", out));
		}
		json_decref(out);
		HASH_DEL(nets, n);
		free(n);
	}
	if (n_pl)
		qsort(pl, n_pl, sizeof *pl, by_index);
	for (size_t i = 0; i < n_pl; i++)
		json_array_append_new(leaves, pl[i].op);
	free(pl);
	json_array_extend(leaves, changes);
	json_decref(changes);
	return leaves;
}

/* The text of q's entry for a client at position since: a diff, or a result
 * with resync when the history does not reach back; NULL when nothing
 * changed. The diff of the last `since` asked is kept for the next asker. */
static char *entry_text(struct rt_live_query *q, const char *id, uint64_t since, bool is_result,
			bool is_resync)
{
	json_t *o;
	if (!is_result && !history_reaches(q, since)) {
		is_result = true;
		is_resync = true;
	}
	if (is_result) {
		o = result_json(q, is_resync);
	} else {
		if (q->changed_pos <= since)
			return NULL;
		if (!q->cache_text || q->cache_since != since || q->cache_pos != q->pos) {
			json_t *ops = diff_ops(q, since);
			free(q->cache_text);
			q->cache_text = json_array_size(ops) ? json_dumps(ops, JSON_COMPACT) : NULL;
			json_decref(ops);
			q->cache_since = since;
			q->cache_pos = q->pos;
			if (!q->cache_text)
				q->cache_text = rt_xstrdup("");
		}
		if (!*q->cache_text)
			return NULL;
		struct rt_buf b;
		rt_buf_init(&b);
		rt_buf_append_str(&b, "{\"id\":");
		rt_buf_append_json_str(&b, id, strlen(id));
		rt_buf_append_str(&b, ",\"kind\":\"diff\",\"ops\":");
		rt_buf_append_str(&b, q->cache_text);
		rt_buf_append_byte(&b, '}');
		return rt_buf_detach(&b, NULL);
	}
	json_object_set_new(o, "id", json_string(id));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* ---- subscribers ---- */

static char *error_text(const char *id, const char *error)
{
	const char *colon = strstr(error, ": ");
	json_t *o = json_pack("{s:s,s:s,s:s%,s:s}", "id", id, "kind", "error", "code", error,
			      colon ? (size_t)(colon - error) : strlen(error), "message",
			      colon ? colon + 2 : error);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static void entry_drop(struct rt_live *l, struct rt_live_sub *s, size_t i)
{
	struct entry *e = &s->e[i];
	if (e->q) {
		query_put(l, e->q);
		l->n_subscriptions--;
		atomic_fetch_sub(&rt_metrics_live_subscriptions, 1);
	}
	free(e->id);
	free(e->error);
	memmove(&s->e[i], &s->e[i + 1], (s->n_e - i - 1) * sizeof *s->e);
	s->n_e--;
}

/* Whether every query of s has settled at the feed's position. */
static bool sub_settled(const struct rt_live *l, const struct rt_live_sub *s)
{
	for (size_t i = 0; i < s->n_e; i++)
		if (s->e[i].q && s->e[i].q->settle_pos > l->last_pos)
			return false;
	return true;
}

/* Whether s has something to send (a result, an error, a change). */
static bool sub_pending(const struct rt_live_sub *s, bool *is_urgent)
{
	bool any = false;
	*is_urgent = false;
	for (size_t i = 0; i < s->n_e; i++) {
		const struct entry *e = &s->e[i];
		if (e->error || e->needs_result || (e->q && e->q->is_broken)) {
			*is_urgent = true;
			any = true;
		} else if (e->q && e->q->changed_pos > e->since) {
			any = true;
		}
	}
	return any;
}

static void shared_clear(struct rt_live *l)
{
	struct shared *sh, *tmp;
	HASH_ITER(hh, l->shared, sh, tmp) {
		HASH_DEL(l->shared, sh);
		free(sh->sig);
		free(sh->payload);
		free(sh);
	}
}

/* The signature of s's message when it is made of diffs only (no result,
 * no error): equal signatures, equal payloads at one position. False
 * otherwise. */
static bool sub_sig(const struct rt_live_sub *s, struct rt_buf *b)
{
	for (size_t i = 0; i < s->n_e; i++) {
		const struct entry *e = &s->e[i];
		if (e->error || !e->q || e->q->is_broken || e->needs_result ||
		    !history_reaches(e->q, e->since))
			return false;
		/* fixed-size fields then the id with its length: no two entry
		 * lists give the same bytes */
		size_t id_len = strlen(e->id);
		rt_buf_append(b, &e->q, sizeof e->q);
		rt_buf_append(b, &e->since, sizeof e->since);
		rt_buf_append(b, &id_len, sizeof id_len);
		rt_buf_append(b, e->id, id_len);
	}
	return true;
}

/* Publishes payload to s as one live_query message. */
static void sub_publish(struct rt_live *l, const struct rt_live_sub *s, const char *payload,
			size_t len)
{
	if (!l->hub)
		return;
	struct rt_buf f;
	rt_buf_init(&f);
	struct rt_msg *m = rt_msg_new(RT_MSG_LIVE, s->key);
	m->pos = l->last_pos;
	rt_phx_encode_text(s->vsn, &f, NULL, NULL, s->topic, "live_query", payload, len);
	struct rt_frame *fr = rt_ws_frame(RT_WS_TEXT, f.data, f.len);
	if (s->vsn == RT_PHX_V1)
		m->v1 = fr;
	else
		m->v2 = fr;
	rt_buf_deinit(&f);
	rt_hub_publish_any(l->hub, m);
	rt_msg_unref(m);
}

/* Sends s its message at the feed's position (what changed since each
 * query's last message). Subscribers whose queries stand at the same
 * positions share one rendering of it (within one pass over them). */
static void sub_flush(struct rt_live *l, struct rt_live_sub *s, uint64_t now)
{
	struct rt_buf sig;
	rt_buf_init(&sig);
	bool is_plain = sub_sig(s, &sig);
	struct shared *sh = NULL;
	if (is_plain)
		HASH_FIND(hh, l->shared, sig.data ? sig.data : "", sig.len, sh);
	s->sent_ms = now;
	s->is_dirty = false;
	if (sh) {
		for (size_t i = 0; i < s->n_e; i++)
			s->e[i].since = l->last_pos;
		if (sh->payload)
			sub_publish(l, s, sh->payload, sh->len);
		rt_buf_deinit(&sig);
		return;
	}
	struct rt_buf p;
	rt_buf_init(&p);
	rt_buf_printf(&p, "{\"position\":\"%llu\",\"queries\":[", (unsigned long long)l->last_pos);
	size_t n = 0;
	for (size_t i = 0; i < s->n_e;) {
		struct entry *e = &s->e[i];
		char *t = NULL;
		bool is_drop = false;
		if (!e->error && e->q && e->q->is_broken)
			e->error = rt_xstrdup(e->q->error);
		if (e->error) {
			t = error_text(e->id, e->error);
			is_drop = true;
		} else if (e->q) {
			t = entry_text(e->q, e->id, e->since, e->needs_result, e->is_resync);
			e->needs_result = e->is_resync = false;
			e->since = l->last_pos;
		}
		if (t) {
			if (n++)
				rt_buf_append_byte(&p, ',');
			rt_buf_append_str(&p, t);
			free(t);
		}
		if (is_drop)
			entry_drop(l, s, i);
		else
			i++;
	}
	rt_buf_append_str(&p, "]}");
	if (n)
		sub_publish(l, s, p.data, p.len);
	if (is_plain) {
		sh = rt_xcalloc(1, sizeof *sh);
		sh->sig = sig.data ? rt_buf_detach(&sig, &sh->sig_len) : rt_xstrdup("");
		if (n)
			sh->payload = rt_buf_detach(&p, &sh->len);
		HASH_ADD_KEYPTR(hh, l->shared, sh->sig, sh->sig_len, sh);
	}
	rt_buf_deinit(&p);
	rt_buf_deinit(&sig);
}

/* Sends what is due to s under its delivery options. */
static void sub_consider(struct rt_live *l, struct rt_live_sub *s, uint64_t now)
{
	bool is_urgent;
	if (!sub_pending(s, &is_urgent)) {
		s->is_dirty = false;
		return;
	}
	uint64_t newest = 0;
	for (size_t i = 0; i < s->n_e; i++)
		if (s->e[i].q && s->e[i].q->changed_pos > newest)
			newest = s->e[i].q->changed_pos;
	if (!s->is_dirty) {
		s->is_dirty = true;
		s->dirty_ms = now;
		s->quiet_ms = now;
		s->seen_pos = newest;
	} else if (newest > s->seen_pos) {
		s->seen_pos = newest;
		s->quiet_ms = now;
	}
	if (!sub_settled(l, s))
		return;
	bool is_due = is_urgent;
	if (s->o.throttle_ms)
		is_due |= now - s->sent_ms >= s->o.throttle_ms;
	else if (s->o.debounce_ms)
		is_due |= now - s->quiet_ms >= s->o.debounce_ms ||
			  now - s->dirty_ms >= s->o.max_wait_ms;
	else
		is_due |= now - s->sent_ms >= RT_LIVE_FOLD_MS; /* bounded by time, not commits */
	if (is_due && !is_urgent && l->is_backed_up && now - s->dirty_ms < FOLD_MAX_MS) {
		atomic_fetch_add(&rt_metrics_live_folded, 1);
		return; /* considered again at the next pass */
	}
	if (is_due)
		sub_flush(l, s, now);
}

/* Whether the workers are behind with their messages (one check a pass). */
static void check_backlog(struct rt_live *l)
{
	l->is_backed_up = l->hub && l->subs && rt_hub_backlog(l->hub) > FOLD_BACKLOG;
}

static void sub_free_now(struct rt_live *l, struct rt_live_sub *s)
{
	while (s->n_e)
		entry_drop(l, s, s->n_e - 1);
	free(s->e);
	free(s->key);
	free(s->topic);
	free(s->role);
	json_decref(s->claims);
	free(s);
}

static void sub_add_now(struct rt_live *l, struct rt_live_sub *s, const json_t *queries)
{
	struct rt_auth who = {.role = s->role, .claims = s->claims, .topic = NULL};
	size_t i;
	const json_t *entry;
	json_array_foreach(queries, i, entry) {
		const char *jid = json_string_value(json_object_get(entry, "id"));
		if (!jid || !*jid || strlen(jid) > RT_LIVE_MAX_ID)
			continue; /* the worker answered for it */
		for (size_t k = 0; k < s->n_e; k++)
			if (!strcmp(s->e[k].id, jid)) {
				entry_drop(l, s, k); /* the same id again: the new definition */
				break;
			}
		char err[700];
		struct rt_live_def *d = NULL;
		struct rt_live_query *q = NULL;
		if (s->n_e >= RT_LIVE_MAX_QUERIES)
			snprintf(err, sizeof err, "RTS429: a channel holds at most %d live queries",
				 RT_LIVE_MAX_QUERIES);
		else if ((d = rt_live_def_parse(l->store, entry, err, sizeof err)))
			q = query_get(l, d, &who, err, sizeof err);
		s->e = rt_xrealloc(s->e, (s->n_e + 1) * sizeof *s->e);
		struct entry *e = &s->e[s->n_e++];
		*e = (struct entry){.id = rt_xstrdup(jid), .q = q, .needs_result = true};
		if (!q) {
			e->error = rt_xstrdup(err);
			continue;
		}
		l->n_subscriptions++;
		atomic_fetch_add(&rt_metrics_live_subscriptions, 1);
		if (s->resume_pos && history_reaches(q, s->resume_pos)) {
			e->needs_result = false;
			e->since = s->resume_pos;
		} else {
			e->is_resync = s->resume_pos != 0;
		}
	}
	s->resume_pos = 0; /* the position is that of the queries first added */
}

static void sub_remove_now(struct rt_live *l, struct rt_live_sub *s, const char *id)
{
	for (size_t k = 0; k < s->n_e; k++)
		if (!strcmp(s->e[k].id, id)) {
			entry_drop(l, s, k);
			return;
		}
}

static void queue(struct rt_live *l, struct req *r)
{
	pthread_mutex_lock(&l->mu);
	LL_APPEND(l->reqs, r);
	pthread_mutex_unlock(&l->mu);
}

struct rt_live_sub *rt_live_sub_new(struct rt_live *l, const char *key, const char *topic,
				    enum rt_phx_vsn vsn, const struct rt_auth *who,
				    const struct rt_live_opts *o, uint64_t resume_pos)
{
	struct rt_live_sub *s = rt_xcalloc(1, sizeof *s);
	s->key = rt_xstrdup(key);
	s->topic = rt_xstrdup(topic);
	s->vsn = vsn;
	s->role = rt_xstrdup(who && who->role ? who->role : "anon");
	s->claims = who && who->claims ? json_deep_copy(who->claims) : NULL;
	if (o)
		s->o = *o;
	s->resume_pos = resume_pos;
	struct req *r = rt_xcalloc(1, sizeof *r);
	r->kind = REQ_NEW;
	r->s = s;
	queue(l, r);
	return s;
}

void rt_live_sub_add(struct rt_live *l, struct rt_live_sub *s, const json_t *queries)
{
	struct req *r = rt_xcalloc(1, sizeof *r);
	r->kind = REQ_ADD;
	r->s = s;
	r->queries = json_deep_copy(queries);
	queue(l, r);
}

void rt_live_sub_remove(struct rt_live *l, struct rt_live_sub *s, const char *id)
{
	struct req *r = rt_xcalloc(1, sizeof *r);
	r->kind = REQ_REMOVE;
	r->s = s;
	r->id = rt_xstrdup(id);
	queue(l, r);
}

void rt_live_sub_free(struct rt_live *l, struct rt_live_sub *s)
{
	struct req *r = rt_xcalloc(1, sizeof *r);
	r->kind = REQ_FREE;
	r->s = s;
	queue(l, r);
}

static void serve_requests(struct rt_live *l)
{
	pthread_mutex_lock(&l->mu);
	struct req *todo = l->reqs;
	l->reqs = NULL;
	pthread_mutex_unlock(&l->mu);
	while (todo) {
		struct req *r = todo;
		LL_DELETE(todo, r);
		switch (r->kind) {
		case REQ_NEW:
			DL_APPEND(l->subs, r->s);
			break;
		case REQ_ADD:
			sub_add_now(l, r->s, r->queries);
			break;
		case REQ_REMOVE:
			sub_remove_now(l, r->s, r->id);
			break;
		case REQ_FREE:
			DL_DELETE(l->subs, r->s);
			sub_free_now(l, r->s);
			break;
		}
		free(r->id);
		json_decref(r->queries);
		free(r);
	}
}

/* The policies changed: every query is opened again under the new set and
 * its subscribers get a fresh result. */
static void repolice(struct rt_live *l)
{
	for (struct rt_live_sub *s = l->subs; s; s = s->next) {
		for (size_t i = 0; i < s->n_e; i++) {
			struct entry *e = &s->e[i];
			if (!e->q)
				continue;
			char err[700];
			json_t *entry = json_pack("{s:s,s:s,s:s,s:s}", "id", e->id, "schema",
						  e->q->d->t->schema, "table", e->q->d->t->name,
						  "query", e->q->d->text);
			struct rt_live_def *d = rt_live_def_parse(l->store, entry, err, sizeof err);
			json_decref(entry);
			query_put(l, e->q);
			l->n_subscriptions--;
			atomic_fetch_sub(&rt_metrics_live_subscriptions, 1);
			struct rt_auth who = {.role = s->role, .claims = s->claims, .topic = NULL};
			e->q = d ? query_get(l, d, &who, err, sizeof err) : NULL;
			if (e->q) {
				l->n_subscriptions++;
				atomic_fetch_add(&rt_metrics_live_subscriptions, 1);
			} else
				e->error = rt_xstrdup(err);
			e->needs_result = e->is_resync = true;
		}
	}
	struct rt_live_query *q, *tmp;
	HASH_ITER(hh, l->queries, q, tmp) {
		if (!q->users && q->pol_version < l->pol_version) {
			query_unlist(l, q);
			query_free(q);
		}
	}
}

void rt_live_apply(struct rt_live *l, const struct rt_change *chs, size_t n, uint64_t last_pos)
{
	if (last_pos <= l->last_pos)
		return;
	l->stamp++;
	l->n_batch = 0;
	struct rt_buf k;
	rt_buf_init(&k);
	for (size_t i = 0; i < n; i++)
		visit_change(l, &chs[i], last_pos, &k);
	rt_buf_deinit(&k);
	for (size_t i = 0; i < l->n_batch; i++)
		end_batch(l, l->batch[i], last_pos);
	l->n_batch = 0;
	for (struct rt_live_query *q = l->queries; q; q = q->hh.next)
		if (!q->is_broken && last_pos > q->pos)
			q->pos = last_pos;
	l->last_pos = last_pos;
	uint64_t now = rt_mono_ms();
	check_backlog(l);
	for (struct rt_live_sub *s = l->subs; s; s = s->next)
		sub_consider(l, s, now);
	shared_clear(l);
}

void rt_live_tick(struct rt_live *l, uint64_t last_pos)
{
	uint64_t version = rt_store_policies_version(l->store);
	if (version != l->pol_version) {
		l->pol_version = version;
		repolice(l);
	}
	serve_requests(l);
	if (last_pos > l->last_pos) { /* positions with no change of a table (skipped rows) */
		for (struct rt_live_query *q = l->queries; q; q = q->hh.next)
			if (q->pos < last_pos && !q->is_broken)
				q->pos = last_pos;
		l->last_pos = last_pos;
	}
	/* Queries opened ahead of the feed are at their read's position. */
	for (struct rt_live_query *q = l->queries; q; q = q->hh.next)
		if (q->pos < l->last_pos && !q->is_broken)
			q->pos = l->last_pos;
	uint64_t now = rt_mono_ms();
	check_backlog(l);
	for (struct rt_live_sub *s = l->subs; s; s = s->next)
		sub_consider(l, s, now);
	shared_clear(l);
	struct rt_live_query *q, *tmp;
	HASH_ITER(hh, l->queries, q, tmp) {
		if (!q->users && now - q->idle_since_ms >= LINGER_MS) {
			query_unlist(l, q);
			query_free(q);
		}
	}
}

void rt_live_free(struct rt_live *l)
{
	if (!l)
		return;
	serve_requests(l);
	while (l->subs) {
		struct rt_live_sub *s = l->subs;
		DL_DELETE(l->subs, s);
		sub_free_now(l, s);
	}
	struct rt_live_query *q, *tmp;
	HASH_ITER(hh, l->queries, q, tmp) {
		query_unlist(l, q);
		query_free(q);
	}
	free(l->batch);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

/* ---- in process ---- */

struct rt_live_query *rt_live_open(struct rt_live *l, struct rt_live_def *d,
				   const struct rt_auth *who, char *err, size_t err_cap)
{
	struct rt_auth anon = {.role = "anon"};
	return query_get(l, d, who ? who : &anon, err, err_cap);
}

json_t *rt_live_result(struct rt_live_query *q)
{
	json_t *o = result_json(q, false);
	json_object_del(o, "kind");
	return o;
}

json_t *rt_live_diff(struct rt_live_query *q, uint64_t since)
{
	if (!history_reaches(q, since))
		return NULL;
	return json_pack("{s:o}", "ops", diff_ops(q, since));
}

uint64_t rt_live_position(const struct rt_live_query *q)
{
	return q->pos;
}

const char *rt_live_error(const struct rt_live_query *q)
{
	return q->is_broken ? q->error : NULL;
}

void rt_live_close(struct rt_live *l, struct rt_live_query *q)
{
	if (--q->users)
		return;
	query_unlist(l, q);
	query_free(q);
}

void rt_live_stats(struct rt_live *l, size_t *n_queries, size_t *n_subscriptions,
		   uint64_t *n_applied)
{
	if (n_queries)
		*n_queries = HASH_COUNT(l->queries);
	if (n_subscriptions)
		*n_subscriptions = l->n_subscriptions;
	if (n_applied)
		*n_applied = l->n_applied;
}
