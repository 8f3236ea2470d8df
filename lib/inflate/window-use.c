/* soci-nbd: which bytes of a restart point's window the output after it
 * copies — a small, bit-at-a-time DEFLATE parser (RFC 1951: stored, fixed
 * and dynamic blocks, canonical Huffman codes) that counts output instead
 * of producing it, and the sparse window built from what it finds.  Slow
 * and simple on purpose: it reads at most 32 KiB of output per restart
 * point, and every access is bounds-checked. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "inflate/window-use.h"

#define WIN SN_WINDOW_SIZE
#define MAXBITS 15               /* longest Huffman code */
#define MAXLCODES 286            /* literal/length symbols a header may give */
#define MAXDCODES 30             /* distance symbols a header may give */
#define FIXLCODES 288            /* literal/length symbols of the fixed code */

/* A canonical Huffman code: how many codes each length has, and the
 * symbols ordered by code. */
struct huff {
  uint16_t count[MAXBITS + 1];
  uint16_t symbol[FIXLCODES];
  unsigned maxlen;               /* longest length in use (0: no codes) */
};

struct parse {
  const uint8_t *in;
  size_t len, pos;               /* in[pos] is the next byte to load */
  uint64_t bb;                   /* bit buffer: bc bits, LSB first */
  unsigned bc;
  size_t out, limit, winlen;
  uint8_t *map;
  bool have_fixed;
  struct huff flen, fdist;       /* the fixed codes, built on first use */
};

static const uint16_t len_base[29] = {
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
  35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258 };
static const uint8_t len_extra[29] = {
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
  3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0 };
static const uint16_t dist_base[30] = {
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
  257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577 };
static const uint8_t dist_extra[30] = {
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
  7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13 };
/* The order of the code length code's lengths in a dynamic header. */
static const uint8_t clen_order[19] = {
  16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 };

/* The bit position of the next unread bit, counted from in[0]. */
static uint64_t
bitpos(const struct parse *s)
{
  return (uint64_t) s->pos * 8 - s->bc;
}

static int
truncated(const struct parse *s)
{
  return sn_set_error("deflate: input ends at bit %" PRIu64 " after %zu "
                      "bytes of output: more input needed", bitpos(s),
                      s->out);
}

static int
corrupt(const struct parse *s, const char *what)
{
  return sn_set_error("deflate: %s at bit %" PRIu64 " (%zu bytes of "
                      "output)", what, bitpos(s), s->out);
}

/* Make at least n (<= 16) bits available, or fail: the input ended. */
static int
need(struct parse *s, unsigned n)
{
  while (s->bc < n) {
    if (s->pos == s->len)
      return truncated(s);
    s->bb |= (uint64_t) s->in[s->pos++] << s->bc;
    s->bc += 8;
  }
  return 0;
}

/* Read n (<= 16) bits into *v, the first one least significant. */
static int
getbits(struct parse *s, unsigned n, unsigned *v)
{
  if (need(s, n) < 0)
    return -1;
  *v = (unsigned) (s->bb & ((1u << n) - 1));
  s->bb >>= n;
  s->bc -= n;
  return 0;
}

/* Build h from the code lengths lens[0..n) (RFC 1951 3.2.2).  Returns 0
 * for a complete code, > 0 for an incomplete one (codes left unused), < 0
 * for an over-subscribed one. */
static int
build(struct huff *h, const uint8_t *lens, unsigned n)
{
  uint16_t offs[MAXBITS + 2];
  int left = 1;
  unsigned len, sym;

  memset(h->count, 0, sizeof h->count);
  for (sym = 0; sym < n; sym++)
    h->count[lens[sym]]++;
  h->maxlen = 0;
  for (len = 1; len <= MAXBITS; len++) {
    left = left * 2 - h->count[len];
    if (left < 0)
      return left;
    if (h->count[len])
      h->maxlen = len;
  }
  offs[1] = 0;
  for (len = 1; len <= MAXBITS; len++)
    offs[len + 1] = (uint16_t) (offs[len] + h->count[len]);
  for (sym = 0; sym < n; sym++)
    if (lens[sym])
      h->symbol[offs[lens[sym]]++] = (uint16_t) sym;
  return left;
}

/* Build a code from a dynamic header and check it as zlib does: never
 * over-subscribed; incomplete only when it has at most one code, of
 * length 1, and never for the code length code (strict). */
static int
make_code(const struct parse *s, struct huff *h, const uint8_t *lens,
          unsigned n, bool strict, const char *what)
{
  char msg[64];
  int left = build(h, lens, n);

  if (left == 0 || (left > 0 && !strict && h->maxlen <= 1))
    return 0;
  snprintf(msg, sizeof msg, "%s %s code", left < 0 ? "over-subscribed" :
           "incomplete", what);
  return corrupt(s, msg);
}

/* Decode one symbol with h, a bit at a time (codes are stored most
 * significant bit first).  The symbol, or -1. */
static int
decode(struct parse *s, const struct huff *h, const char *what)
{
  unsigned code = 0, first = 0, index = 0, len;

  for (len = 1; len <= h->maxlen; len++) {
    if (need(s, 1) < 0)
      return -1;
    code |= (unsigned) (s->bb & 1);
    s->bb >>= 1;
    s->bc--;
    if (code < first + h->count[len])
      return h->symbol[index + (code - first)];
    index += h->count[len];
    first = (first + h->count[len]) << 1;
    code <<= 1;
  }
  return corrupt(s, what);
}

/* A match of len bytes, dist back: mark the window bytes it copies (the
 * part of it before the restart point). */
static int
copy(struct parse *s, unsigned dist, unsigned len)
{
  if (dist > s->out) {
    size_t back = dist - s->out;   /* how far before the restart point */

    if (back > s->winlen)
      return corrupt(s, "distance too far back");
    memset(s->map + WIN - back, 1, len < back ? len : back);
  }
  s->out += len;
  return 0;
}

/* The symbols of a fixed or dynamic block.  0 at its end, 1 when the
 * output limit is reached first, -1 on error. */
static int
codes(struct parse *s, const struct huff *lencode,
      const struct huff *distcode)
{
  unsigned extra;
  int sym;

  for (;;) {
    if (s->out >= s->limit)
      return 1;
    sym = decode(s, lencode, "invalid literal/length code");
    if (sym < 0)
      return -1;
    if (sym < 256) {
      s->out++;
      continue;
    }
    if (sym == 256)
      return 0;
    sym -= 257;
    if (sym >= 29)
      return corrupt(s, "invalid literal/length code");
    unsigned len = len_base[sym];
    if (getbits(s, len_extra[sym], &extra) < 0)
      return -1;
    len += extra;
    sym = decode(s, distcode, "invalid distance code");
    if (sym < 0)
      return -1;
    if (sym >= 30)
      return corrupt(s, "invalid distance code");
    unsigned dist = dist_base[sym];
    if (getbits(s, dist_extra[sym], &extra) < 0)
      return -1;
    if (copy(s, dist + extra, len) < 0)
      return -1;
  }
}

/* A stored block: to a byte boundary, LEN and its complement, then LEN
 * bytes that copy nothing.  0 at its end, 1 at the limit, -1. */
static int
stored(struct parse *s)
{
  size_t n, take;

  /* Drop the partial byte, give back the whole bytes the buffer holds. */
  s->bb >>= s->bc & 7;
  s->bc -= s->bc & 7;
  s->pos -= s->bc / 8;
  s->bb = 0;
  s->bc = 0;
  if (s->len - s->pos < 4)
    return truncated(s);
  n = s->in[s->pos] | (size_t) s->in[s->pos + 1] << 8;
  if ((n ^ 0xffff) != (s->in[s->pos + 2] | (size_t) s->in[s->pos + 3] << 8))
    return corrupt(s, "invalid stored block lengths");
  s->pos += 4;
  take = s->limit - s->out < n ? s->limit - s->out : n;
  if (s->len - s->pos < take)
    return truncated(s);
  s->pos += take;
  s->out += take;
  return take < n ? 1 : 0;
}

/* A block with the fixed codes (RFC 1951 3.2.6). */
static int
fixed(struct parse *s)
{
  uint8_t lens[FIXLCODES];
  unsigned i;

  if (!s->have_fixed) {
    for (i = 0; i < FIXLCODES; i++)
      lens[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    build(&s->flen, lens, FIXLCODES);
    /* 30 of the 32 5-bit codes: 30 and 31 are invalid when used. */
    memset(lens, 5, MAXDCODES);
    build(&s->fdist, lens, MAXDCODES);
    s->have_fixed = true;
  }
  return codes(s, &s->flen, &s->fdist);
}

/* The code lengths of a dynamic header, run-length coded with clen
 * (RFC 1951 3.2.7), into lens[0..n). */
static int
read_lengths(struct parse *s, const struct huff *clen, uint8_t *lens,
             unsigned n)
{
  unsigned i = 0, rep, v;
  uint8_t val;
  int sym;

  while (i < n) {
    sym = decode(s, clen, "invalid code length code");
    if (sym < 0)
      return -1;
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
  struct huff lencode, distcode;
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
  if (make_code(s, &lencode, lens, 19, true, "code length") < 0 ||
      read_lengths(s, &lencode, lens, nlen + ndist) < 0)
    return -1;
  if (lens[256] == 0)
    return corrupt(s, "missing end-of-block code");
  if (make_code(s, &lencode, lens, nlen, false, "literal/length") < 0 ||
      make_code(s, &distcode, lens + nlen, ndist, false, "distance") < 0)
    return -1;
  return codes(s, &lencode, &distcode);
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
  memset(&s, 0, sizeof s);
  s.in = in;
  s.len = len;
  s.pos = (size_t) (bitoff >> 3);
  s.winlen = winlen;
  s.limit = limit < WIN ? limit : WIN;
  s.map = map;
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
  for (i = 0; i < WIN; i++)
    st->count += map[i];
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
  for (i = 0; i < WIN; i++)
    sparse[i] = sparse[i] ? window[i] : 0;
  return 0;
}
