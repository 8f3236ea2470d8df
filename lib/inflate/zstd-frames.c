/* soci-nbd: a run of zstd frames decoded from its first byte, bounded to
 * the output wanted (zstd-frames.h). */
#include <config.h>

#include <zstd.h>

#include "inflate/zstd-frames.h"
#include "util/err.h"

int
sn_zstd_frames_decode(const uint8_t *comp, size_t comp_len, int64_t skip,
                      uint8_t *out, size_t out_len)
{
  uint8_t scratch[16384];
  ZSTD_inBuffer in = { comp, comp_len, 0 };
  ZSTD_outBuffer o;
  ZSTD_DStream *ds = ZSTD_createDStream();
  size_t r = 1;

  if (ds == NULL)
    return sn_oom();
  while (skip > 0) {
    size_t used = in.pos;

    o = (ZSTD_outBuffer) { scratch, skip < (int64_t) sizeof scratch
                           ? (size_t) skip : sizeof scratch, 0 };
    r = ZSTD_decompressStream(ds, &o, &in);
    skip -= (int64_t) o.pos;
    if (ZSTD_isError(r) || (o.pos == 0 && in.pos == used))
      break;                    /* an error, or the input ran out */
  }
  o = (ZSTD_outBuffer) { out, out_len, 0 };
  while (skip == 0 && o.pos < o.size && !ZSTD_isError(r)) {
    size_t before = o.pos, used = in.pos;

    r = ZSTD_decompressStream(ds, &o, &in);
    if (o.pos == before && in.pos == used)
      break;                    /* no progress: the input ran out */
  }
  ZSTD_freeDStream(ds);
  if (ZSTD_isError(r))
    return sn_set_error("corrupt zstd frame (%s)", ZSTD_getErrorName(r));
  if (skip != 0 || o.pos != out_len)
    return sn_set_error("its zstd frames end %zu bytes short",
                        out_len - o.pos + (size_t) skip);
  return 0;
}
