/* soci-nbd: which bytes of a restart point's window the output after it
 * copies — a DEFLATE parser (RFC 1951: stored, fixed and dynamic blocks)
 * that counts output instead of producing it, and the sparse window built
 * from what it finds.  Huffman codes are decoded with the inflater's
 * tables (inflate-table.h): by a fast loop while 8 bytes of input remain,
 * and symbol by symbol, every bit checked, near the end of the input and
 * for anything unusual (an invalid code, a distance past the window):
 * the fast loop stops before such a symbol and the careful path reports
 * it, so errors name the same bit offsets whichever path met them. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "inflate/inflate-int.h"
#include "inflate/inflate-table.h"
#include "inflate/window-use.h"

#define MAXLCODES 286            /* literal/length symbols a header may give */
#define MAXDCODES 30             /* distance symbols a header may give */

struct parse {
  const uint8_t *in;
  size_t len, pos;               /* in[pos] is the next byte to load */
  uint64_t bb;                   /* bit buffer: bc bits, LSB first, */
  unsigned bc;                   /* zeros above (bc <= 56) */
  size_t out, limit, winlen;
  uint8_t *map;
  bool no_dist;                  /* the block's distance code is empty */
  bool have_fixed;               /* flt, fdt built */
  uint32_t lt[SN_LITLEN_CAP], dt[SN_DIST_CAP], ct[SN_CLEN_CAP];
  uint32_t flt[SN_LITLEN_CAP], fdt[SN_DIST_CAP];
};

/* The order of the code length code's lengths in a dynamic header. */
static const uint8_t clen_order[19] = {
  16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 };

/* The bit position of the next unread bit, counted from in[0]. */
static uint64_t
bitpos(const struct parse *s)
{
  return (uint64_t) s->pos * 8 - s->bc;
}

/* The input ended: what was needed starts at bit `at` (a Huffman code is
 * read a bit at a time, so it fails at the end of the input). */
static int
truncated(const struct parse *s, uint64_t at)
{
  return sn_set_error("deflate: input ends at bit %" PRIu64 " after %zu "
                      "bytes of output: more input needed", at, s->out);
}

static int
corrupt(const struct parse *s, const char *what)
{
  return sn_set_error("deflate: %s at bit %" PRIu64 " (%zu bytes of "
                      "output)", what, bitpos(s), s->out);
}

/* Load input bytes until the buffer holds more than 48 bits (a length
 * and a distance with their extra bits) or the input is used up. */
static void
fill(struct parse *s)
{
  while (s->bc <= 48 && s->pos < s->len) {
    s->bb |= (uint64_t) s->in[s->pos++] << s->bc;
    s->bc += 8;
  }
}

static void
drop(struct parse *s, unsigned n)
{
  s->bb >>= n;
  s->bc -= n;
}

/* Read n (<= 16) bits into *v, the first one least significant. */
static int
getbits(struct parse *s, unsigned n, unsigned *v)
{
  fill(s);
  if (s->bc < n)
    return truncated(s, bitpos(s));
  *v = (unsigned) (s->bb & mask(n));
  drop(s, n);
  return 0;
}

/* Look up the next code in table t (root index bits): its entry in *e
 * (for a long code, the subtable's) and its code bits in *n, without
 * dropping them.  Fails if the input ends inside the code. */
static int
lookup(struct parse *s, const uint32_t *t, unsigned root, uint32_t *e,
       unsigned *n)
{
  fill(s);
  *e = t[s->bb & mask(root)];
  *n = 0;
  if (*e & SN_TE_SUB) {
    if (s->bc < root)
      return truncated(s, (uint64_t) s->len * 8);
    *n = root;
    *e = t[SN_TE_VAL(*e) + ((s->bb >> root) & mask(SN_TE_CODE(*e)))];
  }
  *n += SN_TE_CODE(*e);
  if (*n > s->bc)
    return truncated(s, (uint64_t) s->len * 8);
  return 0;
}

/* Mark the window bytes a match of len bytes copies from `back` bytes
 * before the restart point. */
static void
mark(uint8_t *map, size_t back, size_t len)
{
  memset(map + WIN - back, 1, len < back ? len : back);
}

/* One symbol of a fixed or dynamic block, bit by bit checked: 0 after a
 * literal or a match, 1 after the end of block, -1 on error. */
static int
slow_symbol(struct parse *s, const uint32_t *lt, const uint32_t *dt)
{
  unsigned n, len, dist;
  uint32_t e;

  if (lookup(s, lt, SN_LITLEN_ROOT, &e, &n) < 0)
    return -1;
  drop(s, n);
  if (e & SN_TE_BAD)
    return corrupt(s, "invalid literal/length code");
  if (e & SN_TE_LIT) {
    s->out++;
    return 0;
  }
  if (e & SN_TE_EOB)
    return 1;
  if (getbits(s, SN_TE_TOTAL(e) - SN_TE_CODE(e), &len) < 0)
    return -1;
  len += SN_TE_VAL(e);
  if (s->no_dist)
    return corrupt(s, "invalid distance code");
  if (lookup(s, dt, SN_DIST_ROOT, &e, &n) < 0)
    return -1;
  drop(s, n);
  if (e & SN_TE_BAD)
    return corrupt(s, "invalid distance code");
  if (getbits(s, SN_TE_TOTAL(e) - SN_TE_CODE(e), &dist) < 0)
    return -1;
  dist += SN_TE_VAL(e);
  if (dist > s->out) {
    if (dist - s->out > s->winlen)
      return corrupt(s, "distance too far back");
    mark(s->map, dist - s->out, len);
  }
  s->out += len;
  return 0;
}

/* Refill the bit buffer to 56-63 bits without a branch, as the
 * inflater's fast loop does (8 bytes must remain at in): the bits above
 * bc are input bits or zeros, so OR-ing the word over them is exact. */
#define REFILL()                                                        \
  do {                                                                  \
    bb |= load64(in) << bc;                                             \
    in += (63 - bc) >> 3;                                               \
    bc |= 56;                                                           \
  } while (0)

#define CONSUME(n)                                                      \
  do {                                                                  \
    bb >>= (n);                                                         \
    bc -= (n);                                                          \
  } while (0)

/* Symbols of the current block while 8 input bytes remain and the
 * limit is not reached.  One refill per iteration makes all 64 bits of
 * the buffer input bits (56-63 of them counted in bc), enough for up to
 * four literals of the root table (11 bits each) or one symbol (at most
 * 48 bits with its distance), and leaves at least 16 for the lookup of
 * the next entry, done as soon as the bits before it are dropped.  Stops
 * before a symbol the careful path must judge, with the bit buffer as it
 * was at its start.  1 after the end of block. */
static int
fast_symbols(struct parse *s, const uint32_t *lt, const uint32_t *dt)
{
  const uint8_t *in = s->in + s->pos;
  const uint8_t *const end = s->in + s->len;
  uint64_t bb = s->bb, sbb;
  unsigned bc = s->bc, sbc;
  size_t out = s->out, len, dist;
  const size_t limit = s->limit;
  uint32_t e = 0;
  int r = 0, k;

  if (end - in >= 8) {
    REFILL();
    e = lt[bb & mask(SN_LITLEN_ROOT)];
  }
  while (out < limit && end - in >= 8) {
    REFILL();
    sbb = bb;
    sbc = bc;
    if (e & SN_TE_LIT) {
      k = 0;
      do {
        CONSUME(SN_TE_TOTAL(e));
        out++;
        e = lt[bb & mask(SN_LITLEN_ROOT)];
      } while (++k < 4 && (e & SN_TE_LIT) && out < limit);
      continue;
    }
    if (__builtin_expect((e & (SN_TE_SUB | SN_TE_EOB | SN_TE_BAD)) != 0, 0)) {
      if (e & SN_TE_SUB) {
        CONSUME(SN_LITLEN_ROOT);
        e = lt[SN_TE_VAL(e) + (bb & mask(SN_TE_CODE(e)))];
        if (e & SN_TE_LIT) {
          CONSUME(SN_TE_TOTAL(e));
          out++;
          e = lt[bb & mask(SN_LITLEN_ROOT)];
          continue;
        }
      }
      if (e & SN_TE_EOB) {
        CONSUME(SN_TE_TOTAL(e));
        r = 1;
        break;
      }
      if (e & SN_TE_BAD) {
        bb = sbb, bc = sbc;
        break;
      }
    }
    len = SN_TE_VAL(e) + ((bb & mask(SN_TE_TOTAL(e))) >> SN_TE_CODE(e));
    CONSUME(SN_TE_TOTAL(e));
    e = dt[bb & mask(SN_DIST_ROOT)];
    if (__builtin_expect((e & (SN_TE_SUB | SN_TE_BAD)) != 0, 0)) {
      if (e & SN_TE_SUB) {
        CONSUME(SN_DIST_ROOT);
        e = dt[SN_TE_VAL(e) + (bb & mask(SN_TE_CODE(e)))];
      }
      if (e & SN_TE_BAD) {
        bb = sbb, bc = sbc;
        break;
      }
    }
    dist = SN_TE_VAL(e) + ((bb & mask(SN_TE_TOTAL(e))) >> SN_TE_CODE(e));
    CONSUME(SN_TE_TOTAL(e));
    e = lt[bb & mask(SN_LITLEN_ROOT)];
    if (__builtin_expect(dist > out, 0)) {
      if (dist - out > s->winlen) {
        bb = sbb, bc = sbc;
        break;
      }
      mark(s->map, dist - out, len);
    }
    out += len;
  }
  /* Hand back the whole bytes loaded but not used. */
  in -= bc >> 3;
  bc &= 7;
  s->bb = bb & mask(bc);
  s->bc = bc;
  s->pos = (size_t) (in - s->in);
  s->out = out;
  return r;
}

/* The symbols of a fixed or dynamic block.  0 at its end, 1 when the
 * output limit is reached first, -1 on error. */
static int
codes(struct parse *s, const uint32_t *lt, const uint32_t *dt)
{
  int r;

  for (;;) {
    if (fast_symbols(s, lt, dt))
      return 0;
    if (s->out >= s->limit)
      return 1;
    r = slow_symbol(s, lt, dt);
    if (r != 0)
      return r < 0 ? -1 : 0;
  }
}

/* A stored block: to a byte boundary, LEN and its complement, then LEN
 * bytes that copy nothing.  0 at its end, 1 at the limit, -1. */
static int
stored(struct parse *s)
{
  size_t n, take;

  /* Drop the partial byte, give back the whole bytes the buffer holds. */
  drop(s, s->bc & 7);
  s->pos -= s->bc / 8;
  s->bb = 0;
  s->bc = 0;
  if (s->len - s->pos < 4)
    return truncated(s, bitpos(s));
  n = s->in[s->pos] | (size_t) s->in[s->pos + 1] << 8;
  if ((n ^ 0xffff) != (s->in[s->pos + 2] | (size_t) s->in[s->pos + 3] << 8))
    return corrupt(s, "invalid stored block lengths");
  s->pos += 4;
  take = s->limit - s->out < n ? s->limit - s->out : n;
  if (s->len - s->pos < take)
    return truncated(s, bitpos(s));
  s->pos += take;
  s->out += take;
  return take < n ? 1 : 0;
}

/* A block with the fixed codes (RFC 1951 3.2.6). */
static int
fixed(struct parse *s)
{
  if (!s->have_fixed) {
    sn_inflate_fixed_tables(s->flt, s->fdt);
    s->have_fixed = true;
  }
  s->no_dist = false;
  return codes(s, s->flt, s->fdt);
}

/* Build table t from a dynamic header's lengths, checked as zlib checks
 * them (sn_inflate_build_table). */
static int
make_table(const struct parse *s, uint32_t *t, enum sn_table_kind kind,
           const uint8_t *lens, unsigned n, const char *what)
{
  char msg[64];
  int r = sn_inflate_build_table(t, kind, lens, n);

  if (r == 0)
    return 0;
  snprintf(msg, sizeof msg, "%s %s code", r == -1 ? "over-subscribed" :
           "incomplete", what);
  return corrupt(s, msg);
}

/* The code lengths of a dynamic header, run-length coded with the code
 * length code in s->ct (RFC 1951 3.2.7), into lens[0..n). */
static int
read_lengths(struct parse *s, uint8_t *lens, unsigned n)
{
  unsigned i = 0, rep, v, bits, sym;
  uint32_t e;
  uint8_t val;

  while (i < n) {
    if (lookup(s, s->ct, SN_CLEN_ROOT, &e, &bits) < 0)
      return -1;
    drop(s, bits);
    sym = SN_TE_VAL(e);
    if (sym < 16) {
      lens[i++] = (uint8_t) sym;
      continue;
    }
    if (sym == 16) {
      if (i == 0)
        return corrupt(s, "length repeat with no previous length");
      val = lens[i - 1];
      if (getbits(s, 2, &v) < 0)
        return -1;
      rep = 3 + v;
    }
    else {
      val = 0;
      if (getbits(s, sym == 17 ? 3 : 7, &v) < 0)
        return -1;
      rep = (sym == 17 ? 3 : 11) + v;
    }
    if (rep > n - i)
      return corrupt(s, "too many code lengths");
    memset(lens + i, val, rep);
    i += rep;
  }
  return 0;
}

/* A block with codes given in its header (RFC 1951 3.2.7). */
static int
dynamic(struct parse *s)
{
  uint8_t lens[MAXLCODES + MAXDCODES];
  unsigned nlen, ndist, ncode, i, v;

  if (getbits(s, 5, &nlen) < 0 || getbits(s, 5, &ndist) < 0 ||
      getbits(s, 4, &ncode) < 0)
    return -1;
  nlen += 257;
  ndist += 1;
  ncode += 4;
  if (nlen > MAXLCODES || ndist > MAXDCODES)
    return corrupt(s, "too many length or distance symbols");
  memset(lens, 0, 19);
  for (i = 0; i < ncode; i++) {
    if (getbits(s, 3, &v) < 0)
      return -1;
    lens[clen_order[i]] = (uint8_t) v;
  }
  if (make_table(s, s->ct, SN_TABLE_CLEN, lens, 19, "code length") < 0 ||
      read_lengths(s, lens, nlen + ndist) < 0)
    return -1;
  if (lens[256] == 0)
    return corrupt(s, "missing end-of-block code");
  if (make_table(s, s->lt, SN_TABLE_LITLEN, lens, nlen,
                 "literal/length") < 0 ||
      make_table(s, s->dt, SN_TABLE_DIST, lens + nlen, ndist,
                 "distance") < 0)
    return -1;
  /* An empty distance code fails at its first use, reading nothing. */
  s->no_dist = true;
  for (i = 0; i < ndist; i++)
    s->no_dist = s->no_dist && lens[nlen + i] == 0;
  return codes(s, s->lt, s->dt);
}

/* Block after block, until the limit or the end of the final block. */
static int
blocks(struct parse *s, bool *end)
{
  unsigned last, type;
  int r;

  *end = false;
  while (s->out < s->limit) {
    if (getbits(s, 1, &last) < 0 || getbits(s, 2, &type) < 0)
      return -1;
    if (type == 0)
      r = stored(s);
    else if (type == 1)
      r = fixed(s);
    else if (type == 2)
      r = dynamic(s);
    else
      return corrupt(s, "invalid block type");
    if (r < 0)
      return -1;
    if (r == 0 && last) {
      *end = true;
      break;
    }
  }
  return 0;
}

int
sn_window_use(const uint8_t *in, size_t len, uint64_t bitoff,
              size_t winlen, size_t limit, uint8_t map[SN_WINDOW_SIZE],
              struct sn_window_use *st)
{
  struct parse s;
  size_t i;

  memset(map, 0, WIN);
  memset(st, 0, sizeof *st);
  if (bitoff > (uint64_t) len * 8)
    return sn_set_error("deflate: bit offset %" PRIu64 " is past the "
                        "input (%zu bytes)", bitoff, len);
  if (winlen > WIN)
    return sn_set_error("deflate: window of %zu bytes (at most %d)",
                        winlen, WIN);
  /* The tables are filled before use: only the rest is initialised. */
  s.in = in;
  s.len = len;
  s.pos = (size_t) (bitoff >> 3);
  s.bb = 0;
  s.bc = 0;
  s.out = 0;
  s.limit = limit < WIN ? limit : WIN;
  s.winlen = winlen;
  s.map = map;
  s.no_dist = false;
  s.have_fixed = false;
  if (bitoff & 7) {
    s.bc = 8 - (unsigned) (bitoff & 7);
    s.bb = in[s.pos++] >> (bitoff & 7);
  }
  if (blocks(&s, &st->end) < 0) {
    memset(map, 0, WIN);
    return -1;
  }
  st->out = s.out;
  st->in_bits = bitpos(&s) - bitoff;
  /* Map bytes are 0 or 1: add eight at a time (the product's top byte
   * is the sum of the word's bytes, at most 8). */
  for (i = 0; i < WIN; i += 8) {
    uint64_t v;

    memcpy(&v, map + i, 8);
    st->count += (size_t) ((v * 0x0101010101010101u) >> 56);
  }
  return 0;
}

int
sn_window_sparse(const uint8_t *in, size_t len, uint64_t bitoff,
                 const uint8_t window[SN_WINDOW_SIZE], size_t winlen,
                 size_t limit, uint8_t sparse[SN_WINDOW_SIZE],
                 struct sn_window_use *st)
{
  size_t i;

  memset(st, 0, sizeof *st);
  /* The map is built in sparse itself, then replaced by the bytes. */
  if (sn_window_use(in, len, bitoff, winlen, limit, sparse, st) < 0)
    return -1;
  for (i = 0; i < WIN; i++)         /* map byte 1: all ones; 0: none */
    sparse[i] = (uint8_t) (window[i] & -sparse[i]);
  return 0;
}
