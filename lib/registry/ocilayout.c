/* soci-nbd: the registry API over an OCI image layout directory (see
 * ocilayout.h): oci-layout check, index.json tags, verified blob reads,
 * referrers by scanning subjects.  The writes (atomic blob and index.json
 * writes, layout creation) are in ocilayout-write.c.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "registry/ocilayout.h"
#include "registry/ocilayout-int.h"

/* ---- shared helpers ---------------------------------------------------- */

struct sn_manifest *
sn_empty_index(void)
{
  static const char empty[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\","
    "\"manifests\":[]}";

  return sn_manifest_parse((const uint8_t *) empty, sizeof empty - 1,
                           SN_MT_OCI_INDEX);
}

/* Re-serialize m's JSON keeping only the manifests of artifact_type (the
 * other members as they are) and parse that into a new index, the
 * caller's; artifact_type NULL gives a copy. */
struct sn_manifest *
sn_index_filter(const struct sn_manifest *m, const char *artifact_type)
{
  json_t *root, *arr, *keep;
  struct sn_manifest *out = NULL;
  size_t i;
  char *s;

  root = json_loadb((const char *) m->raw, m->raw_len, 0, NULL);
  arr = root ? json_object_get(root, "manifests") : NULL;
  if (!json_is_array(arr)) {
    json_decref(root);
    sn_set_error("index without a manifests array");
    return NULL;
  }
  if (artifact_type == NULL) {
    json_decref(root);
    return sn_manifest_parse(m->raw, m->raw_len, m->media_type);
  }
  keep = json_array();
  if (keep == NULL)
    goto oom;
  for (i = 0; i < json_array_size(arr); i++) {
    json_t *d = json_array_get(arr, i);
    const char *at = json_string_value(json_object_get(d, "artifactType"));

    if (at && strcmp(at, artifact_type) == 0
        && json_array_append(keep, d) == -1) {
      json_decref(keep);
      goto oom;
    }
  }
  if (json_object_set_new(root, "manifests", keep) == -1)
    goto oom;
  s = json_dumps(root, JSON_COMPACT);
  if (s == NULL)
    goto oom;
  out = sn_manifest_parse((const uint8_t *) s, strlen(s), m->media_type);
  free(s);
  json_decref(root);
  return out;
oom:
  json_decref(root);
  sn_oom();
  return NULL;
}

/* "<dir>/<rel>", malloc'd; NULL on OOM. */
char *
layout_path_of(const struct sn_layout *l, const char *rel)
{
  char *p;

  if (asprintf(&p, "%s/%s", l->dir, rel) < 0) {
    sn_oom();
    return NULL;
  }
  return p;
}

/* "<dir>/blobs/sha256/<hex>" of a valid sha256 digest, malloc'd; NULL
 * (with a message) for a malformed digest. */
char *
layout_blob_path(const struct sn_layout *l, const char *digest)
{
  uint8_t d[SN_SHA256_LEN];
  char *p;

  if (sn_digest_parse(digest, strlen(digest), d) == -1) {
    sn_set_error("invalid digest \"%.80s\"", digest);
    return NULL;
  }
  if (asprintf(&p, "%s/blobs/sha256/%s", l->dir, digest + 7) < 0) {
    sn_oom();
    return NULL;
  }
  return p;
}

/* 0 when dir holds an "oci-layout" file saying imageLayoutVersion 1.x;
 * -1 with a message otherwise. */
int
layout_check(const struct sn_layout *l)
{
  char *p = layout_path_of(l, "oci-layout");
  uint8_t *buf;
  size_t len;
  json_t *j;
  const char *v;
  int rc = -1;

  if (p == NULL)
    return -1;
  if (access(p, F_OK) == -1) {
    sn_set_error("%s: not an OCI image layout (no oci-layout file)", l->dir);
    free(p);
    return -1;
  }
  if (sn_read_file(p, 4096, true, &buf, &len) == -1) {
    free(p);
    return -1;
  }
  j = json_loadb((const char *) buf, len, 0, NULL);
  v = j ? json_string_value(json_object_get(j, "imageLayoutVersion")) : NULL;
  if (v == NULL || strncmp(v, "1.", 2) != 0)
    sn_set_error("%s: unsupported imageLayoutVersion", p);
  else
    rc = 0;
  json_decref(j);
  free(buf);
  free(p);
  return rc;
}

/* index.json parsed (duplicate keys refused), with a "manifests" array
 * checked; the caller owns the reference.  NULL with a message. */
json_t *
layout_load_index(const struct sn_layout *l)
{
  char *p = layout_path_of(l, "index.json");
  uint8_t *buf;
  size_t len;
  json_t *j;

  if (p == NULL)
    return NULL;
  if (sn_read_file(p, SN_MAX_DOCUMENT, true, &buf, &len) == -1) {
    free(p);
    return NULL;
  }
  j = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, NULL);
  free(buf);
  if (j == NULL || !json_is_array(json_object_get(j, "manifests"))) {
    sn_set_error("%s: not a valid OCI index", p);
    json_decref(j);
    j = NULL;
  }
  free(p);
  return j;
}

/* An index.json entry's tag (its ref.name annotation), or NULL. */
const char *
layout_entry_tag(json_t *e)
{
  return json_string_value(json_object_get(json_object_get(e, "annotations"),
                                           REF_NAME));
}

/* ---- open / close ------------------------------------------------------ */

/* Nothing is read here: reads check the layout (layout_check), the first
 * push creates it (ocilayout-write.c). */
struct sn_layout *
sn_layout_open(const char *dir, const char *default_tag)
{
  struct sn_layout *l = calloc(1, sizeof *l);

  if (l == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&l->lock, NULL);
  l->dir = strdup(dir);
  l->default_tag = default_tag ? strdup(default_tag) : NULL;
  if (l->dir == NULL || (default_tag && l->default_tag == NULL)) {
    sn_layout_close(l);
    sn_oom();
    return NULL;
  }
  return l;
}

void
sn_layout_close(struct sn_layout *l)
{
  if (l == NULL)
    return;
  free(l->dir);
  free(l->default_tag);
  pthread_mutex_destroy(&l->lock);
  free(l);
}

/* ---- reads ------------------------------------------------------------- */

/* The blob of digest, verified (and its size checked when size >= 0). */
static struct sn_manifest *
manifest_blob(struct sn_layout *l, const char *digest, int64_t size,
              const char *media_type)
{
  char *p = layout_blob_path(l, digest);
  char got[SN_DIGEST_STRLEN + 1];
  struct sn_manifest *m = NULL;
  uint8_t *buf = NULL;
  size_t len;

  if (p == NULL)
    return NULL;
  if (sn_read_file(p, SN_MAX_DOCUMENT, true, &buf, &len) == -1)
    goto out;
  sn_digest_of(buf, len, got);
  if (strcmp(got, digest) != 0)
    sn_set_error("%s: manifest %s: content has digest %s", l->dir, digest,
                 got);
  else if (size >= 0 && (int64_t) len != size)
    sn_set_error("%s: manifest %s: %zu bytes, but index.json says %" PRId64,
                 l->dir, digest, len, size);
  else if ((m = sn_manifest_parse(buf, len, media_type)) == NULL)
    sn_prefix_error("%s: manifest %s: ", l->dir, digest);
out:
  free(buf);
  free(p);
  return m;
}

/* By digest, or by tag through index.json (the default tag may name a lone
 * entry); the blob is verified against digest and the entry's size. */
struct sn_manifest *
sn_layout_get_manifest(struct sn_layout *l, const char *tag_or_digest)
{
  json_t *idx, *arr, *e, *found = NULL;
  struct sn_manifest *m = NULL;
  uint8_t d[SN_SHA256_LEN];
  bool by_digest;
  size_t i;

  if (layout_check(l) == -1 || (idx = layout_load_index(l)) == NULL)
    return NULL;
  arr = json_object_get(idx, "manifests");
  by_digest = sn_digest_parse(tag_or_digest, strlen(tag_or_digest), d) == 0;
  json_array_foreach(arr, i, e) {
    const char *dg = json_string_value(json_object_get(e, "digest"));
    const char *t = layout_entry_tag(e);

    if (by_digest ? (dg && strcmp(dg, tag_or_digest) == 0)
        : (t && strcmp(t, tag_or_digest) == 0)) {
      found = e;
      break;
    }
  }
  if (found == NULL && !by_digest && l->default_tag
      && strcmp(l->default_tag, tag_or_digest) == 0
      && json_array_size(arr) == 1)
    found = json_array_get(arr, 0);
  if (found == NULL && !by_digest) {
    sn_set_error("%s: no manifest tagged \"%s\" in index.json", l->dir,
                 tag_or_digest);
    goto out;
  }
  if (found) {
    const char *dg = json_string_value(json_object_get(found, "digest"));
    json_t *js = json_object_get(found, "size");

    if (dg == NULL || !json_is_integer(js)) {
      sn_set_error("%s: index.json: entry without digest or size", l->dir);
      goto out;
    }
    m = manifest_blob(l, dg, json_integer_value(js),
                      json_string_value(json_object_get(found, "mediaType")));
  }
  else
    m = manifest_blob(l, tag_or_digest, -1, NULL);
out:
  json_decref(idx);
  return m;
}

/* The whole blob (at most max bytes) in a malloc'd *buf, the caller's,
 * verified against digest; nothing is returned on a mismatch. */
int
sn_layout_get_blob_mem(struct sn_layout *l, const char *digest, size_t max,
                       uint8_t **buf, size_t *len)
{
  char *p = layout_blob_path(l, digest);
  char got[SN_DIGEST_STRLEN + 1];

  if (p == NULL)
    return -1;
  if (sn_read_file(p, max, true, buf, len) == -1) {
    free(p);
    return -1;
  }
  free(p);
  sn_digest_of(*buf, *len, got);
  if (strcmp(got, digest) != 0) {
    free(*buf);
    *buf = NULL;
    *len = 0;
    return sn_set_error("%s: blob %s: content has digest %s", l->dir, digest,
                        got);
  }
  return 0;
}

/* Stream the blob to sink in 1 MiB chunks, then check size (when >= 0)
 * and digest: the sink has seen the bytes before any mismatch is known. */
int
sn_layout_get_blob(struct sn_layout *l, const char *digest, int64_t size,
                   int (*sink)(void *opaque, const uint8_t *data, size_t len),
                   void *opaque)
{
  int64_t total = 0;
  char *p = layout_blob_path(l, digest);
  char got[SN_DIGEST_STRLEN + 1];
  uint8_t d[SN_SHA256_LEN], *buf = NULL;
  struct sn_sha256 h;
  int fd = -1, rc = -1;
  bool hashing = false;

  if (p == NULL)
    return -1;
  fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    sn_set_error("%s: %s", p, strerror(errno));
    goto out;
  }
  buf = malloc(CHUNK);
  if (buf == NULL) {
    sn_oom();
    goto out;
  }
  if (sn_sha256_init(&h) == -1)
    goto out;
  hashing = true;
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      sn_set_error("%s: %s", p, strerror(errno));
      goto out;
    }
    if (n == 0)
      break;
    total += n;
    if (size >= 0 && total > size) {
      sn_set_error("%s: blob %s: more than the %" PRId64 " bytes of its "
                   "descriptor", l->dir, digest, size);
      goto out;
    }
    sn_sha256_update(&h, buf, (size_t) n);
    if (sink(opaque, buf, (size_t) n) == -1)
      goto out;
  }
  sn_sha256_final(&h, d);
  sn_digest_format(d, got);
  if (size >= 0 && total != size)
    sn_set_error("%s: blob %s: %" PRId64 " bytes, its descriptor says %"
                 PRId64, l->dir, digest, total, size);
  else if (strcmp(got, digest) != 0)
    sn_set_error("%s: blob %s: content has digest %s", l->dir, digest, got);
  else
    rc = 0;
out:
  if (hashing)
    sn_sha256_free(&h);
  if (fd >= 0)
    close(fd);
  free(buf);
  free(p);
  return rc;
}

/* len bytes at off of the blob, unverified (the caller checks spans). */
int
sn_layout_read_range(struct sn_layout *l, const char *digest, void *buf,
                     size_t len, int64_t off)
{
  char *p = layout_blob_path(l, digest);
  size_t n = 0;
  int fd;

  if (p == NULL)
    return -1;
  fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    sn_set_error("%s: %s", p, strerror(errno));
    free(p);
    return -1;
  }
  while (n < len) {
    ssize_t r = pread(fd, (uint8_t *) buf + n, len - n, (off_t) off + n);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      sn_set_error("%s: bytes %" PRId64 "-%" PRId64 ": %s", p, off,
                   off + (int64_t) len - 1,
                   r == 0 ? "beyond the end of the blob" : strerror(errno));
      close(fd);
      free(p);
      return -1;
    }
    n += (size_t) r;
  }
  close(fd);
  free(p);
  return 0;
}

/* 1 (and *size) when the blob file exists, 0 when not, -1 on error
 * (anything but a regular file at the blob's path is an error). */
int
sn_layout_blob_exists(struct sn_layout *l, const char *digest, int64_t *size)
{
  char *p = layout_blob_path(l, digest);
  struct stat st;
  int rc;

  if (p == NULL)
    return -1;
  if (stat(p, &st) == -1)
    rc = errno == ENOENT || errno == ENOTDIR ? 0
      : sn_set_error("%s: %s", p, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    rc = sn_set_error("%s: not a regular file", p);
  else {
    if (size)
      *size = st.st_size;
    rc = 1;
  }
  free(p);
  return rc;
}

/* ---- referrers --------------------------------------------------------- */

/* Append m's descriptor to out when its artifact type (artifactType, else
 * an image manifest's config media type) is artifact_type (NULL: any) and
 * its digest is not listed yet; annotations are copied. */
static int
add_referrer(json_t *out, const struct sn_manifest *m,
             const char *artifact_type)
{
  const char *at = sn_manifest_artifact_type(m);
  json_t *d;
  size_t i;

  if (artifact_type && (at == NULL || strcmp(at, artifact_type) != 0))
    return 0;
  for (i = 0; i < json_array_size(out); i++) {
    const char *x =
      json_string_value(json_object_get(json_array_get(out, i), "digest"));

    if (x && strcmp(x, m->digest) == 0)
      return 0;
  }
  d = sn_manifest_referrer_descriptor(m);
  if (d == NULL)
    return -1;
  if (json_array_append_new(out, d) == -1)
    return sn_oom();
  return 0;
}

/* An OCI index of the manifests whose subject is digest, plus the entries
 * of the fallback tag index, filtered by artifact_type, deduplicated. */
struct sn_manifest *
sn_layout_referrers(struct sn_layout *l, const char *digest,
                    const char *artifact_type)
{
  char tag[SN_DIGEST_STRLEN + 1];
  json_t *idx, *arr, *e, *out = NULL, *root = NULL;
  struct sn_manifest *res = NULL;
  char *s = NULL;
  size_t i, k;

  if (layout_check(l) == -1 || (idx = layout_load_index(l)) == NULL)
    return NULL;
  snprintf(tag, sizeof tag, "sha256-%s", digest + 7);
  out = json_array();
  if (out == NULL)
    goto oom;
  arr = json_object_get(idx, "manifests");
  json_array_foreach(arr, i, e) {
    const char *dg = json_string_value(json_object_get(e, "digest"));
    const char *mt = json_string_value(json_object_get(e, "mediaType"));
    const char *t = layout_entry_tag(e);
    json_t *js = json_object_get(e, "size");
    struct sn_manifest *m;

    if (dg == NULL || !json_is_integer(js) || json_integer_value(js) < 0
        || json_integer_value(js) > SN_MAX_DOCUMENT)
      continue;
    if (mt && strcmp(mt, SN_MT_OCI_MANIFEST) != 0
        && strcmp(mt, SN_MT_OCI_INDEX) != 0
        && strcmp(mt, SN_MT_DOCKER_MANIFEST) != 0
        && strcmp(mt, SN_MT_DOCKER_LIST) != 0)
      continue;
    m = manifest_blob(l, dg, json_integer_value(js), mt);
    if (m == NULL)
      goto fail;                /* a broken layout: say so */
    if (t && strcmp(t, tag) == 0 && m->is_index) {
      /* The fallback tag index: its entries are referrers. */
      for (k = 0; k < m->nmanifests; k++) {
        struct sn_manifest *r = manifest_blob(l, m->manifests[k].digest,
                                              m->manifests[k].size,
                                              m->manifests[k].media_type);

        if (r == NULL || add_referrer(out, r, artifact_type) == -1) {
          sn_manifest_free(r);
          sn_manifest_free(m);
          goto fail;
        }
        sn_manifest_free(r);
      }
    }
    else if (m->subject && strcmp(m->subject->digest, digest) == 0
             && add_referrer(out, m, artifact_type) == -1) {
      sn_manifest_free(m);
      goto fail;
    }
    sn_manifest_free(m);
  }
  root = json_pack("{s:i, s:s, s:O}", "schemaVersion", 2, "mediaType",
                   SN_MT_OCI_INDEX, "manifests", out);
  if (root == NULL || (s = json_dumps(root, JSON_COMPACT)) == NULL)
    goto oom;
  res = sn_manifest_parse((const uint8_t *) s, strlen(s), SN_MT_OCI_INDEX);
  goto done;
oom:
  sn_oom();
fail:
  sn_prefix_error("%s: referrers of %s: ", l->dir, digest);
done:
  free(s);
  json_decref(root);
  json_decref(out);
  json_decref(idx);
  return res;
}
