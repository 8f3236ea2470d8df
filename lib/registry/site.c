/* soci-nbd: same-site test for token realms (site.h). */
#include <config.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libpsl.h>

#include "registry/http.h"
#include "registry/site.h"

static const psl_ctx_t *psl;
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;

/* The distribution's list (kept current by its publicsuffix package),
 * else the one built into libpsl. */
static void
psl_init(void)
{
  psl = psl_latest(NULL);
  if (psl == NULL)
    psl = psl_builtin();
}

/* The lowercased host of url, without IPv6 brackets; malloc'd. */
static char *
bare_host(const char *url)
{
  char *h = sn_http_url_hostname(url), *p;
  size_t n;

  if (h == NULL)
    return NULL;
  n = strlen(h);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
    memmove(h, h + 1, n - 2);
    h[n - 2] = '\0';
  }
  for (p = h; *p; p++)
    *p = (char) tolower((unsigned char) *p);
  return h;
}

static bool
is_ip_literal(const char *h)
{
  unsigned char buf[16];

  return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Same host, or (neither an IP literal) the same registrable domain by
 * the public suffix list.  Unparsable URLs or no list: not the same. */
bool
sn_site_same(const char *url_a, const char *url_b)
{
  char *a = bare_host(url_a), *b = bare_host(url_b);
  const char *da, *db;
  bool same = false;

  if (a == NULL || b == NULL || *a == '\0' || *b == '\0')
    goto out;
  if (strcmp(a, b) == 0) {
    same = true;
    goto out;
  }
  if (is_ip_literal(a) || is_ip_literal(b))
    goto out;
  pthread_once(&psl_once, psl_init);
  if (psl == NULL)
    goto out;
  da = psl_registrable_domain(psl, a);
  db = psl_registrable_domain(psl, b);
  same = da && db && strcmp(da, db) == 0;
out:
  free(a);
  free(b);
  return same;
}
