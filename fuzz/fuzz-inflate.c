/* soci-nbd fuzzing: lib/inflate/inflate.c against zlib on hostile bytes.  The
 * first input byte picks gzip (even) or raw deflate (odd) and, with the
 * next two, the chunk sizes the input is fed in; the rest is the stream.
 * Output, block-boundary events and verdict must match zlib's. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>

#include "../tests/helpers/inflate-diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct diff_result a, b;
  size_t chunks[4];
  const char *why;
  bool raw;

  if (size < 3)
    return 0;
  raw = data[0] & 1;
  chunks[0] = 1 + (data[0] >> 1);       /* 1-128 */
  chunks[1] = 1 + data[1] % 7;
  chunks[2] = 1 + (size_t) data[2] * 97;
  chunks[3] = size;
  data += 3;
  size -= 3;
  diff_zlib(data, size, chunks, 4, raw, &a);
  diff_sn(data, size, chunks, 4, raw, &b);
  why = diff_compare(&a, &b, raw);
  if (why) {
    fprintf(stderr, "lib/inflate/inflate.c and zlib disagree (%s): %s; zlib ok=%d "
            "out=%zu ev=%zu, sn ok=%d out=%zu ev=%zu\n",
            raw ? "raw" : "gzip", why, a.ok, a.outlen, a.nev, b.ok,
            b.outlen, b.nev);
    abort();
  }
  diff_free(&a);
  diff_free(&b);
  return 0;
}
