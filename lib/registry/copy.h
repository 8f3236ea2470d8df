/* soci-nbd: copy an image (blobs and manifests) from one registry or OCI
 * layout to another, streaming each blob missing at the destination.
 *
 * Ownership: the caller keeps the registries and manifests.  Errors: -1
 * with the message set through sn_set_error (err.h).
 */
#ifndef SN_COPY_H
#define SN_COPY_H

#include <stdbool.h>

#include "registry/manifest.h"
#include "registry/registry.h"

struct sn_registry_copy_opts {
  /* Layers of the image manifest given to sn_registry_copy_tree (not of
   * its children) for which skip_layer is true are not copied: the
   * caller copies them some other way.  NULL: none skipped. */
  bool (*skip_layer)(void *opaque, const struct sn_descriptor *d);
  /* After each blob copied (not one DST had already); may be NULL. */
  void (*copied)(void *opaque, const struct sn_descriptor *d);
  void *opaque;
};

/* Copy the blobs of an image manifest, or a whole index tree (children
 * first, each child manifest put after its blobs; not the index itself),
 * SRC → DST.  Foreign and non-distributable layers are not copied. */
int sn_registry_copy_tree(struct sn_registry *src, struct sn_registry *dst,
                          const struct sn_manifest *m,
                          const struct sn_registry_copy_opts *o);

#endif
