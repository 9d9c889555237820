/*
 * The PostgreSQL logical replication stream, decoded without I/O: the
 * CopyData frames of START_REPLICATION (XLogData, primary keepalive), the
 * messages of the built-in pgoutput plugin, protocol version 1 (Begin,
 * Commit, Origin, Relation, Type, Insert, Update, Delete, Truncate, Message),
 * and the text form of column values turned into JSON the way Supabase
 * Realtime does it (to_jsonb of the value cast to its type).
 *
 * Ownership: a decoded message borrows strings and values from the input
 *            bytes (which must outlive it) and owns only its arrays: release
 *            it with rt_pgo_msg_deinit(). JSON values are new references.
 * Threads:   no shared state.
 * Limits:    RT_PGO_MAX_COLS columns per relation or tuple, RT_PGO_MAX_RELS
 *            relations per Truncate, RT_PGO_MAX_DEPTH nested array levels.
 *            Anything longer than its frame, or left over after a message,
 *            is an error.
 */
#ifndef RT_STORE_PGOUTPUT_H
#define RT_STORE_PGOUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_PGO_MAX_COLS 1664 /* PostgreSQL's MaxTupleAttributeNumber */
#define RT_PGO_MAX_RELS 65536
#define RT_PGO_MAX_DEPTH 8

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define RT_PGO_EPOCH_US 946684800000000LL

/* ---- CopyData frames of the replication stream ---- */

enum rt_pgo_frame_kind { RT_PGO_XLOGDATA, RT_PGO_KEEPALIVE };

struct rt_pgo_frame {
	enum rt_pgo_frame_kind kind;
	uint64_t wal_start;   /* XLogData: where the data starts */
	uint64_t wal_end;     /* the server's WAL end */
	int64_t send_time;    /* µs since 2000-01-01 */
	bool wants_reply;     /* keepalive: reply at once */
	const uint8_t *data;  /* XLogData: the pgoutput message */
	size_t data_len;
};

/* Parses one CopyData payload. Returns 0 or RT_EPROTO. */
int rt_pgo_frame_parse(const uint8_t *data, size_t data_len, struct rt_pgo_frame *out);

/* Writes the 34-byte standby status update ('r') confirming lsn as
 * written, flushed and applied, at now_us (µs since 2000-01-01). */
void rt_pgo_status_update(uint8_t out[34], uint64_t lsn, int64_t now_us, bool wants_reply);

/* ---- pgoutput messages ---- */

enum rt_pgo_kind {
	RT_PGO_BEGIN = 'B', RT_PGO_COMMIT = 'C', RT_PGO_ORIGIN = 'O', RT_PGO_RELATION = 'R',
	RT_PGO_TYPE = 'Y', RT_PGO_INSERT = 'I', RT_PGO_UPDATE = 'U', RT_PGO_DELETE = 'D',
	RT_PGO_TRUNCATE = 'T', RT_PGO_MESSAGE = 'M',
};

struct rt_pgo_value {
	char kind;           /* 'n' null, 'u' unchanged TOASTed value, 't' text, 'b' binary */
	const char *data;    /* 't'/'b': the bytes (not NUL-terminated) */
	size_t len;
};

struct rt_pgo_tuple {
	struct rt_pgo_value *cols;
	size_t n_cols;
};

struct rt_pgo_column {
	bool is_key;
	const char *name; /* NUL-terminated, borrowed */
	uint32_t type_oid;
	int32_t typmod;
};

struct rt_pgo_msg {
	enum rt_pgo_kind kind;
	uint64_t lsn;        /* Begin: final LSN; Commit: commit LSN; Origin: its LSN */
	uint64_t end_lsn;    /* Commit: the end of the transaction */
	int64_t commit_time; /* Begin, Commit: µs since 2000-01-01 */
	uint32_t xid;        /* Begin */
	uint32_t relid;      /* Relation, Type (the type's OID), Insert, Update, Delete */
	const char *nspname; /* Relation, Type */
	const char *name;    /* Relation, Type, Origin, Message (prefix) */
	char replident;      /* Relation: 'd' default, 'n' nothing, 'f' full, 'i' index */
	struct rt_pgo_column *columns; /* Relation */
	size_t n_columns;
	char old_kind;       /* Update, Delete: 'K' key, 'O' old row, 0 none */
	struct rt_pgo_tuple old_tuple;
	struct rt_pgo_tuple new_tuple; /* Insert, Update */
	uint8_t truncate_options;      /* Truncate: 1 cascade, 2 restart identity */
	uint32_t *relids;              /* Truncate */
	size_t n_relids;
	const char *content;           /* Message */
	size_t content_len;
};

/* Decodes one pgoutput message. out need not be initialized; after a
 * failure it holds nothing to free (deinit is still harmless). Returns 0 or
 * RT_EPROTO. */
int rt_pgo_decode(const uint8_t *data, size_t data_len, struct rt_pgo_msg *out);

void rt_pgo_msg_deinit(struct rt_pgo_msg *m);

/* ---- values ---- */

/*
 * The JSON of a value in PostgreSQL's text form, by its type name (pg_type's
 * typname: "int8", "jsonb", "_text" for text[], …), as to_jsonb() gives it:
 * integers and numeric as numbers (NaN and infinities as strings), bool as
 * true/false, json and jsonb embedded, arrays as JSON arrays of converted
 * elements, timestamps in ISO 8601 with a 'T' and "+HH:MM" offsets, anything
 * else (text, uuid, date, bytea, …) as a string. The text is expected in
 * DateStyle ISO. Never NULL: invalid UTF-8 gives JSON null.
 */
json_t *rt_pgo_value_json(const char *type, const char *text, size_t len);

#endif
