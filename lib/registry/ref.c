/* soci-nbd: image references — Docker's reference grammar and "familiar
 * name" normalization (as distribution/reference ParseNormalizedNamed),
 * plus the oci-layout:DIR[:TAG][@DIGEST] form for local layouts.
 *
 * Grammar (registry references):
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path
 *   domain    := host [ ":" port ]   host: DNS-ish name, IPv4, "[" IPv6 "]"
 *   path      := component ( "/" component )*      at most 255 bytes
 *   component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := "sha256:" 64 lowercase hex digits (other algorithms are
 *                recognized and refused)
 * The first path component is a domain when it contains '.' or ':', is
 * "localhost", or has an upper-case letter (Docker's current rule).
 */
#include <config.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"
#include "registry/ref.h"

#define DEFAULT_DOMAIN "docker.io"
#define LEGACY_DOMAIN "index.docker.io"
#define DOCKER_API_HOST "registry-1.docker.io"
#define OFFICIAL_PREFIX "library/"
#define DEFAULT_TAG "latest"
#define LAYOUT_PREFIX "oci-layout:"
#define MAX_PATH_LEN 255
#define MAX_TAG_LEN 128
#define MAX_REF_LEN 8192
#define MAX_HOST_LEN 255   /* DNS names are at most 253 */
#define MAX_DIR_LEN 4000   /* leaves room for "/blobs/sha256/<hex>" */

static bool
is_lower_alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
is_alnum(char c)
{
  return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(char c)
{
  return c >= '0' && c <= '9';
}

static bool
is_hex(char c)
{
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool
has_upper(const char *s, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (s[i] >= 'A' && s[i] <= 'Z')
      return true;
  return false;
}

static bool
span_eq(const char *s, size_t n, const char *lit)
{
  return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )* */
static bool
valid_component(const char *s, size_t n)
{
  size_t i = 0;

  for (;;) {
    if (i == n || !is_lower_alnum(s[i]))
      return false;
    while (i < n && is_lower_alnum(s[i]))
      i++;
    if (i == n)
      return true;
    if (s[i] == '.')
      i++;
    else if (s[i] == '_')
      i += i + 1 < n && s[i + 1] == '_' ? 2 : 1;
    else if (s[i] == '-')
      while (i < n && s[i] == '-')
        i++;
    else
      return false;
  }
}

/* path := component ( "/" component )*, each checked by valid_component. */
static bool
valid_path(const char *s, size_t n)
{
  size_t i = 0, j;

  for (;;) {
    for (j = i; j < n && s[j] != '/'; j++)
      ;
    if (!valid_component(s + i, j - i))
      return false;
    if (j == n)
      return true;
    i = j + 1;
  }
}

/* tag := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} */
static bool
valid_tag(const char *s, size_t n)
{
  size_t i;

  if (n == 0 || n > MAX_TAG_LEN || !(is_alnum(s[0]) || s[0] == '_'))
    return false;
  for (i = 1; i < n; i++)
    if (!(is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
      return false;
  return true;
}

/* domain-component := [A-Za-z0-9] | [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9] */
static bool
valid_domain_component(const char *s, size_t n)
{
  size_t i;

  if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
    return false;
  for (i = 1; i + 1 < n; i++)
    if (!is_alnum(s[i]) && s[i] != '-')
      return false;
  return true;
}

/* host [":" port], host := name ("." name)* | "[" [0-9A-Fa-f:]+ "]" */
static bool
valid_domain(const char *s, size_t n)
{
  size_t i = 0, j;

  if (n > 0 && s[0] == '[') {
    for (i = 1; i < n && s[i] != ']'; i++)
      if (!is_hex(s[i]) && s[i] != ':')
        return false;
    if (i == n || i == 1)
      return false;
    i++;
  }
  else {
    for (;;) {
      for (j = i; j < n && s[j] != '.' && s[j] != ':'; j++)
        ;
      if (!valid_domain_component(s + i, j - i))
        return false;
      i = j;
      if (i == n || s[i] == ':')
        break;
      i++; /* '.' */
    }
  }
  if (i == n)
    return true;
  if (s[i] != ':' || i + 1 == n)
    return false;
  for (i++; i < n; i++)
    if (!is_digit(s[i]))
      return false;
  return true;
}

/* algorithm := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
 * Returns the algorithm's length if s starts with "algorithm:", else 0. */
static size_t
digest_algorithm_len(const char *s, size_t n)
{
  size_t i = 0;

  for (;;) {
    if (i == n || !is_alnum(s[i]) || is_digit(s[i]))
      return 0;
    while (i < n && is_alnum(s[i]))
      i++;
    if (i == n)
      return 0;
    if (s[i] == ':')
      return i;
    if (s[i] != '-' && s[i] != '_' && s[i] != '+' && s[i] != '.')
      return 0;
    i++;
  }
}

/* In an oci-layout reference, is the text after the last '@' a digest
 * rather than part of DIR?  Yes when it has no '/' and starts "sha256:",
 * or is a well-formed digest of another algorithm (refused later). */
static bool
layout_digest_like(const char *s, size_t n)
{
  size_t alen, i;

  if (memchr(s, '/', n) != NULL)
    return false;
  if (n >= 7 && memcmp(s, "sha256:", 7) == 0)
    return true;
  alen = digest_algorithm_len(s, n);
  if (alen == 0 || n - alen - 1 < 32)
    return false;
  for (i = alen + 1; i < n; i++)
    if (!is_hex(s[i]))
      return false;
  return true;
}

/* Validate and copy a digest: only "sha256:" + 64 lowercase hex. */
static int
parse_digest(const char *s, size_t n, char **out)
{
  size_t alen = digest_algorithm_len(s, n), i;

  if (alen == 0)
    return sn_set_error("invalid digest \"%.*s\"", (int) (n > 100 ? 100 : n),
                        s);
  if (!span_eq(s, alen, "sha256"))
    return sn_set_error("unsupported digest algorithm \"%.*s\" (only sha256)",
                        (int) (alen > 32 ? 32 : alen), s);
  if (n != 7 + 64)
    return sn_set_error("invalid sha256 digest: want 64 hex digits, got %zu",
                        n - 7);
  for (i = 7; i < n; i++)
    if (!(is_digit(s[i]) || (s[i] >= 'a' && s[i] <= 'f')))
      return sn_set_error("invalid sha256 digest: want lowercase hex digits");
  *out = strndup(s, n);
  return *out ? 0 : sn_oom();
}

/* *out = a malloc'd copy of s[0, n); -1 on OOM. */
static int
dup_span(const char *s, size_t n, char **out)
{
  *out = strndup(s, n);
  return *out ? 0 : sn_oom();
}

/* oci-layout:DIR[:TAG][@DIGEST].  The text after the last '@' is a digest
 * when layout_digest_like() says so; the text after the last ':' (of what
 * remains) is a tag when it matches the tag grammar (which excludes '/');
 * everything else is DIR. */
static int
parse_layout(const char *s, struct sn_ref *r)
{
  size_t n = strlen(s);
  const char *at = NULL, *colon = NULL, *p;

  r->kind = SN_REF_OCI_LAYOUT;
  for (p = s; p < s + n; p++)
    if (*p == '@')
      at = p;
  if (at != NULL && layout_digest_like(at + 1, n - (size_t) (at + 1 - s))) {
    if (parse_digest(at + 1, n - (size_t) (at + 1 - s), &r->digest) == -1)
      return -1;
    n = (size_t) (at - s);
  }
  for (p = s; p < s + n; p++)
    if (*p == ':')
      colon = p;
  if (colon != NULL && valid_tag(colon + 1, n - (size_t) (colon + 1 - s))) {
    if (dup_span(colon + 1, n - (size_t) (colon + 1 - s), &r->tag) == -1)
      return -1;
    n = (size_t) (colon - s);
  }
  if (n == 0)
    return sn_set_error("no directory (want oci-layout:DIR[:TAG])");
  if (n > MAX_DIR_LEN)
    return sn_set_error("directory name too long (more than %d bytes)",
                        MAX_DIR_LEN);
  if (dup_span(s, n, &r->layout_dir) == -1)
    return -1;
  return 0;
}

/* A registry reference (the grammar at the top): digest after '@', the
 * domain split off as Docker's splitDockerDomain does (docker.io gets
 * "library/" for one-component paths), then path and tag.  Fills r. */
static int
parse_registry(const char *s, struct sn_ref *r)
{
  size_t n = strlen(s), name_len, i, first_len;
  const char *at, *slash, *rest, *colon;
  const char *domain;
  size_t domain_len, rest_len, path_len;
  bool official = false;

  r->kind = SN_REF_REGISTRY;
  if (strstr(s, "://") != NULL)
    return sn_set_error("a URL is not an image reference "
                        "(write HOST/REPOSITORY[:TAG])");
  if (n == 64) {
    for (i = 0; i < n && (is_digit(s[i]) || (s[i] >= 'a' && s[i] <= 'f')); i++)
      ;
    if (i == n)
      return sn_set_error("cannot specify 64-byte hexadecimal strings "
                          "as a repository name");
  }

  /* name[:tag] @ digest — the name and tag cannot contain '@'. */
  at = strchr(s, '@');
  name_len = at ? (size_t) (at - s) : n;
  if (at != NULL && parse_digest(at + 1, n - name_len - 1, &r->digest) == -1)
    return -1;

  /* Domain: Docker's splitDockerDomain. */
  slash = memchr(s, '/', name_len);
  domain = DEFAULT_DOMAIN;
  domain_len = strlen(DEFAULT_DOMAIN);
  rest = s;
  rest_len = name_len;
  if (slash != NULL) {
    first_len = (size_t) (slash - s);
    if (span_eq(s, first_len, "localhost")
        || memchr(s, '.', first_len) || memchr(s, ':', first_len)
        || has_upper(s, first_len)) {
      if (!span_eq(s, first_len, LEGACY_DOMAIN)) {
        domain = s;
        domain_len = first_len;
      }
      rest = slash + 1;
      rest_len = name_len - first_len - 1;
    }
  }
  if (domain_len > MAX_HOST_LEN)
    return sn_set_error("registry host too long (more than %d characters)",
                        MAX_HOST_LEN);
  if (!valid_domain(domain, domain_len))
    return sn_set_error("invalid registry host \"%.*s\"",
                        (int) (domain_len > 256 ? 256 : domain_len), domain);

  /* path[:tag] */
  colon = memchr(rest, ':', rest_len);
  path_len = colon ? (size_t) (colon - rest) : rest_len;
  if (has_upper(rest, path_len))
    return sn_set_error("repository name must be lowercase");
  if (span_eq(domain, domain_len, DEFAULT_DOMAIN)
      && memchr(rest, '/', path_len) == NULL)
    official = true;
  if (path_len == 0)
    return sn_set_error("repository name must have at least one component");
  if (!valid_path(rest, path_len))
    return sn_set_error("invalid repository name \"%.*s\": components are "
                        "lowercase letters and digits separated by '.', "
                        "'_', '__' or '-', joined by '/'",
                        (int) (path_len > 256 ? 256 : path_len), rest);
  if (path_len + (official ? strlen(OFFICIAL_PREFIX) : 0) > MAX_PATH_LEN)
    return sn_set_error("repository name must not be more than %d characters",
                        MAX_PATH_LEN);
  if (colon != NULL) {
    size_t tag_len = rest_len - path_len - 1;

    if (!valid_tag(colon + 1, tag_len))
      return sn_set_error("invalid tag \"%.*s\": want [A-Za-z0-9_]"
                          "[A-Za-z0-9_.-]{0,127}",
                          (int) (tag_len > 160 ? 160 : tag_len), colon + 1);
    if (dup_span(colon + 1, tag_len, &r->tag) == -1)
      return -1;
  }

  if (dup_span(domain, domain_len, &r->registry) == -1)
    return -1;
  r->repository = malloc(path_len + strlen(OFFICIAL_PREFIX) + 1);
  if (r->repository == NULL)
    return sn_oom();
  snprintf(r->repository, path_len + strlen(OFFICIAL_PREFIX) + 1, "%s%.*s",
           official ? OFFICIAL_PREFIX : "", (int) path_len, rest);
  return 0;
}

/* Either form; no tag and no digest defaults the tag to "latest" (noted
 * in tag_defaulted).  On error r is cleared. */
int
sn_ref_parse(const char *s, struct sn_ref *r)
{
  size_t plen = strlen(LAYOUT_PREFIX);
  int ret;

  memset(r, 0, sizeof *r);
  if (s == NULL || *s == '\0')
    return sn_set_error("invalid image reference: empty");
  if (strlen(s) > MAX_REF_LEN)
    return sn_set_error("invalid image reference: too long (more than %d "
                        "bytes)", MAX_REF_LEN);
  if (strncmp(s, LAYOUT_PREFIX, plen) == 0)
    ret = parse_layout(s + plen, r);
  else
    ret = parse_registry(s, r);
  if (ret == -1) {
    /* The input is not quoted: a mistyped reference may carry
     * credentials ("user:pass@host/repo", URLs). */
    sn_prefix_error("invalid image reference: ");
    sn_ref_clear(r);
    return -1;
  }
  if (r->tag == NULL && r->digest == NULL) {
    r->tag = strdup(DEFAULT_TAG);
    if (r->tag == NULL) {
      sn_ref_clear(r);
      return sn_oom();
    }
    r->tag_defaulted = true;
  }
  return 0;
}

void
sn_ref_clear(struct sn_ref *r)
{
  if (r == NULL)
    return;
  free(r->registry);
  free(r->repository);
  free(r->tag);
  free(r->digest);
  free(r->layout_dir);
  memset(r, 0, sizeof *r);
}

static bool
str_eq(const char *a, const char *b)
{
  return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* Would "DIR[:TAG][@DIGEST]" be read back as other parts?  (A DIR ending
 * like ":tag" or "@sha256:…".)  Then DIR is printed with a trailing '/',
 * which names the same directory. */
static bool
layout_needs_slash(const char *text, const struct sn_ref *r, const char *tag)
{
  struct sn_ref back;
  bool same;

  memset(&back, 0, sizeof back);
  if (parse_layout(text, &back) == -1) {
    sn_ref_clear(&back);
    return true;
  }
  same = str_eq(back.layout_dir, r->layout_dir) && str_eq(back.tag, tag)
    && str_eq(back.digest, r->digest);
  sn_ref_clear(&back);
  return !same;
}

/* The canonical text; a defaulted tag is omitted for layouts, and DIR gets
 * a trailing '/' when it would otherwise parse back differently. */
char *
sn_ref_string(const struct sn_ref *r)
{
  const char *tag = r->tag, *dig = r->digest;
  char *out = NULL;
  int n;

  if (r->kind == SN_REF_OCI_LAYOUT) {
    if (r->layout_dir == NULL) {
      sn_set_error("reference has no layout directory");
      return NULL;
    }
    if (r->tag_defaulted)
      tag = NULL;
    n = asprintf(&out, "%s%s%s%s%s%s", LAYOUT_PREFIX, r->layout_dir,
                 tag ? ":" : "", tag ? tag : "",
                 dig ? "@" : "", dig ? dig : "");
    if (n >= 0 && layout_needs_slash(out + strlen(LAYOUT_PREFIX), r, tag)) {
      free(out);
      out = NULL;
      n = asprintf(&out, "%s%s/%s%s%s%s", LAYOUT_PREFIX, r->layout_dir,
                   tag ? ":" : "", tag ? tag : "",
                   dig ? "@" : "", dig ? dig : "");
    }
  }
  else {
    if (r->registry == NULL || r->repository == NULL) {
      sn_set_error("reference has no registry or repository");
      return NULL;
    }
    n = asprintf(&out, "%s/%s%s%s%s%s", r->registry, r->repository,
                 tag ? ":" : "", tag ? tag : "",
                 dig ? "@" : "", dig ? dig : "");
  }
  if (n < 0) {
    sn_oom();
    return NULL;
  }
  return out;
}

const char *
sn_ref_api_host(const struct sn_ref *r)
{
  if (r->kind != SN_REF_REGISTRY || r->registry == NULL)
    return NULL;
  if (strcmp(r->registry, DEFAULT_DOMAIN) == 0)
    return DOCKER_API_HOST;
  return r->registry;
}

/* "localhost", 127/8, ::1 or ::ffff:127.x, with or without a port
 * ("[v6]:port" for IPv6).  Anything unparsable is not loopback. */
bool
sn_ref_is_loopback(const char *host)
{
  char buf[64];
  const char *end, *port = NULL;
  size_t n;
  struct in_addr a4;
  struct in6_addr a6;
  bool bracketed = false;

  if (host == NULL || *host == '\0')
    return false;
  if (host[0] == '[') {
    bracketed = true;
    /* [v6] or [v6]:port */
    end = strchr(host, ']');
    if (end == NULL)
      return false;
    n = (size_t) (end - host - 1);
    if (end[1] == ':')
      port = end + 2;
    else if (end[1] != '\0')
      return false;
    host++;
  }
  else {
    end = strchr(host, ':');
    if (end != NULL && strchr(end + 1, ':') != NULL) {
      /* More than one ':' without brackets: a bare IPv6 address. */
      n = strlen(host);
    }
    else {
      n = end ? (size_t) (end - host) : strlen(host);
      if (end != NULL)
        port = end + 1;
    }
  }
  if (port != NULL) {
    if (*port == '\0')
      return false;
    for (; *port; port++)
      if (!is_digit(*port))
        return false;
  }
  if (n == 0 || n >= sizeof buf)
    return false;
  memcpy(buf, host, n);
  buf[n] = '\0';
  if (strcasecmp(buf, "localhost") == 0)
    return true;
  if (!bracketed && inet_pton(AF_INET, buf, &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, buf, &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&a6)
      || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
  return false;
}
