/* soci-nbd: a DEFLATE decoder that stops at block boundaries.
 *
 * The ztoc builder needs zlib's inflate(Z_BLOCK) semantics (where each
 * block ends, to the bit) at a speed zlib does not reach.  This decoder
 * has a fast loop in the style of libdeflate (a 64-bit bit buffer
 * refilled eight bytes at a time, an 11-bit literal/length table with
 * length bases folded into the entries, word-at-a-time match copies) for
 * the body of each block, and a careful resumable state machine for
 * everything else: headers, dynamic tables, symbols split across calls,
 * the last bytes of input and of the output area.
 *
 * Output goes to one buffer: WINSIZE bytes of history, then the output
 * area.  Matches read the history in place.  When the area is full the
 * caller has taken its output, and the next call moves the last WINSIZE
 * bytes to the front.
 *
 * Positions: the bit buffer holds bits of bytes already taken from the
 * input.  At every return but NEED_INPUT whole unused bytes go back to
 * the caller, so fewer than 8 bits stay held and "consumed" means what
 * zlib means by it.  The slow path decodes a symbol as soon as its bits
 * are there, so a block's end is always seen in the call that supplies
 * its last bit, as with zlib.
 *
 * This file: the public entry points, the data checks and the window
 * slide.  The state machine and its fast loop are in inflate-decode.c;
 * the state they share is in inflate-int.h.
 */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l/crc.h>
#endif

#include "util/err.h"
#include "inflate/inflate.h"
#include "inflate/inflate-int.h"
#include "inflate/inflate-table.h"

/* CRC-32 of gzip members: ISA-L's when built with it, else zlib's. */
uint32_t
sn_inflate_crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef HAVE_ISAL
  return crc32_gzip_refl(crc, p, n);
#else
  while (n > 0) {               /* zlib takes uInt lengths */
    uInt k = n > (1u << 30) ? 1u << 30 : (uInt) n;

    crc = (uint32_t) crc32(crc, p, k);
    p += k;
    n -= k;
  }
  return crc;
#endif
}

/* The member's data check: CRC-32 (gzip) or Adler-32 (zlib framing). */
uint32_t
sn_inflate_check_update(const struct sn_inflate *z, uint32_t check,
                        const uint8_t *p, size_t n)
{
  if (!z->zlib)
    return sn_inflate_crc_update(check, p, n);
  while (n > 0) {
    uInt k = n > (1u << 30) ? 1u << 30 : (uInt) n;

    check = (uint32_t) adler32(check, p, k);
    p += k;
    n -= k;
  }
  return check;
}

/* The decoder, its WIN + AREA output buffer and the fixed-code tables,
 * built once per decoder. */
struct sn_inflate *
sn_inflate_new(enum sn_inflate_format format)
{
  struct sn_inflate *z = calloc(1, sizeof *z);

  if (z == NULL) {
    sn_oom();
    return NULL;
  }
  z->buf = malloc(LIMIT);
  if (z->buf == NULL) {
    free(z);
    sn_oom();
    return NULL;
  }
  z->format = format;
  z->state = format == SN_INFLATE_RAW ? S_BLOCK : S_HEAD;

  sn_inflate_fixed_tables(z->fixed_lt, z->fixed_dt);
  return z;
}

void
sn_inflate_free(struct sn_inflate *z)
{
  if (z == NULL)
    return;
  free(z->buf);
  free(z);
}

int64_t
sn_inflate_total_in(const struct sn_inflate *z)
{
  return z->totin;
}

int64_t
sn_inflate_total_out(const struct sn_inflate *z)
{
  return z->obase + (int64_t) z->pos;
}

unsigned
sn_inflate_bits(const struct sn_inflate *z)
{
  return z->bc & 7;
}

/* The WIN bytes before pos are always in buf: slide() keeps them. */
void
sn_inflate_window(const struct sn_inflate *z, uint8_t win[WIN])
{
  int64_t tot = sn_inflate_total_out(z);
  size_t n = tot < WIN ? (size_t) tot : WIN;

  memset(win, 0, WIN - n);
  memcpy(win + WIN - n, z->buf + z->pos - n, n);
}

/* Move the last WIN bytes of output to the front of the buffer. */
static void
slide(struct sn_inflate *z)
{
  size_t from = z->pos - WIN;

  memmove(z->buf, z->buf + from, WIN);
  z->obase += (int64_t) from;
  z->pos = WIN;
  z->checked = z->checked > from ? z->checked - from : 0;
}

/* One call of the state machine over in, after sliding the window when
 * the area is nearly full.  Unused whole bytes are handed back (see the
 * top of this file), the check covers the new output, and an error is
 * reported with its input offset and makes the decoder stay failed. */
int
sn_inflate_run(struct sn_inflate *z, const uint8_t *in, size_t len,
               size_t *used, const uint8_t **out, size_t *outlen)
{
  const char *what = z->format == SN_INFLATE_RAW ? "deflate" : "gzip";
  const uint8_t *p = in;
  size_t start;
  int r;

  *used = 0;
  *out = z->buf;
  *outlen = 0;
  if (z->failed)
    return sn_set_error("%s: an earlier error stopped the decoder", what);
  if (LIMIT - z->pos < OUT_MARGIN)
    slide(z);
  start = z->pos;
  r = sn_inflate_decode(z, &p, in + len);
  if (r != SN_INFLATE_NEED_INPUT) {
    /* Hand back whole bytes not used (all taken during this call). */
    size_t k = z->bc >> 3;

    if (k > (size_t) (p - in))
      k = (size_t) (p - in);
    p -= k;
    z->bc -= 8 * (unsigned) k;
    z->bb &= mask(z->bc);
  }
  *used = (size_t) (p - in);
  if (z->format != SN_INFLATE_RAW && z->pos > z->checked &&
      z->state != S_HEAD) {
    z->check = sn_inflate_check_update(z, z->check, z->buf + z->checked,
                                       z->pos - z->checked);
    z->checked = z->pos;
  }
  *out = z->buf + start;
  *outlen = z->pos - start;
  if (r == R_ERROR) {
    z->failed = true;
    sn_set_error("%s: corrupt data at offset %" PRId64 ": %s", what,
                 z->totin + (int64_t) *used, z->why);
  }
  z->totin += (int64_t) *used;
  return r;
}

/* Clean only at a state where a stream may end: raw after the final
 * block; gzip between members, no bits held, after at least one. */
int
sn_inflate_finish(struct sn_inflate *z)
{
  if (z->failed)
    return sn_set_error("%s: an earlier error stopped the decoder",
                        z->format == SN_INFLATE_RAW ? "deflate" : "gzip");
  if (z->format == SN_INFLATE_RAW ? z->state == S_DONE
                                  : z->state == S_HEAD && z->members > 0 &&
                                    z->bc == 0)
    return 0;
  return sn_set_error("truncated %s stream (%" PRId64 " bytes)",
                      z->format == SN_INFLATE_RAW ? "deflate" : "gzip",
                      z->totin);
}
