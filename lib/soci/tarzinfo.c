/* soci-nbd: TarZinfo, the checkpoints of an uncompressed layer: a tiny
 * nested FlatBuffer {version = 2, span_size, size} (docs/soci-format.md
 * §4.3), written byte-identically to soci's Go code. */
#include <config.h>

#include <inttypes.h>

#include "util/err.h"
#include "util/fbs.h"
#include "soci/zinfo.h"

enum { TZ_VERSION, TZ_SPAN_SIZE, TZ_SIZE, TZ_NFIELDS };

#define TARZINFO_VERSION 2

/* Write the TarZinfo table with the builder of docs/soci-format.md §2.3;
 * *out is malloc'd and the caller's. */
int
sn_tarzinfo_encode(int64_t span_size, int64_t size, uint8_t **out,
                   size_t *len)
{
  struct sn_fbb b;
  sn_fbb_ref root;
  int r;

  *out = NULL;
  *len = 0;
  if (span_size <= 0 || size < 0)
    return sn_set_error("tarzinfo: invalid span size %" PRId64
                        " or size %" PRId64, span_size, size);
  /* The fields are added in slot order, as soci's Go code does. */
  sn_fbb_init(&b);
  sn_fbb_start_table(&b, TZ_NFIELDS);
  sn_fbb_add_i32(&b, TZ_VERSION, TARZINFO_VERSION, 0);
  sn_fbb_add_i64(&b, TZ_SPAN_SIZE, span_size, 0);
  sn_fbb_add_i64(&b, TZ_SIZE, size, 0);
  root = sn_fbb_end_table(&b);
  r = sn_fbb_finish(&b, root, out, len);
  sn_fbb_free(&b);
  return r == -1 ? sn_prefix_error("tarzinfo: ") : 0;
}

/* Read a TarZinfo and check it: version 2, positive span size, size >= 0
 * (size against the ztoc is the caller's check, §4.3). */
int
sn_tarzinfo_decode(const uint8_t *buf, size_t len, int64_t *span_size,
                   int64_t *size)
{
  struct sn_fbr_table t;
  int32_t version;

  if (sn_fbr_root(buf, len, &t) == -1 ||
      sn_fbr_i32(&t, TZ_VERSION, 0, &version) == -1 ||
      sn_fbr_i64(&t, TZ_SPAN_SIZE, 0, span_size) == -1 ||
      sn_fbr_i64(&t, TZ_SIZE, 0, size) == -1)
    return sn_prefix_error("tarzinfo: ");
  if (version != TARZINFO_VERSION)
    return sn_set_error("tarzinfo: unsupported version %" PRId32, version);
  if (*span_size <= 0)
    return sn_set_error("tarzinfo: invalid span size %" PRId64, *span_size);
  if (*size < 0)
    return sn_set_error("tarzinfo: negative size %" PRId64, *size);
  return 0;
}
