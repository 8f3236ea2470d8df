/* soci-nbd fuzzing: gzip checkpoint blobs, the one-pass checkpoint builder
 * over arbitrary "gzip" streams, and span decoding of hostile compressed
 * bytes.  The first input byte picks the target. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "soci/zinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
sink(void *opaque, const uint8_t *data, size_t len)
{
  (void) opaque;
  (void) data;
  (void) len;
  return 0;
}

static void
fuzz_builder(const uint8_t *data, size_t size, enum sn_compression comp)
{
  struct sn_zinfo_builder *b = sn_zinfo_builder_new(comp, 1024, sink, NULL);
  struct sn_zinfo *zi = NULL;
  uint8_t (*digests)[SN_SHA256_LEN] = NULL;
  uint8_t whole[SN_SHA256_LEN];
  size_t pos = 0;

  if (b == NULL)
    return;
  while (pos < size) {
    size_t n = size - pos < 97 ? size - pos : 97;
    if (sn_zinfo_builder_feed(b, data + pos, n) == -1)
      break;
    pos += n;
  }
  if (pos == size && sn_zinfo_builder_finish(b, &zi, &digests, whole) == 0) {
    uint8_t *blob;
    size_t len;
    if (comp == SN_COMP_GZIP && sn_zinfo_serialize_gzip(zi, &blob, &len) == 0) {
      struct sn_zinfo *back = sn_zinfo_parse_gzip(blob, len);
      if (back == NULL || back->nspans != zi->nspans)
        abort();
      sn_zinfo_free(back);
      free(blob);
    }
    sn_zinfo_free(zi);
    free(digests);
  }
  sn_zinfo_builder_free(b);
}

/* Decode hostile bytes as span 0 of a one-checkpoint zinfo. */
static void
fuzz_decode(const uint8_t *data, size_t size)
{
  static uint8_t window[SN_ZINFO_WINSIZE];
  struct sn_checkpoint cp = { .in = 10, .out = 0, .window = window };
  struct sn_zinfo zi = {
    .compression = SN_COMP_GZIP, .span_size = 4096,
    .compressed_size = 10 + (int64_t) size, .uncompressed_size = 8192,
    .nspans = 1, .cp = &cp,
  };
  uint8_t *out = malloc(8192);

  if (size > 0)
    cp.bits = data[0] & 7;
  if (out)
    (void) sn_zinfo_decode_span(&zi, 0, data, size, out, 8192);
  free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sn_zinfo *zi;

  if (size < 1)
    return 0;
  switch (data[0] % 4) {
  case 0:
    zi = sn_zinfo_parse_gzip(data + 1, size - 1);
    sn_zinfo_free(zi);
    break;
  case 1:
    fuzz_builder(data + 1, size - 1, SN_COMP_GZIP);
    break;
  case 2:
    fuzz_builder(data + 1, size - 1, SN_COMP_UNCOMPRESSED);
    break;
  default:
    fuzz_decode(data + 1, size - 1);
  }
  return 0;
}
