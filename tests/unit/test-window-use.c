/* soci-nbd tests: lib/inflate/window-use.c and window-verify.c.  Streams
 * made by zlib at levels 1, 6 and 9 and with full flushes: at every block
 * boundary (found with zlib's inflate(Z_BLOCK)) the sparse window decodes
 * the whole rest of the stream as the full window does, changing one
 * referenced byte changes the output, and a boundary right after a full
 * flush needs no window byte.  Streams crafted bit by bit: exact maps for
 * matches that straddle the window, and each corruption (truncation, bad
 * block type, bad code lengths, distances too far back) rejected with a
 * message; random bytes never crash. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "util/err.h"
#include "inflate/window-use.h"
#include "tap.h"

#define WIN SN_WINDOW_SIZE

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint64_t
rng(void)
{
  return tap_xorshift(&rng_state);
}

static void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);

  if (p == NULL) {
    printf("Bail out! out of memory\n");
    exit(1);
  }
  return p;
}

/* ---- streams made by zlib ------------------------------------------- */

/* Text-like data: words from a small vocabulary, numbers, and now and then
 * a run of random bytes, so that matches reach far back. */
static uint8_t *
make_data(size_t n)
{
  static const char *words[] = {
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    "hotel", "india", "juliet", "kilo", "lima", "mike", "november",
    "oscar", "papa", "quebec", "romeo", "sierra", "tango", "\n", "/usr/",
    "lib/", "share/", "doc/", ".so.6", "-rw-r--r--", "0644" };
  uint8_t *d = xmalloc(n);
  size_t i = 0;

  while (i < n) {
    uint64_t r = rng();
    char tmp[32];
    size_t k;

    if (r % 50 == 0) {
      for (k = 0; k < 40 && i < n; k++)
        d[i++] = (uint8_t) rng();
      continue;
    }
    if (r % 7 == 0)
      snprintf(tmp, sizeof tmp, "%u ", (unsigned) (r >> 32) % 100000);
    else
      snprintf(tmp, sizeof tmp, "%s ",
               words[(r >> 8) % (sizeof words / sizeof *words)]);
    for (k = 0; tmp[k] && i < n; k++)
      d[i++] = (uint8_t) tmp[k];
  }
  return d;
}

/* Raw deflate of d[0..n) at level; flush_every > 0: Z_FULL_FLUSH after
 * every flush_every input bytes. */
static uint8_t *
compress_raw(const uint8_t *d, size_t n, int level, size_t flush_every,
             size_t *clen)
{
  z_stream z;
  size_t cap = n + n / 8 + 1024, pos = 0;
  uint8_t *c = xmalloc(cap);

  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    abort();
  z.next_out = c;
  z.avail_out = (uInt) cap;
  do {
    size_t step = flush_every ? flush_every : n;

    if (step > n - pos)
      step = n - pos;
    z.next_in = (Bytef *) d + pos;
    z.avail_in = (uInt) step;
    pos += step;
    if (deflate(&z, pos == n ? Z_FINISH : flush_every ? Z_FULL_FLUSH :
                Z_NO_FLUSH) == Z_STREAM_ERROR || z.avail_in)
      abort();
  } while (pos < n);
  *clen = cap - z.avail_out;
  deflateEnd(&z);
  return c;
}

struct bound {
  uint64_t bit;       /* bit offset of the block's first bit */
  size_t out;         /* uncompressed offset */
};

/* Every block boundary of the raw stream c (the stream start included),
 * found as zran.c does: inflate(Z_BLOCK), data_type & 128 without 64. */
static size_t
find_bounds(const uint8_t *c, size_t clen, size_t total, struct bound **bp)
{
  uint8_t *out = xmalloc(total);
  struct bound *b = xmalloc(sizeof *b);
  size_t n = 1;
  z_stream z;
  int ret;

  b[0].bit = 0;
  b[0].out = 0;
  memset(&z, 0, sizeof z);
  inflateInit2(&z, -15);
  z.next_in = (Bytef *) c;
  z.avail_in = (uInt) clen;
  z.next_out = out;
  z.avail_out = (uInt) total;
  while ((ret = inflate(&z, Z_BLOCK)) == Z_OK) {
    uint64_t bit = (uint64_t) z.total_in * 8 - (z.data_type & 7);

    if ((z.data_type & 128) && !(z.data_type & 64) && bit != b[n - 1].bit) {
      b = realloc(b, (n + 1) * sizeof *b);
      if (b == NULL)
        abort();
      b[n].bit = bit;
      b[n].out = z.total_out;
      n++;
    }
  }
  if (ret != Z_STREAM_END || z.total_out != total)
    printf("Bail out! zlib cannot decode its own stream\n"), exit(1);
  inflateEnd(&z);
  free(out);
  *bp = b;
  return n;
}

/* The full window of data at out (zero-padded in front). */
static void
window_at(const uint8_t *data, size_t out, uint8_t win[WIN])
{
  size_t have = out < WIN ? out : WIN;

  memset(win, 0, WIN - have);
  memcpy(win + WIN - have, data + out - have, have);
}

struct tally {
  size_t bounds, checked, same, limited, consistent, differs, flips;
  size_t zero, flush_bounds, flush_zero, bytes, cut_same, cut_short;
};

/* The stream cut right after the last bit the parse read (its last bytes
 * then go through the careful path, not the fast loop): the same map and
 * result; cut one byte earlier: more input needed. */
static void
check_cut(const uint8_t *c, const struct bound *b, size_t winlen,
          const uint8_t *map, const struct sn_window_use *st,
          struct tally *t)
{
  static uint8_t map2[WIN];
  struct sn_window_use st2;
  uint64_t endbit = b->bit + st->in_bits;
  size_t cut = (size_t) ((endbit + 7) / 8);
  uint8_t *copy = xmalloc(cut);   /* exactly: ASan sees any over-read */

  memcpy(copy, c, cut);
  if (sn_window_use(copy, cut, b->bit, winlen, WIN, map2, &st2) == 0 &&
      st2.out == st->out && st2.count == st->count && st2.end == st->end &&
      st2.in_bits == st->in_bits && memcmp(map, map2, WIN) == 0)
    t->cut_same++;
  else
    diag("boundary at bit %" PRIu64 " cut at byte %zu: %s", b->bit, cut,
         sn_error());
  if (st->in_bits > 0 && (endbit - 1) / 8 > b->bit / 8 &&
      sn_window_use(copy, (size_t) ((endbit - 1) / 8), b->bit, winlen, WIN,
                    map2, &st2) == -1 &&
      strstr(sn_error(), "more input needed") != NULL)
    t->cut_short++;
  free(copy);
}

/* One boundary: the sparse window, its map's consistency, the rest of the
 * stream decoded with it, the span to the next boundary with the window
 * limited to it, and one referenced byte changed. */
static void
check_bound(const uint8_t *data, size_t total, const uint8_t *c, size_t clen,
            const struct bound *b, size_t next_out, struct tally *t)
{
  static uint8_t full[WIN], sparse[WIN], map[WIN], lim[WIN], flip[WIN];
  struct sn_window_use st;
  size_t winlen = b->out < WIN ? b->out : WIN, count, i;
  struct sn_window_use sst, lst;
  bool ok = true;

  window_at(data, b->out, full);
  t->checked++;
  if (sn_window_sparse(c, clen, b->bit, full, winlen, WIN, sparse,
                       &sst) < 0 ||
      sn_window_use(c, clen, b->bit, winlen, WIN, map, &st) < 0) {
    diag("boundary at bit %" PRIu64 ": %s", b->bit, sn_error());
    return;
  }
  check_cut(c, b, winlen, map, &st, t);
  count = sst.count;
  for (i = 0; i < WIN; i++)
    if (sparse[i] != (map[i] ? full[i] : 0) || (map[i] && i < WIN - winlen))
      ok = false;
  if (ok && st.count == count && count <= winlen &&
      (st.out >= WIN || (st.end && b->out + st.out == total)))
    t->consistent++;
  t->bytes += count;
  t->zero += count == 0;
  if (sn_window_verify(c, clen, b->bit, full, sparse, total - b->out) == 0)
    t->same++;
  else
    diag("boundary at bit %" PRIu64 ": %s", b->bit, sn_error());
  if (sn_window_sparse(c, clen, b->bit, full, winlen, next_out - b->out,
                       lim, &lst) == 0 && lst.count <= count &&
      sn_window_verify(c, clen, b->bit, full, lim, next_out - b->out) == 0)
    t->limited++;
  if (count == 0)
    return;
  /* The first and the last referenced byte, each changed alone. */
  for (i = 0; i < WIN && !map[i]; i++)
    ;
  memcpy(flip, full, WIN);
  flip[i] ^= 0x5a;
  t->flips++;
  if (sn_window_verify(c, clen, b->bit, full, flip, total - b->out) == 1) {
    for (i = WIN - 1; !map[i]; i--)
      ;
    memcpy(flip, full, WIN);
    flip[i] ^= 0xa5;
    t->differs += sn_window_verify(c, clen, b->bit, full, flip,
                                   total - b->out) == 1;
  }
}

/* One stream: every boundary checked. */
static void
test_stream(int level, size_t flush_every)
{
  size_t total = 600 * 1024, clen, nb, i;
  uint8_t *data = make_data(total);
  uint8_t *c = compress_raw(data, total, level, flush_every, &clen);
  struct bound *b;
  struct tally t;
  char name[64];

  snprintf(name, sizeof name, "level %d%s", level,
           flush_every ? " with full flushes" : "");
  memset(&t, 0, sizeof t);
  nb = find_bounds(c, clen, total, &b);
  t.bounds = nb;
  for (i = 0; i < nb; i++) {
    check_bound(data, total, c, clen, &b[i],
                i + 1 < nb ? b[i + 1].out : total, &t);
    if (flush_every && b[i].out > 0 && b[i].out % flush_every == 0) {
      struct sn_window_use st;
      uint8_t map[WIN];

      t.flush_bounds++;
      t.flush_zero += sn_window_use(c, clen, b[i].bit, WIN, WIN, map,
                                    &st) == 0 && st.count == 0;
    }
  }
  diag("%s: %zu bytes -> %zu, %zu boundaries, %zu need no window, "
       "%.0f referenced bytes on average", name, total, clen, nb, t.zero,
       (double) t.bytes / (double) nb);
  ok(nb >= 4, "%s: %zu block boundaries", name, nb);
  ok(t.checked == nb && t.consistent == nb,
     "%s: maps agree with the sparse windows and stop at 32 KiB or the "
     "end (%zu of %zu)", name, t.consistent, nb);
  ok(t.same == nb, "%s: sparse windows decode the rest of the stream "
     "identically (%zu of %zu)", name, t.same, nb);
  ok(t.limited == nb, "%s: windows limited to the span to the next "
     "boundary decode it identically (%zu of %zu)", name, t.limited, nb);
  ok(t.flips > 0 && t.differs == t.flips, "%s: changing a referenced byte "
     "changes the output (%zu of %zu windows)", name, t.differs, t.flips);
  ok(t.cut_same == nb && t.cut_short == nb, "%s: cut after the last bit "
     "parsed: same maps (%zu of %zu); a byte earlier: more input needed "
     "(%zu)", name, t.cut_same, nb, t.cut_short);
  if (flush_every)
    ok(t.flush_bounds >= total / flush_every &&
       t.flush_zero == t.flush_bounds, "%s: all %zu boundaries at a flush "
       "need no window byte (%zu)", name, t.flush_bounds, t.flush_zero);
  free(b);
  free(c);
  free(data);
}

/* ---- streams written bit by bit -------------------------------------- */

struct bw {
  uint8_t buf[1024];
  size_t nbits;
};

/* n bits of v, least significant first (header fields, extra bits). */
static void
put(struct bw *w, unsigned v, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; i++, w->nbits++)
    if ((v >> i) & 1)
      w->buf[w->nbits / 8] |= (uint8_t) (1u << (w->nbits % 8));
}

/* A Huffman code of n bits, most significant first. */
static void
put_code(struct bw *w, unsigned code, unsigned n)
{
  while (n--)
    put(w, (code >> n) & 1, 1);
}

/* Fixed-code literal/length symbol (RFC 1951 3.2.6). */
static void
put_fixed(struct bw *w, unsigned sym)
{
  if (sym < 144)
    put_code(w, 0x30 + sym, 8);
  else if (sym < 256)
    put_code(w, 0x190 + sym - 144, 9);
  else if (sym < 280)
    put_code(w, sym - 256, 7);
  else
    put_code(w, 0xc0 + sym - 280, 8);
}

static size_t
bw_len(const struct bw *w)
{
  return (w->nbits + 7) / 8;
}

/* Expect sn_window_use to fail with a message containing want. */
static void
expect_fail(const char *name, const uint8_t *in, size_t len, uint64_t bitoff,
            size_t winlen, const char *want)
{
  struct sn_window_use st;
  uint8_t map[WIN];
  int r = sn_window_use(in, len, bitoff, winlen, WIN, map, &st);

  OK(r == -1 && strstr(sn_error(), want) != NULL, "%s: rejected (%s)", name,
     WHY);
}

/* Matches that reach into the window, exactly marked; zlib agrees. */
static void
test_crafted_maps(void)
{
  static uint8_t full[WIN], sparse[WIN], map[WIN];
  struct sn_window_use st;
  struct bw w;
  size_t i;
  struct sn_window_use sst;
  int r;

  for (i = 0; i < WIN; i++)
    full[i] = (uint8_t) rng();
  /* Literals "AB", then length 5 distance 4 (two window bytes, three
   * new ones), then length 3 distance 32768 after 7 bytes, then EOB. */
  memset(&w, 0, sizeof w);
  put(&w, 1, 1);
  put(&w, 1, 2);
  put_fixed(&w, 'A');
  put_fixed(&w, 'B');
  put_fixed(&w, 259);                 /* length 5 */
  put_code(&w, 3, 5);                 /* distance 4 */
  put_fixed(&w, 257);                 /* length 3 */
  put_code(&w, 29, 5);                /* distance 24577 + 8191 */
  put(&w, 8191, 13);
  put_fixed(&w, 256);
  r = sn_window_use(w.buf, bw_len(&w), 0, WIN, WIN, map, &st);
  OK(r == 0 && st.end && st.out == 10 && st.count == 5 && map[WIN - 1] &&
     map[WIN - 2] && !map[WIN - 3] && map[7] && map[8] && map[9] &&
     !map[10] && !map[6], "straddling matches: exactly window bytes "
     "32766-32767 and 7-9 marked (%s, out %zu, count %zu)", ERR, st.out,
     st.count);
  OK(st.in_bits == w.nbits, "all %zu bits parsed (%" PRIu64 ")", w.nbits,
     st.in_bits);
  r = sn_window_sparse(w.buf, bw_len(&w), 0, full, WIN, WIN, sparse, &sst);
  OK(r == 0 && sst.count == 5 &&
     sn_window_verify(w.buf, bw_len(&w), 0, full, sparse, 10) == 0,
     "zlib decodes the crafted stream identically with the sparse window "
     "(%s)", ERR);
  sparse[8] ^= 1;
  OK(sn_window_verify(w.buf, bw_len(&w), 0, full, sparse, 10) == 1,
     "a referenced byte changed: the outputs differ (%s)", sn_error());
  OK(sn_window_verify(w.buf, bw_len(&w), 0, full, full, 11) == -1,
     "verify asks for more output than the stream has: -1 (%s)", WHY);
  r = sn_window_use(w.buf, bw_len(&w), 0, WIN, 3, map, &st);
  OK(r == 0 && !st.end && st.out == 7 && st.count == 2,
     "limit 3: stops after the match that reaches it (out %zu, count %zu)",
     st.out, st.count);
  r = sn_window_use(w.buf, bw_len(&w), 0, WIN, 0, map, &st);
  OK(r == 0 && st.out == 0 && st.count == 0 && st.in_bits == 0,
     "limit 0: nothing parsed (%s)", ERR);

  /* The same block shifted by 5 bits: bit offsets are honoured. */
  {
    struct bw s;

    memset(&s, 0, sizeof s);
    put(&s, 0x15, 5);
    for (i = 0; i < w.nbits; i++)
      put(&s, (w.buf[i / 8] >> (i % 8)) & 1, 1);
    r = sn_window_use(s.buf, bw_len(&s), 5, WIN, WIN, map, &st);
    OK(r == 0 && st.count == 5 && st.end,
       "the stream at bit offset 5: same map (%s)", ERR);
    r = sn_window_sparse(s.buf, bw_len(&s), 5, full, WIN, WIN, sparse,
                         &sst);
    OK(r == 0 && sn_window_verify(s.buf, bw_len(&s), 5, full, sparse,
                                  10) == 0,
       "zlib primed with the 3 leftover bits agrees (%s)", ERR);
  }
  expect_fail("distance 4 after 2 bytes with 1 window byte", w.buf,
              bw_len(&w), 0, 1, "distance too far back");
  expect_fail("distance 32768 after 7 bytes with a window of 32760 bytes",
              w.buf, bw_len(&w), 0, WIN - 8, "distance too far back");
  expect_fail("the crafted stream cut by one byte", w.buf, bw_len(&w) - 1, 0,
              WIN, "more input needed");
}

/* Corrupt headers and codes, crafted: each rejected with its reason. */
static void
test_crafted_corrupt(void)
{
  static const uint8_t badtype = 0x07, badtype_shifted = 0x38;
  uint8_t big[64];
  struct bw w;
  unsigned i;

  expect_fail("block type 3", &badtype, 1, 0, WIN, "invalid block type");
  expect_fail("block type 3 at bit 3", &badtype_shifted, 1, 3, WIN,
              "invalid block type");
  expect_fail("empty input", &badtype, 0, 0, WIN, "more input needed");
  expect_fail("bit offset past the input", &badtype, 1, 9, WIN,
              "past the input");
  expect_fail("window longer than 32 KiB", &badtype, 1, 0, WIN + 1,
              "window of");

  /* Dynamic headers: HLIT 257, HDIST 1, HCLEN 4 (lengths of 16 17 18 0). */
#define DYN_HEAD(w, hclen)                                                   \
  memset(&w, 0, sizeof w), put(&w, 1, 1), put(&w, 2, 2), put(&w, 0, 5),     \
    put(&w, 0, 5), put(&w, hclen, 4)
  DYN_HEAD(w, 0);
  for (i = 0; i < 4; i++)
    put(&w, 1, 3);
  expect_fail("code length code over-subscribed", w.buf, sizeof w.buf, 0,
              WIN, "over-subscribed code length code");
  DYN_HEAD(w, 0);
  put(&w, 0, 3), put(&w, 0, 3), put(&w, 0, 3), put(&w, 1, 3);
  expect_fail("code length code incomplete", w.buf, sizeof w.buf, 0, WIN,
              "incomplete code length code");
  /* 16 and 0 with one bit each: 0 is '0', 16 is '1'. */
  DYN_HEAD(w, 0);
  put(&w, 1, 3), put(&w, 0, 3), put(&w, 0, 3), put(&w, 1, 3);
  put_code(&w, 1, 1);
  expect_fail("repeat with no previous length", w.buf, sizeof w.buf, 0, WIN,
              "no previous length");
  /* 0 and 8 with one bit each (HCLEN 5: 16 17 18 0 8). */
  DYN_HEAD(w, 1);
  put(&w, 0, 3), put(&w, 0, 3), put(&w, 0, 3), put(&w, 1, 3), put(&w, 1, 3);
  for (i = 0; i < 258; i++)
    put_code(&w, 1, 1);                 /* 258 lengths of 8 */
  expect_fail("257 literal/length codes of 8 bits", w.buf, sizeof w.buf, 0,
              WIN, "over-subscribed literal/length code");
  DYN_HEAD(w, 1);
  put(&w, 0, 3), put(&w, 0, 3), put(&w, 0, 3), put(&w, 1, 3), put(&w, 1, 3);
  for (i = 0; i < 258; i++)
    put_code(&w, 0, 1);                 /* all lengths 0 */
  expect_fail("no end-of-block code", w.buf, sizeof w.buf, 0, WIN,
              "missing end-of-block");
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 2, 2), put(&w, 31, 5), put(&w, 0, 5);
  expect_fail("HLIT 288", w.buf, sizeof w.buf, 0, WIN,
              "too many length or distance symbols");

  /* Fixed codes: distance code 30, literal/length 286. */
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 1, 2), put_fixed(&w, 'x'), put_fixed(&w, 257);
  put_code(&w, 30, 5);
  expect_fail("distance code 30", w.buf, sizeof w.buf, 0, WIN,
              "invalid distance code");
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 1, 2), put_fixed(&w, 286);
  expect_fail("literal/length code 286", w.buf, sizeof w.buf, 0, WIN,
              "invalid literal/length code");
  /* A stored block whose NLEN is not LEN's complement. */
  memset(big, 0, sizeof big);
  big[0] = 0x01;                        /* final, stored, then pad */
  big[1] = 5;
  expect_fail("stored block with a bad NLEN", big, sizeof big, 0, WIN,
              "invalid stored block lengths");
  big[3] = 0xfa;                        /* NLEN = ~5 */
  big[4] = 0xff;
  {
    struct sn_window_use st;
    uint8_t map[WIN];

    OK(sn_window_use(big, 10, 0, WIN, WIN, map, &st) == 0 && st.end &&
       st.out == 5 && st.count == 0, "a stored block of 5 bytes: no window "
       "byte (%s)", ERR);
    expect_fail("the stored block cut short", big, 8, 0, WIN,
                "more input needed");
  }
}

/* An error met by the fast loop (the stream padded with zeros) and by
 * the careful path (the stream ends right after it): the same message,
 * naming the bit at which the bad symbol (or distance) was read. */
static void
expect_same_fail(const char *name, const struct bw *w, size_t winlen,
                 const char *want)
{
  char padded[256];

  expect_fail(name, w->buf, sizeof w->buf, 0, winlen, want);
  snprintf(padded, sizeof padded, "%s", sn_error());
  expect_fail(name, w->buf, bw_len(w), 0, winlen, want);
  OK(strcmp(padded, sn_error()) == 0, "%s: the same message when the "
     "stream ends right after it (%s)", name, sn_error());
}

/* Errors at exact bit offsets, whichever path meets them. */
static void
test_error_offsets(void)
{
  struct bw w;
  unsigned i;

  /* "AB", then length 5 distance 4: 2 bytes before the restart point. */
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 1, 2), put_fixed(&w, 'A'), put_fixed(&w, 'B');
  put_fixed(&w, 259), put_code(&w, 3, 5);
  expect_same_fail("distance 4 after 2 bytes, 1 window byte", &w, 1,
                   "distance too far back at bit 31 (2 bytes");
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 1, 2), put_fixed(&w, 'x'), put_fixed(&w, 257);
  put_code(&w, 31, 5);
  expect_same_fail("distance code 31", &w, WIN,
                   "invalid distance code at bit 23 (1 bytes");
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 1, 2), put_fixed(&w, 'x'), put_fixed(&w, 287);
  expect_same_fail("literal/length code 287", &w, WIN,
                   "invalid literal/length code at bit 19 (1 bytes");
  /* A dynamic block whose distance code is empty (HDIST 1, length 0):
   * literal/lengths 256 and 257 with one bit each; the code length code
   * has 18 (one bit, '0'), 0 and 1 (two bits, '10' and '11'). */
  memset(&w, 0, sizeof w);
  put(&w, 1, 1), put(&w, 2, 2), put(&w, 1, 5), put(&w, 0, 5);
  put(&w, 14, 4);                       /* 18 code length lengths */
  for (i = 0; i < 18; i++)              /* 18: 1; 0: 2; ... 1: 2 */
    put(&w, i == 2 ? 1 : i == 3 || i == 17 ? 2 : 0, 3);
  put_code(&w, 0, 1), put(&w, 127, 7);  /* 138 zeros */
  put_code(&w, 0, 1), put(&w, 107, 7);  /* 118 zeros */
  put_code(&w, 3, 2), put_code(&w, 3, 2); /* 256, 257: one bit */
  put_code(&w, 2, 2);                   /* no distance code */
  put_code(&w, 1, 1);                   /* 257: length 3 */
  expect_same_fail("a length with an empty distance code", &w, WIN,
                   "invalid distance code at bit 94 (0 bytes");
  /* The same block ended at once: parsed, nothing needed. */
  w.nbits--;
  w.buf[w.nbits / 8] &= (uint8_t) ~(1u << (w.nbits % 8));
  put_code(&w, 0, 1);                   /* 256 */
  {
    struct sn_window_use st;
    uint8_t map[WIN];

    OK(sn_window_use(w.buf, bw_len(&w), 0, WIN, WIN, map, &st) == 0 &&
       st.end && st.out == 0 && st.in_bits == 94, "a dynamic block with an "
       "empty distance code and no match: parsed (%s)", ERR);
  }
}

/* A real stream cut short after a boundary: rejected by both. */
static void
test_truncated(void)
{
  size_t total = 300 * 1024, clen, nb, cut;
  uint8_t *data = make_data(total);
  uint8_t *c = compress_raw(data, total, 6, 0, &clen);
  static uint8_t full[WIN], map[WIN];
  struct sn_window_use st;
  struct bound *b;

  nb = find_bounds(c, clen, total, &b);
  if (nb < 3) {
    ok(0, "the stream has boundaries to cut after");
    return;
  }
  window_at(data, b[1].out, full);
  if (sn_window_use(c, clen, b[1].bit, WIN, WIN, map, &st) < 0)
    abort();
  cut = (size_t) ((b[1].bit + st.in_bits / 2) / 8);
  expect_fail("a zlib stream cut halfway into the first 32 KiB", c, cut,
              b[1].bit, WIN, "more input needed");
  OK(sn_window_verify(c, cut, b[1].bit, full, full, WIN) == -1,
     "verify on the cut stream: -1 (%s)", WHY);
  {
    size_t slen;
    uint8_t *small = compress_raw(data, 10000, 6, 0, &slen);

    expect_fail("a 10000-byte zlib stream without its last byte", small,
                slen - 1, 0, 0, "more input needed");
    free(small);
  }
  /* Flipping bits here and there: never a crash, always a verdict. */
  {
    size_t i, fails = 0, oks = 0;

    for (i = 0; i < 300; i++) {
      uint8_t *d = xmalloc(clen);
      size_t k = b[1 + i % (nb - 1)].bit / 8 + rng() % 2000;

      memcpy(d, c, clen);
      if (k < clen)
        d[k] ^= (uint8_t) (1u << (rng() % 8));
      if (sn_window_use(d, clen, b[1 + i % (nb - 1)].bit, WIN, WIN, map,
                        &st) == 0)
        oks++;
      else
        fails += sn_error()[0] != '\0';
      free(d);
    }
    ok(oks + fails == 300, "300 bit flips: %zu parsed, %zu rejected with a "
       "message", oks, fails);
  }
  free(b);
  free(c);
  free(data);
}

/* Random bytes at random offsets with random windows: 0 or -1, maps
 * within the window, never a crash (run under ASan too). */
static void
test_random(void)
{
  static uint8_t map[WIN];
  size_t i, good = 0, bad = 0, sane = 0;

  for (i = 0; i < 20000; i++) {
    size_t len = rng() % 400, k, winlen = rng() % (WIN + 1), n = 0;
    uint8_t *in = xmalloc(len);
    uint64_t bitoff = len ? rng() % (len * 8) : 0;
    struct sn_window_use st;

    for (k = 0; k < len; k++)
      in[k] = (uint8_t) rng();
    if (i % 2 && len) {
      bitoff = 0;                       /* a fixed block at bit 0 */
      in[0] = (uint8_t) ((in[0] & ~6u) | 2u);
    }
    if (sn_window_use(in, len, bitoff, winlen, WIN, map, &st) == 0) {
      good++;
      for (k = 0; k < WIN; k++)
        n += map[k];
      for (k = 0; k < WIN - winlen; k++)
        n += map[k] ? WIN : 0;
      sane += n == st.count && (st.end || st.out >= WIN);
    }
    else
      bad++;
    free(in);
  }
  ok(good + bad == 20000 && sane == good, "20000 random streams: %zu "
     "parsed (maps consistent: %zu), %zu rejected", good, sane, bad);
}

int
main(void)
{
  test_crafted_maps();
  test_crafted_corrupt();
  test_error_offsets();
  test_stream(1, 0);
  test_stream(6, 0);
  test_stream(9, 0);
  test_stream(6, 100000);
  test_truncated();
  test_random();
  return done_testing();
}
