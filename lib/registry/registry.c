/* soci-nbd: OCI distribution client (registry.h) — endpoints (mirrors then
 * upstream), endpoint probing, authentication retries, manifests with
 * digest checks and platform selection, and referrers with the fallback
 * tag schema.  Whole and ranged blob reads are in registry-blob.c, pushes
 * in registry-push.c; what they share is in registry-int.h.  oci-layout:
 * references are delegated to ocilayout.c.
 */
#include <config.h>

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry/auth.h"
#include "util/digest.h"
#include "util/err.h"
#include "registry/http.h"
#include "registry/ocilayout.h"
#include "registry/registry.h"
#include "registry/registry-int.h"

#define ACCEPT_MANIFESTS "Accept: " SN_MT_OCI_MANIFEST ", " SN_MT_OCI_INDEX \
  ", " SN_MT_DOCKER_MANIFEST ", " SN_MT_DOCKER_LIST

/* ---- small helpers ----------------------------------------------------- */

/* A message for the caller's debug callback, if it set one. */
void
reg_debugf(struct sn_registry *r, const char *fmt, ...)
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

struct endpoint *
reg_upstream(struct sn_registry *r)
{
  return &r->eps[r->neps - 1];
}

/* Is s in the NULL-terminated list (ignoring case)? */
static bool
in_list(const char *const *list, const char *s)
{
  for (; list && *list; list++)
    if (strcasecmp(*list, s) == 0)
      return true;
  return false;
}

/* 0 for "sha256:<64 hex>", else -1 with the error set. */
int
reg_check_digest(const char *digest)
{
  uint8_t d[SN_SHA256_LEN];

  if (digest == NULL || sn_digest_parse(digest, strlen(digest), d) == -1)
    return sn_set_error("invalid digest \"%.80s\" (want sha256:<64 hex>)",
                        digest ? digest : "(null)");
  return 0;
}

bool
reg_is_digest(const char *s)
{
  uint8_t d[SN_SHA256_LEN];

  return sn_digest_parse(s, strlen(s), d) == 0;
}

/* A tag or digest that is safe in a URL path. */
int
reg_check_reference(const char *s)
{
  size_t i, n;

  if (s == NULL || *s == '\0')
    return sn_set_error("empty tag");
  if (reg_is_digest(s))
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

/* Probe ep once, at its first request, as described above; a thread that
 * comes while another probes waits for the answer (probe_lock). */
void
reg_ep_ready(struct sn_registry *r, struct endpoint *ep)
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
        reg_debugf(r, "%s: no HTTPS (%s); using plain HTTP", ep->name,
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
char *
reg_api_url(struct sn_registry *r, struct endpoint *ep, const char *kind,
            const char *ref, const char *query)
{
  char *u;
  const char *ns = ep->mirror ? r->ns : NULL;
  bool q = (query && *query) || ns;

  reg_ep_ready(r, ep);
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
int
reg_status_error(struct sn_registry *r, const struct endpoint *ep,
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
int
reg_ep_request(struct sn_registry *r, struct endpoint *ep, bool push,
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
      sn_auth_wipe_free(hdr);
      if (rc == -1)
        return -1;
      continue;
    }
    sn_auth_wipe_free(hdr);
    return rc;
  }
}

/* ---- open / close ------------------------------------------------------ */

/* Append an endpoint for spec (a mirror, or the upstream called name)
 * to r->eps: its API root, whether to probe HTTPS, and its auth state.
 * On failure the half-made endpoint is left for sn_registry_close. */
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

/* A handle on an oci-layout directory, or on a repository with its
 * mirrors then the upstream as endpoints; NULL with the error set. */
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

/* Free everything open made, half-made handles included. */
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

/* The manifest ref from one endpoint, checked against the digest asked
 * for and the Docker-Content-Digest header; the caller frees it. */
struct sn_manifest *
reg_manifest_on(struct sn_registry *r, struct endpoint *ep, const char *ref)
{
  static const char *const hdrs[] = { ACCEPT_MANIFESTS, NULL };
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  struct sn_manifest *m = NULL;
  char computed[SN_DIGEST_STRLEN + 1], what[200];
  char *url;

  snprintf(what, sizeof what, "manifest %s", ref);
  url = reg_api_url(r, ep, "manifests", ref, NULL);
  if (url == NULL)
    return NULL;
  q.url = url;
  q.headers = hdrs;
  q.max_body = SN_MAX_DOCUMENT;
  if (reg_ep_request(r, ep, false, true, &q, &resp) == -1) {
    if (strstr(sn_error(), "response larger than"))
      sn_set_error("%s: %s is larger than %d bytes (4 MiB)", r->what, what,
                   SN_MAX_DOCUMENT);
    goto out;
  }
  if (resp.status != 200) {
    reg_status_error(r, ep, what, &resp);
    goto out;
  }
  sn_digest_of(resp.body, resp.body_len, computed);
  if (reg_is_digest(ref) && strcmp(computed, ref) != 0) {
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

/* Each endpoint in turn (mirrors, then the upstream) until one answers. */
struct sn_manifest *
sn_registry_get_manifest(struct sn_registry *r, const char *tag_or_digest)
{
  size_t i;

  if (reg_check_reference(tag_or_digest) == -1)
    return NULL;
  if (r->layout)
    return sn_layout_get_manifest(r->layout, tag_or_digest);
  for (i = 0; i < r->neps; i++) {
    struct sn_manifest *m = reg_manifest_on(r, &r->eps[i], tag_or_digest);

    if (m)
      return m;
    if (r->eps[i].mirror)
      reg_debugf(r, "mirror %s: %s; trying the next endpoint", r->eps[i].name,
                 sn_error());
  }
  return NULL;
}

/* The top-level manifest, then, for an index, the platform's entry,
 * checked against the index's size; the caller frees both. */
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

/* ---- referrers --------------------------------------------------------- */

/* The referrers of digest from endpoint ep: the referrers API, or the
 * fallback tag on a 404; filtered by artifact_type, the caller frees it. */
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
  url = reg_api_url(r, ep, "referrers", digest, query);
  if (url == NULL)
    goto out;
  q.url = url;
  q.headers = hdrs;
  q.max_body = SN_MAX_DOCUMENT;
  if (reg_ep_request(r, ep, false, true, &q, &resp) == -1)
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
    reg_fallback_tag(digest, tag);
    m = reg_manifest_on(r, ep, tag);
    if (m == NULL && strstr(sn_error(), "HTTP 404"))
      m = sn_empty_index();
    else if (m && !m->is_index) {
      sn_set_error("%s: tag %s is not an index", r->what, tag);
      sn_manifest_free(m);
      m = NULL;
    }
  }
  else
    reg_status_error(r, ep, what, &resp);
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
  if (reg_check_digest(digest) == -1)
    return NULL;
  if (r->layout)
    return sn_layout_referrers(r->layout, digest, artifact_type);
  /* Only the image's own registry: a referrer chooses which index
   * describes the image, and a mirror is trusted with content-addressed
   * bytes only (everything it serves is checked against a digest). */
  return referrers_on(r, reg_upstream(r), digest, artifact_type);
}
