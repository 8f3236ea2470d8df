/* soci-nbd fuzzing: the ztoc FlatBuffers reader and the zinfo view of it.
 * Whatever is accepted must re-encode and decode to the same model. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "soci/zinfo.h"
#include "soci/ztoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sn_ztoc *z = sn_ztoc_decode(data, size), *z2;
  struct sn_zinfo *zi;
  uint8_t *buf, *buf2;
  size_t len, len2;

  if (z == NULL)
    return 0;
  zi = sn_zinfo_from_ztoc(z);
  if (zi) {
    struct sn_span s;
    size_t i;
    for (i = 0; i < zi->nspans; i++)
      sn_zinfo_span(zi, i, &s);
    if (z->uncompressed_size > 0)
      (void) sn_zinfo_span_of(zi, z->uncompressed_size - 1);
    sn_zinfo_free(zi);
  }
  /* Encoding what we decoded is stable: encode(decode(encode(z))) ==
   * encode(z). */
  if (sn_ztoc_encode(z, &buf, &len) == 0) {
    z2 = sn_ztoc_decode(buf, len);
    if (z2 == NULL)
      abort();
    if (sn_ztoc_encode(z2, &buf2, &len2) != 0 || len != len2 ||
        memcmp(buf, buf2, len) != 0)
      abort();
    free(buf2);
    sn_ztoc_free(z2);
    free(buf);
  }
  sn_ztoc_free(z);
  return 0;
}
