/* soci-nbd: platforms and index selection — "os/arch[/variant]" strings,
 * the host's platform, containerd's matching rules (simplified) and the
 * choice of an image manifest from an index (see manifest.h).  Parsing
 * the documents and their descriptors' platforms is in manifest.c.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "util/err.h"
#include "registry/manifest.h"
#include "registry/manifest-int.h"

/* ---- platforms -------------------------------------------------------- */

/* One os/arch/variant part of a command-line platform: 1..64 of
 * [A-Za-z0-9_.-]. */
static bool
valid_platform_part(const char *s, size_t n)
{
  size_t i;

  if (n == 0 || n > 64)
    return false;
  for (i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
          || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.'
          || s[i] == '-'))
      return false;
  return true;
}

/* A malloc'd, lower-cased copy of the n bytes at s; NULL (OOM set) on
 * failure. */
static char *
lower_dup(const char *s, size_t n)
{
  char *d = malloc(n + 1);
  size_t i;

  if (d == NULL) {
    sn_oom();
    return NULL;
  }
  for (i = 0; i < n; i++)
    d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char) (s[i] - 'A' + 'a') : s[i];
  d[n] = '\0';
  return d;
}

/* Two or three valid parts separated by "/", each copied lower-cased into
 * p; on error p is left empty (a malformed string's message shows the
 * expected form). */
int
sn_platform_parse(const char *s, struct sn_platform *p)
{
  const char *part[3];
  size_t len[3], np = 0;
  const char *q = s, *slash;

  memset(p, 0, sizeof *p);
  if (s == NULL)
    return sn_set_error("invalid platform: empty");
  for (;;) {
    slash = strchr(q, '/');
    if (np == 3)
      goto bad;
    part[np] = q;
    len[np] = slash ? (size_t) (slash - q) : strlen(q);
    if (!valid_platform_part(part[np], len[np]))
      goto bad;
    np++;
    if (slash == NULL)
      break;
    q = slash + 1;
  }
  if (np < 2)
    goto bad;
  p->os = lower_dup(part[0], len[0]);
  p->architecture = lower_dup(part[1], len[1]);
  if (np == 3)
    p->variant = lower_dup(part[2], len[2]);
  if (p->os == NULL || p->architecture == NULL
      || (np == 3 && p->variant == NULL)) {
    sn_platform_clear(p);
    return -1;
  }
  return 0;

bad:
  sn_set_error("invalid platform \"%.100s\": want os/arch[/variant], "
               "e.g. linux/arm64/v8", s);
  return -1;
}

/* uname(2)'s machine mapped to OCI architecture and variant names; an
 * unknown machine is passed through as the architecture. */
int
sn_platform_host(struct sn_platform *p)
{
  static const struct {
    const char *machine, *arch, *variant;
  } map[] = {
    { "x86_64", "amd64", NULL },   { "amd64", "amd64", NULL },
    { "aarch64", "arm64", "v8" },  { "arm64", "arm64", "v8" },
    { "armv8l", "arm", "v8" },     { "armv7l", "arm", "v7" },
    { "armv7", "arm", "v7" },      { "armv6l", "arm", "v6" },
    { "armv5tel", "arm", "v5" },   { "i686", "386", NULL },
    { "i586", "386", NULL },       { "i486", "386", NULL },
    { "i386", "386", NULL },       { "ppc64le", "ppc64le", NULL },
    { "ppc64", "ppc64", NULL },    { "s390x", "s390x", NULL },
    { "riscv64", "riscv64", NULL }, { "loongarch64", "loong64", NULL },
    { "mips64", "mips64", NULL },
  };
  struct utsname u;
  const char *arch, *variant = NULL;
  size_t i;

  memset(p, 0, sizeof *p);
  if (uname(&u) == -1)
    return sn_set_error("uname: %m");
  arch = u.machine;
  for (i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(u.machine, map[i].machine) == 0) {
      arch = map[i].arch;
      variant = map[i].variant;
      break;
    }
  p->os = lower_dup(u.sysname, strlen(u.sysname));
  p->architecture = sn_manifest_dup_str(arch);
  if (variant != NULL)
    p->variant = sn_manifest_dup_str(variant);
  if (p->os == NULL || p->architecture == NULL
      || (variant != NULL && p->variant == NULL)) {
    sn_platform_clear(p);
    return -1;
  }
  return 0;
}

static bool
ieq(const char *a, const char *b)
{
  return strcasecmp(a, b) == 0;
}

/* containerd's normalizeArch, with pointers to literals or the input. */
static void
normalize_arch(const char *arch, const char *variant, const char **a,
               const char **v)
{
  *a = arch;
  *v = variant ? variant : "";
  if (ieq(arch, "i386")) {
    *a = "386";
    *v = "";
  }
  else if (ieq(arch, "x86_64") || ieq(arch, "x86-64") || ieq(arch, "amd64")) {
    *a = "amd64";
    if (ieq(*v, "v1"))
      *v = "";
  }
  else if (ieq(arch, "aarch64") || ieq(arch, "arm64")) {
    *a = "arm64";
    if (ieq(*v, "8") || ieq(*v, "v8"))
      *v = "";
  }
  else if (ieq(arch, "armhf")) {
    *a = "arm";
    *v = "v7";
  }
  else if (ieq(arch, "armel")) {
    *a = "arm";
    *v = "v6";
  }
  else if (ieq(arch, "arm")) {
    if (ieq(*v, "") || ieq(*v, "7"))
      *v = "v7";
    else if (ieq(*v, "5"))
      *v = "v5";
    else if (ieq(*v, "6"))
      *v = "v6";
    else if (ieq(*v, "8"))
      *v = "v8";
  }
}

static const char *
normalize_os(const char *os)
{
  return ieq(os, "macos") ? "darwin" : os;
}

/* "vN" with 1 <= N <= 99 → N, else -1. */
static int
arm_version(const char *v)
{
  if ((v[0] == 'v' || v[0] == 'V') && v[1] >= '1' && v[1] <= '9') {
    if (v[2] == '\0')
      return v[1] - '0';
    if (v[2] >= '0' && v[2] <= '9' && v[3] == '\0')
      return (v[1] - '0') * 10 + (v[2] - '0');
  }
  return -1;
}

/* How well have serves want: -1 no, 0 exactly, larger = less preferred.
 *   - os and architecture must be equal after normalization;
 *   - equal variants (arm64 "" = "v8", arm "" = "v7", amd64 "" = "v1")
 *     score 0;
 *   - a want without a variant accepts any variant (score 1), except for
 *     arm where no variant means v7;
 *   - arm/vN accepts arm/vM for 5 <= M < N (score 1 + N - M), as
 *     containerd's platforms.Only does. */
static int
platform_score(const struct sn_platform *want, const struct sn_platform *have)
{
  const char *wa, *wv, *ha, *hv;
  int wn, hn;

  if (want->os == NULL || want->architecture == NULL || have->os == NULL
      || have->architecture == NULL)
    return -1;
  if (!ieq(normalize_os(want->os), normalize_os(have->os)))
    return -1;
  normalize_arch(want->architecture, want->variant, &wa, &wv);
  normalize_arch(have->architecture, have->variant, &ha, &hv);
  if (!ieq(wa, ha))
    return -1;
  if (ieq(wv, hv))
    return 0;
  if (strcmp(wa, "arm") != 0
      && (want->variant == NULL || *want->variant == '\0'))
    return 1;
  if (strcmp(wa, "arm") == 0) {
    wn = arm_version(wv);
    hn = arm_version(hv);
    if (wn > 0 && hn >= 5 && hn < wn)
      return 1 + wn - hn;
  }
  return -1;
}

bool
sn_platform_matches(const struct sn_platform *want,
                    const struct sn_platform *have)
{
  return platform_score(want, have) >= 0;
}

/* ---- selection -------------------------------------------------------- */

static bool
is_image_manifest_type(const char *mt)
{
  return strcmp(mt, SN_MT_OCI_MANIFEST) == 0
    || strcmp(mt, SN_MT_DOCKER_MANIFEST) == 0;
}

/* Index entries that are images: not artifacts (SOCI indexes carry an
 * artifactType), not attestations (buildx marks them with an annotation
 * and platform unknown/unknown). */
static bool
is_image_entry(const struct sn_descriptor *d)
{
  if (!is_image_manifest_type(d->media_type) || d->artifact_type != NULL)
    return false;
  if (sn_annotation_get(d->annotations, d->nannotations,
                        "vnd.docker.reference.type") != NULL)
    return false;
  if (d->platform != NULL && strcmp(d->platform->os, "unknown") == 0
      && strcmp(d->platform->architecture, "unknown") == 0)
    return false;
  return true;
}

static int
format_platform(char *buf, size_t sz, const struct sn_platform *p)
{
  return snprintf(buf, sz, "%.40s/%.40s%s%.40s", p->os, p->architecture,
                  p->variant ? "/" : "", p->variant ? p->variant : "");
}

/* Is item one of the ", "-separated items of list? */
static bool
list_has(const char *list, const char *item)
{
  size_t n = strlen(item);
  const char *p = list;

  while ((p = strstr(p, item)) != NULL) {
    if ((p == list || (p >= list + 2 && p[-2] == ',' && p[-1] == ' '))
        && (p[n] == '\0' || (p[n] == ',' && p[n + 1] == ' ')))
      return true;
    p++;
  }
  return false;
}

/* Lowest platform_score wins, earlier entries on ties; the error lists the
 * platforms on offer (at most about 600 bytes of them). */
const struct sn_descriptor *
sn_manifest_select(const struct sn_manifest *index,
                   const struct sn_platform *want)
{
  const struct sn_descriptor *best = NULL;
  char avail[640], one[130], w[130];
  size_t i, used = 0;
  int best_score = -1, s;
  bool truncated = false;

  if (index == NULL || !index->is_index) {
    sn_set_error("not an index: cannot select a platform");
    return NULL;
  }
  if (want == NULL || want->os == NULL || want->architecture == NULL) {
    sn_set_error("no platform to select");
    return NULL;
  }
  for (i = 0; i < index->nmanifests; i++) {
    const struct sn_descriptor *d = &index->manifests[i];

    if (!is_image_entry(d))
      continue;
    /* An entry without a platform matches anything, least preferred
     * (containerd treats a missing platform as a match). */
    s = d->platform ? platform_score(want, d->platform) : 1000;
    if (s >= 0 && (best == NULL || s < best_score)) {
      best = d;
      best_score = s;
    }
  }
  if (best != NULL)
    return best;

  /* The error lists the image platforms the index offers, each once
   * (checked against the bounded list itself, so this stays linear). */
  avail[0] = '\0';
  for (i = 0; i < index->nmanifests; i++) {
    const struct sn_descriptor *d = &index->manifests[i];

    if (!is_image_entry(d) || d->platform == NULL)
      continue;
    format_platform(one, sizeof one, d->platform);
    if (list_has(avail, one))
      continue;
    if (used + strlen(one) + 2 >= sizeof avail - 8) {
      truncated = true;
      break;
    }
    used += (size_t) snprintf(avail + used, sizeof avail - used, "%s%s",
                              used ? ", " : "", one);
  }
  format_platform(w, sizeof w, want);
  sn_set_error("no manifest for %s in index; available: %s%s", w,
               used ? avail : "none", truncated ? ", ..." : "");
  return NULL;
}
