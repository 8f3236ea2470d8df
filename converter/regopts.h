/* soci-nbd command line: the registry options shared by every command
 * that talks to a registry (credentials, TLS, plain HTTP, mirrors,
 * verbose logging, v1 index discovery), parsed with getopt_long. */
#ifndef SN_REGOPTS_H
#define SN_REGOPTS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "registry/registry.h"

#define REGOPTS_MAX_LIST 32 /* --plain-http / --mirror values */

/* Long-option codes (above any short option or a command's own codes). */
enum {
  REGOPT_USERNAME = 0x1000, REGOPT_PASSWORD_STDIN, REGOPT_AUTH_FILE,
  REGOPT_CACERT, REGOPT_INSECURE, REGOPT_PLAIN_HTTP, REGOPT_MIRROR,
  REGOPT_VERBOSE, REGOPT_SOCI_V1,
};

/* Entries for a command's struct option array (before its terminator).
 * -u, -a and -v map to the same codes: put "u:a:v" in the short options
 * and let regopts_handle see them. */
#define REGOPTS_LONG_OPTIONS \
  { "username", required_argument, NULL, 'u' }, \
  { "password-stdin", no_argument, NULL, REGOPT_PASSWORD_STDIN }, \
  { "auth-file", required_argument, NULL, 'a' }, \
  { "cacert", required_argument, NULL, REGOPT_CACERT }, \
  { "insecure", no_argument, NULL, REGOPT_INSECURE }, \
  { "plain-http", required_argument, NULL, REGOPT_PLAIN_HTTP }, \
  { "mirror", required_argument, NULL, REGOPT_MIRROR }, \
  { "soci-v1", no_argument, NULL, REGOPT_SOCI_V1 }, \
  { "verbose", no_argument, NULL, 'v' }

/* Help text lines for these options. */
#define REGOPTS_HELP \
"  -u, --username U         user name for the registry\n" \
"      --password-stdin     read the password from the first line of stdin\n" \
"  -a, --auth-file F        docker config.json with credentials (default:\n" \
"                           $DOCKER_CONFIG/config.json, ~/.docker/config.json)\n" \
"      --cacert F           trust the CA certificates in F for TLS\n" \
"      --insecure           do not verify TLS certificates\n" \
"      --plain-http HOST    talk plain HTTP to HOST[:PORT] (repeatable;\n" \
"                           loopback hosts: HTTPS if offered, else plain)\n" \
"      --mirror URL         try this mirror (http[s]://host[:port]) before\n" \
"                           the registry (repeatable, in order)\n" \
"      --soci-v1            when an image names no v2 SOCI index, look for a\n" \
"                           v1 index among its referrers (off by default)\n" \
"  -v, --verbose            log requests to stderr (no secrets)\n"

struct regopts {
  struct sn_registry_opts ro;
  const char *plain[REGOPTS_MAX_LIST + 1];
  const char *mirrors[REGOPTS_MAX_LIST + 1];
  size_t nplain, nmirrors;
  bool password_stdin;
  bool soci_v1;                 /* --soci-v1: v1 index discovery */
  char *password;
};

void regopts_init(struct regopts *o);
/* Option c (with optarg): 1 if it was a registry option, 0 if not, or
 * the exit status 2 after a usage error message naming cmd. */
int regopts_handle(struct regopts *o, int c, const char *arg,
                   const char *cmd);
/* After parsing: checks and reads the password from stdin; 0, or an exit
 * status (2 usage, 1 failure) after printing the message. */
int regopts_finish(struct regopts *o, const char *cmd);
void regopts_clear(struct regopts *o);

#endif
