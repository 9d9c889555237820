#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
	"Usage: rtsync COMMAND [options]\n"
	"\n"
	"Commands:\n"
	"  serve     run the server (Supabase Realtime-compatible WebSocket, broadcast, presence)\n"
	"  token     print a signed token for a role\n"
	"  listen    print a channel's database changes, broadcasts and presence\n"
	"  send      broadcast a message on a channel\n"
	"  presence  track presence on a channel and watch it\n"
	"  write     write one row, optionally checked against the values last seen\n"
	"  query     print a live query's result, then every change of it\n"
	"  notify    send a notification to users (service role)\n"
	"  inbox     list a user's notifications, mark them read, archive, delete\n"
	"  flags     list, get, set and delete the server's feature flags (service role)\n"
	"  lock      run a command while holding a lock (fencing token in RTSYNC_LOCK_TOKEN)\n"
	"\n"
	"Run 'rtsync COMMAND --help' for a command's options.\n";

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return RT_CLI_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(cmd, "serve"))
		return rt_cli_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "token"))
		return rt_cli_token(argc - 1, argv + 1);
	if (!strcmp(cmd, "listen"))
		return rt_cli_listen(argc - 1, argv + 1);
	if (!strcmp(cmd, "send"))
		return rt_cli_send(argc - 1, argv + 1);
	if (!strcmp(cmd, "presence"))
		return rt_cli_presence(argc - 1, argv + 1);
	if (!strcmp(cmd, "write"))
		return rt_cli_write(argc - 1, argv + 1);
	if (!strcmp(cmd, "query"))
		return rt_cli_query(argc - 1, argv + 1);
	if (!strcmp(cmd, "notify"))
		return rt_cli_notify(argc - 1, argv + 1);
	if (!strcmp(cmd, "inbox"))
		return rt_cli_inbox(argc - 1, argv + 1);
	if (!strcmp(cmd, "flags"))
		return rt_cli_flags(argc - 1, argv + 1);
	if (!strcmp(cmd, "lock"))
		return rt_cli_lock(argc - 1, argv + 1);
	fprintf(stderr, "rtsync: unknown command '%s'\n\n%s", cmd, usage);
	return RT_CLI_EXIT_USAGE;
}
