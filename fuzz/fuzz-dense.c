/* soci-nbd fuzzing: the dense index's formats (lib/dense/dense-format.c)
 * on hostile bytes.  Byte 0 picks the target:
 *   0  sn_dense_table_decode of the rest (a zstd frame, as fetched);
 *   1  the rest is a ztoc FlatBuffer: zstd-compressed here, then decoded
 *      (reaches the ztoc and checkpoint checks past zstd);
 *   2  sn_dense_cp_parse of the rest;
 *   3  sn_dense_window_unpack of the rest, with a reference that matches
 *      it (or, if byte 1 is odd, one whose length is off by one);
 *   4  (bytes 250-255) sn_zstd_frames_decode (a zstd layer's sub-span) of the rest after
 *      byte 1, which picks the output wanted and the bytes skipped; what
 *      it gives must be what zstd's own streaming decoder gives.
 * Whatever is accepted must survive its round trip: a table re-encodes
 * and decodes to the same FlatBuffer, a checkpoint table re-encodes to
 * the same bytes, a window packs and unpacks to itself. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "util/err.h"
#include "dense/dense.h"
#include "inflate/zstd-frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
  fprintf(stderr, "dense: %s (last error: %s)\n", what, sn_error());
  abort();
}

static void
table_roundtrip(const struct sn_ztoc *z)
{
  uint8_t *blob, *fa, *fb;
  size_t len, la, lb;
  struct sn_ztoc *d;

  if (sn_dense_table_encode(z, &blob, &len) == -1)
    fail("an accepted table does not encode");
  d = sn_dense_table_decode(blob, len);
  if (d == NULL)
    fail("an encoded table does not decode");
  if (d->compression != z->compression)
    fail("a table changes compression in its round trip");
  if (sn_dense_fb_encode(z, &fa, &la) == -1 ||
      sn_dense_fb_encode(d, &fb, &lb) == -1)
    fail("a decoded table does not encode as a ztoc");
  if (la != lb || memcmp(fa, fb, la) != 0)
    fail("a table changes in its round trip");
  free(fa);
  free(fb);
  free(blob);
  sn_ztoc_free(d);
}

static void
fuzz_table(const uint8_t *data, size_t size, int compress)
{
  struct sn_ztoc *z;
  uint8_t *frame = NULL;

  if (compress) {
    size_t cap = ZSTD_compressBound(size), n;

    frame = malloc(cap);
    if (frame == NULL)
      return;
    n = ZSTD_compress(frame, cap, data, size, 1);
    if (ZSTD_isError(n))
      abort();
    data = frame;
    size = n;
  }
  z = sn_dense_table_decode(data, size);
  if (z) {
    struct sn_zinfo *zi = sn_zinfo_from_ztoc(z);

    if (zi == NULL || zi->winref == NULL || zi->cp[0].window != NULL)
      fail("an accepted table is not a dense zinfo");
    sn_zinfo_free(zi);
    table_roundtrip(z);
    sn_ztoc_free(z);
  }
  free(frame);
}

static void
fuzz_cp(const uint8_t *data, size_t size)
{
  struct sn_zinfo *zi = sn_dense_cp_parse(data, size);
  uint8_t *back;
  size_t len;

  if (zi == NULL)
    return;
  if (zi->span_size != 0 || zi->winref == NULL)
    fail("a parsed table without window references");
  if (sn_dense_cp_encode(zi, zi->winref, zi->windows_size, &back, &len) == -1)
    fail("a parsed table does not encode");
  if (len != size || memcmp(back, data, size) != 0)
    fail("a checkpoint table changes in its round trip");
  free(back);
  sn_zinfo_free(zi);
}

static void
fuzz_window(const uint8_t *data, size_t size)
{
  static uint8_t win[SN_ZINFO_WINSIZE], again[SN_ZINFO_WINSIZE];
  struct sn_winref ref = { .off = 0 };
  uint8_t *frame;
  size_t len;

  if (size < 1)
    return;
  ref.len = (uint32_t) (size - 1) + (data[0] & 1);
  sn_sha256(data + 1, size - 1, ref.digest);
  if (sn_dense_window_unpack(&ref, data + 1, size - 1, win) == -1)
    return;
  if (data[0] & 1)
    fail("a window frame of the wrong length unpacked");
  if (sn_dense_window_pack(NULL, win, &frame, &len) == -1)
    fail("an unpacked window does not pack");
  ref.len = (uint32_t) len;
  sn_sha256(frame, len, ref.digest);
  if (sn_dense_window_unpack(&ref, frame, len, again) == -1 ||
      memcmp(win, again, sizeof win) != 0)
    fail("a window changes in its round trip");
  free(frame);
}

/* The sub-span decoder against zstd's streaming decoder run to the same
 * output. */
static void
fuzz_frames(const uint8_t *data, size_t size)
{
  static uint8_t out[1 << 16], ref[1 << 16];
  size_t want, skip;
  ZSTD_DStream *ds;
  ZSTD_inBuffer in;
  ZSTD_outBuffer o;
  size_t r = 0, got = 0;

  if (size < 1)
    return;
  want = (size_t) (data[0] & 0x0f) << 12;
  skip = (size_t) (data[0] >> 4) * 1000;
  if (sn_zstd_frames_decode(data + 1, size - 1, (int64_t) skip, out,
                            want) == -1)
    return;
  ds = ZSTD_createDStream();
  if (ds == NULL)
    return;
  in = (ZSTD_inBuffer) { data + 1, size - 1, 0 };
  while (got < skip + want) {
    size_t before = in.pos, n;
    uint8_t *dst = got < skip ? ref : ref + (got - skip);

    n = got < skip ? skip - got : skip + want - got;
    if (n > sizeof ref)
      n = sizeof ref;
    if (got >= skip && got - skip + n > sizeof ref)
      n = sizeof ref - (got - skip);
    o = (ZSTD_outBuffer) { dst, n, 0 };
    r = ZSTD_decompressStream(ds, &o, &in);
    if (ZSTD_isError(r))
      fail("frames decoded that zstd's decoder refuses");
    got += o.pos;
    if (o.pos == 0 && in.pos == before)
      fail("frames decoded past the end of zstd's output");
  }
  ZSTD_freeDStream(ds);
  if (memcmp(out, ref, want) != 0)
    fail("frames decode differently from zstd's decoder");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  /* Bytes 250-255 pick 4: the modes of the other values are those of the
   * seed corpus. */
  switch (data[0] < 250 ? data[0] % 4 : 4) {
  case 0:
    fuzz_table(data + 1, size - 1, 0);
    break;
  case 1:
    fuzz_table(data + 1, size - 1, 1);
    break;
  case 2:
    fuzz_cp(data + 1, size - 1);
    break;
  case 3:
    fuzz_window(data + 1, size - 1);
    break;
  default:
    fuzz_frames(data + 1, size - 1);
  }
  return 0;
}
