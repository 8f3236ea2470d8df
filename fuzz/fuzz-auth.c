/* soci-nbd fuzzing: registry authentication input.  The bytes up to the
 * first NUL are a WWW-Authenticate header value (sn_auth_parse_challenges,
 * sn_auth_challenge_param); the whole input is also a docker config.json
 * for sn_auth_creds_lookup, read through a memfd.  Credential helpers are
 * never run: PATH points nowhere, so a "credsStore"/"credHelpers" entry
 * only reaches the spawn failure path. */
#include <config.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "registry/auth.h"
#include "util/err.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cfg_fd = -1;
static char cfg_path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void) argc;
  (void) argv;
  setenv("PATH", "/nonexistent/soci-nbd-fuzz", 1);
  unsetenv("DOCKER_CONFIG");
  cfg_fd = memfd_create("config.json", 0);
  if (cfg_fd == -1) {
    perror("memfd_create");
    abort();
  }
  snprintf(cfg_path, sizeof cfg_path, "/proc/self/fd/%d", cfg_fd);
  return 0;
}

static const char *const param_names[] = {
  "realm", "service", "scope", "error", "REALM", "",
};

static void
check_challenges(const char *hdr)
{
  struct sn_auth_challenge *cs;
  size_t n, i, j, k;

  if (sn_auth_parse_challenges(hdr, &cs, &n) == -1) {
    if (cs != NULL || n != 0 || strlen(sn_error()) == 0)
      abort();
    return;
  }
  if ((n == 0) != (cs == NULL))
    abort();
  for (i = 0; i < n; i++) {
    const struct sn_auth_challenge *c = &cs[i];

    if (c->scheme == NULL || c->scheme[0] == '\0')
      abort();
    for (k = 0; c->scheme[k]; k++)
      if (isupper((unsigned char) c->scheme[k]))
        abort();
    if (c->token68 && c->nparams)
      abort();                  /* token68 excludes auth-params */
    for (j = 0; j < c->nparams; j++) {
      if (c->params[j].name == NULL || c->params[j].value == NULL ||
          c->params[j].name[0] == '\0')
        abort();
      if (sn_auth_challenge_param(c, c->params[j].name) == NULL)
        abort();
    }
    for (j = 0; j < sizeof param_names / sizeof param_names[0]; j++)
      (void) sn_auth_challenge_param(c, param_names[j]);
  }
  sn_auth_challenges_free(cs, n);
}

static const char *const hosts[] = {
  "docker.io", "127.0.0.1:5000", "registry.example", "",
};

static void
check_config(const uint8_t *data, size_t size)
{
  size_t i;

  if (ftruncate(cfg_fd, 0) == -1 ||
      pwrite(cfg_fd, data, size, 0) != (ssize_t) size)
    abort();
  for (i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
    struct sn_auth_creds c;
    int r = sn_auth_creds_lookup(cfg_path, hosts[i], &c);

    if (r == 1) {
      if (c.username == NULL && c.identity_token == NULL)
        abort();
      if (c.username && c.password == NULL)
        abort();
    }
    else if (c.username || c.password || c.identity_token)
      abort();
    if (r == -1 && strlen(sn_error()) == 0)
      abort();
    sn_auth_creds_clear(&c);
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *nul = memchr(data, 0, size);
  size_t hlen = nul ? (size_t) (nul - data) : size;
  char *hdr = malloc(hlen + 1);

  if (hdr == NULL)
    return 0;
  memcpy(hdr, data, hlen);
  hdr[hlen] = '\0';
  check_challenges(hdr);
  free(hdr);
  check_config(data, size);
  return 0;
}
