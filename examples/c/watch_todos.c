/*
 * librtsync example: print every change of table "todos" and every broadcast
 * on channel "room1", driving the client from our own poll() loop. Stops on
 * SIGINT. Build: cc watch_todos.c $(pkg-config --cflags --libs librtsync)
 *   RTSYNC_URL=http://127.0.0.1:4000 RTSYNC_APIKEY=$(rtsync token) ./watch_todos
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <rtsync/rtsync.h>

static volatile sig_atomic_t stop;

static void on_sigint(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_state(void *user, const struct rt_client_state_event *ev)
{
	(void)user;
	if (ev->state == RT_CLIENT_RECONNECTING)
		fprintf(stderr, "connection lost (%s), retry %u in %u ms\n",
			ev->detail ? ev->detail : rt_strerror(ev->reason), ev->attempt, ev->delay_ms);
	else if (ev->state == RT_CLIENT_OPEN)
		fprintf(stderr, "connected\n");
}

static void on_change(void *user, struct rt_client_channel *ch, const struct rt_client_change *c)
{
	(void)user;
	(void)ch;
	printf("%s at %s: %s\n", c->type, c->position, c->record ? c->record : c->old_record);
}

static void on_broadcast(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b)
{
	(void)user;
	(void)ch;
	printf("broadcast %s: %s\n", b->event, b->payload);
}

int main(void)
{
	const char *url = getenv("RTSYNC_URL"), *key = getenv("RTSYNC_APIKEY");
	struct rt_client_options opt = {
		.url = url ? url : "http://127.0.0.1:4000",
		.apikey = key,
		.on_state = on_state,
	};
	struct rt_client *client;
	int rc = rt_client_new(&opt, &client);
	if (rc) {
		fprintf(stderr, "rt_client_new: %s (set RTSYNC_APIKEY)\n", rt_strerror(rc));
		return 1;
	}
	struct rt_change_filter todos = {.event = "*", .table = "todos"};
	struct rt_channel_options copt = {
		.topic = "room1",
		.changes = &todos,
		.n_changes = 1,
		.cb = {.on_change = on_change, .on_broadcast = on_broadcast},
	};
	struct rt_client_channel *ch;
	if ((rc = rt_channel_join(client, &copt, &ch)) || (rc = rt_client_connect(client))) {
		fprintf(stderr, "%s\n", rt_strerror(rc));
		rt_client_free(client);
		return 1;
	}
	signal(SIGINT, on_sigint);
	while (!stop) {
		struct pollfd p = {.fd = rt_client_fd(client), .events = POLLIN};
		poll(&p, 1, rt_client_timeout_ms(client));
		rt_client_process(client);
		fflush(stdout);
	}
	rt_channel_leave(ch);
	rt_client_close(client);
	rt_client_free(client);
	return 0;
}
