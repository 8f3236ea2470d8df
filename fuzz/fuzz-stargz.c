/* soci-nbd fuzzing: eStargz and zstd:chunked TOCs (lib/stargz) on hostile
 * bytes.  The first byte's low two bits pick the mode:
 *   0: the rest is an eStargz layer blob — footer, TOC member, TOC (its
 *      digest taken as given), then every chunk decoded from the blob;
 *   1: the rest is eStargz TOC JSON, for a blob of 1 TiB with the TOC at
 *      its end (the parser alone);
 *   2: the rest is a zstd:chunked layer whose last 16 bytes say where its
 *      manifest is (u64 offset, u64 length, little endian; the checksum
 *      taken as given), then every chunk decoded from it;
 *   3: the rest is zstd:chunked manifest JSON (the parser alone).
 * Whatever is accepted must hold what the layer code relies on: spans
 * that tile the file data space from 0, compressed ranges inside the
 * payload and strictly increasing, every file's data inside the space. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "soci/zinfo.h"
#include "stargz/stargz.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
  fprintf(stderr, "stargz: %s (last error: %s)\n", what, sn_error());
  abort();
}

/* The invariants of an accepted layer; decode its chunks from blob (if
 * not NULL), bounded. */
static void
check(struct sn_ztoc *z, const uint8_t *blob)
{
  struct sn_zinfo *zi = sn_zinfo_from_ztoc(z);
  int64_t out = 0, budget = 4 << 20;
  size_t i;

  if (zi == NULL)
    fail("a ztoc sn_stargz_ztoc made is refused by sn_zinfo_from_ztoc");
  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];

    if (f->offset < 0 || f->size < 0 ||
        f->size > z->uncompressed_size - f->offset)
      fail("a file's data outside the data space");
  }
  for (i = 0; i < zi->nspans; i++) {
    struct sn_span s, p;

    sn_zinfo_span(zi, i, &s);
    if (s.uncomp_start != out ||
        (s.uncomp_end <= s.uncomp_start && z->uncompressed_size > 0))
      fail("spans do not tile the data space");
    if (s.comp_start < 0 || s.comp_end > z->compressed_size ||
        s.comp_end <= s.comp_start)
      fail("a chunk's compressed range outside the payload");
    if (i > 0) {
      sn_zinfo_span(zi, i - 1, &p);
      if (p.comp_end != s.comp_start)
        fail("chunks not contiguous");
    }
    if (sn_zinfo_span_of(zi, s.uncomp_start) != i)
      fail("span_of does not find a chunk's start");
    out = s.uncomp_end;
    if (blob && s.uncomp_end - s.uncomp_start <= budget) {
      size_t n = (size_t) (s.uncomp_end - s.uncomp_start);
      uint8_t *buf = malloc(n);

      if (buf == NULL)
        abort();
      budget -= (int64_t) n;
      (void) sn_zinfo_decode_span(zi, i, blob + s.comp_start,
                                  (size_t) (s.comp_end - s.comp_start), buf,
                                  n);
      free(buf);
    }
  }
  if (out != z->uncompressed_size)
    fail("spans end before the data space");
  sn_zinfo_free(zi);
}

/* The TOC json for a blob of blob_size with its TOC member at toc_off. */
static void
toc(const uint8_t *json, size_t len, int64_t toc_off, int64_t skip,
    int64_t blob_size, const uint8_t *blob)
{
  uint8_t d[SN_SHA256_LEN];
  char digest[SN_DIGEST_STRLEN + 1];
  struct sn_ztoc *z;
  size_t landmark;

  sn_sha256(json, len, d);
  sn_digest_format(d, digest);
  z = sn_stargz_ztoc(json, len, digest, toc_off, skip, blob_size, &landmark);
  if (z == NULL)
    return;
  if (landmark > (size_t) z->max_span_id + 1)
    fail("the landmark is past the chunks");
  check(z, blob);
  sn_ztoc_free(z);
}

/* zstd:chunked: the manifest json, chunks before payload_end of blob (if
 * not NULL). */
static void
zchunked(const uint8_t *json, size_t len, int64_t payload_end,
         const uint8_t *blob)
{
  struct sn_ztoc *z;
  size_t landmark;

  z = sn_zchunked_ztoc(json, len, payload_end, &landmark);
  if (z == NULL)
    return;
  check(z, blob);
  sn_ztoc_free(z);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int64_t toc_off, skip;
  uint8_t *json;
  size_t jlen;
  int mode;

  if (size < 1)
    return 0;
  mode = data[0] & 3;
  data++;
  size--;
  if (mode == 1) {
    toc(data, size, ((int64_t) 1 << 40) - 4096, 512, (int64_t) 1 << 40,
        NULL);
    return 0;
  }
  if (mode == 3) {
    zchunked(data, size, (int64_t) 1 << 40, NULL);
    return 0;
  }
  if (mode == 2) {
    char pos[96], sum[SN_DIGEST_STRLEN + 1];
    int64_t off, clen, ulen;
    uint8_t d[SN_SHA256_LEN];

    if (size < 16)
      return 0;
    /* The position as the annotation would say it, lengths from the
     * tail; the uncompressed length from the frame header if it has one. */
    off = (int64_t) (sn_get_le(data + size - 16, 8) % (size + 1));
    clen = (int64_t) (sn_get_le(data + size - 8, 8) % (size + 1));
    size -= 16;
    if (off < 8 || clen <= 0 || (size_t) off > size ||
        (size_t) clen > size - (size_t) off)
      return 0;
    {
      unsigned long long c = ZSTD_getFrameContentSize(data + off,
                                                      (size_t) clen);

      if (c == ZSTD_CONTENTSIZE_UNKNOWN || c == ZSTD_CONTENTSIZE_ERROR ||
          c > (1 << 20) || c == 0)
        return 0;
      ulen = (int64_t) c;
    }
    snprintf(pos, sizeof pos, "%lld:%lld:%lld:1", (long long) off,
             (long long) clen, (long long) ulen);
    if (sn_zchunked_position_parse(pos, (int64_t) size, &off, &clen,
                                   &ulen) == -1)
      fail("a position within the layer refused");
    sn_sha256(data + off, (size_t) clen, d);
    sn_digest_format(d, sum);
    if (sn_zchunked_toc_extract(data + off, (size_t) clen, ulen, sum, &json,
                                &jlen) == -1)
      return 0;
    zchunked(json, jlen, off - 8, data);
    free(json);
    return 0;
  }
  if (size < SN_STARGZ_FOOTER_LEN ||
      sn_stargz_footer_parse(data + size - SN_STARGZ_FOOTER_LEN,
                             SN_STARGZ_FOOTER_LEN, (int64_t) size,
                             &toc_off) == -1)
    return 0;
  if (sn_stargz_toc_extract(data + toc_off,
                            size - SN_STARGZ_FOOTER_LEN - (size_t) toc_off,
                            &json, &jlen, &skip) == -1)
    return 0;
  toc(json, jlen, toc_off, skip, (int64_t) size, data);
  free(json);
  return 0;
}
