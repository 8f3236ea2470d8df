/* soci-nbd: OCI / Docker manifests and indexes — parsing into struct
 * sn_manifest with validated descriptors, platform matching and selection
 * (containerd's rules, simplified), layer media type classification.
 *
 * Parsing is strict where a lax parser could be fooled: duplicate JSON
 * keys, a document that is both a manifest and an index, descriptors
 * without mediaType/digest/size, and non-sha256 digests are refused.
 */
#include <config.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "util/digest.h"
#include "util/err.h"
#include "registry/manifest.h"

#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED \
  "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define SCHEMA1_MSG "Docker schema1 manifests are not supported"
#define MT_MAX 255 /* RFC 6838: 127 + "/" + 127 */

/* ---- small helpers ---------------------------------------------------- */

/* strdup that sets the error on OOM. */
static char *
dup_str(const char *s)
{
  char *d = strdup(s);

  if (d == NULL)
    sn_oom();
  return d;
}

/* RFC 6838 restricted-name "/" restricted-name (the image-spec rule). */
static bool
valid_media_type(const char *s)
{
  size_t i, part = 0;
  int slashes = 0;

  for (i = 0; s[i]; i++) {
    char c = s[i];

    if (c == '/') {
      if (part == 0 || ++slashes > 1)
        return false;
      part = 0;
      continue;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
      ;
    else if (part == 0 || strchr("!#$&^_.+-", c) == NULL)
      return false;
    if (++part > 127)
      return false;
  }
  return slashes == 1 && part > 0;
}

/* A descriptor digest: "sha256:" + 64 lowercase hex; other well-formed
 * algorithms get their own message. */
static int
check_digest(const char *s)
{
  uint8_t d[SN_SHA256_LEN];
  const char *colon = strchr(s, ':');
  size_t i;

  if (sn_digest_parse(s, strlen(s), d) == 0)
    return 0;
  if (colon != NULL && colon != s && strncmp(s, "sha256:", 7) != 0) {
    for (i = 0; s + i < colon; i++)
      if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
            || strchr("+._-", s[i]) != NULL))
        break;
    if (s + i == colon)
      return sn_set_error("unsupported digest algorithm \"%.*s\" "
                          "(only sha256)",
                          (int) (i > 32 ? 32 : i), s);
  }
  return sn_set_error("invalid digest \"%.80s\": want sha256:<64 lowercase "
                      "hex digits>", s);
}

/* Optional string member: 0 with *out NULL when absent. */
static int
opt_string(json_t *obj, const char *key, char **out)
{
  json_t *v = json_object_get(obj, key);

  *out = NULL;
  if (v == NULL)
    return 0;
  if (!json_is_string(v))
    return sn_set_error("%s: must be a string", key);
  *out = dup_str(json_string_value(v));
  return *out ? 0 : -1;
}

/* Required non-empty string member; -1 naming the key otherwise. */
static int
req_string(json_t *obj, const char *key, char **out)
{
  if (opt_string(obj, key, out) == -1)
    return -1;
  if (*out == NULL)
    return sn_set_error("%s: missing", key);
  if (**out == '\0')
    return sn_set_error("%s: empty", key);
  return 0;
}

/* ---- annotations ------------------------------------------------------ */

static void
annotations_free(struct sn_annotation *a, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    free(a[i].key);
    free(a[i].value);
  }
  free(a);
}

static int
cmp_annotation(const void *x, const void *y)
{
  const struct sn_annotation *a = x, *b = y;

  return strcmp(a->key, b->key);
}

/* The "annotations" object as an array sorted by key (for
 * sn_annotation_get); absent or empty gives n = 0, values must be
 * strings. */
static int
parse_annotations(json_t *obj, struct sn_annotation **out, size_t *nout)
{
  json_t *a = json_object_get(obj, "annotations"), *v;
  struct sn_annotation *arr;
  const char *key;
  size_t n = 0;

  *out = NULL;
  *nout = 0;
  if (a == NULL)
    return 0;
  if (!json_is_object(a))
    return sn_set_error("annotations: must be an object");
  if (json_object_size(a) == 0)
    return 0;
  arr = calloc(json_object_size(a), sizeof *arr);
  if (arr == NULL)
    return sn_oom();
  json_object_foreach(a, key, v) {
    if (!json_is_string(v)) {
      annotations_free(arr, n);
      return sn_set_error("annotations: value of \"%.100s\" must be a string",
                          key);
    }
    arr[n].key = dup_str(key);
    arr[n].value = dup_str(json_string_value(v));
    n++;
    if (arr[n - 1].key == NULL || arr[n - 1].value == NULL) {
      annotations_free(arr, n);
      return -1;
    }
  }
  qsort(arr, n, sizeof *arr, cmp_annotation);
  *out = arr;
  *nout = n;
  return 0;
}

/* Binary search of a key-sorted array (as parse_annotations leaves it). */
const char *
sn_annotation_get(const struct sn_annotation *a, size_t n, const char *key)
{
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(key, a[mid].key);

    if (c == 0)
      return a[mid].value;
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

/* ---- platforms -------------------------------------------------------- */

void
sn_platform_clear(struct sn_platform *p)
{
  if (p == NULL)
    return;
  free(p->os);
  free(p->architecture);
  free(p->variant);
  p->os = p->architecture = p->variant = NULL;
}

/* A descriptor's optional "platform" (os and architecture required; an
 * empty variant is none); *out is malloc'd, NULL when absent. */
static int
parse_platform(json_t *obj, struct sn_platform **out)
{
  json_t *j = json_object_get(obj, "platform");
  struct sn_platform *p;

  *out = NULL;
  if (j == NULL)
    return 0;
  if (!json_is_object(j))
    return sn_set_error("platform: must be an object");
  p = calloc(1, sizeof *p);
  if (p == NULL)
    return sn_oom();
  if (req_string(j, "os", &p->os) == -1
      || req_string(j, "architecture", &p->architecture) == -1
      || opt_string(j, "variant", &p->variant) == -1) {
    sn_prefix_error("platform: ");
    sn_platform_clear(p);
    free(p);
    return -1;
  }
  if (p->variant != NULL && *p->variant == '\0') {
    free(p->variant);
    p->variant = NULL;
  }
  *out = p;
  return 0;
}

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
  p->architecture = dup_str(arch);
  if (variant != NULL)
    p->variant = dup_str(variant);
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

/* ---- descriptors ------------------------------------------------------ */

static void
descriptor_clear(struct sn_descriptor *d)
{
  free(d->media_type);
  free(d->digest);
  free(d->artifact_type);
  if (d->platform != NULL) {
    sn_platform_clear(d->platform);
    free(d->platform);
  }
  annotations_free(d->annotations, d->nannotations);
  memset(d, 0, sizeof *d);
}

/* Validate one descriptor and copy it into d: mediaType, sha256 digest
 * and size are required; urls are checked but not kept.  On error d is
 * cleared. */
static int
parse_descriptor(json_t *j, struct sn_descriptor *d)
{
  json_t *size, *urls;
  size_t i;

  memset(d, 0, sizeof *d);
  if (!json_is_object(j))
    return sn_set_error("must be an object");
  if (req_string(j, "mediaType", &d->media_type) == -1)
    goto err;
  if (!valid_media_type(d->media_type)) {
    sn_set_error("mediaType: invalid \"%.100s\"", d->media_type);
    goto err;
  }
  if (req_string(j, "digest", &d->digest) == -1)
    goto err;
  if (check_digest(d->digest) == -1) {
    sn_prefix_error("digest: ");
    goto err;
  }
  size = json_object_get(j, "size");
  if (size == NULL) {
    sn_set_error("size: missing");
    goto err;
  }
  if (!json_is_integer(size) || json_integer_value(size) < 0) {
    sn_set_error("size: must be an integer >= 0");
    goto err;
  }
  d->size = (int64_t) json_integer_value(size);
  if (opt_string(j, "artifactType", &d->artifact_type) == -1)
    goto err;
  if (d->artifact_type != NULL && !valid_media_type(d->artifact_type)) {
    sn_set_error("artifactType: invalid \"%.100s\"", d->artifact_type);
    goto err;
  }
  urls = json_object_get(j, "urls");
  if (urls != NULL) {
    if (!json_is_array(urls)) {
      sn_set_error("urls: must be an array of strings");
      goto err;
    }
    for (i = 0; i < json_array_size(urls); i++)
      if (!json_is_string(json_array_get(urls, i))) {
        sn_set_error("urls: must be an array of strings");
        goto err;
      }
  }
  if (parse_platform(j, &d->platform) == -1
      || parse_annotations(j, &d->annotations, &d->nannotations) == -1)
    goto err;
  return 0;

err:
  descriptor_clear(d);
  return -1;
}

/* The required array member key as malloc'd descriptors; on error the
 * message names the element and nothing is kept. */
static int
parse_descriptor_array(json_t *root, const char *key,
                       struct sn_descriptor **out, size_t *nout)
{
  json_t *arr = json_object_get(root, key);
  struct sn_descriptor *d;
  size_t i, n;

  *out = NULL;
  *nout = 0;
  if (arr == NULL)
    return sn_set_error("%s: missing", key);
  if (!json_is_array(arr))
    return sn_set_error("%s: must be an array", key);
  n = json_array_size(arr);
  if (n == 0)
    return 0;
  d = calloc(n, sizeof *d);
  if (d == NULL)
    return sn_oom();
  for (i = 0; i < n; i++)
    if (parse_descriptor(json_array_get(arr, i), &d[i]) == -1) {
      sn_prefix_error("%s[%zu]: ", key, i);
      while (i > 0)
        descriptor_clear(&d[--i]);
      free(d);
      return -1;
    }
  *out = d;
  *nout = n;
  return 0;
}

/* ---- documents -------------------------------------------------------- */

void
sn_manifest_free(struct sn_manifest *m)
{
  size_t i;

  if (m == NULL)
    return;
  free(m->media_type);
  free(m->digest);
  free(m->raw);
  descriptor_clear(&m->config);
  for (i = 0; i < m->nlayers; i++)
    descriptor_clear(&m->layers[i]);
  free(m->layers);
  if (m->subject != NULL) {
    descriptor_clear(m->subject);
    free(m->subject);
  }
  free(m->artifact_type);
  for (i = 0; i < m->nmanifests; i++)
    descriptor_clear(&m->manifests[i]);
  free(m->manifests);
  annotations_free(m->annotations, m->nannotations);
  free(m);
}

/* A Content-Type value without parameters or surrounding blanks, matched
 * case-insensitively against the types we know; NULL if not one. */
static const char *
known_content_type(const char *ct)
{
  static const char *const known[] = {
    SN_MT_OCI_MANIFEST, SN_MT_OCI_INDEX, SN_MT_DOCKER_MANIFEST,
    SN_MT_DOCKER_LIST, MT_DOCKER_SCHEMA1, MT_DOCKER_SCHEMA1_SIGNED,
  };
  size_t n, i;

  if (ct == NULL)
    return NULL;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  n = strcspn(ct, ";");
  while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  for (i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strlen(known[i]) == n && strncasecmp(ct, known[i], n) == 0)
      return known[i];
  return NULL;
}

/* Content types that say nothing about the document's kind. */
static bool
generic_content_type(const char *ct)
{
  size_t n;

  if (ct == NULL)
    return true;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  n = strcspn(ct, "; \t");
  return n == 0
    || (n == 16 && strncasecmp(ct, "application/json", n) == 0)
    || (n == 24 && strncasecmp(ct, "application/octet-stream", n) == 0)
    || (n == 10 && strncasecmp(ct, "text/plain", n) == 0);
}

static bool
is_schema1(const char *mt)
{
  return strcmp(mt, MT_DOCKER_SCHEMA1) == 0
    || strcmp(mt, MT_DOCKER_SCHEMA1_SIGNED) == 0;
}

/* Decide the document's media type: its own mediaType, else a known
 * Content-Type, else inferred from its shape.  Sets m->media_type and
 * m->is_index. */
static int
resolve_media_type(json_t *root, const char *content_type,
                   struct sn_manifest *m)
{
  json_t *jmt = json_object_get(root, "mediaType");
  json_t *sv = json_object_get(root, "schemaVersion");
  const char *mt = NULL, *ct = known_content_type(content_type);
  bool has_manifests = json_object_get(root, "manifests") != NULL;
  bool has_config = json_object_get(root, "config") != NULL
    || json_object_get(root, "layers") != NULL;

  if (jmt != NULL) {
    if (!json_is_string(jmt))
      return sn_set_error("mediaType: must be a string");
    mt = json_string_value(jmt);
  }
  if ((sv != NULL && json_is_integer(sv) && json_integer_value(sv) == 1)
      || (mt != NULL && is_schema1(mt))
      || (mt == NULL && ct != NULL && is_schema1(ct)))
    return sn_set_error(SCHEMA1_MSG);
  if (sv == NULL)
    return sn_set_error("schemaVersion: missing");
  if (!json_is_integer(sv) || json_integer_value(sv) != 2)
    return sn_set_error("schemaVersion: unsupported (want 2)");

  if (mt == NULL && ct != NULL)
    mt = ct;
  if (mt == NULL) {
    if (content_type != NULL && !generic_content_type(content_type))
      return sn_set_error("unsupported media type \"%.100s\" (no mediaType "
                          "in the document)", content_type);
    if (has_manifests && !has_config)
      mt = SN_MT_OCI_INDEX;
    else if (has_config && !has_manifests)
      mt = SN_MT_OCI_MANIFEST;
    else
      return sn_set_error("no mediaType, and the document is neither an "
                          "image manifest nor an index");
  }
  if (strcmp(mt, SN_MT_OCI_INDEX) == 0 || strcmp(mt, SN_MT_DOCKER_LIST) == 0)
    m->is_index = true;
  else if (strcmp(mt, SN_MT_OCI_MANIFEST) == 0
           || strcmp(mt, SN_MT_DOCKER_MANIFEST) == 0)
    m->is_index = false;
  else
    return sn_set_error("unsupported media type \"%.100s\" (want an OCI or "
                        "Docker schema2 image manifest or index)", mt);
  if (m->is_index && has_config)
    return sn_set_error("an index must not have \"config\" or \"layers\"");
  if (!m->is_index && has_manifests)
    return sn_set_error("an image manifest must not have \"manifests\"");
  m->media_type = dup_str(mt);
  return m->media_type ? 0 : -1;
}

/* Fill m from the JSON root: media type, subject, annotations, then the
 * manifests of an index or the config and layers of a manifest. */
static int
parse_document(json_t *root, const char *content_type, struct sn_manifest *m)
{
  json_t *j;

  if (!json_is_object(root))
    return sn_set_error("not a JSON object");
  if (resolve_media_type(root, content_type, m) == -1)
    return -1;
  if (opt_string(root, "artifactType", &m->artifact_type) == -1)
    return -1;
  if (m->artifact_type != NULL && !valid_media_type(m->artifact_type))
    return sn_set_error("artifactType: invalid \"%.100s\"", m->artifact_type);
  j = json_object_get(root, "subject");
  if (j != NULL) {
    m->subject = calloc(1, sizeof *m->subject);
    if (m->subject == NULL)
      return sn_oom();
    if (parse_descriptor(j, m->subject) == -1)
      return sn_prefix_error("subject: ");
  }
  if (parse_annotations(root, &m->annotations, &m->nannotations) == -1)
    return -1;
  if (m->is_index)
    return parse_descriptor_array(root, "manifests", &m->manifests,
                                  &m->nmanifests);
  j = json_object_get(root, "config");
  if (j == NULL)
    return sn_set_error("config: missing");
  if (parse_descriptor(j, &m->config) == -1)
    return sn_prefix_error("config: ");
  return parse_descriptor_array(root, "layers", &m->layers, &m->nlayers);
}

/* Keep a copy of the bytes and their digest, then parse them with
 * duplicate keys refused; m->raw is what the digest covers. */
struct sn_manifest *
sn_manifest_parse(const uint8_t *raw, size_t len, const char *content_type)
{
  struct sn_manifest *m;
  uint8_t d[SN_SHA256_LEN];
  char hex[SN_DIGEST_STRLEN + 1];
  json_error_t jerr;
  json_t *root;

  if (raw == NULL && len > 0) {
    sn_set_error("manifest: no data");
    return NULL;
  }
  if (len > SN_MAX_DOCUMENT) {
    sn_set_error("manifest: too large (%zu bytes, limit %d)", len,
                 SN_MAX_DOCUMENT);
    return NULL;
  }
  m = calloc(1, sizeof *m);
  if (m == NULL) {
    sn_oom();
    return NULL;
  }
  m->raw = malloc(len ? len : 1);
  if (m->raw == NULL) {
    sn_oom();
    goto err;
  }
  if (len > 0)
    memcpy(m->raw, raw, len);
  m->raw_len = len;
  sn_sha256(m->raw, len, d);
  sn_digest_format(d, hex);
  m->digest = dup_str(hex);
  if (m->digest == NULL)
    goto err;

  root = json_loadb((const char *) m->raw, len,
                    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (root == NULL) {
    sn_set_error("manifest: invalid JSON at line %d, column %d: %.100s",
                 jerr.line, jerr.column, jerr.text);
    goto err;
  }
  if (parse_document(root, content_type, m) == -1) {
    json_decref(root);
    sn_prefix_error("%s: ", m->is_index ? "index" : "manifest");
    goto err;
  }
  json_decref(root);
  return m;

err:
  sn_manifest_free(m);
  return NULL;
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

/* ---- layers ----------------------------------------------------------- */

enum sn_layer_kind
sn_layer_kind(const char *media_type)
{
  static const struct {
    const char *mt;
    enum sn_layer_kind kind;
  } map[] = {
    { "application/vnd.oci.image.layer.v1.tar+gzip", SN_LAYER_KIND_GZIP },
    { "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      SN_LAYER_KIND_GZIP },
    { "application/vnd.docker.image.rootfs.diff.tar.gzip",
      SN_LAYER_KIND_GZIP },
    { "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      SN_LAYER_KIND_GZIP },
    { "application/vnd.oci.image.layer.v1.tar", SN_LAYER_KIND_TAR },
    { "application/vnd.oci.image.layer.nondistributable.v1.tar",
      SN_LAYER_KIND_TAR },
    { "application/vnd.docker.image.rootfs.diff.tar", SN_LAYER_KIND_TAR },
    { "application/vnd.docker.image.rootfs.foreign.diff.tar",
      SN_LAYER_KIND_TAR },
    { "application/vnd.oci.image.layer.v1.tar+zstd", SN_LAYER_KIND_ZSTD },
    { "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      SN_LAYER_KIND_ZSTD },
    { "application/vnd.docker.image.rootfs.diff.tar.zstd",
      SN_LAYER_KIND_ZSTD },
  };
  size_t i;

  if (media_type == NULL)
    return SN_LAYER_KIND_OTHER;
  for (i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(media_type, map[i].mt) == 0)
      return map[i].kind;
  return SN_LAYER_KIND_OTHER;
}
