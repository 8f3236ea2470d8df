/* soci-nbd fuzzing: the HTTP response header values a registry, mirror or
 * redirect target controls — Content-Range, Retry-After, Location (resolved
 * against the request URL) — and the URL helpers applied to what comes
 * back (origin and site comparison, host, redaction).  The input is split
 * at NUL bytes into up to three strings: a header value, a base URL, and a
 * second URL.  Results must hold their documented invariants. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registry/http.h"
#include "registry/site.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_url_helpers(const char *u, const char *v)
{
  char *h = sn_http_url_host(u), *r = sn_http_redact(u);

  /* Redaction leaves no query or fragment (where signatures live). */
  if (r && (strchr(r, '?') || strchr(r, '#')))
    abort();
  free(h);
  free(r);
  if (sn_http_same_origin(u, v) != sn_http_same_origin(v, u))
    abort();
  if (sn_site_same(u, v) != sn_site_same(v, u))
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *buf = malloc(size + 3), *parts[3];
  size_t i, k = 0;
  int64_t start, end, total, wait;
  char *next;

  if (buf == NULL)
    return 0;
  memcpy(buf, data, size);
  buf[size] = buf[size + 1] = buf[size + 2] = '\0';
  parts[0] = buf;
  for (i = 0; i < size && k < 2; i++)
    if (buf[i] == '\0')
      parts[++k] = buf + i + 1;
  while (k < 2)
    parts[++k] = buf + size + 1;

  if (sn_http_parse_content_range(parts[0], &start, &end, &total) == 0) {
    if (start < 0 || end < start || (total >= 0 && end >= total))
      abort();
  }
  wait = sn_http_parse_retry_after(parts[0], (time_t) 1700000000);
  if (wait < -1)
    abort();

  next = sn_http_resolve(parts[1], parts[0]);
  if (next) {
    /* A resolved redirect target is absolute http(s). */
    if (strncmp(next, "http://", 7) != 0 && strncmp(next, "https://", 8) != 0)
      abort();
    check_url_helpers(next, parts[1]);
    free(next);
  }
  check_url_helpers(parts[1], parts[2]);
  free(sn_http_api_base(parts[0], parts[2][0] & 1));
  free(buf);
  return 0;
}
