#include "net/uring.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct rt_uring {
	struct io_uring ring;
	unsigned n; /* sends in the batch */
	struct msghdr msg[RT_URING_BATCH];
	void *user[RT_URING_BATCH];
	int res[RT_URING_BATCH];
	struct iovec iov[RT_URING_BATCH][RT_URING_MAX_IOV];
};

int rt_uring_new(struct rt_uring **out)
{
	struct rt_uring *u = calloc(1, sizeof *u);
	if (!u)
		return -ENOMEM;
	int rc = io_uring_queue_init(RT_URING_BATCH, &u->ring, 0);
	if (rc < 0) {
		free(u);
		return rc;
	}
	*out = u;
	return 0;
}

void rt_uring_free(struct rt_uring *u)
{
	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	free(u);
}

struct iovec *rt_uring_slot(struct rt_uring *u)
{
	return u->n < RT_URING_BATCH ? u->iov[u->n] : NULL;
}

void rt_uring_add(struct rt_uring *u, int fd, unsigned n_iov, void *user)
{
	unsigned i = u->n++;
	u->msg[i] = (struct msghdr){.msg_iov = u->iov[i], .msg_iovlen = n_iov};
	u->user[i] = user;
	u->res[i] = -ECANCELED;
	/* the ring has RT_URING_BATCH entries and is empty between batches */
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	io_uring_prep_sendmsg(sqe, fd, &u->msg[i], MSG_DONTWAIT | MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, i);
}

int rt_uring_run(struct rt_uring *u, rt_uring_done_cb done)
{
	int err = 0;
	unsigned n_sub = 0, n_done = 0;
	/* Every entry must reach the kernel now: one left in the ring would be
	 * sent later, from buffers that are gone. */
	for (unsigned tries = 0; n_sub < u->n && !err; tries++) {
		int rc = io_uring_submit(&u->ring);
		if (rc > 0)
			n_sub += (unsigned)rc;
		else if ((rc == -EINTR || rc == -EAGAIN) && tries < 1000)
			continue;
		else
			err = rc ? rc : -EIO;
	}
	while (n_done < n_sub) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&u->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			err = rc;
			break;
		}
		uint64_t i = io_uring_cqe_get_data64(cqe);
		if (i < u->n)
			u->res[i] = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		n_done++;
	}
	for (unsigned i = 0; i < u->n; i++)
		done(u->user[i], u->res[i] == -ECANCELED && err ? err : u->res[i]);
	u->n = 0;
	return err;
}
