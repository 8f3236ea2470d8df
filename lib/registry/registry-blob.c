/* soci-nbd: blob reads of the OCI distribution client (registry.h) —
 * whole blobs, streamed and digest-checked, resumed with a Range request
 * when a download breaks; range reads with the per-blob location cache
 * (the endpoint that served a blob and the URL it redirected to); and
 * blob existence checks.  oci-layout: references go to ocilayout.c.
 */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/digest.h"
#include "util/err.h"
#include "registry/http.h"
#include "registry/ocilayout.h"
#include "registry/registry.h"
#include "registry/registry-int.h"

#define SMALL_BLOB ((size_t) 1 << 20)  /* a 200 to a Range may be sliced */
#define MAX_RESUMES 3

/* ---- whole blobs ------------------------------------------------------- */

/* The blob into *buf (malloc'd, the caller's) from the first endpoint
 * that serves it whole and matching digest, at most max bytes. */
int
sn_registry_get_blob_mem(struct sn_registry *r, const char *digest,
                         size_t max, uint8_t **buf, size_t *len)
{
  char computed[SN_DIGEST_STRLEN + 1], what[120];
  size_t i;

  *buf = NULL;
  *len = 0;
  if (reg_check_digest(digest) == -1)
    return -1;
  if (r->layout)
    return sn_layout_get_blob_mem(r->layout, digest, max, buf, len);
  snprintf(what, sizeof what, "blob %s", digest);
  for (i = 0; i < r->neps; i++) {
    struct endpoint *ep = &r->eps[i];
    struct sn_http_req q = { 0 };
    struct sn_http_resp resp = { 0 };
    char *url = reg_api_url(r, ep, "blobs", digest, NULL);
    int rc = -1;

    if (url == NULL)
      return -1;
    q.url = url;
    q.max_body = max ? max : 1;
    if (reg_ep_request(r, ep, false, true, &q, &resp) == -1) {
      if (strstr(sn_error(), "response larger than"))
        sn_set_error("%s: %s is larger than %zu bytes", r->what, what, max);
    }
    else if (resp.status != 200)
      reg_status_error(r, ep, what, &resp);
    else {
      sn_digest_of(resp.body, resp.body_len, computed);
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
      reg_debugf(r, "mirror %s: %s; trying the next endpoint", ep->name,
                 sn_error());
  }
  return -1;
}

int
sn_registry_get_blob_desc(struct sn_registry *r, const struct sn_descriptor *d,
                          size_t max, const char *what, uint8_t **buf,
                          size_t *len)
{
  *buf = NULL;
  *len = 0;
  if (d->size <= 0 || (uint64_t) d->size > max)
    return sn_set_error("%s %s: %" PRId64 " bytes (the limit is %zu MiB)",
                        what, d->digest, d->size, max >> 20);
  if (sn_registry_get_blob_mem(r, d->digest, (size_t) d->size, buf, len)
      == -1)
    return sn_prefix_error("%s %s: ", what, d->digest);
  return 0;
}

/* The state of a streamed whole-blob download, across resumes. */
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

/* Hash and pass on the bytes of a response, skipping those already
 * delivered when a resumed request starts earlier than asked. */
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

/* Stream the blob to sink from each endpoint in turn, resuming a broken
 * download (MAX_RESUMES) while it makes progress; the digest is checked
 * once all bytes are in. */
int
sn_registry_get_blob(struct sn_registry *r, const char *digest,
                     int64_t size, sn_sink_fn sink, void *opaque)
{
  struct stream s = { 0 };
  char what[120];
  size_t i;
  int rc = -1;

  if (reg_check_digest(digest) == -1)
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
    char *url = reg_api_url(r, ep, "blobs", digest, NULL);
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
      if (reg_ep_request(r, ep, false, true, &q, &resp) == 0) {
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
        reg_status_error(r, ep, what, &resp);
      }
      sn_http_resp_clear(&resp);
      if (s.sink_failed || s.delivered == before)
        break;                  /* no progress: next endpoint */
      reg_debugf(r, "%s: %s; resuming at byte %" PRId64, what, sn_error(),
                 s.delivered);
    }
    free(url);
    url = NULL;
    if (s.sink_failed)
      break;
    if (ep->mirror)
      reg_debugf(r, "mirror %s: %s; trying the next endpoint", ep->name,
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

/* The state of one range read: the caller's buffer, and for a whole
 * blob sent instead (200), its running hash. */
struct range {
  uint8_t *buf;
  size_t len;
  int64_t off;
  size_t got;                 /* 206: bytes stored; 200: bytes seen */
  struct sn_sha256 h;         /* 200: the whole body, verified */
  bool hashing;
};

/* Store a 206 body in the buffer; slice a 200 body (a small blob only)
 * while hashing it; start over on a retry (status 0). */
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
    if (reg_ep_request(r, ep, false, true, &q, resp) == -1)
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
    reg_status_error(r, ep, what, resp);
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

/* Remember where digest was read (endpoint, redirect URL), replacing the
 * least recently used entry when the cache is full. */
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

/* Forget the cached location of digest. */
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

/* A range from the blob's cached redirect URL if any (dropped when it
 * fails), else from each endpoint in turn from the cached one; where it
 * came from is remembered for the next read. */
int
sn_registry_read_range(struct sn_registry *r, const char *digest, void *buf,
                       size_t len, int64_t off)
{
  struct sn_http_resp resp = { 0 };
  size_t ep, i, first = 0;
  char *url = NULL;
  bool send_auth;
  int rc;

  if (reg_check_digest(digest) == -1)
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
      reg_debugf(r, "blob %s: cached redirect failed (%s); asking the "
                 "registry again", digest, sn_error());
      loc_drop(r, digest);
      free(url);
      url = NULL;
    }
    first = ep;
  }
  for (i = first; i < r->neps; i++) {
    struct endpoint *e = &r->eps[i];

    url = reg_api_url(r, e, "blobs", digest, NULL);
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
      reg_debugf(r, "mirror %s: %s; trying the next endpoint", e->name,
                 sn_error());
  }
  sn_http_resp_clear(&resp);
  return -1;
}

/* HEAD the blob on the upstream: 1, 0 on a 404, -1 on an error. */
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

  if (reg_check_digest(digest) == -1)
    return -1;
  if (r->layout)
    return sn_layout_blob_exists(r->layout, digest, size);
  ep = reg_upstream(r);
  url = reg_api_url(r, ep, "blobs", digest, NULL);
  if (url == NULL)
    return -1;
  snprintf(what, sizeof what, "blob %s", digest);
  q.method = "HEAD";
  q.url = url;
  if (reg_ep_request(r, ep, false, true, &q, &resp) == -1)
    goto out;
  if (resp.status == 200) {
    if (size)
      *size = resp.content_length;
    rc = 1;
  }
  else if (resp.status == 404)
    rc = 0;
  else
    reg_status_error(r, ep, what, &resp);
out:
  sn_http_resp_clear(&resp);
  free(url);
  return rc;
}
