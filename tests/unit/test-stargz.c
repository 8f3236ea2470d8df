/* soci-nbd tests: eStargz layers (lib/stargz, docs/estargz.md).
 * tests/data/estargz-small.tar.gz was made by the stargz Go package
 * (tests/helpers/mkestargz.go, 16 KiB chunks) from a tree with a
 * directory, an empty file, a 6-byte file and its hard link, a symlink and
 * a 40,000-byte file of random bytes (3 chunks).  Checked here: the
 * footer, the TOC member and the TOC read into a ztoc, every chunk decoded
 * to the bytes its digest names, and each rule a hostile TOC or footer
 * breaks refused in one line.  zstd:chunked: the position annotation, the
 * manifest checked and decompressed, the one-chunk digest rule, a layer
 * with no data, and chunks of one or several frames decoded, built here
 * with libzstd. */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "tap.h"
#include "soci/zinfo.h"
#include "stargz/stargz.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"

#define TOC_DIGEST \
  "sha256:d7bfed9bc296aa4602f4bfa2259832ca7e37438f3869d5cf8e7d4db15b28e4c8"

static uint8_t *blob;
static size_t blob_len;

static const struct sn_ztoc_file *
find(const struct sn_ztoc *z, const char *name)
{
  return sn_ztoc_find(z, name);
}

/* The real layer, end to end. */
static void
test_real(void)
{
  uint8_t *json = NULL, d[SN_SHA256_LEN];
  size_t jlen = 0, landmark = 99, i;
  int64_t toc_off = -1, skip = -1;
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  const struct sn_ztoc_file *f;
  bool all = true;

  OK(sn_stargz_footer_parse(blob + blob_len - SN_STARGZ_FOOTER_LEN,
                            SN_STARGZ_FOOTER_LEN, (int64_t) blob_len,
                            &toc_off) == 0 && toc_off > 0 &&
     toc_off < (int64_t) blob_len - SN_STARGZ_FOOTER_LEN,
     "footer: TOC at %lld (%s)", (long long) toc_off, ERR);
  OK(sn_stargz_toc_extract(blob + toc_off,
                           blob_len - SN_STARGZ_FOOTER_LEN - (size_t) toc_off,
                           &json, &jlen, &skip) == 0 && skip == 512 &&
     jlen > 100 && json[0] == '{',
     "TOC member: %zu bytes of JSON after %lld tar bytes (%s)", jlen,
     (long long) skip, ERR);
  sn_sha256(json, jlen, d);
  {
    char s[SN_DIGEST_STRLEN + 1];

    sn_digest_format(d, s);
    ok(strcmp(s, TOC_DIGEST) == 0, "the JSON is what the annotation pins");
  }
  z = sn_stargz_ztoc(json, jlen, TOC_DIGEST, toc_off, skip,
                     (int64_t) blob_len, &landmark);
  OK(z != NULL, "TOC → ztoc (%s)", ERR);
  if (z == NULL)
    goto out;
  ok(z->compression == SN_COMP_ESTARGZ && landmark == 0,
     "an eStargz ztoc, no prefetch landmark (.no.prefetch.landmark)");
  /* Data space: landmark (1) + hl (6) + big (40000) + the TOC. */
  ok(z->uncompressed_size == 1 + 6 + 40000 + (int64_t) jlen,
     "data space = the files' contents, then the TOC (%lld)",
     (long long) z->uncompressed_size);
  ok(z->max_span_id + 1 == 1 + 1 + 3 + 1,
     "6 chunks: landmark, hl, big in 3, the TOC (%d)", z->max_span_id + 1);
  f = find(z, "d/big");
  ok(f && f->ftype == SN_FT_REG && f->size == 40000 && f->offset == 7 &&
     f->mtime_sec == 1704164645 && f->mode == 0644,
     "d/big: offset 7, size, mode, mtime");
  f = find(z, "a.txt");
  ok(f && f->ftype == SN_FT_HARDLINK && strcmp(f->linkname.data, "./hl") == 0,
     "a.txt: a hard link to ./hl");
  f = find(z, "l");
  ok(f && f->ftype == SN_FT_SYMLINK && strcmp(f->linkname.data, "a.txt") == 0,
     "l: a symlink to a.txt");
  f = find(z, "empty");
  ok(f && f->ftype == SN_FT_REG && f->size == 0, "empty: no data");
  f = find(z, SN_STARGZ_TOC_NAME);
  ok(f && f->ftype == SN_FT_REG && f->size == (int64_t) jlen &&
     f->mode == 0 && f->uid == 0 && f->mtime_sec == 0,
     "stargz.index.json: the TOC, with the writer's header (mode 0, time 0)");
  zi = sn_zinfo_from_ztoc(z);
  OK(zi != NULL && zi->nspans == 6 && zi->skip != NULL,
     "chunk table → zinfo (%s)", ERR);
  for (i = 0; zi && i < zi->nspans; i++) {
    struct sn_span s;
    uint8_t *out, got[SN_SHA256_LEN], want[SN_SHA256_LEN];

    sn_zinfo_span(zi, i, &s);
    out = malloc((size_t) (s.uncomp_end - s.uncomp_start));
    if (sn_zinfo_decode_span(zi, i, blob + s.comp_start,
                             (size_t) (s.comp_end - s.comp_start), out,
                             (size_t) (s.uncomp_end - s.uncomp_start)) == -1)
      all = false;
    else {
      sn_sha256(out, (size_t) (s.uncomp_end - s.uncomp_start), got);
      sn_digest_parse(z->span_digests[i].data, z->span_digests[i].len, want);
      if (memcmp(got, want, SN_SHA256_LEN) != 0)
        all = false;
    }
    if (i == 5 && memcmp(out, json, jlen) != 0)
      all = false;
    free(out);
  }
  ok(all, "every chunk decodes to the bytes its digest names; the last is "
     "the TOC");
  if (zi) {
    struct sn_span s;
    uint8_t out[16384];

    sn_zinfo_span(zi, 2, &s);
    OK(s.uncomp_end - s.uncomp_start == (int64_t) sizeof out &&
       sn_stargz_decode(zi, 2, blob + s.comp_start,
                        (size_t) (s.comp_end - s.comp_start) / 2, out,
                        sizeof out) == -1,
       "a chunk's member cut in half: refused (%s)", WHY);
  }
  sn_zinfo_free(zi);
  sn_ztoc_free(z);
out:
  free(json);
}

/* Hostile footers. */
static void
test_footer(void)
{
  const uint8_t *real = blob + blob_len - SN_STARGZ_FOOTER_LEN;
  uint8_t f[SN_STARGZ_FOOTER_LEN];
  int64_t off;

  memcpy(f, real, sizeof f);
  f[32] = 'X';
  OK(sn_stargz_footer_parse(f, sizeof f, (int64_t) blob_len, &off) == -1,
     "footer without STARGZ: refused (%s)", WHY);
  memcpy(f, real, sizeof f);
  f[20] = 'A';
  OK(sn_stargz_footer_parse(f, sizeof f, (int64_t) blob_len, &off) == -1,
     "footer with an uppercase hex digit: refused (%s)", WHY);
  memcpy(f, real, sizeof f);
  memcpy(f + 16, "ffffffffffffffff", 16);
  OK(sn_stargz_footer_parse(f, sizeof f, (int64_t) blob_len, &off) == -1,
     "footer whose offset overflows: refused (%s)", WHY);
  memcpy(f, real, sizeof f);
  OK(sn_stargz_footer_parse(f, sizeof f, 60, &off) == -1,
     "footer whose TOC is past the payload: refused (%s)", WHY);
  OK(sn_stargz_footer_parse(f, 47, (int64_t) blob_len, &off) == -1,
     "a 47-byte (legacy stargz) footer: refused (%s)", WHY);
}

/* sn_stargz_ztoc on json, digest taken as given; 1 if refused. */
static int
refused(const char *json)
{
  uint8_t d[SN_SHA256_LEN];
  char s[SN_DIGEST_STRLEN + 1];
  size_t landmark;
  struct sn_ztoc *z;

  sn_sha256(json, strlen(json), d);
  sn_digest_format(d, s);
  z = sn_stargz_ztoc((const uint8_t *) json, strlen(json), s, 100000, 512,
                     200000, &landmark);
  sn_ztoc_free(z);
  return z == NULL;
}

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"

/* Hostile TOCs. */
static void
test_toc(void)
{
  const char *good =
    "{\"version\":1,\"entries\":["
    "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
    "\"chunkSize\":4,\"chunkDigest\":\"" D1 "\"},"
    "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":4,"
    "\"chunkDigest\":\"" D1 "\"}]}";
  uint8_t d[SN_SHA256_LEN];
  char s[SN_DIGEST_STRLEN + 1];
  size_t landmark;
  struct sn_ztoc *z;

  OK(!refused(good), "a reg in two chunks, the last without chunkSize (%s)",
     ERR);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
             "\"chunkSize\":4,\"chunkDigest\":\"" D1 "\"}]}"),
     "a file whose chunks stop short: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":200,"
             "\"chunkSize\":4,\"chunkDigest\":\"" D1 "\"},"
             "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":100,"
             "\"chunkOffset\":4,\"chunkDigest\":\"" D1 "\"}]}"),
     "chunks out of order: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":100,"
             "\"chunkSize\":4,\"chunkDigest\":\"" D1 "\"},"
             "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":200,"
             "\"chunkOffset\":5,\"chunkDigest\":\"" D1 "\"}]}"),
     "a chunk at the wrong file offset: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":100}]}"),
     "a file without chunkDigest (legacy stargz): refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"reg\",\"size\":10,\"offset\":100000,"
             "\"chunkDigest\":\"" D1 "\"}]}"),
     "a chunk at the TOC's offset: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"chunk\",\"offset\":100,"
             "\"chunkDigest\":\"" D1 "\"}]}"),
     "a chunk with no file before it: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"socket\"}]}"),
     "an unknown type: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"dir\",\"xattrs\":{\"user.a\":\"!!\"}}]}"),
     "an xattr that is not base64: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"dir\",\"modtime\":\"yesterday\"}]}"),
     "a modtime that is not RFC 3339: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":[{\"name\":\"f\",\"name\":\"g\","
             "\"type\":\"dir\"}]}"),
     "a duplicate key: refused (%s)", WHY);
  OK(refused("{\"version\":2,\"entries\":[]}"),
     "version 2: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":[{\"name\":\"\",\"type\":\"dir\"}]}"),
     "an empty name: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":[{\"name\":\"f\",\"type\":\"reg\","
             "\"size\":-1}]}"),
     "a negative size: refused (%s)", WHY);
  OK(refused("{\"version\":1,\"entries\":["
             "{\"name\":\"f\",\"type\":\"reg\",\"size\":100000000,"
             "\"offset\":100,\"chunkDigest\":\"" D1 "\"}]}"),
     "a 100 MB chunk (over 64 MiB): refused (%s)", WHY);
  sn_sha256(good, strlen(good), d);
  d[0] ^= 1;
  sn_digest_format(d, s);
  z = sn_stargz_ztoc((const uint8_t *) good, strlen(good), s, 100000, 512,
                     200000, &landmark);
  OK(z == NULL && strstr(sn_error(), "the manifest says") != NULL,
     "a TOC whose digest is not the annotation's: refused (%s)", WHY);
  sn_ztoc_free(z);
  z = sn_stargz_ztoc((const uint8_t *) good, strlen(good), "sha256:12", 100000,
                     512, 200000, &landmark);
  OK(z == NULL, "an annotation that is not a digest: refused (%s)", WHY);
  sn_ztoc_free(z);
}

/* zstd:chunked's position annotation. */
static void
test_zchunked_position(void)
{
  int64_t off, clen, ulen;

  OK(sn_zchunked_position_parse("309103:927:3034:1", 310078, &off, &clen,
                                &ulen) == 0 && off == 309103 && clen == 927 &&
     ulen == 3034, "position 309103:927:3034:1 (%s)", ERR);
  OK(sn_zchunked_position_parse("309103:927:3034:2", 310078, &off, &clen,
                                &ulen) == -1, "type 2: refused (%s)", WHY);
  OK(sn_zchunked_position_parse("309103:927:3034", 310078, &off, &clen,
                                &ulen) == -1, "three fields: refused (%s)", WHY);
  OK(sn_zchunked_position_parse("309103:927:3034:1 ", 310078, &off, &clen,
                                &ulen) == -1, "a trailing space: refused (%s)",
     WHY);
  OK(sn_zchunked_position_parse("309103:99999:3034:1", 310078, &off, &clen,
                                &ulen) == -1, "past the layer's end: refused "
     "(%s)", WHY);
  OK(sn_zchunked_position_parse("99999999999999999999:1:1:1", 310078, &off,
                                &clen, &ulen) == -1, "an overflowing offset: "
     "refused (%s)", WHY);
  OK(sn_zchunked_position_parse("4:1:1:1", 310078, &off, &clen, &ulen) == -1,
     "an offset before any skippable frame header: refused (%s)", WHY);
}

/* A zstd frame of n bytes at s, appended to buf at *len (cap bytes). */
static void
put_frame(uint8_t *buf, size_t *len, size_t cap, const void *s, size_t n)
{
  size_t r = ZSTD_compress(buf + *len, cap - *len, s, n, 3);

  if (ZSTD_isError(r))
    abort();
  *len += r;
}

/* The manifest checked and decompressed; the TOC rules of zstd:chunked. */
static void
test_zchunked(void)
{
  static const char data[] = "hello, chunked world";
  uint8_t layer[8192], hdr[512] = { 0 }, d[SN_SHA256_LEN];
  char sum[SN_DIGEST_STRLEN + 1], dd[SN_DIGEST_STRLEN + 1], json[1024];
  uint8_t man[2048], *got = NULL;
  size_t len = 0, f1, f2, mlen = 0, glen = 0, landmark;
  struct sn_ztoc *z;
  struct sn_zinfo *zi = NULL;
  uint8_t out[sizeof data - 1];

  /* A header frame, the file's data in two frames (one chunk), a header
   * frame after it: the chunk's range runs to the payload's end. */
  put_frame(layer, &len, sizeof layer, hdr, sizeof hdr);
  f1 = len;
  put_frame(layer, &len, sizeof layer, data, 7);
  put_frame(layer, &len, sizeof layer, data + 7, sizeof data - 1 - 7);
  f2 = len;
  put_frame(layer, &len, sizeof layer, hdr, sizeof hdr);
  sn_sha256(data, sizeof data - 1, d);
  sn_digest_format(d, dd);
  snprintf(json, sizeof json,
           "{\"version\":1,\"entries\":[{\"type\":\"dir\",\"name\":\"./\","
           "\"mode\":493},{\"type\":\"reg\",\"name\":\"./f\",\"mode\":420,"
           "\"size\":%zu,\"modtime\":\"2026-12-05T18:03:04.756667332Z\","
           "\"digest\":\"%s\",\"offset\":%zu,\"endOffset\":%zu}]}",
           sizeof data - 1, dd, f1, f2);
  put_frame(man, &mlen, sizeof man, json, strlen(json));
  sn_sha256(man, mlen, d);
  sn_digest_format(d, sum);
  OK(sn_zchunked_toc_extract(man, mlen, (int64_t) strlen(json), sum, &got,
                             &glen) == 0 && glen == strlen(json) &&
     memcmp(got, json, glen) == 0, "manifest: checked, decompressed (%s)",
     ERR);
  free(got);
  got = NULL;
  OK(sn_zchunked_toc_extract(man, mlen, (int64_t) strlen(json) - 1, sum,
                             &got, &glen) == -1,
     "manifest longer than stated: refused (%s)", WHY);
  OK(sn_zchunked_toc_extract(man, mlen, (int64_t) strlen(json) + 1, sum,
                             &got, &glen) == -1,
     "manifest shorter than stated: refused (%s)", WHY);
  man[mlen / 2] ^= 1;
  OK(sn_zchunked_toc_extract(man, mlen, (int64_t) strlen(json), sum, &got,
                             &glen) == -1 && strstr(sn_error(), "checksum"),
     "a flipped bit: its checksum is not the annotation's (%s)", WHY);
  man[mlen / 2] ^= 1;

  z = sn_zchunked_ztoc((const uint8_t *) json, strlen(json), (int64_t) len,
                       &landmark);
  OK(z != NULL && z->compression == SN_COMP_ZSTD_CHUNKED &&
     z->max_span_id == 0 && z->uncompressed_size == (int64_t) sizeof data - 1,
     "TOC → ztoc: one file in one chunk, its digest the file's (%s)", ERR);
  if (z) {
    const struct sn_ztoc_file *f = sn_ztoc_find(z, "f");

    ok(f && f->mtime_sec == 1796493784 && f->mode == 0644 &&
       sn_ztoc_find(z, SN_STARGZ_TOC_NAME) == NULL,
       "./f: mtime (nanoseconds dropped), mode; no stargz.index.json");
    zi = sn_zinfo_from_ztoc(z);
  }
  OK(zi != NULL, "chunk table → zinfo (%s)", ERR);
  if (zi) {
    struct sn_span s;

    sn_zinfo_span(zi, 0, &s);
    OK(s.comp_start == (int64_t) f1 && s.comp_end == (int64_t) len &&
       sn_zinfo_decode_span(zi, 0, layer + f1, len - f1, out, sizeof out)
       == 0 && memcmp(out, data, sizeof out) == 0,
       "the chunk: two frames decoded, the header frame after it not "
       "(%s)", ERR);
    OK(sn_stargz_decode(zi, 0, layer + f1, 5, out, sizeof out) == -1,
       "its frames cut short: refused (%s)", WHY);
    layer[f1 + 6] ^= 0x55;
    OK(sn_stargz_decode(zi, 0, layer + f1, len - f1, out, sizeof out) == -1 ||
       memcmp(out, data, sizeof out) != 0,
       "a corrupted frame: an error or other bytes (the digest catches "
       "those) (%s)", WHY);
  }
  sn_zinfo_free(zi);
  sn_ztoc_free(z);

  snprintf(json, sizeof json,
           "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"f\","
           "\"size\":20,\"offset\":%zu}]}", f1);
  z = sn_zchunked_ztoc((const uint8_t *) json, strlen(json), (int64_t) len,
                       &landmark);
  OK(z == NULL, "a file with neither chunkDigest nor digest: refused (%s)",
     WHY);
  sn_ztoc_free(z);
  snprintf(json, sizeof json,
           "{\"version\":1,\"entries\":[{\"type\":\"dir\",\"name\":\"d/\"},"
           "{\"type\":\"reg\",\"name\":\"d/empty\"}]}");
  z = sn_zchunked_ztoc((const uint8_t *) json, strlen(json), (int64_t) len,
                       &landmark);
  zi = z ? sn_zinfo_from_ztoc(z) : NULL;
  OK(z && zi && zi->nspans == 1 && z->uncompressed_size == 0,
     "a layer with no data: one empty chunk, a valid table (%s)", ERR);
  sn_zinfo_free(zi);
  sn_ztoc_free(z);
}

int
main(void)
{
  if (sn_read_file(DATADIR "/estargz-small.tar.gz", 1 << 20, true, &blob,
                   &blob_len) == -1) {
    printf("Bail out! %s/estargz-small.tar.gz: %s\n", DATADIR, sn_error());
    return 1;
  }
  test_real();
  test_footer();
  test_toc();
  test_zchunked_position();
  test_zchunked();
  free(blob);
  return done_testing();
}
