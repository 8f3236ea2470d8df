/* soci-nbd fuzzing: lib/inflate/window-use.c on hostile bytes, checked
 * against zlib.  Input: byte 0 picks the bit offset (bits 0-2) and
 * whether the window is partly padding (bit 3); bytes 1-2 the output
 * limit, 3-4 the real window length; the rest is the stream.  The map
 * must stay inside the real window and agree with its count; with a whole
 * window, zlib must decode what the parser accepted identically with the
 * sparse window, end where it ended, and fail to reach the limit where
 * the parser failed.  (zlib parses the symbol after the output it was
 * asked for, and may fail there: its output is compared, not its verdict,
 * and sn_window_verify must never say "differs".) */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "util/err.h"
#include "inflate/window-use.h"

#define WIN SN_WINDOW_SIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUTCAP (WIN + 512)

static uint8_t full[WIN], sparse[WIN], map[WIN];
static uint8_t out_full[OUTCAP], out_sparse[OUTCAP];

static void
fail(const char *what, size_t size)
{
  fprintf(stderr, "window-use: %s (input %zu bytes; last error: %s)\n",
          what, size, sn_error());
  abort();
}

/* A fixed window of pseudo-random bytes, so that a byte the map misses
 * changes zlib's output (255 times out of 256). */
static void
init_window(void)
{
  static int done;
  uint32_t x = 2463534242u;
  size_t i;

  if (done)
    return;
  for (i = 0; i < WIN; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    full[i] = (uint8_t) x;
  }
  done = 1;
}

/* What zlib inflates from bitoff with window as its dictionary into
 * out[0..cap), up to its end of stream or its first error: the bytes made
 * (*ended: the stream ended). */
static size_t
zlib_out(const uint8_t *in, size_t len, unsigned bitoff,
         const uint8_t *window, uint8_t *out, size_t cap, int *ended)
{
  z_stream z;
  size_t made;
  int ret;

  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, -15) != Z_OK)
    abort();
  if (bitoff) {
    inflatePrime(&z, (int) (8 - bitoff), in[0] >> bitoff);
    in++, len--;
  }
  inflateSetDictionary(&z, window, WIN);
  z.next_in = (Bytef *) in;
  z.avail_in = (uInt) len;
  z.next_out = out;
  z.avail_out = (uInt) cap;
  ret = inflate(&z, Z_FINISH);
  *ended = ret == Z_STREAM_END;
  made = cap - z.avail_out;
  inflateEnd(&z);
  return made;
}

/* The parser's success checked: map, count, stop, and zlib's agreement. */
static void
check_ok(const uint8_t *in, size_t len, unsigned bitoff, size_t winlen,
         size_t limit, const struct sn_window_use *st, size_t size)
{
  size_t i, n = 0;
  struct sn_window_use st2;

  for (i = 0; i < WIN; i++) {
    n += map[i];
    if (map[i] && i < WIN - winlen)
      fail("a map entry outside the real window", size);
  }
  if (n != st->count)
    fail("count disagrees with the map", size);
  if (!st->end && st->out < (limit < WIN ? limit : WIN))
    fail("stopped before the limit without an end", size);
  if (st->in_bits > (uint64_t) len * 8 - bitoff)
    fail("consumed more bits than given", size);
  if (winlen != WIN)
    return;
  if (sn_window_sparse(in, len, bitoff, full, winlen, limit, sparse,
                       &st2) < 0 || st2.count != st->count)
    fail("sn_window_sparse disagrees with sn_window_use", size);
  if (sn_window_verify(in, len, bitoff, full, sparse, st->out) == 1)
    fail("sn_window_verify: the sparse window decodes differently", size);
  {
    int end_f, end_s;
    size_t nf = zlib_out(in, len, bitoff, full, out_full, OUTCAP, &end_f);
    size_t ns = zlib_out(in, len, bitoff, sparse, out_sparse, OUTCAP,
                         &end_s);

    if (nf < st->out || ns < st->out)
      fail("zlib stops before the parser's output", size);
    if (memcmp(out_full, out_sparse, st->out) != 0)
      fail("zlib decodes differently with the sparse window", size);
    if (st->end && (!end_f || nf != st->out))
      fail("zlib's stream does not end where the parser's does", size);
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sn_window_use st;
  unsigned bitoff;
  size_t limit, winlen, len;
  const uint8_t *in;

  if (size < 5)
    return 0;
  init_window();
  bitoff = data[0] & 7;
  limit = (size_t) data[1] | (size_t) data[2] << 8;
  winlen = data[0] & 8 ? ((size_t) data[3] | (size_t) data[4] << 8) % (WIN + 1)
                       : WIN;
  in = data + 5;
  len = size - 5;
  if (bitoff > len * 8)
    bitoff = 0;
  if (sn_window_use(in, len, bitoff, winlen, limit, map, &st) == 0)
    check_ok(in, len, bitoff, winlen, limit, &st, size);
  else {
    for (size_t i = 0; i < WIN; i++)
      if (map[i])
        fail("a failed parse left a map entry", size);
    /* zlib cannot reach the limit either (with a whole window, where
     * "too far back" cannot happen). */
    int ended;

    if (winlen == WIN && limit > 0 &&
        zlib_out(in, len, bitoff, full, out_full, OUTCAP, &ended) >=
        (limit < WIN ? limit : WIN))
      fail("zlib decodes what the parser rejected", size);
  }
  return 0;
}
