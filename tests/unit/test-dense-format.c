/* soci-nbd tests: the dense index's formats (lib/dense/dense-format.c,
 * docs/dense-format.md) — the checkpoint table byte by byte, the table
 * blob, window frames; hostile inputs of each; every bit flip and
 * truncation of a small table blob; and a run of spans decoded from a
 * parsed table and unpacked windows. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/le.h"
#include "tap.h"
#include "dense/dense.h"

#define NCP 5
#define WSIZE 2000   /* the made-up windows blob */

static uint64_t rng = 0x2545f4914f6cdd1du;

static bool
msg_has(const char *want)
{
  const char *e = sn_error();

  return strncmp(e, "dense: ", 7) == 0 || strncmp(e, "zinfo: ", 7) == 0 ||
         strncmp(e, "ztoc: ", 6) == 0 ?
         strstr(e, want) != NULL && strchr(e, '\n') == NULL : false;
}

/* ---- a model: NCP checkpoints, windows for the even ones --------------- */

static struct sn_zinfo *
model_zinfo(struct sn_winref *w)
{
  struct sn_zinfo *zi = calloc(1, sizeof *zi);
  size_t i;

  zi->compression = SN_COMP_GZIP;
  zi->nspans = NCP;
  zi->cp = calloc(NCP, sizeof *zi->cp);
  for (i = 0; i < NCP; i++) {
    zi->cp[i].in = 10 + (int64_t) i * 1000;
    zi->cp[i].out = (int64_t) i * 5000;
    zi->cp[i].bits = (uint8_t) (i * 3 % 8);
    memset(&w[i], 0, sizeof w[i]);
    if (i % 2 == 0) {
      w[i].off = (int64_t) i * 300;
      w[i].len = 200 + (uint32_t) i;
      memset(w[i].digest, 0xa0 + (int) i, SN_SHA256_LEN);
    }
  }
  w[NCP - 1].len = WSIZE - (uint32_t) w[NCP - 1].off;   /* ends the blob */
  return zi;
}

static uint8_t *
model_blob(size_t *len)
{
  struct sn_winref w[NCP];
  struct sn_zinfo *zi = model_zinfo(w);
  uint8_t *b = NULL;

  if (sn_dense_cp_encode(zi, w, WSIZE, &b, len) == -1) {
    printf("Bail out! cannot encode the model: %s\n", sn_error());
    exit(1);
  }
  sn_zinfo_free(zi);
  return b;
}

/* ---- the checkpoint table ---------------------------------------------- */

static void
test_cp_roundtrip(void)
{
  struct sn_winref w[NCP];
  struct sn_zinfo *zi = model_zinfo(w), *back;
  uint8_t *b = NULL, *r;
  size_t len = 0, i;
  bool same = true;

  OK(sn_dense_cp_encode(zi, w, WSIZE, &b, &len) == 0 &&
     len == SN_DENSE_CP_HEADER_LEN + NCP * SN_DENSE_CP_RECORD_LEN,
     "encode %d checkpoints: %zu bytes (%s)", NCP, len, ERR);
  ok(memcmp(b, "SNDCKP01", 8) == 0 && sn_get_le(b + 8, 4) == NCP &&
     sn_get_le(b + 12, 4) == 0 && sn_get_le(b + 16, 8) == WSIZE,
     "header: magic, count, flags 0, windows size");
  r = b + SN_DENSE_CP_HEADER_LEN + 2 * SN_DENSE_CP_RECORD_LEN;  /* cp 2 */
  ok(sn_get_le(r, 8) == 2010 && sn_get_le(r + 8, 8) == 10000 && r[16] == 6 &&
     r[17] == 0 && r[18] == 0 && r[19] == 0 && sn_get_le(r + 20, 4) == 202 &&
     sn_get_le(r + 24, 8) == 600 && r[32] == 0xa2 && r[63] == 0xa2,
     "record 2 at its documented offsets (in, out, bits, pad, win_len, "
     "win_off, sha256)");
  ok(sn_dense_cp_is(b, len) && sn_dense_cp_is(b, 8) && !sn_dense_cp_is(b, 7) &&
     !sn_dense_cp_is(NULL, 0), "sn_dense_cp_is: the magic, 8 bytes at least");
  back = sn_dense_cp_parse(b, len);
  OK(back && back->nspans == NCP && back->compression == SN_COMP_GZIP &&
     back->span_size == 0 && back->windows_size == WSIZE && back->winref,
     "parse it back (%s)", ERR);
  for (i = 0; back && i < NCP; i++)
    same = same && back->cp[i].in == zi->cp[i].in &&
           back->cp[i].out == zi->cp[i].out &&
           back->cp[i].bits == zi->cp[i].bits && back->cp[i].window == NULL &&
           memcmp(&back->winref[i], &w[i], sizeof w[i]) == 0;
  ok(back && same, "every checkpoint and window reference equal, windows "
     "NULL");
  sn_zinfo_free(back);
  free(b);

  zi->cp[1].bits = 8;
  b = NULL;
  OK(sn_dense_cp_encode(zi, w, WSIZE, &b, &len) == -1 && b == NULL &&
     msg_has("bits"), "encode refuses what parse refuses: %s", WHY);
  zi->cp[1].bits = 0;
  OK(sn_dense_cp_encode(zi, w, 1000, &b, &len) == -1 && msg_has("outside"),
     "encode refuses a window past the blob's size: %s", WHY);
  sn_zinfo_free(zi);
}

/* Patch the model's bytes at off (n bytes, value v) and expect a refusal
 * naming want. */
static void
cp_bad(const char *what, size_t off, uint64_t v, int n, const char *want)
{
  size_t len;
  uint8_t *b = model_blob(&len);
  struct sn_zinfo *zi;

  sn_put_le(b + off, v, n);
  zi = sn_dense_cp_parse(b, len);
  OK(zi == NULL && msg_has(want), "%s refused: %s", what, WHY);
  sn_zinfo_free(zi);
  free(b);
}

#define REC(i, f) (SN_DENSE_CP_HEADER_LEN + (i) * SN_DENSE_CP_RECORD_LEN + (f))

static void
test_cp_hostile(void)
{
  size_t len;
  uint8_t *b = model_blob(&len);
  struct sn_zinfo *zi;

  cp_bad("bits 8", REC(1, 16), 8, 1, "8 bits");
  cp_bad("a nonzero pad byte", REC(3, 18), 1, 1, "padding");
  cp_bad("flags 2", 12, 2, 4, "flags");
  cp_bad("flags 1 (zstd) with a windows blob", 12, SN_DENSE_CP_ZSTD, 4,
         "names a windows blob");
  cp_bad("flags 0x80000000", 12, 0x80000000u, 4, "flags");
  cp_bad("a bad magic", 7, '2', 1, "magic");
  cp_bad("decreasing in", REC(2, 0), 1009, 8, "backwards");
  cp_bad("decreasing out", REC(3, 8), 9999, 8, "backwards");
  cp_bad("a negative in", REC(0, 0), (uint64_t) -5, 8, "bad offset");
  cp_bad("out[0] != 0", REC(0, 8), 1, 8, "not 0");
  cp_bad("count 5 -> 6", 8, NCP + 1, 4, "cannot hold");
  cp_bad("count 5 -> 4", 8, NCP - 1, 4, "cannot hold");
  cp_bad("count 2^32-1", 8, UINT32_MAX, 4, "cannot hold");
  cp_bad("a negative windows size", 16, (uint64_t) -1, 8, "negative");
  cp_bad("a window frame past the blob", REC(4, 24), WSIZE - 195, 8,
         "outside");
  cp_bad("a negative window offset", REC(2, 24), (uint64_t) -1, 8,
         "outside");
  cp_bad("an offset + length overflowing", REC(2, 24), INT64_MAX, 8,
         "outside");
  cp_bad("win_len > SN_DENSE_WIN_MAX_FRAME", REC(0, 20),
         SN_DENSE_WIN_MAX_FRAME + 1, 4, "max");
  cp_bad("win_len 0 with a nonzero offset", REC(1, 24), 4, 8, "no window");
  cp_bad("win_len 0 with a nonzero digest", REC(1, 63), 1, 1, "no window");

  sn_put_le(b + 8, 0, 4);
  zi = sn_dense_cp_parse(b, SN_DENSE_CP_HEADER_LEN);
  OK(zi == NULL && msg_has("no checkpoint"), "count 0 refused: %s", WHY);
  sn_put_le(b + 8, NCP, 4);
  zi = sn_dense_cp_parse(b, len - 1);
  OK(zi == NULL && msg_has("cannot hold"), "one byte short refused: %s", WHY);
  zi = sn_dense_cp_parse(b, SN_DENSE_CP_HEADER_LEN - 1);
  OK(zi == NULL && msg_has("too short"), "a short header refused: %s", WHY);
  zi = sn_dense_cp_parse(NULL, 0);
  OK(zi == NULL && msg_has("too short"), "NULL refused: %s", WHY);
  free(b);
}

/* ---- the table blob ---------------------------------------------------- */

/* A dense table ztoc over the model's checkpoints (or cp, cplen: copied). */
static struct sn_ztoc *
model_ztoc(const uint8_t *cp, size_t cplen)
{
  struct sn_ztoc *z = sn_ztoc_new();
  size_t i, len;
  uint8_t *b = cp ? NULL : model_blob(&len);

  sn_bytes_set(&z->version, "0.9", 3);
  sn_bytes_set(&z->build_tool, "soci-nbd test", 13);
  z->compressed_size = 5000;
  z->uncompressed_size = 24000;
  z->max_span_id = NCP - 1;
  z->nspan_digests = NCP;
  z->span_digests = calloc(NCP, sizeof *z->span_digests);
  for (i = 0; i < NCP; i++) {
    char s[SN_DIGEST_STRLEN + 1];
    sn_digest_of(&i, sizeof i, s);
    sn_bytes_set(&z->span_digests[i], s, SN_DIGEST_STRLEN);
  }
  z->checkpoints = malloc(cp ? cplen : len);
  memcpy(z->checkpoints, cp ? cp : b, cp ? cplen : len);
  z->checkpoints_len = cp ? cplen : len;
  free(b);
  z->nfiles = 2;
  z->files = calloc(2, sizeof *z->files);
  for (i = 0; i < 2; i++) {
    struct sn_ztoc_file *f = &z->files[i];
    sn_bytes_set(&f->name, i ? "etc/b" : "etc/a", 5);
    sn_bytes_set(&f->type, "reg", 3);
    sn_bytes_set(&f->mod_time, "2023-11-14T22:13:20Z", 20);
    f->offset = 512 + (int64_t) i * 12288;
    f->size = 10000;
    f->mode = 0644;
  }
  return z;
}

/* z as a FlatBuffer (for comparing models: the encoder is canonical). */
static uint8_t *
flat(const struct sn_ztoc *z, size_t *len)
{
  uint8_t *b = NULL;

  if (sn_ztoc_encode(z, &b, len) == -1)
    *len = 0;
  return b;
}

/* A zstd frame of n bytes at p, with or without its content size. */
static uint8_t *
zframe(const void *p, size_t n, bool size_flag, size_t *len)
{
  ZSTD_CCtx *c = ZSTD_createCCtx();
  size_t cap = ZSTD_compressBound(n);
  uint8_t *out = malloc(cap);
  ZSTD_outBuffer o = { out, cap, 0 };
  ZSTD_inBuffer in = { p, n, 0 };

  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, size_flag);
  if (ZSTD_compressStream2(c, &o, &in, ZSTD_e_end) != 0)
    abort();
  ZSTD_freeCCtx(c);
  *len = o.pos;
  return out;
}

/* The table blob of z without sn_dense_table_encode's checks. */
static uint8_t *
raw_table(struct sn_ztoc *z, size_t *len)
{
  size_t n;
  uint8_t *fb = flat(z, &n), *out = zframe(fb, n, true, len);

  free(fb);
  sn_ztoc_free(z);
  return out;
}

static void
table_bad(const char *what, uint8_t *blob, size_t len, const char *want)
{
  struct sn_ztoc *d = sn_dense_table_decode(blob, len);

  OK(d == NULL && msg_has(want), "%s refused: %s", what, WHY);
  sn_ztoc_free(d);
  free(blob);
}

/* A valid zstd frame of 1 GiB of zeros, in 8192 RLE blocks (32 KiB). */
static uint8_t *
gib_frame(size_t *len)
{
  size_t i, n = 4 + 1 + 4 + 8192 * 4;
  uint8_t *b = malloc(n), *p = b;

  sn_put_le(p, 0xFD2FB528u, 4);
  p[4] = 0xa0;                         /* 4-byte content size, one segment */
  sn_put_le(p + 5, (uint64_t) 1 << 30, 4);
  p += 9;
  for (i = 0; i < 8192; i++, p += 4) {
    sn_put_le(p, (i == 8191) | 1u << 1 | (uint32_t) 131072 << 3, 3);
    p[3] = 0;
  }
  *len = n;
  return b;
}

static void
test_table(void)
{
  struct sn_ztoc *z = model_ztoc(NULL, 0), *d;
  struct sn_zinfo *zi;
  uint8_t *blob = NULL, *fa, *fb;
  size_t len = 0, la, lb;

  OK(sn_dense_table_encode(z, &blob, &len) == 0 && len > 0,
     "encode a table: %zu bytes (%s)", len, ERR);
  fa = flat(z, &la);
  ok(ZSTD_getFrameContentSize(blob, len) == la &&
     ZSTD_findFrameCompressedSize(blob, len) == len,
     "one zstd frame declaring the FlatBuffer's %zu bytes", la);
  d = sn_dense_table_decode(blob, len);
  fb = d ? flat(d, &lb) : NULL;
  OK(d && fb && la == lb && memcmp(fa, fb, la) == 0,
     "decodes to an equal model (%s)", ERR);
  zi = d ? sn_zinfo_from_ztoc(d) : NULL;
  OK(zi && zi->nspans == NCP && zi->winref && zi->cp[0].window == NULL &&
     zi->windows_size == WSIZE && zi->winref[2].len == 202 &&
     zi->compressed_size == 5000,
     "sn_zinfo_from_ztoc takes the dense table (%s)", ERR);
  sn_zinfo_free(zi);
  sn_ztoc_free(d);
  free(fb);

  /* Hostile tables. */
  {
    struct sn_winref w[NCP];
    struct sn_zinfo *m = model_zinfo(w);
    uint8_t *soci;
    size_t sl;

    sn_zinfo_serialize_gzip(m, &soci, &sl);
    sn_zinfo_free(m);
    d = model_ztoc(soci, sl);
    zi = sn_zinfo_from_ztoc(d);
    OK(zi != NULL && zi->winref == NULL && zi->cp[0].window,
       "the same checkpoints as a SOCI blob: a SOCI zinfo (%s)", ERR);
    sn_zinfo_free(zi);
    OK(sn_dense_table_encode(d, &fb, &lb) == -1 && msg_has("not a dense"),
       "encode refuses SOCI checkpoints: %s", WHY);
    fb = raw_table(d, &lb);
  table_bad("a table with SOCI checkpoints", fb, lb, "not a dense");
    free(soci);
  }
  d = model_ztoc(NULL, 0);
  sn_bytes_clear(&d->span_digests[NCP - 1]);
  d->nspan_digests = NCP - 1;
  d->max_span_id = NCP - 2;
  OK(sn_dense_table_encode(d, &fb, &lb) == -1 && msg_has("checkpoints"),
     "encode refuses a span digest count != checkpoint count: %s", WHY);
  fb = raw_table(d, &lb);
  table_bad("4 span digests for 5 checkpoints", fb, lb, "5 checkpoints but max_span_id is 3");
  d = model_ztoc(NULL, 0);
  sn_bytes_clear(&d->span_digests[NCP - 1]);
  d->nspan_digests = NCP - 1;
  fb = raw_table(d, &lb);
  table_bad("4 span digests, max_span_id 4", fb, lb, "span digests");
  d = model_ztoc(NULL, 0);
  d->compressed_size = 3000;
  fb = raw_table(d, &lb);
  table_bad("a checkpoint past the layer end", fb, lb, "past the layer end");
  d = model_ztoc(NULL, 0);
  d->compression = SN_COMP_UNCOMPRESSED;
  fb = raw_table(d, &lb);
  table_bad("compression 'uncompressed'", fb, lb, "not a dense");

  fb = gib_frame(&lb);
  OK(ZSTD_getFrameContentSize(fb, lb) == (1ull << 30) &&
     ZSTD_findFrameCompressedSize(fb, lb) == lb,
     "a valid %zu-byte zstd frame of 1 GiB", lb);
  table_bad("a frame declaring 1 GiB", fb, lb, "declares 1073741824");
  fb = zframe(fa, la, false, &lb);
  table_bad("a frame without a content size", fb, lb, "content size");
  fb = malloc(len + 1);
  memcpy(fb, blob, len);
  fb[len] = 0;
  table_bad("a byte after the frame", fb, len + 1, "after the zstd frame");
  fb = malloc(len);
  memcpy(fb, blob, len);
  table_bad("a truncated frame", fb, len - 1, "zstd");
  fb = malloc(16);
  memset(fb, 0, 16);
  table_bad("zeros", fb, 16, "not a zstd frame");
  fb = zframe("not a ztoc", 10, true, &lb);
  table_bad("a frame of text", fb, lb, "ztoc");
  free(fa);
  free(blob);
  sn_ztoc_free(z);
}

/* Every single-bit flip and every truncation of a small table blob: an
 * equal model or a refusal with a message, never anything else. */
static void
test_table_flips(void)
{
  struct sn_ztoc *z = model_ztoc(NULL, 0), *d;
  uint8_t *blob, *fa, *fb;
  size_t len, la, lb, i, bad = 0, silent = 0, equal = 0, refused = 0;

  if (sn_dense_table_encode(z, &blob, &len) == -1)
    abort();
  fa = flat(z, &la);
  for (i = 0; i < len * 8 + len; i++) {
    uint8_t *b = malloc(len);
    size_t n = len;

    memcpy(b, blob, len);
    if (i < len * 8)
      b[i / 8] ^= (uint8_t) (1u << (i % 8));
    else
      n = i - len * 8;                 /* truncated to 0..len-1 bytes */
    sn_set_error("stale");
    d = sn_dense_table_decode(b, n);
    if (d == NULL) {
      refused++;
      if (strcmp(sn_error(), "stale") == 0 || strchr(sn_error(), '\n'))
        silent++;
    }
    else {
      fb = flat(d, &lb);
      if (lb == la && memcmp(fa, fb, la) == 0)
        equal++;
      else if (bad++ == 0)
        diag("flip/truncation %zu decodes to a different model", i);
      free(fb);
      sn_ztoc_free(d);
    }
    free(b);
  }
  ok(bad == 0 && silent == 0 && refused > 0, "%zu flips and %zu "
     "truncations of a %zu-byte table: %zu refused (%zu without a message), "
     "%zu equal, %zu different", len * 8, len, len, refused, silent, equal,
     bad);
  free(fa);
  free(blob);
  sn_ztoc_free(z);
}

/* ---- windows ----------------------------------------------------------- */

static void
ref_of(const uint8_t *f, size_t n, struct sn_winref *r)
{
  r->off = 0;
  r->len = (uint32_t) n;
  sn_sha256(f, n, r->digest);
}

static void
win_bad(const char *what, const struct sn_winref *r, uint8_t *f, size_t n,
        const char *want)
{
  static uint8_t w[SN_ZINFO_WINSIZE];

  OK(sn_dense_window_unpack(r, f, n, w) == -1 && msg_has(want),
     "%s refused: %s", what, WHY);
  free(f);
}

static void
test_windows(void)
{
  static uint8_t win[SN_ZINFO_WINSIZE], back[SN_ZINFO_WINSIZE];
  static uint8_t big[SN_ZINFO_WINSIZE + 1];
  struct sn_winref r;
  uint8_t *f = NULL, *g;
  size_t n, i, m;

  for (i = 0; i < sizeof win; i += 7)   /* sparse: most bytes zero */
    if (tap_xorshift(&rng) % 5 == 0)
      win[i] = (uint8_t) tap_xorshift(&rng);
  OK(sn_dense_window_pack(NULL, win, &f, &n) == 0 && n < 20000,
     "pack a sparse window: %zu bytes (%s)", n, ERR);
  ref_of(f, n, &r);
  r.off = 4242;
  OK(sn_dense_window_unpack(&r, f, n, back) == 0 &&
     memcmp(win, back, sizeof win) == 0, "unpacks to the same window (%s)",
     ERR);
  free(f);
  for (i = 0; i < sizeof win; i++)
    win[i] = (uint8_t) tap_xorshift(&rng);
  OK(sn_dense_window_pack(NULL, win, &f, &n) == 0 && n <= SN_DENSE_WIN_MAX_FRAME &&
     n > SN_ZINFO_WINSIZE, "an incompressible window: %zu bytes, within "
     "SN_DENSE_WIN_MAX_FRAME (%s)", n, ERR);
  ref_of(f, n, &r);
  OK(sn_dense_window_unpack(&r, f, n, back) == 0 &&
     memcmp(win, back, sizeof win) == 0, "and unpacks (%s)", ERR);

  g = malloc(n);
  memcpy(g, f, n);
  g[n / 2] ^= 1;
  win_bad("a frame whose digest differs", &r, g, n, "digest");
  g = malloc(n);
  memcpy(g, f, n);
  win_bad("a frame of the wrong length and digest (digest first)", &r, g,
          n - 1, "digest");
  r.len = (uint32_t) n + 1;
  g = malloc(n);
  memcpy(g, f, n);
  win_bad("a frame shorter than its reference", &r, g, n, "expected");
  free(f);

  g = zframe(big, SN_ZINFO_WINSIZE - 1, true, &m);
  ref_of(g, m, &r);
  win_bad("a frame of 32767 bytes", &r, g, m, "32767");
  g = zframe(big, SN_ZINFO_WINSIZE + 1, true, &m);
  ref_of(g, m, &r);
  win_bad("a frame of 32769 bytes", &r, g, m, "32769");
  g = zframe(big, SN_ZINFO_WINSIZE, false, &m);
  ref_of(g, m, &r);
  win_bad("a frame without a content size", &r, g, m, "content size");
  g = zframe(big, SN_ZINFO_WINSIZE, true, &m);
  ref_of(g, m - 1, &r);
  win_bad("a truncated frame", &r, g, m - 1, "zstd");
  g = gib_frame(&m);
  ref_of(g, m, &r);
  win_bad("a frame declaring 1 GiB", &r, g, m, "declares");

  memset(&r, 0, sizeof r);
  memset(back, 0xff, sizeof back);
  OK(sn_dense_window_unpack(&r, NULL, 0, back) == 0 && back[0] == 0 &&
     back[SN_ZINFO_WINSIZE - 1] == 0, "no window (len 0): zeros (%s)", ERR);
  g = malloc(1);
  win_bad("bytes for a checkpoint without a window", &r, g, 1, "without");
}

/* ---- the formats carry what a reader needs: runs decoded -------------- */

/* data as a gzip stream (new buffer). */
static uint8_t *
gzip_of(const uint8_t *data, size_t n, size_t *len)
{
  z_stream z;
  size_t cap = n + n / 8 + 1024;
  uint8_t *out = malloc(cap);

  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    abort();
  z.next_in = (Bytef *) data;
  z.avail_in = (uInt) n;
  z.next_out = out;
  z.avail_out = (uInt) cap;
  if (deflate(&z, Z_FINISH) != Z_STREAM_END)
    abort();
  *len = cap - z.avail_out;
  deflateEnd(&z);
  return out;
}

/* A gzip layer's checkpoints at every block, its full windows packed as
 * the windows blob (a full window is a valid sparse one), the table
 * encoded and parsed back: every run of one or two spans decodes from the
 * parsed table and an unpacked window to the original bytes. */
static void
test_decode_run(void)
{
  static uint8_t tar[300000], out[300000], win[SN_ZINFO_WINSIZE];
  uint8_t *gz, *cpblob = NULL, *windows = NULL, (*dig)[SN_SHA256_LEN];
  struct sn_zinfo_builder *b = sn_zinfo_builder_new(SN_COMP_GZIP, 0, NULL,
                                                    NULL);
  struct sn_zinfo *zi = NULL, *p = NULL;
  struct sn_winref *w;
  size_t i, gzlen, wlen = 0, cplen = 0, first, runs = 0, good = 0;

  for (i = 0; i < sizeof tar; i++)     /* compressible, with matches */
    tar[i] = (uint8_t) "abcdefgh"[tap_xorshift(&rng) % 8];
  gz = gzip_of(tar, sizeof tar, &gzlen);
  if (sn_zinfo_builder_feed(b, gz, gzlen) ||
      sn_zinfo_builder_finish(b, &zi, &dig, NULL))
    abort();
  sn_zinfo_builder_free(b);
  free(dig);
  w = calloc(zi->nspans, sizeof *w);
  for (i = 1; i < zi->nspans; i++) {   /* checkpoint 0 needs no window */
    uint8_t *f;
    size_t n;

    if (sn_dense_window_pack(NULL, zi->cp[i].window, &f, &n))
      abort();
    windows = realloc(windows, wlen + n);
    memcpy(windows + wlen, f, n);
    ref_of(f, n, &w[i]);
    w[i].off = (int64_t) wlen;
    wlen += n;
    free(f);
  }
  OK(zi->nspans >= 4 && sn_dense_cp_encode(zi, w, (int64_t) wlen, &cpblob,
     &cplen) == 0 && (p = sn_dense_cp_parse(cpblob, cplen)) != NULL,
     "%zu checkpoints of a %zu-byte gzip, %zu bytes of windows: encoded "
     "and parsed (%s)", zi->nspans, gzlen, wlen, ERR);
  for (first = 0; p && first < p->nspans; first++) {
    size_t last = first + 1 < p->nspans ? first + 1 : first;
    const struct sn_winref *r = &p->winref[first];
    struct sn_span s0, s1;

    p->compressed_size = (int64_t) gzlen;
    p->uncompressed_size = sizeof tar;
    sn_zinfo_span(p, first, &s0);
    sn_zinfo_span(p, last, &s1);
    runs++;
    if (sn_dense_window_unpack(r, r->len ? windows + r->off : NULL, r->len,
                               win) == 0 &&
        sn_zinfo_decode_run(p, first, last, win, gz + s0.comp_start,
                            (size_t) (s1.comp_end - s0.comp_start), out,
                            (size_t) (s1.uncomp_end - s0.uncomp_start)) == 0 &&
        memcmp(out, tar + s0.uncomp_start,
               (size_t) (s1.uncomp_end - s0.uncomp_start)) == 0)
      good++;
    else
      diag("run %zu-%zu: %s", first, last, sn_error());
  }
  ok(runs > 0 && good == runs, "%zu of %zu runs decode from the parsed "
     "table and unpacked windows", good, runs);
  if (p && p->nspans > 2) {            /* and the wrong window breaks it */
    const struct sn_winref *r = &p->winref[2];
    struct sn_span s0;

    sn_zinfo_span(p, 2, &s0);
    memset(win, 0, sizeof win);
    ok(sn_zinfo_decode_run(p, 2, 2, win, gz + s0.comp_start,
                           (size_t) (s0.comp_end - s0.comp_start), out,
                           (size_t) (s0.uncomp_end - s0.uncomp_start)) == -1 ||
       memcmp(out, tar + s0.uncomp_start,
              (size_t) (s0.uncomp_end - s0.uncomp_start)) != 0,
       "span 2 with a zero window instead (frame of %" PRIu32 " bytes) "
       "decodes wrong", r->len);
  }
  sn_zinfo_free(p);
  sn_zinfo_free(zi);
  free(cpblob);
  free(windows);
  free(w);
  free(gz);
}

/* A zstd layer's table: flag 1, frame starts, no window; it comes back
 * SN_COMP_ZSTD, and what a zstd table may not hold is refused. */
static void
test_cp_zstd(void)
{
  struct sn_winref w[NCP];
  struct sn_zinfo *zi = model_zinfo(w), *back;
  uint8_t *b = NULL;
  size_t len = 0, i;

  zi->compression = SN_COMP_ZSTD;
  memset(w, 0, sizeof w);
  for (i = 0; i < NCP; i++)
    zi->cp[i].bits = 0;
  zi->cp[0].in = 0;
  OK(sn_dense_cp_encode(zi, w, 0, &b, &len) == 0 &&
     sn_get_le(b + 12, 4) == SN_DENSE_CP_ZSTD && sn_get_le(b + 16, 8) == 0,
     "a zstd table: flags %u, no windows blob (%s)", SN_DENSE_CP_ZSTD, ERR);
  back = b ? sn_dense_cp_parse(b, len) : NULL;
  OK(back && back->compression == SN_COMP_ZSTD && back->nspans == NCP &&
     back->cp[3].in == zi->cp[3].in && back->winref[2].len == 0,
     "parsed back as zstd (%s)", ERR);
  sn_zinfo_free(back);
  if (b) {
    b[SN_DENSE_CP_HEADER_LEN + 2 * SN_DENSE_CP_RECORD_LEN + 16] = 3;
    back = sn_dense_cp_parse(b, len);
    OK(back == NULL && msg_has("leftover bits"),
       "a zstd checkpoint with leftover bits refused: %s", WHY);
    sn_zinfo_free(back);
  }
  free(b);
  b = NULL;
  w[1].len = 100;
  w[1].digest[0] = 1;
  OK(sn_dense_cp_encode(zi, w, 0, &b, &len) == -1 && msg_has("outside"),
     "a zstd checkpoint naming a window refused: %s", WHY);
  free(b);
  sn_zinfo_free(zi);
}

int
main(void)
{
  test_cp_roundtrip();
  test_cp_hostile();
  test_cp_zstd();
  test_table();
  test_table_flips();
  test_windows();
  test_decode_run();
  return done_testing();
}
