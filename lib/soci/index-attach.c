/* soci-nbd: attaching a prefetch record to a SOCI-enabled image ("soci-nbd
 * prefetch add"; lib/soci/index-attach.h, docs/prefetch-record.md): new
 * prefetch artifacts in a new SOCI index, the record in a new dense-index
 * manifest, the image manifest re-annotated. */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dense/dense.h"
#include "dense/dense-manifest.h"
#include "registry/copy.h"
#include "soci/index-attach.h"
#include "soci/index-find.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"
#include "util/err.h"

int
sn_prefetch_record_spans(const struct sn_ztoc *z, const struct sn_record *r,
                         size_t k, struct sn_prefetch_span **spans, size_t *n)
{
  struct sn_zinfo *zi = NULL;
  size_t i;

  for (i = 0; i < r->nranges; i++) {
    const struct sn_record_range *g = &r->ranges[i];
    struct sn_prefetch_span *s;

    if (g->layer != k)
      continue;
    if (zi == NULL && (zi = sn_zinfo_from_ztoc(z)) == NULL)
      return -1;
    if (g->off + g->len > (uint64_t) zi->uncompressed_size) {
      sn_zinfo_free(zi);
      return sn_set_error("the record's range %zu is past the end of layer "
                          "%s", i, r->layers[k]);
    }
    s = realloc(*spans, (*n + 1) * sizeof *s);
    if (s == NULL) {
      sn_zinfo_free(zi);
      return sn_oom();
    }
    *spans = s;
    s[*n] = (struct sn_prefetch_span) {
      .start = (int32_t) sn_zinfo_span_of(zi, (int64_t) g->off),
      .end = (int32_t) sn_zinfo_span_of(zi, (int64_t) (g->off + g->len - 1)),
    };
    (*n)++;
  }
  sn_zinfo_free(zi);
  return 0;
}

void
sn_index_attach_clear(struct sn_index_attach *a)
{
  sn_doc_free(&a->soci);
  sn_doc_free(&a->dense);
  sn_doc_free(&a->image);
}

/* The state of one attach. */
struct attach {
  struct sn_registry *src, *dst;
  const struct sn_manifest *m;
  const struct sn_record *r;
  struct sn_manifest *idx;        /* the SOCI index */
  size_t *map;                    /* record layer -> image layer */
  struct sn_ztoc **ztocs;         /* per record layer, or NULL */
  struct sn_index_ztoc *z;        /* the index's ztoc descriptors */
  size_t nz;
  struct sn_index_prefetch *pf;   /* prefetch artifacts, in layer order */
  size_t npf;
  struct sn_doc *pfdocs;          /* the new ones */
  size_t npfdocs;
};

/* The image layer digest d names (or nlayers). */
static size_t
layer_index(const struct sn_manifest *m, const char *d)
{
  size_t j;

  for (j = 0; d && j < m->nlayers; j++)
    if (strcmp(m->layers[j].digest, d) == 0)
      return j;
  return m->nlayers;
}

/* The index's ztoc descriptors as sn_index_ztoc (in its order), and the
 * ztocs of the record's layers, fetched by digest. */
static int
load_ztocs(struct attach *a)
{
  const struct sn_manifest *idx = a->idx;
  size_t i, k;

  a->z = calloc(idx->nlayers + 1, sizeof *a->z);
  a->ztocs = calloc(a->r->nlayers + 1, sizeof *a->ztocs);
  if (a->z == NULL || a->ztocs == NULL)
    return sn_oom();
  for (i = 0; i < idx->nlayers; i++) {
    const struct sn_descriptor *d = &idx->layers[i];
    const char *ld, *mt, *span, *nox;
    uint8_t *buf;
    size_t len;

    if (d->media_type == NULL || strcmp(d->media_type, SN_MT_SOCI_ZTOC) != 0)
      continue;
    ld = sn_annotation_get(d->annotations, d->nannotations,
                           SN_ANN_LAYER_DIGEST);
    mt = sn_annotation_get(d->annotations, d->nannotations,
                           SN_ANN_LAYER_MEDIA_TYPE);
    span = sn_annotation_get(d->annotations, d->nannotations,
                             SN_ANN_SPAN_SIZE);
    nox = sn_annotation_get(d->annotations, d->nannotations,
                            SN_ANN_DISABLE_XATTRS);
    if (ld == NULL || mt == NULL || span == NULL)
      return sn_set_error("SOCI index %s: ztoc %s lacks its annotations",
                          idx->digest, d->digest);
    a->z[a->nz++] = (struct sn_index_ztoc) {
      .digest = d->digest, .size = d->size, .layer_digest = ld,
      .layer_media_type = mt, .span_size = strtoll(span, NULL, 10),
      .disable_xattrs = nox && strcmp(nox, "true") == 0,
    };
    for (k = 0; k < a->r->nlayers; k++) {
      if (strcmp(a->r->layers[k], ld) != 0 || a->ztocs[k])
        continue;
      if (sn_registry_get_blob_desc(a->src, d, SN_ZTOC_MAX_BLOB, "ztoc",
                                    &buf, &len) == -1)
        return -1;
      a->ztocs[k] = sn_ztoc_decode(buf, len);
      free(buf);
      if (a->ztocs[k] == NULL)
        return sn_prefix_error("ztoc %s: ", d->digest);
    }
  }
  return 0;
}

/* The prefetch artifacts: the index's own for layers the record does not
 * name, new ones (pushed) for those it does, in image-layer order. */
static int
make_prefetch(struct attach *a)
{
  const struct sn_manifest *idx = a->idx, *m = a->m;
  size_t i, k, n = 0;

  a->pf = calloc(idx->nlayers + a->r->nlayers + 1, sizeof *a->pf);
  a->pfdocs = calloc(a->r->nlayers + 1, sizeof *a->pfdocs);
  if (a->pf == NULL || a->pfdocs == NULL)
    return sn_oom();
  for (i = 0; i < idx->nlayers; i++) {
    const struct sn_descriptor *d = &idx->layers[i];
    const char *ld = sn_annotation_get(d->annotations, d->nannotations,
                                       SN_ANN_LAYER_DIGEST);

    if (d->media_type == NULL ||
        strcmp(d->media_type, SN_MT_SOCI_PREFETCH) != 0 || ld == NULL)
      continue;
    for (k = 0; k < a->r->nlayers && strcmp(a->r->layers[k], ld) != 0; k++)
      ;
    if (k < a->r->nlayers && a->ztocs[k])
      continue;                 /* replaced */
    a->pf[a->npf++] = (struct sn_index_prefetch) { d->digest, d->size, ld };
  }
  for (k = 0; k < a->r->nlayers; k++) {
    struct sn_prefetch_span *s = NULL;
    struct sn_doc *doc = &a->pfdocs[a->npfdocs];
    int ret;

    n = 0;
    if (a->ztocs[k] == NULL)
      continue;                 /* no ztoc: nothing AWS soci could use */
    ret = sn_prefetch_record_spans(a->ztocs[k], a->r, k, &s, &n);
    if (ret == 0 && n > 0)
      ret = sn_prefetch_encode(s, n, doc);
    free(s);
    if (ret == -1)
      return -1;
    if (n == 0)
      continue;
    a->npfdocs++;
    if (sn_registry_push_blob(a->dst, doc->digest, doc->data, doc->len) == -1)
      return -1;
    a->pf[a->npf++] = (struct sn_index_prefetch) {
      doc->digest, (int64_t) doc->len, a->r->layers[k] };
  }
  /* Image-layer order, as convert writes them. */
  for (i = 1; i < a->npf; i++)
    for (k = i; k > 0 && layer_index(m, a->pf[k - 1].layer_digest) >
                          layer_index(m, a->pf[k].layer_digest); k--) {
      struct sn_index_prefetch t = a->pf[k];

      a->pf[k] = a->pf[k - 1];
      a->pf[k - 1] = t;
    }
  return 0;
}

/* The record as a blob of the dense-index manifest dm: pushed, and the
 * new dense-index manifest in *out (pushed). */
static int
attach_dense(struct attach *a, const struct sn_manifest *dm,
             struct sn_doc *out)
{
  struct sn_descriptor d = { 0 };
  char digest[SN_DIGEST_STRLEN + 1];
  uint8_t *buf;
  size_t len;
  int r;

  if (sn_record_encode(a->r, &buf, &len) == -1)
    return -1;
  sn_digest_of(buf, len, digest);
  r = sn_registry_push_blob(a->dst, digest, buf, len);
  free(buf);
  if (r == -1)
    return -1;
  d.media_type = (char *) SN_RECORD_MEDIA_TYPE;
  d.digest = digest;
  d.size = (int64_t) len;
  if (sn_dense_manifest_set_record(dm, &d, out) == -1)
    return sn_prefix_error("dense index %s: ", dm->digest);
  return sn_registry_put_manifest(a->dst, out->digest, SN_MT_OCI_MANIFEST,
                                  out->data, out->len);
}

static int
attach_run(struct attach *a, bool copy, struct sn_index_attach *out)
{
  const struct sn_manifest *m = a->m;
  const char *sdig = sn_annotation_get(m->annotations, m->nannotations,
                                       SN_ANN_INDEX_DIGEST);
  struct sn_manifest *dm = NULL;
  int64_t *sizes = NULL;
  size_t k;
  int r = -1;

  if (sdig == NULL)
    return sn_set_error("the image has no SOCI index (make one with "
                        "soci-nbd convert)");
  a->map = calloc(a->r->nlayers + 1, sizeof *a->map);
  sizes = calloc(m->nlayers + 1, sizeof *sizes);
  if (a->map == NULL || sizes == NULL) {
    free(sizes);
    return sn_oom();
  }
  for (k = 0; k < m->nlayers; k++)
    sizes[k] = -1;
  /* Names first (a foreign layer is refused before anything is
   * fetched), then ranges against the ztocs' sizes. */
  {
    const char **dg = calloc(m->nlayers + 1, sizeof *dg);

    if (dg == NULL)
      goto oom;
    for (k = 0; k < m->nlayers; k++)
      dg[k] = m->layers[k].digest;
    r = sn_record_bind(a->r, dg, NULL, m->nlayers, a->map);
    if (r == 0) {
      a->idx = sn_index_fetch(a->src, sdig, m);
      r = a->idx ? load_ztocs(a) : -1;
    }
    if (r == 0) {
      for (k = 0; k < a->r->nlayers; k++)
        if (a->ztocs[k])
          sizes[a->map[k]] = a->ztocs[k]->uncompressed_size;
      r = sn_record_bind(a->r, dg, sizes, m->nlayers, a->map);
    }
    free(dg);
    if (r == -1)
      goto out;
    r = -1;
  }
  if (a->idx->config.media_type == NULL ||
      strcmp(a->idx->config.media_type, SN_MT_SOCI_INDEX_V2) != 0) {
    sn_set_error("SOCI index %s is not v2 (soci-nbd convert makes one)",
                 sdig);
    goto out;
  }
  if (sn_dense_fetch(a->src, m, &dm) == -1)
    goto out;
  if (copy) {
    struct sn_registry_copy_opts co = { 0 };

    if (sn_registry_copy_tree(a->src, a->dst, m, &co) == -1 ||
        sn_registry_copy_tree(a->src, a->dst, a->idx, &co) == -1 ||
        (dm && sn_registry_copy_tree(a->src, a->dst, dm, &co) == -1))
      goto out;
  }
  if (make_prefetch(a) == -1 ||
      sn_index_encode(2, a->z, a->nz, a->pf, a->npf, NULL,
                      sn_annotation_get(a->idx->annotations,
                                        a->idx->nannotations,
                                        SN_ANN_BUILD_TOOL), &out->soci) == -1 ||
      sn_registry_push_blob(a->dst, SN_SOCI_CONFIG_DIGEST,
                            (const uint8_t *) SN_SOCI_CONFIG, 2) == -1 ||
      sn_registry_put_manifest(a->dst, out->soci.digest, SN_MT_OCI_MANIFEST,
                               out->soci.data, out->soci.len) == -1)
    goto out;
  if (dm && attach_dense(a, dm, &out->dense) == -1)
    goto out;
  if (sn_index_annotate_manifest_dense(m->raw, m->raw_len, out->soci.digest,
                                       dm ? out->dense.digest : NULL,
                                       &out->image) == -1 ||
      sn_registry_put_manifest(a->dst, out->image.digest, SN_MT_OCI_MANIFEST,
                               out->image.data, out->image.len) == -1)
    goto out;
  r = 0;
  goto out;
oom:
  sn_oom();
out:
  free(sizes);
  sn_manifest_free(dm);
  return r;
}

int
sn_index_attach_record(struct sn_registry *src, struct sn_registry *dst,
                       const struct sn_manifest *m, const struct sn_record *r,
                       bool copy, struct sn_index_attach *out)
{
  struct attach a = { .src = src, .dst = dst, .m = m, .r = r };
  size_t k;
  int ret;

  memset(out, 0, sizeof *out);
  if (r->nranges == 0)
    return sn_set_error("the record is empty");
  ret = attach_run(&a, copy, out);
  if (ret == -1)
    sn_index_attach_clear(out);
  for (k = 0; a.ztocs && k < r->nlayers; k++)
    sn_ztoc_free(a.ztocs[k]);
  for (k = 0; k < a.npfdocs; k++)
    sn_doc_free(&a.pfdocs[k]);
  free(a.ztocs);
  free(a.pfdocs);
  free(a.pf);
  free(a.z);
  free(a.map);
  sn_manifest_free(a.idx);
  return ret;
}
