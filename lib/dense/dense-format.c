/* soci-nbd: the dense index's formats (docs/dense-format.md) — the
 * checkpoint table ("SNDCKP01"), the table blob (a zstd frame of a ztoc
 * FlatBuffer whose checkpoints are that table) and the sparse windows (one
 * zstd frame each).  Every reader here takes untrusted bytes: lengths are
 * checked before anything is read or allocated. */
#include <config.h>

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "util/err.h"
#include "util/le.h"
#include "dense/dense.h"

/* zstd levels: any level reads the same (docs/dense-format.md §4).  The
 * table is compressed once per layer and fetched at every start; windows
 * are many and small.  Measured on the minbase layer: the 1.34 MB table
 * takes 252 KB at level 3 (9 ms), 241 KB at 6 (27 ms), 238 KB at 9 (75
 * ms), 207 KB at 19 (0.69 s), and a 3.1 MB table of many small files 267,
 * 247 and 241 KB at levels 3, 6 and 9 (8, 25 and 64 ms); the 1,217
 * windows 1.98 MB at level 1, 1.96 MB at 3, 1.86 MB at 9 (0.2 s more).
 * convert is CPU-bound: the cheap levels. */
#define TABLE_LEVEL 6
#define WINDOW_LEVEL 1

/* Record layout (dense.h). */
#define R_IN 0
#define R_OUT 8
#define R_BITS 16
#define R_PAD 17
#define R_WIN_LEN 20
#define R_WIN_OFF 24
#define R_WIN_SHA 32

/* ---- the checkpoint table ---------------------------------------------- */

bool
sn_dense_cp_is(const uint8_t *blob, size_t len)
{
  return blob != NULL && len >= 8 && memcmp(blob, SN_DENSE_CP_MAGIC, 8) == 0;
}

static bool
all_zero(const uint8_t *p, size_t n)
{
  while (n-- > 0)
    if (*p++)
      return false;
  return true;
}

/* Checkpoint i's window reference, checked against the windows blob. */
static int
check_winref(const struct sn_winref *w, size_t i, int64_t windows_size)
{
  if (w->len == 0) {
    if (w->off != 0 || !all_zero(w->digest, SN_SHA256_LEN))
      return sn_set_error("dense: checkpoint %zu has no window but a "
                          "nonzero window offset or digest", i);
    return 0;
  }
  if (w->len > SN_DENSE_WIN_MAX_FRAME)
    return sn_set_error("dense: checkpoint %zu has a window frame of %"
                        PRIu32 " bytes (max %d)", i, w->len,
                        SN_DENSE_WIN_MAX_FRAME);
  if (w->off < 0 || w->off > windows_size - (int64_t) w->len)
    return sn_set_error("dense: checkpoint %zu's window frame [%" PRId64
                        ", +%" PRIu32 ") is outside the windows blob (%"
                        PRId64 " bytes)", i, w->off, w->len, windows_size);
  return 0;
}

/* Read the records of a table whose header has been checked. */
static int
read_records(struct sn_zinfo *zi, const uint8_t *p)
{
  size_t i;

  for (i = 0; i < zi->nspans; i++, p += SN_DENSE_CP_RECORD_LEN) {
    struct sn_checkpoint *c = &zi->cp[i];
    struct sn_winref *w = &zi->winref[i];

    c->in = (int64_t) sn_get_le(p + R_IN, 8);
    c->out = (int64_t) sn_get_le(p + R_OUT, 8);
    c->bits = p[R_BITS];
    if (!all_zero(p + R_PAD, 3))
      return sn_set_error("dense: checkpoint %zu has nonzero padding", i);
    w->len = (uint32_t) sn_get_le(p + R_WIN_LEN, 4);
    w->off = (int64_t) sn_get_le(p + R_WIN_OFF, 8);
    memcpy(w->digest, p + R_WIN_SHA, SN_SHA256_LEN);
    if (check_winref(w, i, zi->windows_size) == -1)
      return -1;
  }
  return 0;
}

/* A zstd layer's checkpoints are frame starts: no leftover bits, no
 * window (read_records checked each against a windows blob of 0 bytes). */
static int
check_zstd(const struct sn_zinfo *zi)
{
  size_t i;

  for (i = 0; zi->compression == SN_COMP_ZSTD && i < zi->nspans; i++)
    if (zi->cp[i].bits != 0)
      return sn_set_error("dense: checkpoint %zu of a zstd layer has "
                          "leftover bits", i);
  return 0;
}

struct sn_zinfo *
sn_dense_cp_parse(const uint8_t *blob, size_t len)
{
  struct sn_zinfo *zi;
  uint32_t count, flags;
  int64_t wsize;

  if (blob == NULL || len < SN_DENSE_CP_HEADER_LEN) {
    sn_set_error("dense: checkpoint table too short (%zu bytes)", len);
    return NULL;
  }
  if (!sn_dense_cp_is(blob, len)) {
    sn_set_error("dense: not a dense checkpoint table (bad magic)");
    return NULL;
  }
  count = (uint32_t) sn_get_le(blob + 8, 4);
  flags = (uint32_t) sn_get_le(blob + 12, 4);
  wsize = (int64_t) sn_get_le(blob + 16, 8);
  if ((flags & ~(uint32_t) SN_DENSE_CP_ZSTD) != 0) {
    sn_set_error("dense: unknown checkpoint table flags 0x%" PRIx32, flags);
    return NULL;
  }
  if ((flags & SN_DENSE_CP_ZSTD) && wsize != 0) {
    sn_set_error("dense: a zstd layer's table names a windows blob (%"
                 PRId64 " bytes)", wsize);
    return NULL;
  }
  if (count < 1) {
    sn_set_error("dense: checkpoint table with no checkpoint");
    return NULL;
  }
  if (len - SN_DENSE_CP_HEADER_LEN !=
      (uint64_t) count * SN_DENSE_CP_RECORD_LEN) {
    sn_set_error("dense: checkpoint table of %zu bytes cannot hold %" PRIu32
                 " checkpoints", len, count);
    return NULL;
  }
  if (wsize < 0) {
    sn_set_error("dense: negative windows blob size %" PRId64, wsize);
    return NULL;
  }

  zi = calloc(1, sizeof *zi);
  if (zi == NULL || (zi->cp = calloc(count, sizeof *zi->cp)) == NULL ||
      (zi->winref = calloc(count, sizeof *zi->winref)) == NULL) {
    sn_zinfo_free(zi);
    sn_oom();
    return NULL;
  }
  zi->compression = flags & SN_DENSE_CP_ZSTD ? SN_COMP_ZSTD : SN_COMP_GZIP;
  zi->nspans = count;
  zi->windows_size = wsize;
  if (read_records(zi, blob + SN_DENSE_CP_HEADER_LEN) == -1 ||
      sn_zinfo_check_checkpoints(zi) == -1 || check_zstd(zi) == -1) {
    sn_zinfo_free(zi);
    return NULL;
  }
  return zi;
}

int
sn_dense_cp_encode(const struct sn_zinfo *zi, const struct sn_winref *winref,
                   int64_t windows_size, uint8_t **out, size_t *len)
{
  struct sn_zinfo *back;
  uint8_t *buf, *p;
  size_t i, n;

  if (zi == NULL || (zi->compression != SN_COMP_GZIP &&
                     zi->compression != SN_COMP_ZSTD) || zi->cp == NULL ||
      winref == NULL)
    return sn_set_error("dense: not a gzip or zstd checkpoint table");
  if (zi->nspans < 1 || zi->nspans > UINT32_MAX ||
      zi->nspans > (SIZE_MAX - SN_DENSE_CP_HEADER_LEN) /
                   SN_DENSE_CP_RECORD_LEN)
    return sn_set_error("dense: cannot encode %zu checkpoints", zi->nspans);
  n = SN_DENSE_CP_HEADER_LEN + zi->nspans * SN_DENSE_CP_RECORD_LEN;
  buf = calloc(1, n);
  if (buf == NULL)
    return sn_oom();
  memcpy(buf, SN_DENSE_CP_MAGIC, 8);
  sn_put_le(buf + 8, zi->nspans, 4);
  sn_put_le(buf + 12, zi->compression == SN_COMP_ZSTD ? SN_DENSE_CP_ZSTD : 0,
            4);
  sn_put_le(buf + 16, (uint64_t) windows_size, 8);
  p = buf + SN_DENSE_CP_HEADER_LEN;
  for (i = 0; i < zi->nspans; i++, p += SN_DENSE_CP_RECORD_LEN) {
    sn_put_le(p + R_IN, (uint64_t) zi->cp[i].in, 8);
    sn_put_le(p + R_OUT, (uint64_t) zi->cp[i].out, 8);
    p[R_BITS] = zi->cp[i].bits;
    sn_put_le(p + R_WIN_LEN, winref[i].len, 4);
    sn_put_le(p + R_WIN_OFF, (uint64_t) winref[i].off, 8);
    memcpy(p + R_WIN_SHA, winref[i].digest, SN_SHA256_LEN);
  }
  /* Never write what a reader refuses: the parser's checks, once. */
  back = sn_dense_cp_parse(buf, n);
  if (back == NULL) {
    free(buf);
    return -1;
  }
  sn_zinfo_free(back);
  *out = buf;
  *len = n;
  return 0;
}

/* ---- zstd frames ------------------------------------------------------- */

/* Compress src as one zstd frame with its content size, and a content
 * checksum if asked (new buffer). */
static int
zstd_pack(ZSTD_CCtx *reuse, const void *src, size_t n, int level,
          bool checksum, uint8_t **out, size_t *len)
{
  size_t cap = ZSTD_compressBound(n), got;
  uint8_t *buf = malloc(cap ? cap : 1), *shrunk;
  ZSTD_CCtx *cx = reuse ? reuse : ZSTD_createCCtx();

  if (buf == NULL || cx == NULL) {
    free(buf);
    if (reuse == NULL)
      ZSTD_freeCCtx(cx);
    return sn_oom();
  }
  ZSTD_CCtx_reset(cx, ZSTD_reset_session_and_parameters);
  got = ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(got))
    got = ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, checksum);
  if (!ZSTD_isError(got))
    got = ZSTD_compress2(cx, buf, cap, src, n);
  if (reuse == NULL)
    ZSTD_freeCCtx(cx);
  if (ZSTD_isError(got)) {
    free(buf);
    return sn_set_error("dense: zstd: %s", ZSTD_getErrorName(got));
  }
  shrunk = realloc(buf, got ? got : 1);
  *out = shrunk ? shrunk : buf;
  *len = got;
  return 0;
}

/* The content size of the single zstd frame that is all of src: refuses
 * anything else (no frame, no declared size, trailing bytes) and sizes
 * over max. */
static int
zstd_frame_size(const uint8_t *src, size_t len, uint64_t max, uint64_t *size)
{
  unsigned long long n = ZSTD_getFrameContentSize(src, len);
  size_t whole;

  if (n == ZSTD_CONTENTSIZE_ERROR)
    return sn_set_error("dense: not a zstd frame (%zu bytes)", len);
  if (n == ZSTD_CONTENTSIZE_UNKNOWN)
    return sn_set_error("dense: zstd frame without a content size");
  if (n > max)
    return sn_set_error("dense: zstd frame declares %llu bytes (max %"
                        PRIu64 ")", n, max);
  whole = ZSTD_findFrameCompressedSize(src, len);
  if (ZSTD_isError(whole))
    return sn_set_error("dense: bad zstd frame: %s",
                        ZSTD_getErrorName(whole));
  if (whole != len)
    return sn_set_error("dense: %zu bytes after the zstd frame",
                        len - whole);
  *size = n;
  return 0;
}

/* Decompress the frame src (checked by zstd_frame_size: n bytes) into dst,
 * which must then hold exactly n bytes. */
static int
zstd_unpack(const uint8_t *src, size_t len, uint8_t *dst, size_t n)
{
  size_t got = ZSTD_decompress(dst, n, src, len);

  if (ZSTD_isError(got))
    return sn_set_error("dense: zstd: %s", ZSTD_getErrorName(got));
  if (got != n)
    return sn_set_error("dense: zstd frame gave %zu bytes, %zu declared",
                        got, n);
  return 0;
}

/* ---- the table blob ---------------------------------------------------- */

int
sn_dense_fb_encode(const struct sn_ztoc *z, uint8_t **out, size_t *len)
{
  struct sn_ztoc fbz = *z;

  fbz.compression = SN_COMP_GZIP;
  return sn_ztoc_encode(&fbz, out, len);
}

int
sn_dense_table_encode(const struct sn_ztoc *z, uint8_t **out, size_t *len)
{
  struct sn_zinfo *zi;
  uint8_t *fb;
  size_t fblen;
  int ret;

  if ((z->compression != SN_COMP_GZIP && z->compression != SN_COMP_ZSTD) ||
      !sn_dense_cp_is(z->checkpoints, z->checkpoints_len))
    return sn_set_error("dense: the table's checkpoints are not a dense "
                        "checkpoint table");
  /* The reader's checks, so that nothing it refuses is written. */
  zi = sn_zinfo_from_ztoc(z);
  if (zi == NULL)
    return -1;
  sn_zinfo_free(zi);
  if (sn_dense_fb_encode(z, &fb, &fblen) == -1)
    return -1;
  if (fblen > SN_ZTOC_MAX_BLOB) {
    free(fb);
    return sn_set_error("dense: table of %zu bytes (max %zu)", fblen,
                        SN_ZTOC_MAX_BLOB);
  }
  ret = zstd_pack(NULL, fb, fblen, TABLE_LEVEL, true, out, len);
  free(fb);
  return ret;
}

struct sn_ztoc *
sn_dense_table_decode(const uint8_t *buf, size_t len)
{
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  uint64_t n;
  uint8_t *fb;

  if (zstd_frame_size(buf, len, SN_ZTOC_MAX_BLOB, &n) == -1)
    return NULL;
  fb = malloc(n ? (size_t) n : 1);
  if (fb == NULL) {
    sn_oom();
    return NULL;
  }
  if (zstd_unpack(buf, len, fb, (size_t) n) == -1) {
    free(fb);
    return NULL;
  }
  z = sn_ztoc_decode(fb, (size_t) n);
  free(fb);
  if (z == NULL)
    return NULL;
  if (z->compression != SN_COMP_GZIP ||
      !sn_dense_cp_is(z->checkpoints, z->checkpoints_len)) {
    sn_set_error("dense: the table's checkpoints are not a dense "
                 "checkpoint table");
    goto fail;
  }
  if (z->checkpoints_len >= SN_DENSE_CP_HEADER_LEN &&
      (sn_get_le(z->checkpoints + 12, 4) & SN_DENSE_CP_ZSTD))
    z->compression = SN_COMP_ZSTD;
  zi = sn_zinfo_from_ztoc(z);
  if (zi == NULL)
    goto fail;
  sn_zinfo_free(zi);
  return z;

fail:
  sn_ztoc_free(z);
  return NULL;
}

/* ---- windows ----------------------------------------------------------- */

struct sn_dense_packer *
sn_dense_packer_new(void)
{
  ZSTD_CCtx *cx = ZSTD_createCCtx();

  if (cx == NULL)
    sn_oom();
  return (struct sn_dense_packer *) cx;
}

void
sn_dense_packer_free(struct sn_dense_packer *pk)
{
  ZSTD_freeCCtx((ZSTD_CCtx *) pk);
}

int
sn_dense_window_pack(struct sn_dense_packer *pk,
                     const uint8_t window[SN_ZINFO_WINSIZE], uint8_t **out,
                     size_t *len)
{
  if (zstd_pack((ZSTD_CCtx *) pk, window, SN_ZINFO_WINSIZE, WINDOW_LEVEL,
                false, out, len) == -1)
    return -1;
  if (*len > SN_DENSE_WIN_MAX_FRAME) {   /* cannot happen (dense.h) */
    free(*out);
    return sn_set_error("dense: window frame of %zu bytes", *len);
  }
  return 0;
}

int
sn_dense_window_unpack(const struct sn_winref *ref, const uint8_t *frame,
                       size_t len, uint8_t window[SN_ZINFO_WINSIZE])
{
  uint8_t digest[SN_SHA256_LEN];
  uint64_t n;

  if (ref->len == 0) {
    if (len != 0)
      return sn_set_error("dense: %zu bytes given for a checkpoint without "
                          "a window", len);
    memset(window, 0, SN_ZINFO_WINSIZE);
    return 0;
  }
  sn_sha256(frame, len, digest);
  if (memcmp(digest, ref->digest, SN_SHA256_LEN) != 0)
    return sn_set_error("dense: window frame at %" PRId64 " does not match "
                        "its digest", ref->off);
  if (len != ref->len)
    return sn_set_error("dense: window frame of %zu bytes, %" PRIu32
                        " expected", len, ref->len);
  if (zstd_frame_size(frame, len, SN_ZINFO_WINSIZE, &n) == -1)
    return -1;
  if (n != SN_ZINFO_WINSIZE)
    return sn_set_error("dense: window frame declares %" PRIu64 " bytes, "
                        "not %d", n, SN_ZINFO_WINSIZE);
  return zstd_unpack(frame, len, window, SN_ZINFO_WINSIZE);
}
