/*
 * Fan-out of messages to topic subscribers across workers. Each worker keeps
 * topic → local subscribers; a shared, read-mostly map says which workers have
 * subscribers for a topic. A message is encoded once (one frame per
 * serializer) and shared by reference: the publishing worker delivers it to
 * its own subscribers at once and hands the reference to every other
 * interested worker through that worker's inbox (a queue plus a wake-up; the
 * receiver drains the whole queue).
 *
 * Ownership: rt_msg is reference-counted; rt_hub_publish() takes its own
 *            references. A struct rt_sub is embedded in its owner, which must
 *            unsubscribe before freeing it. A topic entry disappears with its
 *            last subscriber.
 * Threads:   rt_hub_new/free on the main thread; rt_hub_local_* on the owning
 *            worker's thread; rt_hub_publish_any() from any thread.
 *            deliver callbacks run on the subscriber's worker and must not
 *            subscribe or unsubscribe anything.
 * Limits:    RT_SERVER_MAX_WORKERS workers (one bit each).
 */
#ifndef RT_REALTIME_HUB_H
#define RT_REALTIME_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "net/server.h"

enum rt_msg_kind {
	RT_MSG_BROADCAST,
	RT_MSG_PRESENCE,
	RT_MSG_CHANGE,  /* a postgres_changes delivery; pos set */
	RT_MSG_CATCHUP, /* end of a resume catch-up: pos = last position covered */
	RT_MSG_LIVE,    /* a live_query message for one subscriber; pos set */
};

struct rt_auth;

struct rt_msg {
	atomic_uint refs;
	enum rt_msg_kind kind;
	char *key;           /* hub topic key */
	struct rt_frame *v1; /* frame for vsn 1.0.0 sockets; NULL: not for them */
	struct rt_frame *v2; /* frame for vsn 2.0.0 sockets; NULL: not for them */
	uint64_t sender;     /* channel id to skip unless it asked for self; 0: none */
	uint64_t target;     /* the only channel id that receives it; 0: every subscriber */
	/* A check the requester of each subscribed channel must pass, on the
	 * subscriber's worker (NULL: none); admit_free(admit_ctx) runs when
	 * the message goes. For messages only some subscribers may see. */
	bool (*admit)(void *ctx, const struct rt_auth *who);
	void *admit_ctx;
	void (*admit_free)(void *ctx);
	uint64_t t0_ns;      /* publish time, for the fan-out latency metric */
	uint64_t pos;        /* RT_MSG_CHANGE and RT_MSG_CATCHUP: change position */
	bool is_resync;      /* RT_MSG_CATCHUP: the resume position was not retained */
	bool is_shared;      /* also for the other nodes of a cluster (the hub's remote) */
};

/* A message for topic key with one reference; frames are attached by the caller. */
struct rt_msg *rt_msg_new(enum rt_msg_kind kind, const char *key);
struct rt_msg *rt_msg_ref(struct rt_msg *m);
void rt_msg_unref(struct rt_msg *m);

struct rt_sub;
typedef void (*rt_deliver_cb)(struct rt_sub *sub, struct rt_msg *m);

struct rt_sub {
	rt_deliver_cb deliver;
	struct hub_topic *topic; /* set while subscribed */
	struct rt_sub *prev, *next;
};

struct rt_hub;
struct rt_hub_local;

struct rt_hub *rt_hub_new(void);
void rt_hub_free(struct rt_hub *h);

/* Attaches the calling worker (its thread, at start). */
struct rt_hub_local *rt_hub_local_new(struct rt_hub *h, struct rt_worker *w);
/* Detaches at worker stop: no more wake-ups reach it; queued messages are dropped. */
void rt_hub_local_free(struct rt_hub_local *l);

void rt_hub_subscribe(struct rt_hub_local *l, const char *key, struct rt_sub *sub);
void rt_hub_unsubscribe(struct rt_hub_local *l, struct rt_sub *sub);
/* Local subscribers of key on this worker. */
unsigned rt_hub_local_count(struct rt_hub_local *l, const char *key);

/* Delivers m to every subscriber of m->key on every worker. */
void rt_hub_publish(struct rt_hub_local *l, struct rt_msg *m);
/* The same from a thread that is not a worker (nothing is delivered inline). */
void rt_hub_publish_any(struct rt_hub *h, struct rt_msg *m);

/*
 * The hub's remote side (scale-out, src/cluster): send is called with every
 * message published with is_shared set, on the publishing thread, before the
 * local delivery; it takes its own reference if it keeps m and must not block
 * (it queues). Messages that arrive from other nodes are published with
 * rt_hub_publish_any() and is_shared false, so they are never sent back.
 * Set before the workers start; NULL send: no remote.
 */
struct rt_hub_remote {
	void (*send)(void *ctx, struct rt_msg *m);
	void *ctx;
};
void rt_hub_set_remote(struct rt_hub *h, const struct rt_hub_remote *r);

/* The most messages any worker has waiting (not yet taken by its drain). */
size_t rt_hub_backlog(struct rt_hub *h);

/* Delivers everything in this worker's inbox (call on wake). */
void rt_hub_drain(struct rt_hub_local *l);

#endif
