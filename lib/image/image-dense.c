/* soci-nbd: the dense index of an image (docs/dense-index.md) — when the
 * image manifest names one, each gzip layer it covers is served from its
 * dense table (sub-spans, file table) and windows blob instead of the SOCI
 * ztoc, which is then never fetched. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "dense/dense-manifest.h"
#include "image/image-int.h"
#include "util/err.h"

int
img_load_dense(struct sn_image *img, const struct sn_manifest *m,
               struct sn_ztoc **ztocs)
{
  struct sn_manifest *dm;
  size_t j, found = 0;
  int r = -1;

  if (img->no_dense)
    return 0;
  /* Named by the manifest but not there (an image copied without its
   * referrers, as for a SOCI index v2) or not right: refused, with the way
   * out. */
  if (sn_dense_fetch(img->reg, m, &dm) == -1) {
    char *why = strdup(sn_error());   /* sn_set_error reuses its buffer */

    sn_set_error("%s (dense=false serves the image without it)",
                 why ? why : "out of memory");
    free(why);
    return -1;
  }
  if (dm == NULL)
    return 0;
  for (j = 0; j < img->nlayers; j++) {
    struct img_layer *l = &img->layers[j];
    const struct sn_descriptor *t, *w;
    int have;

    if (sn_layer_kind(l->media_type) != SN_LAYER_KIND_GZIP)
      continue;
    have = sn_dense_blobs(dm, l->digest, &t, &w);
    if (have == -1) {
      sn_prefix_error("dense index %s: ", dm->digest);
      goto out;
    }
    if (have == 0)
      continue;
    ztocs[j] = sn_dense_load_table(img->reg, t, w, l->size);
    if (ztocs[j] == NULL) {
      sn_prefix_error("layer %zu: ", j);
      goto out;
    }
    l->ztoc_digest = strdup(t->digest);
    l->windows_digest = strdup(w->digest);
    if (l->ztoc_digest == NULL || l->windows_digest == NULL) {
      sn_oom();
      goto out;
    }
    found++;
  }
  /* A record that cannot be used costs its speed-up, not the start. */
  if (img->prefetch == SN_PREFETCH_AUTO && img_note_record(img, dm) == -1)
    img_logf(img, "warning: %s; not replayed", sn_error());
  if ((img->dense_digest = strdup(dm->digest)) == NULL) {
    sn_oom();
    goto out;
  }
  img_logf(img, "dense index %s: %zu of %zu layers", dm->digest, found,
           img->nlayers);
  r = 0;
out:
  sn_manifest_free(dm);
  return r;
}
