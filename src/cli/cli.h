/*
 * The rtsync command line: one binary, several commands (serve, token, and
 * the client commands listen, send, presence, write and query, built on librtsync).
 * Each command parses its own options and returns the process exit status.
 *
 * Exit codes: 0 success, 1 failure while running, 2 usage error; the client
 *             commands also use 3: channel join refused or closed by the server,
 *             write 4: a conflict (nothing applied), lock 5: the lock was not
 *             obtained and 6: its lease was lost while the command ran.
 * Ownership: commands own everything they allocate and free it before returning.
 * Threads:   main thread only.
 * Limits:    none of its own.
 */
#ifndef RT_CLI_CLI_H
#define RT_CLI_CLI_H

#define RT_CLI_EXIT_FAILURE 1
#define RT_CLI_EXIT_USAGE 2

/* rtsync serve: runs the server until SIGINT/SIGTERM. */
int rt_cli_serve(int argc, char **argv);

/* rtsync token: prints a signed HS256 token. */
int rt_cli_token(int argc, char **argv);

/* rtsync listen / send / presence: the client commands (src/cli/listen.c). */
int rt_cli_listen(int argc, char **argv);
int rt_cli_send(int argc, char **argv);
int rt_cli_presence(int argc, char **argv);
/* rtsync write: one row written with optional conflict control (src/cli/write.c). */
int rt_cli_write(int argc, char **argv);
/* rtsync query: a live query's result, then its changes (src/cli/query.c). */
int rt_cli_query(int argc, char **argv);
/* rtsync notify / inbox: notifications over REST (src/cli/notify.c). */
int rt_cli_notify(int argc, char **argv);
int rt_cli_inbox(int argc, char **argv);
/* rtsync flags: the feature flags over REST (src/cli/flags.c). */
int rt_cli_flags(int argc, char **argv);
/* rtsync lock: a command run under a lock, or its state (src/cli/lock.c). */
int rt_cli_lock(int argc, char **argv);

#endif
