/* soci-nbd tests: an image opened for serving (lib/image/image.h) from a
 * local OCI layout built here out of the conformance vectors in
 * tests/data (layers A.tar.gz and B.tar.gz, their SOCI v2 index and
 * ztocs): tag → index → platform → manifest, SOCI index discovery, the
 * exports, the squashfs bytes served by sn_image_pread (superblock, each
 * layer's tar verbatim at its base, files readable by unsquashfs when it
 * is installed), stats JSON, the whole-layer path with a cache directory,
 * and corrupt or missing inputs.  No network. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "util/digest.h"
#include "util/err.h"
#include "image/image.h"
#include "squashfs/sqfs.h"
#include "tap.h"


/* Digests of the vectors (tests/data/SHA256SUMS). */
#define A_DG "sha256:de7173e022eda6dd50fae431dedbba7982c408691d8e982c89c1ddb5bf881f03"
#define B_DG "sha256:0d4b4a975a663a4b4afae4bebe918e10582b982a9272cefd2a8864780d2a75a5"
#define SOCI_MANIFEST_DG \
  "sha256:6b05dcddcc4ba3b6e25ae228897ad75cf538bc6ee4240c4b82009364048760f3"
#define PLAIN_MANIFEST_DG \
  "sha256:9f49fea4609e2feb5fcc56e4dc5f02a2a89e06102b16aa8007b0c4cf595f2d4c"
#define SOCI_INDEX_DG \
  "sha256:17118e0d403f4afc8834c6d8852bff5c2723ff462bff463cb82a58840b84fd65"
#define A_ZTOC_DG \
  "sha256:e2cad9bdd5907d197861ad360523d52f3f6b7b277baf0edec19862be3caa5def"

static char tmpdir[256], lay[512], ref_soci[600], ref_plain[600];
static uint8_t *atar, *btar;
static size_t atar_len, btar_len;

/* ---- the layout ------------------------------------------------------- */

static void
write_at(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd == -1 || write(fd, data, len) != (ssize_t) len || close(fd) == -1) {
    printf("Bail out! cannot write %s: %s\n", path, strerror(errno));
    exit(1);
  }
}

/* Store bytes under their digest; its text into dg (may be NULL). */
static void
put_blob(const void *data, size_t len, char *dg)
{
  char p[1024], d[SN_DIGEST_STRLEN + 1];
  uint8_t h[SN_SHA256_LEN];

  sn_sha256(data, len, h);
  sn_digest_format(h, d);
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", lay, d + 7);
  write_at(p, data, len);
  if (dg)
    strcpy(dg, d);
}

/* A file of tests/data as a blob. */
static size_t
put_vector(const char *name, char *dg)
{
  char p[1024];
  size_t len;
  uint8_t *b;

  snprintf(p, sizeof p, "%s/%s", DATADIR, name);
  b = slurp(p, &len);
  put_blob(b, len, dg);
  free(b);
  return len;
}

static void
make_layout(void)
{
  static const char *const vectors[] = {
    "A.tar.gz", "B.tar.gz", "config.json", "image-manifest.json",
    "image-manifest-soci.json", "soci-index-v2.json", "A4096.ztoc",
    "B.ztoc",
  };
  char p[1024], idx[2048], index_dg[SN_DIGEST_STRLEN + 1];
  char plain_dg[SN_DIGEST_STRLEN + 1];
  size_t i, index_len, plain_len;

  snprintf(lay, sizeof lay, "%s/layout", tmpdir);
  snprintf(p, sizeof p, "mkdir -p '%s/blobs/sha256'", lay);
  if (system(p) != 0) {
    printf("Bail out! %s\n", p);
    exit(1);
  }
  snprintf(p, sizeof p, "%s/oci-layout", lay);
  write_at(p, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
  for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
    put_vector(vectors[i], NULL);
  put_blob("{}", 2, NULL);            /* the SOCI index's empty config */
  /* v1: the image index soci convert makes (image + SOCI index entries);
   * plain: the manifest without a SOCI index. */
  index_len = put_vector("oci-index-soci.json", index_dg);
  plain_len = put_vector("image-manifest.json", plain_dg);
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}},"
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"plain\"}}]}",
           index_dg, index_len, plain_dg, plain_len);
  snprintf(p, sizeof p, "%s/index.json", lay);
  write_at(p, idx, strlen(idx));
  snprintf(ref_soci, sizeof ref_soci, "oci-layout:%s:v1", lay);
  snprintf(ref_plain, sizeof ref_plain, "oci-layout:%s:plain", lay);
  snprintf(p, sizeof p, "%s/A.tar", DATADIR);
  atar = slurp(p, &atar_len);
  snprintf(p, sizeof p, "%s/B.tar", DATADIR);
  btar = slurp(p, &btar_len);
}

static void
opts_init(struct sn_image_opts *o)
{
  memset(o, 0, sizeof *o);
  o->platform = "linux/amd64";
}

/* ---- reading exports -------------------------------------------------- */

static uint32_t
le32(const uint8_t *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
    (uint32_t) p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
  return (uint64_t) le32(p) | (uint64_t) le32(p + 4) << 32;
}

/* The whole export, read in odd-sized pieces; NULL on a failed read. */
static uint8_t *
read_export(struct sn_image *img, struct sn_image_export *e, uint64_t *size)
{
  uint64_t n = sn_sqfs_size(e->sqfs), off = 0;
  uint8_t *buf = malloc(n);

  *size = n;
  while (buf && off < n) {
    size_t len = n - off < 3001 ? (size_t) (n - off) : 3001;

    if (sn_image_pread(img, e, buf + off, len, off) == -1) {
      free(buf);
      return NULL;
    }
    off += len;
  }
  return buf;
}

/* Superblock fields (docs/squashfs-layout.md) against the image's own
 * description. */
static void
check_super(const char *what, const uint8_t *img, uint64_t size,
            const struct sn_sqfs *sq)
{
  ok(memcmp(img, "hsqs", 4) == 0, "%s: superblock magic hsqs", what);
  ok(le32(img + 4) == sn_sqfs_inode_count(sq),
     "%s: inode count %u", what, le32(img + 4));
  ok(le32(img + 12) == SN_SQFS_DEFAULT_BLOCK_SIZE,
     "%s: block size %u", what, le32(img + 12));
  ok(le64(img + 40) == sn_sqfs_bytes_used(sq) && le64(img + 40) <= size &&
     size % 4096 == 0, "%s: bytes_used %llu inside the %llu-byte image",
     what, (unsigned long long) le64(img + 40), (unsigned long long) size);
}

/* Where a tar's entries end: the offset of its first all-zero header
 * (walked here, headers and data rounded up to 512). */
static size_t
tar_end(const uint8_t *tar, size_t len)
{
  static const uint8_t zero[512];
  size_t off = 0;

  while (off + 512 <= len && memcmp(tar + off, zero, 512) != 0) {
    size_t size = (size_t) strtoull((const char *) tar + off + 124, NULL, 8);

    off += 512 + (size + 511) / 512 * 512;
  }
  return off;
}

/* Layer L's tar regions of the image (sn_sqfs_region) hold the tar's bytes
 * at base_L + their tar offset, and reach at least the end of its last
 * entry. */
static bool
tar_in_image(const uint8_t *img, uint64_t size, const struct sn_sqfs *sq,
             size_t layer, const uint8_t *tar, size_t tar_len)
{
  uint64_t base = sn_sqfs_layer_base(sq, layer), reach = 0;
  size_t i, n = 0;

  for (i = 0; i < sn_sqfs_nregions(sq); i++) {
    const struct sn_sqfs_region *r = sn_sqfs_region(sq, i);

    if (r->kind != SN_SQFS_REGION_TAR || r->layer != layer)
      continue;
    if (r->start < base || r->end > size || r->end - base > tar_len ||
        memcmp(img + r->start, tar + (r->start - base),
               r->end - r->start) != 0) {
      diag("layer %zu: region [%llu, %llu) is not the tar's bytes", layer,
           (unsigned long long) r->start, (unsigned long long) r->end);
      return false;
    }
    if (r->end - base > reach)
      reach = r->end - base;
    n++;
  }
  if (n == 0 || reach < tar_end(tar, tar_len))
    diag("layer %zu: %zu tar regions reaching %llu, entries end at %zu",
         layer, n, (unsigned long long) reach, tar_end(tar, tar_len));
  return n > 0 && reach >= tar_end(tar, tar_len);
}

/* unsquashfs -cat of path in the image equals the member of the tar. */
static bool
unsquashfs_cat(const char *imgfile, const char *path, const char *tar)
{
  char cmd[2048];

  snprintf(cmd, sizeof cmd, "unsquashfs -cat '%s' '%s' 2>/dev/null | "
           "cmp -s - <(tar -xOf '%s/%s' '%s')", imgfile, path, DATADIR, tar,
           path);
  {
    char bash[2300];

    snprintf(bash, sizeof bash, "bash -c \"%s\"", cmd);
    return system(bash) == 0;
  }
}

static bool
have_unsquashfs(void)
{
  return system("command -v unsquashfs >/dev/null 2>&1 && "
                "command -v bash >/dev/null 2>&1") == 0;
}

/* ---- the SOCI image --------------------------------------------------- */

static void
test_soci(void)
{
  struct sn_image_opts o;
  struct sn_image *img;
  struct sn_image_export *e, *flat;
  static const char *const names[] = {
    "", "flat", "layer/0", "layer/1", A_DG, B_DG,
  };
  uint8_t *buf;
  uint64_t size;
  size_t i;
  char *js;

  opts_init(&o);
  img = sn_image_open(ref_soci, &o);
  OK(img != NULL, "open %s: %s", ref_soci, ERR);
  if (img == NULL)
    return;
  ok(sn_image_nlayers(img) == 2, "two layers");
  ok(strcmp(sn_image_layer_digest(img, 0), A_DG) == 0 &&
     strcmp(sn_image_layer_digest(img, 1), B_DG) == 0,
     "... A.tar.gz then B.tar.gz");
  ok(sn_image_nexports(img) == 6, "six exports (%zu)",
     sn_image_nexports(img));
  for (i = 0; i < 6 && i < sn_image_nexports(img); i++)
    ok(strcmp(sn_image_export(img, i)->name, names[i]) == 0,
       "export %zu is \"%s\" (%s)", i, names[i],
       sn_image_export(img, i)->name);
  e = sn_image_find_export(img, "");
  flat = sn_image_find_export(img, "flat");
  OK(e && flat && e->sqfs == flat->sqfs && sn_sqfs_nlayers(e->sqfs) == 2 &&
     e->first_layer == 0, "\"\" and \"flat\": the same 2-layer image: %s",
     ERR);
  e = sn_image_find_export(img, "layer/1");
  OK(e && sn_image_find_export(img, B_DG) &&
     sn_image_find_export(img, B_DG)->sqfs == e->sqfs &&
     sn_sqfs_nlayers(e->sqfs) == 1 && e->first_layer == 1,
     "\"layer/1\" and B's digest: B's own image: %s", ERR);
  OK(sn_image_find_export(img, "layer/2") == NULL,
     "no export layer/2: %s", WHY);
  OK(sn_image_find_export(img, "nope") == NULL, "no export \"nope\": %s",
     WHY);

  /* The flattened image. */
  e = sn_image_find_export(img, "");
  buf = read_export(img, e, &size);
  OK(buf != NULL, "read the whole flattened image (%llu bytes): %s",
     (unsigned long long) size, ERR);
  if (buf) {
    uint64_t b0 = sn_sqfs_layer_base(e->sqfs, 0);
    uint64_t b1 = sn_sqfs_layer_base(e->sqfs, 1);

    check_super("flat", buf, size, e->sqfs);
    ok(b0 >= 4096 && b0 % 4096 == 0 && b1 > b0 && b1 % 4096 == 0,
       "layer bases %llu and %llu, 4096-aligned", (unsigned long long) b0,
       (unsigned long long) b1);
    ok(tar_in_image(buf, size, e->sqfs, 0, atar, atar_len),
       "A.tar verbatim at layer 0's base");
    ok(tar_in_image(buf, size, e->sqfs, 1, btar, btar_len),
       "B.tar verbatim at layer 1's base");
    /* a.txt is B.tar's first member: its data right after its header. */
    ok(memcmp(btar, "a.txt", 6) == 0 &&
       memcmp(buf + b1 + 512, btar + 512, 10800) == 0,
       "a.txt's 10800 bytes at B's base + 512");
    ok(e->bytes_read == size, "bytes_read counts the reads (%llu)",
       (unsigned long long) e->bytes_read);
    if (have_unsquashfs()) {
      char f[600];

      snprintf(f, sizeof f, "%s/flat.sqfs", tmpdir);
      write_at(f, buf, size);
      ok(unsquashfs_cat(f, "a.txt", "B.tar") &&
         unsquashfs_cat(f, "dir/b.txt", "B.tar") &&
         unsquashfs_cat(f, "etc/hello.txt", "A.tar"),
         "unsquashfs reads a.txt, dir/b.txt and etc/hello.txt back");
      unlink(f);
    }
    else
      diag("unsquashfs not installed: file contents not extracted");
  }
  free(buf);

  /* Layer A's own image. */
  e = sn_image_find_export(img, "layer/0");
  buf = e ? read_export(img, e, &size) : NULL;
  OK(buf != NULL, "read layer/0's image: %s", ERR);
  if (buf) {
    uint64_t b0 = sn_sqfs_layer_base(e->sqfs, 0);

    check_super("layer/0", buf, size, e->sqfs);
    ok(b0 >= 4096 && tar_in_image(buf, size, e->sqfs, 0, atar, atar_len),
       "A.tar verbatim at layer/0's base %llu", (unsigned long long) b0);
  }
  free(buf);

  OK(sn_image_prefetch(img, sn_image_find_export(img, ""), 65536, 0) == 0,
     "prefetch the first 64 KiB: %s", ERR);

  /* Stats JSON. */
  js = sn_image_stats_json(img);
  {
    json_error_t je;
    json_t *j = js ? json_loads(js, 0, &je) : NULL;
    json_t *layers = json_object_get(j, "layers");
    json_t *ex = json_object_get(j, "exports");

    ok(j != NULL, "stats JSON parses%s%s", j ? "" : ": ",
       j ? "" : js ? je.text : "(null)");
    ok(json_is_string(json_object_get(j, "manifest")) &&
       strcmp(json_string_value(json_object_get(j, "manifest")),
              SOCI_MANIFEST_DG) == 0,
       "... names the linux/amd64 manifest of the index");
    ok(json_is_string(json_object_get(j, "index")) &&
       strcmp(json_string_value(json_object_get(j, "index")),
              SOCI_INDEX_DG) == 0,
       "... and the SOCI v2 index from its annotation");
    ok(json_array_size(layers) == 2 &&
       strcmp(json_string_value(json_object_get(json_array_get(layers, 0),
                                                "digest")), A_DG) == 0 &&
       strcmp(json_string_value(json_object_get(json_array_get(layers, 1),
                                                "digest")), B_DG) == 0,
       "... names the two layers, in order");
    ok(json_is_true(json_object_get(json_array_get(layers, 0), "lazy")) &&
       json_is_true(json_object_get(json_array_get(layers, 1), "lazy")),
       "... both lazy (they have ztocs)");
    ok(json_is_string(json_object_get(json_array_get(layers, 0), "ztoc")) &&
       strcmp(json_string_value(json_object_get(json_array_get(layers, 0),
                                                "ztoc")), A_ZTOC_DG) == 0,
       "... layer 0's ztoc is A4096.ztoc");
    ok(json_object_size(ex) == 6 && json_object_get(ex, "layer/0") &&
       json_object_get(ex, B_DG) &&
       json_integer_value(json_object_get(json_object_get(ex, ""),
                                          "bytes_read")) > 0,
       "... lists the six exports with their bytes read");
    ok(json_integer_value(json_object_get(j, "whole_layer_bytes_fetched"))
       == 0, "... nothing downloaded whole");
    json_decref(j);
  }
  free(js);
  sn_image_free(img);
}

/* ---- the same layers without a SOCI index ----------------------------- */

static void
test_plain(void)
{
  struct sn_image_opts o;
  struct sn_image *img;
  struct sn_image_export *e;
  char cache[600], p[1200];
  uint8_t *buf;
  uint64_t size;
  char *js;
  json_t *j;

  snprintf(cache, sizeof cache, "%s/cache", tmpdir);
  mkdir(cache, 0700);
  opts_init(&o);
  o.cache_dir = cache;
  img = sn_image_open(ref_plain, &o);
  OK(img != NULL, "open %s (no SOCI index), cache_dir: %s", ref_plain, ERR);
  if (img == NULL)
    return;
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", cache, A_DG + 7);
  ok(access(p, F_OK) == 0, "layer A was downloaded whole into cache_dir");
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", cache, B_DG + 7);
  ok(access(p, F_OK) == 0, "... and layer B");
  e = sn_image_find_export(img, "");
  buf = e ? read_export(img, e, &size) : NULL;
  OK(buf != NULL, "read the flattened image: %s", ERR);
  if (buf) {
    check_super("plain flat", buf, size, e->sqfs);
    ok(tar_in_image(buf, size, e->sqfs, 0, atar, atar_len) &&
       tar_in_image(buf, size, e->sqfs, 1, btar, btar_len),
       "both tars verbatim at their bases");
  }
  free(buf);
  js = sn_image_stats_json(img);
  j = js ? json_loads(js, 0, NULL) : NULL;
  ok(j && strcmp(json_string_value(json_object_get(j, "manifest")),
                 PLAIN_MANIFEST_DG) == 0 &&
     json_is_null(json_object_get(j, "index")),
     "stats: the plain manifest, no index");
  ok(json_is_false(json_object_get(json_array_get(json_object_get(j,
                                                                  "layers"),
                                                  1), "lazy")) &&
     json_integer_value(json_object_get(j, "whole_layer_bytes_fetched")) ==
     307 + 573, "... layers not lazy, 880 bytes downloaded whole");
  json_decref(j);
  free(js);
  sn_image_free(img);

  /* Again: the cached layers are reused, nothing downloaded. */
  img = sn_image_open(ref_plain, &o);
  OK(img != NULL, "reopen with the same cache_dir: %s", ERR);
  js = img ? sn_image_stats_json(img) : NULL;
  j = js ? json_loads(js, 0, NULL) : NULL;
  ok(j && json_integer_value(json_object_get(j,
                                             "whole_layer_bytes_fetched"))
     == 0, "... reuses the cached layers");
  json_decref(j);
  free(js);
  sn_image_free(img);

  /* A cached layer that was corrupted is not used. */
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", cache, B_DG + 7);
  {
    uint8_t junk[573];

    memset(junk, 0x5a, sizeof junk);
    write_at(p, junk, sizeof junk);
  }
  img = sn_image_open(ref_plain, &o);
  e = img ? sn_image_find_export(img, "") : NULL;
  buf = e ? read_export(img, e, &size) : NULL;
  OK(buf && tar_in_image(buf, size, e->sqfs, 1, btar, btar_len),
     "a corrupted cached layer is fetched again, not served: %s", ERR);
  free(buf);
  sn_image_free(img);

  /* A cache directory writable by others is refused. */
  chmod(cache, 0777);
  img = sn_image_open(ref_plain, &o);
  OK(img == NULL && strstr(sn_error(), "refused"),
     "a cache_dir writable by others: %s", WHY);
  sn_image_free(img);
  chmod(cache, 0700);
  o.cache_dir = NULL;
  o.cache_dir_size = 1 << 20;
  img = sn_image_open(ref_plain, &o);
  OK(img == NULL && strstr(sn_error(), "needs a cache directory"),
     "cache_dir_size without cache_dir: %s", WHY);
  sn_image_free(img);
}

/* ---- failures --------------------------------------------------------- */

/* Replace blob dg of the layout by its bytes with one flipped; returns the
 * original bytes (to restore). */
static uint8_t *
corrupt_blob(const char *dg, size_t at, size_t *len)
{
  char p[1024];
  uint8_t *orig, *bad;

  snprintf(p, sizeof p, "%s/blobs/sha256/%s", lay, dg + 7);
  orig = slurp(p, len);
  bad = malloc(*len);
  memcpy(bad, orig, *len);
  bad[at] ^= 0x40;
  write_at(p, bad, *len);
  free(bad);
  return orig;
}

static void
restore_blob(const char *dg, uint8_t *orig, size_t len)
{
  char p[1024];

  snprintf(p, sizeof p, "%s/blobs/sha256/%s", lay, dg + 7);
  write_at(p, orig, len);
  free(orig);
}

static void
test_failures(void)
{
  struct sn_image_opts o;
  struct sn_image *img;
  struct sn_image_export *e;
  char ref[700];
  uint8_t *orig, *buf;
  size_t len;
  uint64_t size;

  opts_init(&o);
  snprintf(ref, sizeof ref, "oci-layout:%s:nope", lay);
  img = sn_image_open(ref, &o);
  OK(img == NULL && strstr(sn_error(), "nope"), "an unknown tag: %s", WHY);
  sn_image_free(img);
  snprintf(ref, sizeof ref, "oci-layout:%s/missing:v1", tmpdir);
  img = sn_image_open(ref, &o);
  OK(img == NULL, "a missing layout: %s", WHY);
  sn_image_free(img);
  o.platform = "linux/s390x";
  img = sn_image_open(ref_soci, &o);
  OK(img == NULL && strstr(sn_error(), "linux/s390x"),
     "a platform the index lacks: %s", WHY);
  sn_image_free(img);
  opts_init(&o);
  o.index = "sha256:3333333333333333333333333333333333333333333333333333"
    "333333333333";
  img = sn_image_open(ref_soci, &o);
  OK(img == NULL, "an explicit SOCI index that does not exist: %s", WHY);
  sn_image_free(img);

  /* index "none": the SOCI image is read whole instead. */
  opts_init(&o);
  o.index = "none";
  img = sn_image_open(ref_soci, &o);
  {
    char *js = img ? sn_image_stats_json(img) : NULL;
    json_t *j = js ? json_loads(js, 0, NULL) : NULL;

    OK(img && json_is_null(json_object_get(j, "index")) &&
       json_integer_value(json_object_get(j, "whole_layer_bytes_fetched"))
       == 307 + 573, "index \"none\": no SOCI index, layers whole: %s", ERR);
    json_decref(j);
    free(js);
  }
  sn_image_free(img);

  /* Lazy layer B corrupted in the layout: the image opens (ztocs are
   * fine) but its tar bytes are not served. */
  opts_init(&o);
  orig = corrupt_blob(B_DG, 300, &len);
  img = sn_image_open(ref_soci, &o);
  OK(img != NULL, "open with layer B's blob corrupted (lazy): %s", ERR);
  e = img ? sn_image_find_export(img, "") : NULL;
  if (e) {
    uint8_t sb[96], tar[512];
    uint64_t b0 = sn_sqfs_layer_base(e->sqfs, 0);
    uint64_t b1 = sn_sqfs_layer_base(e->sqfs, 1);

    OK(sn_image_pread(img, e, sb, sizeof sb, 0) == 0 &&
       memcmp(sb, "hsqs", 4) == 0, "... the superblock still reads: %s",
       ERR);
    OK(sn_image_pread(img, e, tar, sizeof tar, b0) == 0 &&
       memcmp(tar, atar, sizeof tar) == 0, "... and layer A's tar: %s", ERR);
    buf = malloc(btar_len);
    OK(sn_image_pread(img, e, buf, btar_len, b1) == -1,
       "... layer B's tar is refused: %s", WHY);
    free(buf);
  }
  sn_image_free(img);

  /* Not lazy (index none), corrupted: open fails, naming the layer. */
  o.index = "none";
  img = sn_image_open(ref_soci, &o);
  OK(img == NULL && strstr(sn_error(), B_DG + 7),
     "a whole layer not matching its digest fails the open: %s", WHY);
  sn_image_free(img);
  restore_blob(B_DG, orig, len);

  /* A corrupted ztoc: the open fails (fetched by digest, verified). */
  opts_init(&o);
  orig = corrupt_blob(A_ZTOC_DG, 1000, &len);
  img = sn_image_open(ref_soci, &o);
  OK(img == NULL, "a ztoc not matching its digest fails the open: %s", WHY);
  sn_image_free(img);
  restore_blob(A_ZTOC_DG, orig, len);

  /* Restored: everything reads again. */
  img = sn_image_open(ref_soci, &o);
  e = img ? sn_image_find_export(img, "") : NULL;
  buf = e ? read_export(img, e, &size) : NULL;
  OK(buf != NULL, "after restoring the blobs the image reads again: %s",
     ERR);
  free(buf);
  sn_image_free(img);
}

int
main(void)
{
  tap_tmpdir(tmpdir, sizeof tmpdir, "image");
  make_layout();
  test_soci();
  test_plain();
  test_failures();
  free(atar);
  free(btar);
  tap_rm_tree(tmpdir);
  return done_testing();
}
