/* soci-nbd: the whole-layer check — the verified spans and the bytes
 * between them are fed to a ztoc builder, whose blob digest must be the
 * layer digest and whose ztoc must be the one served. */
#include <config.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "soci/build.h"
#include "util/digest.h"
#include "util/err.h"
#include "span/layer.h"
#include "span/layer-int.h"

/* ---- whole-layer check ------------------------------------------------ */

struct sn_layer_check {
  struct sn_layer *l;
  struct sn_ztoc_builder *b;
  int64_t fed;                  /* blob bytes fed to the builder so far */
  size_t next;                  /* the span expected next */
};

/* A whole-layer check of l: a ztoc builder at the layer's span size. */
struct sn_layer_check *
sn_layer_check_new(struct sn_layer *l)
{
  struct sn_layer_check *c = calloc(1, sizeof *c);
  /* A dense table has no span size: any will do for its TOC. */
  struct sn_build_opts bo = { .span_size = l->zi->winref
                              ? SN_DEFAULT_SPAN_SIZE : l->zi->span_size };

  if (c == NULL) {
    sn_oom();
    return NULL;
  }
  if (layer_toc_chunks(l)) {
    free(c);
    sn_set_error("a layer served from its own TOC (eStargz, zstd:chunked) "
                 "is checked chunk by chunk against it, not whole");
    return NULL;
  }
  c->l = l;
  c->b = sn_ztoc_builder_new(l->z->compression, &bo);
  if (c->b == NULL) {
    free(c);
    return NULL;
  }
  return c;
}

void
sn_layer_check_free(struct sn_layer_check *c)
{
  if (c == NULL)
    return;
  sn_ztoc_builder_free(c->b);
  free(c);
}

/* Feed blob bytes [c->fed, end) that no span covers (the gzip header and
 * trailer), read straight from the source: only the final digest vouches
 * for them, and they are never served. */
static int
feed_gap(struct sn_layer_check *c, int64_t end, bool *mismatch)
{
  uint8_t buf[65536];

  while (c->fed < end) {
    size_t n = end - c->fed > (int64_t) sizeof buf ? sizeof buf
      : (size_t) (end - c->fed);

    if (c->l->read(c->l->read_opaque, buf, n, c->fed) == -1)
      return sn_prefix_error("%s: bytes [%lld,+%zu): ", c->l->name,
                             (long long) c->fed, n);
    if (sn_ztoc_builder_feed(c->b, buf, n) == -1) {
      *mismatch = true;
      return -1;
    }
    c->fed += (int64_t) n;
  }
  return 0;
}

/* Feed span i's verified compressed bytes (spans in order), after the
 * source bytes before it that no span covers. */
int
sn_layer_check_span(struct sn_layer_check *c, size_t i, const uint8_t *comp,
                    size_t clen, bool *mismatch)
{
  struct sn_span s;
  int64_t skip;

  *mismatch = false;
  if (i != c->next)
    return sn_set_error("whole-layer check of %s: span %zu fed, %zu "
                        "expected", c->l->name, i, c->next);
  sn_zinfo_span(c->l->zi, i, &s);
  if ((int64_t) clen != s.comp_end - s.comp_start)
    return sn_set_error("whole-layer check of %s: span %zu has %zu bytes",
                        c->l->name, i, clen);
  if (feed_gap(c, s.comp_start, mismatch) == -1)
    return -1;
  /* Adjacent spans share a byte when a checkpoint is mid-byte. */
  skip = c->fed - s.comp_start;
  if (skip < (int64_t) clen) {
    if (sn_ztoc_builder_feed(c->b, comp + skip, clen - (size_t) skip) == -1) {
      *mismatch = true;
      return -1;
    }
    c->fed = s.comp_end;
  }
  c->next++;
  return 0;
}

static bool
bytes_same(const struct sn_bytes *a, const struct sn_bytes *b)
{
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static int toc_same(const struct sn_ztoc *z, const struct sn_ztoc *r);

/* Is the served ztoc (l's) what the layer's bytes imply (r)? */
static int
ztoc_same(struct sn_layer *l, const struct sn_ztoc *r)
{
  const struct sn_ztoc *z = l->z;
  struct sn_zinfo *rz;
  size_t i;
  int ret = 0;

  if (r->uncompressed_size != z->uncompressed_size)
    return sn_set_error("the tar stream is %lld bytes, the ztoc says %lld",
                        (long long) r->uncompressed_size,
                        (long long) z->uncompressed_size);
  /* A dense table's sub-spans were each checked against their digests
   * when fetched, and the blob digest vouches for them all; its
   * checkpoints and windows are not rebuilt here (docs/dense-index.md). */
  if (l->zi->winref)
    return toc_same(z, r);
  if (r->nspan_digests != z->nspan_digests)
    return sn_set_error("a rebuild at span size %lld has %zu spans, the "
                        "ztoc %zu (checkpoints placed differently)",
                        (long long) l->zi->span_size, r->nspan_digests,
                        z->nspan_digests);
  for (i = 0; i < r->nspan_digests; i++)
    if (!bytes_same(&r->span_digests[i], &z->span_digests[i]))
      return sn_set_error("span %zu: digest differs from a rebuild", i);
  rz = sn_zinfo_from_ztoc(r);
  if (rz == NULL)
    return -1;
  for (i = 0; i < rz->nspans && l->zi->compression == SN_COMP_GZIP; i++) {
    const struct sn_checkpoint *a = &rz->cp[i], *b = &l->zi->cp[i];

    if (a->in != b->in || a->out != b->out || a->bits != b->bits) {
      ret = sn_set_error("checkpoint %zu is at (%lld, %lld, %u bits), a "
                         "rebuild puts it at (%lld, %lld, %u bits)", i,
                         (long long) b->in, (long long) b->out, b->bits,
                         (long long) a->in, (long long) a->out, a->bits);
      break;
    }
    /* The window of checkpoint 0 is not used. */
    if (i > 0 && memcmp(a->window, b->window, SN_ZINFO_WINSIZE) != 0) {
      ret = sn_set_error("checkpoint %zu: its 32 KiB window is not the "
                         "layer's", i);
      break;
    }
  }
  sn_zinfo_free(rz);
  if (ret == -1)
    return -1;
  return toc_same(z, r);
}

/* Are the served TOC (z's) and the rebuilt one (r's) the same? */
static int
toc_same(const struct sn_ztoc *z, const struct sn_ztoc *r)
{
  size_t i, j;

  if (r->nfiles != z->nfiles)
    return sn_set_error("the tar has %zu entries, the ztoc %zu", r->nfiles,
                        z->nfiles);
  for (i = 0; i < r->nfiles; i++) {
    const struct sn_ztoc_file *a = &r->files[i], *b = &z->files[i];
    const char *what = NULL;

    if (!bytes_same(&a->name, &b->name))
      what = "name";
    else if (!bytes_same(&a->type, &b->type))
      what = "type";
    else if (a->offset != b->offset || a->size != b->size)
      what = "offset or size";
    else if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid)
      what = "mode or owner";
    else if (!bytes_same(&a->linkname, &b->linkname))
      what = "link target";
    else if (a->mtime_sec != b->mtime_sec || a->mtime_nsec != b->mtime_nsec)
      what = "mtime";
    else if (a->devmajor != b->devmajor || a->devminor != b->devminor)
      what = "device numbers";
    else if (a->npax != b->npax)
      what = "PAX records";
    for (j = 0; what == NULL && j < a->npax; j++)
      if (!bytes_same(&a->pax[j].key, &b->pax[j].key) ||
          !bytes_same(&a->pax[j].value, &b->pax[j].value))
        what = "PAX records";
    if (what)
      return sn_set_error("entry %zu \"%.*s\": %s differs from the tar", i,
                          (int) b->name.len, b->name.data, what);
  }
  return 0;
}

/* Feed the bytes after the last span, then compare the rebuild's blob
 * digest with layer_digest and its ztoc with the served one. */
int
sn_layer_check_finish(struct sn_layer_check *c, const char *layer_digest,
                      bool *mismatch)
{
  struct sn_layer *l = c->l;
  uint8_t d[SN_SHA256_LEN];
  char got[SN_DIGEST_STRLEN + 1];
  struct sn_ztoc *r;
  int ret;

  *mismatch = false;
  if (c->next != l->zi->nspans)
    return sn_set_error("whole-layer check of %s: %zu of %zu spans fed",
                        l->name, c->next, l->zi->nspans);
  if (feed_gap(c, l->z->compressed_size, mismatch) == -1)
    goto bad;
  r = sn_ztoc_builder_finish(c->b, d);
  if (r == NULL) {
    *mismatch = true;
    goto bad;
  }
  sn_digest_format(d, got);
  if (strcmp(got, layer_digest) != 0) {
    sn_ztoc_free(r);
    *mismatch = true;
    return sn_set_error("whole-layer check of %s: the verified spans and "
                        "the bytes between them hash to %s", l->name, got);
  }
  ret = ztoc_same(l, r);
  sn_ztoc_free(r);
  if (ret == -1) {
    *mismatch = true;
    return sn_prefix_error("whole-layer check of %s: the ztoc does not "
                           "describe the layer: ", l->name);
  }
  return 0;

bad:
  return sn_prefix_error("whole-layer check of %s: ", l->name);
}
