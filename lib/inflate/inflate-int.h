/* soci-nbd: internal to lib/inflate/inflate*.c: the decoder's state,
 * its buffer geometry and the small helpers both files share (window-use.c
 * uses the helpers too).  Not a public API.
 *
 * inflate.c holds the public entry points, the data checks and the
 * window slide; inflate-decode.c the state machine (headers, stored and
 * Huffman blocks) with its fast loop.
 */
#ifndef SN_INFLATE_INT_H
#define SN_INFLATE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "inflate/inflate.h"
#include "inflate/inflate-table.h"

#define WIN SN_INFLATE_WINSIZE
#define AREA ((size_t) 512 * 1024)
#define LIMIT (WIN + AREA)      /* end of the output area */
/* Room the fast loop needs per iteration: three literals, or a match
 * (<= 258 bytes) whose word copies may write up to 29 bytes past its end
 * (32 bytes for a 3-byte match; a longer one ends within 16). */
#define OUT_MARGIN ((size_t) 320)
/* Input the fast loop needs per iteration: one 8-byte refill (and
 * slack). */
#define IN_MARGIN ((size_t) 16)

enum state {
  S_HEAD,                       /* a member's first two bytes */
  S_GZ_FLAGS, S_GZ_TIME, S_GZ_XFL, S_GZ_XLEN, S_GZ_EXTRA, S_GZ_NAME,
  S_GZ_COMMENT, S_GZ_HCRC,
  S_BLOCK,                      /* a block header's 3 bits */
  S_STORED_LEN, S_STORED,
  S_DYN_HDR, S_DYN_CLEN, S_DYN_LENS,
  S_DATA,                       /* compressed symbols */
  S_CHECK, S_ISIZE,             /* the trailer */
  S_DONE,                       /* raw: the stream ended */
};

struct sn_inflate {
  enum sn_inflate_format format;
  enum state state;
  bool failed;

  uint64_t bb;                  /* bit buffer: bc bits, zeros above */
  unsigned bc;

  /* the current block */
  bool last;
  const uint32_t *lt, *dt;      /* fixed or dynamic tables */
  unsigned nlen, ndist, ncode, nhave;
  uint32_t left;                /* stored bytes, or header bytes to skip */
  uint8_t lens[288 + 32];

  /* the current member */
  bool zlib;                    /* zlib framing, not gzip */
  unsigned flags;               /* gzip FLG */
  uint32_t check;               /* CRC-32 or Adler-32 of its output */
  uint32_t hcrc;                /* CRC-32 of its header so far */
  int64_t mbase;                /* total output at its start */
  int64_t members;              /* members ended */

  /* output */
  uint8_t *buf;
  size_t pos;                   /* next write index */
  size_t checked;               /* buf[checked..pos) not in check yet */
  int64_t obase;                /* total output at buf[0] */
  int64_t totin;
  const char *why;              /* what corrupt() found */

  uint32_t ltab[SN_LITLEN_CAP], dtab[SN_DIST_CAP], ctab[SN_CLEN_CAP];
  uint32_t fixed_lt[SN_LITLEN_CAP], fixed_dt[SN_DIST_CAP];
};

/* Internal return codes of the state machine, beside the events. */
#define R_ERROR (-1)

/* Eight input bytes as a little-endian word (bits enter LSB first). */
static inline uint64_t
load64(const uint8_t *p)
{
  uint64_t v;

  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* Copy one unaligned word; match copies may overrun into OUT_MARGIN. */
static inline void
copy64(uint8_t *dst, const uint8_t *src)
{
  uint64_t v;

  memcpy(&v, src, 8);
  memcpy(dst, &v, 8);
}

/* The n (< 64) low bits set. */
static inline uint64_t
mask(unsigned n)
{
  return ((uint64_t) 1 << n) - 1;
}

/* CRC-32 of gzip members (inflate.c). */
uint32_t sn_inflate_crc_update(uint32_t crc, const uint8_t *p, size_t n);

/* The member's data check over p[0..n) (inflate.c). */
uint32_t sn_inflate_check_update(const struct sn_inflate *z, uint32_t check,
                                 const uint8_t *p, size_t n);

/* Run the state machine on input *p..end until an event or an error
 * (inflate-decode.c): returns an event, or R_ERROR with z->why set. */
int sn_inflate_decode(struct sn_inflate *z, const uint8_t **p,
                      const uint8_t *end);

#endif
