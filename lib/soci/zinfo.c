/* soci-nbd: zinfo — the places where decompression of a layer can restart.
 *
 * This file reads and writes soci's gzip checkpoint blob, derives the zinfo
 * of a decoded ztoc (checking it against the ztoc) and computes span
 * geometry.  Decoding one span is in zinfo-decode.c; building checkpoints
 * plus span digests in a single streaming pass over a layer (a zran.c-style
 * inflate loop) is in zinfo-build.c.  The specification is
 * docs/soci-format.md §4.
 */
#include <config.h>

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/le.h"
#include "soci/zinfo.h"
#include "dense/dense.h"
#include "stargz/stargz.h"

/* ---- the zinfo object --------------------------------------------------- */

void
sn_zinfo_free(struct sn_zinfo *zi)
{
  size_t i;

  if (zi == NULL)
    return;
  if (zi->cp)
    for (i = 0; i < zi->nspans; i++)
      free(zi->cp[i].window);
  free(zi->cp);
  free(zi->winref);
  free(zi->skip);
  free(zi);
}

/* A gzip zinfo with n checkpoints, windows not yet allocated. */
static struct sn_zinfo *
zinfo_new_gzip(int64_t span_size, size_t n)
{
  struct sn_zinfo *zi = calloc(1, sizeof *zi);

  if (zi == NULL || (zi->cp = calloc(n, sizeof *zi->cp)) == NULL) {
    free(zi);
    sn_oom();
    return NULL;
  }
  zi->compression = SN_COMP_GZIP;
  zi->span_size = span_size;
  zi->nspans = n;
  return zi;
}

/* Checks that hold for any checkpoint table (zinfo.h): a sane first
 * checkpoint, bits in range, offsets non-negative and non-decreasing. */
int
sn_zinfo_check_checkpoints(const struct sn_zinfo *zi)
{
  size_t i;

  if (zi->nspans < 1 || zi->cp == NULL)
    return sn_set_error("zinfo: no checkpoint");
  if (zi->cp[0].out != 0)
    return sn_set_error("zinfo: checkpoint 0 is at uncompressed offset "
                        "%" PRId64 ", not 0", zi->cp[0].out);
  for (i = 0; i < zi->nspans; i++) {
    const struct sn_checkpoint *c = &zi->cp[i];

    if (c->bits > 7)
      return sn_set_error("zinfo: checkpoint %zu has %u bits (max 7)",
                          i, (unsigned) c->bits);
    if (c->in < 0 || c->out < 0 || (c->bits && c->in < 1))
      return sn_set_error("zinfo: checkpoint %zu has a bad offset "
                          "(in %" PRId64 ", out %" PRId64 ")",
                          i, c->in, c->out);
    if (i > 0 && (c->in < c[-1].in || c->out < c[-1].out))
      return sn_set_error("zinfo: checkpoint %zu goes backwards "
                          "(in %" PRId64 ", out %" PRId64 ")",
                          i, c->in, c->out);
  }
  return 0;
}

/* Decode a gzip checkpoint blob (v2, or legacy v1 without checkpoint 0)
 * into a new zinfo (the caller's), checked by sn_zinfo_check_checkpoints. */
struct sn_zinfo *
sn_zinfo_parse_gzip(const uint8_t *blob, size_t len)
{
  struct sn_zinfo *zi;
  const uint8_t *p;
  uint64_t body;
  int32_t count;
  int64_t span;
  size_t i = 0;

  if (blob == NULL || len < SN_ZINFO_HEADER_LEN) {
    sn_set_error("zinfo: blob too short (%zu bytes)", len);
    return NULL;
  }
  count = (int32_t) sn_get_le(blob, 4);
  span = (int64_t) sn_get_le(blob + 4, 8);
  body = len - SN_ZINFO_HEADER_LEN;
  if (count < 1) {
    sn_set_error("zinfo: bad checkpoint count %" PRId32, count);
    return NULL;
  }
  /* v2 holds every checkpoint; legacy v1 leaves out checkpoint 0. */
  if (body != (uint64_t) count * SN_ZINFO_CP_LEN &&
      body != (uint64_t) (count - 1) * SN_ZINFO_CP_LEN) {
    sn_set_error("zinfo: blob of %zu bytes cannot hold %" PRId32
                 " checkpoints", len, count);
    return NULL;
  }
  if (span < 0) {
    sn_set_error("zinfo: negative span size %" PRId64, span);
    return NULL;
  }

  zi = zinfo_new_gzip(span, (size_t) count);
  if (zi == NULL)
    return NULL;
  p = blob + SN_ZINFO_HEADER_LEN;
  if (body != (uint64_t) count * SN_ZINFO_CP_LEN) {
    /* v1: the implied checkpoint 0 right after a 10-byte gzip header. */
    zi->cp[0].in = 10;
    zi->cp[0].window = calloc(1, SN_ZINFO_WINSIZE);
    if (zi->cp[0].window == NULL)
      goto oom;
    i = 1;
  }
  for (; i < zi->nspans; i++, p += SN_ZINFO_CP_LEN) {
    struct sn_checkpoint *c = &zi->cp[i];

    c->in = (int64_t) sn_get_le(p, 8);
    c->out = (int64_t) sn_get_le(p + 8, 8);
    c->bits = p[16];
    c->window = malloc(SN_ZINFO_WINSIZE);
    if (c->window == NULL)
      goto oom;
    memcpy(c->window, p + 17, SN_ZINFO_WINSIZE);
  }
  if (sn_zinfo_check_checkpoints(zi) == -1) {
    sn_zinfo_free(zi);
    return NULL;
  }
  return zi;

oom:
  sn_oom();
  sn_zinfo_free(zi);
  return NULL;
}

/* Encode zi's checkpoints as a v2 blob: *out is malloc'd, the caller's. */
int
sn_zinfo_serialize_gzip(const struct sn_zinfo *zi, uint8_t **out,
                        size_t *len)
{
  uint8_t *buf, *p;
  size_t i, n;

  if (zi->compression != SN_COMP_GZIP || zi->cp == NULL)
    return sn_set_error("zinfo: not a gzip checkpoint table");
  if (zi->nspans < 1 || zi->nspans > INT32_MAX ||
      zi->nspans > (SIZE_MAX - SN_ZINFO_HEADER_LEN) / SN_ZINFO_CP_LEN)
    return sn_set_error("zinfo: cannot serialize %zu checkpoints",
                        zi->nspans);
  n = SN_ZINFO_HEADER_LEN + zi->nspans * SN_ZINFO_CP_LEN;
  buf = malloc(n);
  if (buf == NULL)
    return sn_oom();
  sn_put_le(buf, zi->nspans, 4);
  sn_put_le(buf + 4, (uint64_t) zi->span_size, 8);
  p = buf + SN_ZINFO_HEADER_LEN;
  for (i = 0; i < zi->nspans; i++, p += SN_ZINFO_CP_LEN) {
    const struct sn_checkpoint *c = &zi->cp[i];

    sn_put_le(p, (uint64_t) c->in, 8);
    sn_put_le(p + 8, (uint64_t) c->out, 8);
    p[16] = c->bits;
    if (c->window)
      memcpy(p + 17, c->window, SN_ZINFO_WINSIZE);
    else
      memset(p + 17, 0, SN_ZINFO_WINSIZE);
  }
  *out = buf;
  *len = n;
  return 0;
}

/* ---- zinfo of a ztoc --------------------------------------------------- */

/* What the snapshotter demands of a gzip ztoc's spans: each span but the
 * last is non-empty on both sides, and nothing starts past the blob. */
static int
check_gzip_spans(const struct sn_zinfo *zi)
{
  size_t i;

  for (i = 0; i < zi->nspans; i++) {
    const struct sn_checkpoint *c = &zi->cp[i];

    if (c->in > zi->compressed_size)
      return sn_set_error("ztoc: checkpoint %zu at compressed offset %"
                          PRId64 " is past the layer end (%" PRId64 ")",
                          i, c->in, zi->compressed_size);
    if (i + 1 < zi->nspans &&
        (c->in - (c->bits ? 1 : 0) >= c[1].in || c->out >= c[1].out))
      return sn_set_error("ztoc: span %zu is empty", i);
  }
  return 0;
}

/* The zinfo of an uncompressed layer's ztoc: fixed spans from its
 * TarZinfo, checked against the ztoc's sizes and max_span_id. */
static struct sn_zinfo *
zinfo_of_tar(const struct sn_ztoc *z)
{
  struct sn_zinfo *zi;
  int64_t span, size, n;

  if (sn_tarzinfo_decode(z->checkpoints, z->checkpoints_len,
                         &span, &size) == -1)
    return NULL;
  if (span <= 0) {
    sn_set_error("ztoc: uncompressed layer with span size %" PRId64, span);
    return NULL;
  }
  if (size <= 0 || size != z->compressed_size) {
    sn_set_error("ztoc: TarZinfo size %" PRId64 " does not match the "
                 "layer size %" PRId64, size, z->compressed_size);
    return NULL;
  }
  if (z->uncompressed_size > size) {
    sn_set_error("ztoc: tar end %" PRId64 " is past the layer end %" PRId64,
                 z->uncompressed_size, size);
    return NULL;
  }
  n = size / span + (size % span != 0);
  if (n != (int64_t) z->max_span_id + 1) {
    sn_set_error("ztoc: max_span_id %" PRId32 " but the layer has %"
                 PRId64 " spans", z->max_span_id, n);
    return NULL;
  }
  zi = calloc(1, sizeof *zi);
  if (zi == NULL) {
    sn_oom();
    return NULL;
  }
  zi->compression = SN_COMP_UNCOMPRESSED;
  zi->span_size = span;
  zi->nspans = (size_t) n;
  return zi;
}

/* The zinfo a decoded ztoc implies (new, the caller's), checked against
 * the ztoc: span counts, sizes and, for gzip, the snapshotter's span
 * rules. */
struct sn_zinfo *
sn_zinfo_from_ztoc(const struct sn_ztoc *z)
{
  struct sn_zinfo *zi;

  if (z->compressed_size < 0 || z->uncompressed_size < 0) {
    sn_set_error("ztoc: negative archive size");
    return NULL;
  }
  if (z->max_span_id < 0) {
    sn_set_error("ztoc: negative max_span_id %" PRId32, z->max_span_id);
    return NULL;
  }
  if (z->nspan_digests != (size_t) z->max_span_id + 1) {
    sn_set_error("ztoc: %zu span digests but max_span_id is %" PRId32,
                 z->nspan_digests, z->max_span_id);
    return NULL;
  }

  switch (z->compression) {
  case SN_COMP_GZIP:
  case SN_COMP_ZSTD:
    /* A dense table (lib/dense/dense.h) or soci's blob; the same checks
     * against the ztoc follow for both.  A zstd layer has only the
     * former. */
    if (sn_dense_cp_is(z->checkpoints, z->checkpoints_len))
      zi = sn_dense_cp_parse(z->checkpoints, z->checkpoints_len);
    else if (z->compression == SN_COMP_GZIP)
      zi = sn_zinfo_parse_gzip(z->checkpoints, z->checkpoints_len);
    else {
      sn_set_error("ztoc: a zstd layer's checkpoints are not a dense "
                   "checkpoint table");
      return NULL;
    }
    if (zi == NULL)
      return NULL;
    if (zi->compression != z->compression) {
      sn_set_error("ztoc: the checkpoint table is for %s, the ztoc for %s",
                   zi->compression == SN_COMP_ZSTD ? "zstd" : "gzip",
                   z->compression == SN_COMP_ZSTD ? "zstd" : "gzip");
      goto fail;
    }
    zi->compressed_size = z->compressed_size;
    zi->uncompressed_size = z->uncompressed_size;
    if (zi->nspans != (size_t) z->max_span_id + 1) {
      sn_set_error("ztoc: %zu checkpoints but max_span_id is %" PRId32,
                   zi->nspans, z->max_span_id);
      goto fail;
    }
    if (check_gzip_spans(zi) == -1)
      goto fail;
    return zi;
  case SN_COMP_ESTARGZ:
  case SN_COMP_ZSTD_CHUNKED:
    return sn_stargz_zinfo(z);
  case SN_COMP_UNCOMPRESSED:
    zi = zinfo_of_tar(z);
    if (zi == NULL)
      return NULL;
    zi->compressed_size = z->compressed_size;
    zi->uncompressed_size = z->uncompressed_size;
    return zi;
  default:
    sn_set_error("ztoc: unsupported compression algorithm %d",
                 (int) z->compression);
    return NULL;
  }

fail:
  sn_zinfo_free(zi);
  return NULL;
}

/* ---- span geometry ------------------------------------------------------ */

/* -1 if a span would need a buffer (inflated or compressed) over
 * SN_SPAN_MAX_OUT bytes. */
int
sn_zinfo_check_spans(const struct sn_zinfo *zi)
{
  int64_t max = 0;
  size_t i, big = 0;

  for (i = 0; i < zi->nspans; i++) {
    struct sn_span s;
    int64_t need;

    sn_zinfo_span(zi, i, &s);
    need = s.uncomp_end - s.uncomp_start;
    if (s.comp_end - s.comp_start > need)     /* its fetch buffer */
      need = s.comp_end - s.comp_start;
    if (need > max) {
      max = need;
      big = i;
    }
  }
  if (max > SN_SPAN_MAX_OUT)
    return sn_set_error("span %zu inflates to %" PRId64 " bytes (the limit "
                        "is %" PRId64 " MiB)", big, max,
                        SN_SPAN_MAX_OUT >> 20);
  return 0;
}

/* Span i's compressed and uncompressed ranges (all zero if there is no
 * span i). */
void
sn_zinfo_span(const struct sn_zinfo *zi, size_t i, struct sn_span *s)
{
  bool last = i + 1 >= zi->nspans;

  memset(s, 0, sizeof *s);
  if (i >= zi->nspans)
    return;
  if (zi->compression != SN_COMP_UNCOMPRESSED) {
    const struct sn_checkpoint *c = &zi->cp[i];

    s->comp_start = c->in - (c->bits ? 1 : 0);
    s->comp_end = last ? zi->compressed_size : c[1].in;
    s->uncomp_start = c->out;
    s->uncomp_end = last ? zi->uncompressed_size : c[1].out;
  }
  else {
    s->comp_start = s->uncomp_start = (int64_t) i * zi->span_size;
    s->comp_end = last ? zi->compressed_size : s->comp_start + zi->span_size;
    s->uncomp_end = last ? zi->uncompressed_size : s->comp_end;
  }
  /* The tar end can precede the last span's start (§4.2): empty span. */
  if (s->uncomp_end < s->uncomp_start)
    s->uncomp_end = s->uncomp_start;
  if (s->comp_end < s->comp_start)
    s->comp_end = s->comp_start;
}

/* The span holding uncompressed offset off (clamped to the first and
 * last). */
size_t
sn_zinfo_span_of(const struct sn_zinfo *zi, int64_t off)
{
  size_t lo = 0, hi;

  if (zi->nspans == 0 || off <= 0)
    return 0;
  hi = zi->nspans - 1;
  if (zi->compression == SN_COMP_UNCOMPRESSED) {
    int64_t i = zi->span_size > 0 ? off / zi->span_size : 0;
    return (uint64_t) i < hi ? (size_t) i : hi;
  }
  /* Largest i with out[i] <= off. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo + 1) / 2;

    if (zi->cp[mid].out <= off)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}
