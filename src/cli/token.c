#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "common/clock.h"

static const char token_usage[] =
	"Usage: rtsync token [--role ROLE] [--secret SECRET | --data-dir DIR] [--expires-in SECONDS]\n"
	"                    [--sub SUB] [--claims JSON]\n"
	"\n"
	"Prints an HS256 token with claims role, iss, iat, exp (and sub and any extra claims).\n"
	"The secret comes from --secret, RTSYNC_JWT_SECRET, or DIR/jwt_secret (default .rtsync).\n"
	"  --role ROLE            anon, authenticated, service_role, … (default anon)\n"
	"  --expires-in SECONDS   lifetime; negative for an already expired token (default 3600)\n";

int rt_cli_token(int argc, char **argv)
{
	const char *role = "anon", *secret = getenv("RTSYNC_JWT_SECRET"), *sub = NULL;
	const char *dir = getenv("RTSYNC_DATA_DIR"), *claims_txt = NULL;
	long long expires = 3600;
	static const struct option longopts[] = {
		{"role", required_argument, NULL, 'r'},   {"secret", required_argument, NULL, 's'},
		{"data-dir", required_argument, NULL, 'd'}, {"expires-in", required_argument, NULL, 'e'},
		{"sub", required_argument, NULL, 'u'},    {"claims", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'r': role = optarg; break;
		case 's': secret = optarg; break;
		case 'd': dir = optarg; break;
		case 'u': sub = optarg; break;
		case 'c': claims_txt = optarg; break;
		case 'e':
			errno = 0;
			expires = strtoll(optarg, &end, 10);
			if (errno || *end || end == optarg) {
				fprintf(stderr, "rtsync token: --expires-in wants seconds\n");
				return RT_CLI_EXIT_USAGE;
			}
			break;
		case 'h': fputs(token_usage, stdout); return 0;
		default: fputs("Try 'rtsync token --help'.\n", stderr); return RT_CLI_EXIT_USAGE;
		}
	}
	char buf[1024];
	if (!secret || !*secret) {
		char path[4096];
		snprintf(path, sizeof path, "%s/jwt_secret", dir && *dir ? dir : ".rtsync");
		FILE *f = fopen(path, "r");
		if (!f || !fgets(buf, sizeof buf, f)) {
			fprintf(stderr, "rtsync token: no secret: pass --secret or run 'rtsync serve' once "
					"to create %s\n", path);
			if (f)
				fclose(f);
			return RT_CLI_EXIT_FAILURE;
		}
		fclose(f);
		buf[strcspn(buf, "\r\n")] = '\0';
		secret = buf;
	}
	json_t *extra = claims_txt ? json_loads(claims_txt, 0, NULL) : json_object();
	if (!json_is_object(extra)) {
		fprintf(stderr, "rtsync token: --claims wants a JSON object\n");
		json_decref(extra);
		return RT_CLI_EXIT_USAGE;
	}
	if (sub)
		json_object_set_new(extra, "sub", json_string(sub));
	int64_t now = rt_wall_s();
	char *tok = rt_jwt_mint(secret, role, "rtsync", now, now + expires, extra);
	json_decref(extra);
	if (!tok) {
		fprintf(stderr, "rtsync token: could not sign the token\n");
		return RT_CLI_EXIT_FAILURE;
	}
	puts(tok);
	free(tok);
	return 0;
}
