/* soci-nbd: canonical Huffman decode tables for the DEFLATE decoder
 * (lib/inflate/inflate.c) and the window-use parser (window-use.c): a
 * root table indexed by the next ROOT input bits and, for longer codes,
 * subtables sized like zlib's inflate_table() sizes them.  Also the
 * per-symbol entries: literal, end of block, length and distance bases
 * with their extra-bit counts (RFC 1951 §3.2.5), and the fixed codes'
 * tables (§3.2.6). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "inflate/inflate-table.h"

#define MAXBITS 15

static const uint16_t len_base[29] = {
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
  35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258
};
static const uint8_t len_extra[29] = {
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
  3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0
};
static const uint16_t dist_base[30] = {
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
  257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577
};
static const uint8_t dist_extra[30] = {
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
  7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13
};

/* The entry for sym, without its code bits. */
static uint32_t
sym_entry(enum sn_table_kind kind, unsigned sym)
{
  switch (kind) {
  case SN_TABLE_CLEN:
    return (uint32_t) sym << 16;
  case SN_TABLE_LITLEN:
    if (sym < 256)
      return SN_TE_LIT | (uint32_t) sym << 16;
    if (sym == 256)
      return SN_TE_EOB;
    if (sym < 286)
      return (uint32_t) len_base[sym - 257] << 16 | len_extra[sym - 257];
    return SN_TE_BAD;           /* 286, 287: fixed code only */
  case SN_TABLE_DIST:
    if (sym < 30)
      return (uint32_t) dist_base[sym] << 16 | dist_extra[sym];
    return SN_TE_BAD;           /* 30, 31: fixed code only */
  }
  return SN_TE_BAD;
}

/* The low len bits of code, reversed: deflate sends codes MSB first into
 * an LSB-first bit stream.  (Swap bits, pairs, nibbles, bytes of 16.) */
static unsigned
reverse(unsigned code, unsigned len)
{
  code = (code & 0x5555) << 1 | (code >> 1 & 0x5555);
  code = (code & 0x3333) << 2 | (code >> 2 & 0x3333);
  code = (code & 0x0f0f) << 4 | (code >> 4 & 0x0f0f);
  code = (code & 0x00ff) << 8 | (code >> 8 & 0x00ff);
  return code >> (16 - len);
}

/* Canonical Huffman decoding, zlib style: count the codes of each length,
 * check the set is complete (or one of zlib's allowed incomplete ones),
 * sort the symbols into code order, then hand out codes in increasing
 * order.  A code of at most `root` bits fills its reversed slot of the
 * root table, and the table is doubled in place as len grows, so the
 * entry repeats for every value of the bits above it.  A longer code
 * goes into the subtable of its root prefix; a subtable is made when a
 * new prefix first appears, just big enough for the codes still to come
 * under it, and its root slot becomes a SUB entry pointing at it. */
int
sn_inflate_build_table(uint32_t *table, enum sn_table_kind kind,
                       const uint8_t *lens, unsigned n)
{
  unsigned root, cap;
  unsigned count[MAXBITS + 2] = { 0 }, offs[MAXBITS + 2];
  uint16_t sorted[288];
  unsigned max = 0, i, len, code, next, sub = 0, subbits = 0;
  unsigned low = ~0u;
  int left;

  switch (kind) {
  case SN_TABLE_CLEN: root = SN_CLEN_ROOT; cap = SN_CLEN_CAP; break;
  case SN_TABLE_LITLEN: root = SN_LITLEN_ROOT; cap = SN_LITLEN_CAP; break;
  default: root = SN_DIST_ROOT; cap = SN_DIST_CAP; break;
  }
  if (n > 288)
    return -1;
  for (i = 0; i < n; i++) {
    if (lens[i] > MAXBITS)
      return -1;
    count[lens[i]]++;
    if (lens[i] > max)
      max = lens[i];
  }

  /* Over-subscribed sets are invalid; so are incomplete ones, except
   * (as zlib has it) a lone one-bit code or none, for data codes. */
  left = 1;
  for (len = 1; len <= MAXBITS; len++) {
    left = 2 * left - (int) count[len];
    if (left < 0)
      return -1;
  }
  if (left > 0) {
    uint32_t bad = SN_TE_BAD | 1u | 1u << 8;

    if (kind == SN_TABLE_CLEN || max > 1)
      return -2;
    for (i = 0; i < 1u << root; i++)
      table[i] = bad;
    if (max == 0)
      return 0;
  }

  /* Symbols sorted by code length, then value: canonical code order. */
  offs[1] = 0;
  for (len = 1; len < MAXBITS; len++)
    offs[len + 1] = offs[len] + count[len];
  for (i = 0; i < n; i++)
    if (lens[i])
      sorted[offs[lens[i]]++] = (uint16_t) i;

  code = 0;
  next = 1u << root;            /* first free subtable slot */
  i = 0;
  for (len = 1; len <= max; len++) {
    unsigned end = i + count[len];

    for (; i < end; i++, code++) {
      unsigned sym = sorted[i], rev = reverse(code, len), j;
      uint32_t e = sym_entry(kind, sym);

      if (len <= root)
        table[rev] = e + (len | len << 8);
      else {
        unsigned sublen = len - root;

        if ((rev & ((1u << root) - 1)) != low) {
          /* A new subtable: big enough for all codes sharing this
           * root prefix (count[] still includes this symbol). */
          int room;

          low = rev & ((1u << root) - 1);
          subbits = sublen;
          room = 1 << subbits;
          while (subbits + root < max) {
            room -= (int) count[subbits + root];
            if (room <= 0)
              break;
            subbits++;
            room <<= 1;
          }
          if (next + (1u << subbits) > cap)
            return -1;          /* cannot happen for a complete code */
          sub = next;
          next += 1u << subbits;
          table[low] = SN_TE_SUB | (uint32_t) sub << 16 | subbits << 8 | root;
        }
        e += sublen | sublen << 8;
        for (j = rev >> root; j < 1u << subbits; j += 1u << sublen)
          table[sub + j] = e;
      }
      count[len]--;
    }
    /* The first 2^len entries are final for codes up to len bits: repeat
     * them for the next bit (writes the root table in order, which is
     * faster than a strided fill per code). */
    if (len < root)
      memcpy(table + (1u << len), table, sizeof *table << len);
    code <<= 1;
  }
  for (; len < root; len++)     /* all codes shorter than the root */
    memcpy(table + (1u << len), table, sizeof *table << len);
  return 0;
}

void
sn_inflate_fixed_tables(uint32_t lt[SN_LITLEN_CAP], uint32_t dt[SN_DIST_CAP])
{
  uint8_t lens[288];
  unsigned i;

  for (i = 0; i < 288; i++)
    lens[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
  /* Both codes are complete: a failure is a bug in the table builder. */
  if (sn_inflate_build_table(lt, SN_TABLE_LITLEN, lens, 288) < 0)
    abort();
  memset(lens, 5, 32);
  if (sn_inflate_build_table(dt, SN_TABLE_DIST, lens, 32) < 0)
    abort();
}
