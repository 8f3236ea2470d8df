/* soci-nbd: the registry API (registry.h) over a local OCI image layout
 * directory — internal to lib/, used by registry.c for oci-layout:
 * references.
 *
 * Reads: "oci-layout" must say imageLayoutVersion 1.x; tags are the
 * org.opencontainers.image.ref.name annotations of index.json entries;
 * blobs are blobs/sha256/<hex>, verified when fetched by digest.
 * Writes: a missing layout is created at the first push; blobs and
 * index.json are written to a temporary file and renamed into place, so a
 * reader never sees a partial file (writers in one process are
 * serialized; separate processes writing one layout at once may lose an
 * index.json update).
 * Referrers: the index.json entries (and the fallback tag index
 * "sha256-<hex>") whose manifest's subject is the digest.
 * Thread safety: as registry.h.  Errors follow err.h.
 */
#ifndef SN_OCILAYOUT_H
#define SN_OCILAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/manifest.h"

struct sn_layout;

/* Open dir (which need not exist yet: reads then fail, the first push
 * creates it).  default_tag: a tag that, when absent from the index, may
 * stand for the index's only manifest (a defaulted "latest"), or NULL. */
struct sn_layout *sn_layout_open(const char *dir, const char *default_tag);
void sn_layout_close(struct sn_layout *l);

struct sn_manifest *sn_layout_get_manifest(struct sn_layout *l,
                                           const char *tag_or_digest);
int sn_layout_get_blob_mem(struct sn_layout *l, const char *digest,
                           size_t max, uint8_t **buf, size_t *len);
int sn_layout_get_blob(struct sn_layout *l, const char *digest,
                       int64_t size,
                       int (*sink)(void *opaque, const uint8_t *data,
                                   size_t len),
                       void *opaque);
int sn_layout_read_range(struct sn_layout *l, const char *digest, void *buf,
                         size_t len, int64_t off);
int sn_layout_blob_exists(struct sn_layout *l, const char *digest,
                          int64_t *size);
int sn_layout_push_blob(struct sn_layout *l, const char *digest,
                        const uint8_t *data, size_t len);
int sn_layout_push_blob_fd(struct sn_layout *l, const char *digest, int fd,
                           int64_t size);
/* Streaming writes of a blob whose bytes the caller has verified (see
 * sn_blob_writer in registry.h): sn_layout_blob_tmp creates the layout if
 * needed and opens a temporary file beside the final blob (returns its fd
 * and sets *tmp, caller frees); sn_layout_blob_adopt fsyncs nothing more,
 * checks the size and renames it into place (or removes it when the blob
 * is already there). */
int sn_layout_blob_tmp(struct sn_layout *l, const char *digest, char **tmp);
int sn_layout_blob_adopt(struct sn_layout *l, const char *digest,
                         const char *tmp, int64_t size);
int sn_layout_put_manifest(struct sn_layout *l, const char *tag_or_digest,
                           const char *media_type, const uint8_t *data,
                           size_t len);
struct sn_manifest *sn_layout_referrers(struct sn_layout *l,
                                        const char *digest,
                                        const char *artifact_type);

/* Helpers shared with registry.c: an empty OCI index; a copy of index m
 * keeping only the entries with artifactType (NULL: all). */
struct sn_manifest *sn_empty_index(void);
struct sn_manifest *sn_index_filter(const struct sn_manifest *m,
                                    const char *artifact_type);

#endif
