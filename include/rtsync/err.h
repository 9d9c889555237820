/*
 * Error codes shared by every rtsync module and by librtsync's public API:
 * negative integers generated from one table, so the enum, rt_strerror() and
 * rt_err_name() never disagree. "Need more bytes" is not an error: parsers
 * return 0 or a positive count.
 *
 * Ownership: the strings returned are static.
 * Threads:   every function is thread-safe.
 * Limits:    codes are only ever appended to the table, never renumbered.
 */
#ifndef RTSYNC_ERR_H
#define RTSYNC_ERR_H

#ifndef RT_API
#define RT_API __attribute__((visibility("default")))
#endif

#define RT_ERRNO_MAP(X)                                                                  \
	X(NOMEM, -1, "out of memory")                                                    \
	X(INVAL, -2, "invalid argument")                                                 \
	X(PROTO, -3, "protocol error")                                                   \
	X(TOOBIG, -4, "input exceeds a configured limit")                                \
	X(AUTH, -5, "authentication failed")                                             \
	X(EXPIRED, -6, "token has expired")                                              \
	X(CLOSED, -7, "connection or channel is closed")                                 \
	X(NOTFOUND, -8, "no such item")                                                  \
	X(EXISTS, -9, "item already exists")                                             \
	X(IO, -10, "input/output error")                                                 \
	X(UTF8, -11, "invalid UTF-8")                                                    \
	X(LIMIT, -12, "rate or count limit reached")                                     \
	X(AGAIN, -13, "resource temporarily unavailable")                                \
	X(TIMEDOUT, -14, "timed out")                                                    \
	X(TLS, -15, "TLS handshake or certificate verification failed")

enum rt_err {
	RT_OK = 0,
#define RT_ERR_ENUM(name, code, text) RT_E##name = (code),
	RT_ERRNO_MAP(RT_ERR_ENUM)
#undef RT_ERR_ENUM
};

/* Human-readable text for a code; "unknown error" for codes not in the table. */
RT_API const char *rt_strerror(int rc);

/* Symbolic name ("RT_ENOMEM"); "RT_EUNKNOWN" for codes not in the table. */
RT_API const char *rt_err_name(int rc);

#endif
