/* soci-nbd: OCI distribution client (registry.h) — endpoints (mirrors then
 * upstream), authentication retries, manifests with digest checks and
 * platform selection, whole and ranged blob reads with redirect caching,
 * pushes, and referrers with the fallback tag schema.  oci-layout:
 * references are delegated to ocilayout.c.
 */
#include <config.h>

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "registry/auth.h"
#include "util/digest.h"
#include "util/err.h"
#include "registry/http.h"
#include "registry/ocilayout.h"
#include "registry/registry.h"

#define SMALL_BLOB ((size_t) 1 << 20)  /* a 200 to a Range may be sliced */
#define REDIRECT_CACHE 64
#define MAX_RESUMES 3
#define ACCEPT_MANIFESTS "Accept: " SN_MT_OCI_MANIFEST ", " SN_MT_OCI_INDEX \
  ", " SN_MT_DOCKER_MANIFEST ", " SN_MT_DOCKER_LIST

struct endpoint {
  char *base;                 /* API root, ".../v2" */
  char *plain_base;           /* while probing: the http:// root */
  bool probe;                 /* loopback without a scheme: HTTPS or HTTP? */
  char *name;                 /* for messages and credentials */
  bool mirror;
  struct sn_auth *auth;
};

/* Where a blob's range reads go: the endpoint that served it, and the URL
 * it redirected to (NULL: the endpoint's own URL). */
struct blob_loc {
  char *digest;
  size_t ep;
  char *url;
  bool send_auth;
  uint64_t used;
};

struct sn_registry {
  struct sn_layout *layout;   /* oci-layout: references */
  struct sn_http *http;
  char *what;                 /* "registry/repository" for messages */
  char *repo;
  char *ns;                   /* "ns=<registry>" for mirror requests */
  char *scope_pull, *scope_push;
  struct endpoint *eps;       /* mirrors in order, then the upstream */
  size_t neps;
  void (*debug)(void *opaque, const char *msg);
  void *debug_opaque;
  pthread_mutex_t probe_lock; /* guards endpoint probing */
  pthread_mutex_t lock;       /* guards locs and tick */
  struct blob_loc locs[REDIRECT_CACHE];
  uint64_t tick;
};

/* ---- small helpers ----------------------------------------------------- */

static void
wipe_free(char *s)
{
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

static void
debugf(struct sn_registry *r, const char *fmt, ...) SN_PRINTF(2, 3);

static void
debugf(struct sn_registry *r, const char *fmt, ...)
{
  va_list ap;
  char *s;

  if (r->debug == NULL)
    return;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) >= 0) {
    r->debug(r->debug_opaque, s);
    free(s);
  }
  va_end(ap);
}

static struct endpoint *
upstream(struct sn_registry *r)
{
  return &r->eps[r->neps - 1];
}

static bool
in_list(const char *const *list, const char *s)
{
  for (; list && *list; list++)
    if (strcasecmp(*list, s) == 0)
      return true;
  return false;
}

static int
check_digest(const char *digest)
{
  uint8_t d[SN_SHA256_LEN];

  if (digest == NULL || sn_digest_parse(digest, strlen(digest), d) == -1)
    return sn_set_error("invalid digest \"%.80s\" (want sha256:<64 hex>)",
                        digest ? digest : "(null)");
  return 0;
}

static bool
is_digest(const char *s)
{
  uint8_t d[SN_SHA256_LEN];

  return sn_digest_parse(s, strlen(s), d) == 0;
}

/* A tag or digest that is safe in a URL path. */
static int
check_reference(const char *s)
{
  size_t i, n;

  if (s == NULL || *s == '\0')
    return sn_set_error("empty tag");
  if (is_digest(s))
    return 0;
  n = strlen(s);
  if (n > 128)
    return sn_set_error("invalid tag \"%.40s…\"", s);
  for (i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
          || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'
          || (i > 0 && (s[i] == '.' || s[i] == '-'))))
      return sn_set_error("invalid tag or digest \"%.80s\"", s);
  return 0;
}

static void
sha256_string(const uint8_t *data, size_t len, char out[SN_DIGEST_STRLEN + 1])
{
  uint8_t d[SN_SHA256_LEN];

  sn_sha256(data, len, d);
  sn_digest_format(d, out);
}

/* A loopback registry named without a scheme speaks HTTPS or plain HTTP:
 * Docker tries HTTPS first and falls back to HTTP, and so do we, once,
 * at the first request.  HTTPS stays when the TLS handshake works; the
 * probe does not check the certificate (loading the CA bundle cost ~25 ms
 * of every plain-HTTP run), the real requests that follow do, so a
 * certificate problem is still an error the user sees, not a downgrade. */
/* Did an HTTPS probe fail because nothing speaks TLS on that port?  Only
 * then fall back to plain HTTP; certificate problems and our own TLS
 * configuration errors (a missing cacert file) must surface instead. */
static bool
no_tls_here(CURLcode c)
{
  return c == CURLE_SSL_CONNECT_ERROR || c == CURLE_GOT_NOTHING ||
         c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR ||
         c == CURLE_COULDNT_CONNECT;
}

static void
ep_ready(struct sn_registry *r, struct endpoint *ep)
{
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  char *url;

  if (!__atomic_load_n(&ep->probe, __ATOMIC_ACQUIRE))
    return;
  pthread_mutex_lock(&r->probe_lock);
  if (ep->probe) {
    if (asprintf(&url, "%s/", ep->base) >= 0) {
      q.url = url;
      q.no_retry = true;
      q.tls_probe = true;
      q.max_body = 65536;
      if (sn_http_request(r->http, &q, &resp) == -1
          && no_tls_here(resp.curl_code)) {
        debugf(r, "%s: no HTTPS (%s); using plain HTTP", ep->name,
               sn_error());
        free(ep->base);
        ep->base = ep->plain_base;
        ep->plain_base = NULL;
      }
      sn_http_resp_clear(&resp);
      free(url);
    }
    __atomic_store_n(&ep->probe, false, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&r->probe_lock);
}

/* "base/repo/kind/ref[?query]" for endpoint ep. */
static char *
api_url(struct sn_registry *r, struct endpoint *ep, const char *kind,
        const char *ref, const char *query)
{
  char *u;
  const char *ns = ep->mirror ? r->ns : NULL;
  bool q = (query && *query) || ns;

  ep_ready(r, ep);
  if (asprintf(&u, "%s/%s/%s/%s%s%s%s%s", ep->base, r->repo, kind, ref,
               q ? "?" : "", query && *query ? query : "",
               query && *query && ns ? "&" : "", ns ? ns : "") < 0) {
    sn_oom();
    return NULL;
  }
  return u;
}

/* Describe a failed response: "HTTP 404 (MANIFEST_UNKNOWN: manifest
 * unknown)".  The registry's error body is reduced to printable ASCII. */
static int
status_error(struct sn_registry *r, const struct endpoint *ep,
             const char *what, const struct sn_http_resp *resp)
{
  char detail[256] = "";
  json_t *j = NULL, *e;

  if (resp->body && resp->body_len)
    j = json_loadb((const char *) resp->body, resp->body_len, 0, NULL);
  e = j ? json_array_get(json_object_get(j, "errors"), 0) : NULL;
  if (e) {
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    size_t i;

    snprintf(detail, sizeof detail, " (%s%s%s)", code ? code : "",
             code && msg ? ": " : "", msg ? msg : "");
    for (i = 0; detail[i]; i++)
      if ((unsigned char) detail[i] < 0x20 || (unsigned char) detail[i] > 0x7e)
        detail[i] = '?';
  }
  json_decref(j);
  return sn_set_error("%s%s%s: %s: HTTP %ld%s%s", r->what,
                      ep->mirror ? " via mirror " : "",
                      ep->mirror ? ep->name : "", what, resp->status,
                      detail, resp->status == 401
                      ? ": authentication failed (check the credentials)"
                      : resp->status == 403 ? ": access denied" : "");
}

/* One request to an endpoint: with its authorization for the scope, and
 * one more try after a 401 that produced new authorization. */
static int
ep_request(struct sn_registry *r, struct endpoint *ep, bool push,
           bool use_auth, struct sn_http_req *q, struct sn_http_resp *resp)
{
  const char *scope = push ? r->scope_push : r->scope_pull;
  int tries;

  for (tries = 0;; tries++) {
    char *hdr = NULL;
    int rc;

    if (use_auth && sn_auth_header(ep->auth, scope, &hdr) == -1)
      return -1;
    q->authorization = hdr;
    sn_http_resp_clear(resp);
    rc = sn_http_request(r->http, q, resp);
    q->authorization = NULL;
    if (rc == 0 && resp->status == 401 && use_auth && tries == 0) {
      rc = sn_auth_challenge(ep->auth, resp->www_authenticate, scope, hdr);
      wipe_free(hdr);
      if (rc == -1)
        return -1;
      continue;
    }
    wipe_free(hdr);
    return rc;
  }
}

/* ---- open / close ------------------------------------------------------ */

static int
add_endpoint(struct sn_registry *r, const struct sn_registry_opts *o,
             const char *spec, const char *name, bool mirror,
             const char *user, const char *pass)
{
  struct endpoint *ep = &r->eps[r->neps++]; /* freed by close if half-made */
  char *host;
  bool plain;

  /* A bare host: plain HTTP for named hosts; HTTPS or HTTP (probed) for
   * loopback hosts. */
  host = strstr(spec, "://") ? NULL : strdup(spec);
  if (host) {
    char *slash = strchr(host, '/');

    if (slash)
      *slash = '\0';
  }
  plain = host && (in_list(o->plain_http_hosts, host)
                   || (name && in_list(o->plain_http_hosts, name)));
  ep->probe = host && !plain && sn_ref_is_loopback(host);
  free(host);
  ep->base = sn_http_api_base(spec, plain);
  if (ep->probe && (ep->plain_base = sn_http_api_base(spec, true)) == NULL)
    return sn_oom();
  if (ep->base == NULL)
    return sn_set_error("invalid %s \"%.200s\"", mirror ? "mirror" : "registry",
                        spec);
  if (mirror) {
    ep->name = sn_http_url_host(ep->base);
    if (ep->name == NULL)
      return sn_set_error("invalid mirror \"%.200s\"", spec);
  }
  else if ((ep->name = strdup(name)) == NULL)
    return sn_oom();
  ep->mirror = mirror;
  ep->auth = sn_auth_new(r->http, ep->name, ep->base, user, pass,
                         o->auth_file);
  return ep->auth ? 0 : -1;
}

struct sn_registry *
sn_registry_open(const struct sn_ref *ref, const struct sn_registry_opts *o)
{
  static const struct sn_registry_opts no_opts;
  struct sn_http_opts ho = { 0 };
  struct sn_registry *r;
  size_t nm = 0, i;
  char *ns = NULL;

  if (o == NULL)
    o = &no_opts;
  if ((o->username == NULL) != (o->password == NULL)) {
    sn_set_error("a username needs a password and a password a username");
    return NULL;
  }
  r = calloc(1, sizeof *r);
  if (r == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_mutex_init(&r->probe_lock, NULL);
  r->debug = o->debug;
  r->debug_opaque = o->debug_opaque;

  if (ref->kind == SN_REF_OCI_LAYOUT) {
    r->what = strdup(ref->layout_dir);
    if (r->what == NULL) {
      sn_oom();
      goto fail;
    }
    r->layout = sn_layout_open(ref->layout_dir,
                               ref->tag_defaulted ? ref->tag : NULL);
    if (r->layout == NULL)
      goto fail;
    return r;
  }

  if (ref->registry == NULL || ref->repository == NULL) {
    sn_set_error("registry reference without a registry or repository");
    goto fail;
  }
  ho.cacert = o->cacert;
  ho.insecure = o->insecure;
  ho.timeout_ms = o->timeout_ms;
  ho.max_retries = o->max_retries;
  ho.user_agent = o->user_agent;
  ho.debug = o->debug;
  ho.debug_opaque = o->debug_opaque;
  r->http = sn_http_new(&ho);
  if (r->http == NULL)
    goto fail;
  if (asprintf(&r->what, "%s/%s", ref->registry, ref->repository) < 0
      || asprintf(&r->scope_pull, "repository:%s:pull", ref->repository) < 0
      || asprintf(&r->scope_push, "repository:%s:pull,push",
                  ref->repository) < 0
      || (r->repo = strdup(ref->repository)) == NULL
      || (ns = sn_http_escape(ref->registry)) == NULL
      || asprintf(&r->ns, "ns=%s", ns) < 0) {
    r->ns = NULL;
    sn_oom();
    goto fail;
  }
  free(ns);
  ns = NULL;
  for (; o->mirrors && o->mirrors[nm]; nm++)
    ;
  r->eps = calloc(nm + 1, sizeof *r->eps);
  if (r->eps == NULL) {
    sn_oom();
    goto fail;
  }
  for (i = 0; i < nm; i++)
    if (add_endpoint(r, o, o->mirrors[i], NULL, true, NULL, NULL) == -1)
      goto fail;
  if (add_endpoint(r, o, sn_ref_api_host(ref), ref->registry, false,
                   o->username, o->password) == -1)
    goto fail;
  return r;

fail:
  free(ns);
  sn_prefix_error("%s: ", ref->kind == SN_REF_OCI_LAYOUT ? "oci-layout"
                  : ref->registry ? ref->registry : "registry");
  sn_registry_close(r);
  return NULL;
}

void
sn_registry_close(struct sn_registry *r)
{
  size_t i;

  if (r == NULL)
    return;
  sn_layout_close(r->layout);
  for (i = 0; i < r->neps; i++) {
    free(r->eps[i].base);
    free(r->eps[i].plain_base);
    free(r->eps[i].name);
    sn_auth_free(r->eps[i].auth);
  }
  free(r->eps);
  for (i = 0; i < REDIRECT_CACHE; i++) {
    free(r->locs[i].digest);
    free(r->locs[i].url);
  }
  sn_http_free(r->http);
  free(r->what);
  free(r->repo);
  free(r->ns);
  free(r->scope_pull);
  free(r->scope_push);
  pthread_mutex_destroy(&r->lock);
  pthread_mutex_destroy(&r->probe_lock);
  free(r);
}

/* ---- manifests --------------------------------------------------------- */

static struct sn_manifest *
manifest_on(struct sn_registry *r, struct endpoint *ep, const char *ref)
{
  static const char *const hdrs[] = { ACCEPT_MANIFESTS, NULL };
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  struct sn_manifest *m = NULL;
  char computed[SN_DIGEST_STRLEN + 1], what[200];
  char *url;

  snprintf(what, sizeof what, "manifest %s", ref);
  url = api_url(r, ep, "manifests", ref, NULL);
  if (url == NULL)
    return NULL;
  q.url = url;
  q.headers = hdrs;
  q.max_body = SN_MAX_DOCUMENT;
  if (ep_request(r, ep, false, true, &q, &resp) == -1) {
    if (strstr(sn_error(), "response larger than"))
      sn_set_error("%s: %s is larger than %d bytes (4 MiB)", r->what, what,
                   SN_MAX_DOCUMENT);
    goto out;
  }
  if (resp.status != 200) {
    status_error(r, ep, what, &resp);
    goto out;
  }
  sha256_string(resp.body, resp.body_len, computed);
  if (is_digest(ref) && strcmp(computed, ref) != 0) {
    sn_set_error("%s: %s: content has digest %s", r->what, what, computed);
    goto out;
  }
  if (resp.docker_content_digest
      && strncmp(resp.docker_content_digest, "sha256:", 7) == 0
      && strcmp(resp.docker_content_digest, computed) != 0) {
    sn_set_error("%s: %s: Docker-Content-Digest %.80s does not match the "
                 "content (%s)", r->what, what, resp.docker_content_digest,
                 computed);
    goto out;
  }
  m = sn_manifest_parse(resp.body, resp.body_len, resp.content_type);
  if (m == NULL)
    sn_prefix_error("%s: %s: ", r->what, what);
out:
  sn_http_resp_clear(&resp);
  free(url);
  return m;
}

struct sn_manifest *
sn_registry_get_manifest(struct sn_registry *r, const char *tag_or_digest)
{
  size_t i;

  if (check_reference(tag_or_digest) == -1)
    return NULL;
  if (r->layout)
    return sn_layout_get_manifest(r->layout, tag_or_digest);
  for (i = 0; i < r->neps; i++) {
    struct sn_manifest *m = manifest_on(r, &r->eps[i], tag_or_digest);

    if (m)
      return m;
    if (r->eps[i].mirror)
      debugf(r, "mirror %s: %s; trying the next endpoint", r->eps[i].name,
             sn_error());
  }
  return NULL;
}

struct sn_manifest *
sn_registry_resolve(struct sn_registry *r, const char *tag_or_digest,
                    const struct sn_platform *want,
                    struct sn_manifest **index)
{
  struct sn_manifest *top, *m;
  struct sn_platform host = { 0 };
  const struct sn_descriptor *d;

  if (index)
    *index = NULL;
  top = sn_registry_get_manifest(r, tag_or_digest);
  if (top == NULL)
    return NULL;
  if (!top->is_index)
    return top;
  if (want == NULL) {
    if (sn_platform_host(&host) == -1) {
      sn_manifest_free(top);
      return NULL;
    }
    want = &host;
  }
  d = sn_manifest_select(top, want);
  if (d == NULL) {
    sn_prefix_error("%s: %s: ", r->what, tag_or_digest);
    goto fail;
  }
  m = sn_registry_get_manifest(r, d->digest);
  if (m == NULL)
    goto fail;
  if ((int64_t) m->raw_len != d->size) {
    sn_set_error("%s: manifest %s: %zu bytes, but the index says %" PRId64,
                 r->what, d->digest, m->raw_len, d->size);
    sn_manifest_free(m);
    goto fail;
  }
  if (m->is_index) {
    sn_set_error("%s: manifest %s for the platform is itself an index",
                 r->what, d->digest);
    sn_manifest_free(m);
    goto fail;
  }
  sn_platform_clear(&host);
  if (index)
    *index = top;
  else
    sn_manifest_free(top);
  return m;

fail:
  sn_platform_clear(&host);
  sn_manifest_free(top);
  return NULL;
}

/* ---- whole blobs ------------------------------------------------------- */

int
sn_registry_get_blob_mem(struct sn_registry *r, const char *digest,
                         size_t max, uint8_t **buf, size_t *len)
{
  char computed[SN_DIGEST_STRLEN + 1], what[120];
  size_t i;

  *buf = NULL;
  *len = 0;
  if (check_digest(digest) == -1)
    return -1;
  if (r->layout)
    return sn_layout_get_blob_mem(r->layout, digest, max, buf, len);
  snprintf(what, sizeof what, "blob %s", digest);
  for (i = 0; i < r->neps; i++) {
    struct endpoint *ep = &r->eps[i];
    struct sn_http_req q = { 0 };
    struct sn_http_resp resp = { 0 };
    char *url = api_url(r, ep, "blobs", digest, NULL);
    int rc = -1;

    if (url == NULL)
      return -1;
    q.url = url;
    q.max_body = max ? max : 1;
    if (ep_request(r, ep, false, true, &q, &resp) == -1) {
      if (strstr(sn_error(), "response larger than"))
        sn_set_error("%s: %s is larger than %zu bytes", r->what, what, max);
    }
    else if (resp.status != 200)
      status_error(r, ep, what, &resp);
    else {
      sha256_string(resp.body, resp.body_len, computed);
      if (strcmp(computed, digest) != 0)
        sn_set_error("%s: %s: content has digest %s", r->what, what,
                     computed);
      else {
        *buf = resp.body;
        *len = resp.body_len;
        resp.body = NULL;
        rc = 0;
      }
    }
    sn_http_resp_clear(&resp);
    free(url);
    if (rc == 0)
      return 0;
    if (ep->mirror)
      debugf(r, "mirror %s: %s; trying the next endpoint", ep->name,
             sn_error());
  }
  return -1;
}

struct stream {
  struct sn_sha256 h;
  sn_sink_fn sink;
  void *opaque;
  struct sn_http_resp *resp;
  int64_t delivered;          /* bytes given to the caller so far */
  int64_t pos;                /* offset of the next byte of this response */
  int64_t size;               /* the descriptor's size, or -1 */
  bool started, sink_failed, too_long;
};

static int
stream_sink(void *opaque, long status, const uint8_t *data, size_t n)
{
  struct stream *s = opaque;

  if (!s->started) {
    s->started = true;
    s->pos = 0;
    if (status == 206) {
      int64_t a, b, t;

      if (sn_http_parse_content_range(s->resp->content_range, &a, &b, &t)
          == -1 || a > s->delivered)
        return sn_set_error("resumed download: bad Content-Range");
      s->pos = a;
    }
    else if (status != 200)
      return sn_set_error("unexpected HTTP %ld", status);
  }
  if (s->pos + (int64_t) n <= s->delivered) {
    s->pos += (int64_t) n;
    return 0;
  }
  if (s->pos < s->delivered) {
    size_t skip = (size_t) (s->delivered - s->pos);

    data += skip;
    n -= skip;
    s->pos += (int64_t) skip;
  }
  if (s->size >= 0 && (int64_t) n > s->size - s->delivered) {
    s->too_long = true;       /* not a transport fault: never retried */
    s->sink_failed = true;
    return sn_set_error("more than the %" PRId64 " bytes of its descriptor",
                        s->size);
  }
  sn_sha256_update(&s->h, data, n);
  if (s->sink(s->opaque, data, n) == -1) {
    s->sink_failed = true;
    return -1;
  }
  s->delivered += (int64_t) n;
  s->pos += (int64_t) n;
  return 0;
}

int
sn_registry_get_blob(struct sn_registry *r, const char *digest,
                     int64_t size, sn_sink_fn sink, void *opaque)
{
  struct stream s = { 0 };
  char what[120];
  size_t i;
  int rc = -1;

  if (check_digest(digest) == -1)
    return -1;
  if (r->layout)
    return sn_layout_get_blob(r->layout, digest, size, sink, opaque);
  if (sn_sha256_init(&s.h) == -1)
    return -1;
  s.size = size;
  s.sink = sink;
  s.opaque = opaque;
  snprintf(what, sizeof what, "blob %s", digest);
  for (i = 0; i < r->neps && rc == -1; i++) {
    struct endpoint *ep = &r->eps[i];
    char *url = api_url(r, ep, "blobs", digest, NULL);
    int resumes;

    if (url == NULL)
      break;
    for (resumes = 0; resumes <= MAX_RESUMES; resumes++) {
      struct sn_http_req q = { 0 };
      struct sn_http_resp resp = { 0 };
      char range[64];
      const char *hdrs[] = { range, NULL };
      int64_t before = s.delivered;

      snprintf(range, sizeof range, "Range: bytes=%" PRId64 "-", s.delivered);
      q.url = url;
      q.headers = s.delivered > 0 ? hdrs : NULL;
      q.sink = stream_sink;
      q.sink_opaque = &s;
      q.expect_size = size >= 0 ? size - s.delivered : -1;
      s.resp = &resp;
      s.started = false;
      if (ep_request(r, ep, false, true, &q, &resp) == 0) {
        if (resp.status == 200 || resp.status == 206) {
          uint8_t d[SN_SHA256_LEN];
          char got[SN_DIGEST_STRLEN + 1];

          sn_sha256_final(&s.h, d);
          sn_digest_format(d, got);
          if (size >= 0 && s.delivered != size)
            sn_set_error("%s: %s: %" PRId64 " bytes, its descriptor says %"
                         PRId64, r->what, what, s.delivered, size);
          else if (strcmp(got, digest) != 0)
            sn_set_error("%s: %s: content has digest %s", r->what, what, got);
          else
            rc = 0;
          sn_http_resp_clear(&resp);
          goto done;           /* the hash is final: no more tries */
        }
        status_error(r, ep, what, &resp);
      }
      sn_http_resp_clear(&resp);
      if (s.sink_failed || s.delivered == before)
        break;                  /* no progress: next endpoint */
      debugf(r, "%s: %s; resuming at byte %" PRId64, what, sn_error(),
             s.delivered);
    }
    free(url);
    url = NULL;
    if (s.sink_failed)
      break;
    if (ep->mirror)
      debugf(r, "mirror %s: %s; trying the next endpoint", ep->name,
             sn_error());
    continue;
done:
    free(url);
    break;
  }
  sn_sha256_free(&s.h);
  if (rc == -1 && s.too_long)
    sn_prefix_error("%s: %s: ", r->what, what);
  return rc;
}

/* ---- ranges ------------------------------------------------------------ */

struct range {
  uint8_t *buf;
  size_t len;
  int64_t off;
  size_t got;                 /* 206: bytes stored; 200: bytes seen */
  struct sn_sha256 h;         /* 200: the whole body, verified */
  bool hashing;
};

static int
range_sink(void *opaque, long status, const uint8_t *data, size_t n)
{
  struct range *g = opaque;

  if (status == 0) {          /* a retry: start over */
    g->got = 0;
    if (g->hashing)
      sn_sha256_free(&g->h);
    g->hashing = false;
    return 0;
  }
  if (status == 206) {
    if (n > g->len - g->got)
      return sn_set_error("more bytes than the range asked for");
    memcpy(g->buf + g->got, data, n);
    g->got += n;
    return 0;
  }
  if (status != 200)
    return sn_set_error("unexpected HTTP %ld", status);
  /* The registry ignored Range: slice a small blob, refuse a big one. */
  if (n > SMALL_BLOB - g->got)
    return sn_set_error("the server ignored the Range header and sent the "
                        "whole blob, which is larger than %zu bytes",
                        SMALL_BLOB);
  if (!g->hashing) {
    if (sn_sha256_init(&g->h) == -1)
      return -1;
    g->hashing = true;
  }
  sn_sha256_update(&g->h, data, n);
  {
    int64_t a = (int64_t) g->got, b = a + (int64_t) n;
    int64_t lo = a > g->off ? a : g->off;
    int64_t hi = b < g->off + (int64_t) g->len ? b : g->off + (int64_t) g->len;

    if (lo < hi)
      memcpy(g->buf + (lo - g->off), data + (lo - a), (size_t) (hi - lo));
  }
  g->got += n;
  return 0;
}

/* One range request to url; 0 on success, else -1 and *status (0 for a
 * transport error). */
static int
range_on(struct sn_registry *r, struct endpoint *ep, const char *url,
         bool use_auth, const char *digest, void *buf, size_t len,
         int64_t off, struct sn_http_resp *resp)
{
  struct sn_http_req q = { 0 };
  struct range g = { .buf = buf, .len = len, .off = off };
  char hdr[80], what[160];
  const char *hdrs[] = { hdr, NULL };
  int64_t a, b, t;
  int rc = -1;

  snprintf(hdr, sizeof hdr, "Range: bytes=%" PRId64 "-%" PRId64, off,
           off + (int64_t) len - 1);
  snprintf(what, sizeof what, "blob %s bytes %" PRId64 "-%" PRId64, digest,
           off, off + (int64_t) len - 1);
  q.url = url;
  q.headers = hdrs;
  q.sink = range_sink;
  q.sink_opaque = &g;
  q.sink_restartable = true;
  if (use_auth) {
    if (ep_request(r, ep, false, true, &q, resp) == -1)
      goto out;
  }
  else {
    sn_http_resp_clear(resp);
    if (sn_http_request(r->http, &q, resp) == -1)
      goto out;
  }
  if (resp->status == 206) {
    if (sn_http_parse_content_range(resp->content_range, &a, &b, &t) == -1)
      sn_set_error("%s: %s: 206 without a valid Content-Range", r->what,
                   what);
    else if (a == off && b < off + (int64_t) len - 1 && t == b + 1)
      sn_set_error("%s: %s: beyond the end of the blob (%" PRId64 " bytes)",
                   r->what, what, t);
    else if (a != off || b != off + (int64_t) len - 1)
      sn_set_error("%s: %s: the server sent bytes %" PRId64 "-%" PRId64,
                   r->what, what, a, b);
    else if (g.got != len)
      sn_set_error("%s: %s: got %zu bytes", r->what, what, g.got);
    else
      rc = 0;
  }
  else if (resp->status == 200) {
    uint8_t d[SN_SHA256_LEN];
    char gotd[SN_DIGEST_STRLEN + 1];

    if (!g.hashing && sn_sha256_init(&g.h) == 0)
      g.hashing = true;
    if (g.hashing) {
      sn_sha256_final(&g.h, d);
      sn_digest_format(d, gotd);
    }
    if (g.got < (size_t) off + len)
      sn_set_error("%s: %s: the blob is only %zu bytes", r->what, what,
                   g.got);
    else if (!g.hashing || strcmp(gotd, digest) != 0)
      sn_set_error("%s: %s: the whole blob sent instead of the range does "
                   "not match its digest", r->what, what);
    else
      rc = 0;
  }
  else if (resp->status == 416)
    sn_set_error("%s: %s: range not satisfiable (beyond the end of the "
                 "blob)", r->what, what);
  else
    status_error(r, ep, what, resp);
out:
  if (rc == -1 && strstr(sn_error(), what) == NULL)
    sn_prefix_error("%s: %s: ", r->what, what);
  if (g.hashing)
    sn_sha256_free(&g.h);
  return rc;
}

/* Copy of the cached location of digest, or -1 if none. */
static int
loc_get(struct sn_registry *r, const char *digest, size_t *ep, char **url,
        bool *send_auth)
{
  size_t i;
  int found = -1;

  pthread_mutex_lock(&r->lock);
  for (i = 0; i < REDIRECT_CACHE; i++)
    if (r->locs[i].digest && strcmp(r->locs[i].digest, digest) == 0) {
      *ep = r->locs[i].ep;
      *url = r->locs[i].url ? strdup(r->locs[i].url) : NULL;
      *send_auth = r->locs[i].send_auth;
      r->locs[i].used = ++r->tick;
      found = (r->locs[i].url && *url == NULL) ? -1 : 0;
      break;
    }
  pthread_mutex_unlock(&r->lock);
  return found;
}

static void
loc_put(struct sn_registry *r, const char *digest, size_t ep, const char *url,
        bool send_auth)
{
  struct blob_loc *slot = NULL;
  size_t i;

  pthread_mutex_lock(&r->lock);
  for (i = 0; i < REDIRECT_CACHE; i++) {
    struct blob_loc *l = &r->locs[i];

    if (l->digest && strcmp(l->digest, digest) == 0) {
      slot = l;
      break;
    }
    if (slot == NULL || (slot->digest && (!l->digest || l->used < slot->used)))
      slot = l;
  }
  free(slot->digest);
  free(slot->url);
  slot->digest = strdup(digest);
  slot->url = url ? strdup(url) : NULL;
  if (slot->digest == NULL || (url && slot->url == NULL)) {
    free(slot->digest);
    free(slot->url);
    slot->digest = slot->url = NULL;
  }
  slot->ep = ep;
  slot->send_auth = send_auth;
  slot->used = ++r->tick;
  pthread_mutex_unlock(&r->lock);
}

static void
loc_drop(struct sn_registry *r, const char *digest)
{
  size_t i;

  pthread_mutex_lock(&r->lock);
  for (i = 0; i < REDIRECT_CACHE; i++)
    if (r->locs[i].digest && strcmp(r->locs[i].digest, digest) == 0) {
      free(r->locs[i].digest);
      free(r->locs[i].url);
      r->locs[i].digest = r->locs[i].url = NULL;
    }
  pthread_mutex_unlock(&r->lock);
}

int
sn_registry_read_range(struct sn_registry *r, const char *digest, void *buf,
                       size_t len, int64_t off)
{
  struct sn_http_resp resp = { 0 };
  size_t ep, i, first = 0;
  char *url = NULL;
  bool send_auth;
  int rc;

  if (check_digest(digest) == -1)
    return -1;
  if (off < 0 || (len > 0 && (int64_t) len - 1 > INT64_MAX - off))
    return sn_set_error("%s: blob %s: invalid range", r->what, digest);
  if (len == 0)
    return 0;
  if (r->layout)
    return sn_layout_read_range(r->layout, digest, buf, len, off);

  /* Where the last read of this blob went (a redirect target, e.g. a
   * presigned S3 URL, or the endpoint that served it). */
  if (loc_get(r, digest, &ep, &url, &send_auth) == 0 && ep < r->neps) {
    if (url) {
      rc = range_on(r, &r->eps[ep], url, send_auth, digest, buf, len, off,
                    &resp);
      if (rc == 0) {
        sn_http_resp_clear(&resp);
        free(url);
        return 0;
      }
      /* Expired or refused: re-resolve through the registry, once. */
      debugf(r, "blob %s: cached redirect failed (%s); asking the registry "
             "again", digest, sn_error());
      loc_drop(r, digest);
      free(url);
      url = NULL;
    }
    first = ep;
  }
  for (i = first; i < r->neps; i++) {
    struct endpoint *e = &r->eps[i];

    url = api_url(r, e, "blobs", digest, NULL);
    if (url == NULL)
      break;
    rc = range_on(r, e, url, true, digest, buf, len, off, &resp);
    if (rc == 0) {
      if (resp.redirected)
        loc_put(r, digest, i, resp.url, !resp.cross_origin);
      else if (i != 0)
        loc_put(r, digest, i, NULL, true);
      sn_http_resp_clear(&resp);
      free(url);
      return 0;
    }
    free(url);
    url = NULL;
    if (e->mirror)
      debugf(r, "mirror %s: %s; trying the next endpoint", e->name,
             sn_error());
  }
  sn_http_resp_clear(&resp);
  return -1;
}

int
sn_registry_blob_exists(struct sn_registry *r, const char *digest,
                        int64_t *size)
{
  struct endpoint *ep;
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  char what[120];
  char *url;
  int rc = -1;

  if (check_digest(digest) == -1)
    return -1;
  if (r->layout)
    return sn_layout_blob_exists(r->layout, digest, size);
  ep = upstream(r);
  url = api_url(r, ep, "blobs", digest, NULL);
  if (url == NULL)
    return -1;
  snprintf(what, sizeof what, "blob %s", digest);
  q.method = "HEAD";
  q.url = url;
  if (ep_request(r, ep, false, true, &q, &resp) == -1)
    goto out;
  if (resp.status == 200) {
    if (size)
      *size = resp.content_length;
    rc = 1;
  }
  else if (resp.status == 404)
    rc = 0;
  else
    status_error(r, ep, what, &resp);
out:
  sn_http_resp_clear(&resp);
  free(url);
  return rc;
}

/* ---- push -------------------------------------------------------------- */

static int
push_blob(struct sn_registry *r, const char *digest, const uint8_t *data,
          int fd, int64_t size)
{
  static const char *const put_hdrs[] = {
    "Content-Type: application/octet-stream", NULL };
  struct endpoint *ep = upstream(r);
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  char what[120], *url = NULL, *loc = NULL, *put = NULL, *esc = NULL;
  int64_t have = -1;
  int rc = -1, e;

  snprintf(what, sizeof what, "blob %s", digest);
  e = sn_registry_blob_exists(r, digest, &have);
  if (e == -1)
    return -1;
  if (e == 1 && (have < 0 || have == size)) {
    debugf(r, "%s: already in %s", what, r->what);
    return 0;
  }
  ep_ready(r, ep);
  if (asprintf(&url, "%s/%s/blobs/uploads/", ep->base, r->repo) < 0) {
    url = NULL;
    sn_oom();
    goto out;
  }
  q.method = "POST";
  q.url = url;
  q.no_redirect = true;
  if (ep_request(r, ep, true, true, &q, &resp) == -1)
    goto out;
  if (resp.status != 202 || resp.location == NULL) {
    if (resp.status == 202)
      sn_set_error("%s: %s: upload without a Location", r->what, what);
    else
      status_error(r, ep, what, &resp);
    goto out;
  }
  loc = sn_http_resolve(url, resp.location);
  esc = sn_http_escape(digest);
  if (loc == NULL || esc == NULL
      || asprintf(&put, "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?",
                  esc) < 0) {
    put = NULL;
    sn_set_error("%s: %s: invalid upload Location", r->what, what);
    goto out;
  }
  memset(&q, 0, sizeof q);
  q.method = "PUT";
  q.url = put;
  q.headers = put_hdrs;
  q.body = data;
  q.body_fd = fd;
  q.body_size = size;
  /* The upload location may be on another host: no credentials there. */
  if (ep_request(r, ep, true, sn_http_same_origin(put, ep->base), &q,
                 &resp) == -1)
    goto out;
  if (resp.status != 201) {
    status_error(r, ep, what, &resp);
    goto out;
  }
  if (resp.docker_content_digest
      && strcmp(resp.docker_content_digest, digest) != 0) {
    sn_set_error("%s: %s: the registry stored it as %.80s", r->what, what,
                 resp.docker_content_digest);
    goto out;
  }
  rc = 0;
out:
  sn_http_resp_clear(&resp);
  free(url);
  free(loc);
  free(put);
  free(esc);
  return rc;
}

int
sn_registry_push_blob(struct sn_registry *r, const char *digest,
                      const uint8_t *data, size_t len)
{
  char computed[SN_DIGEST_STRLEN + 1];

  if (check_digest(digest) == -1)
    return -1;
  sha256_string(data, len, computed);
  if (strcmp(computed, digest) != 0)
    return sn_set_error("push blob %s: the data has digest %s", digest,
                        computed);
  if (r->layout)
    return sn_layout_push_blob(r->layout, digest, data, len);
  if (len == 0) {
    /* An empty body: the memory path with a non-NULL pointer. */
    static const uint8_t empty[1];

    return push_blob(r, digest, empty, -1, 0);
  }
  return push_blob(r, digest, data, -1, (int64_t) len);
}

int
sn_registry_push_blob_fd(struct sn_registry *r, const char *digest, int fd,
                         int64_t size)
{
  if (check_digest(digest) == -1)
    return -1;
  if (size < 0)
    return sn_set_error("push blob %s: invalid size", digest);
  if (r->layout)
    return sn_layout_push_blob_fd(r->layout, digest, fd, size);
  return push_blob(r, digest, NULL, fd, size);
}

struct sn_blob_writer {
  struct sn_registry *r;
  char digest[SN_DIGEST_STRLEN + 1];
  int64_t size;
  int fd;                       /* the temporary file */
  FILE *tmpf;                   /* registry: the tmpfile() owning fd */
  char *tmp;                    /* layout: the temporary file's path */
  uint8_t *buf;                 /* WRITER_BUF bytes gathered for write(2) */
  size_t used;
};

/* Small pieces (curl's 16 KiB) are gathered into a buffer of this size;
 * a piece at least half as large goes straight to write(2), uncopied. */
#define WRITER_BUF ((size_t) 1 << 20)

static int
writer_put(struct sn_blob_writer *w, const uint8_t *data, size_t len)
{
  while (len > 0) {
    ssize_t n = write(w->fd, data, len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      return sn_set_error("blob %s: writing a temporary file: %s", w->digest,
                          n == -1 ? strerror(errno) : "short write");
    data += n;
    len -= (size_t) n;
  }
  return 0;
}

static int
writer_flush(struct sn_blob_writer *w)
{
  int r = writer_put(w, w->buf, w->used);

  w->used = 0;
  return r;
}

struct sn_blob_writer *
sn_blob_writer_new(struct sn_registry *r, const char *digest, int64_t size)
{
  struct sn_blob_writer *w;

  if (check_digest(digest) == -1)
    return NULL;
  if ((w = calloc(1, sizeof *w)) == NULL || (w->buf = malloc(WRITER_BUF))
      == NULL) {
    free(w);
    sn_oom();
    return NULL;
  }
  w->r = r;
  w->size = size;
  snprintf(w->digest, sizeof w->digest, "%s", digest);
  if (r->layout)
    w->fd = sn_layout_blob_tmp(r->layout, digest, &w->tmp);
  else if ((w->tmpf = tmpfile()) != NULL)
    w->fd = fileno(w->tmpf);
  else {
    sn_set_error("temporary file: %s", strerror(errno));
    w->fd = -1;
  }
  if (w->fd == -1) {
    free(w->buf);
    free(w);
    return NULL;
  }
  return w;
}

int
sn_blob_writer_write(struct sn_blob_writer *w, const uint8_t *data,
                     size_t len)
{
  if (len >= WRITER_BUF / 2)    /* in order: what is gathered goes first */
    return writer_flush(w) == -1 ? -1 : writer_put(w, data, len);
  if (w->used + len > WRITER_BUF && writer_flush(w) == -1)
    return -1;
  memcpy(w->buf + w->used, data, len);
  w->used += len;
  return 0;
}

int
sn_blob_writer_commit(struct sn_blob_writer *w)
{
  int rc = -1;

  if (writer_flush(w) == -1)
    goto out;
  if (w->tmp) {
    if (fsync(w->fd) == -1) {
      sn_set_error("%s: fsync: %s", w->tmp, strerror(errno));
      goto out;
    }
    rc = sn_layout_blob_adopt(w->r->layout, w->digest, w->tmp, w->size);
    free(w->tmp);               /* adopted or removed */
    w->tmp = NULL;
  }
  else if (lseek(w->fd, 0, SEEK_END) != w->size)
    sn_set_error("blob %s: size differs from its descriptor", w->digest);
  else if (lseek(w->fd, 0, SEEK_SET) == -1)
    sn_set_error("temporary file: %s", strerror(errno));
  else
    rc = sn_registry_push_blob_fd(w->r, w->digest, w->fd, w->size);
out:
  sn_blob_writer_abort(w);
  return rc;
}

void
sn_blob_writer_abort(struct sn_blob_writer *w)
{
  if (w == NULL)
    return;
  if (w->tmpf)
    fclose(w->tmpf);
  else if (w->fd != -1)
    close(w->fd);
  free(w->buf);
  if (w->tmp) {
    unlink(w->tmp);
    free(w->tmp);
  }
  free(w);
}

static int
put_manifest_on(struct sn_registry *r, const char *ref, const char *mt,
                const uint8_t *data, size_t len, const char *computed,
                bool *has_subject_api)
{
  struct endpoint *ep = upstream(r);
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  char ct[300], what[200];
  const char *hdrs[] = { ct, NULL };
  char *url = api_url(r, ep, "manifests", ref, NULL);
  int rc = -1;

  if (url == NULL)
    return -1;
  snprintf(ct, sizeof ct, "Content-Type: %s", mt);
  snprintf(what, sizeof what, "put manifest %s", ref);
  q.method = "PUT";
  q.url = url;
  q.headers = hdrs;
  q.body = data;
  q.body_size = (int64_t) len;
  if (ep_request(r, ep, true, true, &q, &resp) == -1)
    goto out;
  if (resp.status != 201 && resp.status != 200) {
    status_error(r, ep, what, &resp);
    goto out;
  }
  if (resp.docker_content_digest
      && strncmp(resp.docker_content_digest, "sha256:", 7) == 0
      && strcmp(resp.docker_content_digest, computed) != 0) {
    sn_set_error("%s: %s: the registry stored %.80s, not %s", r->what, what,
                 resp.docker_content_digest, computed);
    goto out;
  }
  if (has_subject_api)
    *has_subject_api = resp.oci_subject != NULL;
  rc = 0;
out:
  sn_http_resp_clear(&resp);
  free(url);
  return rc;
}

/* The fallback tag of a digest: "sha256-<hex>". */
static void
fallback_tag(const char *digest, char out[SN_DIGEST_STRLEN + 1])
{
  snprintf(out, SN_DIGEST_STRLEN + 1, "sha256-%s", digest + 7);
}

/* Add the manifest m (digest, raw) to the fallback tag index of its
 * subject, for registries without the referrers API. */
static int
update_fallback_tag(struct sn_registry *r, const struct sn_manifest *m)
{
  char tag[SN_DIGEST_STRLEN + 1], computed[SN_DIGEST_STRLEN + 1];
  struct sn_manifest *old = NULL;
  json_t *root = NULL, *arr, *d = NULL;
  char *out = NULL;
  const char *at;
  size_t i;
  int rc = -1;

  fallback_tag(m->subject->digest, tag);
  old = manifest_on(r, upstream(r), tag);
  if (old == NULL && strstr(sn_error(), "HTTP 404") == NULL)
    return sn_prefix_error("referrers tag %s: ", tag);
  if (old && !old->is_index) {
    sn_manifest_free(old);
    return sn_set_error("%s: tag %s is not an index", r->what, tag);
  }
  if (old) {
    for (i = 0; i < old->nmanifests; i++)
      if (strcmp(old->manifests[i].digest, m->digest) == 0) {
        sn_manifest_free(old);
        return 0;
      }
    root = json_loadb((const char *) old->raw, old->raw_len, 0, NULL);
  }
  else
    root = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType",
                     SN_MT_OCI_INDEX, "manifests");
  arr = root ? json_object_get(root, "manifests") : NULL;
  if (!json_is_array(arr)) {
    sn_set_error("%s: tag %s: cannot update the index", r->what, tag);
    goto out;
  }
  at = m->artifact_type ? m->artifact_type
    : (!m->is_index ? m->config.media_type : NULL);
  d = json_pack("{s:s, s:s, s:I}", "mediaType", m->media_type, "digest",
                m->digest, "size", (json_int_t) m->raw_len);
  if (d == NULL || (at && json_object_set_new(d, "artifactType",
                                              json_string(at)) == -1))
    goto oom;
  if (m->nannotations) {
    json_t *an = json_object();

    if (an == NULL || json_object_set_new(d, "annotations", an) == -1)
      goto oom;
    for (i = 0; i < m->nannotations; i++)
      if (json_object_set_new(an, m->annotations[i].key,
                              json_string(m->annotations[i].value)) == -1)
        goto oom;
  }
  if (json_array_append_new(arr, d) == -1) {
    d = NULL;
    goto oom;
  }
  d = NULL;
  out = json_dumps(root, JSON_COMPACT);
  if (out == NULL)
    goto oom;
  sha256_string((const uint8_t *) out, strlen(out), computed);
  rc = put_manifest_on(r, tag, SN_MT_OCI_INDEX, (const uint8_t *) out,
                       strlen(out), computed, NULL);
  goto out;
oom:
  sn_oom();
out:
  json_decref(d);
  json_decref(root);
  free(out);
  sn_manifest_free(old);
  return rc;
}

int
sn_registry_put_manifest(struct sn_registry *r, const char *tag_or_digest,
                         const char *media_type, const uint8_t *data,
                         size_t len)
{
  char computed[SN_DIGEST_STRLEN + 1];
  struct sn_manifest *m;
  bool api = false;
  int rc;

  if (check_reference(tag_or_digest) == -1)
    return -1;
  if (media_type == NULL || *media_type == '\0' || strchr(media_type, '\n')
      || strchr(media_type, '\r') || strlen(media_type) > 255)
    return sn_set_error("put manifest: invalid media type");
  if (len > SN_MAX_DOCUMENT)
    return sn_set_error("put manifest: %zu bytes is over the %d byte limit",
                        len, SN_MAX_DOCUMENT);
  sha256_string(data, len, computed);
  if (is_digest(tag_or_digest) && strcmp(tag_or_digest, computed) != 0)
    return sn_set_error("put manifest %s: the data has digest %s",
                        tag_or_digest, computed);
  if (r->layout)
    return sn_layout_put_manifest(r->layout, tag_or_digest, media_type, data,
                                  len);
  if (put_manifest_on(r, tag_or_digest, media_type, data, len, computed,
                      &api) == -1)
    return -1;
  if (api)
    return 0;
  /* No OCI-Subject in the answer: keep the fallback tag up to date. */
  m = sn_manifest_parse(data, len, media_type);
  if (m == NULL)
    return 0;                   /* not ours to judge; it was accepted */
  rc = m->subject ? update_fallback_tag(r, m) : 0;
  sn_manifest_free(m);
  return rc;
}

/* ---- referrers --------------------------------------------------------- */

static struct sn_manifest *
referrers_on(struct sn_registry *r, struct endpoint *ep, const char *digest,
             const char *artifact_type)
{
  static const char *const hdrs[] = { "Accept: " SN_MT_OCI_INDEX, NULL };
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  struct sn_manifest *m = NULL, *f = NULL;
  char tag[SN_DIGEST_STRLEN + 1], what[120];
  char *url = NULL, *query = NULL, *esc = NULL;

  snprintf(what, sizeof what, "referrers of %s", digest);
  if (artifact_type) {
    esc = sn_http_escape(artifact_type);
    if (esc == NULL || asprintf(&query, "artifactType=%s", esc) < 0) {
      query = NULL;
      sn_oom();
      goto out;
    }
  }
  url = api_url(r, ep, "referrers", digest, query);
  if (url == NULL)
    goto out;
  q.url = url;
  q.headers = hdrs;
  q.max_body = SN_MAX_DOCUMENT;
  if (ep_request(r, ep, false, true, &q, &resp) == -1)
    goto out;
  if (resp.status == 200) {
    m = sn_manifest_parse(resp.body, resp.body_len, resp.content_type);
    if (m == NULL)
      sn_prefix_error("%s: %s: ", r->what, what);
    else if (!m->is_index) {
      sn_set_error("%s: %s: the answer is not an index", r->what, what);
      sn_manifest_free(m);
      m = NULL;
    }
  }
  else if (resp.status == 404) {
    /* No referrers API: the fallback tag. */
    fallback_tag(digest, tag);
    m = manifest_on(r, ep, tag);
    if (m == NULL && strstr(sn_error(), "HTTP 404"))
      m = sn_empty_index();
    else if (m && !m->is_index) {
      sn_set_error("%s: tag %s is not an index", r->what, tag);
      sn_manifest_free(m);
      m = NULL;
    }
  }
  else
    status_error(r, ep, what, &resp);
  if (m) {
    f = sn_index_filter(m, artifact_type);
    sn_manifest_free(m);
    m = f;
  }
out:
  sn_http_resp_clear(&resp);
  free(url);
  free(query);
  free(esc);
  return m;
}

struct sn_manifest *
sn_registry_referrers(struct sn_registry *r, const char *digest,
                      const char *artifact_type)
{
  if (check_digest(digest) == -1)
    return NULL;
  if (r->layout)
    return sn_layout_referrers(r->layout, digest, artifact_type);
  /* Only the image's own registry: a referrer chooses which index
   * describes the image, and a mirror is trusted with content-addressed
   * bytes only (everything it serves is checked against a digest). */
  return referrers_on(r, upstream(r), digest, artifact_type);
}
