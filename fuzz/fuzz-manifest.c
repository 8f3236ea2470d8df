/* soci-nbd fuzzing: documents a registry serves — image manifests, image
 * indexes / manifest lists, SOCI index manifests (v1, v2), prefetch
 * artifacts, image configs.  Each input is parsed without a Content-Type
 * and with one of those the registry client may see, then used the way the plugin and
 * "soci-nbd convert" use it: platform selection, annotation and layer
 * media type lookups, the SOCI index walk of load_index(), the prefetch
 * artifact parser, and the Go-compatible re-marshalling of manifests and
 * indexes (which must be stable: marshalling its own output again gives
 * the same bytes). */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/digest.h"
#include "util/err.h"
#include "image/image.h"
#include "soci/index.h"
#include "registry/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hints[] = {
  NULL,
  SN_MT_OCI_MANIFEST,
  SN_MT_OCI_INDEX,
  SN_MT_DOCKER_MANIFEST,
  SN_MT_DOCKER_LIST,
  "application/json; charset=utf-8",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "text/plain",
};

static const char *const platforms[] = {
  "linux/amd64", "linux/arm64", "linux/arm/v6", "linux/arm", "windows/amd64",
};

static const char *const ann_keys[] = {
  SN_ANN_LAYER_DIGEST, SN_ANN_LAYER_MEDIA_TYPE, SN_ANN_SPAN_SIZE,
  SN_ANN_DISABLE_XATTRS, SN_ANN_BUILD_TOOL, SN_ANN_INDEX_DIGEST,
  SN_ANN_MANIFEST_DIGEST, "vnd.docker.reference.type", "", "\xff",
};

#define DIGEST_X \
  "sha256:0000000000000000000000000000000000000000000000000000000000000001"

static void
check_annotations(const struct sn_annotation *a, size_t n)
{
  size_t i;

  for (i = 0; i < sizeof ann_keys / sizeof ann_keys[0]; i++)
    (void) sn_annotation_get(a, n, ann_keys[i]);
  /* Keys are unique (duplicates are refused): each finds its own value. */
  for (i = 0; i < n; i++) {
    const char *v = sn_annotation_get(a, n, a[i].key);

    if (v == NULL || strcmp(v, a[i].value) != 0)
      abort();
  }
}

static void
check_descriptor(const struct sn_descriptor *d)
{
  uint8_t bin[SN_SHA256_LEN];

  if (d->media_type == NULL || d->digest == NULL || d->size < 0)
    abort();
  (void) sn_layer_kind(d->media_type);
  (void) sn_layer_kind(d->artifact_type);
  /* Validated digests parse. */
  if (sn_digest_parse(d->digest, strlen(d->digest), bin) == -1)
    abort();
  check_annotations(d->annotations, d->nannotations);
  if (d->platform) {
    struct sn_platform p = { 0 };

    if (d->platform->os == NULL || d->platform->architecture == NULL)
      abort();
    (void) sn_platform_matches(d->platform, d->platform);
    p.os = strdup(d->platform->os);
    p.architecture = strdup(d->platform->architecture);
    p.variant = d->platform->variant ? strdup(d->platform->variant) : NULL;
    if (p.os && p.architecture)
      (void) sn_index_platform_normalize(&p);
    sn_platform_clear(&p);
  }
}

/* What lib/image/image.c's find_index() and load_index() look at. */
static void
walk_soci_index(const struct sn_manifest *m)
{
  const char *type = m->config.media_type;
  size_t i;

  (void) sn_annotation_get(m->annotations, m->nannotations,
                           SN_ANN_INDEX_DIGEST);
  if (m->is_index || type == NULL ||
      (strcmp(type, SN_MT_SOCI_INDEX_V1) != 0 &&
       strcmp(type, SN_MT_SOCI_INDEX_V2) != 0))
    return;
  if (m->subject && (m->subject->digest == NULL ||
                     strcmp(m->subject->digest, m->digest) == 0))
    (void) m->subject->size;
  for (i = 0; i < m->nlayers; i++) {
    const struct sn_descriptor *d = &m->layers[i];
    const char *ld = sn_annotation_get(d->annotations, d->nannotations,
                                       SN_ANN_LAYER_DIGEST);

    if (ld && strlen(ld) > 4096)
      abort();                  /* bounded by the document, sanity */
    (void) sn_layer_kind(d->media_type);
  }
}

static void
check_manifest(const struct sn_manifest *m, const uint8_t *data, size_t size)
{
  size_t i;

  if (m->media_type == NULL || m->digest == NULL || m->raw_len != size ||
      (size && memcmp(m->raw, data, size) != 0))
    abort();
  if (m->is_index && (m->nlayers || m->layers))
    abort();
  if (!m->is_index && (m->nmanifests || m->manifests))
    abort();
  check_annotations(m->annotations, m->nannotations);
  if (m->subject)
    check_descriptor(m->subject);
  if (!m->is_index)
    check_descriptor(&m->config);
  for (i = 0; i < m->nlayers; i++)
    check_descriptor(&m->layers[i]);
  for (i = 0; i < m->nmanifests; i++)
    check_descriptor(&m->manifests[i]);
  walk_soci_index(m);

  if (m->is_index) {
    for (i = 0; i < sizeof platforms / sizeof platforms[0]; i++) {
      struct sn_platform want;
      const struct sn_descriptor *d;

      if (sn_platform_parse(platforms[i], &want) == -1)
        abort();
      d = sn_manifest_select(m, &want);
      if (d != NULL && (d < m->manifests || d >= m->manifests + m->nmanifests))
        abort();
      if (d == NULL && strlen(sn_error()) == 0)
        abort();
      sn_platform_clear(&want);
    }
    /* Each entry's own platform. */
    for (i = 0; i < m->nmanifests && i < 8; i++)
      if (m->manifests[i].platform)
        (void) sn_manifest_select(m, m->manifests[i].platform);
  }
  else if (sn_manifest_select(m, NULL) != NULL)
    abort();
}

static void
check_prefetch(const uint8_t *data, size_t size)
{
  struct sn_prefetch_span *sp;
  size_t n, i;

  if (sn_image_parse_prefetch(data, size, &sp, &n) == -1) {
    if (sp != NULL || n != 0)
      abort();
    return;
  }
  for (i = 0; i < n; i++)
    if (sp[i].start < 0 || sp[i].end < sp[i].start)
      abort();
  if (n > 0) {
    struct sn_doc d;

    if (sn_prefetch_encode(sp, n, &d) == 0)
      sn_doc_free(&d);
  }
  free(sp);
}

/* Marshalling is stable: f(f(x)) == f(x) byte for byte. */
static void
check_annotate(const uint8_t *data, size_t size, const char *digest)
{
  struct sn_doc a, b;

  if (sn_index_annotate_manifest(data, size, digest, &a) == -1)
    return;
  if (sn_index_annotate_manifest(a.data, a.len, digest, &b) == -1) {
    fprintf(stderr, "re-annotating failed: %s\n%s\n", sn_error(),
            (char *) a.data);
    abort();
  }
  if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0 ||
      strcmp(a.digest, b.digest) != 0) {
    fprintf(stderr, "annotate not stable:\n%s\n%s\n", (char *) a.data,
            (char *) b.data);
    abort();
  }
  sn_doc_free(&a);
  sn_doc_free(&b);
}

static void
check_oci_index(const uint8_t *data, size_t size)
{
  struct sn_oci_index *x = sn_oci_index_from_index(data, size), *y;
  struct sn_doc e1, e2, soci;
  size_t i, n;

  if (x == NULL)
    return;
  n = sn_oci_index_count(x);
  for (i = 0; i < n; i++) {
    struct sn_platform p;
    int r;

    if (sn_oci_index_media_type(x, i) == NULL ||
        sn_oci_index_digest(x, i) == NULL)
      abort();
    (void) sn_oci_index_artifact_type(x, i);
    r = sn_oci_index_platform(x, i, &p);
    if (r == 1) {
      if (p.os == NULL || p.architecture == NULL)
        abort();
      (void) sn_index_platform_normalize(&p);
      sn_platform_clear(&p);
    }
  }
  if (sn_oci_index_encode(x, &e1) == 0) {
    y = sn_oci_index_from_index(e1.data, e1.len);
    if (y == NULL || sn_oci_index_encode(y, &e2) == -1 ||
        e1.len != e2.len || memcmp(e1.data, e2.data, e1.len) != 0) {
      fprintf(stderr, "index encoding not stable: %s\n%s\n", sn_error(),
              (char *) e1.data);
      abort();
    }
    sn_oci_index_free(y);
    sn_doc_free(&e1);
    sn_doc_free(&e2);
  }
  /* What convert does to it: point entry 0 at a new manifest, add a SOCI
   * index for it. */
  memset(&soci, 0, sizeof soci);
  soci.data = (uint8_t *) strdup("{\"schemaVersion\":2}");
  if (soci.data == NULL)
    abort();
  soci.len = strlen((char *) soci.data);
  strcpy(soci.digest, DIGEST_X);
  if (n > 0) {
    (void) sn_oci_index_set_manifest(x, 0, &soci);
    (void) sn_oci_index_add_soci(x, &soci, DIGEST_X, NULL, 0);
  }
  {
    struct sn_platform p = { (char *) "linux", (char *) "amd64", NULL };

    (void) sn_oci_index_add_soci(x, &soci, DIGEST_X, &p, 0);
  }
  if (sn_oci_index_encode(x, &e1) == 0)
    sn_doc_free(&e1);
  sn_doc_free(&soci);
  sn_oci_index_free(x);
}

static void
check_wrap(const uint8_t *data, size_t size)
{
  struct sn_oci_index *x = sn_oci_index_wrap(SN_MT_OCI_MANIFEST, DIGEST_X, 7,
                                             data, size);
  struct sn_doc e;
  struct sn_platform p;

  if (x == NULL)
    return;
  if (sn_oci_index_count(x) != 1 || sn_oci_index_platform(x, 0, &p) != 1)
    abort();
  sn_platform_clear(&p);
  if (sn_oci_index_encode(x, &e) == 0)
    sn_doc_free(&e);
  sn_oci_index_free(x);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t nh = sizeof hints / sizeof hints[0], i;
  /* Without a hint, and with one chosen by the last byte (a hint only
   * matters when the document has no mediaType; parsing with all of them
   * every time would cost most of the speed). */
  const char *h[2] = {
    NULL, hints[1 + (size ? data[size - 1] : 0) % (nh - 1)],
  };

  for (i = 0; i < 2; i++) {
    struct sn_manifest *m = sn_manifest_parse(data, size, h[i]);

    if (m == NULL) {
      if (strlen(sn_error()) == 0)
        abort();
      continue;
    }
    check_manifest(m, data, size);
    sn_manifest_free(m);
  }
  check_prefetch(data, size);
  check_annotate(data, size, NULL);
  check_annotate(data, size, DIGEST_X);
  check_oci_index(data, size);
  check_wrap(data, size);
  return 0;
}
