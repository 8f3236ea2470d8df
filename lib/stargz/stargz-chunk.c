/* soci-nbd: an eStargz or zstd:chunked layer's chunks at run time
 * (stargz.h): the span geometry of its chunk table, and the decode of one
 * chunk — a gzip member inflated, or zstd frames decompressed, from its
 * start, the bytes before the chunk dropped, no more produced than the
 * chunk needs.  The caller checks the result against
 * the chunk's digest (lib/span/layer.c). */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "stargz/stargz.h"
#include "inflate/zstd-frames.h"
#include "util/err.h"
#include "util/le.h"

struct sn_zinfo *
sn_stargz_zinfo(const struct sn_ztoc *z)
{
  const uint8_t *p = z->checkpoints;
  struct sn_zinfo *zi;
  size_t i, n;

  if (z->checkpoints_len < SN_STARGZ_CP_HEADER_LEN ||
      memcmp(p, SN_STARGZ_CP_MAGIC, 8) != 0 || sn_get_le(p + 12, 4) != 0) {
    sn_set_error("eStargz chunk table: bad header");
    return NULL;
  }
  n = (size_t) sn_get_le(p + 8, 4);
  if (n < 1 || n != (size_t) z->max_span_id + 1 ||
      (z->checkpoints_len - SN_STARGZ_CP_HEADER_LEN) /
      SN_STARGZ_CP_RECORD_LEN != n ||
      (z->checkpoints_len - SN_STARGZ_CP_HEADER_LEN) %
      SN_STARGZ_CP_RECORD_LEN != 0) {
    sn_set_error("eStargz chunk table: %zu chunks in %zu bytes for %"
                 PRId32 " spans", n, z->checkpoints_len, z->max_span_id + 1);
    return NULL;
  }
  zi = calloc(1, sizeof *zi);
  if (zi == NULL || (zi->cp = calloc(n, sizeof *zi->cp)) == NULL ||
      (zi->skip = calloc(n, sizeof *zi->skip)) == NULL) {
    sn_zinfo_free(zi);
    sn_oom();
    return NULL;
  }
  zi->compression = z->compression;
  zi->nspans = n;
  zi->compressed_size = z->compressed_size;
  zi->uncompressed_size = z->uncompressed_size;
  for (i = 0, p += SN_STARGZ_CP_HEADER_LEN; i < n;
       i++, p += SN_STARGZ_CP_RECORD_LEN) {
    struct sn_checkpoint *c = &zi->cp[i];

    c->in = (int64_t) sn_get_le(p, 8);
    c->out = (int64_t) sn_get_le(p + 8, 8);
    zi->skip[i] = (int64_t) sn_get_le(p + 16, 8);
    if (c->in < 0 || c->in >= z->compressed_size ||
        (i > 0 && c->in <= c[-1].in) || c->out < 0 ||
        c->out > z->uncompressed_size ||
        (i == 0 ? c->out != 0 : c->out <= c[-1].out) ||
        zi->skip[i] < 0 || zi->skip[i] > SN_SPAN_MAX_OUT) {
      sn_set_error("eStargz chunk table: chunk %zu out of order or outside "
                   "the layer", i);
      sn_zinfo_free(zi);
      return NULL;
    }
  }
  /* Only a layer with no data at all has an empty (last and only)
   * chunk. */
  if (zi->cp[n - 1].out >= z->uncompressed_size &&
      (n > 1 || z->uncompressed_size != 0)) {
    sn_set_error("eStargz chunk table: the last chunk is empty");
    sn_zinfo_free(zi);
    return NULL;
  }
  return zi;
}

int
sn_stargz_decode(const struct sn_zinfo *zi, size_t i, const uint8_t *comp,
                 size_t comp_len, uint8_t *out, size_t out_len)
{
  uint8_t scratch[16384];
  int64_t skip;
  z_stream zs;
  int r = Z_OK;

  if (zi->skip == NULL || i >= zi->nspans)
    return sn_set_error("chunk %zu: not a TOC-indexed layer's chunk", i);
  skip = zi->skip[i];
  if (zi->compression == SN_COMP_ZSTD_CHUNKED)
    return sn_zstd_frames_decode(comp, comp_len, skip, out, out_len) == -1
      ? sn_prefix_error("chunk %zu: ", i) : 0;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + 15) != Z_OK)
    return sn_oom();
  zs.next_in = (Bytef *) comp;
  zs.avail_in = (uInt) comp_len;     /* spans are at most 64 MiB */
  /* The member's output before the chunk (tar headers, other chunks). */
  while (skip > 0 && r == Z_OK) {
    zs.next_out = scratch;
    zs.avail_out = skip < (int64_t) sizeof scratch ? (uInt) skip
      : (uInt) sizeof scratch;
    r = inflate(&zs, Z_NO_FLUSH);
    skip -= (int64_t) (zs.next_out - scratch);
  }
  zs.next_out = out;
  zs.avail_out = (uInt) out_len;
  while (zs.avail_out > 0 && r == Z_OK && skip == 0)
    r = inflate(&zs, Z_NO_FLUSH);
  inflateEnd(&zs);
  if (zs.avail_out == 0 && skip == 0)
    return 0;
  if (r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK)
    return sn_set_error("chunk %zu: its gzip member ends %zu bytes short",
                        i, (size_t) zs.avail_out + (size_t) skip);
  return sn_set_error("chunk %zu: corrupt gzip member (%s)", i,
                      zs.msg ? zs.msg : "zlib error");
}
