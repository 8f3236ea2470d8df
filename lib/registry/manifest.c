/* soci-nbd: OCI / Docker manifests and indexes — parsing into struct
 * sn_manifest with validated descriptors, layer media type
 * classification.  Platform strings, platform matching and selection
 * (containerd's rules, simplified) are in manifest-platform.c.
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

#include "util/digest.h"
#include "util/err.h"
#include "registry/manifest.h"
#include "registry/manifest-int.h"

#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED \
  "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define SCHEMA1_MSG "Docker schema1 manifests are not supported"
#define MT_MAX 255 /* RFC 6838: 127 + "/" + 127 */

/* ---- small helpers ---------------------------------------------------- */

/* strdup that sets the error on OOM. */
char *
sn_manifest_dup_str(const char *s)
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
  *out = sn_manifest_dup_str(json_string_value(v));
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
    arr[n].key = sn_manifest_dup_str(key);
    arr[n].value = sn_manifest_dup_str(json_string_value(v));
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

/* ---- descriptors ------------------------------------------------------ */

/* Free what parse_descriptor filled and zero d (safe on a partial one). */
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
  m->media_type = sn_manifest_dup_str(mt);
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
  m->digest = sn_manifest_dup_str(hex);
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

/* ---- layers ----------------------------------------------------------- */

/* An exact lookup in the table below (no parameters, no guessing from
 * suffixes); NULL and anything not listed are OTHER. */
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

const char *
sn_manifest_artifact_type(const struct sn_manifest *m)
{
  return m->artifact_type ? m->artifact_type
    : (!m->is_index ? m->config.media_type : NULL);
}

json_t *
sn_manifest_referrer_descriptor(const struct sn_manifest *m)
{
  const char *at = sn_manifest_artifact_type(m);
  json_t *d, *an;
  size_t i;

  d = json_pack("{s:s, s:s, s:I}", "mediaType", m->media_type, "digest",
                m->digest, "size", (json_int_t) m->raw_len);
  if (d == NULL)
    goto oom;
  if (at && json_object_set_new(d, "artifactType", json_string(at)) == -1)
    goto oom;
  if (m->nannotations) {
    an = json_object();
    if (an == NULL || json_object_set_new(d, "annotations", an) == -1)
      goto oom;
    for (i = 0; i < m->nannotations; i++)
      if (json_object_set_new(an, m->annotations[i].key,
                              json_string(m->annotations[i].value)) == -1)
        goto oom;
  }
  return d;
oom:
  json_decref(d);
  sn_oom();
  return NULL;
}
