/* soci-nbd tests: lib/inflate/inflate.c against zlib.  Streams made by zlib with
 * every level and strategy, small windows, flushes that make empty and
 * stored blocks, several members; streams crafted bit by bit for each
 * rule zlib enforces (and the odd codes it allows); truncations and bit
 * flips.  Output, block-boundary events (total in, bits, total out) and
 * verdict must match zlib's inflate(Z_BLOCK) for every chunking of the
 * input tried, down to one byte per call. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "util/err.h"
#include "inflate-diff.h"
#include "inflate/inflate.h"
#include "tap.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t
rng(void)
{
  return tap_xorshift(&rng_state);
}

/* ---- a growable byte buffer ---- */

struct buf {
  uint8_t *p;
  size_t n, cap;
};

static void
buf_add(struct buf *b, const void *p, size_t n)
{
  if (n == 0)
    return;
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (b->p == NULL)
      abort();
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

/* ---- differential runs ---- */

static int nfail_detail;
static bool quick;              /* skip the one-byte-a-call runs */

/* Run the stream with several chunkings; true if all agree with zlib.
 * want: 1 must decode, 0 must fail, -1 either. */
static bool
check(const char *name, const uint8_t *s, size_t len, bool raw, int want)
{
  size_t rnd[64], one = 1, whole = len ? len : 1;
  size_t i;
  int k;
  bool good = true;

  for (i = 0; i < 64; i++) {
    uint64_t x = rng();

    rnd[i] = x % 4 == 0 ? 1 + x % 7 : x % 4 == 1 ? 1 + (x >> 8) % 300
           : 1 + (x >> 8) % 70000;
  }
  for (k = 0; k < 3 && good; k++) {
    struct diff_result a, b;
    const size_t *chunks = k == 0 ? &whole : k == 1 ? rnd : &one;
    size_t nchunks = k == 1 ? 64 : 1;
    const char *why;

    if (k == 2 && (len > 200000 || quick))
      break;                    /* one byte a call: small streams only */
    diff_zlib(s, len, chunks, nchunks, raw, &a);
    diff_sn(s, len, chunks, nchunks, raw, &b);
    why = diff_compare(&a, &b, raw);
    if (why == NULL && want >= 0 && a.ok != (want == 1))
      why = "not the expected verdict";
    if (why) {
      good = false;
      if (nfail_detail++ < 20)
        diag("%s (%s, chunking %d): %s differ; zlib ok=%d out=%zu ev=%zu, "
             "sn ok=%d out=%zu ev=%zu", name, raw ? "raw" : "gzip", k, why,
             a.ok, a.outlen, a.nev, b.ok, b.outlen, b.nev);
    }
    diff_free(&a);
    diff_free(&b);
  }
  return good;
}

/* ---- streams made by zlib ---- */

enum fmt { F_GZIP, F_RAW, F_ZLIB };

/* Compress data[0..len) in random pieces, with a random flush after
 * each, into out. */
static void
zcompress(struct buf *out, const uint8_t *data, size_t len, enum fmt f,
          int level, int wbits, int memlevel, int strategy, bool flushes)
{
  z_stream s;
  uint8_t tmp[16384];
  size_t pos = 0;
  int bits = f == F_GZIP ? 16 + wbits : f == F_RAW ? -wbits : wbits;
  static const int fl[] = { Z_NO_FLUSH, Z_SYNC_FLUSH, Z_FULL_FLUSH,
                            Z_PARTIAL_FLUSH, Z_BLOCK };

  memset(&s, 0, sizeof s);
  if (deflateInit2(&s, level, Z_DEFLATED, bits, memlevel, strategy) != Z_OK)
    abort();
  for (;;) {
    size_t n = flushes ? 1 + rng() % 50000 : len;
    int flush, ret;

    if (n > len - pos)
      n = len - pos;
    flush = pos + n == len ? Z_FINISH : flushes ? fl[rng() % 5] : Z_NO_FLUSH;
    s.next_in = (Bytef *) data + pos;
    s.avail_in = (uInt) n;
    do {
      s.next_out = tmp;
      s.avail_out = sizeof tmp;
      ret = deflate(&s, flush);
      if (ret == Z_STREAM_ERROR)
        abort();
      buf_add(out, tmp, sizeof tmp - s.avail_out);
    } while (s.avail_out == 0 || (flush == Z_FINISH && ret != Z_STREAM_END));
    pos += n;
    if (flush == Z_FINISH)
      break;
  }
  deflateEnd(&s);
}

/* Test data of a few kinds. */
static void
gen(uint8_t *p, size_t n, int kind)
{
  static const char *words[] = { "the ", "layer ", "inflate ", "zran ",
                                 "checkpoint ", "\n", "usr/lib/", "0000" };
  size_t i = 0;

  while (i < n) {
    uint64_t x = rng();

    switch (kind) {
    case 0:                     /* random */
      p[i++] = (uint8_t) x;
      break;
    case 1: {                   /* text */
      const char *w = words[x % 8];
      size_t k = strlen(w);

      while (k-- && i < n)
        p[i++] = (uint8_t) *w++;
      break;
    }
    case 2: {                   /* runs */
      size_t k = 1 + (x >> 8) % 300;

      while (k-- && i < n)
        p[i++] = (uint8_t) (x % 3);
      break;
    }
    case 3:                     /* small alphabet, short repeats */
      p[i] = (uint8_t) ('a' + x % 4);
      if (i >= 7 && x % 5 == 0)
        p[i] = p[i - 1 - (x >> 8) % 7];
      i++;
      break;
    default:                    /* mixed: stretches of each */
      {
        size_t k = 1 + (x >> 8) % 5000;

        if (k > n - i)
          k = n - i;
        gen(p + i, k, (int) (x % 4));
        i += k;
      }
      break;
    }
  }
}

static void
test_zlib_streams(void)
{
  static const int strategies[] = { Z_DEFAULT_STRATEGY, Z_FILTERED,
                                    Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED };
  static const size_t sizes[] = { 0, 1, 100, 5000, 70000, 300000, 1300000 };
  uint8_t *data = malloc(1300000);
  int i, bad = 0, total = 0;

  if (data == NULL)
    abort();
  for (i = 0; i < 240; i++) {
    struct buf z = { 0 };
    enum fmt f = (enum fmt) (i % 3);
    int level = i % 10, strategy = strategies[(i / 10) % 5];
    int wbits = 9 + (int) (rng() % 7), memlevel = 1 + (int) (rng() % 9);
    size_t len = sizes[rng() % 7];
    int kind = (int) (rng() % 5), members = 1, m;
    char name[128];

    if (f != F_RAW && rng() % 3 == 0)
      members = 2 + (int) (rng() % 3);
    for (m = 0; m < members; m++) {
      size_t n = m > 0 && rng() % 3 == 0 ? 0 : len;   /* empty members */
      enum fmt mf = m > 0 && rng() % 4 == 0 ? F_ZLIB : f;

      if (f == F_ZLIB && m > 0)
        mf = F_GZIP;
      gen(data, n, kind);
      zcompress(&z, data, n, mf, level, wbits, memlevel, strategy,
                rng() % 2 == 0);
    }
    snprintf(name, sizeof name, "zlib fmt %d level %d strategy %d wbits %d "
             "mem %d len %zu kind %d members %d", (int) f, level, strategy,
             wbits, memlevel, len, kind, members);
    total++;
    if (!check(name, z.p, z.n, f == F_RAW, 1))
      bad++;
    free(z.p);
  }
  ok(bad == 0, "%d of %d zlib-made streams (levels 0-9, all strategies, "
     "windowBits 9-15, flushes, gzip/zlib/raw, members) decode as with zlib",
     total - bad, total);
  free(data);
}

/* ---- streams crafted bit by bit ---- */

struct bw {
  struct buf b;
  uint64_t acc;
  unsigned cnt;
};

static void
put(struct bw *w, uint32_t v, unsigned n)
{
  w->acc |= (uint64_t) v << w->cnt;
  w->cnt += n;
  while (w->cnt >= 8) {
    uint8_t c = (uint8_t) w->acc;

    buf_add(&w->b, &c, 1);
    w->acc >>= 8;
    w->cnt -= 8;
  }
}

static void
put_align(struct bw *w)
{
  if (w->cnt)
    put(w, 0, 8 - w->cnt);
}

/* The code lengths of the fixed literal/length code (RFC 1951 3.2.6). */
static void
fixed_lengths(uint8_t lens[288])
{
  for (int i = 0; i < 288; i++)
    lens[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
}

/* Write symbol sym of the canonical code with lengths lens[0..n). */
static void
put_sym(struct bw *w, const uint8_t *lens, unsigned n, unsigned sym)
{
  unsigned count[16] = { 0 }, next[16], code = 0, len, i, c, r = 0;

  for (i = 0; i < n; i++)
    count[lens[i]]++;
  count[0] = 0;
  for (len = 1; len < 16; len++) {
    code = (code + count[len - 1]) << 1;
    next[len] = code;
  }
  len = lens[sym];
  c = next[len];
  for (i = 0; i < sym; i++)
    if (lens[i] == len)
      c++;
  for (i = 0; i < len; i++)
    r |= ((c >> i) & 1) << (len - 1 - i);
  put(w, r, len);
}

/* The code length code used below: 0-9, 16-18 four bits, 10-15 five. */
static const uint8_t order[19] = {
  16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15
};

static void
clen_lens(uint8_t cl[19])
{
  unsigned i;

  for (i = 0; i < 19; i++)
    cl[i] = i >= 10 && i <= 15 ? 5 : 4;
}

/* A dynamic block header: nlen + ndist code lengths, written plainly
 * (no repeats). */
static void
put_dyn(struct bw *w, bool final, const uint8_t *lens, unsigned nlen,
        unsigned ndist)
{
  uint8_t cl[19];
  unsigned i;

  clen_lens(cl);
  put(w, final, 1);
  put(w, 2, 2);
  put(w, nlen - 257, 5);
  put(w, ndist - 1, 5);
  put(w, 15, 4);
  for (i = 0; i < 19; i++)
    put(w, cl[order[i]], 3);
  for (i = 0; i < nlen + ndist; i++)
    put_sym(w, cl, 19, lens[i]);
}

/* Wrap a raw deflate stream in a gzip member (data: what it decodes to,
 * for the trailer). */
static void
gzip_wrap(struct buf *out, const struct buf *raw, const uint8_t *data,
          size_t len)
{
  static const uint8_t head[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
  uint32_t crc = (uint32_t) crc32(0, data, (uInt) len);
  uint8_t t[8];
  int i;

  for (i = 0; i < 4; i++) {
    t[i] = (uint8_t) (crc >> 8 * i);
    t[4 + i] = (uint8_t) (len >> 8 * i);
  }
  buf_add(out, head, 10);
  buf_add(out, raw->p, raw->n);
  buf_add(out, t, 8);
}

/* Build each crafted stream; check raw and gzip-wrapped. */
static void
test_crafted(void)
{
  uint8_t lens[320], cl[19];
  struct bw w;
  int bad = 0, n = 0;

#define BEGIN() do { memset(&w, 0, sizeof w); memset(lens, 0, sizeof lens); } while (0)
#define CHECK(nm, want_, out_, outlen_)                                  \
  do {                                                                  \
    struct buf g = { 0 };                                               \
    put_align(&w);                                                      \
    n++;                                                                \
    if (!check(nm, w.b.p, w.b.n, true, want_))                           \
      bad++;                                                            \
    gzip_wrap(&g, &w.b, (const uint8_t *) (out_), outlen_);             \
    n++;                                                                \
    if (!check(nm, g.p, g.n, false, want_))                              \
      bad++;                                                            \
    free(g.p);                                                          \
    free(w.b.p);                                                        \
  } while (0)

  /* lit/len code: 'a', 256, 257, 258 two bits each */
#define LITS() do { lens[97] = lens[256] = lens[257] = lens[258] = 2; } while (0)

  BEGIN(); LITS(); lens[259] = 1;        /* a single one-bit distance code */
  put_dyn(&w, true, lens, 259, 1);
  put_sym(&w, lens, 259, 97);
  put_sym(&w, lens, 259, 257); put(&w, 0, 1);  /* length 3, distance 1 */
  put_sym(&w, lens, 259, 256);
  CHECK("single distance code", 1, "aaaa", 4);

  BEGIN(); LITS(); lens[259] = 1;
  put_dyn(&w, true, lens, 259, 1);
  put_sym(&w, lens, 259, 97);
  put_sym(&w, lens, 259, 257); put(&w, 1, 1);  /* the missing code */
  put_sym(&w, lens, 259, 256);
  CHECK("the missing half of a one-code distance set", 0, "", 0);

  BEGIN(); LITS();                       /* no distance codes at all */
  put_dyn(&w, true, lens, 259, 1);
  put_sym(&w, lens, 259, 97);
  put_sym(&w, lens, 259, 256);
  CHECK("no distance codes, literals only", 1, "a", 1);

  BEGIN(); LITS();
  put_dyn(&w, true, lens, 259, 1);
  put_sym(&w, lens, 259, 97);
  put_sym(&w, lens, 259, 257);
  put(&w, 0, 8);
  CHECK("a match with no distance codes", 0, "", 0);

  BEGIN(); lens[256] = 1;                /* only end-of-block, one bit */
  put_dyn(&w, false, lens, 257, 1);
  put_sym(&w, lens, 257, 256);
  put_dyn(&w, true, lens, 257, 1);
  put_sym(&w, lens, 257, 256);
  CHECK("lone one-bit end-of-block code, two blocks", 1, "", 0);

  BEGIN(); lens[256] = 1;
  put_dyn(&w, true, lens, 257, 1);
  put(&w, 1, 1);                         /* the missing literal code */
  CHECK("the missing half of a one-code literal set", 0, "", 0);

  BEGIN(); LITS(); lens[259] = lens[260] = 2;
  put_dyn(&w, true, lens, 259, 2);
  put_sym(&w, lens, 259, 256);
  CHECK("incomplete distance set (two codes)", 0, "", 0);

  BEGIN(); LITS(); lens[98] = 2; lens[259] = 1;
  put_dyn(&w, true, lens, 259, 1);
  put_sym(&w, lens, 259, 256);
  CHECK("over-subscribed literal/length set", 0, "", 0);

  BEGIN(); lens[97] = lens[256] = lens[257] = 2; lens[98] = 3;
  lens[259] = 1;
  put_dyn(&w, true, lens, 259, 1);
  put_sym(&w, lens, 259, 256);
  CHECK("incomplete literal/length set", 0, "", 0);

  BEGIN(); lens[97] = lens[98] = 1; lens[258] = 1;
  put_dyn(&w, true, lens, 258, 1);
  put_sym(&w, lens, 258, 97);
  CHECK("no end-of-block code", 0, "", 0);

  /* code length repeats */
  BEGIN(); clen_lens(cl);
  put(&w, 1, 1); put(&w, 2, 2); put(&w, 0, 5); put(&w, 0, 5); put(&w, 15, 4);
  for (int i = 0; i < 19; i++) put(&w, cl[order[i]], 3);
  put_sym(&w, cl, 19, 16); put(&w, 0, 2);
  CHECK("repeat of no previous length", 0, "", 0);

  BEGIN(); clen_lens(cl);               /* 257 + 1 lengths, 18 runs past */
  put(&w, 1, 1); put(&w, 2, 2); put(&w, 0, 5); put(&w, 0, 5); put(&w, 15, 4);
  for (int i = 0; i < 19; i++) put(&w, cl[order[i]], 3);
  put_sym(&w, cl, 19, 18); put(&w, 127, 7);    /* 138 zeros */
  put_sym(&w, cl, 19, 18); put(&w, 107, 7);    /* 118 zeros: 256 */
  put_sym(&w, cl, 19, 1);                      /* lens[256] = 1 */
  put_sym(&w, cl, 19, 16); put(&w, 0, 2);      /* 3 more: one too many */
  CHECK("too many length repeats", 0, "", 0);

  BEGIN(); clen_lens(cl);               /* a repeat across into distances */
  put(&w, 1, 1); put(&w, 2, 2); put(&w, 1, 5); put(&w, 1, 5); put(&w, 15, 4);
  for (int i = 0; i < 19; i++) put(&w, cl[order[i]], 3);
  put_sym(&w, cl, 19, 18); put(&w, 127, 7);
  put_sym(&w, cl, 19, 18); put(&w, 107, 7);
  put_sym(&w, cl, 19, 1);                      /* lens[256] = 1 */
  put_sym(&w, cl, 19, 16); put(&w, 0, 2);      /* 257 and both dists */
  memset(lens, 0, sizeof lens); lens[256] = lens[257] = 1;
  put_sym(&w, lens, 258, 256);
  CHECK("a repeat running into the distance lengths", 1, "", 0);

  BEGIN(); LITS(); lens[287] = 1;       /* otherwise a good block */
  put_dyn(&w, true, lens, 287, 1);
  put_sym(&w, lens, 287, 256);
  CHECK("287 literal/length codes", 0, "", 0);

  BEGIN(); LITS(); lens[259] = 1;
  put_dyn(&w, true, lens, 259, 31);
  put_sym(&w, lens, 259, 256);
  CHECK("31 distance codes", 0, "", 0);

  BEGIN();                               /* code length code incomplete */
  put(&w, 1, 1); put(&w, 2, 2); put(&w, 0, 5); put(&w, 0, 5); put(&w, 0, 4);
  put(&w, 2, 3); put(&w, 2, 3); put(&w, 0, 3); put(&w, 0, 3);
  put(&w, 0, 16);
  CHECK("incomplete code length code", 0, "", 0);

  BEGIN();
  put(&w, 1, 1); put(&w, 2, 2); put(&w, 0, 5); put(&w, 0, 5); put(&w, 0, 4);
  put(&w, 0, 12); put(&w, 0xffff, 16); put(&w, 0xffff, 16);
  CHECK("empty code length code", 0, "", 0);

  BEGIN();
  put(&w, 1, 1); put(&w, 3, 2); put(&w, 0, 16);
  CHECK("block type 3", 0, "", 0);

  BEGIN();
  put(&w, 1, 1); put(&w, 0, 2); put_align(&w); put(&w, 5, 16); put(&w, 5, 16);
  CHECK("stored lengths that disagree", 0, "", 0);

  BEGIN();                               /* empty stored, empty fixed */
  put(&w, 0, 1); put(&w, 0, 2); put_align(&w); put(&w, 0, 16); put(&w, 0xffff, 16);
  put(&w, 0, 1); put(&w, 1, 2); put(&w, 0, 7);
  put(&w, 0, 1); put(&w, 0, 2); put_align(&w); put(&w, 2, 16); put(&w, 0xfffd, 16);
  put(&w, 'h', 8); put(&w, 'i', 8);
  put(&w, 1, 1); put(&w, 1, 2); put(&w, 0, 7);
  CHECK("empty stored and fixed blocks", 1, "hi", 2);

  /* fixed code: literal 'a' is 0x30 + 'a' in 8 bits, MSB first */
  BEGIN();
  fixed_lengths(lens);
  put(&w, 1, 1); put(&w, 1, 2);
  put_sym(&w, lens, 288, 'a');
  put_sym(&w, lens, 288, 286);
  CHECK("fixed literal/length 286", 0, "", 0);

  BEGIN();
  fixed_lengths(lens);
  put(&w, 1, 1); put(&w, 1, 2);
  put_sym(&w, lens, 288, 'a');
  put_sym(&w, lens, 288, 257);
  put(&w, 0x0f, 5);                      /* distance code 30, reversed */
  CHECK("fixed distance code 30", 0, "", 0);

  BEGIN();
  fixed_lengths(lens);
  put(&w, 1, 1); put(&w, 1, 2);
  put_sym(&w, lens, 288, 'a');
  put_sym(&w, lens, 288, 257);
  put(&w, 0x10, 5);                      /* distance code 1: 2 back */
  put_sym(&w, lens, 288, 256);
  CHECK("distance too far back", 0, "", 0);

  ok(bad == 0, "%d of %d crafted streams (zlib's rules, odd codes) agree "
     "with zlib", n - bad, n);
#undef BEGIN
#undef CHECK
#undef LITS
}

/* ---- gzip framing ---- */

static void
test_framing(void)
{
  uint8_t data[3000];
  struct buf raw = { 0 }, g = { 0 };
  uint8_t head[64];
  size_t h = 0;
  uint32_t crc;
  int bad = 0, n = 0, i;

  gen(data, sizeof data, 1);
  zcompress(&raw, data, sizeof data, F_RAW, 6, 15, 8, Z_DEFAULT_STRATEGY,
            false);

  /* FTEXT FHCRC FEXTRA FNAME FCOMMENT */
  memcpy(head, "\x1f\x8b\x08\x1f\0\0\0\0\0\x03", 10);
  h = 10;
  memcpy(head + h, "\x05\0abcde", 7); h += 7;
  memcpy(head + h, "name\0", 5); h += 5;
  memcpy(head + h, "comment\0", 8); h += 8;
  crc = (uint32_t) crc32(0, head, (uInt) h);
  head[h++] = (uint8_t) crc;
  head[h++] = (uint8_t) (crc >> 8);

  for (i = 0; i < 9; i++) {
    struct buf m = { 0 };
    uint8_t hd[64];
    struct buf tmp = { 0 };
    const char *what[] = { "all header fields", "header crc mismatch",
                           "reserved flag", "method 7", "bad magic",
                           "bad data crc", "bad length", "two members",
                           "back-reference into the previous member" };
    int want = i == 0 || i == 7 ? 1 : 0;

    memcpy(hd, head, h);
    if (i == 1) hd[h - 1] ^= 1;
    if (i == 2) hd[3] |= 0x20;
    if (i == 3) hd[2] = 7;
    if (i == 4) hd[1] = 0x8c;
    buf_add(&m, hd, h);
    buf_add(&m, raw.p, raw.n);
    gzip_wrap(&tmp, &raw, data, sizeof data);
    buf_add(&m, tmp.p + 10 + raw.n, 8);      /* the trailer */
    if (i == 5) m.p[m.n - 5] ^= 0x40;
    if (i == 6) m.p[m.n - 1] ^= 0x01;
    if (i == 7) buf_add(&m, tmp.p, tmp.n);
    if (i == 8) {
      /* A second member whose first match reaches into the first. */
      struct bw w = { 0 };
      uint8_t lens[288];
      struct buf t2 = { 0 };
      int k;

      for (k = 0; k < 256; k++) lens[k] = k < 144 ? 8 : 9;
      for (k = 256; k < 288; k++) lens[k] = k < 280 ? 7 : 8;
      put(&w, 1, 1); put(&w, 1, 2);
      put_sym(&w, lens, 288, 257); put(&w, 0, 5);  /* 3 at distance 1 */
      for (k = 0; k < 60; k++)                      /* the fast loop's */
        put_sym(&w, lens, 288, 'x');
      put_sym(&w, lens, 288, 256);
      put_align(&w);
      gzip_wrap(&t2, &w.b, (const uint8_t *) "xxx", 3);
      buf_add(&m, t2.p, t2.n);
      free(t2.p);
      free(w.b.p);
    }
    n++;
    if (!check(what[i], m.p, m.n, false, want)) {
      diag("framing case: %s", what[i]);
      bad++;
    }
    free(m.p);
    free(tmp.p);
  }

  /* zlib framing, and a preset dictionary */
  for (i = 0; i < 2; i++) {
    struct buf m = { 0 };
    z_stream s;
    uint8_t out[8192];

    memset(&s, 0, sizeof s);
    deflateInit(&s, 6);
    if (i == 1)
      deflateSetDictionary(&s, (const Bytef *) "dictionary", 10);
    s.next_in = data;
    s.avail_in = sizeof data;
    s.next_out = out;
    s.avail_out = sizeof out;
    deflate(&s, Z_FINISH);
    buf_add(&m, out, sizeof out - s.avail_out);
    deflateEnd(&s);
    n++;
    if (!check(i ? "preset dictionary" : "zlib framing", m.p, m.n, false,
               i ? 0 : 1))
      bad++;
    free(m.p);
  }
  ok(bad == 0, "%d of %d gzip/zlib framing cases agree with zlib",
     n - bad, n);
  free(raw.p);
  free(g.p);
}

/* ---- corruption ---- */

static void
test_corruption(void)
{
  uint8_t data[6000];
  struct buf s = { 0 }, r = { 0 };
  size_t i;
  int bad = 0, n = 0, bit;

  gen(data, sizeof data, 4);
  zcompress(&s, data, 3000, F_GZIP, 6, 15, 8, Z_DEFAULT_STRATEGY, true);
  zcompress(&s, data + 3000, 3000, F_GZIP, 9, 10, 8, Z_FIXED, true);
  zcompress(&r, data, sizeof data, F_RAW, 6, 15, 8, Z_DEFAULT_STRATEGY, true);

  quick = true;
  for (i = 0; i <= s.n; i++) {
    n++;
    if (!check("truncated gzip", s.p, i, false, -1))
      bad++;
  }
  ok(bad == 0, "gzip cut at each of %zu bytes: same verdict, output and "
     "events as zlib", s.n + 1);

  bad = 0;
  for (i = 0; i <= r.n; i++)
    if (!check("truncated raw", r.p, i, true, i == r.n ? 1 : -1))
      bad++;
  ok(bad == 0, "raw deflate cut at each of %zu bytes: agrees with zlib",
     r.n + 1);

  bad = 0;
  n = 0;
  for (i = 0; i < s.n; i++)
    for (bit = 0; bit < 8; bit += 3) {
      s.p[i] ^= (uint8_t) (1 << bit);
      n++;
      if (!check("bit flip gzip", s.p, s.n, false, -1))
        bad++;
      s.p[i] ^= (uint8_t) (1 << bit);
    }
  for (i = 0; i < r.n; i++)
    for (bit = 0; bit < 8; bit++) {
      r.p[i] ^= (uint8_t) (1 << bit);
      n++;
      if (!check("bit flip raw", r.p, r.n, true, -1))
        bad++;
      r.p[i] ^= (uint8_t) (1 << bit);
    }
  ok(bad == 0, "%d bit flips: same verdict as zlib, same bytes when "
     "accepted, a common prefix when not", n);
  quick = false;
  free(s.p);
  free(r.p);
}

/* ---- the layers in tests/data, and the benchmark's if it is there ---- */

static void
test_files(void)
{
  static const char *names[] = { "A.tar.gz", "B.tar.gz" };
  const char *big = getenv("SOCI_NBD_BENCH_CACHE");
  char path[512];
  size_t i, len;
  FILE *f;

  for (i = 0; i < 2; i++) {
    uint8_t *p;

    snprintf(path, sizeof path, "%s/%s", DATADIR, names[i]);
    p = slurp(path, &len);
    ok(check(names[i], p, len, false, 1), "%s decodes as with zlib",
       names[i]);
    free(p);
  }
  snprintf(path, sizeof path, "%s/minbase.tar.gz",
           big ? big : "/var/cache/soci-nbd-bench");
  f = fopen(path, "rb");
  if (f == NULL) {
    ok(1, "# SKIP no %s (bench/mklayer.sh makes it)", path);
    return;
  }
  fclose(f);
  {
    uint8_t *p = slurp(path, &len);

    ok(check("minbase.tar.gz", p, len, false, 1),
       "the realistic layer (%zu bytes) decodes as with zlib", len);
    free(p);
  }
}

/* ---- API details ---- */

static void
test_api(void)
{
  struct sn_inflate *z = sn_inflate_new(SN_INFLATE_GZIP);
  static const uint8_t junk[4] = { 'P', 'K', 3, 4 };
  const uint8_t *o;
  size_t used, olen;
  uint8_t win[SN_INFLATE_WINSIZE];
  int r;

  r = sn_inflate_finish(z);
  ok(r == -1 && strstr(sn_error(), "truncated gzip stream") != NULL,
     "an empty stream is truncated: %s", sn_error());
  r = sn_inflate_run(z, junk, sizeof junk, &used, &o, &olen);
  ok(r == -1 && strstr(sn_error(), "gzip: corrupt data at offset ") != NULL,
     "not gzip: %s", sn_error());
  ok(sn_inflate_run(z, junk, sizeof junk, &used, &o, &olen) == -1,
     "a failed decoder stays failed");
  sn_inflate_window(z, win);
  ok(win[0] == 0 && win[SN_INFLATE_WINSIZE - 1] == 0,
     "the window before any output is zeros");
  sn_inflate_free(z);
}

int
main(void)
{
  test_api();
  test_files();
  test_crafted();
  test_framing();
  test_zlib_streams();
  test_corruption();
  return done_testing();
}
