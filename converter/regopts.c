/* soci-nbd command line: parsing of the shared registry options. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "registry/auth.h"
#include "regopts.h"

/* --verbose: the registry's request log, to stderr. */
static void
debug_log(void *opaque, const char *msg)
{
  (void) opaque;
  fprintf(stderr, "soci-nbd: %s\n", msg);
}

void
regopts_init(struct regopts *o)
{
  memset(o, 0, sizeof *o);
}

/* The host and mirror lists stay NULL-terminated for sn_registry_opts:
 * zeroed by regopts_init, one slot more than REGOPTS_MAX_LIST. */
int
regopts_handle(struct regopts *o, int c, const char *arg, const char *cmd)
{
  switch (c) {
  case 'u': o->ro.username = arg; return 1;
  case REGOPT_PASSWORD_STDIN: o->password_stdin = true; return 1;
  case 'a': o->ro.auth_file = arg; return 1;
  case REGOPT_CACERT: o->ro.cacert = arg; return 1;
  case REGOPT_INSECURE: o->ro.insecure = true; return 1;
  case REGOPT_PLAIN_HTTP:
    if (o->nplain == REGOPTS_MAX_LIST)
      return cli_usage_error(cmd, "too many --plain-http hosts");
    o->plain[o->nplain++] = arg;
    o->ro.plain_http_hosts = o->plain;
    return 1;
  case REGOPT_MIRROR:
    if (o->nmirrors == REGOPTS_MAX_LIST)
      return cli_usage_error(cmd, "too many --mirror URLs");
    o->mirrors[o->nmirrors++] = arg;
    o->ro.mirrors = o->mirrors;
    return 1;
  case REGOPT_SOCI_V1: o->soci_v1 = true; return 1;
  case 'v': o->ro.debug = debug_log; return 1;
  default: return 0;
  }
}

int
regopts_finish(struct regopts *o, const char *cmd)
{
  if (o->password_stdin && o->ro.username == NULL)
    return cli_usage_error(cmd, "--password-stdin needs --username");
  if (o->ro.username && !o->password_stdin)
    return cli_usage_error(cmd, "--username needs --password-stdin");
  if (o->password_stdin) {
    o->password = sn_auth_read_password(stdin);
    if (o->password == NULL)
      return cli_fail("no password on standard input");
    o->ro.password = o->password;
  }
  return 0;
}

/* Wipe the password read from stdin before freeing it. */
void
regopts_clear(struct regopts *o)
{
  sn_auth_wipe_free(o->password);
  regopts_init(o);
}
