/* soci-nbd command line: the IMAGE forms of the "ztoc" commands (info,
 * ls, get-file): an image's SOCI index and its ztocs, found the way the
 * plugin finds them (lib/soci/index-find.h).  Functions that return an
 * int give 0 or an exit status after printing the message. */
#ifndef SN_ZTOC_IMAGE_H
#define SN_ZTOC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "regopts.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "soci/ztoc.h"

struct image_index {
  struct sn_ref ref;
  struct sn_registry *reg;
  struct sn_manifest *m;        /* the image manifest */
  struct sn_manifest *idx;      /* its SOCI index */
};

/* A blob source reading ranges of a layer from the registry (the opaque
 * of image_index_read_range). */
struct range_src {
  struct sn_registry *reg;
  const char *digest;
};

/* Free what image_index_open filled (safe on a zeroed or partial one). */
void image_index_clear(struct image_index *ii);

/* Open IMAGE (for platform, NULL = the host's) and find its SOCI index
 * (lib/soci/index-find.h: the v2 annotation, a v1 referrer with --soci-v1).
 * 0, or an exit status after printing the message. */
int image_index_open(const char *image, const struct regopts *ro,
                     const char *platform, const char *cmd,
                     struct image_index *ii);

/* The ztoc of the layer named by sel (a layer digest or its number in the
 * image manifest), fetched by digest and decoded.  *layer receives the
 * layer's descriptor.  NULL after printing the message. */
struct sn_ztoc *image_index_ztoc(struct image_index *ii, const char *image,
                                 const char *sel,
                                 const struct sn_descriptor **layer);

/* ztoc ls IMAGE: one line per ztoc of the image's SOCI index. */
int image_index_ls(const char *image, const struct regopts *ro,
                   const char *platform);

/* sn_layer blob reader: ranges of the layer blob by HTTP Range request. */
int image_index_read_range(void *opaque, void *buf, size_t len, int64_t off);

#endif
