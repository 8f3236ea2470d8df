/* soci-nbd: the TOC-indexed layers of an image — an eStargz layer (gzip,
 * docs/estargz.md) or a zstd:chunked one (zstd, docs/zstd-chunked.md)
 * whose manifest descriptor pins its TOC, and that no dense table covers,
 * is served lazily from its own TOC: the TOC is fetched at start-up (all
 * layers at once) and checked against the annotation, and the layer's
 * chunks become its spans (lib/stargz/stargz.h). */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "image/image-int.h"
#include "registry/registry.h"
#include "stargz/stargz.h"
#include "util/err.h"
#include "util/parallel.h"

/* The layers to load at once (sn_parallel_for), each with its
 * annotations. */
struct stargz_jobs {
  struct sn_image *img;
  struct sn_ztoc **ztocs;
  struct stargz_job {
    size_t layer;
    const char *toc_digest;     /* the TOC digest annotation */
    const char *position;       /* zstd:chunked: the manifest position;
                                 * NULL for eStargz */
  } *job;
};

/* len bytes at off of layer l's blob, malloc'd (the caller's), or NULL. */
static uint8_t *
fetch_range(struct sn_image *img, struct img_layer *l, int64_t off,
            int64_t len)
{
  uint8_t *buf = malloc(len > 0 ? (size_t) len : 1);

  if (buf == NULL)
    sn_oom();
  else if (sn_registry_read_range(img->reg, l->digest, buf, (size_t) len,
                                  off) == -1) {
    free(buf);
    buf = NULL;
  }
  return buf;
}

/* Footer, then TOC member, then the ztoc of layer l. */
static struct sn_ztoc *
load_toc(struct sn_image *img, struct img_layer *l, const char *toc_digest,
         size_t *landmark)
{
  uint8_t footer[SN_STARGZ_FOOTER_LEN], *comp = NULL, *json = NULL;
  int64_t toc_off, skip, clen;
  struct sn_ztoc *z = NULL;
  size_t jlen;

  if (l->size < SN_STARGZ_FOOTER_LEN) {
    sn_set_error("eStargz footer: the layer has %" PRId64 " bytes",
                 l->size);
    return NULL;
  }
  if (sn_registry_read_range(img->reg, l->digest, footer, sizeof footer,
                             l->size - SN_STARGZ_FOOTER_LEN) == -1 ||
      sn_stargz_footer_parse(footer, sizeof footer, l->size, &toc_off) == -1)
    return NULL;
  clen = l->size - SN_STARGZ_FOOTER_LEN - toc_off;
  if (clen > SN_STARGZ_TOC_MAX_COMP) {
    sn_set_error("eStargz TOC of %" PRId64 " bytes (at most %" PRId64 ")",
                 clen, SN_STARGZ_TOC_MAX_COMP);
    return NULL;
  }
  if ((comp = fetch_range(img, l, toc_off, clen)) != NULL &&
      sn_stargz_toc_extract(comp, (size_t) clen, &json, &jlen, &skip) == 0)
    z = sn_stargz_ztoc(json, jlen, toc_digest, toc_off, skip, l->size,
                       landmark);
  free(comp);
  free(json);
  return z;
}

/* The compressed manifest where position says, checked, then the ztoc of
 * zstd:chunked layer l. */
static struct sn_ztoc *
load_zchunked(struct sn_image *img, struct img_layer *l, const char *checksum,
              const char *position, size_t *landmark)
{
  int64_t off, clen, ulen;
  uint8_t *comp = NULL, *json = NULL;
  struct sn_ztoc *z = NULL;
  size_t jlen;

  if (sn_zchunked_position_parse(position, l->size, &off, &clen, &ulen) == -1)
    return NULL;
  /* The chunks end where the manifest's skippable frame starts (its
   * 8-byte header before the position). */
  if ((comp = fetch_range(img, l, off, clen)) != NULL &&
      sn_zchunked_toc_extract(comp, (size_t) clen, ulen, checksum, &json,
                              &jlen) == 0)
    z = sn_zchunked_ztoc(json, jlen, off - 8, landmark);
  free(comp);
  free(json);
  return z;
}

/* Load job k; a failure names the layer and the option that serves it
 * without its TOC. */
static int
stargz_job(void *arg, size_t k)
{
  struct stargz_jobs *s = arg;
  const struct stargz_job *j = &s->job[k];
  struct img_layer *l = &s->img->layers[j->layer];
  size_t landmark = 0;

  s->ztocs[l->index] = j->position
    ? load_zchunked(s->img, l, j->toc_digest, j->position, &landmark)
    : load_toc(s->img, l, j->toc_digest, &landmark);
  if (s->ztocs[l->index] == NULL) {
    char *why = strdup(sn_error());   /* sn_set_error reuses its buffer */

    sn_set_error("layer %zu (%s): %s (%s serves the layer without its TOC)",
                 l->index, l->digest, why ? why : "out of memory",
                 j->position ? "zstd-chunked=false" : "estargz=false");
    free(why);
    return -1;
  }
  l->stargz_landmark = landmark;
  l->zchunked = j->position != NULL;
  l->stargz_toc = strdup(j->toc_digest);
  if (l->stargz_toc == NULL)
    return sn_oom();
  return 0;
}

int
img_load_stargz(struct sn_image *img, const struct sn_manifest *m,
                struct sn_ztoc **ztocs)
{
  struct stargz_jobs s = { .img = img, .ztocs = ztocs };
  size_t i, n = 0;
  int r = -1;

  s.job = calloc(img->nlayers + 1, sizeof *s.job);
  if (s.job == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < img->nlayers && i < m->nlayers; i++) {
    const struct sn_descriptor *d = &m->layers[i];
    enum sn_layer_kind k = sn_layer_kind(img->layers[i].media_type);
    const char *toc = NULL, *pos = NULL;

    if (ztocs[i])
      continue;
    if (k == SN_LAYER_KIND_GZIP && !img->no_stargz)
      toc = sn_annotation_get(d->annotations, d->nannotations,
                              SN_STARGZ_TOC_ANNOTATION);
    else if (k == SN_LAYER_KIND_ZSTD && !img->no_zchunked) {
      toc = sn_annotation_get(d->annotations, d->nannotations,
                              SN_ZCHUNKED_CHECKSUM_ANNOTATION2);
      pos = sn_annotation_get(d->annotations, d->nannotations,
                              SN_ZCHUNKED_POSITION_ANNOTATION2);
      if (toc == NULL || pos == NULL) {
        toc = sn_annotation_get(d->annotations, d->nannotations,
                                SN_ZCHUNKED_CHECKSUM_ANNOTATION);
        pos = sn_annotation_get(d->annotations, d->nannotations,
                                SN_ZCHUNKED_POSITION_ANNOTATION);
      }
      if (pos == NULL)
        toc = NULL;
    }
    if (toc)
      s.job[n++] = (struct stargz_job) { i, toc, pos };
  }
  /* One or two round trips each: all layers at once. */
  if (sn_parallel_for(n, SN_IMAGE_FETCH_THREADS, stargz_job, &s) == -1)
    goto out;
  if (n)
    img_logf(img, "eStargz, zstd:chunked: %zu of %zu layers served from "
             "their TOC", n, img->nlayers);
  r = 0;
out:
  free(s.job);
  return r;
}
