/* soci-nbd: the dense index of an image (docs/dense-index.md) — when the
 * image manifest names one, each gzip layer it covers is served from its
 * dense table (sub-spans, file table) and windows blob instead of the SOCI
 * ztoc, which is then never fetched; each zstd layer it covers, from its
 * table alone (frame-granular sub-spans, no windows). */
#include <config.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dense/dense-manifest.h"
#include "image/image-int.h"
#include "util/err.h"
#include "util/parallel.h"

/* The start-up fetches of a dense index, run at once (sn_parallel_for):
 * one per layer it covers, and the prefetch record. */
struct dense_jobs {
  struct sn_image *img;
  struct sn_ztoc **ztocs;
  struct dense_job {
    size_t layer;
    const struct sn_descriptor *table, *windows;
  } *job;
  size_t njobs;
  bool record;                  /* one more job: the prefetch record */
};

static int
dense_job(void *arg, size_t i)
{
  struct dense_jobs *d = arg;
  struct dense_job *j = &d->job[i];
  struct img_layer *l;

  if (i == d->njobs) {
    /* A record that cannot be used costs its speed-up, not the start. */
    if (img_load_record(d->img) == -1) {
      img_logf(d->img, "warning: %s; not replayed", sn_error());
      sn_record_clear(&d->img->record);
    }
    return 0;
  }
  l = &d->img->layers[j->layer];
  d->ztocs[j->layer] = sn_dense_load_table(
    d->img->reg, j->table, j->windows, l->size,
    sn_layer_kind(l->media_type) == SN_LAYER_KIND_ZSTD ? SN_COMP_ZSTD
                                                       : SN_COMP_GZIP);
  if (d->ztocs[j->layer] == NULL)
    return sn_prefix_error("layer %zu: ", j->layer);
  l->dense = true;
  l->ztoc_digest = strdup(j->table->digest);
  if (j->windows)
    l->windows_digest = strdup(j->windows->digest);
  if (l->ztoc_digest == NULL || (j->windows && l->windows_digest == NULL))
    return sn_oom();
  return 0;
}

int
img_load_dense(struct sn_image *img, const struct sn_manifest *m,
               struct sn_ztoc **ztocs)
{
  struct sn_manifest *dm;
  struct dense_jobs d = { .img = img, .ztocs = ztocs };
  size_t j;
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
  d.job = calloc(img->nlayers + 1, sizeof *d.job);
  if (d.job == NULL) {
    sn_oom();
    goto out;
  }
  for (j = 0; j < img->nlayers; j++) {
    struct img_layer *l = &img->layers[j];
    const struct sn_descriptor *t, *w;
    int have;

    if (sn_layer_kind(l->media_type) != SN_LAYER_KIND_GZIP &&
        sn_layer_kind(l->media_type) != SN_LAYER_KIND_ZSTD)
      continue;
    have = sn_dense_blobs(dm, l->digest, &t, &w);
    if (have == -1) {
      sn_prefix_error("dense index %s: ", dm->digest);
      goto out;
    }
    if (have == 1)
      d.job[d.njobs++] = (struct dense_job) { j, t, w };
  }
  if (img->prefetch == SN_PREFETCH_AUTO) {
    if (img_note_record(img, dm) == -1)
      img_logf(img, "warning: %s; not replayed", sn_error());
    else
      d.record = img->record_desc.digest != NULL;
  }
  /* Each is a round trip or more: all at once, not one after another. */
  if (sn_parallel_for(d.njobs + d.record, SN_IMAGE_FETCH_THREADS, dense_job,
                      &d) == -1)
    goto out;
  if ((img->dense_digest = strdup(dm->digest)) == NULL) {
    sn_oom();
    goto out;
  }
  img_logf(img, "dense index %s: %zu of %zu layers", dm->digest, d.njobs,
           img->nlayers);
  r = 0;
out:
  free(d.job);
  sn_manifest_free(dm);
  return r;
}
