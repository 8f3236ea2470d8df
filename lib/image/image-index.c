/* soci-nbd: the SOCI index of an image — fetch it, attach each layer's
 * ztoc (or leave the layer to be fetched whole), and load its prefetch
 * artifacts (docs/soci-format.md). */
#include <config.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image-int.h"
#include "registry/manifest.h"
#include "registry/registry.h"
#include "soci/index.h"
#include "soci/index-find.h"
#include "soci/ztoc.h"
#include "util/err.h"
#include "util/parallel.h"

#define MAX_PREFETCH_DOC ((size_t) 16 << 20)

/* ---- SOCI index ------------------------------------------------------- */

/* Parse a prefetch artifact: {"version":"1.0","prefetch_spans":
 * [{"start_span":A,"end_span":B[,"priority":N]}, …]}. */
int
sn_image_parse_prefetch(const uint8_t *buf, size_t len,
                        struct sn_prefetch_span **out, size_t *n)
{
  json_error_t je;
  json_t *root = json_loadb((const char *) buf, len, 0, &je), *spans, *v;
  const char *ver = NULL;
  size_t i;

  *out = NULL;
  *n = 0;
  if (root == NULL)
    return sn_set_error("not JSON: %s (line %d)", je.text, je.line);
  if (!json_is_object(root) ||
      !json_is_string(v = json_object_get(root, "version")) ||
      strcmp(ver = json_string_value(v), "1.0") != 0 ||
      !json_is_array(spans = json_object_get(root, "prefetch_spans"))) {
    /* ver points into root: format the message before freeing it. */
    sn_set_error("not a prefetch artifact v1.0%s%.100s",
                 ver ? ": version " : "", ver ? ver : "");
    json_decref(root);
    return -1;
  }
  *out = calloc(json_array_size(spans) + 1, sizeof **out);
  if (*out == NULL) {
    json_decref(root);
    return sn_oom();
  }
  json_array_foreach(spans, i, v) {
    json_t *a = json_object_get(v, "start_span"), *b = json_object_get(v,
                                                                 "end_span");

    if (!json_is_integer(a) || !json_is_integer(b) ||
        json_integer_value(a) < 0 ||
        json_integer_value(b) < json_integer_value(a) ||
        json_integer_value(b) > INT32_MAX) {
      json_decref(root);
      free(*out);
      *out = NULL;
      *n = 0;
      return sn_set_error("prefetch_spans[%zu]: want 0 <= start_span <= "
                          "end_span", i);
    }
    (*out)[*n].start = (int32_t) json_integer_value(a);
    (*out)[*n].end = (int32_t) json_integer_value(b);
    (*n)++;
  }
  json_decref(root);
  return 0;
}

/* Fetch one prefetch artifact (by digest: verified) and attach its span
 * ranges to its layer.  Unknown layers are ignored (as a ztoc would be);
 * span ids are checked when the ztoc is known (setup_layers). */
static int
load_prefetch(struct sn_image *img, const struct sn_descriptor *d)
{
  const char *ld = sn_annotation_get(d->annotations, d->nannotations,
                                     SN_ANN_LAYER_DIGEST);
  struct sn_prefetch_span *sp, *all;
  uint8_t *buf;
  size_t len, n, j;

  if (ld == NULL)
    return 0;
  for (j = 0; j < img->nlayers; j++)
    if (strcmp(img->layers[j].digest, ld) == 0)
      break;
  if (j == img->nlayers)
    return 0;
  if (sn_registry_get_blob_mem(img->reg, d->digest,
                               d->size > 0 &&
                               (uint64_t) d->size < MAX_PREFETCH_DOC
                               ? (size_t) d->size : MAX_PREFETCH_DOC,
                               &buf, &len) == -1)
    return sn_prefix_error("prefetch artifact %s of layer %zu: ", d->digest,
                           j);
  if (sn_image_parse_prefetch(buf, len, &sp, &n) == -1) {
    free(buf);
    return sn_prefix_error("prefetch artifact %s of layer %zu: ", d->digest,
                           j);
  }
  free(buf);
  /* Every layer with this digest gets the ranges. */
  for (; j < img->nlayers; j++) {
    struct img_layer *l = &img->layers[j];

    if (strcmp(l->digest, ld) != 0)
      continue;
    all = realloc(l->pf, (l->npf + n + 1) * sizeof *all);
    if (all == NULL) {
      free(sp);
      return sn_oom();
    }
    memcpy(all + l->npf, sp, n * sizeof *sp);
    l->pf = all;
    l->npf += n;
  }
  free(sp);
  img->npf_docs++;
  img_logf(img, "prefetch artifact %s: %zu span ranges of layer %s", d->digest,
        n, ld);
  return 0;
}

/* Does a span of z inflate past SN_SPAN_MAX_OUT?  Then layer j is served
 * whole (downloaded, verified, read from disk) instead of lazily, which
 * bounds the memory any span can take.  (A ztoc that does not parse is
 * refused later, when the layer opens.) */
static bool
span_too_large(struct sn_image *img, const struct sn_ztoc *z, size_t j,
               const char *ztoc_digest)
{
  struct sn_zinfo *zi = sn_zinfo_from_ztoc(z);
  bool big = zi && sn_zinfo_check_spans(zi) == -1;

  if (big)
    img_logf(img, "layer %zu: ztoc %s: %s: the layer is fetched whole", j,
          ztoc_digest, sn_error());
  sn_zinfo_free(zi);
  return big;
}

/* The ztocs to fetch, at once (sn_parallel_for): one per layer. */
struct ztoc_jobs {
  struct sn_image *img;
  struct sn_ztoc **ztocs;
  struct ztoc_job {
    size_t layer;
    const struct sn_descriptor *d;
  } *job;
  size_t njobs, found;
};

static int
ztoc_job(void *arg, size_t i)
{
  struct ztoc_jobs *zj = arg;
  const struct sn_descriptor *d = zj->job[i].d;
  size_t j = zj->job[i].layer;
  struct img_layer *l = &zj->img->layers[j];
  enum sn_layer_kind k = sn_layer_kind(l->media_type);
  struct sn_ztoc *z;
  uint8_t *buf;
  size_t len;

  if (sn_registry_get_blob_mem(zj->img->reg, d->digest,
                               d->size > 0 ? (size_t) d->size
                                           : SN_ZTOC_MAX_BLOB,
                               &buf, &len) == -1)
    return sn_prefix_error("ztoc %s of layer %zu: ", d->digest, j);
  z = sn_ztoc_decode(buf, len);
  free(buf);
  if (z == NULL)
    return sn_prefix_error("ztoc %s of layer %zu: ", d->digest, j);
  if (z->compressed_size != l->size ||
      z->compression != (k == SN_LAYER_KIND_GZIP ? SN_COMP_GZIP
                                                 : SN_COMP_UNCOMPRESSED)) {
    sn_ztoc_free(z);
    return sn_set_error("ztoc %s does not describe layer %zu (%s): size or "
                        "compression differs", d->digest, j, l->digest);
  }
  if (span_too_large(zj->img, z, j, d->digest)) {
    sn_ztoc_free(z);
    return 0;                   /* served whole: see SN_SPAN_MAX_OUT */
  }
  zj->ztocs[j] = z;
  if ((l->ztoc_digest = strdup(d->digest)) == NULL)
    return sn_oom();
  __atomic_fetch_add(&zj->found, 1, __ATOMIC_RELAXED);
  return 0;
}

/* Fetch the index and attach ztocs to the layers (ztocs[i]). */
int
img_load_index(struct sn_image *img, const struct sn_manifest *m,
               struct sn_ztoc **ztocs)
{
  struct ztoc_jobs zj = { .img = img, .ztocs = ztocs };
  struct sn_manifest *idx;
  size_t i, j;
  int r = -1;

  idx = sn_index_fetch(img->reg, img->index_digest, m);
  if (idx == NULL)
    return -1;
  zj.job = calloc(img->nlayers + 1, sizeof *zj.job);
  if (zj.job == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < idx->nlayers; i++) {
    const struct sn_descriptor *d = &idx->layers[i];
    const char *ld;

    if (d->media_type && strcmp(d->media_type, SN_MT_SOCI_PREFETCH) == 0) {
      if ((img->prefetch == SN_PREFETCH_ARTIFACT ||
           img->prefetch == SN_PREFETCH_AUTO) &&
          load_prefetch(img, d) == -1)
        goto out;
      continue;
    }
    if (d->media_type == NULL || strcmp(d->media_type, SN_MT_SOCI_ZTOC) != 0)
      continue;
    ld = sn_annotation_get(d->annotations, d->nannotations, SN_ANN_LAYER_DIGEST);
    if (ld == NULL)
      continue;
    for (j = 0; j < img->nlayers; j++) {
      struct img_layer *l = &img->layers[j];
      enum sn_layer_kind k = sn_layer_kind(l->media_type);
      size_t q;

      if (ztocs[j] || strcmp(l->digest, ld) != 0)
        continue;
      if (k != SN_LAYER_KIND_GZIP && k != SN_LAYER_KIND_TAR)
        continue;         /* refused later with the layer's message */
      for (q = 0; q < zj.njobs && zj.job[q].layer != j; q++)
        ;
      if (q < zj.njobs)
        continue;               /* the index names this layer twice */
      if (d->size > (int64_t) SN_ZTOC_MAX_BLOB) {
        sn_set_error("ztoc %s of layer %zu: %" PRId64 " bytes (the limit is "
                     "%zu MiB)", d->digest, j, d->size,
                     SN_ZTOC_MAX_BLOB >> 20);
        goto out;
      }
      zj.job[zj.njobs++] = (struct ztoc_job) { j, d };
    }
  }
  /* Each is a round trip or more: all at once, not one after another. */
  if (sn_parallel_for(zj.njobs, SN_IMAGE_FETCH_THREADS, ztoc_job, &zj) == -1)
    goto out;
  img_logf(img, "SOCI index %s (%s): ztocs for %zu of %zu layers",
        img->index_digest, img->index_source, zj.found, img->nlayers);
  r = 0;
out:
  free(zj.job);
  sn_manifest_free(idx);
  return r;
}
