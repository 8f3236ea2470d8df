/* soci-nbd: WWW-Authenticate parsing (RFC 7235, see auth.h): a header
 * value into its challenges, each a scheme with a token68 or auth-params,
 * and the look-up of a parameter by name.  Used by the authenticator in
 * auth.c.
 */
#include <config.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry/auth.h"
#include "registry/auth-int.h"
#include "util/err.h"

/* ---- WWW-Authenticate -------------------------------------------------- */

static bool
is_tchar(char c)
{
  return isalnum((unsigned char) c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The length of the RFC 7230 token at p (0 if none). */
static size_t
token_len(const char *p)
{
  size_t n = 0;

  while (is_tchar(p[n]))
    n++;
  return n;
}

/* The length of the token68 at p, with its trailing '=' padding (0 if
 * none). */
static size_t
token68_len(const char *p)
{
  size_t n = 0;

  while (isalnum((unsigned char) p[n]) || (p[n] && strchr("-._~+/", p[n])))
    n++;
  if (n == 0)
    return 0;
  while (p[n] == '=')
    n++;
  return n;
}

static const char *
ws(const char *p)
{
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

/* A quoted-string at p (which points at '"'); *end after it.  NULL on
 * error, with *end NULL when unterminated (else out of memory). */
static char *
quoted(const char *p, const char **end)
{
  size_t n = 0, cap = strlen(p);
  char *d = malloc(cap + 1);

  *end = p;                     /* non-NULL: the caller reports OOM */
  if (d == NULL)
    return NULL;
  p++;
  while (*p && *p != '"') {
    if (*p == '\\' && p[1])
      p++;
    d[n++] = *p++;
  }
  if (*p != '"') {
    free(d);
    *end = NULL;
    return NULL;
  }
  d[n] = '\0';
  *end = p + 1;
  return d;
}

/* Free n challenges from sn_auth_parse_challenges; c may be NULL. */
void
sn_auth_challenges_free(struct sn_auth_challenge *c, size_t n)
{
  size_t i, j;

  if (c == NULL)
    return;
  for (i = 0; i < n; i++) {
    free(c[i].scheme);
    free(c[i].token68);
    for (j = 0; j < c[i].nparams; j++) {
      free(c[i].params[j].name);
      free(c[i].params[j].value);
    }
    free(c[i].params);
  }
  free(c);
}

/* parse_params' result: success, or which of the caller's exits to take. */
enum parse_result { PARSE_OK, PARSE_BAD, PARSE_OOM };

/* The rest of challenge c after its scheme, from *pp: a token68 or
 * auth-params, stopping where the next challenge starts (*pp left there).
 * What c holds on failure is freed with the caller's array. */
static enum parse_result
parse_params(struct sn_auth_challenge *c, const char **pp)
{
  const char *p = *pp;
  bool first = true;
  size_t k;

  for (;;) {
    const char *save = p, *q, *v, *after;
    struct sn_auth_param *np;
    char *name, *value;

    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p == '\0')
      break;
    if (first && *save != ',') {
      size_t m = token68_len(p);

      after = ws(p + m);
      if (m > 0 && (*after == ',' || *after == '\0')
          && !(p[m - 1] != '=' && memchr(p, '=', m))) {
        c->token68 = sn_auth_dup_n(p, m);
        if (c->token68 == NULL)
          return PARSE_OOM;
        p = after;
        break;                  /* nothing else belongs to it */
      }
    }
    k = token_len(p);
    q = ws(p + k);
    if (k == 0 || *q != '=') {
      p = save;                 /* the next challenge starts here */
      break;
    }
    v = ws(q + 1);
    if (*v == '"') {
      value = quoted(v, &after);
      if (value == NULL) {
        if (after == NULL)
          return PARSE_BAD;
        return PARSE_OOM;
      }
    }
    else {
      size_t m = token_len(v);

      value = sn_auth_dup_n(v, m);
      if (value == NULL)
        return PARSE_OOM;
      after = v + m;
    }
    name = sn_auth_lower_dup(p, k);
    np = name ? realloc(c->params, (c->nparams + 1) * sizeof *np) : NULL;
    if (np == NULL) {
      free(name);
      free(value);
      return PARSE_OOM;
    }
    c->params = np;
    np[c->nparams].name = name;
    np[c->nparams].value = value;
    c->nparams++;
    first = false;
    p = ws(after);
    if (*p && *p != ',' && !is_tchar(*p))
      return PARSE_BAD;
  }
  *pp = p;
  return PARSE_OK;
}

/* Parse a WWW-Authenticate value into a malloc'd array of challenges
 * (see auth.h).  0, or -1 on a malformed header or OOM. */
int
sn_auth_parse_challenges(const char *hdr, struct sn_auth_challenge **out,
                         size_t *nout)
{
  struct sn_auth_challenge *cs = NULL, *c;
  size_t n = 0;
  const char *p = hdr ? hdr : "";

  *out = NULL;
  *nout = 0;
  for (;;) {
    size_t k;
    struct sn_auth_challenge *ncs;

    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p == '\0')
      break;
    k = token_len(p);
    if (k == 0)
      goto bad;
    ncs = realloc(cs, (n + 1) * sizeof *cs);
    if (ncs == NULL)
      goto oom;
    cs = ncs;
    c = &cs[n++];
    memset(c, 0, sizeof *c);
    c->scheme = sn_auth_lower_dup(p, k);
    if (c->scheme == NULL)
      goto oom;
    p += k;
    if (*p && *p != ' ' && *p != '\t' && *p != ',')
      goto bad;

    switch (parse_params(c, &p)) {
    case PARSE_OK:
      break;
    case PARSE_BAD:
      goto bad;
    case PARSE_OOM:
      goto oom;
    }
  }
  *out = cs;
  *nout = n;
  return 0;

bad:
  sn_auth_challenges_free(cs, n);
  return sn_set_error("malformed WWW-Authenticate header");
oom:
  sn_auth_challenges_free(cs, n);
  return sn_oom();
}

/* The value of a challenge parameter, name case-insensitive, or NULL. */
const char *
sn_auth_challenge_param(const struct sn_auth_challenge *c, const char *name)
{
  size_t i;

  for (i = 0; i < c->nparams; i++)
    if (strcasecmp(c->params[i].name, name) == 0)
      return c->params[i].value;
  return NULL;
}
