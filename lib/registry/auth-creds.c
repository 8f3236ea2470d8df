/* soci-nbd: registry credentials (see auth.h) — docker config.json
 * (auths, identitytoken, credHelpers, credsStore), running a
 * docker-credential-NAME helper with a timeout, and parsing the JSON of
 * helper output and token responses, wiping every secret it handles.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "registry/auth.h"
#include "registry/auth-int.h"
#include "util/base64.h"
#include "util/err.h"

extern char **environ;

#define HELPER_MAX_OUTPUT ((size_t) 64 << 10)
#define HELPER_TIMEOUT_MS 30000
#define DOCKER_HUB_SERVER "https://index.docker.io/v1/"

/* ---- credentials ------------------------------------------------------- */

/* Wipe and free the strings of c, leaving them NULL. */
void
sn_auth_creds_clear(struct sn_auth_creds *c)
{
  if (c == NULL)
    return;
  sn_auth_wipe_free(c->username);
  sn_auth_wipe_free(c->password);
  sn_auth_wipe_free(c->identity_token);
  c->username = c->password = c->identity_token = NULL;
}

char *
sn_auth_read_password(FILE *f)
{
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, f);

  if (n == -1) {
    free(line);
    return NULL;
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  return line;
}

static bool
is_docker_hub(const char *h)
{
  return strcasecmp(h, "docker.io") == 0
    || strcasecmp(h, "index.docker.io") == 0
    || strcasecmp(h, "registry-1.docker.io") == 0;
}

/* Does a config key ("host", "https://host/v1/") name host? */
static bool
key_matches(const char *key, const char *host)
{
  const char *k = key, *slash;
  size_t n;
  char *kh;
  bool m;

  if (strncasecmp(k, "https://", 8) == 0)
    k += 8;
  else if (strncasecmp(k, "http://", 7) == 0)
    k += 7;
  slash = strchr(k, '/');
  n = slash ? (size_t) (slash - k) : strlen(k);
  kh = sn_auth_dup_n(k, n);
  if (kh == NULL)
    return false;
  m = strcasecmp(kh, host) == 0
    || (is_docker_hub(kh) && is_docker_hub(host));
  free(kh);
  return m;
}

/* Is s a plausible credential helper name (1 to 100 characters of
 * [A-Za-z0-9._-]), safe to put into a program name? */
static bool
valid_helper_name(const char *s)
{
  size_t i;

  if (*s == '\0' || strlen(s) > 100)
    return false;
  for (i = 0; s[i]; i++)
    if (!isalnum((unsigned char) s[i]) && !strchr("._-", s[i]))
      return false;
  return true;
}

/* Write all of s to fd without dying of SIGPIPE. */
static int
write_all_nosigpipe(int fd, const char *s, size_t n)
{
  sigset_t block, old, pending;
  int ret = 0;

  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  while (n > 0) {
    ssize_t w = write(fd, s, n);

    if (w == -1 && errno == EINTR)
      continue;
    if (w <= 0) {
      ret = -1;
      break;
    }
    s += w;
    n -= (size_t) w;
  }
  sigpending(&pending);
  if (sigismember(&pending, SIGPIPE) && !sigismember(&old, SIGPIPE)) {
    struct timespec zero = { 0, 0 };

    sigtimedwait(&block, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return ret;
}

/* Wipe the string values of members of j (secrets inside jansson's
 * copies). */
static void
wipe_members(json_t *j, const char *const *names, size_t n)
{
  size_t i;

  for (i = 0; j && i < n; i++) {
    json_t *s = json_object_get(j, names[i]);

    if (json_is_string(s)) {
      char *v = (char *) json_string_value(s);

      explicit_bzero(v, strlen(v));
    }
  }
}

/* A credential helper's JSON output into *c (see auth.h): 1, 0 when
 * there is no secret, -1 when it is not a JSON object. */
int
sn_auth_parse_helper_output(const char *buf, size_t len,
                            struct sn_auth_creds *c)
{
  static const char *const secrets[] = { "Secret" };
  json_t *j = buf ? json_loadb(buf, len, 0, NULL) : NULL;
  const char *user, *secret;
  int ret = -1;

  memset(c, 0, sizeof *c);
  if (j == NULL || !json_is_object(j)) {
    sn_set_error("output is not a JSON object");
    goto out;
  }
  user = json_string_value(json_object_get(j, "Username"));
  secret = json_string_value(json_object_get(j, "Secret"));
  if (secret == NULL || *secret == '\0') {
    ret = 0;
    goto out;
  }
  if (user && strcmp(user, "<token>") == 0) {
    c->identity_token = strdup(secret);
    if (c->identity_token == NULL)
      goto oom;
  }
  else {
    c->username = strdup(user ? user : "");
    c->password = strdup(secret);
    if (c->username == NULL || c->password == NULL)
      goto oom;
  }
  ret = 1;
  goto out;

oom:
  sn_auth_creds_clear(c);
  sn_oom();
out:
  wipe_members(j, secrets, 1);
  json_decref(j);
  return ret;
}

/* The token of a token server's JSON answer, malloc'd, and its clamped
 * lifetime (see auth.h); NULL with an error when there is none. */
char *
sn_auth_parse_token_response(const uint8_t *buf, size_t len,
                             int64_t *expires_in)
{
  static const char *const secrets[] = {
    "token", "access_token", "refresh_token" };
  json_t *j = json_loadb((const char *) buf, len, 0, NULL);
  const char *tok;
  json_int_t expires = DEFAULT_EXPIRES;
  char *copy = NULL;

  tok = j ? json_string_value(json_object_get(j, "token")) : NULL;
  if (tok == NULL || *tok == '\0')
    tok = j ? json_string_value(json_object_get(j, "access_token")) : NULL;
  if (tok == NULL || *tok == '\0') {
    sn_set_error("no token in the response");
    goto out;
  }
  if (json_is_integer(json_object_get(j, "expires_in")))
    expires = json_integer_value(json_object_get(j, "expires_in"));
  if (expires < 1)
    expires = DEFAULT_EXPIRES;
  if (expires > 86400 * 365)
    expires = 86400 * 365;
  *expires_in = expires;
  copy = strdup(tok);
  if (copy == NULL)
    sn_oom();
out:
  wipe_members(j, secrets, 3);
  json_decref(j);
  return copy;
}

/* Start prog ("get") with its stdin and stdout on new pipes, stderr on
 * /dev/null, and write server to its stdin.  0, or -1 with the error set;
 * the caller closes whichever of in[] and outp[] are still open. */
static int
start_helper(char *prog, const char *server, int in[2], int outp[2],
             pid_t *pid)
{
  char *argv[3];
  posix_spawn_file_actions_t fa;

  argv[0] = prog;
  argv[1] = (char *) "get";
  argv[2] = NULL;
  if (pipe2(in, O_CLOEXEC) == -1 || pipe2(outp, O_CLOEXEC) == -1)
    return sn_set_error("pipe: %s", strerror(errno));
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  errno = posix_spawnp(pid, prog, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (errno != 0)
    return sn_set_error("cannot run credential helper %s: %s", prog,
                        strerror(errno));
  close(in[0]);
  close(outp[1]);
  in[0] = outp[1] = -1;
  write_all_nosigpipe(in[1], server, strlen(server));
  write_all_nosigpipe(in[1], "\n", 1);
  close(in[1]);
  in[1] = -1;
  return 0;
}

/* Read the helper's output from fd into *out (*len bytes, up to
 * HELPER_MAX_OUTPUT) until EOF or HELPER_TIMEOUT_MS after start
 * (*timed_out).  0, or -1 on OOM after wiping *out and killing and
 * reaping the helper. */
static int
read_helper_output(pid_t pid, int fd, struct timespec start, char **out,
                   size_t *len, bool *timed_out)
{
  size_t cap = 0;

  for (;;) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    struct timespec t = sn_auth_now_mono();
    long elapsed = (t.tv_sec - start.tv_sec) * 1000
      + (t.tv_nsec - start.tv_nsec) / 1000000;
    ssize_t r;
    int pr;

    if (elapsed >= HELPER_TIMEOUT_MS) {
      *timed_out = true;
      break;
    }
    pr = poll(&pfd, 1, (int) (HELPER_TIMEOUT_MS - elapsed));
    if (pr == -1 && errno == EINTR)
      continue;
    if (pr <= 0) {
      *timed_out = pr == 0;
      break;
    }
    if (*len + 4096 + 1 > cap) {
      char *nb;

      if (cap >= HELPER_MAX_OUTPUT)
        break;
      cap = cap ? cap * 2 : 8192;
      nb = realloc(*out, cap);
      if (nb == NULL) {
        if (*out)
          explicit_bzero(*out, *len);
        free(*out);
        *out = NULL;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return sn_oom();
      }
      *out = nb;
    }
    r = read(fd, *out + *len, cap - *len - 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    *len += (size_t) r;
  }
  return 0;
}

/* Run docker-credential-NAME get.  1 found, 0 not found, -1 error. */
static int
run_helper(const char *name, const char *server, struct sn_auth_creds *c)
{
  char prog[128], *out = NULL;
  int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, status = 0, ret = -1;
  size_t len = 0;
  pid_t pid;
  struct timespec start = sn_auth_now_mono();
  bool timed_out = false;

  if (!valid_helper_name(name))
    return sn_set_error("invalid credential helper name in docker config");
  snprintf(prog, sizeof prog, "docker-credential-%s", name);
  if (start_helper(prog, server, in, outp, &pid) == -1)
    goto out;
  if (read_helper_output(pid, outp[0], start, &out, &len, &timed_out) == -1)
    goto out;
  if (timed_out)
    kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
    ;
  if (out)
    out[len] = '\0';
  if (timed_out) {
    sn_set_error("credential helper %s timed out", prog);
    goto out;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (out && strstr(out, "credentials not found"))
      ret = 0;
    else
      sn_set_error("credential helper %s failed (%s %d)", prog,
                   WIFEXITED(status) ? "exit status" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status)
                   : WTERMSIG(status));
    goto out;
  }
  ret = sn_auth_parse_helper_output(out, len, c);
  if (ret == -1)
    sn_prefix_error("credential helper %s: ", prog);

out:
  if (out) {
    explicit_bzero(out, len);
    free(out);
  }
  if (in[0] >= 0)
    close(in[0]);
  if (in[1] >= 0)
    close(in[1]);
  if (outp[0] >= 0)
    close(outp[0]);
  if (outp[1] >= 0)
    close(outp[1]);
  return ret;
}

/* The docker config to read: auth_file (*explicit_path set), else
 * $DOCKER_CONFIG/config.json, else ~/.docker/config.json, else "" for
 * none.  malloc'd; NULL on OOM. */
static char *
config_path(const char *auth_file, bool *explicit_path)
{
  const char *dc = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
  char *p = NULL;

  *explicit_path = auth_file != NULL;
  if (auth_file)
    return strdup(auth_file);
  if (dc && *dc) {
    if (asprintf(&p, "%s/config.json", dc) < 0)
      p = NULL;
    return p;
  }
  if (home && *home) {
    if (asprintf(&p, "%s/.docker/config.json", home) < 0)
      p = NULL;
    return p;
  }
  return strdup("");
}

/* Credentials for host from the "auths" object of the config at path
 * into *c: 1 found, 0 none, -1 on an invalid entry or OOM. */
static int
creds_from_auths(json_t *auths, const char *host, const char *path,
                 struct sn_auth_creds *c)
{
  const char *key;
  json_t *e;

  if (!json_is_object(auths))
    return 0;
  json_object_foreach(auths, key, e) {
    const char *auth, *idt, *u, *pw;

    if (!key_matches(key, host) || !json_is_object(e))
      continue;
    auth = json_string_value(json_object_get(e, "auth"));
    idt = json_string_value(json_object_get(e, "identitytoken"));
    u = json_string_value(json_object_get(e, "username"));
    pw = json_string_value(json_object_get(e, "password"));
    if (auth && *auth) {
      size_t n;
      char *dec = sn_base64_decode(auth, &n), *colon;

      if (dec == NULL || (colon = memchr(dec, ':', n)) == NULL) {
        if (dec) {
          explicit_bzero(dec, n);
          free(dec);
        }
        return sn_set_error("%s: invalid \"auth\" entry for %s", path, key);
      }
      c->username = sn_auth_dup_n(dec, (size_t) (colon - dec));
      c->password = strdup(colon + 1);
      explicit_bzero(dec, n);
      free(dec);
      if (c->username == NULL || c->password == NULL)
        goto oom;
    }
    else if (u && pw && *u) {
      c->username = strdup(u);
      c->password = strdup(pw);
      if (c->username == NULL || c->password == NULL)
        goto oom;
    }
    if (idt && *idt) {
      c->identity_token = strdup(idt);
      if (c->identity_token == NULL)
        goto oom;
    }
    if (c->username || c->identity_token)
      return 1;
  }
  return 0;

oom:
  sn_auth_creds_clear(c);
  return sn_oom();
}

/* Credentials for host from the docker config: credHelpers, credsStore,
 * then auths (see auth.h).  1 with *c filled, 0 none, -1 on error. */
int
sn_auth_creds_lookup(const char *auth_file, const char *host,
                     struct sn_auth_creds *c)
{
  bool explicit_path;
  char *path = config_path(auth_file, &explicit_path);
  json_t *root = NULL, *helpers, *store, *e;
  json_error_t jerr;
  const char *key, *helper = NULL;
  struct stat st;
  int ret = 0;

  memset(c, 0, sizeof *c);
  if (path == NULL)
    return sn_oom();
  if (*path == '\0' || (!explicit_path && stat(path, &st) == -1
                        && errno == ENOENT))
    goto out;
  root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    /* jerr.text may quote the file (secrets): only say where. */
    if (access(path, R_OK) == -1)
      ret = sn_set_error("%s: %s", path, strerror(errno));
    else
      ret = sn_set_error("%s: invalid JSON at line %d", path, jerr.line);
    goto out;
  }
  if (!json_is_object(root)) {
    ret = sn_set_error("%s: not a JSON object", path);
    goto out;
  }
  helpers = json_object_get(root, "credHelpers");
  if (json_is_object(helpers))
    json_object_foreach(helpers, key, e)
      if (key_matches(key, host) && json_is_string(e)) {
        helper = json_string_value(e);
        break;
      }
  store = json_object_get(root, "credsStore");
  if (helper == NULL && json_is_string(store) && *json_string_value(store))
    helper = json_string_value(store);
  if (helper) {
    ret = run_helper(helper, is_docker_hub(host) ? DOCKER_HUB_SERVER : host,
                     c);
    if (ret != 0)
      goto out;
  }
  ret = creds_from_auths(json_object_get(root, "auths"), host, path, c);

out:
  if (root) {
    /* Wipe decoded "auth" strings held by jansson. */
    json_t *auths = json_object_get(root, "auths");

    if (json_is_object(auths))
      json_object_foreach(auths, key, e) {
        const char *fields[] = { "auth", "identitytoken", "password" };
        size_t i;

        for (i = 0; i < 3; i++) {
          json_t *s = json_object_get(e, fields[i]);

          if (json_is_string(s)) {
            char *v = (char *) json_string_value(s);

            explicit_bzero(v, strlen(v));
          }
        }
      }
    json_decref(root);
  }
  free(path);
  return ret;
}
