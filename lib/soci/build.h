/* soci-nbd: build a ztoc from a layer in one streaming pass.
 *
 * The layer bytes (gzip or uncompressed tar) are fed in chunks; a single
 * pass inflates them, records checkpoints, hashes every span and the whole
 * blob, and parses the tar stream into the TOC.  Nothing of the layer is
 * kept in memory beyond a few windows.  The result is the same ztoc soci
 * builds for the same layer (given the same build tool id).
 *
 * Ownership: the builder owns its state until sn_ztoc_builder_free();
 * sn_ztoc_builder_finish() hands a new struct sn_ztoc to the caller.
 * Errors follow err.h.
 */
#ifndef SN_BUILD_H
#define SN_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/digest.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"

#define SN_BUILD_TOOL_DEFAULT PACKAGE_NAME " " PACKAGE_VERSION

struct sn_build_opts {
  int64_t span_size;          /* 0 → SN_DEFAULT_SPAN_SIZE */
  const char *build_tool;     /* NULL → SN_BUILD_TOOL_DEFAULT */
  bool no_blob_digest;        /* the caller verifies the layer digest
                                 itself: finish gets blob_digest NULL */
};

/* What a layer's first bytes say it is. */
enum sn_layer_format {
  SN_LAYER_GZIP, SN_LAYER_TAR, SN_LAYER_ZSTD, SN_LAYER_UNKNOWN,
};
enum sn_layer_format sn_layer_sniff(const uint8_t *head, size_t len);

struct sn_ztoc_builder;

struct sn_ztoc_builder *sn_ztoc_builder_new(enum sn_compression comp,
                                            const struct sn_build_opts *o);
int sn_ztoc_builder_feed(struct sn_ztoc_builder *b, const uint8_t *data,
                         size_t len);
/* The finished ztoc; blob_digest (may be NULL) receives the layer digest. */
struct sn_ztoc *sn_ztoc_builder_finish(struct sn_ztoc_builder *b,
                                       uint8_t blob_digest[SN_SHA256_LEN]);
void sn_ztoc_builder_free(struct sn_ztoc_builder *b);
/* Called for each tar entry with data as the tar parser reaches it, in tar
 * order: the offset of its data in the tar and its size.  -1 stops the
 * build.  For the dense index (lib/dense/dense.h). */
typedef int (*sn_file_fn)(void *opaque, int64_t data_offset, int64_t size);
void sn_ztoc_builder_set_file_hook(struct sn_ztoc_builder *b, sn_file_fn fn,
                                   void *opaque);
/* Called with every piece of the layer's output, in order, before the tar
 * parser sees it (gzip layers; the padding after the tar too). */
void sn_ztoc_builder_set_output_hook(struct sn_ztoc_builder *b,
                                     sn_output_fn fn, void *opaque);
/* The zinfo builder inside b (for its boundary hook). */
struct sn_zinfo_builder *sn_ztoc_builder_zinfo(struct sn_ztoc_builder *b);
/* b's compression, and the bytes fed to it so far. */
enum sn_compression sn_ztoc_builder_compression(
  const struct sn_ztoc_builder *b);
int64_t sn_ztoc_builder_fed(const struct sn_ztoc_builder *b);

/* Build from a local file: detects gzip vs tar, refuses zstd/unknown
 * with a message naming the file. */
struct sn_ztoc *sn_ztoc_build_file(const char *path,
                                   const struct sn_build_opts *o,
                                   uint8_t blob_digest[SN_SHA256_LEN]);

#endif
