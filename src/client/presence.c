#include "client/presence.h"

#include <string.h>

static const json_t *metas_of(const json_t *entry)
{
	const json_t *m = json_object_get(entry, "metas");
	return json_is_array(m) ? m : NULL;
}

static bool has_ref(const json_t *metas, const json_t *meta)
{
	const char *ref = json_string_value(json_object_get(meta, "phx_ref"));
	size_t i;
	const json_t *m;
	json_array_foreach(metas, i, m) {
		const char *r = json_string_value(json_object_get(m, "phx_ref"));
		if (ref && r && !strcmp(ref, r))
			return true;
	}
	return false;
}

/* Appends [kind, key, current, changed]. Arrays of metas are never changed
 * in place (a new state gets new arrays), so sharing them is safe. */
static int add_event(json_t *events, const char *kind, const char *key, const json_t *current,
		     json_t *changed)
{
	json_t *cur = current ? json_incref((json_t *)current) : json_array();
	json_t *ev = json_pack("[s,s,o,O]", kind, key, cur, changed);
	if (!ev)
		return -1;
	return json_array_append_new(events, ev);
}

/* The metas of `from` whose phx_ref is not in `in`, as a new array. */
static json_t *missing(const json_t *from, const json_t *in)
{
	json_t *out = json_array();
	size_t i;
	const json_t *m;
	if (!out)
		return NULL;
	json_array_foreach(from, i, m) {
		if (!json_is_object(m) || (in && has_ref(in, m)))
			continue;
		if (json_array_append(out, (json_t *)m)) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

static json_t *apply_full(const json_t *old, const json_t *msg, json_t *events)
{
	json_t *next = json_object();
	const char *key;
	const json_t *v;
	if (!next)
		return NULL;
	json_object_foreach((json_t *)msg, key, v) {
		const json_t *metas = metas_of(v);
		if (metas && json_object_set(next, key, (json_t *)metas))
			goto err_free;
	}
	/* Leaves first: metas gone from each old key. */
	json_object_foreach((json_t *)old, key, v) {
		const json_t *now = json_object_get(next, key);
		json_t *left = missing(v, now);
		if (!left)
			goto err_free;
		int rc = json_array_size(left) ? add_event(events, "leave", key, now, left) : 0;
		json_decref(left);
		if (rc)
			goto err_free;
	}
	json_object_foreach(next, key, v) {
		json_t *joined = missing(v, json_object_get(old, key));
		if (!joined)
			goto err_free;
		int rc = json_array_size(joined) ? add_event(events, "join", key, v, joined) : 0;
		json_decref(joined);
		if (rc)
			goto err_free;
	}
	return next;
err_free:
	json_decref(next);
	return NULL;
}

json_t *rt_client_copy_object(const json_t *src)
{
	json_t *dst = json_object();
	const char *key;
	json_t *v;
	if (!dst)
		return NULL;
	json_object_foreach((json_t *)src, key, v) {
		if (json_object_set(dst, key, v)) {
			json_decref(dst);
			return NULL;
		}
	}
	return dst;
}

static json_t *apply_diff(const json_t *old, const json_t *msg, json_t *events)
{
	json_t *next = rt_client_copy_object(old);
	const char *key;
	const json_t *v;
	if (!next)
		return NULL;
	const json_t *joins = json_object_get(msg, "joins");
	const json_t *leaves = json_object_get(msg, "leaves");
	json_object_foreach((json_t *)joins, key, v) {
		const json_t *metas = metas_of(v);
		if (!metas)
			continue;
		json_t *cur = json_object_get(next, key);
		/* new metas first, then the old ones not replaced */
		json_t *merged = missing(metas, NULL);
		json_t *kept = cur ? missing(cur, metas) : json_array();
		if (!merged || !kept || json_array_extend(merged, kept) ||
		    json_object_set(next, key, merged)) {
			json_decref(merged);
			json_decref(kept);
			goto err_free;
		}
		json_decref(kept);
		json_t *joined = missing(metas, NULL);
		int rc = joined ? add_event(events, "join", key, merged, joined) : -1;
		json_decref(joined);
		json_decref(merged);
		if (rc)
			goto err_free;
	}
	json_object_foreach((json_t *)leaves, key, v) {
		const json_t *metas = metas_of(v);
		json_t *cur = json_object_get(next, key);
		if (!metas || !cur)
			continue;
		json_t *rest = missing(cur, metas);
		json_t *left = missing(metas, NULL);
		int rc = !rest || !left;
		if (!rc)
			rc = json_array_size(rest) ? json_object_set(next, key, rest)
						   : json_object_del(next, key);
		if (!rc)
			rc = add_event(events, "leave", key, rest, left);
		json_decref(rest);
		json_decref(left);
		if (rc)
			goto err_free;
	}
	return next;
err_free:
	json_decref(next);
	return NULL;
}

json_t *rt_client_presence_apply(json_t **state, const json_t *msg, bool is_full)
{
	json_t *events = json_array();
	if (!events)
		return NULL;
	json_t *next = is_full ? apply_full(*state, msg, events) : apply_diff(*state, msg, events);
	if (!next)
		goto err_free;
	json_t *sync = json_pack("[s,n,n,n]", "sync");
	if (!sync || json_array_append_new(events, sync)) {
		json_decref(next);
		goto err_free;
	}
	json_decref(*state);
	*state = next;
	return events;
err_free:
	json_decref(events);
	return NULL;
}
