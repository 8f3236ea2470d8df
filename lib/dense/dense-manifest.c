/* soci-nbd: where an image's dense index is (docs/dense-format.md) — the
 * image manifest names the dense-index manifest by digest; that manifest
 * lists, per indexed layer, its table blob and its windows blob.  Finding
 * and checking them is here; reading the blobs is dense-format.c. */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dense/dense.h"
#include "dense/dense-manifest.h"
#include "record/record.h"
#include "soci/index.h"
#include "soci/index-int.h"
#include "util/json.h"
#include "util/err.h"

int
sn_dense_fetch(struct sn_registry *reg, const struct sn_manifest *m,
               struct sn_manifest **dm)
{
  const char *digest = sn_annotation_get(m->annotations, m->nannotations,
                                         SN_DENSE_INDEX_ANNOTATION);

  *dm = NULL;
  if (digest == NULL)
    return 0;
  *dm = sn_registry_get_manifest(reg, digest);
  if (*dm == NULL)
    return sn_prefix_error("dense index %s: ", digest);
  if (sn_dense_check(*dm) == -1) {
    sn_prefix_error("dense index %s: ", digest);
    sn_manifest_free(*dm);
    *dm = NULL;
    return -1;
  }
  return 0;
}

int
sn_dense_check(const struct sn_manifest *dm)
{
  size_t i;
  if (dm->is_index || dm->artifact_type == NULL ||
      strcmp(dm->artifact_type, SN_DENSE_ARTIFACT_TYPE) != 0)
    return sn_set_error("not a dense-index manifest (artifactType %s)",
                        dm->artifact_type ? dm->artifact_type : "none");
  size_t nrecord = 0;

  for (i = 0; i < dm->nlayers; i++) {
    const struct sn_descriptor *d = &dm->layers[i];
    const char *mt = d->media_type ? d->media_type : "";

    if (strcmp(mt, SN_RECORD_MEDIA_TYPE) == 0) {
      if (++nrecord > 1)
        return sn_set_error("layer %zu: a second prefetch record", i);
      continue;
    }
    if (strcmp(mt, SN_DENSE_TABLE_MEDIA_TYPE) != 0 &&
        strcmp(mt, SN_DENSE_WINDOWS_MEDIA_TYPE) != 0)
      return sn_set_error("layer %zu: unexpected media type %s", i, mt);
    if (sn_annotation_get(d->annotations, d->nannotations,
                          SN_DENSE_LAYER_ANNOTATION) == NULL)
      return sn_set_error("layer %zu: no %s annotation", i,
                          SN_DENSE_LAYER_ANNOTATION);
  }
  return 0;
}

/* The first descriptor of dm of media type mt for image layer digest. */
static const struct sn_descriptor *
find_blob(const struct sn_manifest *dm, const char *digest, const char *mt)
{
  size_t i;

  for (i = 0; i < dm->nlayers; i++) {
    const struct sn_descriptor *d = &dm->layers[i];
    const char *ld = sn_annotation_get(d->annotations, d->nannotations,
                                       SN_DENSE_LAYER_ANNOTATION);

    if (ld && strcmp(ld, digest) == 0 && d->media_type &&
        strcmp(d->media_type, mt) == 0)
      return d;
  }
  return NULL;
}

int
sn_dense_blobs(const struct sn_manifest *dm, const char *layer_digest,
               const struct sn_descriptor **table,
               const struct sn_descriptor **windows)
{
  *table = find_blob(dm, layer_digest, SN_DENSE_TABLE_MEDIA_TYPE);
  *windows = find_blob(dm, layer_digest, SN_DENSE_WINDOWS_MEDIA_TYPE);
  if (*table == NULL && *windows == NULL)
    return 0;
  /* A zstd layer's table comes alone (sn_dense_load_table checks it). */
  if (*table == NULL)
    return sn_set_error("layer %s: a windows blob without its table",
                        layer_digest);
  return 1;
}

int
sn_dense_record(const struct sn_manifest *dm, const struct sn_descriptor **rec)
{
  size_t i;

  *rec = NULL;
  for (i = 0; i < dm->nlayers; i++) {
    const struct sn_descriptor *d = &dm->layers[i];

    if (d->media_type && strcmp(d->media_type, SN_RECORD_MEDIA_TYPE) == 0) {
      if (*rec)
        return sn_set_error("dense index %s: more than one prefetch record",
                            dm->digest ? dm->digest : "");
      *rec = d;
    }
  }
  return *rec != NULL;
}

struct sn_ztoc *
sn_dense_load_table(struct sn_registry *reg, const struct sn_descriptor *table,
                    const struct sn_descriptor *windows, int64_t layer_size,
                    enum sn_compression layer_comp)
{
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  uint8_t *buf;
  size_t len;

  if (sn_registry_get_blob_desc(reg, table, SN_ZTOC_MAX_BLOB, "dense table",
                                &buf, &len) == -1)
    return NULL;
  z = sn_dense_table_decode(buf, len);
  free(buf);
  if (z == NULL) {
    sn_prefix_error("dense table %s: ", table->digest);
    return NULL;
  }
  zi = sn_zinfo_from_ztoc(z);
  if (zi == NULL || z->compressed_size != layer_size ||
      z->compression != layer_comp ||
      (windows ? zi->windows_size != windows->size
               : z->compression != SN_COMP_ZSTD)) {
    if (zi)
      sn_set_error("dense table %s does not describe its %s layer (size %"
                   PRId64 ", windows %" PRId64 " bytes) or its windows blob "
                   "(%" PRId64 " bytes)", table->digest,
                   layer_comp == SN_COMP_ZSTD ? "zstd" : "gzip", layer_size,
                   zi->windows_size, windows ? windows->size : -1);
    else
      sn_prefix_error("dense table %s: ", table->digest);
    sn_zinfo_free(zi);
    sn_ztoc_free(z);
    return NULL;
  }
  sn_zinfo_free(zi);
  return z;
}

/* ---- writing ------------------------------------------------------------ */

/* One descriptor of a dense blob of image layer e. */
static void
write_blob(struct sn_json *w, const char *media_type, const char *digest,
           int64_t size, const char *layer_digest)
{
  const char *k = SN_DENSE_LAYER_ANNOTATION;

  sn_json_begin_object(w);
  sn_json_member_string(w, "mediaType", media_type);
  sn_json_member_string(w, "digest", digest);
  sn_json_member_int(w, "size", size);
  sn_json_key(w, "annotations");
  sn_json_string_map(w, &k, &layer_digest, 1);
  sn_json_end_object(w);
}

int
sn_dense_manifest_encode(const struct sn_dense_entry *e, size_t n,
                         const struct sn_descriptor *record,
                         struct sn_doc *out)
{
  struct sn_json w;
  size_t i;

  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_member_int(&w, "schemaVersion", 2);
  sn_json_member_string(&w, "mediaType", SN_MT_OCI_MANIFEST);
  sn_json_member_string(&w, "artifactType", SN_DENSE_ARTIFACT_TYPE);
  sn_json_key(&w, "config");
  sn_json_begin_object(&w);
  sn_json_member_string(&w, "mediaType", SN_MT_OCI_EMPTY);
  sn_json_member_string(&w, "digest", SN_SOCI_CONFIG_DIGEST);
  sn_json_member_int(&w, "size", 2);
  sn_json_end_object(&w);
  sn_json_key(&w, "layers");
  sn_json_begin_array(&w);
  for (i = 0; i < n; i++) {
    write_blob(&w, SN_DENSE_TABLE_MEDIA_TYPE, e[i].table_digest,
               e[i].table_size, e[i].layer_digest);
    if (e[i].windows_digest)    /* none for a zstd layer */
      write_blob(&w, SN_DENSE_WINDOWS_MEDIA_TYPE, e[i].windows_digest,
                 e[i].windows_size, e[i].layer_digest);
  }
  if (record) {
    sn_json_begin_object(&w);
    sn_json_member_string(&w, "mediaType", SN_RECORD_MEDIA_TYPE);
    sn_json_member_string(&w, "digest", record->digest);
    sn_json_member_int(&w, "size", record->size);
    sn_json_end_object(&w);
  }
  sn_json_end_array(&w);
  sn_json_end_object(&w);
  return sn_doc_finish(&w, out);
}

int
sn_dense_manifest_set_record(const struct sn_manifest *dm,
                             const struct sn_descriptor *record,
                             struct sn_doc *out)
{
  struct sn_dense_entry *e;
  size_t i, n = 0;
  int r;

  if (sn_dense_check(dm) == -1)
    return -1;
  e = calloc(dm->nlayers ? dm->nlayers : 1, sizeof *e);
  if (e == NULL)
    return sn_oom();
  for (i = 0; i < dm->nlayers; i++) {
    const struct sn_descriptor *d = &dm->layers[i], *t, *wd;
    const char *ld = sn_annotation_get(d->annotations, d->nannotations,
                                       SN_DENSE_LAYER_ANNOTATION);

    if (strcmp(d->media_type, SN_DENSE_TABLE_MEDIA_TYPE) != 0)
      continue;
    if (sn_dense_blobs(dm, ld, &t, &wd) != 1) {
      free(e);
      return -1;
    }
    e[n] = (struct sn_dense_entry) {
      .layer_digest = ld, .layer_index = n,
      .table_digest = t->digest, .table_size = t->size,
      .windows_digest = wd ? wd->digest : NULL,
      .windows_size = wd ? wd->size : 0,
    };
    n++;
  }
  r = sn_dense_manifest_encode(e, n, record, out);
  free(e);
  return r;
}
