/*
 * librtsync example: a line-based chat on channel "chat". The library runs
 * its own thread; main reads stdin and sends each line as a broadcast (sends
 * are thread-safe); callbacks print what others send, on the library thread.
 * Build: cc chat_thread.c $(pkg-config --cflags --libs librtsync)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rtsync/rtsync.h>

static void on_broadcast(void *user, struct rt_client_channel *ch, const struct rt_broadcast *b)
{
	(void)user;
	(void)ch;
	printf("%s: %s\n", b->event, b->payload);
	fflush(stdout);
}

static void on_error(void *user, struct rt_client_channel *ch, int rc, const char *msg)
{
	(void)user;
	(void)ch;
	fprintf(stderr, "%s: %s\n", rt_err_name(rc), msg);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "me";
	const char *url = getenv("RTSYNC_URL");
	struct rt_client_options opt = {
		.url = url ? url : "http://127.0.0.1:4000",
		.apikey = getenv("RTSYNC_APIKEY"),
		.on_error = on_error,
	};
	struct rt_client *client;
	int rc = rt_client_new(&opt, &client);
	if (rc) {
		fprintf(stderr, "rt_client_new: %s\n", rt_strerror(rc));
		return 1;
	}
	struct rt_channel_options copt = {.topic = "chat", .cb = {.on_broadcast = on_broadcast}};
	struct rt_client_channel *ch;
	if ((rc = rt_channel_join(client, &copt, &ch)) || (rc = rt_client_connect(client)) ||
	    (rc = rt_client_start_thread(client))) {
		fprintf(stderr, "%s\n", rt_strerror(rc));
		rt_client_free(client);
		return 1;
	}
	char line[512], json[1200];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\r\n")] = 0;
		/* a JSON string needs escaping; keep the example to plain text */
		if (strpbrk(line, "\"\\"))
			continue;
		snprintf(json, sizeof json, "{\"text\":\"%s\"}", line);
		if ((rc = rt_channel_send(ch, name, json, NULL)))
			fprintf(stderr, "not sent: %s\n", rt_strerror(rc));
	}
	rt_client_free(client); /* stops the thread, leaves and closes */
	return 0;
}
