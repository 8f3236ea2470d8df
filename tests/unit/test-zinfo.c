/* soci-nbd tests: gzip checkpoints, span geometry, span decoding and the
 * streaming checkpoint builder (lib/soci/zinfo.c), against the vectors of
 * docs/soci-format.md §6 and against multi-member gzip made here. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include <zlib.h>

#include "util/digest.h"
#include "util/err.h"
#include "tap.h"
#include "soci/zinfo.h"

#define A_BLOB "de7173e022eda6dd50fae431dedbba7982c408691d8e982c89c1ddb5bf881f03"
#define A_SPAN0 "6e318423d6582e8f35e1c1f4ee4948f053430b25d8c0a84ac2b46086b3a196d3"
#define A4096_ZINFO "1b82c5f0664605f02d24db660cd63749778c33c86c58659365558cc5c77af700"
#define B_BLOB "0d4b4a975a663a4b4afae4bebe918e10582b982a9272cefd2a8864780d2a75a5"
#define B_ZINFO "12107c769cd63338801a3389f87b3ae222cad0c5ff2c7427223578d9e727c8f3"
#define ZERO_WINDOW "c35020473aed1b4642cd726cad727b63fff2824ad68cedd7ffb73c7cbd890479"

static const struct { int64_t in, out; int bits; const char *digest; } b_cp[] = {
  { 10, 0, 0, "3105f1fec67d7c6c1307856b29cabe19ff6eb1abea62b5940e79614856dd8d98" },
  { 158, 5000, 7, "ca07f73a38b39d4856948a86da889a6165ba32a6498429e5e90f974eb5fe232b" },
  { 209, 10000, 5, "4c839dec4aa290983ea6a5388788092c1ab5605b33a26484902665da0090da0f" },
  { 339, 15000, 4, "d6e325ed033f0ccbfee469fecd502e1e0716970a3f1df9947630362dc2837f93" },
  { 390, 20000, 2, "9d9b68bced179ab82750a7c3353c5ca597bf30d727b65d560c9fd892fc645c65" },
  { 441, 25000, 0, "db848968a071b92cbd338f4b8a4512450971ad8b5f1170548139223c345a9f22" },
  { 555, 30000, 6, "3ddcb205126c9cbf7b52ea85ed021640cf2598f3f445ba9e7e74857d31733f4b" },
};
#define B_NCP (sizeof b_cp / sizeof b_cp[0])

static const char *atar_digest[] = {
  "e77980154ce7b9e675ca092e50c9f5026b29ee702c61b0a53c83dfad6475b29a",
  "0ba11da0cb6ad1312cfd54a5a54901e7f6ad235a1c453883fd33f31f02a84e46",
  "e5a00aa9991ac8a5ee3109844d84a55583bd20572ad3ffcd42792f3c36b183ad",
};

/* ---- helpers ------------------------------------------------------------ */

static unsigned char *
load(const char *name, size_t *len)
{
  char path[512];

  snprintf(path, sizeof path, "%s/%s", DATADIR, name);
  return slurp(path, len);
}

static void
hex(const uint8_t d[SN_SHA256_LEN], char *out)
{
  char s[SN_DIGEST_STRLEN + 1];

  sn_digest_format(d, s);
  strcpy(out, s + 7);
}

static bool
sha_is(const void *data, size_t len, const char *want)
{
  uint8_t d[SN_SHA256_LEN];
  char s[65];

  sn_sha256(data, len, d);
  hex(d, s);
  return strcmp(s, want) == 0;
}

static bool
digest_is(const uint8_t d[SN_SHA256_LEN], const char *want)
{
  char s[65];

  hex(d, s);
  return strcmp(s, want) == 0;
}

static uint64_t rng_state;

static uint64_t
rng(void)
{
  return tap_xorshift(&rng_state);
}

/* Collects on_output into a growing buffer. */
struct sink {
  uint8_t *data;
  size_t len, cap;
  size_t calls;
  size_t fail_after;            /* fail on this call (1-based); 0 never */
};

static int
sink_out(void *opaque, const uint8_t *data, size_t len)
{
  struct sink *s = opaque;

  s->calls++;
  if (s->fail_after && s->calls >= s->fail_after)
    return sn_set_error("sink: refused");
  if (s->len + len > s->cap) {
    s->cap = (s->len + len) * 2;
    s->data = realloc(s->data, s->cap);
    if (s->data == NULL)
      abort();
  }
  memcpy(s->data + s->len, data, len);
  s->len += len;
  return 0;
}

/* The result of one builder run. */
struct run {
  int rc;
  struct sn_zinfo *zi;
  uint8_t (*digests)[SN_SHA256_LEN];
  uint8_t blob[SN_SHA256_LEN];
  struct sink out;
};

static void
run_clear(struct run *r)
{
  sn_zinfo_free(r->zi);
  free(r->digests);
  free(r->out.data);
  memset(r, 0, sizeof *r);
}

enum chunking { WHOLE, BYTES, RANDOM };

/* Run the builder over data fed in chunks as described. */
static void
build(struct run *r, enum sn_compression comp, int64_t span,
      const uint8_t *data, size_t len, enum chunking how)
{
  struct sn_zinfo_builder *b;
  size_t pos = 0;

  memset(r, 0, sizeof *r);
  r->rc = -1;
  b = sn_zinfo_builder_new(comp, span, sink_out, &r->out);
  if (b == NULL)
    return;
  while (pos < len) {
    size_t n = len - pos;

    if (how == BYTES)
      n = 1;
    else if (how == RANDOM) {
      /* Mostly small, sometimes large enough for the hashing thread. */
      uint64_t k = rng() % 8;
      size_t max = k == 0 ? 300000 : k < 3 ? 70000 : 300;
      n = (size_t) (rng() % (max + 1));   /* 0 included on purpose */
      if (n > len - pos)
        n = len - pos;
    }
    if (sn_zinfo_builder_feed(b, data + pos, n) == -1)
      goto out;
    pos += n;
  }
  r->rc = sn_zinfo_builder_finish(b, &r->zi, &r->digests, r->blob);
out:
  sn_zinfo_builder_free(b);
}

static bool
same_run(const struct run *a, const struct run *b)
{
  size_t i;

  if (a->rc != 0 || b->rc != 0 || a->zi->nspans != b->zi->nspans ||
      a->zi->compressed_size != b->zi->compressed_size ||
      memcmp(a->blob, b->blob, SN_SHA256_LEN) != 0 ||
      a->out.len != b->out.len || memcmp(a->out.data, b->out.data,
                                         a->out.len) != 0)
    return false;
  for (i = 0; i < a->zi->nspans; i++) {
    if (memcmp(a->digests[i], b->digests[i], SN_SHA256_LEN) != 0)
      return false;
    if (a->zi->compression == SN_COMP_GZIP &&
        (a->zi->cp[i].in != b->zi->cp[i].in ||
         a->zi->cp[i].out != b->zi->cp[i].out ||
         a->zi->cp[i].bits != b->zi->cp[i].bits ||
         memcmp(a->zi->cp[i].window, b->zi->cp[i].window,
                SN_ZINFO_WINSIZE) != 0))
      return false;
  }
  return true;
}

static bool
serializes_to(const struct sn_zinfo *zi, const uint8_t *want, size_t len)
{
  uint8_t *buf;
  size_t n;
  bool r;

  if (sn_zinfo_serialize_gzip(zi, &buf, &n) == -1)
    return false;
  r = n == len && memcmp(buf, want, n) == 0;
  free(buf);
  return r;
}

/* Every span's digest is the hash of its compressed bytes, and every span
 * decodes to its slice of the uncompressed data. */
static bool
spans_check(const struct sn_zinfo *zi, uint8_t (*digests)[SN_SHA256_LEN],
            const uint8_t *comp, const uint8_t *plain, size_t *nbad)
{
  size_t i;

  *nbad = 0;
  for (i = 0; i < zi->nspans; i++) {
    struct sn_span s;
    uint8_t d[SN_SHA256_LEN], *buf;
    size_t olen;

    sn_zinfo_span(zi, i, &s);
    olen = (size_t) (s.uncomp_end - s.uncomp_start);
    buf = malloc(olen + 1);
    if (digests) {
      sn_sha256(comp + s.comp_start, (size_t) (s.comp_end - s.comp_start), d);
      if (memcmp(d, digests[i], SN_SHA256_LEN) != 0)
        ++*nbad;
    }
    if (sn_zinfo_decode_span(zi, i, comp + s.comp_start,
                             (size_t) (s.comp_end - s.comp_start),
                             buf, olen) == -1) {
      diag("span %zu: %s", i, sn_error());
      ++*nbad;
    }
    else if (memcmp(buf, plain + s.uncomp_start, olen) != 0)
      ++*nbad;
    free(buf);
  }
  return *nbad == 0;
}

/* ---- parse / serialize -------------------------------------------------- */

static void
test_parse(const uint8_t *azi, size_t azi_len, const uint8_t *bzi,
           size_t bzi_len, const uint8_t *btar)
{
  struct sn_zinfo *zi;
  size_t i;
  bool good;

  zi = sn_zinfo_parse_gzip(azi, azi_len);
  ok(zi != NULL && zi->nspans == 1 && zi->span_size == 4194304 &&
     zi->compression == SN_COMP_GZIP, "A.zinfo: 1 checkpoint, span 4 MiB");
  ok(zi && zi->cp[0].in == 10 && zi->cp[0].out == 0 && zi->cp[0].bits == 0 &&
     sha_is(zi->cp[0].window, SN_ZINFO_WINSIZE, ZERO_WINDOW),
     "A.zinfo: checkpoint {10, 0, 0, zero window}");
  ok(zi && serializes_to(zi, azi, azi_len), "A.zinfo serializes back");
  sn_zinfo_free(zi);

  zi = sn_zinfo_parse_gzip(bzi, bzi_len);
  ok(zi != NULL && zi->nspans == B_NCP && zi->span_size == 4096,
     "B.zinfo: 7 checkpoints, span 4096");
  good = zi != NULL;
  for (i = 0; good && i < B_NCP; i++) {
    const struct sn_checkpoint *c = &zi->cp[i];
    size_t pad = SN_ZINFO_WINSIZE - (size_t) c->out;
    uint8_t *z = calloc(1, pad);

    good = c->in == b_cp[i].in && c->out == b_cp[i].out &&
           c->bits == b_cp[i].bits && memcmp(c->window, z, pad) == 0 &&
           memcmp(c->window + pad, btar, (size_t) c->out) == 0;
    free(z);
  }
  ok(good, "B.zinfo: checkpoint table and windows of the reference");
  ok(zi && serializes_to(zi, bzi, bzi_len), "B.zinfo serializes back");
  ok(sha_is(bzi, bzi_len, B_ZINFO), "B.zinfo is the reference blob");
  sn_zinfo_free(zi);
}

static void
put32(uint8_t *p, uint32_t v)
{
  int i;

  for (i = 0; i < 4; i++, v >>= 8)
    p[i] = (uint8_t) v;
}

static void
put64(uint8_t *p, uint64_t v)
{
  int i;

  for (i = 0; i < 8; i++, v >>= 8)
    p[i] = (uint8_t) v;
}

static void
test_parse_hostile(const uint8_t *bzi, size_t bzi_len)
{
  uint8_t *buf = malloc(bzi_len + 1);
  const size_t cp1 = SN_ZINFO_HEADER_LEN + SN_ZINFO_CP_LEN;
  struct sn_zinfo *zi;
  size_t n, bad = 0;
  uint8_t *ser;

  ok(sn_zinfo_parse_gzip(NULL, 0) == NULL, "parse: NULL rejected");
  for (n = 0; n < SN_ZINFO_HEADER_LEN + 40; n++)
    if (sn_zinfo_parse_gzip(bzi, n) != NULL)
      bad++;
  ok(bad == 0, "parse: every short prefix rejected");
  ok(sn_zinfo_parse_gzip(bzi, bzi_len - 1) == NULL &&
     sn_zinfo_parse_gzip(bzi, bzi_len - SN_ZINFO_CP_LEN + 1) == NULL,
     "parse: length off by one rejected (%s)", sn_error());

  memcpy(buf, bzi, bzi_len);
  put32(buf, 0);
  ok(sn_zinfo_parse_gzip(buf, SN_ZINFO_HEADER_LEN) == NULL,
     "parse: count 0 rejected (%s)", sn_error());
  put32(buf, 0xffffffff);
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL, "parse: count -1 rejected");
  put32(buf, 0x7fffffff);
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: absurd count rejected (%s)", sn_error());
  put32(buf, 9);
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: count 9 with 7 checkpoints rejected");

  memcpy(buf, bzi, bzi_len);
  put64(buf + 4, (uint64_t) -1);
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: negative span size rejected");

  memcpy(buf, bzi, bzi_len);
  buf[cp1 + 16] = 8;
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: bits 8 rejected (%s)", sn_error());

  memcpy(buf, bzi, bzi_len);
  put64(buf + cp1 + 2 * SN_ZINFO_CP_LEN, 100);   /* in[3] < in[2] */
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: decreasing in rejected (%s)", sn_error());

  memcpy(buf, bzi, bzi_len);
  put64(buf + cp1 + 8, 4000);                    /* out[1] < ... fine */
  put64(buf + cp1 + SN_ZINFO_CP_LEN + 8, 3000);  /* out[2] < out[1] */
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: decreasing out rejected");

  memcpy(buf, bzi, bzi_len);
  put64(buf + cp1, (uint64_t) -5);
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: negative in rejected");

  memcpy(buf, bzi, bzi_len);
  put64(buf + SN_ZINFO_HEADER_LEN + 8, 7);
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: checkpoint 0 not at out 0 rejected");

  memcpy(buf, bzi, bzi_len);
  put64(buf + SN_ZINFO_HEADER_LEN, 0);
  buf[SN_ZINFO_HEADER_LEN + 16] = 3;
  ok(sn_zinfo_parse_gzip(buf, bzi_len) == NULL,
     "parse: bits with in 0 rejected");

  /* Legacy v1: B's blob without checkpoint 0 (count still 7). */
  memcpy(buf, bzi, SN_ZINFO_HEADER_LEN);
  memcpy(buf + SN_ZINFO_HEADER_LEN, bzi + cp1, bzi_len - cp1);
  zi = sn_zinfo_parse_gzip(buf, bzi_len - SN_ZINFO_CP_LEN);
  ok(zi != NULL && zi->nspans == 7 && zi->cp[0].in == 10 &&
     zi->cp[0].out == 0 && zi->cp[0].bits == 0 && zi->cp[6].in == 555,
     "parse: legacy v1 blob, checkpoint 0 implied");
  ok(zi && serializes_to(zi, bzi, bzi_len),
     "parse: v1 blob re-serialized as the v2 blob");
  sn_zinfo_free(zi);

  /* Serialize refuses what it cannot write. */
  {
    struct sn_zinfo z = { .compression = SN_COMP_UNCOMPRESSED, .nspans = 1 };
    ok(sn_zinfo_serialize_gzip(&z, &ser, &n) == -1,
       "serialize: uncompressed zinfo rejected");
  }
  free(buf);
}

/* ---- the builder on the vectors ----------------------------------------- */

static void
test_build_vectors(const uint8_t *agz, size_t agz_len, const uint8_t *atar,
                   size_t atar_len, const uint8_t *azi, size_t azi_len,
                   const uint8_t *bgz, size_t bgz_len, const uint8_t *btar,
                   size_t btar_len, const uint8_t *bzi, size_t bzi_len)
{
  struct run r, r2;
  uint8_t *a4096 = malloc(azi_len);
  size_t n, i, seed;
  bool good;

  build(&r, SN_COMP_GZIP, 4194304, agz, agz_len, WHOLE);
  ok(r.rc == 0 && serializes_to(r.zi, azi, azi_len),
     "build A.tar.gz span 4 MiB: A.zinfo byte for byte");
  ok(r.rc == 0 && r.zi->nspans == 1 && digest_is(r.digests[0], A_SPAN0),
     "build A: span[0] digest");
  ok(r.rc == 0 && digest_is(r.blob, A_BLOB) &&
     r.zi->compressed_size == (int64_t) agz_len &&
     r.zi->uncompressed_size == 0, "build A: blob digest and sizes");
  ok(r.out.len == atar_len && memcmp(r.out.data, atar, atar_len) == 0,
     "build A: output stream is A.tar");
  run_clear(&r);

  build(&r, SN_COMP_GZIP, 4096, agz, agz_len, WHOLE);
  memcpy(a4096, azi, azi_len);
  put64(a4096 + 4, 4096);
  ok(r.rc == 0 && serializes_to(r.zi, a4096, azi_len) &&
     sha_is(a4096, azi_len, A4096_ZINFO),
     "build A.tar.gz span 4096: blob sha256 %.12s...", A4096_ZINFO);
  ok(r.rc == 0 && r.zi->nspans == 1 && digest_is(r.digests[0], A_SPAN0),
     "build A span 4096: span[0] digest");
  run_clear(&r);

  build(&r, SN_COMP_GZIP, 4096, bgz, bgz_len, WHOLE);
  ok(r.rc == 0 && serializes_to(r.zi, bzi, bzi_len),
     "build B.tar.gz span 4096: B.zinfo byte for byte");
  good = r.rc == 0 && r.zi->nspans == B_NCP;
  for (i = 0; good && i < B_NCP; i++)
    good = digest_is(r.digests[i], b_cp[i].digest);
  ok(good, "build B: all 7 span digests");
  ok(r.rc == 0 && digest_is(r.blob, B_BLOB), "build B: blob digest");
  ok(r.out.len == btar_len && memcmp(r.out.data, btar, btar_len) == 0,
     "build B: output stream is B.tar");
  if (r.rc == 0) {
    r.zi->uncompressed_size = (int64_t) btar_len;
    good = spans_check(r.zi, r.digests, bgz, btar, &n);
    ok(good, "build B: every span decodes to its slice of B.tar (%zu bad)", n);
  }
  else
    ok(0, "build B: every span decodes");

  /* Chunking must not matter. */
  build(&r2, SN_COMP_GZIP, 4096, bgz, bgz_len, BYTES);
  ok(same_run(&r, &r2), "build B fed 1 byte at a time: identical");
  run_clear(&r2);
  good = true;
  for (seed = 1; seed <= 20; seed++) {
    rng_state = seed * 0x9e3779b97f4a7c15ULL;
    build(&r2, SN_COMP_GZIP, 4096, bgz, bgz_len, RANDOM);
    good = good && same_run(&r, &r2);
    run_clear(&r2);
  }
  ok(good, "build B in random chunk sizes (20 runs): identical");
  run_clear(&r);

  build(&r, SN_COMP_GZIP, 4194304, agz, agz_len, WHOLE);
  build(&r2, SN_COMP_GZIP, 4194304, agz, agz_len, BYTES);
  ok(same_run(&r, &r2), "build A fed 1 byte at a time: identical");
  run_clear(&r2);
  rng_state = 42;
  build(&r2, SN_COMP_GZIP, 4194304, agz, agz_len, RANDOM);
  ok(same_run(&r, &r2), "build A in random chunks: identical");
  run_clear(&r2);
  run_clear(&r);

  /* B has a block boundary every 2500 bytes, and one more at 30720
   * before an empty final block.  Span 0: a checkpoint at every boundary
   * that produced output; the comparison is strictly greater. */
  for (i = 0; i < 4; i++) {
    static const int64_t span[] = { 0, 2500, 4999, 5000 };
    static const int64_t step[] = { 2500, 5000, 5000, 7500 };
    size_t k, want = (size_t) (30000 / step[i] + 1) + (span[i] == 0);

    build(&r, SN_COMP_GZIP, span[i], bgz, bgz_len, WHOLE);
    good = r.rc == 0 && r.zi->span_size == span[i] && r.zi->nspans == want;
    for (k = 0; good && k < r.zi->nspans; k++)
      good = r.zi->cp[k].out == (k * step[i] <= 30000 ? (int64_t) k * step[i]
                                                      : 30720);
    ok(good, "build B span %" PRId64 ": %zu checkpoints, every %" PRId64
       " bytes", span[i], want, step[i]);
    if (good) {
      r.zi->uncompressed_size = (int64_t) btar_len;
      ok(spans_check(r.zi, r.digests, bgz, btar, &n),
         "build B span %" PRId64 ": every span decodes and hashes right",
         span[i]);
    }
    run_clear(&r);
  }

  free(a4096);
}

/* ---- zinfo of a ztoc, geometry ---------------------------------------- */

static void
fake_ztoc(struct sn_ztoc *z, struct sn_bytes *digs, size_t ndig,
          enum sn_compression comp, int64_t csize, int64_t usize,
          int32_t max_span_id, const uint8_t *cps, size_t cps_len)
{
  memset(z, 0, sizeof *z);
  z->compression = comp;
  z->compressed_size = csize;
  z->uncompressed_size = usize;
  z->max_span_id = max_span_id;
  z->span_digests = digs;
  z->nspan_digests = ndig;
  z->checkpoints = (uint8_t *) cps;
  z->checkpoints_len = cps_len;
}

static void
test_from_ztoc(const uint8_t *bzi, size_t bzi_len, const uint8_t *bgz,
               size_t bgz_len, const uint8_t *btar, size_t btar_len,
               const uint8_t *atar, size_t atar_len)
{
  struct sn_bytes digs[8];
  struct sn_ztoc z;
  struct sn_zinfo *zi;
  struct sn_span s;
  uint8_t *buf = malloc(bzi_len), *tz, *out;
  size_t n, i, tz_len;
  bool good;
  int64_t off;

  memset(digs, 0, sizeof digs);
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, (int64_t) bgz_len,
            (int64_t) btar_len, 6, bzi, bzi_len);
  zi = sn_zinfo_from_ztoc(&z);
  ok(zi != NULL && zi->nspans == 7 && zi->compressed_size == 573 &&
     zi->uncompressed_size == 30720, "from_ztoc B: 7 spans, sizes copied");
  if (zi == NULL) {
    diag("%s", sn_error());
    free(buf);
    return;
  }
  good = true;
  for (i = 0; i < B_NCP; i++) {
    sn_zinfo_span(zi, i, &s);
    good = good && s.comp_start == b_cp[i].in - (b_cp[i].bits ? 1 : 0) &&
           s.comp_end == (i + 1 < B_NCP ? b_cp[i + 1].in : 573) &&
           s.uncomp_start == (int64_t) i * 5000 &&
           s.uncomp_end == (i + 1 < B_NCP ? (int64_t) (i + 1) * 5000 : 30720);
  }
  ok(good, "from_ztoc B: span geometry of the reference");
  ok(spans_check(zi, NULL, bgz, btar, &n),
     "from_ztoc B: every span decodes to its slice of B.tar");

  good = true;
  for (off = 0; off < 31000; off += 37) {
    size_t want = 0;
    for (i = 0; i < zi->nspans; i++)
      if (zi->cp[i].out <= off)
        want = i;
    good = good && sn_zinfo_span_of(zi, off) == want;
  }
  ok(good && sn_zinfo_span_of(zi, 4999) == 0 &&
     sn_zinfo_span_of(zi, 5000) == 1 && sn_zinfo_span_of(zi, 30000) == 6 &&
     sn_zinfo_span_of(zi, -1) == 0 && sn_zinfo_span_of(zi, INT64_MAX) == 6,
     "span_of agrees with a linear scan");

  /* decode_span refuses wrong sizes and bad data without crashing. */
  sn_zinfo_span(zi, 2, &s);
  out = malloc(5000);
  ok(sn_zinfo_decode_span(zi, 2, bgz + s.comp_start, 130, out, 5000) == -1,
     "decode: wrong compressed length rejected (%s)", sn_error());
  ok(sn_zinfo_decode_span(zi, 2, bgz + s.comp_start, 131, out, 4999) == -1,
     "decode: wrong output length rejected");
  ok(sn_zinfo_decode_span(zi, 7, bgz, 1, out, 1) == -1,
     "decode: span out of range rejected");
  {
    uint8_t junk[200];
    memset(junk, 0xff, sizeof junk);
    good = true;
    for (i = 0; i < B_NCP; i++) {
      sn_zinfo_span(zi, i, &s);
      n = (size_t) (s.uncomp_end - s.uncomp_start);
      good = good && sn_zinfo_decode_span(zi, i, junk, (size_t) (s.comp_end - s.comp_start),
                                          out, n) == -1;
    }
    ok(good, "decode: 0xff garbage in every span rejected (%s)", sn_error());
  }
  {
    uint8_t copy[200];
    size_t flips = 0, caught = 0;

    for (i = 0; i < B_NCP; i++) {
      size_t clen, j;
      sn_zinfo_span(zi, i, &s);
      clen = (size_t) (s.comp_end - s.comp_start);
      n = (size_t) (s.uncomp_end - s.uncomp_start);
      for (j = 0; j < clen; j++) {
        memcpy(copy, bgz + s.comp_start, clen);
        copy[j] ^= (uint8_t) (1u << (j % 8));
        flips++;
        if (sn_zinfo_decode_span(zi, i, copy, clen, out, n) == -1 ||
            memcmp(out, btar + s.uncomp_start, n) != 0)
          caught++;
      }
    }
    diag("bit flips in spans: %zu of %zu changed or failed the decode",
         caught, flips);
    ok(1, "decode: single bit flips in every span byte, no crash");
  }
  /* Short spans: the geometry says fewer bytes than the data needs. */
  zi->compressed_size = 565;
  sn_zinfo_span(zi, 6, &s);
  ok(sn_zinfo_decode_span(zi, 6, bgz + s.comp_start,
                          (size_t) (s.comp_end - s.comp_start), out, 720) == 0,
     "decode: last span decodes without its gzip trailer");
  zi->compressed_size = 560;
  ok(sn_zinfo_decode_span(zi, 6, bgz + s.comp_start, 6, out, 720) == -1,
     "decode: short last span rejected (%s)", sn_error());
  zi->compressed_size = 573;
  zi->cp[3].in = 300;
  sn_zinfo_span(zi, 2, &s);
  ok(sn_zinfo_decode_span(zi, 2, bgz + s.comp_start,
                          (size_t) (s.comp_end - s.comp_start),
                          out, 5000) == -1,
     "decode: short middle span rejected (%s)", sn_error());
  free(out);
  sn_zinfo_free(zi);

  /* Inconsistent ztocs. */
  fake_ztoc(&z, digs, 6, SN_COMP_GZIP, 573, 30720, 6, bzi, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc: 6 digests for 7 spans (%s)",
     sn_error());
  fake_ztoc(&z, digs, 6, SN_COMP_GZIP, 573, 30720, 5, bzi, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL,
     "from_ztoc: max_span_id 5 with 7 checkpoints (%s)", sn_error());
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, 500, 30720, 6, bzi, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL,
     "from_ztoc: checkpoint past compressed size (%s)", sn_error());
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, -1, 30720, 6, bzi, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc: negative size");
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, 573, 30720, -1, bzi, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc: negative max_span_id");
  fake_ztoc(&z, digs, 7, (enum sn_compression) 3, 573, 30720, 6, bzi,
            bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc: unknown compression");
  memcpy(buf, bzi, bzi_len);
  put64(buf + SN_ZINFO_HEADER_LEN + 3 * SN_ZINFO_CP_LEN + 8, 10000);
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, 573, 30720, 6, buf, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc: empty span (%s)",
     sn_error());
  memcpy(buf, bzi, bzi_len);
  put64(buf + SN_ZINFO_HEADER_LEN + 6 * SN_ZINFO_CP_LEN, 441);
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, 573, 30720, 6, buf, bzi_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL,
     "from_ztoc: empty compressed span rejected (%s)", sn_error());
  /* A checkpoint past the tar end (record padding) is tolerated. */
  fake_ztoc(&z, digs, 7, SN_COMP_GZIP, 573, 29000, 6, bzi, bzi_len);
  zi = sn_zinfo_from_ztoc(&z);
  if (zi)
    sn_zinfo_span(zi, 6, &s);
  ok(zi != NULL && s.uncomp_start == 30000 && s.uncomp_end == 30000,
     "from_ztoc: last span past the tar end is empty, not negative");
  sn_zinfo_free(zi);

  /* Uncompressed: TarZinfo {2, 4096, 10240}, tar end 6144. */
  tz = load("tarzinfo.bin", &tz_len);
  fake_ztoc(&z, digs, 3, SN_COMP_UNCOMPRESSED, (int64_t) atar_len, 6144, 2,
            tz, tz_len);
  zi = sn_zinfo_from_ztoc(&z);
  ok(zi != NULL && zi->nspans == 3 && zi->span_size == 4096 &&
     zi->compressed_size == 10240 && zi->uncompressed_size == 6144,
     "from_ztoc Atar: 3 fixed spans of 4096");
  if (zi) {
    struct sn_span s0, s2;
    uint8_t o[4096];

    sn_zinfo_span(zi, 0, &s0);
    sn_zinfo_span(zi, 2, &s2);
    ok(s0.comp_start == 0 && s0.comp_end == 4096 && s0.uncomp_end == 4096 &&
       s2.comp_start == 8192 && s2.comp_end == 10240 &&
       s2.uncomp_start == 8192 && s2.uncomp_end == 8192,
       "Atar geometry: last span [8192,10240) holds no tar data");
    ok(sn_zinfo_span_of(zi, 0) == 0 && sn_zinfo_span_of(zi, 4095) == 0 &&
       sn_zinfo_span_of(zi, 4096) == 1 && sn_zinfo_span_of(zi, 6143) == 1 &&
       sn_zinfo_span_of(zi, 99999) == 2, "Atar span_of");
    sn_zinfo_span(zi, 1, &s);
    ok(sn_zinfo_decode_span(zi, 1, atar + 4096, 4096, o, 4096) == 0 &&
       memcmp(o, atar + 4096, 4096) == 0 &&
       sn_zinfo_decode_span(zi, 2, atar + 8192, 2048, o, 0) == 0,
       "Atar decode_span copies");
  }
  sn_zinfo_free(zi);
  fake_ztoc(&z, digs, 2, SN_COMP_UNCOMPRESSED, 10240, 6144, 1, tz, tz_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc Atar: max_span_id 1 (%s)",
     sn_error());
  fake_ztoc(&z, digs, 3, SN_COMP_UNCOMPRESSED, 10241, 6144, 2, tz, tz_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc Atar: size mismatch");
  fake_ztoc(&z, digs, 3, SN_COMP_UNCOMPRESSED, 10240, 10241, 2, tz, tz_len);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc Atar: tar end past the end");
  fake_ztoc(&z, digs, 3, SN_COMP_UNCOMPRESSED, 10240, 6144, 2, bzi, 40);
  ok(sn_zinfo_from_ztoc(&z) == NULL, "from_ztoc Atar: bad TarZinfo");
  free(tz);
  free(buf);
}

/* ---- uncompressed builder ----------------------------------------------- */

static void
test_build_tar(const uint8_t *atar, size_t atar_len)
{
  struct run r, r2;
  size_t i;
  bool good;

  build(&r, SN_COMP_UNCOMPRESSED, 4096, atar, atar_len, WHOLE);
  good = r.rc == 0 && r.zi->nspans == 3 && r.zi->cp == NULL &&
         r.zi->compression == SN_COMP_UNCOMPRESSED &&
         r.zi->span_size == 4096 && r.zi->compressed_size == 10240;
  for (i = 0; good && i < 3; i++)
    good = digest_is(r.digests[i], atar_digest[i]);
  ok(good, "build A.tar uncompressed span 4096: the 3 Atar span digests");
  ok(r.out.len == atar_len && memcmp(r.out.data, atar, atar_len) == 0,
     "build A.tar: input passed through");
  build(&r2, SN_COMP_UNCOMPRESSED, 4096, atar, atar_len, BYTES);
  ok(same_run(&r, &r2), "build A.tar 1 byte at a time: identical");
  run_clear(&r2);
  rng_state = 7;
  build(&r2, SN_COMP_UNCOMPRESSED, 4096, atar, atar_len, RANDOM);
  ok(same_run(&r, &r2), "build A.tar random chunks: identical");
  run_clear(&r2);
  run_clear(&r);

  build(&r, SN_COMP_UNCOMPRESSED, 4096, atar, 8192, WHOLE);
  ok(r.rc == 0 && r.zi->nspans == 2 && digest_is(r.digests[1], atar_digest[1]),
     "build 8192 bytes, span 4096: exactly 2 spans");
  run_clear(&r);
  build(&r, SN_COMP_UNCOMPRESSED, 1 << 20, atar, atar_len, WHOLE);
  ok(r.rc == 0 && r.zi->nspans == 1, "build A.tar span 1 MiB: 1 span");
  run_clear(&r);
  build(&r, SN_COMP_UNCOMPRESSED, 4096, atar, 0, WHOLE);
  ok(r.rc == -1, "build empty uncompressed layer: error (%s)", sn_error());
  run_clear(&r);
  ok(sn_zinfo_builder_new(SN_COMP_UNCOMPRESSED, 0, NULL, NULL) == NULL &&
     sn_zinfo_builder_new(SN_COMP_GZIP, -1, NULL, NULL) == NULL &&
     sn_zinfo_builder_new((enum sn_compression) 0, 4096, NULL, NULL) == NULL,
     "builder_new: bad span sizes and compression rejected");
}

/* ---- multi-member gzip -------------------------------------------------- */

/* Compress src as one gzip member; flush every `every` bytes (0: never). */
static size_t
gz_member(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, int level,
          int flush, size_t every)
{
  z_stream s;
  size_t pos = 0;
  int ret;

  memset(&s, 0, sizeof s);
  if (deflateInit2(&s, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    abort();
  s.next_out = dst;
  s.avail_out = (uInt) cap;
  do {
    size_t k = every && n - pos > every ? every : n - pos;
    int f = pos + k == n ? Z_FINISH : flush;

    s.next_in = (Bytef *) src + pos;
    s.avail_in = (uInt) k;
    ret = deflate(&s, f);
    if (ret == Z_STREAM_ERROR || s.avail_in != 0)
      abort();
    pos += k;
  } while (pos < n);
  if (ret != Z_STREAM_END)
    abort();
  n = cap - s.avail_out;
  deflateEnd(&s);
  return n;
}

/* Compressible, varied text: words and numbers. */
static void
make_text(uint8_t *p, size_t n)
{
  static const char *words[] = {
    "lorem", "ipsum", "dolor", "sit", "amet", "span", "checkpoint",
    "window", "inflate", "member", "gzip", "layer", "\n", "soci", "nbd",
  };
  size_t i = 0;

  while (i < n) {
    char w[32];
    int len;

    if (rng() % 5 == 0)
      len = snprintf(w, sizeof w, "%u ", (unsigned) (rng() % 100000));
    else
      len = snprintf(w, sizeof w, "%s ", words[rng() % 15]);
    for (int j = 0; j < len && i < n; j++)
      p[i++] = (uint8_t) w[j];
  }
}

static void
test_multi_member(void)
{
  const size_t n = 400000;
  uint8_t *plain = malloc(n), *gz = malloc(2 * n + 65536);
  size_t cap = 2 * n + 65536, len = 0, nmem = 0, i;
  size_t mend[8];                       /* compressed end of each member */
  static const int64_t spans[] = { 0, 1000, 4096, 65536, 1 << 20 };
  struct run r, r2;

  rng_state = 12345;
  make_text(plain, n);
  /* Members: default; empty; full flush every 3000; partial flush every
   * 2500 at level 1; level 9 with a sync flush; a tiny tail. */
  len += gz_member(gz + len, cap - len, plain, 100000, 6, Z_NO_FLUSH, 0);
  mend[nmem++] = len;
  len += gz_member(gz + len, cap - len, plain, 0, 6, Z_NO_FLUSH, 0);
  mend[nmem++] = len;
  len += gz_member(gz + len, cap - len, plain + 100000, 120000, 6,
                   Z_FULL_FLUSH, 3000);
  mend[nmem++] = len;
  len += gz_member(gz + len, cap - len, plain + 220000, 80000, 1,
                   Z_PARTIAL_FLUSH, 2500);
  mend[nmem++] = len;
  len += gz_member(gz + len, cap - len, plain + 300000, 99950, 9,
                   Z_SYNC_FLUSH, 40000);
  mend[nmem++] = len;
  len += gz_member(gz + len, cap - len, plain + 399950, 50, 6, Z_NO_FLUSH, 0);
  mend[nmem++] = len;

  for (i = 0; i < sizeof spans / sizeof spans[0]; i++) {
    size_t nbad = 0, straddle = 0, k, j;

    build(&r, SN_COMP_GZIP, spans[i], gz, len, WHOLE);
    ok(r.rc == 0 && r.out.len == n && memcmp(r.out.data, plain, n) == 0,
       "multi-member span %" PRId64 ": output is the whole data",
       spans[i]);
    if (r.rc != 0) {
      diag("%s", sn_error());
      run_clear(&r);
      continue;
    }
    r.zi->uncompressed_size = (int64_t) n;
    for (k = 0; k < r.zi->nspans; k++) {
      struct sn_span s;
      sn_zinfo_span(r.zi, k, &s);
      for (j = 0; j + 1 < nmem; j++)
        if (s.comp_start < (int64_t) mend[j] &&
            (int64_t) mend[j] < s.comp_end)
          straddle++;
    }
    ok(spans_check(r.zi, r.digests, gz, plain, &nbad),
       "multi-member span %" PRId64 ": %zu spans (%zu member boundaries "
       "inside spans) decode and hash right (%zu bad)",
       spans[i], r.zi->nspans, straddle, nbad);
    if (spans[i] == 65536 || spans[i] == 1 << 20)
      ok(straddle > 0, "multi-member span %" PRId64 ": some span straddles "
         "a member boundary", spans[i]);
    if (spans[i] == 65536) {
      /* Cut a span that continues past a member's end inside that
       * member's trailer. */
      static const int64_t pend[] = { 100000, 100000, 220000, 300000 };
      size_t kk = 0, jj = 0;
      bool found = false;

      for (k = 0; !found && k + 1 < r.zi->nspans; k++)
        for (j = 0; !found && j < 4; j++)
          if (r.zi->cp[k].out < pend[j] && r.zi->cp[k + 1].out > pend[j] &&
              r.zi->cp[k].in + 8 < (int64_t) mend[j])
            found = true, kk = k, jj = j;
      if (found) {
        int64_t saved = r.zi->cp[kk + 1].in;
        struct sn_span s;
        uint8_t *o;

        r.zi->cp[kk + 1].in = (int64_t) mend[jj] - 3;
        sn_zinfo_span(r.zi, kk, &s);
        o = malloc((size_t) (s.uncomp_end - s.uncomp_start));
        ok(sn_zinfo_decode_span(r.zi, kk, gz + s.comp_start,
                                (size_t) (s.comp_end - s.comp_start), o,
                                (size_t) (s.uncomp_end - s.uncomp_start))
           == -1 && strstr(sn_error(), "trailer") != NULL,
           "decode: span %zu cut inside a member trailer rejected (%s)",
           kk, sn_error());
        free(o);
        r.zi->cp[kk + 1].in = saved;
      }
      else
        ok(0, "no span continues past a member end");
    }
    if (spans[i] == 4096) {
      build(&r2, SN_COMP_GZIP, spans[i], gz, len, BYTES);
      ok(same_run(&r, &r2), "multi-member fed 1 byte at a time: identical");
      run_clear(&r2);
      rng_state = 99;
      build(&r2, SN_COMP_GZIP, spans[i], gz, len, RANDOM);
      ok(same_run(&r, &r2), "multi-member random chunks: identical");
      run_clear(&r2);
    }
    run_clear(&r);
  }
  free(plain);
  free(gz);
}

/* Every span decoded by the fast inflater (ISA-L when built with it) and
 * by zlib alone gives the plain bytes; *nfast: spans the fast one filled
 * itself (the rest fell back to zlib). */
static bool
inflaters_agree(const struct sn_zinfo *zi, const uint8_t *comp,
                const uint8_t *plain, size_t *nfast)
{
  uint64_t f0 = sn_zinfo_fast_decodes();
  bool good = true;
  size_t i;

  for (i = 0; i < zi->nspans; i++) {
    struct sn_span s;
    size_t olen, clen;
    uint8_t *a, *b;

    sn_zinfo_span(zi, i, &s);
    olen = (size_t) (s.uncomp_end - s.uncomp_start);
    clen = (size_t) (s.comp_end - s.comp_start);
    a = malloc(olen + 1);
    b = malloc(olen + 1);
    if (sn_zinfo_decode_span_with(zi, i, comp + s.comp_start, clen, a, olen,
                                  true) == -1 ||
        sn_zinfo_decode_span_with(zi, i, comp + s.comp_start, clen, b, olen,
                                  false) == -1 ||
        memcmp(a, plain + s.uncomp_start, olen) != 0 ||
        memcmp(b, plain + s.uncomp_start, olen) != 0) {
      diag("span %zu: inflaters disagree or fail", i);
      good = false;
    }
    free(a);
    free(b);
  }
  *nfast = (size_t) (sn_zinfo_fast_decodes() - f0);
  return good;
}

/* The fast inflater must take the spans (not fall back to zlib every
 * time) and agree with zlib byte for byte: big spans, and a checkpoint at
 * every block (every leftover-bits value 0..7 shows up). */
static void
test_inflaters(void)
{
  const size_t n = 3 << 20;
  uint8_t *plain = malloc(n), *gz = malloc(n + 65536);
  size_t len, nfast = 0;
  bool isal = strcmp(sn_zinfo_inflater(), "isa-l") == 0, agree;
  struct run r;
  unsigned bits = 0;
  size_t i;

  rng_state = 4242;
  make_text(plain, n);
  len = gz_member(gz, n + 65536, plain, n, 6, Z_NO_FLUSH, 0);
  build(&r, SN_COMP_GZIP, 500000, gz, len, WHOLE);
  if (r.rc == 0) {
    r.zi->uncompressed_size = (int64_t) n;
    agree = inflaters_agree(r.zi, gz, plain, &nfast);
    ok(agree && (isal ? nfast == r.zi->nspans : nfast == 0),
       "%s: %zu spans of 500000, %zu decoded by the fast path, all equal "
       "to zlib's", sn_zinfo_inflater(), r.zi->nspans, nfast);
  }
  else
    ok(0, "build for the inflater test: %s", sn_error());
  run_clear(&r);

  len = gz_member(gz, n + 65536, plain, 700000, 6, Z_PARTIAL_FLUSH, 1000);
  build(&r, SN_COMP_GZIP, 0, gz, len, WHOLE);
  if (r.rc == 0) {
    r.zi->uncompressed_size = 700000;
    for (i = 0; i < r.zi->nspans; i++)
      bits |= 1u << r.zi->cp[i].bits;
    agree = inflaters_agree(r.zi, gz, plain, &nfast);
    ok(agree && (isal ? nfast == r.zi->nspans : nfast == 0) && bits == 0xff,
       "%s: %zu checkpoints, every bits value (%#x), %zu by the fast path, "
       "all equal to zlib's", sn_zinfo_inflater(), r.zi->nspans, bits,
       nfast);
  }
  else
    ok(0, "build for the inflater test: %s", sn_error());
  run_clear(&r);
  free(plain);
  free(gz);
}

/* More output than the builder's ring holds: windows that wrap around it,
 * and output still pending in zlib when a feed's input runs out. */
static void
test_big(void)
{
  const size_t n = 3 << 20;
  uint8_t *plain = malloc(n), *gz = malloc(n + 65536);
  size_t len, nbad;
  struct run r, r2;

  rng_state = 777;
  make_text(plain, n);
  len = gz_member(gz, n + 65536, plain, n, 6, Z_NO_FLUSH, 0);
  build(&r, SN_COMP_GZIP, 200000, gz, len, WHOLE);
  ok(r.rc == 0 && r.zi->nspans > 10 && r.out.len == n &&
     memcmp(r.out.data, plain, n) == 0,
     "3 MiB member, span 200000: %zu checkpoints, output right",
     r.rc == 0 ? r.zi->nspans : 0);
  if (r.rc == 0) {
    r.zi->uncompressed_size = (int64_t) n;
    ok(spans_check(r.zi, r.digests, gz, plain, &nbad),
       "3 MiB member: every span decodes and hashes right");
    build(&r2, SN_COMP_GZIP, 200000, gz, len, BYTES);
    ok(same_run(&r, &r2), "3 MiB member fed 1 byte at a time: identical");
    run_clear(&r2);
    rng_state = 3;
    build(&r2, SN_COMP_GZIP, 200000, gz, len, RANDOM);
    ok(same_run(&r, &r2), "3 MiB member in random chunks: identical");
    run_clear(&r2);
  }
  run_clear(&r);

  /* Errors in the middle of a large feed (hashed on the helper thread). */
  gz[len / 2] ^= 0x55;
  gz[len / 2 + 1] ^= 0x55;
  build(&r, SN_COMP_GZIP, 200000, gz, len, WHOLE);
  ok(r.rc == -1, "3 MiB member corrupted in the middle: error (%s)",
     sn_error());
  run_clear(&r);
  gz[len / 2] ^= 0x55;
  gz[len / 2 + 1] ^= 0x55;
  build(&r, SN_COMP_GZIP, 200000, gz, len - 1000, WHOLE);
  ok(r.rc == -1, "3 MiB member truncated: error (%s)", sn_error());
  run_clear(&r);
  {
    struct sink sk = { .fail_after = 20 };
    struct sn_zinfo_builder *b = sn_zinfo_builder_new(SN_COMP_GZIP, 0,
                                                      sink_out, &sk);

    ok(sn_zinfo_builder_feed(b, gz, len) == -1 &&
       strcmp(sn_error(), "sink: refused") == 0,
       "3 MiB member: on_output failure in a large feed");
    sn_zinfo_builder_free(b);
    free(sk.data);
  }

  /* A block every 1000 bytes and span 0: some checkpoint falls just after
   * the ring wraps, so its window comes from both ends of the ring. */
  len = gz_member(gz, n + 65536, plain, 700000, 6, Z_PARTIAL_FLUSH, 1000);
  build(&r, SN_COMP_GZIP, 0, gz, len, WHOLE);
  ok(r.rc == 0 && r.zi->nspans >= 700, "700 KB, a block per 1000 bytes, "
     "span 0: %zu checkpoints", r.rc == 0 ? r.zi->nspans : 0);
  if (r.rc == 0) {
    r.zi->uncompressed_size = 700000;
    ok(spans_check(r.zi, r.digests, gz, plain, &nbad),
       "every span decodes and hashes right (%zu bad)", nbad);
  }
  run_clear(&r);
  free(plain);
  free(gz);
}

/* ---- hostile builder input ---------------------------------------------- */

static void
test_build_hostile(const uint8_t *bgz, size_t bgz_len)
{
  uint8_t *buf = malloc(bgz_len + 64);
  struct run r;
  size_t n, bad = 0, fails = 0;

  for (n = 0; n < bgz_len; n++) {
    build(&r, SN_COMP_GZIP, 4096, bgz, n, WHOLE);
    if (r.rc != -1)
      bad++;
    run_clear(&r);
  }
  ok(bad == 0, "build: every proper prefix of B.tar.gz fails");
  build(&r, SN_COMP_GZIP, 4096, bgz, 300, WHOLE);
  ok(r.rc == -1 && strstr(sn_error(), "truncated gzip stream") != NULL,
     "build: truncation message: %s", sn_error());
  run_clear(&r);
  for (n = 0; n < bgz_len; n += 7) {
    build(&r, SN_COMP_GZIP, 4096, bgz, n, BYTES);
    if (r.rc != -1)
      bad++;
    run_clear(&r);
  }
  ok(bad == 0, "build: prefixes fed byte by byte fail too");

  bad = 0;
  for (n = 0; n < bgz_len; n++) {
    memcpy(buf, bgz, bgz_len);
    buf[n] ^= 0x5a;
    build(&r, SN_COMP_GZIP, 4096, buf, bgz_len, WHOLE);
    if (r.rc == -1)
      fails++;
    else if (n >= 10)
      bad++;
    run_clear(&r);
  }
  ok(bad == 0, "build: corrupting any byte past the header fails "
     "(%zu of %zu corruptions failed)", fails, bgz_len);

  memcpy(buf, bgz, bgz_len);
  memcpy(buf + bgz_len, "garbage!", 8);
  build(&r, SN_COMP_GZIP, 4096, buf, bgz_len + 8, WHOLE);
  ok(r.rc == -1, "build: garbage after the member fails (%s)", sn_error());
  run_clear(&r);
  memset(buf + bgz_len, 0, 32);
  build(&r, SN_COMP_GZIP, 4096, buf, bgz_len + 32, WHOLE);
  ok(r.rc == -1, "build: zero padding after the member fails");
  run_clear(&r);
  build(&r, SN_COMP_GZIP, 4096, buf, bgz_len + 5, BYTES);
  ok(r.rc == -1, "build: a partial second member fails");
  run_clear(&r);

  /* A zlib stream that needs a preset dictionary. */
  {
    z_stream zs;
    uint8_t src[100], dst[300];

    memset(&zs, 0, sizeof zs);
    memset(src, 'x', sizeof src);
    deflateInit(&zs, 6);
    deflateSetDictionary(&zs, (const Bytef *) "xxxx", 4);
    zs.next_in = src;
    zs.avail_in = sizeof src;
    zs.next_out = dst;
    zs.avail_out = sizeof dst;
    deflate(&zs, Z_FINISH);
    build(&r, SN_COMP_GZIP, 4096, dst, sizeof dst - zs.avail_out, WHOLE);
    deflateEnd(&zs);
    ok(r.rc == -1, "build: zlib stream with a dictionary fails (%s)",
       sn_error());
    run_clear(&r);
  }
  /* An empty gzip member is a layer with one empty span. */
  {
    uint8_t dst[64];
    size_t n2 = gz_member(dst, sizeof dst, dst, 0, 6, Z_NO_FLUSH, 0);

    build(&r, SN_COMP_GZIP, 4096, dst, n2, WHOLE);
    ok(r.rc == 0 && r.zi->nspans == 1 && r.zi->cp[0].in == 10 &&
       r.out.len == 0, "build: empty gzip member, one checkpoint");
    run_clear(&r);
  }

  /* on_output refusing: -1, its message kept, the builder stays failed. */
  {
    struct sink s = { .fail_after = 2 };
    struct sn_zinfo_builder *b = sn_zinfo_builder_new(SN_COMP_GZIP, 4096,
                                                      sink_out, &s);
    struct sn_zinfo *zi = NULL;
    int rc = sn_zinfo_builder_feed(b, bgz, bgz_len);

    ok(rc == -1 && strcmp(sn_error(), "sink: refused") == 0,
       "build: on_output failure returned with its message");
    ok(sn_zinfo_builder_feed(b, bgz, 1) == -1 &&
       sn_zinfo_builder_finish(b, &zi, NULL, NULL) == -1 && zi == NULL,
       "build: a failed builder stays failed");
    sn_zinfo_builder_free(b);
    free(s.data);
  }
  /* Finish twice; NULL outputs allowed. */
  {
    struct sn_zinfo_builder *b = sn_zinfo_builder_new(SN_COMP_GZIP, 4096,
                                                      NULL, NULL);
    struct sn_zinfo *zi = NULL, *zi2 = NULL;

    ok(sn_zinfo_builder_feed(b, bgz, bgz_len) == 0 &&
       sn_zinfo_builder_finish(b, &zi, NULL, NULL) == 0 && zi->nspans == 7 &&
       sn_zinfo_builder_finish(b, &zi2, NULL, NULL) == -1,
       "build: without on_output; second finish refused");
    sn_zinfo_free(zi);
    sn_zinfo_builder_free(b);
  }
  free(buf);
}

int
main(void)
{
  size_t agz_len, atar_len, azi_len, bgz_len, btar_len, bzi_len;
  uint8_t *agz = load("A.tar.gz", &agz_len);
  uint8_t *atar = load("A.tar", &atar_len);
  uint8_t *azi = load("A.zinfo", &azi_len);
  uint8_t *bgz = load("B.tar.gz", &bgz_len);
  uint8_t *btar = load("B.tar", &btar_len);
  uint8_t *bzi = load("B.zinfo", &bzi_len);

  if (agz_len != 307 || atar_len != 10240 || bgz_len != 573 ||
      btar_len != 30720) {
    printf("Bail out! unexpected test data sizes\n");
    return 1;
  }
  test_parse(azi, azi_len, bzi, bzi_len, btar);
  test_parse_hostile(bzi, bzi_len);
  test_build_vectors(agz, agz_len, atar, atar_len, azi, azi_len,
                     bgz, bgz_len, btar, btar_len, bzi, bzi_len);
  test_from_ztoc(bzi, bzi_len, bgz, bgz_len, btar, btar_len, atar, atar_len);
  test_build_tar(atar, atar_len);
  test_multi_member();
  test_big();
  test_inflaters();
  test_build_hostile(bgz, bgz_len);

  free(agz);
  free(atar);
  free(azi);
  free(bgz);
  free(btar);
  free(bzi);
  return done_testing();
}
