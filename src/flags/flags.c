#include "flags/flags.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/log.h"

/* ---- counters (live as long as struct rt_flags, across sets) ---- */

struct flag_counter {
	char *flag, *variant; /* variant: "on", "off" or the variant's name */
	_Atomic uint64_t n;
	struct flag_counter *next;
};

struct rt_flags {
	char *path; /* NULL: in memory only */
	pthread_mutex_t mu; /* the current set, the file, the counter list */
	struct rt_flagset *cur;
	_Atomic uint64_t generation;
	struct flag_counter *counters;
	size_t n_counters;
	_Atomic uint64_t evaluations, reloads, reload_errors;
};

/* At most this many distinct (flag, variant) counters: past it, exposures of
 * new pairs are not counted (a flood of renamed flags cannot grow memory). */
#define MAX_COUNTERS 8192

/* ---- a parsed set ---- */

struct target {
	char *claim;    /* a claim name, or a dotted path into the claims */
	json_t *values; /* an array of accepted values (a scalar becomes [scalar]) */
};

struct variant {
	char *name;
	uint32_t weight;
	_Atomic uint64_t *exposures; /* NULL: not counted */
};

struct flag {
	char *name;
	unsigned feature; /* RT_FLAG_* bit, 0 for an app flag */
	bool is_enabled;
	uint32_t rollout; /* in millionths */
	char **channels;
	size_t n_channels;
	char **tables;
	size_t n_tables;
	struct target *targets;
	size_t n_targets;
	struct variant *variants;
	size_t n_variants;
	uint64_t total_weight;
	EVP_MD_CTX *name_md; /* SHA-256 with name and its NUL absorbed; NULL when unused */
	_Atomic uint64_t *exp_on, *exp_off;
};

struct rt_flagset {
	_Atomic unsigned refs;
	json_t *doc;
	struct flag *flags;
	size_t n_flags;
};

static const char *const feature_names[] = {
#define RT_FF(name, text) text,
	RT_FLAG_FEATURES(RT_FF)
#undef RT_FF
};

const char *rt_flag_feature_name(unsigned bit)
{
	for (unsigned i = 0; i < RT_FLAG_N_FEATURES; i++)
		if (bit == 1u << i)
			return feature_names[i];
	return NULL;
}

/* The feature a flag name switches: "broadcast" or "broadcast.<x>". */
static unsigned feature_of(const char *name)
{
	for (unsigned i = 0; i < RT_FLAG_N_FEATURES; i++) {
		size_t n = strlen(feature_names[i]);
		if (!strncmp(name, feature_names[i], n) && (!name[n] || name[n] == '.'))
			return 1u << i;
	}
	return 0;
}

static bool is_good_name(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.' || c == ':'))
			return false;
	}
	return true;
}

/*
 * SHA-256 through OpenSSL. The digest is fetched once; each flag keeps a
 * context with its name already absorbed, and an evaluation copies it into
 * a context of the calling thread's and adds the sub: no provider lookup
 * and no allocation per evaluation.
 */
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256;
static pthread_key_t scratch_key;

static void free_scratch(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void sha_init(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256 || pthread_key_create(&scratch_key, free_scratch)) {
		rt_error("flags: SHA-256 is not available");
		abort();
	}
}

static EVP_MD_CTX *new_ctx(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx) {
		rt_error("flags: cannot allocate a digest context");
		abort();
	}
	return ctx;
}

/* The calling thread's context (freed when the thread ends). */
static EVP_MD_CTX *scratch(void)
{
	EVP_MD_CTX *ctx = pthread_getspecific(scratch_key);
	if (!ctx) {
		ctx = new_ctx();
		pthread_setspecific(scratch_key, ctx);
	}
	return ctx;
}

/* A context with name and its NUL absorbed. */
static EVP_MD_CTX *name_ctx(const char *name)
{
	pthread_once(&sha_once, sha_init);
	EVP_MD_CTX *ctx = new_ctx();
	if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, name, strlen(name) + 1) != 1) {
		rt_error("flags: SHA-256 failed");
		abort();
	}
	return ctx;
}

/* SHA-256(name ‖ NUL ‖ sub), name's part from base. */
static void digest_from(const EVP_MD_CTX *base, const char *sub, uint8_t out[32])
{
	EVP_MD_CTX *ctx = scratch();
	unsigned len = 0;
	if (!sub)
		sub = "";
	if (EVP_MD_CTX_copy_ex(ctx, base) != 1 || EVP_DigestUpdate(ctx, sub, strlen(sub)) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &len) != 1) {
		rt_error("flags: SHA-256 failed");
		abort();
	}
}

static void digest(const char *name, const char *sub, uint8_t out[32])
{
	EVP_MD_CTX *base = name_ctx(name);
	digest_from(base, sub, out);
	EVP_MD_CTX_free(base);
}

static void flag_deinit(struct flag *f)
{
	free(f->name);
	for (size_t i = 0; i < f->n_channels; i++)
		free(f->channels[i]);
	free(f->channels);
	for (size_t i = 0; i < f->n_tables; i++)
		free(f->tables[i]);
	free(f->tables);
	for (size_t i = 0; i < f->n_targets; i++) {
		free(f->targets[i].claim);
		json_decref(f->targets[i].values);
	}
	free(f->targets);
	for (size_t i = 0; i < f->n_variants; i++)
		free(f->variants[i].name);
	free(f->variants);
	EVP_MD_CTX_free(f->name_md);
}

static int parse_globs(const char *flag, const char *key, const json_t *v, char ***out,
		       size_t *n_out, char *err, size_t err_cap)
{
	if (!v)
		return 0;
	if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > RT_FLAGS_MAX_LIST) {
		snprintf(err, err_cap, "flag %s: %s must be an array of 1 to %d globs", flag, key,
			 RT_FLAGS_MAX_LIST);
		return -1;
	}
	*out = rt_xcalloc(json_array_size(v), sizeof **out);
	size_t i;
	const json_t *g;
	json_array_foreach(v, i, g) {
		const char *s = json_string_value(g);
		if (!s || !*s || strlen(s) > RT_FLAGS_MAX_GLOB || strlen(s) != json_string_length(g)) {
			snprintf(err, err_cap, "flag %s: %s[%zu] must be a glob of 1 to %d bytes", flag,
				 key, i, RT_FLAGS_MAX_GLOB);
			return -1;
		}
		(*out)[(*n_out)++] = rt_xstrdup(s);
	}
	return 0;
}

static bool is_scalar(const json_t *v)
{
	return json_is_string(v) || json_is_integer(v) || json_is_boolean(v) || json_is_real(v);
}

static int parse_when(struct flag *f, const json_t *v, char *err, size_t err_cap)
{
	if (!v)
		return 0;
	if (!json_is_object(v) || json_object_size(v) > RT_FLAGS_MAX_LIST) {
		snprintf(err, err_cap, "flag %s: when must be an object of at most %d claims", f->name,
			 RT_FLAGS_MAX_LIST);
		return -1;
	}
	f->targets = rt_xcalloc(json_object_size(v) + 1, sizeof *f->targets);
	const char *claim;
	json_t *val;
	json_object_foreach((json_t *)v, claim, val) {
		if (!*claim || strlen(claim) > RT_FLAGS_MAX_GLOB) {
			snprintf(err, err_cap, "flag %s: a claim name in when is empty or too long",
				 f->name);
			return -1;
		}
		json_t *values;
		if (is_scalar(val)) {
			values = json_array();
			json_array_append(values, val);
		} else if (json_is_array(val) && json_array_size(val) &&
			   json_array_size(val) <= RT_FLAGS_MAX_LIST) {
			size_t i;
			json_t *e;
			json_array_foreach(val, i, e) {
				if (!is_scalar(e)) {
					snprintf(err, err_cap,
						 "flag %s: when.%s must hold strings, numbers or booleans",
						 f->name, claim);
					return -1;
				}
			}
			values = json_incref(val);
		} else {
			snprintf(err, err_cap,
				 "flag %s: when.%s must be a value or a list of 1 to %d values", f->name,
				 claim, RT_FLAGS_MAX_LIST);
			return -1;
		}
		f->targets[f->n_targets].claim = rt_xstrdup(claim);
		f->targets[f->n_targets++].values = values;
	}
	return 0;
}

static int parse_variants(struct flag *f, const json_t *v, char *err, size_t err_cap)
{
	if (!v)
		return 0;
	if (f->feature) {
		snprintf(err, err_cap, "flag %s: a feature flag is on or off, it has no variants",
			 f->name);
		return -1;
	}
	if (!json_is_object(v) || !json_object_size(v) ||
	    json_object_size(v) > RT_FLAGS_MAX_VARIANTS) {
		snprintf(err, err_cap, "flag %s: variants must be an object of 1 to %d weights",
			 f->name, RT_FLAGS_MAX_VARIANTS);
		return -1;
	}
	f->variants = rt_xcalloc(json_object_size(v), sizeof *f->variants);
	const char *name;
	json_t *w;
	json_object_foreach((json_t *)v, name, w) {
		if (!is_good_name(name, RT_FLAGS_MAX_NAME) || !strcmp(name, "on") ||
		    !strcmp(name, "off")) {
			snprintf(err, err_cap,
				 "flag %s: variant names are 1 to %d of [A-Za-z0-9_.:-] (not on, off)",
				 f->name, RT_FLAGS_MAX_NAME);
			return -1;
		}
		if (!json_is_integer(w) || json_integer_value(w) < 0 ||
		    json_integer_value(w) > 1000000) {
			snprintf(err, err_cap, "flag %s: variant %s: a weight is an integer 0 to 1000000",
				 f->name, name);
			return -1;
		}
		struct variant *vr = &f->variants[f->n_variants++];
		vr->name = rt_xstrdup(name);
		vr->weight = (uint32_t)json_integer_value(w);
		f->total_weight += vr->weight;
	}
	if (!f->total_weight) {
		snprintf(err, err_cap, "flag %s: the variants' weights add up to 0", f->name);
		return -1;
	}
	return 0;
}

static int parse_flag(struct flag *f, const char *name, const json_t *def, char *err,
		      size_t err_cap)
{
	f->name = rt_xstrdup(name);
	f->is_enabled = true;
	f->rollout = RT_FLAGS_BUCKETS;
	if (!is_good_name(name, RT_FLAGS_MAX_NAME)) {
		snprintf(err, err_cap, "a flag name is 1 to %d of [A-Za-z0-9_.:-], not '%.80s'",
			 RT_FLAGS_MAX_NAME, name);
		return -1;
	}
	f->feature = feature_of(name);
	if (json_is_boolean(def)) { /* shorthand: "name": true */
		f->is_enabled = json_is_true(def);
		return 0;
	}
	if (!json_is_object(def)) {
		snprintf(err, err_cap, "flag %s: a definition is an object or a boolean", name);
		return -1;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)def, key, v) {
		if (strcmp(key, "enabled") && strcmp(key, "rollout") && strcmp(key, "when") &&
		    strcmp(key, "variants") && strcmp(key, "channels") && strcmp(key, "tables") &&
		    strcmp(key, "description")) {
			snprintf(err, err_cap, "flag %s: unknown member '%.80s'", name, key);
			return -1;
		}
	}
	const json_t *en = json_object_get(def, "enabled");
	if (en && !json_is_boolean(en)) {
		snprintf(err, err_cap, "flag %s: enabled must be true or false", name);
		return -1;
	}
	f->is_enabled = !en || json_is_true(en);
	const json_t *d = json_object_get(def, "description");
	if (d && (!json_is_string(d) || json_string_length(d) > 1024)) {
		snprintf(err, err_cap, "flag %s: description must be a string of at most 1024 bytes",
			 name);
		return -1;
	}
	const json_t *ro = json_object_get(def, "rollout");
	if (ro) {
		double pct = json_number_value(ro);
		if (!json_is_number(ro) || !isfinite(pct) || pct < 0 || pct > 100) {
			snprintf(err, err_cap, "flag %s: rollout is a percentage from 0 to 100", name);
			return -1;
		}
		f->rollout = (uint32_t)llround(pct * (RT_FLAGS_BUCKETS / 100));
	}
	if (parse_globs(name, "channels", json_object_get(def, "channels"), &f->channels,
			&f->n_channels, err, err_cap) ||
	    parse_globs(name, "tables", json_object_get(def, "tables"), &f->tables, &f->n_tables,
			err, err_cap) ||
	    parse_when(f, json_object_get(def, "when"), err, err_cap) ||
	    parse_variants(f, json_object_get(def, "variants"), err, err_cap))
		return -1;
	if (f->rollout < RT_FLAGS_BUCKETS || f->n_variants)
		f->name_md = name_ctx(name);
	return 0;
}

int rt_flagset_check_flag(const char *name, const json_t *def, char *err, size_t err_cap)
{
	struct flag f = {0};
	int rc = parse_flag(&f, name, def, err, err_cap);
	flag_deinit(&f);
	return rc;
}

static void flagset_free(struct rt_flagset *fs)
{
	for (size_t i = 0; i < fs->n_flags; i++)
		flag_deinit(&fs->flags[i]);
	free(fs->flags);
	json_decref(fs->doc);
	free(fs);
}

struct rt_flagset *rt_flagset_parse(const json_t *doc, char *err, size_t err_cap)
{
	struct rt_flagset *fs = rt_xcalloc(1, sizeof *fs);
	atomic_init(&fs->refs, 1);
	if (!doc || (json_is_object(doc) && !json_object_size(doc))) {
		fs->doc = json_pack("{s:{}}", "flags");
		return fs;
	}
	const json_t *flags = json_object_get(doc, "flags");
	if (!json_is_object(doc) || !json_is_object(flags) || json_object_size(doc) != 1) {
		snprintf(err, err_cap, "a flag set is {\"flags\": {name: definition, ...}}");
		goto fail;
	}
	if (json_object_size(flags) > RT_FLAGS_MAX) {
		snprintf(err, err_cap, "at most %d flags", RT_FLAGS_MAX);
		goto fail;
	}
	fs->flags = rt_xcalloc(json_object_size(flags) + 1, sizeof *fs->flags);
	const char *name;
	json_t *def;
	json_object_foreach((json_t *)flags, name, def) {
		struct flag *f = &fs->flags[fs->n_flags++];
		if (parse_flag(f, name, def, err, err_cap))
			goto fail;
	}
	fs->doc = json_deep_copy(doc);
	return fs;
fail:
	flagset_free(fs);
	return NULL;
}

struct rt_flagset *rt_flagset_ref(struct rt_flagset *fs)
{
	if (fs)
		atomic_fetch_add(&fs->refs, 1);
	return fs;
}

void rt_flagset_unref(struct rt_flagset *fs)
{
	if (fs && atomic_fetch_sub(&fs->refs, 1) == 1)
		flagset_free(fs);
}

size_t rt_flagset_count(const struct rt_flagset *fs)
{
	return fs ? fs->n_flags : 0;
}

json_t *rt_flagset_doc(const struct rt_flagset *fs)
{
	return json_deep_copy(fs->doc);
}

/* ---- evaluation ---- */

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

uint32_t rt_flags_bucket(const char *name, const char *sub)
{
	uint8_t d[32];
	digest(name, sub, d);
	return (uint32_t)(be64(d) % RT_FLAGS_BUCKETS);
}

uint32_t rt_flags_variant_bucket(const char *name, const char *sub)
{
	uint8_t d[32];
	digest(name, sub, d);
	return (uint32_t)(be64(d + 8) % RT_FLAGS_BUCKETS);
}

/* A claim by name, or by a dotted path ("app_metadata.team"). */
static const json_t *claim_get(const json_t *claims, const char *path)
{
	const json_t *v = json_object_get(claims, path);
	if (v || !strchr(path, '.'))
		return v;
	char buf[RT_FLAGS_MAX_GLOB + 1];
	snprintf(buf, sizeof buf, "%s", path);
	v = claims;
	for (char *save, *part = strtok_r(buf, ".", &save); part && v;
	     part = strtok_r(NULL, ".", &save))
		v = json_object_get(v, part);
	return v;
}

static bool same_value(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(a, b);
}

static bool targets_match(const struct flag *f, const json_t *claims)
{
	for (size_t i = 0; i < f->n_targets; i++) {
		const json_t *v = claim_get(claims, f->targets[i].claim);
		if (!v)
			return false;
		bool hit = false;
		size_t k;
		json_t *want;
		json_array_foreach(f->targets[i].values, k, want) {
			if (json_is_array(v)) { /* a list claim matches when it holds a value */
				size_t j;
				json_t *e;
				json_array_foreach(v, j, e)
					hit = hit || same_value(e, want);
			} else {
				hit = same_value(v, want);
			}
			if (hit)
				break;
		}
		if (!hit)
			return false;
	}
	return true;
}

static void eval_flag(const struct flag *f, const struct rt_flag_user *u,
		      struct rt_flag_answer *out, const struct variant **vout)
{
	*out = (struct rt_flag_answer){0};
	*vout = NULL;
	if (!f->is_enabled || !targets_match(f, u->claims))
		return;
	uint8_t d[32];
	bool has_digest = false;
	if (f->rollout < RT_FLAGS_BUCKETS) {
		/* Without a sub there is no stable user: only a full rollout is on. */
		if (!u->sub || !*u->sub)
			return;
		digest_from(f->name_md, u->sub, d);
		has_digest = true;
		if (be64(d) % RT_FLAGS_BUCKETS >= f->rollout)
			return;
	}
	out->is_on = true;
	if (!f->n_variants)
		return;
	if (!has_digest)
		digest_from(f->name_md, u->sub, d);
	uint64_t pick = (be64(d + 8) % RT_FLAGS_BUCKETS) * f->total_weight / RT_FLAGS_BUCKETS;
	for (size_t i = 0; i < f->n_variants; i++) {
		if (pick < f->variants[i].weight) {
			*vout = &f->variants[i];
			break;
		}
		pick -= f->variants[i].weight;
	}
	if (!*vout) /* unreachable with pick < total_weight; keep the last */
		*vout = &f->variants[f->n_variants - 1];
	out->variant = (*vout)->name;
}

int rt_flagset_eval(const struct rt_flagset *fs, const char *name, const struct rt_flag_user *u,
		    struct rt_flag_answer *out)
{
	for (size_t i = 0; i < fs->n_flags; i++) {
		if (strcmp(fs->flags[i].name, name))
			continue;
		const struct variant *v;
		eval_flag(&fs->flags[i], u, out, &v);
		return 0;
	}
	return RT_ENOTFOUND;
}

static bool any_glob(char *const *globs, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!fnmatch(globs[i], s, 0))
			return true;
	return false;
}

static bool applies(const struct flag *f, const struct rt_flag_scope *sc)
{
	if (f->n_channels && (!sc->channel || !any_glob(f->channels, f->n_channels, sc->channel)))
		return false;
	if (f->n_tables) {
		for (size_t i = 0; i < sc->n_tables; i++)
			if (!strcmp(sc->tables[i], "*") ||
			    any_glob(f->tables, f->n_tables, sc->tables[i]))
				return true;
		return false;
	}
	return true;
}

unsigned rt_flagset_features_off(const struct rt_flagset *fs, const struct rt_flag_user *u,
				 const struct rt_flag_scope *scope)
{
	unsigned off = 0;
	for (size_t i = 0; fs && i < fs->n_flags; i++) {
		const struct flag *f = &fs->flags[i];
		if (!f->feature || (off & f->feature) || !applies(f, scope))
			continue;
		struct rt_flag_answer a;
		const struct variant *v;
		eval_flag(f, u, &a, &v);
		if (!a.is_on)
			off |= f->feature;
	}
	return off;
}

json_t *rt_flagset_view(const struct rt_flagset *fs, const struct rt_flag_user *u,
			const struct rt_flag_scope *scope, bool count_exposures)
{
	json_t *o = json_object();
	for (size_t i = 0; fs && i < fs->n_flags; i++) {
		const struct flag *f = &fs->flags[i];
		if (!applies(f, scope))
			continue;
		struct rt_flag_answer a;
		const struct variant *v;
		eval_flag(f, u, &a, &v);
		json_object_set_new(o, f->name,
				    a.variant ? json_string(a.variant) : json_boolean(a.is_on));
		if (!count_exposures)
			continue;
		_Atomic uint64_t *c = v ? v->exposures : a.is_on ? f->exp_on : f->exp_off;
		if (c)
			atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
	}
	return o;
}

/* ---- the current set ---- */

static _Atomic uint64_t *counter_for(struct rt_flags *f, const char *flag, const char *variant)
{
	for (struct flag_counter *c = f->counters; c; c = c->next)
		if (!strcmp(c->flag, flag) && !strcmp(c->variant, variant))
			return &c->n;
	if (f->n_counters >= MAX_COUNTERS)
		return NULL;
	struct flag_counter *c = rt_xcalloc(1, sizeof *c);
	c->flag = rt_xstrdup(flag);
	c->variant = rt_xstrdup(variant);
	c->next = f->counters;
	f->counters = c;
	f->n_counters++;
	return &c->n;
}

/* Gives a new set's flags their exposure counters (f->mu held), then makes
 * it current, taking the reference. */
static void install(struct rt_flags *f, struct rt_flagset *fs)
{
	for (size_t i = 0; i < fs->n_flags; i++) {
		struct flag *fl = &fs->flags[i];
		if (fl->n_variants) {
			for (size_t k = 0; k < fl->n_variants; k++)
				fl->variants[k].exposures = counter_for(f, fl->name, fl->variants[k].name);
			fl->exp_off = counter_for(f, fl->name, "off");
		} else {
			fl->exp_on = counter_for(f, fl->name, "on");
			fl->exp_off = counter_for(f, fl->name, "off");
		}
	}
	struct rt_flagset *old = f->cur;
	f->cur = fs;
	atomic_fetch_add(&f->generation, 1);
	rt_flagset_unref(old);
}

/* Reads and parses path; a missing file is the empty set. */
static struct rt_flagset *load(const char *path, char *err, size_t err_cap)
{
	if (!path)
		return rt_flagset_parse(NULL, err, err_cap);
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		if (errno == ENOENT)
			return rt_flagset_parse(NULL, err, err_cap);
		snprintf(err, err_cap, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	char *data = rt_xmalloc(RT_FLAGS_MAX_DOC + 1);
	size_t n = fread(data, 1, RT_FLAGS_MAX_DOC + 1, fp);
	bool is_err = ferror(fp);
	fclose(fp);
	struct rt_flagset *fs = NULL;
	if (is_err) {
		snprintf(err, err_cap, "cannot read %s", path);
	} else if (n > RT_FLAGS_MAX_DOC) {
		snprintf(err, err_cap, "%s is larger than %u bytes", path, RT_FLAGS_MAX_DOC);
	} else {
		json_error_t je;
		json_t *doc = n ? json_loadb(data, n, JSON_REJECT_DUPLICATES, &je) : json_object();
		char why[512] = "";
		if (!doc)
			snprintf(err, err_cap, "%s:%d: %s", path, je.line, je.text);
		else if (!(fs = rt_flagset_parse(doc, why, sizeof why)))
			snprintf(err, err_cap, "%s: %s", path, why);
		json_decref(doc);
	}
	free(data);
	return fs;
}

int rt_flags_new(const char *path, struct rt_flags **out, char *err, size_t err_cap)
{
	*out = NULL;
	struct rt_flagset *fs = load(path, err, err_cap);
	if (!fs)
		return -1;
	struct rt_flags *f = rt_xcalloc(1, sizeof *f);
	f->path = path ? rt_xstrdup(path) : NULL;
	pthread_mutex_init(&f->mu, NULL);
	pthread_mutex_lock(&f->mu);
	install(f, fs);
	pthread_mutex_unlock(&f->mu);
	*out = f;
	return 0;
}

void rt_flags_free(struct rt_flags *f)
{
	if (!f)
		return;
	rt_flagset_unref(f->cur);
	for (struct flag_counter *c = f->counters, *next; c; c = next) {
		next = c->next;
		free(c->flag);
		free(c->variant);
		free(c);
	}
	pthread_mutex_destroy(&f->mu);
	free(f->path);
	free(f);
}

struct rt_flagset *rt_flags_current(struct rt_flags *f)
{
	pthread_mutex_lock(&f->mu);
	struct rt_flagset *fs = rt_flagset_ref(f->cur);
	pthread_mutex_unlock(&f->mu);
	return fs;
}

uint64_t rt_flags_generation(const struct rt_flags *f)
{
	return atomic_load_explicit(&f->generation, memory_order_acquire);
}

int rt_flags_reload(struct rt_flags *f, char *err, size_t err_cap)
{
	struct rt_flagset *fs = load(f->path, err, err_cap);
	if (!fs) {
		atomic_fetch_add(&f->reload_errors, 1);
		return -1;
	}
	pthread_mutex_lock(&f->mu);
	install(f, fs);
	pthread_mutex_unlock(&f->mu);
	atomic_fetch_add(&f->reloads, 1);
	rt_info("flags: %zu flags from %s", fs->n_flags, f->path ? f->path : "memory");
	return 0;
}

/* Writes doc to the file: a new file beside it, synced, renamed over it. */
static int persist(struct rt_flags *f, const json_t *doc, char *err, size_t err_cap)
{
	if (!f->path)
		return 0;
	size_t n = strlen(f->path) + 16;
	char *tmp = rt_xmalloc(n);
	snprintf(tmp, n, "%s.tmp", f->path);
	int rc = RT_EIO;
	FILE *fp = fopen(tmp, "wb");
	if (!fp) {
		snprintf(err, err_cap, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	int w = json_dumpf(doc, fp, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!w)
		w = fputc('\n', fp) == EOF ? -1 : 0;
	if (!w)
		w = fflush(fp) || fsync(fileno(fp)) ? -1 : 0;
	if (fclose(fp) || w) {
		snprintf(err, err_cap, "cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, f->path)) {
		snprintf(err, err_cap, "cannot rename %s to %s: %s", tmp, f->path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	return rc;
}

/* Parses doc, writes it and makes it current (f->mu held). Takes doc. */
static int commit(struct rt_flags *f, json_t *doc, char *err, size_t err_cap)
{
	struct rt_flagset *fs = rt_flagset_parse(doc, err, err_cap);
	int rc = fs ? persist(f, fs->doc, err, err_cap) : RT_EINVAL;
	json_decref(doc);
	if (rc) {
		rt_flagset_unref(fs);
		return rc;
	}
	install(f, fs);
	return 0;
}

int rt_flags_put(struct rt_flags *f, const char *name, const json_t *def, char *err,
		 size_t err_cap)
{
	if (rt_flagset_check_flag(name, def, err, err_cap))
		return RT_EINVAL;
	pthread_mutex_lock(&f->mu);
	json_t *doc = json_deep_copy(f->cur->doc);
	json_object_set_new(json_object_get(doc, "flags"), name, json_deep_copy(def));
	int rc = commit(f, doc, err, err_cap);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

int rt_flags_replace(struct rt_flags *f, const json_t *doc, char *err, size_t err_cap)
{
	pthread_mutex_lock(&f->mu);
	int rc = commit(f, json_deep_copy(doc), err, err_cap);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

int rt_flags_delete(struct rt_flags *f, const char *name, char *err, size_t err_cap)
{
	pthread_mutex_lock(&f->mu);
	int rc = RT_ENOTFOUND;
	if (json_object_get(json_object_get(f->cur->doc, "flags"), name)) {
		json_t *doc = json_deep_copy(f->cur->doc);
		json_object_del(json_object_get(doc, "flags"), name);
		rc = commit(f, doc, err, err_cap);
	} else {
		snprintf(err, err_cap, "no flag named %.80s", name);
	}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

void rt_flags_count_evaluations(struct rt_flags *f, uint64_t n)
{
	atomic_fetch_add_explicit(&f->evaluations, n, memory_order_relaxed);
}

void rt_flags_render_metrics(struct rt_flags *f, struct rt_buf *out)
{
	rt_buf_append_str(out, "# HELP rtsync_flag_exposures_total Flag answers reported to "
			       "clients, by flag and variant (on, off or the variant's name).\n"
			       "# TYPE rtsync_flag_exposures_total counter\n");
	pthread_mutex_lock(&f->mu);
	for (struct flag_counter *c = f->counters; c; c = c->next) {
		rt_buf_printf(out, "rtsync_flag_exposures_total{flag=\"%s\",variant=\"%s\"} %llu\n",
			      c->flag, c->variant,
			      (unsigned long long)atomic_load_explicit(&c->n, memory_order_relaxed));
	}
	size_t n_flags = f->cur->n_flags;
	pthread_mutex_unlock(&f->mu);
	rt_buf_printf(out,
		      "# HELP rtsync_flags Flags in the current set.\n"
		      "# TYPE rtsync_flags gauge\n"
		      "rtsync_flags %zu\n"
		      "# HELP rtsync_flag_evaluations_total Flag sets evaluated for a session "
		      "or channel.\n"
		      "# TYPE rtsync_flag_evaluations_total counter\n"
		      "rtsync_flag_evaluations_total %llu\n"
		      "# HELP rtsync_flag_reloads_total Flag sets made current, by result.\n"
		      "# TYPE rtsync_flag_reloads_total counter\n"
		      "rtsync_flag_reloads_total{result=\"ok\"} %llu\n"
		      "rtsync_flag_reloads_total{result=\"error\"} %llu\n"
		      "# HELP rtsync_flags_generation Swaps of the current flag set.\n"
		      "# TYPE rtsync_flags_generation gauge\n"
		      "rtsync_flags_generation %llu\n",
		      n_flags, (unsigned long long)atomic_load(&f->evaluations),
		      (unsigned long long)atomic_load(&f->reloads),
		      (unsigned long long)atomic_load(&f->reload_errors),
		      (unsigned long long)atomic_load(&f->generation));
}
