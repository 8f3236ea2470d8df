/* soci-nbd: where a TOC-indexed layer keeps its table of contents
 * (stargz.h, docs/estargz.md, docs/zstd-chunked.md): an eStargz layer's
 * footer and TOC member (a gzip member holding the tar entry
 * stargz.index.json), and a zstd:chunked layer's manifest (a zstd frame in
 * a skippable frame, located by the manifest-position annotation and
 * checked against the manifest-checksum one). */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "soci/tar.h"
#include "stargz/stargz.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/le.h"

/* ---- footer ------------------------------------------------------------ */

int
sn_stargz_footer_parse(const uint8_t *p, size_t len, int64_t blob_size,
                       int64_t *toc_off)
{
  int64_t off = 0;
  size_t i;

  if (len != SN_STARGZ_FOOTER_LEN || blob_size < SN_STARGZ_FOOTER_LEN)
    return sn_set_error("eStargz footer: %zu bytes, %d expected", len,
                        SN_STARGZ_FOOTER_LEN);
  /* gzip header with FEXTRA only; XLEN 26 = one subfield "SG" of 22. */
  if (p[0] != 0x1f || p[1] != 0x8b || p[2] != 8 || p[3] != 4 ||
      sn_get_le(p + 10, 2) != 26 || p[12] != 'S' || p[13] != 'G' ||
      sn_get_le(p + 14, 2) != 22 || memcmp(p + 32, "STARGZ", 6) != 0)
    return sn_set_error("eStargz footer: no STARGZ subfield");
  for (i = 16; i < 32; i++) {
    int c = p[i], v = c >= '0' && c <= '9' ? c - '0'
      : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

    if (v < 0)
      return sn_set_error("eStargz footer: TOC offset is not 16 lowercase "
                          "hex digits");
    if (off > (INT64_MAX >> 4))
      return sn_set_error("eStargz footer: TOC offset overflows");
    off = off << 4 | v;
  }
  if (off >= blob_size - SN_STARGZ_FOOTER_LEN)
    return sn_set_error("eStargz footer: TOC offset %" PRId64 " is past "
                        "the layer's payload (%" PRId64 " bytes)", off,
                        blob_size - SN_STARGZ_FOOTER_LEN);
  *toc_off = off;
  return 0;
}

/* ---- the TOC member ---------------------------------------------------- */

/* The first tar entry of the TOC member (sn_tar_parser callback). */
struct toc_entry {
  bool seen;
  bool ok;
  int64_t data, size;
};

static int
first_entry(void *opaque, const struct sn_tar_entry *e)
{
  struct toc_entry *t = opaque;
  char name[64];
  int n;

  if (t->seen)
    return 0;
  t->seen = true;
  n = sn_path_clean(e->name.data, e->name.len, name, sizeof name);
  t->ok = e->typeflag == '0' && n >= 0 &&
    strcmp(name, SN_STARGZ_TOC_NAME) == 0;
  t->data = e->data_offset;
  t->size = e->size;
  return 0;
}

int
sn_stargz_toc_extract(const uint8_t *comp, size_t comp_len, uint8_t **json,
                      size_t *json_len, int64_t *skip)
{
  /* The tar stream: headers (PAX included), the JSON, padding, the end. */
  size_t cap = SN_STARGZ_TOC_MAX_JSON + ((size_t) 2 << 20), have = 0;
  struct toc_entry t = { 0 };
  struct sn_tar_parser *tp = NULL;
  uint8_t *out = NULL;
  z_stream zs;
  int r, ret = -1;

  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + 15) != Z_OK)
    return sn_oom();
  /* Grow as it inflates: the member's own size bounds the first guess. */
  {
    size_t guess = comp_len < cap / 8 ? comp_len * 8 + 4096 : cap;

    out = malloc(guess);
    if (out == NULL) {
      sn_oom();
      goto out;
    }
    zs.next_out = out;
    zs.avail_out = (uInt) guess;
    zs.next_in = (Bytef *) comp;
    zs.avail_in = comp_len > UINT32_MAX ? UINT32_MAX : (uInt) comp_len;
    for (;;) {
      r = inflate(&zs, Z_NO_FLUSH);
      have = guess - zs.avail_out;
      if (r == Z_STREAM_END)
        break;
      if (r != Z_OK && r != Z_BUF_ERROR) {
        sn_set_error("eStargz TOC: corrupt gzip member (%s)",
                     zs.msg ? zs.msg : "zlib error");
        goto out;
      }
      if (zs.avail_out == 0) {
        uint8_t *bigger;

        if (guess >= cap) {
          sn_set_error("eStargz TOC: more than %zu bytes inflated", cap);
          goto out;
        }
        guess = guess > cap / 2 ? cap : guess * 2;
        bigger = realloc(out, guess);
        if (bigger == NULL) {
          sn_oom();
          goto out;
        }
        out = bigger;
        zs.next_out = out + have;
        zs.avail_out = (uInt) (guess - have);
      }
      else if (zs.avail_in == 0) {
        sn_set_error("eStargz TOC: the member is truncated");
        goto out;
      }
    }
  }
  tp = sn_tar_parser_new(first_entry, &t);
  if (tp == NULL)
    goto out;
  if (sn_tar_parser_feed(tp, out, have) == -1) {
    sn_prefix_error("eStargz TOC: ");
    goto out;
  }
  if (!t.seen || !t.ok) {
    sn_set_error("eStargz TOC: the member does not start with the regular "
                 "file " SN_STARGZ_TOC_NAME);
    goto out;
  }
  if (t.size < 0 || (uint64_t) t.size > SN_STARGZ_TOC_MAX_JSON ||
      t.data < 0 || t.data > (int64_t) have ||
      (uint64_t) t.size > have - (size_t) t.data) {
    sn_set_error("eStargz TOC: its JSON (%" PRId64 " bytes) is not all in "
                 "the member", t.size);
    goto out;
  }
  *json = malloc((size_t) t.size + 1);
  if (*json == NULL) {
    sn_oom();
    goto out;
  }
  memcpy(*json, out + t.data, (size_t) t.size);
  (*json)[t.size] = 0;
  *json_len = (size_t) t.size;
  *skip = t.data;
  ret = 0;
out:
  sn_tar_parser_free(tp);
  free(out);
  inflateEnd(&zs);
  return ret;
}


/* ---- zstd:chunked ------------------------------------------------------ */

int
sn_zchunked_position_parse(const char *s, int64_t blob_size, int64_t *off,
                           int64_t *clen, int64_t *ulen)
{
  int64_t v[4];
  int i;

  for (i = 0; i < 4; i++) {
    int64_t n = 0;

    if (*s < '0' || *s > '9')
      goto bad;
    for (; *s >= '0' && *s <= '9'; s++) {
      if (n > (INT64_MAX - 9) / 10)
        goto bad;
      n = n * 10 + (*s - '0');
    }
    v[i] = n;
    if (*s != (i < 3 ? ':' : '\0'))
      goto bad;
    s++;
  }
  if (v[3] != 1)
    return sn_set_error("zstd:chunked manifest of type %" PRId64 " (only 1 "
                        "is known)", v[3]);
  if (v[0] < 8 || v[1] <= 0 || v[1] > blob_size - v[0] ||
      v[1] > SN_STARGZ_TOC_MAX_COMP || v[2] <= 0 ||
      (uint64_t) v[2] > SN_STARGZ_TOC_MAX_JSON)
    return sn_set_error("zstd:chunked manifest at %" PRId64 ", %" PRId64
                        " bytes (%" PRId64 " uncompressed): outside the "
                        "layer or too large", v[0], v[1], v[2]);
  *off = v[0];
  *clen = v[1];
  *ulen = v[2];
  return 0;
bad:
  return sn_set_error("zstd:chunked manifest position is not "
                      "OFFSET:LENGTH:LENGTH:TYPE");
}

int
sn_zchunked_toc_extract(const uint8_t *comp, size_t comp_len, int64_t ulen,
                        const char *checksum, uint8_t **json,
                        size_t *json_len)
{
  uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];
  ZSTD_inBuffer in = { comp, comp_len, 0 };
  ZSTD_outBuffer out;
  ZSTD_DStream *ds;
  size_t r;

  if (sn_digest_parse(checksum, strlen(checksum), want) == -1)
    return sn_prefix_error("zstd:chunked manifest checksum annotation: ");
  sn_sha256(comp, comp_len, got);
  if (memcmp(want, got, SN_SHA256_LEN) != 0) {
    char gs[SN_DIGEST_STRLEN + 1];

    sn_digest_format(got, gs);
    return sn_set_error("zstd:chunked manifest: its checksum is %s, the "
                        "image manifest says %s", gs, checksum);
  }
  if (ulen <= 0 || (uint64_t) ulen > SN_STARGZ_TOC_MAX_JSON)
    return sn_set_error("zstd:chunked manifest of %" PRId64 " bytes", ulen);
  /* One byte more than promised: a manifest that inflates past its stated
   * length is refused, not cut. */
  out.dst = malloc((size_t) ulen + 1);
  out.size = (size_t) ulen + 1;
  out.pos = 0;
  ds = ZSTD_createDStream();
  if (out.dst == NULL || ds == NULL) {
    free(out.dst);
    ZSTD_freeDStream(ds);
    return sn_oom();
  }
  do
    r = ZSTD_decompressStream(ds, &out, &in);
  while (!ZSTD_isError(r) && r != 0 && in.pos < in.size &&
         out.pos < out.size);
  ZSTD_freeDStream(ds);
  if (ZSTD_isError(r) || r != 0 || in.pos != in.size ||
      out.pos != (size_t) ulen) {
    free(out.dst);
    return sn_set_error("zstd:chunked manifest: %s", ZSTD_isError(r)
                        ? ZSTD_getErrorName(r)
                        : "not one zstd frame of the stated length");
  }
  ((uint8_t *) out.dst)[ulen] = 0;
  *json = out.dst;
  *json_len = (size_t) ulen;
  return 0;
}
