/* soci-nbd: attaching a prefetch record (docs/prefetch-record.md,
 * "Attaching") to an image that already has a SOCI index v2 — "soci-nbd
 * prefetch add".  The record becomes standard SOCI prefetch artifacts in
 * a new SOCI index (the ztoc descriptors kept as they are) and, when the
 * image has a dense index, a blob of a new dense-index manifest; the image
 * manifest is re-annotated to name both.  Everything is read by digest
 * from the image manifest (docs/trust-model.md).
 *
 * Ownership: the caller keeps the registries, the manifest and the record;
 * the documents in struct sn_index_attach are the caller's
 * (sn_index_attach_clear).  Errors: -1 with a one-line message (err.h).
 */
#ifndef SN_INDEX_ATTACH_H
#define SN_INDEX_ATTACH_H

#include <stdbool.h>

#include "record/record.h"
#include "registry/manifest.h"
#include "registry/registry.h"
#include "soci/index.h"

struct sn_index_attach {
  struct sn_doc soci;           /* the new SOCI index manifest */
  struct sn_doc dense;          /* the new dense-index manifest (len 0:
                                 * the image has none) */
  struct sn_doc image;          /* the re-annotated image manifest */
};

/* Attach r to image manifest m (read from src), pushing to dst the
 * prefetch artifacts, the record blob, the SOCI index, the dense-index
 * manifest and the image manifest (by digest; no tag); with copy, the
 * blobs of the image, its SOCI index and its dense index that dst lacks
 * are copied first.  A record naming a layer m does not have, or a range
 * past a layer's end, is refused; so is an image without a v2 SOCI
 * index. */
int sn_index_attach_record(struct sn_registry *src, struct sn_registry *dst,
                           const struct sn_manifest *m,
                           const struct sn_record *r, bool copy,
                           struct sn_index_attach *out);
void sn_index_attach_clear(struct sn_index_attach *a);

/* The spans of ztoc z covering the ranges of record r whose layer is k (a
 * record layer index), appended to *spans (realloc'd) as runs; *n counts
 * them.  0 or -1. */
int sn_prefetch_record_spans(const struct sn_ztoc *z, const struct sn_record *r,
                             size_t k, struct sn_prefetch_span **spans,
                             size_t *n);

#endif
