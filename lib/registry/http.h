/* soci-nbd: HTTP transport over libcurl, for the registry client.
 *
 * One struct sn_http is shared by every thread of a registry client.  It
 * owns a curl share handle (DNS cache, TLS sessions) and a pool of easy
 * handles: a request takes a handle from the pool (or makes one), so each
 * thread has its own handle for the time of its request, and the handle's
 * idle connections are reused by whichever request takes it next.  The
 * connection cache itself is not shared: libcurl's shared connection cache
 * is not thread-safe (curl KNOWN_BUGS; it aborted under 8 threads here).  sn_http_request() may be called
 * from many threads at once.
 *
 * Policy:
 *  - TLS verification is on unless insecure; cacert names a CA bundle.
 *  - Proxies come from the environment (curl's http_proxy, https_proxy,
 *    no_proxy), except for loopback hosts, which are never proxied (as Go
 *    and Docker do).
 *  - HTTP/2 is used when the server offers it over TLS.
 *  - Redirects are followed here, not by curl, at most 10: the
 *    Authorization header is sent to the origin (scheme, host and port) of
 *    the first URL only, and never again once a redirect left it.
 *  - Connection errors, 429 (Retry-After honoured) and 5xx other than 501
 *    and 505 are retried with exponential backoff and jitter, up to
 *    max_retries times, unless response bytes were already given to a
 *    sink.
 *  - Buffered bodies are capped (max_body); a larger response fails with a
 *    clear message before it is read.
 *  - The debug callback gets one line per request: method, URL without its
 *    query string or user info, status.  Never a header.
 *
 * Errors follow err.h; messages never contain a header value, a query
 * string or user info.
 */
#ifndef SN_HTTP_H
#define SN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct sn_http_opts {
  const char *cacert;        /* CA bundle file, or NULL for the system's */
  bool insecure;             /* do not verify TLS peers */
  long timeout_ms;           /* whole request when buffered, else the
                              * longest stall; 0 → 60 s */
  int max_retries;           /* 0 → 5; -1 → none */
  const char *user_agent;    /* NULL → "soci-nbd/VERSION" */
  void (*debug)(void *opaque, const char *msg); /* may be NULL */
  void *debug_opaque;
};

struct sn_http;

struct sn_http *sn_http_new(const struct sn_http_opts *o);
/* Frees the share and every pooled handle; no request may be running. */
void sn_http_free(struct sn_http *h);

/* Streaming body consumer, called only for 2xx responses with the status;
 * returning -1 (with sn_set_error) aborts the request with that error. */
typedef int (*sn_http_sink_fn)(void *opaque, long status,
                               const uint8_t *data, size_t len);

/* The slowest transfer rate a sized streaming download is given time for
 * (bytes/s), on top of the timeout; and the rate under which any streaming
 * transfer is a stall, over the timeout. */
#define SN_HTTP_MIN_RATE (64 * 1024)
#define SN_HTTP_STALL_RATE 1024

struct sn_http_req {
  const char *method;              /* "GET" (NULL), "HEAD", "POST", "PUT",
                                    * "DELETE" */
  const char *url;
  const char *const *headers;      /* NULL-terminated "Name: value" lines,
                                    * never secrets; may be NULL */
  const char *authorization;       /* "Bearer …"/"Basic …" or NULL: sent
                                    * only to the origin of url */
  const uint8_t *body;             /* request body in memory, or */
  int body_fd;                     /* (when body_size > 0 and body is NULL)
                                    * read with pread from offset 0 */
  int64_t body_size;
  size_t max_body;                 /* cap on a buffered response body;
                                    * 0 → 4 MiB */
  sn_http_sink_fn sink;            /* stream 2xx bodies here instead of
                                    * buffering them */
  int64_t expect_size;             /* with sink: the body's expected size
                                    * when known (0 = unknown): the whole
                                    * transfer then has a deadline of the
                                    * timeout plus the time to move it at
                                    * SN_HTTP_MIN_RATE */
  void *sink_opaque;
  bool sink_restartable;           /* the sink can take the body again
                                    * from its start: then a failure after
                                    * bytes reached it is retried too, and
                                    * the sink is first called with status
                                    * 0, data NULL, len 0 ("start over") */
  bool no_redirect;                /* return 3xx responses as they are */
  bool no_retry;                   /* a single attempt */
  bool tls_probe;                  /* only to learn whether the server
                                    * speaks TLS: no certificate check (so
                                    * no CA bundle to load; send no secrets
                                    * and trust nothing of the response),
                                    * connection and TLS session not kept */
};

struct sn_http_resp {
  long status;
  int curl_code;                   /* CURLcode of a transport failure */
  uint8_t *body;                   /* buffered body (NUL-terminated), or
                                    * for a sink, the body of a non-2xx
                                    * response (capped at 64 KiB) */
  size_t body_len;
  char *url;                       /* the final URL, after redirects */
  bool redirected;                 /* a redirect was followed */
  bool cross_origin;               /* ... to another origin */
  int64_t content_length;          /* -1 if not given */
  char *content_type;              /* these are NULL when absent */
  char *content_range;
  char *location;
  char *docker_content_digest;
  char *www_authenticate;          /* all such headers joined by ", " */
  char *retry_after;
  char *oci_subject;               /* OCI-Subject */
  char *oci_filters_applied;       /* OCI-Filters-Applied */
};

/* Perform a request.  Returns 0 when a response was received, whatever its
 * status (r->status tells), or -1 on a transport error, an oversized body,
 * a sink failure or a redirect problem.  *r must be zeroed or cleared
 * before; clear it after with sn_http_resp_clear in both cases. */
int sn_http_request(struct sn_http *h, const struct sn_http_req *q,
                    struct sn_http_resp *r);
void sn_http_resp_clear(struct sn_http_resp *r);

/* ---- helpers (pure, exposed for the registry client and tests) ------- */

/* "bytes a-b/total", or "bytes a-b/" followed by "*" (then *total = -1).
 * -1 if malformed. */
int sn_http_parse_content_range(const char *v, int64_t *start, int64_t *end,
                                int64_t *total);

/* Retry-After as delay-seconds or an HTTP-date, relative to now, in
 * milliseconds (a date in the past gives 0).  -1 if malformed. */
int64_t sn_http_parse_retry_after(const char *v, time_t now);

/* True if both absolute http(s) URLs have the same scheme, host (compared
 * case-insensitively) and port (default ports made explicit). */
bool sn_http_same_origin(const char *a, const char *b);

/* The URL for location (absolute, or relative to base); malloc'd. */
char *sn_http_resolve(const char *base, const char *location);

/* url without user info, query or fragment, for messages; malloc'd. */
char *sn_http_redact(const char *url);

/* Percent-encode everything but RFC 3986 unreserved characters;
 * malloc'd. */
char *sn_http_escape(const char *s);

/* The API root ("scheme://host[:port][/path]/v2") of a registry or mirror
 * given as "host[:port]" or a URL "http[s]://host[:port][/path]".  A
 * bare host gets http:// when plain_http, else https://; a path not
 * ending in /v2 gets /v2 appended.  malloc'd, NULL on a bad spec. */
char *sn_http_api_base(const char *spec, bool plain_http);

/* The "host[:port]" of an absolute URL, malloc'd (NULL if none). */
char *sn_http_url_host(const char *url);
/* The same without the port ("[::1]" for IPv6 literals). */
char *sn_http_url_hostname(const char *url);

#endif
