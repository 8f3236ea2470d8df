/* soci-nbd: HTTP transport over libcurl (see http.h): a share handle for
 * DNS and TLS sessions, a pool of easy handles (each keeps its own idle
 * connections: libcurl's shared connection cache is not thread-safe, see
 * curl's KNOWN_BUGS), manual
 * redirects that drop the Authorization header and refuse to carry a
 * request body when leaving the origin,
 * and capped response bodies: one attempt at a request (http_perform).
 * Retries with backoff and jitter and redirects are in http-request.c,
 * the small parsers (Content-Range, Retry-After, URLs) in http-parse.c.
 */
#include <config.h>

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "registry/http.h"
#include "registry/ref.h"

#include "registry/http-int.h"

/* ---- global init and the share handle -------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

/* curl_global_init, once per process (global_once); its result in global_rc. */
static void
global_init(void)
{
  global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The share handle's locking: one mutex per kind of shared data. */
static void
share_lock_cb(CURL *c, curl_lock_data data, curl_lock_access access,
              void *opaque)
{
  struct sn_http *h = opaque;

  (void) c;
  (void) access;
  if ((int) data >= 0 && data < CURL_LOCK_DATA_LAST)
    pthread_mutex_lock(&h->share_lock[data]);
}

static void
share_unlock_cb(CURL *c, curl_lock_data data, void *opaque)
{
  struct sn_http *h = opaque;

  (void) c;
  if ((int) data >= 0 && data < CURL_LOCK_DATA_LAST)
    pthread_mutex_unlock(&h->share_lock[data]);
}

static char *
dup_or_null(const char *s)
{
  return s ? strdup(s) : NULL;
}

/* The defaults of http.h filled in; a CA file that cannot be read fails at
 * once.  NULL with a message on failure. */
struct sn_http *
sn_http_new(const struct sn_http_opts *o)
{
  struct sn_http *h;
  int i;

  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) {
    sn_set_error("curl_global_init: %s", curl_easy_strerror(global_rc));
    return NULL;
  }
  h = calloc(1, sizeof *h);
  if (h == NULL) {
    sn_oom();
    return NULL;
  }
  for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init(&h->share_lock[i], NULL);
  pthread_mutex_init(&h->pool_lock, NULL);
  h->insecure = o && o->insecure;
  h->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  h->max_retries = !o || o->max_retries == 0 ? DEFAULT_RETRIES
    : o->max_retries < 0 ? 0 : o->max_retries;
  h->cacert = dup_or_null(o ? o->cacert : NULL);
  h->user_agent = o && o->user_agent ? strdup(o->user_agent)
    : strdup(PACKAGE_NAME "/" PACKAGE_VERSION);
  if (o) {
    h->debug = o->debug;
    h->debug_opaque = o->debug_opaque;
  }
  if ((o && o->cacert && h->cacert == NULL) || h->user_agent == NULL) {
    sn_oom();
    goto fail;
  }
  /* A CA file we cannot read is the user's configuration error: say so
   * now, whatever the registry turns out to speak. */
  if (h->cacert && access(h->cacert, R_OK) == -1) {
    sn_set_error("CA certificate file %s: %s", h->cacert, strerror(errno));
    goto fail;
  }
  h->share = curl_share_init();
  if (h->share == NULL) {
    sn_set_error("curl_share_init failed");
    goto fail;
  }
  if (curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock_cb)
      || curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock_cb)
      || curl_share_setopt(h->share, CURLSHOPT_USERDATA, h)
      || curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS)
      || curl_share_setopt(h->share, CURLSHOPT_SHARE,
                           CURL_LOCK_DATA_SSL_SESSION)) {
    sn_set_error("curl_share_setopt failed");
    goto fail;
  }
  return h;

fail:
  sn_http_free(h);
  return NULL;
}

void
sn_http_free(struct sn_http *h)
{
  struct handle *p, *next;
  int i;

  if (h == NULL)
    return;
  for (p = h->pool; p; p = next) {
    next = p->next;
    curl_easy_cleanup(p->c);
    free(p);
  }
  if (h->share)
    curl_share_cleanup(h->share);
  for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_destroy(&h->share_lock[i]);
  pthread_mutex_destroy(&h->pool_lock);
  free(h->cacert);
  free(h->user_agent);
  free(h);
}

/* A handle from the pool (reset: options cleared, idle connections kept) or
 * a new one; NULL with a message. */
static struct handle *
pool_take(struct sn_http *h)
{
  struct handle *p;

  pthread_mutex_lock(&h->pool_lock);
  p = h->pool;
  if (p)
    h->pool = p->next;
  pthread_mutex_unlock(&h->pool_lock);
  if (p) {
    curl_easy_reset(p->c);
    return p;
  }
  p = calloc(1, sizeof *p);
  if (p == NULL) {
    sn_oom();
    return NULL;
  }
  p->c = curl_easy_init();
  if (p->c == NULL) {
    free(p);
    sn_set_error("curl_easy_init failed");
    return NULL;
  }
  return p;
}

/* Back to the pool: the next request reuses its connections. */
static void
pool_give(struct sn_http *h, struct handle *p)
{
  pthread_mutex_lock(&h->pool_lock);
  p->next = h->pool;
  h->pool = p;
  pthread_mutex_unlock(&h->pool_lock);
}

/* ---- responses --------------------------------------------------------- */

/* Free the header fields of r (again for each response after a 1xx). */
static void
clear_headers(struct sn_http_resp *r)
{
  free(r->content_type);
  free(r->content_range);
  free(r->location);
  free(r->docker_content_digest);
  free(r->www_authenticate);
  free(r->retry_after);
  free(r->oci_subject);
  free(r->oci_filters_applied);
  r->content_type = r->content_range = r->location = NULL;
  r->docker_content_digest = r->www_authenticate = r->retry_after = NULL;
  r->oci_subject = r->oci_filters_applied = NULL;
  r->content_length = -1;
}

static void
clear_body(struct sn_http_resp *r)
{
  free(r->body);
  r->body = NULL;
  r->body_len = 0;
}

/* Free what r holds and zero it, ready for the next request. */
void
sn_http_resp_clear(struct sn_http_resp *r)
{
  if (r == NULL)
    return;
  clear_headers(r);
  clear_body(r);
  free(r->url);
  memset(r, 0, sizeof *r);
  r->content_length = -1;
}

/* ---- one transfer ------------------------------------------------------ */

struct xfer {
  const struct sn_http_req *q;
  struct sn_http_resp *r;
  bool is_head;
  size_t cap;            /* buffered 2xx body cap */
  size_t buf_alloc;
  bool too_large;
  bool sink_failed;
  bool oom;
  int64_t delivered;     /* bytes given to the sink */
  int64_t upload_pos;
};

static bool
is_2xx(long s)
{
  return s >= 200 && s < 300;
}

bool
http_is_redirect(long s)
{
  return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* Trimmed copy of [s, s+n). */
static char *
trim_dup(const char *s, size_t n)
{
  char *d;

  while (n && (*s == ' ' || *s == '\t')) {
    s++;
    n--;
  }
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'
               || s[n - 1] == '\n'))
    n--;
  d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* *slot = the trimmed value [v, v+n), or appended after ", "; false on OOM. */
static bool
set_header(char **slot, const char *v, size_t n, bool append)
{
  char *t = trim_dup(v, n), *j;

  if (t == NULL)
    return false;
  if (append && *slot) {
    if (asprintf(&j, "%s, %s", *slot, t) < 0) {
      free(t);
      return false;
    }
    free(t);
    t = j;
  }
  free(*slot);
  *slot = t;
  return true;
}

/* curl's header callback: the status line and the headers sn_http_resp
 * keeps; returning 0 aborts (a buffered body over the cap, or OOM). */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *opaque)
{
  struct xfer *x = opaque;
  struct sn_http_resp *r = x->r;
  size_t n = size * nmemb, name_len;
  const char *colon, *v;
  size_t vn;
  bool ok = true;

  if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
    /* A new response (after 1xx): forget the headers seen so far. */
    const char *sp = memchr(data, ' ', n);

    clear_headers(r);
    r->status = 0;
    if (sp) {
      char tmp[4] = { 0 };
      size_t left = n - (size_t) (sp + 1 - data);

      if (left >= 3) {
        memcpy(tmp, sp + 1, 3);
        r->status = strtol(tmp, NULL, 10);
      }
    }
    return n;
  }
  colon = memchr(data, ':', n);
  if (colon == NULL)
    return n;
  name_len = (size_t) (colon - data);
  v = colon + 1;
  vn = n - name_len - 1;

#define IS(lit) (name_len == sizeof lit - 1 && strncasecmp(data, lit, name_len) == 0)
  if (IS("content-type"))
    ok = set_header(&r->content_type, v, vn, false);
  else if (IS("content-range"))
    ok = set_header(&r->content_range, v, vn, false);
  else if (IS("location"))
    ok = set_header(&r->location, v, vn, false);
  else if (IS("docker-content-digest"))
    ok = set_header(&r->docker_content_digest, v, vn, false);
  else if (IS("www-authenticate"))
    ok = set_header(&r->www_authenticate, v, vn, true);
  else if (IS("retry-after"))
    ok = set_header(&r->retry_after, v, vn, false);
  else if (IS("oci-subject"))
    ok = set_header(&r->oci_subject, v, vn, false);
  else if (IS("oci-filters-applied"))
    ok = set_header(&r->oci_filters_applied, v, vn, false);
  else if (IS("content-length")) {
    char *t = trim_dup(v, vn), *end;
    long long cl;

    if (t == NULL)
      ok = false;
    else {
      errno = 0;
      cl = strtoll(t, &end, 10);
      if (errno == 0 && end != t && *end == '\0' && cl >= 0)
        r->content_length = cl;
      free(t);
      /* A buffered success body that cannot fit: stop before reading. */
      if (!x->is_head && is_2xx(r->status) && x->q->sink == NULL
          && r->content_length > (int64_t) x->cap) {
        x->too_large = true;
        return 0;
      }
    }
  }
#undef IS
  if (!ok) {
    x->oom = true;
    return 0;
  }
  return n;
}

/* Append to r->body, kept NUL-terminated; false on OOM. */
static bool
buffer_append(struct xfer *x, const char *data, size_t n)
{
  struct sn_http_resp *r = x->r;

  if (r->body_len + n + 1 > x->buf_alloc) {
    size_t na = x->buf_alloc ? x->buf_alloc : 4096;
    uint8_t *nb;

    while (na < r->body_len + n + 1)
      na *= 2;
    nb = realloc(r->body, na);
    if (nb == NULL)
      return false;
    r->body = nb;
    x->buf_alloc = na;
  }
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
  r->body[r->body_len] = 0;
  return true;
}

/* curl's body callback: 2xx bodies to the sink or the capped buffer; other
 * bodies kept up to ERROR_BODY_MAX, the rest dropped. */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *opaque)
{
  struct xfer *x = opaque;
  struct sn_http_resp *r = x->r;
  size_t n = size * nmemb;

  if (is_2xx(r->status)) {
    if (x->q->sink) {
      if (x->q->sink(x->q->sink_opaque, r->status, (const uint8_t *) data,
                     n) == -1) {
        x->sink_failed = true;
        return 0;
      }
      x->delivered += (int64_t) n;
      return n;
    }
    if (r->body_len + n > x->cap) {
      x->too_large = true;
      return 0;
    }
  }
  else if (r->body_len + n > ERROR_BODY_MAX) {
    /* Keep the beginning of an error body; drop the rest. */
    n = ERROR_BODY_MAX - r->body_len;
    if (n == 0)
      return size * nmemb;
    if (!buffer_append(x, data, n)) {
      x->oom = true;
      return 0;
    }
    return size * nmemb;
  }
  if (!buffer_append(x, data, n)) {
    x->oom = true;
    return 0;
  }
  return n;
}

/* curl's upload callback: the request body, from memory or from body_fd. */
static size_t
read_cb(char *buf, size_t size, size_t nmemb, void *opaque)
{
  struct xfer *x = opaque;
  const struct sn_http_req *q = x->q;
  size_t n = size * nmemb;
  int64_t left = q->body_size - x->upload_pos;
  ssize_t got;

  if (left <= 0)
    return 0;
  if ((int64_t) n > left)
    n = (size_t) left;
  if (q->body) {
    memcpy(buf, q->body + x->upload_pos, n);
    x->upload_pos += (int64_t) n;
    return n;
  }
  do
    got = pread(q->body_fd, buf, n, (off_t) x->upload_pos);
  while (got == -1 && errno == EINTR);
  if (got <= 0) {
    sn_set_error("reading the request body: %s",
                 got == 0 ? "unexpected end of file" : strerror(errno));
    x->sink_failed = true;
    return CURL_READFUNC_ABORT;
  }
  x->upload_pos += got;
  return (size_t) got;
}

/* curl's rewind of the request body, when it must send it again. */
static int
seek_cb(void *opaque, curl_off_t off, int origin)
{
  struct xfer *x = opaque;

  if (origin != SEEK_SET || off < 0 || off > x->q->body_size)
    return CURL_SEEKFUNC_CANTSEEK;
  x->upload_pos = off;
  return CURL_SEEKFUNC_OK;
}

void
http_debug_line(struct sn_http *h, const char *method, const char *url,
           const char *what)
{
  char *safe, *line;

  if (h->debug == NULL)
    return;
  safe = sn_http_redact(url);
  if (asprintf(&line, "%s %s %s", method, safe ? safe : "<URL>", what) >= 0) {
    h->debug(h->debug_opaque, line);
    free(line);
  }
  free(safe);
}

/* Free a header list, zeroing each line first (one holds Authorization). */
static void
free_slist_secure(struct curl_slist *l)
{
  struct curl_slist *p;

  for (p = l; p; p = p->next)
    if (p->data)
      explicit_bzero(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

/* Whether url's host is a loopback one (never proxied: http.h). */
static bool
url_is_loopback(const char *url)
{
  char *host = sn_http_url_host(url);
  bool lo = host && sn_ref_is_loopback(host);

  free(host);
  return lo;
}

/* The request headers: the caller's, then Authorization (scrubbed from our
 * copy), then an empty Expect.  false on OOM; *hdrsp then holds whatever
 * was built so far, for the caller to free. */
static bool
build_headers(const struct sn_http_req *q, const char *auth,
              struct curl_slist **hdrsp)
{
  struct curl_slist *t;
  const char *const *hp;
  char *authline = NULL;

  for (hp = q->headers; hp && *hp; hp++) {
    t = curl_slist_append(*hdrsp, *hp);
    if (t == NULL)
      return false;
    *hdrsp = t;
  }
  if (auth) {
    if (asprintf(&authline, "Authorization: %s", auth) < 0) {
      authline = NULL;
      return false;
    }
    t = curl_slist_append(*hdrsp, authline);
    explicit_bzero(authline, strlen(authline));
    free(authline);
    if (t == NULL)
      return false;
    *hdrsp = t;
  }
  t = curl_slist_append(*hdrsp, "Expect:");
  if (t == NULL)
    return false;
  *hdrsp = t;
  return true;
}

/* Options common to every method: URL, TLS, timeouts (stall-based when
 * streaming), proxy bypass for loopback, and the header/write callbacks. */
static void
set_common_opts(struct sn_http *h, CURL *c, const char *url,
                const struct sn_http_req *q, struct curl_slist *hdrs,
                char *errbuf, bool streaming, struct xfer *x)
{
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_SHARE, h->share);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(c, CURLOPT_USERAGENT, h->user_agent);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  /* Larger receive buffer: fewer, bigger write callbacks for blobs and
   * spans (16 KiB by default). */
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER,
                   h->insecure || q->tls_probe ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST,
                   h->insecure || q->tls_probe ? 0L : 2L);
  curl_easy_setopt(c, CURLOPT_FORBID_REUSE, q->tls_probe ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, q->tls_probe ? 0L : 1L);
  if (h->cacert)
    curl_easy_setopt(c, CURLOPT_CAINFO, h->cacert);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   h->timeout_ms < 30000 ? h->timeout_ms : 30000L);
  if (streaming) {
    long secs = (h->timeout_ms + 999) / 1000;

    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long) SN_HTTP_STALL_RATE);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, secs);
    /* A known size also bounds the whole transfer: a server dripping
     * just above the stall rate cannot hold it forever. */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->expect_size > 0
                     ? (long) (h->timeout_ms
                               + q->expect_size / SN_HTTP_MIN_RATE * 1000)
                     : 0L);
  }
  else
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
  if (url_is_loopback(url))
    curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
}

/* The method and, for POST and PUT, the request body through read_cb and
 * seek_cb (a body-less POST sends an empty one). */
static void
set_method_opts(CURL *c, const char *method, bool send_body,
                const struct sn_http_req *q, struct xfer *x)
{
  if (strcmp(method, "GET") == 0)
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  else if (x->is_head)
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    if (send_body && q->body_size > 0) {
      curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
      curl_easy_setopt(c, CURLOPT_READDATA, x);
      curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
      curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                       (curl_off_t) q->body_size);
    }
    else {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
    }
  }
  else if (strcmp(method, "PUT") == 0) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, x);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                     (curl_off_t) (send_body ? q->body_size : 0));
  }
  else
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
}

/* Sets the error for a failed curl_easy_perform and *retryable for the
 * transport errors worth another attempt. */
static void
report_failure(const char *method, const char *url, CURLcode rc,
               const char *errbuf, const struct xfer *x,
               const struct sn_http_req *q, bool *retryable)
{
  if (x->oom)
    sn_oom();
  else if (x->sink_failed)
    ;                           /* the sink or read_cb set the message */
  else if (x->too_large) {
    char *safe = sn_http_redact(url);

    sn_set_error("%s %s: response larger than %zu bytes", method,
                 safe ? safe : "<URL>", x->cap);
    free(safe);
  }
  else {
    char *safe = sn_http_redact(url);

    sn_set_error("%s %s: %s", method, safe ? safe : "<URL>",
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    free(safe);
    *retryable = (x->delivered == 0 || q->sink_restartable)
      && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST
          || rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_RECV_ERROR
          || rc == CURLE_SEND_ERROR || rc == CURLE_OPERATION_TIMEDOUT
          || rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE
          || rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_HTTP2
          || rc == CURLE_HTTP2_STREAM);
  }
}

/* One attempt.  0 with r->status set, or -1; *retryable tells whether a
 * failure may be retried (transport errors before any byte reached a
 * sink). */
int
http_perform(struct sn_http *h, const char *method, const char *url,
        const char *auth, bool send_body, const struct sn_http_req *q,
        struct sn_http_resp *r, int64_t *delivered, bool *retryable)
{
  struct handle *p;
  struct curl_slist *hdrs = NULL;
  struct xfer x = { 0 };
  char errbuf[CURL_ERROR_SIZE] = "";
  CURLcode rc;
  CURL *c;
  bool streaming = q->sink != NULL || (send_body && q->body == NULL);
  int ret = -1;

  *retryable = false;
  clear_headers(r);
  clear_body(r);
  r->status = 0;
  x.q = q;
  x.r = r;
  x.is_head = strcmp(method, "HEAD") == 0;
  x.cap = q->max_body ? q->max_body : DEFAULT_MAX_BODY;

  p = pool_take(h);
  if (p == NULL)
    return -1;
  c = p->c;

  if (!build_headers(q, auth, &hdrs))
    goto oom;
  set_common_opts(h, c, url, q, hdrs, errbuf, streaming, &x);
  set_method_opts(c, method, send_body, q, &x);

  rc = curl_easy_perform(c);
  r->curl_code = (int) rc;
  *delivered += x.delivered;
  if (rc == CURLE_OK) {
    long code = 0;

    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    r->status = code;
    ret = 0;
  }
  else
    report_failure(method, url, rc, errbuf, &x, q, retryable);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
  free_slist_secure(hdrs);
  pool_give(h, p);
  return ret;

oom:
  free_slist_secure(hdrs);
  pool_give(h, p);
  return sn_oom();
}
