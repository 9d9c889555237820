#include "realtime/changes.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uthash.h>
#include <utlist.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "live/live.h"
#include "net/ws.h"
#include "proto/phx.h"
#include "realtime/delivery.h"
#include "realtime/filter.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

#define EV_INSERT 1u
#define EV_UPDATE 2u
#define EV_DELETE 4u
#define EV_ALL 7u
#define PRUNE_EVERY_MS 10000
/* Messages a worker may have waiting before the feed waits for it. */
#define FEED_MAX_BACKLOG 200000
#define DEFER_MAX_MS 5000 /* a resume from a position the feed has not read */

/* What a binding's requester may see of one table. */
struct vis {
	enum rt_policy_verdict v;
	struct rt_query_node pred; /* RT_POLICY_ROWS */
	bool *sel;                 /* per column: selected and selectable; NULL until known */
};

struct rt_binding {
	char *key;   /* "pgc:" topic, canonical entry, then role and visibility */
	char *topic;
	json_int_t id;
	unsigned events;
	bool is_any_table; /* table "*" (schema "public" or "*") */
	const struct rt_store_table *table;
	struct rt_filter *filter;
	bool *selected; /* per table column; NULL: all columns (the entry's select) */
	/* the requester (copied: re-evaluated when the policies change) */
	char *role;
	json_t *claims; /* NULL: {} */
	char *who_key;  /* role and claims as text: distinct requesters (opaque checks) */
	struct vis *vis; /* one per schema table for a wildcard, else one */
	size_t n_vis;
	uint64_t pol_version; /* of the policy set vis was built from (in the key) */
	struct rt_delivery_opts dopts; /* throttle, debounce, batch (in the key: the entry) */
	char *eq_key;   /* index key: the filter's eq, else the predicate's; else NULL */
	const char *eq_column; /* that eq's column (the schema's string) */
	unsigned refs;  /* groups holding it (registry lock) */
	struct rt_bgroup **groups; /* the groups it is in */
	size_t n_groups, cap_groups;
	UT_hash_handle hh;                   /* registry by key */
	struct rt_binding *prev, *next;      /* scan list or eq bucket */
};

struct rt_bgroup { /* the bindings of channels on one topic with the same set */
	char *key;     /* "pgg:" topic, then the binding keys in order */
	char *topic;
	struct rt_binding **bindings; /* sorted by key, no duplicates */
	size_t n;
	unsigned refs; /* channels and resume requests holding it */
	/* per dispatched change (feed thread, registry lock held) */
	uint64_t stamp;
	json_int_t *ids;
	const struct rt_binding **matched;
	size_t n_matched;
	/* delivery controls (feed thread, registry lock held) */
	bool has_window;       /* its bindings' options are on: changes wait in win */
	struct rt_window win;
	bool is_listed;        /* in the feed's windows while win is open */
	struct rt_bgroup *wprev, *wnext;
	UT_hash_handle hh;
};

struct eq_bucket { /* bindings whose filter is column = value */
	char *key;     /* table NUL column NUL normalized value */
	struct rt_binding *list;
	UT_hash_handle hh;
};

struct eq_column { /* a column some binding of a table filters by eq */
	const struct rt_store_table *table;
	const char *column;
	unsigned users;
	struct eq_column *prev, *next;
};

struct resume_req {
	char *key;
	uint64_t after;
	uint64_t upto; /* the group's flushed position (set while serving) */
	bool is_resync; /* the position was not retained (set while serving) */
	uint64_t deferred_ms; /* first deferred (see take_requests); 0: never */
	struct rt_bgroup *g;
	struct resume_req *next;
};

/* A group's matches in the catch-up cache: change i of the cache and its
 * frames. */
struct cu_match {
	size_t i;
	struct rt_frame *v1, *v2;
};

struct cu_group {
	struct rt_bgroup *g; /* held (refs) while cached */
	size_t n_done;       /* the cache's changes matched so far */
	struct cu_match *m;
	size_t n_m, cap_m;
	UT_hash_handle hh;   /* by g */
};

/*
 * The catch-up cache (feed thread only). A reconnect storm asks for the same
 * stretch of the log round after round, a few hundred clients at a time: the
 * changes read for one round, and each group's matches and frames, serve the
 * next rounds too. It holds the changes in (from, last], grows as the log
 * does, and is dropped after CU_IDLE_MS without requests or when a request
 * reaches further back than `from`.
 */
struct cu_cache {
	bool is_valid;
	uint64_t from, last;
	uint64_t oldest; /* the log's oldest retained position when first read */
	struct rt_change *chs;
	size_t n, cap;
	struct cu_group *groups;
	uint64_t used_ms;
};

#define CU_MAX_CHANGES 20000 /* a longer stretch is read in batches, uncached */
#define CU_IDLE_MS 1000

struct rt_changes {
	struct rt_store *store;
	struct rt_hub *hub;
	pthread_t thread;
	atomic_bool is_running;
	bool is_started;

	pthread_mutex_t mu; /* registry, requests, last_pos */
	struct rt_binding *by_key;
	struct rt_bgroup *groups;      /* by key */
	struct rt_binding *scan;       /* bindings matched by scanning (per change) */
	uint64_t stamp;                /* per dispatched change */
	size_t n_considered;           /* bindings evaluated (rt_changes_match) */
	struct rt_bgroup **touched;    /* groups with a match for the current change */
	size_t n_touched, cap_touched;
	struct eq_bucket *eq;
	struct eq_column *eq_cols;
	uint64_t pol_version; /* the store's policy version the feed matches under */
	struct rt_binding **ask; /* opaque bindings to ask the database about (per change) */
	const struct rt_auth **ask_who;
	bool *ask_vis;
	size_t n_ask, cap_ask;
	struct resume_req *requests;
	uint64_t last_pos;
	struct rt_bgroup *windows; /* groups with an open window (wprev, wnext) */
	struct cu_cache cu; /* feed thread */
	struct rt_change_consumer consumers[RT_CHANGES_MAX_CONSUMERS]; /* fed after each batch */
	size_t n_consumers;
};

/* ---- values ---- */

static bool is_numeric(const char *t)
{
	return !strcmp(t, "int2") || !strcmp(t, "int4") || !strcmp(t, "int8") ||
	       !strcmp(t, "float4") || !strcmp(t, "float8") || !strcmp(t, "numeric") ||
	       !strcmp(t, "oid");
}

/* A value's index form: numbers through strtod, bools as true/false. */
static void norm_text(const char *type, const char *text, struct rt_buf *out)
{
	if (is_numeric(type)) {
		char *end;
		double d = strtod(text, &end);
		if (*text && !*end) {
			rt_buf_printf(out, "%.17g", d);
			return;
		}
	} else if (!strcmp(type, "bool")) {
		if (!strcasecmp(text, "t") || !strcasecmp(text, "true")) {
			rt_buf_append_str(out, "true");
			return;
		}
		if (!strcasecmp(text, "f") || !strcasecmp(text, "false")) {
			rt_buf_append_str(out, "false");
			return;
		}
	}
	rt_buf_append_str(out, text);
}

/* The index form of a row value; false when it cannot match an eq. */
static bool norm_json(const char *type, const json_t *v, struct rt_buf *out)
{
	if (json_is_string(v)) {
		norm_text(type, json_string_value(v), out);
	} else if (json_is_integer(v) || json_is_real(v)) {
		rt_buf_printf(out, "%.17g", json_number_value(v));
	} else if (json_is_boolean(v)) {
		rt_buf_append_str(out, json_is_true(v) ? "true" : "false");
	} else {
		return false;
	}
	return true;
}

static void eq_key_of(struct rt_buf *b, const char *table, const char *column)
{
	rt_buf_append_str(b, table);
	rt_buf_append_byte(b, 0x1f);
	rt_buf_append_str(b, column);
	rt_buf_append_byte(b, 0x1f);
}

static const char *column_type(const char *column, void *ctx)
{
	const struct rt_store_column *c = rt_store_column(ctx, column);
	return c ? c->type : NULL;
}

/* ---- bindings ---- */

static const char *str_of(const json_t *obj, const char *name)
{
	return json_string_value(json_object_get(obj, name));
}

/* Supabase's description of the parameters, used in its error messages. */
static void describe(struct rt_buf *b, const char *event, const char *schema, const char *table,
		     const struct rt_filter *f, const json_t *select)
{
	rt_buf_printf(b, "[event: %s, schema: %s, table: %s, filters: [", event, schema, table);
	for (size_t i = 0; f && i < f->n_conds; i++) {
		static const char *const ops[] = {"eq", "neq", "lt", "lte", "gt", "gte", "in",
						  "like", "ilike", "is", "match", "imatch",
						  "isdistinct"};
		const struct rt_filter_cond *fc = &f->conds[i];
		rt_buf_printf(b, "%s{\"%s\", \"%s\", \"", i ? ", " : "", fc->column, ops[fc->op]);
		if (fc->op == RT_FOP_IN) { /* the list as the array literal it becomes */
			rt_buf_append_byte(b, '{');
			for (size_t k = 0; k < fc->n_values; k++)
				rt_buf_printf(b, "%s%s", k ? "," : "", fc->values[k]);
			rt_buf_append_byte(b, '}');
		} else if (fc->n_values) {
			rt_buf_append_str(b, fc->values[0]);
		}
		rt_buf_printf(b, "\", %s}", fc->is_negated ? "true" : "false");
	}
	rt_buf_append_str(b, "], select: ");
	if (json_is_array(select)) {
		char *s = json_dumps(select, JSON_COMPACT);
		rt_buf_append_str(b, s ? s : "[]");
		free(s);
	} else {
		rt_buf_append_str(b, "nil");
	}
	rt_buf_append_byte(b, ']');
}

/* ---- visibility ---- */

static void vis_clear(struct rt_binding *b)
{
	for (size_t i = 0; i < b->n_vis; i++) {
		if (b->vis[i].v == RT_POLICY_ROWS)
			rt_query_node_deinit(&b->vis[i].pred);
		free(b->vis[i].sel);
	}
	free(b->vis);
	b->vis = NULL;
	b->n_vis = 0;
}

/* The tables a binding covers: its own, or every table of the schema. */
static const struct rt_store_table *vis_table(const struct rt_store *st, const struct rt_binding *b,
					      size_t i)
{
	return b->table ? b->table : &rt_store_schema(st)->tables[i];
}

/*
 * Builds b's visibility from policy set pol: per table, the SELECT predicate
 * for b's requester. Appends its canonical text (role, then per table the
 * verdict and predicate) to key when key is not NULL.
 */
static void vis_build(const struct rt_store *st, struct rt_policies *pol, uint64_t version,
		      struct rt_binding *b, struct rt_buf *key)
{
	vis_clear(b);
	b->n_vis = b->table ? 1 : rt_store_schema(st)->n_tables;
	b->vis = rt_xcalloc(b->n_vis ? b->n_vis : 1, sizeof *b->vis);
	b->pol_version = version;
	struct rt_auth who = {.role = b->role, .claims = b->claims, .topic = NULL};
	if (key) { /* bindings of two policy sets never share */
		rt_buf_printf(key, "%cv%llu%c", 0x1e, (unsigned long long)version, 0x1f);
		rt_buf_append_str(key, b->role);
	}
	for (size_t i = 0; i < b->n_vis; i++) {
		const struct rt_store_table *t = vis_table(st, b, i);
		struct vis *v = &b->vis[i];
		v->v = rt_policies_predicate(pol, t->schema, t->name, RT_POLICY_SELECT, false, &who,
					     &v->pred);
		if (!key)
			continue;
		rt_buf_append_byte(key, 0x1f);
		switch (v->v) {
		case RT_POLICY_ALLOW_ALL:
			rt_buf_append_byte(key, 'A');
			break;
		case RT_POLICY_DENY_ALL:
			rt_buf_append_byte(key, 'D');
			break;
		case RT_POLICY_ROWS:
			rt_buf_append_byte(key, 'R');
			rt_policy_canon(&v->pred, key);
			break;
		case RT_POLICY_OPAQUE: /* the database decides: one entry per requester */
			rt_buf_append_byte(key, 'O');
			rt_buf_append_str(key, b->who_key);
			break;
		}
	}
}

/* The index key of b: its filter's eq, else its predicate's (table bindings). */
static void eq_build(struct rt_binding *b)
{
	free(b->eq_key);
	b->eq_key = NULL;
	b->eq_column = NULL;
	if (!b->table)
		return;
	const char *col = NULL, *val = NULL;
	bool has = b->filter && rt_filter_eq_key(b->filter, &col, &val);
	if (!has && b->vis[0].v == RT_POLICY_ROWS)
		has = rt_policy_eq_key(&b->vis[0].pred, &col, &val);
	const struct rt_store_column *ec = has ? rt_store_column(b->table, col) : NULL;
	if (!ec)
		return; /* a predicate on a column the table lacks is scanned (and NULL) */
	struct rt_buf ek;
	rt_buf_init(&ek);
	eq_key_of(&ek, b->table->name, ec->name);
	norm_text(ec->type, val, &ek);
	b->eq_key = rt_buf_detach(&ek, NULL);
	b->eq_column = ec->name;
}

/* The columns b sends of table i: selected by the entry and selectable by the
 * role (asked of the store once, on the feed thread). */
static const bool *vis_sel(struct rt_changes *c, struct rt_binding *b, size_t i)
{
	struct vis *v = &b->vis[i];
	if (v->sel)
		return v->sel;
	const struct rt_store_table *t = vis_table(c->store, b, i);
	v->sel = rt_xcalloc(t->n_cols ? t->n_cols : 1, sizeof *v->sel);
	if (rt_store_selectable(c->store, b->role, t, v->sel))
		rt_warn("changes: the columns role %s may select of %s.%s could not be read; "
			"none are sent", b->role, t->schema, t->name);
	for (size_t k = 0; b->selected && k < t->n_cols; k++)
		v->sel[k] = v->sel[k] && b->selected[k];
	return v->sel;
}

/* The index of the visibility entry of b for table t; SIZE_MAX when none. */
static size_t vis_index(const struct rt_changes *c, const struct rt_binding *b,
			const struct rt_store_table *t)
{
	if (b->table)
		return b->table == t ? 0 : SIZE_MAX;
	const struct rt_store_schema *sc = rt_store_schema(c->store);
	if (t < sc->tables || t >= sc->tables + sc->n_tables || (size_t)(t - sc->tables) >= b->n_vis)
		return SIZE_MAX;
	return (size_t)(t - sc->tables);
}

void rt_binding_free(struct rt_binding *b)
{
	if (!b)
		return;
	free(b->key);
	free(b->topic);
	rt_filter_free(b->filter);
	free(b->selected);
	free(b->eq_key);
	free(b->groups);
	vis_clear(b);
	free(b->role);
	json_decref(b->claims);
	free(b->who_key);
	free(b);
}

struct rt_binding *rt_binding_parse(struct rt_changes *c, const char *topic, const json_t *entry,
				    const struct rt_auth *who, char *err, size_t err_cap)
{
	const char *event = str_of(entry, "event");
	const char *schema = str_of(entry, "schema");
	const char *table = str_of(entry, "table");
	const json_t *jfilter = json_object_get(entry, "filter");
	const json_t *select = json_object_get(entry, "select");
	const char *filter = json_string_value(jfilter);
	struct rt_binding *b = NULL;
	struct rt_buf msg;
	rt_buf_init(&msg);

	if ((!schema && !table) || (filter && (!schema || !table))) {
		char *e = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
		snprintf(err, err_cap,
			 "No subscription params provided. Please provide at least a `schema` or "
			 "`table` to subscribe to: %s",
			 e ? e : "{}");
		free(e);
		goto err;
	}
	if (!schema)
		schema = "public";
	if (!table)
		table = "*";
	unsigned events = EV_ALL;
	if (event && !strcasecmp(event, "INSERT"))
		events = EV_INSERT;
	else if (event && !strcasecmp(event, "UPDATE"))
		events = EV_UPDATE;
	else if (event && !strcasecmp(event, "DELETE"))
		events = EV_DELETE;
	const char *ev_name = events == EV_ALL ? "*" : event;

	b = rt_xcalloc(1, sizeof *b);
	b->events = events;
	if (filter && rt_filter_parse(filter, strlen(filter), &b->filter, err, err_cap))
		goto err;
	if (select && !json_is_null(select) && !json_is_array(select)) {
		snprintf(err, err_cap,
			 "Error parsing `select` params: expected a list of column name strings, "
			 "e.g. select: [\"col1\", \"col2\"]");
		goto err;
	}
	bool wild = !strcmp(table, "*") || !strcmp(schema, "*");
	if (wild && json_array_size(select)) {
		snprintf(err, err_cap, "Column selection is not supported for wildcard "
				       "subscriptions. Provide an explicit schema and table name.");
		goto err;
	}
	if (strcmp(schema, "public") && strcmp(schema, "*")) {
		rt_buf_append_str(&msg, "Unable to subscribe to changes with given parameters. Please "
					"check Realtime is enabled for the given connect parameters: ");
		describe(&msg, ev_name, schema, table, b->filter, select);
		snprintf(err, err_cap, "%s", msg.data);
		goto err;
	}
	if (!strcmp(table, "*")) {
		b->is_any_table = true;
	} else {
		b->table = rt_store_table(c->store, NULL, table);
		if (!b->table) {
			rt_buf_append_str(&msg, "Unable to subscribe to changes with given parameters. "
						"Please check Realtime is enabled for the given "
						"connect parameters: ");
			describe(&msg, ev_name, schema, table, b->filter, select);
			snprintf(err, err_cap, "%s", msg.data);
			goto err;
		}
	}
	char why[256] = "";
	if (b->filter && b->table) {
		const char **names = rt_xcalloc(b->table->n_cols + 1, sizeof *names);
		const char **types = rt_xcalloc(b->table->n_cols + 1, sizeof *types);
		for (size_t i = 0; i < b->table->n_cols; i++) {
			names[i] = b->table->cols[i].name;
			types[i] = b->table->cols[i].type;
		}
		int rc = rt_filter_check(b->filter, names, types, b->table->n_cols, why, sizeof why);
		free(names);
		free(types);
		if (rc)
			goto exception;
	}
	if (json_array_size(select) && b->table) {
		b->selected = rt_xcalloc(b->table->n_cols, sizeof *b->selected);
		for (size_t i = 0; i < b->table->n_cols; i++)
			b->selected[i] = b->table->cols[i].is_pk;
		size_t i;
		const json_t *v;
		json_array_foreach(select, i, v) {
			if (!json_is_string(v))
				continue; /* non-string entries are dropped, as Supabase does */
			size_t k = 0;
			while (k < b->table->n_cols && strcmp(b->table->cols[k].name, json_string_value(v)))
				k++;
			if (k == b->table->n_cols) {
				snprintf(why, sizeof why, "invalid column for select %s",
					 json_string_value(v));
				goto exception;
			}
			b->selected[k] = true;
		}
	}

	if (rt_delivery_parse(entry, &b->dopts, err, err_cap))
		goto err;

	/* Identity: the topic and the entry as sent, keys sorted (the delivery
	 * controls with it: groups of other options never share frames). */
	char *canon = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
	struct rt_buf key;
	rt_buf_init(&key);
	rt_buf_append_str(&key, "pgc:");
	rt_buf_append_str(&key, topic);
	rt_buf_append_byte(&key, 0x1f);
	rt_buf_append_str(&key, canon ? canon : "");
	free(canon);
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < key.len; i++)
		h = (h ^ (uint8_t)key.data[i]) * 16777619u;
	b->id = (json_int_t)(h & ((1u << 27) - 1)); /* the entry's: the same for every user */
	b->topic = rt_xstrdup(topic);

	/* The requester's visibility joins the identity: bindings of users who
	 * see the same rows share one entry (and group), whoever they are. */
	b->role = rt_xstrdup(who && who->role ? who->role : "anon");
	b->claims = who && who->claims ? json_deep_copy(who->claims) : NULL;
	char *cl = b->claims ? json_dumps(b->claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	struct rt_buf wk;
	rt_buf_init(&wk);
	rt_buf_printf(&wk, "%s%c%s", b->role, 0x1f, cl ? cl : "{}");
	free(cl);
	b->who_key = rt_buf_detach(&wk, NULL);
	uint64_t version = rt_store_policies_version(c->store);
	struct rt_policies *pol = rt_store_policies(c->store);
	vis_build(c->store, pol, version, b, &key);
	rt_policies_unref(pol);
	b->key = rt_buf_detach(&key, NULL);
	eq_build(b);
	rt_buf_deinit(&msg);
	return b;
exception:
	rt_buf_append_str(&msg, "Unable to subscribe to changes with given parameters. An exception "
				"happened so please check your connect parameters: ");
	describe(&msg, ev_name, schema, table, b->filter, select);
	/* Postgres' error class, as Supabase reports the failed subscription. */
	const char *pg_class = !strncmp(why, "invalid input syntax", 20)
				       ? "22P02 (invalid_text_representation)"
			       : strstr(why, "out of range") ? "22003 (numeric_value_out_of_range)"
							     : "P0001 (raise_exception)";
	rt_buf_printf(&msg, ". Exception: ERROR %s %s", pg_class, why);
	snprintf(err, err_cap, "%s", msg.data);
err:
	rt_buf_deinit(&msg);
	rt_binding_free(b);
	return NULL;
}

json_int_t rt_binding_id(const struct rt_binding *b)
{
	return b->id;
}

bool rt_binding_same_delivery(const struct rt_binding *a, const struct rt_binding *b)
{
	return rt_delivery_equal(&a->dopts, &b->dopts);
}


/* ---- registry ---- */

static struct eq_column *find_eq_col(struct rt_changes *c, const struct rt_store_table *t,
				     const char *column)
{
	struct eq_column *e;
	DL_FOREACH(c->eq_cols, e)
		if (e->table == t && !strcmp(e->column, column))
			return e;
	return NULL;
}

/* Puts a binding in the eq index or the scan list. Lock held. */
static void index_binding(struct rt_changes *c, struct rt_binding *b)
{
	if (b->eq_key) {
		struct eq_bucket *bk;
		HASH_FIND_STR(c->eq, b->eq_key, bk);
		if (!bk) {
			bk = rt_xcalloc(1, sizeof *bk);
			bk->key = rt_xstrdup(b->eq_key);
			HASH_ADD_KEYPTR(hh, c->eq, bk->key, strlen(bk->key), bk);
		}
		DL_APPEND(bk->list, b);
		struct eq_column *ec = find_eq_col(c, b->table, b->eq_column);
		if (!ec) {
			ec = rt_xcalloc(1, sizeof *ec);
			ec->table = b->table;
			ec->column = b->eq_column;
			DL_APPEND(c->eq_cols, ec);
		}
		ec->users++;
	} else {
		DL_APPEND(c->scan, b);
	}
}

/* Links a new binding into the registry. Lock held. */
static void link_binding(struct rt_changes *c, struct rt_binding *b)
{
	b->refs = 1;
	HASH_ADD_KEYPTR(hh, c->by_key, b->key, strlen(b->key), b);
	index_binding(c, b);
}

static void unindex_binding(struct rt_changes *c, struct rt_binding *b)
{
	if (!b->eq_key) {
		DL_DELETE(c->scan, b);
		return;
	}
	struct eq_bucket *bk;
	HASH_FIND_STR(c->eq, b->eq_key, bk);
	DL_DELETE(bk->list, b);
	if (!bk->list) {
		HASH_DEL(c->eq, bk);
		free(bk->key);
		free(bk);
	}
	struct eq_column *ec = find_eq_col(c, b->table, b->eq_column);
	if (ec && --ec->users == 0) {
		DL_DELETE(c->eq_cols, ec);
		free(ec);
	}
}

static void unlink_binding(struct rt_changes *c, struct rt_binding *b)
{
	HASH_DELETE(hh, c->by_key, b);
	unindex_binding(c, b);
}

/* Takes the store's policy version: bindings built from an older policy set
 * match nothing from now on, until their channels attach them again under
 * their own requesters (rt_changes_policy_version; a shared binding keeps
 * only one requester's claims, so it cannot be re-evaluated in place).
 * Returns true when it changed. Lock held. */
static bool refresh_policies(struct rt_changes *c)
{
	uint64_t v = rt_store_policies_version(c->store);
	if (v == c->pol_version)
		return false;
	c->pol_version = v;
	rt_info("changes: policies changed (version %llu): subscriptions are attached again "
		"under the new policies", (unsigned long long)v);
	return true;
}

/* The registered binding equal to b (b is consumed), with one more ref. Lock held. */
static struct rt_binding *register_binding(struct rt_changes *c, struct rt_binding *b)
{
	struct rt_binding *have;
	HASH_FIND_STR(c->by_key, b->key, have);
	if (have) {
		have->refs++;
		rt_binding_free(b);
		return have;
	}
	link_binding(c, b);
	return b;
}

static void unref_binding(struct rt_changes *c, struct rt_binding *b)
{
	if (--b->refs)
		return;
	unlink_binding(c, b);
	rt_binding_free(b);
}

/* The position up to which everything g matched has been published: the
 * catch-ups of its channels end there, and its window's next flush goes on
 * right after it. Lock held, or on the feed thread. */
static uint64_t flushed_pos(const struct rt_changes *c, const struct rt_bgroup *g)
{
	return g->has_window && g->win.is_open ? g->win.open_after : c->last_pos;
}

static int by_key(const void *a, const void *b)
{
	return strcmp((*(struct rt_binding *const *)a)->key, (*(struct rt_binding *const *)b)->key);
}

char *rt_changes_group_key(struct rt_binding *const *bindings, size_t n)
{
	struct rt_binding **sorted = rt_xcalloc(n ? n : 1, sizeof *sorted);
	if (n)
		memcpy(sorted, bindings, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, by_key);
	struct rt_buf key;
	rt_buf_init(&key);
	rt_buf_printf(&key, "pgg:%s", n ? sorted[0]->topic : "");
	for (size_t i = 0; i < n; i++) {
		if (i && !strcmp(sorted[i]->key, sorted[i - 1]->key))
			continue; /* identical bindings are one subscription */
		rt_buf_append_byte(&key, 0x1e);
		rt_buf_append_str(&key, sorted[i]->key);
	}
	free(sorted);
	return rt_buf_detach(&key, NULL);
}

struct rt_bgroup *rt_changes_attach(struct rt_changes *c, struct rt_binding **bindings, size_t n,
				    uint64_t *pos)
{
	struct rt_binding **regs = rt_xcalloc(n ? n : 1, sizeof *regs);
	size_t m = 0;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < n; i++) {
		struct rt_binding *b = register_binding(c, bindings[i]);
		bool is_dup = false;
		for (size_t k = 0; k < m && !is_dup; k++)
			is_dup = regs[k] == b;
		if (is_dup)
			unref_binding(c, b); /* identical bindings are one subscription */
		else
			regs[m++] = b;
	}
	qsort(regs, m, sizeof *regs, by_key);
	char *key = rt_changes_group_key(regs, m);
	struct rt_bgroup *g;
	HASH_FIND_STR(c->groups, key, g);
	if (g) { /* the group holds its bindings already */
		g->refs++;
		for (size_t i = 0; i < m; i++)
			unref_binding(c, regs[i]);
		free(regs);
		free(key);
	} else {
		g = rt_xcalloc(1, sizeof *g);
		g->key = key;
		g->topic = rt_xstrdup(m ? regs[0]->topic : "");
		g->bindings = regs;
		g->n = m;
		g->refs = 1;
		g->ids = rt_xcalloc(m ? m : 1, sizeof *g->ids);
		g->matched = rt_xcalloc(m ? m : 1, sizeof *g->matched);
		/* one channel's bindings share their options (realtime.c refuses others) */
		g->has_window = m && rt_delivery_is_on(&regs[0]->dopts);
		if (g->has_window)
			rt_window_init(&g->win, &regs[0]->dopts);
		for (size_t i = 0; i < m; i++) {
			struct rt_binding *b = regs[i];
			if (b->n_groups == b->cap_groups) {
				b->cap_groups = b->cap_groups ? b->cap_groups * 2 : 2;
				b->groups = rt_xrealloc(b->groups, b->cap_groups * sizeof *b->groups);
			}
			b->groups[b->n_groups++] = g;
		}
		HASH_ADD_KEYPTR(hh, c->groups, g->key, strlen(g->key), g);
	}
	/* Under the lock the feed dispatches with: every change after this
	 * position is matched against the new bindings, none before it; those
	 * still waiting in the group's window reach the new channel too. */
	if (pos)
		*pos = flushed_pos(c, g);
	pthread_mutex_unlock(&c->mu);
	return g;
}

/* Drops one reference to g. Lock held. */
static void unref_group(struct rt_changes *c, struct rt_bgroup *g)
{
	if (--g->refs)
		return;
	HASH_DEL(c->groups, g);
	if (g->is_listed)
		DL_DELETE2(c->windows, g, wprev, wnext);
	if (g->has_window)
		rt_window_deinit(&g->win); /* nobody listens any more */
	for (size_t i = 0; i < g->n; i++) {
		struct rt_binding *b = g->bindings[i];
		for (size_t k = 0; k < b->n_groups; k++) {
			if (b->groups[k] == g) {
				b->groups[k] = b->groups[--b->n_groups];
				break;
			}
		}
		unref_binding(c, b);
	}
	free(g->bindings);
	free(g->ids);
	free(g->matched);
	free(g->key);
	free(g->topic);
	free(g);
}

void rt_changes_detach(struct rt_changes *c, struct rt_bgroup *g)
{
	pthread_mutex_lock(&c->mu);
	unref_group(c, g);
	pthread_mutex_unlock(&c->mu);
}

const char *rt_bgroup_key(const struct rt_bgroup *g)
{
	return g->key;
}

/* ---- encoding and matching ---- */

/* ms since the epoch as 2026-01-02T03:04:05.678Z (before the epoch: the
 * epoch). The seconds part is formatted once per second and thread. */
static void iso_ms(int64_t ms, char out[64])
{
	static _Thread_local time_t last_secs = -1;
	static _Thread_local char last[64];
	if (ms < 0)
		ms = 0;
	time_t secs = (time_t)(ms / 1000);
	if (secs != last_secs) {
		struct tm tm = {.tm_year = 70, .tm_mday = 1}; /* the epoch, if secs is out of range */
		gmtime_r(&secs, &tm);
		snprintf(last, sizeof last, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		last_secs = secs;
	}
	int frac = (int)(ms % 1000);
	size_t n = strlen(last);
	memcpy(out, last, n);
	out[n] = '.';
	out[n + 1] = (char)('0' + frac / 100);
	out[n + 2] = (char)('0' + frac / 10 % 10);
	out[n + 3] = (char)('0' + frac % 10);
	out[n + 4] = 'Z';
	out[n + 5] = '\0';
}

/* Which columns go out: what any matched binding both selects and may
 * select (its role's column privileges). */
static bool *sent_columns(struct rt_changes *c, const struct rt_binding *const *matched, size_t n,
			  const struct rt_store_table *t)
{
	bool *sent = rt_xcalloc(t->n_cols ? t->n_cols : 1, sizeof *sent);
	for (size_t k = 0; k < n; k++) {
		struct rt_binding *b = (struct rt_binding *)matched[k];
		size_t vi = vis_index(c, b, t);
		if (vi == SIZE_MAX)
			continue;
		const bool *sel = vis_sel(c, b, vi);
		for (size_t i = 0; i < t->n_cols; i++)
			sent[i] = sent[i] || sel[i];
	}
	return sent;
}

/* Appends a value of a row: scalars written here, anything else (numbers
 * with a fraction, json columns) by jansson. */
static void append_value(struct rt_buf *b, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		rt_buf_append_json_str(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		rt_buf_append_int(b, json_integer_value(v));
		break;
	case JSON_TRUE:
		rt_buf_append_str(b, "true");
		break;
	case JSON_FALSE:
		rt_buf_append_str(b, "false");
		break;
	case JSON_NULL:
		rt_buf_append_str(b, "null");
		break;
	default:
		rt_phx_dump(b, v);
	}
}

/* Appends head (,"name":{), then the sent columns of row, then }. */
static void append_record(struct rt_buf *b, const char *head, const struct rt_store_table *t,
			  const bool *sent, const json_t *row)
{
	rt_buf_append_str(b, head);
	bool is_first = true;
	for (size_t i = 0; i < t->n_cols; i++) {
		const json_t *v = sent[i] ? json_object_get(row, t->cols[i].name) : NULL;
		if (!v)
			continue;
		if (!is_first)
			rt_buf_append_byte(b, ',');
		is_first = false;
		rt_buf_append_json_str(b, t->cols[i].name, strlen(t->cols[i].name));
		rt_buf_append_byte(b, ':');
		append_value(b, v);
	}
	rt_buf_append_byte(b, '}');
}

/*
 * Appends the data object of a change's postgres_changes payload, with the
 * columns the bindings that matched it send. Written directly, not through
 * a JSON tree: it is the work the feed does for every change and subscriber
 * group.
 */
static void write_data(struct rt_buf *b, struct rt_changes *c,
		       const struct rt_binding *const *matched, size_t n,
		       const struct rt_change *ch)
{
	const struct rt_store_table *t = ch->table;
	bool *sent = sent_columns(c, matched, n, t);
	rt_buf_append_str(b, "{\"schema\":");
	rt_buf_append_json_str(b, t->schema, strlen(t->schema));
	rt_buf_append_str(b, ",\"table\":");
	rt_buf_append_json_str(b, t->name, strlen(t->name));
	char ts[64];
	iso_ms(ch->commit_ms, ts);
	rt_buf_append_str(b, ",\"commit_timestamp\":\"");
	rt_buf_append_str(b, ts);
	rt_buf_append_str(b, "\",\"type\":\"");
	rt_buf_append_str(b, rt_change_type_name(ch->type));
	rt_buf_append_str(b, "\",\"columns\":[");
	bool is_first = true;
	for (size_t i = 0; i < t->n_cols; i++) {
		if (!sent[i])
			continue;
		rt_buf_append_str(b, is_first ? "{\"name\":" : ",{\"name\":");
		is_first = false;
		rt_buf_append_json_str(b, t->cols[i].name, strlen(t->cols[i].name));
		rt_buf_append_str(b, ",\"type\":");
		rt_buf_append_json_str(b, t->cols[i].type, strlen(t->cols[i].type));
		rt_buf_append_byte(b, '}');
	}
	rt_buf_append_str(b, "],\"errors\":null,\"position\":\"");
	rt_buf_append_int(b, (long long)ch->pos);
	rt_buf_append_byte(b, '"');
	if (ch->record)
		append_record(b, ",\"record\":{", t, sent, ch->record);
	if (ch->old_record)
		append_record(b, ",\"old_record\":{", t, sent, ch->old_record);
	rt_buf_append_byte(b, '}');
	free(sent);
}

/* Appends the postgres_changes payload of a change for the bindings that
 * matched it: ids lists them all, as Supabase sends one frame per change
 * and channel. */
static void write_payload(struct rt_buf *b, struct rt_changes *c,
			  const struct rt_binding *const *matched, size_t n,
			  const struct rt_change *ch)
{
	rt_buf_append_str(b, "{\"ids\":[");
	for (size_t k = 0; k < n; k++) {
		if (k)
			rt_buf_append_byte(b, ',');
		rt_buf_append_int(b, matched[k]->id);
	}
	rt_buf_append_str(b, "],\"data\":");
	write_data(b, c, matched, n, ch);
	rt_buf_append_byte(b, '}');
}

/* The same payload as a JSON value (rt_changes_match). */
static json_t *change_payload(struct rt_changes *c, const struct rt_binding *const *matched,
			      size_t n, const struct rt_change *ch)
{
	struct rt_buf b;
	rt_buf_init(&b);
	write_payload(&b, c, matched, n, ch);
	json_t *v = json_loadb(b.data, b.len, 0, NULL);
	rt_buf_deinit(&b);
	return v;
}

/* Encodes a change for the matched bindings of a group on topic: one frame
 * per serializer, each with one reference. */
static void encode_change(struct rt_changes *c, const char *topic,
			  const struct rt_binding *const *matched, size_t n,
			  const struct rt_change *ch, struct rt_frame **v1, struct rt_frame **v2)
{
	struct rt_buf p, f;
	rt_buf_init(&p);
	rt_buf_init(&f);
	write_payload(&p, c, matched, n, ch);
	rt_phx_encode_text(RT_PHX_V1, &f, NULL, NULL, topic, "postgres_changes", p.data, p.len);
	*v1 = rt_ws_frame(RT_WS_TEXT, f.data, f.len);
	rt_buf_reset(&f);
	rt_phx_encode_text(RT_PHX_V2, &f, NULL, NULL, topic, "postgres_changes", p.data, p.len);
	*v2 = rt_ws_frame(RT_WS_TEXT, f.data, f.len);
	rt_buf_deinit(&f);
	rt_buf_deinit(&p);
}

/* Publishes a change's frames under key (new references are taken). */
static void publish_frames(struct rt_changes *c, const char *key, uint64_t pos,
			   struct rt_frame *v1, struct rt_frame *v2)
{
	struct rt_msg *m = rt_msg_new(RT_MSG_CHANGE, key);
	m->pos = pos;
	m->v1 = rt_frame_ref(v1);
	m->v2 = rt_frame_ref(v2);
	rt_hub_publish_any(c->hub, m);
	rt_msg_unref(m);
}

/* Publishes one frame pair under key for the matched bindings of a group. */
static void publish(struct rt_changes *c, const char *key, const char *topic,
		    const struct rt_binding *const *matched, size_t n, const struct rt_change *ch)
{
	struct rt_frame *v1, *v2;
	encode_change(c, topic, matched, n, ch, &v1, &v2);
	publish_frames(c, key, ch->pos, v1, v2);
	rt_frame_unref(v1);
	rt_frame_unref(v2);
}

#define MATCH_NO 0
#define MATCH_YES 1
#define MATCH_ASK 2 /* matches if the database says the requester may see the row */

/* Whether b takes change ch: event, table, filter, then its requester's
 * visibility of the row (the new row for INSERT and UPDATE, the old row for
 * DELETE, as filters are checked). */
static int match_of(const struct rt_changes *c, const struct rt_binding *b,
		    const struct rt_change *ch)
{
	unsigned ev = ch->type == RT_CHANGE_INSERT   ? EV_INSERT
		      : ch->type == RT_CHANGE_UPDATE ? EV_UPDATE
						     : EV_DELETE;
	if (!(b->events & ev) || b->pol_version < c->pol_version)
		return MATCH_NO; /* built from an older policy set: its channel attaches again */
	size_t vi = vis_index(c, b, ch->table);
	if (vi == SIZE_MAX)
		return MATCH_NO;
	const json_t *row = ch->type == RT_CHANGE_DELETE ? ch->old_record : ch->record;
	if (b->filter && !(row && rt_filter_match(b->filter, row, column_type, (void *)ch->table)))
		return MATCH_NO;
	switch (b->vis[vi].v) {
	case RT_POLICY_ALLOW_ALL:
		return MATCH_YES;
	case RT_POLICY_ROWS:
		return row && rt_policy_eval(&b->vis[vi].pred, row, column_type,
					     (void *)ch->table) == 1
			       ? MATCH_YES
			       : MATCH_NO;
	case RT_POLICY_OPAQUE:
		return row ? MATCH_ASK : MATCH_NO;
	case RT_POLICY_DENY_ALL:
		break;
	}
	return MATCH_NO;
}

/* The requester of b as the store's checks take it. */
static struct rt_auth who_of(const struct rt_binding *b)
{
	return (struct rt_auth){.role = b->role, .claims = b->claims, .topic = NULL};
}

/* For a catch-up (one group at a time): match_of, asking the database
 * about an opaque policy for this one requester. */
static bool matches_now(struct rt_changes *c, const struct rt_binding *b,
			const struct rt_change *ch)
{
	int m = match_of(c, b, ch);
	if (m != MATCH_ASK)
		return m == MATCH_YES;
	struct rt_auth who = who_of(b);
	const struct rt_auth *w = &who;
	bool visible = false;
	const json_t *row = ch->type == RT_CHANGE_DELETE ? ch->old_record : ch->record;
	if (rt_store_visible(c->store, ch->table, row, &w, 1, &visible))
		return false;
	return visible;
}

/* Notes a matching binding in each of its groups. Lock held. */
static void note_match(struct rt_changes *c, const struct rt_binding *b)
{
	for (size_t i = 0; i < b->n_groups; i++) {
		struct rt_bgroup *g = b->groups[i];
		if (g->stamp != c->stamp) {
			g->stamp = c->stamp;
			g->n_matched = 0;
			if (c->n_touched == c->cap_touched) {
				c->cap_touched = c->cap_touched ? c->cap_touched * 2 : 16;
				c->touched = rt_xrealloc(c->touched, c->cap_touched * sizeof *c->touched);
			}
			c->touched[c->n_touched++] = g;
		}
		g->matched[g->n_matched++] = b;
	}
}

/* Notes b as matching, or to be asked about. Lock held. */
static void consider(struct rt_changes *c, struct rt_binding *b, const struct rt_change *ch)
{
	c->n_considered++;
	int m = match_of(c, b, ch);
	if (m == MATCH_YES) {
		note_match(c, b);
	} else if (m == MATCH_ASK) {
		if (c->n_ask == c->cap_ask) {
			c->cap_ask = c->cap_ask ? c->cap_ask * 2 : 16;
			c->ask = rt_xrealloc(c->ask, c->cap_ask * sizeof *c->ask);
			c->ask_who = rt_xrealloc(c->ask_who, c->cap_ask * sizeof *c->ask_who);
			c->ask_vis = rt_xrealloc(c->ask_vis, c->cap_ask * sizeof *c->ask_vis);
		}
		c->ask[c->n_ask++] = b;
	}
}

static int by_who(const void *a, const void *b)
{
	return strcmp((*(struct rt_binding *const *)a)->who_key,
		      (*(struct rt_binding *const *)b)->who_key);
}

/* Asks the database, in one call for the change, which distinct requesters
 * of the opaque bindings that otherwise match may see its row. Lock held. */
static void ask_database(struct rt_changes *c, const struct rt_change *ch)
{
	if (!c->n_ask)
		return;
	qsort(c->ask, c->n_ask, sizeof *c->ask, by_who);
	struct rt_auth *whos = rt_xcalloc(c->n_ask, sizeof *whos);
	size_t n_who = 0;
	for (size_t i = 0; i < c->n_ask; i++) {
		if (!i || strcmp(c->ask[i]->who_key, c->ask[i - 1]->who_key))
			whos[n_who++] = who_of(c->ask[i]);
	}
	for (size_t i = 0; i < n_who; i++)
		c->ask_who[i] = &whos[i];
	const json_t *row = ch->type == RT_CHANGE_DELETE ? ch->old_record : ch->record;
	if (rt_store_visible(c->store, ch->table, row, c->ask_who, n_who, c->ask_vis))
		memset(c->ask_vis, 0, n_who * sizeof *c->ask_vis);
	for (size_t i = 0, w = 0; i < c->n_ask; i++) {
		if (i && strcmp(c->ask[i]->who_key, c->ask[i - 1]->who_key))
			w++;
		if (c->ask_vis[w])
			note_match(c, c->ask[i]);
	}
	free(whos);
	c->n_ask = 0;
}

/* Publishes one change to every group with a binding it matches. Lock held. */
static void match_change(struct rt_changes *c, const struct rt_change *ch)
{
	c->stamp++;
	c->n_touched = 0;
	c->n_ask = 0;
	struct rt_binding *b;
	DL_FOREACH(c->scan, b)
		consider(c, b, ch);
	const json_t *row = ch->type == RT_CHANGE_DELETE ? ch->old_record : ch->record;
	struct eq_column *ec;
	DL_FOREACH(c->eq_cols, ec) {
		if (ec->table != ch->table)
			continue;
		struct rt_buf k;
		rt_buf_init(&k);
		eq_key_of(&k, ec->table->name, ec->column);
		const struct rt_store_column *col = rt_store_column(ec->table, ec->column);
		if (norm_json(col->type, json_object_get(row, ec->column), &k)) {
			struct eq_bucket *bk;
			HASH_FIND_STR(c->eq, k.data, bk);
			if (bk)
				DL_FOREACH(bk->list, b)
					consider(c, b, ch);
		}
		rt_buf_deinit(&k);
	}
	ask_database(c, ch);
}

/* ---- delivery controls: windows ---- */

static int cmp_id(const void *a, const void *b)
{
	json_int_t x = *(const json_int_t *)a, y = *(const json_int_t *)b;
	return x < y ? -1 : x > y;
}

/* Publishes a flush as one postgres_changes_batch message: the ids of every
 * binding any change matched, the last position, and each change's data. */
static void publish_batch(struct rt_changes *c, struct rt_bgroup *g,
			  const struct rt_pending *items, size_t n)
{
	size_t n_ids = 0;
	for (size_t i = 0; i < n; i++)
		n_ids += items[i].n_matched;
	json_int_t *ids = rt_xmalloc((n_ids ? n_ids : 1) * sizeof *ids);
	n_ids = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < items[i].n_matched; k++)
			ids[n_ids++] = ((const struct rt_binding *)items[i].matched[k])->id;
	qsort(ids, n_ids, sizeof *ids, cmp_id);
	struct rt_buf p, f;
	rt_buf_init(&p);
	rt_buf_init(&f);
	rt_buf_append_str(&p, "{\"ids\":[");
	for (size_t k = 0, w = 0; k < n_ids; k++) {
		if (k && ids[k] == ids[k - 1])
			continue;
		if (w++)
			rt_buf_append_byte(&p, ',');
		rt_buf_append_int(&p, ids[k]);
	}
	uint64_t last = items[n - 1].ch.pos;
	rt_buf_printf(&p, "],\"position\":\"%llu\",\"changes\":[", (unsigned long long)last);
	for (size_t i = 0; i < n; i++) {
		if (i)
			rt_buf_append_byte(&p, ',');
		write_data(&p, c, (const struct rt_binding *const *)items[i].matched,
			   items[i].n_matched, &items[i].ch);
	}
	rt_buf_append_str(&p, "]}");
	rt_phx_encode_text(RT_PHX_V1, &f, NULL, NULL, g->topic, "postgres_changes_batch", p.data,
			   p.len);
	struct rt_frame *v1 = rt_ws_frame(RT_WS_TEXT, f.data, f.len);
	rt_buf_reset(&f);
	rt_phx_encode_text(RT_PHX_V2, &f, NULL, NULL, g->topic, "postgres_changes_batch", p.data,
			   p.len);
	struct rt_frame *v2 = rt_ws_frame(RT_WS_TEXT, f.data, f.len);
	publish_frames(c, g->key, last, v1, v2);
	rt_frame_unref(v1);
	rt_frame_unref(v2);
	rt_buf_deinit(&f);
	rt_buf_deinit(&p);
	free(ids);
}

/* Publishes g's window, encoded once for the group: one batch message, or
 * its changes one by one in position order. Lock held. */
static void flush_window(struct rt_changes *c, struct rt_bgroup *g, uint64_t now_ms)
{
	struct rt_pending *items;
	size_t n = rt_window_take(&g->win, now_ms, &items);
	if (g->is_listed) {
		DL_DELETE2(c->windows, g, wprev, wnext);
		g->is_listed = false;
	}
	if (n && g->win.opts.is_batch) {
		publish_batch(c, g, items, n);
	} else {
		for (size_t i = 0; i < n; i++)
			publish(c, g->key, g->topic, (const struct rt_binding *const *)items[i].matched,
				items[i].n_matched, &items[i].ch);
	}
	rt_window_items_free(items, n);
}

/* Puts a matched change in g's window; a full window goes out at once. Lock held. */
static void window_add(struct rt_changes *c, struct rt_bgroup *g, const struct rt_change *ch)
{
	uint64_t now = rt_mono_ms();
	bool is_full = rt_window_add(&g->win, ch, (const void *const *)g->matched, g->n_matched, now);
	if (!g->is_listed && g->win.is_open) {
		DL_APPEND2(c->windows, g, wprev, wnext);
		g->is_listed = true;
	}
	if (is_full)
		flush_window(c, g, now);
}

/* Flushes the windows that are due. Returns how long the feed may wait for
 * the next one (at most 10 ms). Lock held. */
static unsigned flush_windows(struct rt_changes *c)
{
	uint64_t now = rt_mono_ms(), wait = 10;
	struct rt_bgroup *g, *tmp;
	DL_FOREACH_SAFE2(c->windows, g, tmp, wnext) {
		if (rt_window_is_due(&g->win, now))
			flush_window(c, g, now);
		else if (g->win.due_ms - now < wait)
			wait = g->win.due_ms - now;
	}
	return (unsigned)(wait ? wait : 1);
}

static void dispatch(struct rt_changes *c, const struct rt_change *ch)
{
	match_change(c, ch);
	for (size_t i = 0; i < c->n_touched; i++) {
		struct rt_bgroup *g = c->touched[i];
		if (g->has_window)
			window_add(c, g, ch);
		else
			publish(c, g->key, g->topic, g->matched, g->n_matched, ch);
	}
}

size_t rt_changes_match(struct rt_changes *c, const struct rt_change *ch, const char **keys,
			json_t **payloads, size_t cap, size_t *n_considered)
{
	pthread_mutex_lock(&c->mu);
	refresh_policies(c);
	c->n_considered = 0;
	match_change(c, ch);
	size_t n = c->n_touched;
	for (size_t i = 0; i < n && i < cap; i++) {
		struct rt_bgroup *g = c->touched[i];
		keys[i] = g->key;
		if (payloads)
			payloads[i] = change_payload(c, g->matched, g->n_matched, ch);
	}
	if (n_considered)
		*n_considered = c->n_considered;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* ---- resume ---- */

void rt_changes_resume(struct rt_changes *c, const char *key, uint64_t after, struct rt_bgroup *g)
{
	struct resume_req *r = rt_xcalloc(1, sizeof *r);
	r->key = rt_xstrdup(key);
	r->after = after;
	r->g = g;
	pthread_mutex_lock(&c->mu);
	g->refs++; /* held until the request is served */
	LL_PREPEND(c->requests, r); /* served together, in no particular order */
	pthread_mutex_unlock(&c->mu);
}

static int cmp_req_group(const void *a, const void *b)
{
	const struct resume_req *x = *(struct resume_req *const *)a;
	const struct resume_req *y = *(struct resume_req *const *)b;
	return x->g < y->g ? -1 : x->g > y->g;
}

/* ---- the catch-up cache ---- */

static void cu_drop(struct rt_changes *c)
{
	struct cu_cache *cu = &c->cu;
	struct cu_group *cg, *tmp;
	pthread_mutex_lock(&c->mu);
	HASH_ITER(hh, cu->groups, cg, tmp) {
		HASH_DEL(cu->groups, cg);
		for (size_t k = 0; k < cg->n_m; k++) {
			rt_frame_unref(cg->m[k].v1);
			rt_frame_unref(cg->m[k].v2);
		}
		free(cg->m);
		unref_group(c, cg->g);
		free(cg);
	}
	pthread_mutex_unlock(&c->mu);
	rt_store_changes_free(cu->chs, cu->n);
	*cu = (struct cu_cache){0};
}

/*
 * Makes the cache hold every change in (from, last]. Returns 0, or -1 when
 * it cannot (a read failed, the stretch is too long, or nothing is retained:
 * the caller reads the log itself and sorts out the gaps).
 */
static int cu_prepare(struct rt_changes *c, uint64_t from, uint64_t last)
{
	struct cu_cache *cu = &c->cu;
	if (cu->is_valid && (from < cu->from || last < cu->last))
		cu_drop(c);
	if (!cu->is_valid)
		cu->from = cu->last = from;
	while (cu->last < last) {
		struct rt_change *chs;
		size_t n;
		uint64_t oldest;
		struct rt_store_scan scan;
		if (rt_store_changes_after(c->store, cu->last, RT_CHANGES_BATCH, &chs, &n, &oldest,
					   &scan))
			goto fail;
		if (!cu->is_valid) {
			cu->oldest = oldest;
			cu->is_valid = true;
		}
		size_t keep = 0;
		while (keep < n && chs[keep].pos <= last)
			keep++;
		if (cu->n + keep > CU_MAX_CHANGES) {
			rt_store_changes_free(chs, n);
			goto fail;
		}
		if (cu->n + keep > cu->cap) {
			cu->cap = (cu->n + keep) * 2;
			cu->chs = rt_xrealloc(cu->chs, cu->cap * sizeof *cu->chs);
		}
		memcpy(cu->chs + cu->n, chs, keep * sizeof *chs); /* the cache owns them now */
		cu->n += keep;
		for (size_t i = keep; i < n; i++) { /* past last: they come live */
			json_decref(chs[i].record);
			json_decref(chs[i].old_record);
		}
		free(chs);
		if (scan.n_rows < RT_CHANGES_BATCH || scan.last_pos >= last || scan.last_pos <= cu->last)
			break;
		cu->last = scan.last_pos;
	}
	cu->last = last;
	if (!cu->oldest)
		goto fail; /* nothing retained: every request is a gap */
	cu->used_ms = rt_mono_ms();
	return 0;
fail:
	cu_drop(c);
	return -1;
}

/* g's entry in the cache, matched up to the cache's last change. */
static struct cu_group *cu_group(struct rt_changes *c, struct rt_bgroup *g,
				 const struct rt_binding **matched)
{
	struct cu_cache *cu = &c->cu;
	struct cu_group *cg;
	HASH_FIND_PTR(cu->groups, &g, cg);
	if (!cg) {
		cg = rt_xcalloc(1, sizeof *cg);
		cg->g = g;
		pthread_mutex_lock(&c->mu);
		g->refs++;
		pthread_mutex_unlock(&c->mu);
		HASH_ADD_PTR(cu->groups, g, cg);
	}
	for (; cg->n_done < cu->n; cg->n_done++) {
		const struct rt_change *ch = &cu->chs[cg->n_done];
		size_t n_matched = 0;
		for (size_t b = 0; b < g->n; b++)
			if (matches_now(c, g->bindings[b], ch))
				matched[n_matched++] = g->bindings[b];
		if (!n_matched)
			continue;
		if (cg->n_m == cg->cap_m) {
			cg->cap_m = cg->cap_m ? cg->cap_m * 2 : 16;
			cg->m = rt_xrealloc(cg->m, cg->cap_m * sizeof *cg->m);
		}
		struct cu_match *m = &cg->m[cg->n_m++];
		m->i = cg->n_done;
		encode_change(c, g->topic, matched, n_matched, ch, &m->v1, &m->v2);
	}
	return cg;
}

/* Serves requests sorted by group from the cache. */
static void serve_cached(struct rt_changes *c, struct resume_req **reqs, size_t n_live,
			 const struct rt_binding **matched)
{
	struct cu_cache *cu = &c->cu;
	for (size_t k = 0; k < n_live;) {
		struct cu_group *cg = cu_group(c, reqs[k]->g, matched);
		for (; k < n_live && reqs[k]->g == cg->g; k++) {
			struct resume_req *r = reqs[k];
			if (r->after + 1 < cu->oldest)
				r->is_resync = true; /* changes it missed were pruned */
			if (r->is_resync)
				continue;
			size_t lo = 0, hi = cg->n_m; /* the first match after r->after */
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (cu->chs[cg->m[mid].i].pos <= r->after)
					lo = mid + 1;
				else
					hi = mid;
			}
			for (size_t j = lo; j < cg->n_m && cu->chs[cg->m[j].i].pos <= r->upto; j++)
				publish_frames(c, r->key, cu->chs[cg->m[j].i].pos, cg->m[j].v1,
					       cg->m[j].v2);
		}
	}
}

/* Serves requests sorted by group reading the log in batches from pos
 * (a stretch too long for the cache). */
static void serve_streamed(struct rt_changes *c, struct resume_req **reqs, size_t n_live,
			   uint64_t pos, uint64_t last, const struct rt_binding **matched)
{
	bool is_first = true;
	while (pos < last) {
		struct rt_change *chs;
		size_t n;
		uint64_t oldest;
		struct rt_store_scan scan;
		if (rt_store_changes_after(c->store, pos, RT_CHANGES_BATCH, &chs, &n, &oldest, &scan))
			break;
		if (is_first) {
			/* Behind the window, or the whole log is pruned while the client
			 * is behind: changes were lost to it, so it must resync. */
			for (size_t k = 0; k < n_live; k++)
				if (!oldest || reqs[k]->after + 1 < oldest)
					reqs[k]->is_resync = true;
			is_first = false;
		}
		for (size_t i = 0; i < n && chs[i].pos <= last; i++) {
			/* one run of requests per group: match and encode once */
			for (size_t k = 0; k < n_live;) {
				struct rt_bgroup *g = reqs[k]->g;
				size_t end = k;
				while (end < n_live && reqs[end]->g == g)
					end++;
				size_t n_matched = 0;
				for (size_t b = 0; b < g->n; b++)
					if (matches_now(c, g->bindings[b], &chs[i]))
						matched[n_matched++] = g->bindings[b];
				struct rt_frame *v1 = NULL, *v2 = NULL;
				for (; k < end; k++) {
					struct resume_req *r = reqs[k];
					if (!n_matched || r->is_resync || chs[i].pos <= r->after ||
					    chs[i].pos > r->upto)
						continue;
					if (!v1)
						encode_change(c, g->topic, matched, n_matched, &chs[i], &v1, &v2);
					publish_frames(c, r->key, chs[i].pos, v1, v2);
				}
				rt_frame_unref(v1);
				rt_frame_unref(v2);
			}
		}
		rt_store_changes_free(chs, n);
		if (scan.n_rows < RT_CHANGES_BATCH || scan.last_pos <= pos)
			break;
		pos = scan.last_pos;
	}
}

/*
 * Serves the pending resume requests on the feed thread, between two live
 * batches: no live change is published while the catch-ups are read, so each
 * marker's position splits catch-up and live stream exactly. A group whose
 * window holds changes is caught up to its last flushed position only (the
 * next flush goes on from there), or not at all when the request is already
 * past it. The requests
 * share one read of the log (from the oldest position asked for) and, for
 * requests of the same binding group, one match and one encoding per change,
 * kept in the catch-up cache for the next rounds: a reconnect storm of N
 * clients costs one scan, not N. The bindings are held by the requests.
 */
static void serve_resumes(struct rt_changes *c, struct resume_req *todo)
{
	uint64_t last = c->last_pos, pos = UINT64_MAX;
	size_t n_req = 0;
	for (struct resume_req *r = todo; r; r = r->next)
		n_req++;
	struct resume_req **reqs = rt_xmalloc(n_req * sizeof *reqs);
	size_t n_live = 0;
	for (struct resume_req *r = todo; r; r = r->next) {
		/* A position ahead of the log (the database was replaced) is a gap too. */
		r->is_resync = r->after > last;
		r->upto = flushed_pos(c, r->g);
		if (!r->is_resync && r->after < r->upto) {
			reqs[n_live++] = r;
			if (r->after < pos)
				pos = r->after;
		}
	}
	qsort(reqs, n_live, sizeof *reqs, cmp_req_group);
	size_t max_n = 1;
	for (size_t i = 0; i < n_live; i++)
		if (reqs[i]->g->n + 1 > max_n)
			max_n = reqs[i]->g->n + 1;
	const struct rt_binding **matched = rt_xcalloc(max_n, sizeof *matched);
	if (n_live && !cu_prepare(c, pos, last))
		serve_cached(c, reqs, n_live, matched);
	else if (n_live) {
		rt_debug("changes: %zu catch-ups from position %llu read in batches (not cached)",
			 n_live, (unsigned long long)pos);
		serve_streamed(c, reqs, n_live, pos, last, matched);
	}
	free(matched);
	free(reqs);
	for (struct resume_req *r = todo; r; r = r->next) {
		struct rt_msg *m = rt_msg_new(RT_MSG_CATCHUP, r->key);
		m->pos = !r->is_resync && r->after > r->upto ? r->after : r->upto;
		m->is_resync = r->is_resync;
		rt_hub_publish_any(c->hub, m);
		rt_msg_unref(m);
	}
}

/* Lock held. */
static void free_request(struct rt_changes *c, struct resume_req *r)
{
	unref_group(c, r->g);
	free(r->key);
	free(r);
}

/* ---- the feed thread ---- */

/*
 * Lock held. Takes the resume requests the feed can serve now. A request from
 * a position the feed has not read yet, but the log already holds (a client
 * that learnt it from a write's answer, or resumes right after a burst of
 * writes), waits until the feed has read that far; *is_behind makes the feed
 * read on without waiting. Only a position past the log's end is a gap (the
 * database was replaced), and so is one still unread after DEFER_MAX_MS.
 */
static struct resume_req *take_requests(struct rt_changes *c, bool *is_behind)
{
	struct resume_req *todo = NULL, *r, *tmp;
	uint64_t log_last = 0, now = 0;
	bool has_log_last = false;
	LL_FOREACH_SAFE(c->requests, r, tmp) {
		if (r->after > c->last_pos) {
			if (!has_log_last) {
				log_last = rt_store_last_pos(c->store);
				now = rt_mono_ms();
				has_log_last = true;
			}
			if (!r->deferred_ms)
				r->deferred_ms = now;
			if (r->after <= log_last && now - r->deferred_ms < DEFER_MAX_MS) {
				*is_behind = true;
				continue;
			}
		}
		LL_DELETE(c->requests, r);
		LL_PREPEND(todo, r);
	}
	return todo;
}

static void *feed_main(void *arg)
{
	struct rt_changes *c = arg;
	uint64_t version = 0, last_prune = rt_mono_ms();
	bool is_behind = false; /* the log holds more than the last pass read */
	unsigned wait_ms = 10;  /* until the next window is due */
	while (atomic_load(&c->is_running)) {
		bool is_changed = rt_store_wait(c->store, &version, is_behind ? 0 : wait_ms) || is_behind;
		is_behind = false;
		if (is_changed && rt_hub_backlog(c->hub) > FEED_MAX_BACKLOG) {
			/* The workers are behind: the log keeps the changes, so wait
			 * for them rather than queue without bound. */
			is_behind = true;
			atomic_fetch_add(&rt_metrics_changes_feed_waits, 1);
			struct timespec nap = {0, 1000000};
			nanosleep(&nap, NULL);
			continue;
		}
		pthread_mutex_lock(&c->mu);
		bool is_repoliced = refresh_policies(c);
		while (is_changed) {
			struct rt_change *chs;
			size_t n;
			struct rt_store_scan scan;
			if (rt_store_changes_after(c->store, c->last_pos, RT_CHANGES_BATCH, &chs, &n,
						   NULL, &scan))
				break;
			for (size_t i = 0; i < n; i++)
				dispatch(c, &chs[i]);
			/* by rows read, not changes returned: skipped rows count too */
			uint64_t after = c->last_pos;
			c->last_pos = scan.last_pos;
			if (c->n_consumers) { /* their store reads must not hold up joins */
				pthread_mutex_unlock(&c->mu);
				for (size_t k = 0; k < c->n_consumers; k++)
					if (c->consumers[k].apply)
						c->consumers[k].apply(c->consumers[k].ctx, chs, n, after,
								      scan.last_pos);
				pthread_mutex_lock(&c->mu);
			}
			rt_store_changes_free(chs, n);
			if (scan.n_rows < RT_CHANGES_BATCH)
				break;
			/* More to read: catch-ups waiting and the workers' backlog come
			 * first, so a steady stream of writes starves neither. */
			if (c->requests || rt_hub_backlog(c->hub) > FEED_MAX_BACKLOG) {
				is_behind = true;
				break;
			}
		}
		wait_ms = flush_windows(c); /* delivery controls: the windows due */
		struct resume_req *todo = take_requests(c, &is_behind);
		uint64_t live_pos = c->last_pos;
		pthread_mutex_unlock(&c->mu);
		for (size_t k = 0; k < c->n_consumers; k++)
			if (c->consumers[k].tick)
				c->consumers[k].tick(c->consumers[k].ctx, live_pos);
		if (is_repoliced && c->cu.is_valid)
			cu_drop(c); /* its frames were matched under the old policies */
		/* Catch-ups run without the lock: only this thread publishes live
		 * changes, so none can slip between a catch-up and its marker, and
		 * workers joining or leaving meanwhile are not held up. */
		if (todo)
			serve_resumes(c, todo);
		if (todo) {
			pthread_mutex_lock(&c->mu);
			while (todo) {
				struct resume_req *r = todo;
				LL_DELETE(todo, r);
				free_request(c, r);
			}
			pthread_mutex_unlock(&c->mu);
		} else if (c->cu.is_valid && rt_mono_ms() - c->cu.used_ms >= CU_IDLE_MS) {
			cu_drop(c);
		}
		if (rt_mono_ms() - last_prune >= PRUNE_EVERY_MS) {
			rt_store_prune(c->store);
			last_prune = rt_mono_ms();
		}
	}
	return NULL;
}

struct rt_changes *rt_changes_new(struct rt_store *store, struct rt_hub *hub)
{
	struct rt_changes *c = rt_xcalloc(1, sizeof *c);
	c->store = store;
	c->hub = hub;
	pthread_mutex_init(&c->mu, NULL);
	c->last_pos = rt_store_last_pos(store);
	c->pol_version = rt_store_policies_version(store);
	return c;
}

int rt_changes_add_consumer(struct rt_changes *c, const struct rt_change_consumer *k)
{
	if (c->n_consumers == RT_CHANGES_MAX_CONSUMERS)
		return RT_ETOOBIG;
	c->consumers[c->n_consumers++] = *k;
	return 0;
}

static void live_apply(void *ctx, const struct rt_change *chs, size_t n, uint64_t after,
		       uint64_t last_pos)
{
	rt_live_apply(ctx, chs, n, last_pos);
}

static void live_tick(void *ctx, uint64_t last_pos)
{
	rt_live_tick(ctx, last_pos);
}

void rt_changes_set_live(struct rt_changes *c, struct rt_live *live)
{
	struct rt_change_consumer k = {live_apply, live_tick, live};
	if (live)
		rt_changes_add_consumer(c, &k);
}

int rt_changes_start(struct rt_changes *c)
{
	atomic_store(&c->is_running, true);
	int rc = pthread_create(&c->thread, NULL, feed_main, c);
	c->is_started = rc == 0;
	return -rc;
}

void rt_changes_stop(struct rt_changes *c)
{
	if (!c || !c->is_started)
		return;
	atomic_store(&c->is_running, false);
	pthread_join(c->thread, NULL);
	c->is_started = false;
}

void rt_changes_free(struct rt_changes *c)
{
	if (!c)
		return;
	rt_changes_stop(c);
	cu_drop(c);
	while (c->requests) {
		struct resume_req *r = c->requests;
		LL_DELETE(c->requests, r);
		free_request(c, r);
	}
	struct rt_bgroup *g, *gtmp;
	HASH_ITER(hh, c->groups, g, gtmp) {
		g->refs = 1;
		unref_group(c, g); /* releases its bindings */
	}
	struct rt_binding *b, *tmp;
	HASH_ITER(hh, c->by_key, b, tmp) {
		unlink_binding(c, b);
		rt_binding_free(b);
	}
	free(c->touched);
	free(c->ask);
	free(c->ask_who);
	free(c->ask_vis);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

uint64_t rt_changes_policy_version(struct rt_changes *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t v = c->pol_version;
	pthread_mutex_unlock(&c->mu);
	return v;
}

uint64_t rt_changes_last_pos(struct rt_changes *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t pos = c->last_pos;
	pthread_mutex_unlock(&c->mu);
	return pos;
}
