/*
 * rtfloor: what the kernel alone costs to fan one small message out to N
 * loopback TCP sockets, with no WebSocket, JSON or server around it. A
 * sender thread writes M bytes to each of N accepted sockets per round (with
 * write(2), or with one io_uring submission for the whole round), a reader
 * thread on another CPU reads them through epoll, and every read's delay
 * from the round's start goes into the percentiles. rtsync's fan-out can only
 * be slower than this: it is the floor for bench/README.md's latency target.
 *
 *   rtfloor [--sockets N] [--group G] [--rounds R] [--interval-ms MS | --interval-us US]
 *           [--bytes M] [--mode write|uring] [--sender-cpu C] [--reader-cpu C]
 *
 * A round is one message: to every socket, or with --group G to the next G
 * sockets in turn (the many-topics shape: N sockets over N/G topics, one
 * message to one topic per round).
 * Rounds start every MS milliseconds (open loop, as a publisher sends), so
 * when a round takes longer than that the next ones queue behind it. Prints
 * one JSON line: the median and p90 time of a round's sends (and per socket),
 * and the delivery latency p50/p99/max, measured from each round's start
 * (carried in the message's first 8 bytes).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct opts {
	long sockets, group, rounds, interval_us, bytes, sender_cpu, reader_cpu;
	bool is_uring;
};

struct run {
	struct opts o;
	int *srv, *cli;
	size_t *off;     /* reader: bytes of the current message read, per socket */
	uint64_t *stamp; /* reader: its start time so far */
	atomic_bool is_done;
	uint64_t *lat; /* one per delivery */
	size_t n_lat, cap_lat;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(long cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET((int)cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set))
		perror("rtfloor: sched_setaffinity");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void *reader_main(void *arg)
{
	struct run *r = arg;
	pin(r->o.reader_cpu);
	int ep = epoll_create1(0);
	for (long i = 0; i < r->o.sockets; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
		epoll_ctl(ep, EPOLL_CTL_ADD, r->cli[i], &e);
	}
	struct epoll_event ev[256];
	static uint8_t buf[65536];
	size_t m = (size_t)r->o.bytes;
	while (!atomic_load(&r->is_done)) {
		int n = epoll_wait(ep, ev, 256, 50);
		for (int k = 0; k < n; k++) {
			long i = (long)ev[k].data.u64;
			ssize_t got = read(r->cli[i], buf, sizeof buf);
			uint64_t t = now_ns();
			/* messages are m bytes, each starting with its round's start
			 * time: collect those 8 bytes across reads */
			for (ssize_t b = 0; b < got; b++) {
				size_t off = r->off[i]++;
				if (off < 8)
					r->stamp[i] |= (uint64_t)buf[b] << (8 * off);
				if (off + 1 < m)
					continue;
				if (r->n_lat < r->cap_lat)
					r->lat[r->n_lat++] = t - r->stamp[i];
				r->off[i] = 0;
				r->stamp[i] = 0;
			}
		}
	}
	close(ep);
	return NULL;
}

static int connect_all(struct run *r)
{
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return -1;
	for (long i = 0; i < r->o.sockets; i++) {
		r->cli[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (r->cli[i] < 0 || connect(r->cli[i], (struct sockaddr *)&a, sizeof a))
			return -1;
		r->srv[i] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
		if (r->srv[i] < 0)
			return -1;
		setsockopt(r->srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	close(l);
	return 0;
}

/* One round: the message to the group sockets from first on (in turn).
 * Returns 0, or -1 when a socket took less than the whole message (the
 * reader fell behind). */
static int send_round(struct run *r, struct io_uring *ring, const char *msg, long first)
{
	size_t m = (size_t)r->o.bytes;
	long count = r->o.group;
	if (!r->o.is_uring) {
		for (long i = 0; i < count; i++)
			if (write(r->srv[(first + i) % r->o.sockets], msg, m) != (ssize_t)m)
				return -1;
		return 0;
	}
	for (long done = 0; done < count;) {
		long n = count - done < 256 ? count - done : 256;
		for (long i = 0; i < n; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
			io_uring_prep_send(sqe, r->srv[(first + done + i) % r->o.sockets], msg, m,
					   MSG_DONTWAIT);
		}
		if (io_uring_submit_and_wait(ring, (unsigned)n) != n)
			return -1;
		int rc = 0;
		for (long i = 0; i < n; i++) {
			struct io_uring_cqe *cqe;
			if (io_uring_wait_cqe(ring, &cqe))
				return -1;
			rc |= cqe->res != (int)m;
			io_uring_cqe_seen(ring, cqe);
		}
		if (rc)
			return -1;
		done += n;
	}
	return 0;
}

static const char usage[] =
	"Usage: rtfloor [--sockets N] [--group G] [--rounds R]\n"
	"               [--interval-ms MS | --interval-us US] [--bytes M]\n"
	"               [--mode write|uring] [--sender-cpu C] [--reader-cpu C]\n"
	"The kernel's floor for one M-byte message to N loopback TCP sockets (defaults:\n"
	"1000 sockets, 1000 rounds every 5 ms, 100 bytes, write, sender on CPU 0, reader\n"
	"on CPU 1). --group G: each round goes to the next G sockets in turn (N/G\n"
	"topics of G subscribers, one message a round). Prints one JSON line.\n";

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.sockets = 1000, .rounds = 1000, .interval_us = 5000, .bytes = 100,
			   .sender_cpu = 0, .reader_cpu = 1};
	static const struct option longopts[] = {
		{"sockets", required_argument, NULL, 'n'}, {"rounds", required_argument, NULL, 'r'},
		{"interval-ms", required_argument, NULL, 'i'},
		{"interval-us", required_argument, NULL, 'u'},
		{"group", required_argument, NULL, 'g'}, {"bytes", required_argument, NULL, 'b'},
		{"mode", required_argument, NULL, 'm'}, {"sender-cpu", required_argument, NULL, 's'},
		{"reader-cpu", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		char *end = NULL;
		long v = optarg ? strtol(optarg, &end, 10) : 0;
		bool is_num = optarg && *optarg && !*end && v >= 0;
		switch (ch) {
		case 'n': o->sockets = v; break;
		case 'r': o->rounds = v; break;
		case 'i': o->interval_us = v * 1000; break;
		case 'u': o->interval_us = v; break;
		case 'g': o->group = v; break;
		case 'b': o->bytes = v; break;
		case 's': o->sender_cpu = v; break;
		case 'c': o->reader_cpu = v; break;
		case 'm':
			is_num = !strcmp(optarg, "write") || !strcmp(optarg, "uring");
			o->is_uring = !strcmp(optarg, "uring");
			break;
		case 'h': fputs(usage, stdout); exit(0);
		default: return -1;
		}
		if (!is_num) {
			fprintf(stderr, "rtfloor: bad value '%s'\n", optarg);
			return -1;
		}
	}
	if (!o->group)
		o->group = o->sockets;
	if (optind < argc || o->sockets < 1 || o->sockets > 9000 || o->rounds < 1 ||
	    o->bytes < 8 || o->bytes > 60000 || o->group > o->sockets) {
		fputs("rtfloor: 1..9000 sockets, a group of at most all of them, at least one "
		      "round, 8..60000 bytes\n",
		      stderr);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct run *r = calloc(1, sizeof *r);
	if (!r || parse(argc, argv, &r->o)) {
		fputs(usage, stderr);
		return 2;
	}
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	r->srv = calloc((size_t)r->o.sockets, sizeof *r->srv);
	r->cli = calloc((size_t)r->o.sockets, sizeof *r->cli);
	r->off = calloc((size_t)r->o.sockets, sizeof *r->off);
	r->stamp = calloc((size_t)r->o.sockets, sizeof *r->stamp);
	r->cap_lat = (size_t)(r->o.group * r->o.rounds);
	r->lat = malloc(r->cap_lat * sizeof *r->lat);
	uint64_t *pass = malloc((size_t)r->o.rounds * sizeof *pass);
	struct io_uring ring;
	if (!r->srv || !r->cli || !r->off || !r->stamp || !r->lat || !pass || connect_all(r)) {
		fprintf(stderr, "rtfloor: setting up %ld sockets: %s\n", r->o.sockets, strerror(errno));
		return 1;
	}
	if (r->o.is_uring && io_uring_queue_init(256, &ring, 0)) {
		fputs("rtfloor: io_uring is not available here\n", stderr);
		return 1;
	}
	pthread_t reader;
	pthread_create(&reader, NULL, reader_main, r);
	pin(r->o.sender_cpu);
	usleep(100000);
	char *msg = malloc((size_t)r->o.bytes);
	memset(msg, 'x', (size_t)r->o.bytes);
	long short_rounds = 0;
	/* open loop, like a publisher: round k starts at k * interval (or at
	 * once when the previous one ran late) */
	uint64_t start = now_ns(), step = (uint64_t)r->o.interval_us * 1000u;
	for (long k = 0; k < r->o.rounds; k++) {
		uint64_t due = start + (uint64_t)k * step;
		struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
				      .tv_nsec = (long)(due % 1000000000u)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		uint64_t t0 = now_ns();
		memcpy(msg, &t0, 8); /* little-endian, as the reader assembles it */
		short_rounds += send_round(r, &ring, msg, (k * r->o.group) % r->o.sockets) != 0;
		pass[k] = now_ns() - t0;
	}
	usleep(200000);
	atomic_store(&r->is_done, true);
	pthread_join(reader, NULL);
	qsort(pass, (size_t)r->o.rounds, sizeof *pass, cmp_u64);
	qsort(r->lat, r->n_lat, sizeof *r->lat, cmp_u64);
	size_t n = r->n_lat;
	double med = (double)pass[r->o.rounds / 2];
	printf("{\"mode\":\"%s\",\"sockets\":%ld,\"group\":%ld,\"rounds\":%ld,\"interval_ms\":%.3f,"
	       "\"bytes\":%ld,"
	       "\"short_rounds\":%ld,\"send_pass_ms\":{\"p50\":%.3f,\"p90\":%.3f},"
	       "\"send_us_per_socket\":%.3f,\"deliveries\":%zu,"
	       "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
	       r->o.is_uring ? "uring" : "write", r->o.sockets, r->o.group, r->o.rounds,
	       (double)r->o.interval_us / 1e3, r->o.bytes, short_rounds, med / 1e6,
	       (double)pass[r->o.rounds * 9 / 10] / 1e6, med / 1e3 / (double)r->o.group, n, n ? (double)r->lat[n / 2] / 1e6 : -1.0,
	       n ? (double)r->lat[n * 99 / 100] / 1e6 : -1.0, n ? (double)r->lat[n - 1] / 1e6 : -1.0);
	if (r->o.is_uring)
		io_uring_queue_exit(&ring);
	for (long i = 0; i < r->o.sockets; i++) {
		close(r->srv[i]);
		close(r->cli[i]);
	}
	free(msg);
	free(pass);
	free(r->lat);
	free(r->stamp);
	free(r->off);
	free(r->cli);
	free(r->srv);
	free(r);
	return 0;
}
