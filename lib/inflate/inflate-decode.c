/* soci-nbd: the DEFLATE decoder's state machine (lib/inflate/inflate.c
 * has the overview and the public entry points): gzip and zlib headers
 * and trailers, stored blocks, dynamic table headers, and Huffman-coded
 * data, decoded by the fast loop while input and room allow and symbol
 * by symbol by the careful path near the ends of both.
 */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "inflate/inflate.h"
#include "inflate/inflate-int.h"
#include "inflate/inflate-table.h"

/* ---- the fast loop ------------------------------------------------------ */

/* Refill the bit buffer to 56-63 bits without a branch: load 8 bytes
 * above the bits held and advance by the whole bytes that fit. */
#define REFILL()                                                        \
  do {                                                                  \
    bb |= load64(in) << (bc & 63);                                      \
    in += (~bc >> 3) & 7;                                               \
    bc |= 56;                                                           \
  } while (0)

/* Drop the bits of table entry e (its bits 0-5; 6-7 are zero). */
#define CONSUME(e)                                                      \
  do {                                                                  \
    bb >>= (e) & 63;                                                    \
    bc -= (e);                                                          \
  } while (0)

/* Smallest multiple of d (1..7) that is at least 8. */
static const uint8_t period8[8] = { 0, 8, 8, 9, 8, 10, 12, 14 };

/* Note why the input is corrupt; run() reports it with the offset. */
static int
corrupt(struct sn_inflate *z, const char *why)
{
  z->why = why;
  return R_ERROR;
}

/* Decode symbols of the current block while at least IN_MARGIN input
 * bytes and OUT_MARGIN bytes of room remain.  Returns 1 after the end of
 * block code, 0 when short of input or room, or R_ERROR.
 *
 * Tricks, as in libdeflate:
 * - The next literal/length entry is looked up ("preloaded") as soon as
 *   the bits of the current one are dropped, before its literal is stored
 *   or its match copied, so table loads overlap other work.  The lookup
 *   may use bits above bc: after a refill all 64 bits of bb are input
 *   bits, and at most 48 are dropped before the next refill, so the 11
 *   index bits are always real input.
 * - One branchless refill per iteration leaves 56-63 bits: enough for up
 *   to three literals (11 bits each in the root table) or one length
 *   (<= 20 bits with a subtable) and one distance (<= 28).
 * - An entry's bits are dropped before its kind is tested, by a shift
 *   and a subtraction of the entry itself: bits 5-7 of an entry are zero,
 *   so the low byte of bc stays right and bc & 63 is the bit count (the
 *   shift count is taken mod 64 by the hardware, and by the & 63).
 * - The extra bits of a length or distance are taken from the bit
 *   buffer as it was before the drop ("saved"). */
static int
fast_block(struct sn_inflate *z, const uint8_t **pin, const uint8_t *in_end)
{
  const uint8_t *in = *pin;
  const uint8_t *const in_stop = in_end - IN_MARGIN;
  uint8_t *out = z->buf + z->pos;
  uint8_t *const out_stop = z->buf + LIMIT - OUT_MARGIN;
  int64_t low = z->mbase - z->obase;
  const uint8_t *const lowest = z->buf + (low > 0 ? (size_t) low : 0);
  const uint32_t *const lt = z->lt, *const dt = z->dt;
  uint64_t bb = z->bb, saved;
  uint32_t bc = z->bc, e;
  int r = 0;

  REFILL();                     /* the caller gave 2 * IN_MARGIN bytes */
  e = lt[bb & mask(SN_LITLEN_ROOT)];
  while (in <= in_stop && out <= out_stop) {
    size_t len, dist;
    const uint8_t *src;
    uint8_t *end;

    REFILL();
    saved = bb;
    CONSUME(e);
    if (e & SN_TE_LIT) {
      /* Up to two more literals from the same refill. */
      uint8_t lit = (uint8_t) SN_TE_VAL(e);

      e = lt[bb & mask(SN_LITLEN_ROOT)];
      *out++ = lit;
      if (e & SN_TE_LIT) {
        CONSUME(e);
        lit = (uint8_t) SN_TE_VAL(e);
        e = lt[bb & mask(SN_LITLEN_ROOT)];
        *out++ = lit;
        if (e & SN_TE_LIT) {
          CONSUME(e);
          lit = (uint8_t) SN_TE_VAL(e);
          e = lt[bb & mask(SN_LITLEN_ROOT)];
          *out++ = lit;
        }
      }
      continue;
    }
    if (__builtin_expect((e & (SN_TE_SUB | SN_TE_EOB | SN_TE_BAD)) != 0, 0)) {
      if (e & SN_TE_SUB) {
        /* The root bits are dropped: index the subtable. */
        e = lt[SN_TE_VAL(e) + (bb & mask(SN_TE_CODE(e)))];
        saved = bb;
        CONSUME(e);
        if (e & SN_TE_LIT) {
          uint8_t lit = (uint8_t) SN_TE_VAL(e);

          e = lt[bb & mask(SN_LITLEN_ROOT)];
          *out++ = lit;
          continue;
        }
      }
      if (e & (SN_TE_EOB | SN_TE_BAD)) {
        if (e & SN_TE_BAD) {
          bb = saved;           /* report the offset before the code */
          bc += e;
          r = corrupt(z, "invalid literal/length code");
          break;
        }
        r = 1;
        break;
      }
    }
    /* A length: bits 8-11 of e are its code bits (no flags above). */
    len = SN_TE_VAL(e) + ((saved & mask(e & 63)) >> ((e >> 8) & 63));

    e = dt[bb & mask(SN_DIST_ROOT)];
    if (__builtin_expect((e & (SN_TE_SUB | SN_TE_BAD)) != 0, 0)) {
      if (e & SN_TE_SUB) {
        CONSUME(e);
        e = dt[SN_TE_VAL(e) + (bb & mask(SN_TE_CODE(e)))];
      }
      if (e & SN_TE_BAD) {
        r = corrupt(z, "invalid distance code");
        break;
      }
    }
    saved = bb;
    CONSUME(e);
    dist = SN_TE_VAL(e) + ((saved & mask(e & 63)) >> ((e >> 8) & 63));
    if (__builtin_expect(dist > (size_t) (out - lowest), 0)) {
      r = corrupt(z, "invalid distance too far back");
      break;
    }
    /* Preload the next entry before the copy. */
    e = lt[bb & mask(SN_LITLEN_ROOT)];

    src = out - dist;
    end = out + len;
    if (dist >= 8) {
      /* Most matches are short (98% <= 32 bytes): four words without
       * a test, then a loop if need be. */
      copy64(out, src);
      copy64(out + 8, src + 8);
      copy64(out + 16, src + 16);
      copy64(out + 24, src + 24);
      if (len > 32) {
        out += 32;
        src += 32;
        do {
          copy64(out, src);
          copy64(out + 8, src + 8);
          out += 16;
          src += 16;
        } while (out < end);
      }
    }
    else {
      /* Overlapping: write one period of at least 8 bytes bytewise,
       * then copy words from that far back. */
      size_t p = period8[dist], i;

      for (i = 0; i < p && i < len; i++)
        out[i] = src[i];
      out += i;
      while (out < end) {
        copy64(out, out - p);
        out += 8;
      }
    }
    out = end;
  }

  /* Hand back whole bytes taken here but not used (bits held on entry
   * may remain: the slow path takes them from there). */
  bc &= 63;
  if ((size_t) (in - *pin) >= bc >> 3) {
    in -= bc >> 3;
    bc &= 7;
  }
  else {
    bc -= 8 * (unsigned) (in - *pin);
    in = *pin;
  }
  z->bb = bb & mask(bc);
  z->bc = bc;
  z->pos = (size_t) (out - z->buf);
  *pin = in;
  return r;
}

/* ---- the careful path --------------------------------------------------- */

/* Take input bytes into the bit buffer until it holds n <= 56 bits.
 * False when the input runs out first. */
static bool
need(struct sn_inflate *z, unsigned n, const uint8_t **p, const uint8_t *end)
{
  while (z->bc < n) {
    if (*p == end)
      return false;
    z->bb |= (uint64_t) *(*p)++ << z->bc;
    z->bc += 8;
  }
  return true;
}

static void
drop(struct sn_inflate *z, unsigned n)
{
  z->bb >>= n;
  z->bc -= n;
}

/* Take n <= 4 header bytes (little-endian), adding them to the header
 * CRC.  The bit buffer is byte-aligned in headers. */
static bool
hdr_take(struct sn_inflate *z, unsigned n, uint32_t *v, const uint8_t **p,
         const uint8_t *end)
{
  uint8_t b[4];
  unsigned i;

  if (!need(z, 8 * n, p, end))
    return false;
  *v = (uint32_t) (z->bb & mask(8 * n));
  for (i = 0; i < n; i++)
    b[i] = (uint8_t) (*v >> 8 * i);
  z->hcrc = sn_inflate_crc_update(z->hcrc, b, n);
  drop(z, 8 * n);
  return true;
}

/* Skip z->left header bytes, or (left == UINT32_MAX) up to and including
 * a zero byte.  False when the input runs out first. */
static bool
hdr_skip(struct sn_inflate *z, const uint8_t **p, const uint8_t *end)
{
  bool to_zero = z->left == UINT32_MAX;

  while (z->bc >= 8 && z->left > 0) {
    uint8_t c = (uint8_t) z->bb;

    z->hcrc = sn_inflate_crc_update(z->hcrc, &c, 1);
    drop(z, 8);
    z->left = to_zero && c == 0 ? 0 : z->left - !to_zero;
  }
  if (z->left > 0) {
    size_t avail = (size_t) (end - *p), n;

    if (to_zero) {
      const uint8_t *zero = memchr(*p, 0, avail);

      n = zero ? (size_t) (zero - *p) + 1 : avail;
      if (zero)
        z->left = 0;
    }
    else {
      n = avail < z->left ? avail : z->left;
      z->left -= (uint32_t) n;
    }
    z->hcrc = sn_inflate_crc_update(z->hcrc, *p, n);
    *p += n;
  }
  return z->left == 0;
}

/* A member's data starts here: reset its check and output base. */
static void
begin_member(struct sn_inflate *z)
{
  z->mbase = sn_inflate_total_out(z);
  z->checked = z->pos;
  z->check = z->zlib ? 1 : 0;
  z->last = false;
}

/* Decode one symbol of the current block if all its bits are held:
 * returns 0 after a literal or match, 1 after the end of block, 2 if
 * more bits are needed, or R_ERROR.  Room for a match is guaranteed. */
static int
slow_symbol(struct sn_inflate *z)
{
  uint64_t bb = z->bb;
  unsigned bc = z->bc, n = 0, m = 0;
  uint32_t e, d;
  size_t len, dist, avail, i;
  int64_t low;
  const uint8_t *src;
  uint8_t *out;

  e = z->lt[bb & mask(SN_LITLEN_ROOT)];
  if (e & SN_TE_SUB) {
    if (bc < SN_LITLEN_ROOT)
      return 2;
    n = SN_LITLEN_ROOT;
    e = z->lt[SN_TE_VAL(e) + ((bb >> n) & mask(SN_TE_CODE(e)))];
  }
  if (n + SN_TE_TOTAL(e) > bc)
    return 2;
  if (e & SN_TE_BAD)
    return corrupt(z, "invalid literal/length code");
  if (e & (SN_TE_LIT | SN_TE_EOB)) {
    drop(z, n + SN_TE_TOTAL(e));
    if (e & SN_TE_EOB)
      return 1;
    z->buf[z->pos++] = (uint8_t) SN_TE_VAL(e);
    return 0;
  }
  len = SN_TE_VAL(e) +
        (((bb >> n) & mask(SN_TE_TOTAL(e))) >> SN_TE_CODE(e));
  n += SN_TE_TOTAL(e);

  d = z->dt[(bb >> n) & mask(SN_DIST_ROOT)];
  if (d & SN_TE_SUB) {
    if (n + SN_DIST_ROOT > bc)
      return 2;
    m = SN_DIST_ROOT;
    d = z->dt[SN_TE_VAL(d) + ((bb >> (n + m)) & mask(SN_TE_CODE(d)))];
  }
  if (n + m + SN_TE_TOTAL(d) > bc)
    return 2;
  if (d & SN_TE_BAD)
    return corrupt(z, "invalid distance code");
  dist = SN_TE_VAL(d) +
         (((bb >> (n + m)) & mask(SN_TE_TOTAL(d))) >> SN_TE_CODE(d));
  n += m + SN_TE_TOTAL(d);

  low = z->mbase - z->obase;
  avail = z->pos - (low > 0 ? (size_t) low : 0);
  if (dist > avail)
    return corrupt(z, "invalid distance too far back");
  drop(z, n);
  out = z->buf + z->pos;
  src = out - dist;
  for (i = 0; i < len; i++)
    out[i] = src[i];
  z->pos += len;
  return 0;
}

static const uint8_t clen_order[19] = {
  16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15
};

/* Read the code lengths of a dynamic block (after the code length code)
 * and build its tables.  Returns 0, 2 for more input, or R_ERROR. */
static int
dyn_lens(struct sn_inflate *z, const uint8_t **p, const uint8_t *end)
{
  unsigned total = z->nlen + z->ndist;

  while (z->nhave < total) {
    uint32_t e = z->ctab[z->bb & mask(SN_CLEN_ROOT)];
    unsigned n = SN_TE_TOTAL(e), sym = SN_TE_VAL(e), extra, rep;
    uint8_t val = 0;

    if (sym < 16) {
      if (n > z->bc) {
        if (!need(z, z->bc + 1, p, end))
          return 2;
        continue;
      }
      drop(z, n);
      z->lens[z->nhave++] = (uint8_t) sym;
      continue;
    }
    extra = sym == 16 ? 2 : sym == 17 ? 3 : 7;
    if (n + extra > z->bc) {
      if (!need(z, z->bc + 1, p, end))
        return 2;
      continue;
    }
    rep = (unsigned) (z->bb >> n) & ((1u << extra) - 1);
    if (sym == 16) {
      if (z->nhave == 0)
        return corrupt(z, "invalid bit length repeat");
      val = z->lens[z->nhave - 1];
      rep += 3;
    }
    else
      rep += sym == 17 ? 3 : 11;
    if (z->nhave + rep > total)
      return corrupt(z, "invalid bit length repeat");
    drop(z, n + extra);
    memset(z->lens + z->nhave, val, rep);
    z->nhave += rep;
  }
  if (z->lens[256] == 0)
    return corrupt(z, "invalid code -- missing end-of-block");
  if (sn_inflate_build_table(z->ltab, SN_TABLE_LITLEN, z->lens, z->nlen) < 0)
    return corrupt(z, "invalid literal/lengths set");
  if (sn_inflate_build_table(z->dtab, SN_TABLE_DIST, z->lens + z->nlen,
                             z->ndist) < 0)
    return corrupt(z, "invalid distances set");
  z->lt = z->ltab;
  z->dt = z->dtab;
  return 0;
}

/* A block ended: stop at the boundary, or go on to the trailer. */
static int
block_end(struct sn_inflate *z)
{
  if (!z->last) {
    z->state = S_BLOCK;
    return SN_INFLATE_BLOCK;
  }
  if (z->format == SN_INFLATE_RAW) {
    z->state = S_DONE;
    return SN_INFLATE_END;
  }
  z->check = sn_inflate_check_update(z, z->check, z->buf + z->checked,
                                     z->pos - z->checked);
  z->checked = z->pos;
  drop(z, z->bc & 7);
  z->state = S_CHECK;
  return -2;                    /* go on */
}

/* Run the state machine on input *p..end until an event or an error. */
int
sn_inflate_decode(struct sn_inflate *z, const uint8_t **p, const uint8_t *end)
{
  uint32_t v;
  int r;

  for (;;) {
    switch (z->state) {
    case S_HEAD:
      if (!need(z, 16, p, end))
        return SN_INFLATE_NEED_INPUT;
      v = (uint32_t) (z->bb & 0xffff);
      if (v == 0x8b1f) {
        z->hcrc = 0;
        hdr_take(z, 2, &v, p, end);
        z->zlib = false;
        z->state = S_GZ_FLAGS;
        break;
      }
      /* zlib framing: CMF, FLG */
      if (((v & 0xff) << 8 | v >> 8) % 31 != 0)
        return corrupt(z, "incorrect header check");
      if ((v & 15) != 8)
        return corrupt(z, "unknown compression method");
      if (((v >> 4) & 15) + 8 > 15)
        return corrupt(z, "invalid window size");
      if (v & 0x2000)
        return corrupt(z, "zlib stream with a preset dictionary");
      drop(z, 16);
      z->zlib = true;
      begin_member(z);
      z->state = S_BLOCK;
      return SN_INFLATE_BLOCK;

    case S_GZ_FLAGS:
      if (!hdr_take(z, 2, &v, p, end))
        return SN_INFLATE_NEED_INPUT;
      if ((v & 0xff) != 8)
        return corrupt(z, "unknown compression method");
      z->flags = v >> 8;
      if (z->flags & 0xe0)
        return corrupt(z, "unknown header flags set");
      z->state = S_GZ_TIME;
      /* fall through */
    case S_GZ_TIME:
      if (!hdr_take(z, 4, &v, p, end))
        return SN_INFLATE_NEED_INPUT;
      z->state = S_GZ_XFL;
      /* fall through */
    case S_GZ_XFL:
      if (!hdr_take(z, 2, &v, p, end))
        return SN_INFLATE_NEED_INPUT;
      z->state = z->flags & 4 ? S_GZ_XLEN : S_GZ_NAME;
      z->left = UINT32_MAX;
      break;
    case S_GZ_XLEN:
      if (!hdr_take(z, 2, &v, p, end))
        return SN_INFLATE_NEED_INPUT;
      z->left = v;
      z->state = S_GZ_EXTRA;
      /* fall through */
    case S_GZ_EXTRA:
      if (!hdr_skip(z, p, end))
        return SN_INFLATE_NEED_INPUT;
      z->state = S_GZ_NAME;
      z->left = UINT32_MAX;
      /* fall through */
    case S_GZ_NAME:
      if (z->flags & 8) {
        if (!hdr_skip(z, p, end))
          return SN_INFLATE_NEED_INPUT;
      }
      z->state = S_GZ_COMMENT;
      z->left = UINT32_MAX;
      /* fall through */
    case S_GZ_COMMENT:
      if (z->flags & 16) {
        if (!hdr_skip(z, p, end))
          return SN_INFLATE_NEED_INPUT;
      }
      z->state = S_GZ_HCRC;
      /* fall through */
    case S_GZ_HCRC:
      if (z->flags & 2) {
        if (!need(z, 16, p, end))
          return SN_INFLATE_NEED_INPUT;
        if ((z->bb & 0xffff) != (z->hcrc & 0xffff))
          return corrupt(z, "header crc mismatch");
        drop(z, 16);
      }
      begin_member(z);
      z->state = S_BLOCK;
      return SN_INFLATE_BLOCK;

    case S_BLOCK:
      if (!need(z, 3, p, end))
        return SN_INFLATE_NEED_INPUT;
      z->last = z->bb & 1;
      v = (uint32_t) (z->bb >> 1) & 3;
      drop(z, 3);
      if (v == 0)
        z->state = S_STORED_LEN;
      else if (v == 1) {
        z->lt = z->fixed_lt;
        z->dt = z->fixed_dt;
        z->state = S_DATA;
      }
      else if (v == 2)
        z->state = S_DYN_HDR;
      else
        return corrupt(z, "invalid block type");
      break;

    case S_STORED_LEN:
      drop(z, z->bc & 7);
      if (!need(z, 32, p, end))
        return SN_INFLATE_NEED_INPUT;
      v = (uint32_t) z->bb;
      if ((v & 0xffff) != ((v >> 16) ^ 0xffff))
        return corrupt(z, "invalid stored block lengths");
      z->left = v & 0xffff;
      drop(z, 32);
      z->state = S_STORED;
      /* fall through */
    case S_STORED:
      while (z->left > 0) {
        size_t room = LIMIT - z->pos, n = (size_t) (end - *p);

        if (room == 0)
          return SN_INFLATE_OUT_FULL;
        if (z->bc >= 8) {
          z->buf[z->pos++] = (uint8_t) z->bb;
          drop(z, 8);
          z->left--;
          continue;
        }
        if (n == 0)
          return SN_INFLATE_NEED_INPUT;
        if (n > room)
          n = room;
        if (n > z->left)
          n = z->left;
        memcpy(z->buf + z->pos, *p, n);
        *p += n;
        z->pos += n;
        z->left -= (uint32_t) n;
      }
      r = block_end(z);
      if (r != -2)
        return r;
      break;

    case S_DYN_HDR:
      if (!need(z, 14, p, end))
        return SN_INFLATE_NEED_INPUT;
      z->nlen = 257 + (unsigned) (z->bb & 31);
      z->ndist = 1 + (unsigned) ((z->bb >> 5) & 31);
      z->ncode = 4 + (unsigned) ((z->bb >> 10) & 15);
      drop(z, 14);
      if (z->nlen > 286 || z->ndist > 30)
        return corrupt(z, "too many length or distance symbols");
      z->nhave = 0;
      z->state = S_DYN_CLEN;
      /* fall through */
    case S_DYN_CLEN:
      while (z->nhave < z->ncode) {
        if (!need(z, 3, p, end))
          return SN_INFLATE_NEED_INPUT;
        z->lens[clen_order[z->nhave++]] = (uint8_t) (z->bb & 7);
        drop(z, 3);
      }
      while (z->nhave < 19)
        z->lens[clen_order[z->nhave++]] = 0;
      if (sn_inflate_build_table(z->ctab, SN_TABLE_CLEN, z->lens, 19) < 0)
        return corrupt(z, "invalid code lengths set");
      z->nhave = 0;
      z->state = S_DYN_LENS;
      /* fall through */
    case S_DYN_LENS:
      r = dyn_lens(z, p, end);
      if (r == 2)
        return SN_INFLATE_NEED_INPUT;
      if (r == R_ERROR)
        return r;
      z->state = S_DATA;
      /* fall through */
    case S_DATA:
      for (;;) {
        if ((size_t) (end - *p) >= 2 * IN_MARGIN &&
            LIMIT - z->pos >= OUT_MARGIN) {
          r = fast_block(z, p, end);
          if (r == R_ERROR)
            return r;
          if (r == 1)
            break;
        }
        if (LIMIT - z->pos < OUT_MARGIN)
          return SN_INFLATE_OUT_FULL;
        r = slow_symbol(z);
        if (r == R_ERROR)
          return r;
        if (r == 1)
          break;
        if (r == 2 && !need(z, z->bc + 1, p, end))
          return SN_INFLATE_NEED_INPUT;
      }
      r = block_end(z);
      if (r != -2)
        return r;
      break;

    case S_CHECK:
      if (!need(z, 32, p, end))
        return SN_INFLATE_NEED_INPUT;
      v = (uint32_t) z->bb;
      drop(z, 32);
      if (z->zlib)
        v = __builtin_bswap32(v);
      if (v != z->check)
        return corrupt(z, "incorrect data check");
      if (z->zlib) {
        z->state = S_HEAD;
        z->members++;
        return SN_INFLATE_END;
      }
      z->state = S_ISIZE;
      /* fall through */
    case S_ISIZE:
      if (!need(z, 32, p, end))
        return SN_INFLATE_NEED_INPUT;
      v = (uint32_t) z->bb;
      drop(z, 32);
      if (v != (uint32_t) (sn_inflate_total_out(z) - z->mbase))
        return corrupt(z, "incorrect length check");
      z->state = S_HEAD;
      z->members++;
      return SN_INFLATE_END;

    case S_DONE:
      return SN_INFLATE_END;
    }
  }
}

