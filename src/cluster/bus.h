/*
 * The messages nodes exchange over Redis pub/sub, and the bookkeeping that
 * makes their delivery exactly-once and in order per publisher. Pure: bytes
 * in, structures out; no I/O (src/cluster/cluster.c does the Redis side).
 *
 * Wire form of one message (integers big-endian):
 *   "RTB1" | type u8 | node: str | seq u64 | fields of the type
 *   str:   u32 length | bytes       (length 0xFFFFFFFF: absent)
 *   RT_BUS_BROADCAST  key: str | v1: frame | v2: frame
 *                     frame: opcode u8 | payload: str (absent: no frame for
 *                     that protocol version; opcode 1 text or 2 binary)
 *   RT_BUS_PRESENCE   key: str | topic: str | chan_id u64 | pkey: str |
 *                     join: str | leave: str (the diff's metas, JSON objects)
 *   RT_BUS_HEARTBEAT  nothing (seq: the publisher's last sequence number)
 *   RT_BUS_STATE      nothing (the publisher rewrote its whole presence
 *                     state in Redis: read it again)
 * A node's sequence numbers start at 1 and grow by one per message it sends
 * (heartbeats carry the last one without taking a new one).
 *
 * Ownership: a decoded struct rt_bus_msg points into the input bytes, which
 *            must outlive it; rt_bus_peers owns its entries.
 * Threads:   none of its own; a peers table belongs to one thread.
 * Limits:    node ids RT_BUS_NODE_MAX bytes of [A-Za-z0-9_-]; keys and
 *            topics RT_BUS_KEY_MAX bytes; a message RT_BUS_MAX_BYTES;
 *            RT_BUS_MAX_PEERS nodes remembered.
 */
#ifndef RT_CLUSTER_BUS_H
#define RT_CLUSTER_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define RT_BUS_NODE_MAX	 64
#define RT_BUS_KEY_MAX	 1024
#define RT_BUS_MAX_BYTES (128u << 20)
#define RT_BUS_MAX_PEERS 1024

enum rt_bus_type {
	RT_BUS_BROADCAST = 1,
	RT_BUS_PRESENCE = 2,
	RT_BUS_HEARTBEAT = 3,
	RT_BUS_STATE = 4,
};

struct rt_bus_str {
	const uint8_t *data; /* NULL: absent */
	size_t len;
};

struct rt_bus_frame {
	uint8_t opcode; /* 1 text, 2 binary; 0 with data NULL: none */
	struct rt_bus_str payload;
};

struct rt_bus_msg {
	enum rt_bus_type type;
	char node[RT_BUS_NODE_MAX + 1];
	uint64_t seq;
	struct rt_bus_str key;	 /* BROADCAST, PRESENCE */
	struct rt_bus_frame v1;	 /* BROADCAST */
	struct rt_bus_frame v2;	 /* BROADCAST */
	struct rt_bus_str topic; /* PRESENCE */
	uint64_t chan_id;	 /* PRESENCE */
	struct rt_bus_str pkey;	 /* PRESENCE */
	struct rt_bus_str join;	 /* PRESENCE: absent or a JSON object */
	struct rt_bus_str leave; /* PRESENCE: absent or a JSON object */
};

/* True when s is a usable node id (1 to RT_BUS_NODE_MAX of [A-Za-z0-9_-]). */
bool rt_bus_node_valid(const char *s, size_t len);

/* Appends m's wire form to out. Returns 0, or RT_EINVAL when a field breaks
 * the limits above (nothing appended). */
int rt_bus_encode(struct rt_buf *out, const struct rt_bus_msg *m);

/*
 * Decodes one message of data_len bytes into out (pointers into data).
 * Checks everything the receiver relies on: magic, type, node id, lengths,
 * non-empty keys of at most RT_BUS_KEY_MAX bytes without NUL, opcodes, and
 * no trailing bytes. JSON fields are checked by the receiver. Returns 0 or
 * RT_EPROTO.
 */
int rt_bus_decode(const uint8_t *data, size_t data_len, struct rt_bus_msg *out);

/*
 * Splits a server-to-client WebSocket frame (unmasked, one frame, as
 * rt_ws_frame() makes them) into its opcode and payload. Returns 0, or
 * RT_EPROTO when the bytes are not exactly one such frame.
 */
int rt_bus_frame_split(const uint8_t *frame, size_t frame_len, uint8_t *opcode,
		       const uint8_t **payload, size_t *payload_len);

/* ---- peers: the other nodes heard from ---- */

enum rt_bus_seen {
	RT_BUS_SEEN_NEXT, /* the next message of that node: deliver */
	RT_BUS_SEEN_GAP,  /* later than the next: messages were lost; deliver this one */
	RT_BUS_SEEN_DUP,  /* already seen (or older): drop */
	RT_BUS_SEEN_FULL, /* a new node and no room for it: drop */
};

struct rt_bus_peer {
	char node[RT_BUS_NODE_MAX + 1];
	uint32_t origin;   /* small number for the node, > 0, never reused */
	uint64_t last_seq; /* highest sequence number seen */
	uint64_t heard_ms; /* when last heard from */
	uint64_t lost;	   /* messages known lost (gaps) */
	bool is_syncing;   /* its presence state is being read again */
	uint64_t sync_seq; /* the sequence number that state reflects */
	void *user;	   /* the owner's data (pending messages) */
	struct rt_bus_peer *next;
};

struct rt_bus_peers {
	struct rt_bus_peer *head;
	unsigned n_peers;
	uint32_t next_origin;
};

void rt_bus_peers_init(struct rt_bus_peers *ps);
/* Frees every peer; the owner has released their user data. */
void rt_bus_peers_deinit(struct rt_bus_peers *ps);
/* The peer for node, or NULL. */
struct rt_bus_peer *rt_bus_peers_find(struct rt_bus_peers *ps, const char *node);

/*
 * Records message seq from node at now_ms (creating the peer: a node's first
 * message is NEXT whatever its number, as a node joining late has sent
 * others before; so is the first after a peer was created with seq 0). Heartbeats (is_heartbeat)
 * take no number of their own: seq is the last one sent, so it is DUP when nothing was missed and
 * GAP when something was. *peer gets the peer (NULL for FULL).
 */
enum rt_bus_seen rt_bus_peers_seen(struct rt_bus_peers *ps, const char *node, uint64_t seq,
				   bool is_heartbeat, uint64_t now_ms, struct rt_bus_peer **peer);

/*
 * A node announced a new state (RT_BUS_STATE, which a node sends first
 * whenever it connects) under seq: when seq is not above what was seen, the
 * node started again under the same id and numbers from 1 anew, so its
 * numbering is taken up from there. Does nothing for a node not known.
 */
void rt_bus_peers_restarted(struct rt_bus_peers *ps, const char *node, uint64_t seq);

/* Unlinks and frees peer (its user data released by the caller). */
void rt_bus_peers_remove(struct rt_bus_peers *ps, struct rt_bus_peer *peer);

/* ---- the server's address ---- */

struct rt_bus_url {
	char host[256];
	int port;
	char password[256]; /* empty: no AUTH */
	char user[128];	    /* empty: AUTH with the password alone */
	int db;
};

/* Parses redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (port 6379, db 0 by
 * default; [V6] hosts). Returns 0, or RT_EINVAL. */
int rt_bus_url_parse(const char *url, struct rt_bus_url *out);

#endif
