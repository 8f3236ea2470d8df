/* soci-nbd: registry authentication (see auth.h) — challenge parsing,
 * docker config.json and credential helpers, the Basic and Bearer token
 * flows (anonymous, Basic credentials, OAuth2 refresh token), and a
 * per-scope token cache with expiry.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
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
#include "util/err.h"
#include "registry/ref.h"
#include "registry/site.h"

extern char **environ;

#define TOKEN_MAX_BODY ((size_t) 1 << 20)
#define HELPER_MAX_OUTPUT ((size_t) 64 << 10)
#define HELPER_TIMEOUT_MS 30000
#define DEFAULT_EXPIRES 60
#define MAX_TOKENS 32
#define DOCKER_HUB_SERVER "https://index.docker.io/v1/"

/* ---- small helpers ----------------------------------------------------- */

static void
wipe_free(char *s)
{
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

static char *
dup_n(const char *s, size_t n)
{
  char *d = malloc(n + 1);

  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static char *
lower_dup(const char *s, size_t n)
{
  char *d = dup_n(s, n);
  size_t i;

  if (d)
    for (i = 0; i < n; i++)
      d[i] = (char) tolower((unsigned char) d[i]);
  return d;
}

char *
sn_base64(const void *s, size_t n)
{
  char *out = malloc(4 * ((n + 2) / 3) + 1);

  if (out == NULL)
    return NULL;
  EVP_EncodeBlock((unsigned char *) out, s, (int) n);
  return out;
}

/* Decode standard base64 (padding optional); NULL if invalid. */
static char *
base64_decode(const char *s, size_t *outlen)
{
  size_t n = strlen(s), pad = 0, padded;
  char *tmp, *out;
  int got;

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    n--;
  if (n % 4 == 1 || n > (1u << 20))
    return NULL;
  padded = (n + 3) / 4 * 4;
  tmp = malloc(padded + 1);
  out = malloc(padded / 4 * 3 + 1);
  if (tmp == NULL || out == NULL) {
    free(tmp);
    free(out);
    return NULL;
  }
  memcpy(tmp, s, n);
  memset(tmp + n, '=', padded - n);
  tmp[padded] = '\0';
  if (padded >= 1 && tmp[padded - 1] == '=')
    pad++;
  if (padded >= 2 && tmp[padded - 2] == '=')
    pad++;
  got = EVP_DecodeBlock((unsigned char *) out, (unsigned char *) tmp,
                        (int) padded);
  explicit_bzero(tmp, padded);
  free(tmp);
  if (got < 0 || (size_t) got < pad) {
    explicit_bzero(out, padded / 4 * 3 + 1);
    free(out);
    return NULL;
  }
  *outlen = (size_t) got - pad;
  out[*outlen] = '\0';
  return out;
}

static struct timespec
now_mono(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts;
}

/* ---- WWW-Authenticate -------------------------------------------------- */

static bool
is_tchar(char c)
{
  return isalnum((unsigned char) c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static size_t
token_len(const char *p)
{
  size_t n = 0;

  while (is_tchar(p[n]))
    n++;
  return n;
}

static size_t
token68_len(const char *p)
{
  size_t n = 0;

  while (isalnum((unsigned char) p[n]) || (p[n] && strchr("-._~+/", p[n])))
    n++;
  if (n == 0)
    return 0;
  while (p[n] == '=')
    n++;
  return n;
}

static const char *
ws(const char *p)
{
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

/* A quoted-string at p (which points at '"'); *end after it.  NULL on
 * error, with *end NULL when unterminated (else out of memory). */
static char *
quoted(const char *p, const char **end)
{
  size_t n = 0, cap = strlen(p);
  char *d = malloc(cap + 1);

  *end = p;                     /* non-NULL: the caller reports OOM */
  if (d == NULL)
    return NULL;
  p++;
  while (*p && *p != '"') {
    if (*p == '\\' && p[1])
      p++;
    d[n++] = *p++;
  }
  if (*p != '"') {
    free(d);
    *end = NULL;
    return NULL;
  }
  d[n] = '\0';
  *end = p + 1;
  return d;
}

void
sn_auth_challenges_free(struct sn_auth_challenge *c, size_t n)
{
  size_t i, j;

  if (c == NULL)
    return;
  for (i = 0; i < n; i++) {
    free(c[i].scheme);
    free(c[i].token68);
    for (j = 0; j < c[i].nparams; j++) {
      free(c[i].params[j].name);
      free(c[i].params[j].value);
    }
    free(c[i].params);
  }
  free(c);
}

int
sn_auth_parse_challenges(const char *hdr, struct sn_auth_challenge **out,
                         size_t *nout)
{
  struct sn_auth_challenge *cs = NULL, *c;
  size_t n = 0;
  const char *p = hdr ? hdr : "";

  *out = NULL;
  *nout = 0;
  for (;;) {
    size_t k;
    bool first = true;
    struct sn_auth_challenge *ncs;

    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p == '\0')
      break;
    k = token_len(p);
    if (k == 0)
      goto bad;
    ncs = realloc(cs, (n + 1) * sizeof *cs);
    if (ncs == NULL)
      goto oom;
    cs = ncs;
    c = &cs[n++];
    memset(c, 0, sizeof *c);
    c->scheme = lower_dup(p, k);
    if (c->scheme == NULL)
      goto oom;
    p += k;
    if (*p && *p != ' ' && *p != '\t' && *p != ',')
      goto bad;

    for (;;) {
      const char *save = p, *q, *v, *after;
      struct sn_auth_param *np;
      char *name, *value;

      while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
      if (*p == '\0')
        break;
      if (first && *save != ',') {
        size_t m = token68_len(p);

        after = ws(p + m);
        if (m > 0 && (*after == ',' || *after == '\0')
            && !(p[m - 1] != '=' && memchr(p, '=', m))) {
          c->token68 = dup_n(p, m);
          if (c->token68 == NULL)
            goto oom;
          p = after;
          break;                /* nothing else belongs to it */
        }
      }
      k = token_len(p);
      q = ws(p + k);
      if (k == 0 || *q != '=') {
        p = save;               /* the next challenge starts here */
        break;
      }
      v = ws(q + 1);
      if (*v == '"') {
        value = quoted(v, &after);
        if (value == NULL) {
          if (after == NULL)
            goto bad;
          goto oom;
        }
      }
      else {
        size_t m = token_len(v);

        value = dup_n(v, m);
        if (value == NULL)
          goto oom;
        after = v + m;
      }
      name = lower_dup(p, k);
      np = name ? realloc(c->params, (c->nparams + 1) * sizeof *np) : NULL;
      if (np == NULL) {
        free(name);
        free(value);
        goto oom;
      }
      c->params = np;
      np[c->nparams].name = name;
      np[c->nparams].value = value;
      c->nparams++;
      first = false;
      p = ws(after);
      if (*p && *p != ',' && !is_tchar(*p))
        goto bad;
    }
  }
  *out = cs;
  *nout = n;
  return 0;

bad:
  sn_auth_challenges_free(cs, n);
  return sn_set_error("malformed WWW-Authenticate header");
oom:
  sn_auth_challenges_free(cs, n);
  return sn_oom();
}

const char *
sn_auth_challenge_param(const struct sn_auth_challenge *c, const char *name)
{
  size_t i;

  for (i = 0; i < c->nparams; i++)
    if (strcasecmp(c->params[i].name, name) == 0)
      return c->params[i].value;
  return NULL;
}

/* ---- credentials ------------------------------------------------------- */

void
sn_auth_creds_clear(struct sn_auth_creds *c)
{
  if (c == NULL)
    return;
  wipe_free(c->username);
  wipe_free(c->password);
  wipe_free(c->identity_token);
  c->username = c->password = c->identity_token = NULL;
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
  kh = dup_n(k, n);
  if (kh == NULL)
    return false;
  m = strcasecmp(kh, host) == 0
    || (is_docker_hub(kh) && is_docker_hub(host));
  free(kh);
  return m;
}

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

/* Run docker-credential-NAME get.  1 found, 0 not found, -1 error. */
static int
run_helper(const char *name, const char *server, struct sn_auth_creds *c)
{
  char prog[128], *out = NULL;
  char *argv[3];
  int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, status = 0, ret = -1;
  posix_spawn_file_actions_t fa;
  size_t len = 0, cap = 0;
  pid_t pid;
  struct timespec start = now_mono();
  bool timed_out = false;

  if (!valid_helper_name(name))
    return sn_set_error("invalid credential helper name in docker config");
  snprintf(prog, sizeof prog, "docker-credential-%s", name);
  argv[0] = prog;
  argv[1] = (char *) "get";
  argv[2] = NULL;
  if (pipe2(in, O_CLOEXEC) == -1 || pipe2(outp, O_CLOEXEC) == -1) {
    sn_set_error("pipe: %s", strerror(errno));
    goto out;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  errno = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (errno != 0) {
    sn_set_error("cannot run credential helper %s: %s", prog,
                 strerror(errno));
    goto out;
  }
  close(in[0]);
  close(outp[1]);
  in[0] = outp[1] = -1;
  write_all_nosigpipe(in[1], server, strlen(server));
  write_all_nosigpipe(in[1], "\n", 1);
  close(in[1]);
  in[1] = -1;

  for (;;) {
    struct pollfd pfd = { .fd = outp[0], .events = POLLIN };
    struct timespec t = now_mono();
    long elapsed = (t.tv_sec - start.tv_sec) * 1000
      + (t.tv_nsec - start.tv_nsec) / 1000000;
    ssize_t r;
    int pr;

    if (elapsed >= HELPER_TIMEOUT_MS) {
      timed_out = true;
      break;
    }
    pr = poll(&pfd, 1, (int) (HELPER_TIMEOUT_MS - elapsed));
    if (pr == -1 && errno == EINTR)
      continue;
    if (pr <= 0) {
      timed_out = pr == 0;
      break;
    }
    if (len + 4096 + 1 > cap) {
      char *nb;

      if (cap >= HELPER_MAX_OUTPUT)
        break;
      cap = cap ? cap * 2 : 8192;
      nb = realloc(out, cap);
      if (nb == NULL) {
        if (out)
          explicit_bzero(out, len);
        free(out);
        out = NULL;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        sn_oom();
        goto out;
      }
      out = nb;
    }
    r = read(outp[0], out + len, cap - len - 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t) r;
  }
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
      char *dec = base64_decode(auth, &n), *colon;

      if (dec == NULL || (colon = memchr(dec, ':', n)) == NULL) {
        if (dec) {
          explicit_bzero(dec, n);
          free(dec);
        }
        return sn_set_error("%s: invalid \"auth\" entry for %s", path, key);
      }
      c->username = dup_n(dec, (size_t) (colon - dec));
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

/* ---- the authenticator ------------------------------------------------- */

enum scheme { SCHEME_NONE, SCHEME_BASIC, SCHEME_BEARER };

struct token {
  char *scope;
  char *header;             /* "Bearer …" */
  struct timespec expiry;   /* CLOCK_MONOTONIC */
};

struct sn_auth {
  pthread_mutex_t lock;
  struct sn_http *http;
  char *host, *origin, *auth_file;
  struct sn_auth_creds creds;
  bool explicit_creds, creds_loaded;
  enum scheme scheme;
  char *realm, *service;
  struct token toks[MAX_TOKENS];
  size_t ntoks;
};

struct sn_auth *
sn_auth_new(struct sn_http *http, const char *host, const char *origin,
            const char *username, const char *password,
            const char *auth_file)
{
  struct sn_auth *a = calloc(1, sizeof *a);

  if (a == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&a->lock, NULL);
  a->http = http;
  a->host = strdup(host);
  a->origin = strdup(origin);
  a->auth_file = auth_file ? strdup(auth_file) : NULL;
  if (a->host == NULL || a->origin == NULL || (auth_file && !a->auth_file))
    goto oom;
  if (username || password) {
    a->creds.username = strdup(username ? username : "");
    a->creds.password = strdup(password ? password : "");
    if (a->creds.username == NULL || a->creds.password == NULL)
      goto oom;
    a->explicit_creds = a->creds_loaded = true;
  }
  return a;

oom:
  sn_auth_free(a);
  sn_oom();
  return NULL;
}

static void
drop_token(struct token *t)
{
  free(t->scope);
  wipe_free(t->header);
  t->scope = t->header = NULL;
}

void
sn_auth_free(struct sn_auth *a)
{
  size_t i;

  if (a == NULL)
    return;
  for (i = 0; i < a->ntoks; i++)
    drop_token(&a->toks[i]);
  sn_auth_creds_clear(&a->creds);
  free(a->host);
  free(a->origin);
  free(a->auth_file);
  free(a->realm);
  free(a->service);
  pthread_mutex_destroy(&a->lock);
  free(a);
}

static int
load_creds(struct sn_auth *a)
{
  int r;

  if (a->creds_loaded)
    return 0;
  r = sn_auth_creds_lookup(a->auth_file, a->host, &a->creds);
  if (r == -1)
    return -1;
  a->creds_loaded = true;
  return 0;
}

static char *
basic_header(const struct sn_auth_creds *c)
{
  char *up, *b64, *h = NULL;

  if (asprintf(&up, "%s:%s", c->username, c->password) < 0)
    return NULL;
  b64 = sn_base64(up, strlen(up));
  wipe_free(up);
  if (b64 && asprintf(&h, "Basic %s", b64) < 0)
    h = NULL;
  wipe_free(b64);
  return h;
}

static struct token *
find_token(struct sn_auth *a, const char *scope)
{
  size_t i;

  for (i = 0; i < a->ntoks; i++)
    if (strcmp(a->toks[i].scope, scope) == 0)
      return &a->toks[i];
  return NULL;
}

static bool
expired(const struct token *t)
{
  struct timespec n = now_mono();

  return n.tv_sec > t->expiry.tv_sec
    || (n.tv_sec == t->expiry.tv_sec && n.tv_nsec >= t->expiry.tv_nsec);
}

/* May the token realm receive this registry's credentials?  Only on the
 * registry's own site (site.h), and over HTTPS unless it is the registry's
 * own origin or a loopback host. */
static bool
realm_may_get_creds(const struct sn_auth *a, const char *realm)
{
  char *h;
  bool ok;

  if (!sn_site_same(realm, a->origin))
    return false;
  if (strncasecmp(realm, "https://", 8) == 0)
    return true;
  if (sn_http_same_origin(realm, a->origin))
    return true;
  h = sn_http_url_host(realm);
  ok = h && sn_ref_is_loopback(h);
  free(h);
  return ok;
}

/* Append "&name=escaped(value)" to *s. */
static int
append_param(char **s, const char *name, const char *value)
{
  char *e = sn_http_escape(value), *n;
  int r;

  if (e == NULL)
    return sn_oom();
  r = asprintf(&n, "%s%s%s=%s", *s ? *s : "", *s && **s ? "&" : "", name, e);
  free(e);
  if (r < 0)
    return sn_oom();
  wipe_free(*s);
  *s = n;
  return 0;
}

/* Ask the realm for a token for the scopes; store it under key. */
static int
fetch_token(struct sn_auth *a, const char *key, const char *scope1,
            const char *scope2)
{
  struct sn_http_req q = { 0 };
  struct sn_http_resp r = { 0 };
  char *params = NULL, *url = NULL, *auth = NULL, *safe, *hdr = NULL;
  char *tok = NULL;
  const char *form_hdrs[] = {
    "Content-Type: application/x-www-form-urlencoded", NULL };
  int64_t expires = DEFAULT_EXPIRES;
  bool use_oauth = a->creds.identity_token != NULL;
  bool with_creds = use_oauth || a->creds.username != NULL;
  struct token *t;
  int ret = -1;

  safe = sn_http_redact(a->realm);
  if (safe == NULL)
    return sn_oom();
  if (with_creds && !realm_may_get_creds(a, a->realm)) {
    sn_set_error("%s: refusing to send credentials to the token realm %s "
                 "(%s)", a->host, safe,
                 sn_site_same(a->realm, a->origin)
                 ? "plain HTTP to another host"
                 : "not on the registry's site");
    goto out;
  }
  if ((a->service && append_param(&params, "service", a->service) == -1)
      || (scope1 && append_param(&params, "scope", scope1) == -1)
      || (scope2 && append_param(&params, "scope", scope2) == -1))
    goto out;
  if (use_oauth) {
    if (append_param(&params, "grant_type", "refresh_token") == -1
        || append_param(&params, "client_id", PACKAGE_NAME) == -1
        || append_param(&params, "refresh_token",
                        a->creds.identity_token) == -1)
      goto out;
    q.method = "POST";
    q.url = a->realm;
    q.headers = form_hdrs;
    q.body = (const uint8_t *) params;
    q.body_size = (int64_t) strlen(params);
  }
  else {
    if (a->creds.username && *a->creds.username
        && append_param(&params, "account", a->creds.username) == -1)
      goto out;
    if (asprintf(&url, "%s%s%s", a->realm,
                 strchr(a->realm, '?') ? "&" : "?", params ? params : "") < 0) {
      url = NULL;
      sn_oom();
      goto out;
    }
    q.url = url;
    if (a->creds.username) {
      auth = basic_header(&a->creds);
      if (auth == NULL) {
        sn_oom();
        goto out;
      }
      q.authorization = auth;
    }
  }
  q.max_body = TOKEN_MAX_BODY;
  if (sn_http_request(a->http, &q, &r) == -1) {
    sn_prefix_error("%s: token request: ", a->host);
    goto out;
  }
  if (r.status == 401 || r.status == 403) {
    sn_set_error("%s: authentication failed: the token server %s refused %s (HTTP %ld)", a->host,
                 safe, with_creds ? "the credentials" : "anonymous access",
                 r.status);
    goto out;
  }
  if (r.status != 200) {
    sn_set_error("%s: token server %s answered HTTP %ld", a->host, safe,
                 r.status);
    goto out;
  }
  tok = sn_auth_parse_token_response(r.body, r.body_len, &expires);
  if (tok == NULL) {
    sn_prefix_error("%s: token server %s: ", a->host, safe);
    goto out;
  }
  if (asprintf(&hdr, "Bearer %s", tok) < 0) {
    hdr = NULL;
    sn_oom();
    goto out;
  }
  t = find_token(a, key);
  if (t == NULL) {
    if (a->ntoks == MAX_TOKENS) {
      drop_token(&a->toks[0]);
      memmove(&a->toks[0], &a->toks[1], (MAX_TOKENS - 1) * sizeof a->toks[0]);
      a->ntoks--;
    }
    t = &a->toks[a->ntoks];
    t->scope = strdup(key);
    if (t->scope == NULL) {
      sn_oom();
      goto out;
    }
    t->header = NULL;
    a->ntoks++;
  }
  wipe_free(t->header);
  t->header = hdr;
  hdr = NULL;
  t->expiry = now_mono();
  /* Renew a little before the server's deadline. */
  t->expiry.tv_sec += (time_t) (expires > 20 ? expires - 10 : expires / 2);
  ret = 0;

out:
  wipe_free(tok);
  if (r.body)
    explicit_bzero(r.body, r.body_len);
  sn_http_resp_clear(&r);
  wipe_free(hdr);
  wipe_free(auth);
  wipe_free(params);
  free(url);
  free(safe);
  return ret;
}

int
sn_auth_header(struct sn_auth *a, const char *scope, char **hdr)
{
  struct token *t;
  int ret = 0;

  *hdr = NULL;
  pthread_mutex_lock(&a->lock);
  switch (a->scheme) {
  case SCHEME_NONE:
    break;
  case SCHEME_BASIC:
    if (a->creds.username) {
      *hdr = basic_header(&a->creds);
      if (*hdr == NULL)
        ret = sn_oom();
    }
    break;
  case SCHEME_BEARER:
    t = find_token(a, scope);
    if (t == NULL || expired(t)) {
      /* Renew proactively: the realm is known. */
      if (fetch_token(a, scope, scope, NULL) == -1) {
        ret = -1;
        break;
      }
      t = find_token(a, scope);
    }
    if (t && (*hdr = strdup(t->header)) == NULL)
      ret = sn_oom();
    break;
  }
  pthread_mutex_unlock(&a->lock);
  return ret;
}

int
sn_auth_challenge(struct sn_auth *a, const char *www_authenticate,
                  const char *scope, const char *failed)
{
  struct sn_auth_challenge *cs = NULL;
  const struct sn_auth_challenge *bearer = NULL, *basic = NULL;
  size_t n = 0, i;
  int ret = -1;

  if (sn_auth_parse_challenges(www_authenticate, &cs, &n) == -1)
    return sn_prefix_error("%s: ", a->host);
  for (i = 0; i < n; i++) {
    if (strcmp(cs[i].scheme, "bearer") == 0 && !bearer)
      bearer = &cs[i];
    else if (strcmp(cs[i].scheme, "basic") == 0 && !basic)
      basic = &cs[i];
  }

  pthread_mutex_lock(&a->lock);
  if (bearer) {
    const char *realm = sn_auth_challenge_param(bearer, "realm");
    const char *service = sn_auth_challenge_param(bearer, "service");
    const char *cscope = sn_auth_challenge_param(bearer, "scope");
    struct token *t = find_token(a, scope);
    char *nr, *ns = NULL;

    /* Another thread already renewed what failed: just retry. */
    if (failed && t && !expired(t) && strcmp(t->header, failed) != 0) {
      ret = 0;
      goto out;
    }
    if (failed && strncmp(failed, "Bearer ", 7) == 0 && t
        && strcmp(t->header, failed) == 0 && a->creds_loaded
        && a->creds.username == NULL && a->creds.identity_token == NULL
        && (cscope == NULL || strcmp(cscope, scope) == 0)) {
      sn_set_error("%s: authentication required (no credentials for %s)",
                   a->host, a->host);
      goto out;
    }
    if (realm == NULL || (strncasecmp(realm, "https://", 8) != 0
                          && strncasecmp(realm, "http://", 7) != 0)) {
      sn_set_error("%s: Bearer challenge without a valid realm", a->host);
      goto out;
    }
    nr = strdup(realm);
    if (nr == NULL || (service && (ns = strdup(service)) == NULL)) {
      free(nr);
      sn_oom();
      goto out;
    }
    free(a->realm);
    free(a->service);
    a->realm = nr;
    a->service = ns;
    a->scheme = SCHEME_BEARER;
    if (load_creds(a) == -1)
      goto out;
    ret = fetch_token(a, scope, scope,
                      cscope && strcmp(cscope, scope) != 0 ? cscope : NULL);
  }
  else if (basic) {
    if (load_creds(a) == -1)
      goto out;
    if (a->creds.username == NULL) {
      sn_set_error("%s: authentication required (no credentials for %s)",
                   a->host, a->host);
      goto out;
    }
    if (failed && strncmp(failed, "Basic ", 6) == 0) {
      sn_set_error("%s: authentication failed: the registry refused the credentials (HTTP 401)",
                   a->host);
      goto out;
    }
    a->scheme = SCHEME_BASIC;
    ret = 0;
  }
  else
    sn_set_error("%s: authentication required, but no Basic or Bearer "
                 "challenge offered", a->host);

out:
  pthread_mutex_unlock(&a->lock);
  sn_auth_challenges_free(cs, n);
  return ret;
}
