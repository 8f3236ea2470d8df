/* soci-nbd: finding an image's dense index in a registry, and checking
 * its manifest (docs/dense-format.md, "In a registry").  Trust: the image
 * manifest names the dense-index manifest by digest, which names every
 * blob by digest; all of them are fetched by digest and verified.
 *
 * Errors follow util/err.h (-1 or NULL with a one-line message).
 */
#ifndef SN_DENSE_MANIFEST_H
#define SN_DENSE_MANIFEST_H

#include <stdint.h>

#include "registry/manifest.h"
#include "registry/registry.h"
#include "soci/ztoc.h"

/* The dense-index manifest image manifest m names (*dm, the caller's), or
 * *dm NULL and 0 when m names none.  -1 if it cannot be fetched or is not
 * a dense-index manifest. */
int sn_dense_fetch(struct sn_registry *reg, const struct sn_manifest *m,
                   struct sn_manifest **dm);
/* 0 if dm is a dense-index manifest: its artifactType, and layers that are
 * table or windows blobs, each naming its image layer. */
int sn_dense_check(const struct sn_manifest *dm);
/* Image layer layer_digest's table and windows descriptors in dm (pointers
 * into dm): 1 if it has a table (*windows NULL: none, a zstd layer's), 0
 * if neither, -1 if only a windows blob. */
int sn_dense_blobs(const struct sn_manifest *dm, const char *layer_digest,
                   const struct sn_descriptor **table,
                   const struct sn_descriptor **windows);
/* The prefetch record dm carries (lib/record/record.h), a pointer into
 * dm: 1, or 0 (*rec NULL) when it has none; -1 if it has several. */
int sn_dense_record(const struct sn_manifest *dm,
                    const struct sn_descriptor **rec);
/* Fetch table (by digest, at most its descriptor's size), decode it and
 * check that it describes a layer of layer_size bytes compressed as
 * layer_comp (SN_COMP_GZIP or SN_COMP_ZSTD) and a windows blob of
 * windows->size bytes (windows NULL: a zstd layer's table, which has
 * none).  The dense table (a ztoc, the caller's). */
struct sn_ztoc *sn_dense_load_table(struct sn_registry *reg,
                                    const struct sn_descriptor *table,
                                    const struct sn_descriptor *windows,
                                    int64_t layer_size,
                                    enum sn_compression layer_comp);

/* ---- writing (soci-nbd convert) ---- */

/* The OCI empty descriptor's media type (its blob is "{}"). */
#define SN_MT_OCI_EMPTY "application/vnd.oci.empty.v1+json"

/* One indexed layer's dense blobs. */
struct sn_dense_entry {
  const char *layer_digest;
  size_t layer_index;           /* free for the caller's use */
  const char *table_digest;
  int64_t table_size;
  const char *windows_digest;  /* NULL: none (a zstd layer) */
  int64_t windows_size;
};

/* The dense-index manifest of n layers, in image-layer order (its config
 * is the OCI empty blob "{}", the caller pushes it), and after them the
 * prefetch record blob's descriptor when record is not NULL (only its
 * digest and size are used). */
struct sn_doc;
int sn_dense_manifest_encode(const struct sn_dense_entry *e, size_t n,
                             const struct sn_descriptor *record,
                             struct sn_doc *out);
/* dm (a checked dense-index manifest) again with its prefetch record
 * replaced by record (NULL: none): "prefetch add". */
int sn_dense_manifest_set_record(const struct sn_manifest *dm,
                                 const struct sn_descriptor *record,
                                 struct sn_doc *out);

#endif
