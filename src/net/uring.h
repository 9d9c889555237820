/*
 * Batched socket sends through io_uring: many non-blocking sendmsg calls
 * (one per connection) submitted with one system call. A fan-out to 1,000
 * sockets then costs one kernel entry instead of 1,000, which is most of
 * what a small send costs on a machine with page-table isolation. Every send
 * is MSG_DONTWAIT: it takes what the socket accepts now and never waits, so a
 * batch is complete when rt_uring_run() returns.
 *
 * Ownership: struct rt_uring owns its ring and the iovec slots; the bytes the
 *            iovecs point at stay the caller's and must live until
 *            rt_uring_run() returns.
 * Threads:   one thread per ring (each server worker has its own).
 * Limits:    RT_URING_BATCH sends per batch, RT_URING_MAX_IOV buffers each.
 */
#ifndef RT_NET_URING_H
#define RT_NET_URING_H

#include <stdbool.h>
#include <sys/uio.h>

#define RT_URING_BATCH 256
#define RT_URING_MAX_IOV 16

struct rt_uring;

/* Called once per send of a batch, in the order added: res is the bytes
 * sent, or a negative errno (-EAGAIN: the socket took nothing). */
typedef void (*rt_uring_done_cb)(void *user, int res);

/*
 * Sets up a ring. Returns 0, or a negative errno when the kernel has no
 * io_uring or refuses it (ENOSYS, EPERM in a sandbox, ENOMEM): the caller
 * then writes one socket at a time.
 */
int rt_uring_new(struct rt_uring **out);
void rt_uring_free(struct rt_uring *u);

/* An iovec slot for the next send (RT_URING_MAX_IOV entries), or NULL when
 * the batch is full: fill it, then rt_uring_add(). */
struct iovec *rt_uring_slot(struct rt_uring *u);
/* Adds a send of the slot's first n_iov buffers to fd; user goes to done. */
void rt_uring_add(struct rt_uring *u, int fd, unsigned n_iov, void *user);

/* Submits the batch, waits for every send and reports each to done (a send
 * that could not be submitted reports the error). The batch is empty
 * afterwards. Returns 0, or a negative errno when the ring failed: free it
 * and send without it from then on. */
int rt_uring_run(struct rt_uring *u, rt_uring_done_cb done);

#endif
