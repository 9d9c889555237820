#include "store/conflict.h"

#include <string.h>

#include "common/err.h"

bool rt_conflict_values_equal(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b)) {
		if (json_is_integer(a) && json_is_integer(b))
			return json_integer_value(a) == json_integer_value(b);
		return json_number_value(a) == json_number_value(b);
	}
	if (json_typeof(a) != json_typeof(b))
		return false;
	if (json_is_array(a)) {
		size_t n = json_array_size(a);
		if (n != json_array_size(b))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!rt_conflict_values_equal(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	if (json_is_object(a)) {
		if (json_object_size(a) != json_object_size(b))
			return false;
		const char *k;
		const json_t *v;
		json_object_foreach((json_t *)a, k, v) {
			const json_t *w = json_object_get(b, k);
			if (!w || !rt_conflict_values_equal(v, w))
				return false;
		}
		return true;
	}
	return json_equal(a, b);
}

/* A missing column reads as null, as a column that is not in the row. */
static const json_t *column(const json_t *row, const char *name)
{
	const json_t *v = json_object_get(row, name);
	return v ? v : json_null();
}

int rt_conflict_decide(const json_t *current, const json_t *base, const json_t *changes,
		       enum rt_write_strategy strategy, struct rt_conflict_result *out)
{
	if ((current && !json_is_object(current)) || (base && !json_is_object(base)) ||
	    (changes && !json_is_object(changes)))
		return RT_EINVAL;
	memset(out, 0, sizeof *out);
	out->apply = json_object();
	out->conflicts = json_array();
	out->is_delete = !changes;
	if (changes)
		json_object_update(out->apply, (json_t *)changes);

	bool has_base = base && json_object_size(base);
	if (!current) {
		if (has_base && strategy != RT_STRATEGY_LWW) {
			out->outcome = RT_WRITE_CONFLICT;
			json_object_clear(out->apply);
			out->is_delete = false;
		} else {
			out->outcome = RT_WRITE_MISSING;
		}
		return 0;
	}

	const char *k;
	const json_t *b;
	if (base) {
		json_object_foreach((json_t *)base, k, b) {
			const json_t *now = column(current, k);
			if (rt_conflict_values_equal(now, b))
				continue;
			/* Both sides made the same change: no conflict, nothing to lose. */
			const json_t *want = changes ? json_object_get(changes, k) : NULL;
			if (want && rt_conflict_values_equal(now, want))
				continue;
			json_array_append_new(out->conflicts, json_string(k));
			if (strategy == RT_STRATEGY_MERGE)
				json_object_del(out->apply, k);
		}
	}
	if (!json_array_size(out->conflicts) || strategy == RT_STRATEGY_LWW) {
		out->outcome = RT_WRITE_APPLIED;
	} else if (strategy == RT_STRATEGY_MERGE && changes) {
		out->outcome = RT_WRITE_MERGED;
	} else {
		out->outcome = RT_WRITE_CONFLICT;
		json_object_clear(out->apply);
		out->is_delete = false;
	}
	return 0;
}

void rt_conflict_result_deinit(struct rt_conflict_result *r)
{
	json_decref(r->apply);
	json_decref(r->conflicts);
	r->apply = r->conflicts = NULL;
}

int rt_conflict_strategy_parse(const char *s, enum rt_write_strategy *out)
{
	if (!strcmp(s, "reject"))
		*out = RT_STRATEGY_REJECT;
	else if (!strcmp(s, "merge"))
		*out = RT_STRATEGY_MERGE;
	else if (!strcmp(s, "lww") || !strcmp(s, "last-write-wins"))
		*out = RT_STRATEGY_LWW;
	else
		return RT_EINVAL;
	return 0;
}

const char *rt_conflict_strategy_name(enum rt_write_strategy s)
{
	static const char *const names[] = {"reject", "merge", "lww"};
	return (unsigned)s < sizeof names / sizeof *names ? names[s] : "unknown";
}

const char *rt_conflict_outcome_name(enum rt_write_outcome o)
{
	static const char *const names[] = {"applied", "merged", "conflict", "missing"};
	return (unsigned)o < sizeof names / sizeof *names ? names[o] : "unknown";
}
