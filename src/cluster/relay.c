#include "cluster/relay.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster/bus.h"
#include "common/alloc.h"
#include "common/err.h"
#include "common/log.h"

#define TIMEOUT_MS	   2000
#define CONNECT_TIMEOUT_MS 500 /* the leader's replication thread waits on it */
#define READ_COUNT	   "100"

struct rt_cluster_relay {
	struct rt_bus_url url;
	char *key;
	char maxlen[24];
	redisContext *c;
	bool was_down; /* logged once per outage */
};

int rt_cluster_relay_new(const char *url, const char *prefix, const char *name, size_t maxlen,
			 struct rt_cluster_relay **out, char *err, size_t err_cap)
{
	*out = NULL;
	struct rt_cluster_relay *r = rt_xcalloc(1, sizeof *r);
	if (rt_bus_url_parse(url, &r->url)) {
		snprintf(err, err_cap, "want redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
		free(r);
		return RT_EINVAL;
	}
	size_t n = strlen(prefix) + strlen(name) + 16;
	r->key = rt_xmalloc(n);
	snprintf(r->key, n, "%s:changes:%s", prefix, name);
	snprintf(r->maxlen, sizeof r->maxlen, "%zu", maxlen ? maxlen : 100000);
	*out = r;
	return 0;
}

void rt_cluster_relay_free(struct rt_cluster_relay *r)
{
	if (!r)
		return;
	if (r->c)
		redisFree(r->c);
	free(r->key);
	free(r);
}

static struct timeval tv_ms(unsigned ms)
{
	return (struct timeval){ms / 1000, (long)(ms % 1000) * 1000};
}

static void drop(struct rt_cluster_relay *r, const char *why)
{
	if (!r->was_down)
		rt_warn("cluster: change relay: %s", why);
	r->was_down = true;
	if (r->c)
		redisFree(r->c);
	r->c = NULL;
}

/* A reply to a setup command: true unless it is an error (logged). */
static bool setup_ok(struct rt_cluster_relay *r, redisReply *rep, const char *what)
{
	bool ok = rep && rep->type != REDIS_REPLY_ERROR;
	if (!ok)
		rt_error("cluster: change relay: %s: %s", what, rep ? rep->str : "no reply");
	freeReplyObject(rep);
	return ok;
}

static bool ensure(struct rt_cluster_relay *r)
{
	if (r->c)
		return true;
	redisContext *c =
		redisConnectWithTimeout(r->url.host, r->url.port, tv_ms(CONNECT_TIMEOUT_MS));
	if (!c || c->err) {
		if (!r->was_down)
			rt_warn("cluster: change relay: cannot connect to %s:%d: %s", r->url.host,
				r->url.port, c ? c->errstr : "out of memory");
		r->was_down = true;
		if (c)
			redisFree(c);
		return false;
	}
	r->c = c;
	redisSetTimeout(c, tv_ms(TIMEOUT_MS));
	if (r->url.password[0]) {
		redisReply *rep =
			r->url.user[0] ? redisCommand(c, "AUTH %s %s", r->url.user, r->url.password)
				       : redisCommand(c, "AUTH %s", r->url.password);
		if (!setup_ok(r, rep, "AUTH")) {
			drop(r, "AUTH refused");
			return false;
		}
	}
	if (!setup_ok(r, redisCommand(c, "SELECT %d", r->url.db), "SELECT")) {
		drop(r, "SELECT refused");
		return false;
	}
	if (r->was_down)
		rt_info("cluster: change relay: connected to %s:%d", r->url.host, r->url.port);
	r->was_down = false;
	return true;
}

static int relay_publish(void *ctx, uint64_t last_pos, const char *data, size_t data_len)
{
	struct rt_cluster_relay *r = ctx;
	if (!ensure(r))
		return -1;
	char id[32];
	snprintf(id, sizeof id, "%" PRIu64 "-0", last_pos);
	const char *argv[] = {"XADD", r->key, "MAXLEN", "~", r->maxlen, id, "d", data};
	size_t lens[] = {4, strlen(r->key), 6, 1, strlen(r->maxlen), strlen(id), 1, data_len};
	redisReply *rep = redisCommandArgv(r->c, 8, argv, lens);
	if (!rep) {
		drop(r, r->c->errstr);
		return -1;
	}
	int rc = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		/* an ID not above the top: this batch, or a later one, is there */
		if (!strstr(rep->str, "equal or smaller")) {
			rt_error("cluster: change relay: XADD: %s", rep->str);
			rc = -1;
		}
	}
	freeReplyObject(rep);
	return rc;
}

/* The position an entry ID "POS-0" stands for; 0 when it is not one. */
static uint64_t id_pos(const redisReply *id)
{
	if (id->type != REDIS_REPLY_STRING)
		return 0;
	char *end;
	uint64_t pos = strtoull(id->str, &end, 10);
	return *end == '-' ? pos : 0;
}

static uint64_t top_of(struct rt_cluster_relay *r)
{
	redisReply *rep = redisCommand(r->c, "XREVRANGE %s + - COUNT 1", r->key);
	uint64_t top = 0;
	if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
	    rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2)
		top = id_pos(rep->element[0]->element[0]);
	if (!rep)
		drop(r, r->c->errstr);
	freeReplyObject(rep);
	return top;
}

static int relay_read(void *ctx, uint64_t after, unsigned wait_ms,
		      int (*fn)(void *arg, uint64_t last_pos, const char *data, size_t data_len),
		      void *arg, uint64_t *top)
{
	struct rt_cluster_relay *r = ctx;
	*top = 0;
	if (!ensure(r))
		return -1;
	char id[32], block[16];
	snprintf(id, sizeof id, "%" PRIu64 "-0", after);
	snprintf(block, sizeof block, "%u", wait_ms);
	redisSetTimeout(r->c, tv_ms(TIMEOUT_MS + wait_ms));
	const char *argv[] = {"XREAD", "COUNT", READ_COUNT, "BLOCK", block, "STREAMS", r->key, id};
	const char *argv_now[] = {"XREAD", "COUNT", READ_COUNT, "STREAMS", r->key, id};
	redisReply *rep = wait_ms ? redisCommandArgv(r->c, 8, argv, NULL)
				  : redisCommandArgv(r->c, 6, argv_now, NULL);
	if (!rep) {
		drop(r, r->c->errstr);
		return -1;
	}
	redisSetTimeout(r->c, tv_ms(TIMEOUT_MS));
	int n = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		rt_error("cluster: change relay: XREAD: %s", rep->str);
		n = -1;
	} else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
		   rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2) {
		redisReply *entries = rep->element[0]->element[1];
		for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements;
		     i++) {
			redisReply *e = entries->element[i];
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
				continue;
			uint64_t pos = id_pos(e->element[0]);
			redisReply *fields = e->element[1];
			for (size_t j = 0;
			     pos && fields->type == REDIS_REPLY_ARRAY && j + 1 < fields->elements;
			     j += 2) {
				redisReply *f = fields->element[j], *v = fields->element[j + 1];
				if (f->type == REDIS_REPLY_STRING && !strcmp(f->str, "d") &&
				    v->type == REDIS_REPLY_STRING) {
					*top = pos;
					n++;
					if (fn(arg, pos, v->str, v->len)) {
						freeReplyObject(rep);
						return n;
					}
				}
			}
		}
	}
	freeReplyObject(rep);
	if (n == 0 && r->c)
		*top = top_of(r);
	return n;
}

void rt_cluster_relay_bind(struct rt_cluster_relay *r, struct rt_store_relay *out)
{
	out->publish = relay_publish;
	out->read = relay_read;
	out->ctx = r;
}
