/* soci-nbd tests: the ztoc model, FlatBuffers writer and reader
 * (lib/soci/ztoc.c, lib/util/fbs.c, lib/soci/tarzinfo.c) against the reference vectors
 * in tests/data, plus hostile input. */
#include <config.h>

#include <inttypes.h>
#include <string.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fbs.h"
#include "tap.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"

#ifndef DATADIR
#define DATADIR "tests/data"
#endif

/* From tests/data/SHA256SUMS: the reference implementation's digests. */
static const struct vector {
  const char *file;
  const char *sha256;
  size_t size;
} vectors[] = {
  { "A.ztoc",
    "586b12dcf5bd7ed9df0391485cc6811978080a3ac6b0466d1d05cc80d00b3c1e",
    34056 },
  { "A4096.ztoc",
    "e2cad9bdd5907d197861ad360523d52f3f6b7b277baf0edec19862be3caa5def",
    34056 },
  { "A_la.ztoc",
    "1bf2849ca376e56cd1e1722579b2ff5826a91b9e579bfe8cb3528e6e557c847d",
    34104 },
  { "Atar.ztoc",
    "49efb738833138942fbcb851cf5061abaca52f0572cb221af02002fc6c0d8724",
    1480 },
  { "B.ztoc",
    "55fb46d5624683f138ab9de95225c83c5b7529a466e0268217be4279ce98ef68",
    230912 },
  { "testwrite.ztoc",
    "eba28fdf50b1b57543f57dd051b2468c1d4f57b64d2006c75aa4de1d03e6c7ec",
    65928 },
};
#define TARZINFO_SHA256 \
  "f386a82f7053b466886679d153db2aa88fa3c40f69c0c070c326dcdef6222d63"
#define A_ZINFO_SHA256 \
  "29593b122aeb3cb6f50e26f4bb6ca2440327e2df3191b3b64c92473d6d3ca388"

static unsigned char *
load(const char *name, size_t *len)
{
  char path[4096];

  snprintf(path, sizeof path, "%s/%s", DATADIR, name);
  return slurp(path, len);
}

static int
sha_is(const void *buf, size_t len, const char *hex)
{
  uint8_t d[SN_SHA256_LEN];
  char s[SN_DIGEST_STRLEN + 1];

  sn_sha256(buf, len, d);
  sn_digest_format(d, s);
  return strcmp(s + 7, hex) == 0;
}

static int
bytes_is(const struct sn_bytes *b, const char *s)
{
  return b->len == strlen(s) && b->data && memcmp(b->data, s, b->len) == 0 &&
         b->data[b->len] == '\0';
}

/* A rejected decode leaves one line starting with "ztoc: ". */
static int
good_error(void)
{
  const char *e = sn_error();

  return strncmp(e, "ztoc: ", 6) == 0 && strchr(e, '\n') == NULL;
}

static struct sn_ztoc *
decode_file(const char *name)
{
  unsigned char *buf;
  size_t len;
  struct sn_ztoc *z;

  buf = load(name, &len);
  z = sn_ztoc_decode(buf, len);
  free(buf);
  if (z == NULL)
    diag("%s: %s", name, sn_error());
  return z;
}

/* ---- decode → encode reproduces every reference vector ---------------- */

static void
test_round_trip(void)
{
  size_t i;

  for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
    const struct vector *v = &vectors[i];
    unsigned char *buf;
    uint8_t *out = NULL;
    size_t len, olen = 0;
    struct sn_ztoc *z;

    buf = load(v->file, &len);
    ok(len == v->size && sha_is(buf, len, v->sha256),
       "%s is the reference vector", v->file);
    z = sn_ztoc_decode(buf, len);
    ok(z != NULL, "%s decodes", v->file);
    if (z == NULL) {
      diag("%s", sn_error());
      free(buf);
      continue;
    }
    ok(sn_ztoc_encode(z, &out, &olen) == 0, "%s re-encodes", v->file);
    ok(olen == v->size && sha_is(out, olen, v->sha256),
       "%s: decode + encode gives the reference digest", v->file);
    ok(olen == len && memcmp(out, buf, len) == 0,
       "%s: byte for byte", v->file);
    free(out);
    sn_ztoc_free(z);
    free(buf);
  }
}

/* ---- TestWriteZtoc (docs/soci-format.md §6), built from a model ------------------------- */

static struct sn_ztoc *
testwrite_model(bool set_strings)
{
  struct sn_ztoc *z = sn_ztoc_new();
  char t[40];
  size_t i, tl;

  if (z == NULL)
    return NULL;
  sn_bytes_set(&z->version, "0.9", 3);
  sn_bytes_set(&z->build_tool, "AWS SOCI CLI", 12);
  z->compressed_size = 2000000;
  z->uncompressed_size = 2500000;
  z->max_span_id = 3;
  z->checkpoints = calloc(1, 65536);
  z->checkpoints_len = 65536;
  z->files = calloc(2, sizeof *z->files);
  z->nfiles = 2;
  tl = sn_mod_time_format(INT64_C(-62135596800), 0, t);
  for (i = 0; i < 2; i++) {
    struct sn_ztoc_file *f = &z->files[i];
    if (set_strings) {
      sn_bytes_set(&f->name, "", 0);
      sn_bytes_set(&f->type, "", 0);
      sn_bytes_set(&f->linkname, "", 0);
      sn_bytes_set(&f->uname, "", 0);
      sn_bytes_set(&f->gname, "", 0);
    }
    sn_bytes_set(&f->mod_time, t, tl);
  }
  return z;
}

static void
test_testwrite(void)
{
  const struct vector *v = &vectors[5];
  int pass;

  for (pass = 0; pass < 2; pass++) {
    struct sn_ztoc *z = testwrite_model(pass == 0);
    uint8_t *out = NULL;
    size_t len = 0;

    ok(z && sn_ztoc_encode(z, &out, &len) == 0 && len == v->size &&
       sha_is(out, len, v->sha256),
       "TestWriteZtoc model (%s strings) encodes to sha256:%.12s... "
       "(%zu bytes)", pass == 0 ? "empty" : "unset", v->sha256, len);
    free(out);
    sn_ztoc_free(z);
  }
}

/* ---- decoded values of A.ztoc (vectors: docs/soci-format.md §6) ----------------------------------- */

static const struct {
  const char *name, *type, *linkname;
  int64_t offset, size, header;
  enum sn_ftype ftype;
  int64_t mode;
} a_files[] = {
  { "etc/", "dir", "", 512, 0, 0, SN_FT_DIR, 0755 },
  { "etc/hello.txt", "reg", "", 1024, 12, 512, SN_FT_REG, 0644 },
  { "etc/link", "symlink", "hello.txt", 2048, 0, 1536, SN_FT_SYMLINK, 0777 },
  { "etc/hard", "hardlink", "etc/hello.txt", 2560, 0, 2048,
    SN_FT_HARDLINK, 0644 },
  { "etc/x", "reg", "", 4096, 11, 2560, SN_FT_REG, 0644 },
  { "etc/.wh..wh..opq", "reg", "", 5120, 0, 4608, SN_FT_REG, 0644 },
};

static void
test_a_values(void)
{
  struct sn_ztoc *z = decode_file("A.ztoc"), *la;
  size_t i;
  int good;

  if (!ok(z != NULL, "A.ztoc decodes"))
    return;
  ok(bytes_is(&z->version, "0.9"), "version 0.9");
  ok(bytes_is(&z->build_tool, "AWS SOCI CLI v0.2"), "build tool id");
  ok(z->compressed_size == 307, "compressed size 307");
  ok(z->uncompressed_size == 6144, "uncompressed size 6144");
  ok(z->compression == SN_COMP_GZIP, "compression gzip (default)");
  ok(z->max_span_id == 0, "max_span_id 0 (default)");
  ok(z->nspan_digests == 1 &&
     bytes_is(&z->span_digests[0], "sha256:6e318423d6582e8f35e1c1f4ee4948f0"
              "53430b25d8c0a84ac2b46086b3a196d3"), "span digest 0");
  ok(z->checkpoints_len == 32797 &&
     sha_is(z->checkpoints, z->checkpoints_len, A_ZINFO_SHA256),
     "checkpoints are A.zinfo");
  if (!ok(z->nfiles == 6, "6 files"))
    goto out;
  for (i = 0; i < 6; i++) {
    const struct sn_ztoc_file *f = &z->files[i];
    ok(bytes_is(&f->name, a_files[i].name) &&
       bytes_is(&f->type, a_files[i].type) &&
       bytes_is(&f->linkname, a_files[i].linkname) &&
       f->offset == a_files[i].offset && f->size == a_files[i].size &&
       f->header_offset == a_files[i].header &&
       f->ftype == a_files[i].ftype && f->mode == a_files[i].mode,
       "file %zu: %s %s offset %" PRId64 " size %" PRId64 " header %" PRId64,
       i, a_files[i].name, a_files[i].type, a_files[i].offset,
       a_files[i].size, a_files[i].header);
    ok(f->uid == 0 && f->gid == 0 && bytes_is(&f->uname, "root") &&
       bytes_is(&f->gname, "root") && f->devmajor == 0 && f->devminor == 0 &&
       bytes_is(&f->mod_time, "2023-11-14T22:13:20Z") &&
       f->mtime_sec == 1700000000 && f->mtime_nsec == 0,
       "file %zu: root:root, mtime 1700000000", i);
    ok(f->npax == (i == 4 ? 1u : 0u), "file %zu: %d PAX records", i,
       i == 4);
  }
  ok(bytes_is(&z->files[4].pax[0].key, "SCHILY.xattr.user.k") &&
     bytes_is(&z->files[4].pax[0].value, "v"),
     "etc/x has PAX SCHILY.xattr.user.k=v");

  ok(sn_ztoc_find(z, "etc/x") == &z->files[4], "find etc/x");
  ok(sn_ztoc_find(z, "/./etc//x/") == &z->files[4], "find /./etc//x/");
  ok(sn_ztoc_find(z, "etc") == &z->files[0], "find etc (stored as etc/)");
  ok(sn_ztoc_find(z, "etc/../etc/hello.txt") == &z->files[1],
     "find etc/../etc/hello.txt");
  ok(sn_ztoc_find(z, "etc/nothere") == NULL, "find a missing path");

  la = decode_file("A_la.ztoc");
  good = la != NULL && la->nfiles == 6;
  for (i = 0; good && i < 6; i++)
    good = bytes_is(&la->files[i].mod_time, "2023-11-14T14:13:20-08:00") &&
           la->files[i].mtime_sec == z->files[i].mtime_sec &&
           la->files[i].mtime_nsec == 0;
  ok(good, "A_la.ztoc: mod_time -08:00 is the same instant as A.ztoc's");
  sn_ztoc_free(la);

out:
  sn_ztoc_free(z);
}

static void
test_load(void)
{
  struct sn_ztoc *z = sn_ztoc_load(DATADIR "/B.ztoc");

  ok(z && z->nfiles == 4, "load B.ztoc");
  sn_ztoc_free(z);
  z = sn_ztoc_load(DATADIR "/no-such.ztoc");
  ok(z == NULL && good_error() && strstr(sn_error(), "no-such.ztoc") &&
     strstr(sn_error(), "No such file"), "load a missing file: %s",
     sn_error());
  z = sn_ztoc_load(DATADIR "/README.md");
  ok(z == NULL && good_error() && strstr(sn_error(), "README.md"),
     "load a non-ztoc names the path: %s", sn_error());
  z = sn_ztoc_load(DATADIR);
  ok(z == NULL && good_error(), "load a directory: %s", sn_error());
}

static void
test_b_and_atar(void)
{
  static const struct { const char *name; int64_t off, size, hdr; } bf[] = {
    { "a.txt", 512, 10800, 0 }, { "dir/", 12288, 0, 11776 },
    { "dir/b.txt", 12800, 15400, 12288 }, { "dir/c.bin", 29184, 40, 28672 },
  };
  struct sn_ztoc *z = decode_file("B.ztoc");
  unsigned char *tz;
  size_t i, tzlen;
  int64_t span = 0, size = 0;
  int good;

  good = z != NULL && z->nfiles == 4 && z->max_span_id == 6 &&
         z->nspan_digests == 7 && z->checkpoints_len == 229507 &&
         z->uncompressed_size == 30720 && z->compressed_size == 573;
  for (i = 0; good && i < 4; i++)
    good = bytes_is(&z->files[i].name, bf[i].name) &&
           z->files[i].offset == bf[i].off &&
           z->files[i].size == bf[i].size &&
           z->files[i].header_offset == bf[i].hdr;
  ok(good, "B.ztoc: 7 spans, 4 files with the reference offsets");
  ok(good && bytes_is(&z->span_digests[6], "sha256:3ddcb205126c9cbf7b52ea8"
                      "5ed021640cf2598f3f445ba9e7e74857d31733f4b"),
     "B.ztoc: span digest 6");
  sn_ztoc_free(z);

  z = decode_file("Atar.ztoc");
  tz = load("tarzinfo.bin", &tzlen);
  ok(z && z->compression == SN_COMP_UNCOMPRESSED && z->max_span_id == 2 &&
     z->nspan_digests == 3, "Atar.ztoc: uncompressed, 3 spans");
  ok(z && z->checkpoints_len == tzlen &&
     memcmp(z->checkpoints, tz, tzlen) == 0,
     "Atar.ztoc: checkpoints are tarzinfo.bin");
  ok(z && sn_tarzinfo_decode(z->checkpoints, z->checkpoints_len, &span,
                             &size) == 0 && span == 4096 && size == 10240,
     "TarZinfo decodes to span 4096, size 10240");
  sn_ztoc_free(z);
  free(tz);
}

/* ---- TarZinfo ------------------------------------------------------------ */

static void
test_tarzinfo(void)
{
  uint8_t *out = NULL, *bad;
  size_t len = 0, blen;
  int64_t span, size;
  struct sn_fbb b;
  sn_fbb_ref t;

  ok(sn_tarzinfo_encode(4096, 10240, &out, &len) == 0 && len == 48 &&
     sha_is(out, len, TARZINFO_SHA256),
     "tarzinfo encode(4096, 10240) == tarzinfo.bin");
  free(out);
  ok(sn_tarzinfo_encode(0, 10240, &out, &len) == -1,
     "tarzinfo encode rejects span 0");
  ok(sn_tarzinfo_encode(4096, -1, &out, &len) == -1,
     "tarzinfo encode rejects a negative size");

  /* version 3, span 0, negative size: each rejected on decode */
  sn_fbb_init(&b);
  sn_fbb_start_table(&b, 3);
  sn_fbb_add_i32(&b, 0, 3, 0);
  sn_fbb_add_i64(&b, 1, 4096, 0);
  t = sn_fbb_end_table(&b);
  sn_fbb_finish(&b, t, &bad, &blen);
  sn_fbb_free(&b);
  ok(sn_tarzinfo_decode(bad, blen, &span, &size) == -1 &&
     strstr(sn_error(), "version"), "tarzinfo version 3 rejected: %s",
     sn_error());
  free(bad);

  sn_fbb_init(&b);
  sn_fbb_start_table(&b, 3);
  sn_fbb_add_i32(&b, 0, 2, 0);
  t = sn_fbb_end_table(&b);
  sn_fbb_finish(&b, t, &bad, &blen);
  sn_fbb_free(&b);
  ok(sn_tarzinfo_decode(bad, blen, &span, &size) == -1,
     "tarzinfo without a span size rejected: %s", sn_error());
  free(bad);

  sn_fbb_init(&b);
  sn_fbb_start_table(&b, 3);
  sn_fbb_add_i64(&b, 2, -5, 0);
  sn_fbb_add_i64(&b, 1, 512, 0);
  sn_fbb_add_i32(&b, 0, 2, 0);
  t = sn_fbb_end_table(&b);
  sn_fbb_finish(&b, t, &bad, &blen);
  sn_fbb_free(&b);
  ok(sn_tarzinfo_decode(bad, blen, &span, &size) == -1,
     "tarzinfo with a negative size rejected: %s", sn_error());
  free(bad);
  ok(sn_tarzinfo_decode((const uint8_t *) "\4\0\0\0", 4, &span, &size) == -1,
     "tarzinfo: 4-byte buffer rejected");
}

/* ---- times, paths, types ----------------------------------------------- */

static void
test_time(void)
{
  static const struct { int64_t sec; uint32_t nsec; const char *s; } f[] = {
    { 1700000000, 0, "2023-11-14T22:13:20Z" },
    { 1700000000, 500000000, "2023-11-14T22:13:20.5Z" },
    { 1700000000, 1, "2023-11-14T22:13:20.000000001Z" },
    { 1700000000, 123456789, "2023-11-14T22:13:20.123456789Z" },
    { 1700000000, 120000000, "2023-11-14T22:13:20.12Z" },
    { 0, 0, "1970-01-01T00:00:00Z" },
    { -1, 0, "1969-12-31T23:59:59Z" },
    { -1, 999000000, "1969-12-31T23:59:59.999Z" },
    { INT64_C(-62135596800), 0, "0001-01-01T00:00:00Z" },   /* zero time */
    { INT64_C(-62167219200), 0, "0000-01-01T00:00:00Z" },
    { INT64_C(253402300799), 0, "9999-12-31T23:59:59Z" },
    { 951782400, 0, "2000-02-29T00:00:00Z" },
    { INT64_C(-62167219201), 0, "" },                       /* year -1 */
    { INT64_C(253402300800), 0, "" },                       /* year 10000 */
    { INT64_MAX, 0, "" },
    { INT64_MIN, 0, "" },
  };
  static const struct {
    const char *s; int64_t sec; uint32_t nsec;
  } p[] = {
    { "2023-11-14T22:13:20Z", 1700000000, 0 },
    { "2023-11-14T14:13:20-08:00", 1700000000, 0 },
    { "2023-11-15T03:43:20+05:30", 1700000000, 0 },
    { "2023-11-14T22:13:20.5Z", 1700000000, 500000000 },
    { "2023-11-14T22:13:20.000000001+00:00", 1700000000, 1 },
    { "2023-11-14T22:13:20.1234567891Z", 1700000000, 123456789 },
    { "2023-11-14T14:13:20.25-08:00", 1700000000, 250000000 },
    { "0001-01-01T00:00:00Z", INT64_C(-62135596800), 0 },
    { "0000-01-01T00:00:00+23:59", INT64_C(-62167219200) - 86340, 0 },
    { "2024-02-29T00:00:00Z", 1709164800, 0 },
    { "1969-12-31T23:59:59Z", -1, 0 },
  };
  static const char *const bad[] = {
    "", "2023-11-14", "2023-11-14 22:13:20Z", "2023-11-14T22:13:20",
    "2023-11-14T22:13:20z", "2023-11-14t22:13:20Z", "2023-13-14T22:13:20Z",
    "2023-00-14T22:13:20Z", "2023-02-29T00:00:00Z", "2023-11-31T00:00:00Z",
    "2023-11-14T24:00:00Z", "2023-11-14T22:60:00Z", "2023-11-14T22:13:60Z",
    "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20+0800",
    "2023-11-14T22:13:20+24:00", "2023-11-14T22:13:20+08:60",
    "2023-11-14T22:13:20 08:00", "2023-11-14T22:13:20Z ", "x023-11-14T22:13:20Z",
    "+2023-11-14T22:13:20Z", "2023-11-14T22:13:2xZ", "2023/11/14T22:13:20Z",
    "2023-11-14T22:13:20.5", "2023-11-14T22:13:20-08:00:00", "-023-11-14T22:13:20Z",
  };
  char out[40];
  size_t i, n;
  int64_t sec;
  uint32_t nsec;
  uint64_t x = 88172645463325252u;
  int good = 1;

  for (i = 0; i < sizeof f / sizeof f[0]; i++) {
    n = sn_mod_time_format(f[i].sec, f[i].nsec, out);
    ok(n == strlen(f[i].s) && strcmp(out, f[i].s) == 0,
       "format(%" PRId64 ", %" PRIu32 ") = \"%s\"", f[i].sec, f[i].nsec,
       f[i].s);
  }
  for (i = 0; i < sizeof p / sizeof p[0]; i++)
    ok(sn_mod_time_parse(p[i].s, strlen(p[i].s), &sec, &nsec) == 0 &&
       sec == p[i].sec && nsec == p[i].nsec, "parse \"%s\"", p[i].s);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ok(sn_mod_time_parse(bad[i], strlen(bad[i]), &sec, &nsec) == -1,
       "parse rejects \"%s\"", bad[i]);
  ok(sn_mod_time_parse("2023-11-14T22:13:20Z\0", 21, &sec, &nsec) == -1,
     "parse rejects a trailing NUL");

  /* format ∘ parse is the identity on years 0..9999 */
  for (i = 0; i < 20000 && good; i++) {
    int64_t s;
    uint32_t ns;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s = (int64_t) (x % UINT64_C(315537897600)) - INT64_C(62167219200);
    ns = (x >> 40) % 4 == 0 ? 0 : (uint32_t) ((x >> 20) % 1000000000);
    n = sn_mod_time_format(s, ns, out);
    good = n > 0 && sn_mod_time_parse(out, n, &sec, &nsec) == 0 &&
           sec == s && nsec == ns;
    if (!good)
      diag("round trip failed for %" PRId64 ".%09" PRIu32 ": %s", s, ns, out);
  }
  ok(good, "format/parse round trip on 20000 random times");
}

static void
test_paths(void)
{
  static const struct { const char *in, *out; } c[] = {
    { "", "" }, { "/", "" }, { ".", "" }, { "..", "" }, { "../..", "" },
    { "etc/", "etc" }, { "./a//b/", "a/b" }, { "a/../../b", "b" },
    { "../x", "x" }, { "a/./b/.", "a/b" }, { "/a/b/../c", "a/c" },
    { "...", "..." }, { "a/..b/c", "a/..b/c" }, { "etc/.wh..wh..opq",
      "etc/.wh..wh..opq" }, { "a/b/c/../../d", "a/d" }, { "//a//", "a" },
    { "a/..", "" }, { "abc/def/..", "abc" },
  };
  char out[64];
  size_t i;

  for (i = 0; i < sizeof c / sizeof c[0]; i++)
    ok(sn_path_clean(c[i].in, strlen(c[i].in), out, sizeof out) ==
       (int) strlen(c[i].out) && strcmp(out, c[i].out) == 0,
       "clean \"%s\" = \"%s\"", c[i].in, c[i].out);
  ok(sn_path_clean("a/b/../c", 8, out, 4) == 3 && strcmp(out, "a/c") == 0,
     "clean into a buffer that only fits the result");
  ok(sn_path_clean("abcd", 4, out, 4) == -1, "clean: too small buffer");
  ok(sn_path_clean("a\0b/c", 5, out, sizeof out) == 5 &&
     memcmp(out, "a\0b/c", 6) == 0, "clean keeps NUL bytes");
}

static void
test_ftypes(void)
{
  static const char *const names[] = { "reg", "hardlink", "symlink", "char",
                                        "block", "dir", "fifo" };
  size_t i;
  int good = 1;

  for (i = 0; i < 7; i++)
    good &= sn_ftype_parse(names[i], strlen(names[i])) ==
            (enum sn_ftype) (i + 1) &&
            strcmp(sn_ftype_name((enum sn_ftype) (i + 1)), names[i]) == 0;
  ok(good, "type names round trip");
  ok(sn_ftype_parse("regx", 3) == SN_FT_REG &&
     sn_ftype_parse("regx", 4) == SN_FT_UNKNOWN &&
     sn_ftype_parse("", 0) == SN_FT_UNKNOWN, "unknown type names");
}

/* ---- other layouts of the same data ------------------------------------- */

/* A's model written in a different but valid layout: tables first-to-last,
 * fields in reverse order, uname/gname/type strings shared, defaults
 * written explicitly.  Must decode to the same model. */
static uint8_t *
relayout(const struct sn_ztoc *z, size_t *len)
{
  struct sn_fbb b;
  sn_fbb_ref root_s, *files, toc, ci, cp, dig[8], digv, ver, tool, rt;
  uint8_t *out = NULL;
  size_t i, j;

  sn_fbb_init(&b);
  root_s = sn_fbb_create_string(&b, "root", 4);
  files = calloc(z->nfiles, sizeof *files);
  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];
    sn_fbb_ref name, type, link, mt, xv, x[4];

    for (j = 0; j < f->npax && j < 4; j++) {
      sn_fbb_ref k = sn_fbb_create_string(&b, f->pax[j].key.data,
                                          f->pax[j].key.len);
      sn_fbb_ref v = sn_fbb_create_string(&b, f->pax[j].value.data,
                                          f->pax[j].value.len);
      sn_fbb_start_table(&b, 2);
      sn_fbb_add_ref(&b, 1, v);
      sn_fbb_add_ref(&b, 0, k);
      x[j] = sn_fbb_end_table(&b);
    }
    xv = f->npax ? sn_fbb_create_ref_vector(&b, x, f->npax) : 0;
    mt = sn_fbb_create_string(&b, f->mod_time.data, f->mod_time.len);
    link = sn_fbb_create_string(&b, f->linkname.data, f->linkname.len);
    type = sn_fbb_create_string(&b, f->type.data, f->type.len);
    name = sn_fbb_create_string(&b, f->name.data, f->name.len);
    sn_fbb_start_table(&b, 14);
    sn_fbb_add_ref(&b, 13, xv);
    sn_fbb_add_i64(&b, 12, f->devminor, -1);
    sn_fbb_add_i64(&b, 11, f->devmajor, -1);
    sn_fbb_add_ref(&b, 10, mt);
    sn_fbb_add_ref(&b, 9, root_s);
    sn_fbb_add_ref(&b, 8, root_s);
    sn_fbb_add_u32(&b, 7, f->gid, 1);
    sn_fbb_add_u32(&b, 6, f->uid, 1);
    sn_fbb_add_i64(&b, 5, f->mode, 0);
    sn_fbb_add_ref(&b, 4, link);
    sn_fbb_add_i64(&b, 3, f->size, -1);
    sn_fbb_add_i64(&b, 2, f->offset, 0);
    sn_fbb_add_ref(&b, 1, type);
    sn_fbb_add_ref(&b, 0, name);
    files[i] = sn_fbb_end_table(&b);
  }
  toc = sn_fbb_create_ref_vector(&b, files, z->nfiles);
  free(files);
  sn_fbb_start_table(&b, 1);
  sn_fbb_add_ref(&b, 0, toc);
  toc = sn_fbb_end_table(&b);
  for (i = 0; i < z->nspan_digests && i < 8; i++)
    dig[i] = sn_fbb_create_string(&b, z->span_digests[i].data,
                                  z->span_digests[i].len);
  digv = sn_fbb_create_ref_vector(&b, dig, z->nspan_digests);
  cp = sn_fbb_create_bytes(&b, z->checkpoints, z->checkpoints_len);
  sn_fbb_start_table(&b, 4);
  sn_fbb_add_i8(&b, 0, (int8_t) z->compression, 0);   /* explicit Gzip */
  sn_fbb_add_ref(&b, 3, cp);
  sn_fbb_add_ref(&b, 2, digv);
  sn_fbb_add_i32(&b, 1, z->max_span_id, -1);
  ci = sn_fbb_end_table(&b);
  tool = sn_fbb_create_string(&b, z->build_tool.data, z->build_tool.len);
  ver = sn_fbb_create_string(&b, z->version.data, z->version.len);
  sn_fbb_start_table(&b, 6);
  sn_fbb_add_ref(&b, 5, ci);
  sn_fbb_add_i64(&b, 3, z->uncompressed_size, 0);
  sn_fbb_add_ref(&b, 4, toc);
  sn_fbb_add_i64(&b, 2, z->compressed_size, 0);
  sn_fbb_add_ref(&b, 0, ver);
  sn_fbb_add_ref(&b, 1, tool);
  rt = sn_fbb_end_table(&b);
  if (sn_fbb_finish(&b, rt, &out, len) == -1)
    diag("relayout: %s", sn_error());
  sn_fbb_free(&b);
  return out;
}

static void
test_other_layouts(void)
{
  static const char *const names[] = { "A.ztoc", "A4096.ztoc", "B.ztoc" };
  size_t i, len, olen;
  uint8_t *buf, *out;
  struct sn_ztoc *z, *z2;
  struct sn_fbb b;
  sn_fbb_ref t;

  for (i = 0; i < 3; i++) {
    z = decode_file(names[i]);
    buf = z ? relayout(z, &len) : NULL;
    z2 = buf ? sn_ztoc_decode(buf, len) : NULL;
    if (buf && !z2)
      diag("%s", sn_error());
    out = NULL;
    ok(z2 && len != vectors[i == 2 ? 4 : i].size &&
       sn_ztoc_encode(z2, &out, &olen) == 0 &&
       sha_is(out, olen, vectors[i == 2 ? 4 : i].sha256),
       "%s in another layout (shared strings, explicit defaults) "
       "decodes to the same model", names[i]);
    free(out);
    free(buf);
    sn_ztoc_free(z2);
    sn_ztoc_free(z);
  }

  /* The smallest valid ztoc: a root table without fields. */
  sn_fbb_init(&b);
  sn_fbb_start_table(&b, 6);
  t = sn_fbb_end_table(&b);
  sn_fbb_finish(&b, t, &buf, &len);
  sn_fbb_free(&b);
  z = sn_ztoc_decode(buf, len);
  ok(z && z->nfiles == 0 && z->compression == SN_COMP_GZIP &&
     z->version.len == 0 && z->version.data && z->max_span_id == 0 &&
     z->checkpoints_len == 0 && z->compressed_size == 0,
     "an empty root table decodes with defaults (%zu bytes)", len);
  sn_ztoc_free(z);
  free(buf);
}

/* ---- semantic checks on crafted models ---------------------------------- */

static struct sn_ztoc *
small_model(void)
{
  struct sn_ztoc *z = sn_ztoc_new();
  size_t i;

  sn_bytes_set(&z->version, "0.9", 3);
  sn_bytes_set(&z->build_tool, "test", 4);
  z->compressed_size = 100;
  z->uncompressed_size = 4096;
  z->max_span_id = 1;
  z->span_digests = calloc(2, sizeof *z->span_digests);
  z->nspan_digests = 2;
  for (i = 0; i < 2; i++)
    sn_bytes_set(&z->span_digests[i], "sha256:0000000000000000000000000000"
                 "000000000000000000000000000000000000", 71);
  z->files = calloc(3, sizeof *z->files);
  z->nfiles = 3;
  for (i = 0; i < 3; i++) {
    struct sn_ztoc_file *f = &z->files[i];
    char name[2] = { (char) ('a' + i), 0 };
    sn_bytes_set(&f->name, name, 1);
    sn_bytes_set(&f->type, "reg", 3);
    sn_bytes_set(&f->mod_time, "2023-11-14T22:13:20.5Z", 22);
  }
  z->files[0].offset = 1024;      /* stored out of order: a, b, c */
  z->files[0].size = 1;
  z->files[1].offset = 512;
  z->files[2].offset = 512;
  return z;
}

/* Encode z, decode it; returns the decoded ztoc (NULL on failure). */
static struct sn_ztoc *
cycle(struct sn_ztoc *z)
{
  uint8_t *buf = NULL;
  size_t len = 0;
  struct sn_ztoc *d = NULL;

  if (sn_ztoc_encode(z, &buf, &len) == 0)
    d = sn_ztoc_decode(buf, len);
  free(buf);
  sn_ztoc_free(z);
  return d;
}

static void
reject(struct sn_ztoc *z, const char *what, const char *msg)
{
  struct sn_ztoc *d = cycle(z);

  ok(d == NULL && good_error() && strstr(sn_error(), msg) != NULL,
     "%s rejected: %s", what, sn_error());
  sn_ztoc_free(d);
}

static void
test_semantics(void)
{
  struct sn_ztoc *z, *d;

  d = cycle(small_model());
  ok(d && d->nfiles == 3 && d->files[0].name.data[0] == 'b' &&
     d->files[1].name.data[0] == 'c' && d->files[2].name.data[0] == 'a' &&
     d->files[0].header_offset == 0 && d->files[1].header_offset == 512 &&
     d->files[2].header_offset == 512, "files sorted stably by offset, "
     "header offsets derived");
  ok(d && d->files[2].mtime_sec == 1700000000 &&
     d->files[2].mtime_nsec == 500000000, "fractional mod_time parsed");
  sn_ztoc_free(d);

  z = small_model();
  z->max_span_id = 2;
  reject(z, "max_span_id 2 with 2 digests", "max_span_id");
  z = small_model();
  z->span_digests[1].data[10] = 'A';
  reject(z, "upper-case digest", "digest");
  z = small_model();
  sn_bytes_set(&z->span_digests[0], "sha256:00", 9);
  reject(z, "short digest", "digest");
  z = small_model();
  z->max_span_id = -1;
  reject(z, "negative max_span_id", "max_span_id");
  z = small_model();
  z->files[1].offset = 1000;      /* b [1000,1000) after a? no: a at 1024 */
  z->files[0].size = 600;         /* a: [1024,1624), header of c at 1536 */
  z->files[2].offset = 1500;
  reject(z, "overlapping entries", "overlap");
  z = small_model();
  z->files[1].size = -1;
  reject(z, "negative size", "negative");
  z = small_model();
  z->files[0].offset = -512;
  reject(z, "negative offset", "negative");
  z = small_model();
  z->files[0].offset = INT64_MAX - 100;
  z->files[0].size = 200;
  reject(z, "offset + size overflow", "overflow");
  z = small_model();
  z->files[0].size = 4000;
  reject(z, "file past the archive end", "past the archive end");
  z = small_model();
  z->compressed_size = -1;
  reject(z, "negative compressed size", "negative");
  z = small_model();
  sn_bytes_set(&z->files[0].mod_time, "yesterday\n", 10);
  reject(z, "garbage mod_time", "RFC 3339");
  z = small_model();
  sn_bytes_set(&z->files[0].name, "evil\nname", 9);
  sn_bytes_set(&z->files[0].mod_time, "2023-11-14T22:13:20+25:00", 25);
  reject(z, "bad offset in mod_time, name with a newline", "\\x0a");

  /* Empty mod_time is Go's zero time; NULs in PAX values are kept. */
  z = small_model();
  sn_bytes_clear(&z->files[0].mod_time);
  z->files[0].pax = calloc(2, sizeof *z->files[0].pax);
  z->files[0].npax = 2;
  sn_bytes_set(&z->files[0].pax[0].key, "b", 1);
  sn_bytes_set(&z->files[0].pax[0].value, "x\0y", 3);
  sn_bytes_set(&z->files[0].pax[1].key, "a", 1);
  sn_bytes_set(&z->files[0].pax[1].value, "", 0);
  d = cycle(z);
  ok(d && d->files[2].mtime_sec == INT64_C(-62135596800) &&
     d->files[2].mod_time.len == 0, "empty mod_time is the zero time");
  ok(d && d->files[2].npax == 2 && bytes_is(&d->files[2].pax[0].key, "a") &&
     d->files[2].pax[0].value.len == 0 &&
     bytes_is(&d->files[2].pax[1].key, "b") &&
     d->files[2].pax[1].value.len == 3 &&
     memcmp(d->files[2].pax[1].value.data, "x\0y", 4) == 0,
     "PAX records written sorted by key; NUL bytes in values kept");
  sn_ztoc_free(d);

  z = small_model();
  z->compression = 7;
  ok(sn_ztoc_encode(z, &(uint8_t *) { NULL }, &(size_t) { 0 }) == -1,
     "encode rejects an unknown compression");
  sn_ztoc_free(z);
}

/* ---- hostile buffers ---------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t
rnd(void)
{
  return tap_xorshift(&rng);
}

/* Decode must fail cleanly or succeed with a consistent, encodable ztoc. */
static int
decode_safely(const uint8_t *buf, size_t len, int *accepted)
{
  struct sn_ztoc *z = sn_ztoc_decode(buf, len);
  uint8_t *out = NULL;
  size_t olen, i;
  int r = 1;

  *accepted = z != NULL;
  if (z == NULL)
    return good_error();
  for (i = 0; i < z->nfiles; i++)
    if (z->files[i].header_offset > z->files[i].offset ||
        (i && z->files[i].offset < z->files[i - 1].offset))
      r = 0;
  if (sn_ztoc_encode(z, &out, &olen) == -1)
    r = 0;
  free(out);
  sn_ztoc_free(z);
  return r;
}

static void
test_truncations(const char *name, size_t step_after)
{
  size_t len, n, tried = 0, rejected = 0;
  unsigned char *buf = load(name, &len);
  int good = 1, acc;

  for (n = 0; n < len; n += n < 2048 || n > len - 2048 ? 1 : step_after) {
    uint8_t *copy = malloc(n ? n : 1);   /* exact size: ASan sees overruns */
    memcpy(copy, buf, n);
    if (!decode_safely(copy, n, &acc))
      good = 0;
    tried++;
    rejected += !acc;
    free(copy);
  }
  ok(good && rejected == tried, "%s: all %zu truncations rejected cleanly",
     name, tried);
  free(buf);
}

static void
test_corruptions(const char *name, size_t count)
{
  size_t len, i, accepted = 0, lo = 0, hi = 0;
  unsigned char *buf = load(name, &len);
  struct sn_ztoc *z = sn_ztoc_decode(buf, len);
  int good = 1, acc;

  /* Most positions are aimed outside the checkpoint blob, which is opaque
   * bytes to the decoder. */
  if (z && z->checkpoints_len > 1024) {
    uint8_t *p = memmem(buf, len, z->checkpoints, z->checkpoints_len);
    if (p) {
      lo = (size_t) (p - buf);
      hi = lo + z->checkpoints_len;
    }
  }
  sn_ztoc_free(z);
  for (i = 0; i < count; i++) {
    size_t pos;
    uint8_t old, val;
    do
      pos = (size_t) (rnd() % len);
    while (pos >= lo && pos < hi && i % 8 != 0);
    old = buf[pos];
    val = i % 3 == 0 ? (uint8_t) (old ^ (1u << (rnd() % 8)))
                     : (uint8_t) rnd();
    buf[pos] = val;
    if (!decode_safely(buf, len, &acc)) {
      good = 0;
      diag("%s: byte %zu = 0x%02x: %s", name, pos, val, sn_error());
    }
    accepted += acc;
    buf[pos] = old;
  }
  ok(good, "%s: %zu random byte corruptions (%zu still valid) handled",
     name, count, accepted);
  free(buf);
}

static void
put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t) v;
  p[1] = (uint8_t) (v >> 8);
  p[2] = (uint8_t) (v >> 16);
  p[3] = (uint8_t) (v >> 24);
}

static void
put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t) v;
  p[1] = (uint8_t) (v >> 8);
}

/* Apply one patch to a copy of buf and expect a clean rejection. */
static void
expect_reject(const uint8_t *buf, size_t len, size_t pos, uint32_t v,
              int width, const char *what)
{
  uint8_t *c = malloc(len);
  struct sn_ztoc *z;

  memcpy(c, buf, len);
  if (width == 4)
    put32(c + pos, v);
  else
    put16(c + pos, (uint16_t) v);
  z = sn_ztoc_decode(c, len);
  ok(z == NULL && good_error(), "%s rejected: %s", what, sn_error());
  sn_ztoc_free(z);
  free(c);
}

static void
test_hostile_fields(void)
{
  static const uint32_t huge[] = { 0xffffffffu, 0x80000000u, 0x40000000u,
                                   0x3fffffffu };
  size_t len, i;
  unsigned char *buf = load("A4096.ztoc", &len);
  struct sn_fbr_table root, toc, ci, f0;
  struct sn_fbr_vec files, digests, cps, xattrs;
  const char *s;
  size_t slen;
  char what[80];

  if (!ok(sn_fbr_root(buf, len, &root) == 0 &&
          sn_fbr_table(&root, 4, &toc) == 1 &&
          sn_fbr_table(&root, 5, &ci) == 1 &&
          sn_fbr_vector(&toc, 0, 4, &files) == 1 &&
          sn_fbr_vec_table(&files, 4, &f0) == 0 &&
          sn_fbr_vector(&f0, 13, 4, &xattrs) == 1 && xattrs.n == 1 &&
          sn_fbr_vector(&ci, 2, 4, &digests) == 1 &&
          sn_fbr_vector(&ci, 3, 1, &cps) == 1 &&
          sn_fbr_string(&f0, 0, &s, &slen) == 1,
          "walk A4096.ztoc with the reader")) {
    free(buf);
    return;
  }

  for (i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    snprintf(what, sizeof what, "metadata count 0x%08x", huge[i]);
    expect_reject(buf, len, files.pos - 4, huge[i], 4, what);
    snprintf(what, sizeof what, "xattrs count 0x%08x", huge[i]);
    expect_reject(buf, len, xattrs.pos - 4, huge[i], 4, what);
    snprintf(what, sizeof what, "span_digests count 0x%08x", huge[i]);
    expect_reject(buf, len, digests.pos - 4, huge[i], 4, what);
    snprintf(what, sizeof what, "checkpoints count 0x%08x", huge[i]);
    expect_reject(buf, len, cps.pos - 4, huge[i], 4, what);
    snprintf(what, sizeof what, "string length 0x%08x", huge[i]);
    expect_reject(buf, len, (size_t) (s - (const char *) buf) - 4, huge[i],
                  4, what);
  }
  expect_reject(buf, len, cps.pos - 4, (uint32_t) (len - cps.pos + 1), 4,
                "checkpoints one byte past the end");
  expect_reject(buf, len, 0, (uint32_t) len, 4, "root offset = buffer size");
  expect_reject(buf, len, 0, (uint32_t) len - 3, 4,
                "root table straddling the end");
  expect_reject(buf, len, 0, 0xfffffff0u, 4, "root offset 0xfffffff0");
  expect_reject(buf, len, root.pos, 0x7fffffffu, 4,
                "vtable before the buffer");
  expect_reject(buf, len, root.pos, 0x80000000u, 4,
                "vtable far after the buffer");
  expect_reject(buf, len, root.pos, (uint32_t) -(int32_t) (len - root.pos - 2),
                4, "vtable in the last 2 bytes");
  expect_reject(buf, len, root.vt, 0xfffe, 2, "vtable size 0xfffe");
  expect_reject(buf, len, root.vt, 2, 2, "vtable size 2");
  expect_reject(buf, len, root.vt, 15, 2, "odd vtable size");
  expect_reject(buf, len, root.vt + 2, 0xffff, 2, "table size 0xffff");
  expect_reject(buf, len, root.vt + 2, 2, 2, "table size 2");
  expect_reject(buf, len, f0.vt + 4 + 2 * 2, 0xfff0, 2,
                "field offset outside the buffer");
  expect_reject(buf, len, files.pos + 4 * 3, 0xfffffff0u, 4,
                "vector element outside the buffer");
  expect_reject(buf, len, files.pos + 4 * 3, 0, 4,
                "vector element offset 0");
  expect_reject(buf, len, digests.pos, (uint32_t) (len - digests.pos - 2), 4,
                "string in the last 2 bytes");
  /* The name "etc/x" loses its NUL terminator. */
  expect_reject(buf, len, (size_t) (s - (const char *) buf) - 4, 4, 4,
                "string without its terminator");
  free(buf);

  {
    static const uint8_t tiny[][8] = {
      { 0 }, { 4, 0, 0, 0, 0, 0, 0, 0 }, { 4, 0, 0, 0, 4, 0, 0, 0 },
      { 4, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff },
    };
    int good = 1, acc;
    for (i = 0; i < sizeof tiny / sizeof tiny[0]; i++)
      for (len = 0; len <= 8; len++)
        good &= decode_safely(tiny[i], len, &acc) && !acc;
    ok(good, "tiny buffers rejected");
  }
}

/* Sharing: 1000 entries that all point at one 64 KiB name must not be
 * inflated to 64 MB; a shared "root" string must still be accepted. */
static void
test_amplification(void)
{
  struct sn_fbb b;
  sn_fbb_ref big, t, *refs, v, toc, rt;
  char *name = malloc(65536);
  uint8_t *buf;
  size_t len, i;
  struct sn_ztoc *z;

  memset(name, 'n', 65536);
  sn_fbb_init(&b);
  big = sn_fbb_create_string(&b, name, 65536);
  sn_fbb_start_table(&b, 14);
  sn_fbb_add_ref(&b, 0, big);
  t = sn_fbb_end_table(&b);
  refs = malloc(1000 * sizeof *refs);
  for (i = 0; i < 1000; i++)
    refs[i] = t;
  v = sn_fbb_create_ref_vector(&b, refs, 1000);
  sn_fbb_start_table(&b, 1);
  sn_fbb_add_ref(&b, 0, v);
  toc = sn_fbb_end_table(&b);
  sn_fbb_start_table(&b, 6);
  sn_fbb_add_ref(&b, 4, toc);
  rt = sn_fbb_end_table(&b);
  sn_fbb_finish(&b, rt, &buf, &len);
  sn_fbb_free(&b);
  z = sn_ztoc_decode(buf, len);
  ok(z == NULL && good_error() && strstr(sn_error(), "shared"),
     "one 64 KiB string shared by 1000 entries rejected: %s", sn_error());
  sn_ztoc_free(z);
  free(buf);
  free(refs);
  free(name);

  /* A buffer over the size limit is refused before it is parsed. */
  buf = calloc(1, SN_ZTOC_MAX_BLOB + 1);
  if (buf == NULL)
    abort();
  z = sn_ztoc_decode(buf, SN_ZTOC_MAX_BLOB + 1);
  ok(z == NULL && good_error() && strstr(sn_error(), "the limit is 128 MiB"),
     "a ztoc over 128 MiB refused: %s", sn_error());
  sn_ztoc_free(z);
  free(buf);
}

int
main(void)
{
  test_round_trip();
  test_testwrite();
  test_a_values();
  test_b_and_atar();
  test_load();
  test_tarzinfo();
  test_time();
  test_paths();
  test_ftypes();
  test_other_layouts();
  test_semantics();
  test_hostile_fields();
  test_amplification();
  test_truncations("A4096.ztoc", 37);
  test_truncations("B.ztoc", 211);
  test_truncations("Atar.ztoc", 1);
  test_corruptions("A4096.ztoc", 3000);
  test_corruptions("Atar.ztoc", 3000);
  test_corruptions("B.ztoc", 2000);
  test_corruptions("testwrite.ztoc", 1000);
  return done_testing();
}
