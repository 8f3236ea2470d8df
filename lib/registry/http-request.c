/* soci-nbd: one HTTP request as the registry client sees it (see
 * http.h): attempts retried with exponential backoff, jitter and
 * Retry-After, and redirects followed by hand — the Authorization header
 * dropped and a request body never re-sent when leaving the origin. */
#include <config.h>

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "registry/http.h"
#include "registry/http-int.h"

/* ---- retries ----------------------------------------------------------- */

/* A per-thread xorshift64 generator, seeded from the clock, for the jitter
 * of retry delays; nothing secret depends on it. */
static uint64_t
jitter_rand(void)
{
  static _Thread_local uint64_t s;

  if (s == 0) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    s = ((uint64_t) ts.tv_nsec << 20) ^ (uint64_t) ts.tv_sec
      ^ (uint64_t) (uintptr_t) &s;
    if (s == 0)
      s = 0x9e3779b97f4a7c15ULL;
  }
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

/* Sleep ms milliseconds, resuming after signals. */
static void
sleep_ms(int64_t ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (long) (ms % 1000) * 1000000L };

  while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* Statuses worth another attempt: 429, and 5xx but 501 and 505 (http.h). */
static bool
status_retryable(long s)
{
  return s == 429 || (s >= 500 && s < 600 && s != 501 && s != 505);
}

/* One URL, attempted until it succeeds or may not be retried: delays double
 * from BACKOFF_BASE_MS up to BACKOFF_MAX_MS, half of them jitter, or follow
 * Retry-After when longer.  http_perform's return convention. */
static int
attempt(struct sn_http *h, const char *method, const char *url,
        const char *auth, bool send_body, const struct sn_http_req *q,
        struct sn_http_resp *r)
{
  int64_t delivered = 0;
  int n;

  for (n = 0;; n++) {
    bool retryable;
    int rc = http_perform(h, method, url, auth, send_body, q, r, &delivered,
                     &retryable);
    int64_t delay;
    char what[64];

    if (rc == 0) {
      snprintf(what, sizeof what, "%ld", r->status);
      http_debug_line(h, method, url, what);
      retryable = status_retryable(r->status)
        && (delivered == 0 || q->sink_restartable);
    }
    else
      http_debug_line(h, method, url, "failed");
    if (!retryable || q->no_retry || n >= h->max_retries)
      return rc;
    delay = (int64_t) BACKOFF_BASE_MS << (n < 10 ? n : 10);
    if (delay > BACKOFF_MAX_MS)
      delay = BACKOFF_MAX_MS;
    delay = delay / 2 + (int64_t) (jitter_rand() % (uint64_t) (delay / 2 + 1));
    if (rc == 0 && r->retry_after) {
      int64_t ra = sn_http_parse_retry_after(r->retry_after, time(NULL));

      if (ra > RETRY_AFTER_MAX_MS)
        return rc;            /* the server wants us away for too long */
      if (ra > delay)
        delay = ra;
    }
    if (h->debug) {
      snprintf(what, sizeof what, "retry in %" PRId64 " ms", delay);
      http_debug_line(h, method, url, what);
    }
    sleep_ms(delay);
    if (delivered > 0 && q->sink
        && q->sink(q->sink_opaque, 0, NULL, 0) == -1)
      return -1;
    delivered = 0;
  }
}

/* The redirect loop of http.h's policy: 303 (and 301/302 of a POST) goes on
 * as GET without the body; leaving the origin drops the Authorization for
 * good and refuses to re-send a body.  On success r->url is the final URL. */
int
sn_http_request(struct sn_http *h, const struct sn_http_req *q,
                struct sn_http_resp *r)
{
  const char *method = q->method ? q->method : "GET";
  const char *auth = q->authorization;
  bool send_body = q->body_size > 0;
  char *url;
  int redirects = 0;

  free(r->url);
  r->url = NULL;
  r->redirected = r->cross_origin = false;
  url = strdup(q->url);
  if (url == NULL)
    return sn_oom();
  for (;;) {
    char *next, *safe;

    if (attempt(h, method, url, auth, send_body, q, r) == -1) {
      free(url);
      return -1;
    }
    if (q->no_redirect || !http_is_redirect(r->status) || r->location == NULL)
      break;
    safe = sn_http_redact(q->url);
    if (++redirects > MAX_REDIRECTS) {
      sn_set_error("%s %s: more than %d redirects", method,
                   safe ? safe : "<URL>", MAX_REDIRECTS);
      free(safe);
      free(url);
      return -1;
    }
    next = sn_http_resolve(url, r->location);
    if (next == NULL) {
      sn_set_error("%s %s: invalid redirect location", method,
                   safe ? safe : "<URL>");
      free(safe);
      free(url);
      return -1;
    }
    free(url);
    url = next;
    r->redirected = true;
    if (r->status == 303
        || ((r->status == 301 || r->status == 302)
            && strcmp(method, "POST") == 0)) {
      if (strcmp(method, "HEAD") != 0)
        method = "GET";
      send_body = false;
    }
    if (!sn_http_same_origin(q->url, url)) {
      r->cross_origin = true;
      auth = NULL;               /* and never again for this request */
      /* A 307/308 keeps the body, which may hold a secret (a refresh
       * token): it never leaves the origin it was meant for. */
      if (send_body) {
        sn_set_error("%s %s: refusing to re-send the request body to "
                     "another origin (a %ld redirect)", method,
                     safe ? safe : "<URL>", r->status);
        free(safe);
        free(url);
        return -1;
      }
    }
    free(safe);
  }
  r->url = url;
  return 0;
}
