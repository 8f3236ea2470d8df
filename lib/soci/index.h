/* soci-nbd: SOCI index manifests (v1 with a subject, v2 without),
 * prefetch artifacts, and the documents "soci convert" writes: the image
 * manifest re-serialized with the com.amazon.soci.index-digest
 * annotation, and the OCI image index binding images and SOCI indexes.
 *
 * Every document is emitted exactly as soci's Go code marshals it
 * (encoding/json of the image-spec v1.1 structs: field order, omitempty,
 * sorted annotation keys, Go escaping), so digests match the reference
 * tool's for the same inputs (docs/soci-format.md §5, vectors §6).
 * Documents read back (source manifests and indexes) are decoded the way
 * Go's json.Unmarshal fills those structs: unknown members dropped, names
 * matched case-insensitively (the last match wins), null = zero value.
 *
 * Ownership: struct sn_doc owns its bytes (sn_doc_free); struct
 * sn_oci_index owns everything (sn_oci_index_free).  Errors follow err.h.
 */
#ifndef SN_INDEX_H
#define SN_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/digest.h"
#include "registry/manifest.h"
#include "soci/ztoc.h"

#define SN_MT_SOCI_INDEX_V1 "application/vnd.amazon.soci.index.v1+json"
#define SN_MT_SOCI_INDEX_V2 "application/vnd.amazon.soci.index.v2+json"
#define SN_MT_SOCI_ZTOC "application/octet-stream"
#define SN_MT_SOCI_PREFETCH "application/vnd.amazon.soci.prefetch.v1+json"
#define SN_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"

/* The config blob of every SOCI index. */
#define SN_SOCI_CONFIG "{}"
#define SN_SOCI_CONFIG_DIGEST \
  "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

#define SN_ANN_LAYER_DIGEST "com.amazon.soci.image-layer-digest"
#define SN_ANN_LAYER_MEDIA_TYPE "com.amazon.soci.image-layer-mediaType"
#define SN_ANN_SPAN_SIZE "com.amazon.soci.span-size"
#define SN_ANN_DISABLE_XATTRS "com.amazon.soci.disable-xattrs"
#define SN_ANN_BUILD_TOOL "com.amazon.soci.build-tool-identifier"
#define SN_ANN_INDEX_DIGEST "com.amazon.soci.index-digest"
#define SN_ANN_MANIFEST_DIGEST "com.amazon.soci.image-manifest-digest"

/* A serialized document and its digest. */
struct sn_doc {
  uint8_t *data;       /* NUL-terminated (not counted in len) */
  size_t len;
  char digest[SN_DIGEST_STRLEN + 1];
};
void sn_doc_free(struct sn_doc *d);

/* ---- SOCI index manifest (§5.1) --------------------------------------- */

struct sn_index_ztoc {          /* one ztoc descriptor, in layer order */
  const char *digest;           /* the ztoc blob */
  int64_t size;
  const char *layer_digest;
  const char *layer_media_type;
  int64_t span_size;
  bool disable_xattrs;          /* add com.amazon.soci.disable-xattrs */
};

struct sn_index_prefetch {      /* one prefetch artifact, in layer order */
  const char *digest;
  int64_t size;
  const char *layer_digest;
};

struct sn_index_subject {       /* v1: the image manifest */
  const char *media_type, *digest;
  int64_t size;
};

/* version 1 (subject required) or 2 (subject must be NULL).  At least one
 * ztoc or prefetch descriptor ("empty index" otherwise). */
int sn_index_encode(int version, const struct sn_index_ztoc *z, size_t nz,
                    const struct sn_index_prefetch *pf, size_t npf,
                    const struct sn_index_subject *subject,
                    const char *build_tool, struct sn_doc *out);

/* True when the layer may carry com.amazon.soci.disable-xattrs: no entry
 * has SCHILY.xattr.* records and no name ends in ".wh..wh..opq". */
bool sn_index_ztoc_no_xattrs(const struct sn_ztoc *z);

/* ---- prefetch artifacts ------------------------------------------------ */

struct sn_prefetch_span {
  int32_t start, end;           /* inclusive span ids */
  int32_t priority;             /* 0: omitted */
};

/* {"version":"1.0","prefetch_spans":[...]} after sorting by (start, end)
 * and merging overlapping or adjacent spans, as soci does.  n >= 1. */
int sn_prefetch_encode(const struct sn_prefetch_span *s, size_t n,
                       struct sn_doc *out);

/* The spans holding the file at path (cleaned; the last entry of that
 * name) in z: 1 and *out when found, 0 when not there, -1 on error. */
int sn_prefetch_file_span(const struct sn_ztoc *z, const char *path,
                          struct sn_prefetch_span *out);

/* ---- soci convert (§5.3) ----------------------------------------------- */

/* Re-marshal an image manifest (OCI or Docker schema 2) as
 * ocispec.Manifest: mediaType and config.mediaType set to OCI's, other
 * members kept (in Go's order), and with soci_index_digest non-NULL the
 * annotation com.amazon.soci.index-digest added. */
int sn_index_annotate_manifest(const uint8_t *raw, size_t len,
                               const char *soci_index_digest,
                               struct sn_doc *out);
/* The same, with dense_digest non-NULL also the annotation naming the
 * dense index (lib/dense/dense.h, SN_DENSE_INDEX_ANNOTATION). */
int sn_index_annotate_manifest_dense(const uint8_t *raw, size_t len,
                                     const char *soci_index_digest,
                                     const char *dense_digest,
                                     struct sn_doc *out);

struct sn_oci_index;

/* Start from a source OCI index or Docker manifest list. */
struct sn_oci_index *sn_oci_index_from_index(const uint8_t *raw, size_t len);
/* Or wrap a single image manifest: one entry {mediaType, digest, size,
 * platform} with the platform from the image config (architecture, os,
 * variant, normalized). */
struct sn_oci_index *sn_oci_index_wrap(const char *media_type,
                                       const char *digest, int64_t size,
                                       const uint8_t *config,
                                       size_t config_len);
void sn_oci_index_free(struct sn_oci_index *x);

size_t sn_oci_index_count(const struct sn_oci_index *x);
/* Entry i's members ("" when absent; artifact type NULL when absent). */
const char *sn_oci_index_media_type(const struct sn_oci_index *x, size_t i);
const char *sn_oci_index_digest(const struct sn_oci_index *x, size_t i);
const char *sn_oci_index_artifact_type(const struct sn_oci_index *x,
                                       size_t i);
/* Entry i's platform (malloc'd copies, variant NULL if none): 1, or 0 and
 * *p zeroed when the entry has none, -1 on OOM. */
int sn_oci_index_platform(const struct sn_oci_index *x, size_t i,
                          struct sn_platform *p);

/* Point entry i at the re-serialized manifest m: digest, size, OCI
 * manifest media type, and the manifest's annotations copied onto the
 * descriptor (removed when it has none), as soci does. */
int sn_oci_index_set_manifest(struct sn_oci_index *x, size_t i,
                              const struct sn_doc *m);

/* Add the descriptor of a v2 SOCI index for the image manifest whose new
 * digest is manifest_digest, with platform p (written as given) or, when
 * p is NULL, a copy of entry i's platform.  It replaces an existing v2
 * SOCI entry of the same platform, else is appended. */
int sn_oci_index_add_soci(struct sn_oci_index *x, const struct sn_doc *idx,
                          const char *manifest_digest,
                          const struct sn_platform *p, size_t i);
/* The same for any artifact manifest describing that image manifest (the
 * dense index, lib/dense/dense.h), of the given artifactType: replaces an
 * entry of that artifactType and platform. */
int sn_oci_index_add_artifact(struct sn_oci_index *x, const struct sn_doc *doc,
                              const char *artifact_type,
                              const char *manifest_digest,
                              const struct sn_platform *p, size_t i);

int sn_oci_index_encode(const struct sn_oci_index *x, struct sn_doc *out);

/* containerd's platform normalization: x86_64 → amd64, aarch64 → arm64,
 * amd64 "v1" and arm64 "v8" variants dropped, arm without a variant →
 * v7, a bare number N → vN. */
int sn_index_platform_normalize(struct sn_platform *p);

#endif
