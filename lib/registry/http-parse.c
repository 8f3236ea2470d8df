/* soci-nbd: the pure HTTP helpers of http.h — Content-Range and
 * Retry-After parsing, URL origin comparison, resolution and redaction,
 * percent-encoding, registry API roots and URL hosts.  No I/O: libcurl is
 * used only for its URL parser.  The transport itself is in http.c.
 */
#include <config.h>

#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "registry/http.h"

/* ---- pure helpers ------------------------------------------------------ */

static const char *
skip_ws(const char *s)
{
  while (*s == ' ' || *s == '\t')
    s++;
  return s;
}

/* Parse decimal digits at *sp into *out (no overflow past INT64_MAX) and
 * advance *sp past them.  -1 if there is no digit or it overflows. */
static int
parse_u63(const char **sp, int64_t *out)
{
  const char *s = *sp;
  int64_t v = 0;

  if (!isdigit((unsigned char) *s))
    return -1;
  while (isdigit((unsigned char) *s)) {
    int d = *s - '0';

    if (v > (INT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
    s++;
  }
  *sp = s;
  *out = v;
  return 0;
}

/* A Content-Range value "bytes a-b/total" (see http.h). */
int
sn_http_parse_content_range(const char *v, int64_t *start, int64_t *end,
                            int64_t *total)
{
  const char *s;
  int64_t a, b, t = -1;

  if (v == NULL)
    return -1;
  s = skip_ws(v);
  if (strncasecmp(s, "bytes", 5) != 0)
    return -1;
  s += 5;
  if (*s != ' ' && *s != '\t')
    return -1;
  s = skip_ws(s);
  if (parse_u63(&s, &a) == -1 || *s++ != '-' || parse_u63(&s, &b) == -1)
    return -1;
  if (*s++ != '/')
    return -1;
  if (*s == '*')
    s++;
  else if (parse_u63(&s, &t) == -1)
    return -1;
  s = skip_ws(s);
  if (*s != '\0' || b < a || (t >= 0 && b >= t))
    return -1;
  *start = a;
  *end = b;
  *total = t;
  return 0;
}

/* A Retry-After value in milliseconds from now (see http.h). */
int64_t
sn_http_parse_retry_after(const char *v, time_t now)
{
  const char *s;
  struct tm tm;
  int64_t secs;
  time_t when;
  char *end;

  if (v == NULL)
    return -1;
  s = skip_ws(v);
  if (isdigit((unsigned char) *s)) {
    if (parse_u63(&s, &secs) == -1)
      return -1;
    s = skip_ws(s);
    if (*s != '\0')
      return -1;
    if (secs > INT64_MAX / 1000)
      secs = INT64_MAX / 1000;
    return secs * 1000;
  }
  memset(&tm, 0, sizeof tm);
  end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == NULL || *skip_ws(end) != '\0')
    return -1;
  when = timegm(&tm);
  if (when == (time_t) -1)
    return -1;
  if (when <= now)
    return 0;
  return ((int64_t) when - (int64_t) now) * 1000;
}

/* An absolute http(s) URL parsed by libcurl; the caller frees it with
 * curl_url_cleanup.  NULL if invalid or of another scheme. */
static CURLU *
parse_url(const char *s)
{
  CURLU *u = curl_url();
  char *scheme = NULL;
  bool ok;

  if (u == NULL)
    return NULL;
  if (curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK
      || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    return NULL;
  }
  ok = strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0;
  curl_free(scheme);
  if (!ok) {
    curl_url_cleanup(u);
    return NULL;
  }
  return u;
}

/* Same scheme, host and port, default ports made explicit (see http.h). */
bool
sn_http_same_origin(const char *a, const char *b)
{
  CURLU *ua = parse_url(a), *ub = parse_url(b);
  char *sa = NULL, *sb = NULL, *ha = NULL, *hb = NULL, *pa = NULL, *pb = NULL;
  bool same = false;

  if (ua && ub
      && curl_url_get(ua, CURLUPART_SCHEME, &sa, 0) == CURLUE_OK
      && curl_url_get(ub, CURLUPART_SCHEME, &sb, 0) == CURLUE_OK
      && curl_url_get(ua, CURLUPART_HOST, &ha, 0) == CURLUE_OK
      && curl_url_get(ub, CURLUPART_HOST, &hb, 0) == CURLUE_OK
      && curl_url_get(ua, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) == CURLUE_OK
      && curl_url_get(ub, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT) == CURLUE_OK)
    same = strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0
      && strcmp(pa, pb) == 0;
  curl_free(sa);
  curl_free(sb);
  curl_free(ha);
  curl_free(hb);
  curl_free(pa);
  curl_free(pb);
  curl_url_cleanup(ua);
  curl_url_cleanup(ub);
  return same;
}

/* A malloc'd copy of a curl-allocated string, which is freed. */
static char *
curl_to_malloc(char *s)
{
  char *d;

  if (s == NULL)
    return NULL;
  d = strdup(s);
  curl_free(s);
  return d;
}

/* location resolved against base, http(s) only; malloc'd or NULL. */
char *
sn_http_resolve(const char *base, const char *location)
{
  CURLU *u = parse_url(base);
  char *out = NULL, *scheme = NULL;

  if (u == NULL || location == NULL || *location == '\0')
    goto done;
  if (curl_url_set(u, CURLUPART_URL, location, 0) != CURLUE_OK)
    goto done;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
      || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
    goto done;
  if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
    out = NULL;
done:
  curl_free(scheme);
  curl_url_cleanup(u);
  return curl_to_malloc(out);
}

/* url with user info, options, query and fragment removed, for messages;
 * malloc'd ("<invalid URL>" when it does not parse). */
char *
sn_http_redact(const char *url)
{
  CURLU *u = url ? parse_url(url) : NULL;
  char *out = NULL;

  if (u == NULL)
    return strdup("<invalid URL>");
  curl_url_set(u, CURLUPART_USER, NULL, 0);
  curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
  curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
  curl_url_set(u, CURLUPART_QUERY, NULL, 0);
  curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
  if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
    out = NULL;
  curl_url_cleanup(u);
  return out ? curl_to_malloc(out) : strdup("<invalid URL>");
}

/* Percent-encode all but RFC 3986 unreserved characters; malloc'd. */
char *
sn_http_escape(const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s), i, j = 0;
  char *d = malloc(3 * n + 1);

  if (d == NULL)
    return NULL;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char) s[i];

    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
      d[j++] = (char) c;
    else {
      d[j++] = '%';
      d[j++] = hex[c >> 4];
      d[j++] = hex[c & 15];
    }
  }
  d[j] = '\0';
  return d;
}

/* The host of url, with ":port" when the URL has one and with_port. */
static char *
url_host(const char *url, bool with_port)
{
  CURLU *u = parse_url(url);
  char *host = NULL, *port = NULL, *out = NULL;

  if (u == NULL)
    return NULL;
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
    if (with_port &&
        curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
      if (asprintf(&out, "%s:%s", host, port) < 0)
        out = NULL;
    }
    else
      out = strdup(host);
  }
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return out;
}

char *
sn_http_url_host(const char *url)
{
  return url_host(url, true);
}

char *
sn_http_url_hostname(const char *url)
{
  return url_host(url, false);
}

/* The "scheme://host[:port][/path]/v2" API root of a registry spec (see
 * http.h); malloc'd, NULL on a bad spec. */
char *
sn_http_api_base(const char *spec, bool plain_http)
{
  char *full = NULL, *path = NULL, *scheme = NULL, *host = NULL, *port = NULL;
  char *out = NULL;
  CURLU *u = NULL;
  size_t n;

  if (spec == NULL || *spec == '\0')
    return NULL;
  if (strstr(spec, "://") == NULL) {
    if (asprintf(&full, "%s://%s", plain_http ? "http" : "https", spec) < 0)
      return NULL;
  }
  else if ((full = strdup(spec)) == NULL)
    return NULL;
  u = parse_url(full);
  if (u == NULL)
    goto done;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
      || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK
      || curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
    goto done;
  {
    char *q = NULL;

    /* No user info, query or fragment in an endpoint. */
    if (curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK
        || curl_url_get(u, CURLUPART_USER, &q, 0) == CURLUE_OK
        || curl_url_get(u, CURLUPART_FRAGMENT, &q, 0) == CURLUE_OK) {
      curl_free(q);
      goto done;
    }
  }
  if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
    port = NULL;
  n = strlen(path);
  while (n > 0 && path[n - 1] == '/')
    n--;
  {
    bool has_v2 = n >= 3 && memcmp(path + n - 3, "/v2", 3) == 0;

    if (asprintf(&out, "%s://%s%s%s%.*s%s", scheme, host, port ? ":" : "",
                 port ? port : "", (int) n, path, has_v2 ? "" : "/v2") < 0)
      out = NULL;
  }
done:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_url_cleanup(u);
  free(full);
  return out;
}
