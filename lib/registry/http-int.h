/* soci-nbd: internal to lib/registry/http*.c — the transport's state and
 * the single attempt that http-request.c retries. */
#ifndef SN_HTTP_INT_H
#define SN_HTTP_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "registry/http.h"

#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_RETRIES 5
#define DEFAULT_MAX_BODY ((size_t) 4 << 20)
#define ERROR_BODY_MAX ((size_t) 64 << 10)
#define MAX_REDIRECTS 10
#define BACKOFF_BASE_MS 250
#define BACKOFF_MAX_MS 8000
#define RETRY_AFTER_MAX_MS 60000

struct handle {
  CURL *c;
  struct handle *next;
};

struct sn_http {
  CURLSH *share;
  pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
  pthread_mutex_t pool_lock;
  struct handle *pool;
  char *cacert;
  bool insecure;
  long timeout_ms;
  int max_retries;
  char *user_agent;
  void (*debug)(void *opaque, const char *msg);
  void *debug_opaque;
};

/* A 301, 302, 303, 307 or 308. */
bool http_is_redirect(long s);

/* One line to the debug callback, if any: METHOD URL (redacted) WHAT. */
void http_debug_line(struct sn_http *h, const char *method, const char *url,
                     const char *what);

/* One attempt.  0 with r->status set, or -1; *retryable tells whether a
 * failure may be retried (transport errors before any byte reached a
 * sink); *delivered counts the body bytes given to the sink. */
int http_perform(struct sn_http *h, const char *method, const char *url,
                 const char *auth, bool send_body,
                 const struct sn_http_req *q, struct sn_http_resp *r,
                 int64_t *delivered, bool *retryable);

#endif
