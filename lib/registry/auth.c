/* soci-nbd: registry authentication (see auth.h) — the Basic and Bearer
 * token flows (anonymous, Basic credentials, OAuth2 refresh token), a
 * per-scope token cache with expiry, and the small helpers shared with
 * auth-challenge.c (challenge parsing) and auth-creds.c (docker
 * config.json and credential helpers) through auth-int.h.
 */
#include <config.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "registry/auth.h"
#include "registry/auth-int.h"
#include "util/base64.h"
#include "util/err.h"
#include "registry/ref.h"
#include "registry/site.h"

#define TOKEN_MAX_BODY ((size_t) 1 << 20)
#define MAX_TOKENS 32

/* ---- small helpers ----------------------------------------------------- */

/* Wipe s (NUL-terminated) and free it; NULL is fine. */
void
sn_auth_wipe_free(char *s)
{
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

/* A malloc'd NUL-terminated copy of the n bytes at s; NULL on OOM. */
char *
sn_auth_dup_n(const char *s, size_t n)
{
  char *d = malloc(n + 1);

  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* sn_auth_dup_n, lower-cased. */
char *
sn_auth_lower_dup(const char *s, size_t n)
{
  char *d = sn_auth_dup_n(s, n);
  size_t i;

  if (d)
    for (i = 0; i < n; i++)
      d[i] = (char) tolower((unsigned char) d[i]);
  return d;
}

/* The CLOCK_MONOTONIC time. */
struct timespec
sn_auth_now_mono(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts;
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

/* A new authenticator for one endpoint (see auth.h); explicit
 * credentials are copied.  NULL on OOM. */
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
  sn_auth_wipe_free(t->header);
  t->scope = t->header = NULL;
}

/* Free a, wiping its tokens and credentials; NULL is fine. */
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

/* Look up the docker config credentials once, at the first need.
 * 0, or -1 on error. */
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

/* "Basic base64(user:password)", malloc'd; NULL on OOM.  The plain
 * copies are wiped. */
static char *
basic_header(const struct sn_auth_creds *c)
{
  char *up, *b64, *h = NULL;

  if (asprintf(&up, "%s:%s", c->username, c->password) < 0)
    return NULL;
  b64 = sn_base64(up, strlen(up));
  sn_auth_wipe_free(up);
  if (b64 && asprintf(&h, "Basic %s", b64) < 0)
    h = NULL;
  sn_auth_wipe_free(b64);
  return h;
}

/* The cached token for scope, or NULL. */
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
  struct timespec n = sn_auth_now_mono();

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
  sn_auth_wipe_free(*s);
  *s = n;
  return 0;
}

/* Fill q for the token request: service and scopes, then either an OAuth2
 * refresh-token POST (form in *params) or a GET of *url with the account
 * and Basic credentials in *auth.  0, or -1 with the error set; the
 * caller frees *params, *url and *auth on every path. */
static int
build_token_request(struct sn_auth *a, const char *scope1,
                    const char *scope2, bool use_oauth,
                    const char *const *form_hdrs, struct sn_http_req *q,
                    char **params, char **url, char **auth)
{
  if ((a->service && append_param(params, "service", a->service) == -1)
      || (scope1 && append_param(params, "scope", scope1) == -1)
      || (scope2 && append_param(params, "scope", scope2) == -1))
    return -1;
  if (use_oauth) {
    if (append_param(params, "grant_type", "refresh_token") == -1
        || append_param(params, "client_id", PACKAGE_NAME) == -1
        || append_param(params, "refresh_token",
                        a->creds.identity_token) == -1)
      return -1;
    q->method = "POST";
    q->url = a->realm;
    q->headers = form_hdrs;
    q->body = (const uint8_t *) *params;
    q->body_size = (int64_t) strlen(*params);
  }
  else {
    if (a->creds.username && *a->creds.username
        && append_param(params, "account", a->creds.username) == -1)
      return -1;
    if (asprintf(url, "%s%s%s", a->realm,
                 strchr(a->realm, '?') ? "&" : "?",
                 *params ? *params : "") < 0) {
      *url = NULL;
      return sn_oom();
    }
    q->url = *url;
    if (a->creds.username) {
      *auth = basic_header(&a->creds);
      if (*auth == NULL)
        return sn_oom();
      q->authorization = *auth;
    }
  }
  return 0;
}

/* Cache the Bearer header *hdr under key (evicting the oldest token when
 * full), expiring a little before expires seconds.  0 (*hdr taken and
 * set to NULL), or -1 on OOM (*hdr left to the caller). */
static int
store_token(struct sn_auth *a, const char *key, char **hdr, int64_t expires)
{
  struct token *t = find_token(a, key);

  if (t == NULL) {
    if (a->ntoks == MAX_TOKENS) {
      drop_token(&a->toks[0]);
      memmove(&a->toks[0], &a->toks[1], (MAX_TOKENS - 1) * sizeof a->toks[0]);
      a->ntoks--;
    }
    t = &a->toks[a->ntoks];
    t->scope = strdup(key);
    if (t->scope == NULL)
      return sn_oom();
    t->header = NULL;
    a->ntoks++;
  }
  sn_auth_wipe_free(t->header);
  t->header = *hdr;
  *hdr = NULL;
  t->expiry = sn_auth_now_mono();
  /* Renew a little before the server's deadline. */
  t->expiry.tv_sec += (time_t) (expires > 20 ? expires - 10 : expires / 2);
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
  if (build_token_request(a, scope1, scope2, use_oauth, form_hdrs, &q,
                          &params, &url, &auth) == -1)
    goto out;
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
  if (store_token(a, key, &hdr, expires) == -1)
    goto out;
  ret = 0;

out:
  sn_auth_wipe_free(tok);
  if (r.body)
    explicit_bzero(r.body, r.body_len);
  sn_http_resp_clear(&r);
  sn_auth_wipe_free(hdr);
  sn_auth_wipe_free(auth);
  sn_auth_wipe_free(params);
  free(url);
  free(safe);
  return ret;
}

/* The Authorization value for scope under the current scheme, renewing
 * an expired token (see auth.h).  0 or -1. */
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

/* Handle a 401's challenges: Bearer (learn the realm, fetch a token) is
 * preferred to Basic.  0 means retry, -1 give up (see auth.h). */
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
