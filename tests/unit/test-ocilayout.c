/* soci-nbd tests: the OCI image layout backend (lib/registry/ocilayout.c)
 * on layouts written here, file by file: the oci-layout check, tags from
 * index.json annotations (and the defaulted tag), manifests and blobs
 * verified against their digests, ranges, missing and malformed files,
 * digests that try to leave blobs/sha256/, writes (push, streaming
 * adopt, put_manifest) and referrers by subject and by the fallback tag. */
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
#include "registry/manifest.h"
#include "registry/ocilayout.h"
#include "tap.h"


#define CONFIG_MT "application/vnd.oci.image.config.v1+json"
#define LAYER_MT "application/vnd.oci.image.layer.v1.tar+gzip"
#define ART_TYPE "application/vnd.example.sig+json"

static char tmpdir[256];

/* ---- writing layouts -------------------------------------------------- */

static void
digest_of(const void *data, size_t len, char out[SN_DIGEST_STRLEN + 1])
{
  uint8_t d[SN_SHA256_LEN];

  sn_sha256(data, len, d);
  sn_digest_format(d, out);
}

static void
write_at(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd == -1 || write(fd, data, len) != (ssize_t) len || close(fd) == -1) {
    printf("Bail out! cannot write %s: %s\n", path, strerror(errno));
    exit(1);
  }
}

/* dir/rel := s */
static void
put_file(const char *dir, const char *rel, const char *s)
{
  char p[1024];

  snprintf(p, sizeof p, "%s/%s", dir, rel);
  write_at(p, s, strlen(s));
}

/* A blob, stored under its digest (written into dg). */
static void
put_blob(const char *dir, const void *data, size_t len,
         char dg[SN_DIGEST_STRLEN + 1])
{
  char p[1024];

  digest_of(data, len, dg);
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", dir, dg + 7);
  write_at(p, data, len);
}

/* An empty layout directory tmpdir/name (oci-layout 1.0.0, no index). */
static void
new_layout(char *dir, size_t n, const char *name)
{
  char p[1024];

  snprintf(dir, n, "%s/%s", tmpdir, name);
  snprintf(p, sizeof p, "mkdir -p '%s/blobs/sha256'", dir);
  if (system(p) != 0) {
    printf("Bail out! %s\n", p);
    exit(1);
  }
  put_file(dir, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
}

/* An image manifest over config {} and one layer (both stored); its
 * JSON into buf, its digest into dg. */
static void
put_manifest(const char *dir, const char *layer_dg, size_t layer_len,
             const char *extra, char *buf, size_t n,
             char dg[SN_DIGEST_STRLEN + 1])
{
  char cfg[SN_DIGEST_STRLEN + 1];

  put_blob(dir, "{}", 2, cfg);
  snprintf(buf, n, "{\"schemaVersion\":2,\"mediaType\":\""
           SN_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\"" CONFIG_MT
           "\",\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\""
           LAYER_MT "\",\"digest\":\"%s\",\"size\":%zu}]%s}", cfg, layer_dg,
           layer_len, extra ? extra : "");
  put_blob(dir, buf, strlen(buf), dg);
}

static size_t
count_files(const char *dir)
{
  char cmd[1024];
  FILE *f;
  size_t n = 0;
  int c;

  snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
  f = popen(cmd, "r");
  if (f == NULL)
    return (size_t) -1;
  while ((c = fgetc(f)) != EOF)
    if (c == '\n')
      n++;
  pclose(f);
  return n;
}

/* ---- the fixture: a layout with two tags and an untagged entry -------- */

static char fx[512];                                 /* its directory */
static char layer_dg[SN_DIGEST_STRLEN + 1], big_dg[SN_DIGEST_STRLEN + 1];
static char m1_dg[SN_DIGEST_STRLEN + 1], m2_dg[SN_DIGEST_STRLEN + 1];
static char m3_dg[SN_DIGEST_STRLEN + 1], m4_dg[SN_DIGEST_STRLEN + 1];
static char m1[2048], m2[2048], m3[2048], m4[2048];
static uint8_t layer[3000], *big;
static size_t big_len = (5u << 20) / 2 + 12345;      /* > 2 read chunks */

static void
make_fixture(void)
{
  char idx[4096];
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  size_t i;

  new_layout(fx, sizeof fx, "fixture");
  for (i = 0; i < sizeof layer; i++)
    layer[i] = (uint8_t) tap_xorshift(&seed);
  put_blob(fx, layer, sizeof layer, layer_dg);
  big = malloc(big_len);
  for (i = 0; i < big_len; i++)
    big[i] = (uint8_t) tap_xorshift(&seed);
  put_blob(fx, big, big_len, big_dg);
  put_manifest(fx, layer_dg, sizeof layer, NULL, m1, sizeof m1, m1_dg);
  put_manifest(fx, big_dg, big_len, NULL, m2, sizeof m2, m2_dg);
  put_manifest(fx, layer_dg, sizeof layer,
               ",\"annotations\":{\"k\":\"untagged\"}", m3, sizeof m3,
               m3_dg);
  /* m4: stored, but not listed in index.json. */
  put_manifest(fx, layer_dg, sizeof layer,
               ",\"annotations\":{\"k\":\"unlisted\"}", m4, sizeof m4,
               m4_dg);
  snprintf(idx, sizeof idx,
           "{\"schemaVersion\":2,\"manifests\":["
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}},"
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v2\"}},"
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu}]}",
           m1_dg, strlen(m1), m2_dg, strlen(m2), m3_dg, strlen(m3));
  put_file(fx, "index.json", idx);
}

/* ---- reads ------------------------------------------------------------ */

static void
test_tags(void)
{
  struct sn_layout *l = sn_layout_open(fx, NULL);
  struct sn_manifest *m;

  m = sn_layout_get_manifest(l, "v1");
  OK(m && strcmp(m->digest, m1_dg) == 0 && m->raw_len == strlen(m1) &&
     memcmp(m->raw, m1, m->raw_len) == 0,
     "tag v1 resolves to its manifest through index.json: %s", ERR);
  OK(m && !m->is_index && m->nlayers == 1 &&
     strcmp(m->layers[0].digest, layer_dg) == 0 &&
     m->layers[0].size == (int64_t) sizeof layer &&
     strcmp(m->media_type, SN_MT_OCI_MANIFEST) == 0,
     "... parsed: one layer of %zu bytes", sizeof layer);
  sn_manifest_free(m);
  m = sn_layout_get_manifest(l, "v2");
  OK(m && strcmp(m->digest, m2_dg) == 0, "tag v2 resolves to another: %s",
     ERR);
  sn_manifest_free(m);
  m = sn_layout_get_manifest(l, "v3");
  OK(m == NULL && strstr(sn_error(), "no manifest tagged \"v3\""),
     "an unknown tag: %s", WHY);
  m = sn_layout_get_manifest(l, "latest");
  OK(m == NULL && strstr(sn_error(), "no manifest tagged"),
     "no default tag: \"latest\" is not the first entry: %s", WHY);
  m = sn_layout_get_manifest(l, m3_dg);
  OK(m && strcmp(m->digest, m3_dg) == 0 &&
     strcmp(sn_annotation_get(m->annotations, m->nannotations, "k"),
            "untagged") == 0, "an untagged entry by digest: %s", ERR);
  sn_manifest_free(m);
  m = sn_layout_get_manifest(l, m4_dg);
  OK(m && strcmp(m->digest, m4_dg) == 0,
     "a manifest blob not listed in index.json, by digest: %s", ERR);
  sn_manifest_free(m);
  /* A tag that looks like a path is only ever a name in index.json. */
  m = sn_layout_get_manifest(l, "../../../etc/passwd");
  OK(m == NULL && strstr(sn_error(), "no manifest tagged"),
     "a tag like a path is just an unknown tag: %s", WHY);
  m = sn_layout_get_manifest(l, "sha256:0000000000000000000000000000000000"
                             "000000000000000000000000000000");
  OK(m == NULL, "an absent manifest digest: %s", WHY);
  sn_layout_close(l);

  /* The default tag stands for the only manifest of a one-entry index. */
  {
    char d[512], idx[1024];

    new_layout(d, sizeof d, "one-entry");
    put_blob(d, layer, sizeof layer, layer_dg);
    put_manifest(d, layer_dg, sizeof layer, NULL, m1, sizeof m1, m1_dg);
    snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
             "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
             "\"size\":%zu}]}", m1_dg, strlen(m1));
    put_file(d, "index.json", idx);
    l = sn_layout_open(d, "latest");
    m = sn_layout_get_manifest(l, "latest");
    OK(m && strcmp(m->digest, m1_dg) == 0,
       "default tag \"latest\" = the only entry: %s", ERR);
    sn_manifest_free(m);
    m = sn_layout_get_manifest(l, "other");
    OK(m == NULL, "... but not any other tag: %s", WHY);
    sn_layout_close(l);
    l = sn_layout_open(d, NULL);
    m = sn_layout_get_manifest(l, "latest");
    OK(m == NULL, "without a default tag, \"latest\" is unknown: %s", WHY);
    sn_layout_close(l);
    l = sn_layout_open(fx, "latest");
    m = sn_layout_get_manifest(l, "latest");
    OK(m == NULL && strstr(sn_error(), "no manifest tagged"),
       "the default does not apply to a three-entry index: %s", WHY);
    sn_layout_close(l);
  }
}

static int
collect(void *opaque, const uint8_t *data, size_t len)
{
  struct { uint8_t *buf; size_t len, calls; } *c = opaque;

  c->buf = realloc(c->buf, c->len + len);
  memcpy(c->buf + c->len, data, len);
  c->len += len;
  c->calls++;
  return 0;
}

static int
refuse(void *opaque, const uint8_t *data, size_t len)
{
  (void) opaque;
  (void) data;
  (void) len;
  return sn_set_error("sink says no");
}

static void
test_blobs(void)
{
  struct sn_layout *l = sn_layout_open(fx, NULL);
  struct { uint8_t *buf; size_t len, calls; } c = { NULL, 0, 0 };
  uint8_t *buf = NULL, part[1000];
  size_t len = 0;
  int64_t size = -1;

  OK(sn_layout_get_blob_mem(l, layer_dg, 1 << 20, &buf, &len) == 0 &&
     len == sizeof layer && memcmp(buf, layer, len) == 0,
     "get_blob_mem: the layer's bytes: %s", ERR);
  free(buf);
  buf = NULL;
  OK(sn_layout_get_blob_mem(l, layer_dg, sizeof layer - 1, &buf, &len) == -1
     && strstr(sn_error(), "larger than"),
     "get_blob_mem over max is refused: %s", WHY);
  free(buf);

  OK(sn_layout_get_blob(l, big_dg, (int64_t) big_len, collect, &c) == 0 &&
     c.len == big_len && memcmp(c.buf, big, big_len) == 0,
     "get_blob streams a %zu-byte blob: %s", big_len, ERR);
  ok(c.calls >= 3, "... in several pieces (%zu)", c.calls);
  free(c.buf);
  memset(&c, 0, sizeof c);
  OK(sn_layout_get_blob(l, layer_dg, -1, collect, &c) == 0 &&
     c.len == sizeof layer, "get_blob with size unknown (-1): %s", ERR);
  free(c.buf);
  memset(&c, 0, sizeof c);
  OK(sn_layout_get_blob(l, layer_dg, sizeof layer - 1, collect, &c) == -1 &&
     strstr(sn_error(), "more than"),
     "get_blob: blob longer than its descriptor: %s", WHY);
  free(c.buf);
  memset(&c, 0, sizeof c);
  OK(sn_layout_get_blob(l, layer_dg, sizeof layer + 1, collect, &c) == -1 &&
     strstr(sn_error(), "descriptor says"),
     "get_blob: blob shorter than its descriptor: %s", WHY);
  free(c.buf);
  memset(&c, 0, sizeof c);
  OK(sn_layout_get_blob(l, layer_dg, -1, refuse, NULL) == -1 &&
     strstr(sn_error(), "sink says no"), "a sink's error ends get_blob: %s",
     WHY);

  OK(sn_layout_read_range(l, layer_dg, part, sizeof part, 1234) == 0 &&
     memcmp(part, layer + 1234, sizeof part) == 0,
     "read_range [1234, 2234): %s", ERR);
  OK(sn_layout_read_range(l, big_dg, part, 10, (int64_t) big_len - 10) == 0
     && memcmp(part, big + big_len - 10, 10) == 0,
     "read_range of the last 10 bytes: %s", ERR);
  OK(sn_layout_read_range(l, layer_dg, part, 100, sizeof layer - 50) == -1 &&
     strstr(sn_error(), "beyond the end"),
     "read_range past the end: %s", WHY);

  OK(sn_layout_blob_exists(l, big_dg, &size) == 1 &&
     size == (int64_t) big_len, "blob_exists: 1 and the size (%lld)",
     (long long) size);
  OK(sn_layout_blob_exists(l, "sha256:00000000000000000000000000000000000"
                           "00000000000000000000000000000", &size) == 0,
     "blob_exists: 0 for an absent blob: %s", ERR);
  {
    const char *dg = "sha256:11111111111111111111111111111111111"
      "11111111111111111111111111111";
    char p[4096];

    snprintf(p, sizeof p, "%s/blobs/sha256/%s", fx, dg + 7);
    mkdir(p, 0755);
    OK(sn_layout_blob_exists(l, dg, &size) == -1 &&
       strstr(sn_error(), "not a regular file"),
       "blob_exists: a directory at a blob's path is an error: %s", WHY);
    rmdir(p);
  }
  sn_layout_close(l);
}

static void
test_missing_and_corrupt(void)
{
  char d[512], p[1024], dg[SN_DIGEST_STRLEN + 1];
  char mdg[SN_DIGEST_STRLEN + 1], man[2048], idx[1024];
  struct sn_layout *l;
  struct sn_manifest *m;
  uint8_t *buf = (uint8_t *) "x", part[16];
  size_t len = 1;
  struct { uint8_t *buf; size_t len, calls; } c = { NULL, 0, 0 };
  static const char absent[] = "sha256:1111111111111111111111111111111111"
    "111111111111111111111111111111";

  new_layout(d, sizeof d, "corrupt");
  put_blob(d, layer, sizeof layer, dg);
  put_manifest(d, dg, sizeof layer, NULL, man, sizeof man, mdg);
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}}]}",
           mdg, strlen(man));
  put_file(d, "index.json", idx);
  l = sn_layout_open(d, NULL);

  /* A missing blob. */
  OK(sn_layout_get_blob_mem(l, absent, 1 << 20, &buf, &len) == -1 &&
     strstr(sn_error(), absent + 7), "get_blob_mem of a missing blob: %s",
     WHY);
  OK(sn_layout_get_blob(l, absent, -1, collect, &c) == -1 && c.calls == 0,
     "get_blob of a missing blob: %s", WHY);
  OK(sn_layout_read_range(l, absent, part, sizeof part, 0) == -1,
     "read_range of a missing blob: %s", WHY);

  /* The layer's bytes changed on disk (same size): refused whole; a
   * range read cannot tell (the caller verifies ranges). */
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", d, dg + 7);
  layer[100] ^= 0x55;
  write_at(p, layer, sizeof layer);
  layer[100] ^= 0x55;
  buf = NULL;
  OK(sn_layout_get_blob_mem(l, dg, 1 << 20, &buf, &len) == -1 &&
     strstr(sn_error(), "content has digest") && buf == NULL && len == 0,
     "get_blob_mem of a blob not matching its digest: %s", WHY);
  OK(sn_layout_get_blob(l, dg, sizeof layer, collect, &c) == -1 &&
     strstr(sn_error(), "content has digest"),
     "get_blob of a blob not matching its digest: %s", WHY);
  free(c.buf);

  /* The manifest's bytes changed: the tag no longer resolves. */
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", d, mdg + 7);
  man[strlen(man) - 1] = ' ';
  write_at(p, man, strlen(man));
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "content has digest"),
     "a manifest not matching its digest is refused: %s", WHY);
  m = sn_layout_get_manifest(l, mdg);
  OK(m == NULL && strstr(sn_error(), "content has digest"),
     "... by digest too: %s", WHY);
  unlink(p);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL, "a missing manifest blob: %s", WHY);

  /* A manifest whose index.json size is wrong. */
  put_manifest(d, dg, sizeof layer, NULL, man, sizeof man, mdg);
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}}]}",
           mdg, strlen(man) + 1);
  put_file(d, "index.json", idx);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "index.json says"),
     "an index.json size that does not match: %s", WHY);

  /* An entry without a size. */
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"digest\":\"%s\",\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}}]}", mdg);
  put_file(d, "index.json", idx);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "without digest or size"),
     "an index.json entry without size: %s", WHY);

  /* A blob that is valid JSON under its digest but not a manifest. */
  put_blob(d, "{\"hello\":1}", 11, mdg);
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"digest\":\"%s\",\"size\":11,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}}]}", mdg);
  put_file(d, "index.json", idx);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), mdg),
     "a tagged blob that is no manifest: %s", WHY);
  sn_layout_close(l);
}

static void
test_malformed_layout(void)
{
  char d[512], p[1024];
  struct sn_layout *l;
  struct sn_manifest *m;
  int64_t size;
  static const struct {
    const char *index, *what;
  } bad[] = {
    { "", "empty" },
    { "{\"schemaVersion\":2,\"manifests\":[", "truncated" },
    { "not json", "not JSON" },
    { "[]", "an array" },
    { "{\"schemaVersion\":2}", "without manifests" },
    { "{\"schemaVersion\":2,\"manifests\":{}}", "manifests an object" },
    { "{\"schemaVersion\":2,\"manifests\":[],\"manifests\":[]}",
      "duplicate keys" },
  };
  size_t i;

  /* A directory that does not exist: reads fail, nothing is created. */
  snprintf(d, sizeof d, "%s/nowhere", tmpdir);
  l = sn_layout_open(d, NULL);
  OK(l != NULL, "open a layout that does not exist yet: %s", ERR);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "no oci-layout file"),
     "... reading it fails: %s", WHY);
  ok(sn_layout_blob_exists(l, layer_dg, &size) == 0,
     "... blob_exists says 0");
  ok(access(d, F_OK) == -1, "... and nothing was created");
  sn_layout_close(l);

  new_layout(d, sizeof d, "malformed");
  l = sn_layout_open(d, NULL);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "index.json"),
     "no index.json: %s", WHY);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put_file(d, "index.json", bad[i].index);
    m = sn_layout_get_manifest(l, "v1");
    OK(m == NULL && strstr(sn_error(), "not a valid OCI index"),
       "index.json %s: %s", bad[i].what, WHY);
    m = sn_layout_referrers(l, layer_dg, NULL);
    OK(m == NULL, "... and no referrers: %s", WHY);
  }
  snprintf(p, sizeof p, "%s/index.json", d);
  unlink(p);
  mkdir(p, 0755);
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "not a regular file"),
     "index.json a directory: %s", WHY);
  rmdir(p);
  put_file(d, "index.json", "{\"schemaVersion\":2,\"manifests\":[]}");

  put_file(d, "oci-layout", "{\"imageLayoutVersion\":\"2.0.0\"}");
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "unsupported imageLayoutVersion"),
     "imageLayoutVersion 2.0.0: %s", WHY);
  put_file(d, "oci-layout", "{\"imageLayoutVersion\":1}");
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "unsupported imageLayoutVersion"),
     "imageLayoutVersion not a string: %s", WHY);
  put_file(d, "oci-layout", "garbage");
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "unsupported imageLayoutVersion"),
     "oci-layout not JSON: %s", WHY);
  put_file(d, "oci-layout", "{\"imageLayoutVersion\":\"1.1.0\"}");
  m = sn_layout_get_manifest(l, "v1");
  OK(m == NULL && strstr(sn_error(), "no manifest tagged"),
     "imageLayoutVersion 1.1.0 is accepted: %s", WHY);
  sn_layout_close(l);
}

/* ---- digests that try to leave blobs/sha256 --------------------------- */

static void
test_traversal(void)
{
  char d[512], idx[2048], outside[1024], man[2048], mdg[SN_DIGEST_STRLEN + 1];
  struct sn_layout *l;
  struct sn_manifest *m;
  uint8_t *buf = NULL, part[4];
  size_t len, i, ntop, nblobs;
  int64_t size;
  char *tmp = NULL;
  int fd;
  struct { uint8_t *buf; size_t len, calls; } c = { NULL, 0, 0 };
  static const char *const evil[] = {
    "sha256:../../../secret.json",
    "sha256:../../oci-layout",
    "sha256:/etc/passwd",
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789a/..",
    "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
    "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    "/../../x",
    "../../../secret.json",
    "",
  };

  new_layout(d, sizeof d, "traversal");
  /* A valid manifest outside the layout, where "../../../secret.json"
   * from blobs/sha256/ would land. */
  put_blob(d, layer, sizeof layer, mdg);
  put_manifest(d, mdg, sizeof layer, NULL, man, sizeof man, mdg);
  snprintf(outside, sizeof outside, "%s/secret.json", tmpdir);
  write_at(outside, man, strlen(man));
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\","
           "\"digest\":\"sha256:../../../secret.json\",\"size\":%zu,"
           "\"annotations\":{\"org.opencontainers.image.ref.name\":"
           "\"evil\"}}]}", strlen(man));
  put_file(d, "index.json", idx);
  l = sn_layout_open(d, NULL);
  ntop = count_files(tmpdir);
  snprintf(outside, sizeof outside, "%s/blobs/sha256", d);
  nblobs = count_files(outside);
  m = sn_layout_get_manifest(l, "evil");
  OK(m == NULL && strstr(sn_error(), "invalid digest"),
     "an index.json digest with ../ is refused: %s",
     m ? "read a file outside the layout" : sn_error());
  sn_manifest_free(m);

  for (i = 0; i < sizeof evil / sizeof evil[0]; i++) {
    len = 0;
    buf = NULL;
    OK(sn_layout_get_blob_mem(l, evil[i], 1 << 20, &buf, &len) == -1 &&
       strstr(sn_error(), "invalid digest") && buf == NULL,
       "get_blob_mem \"%s\": %s", evil[i], WHY);
    free(buf);
    OK(sn_layout_get_blob(l, evil[i], -1, collect, &c) == -1 &&
       c.calls == 0 && strstr(sn_error(), "invalid digest"),
       "... get_blob: %s", WHY);
    OK(sn_layout_read_range(l, evil[i], part, sizeof part, 0) == -1 &&
       strstr(sn_error(), "invalid digest"), "... read_range: %s", WHY);
    OK(sn_layout_blob_exists(l, evil[i], &size) == -1 &&
       strstr(sn_error(), "invalid digest"), "... blob_exists: %s", WHY);
    OK(sn_layout_push_blob(l, evil[i], (const uint8_t *) "x", 1) == -1 &&
       strstr(sn_error(), "invalid digest"), "... push_blob: %s", WHY);
    fd = sn_layout_blob_tmp(l, evil[i], &tmp);
    OK(fd == -1 && tmp == NULL && strstr(sn_error(), "invalid digest"),
       "... blob_tmp: %s", WHY);
    if (fd >= 0)
      close(fd);
    free(tmp);
    tmp = NULL;
  }
  free(c.buf);
  {
    char expect[1024];
    size_t n;

    snprintf(expect, sizeof expect, "%s/secret.json", tmpdir);
    n = strlen(man);
    buf = slurp(expect, &len);
    ok(len == n && memcmp(buf, man, n) == 0,
       "the file outside the layout is untouched");
    free(buf);
  }
  snprintf(idx, sizeof idx, "%s/blobs/sha256", d);
  ok(count_files(tmpdir) == ntop && count_files(idx) == nblobs &&
     count_files(d) == 3, "no file was created anywhere (%zu, %zu, %zu)",
     count_files(tmpdir), count_files(idx), count_files(d));
  sn_layout_close(l);
}

/* ---- writes ----------------------------------------------------------- */

/* The index.json entries of layout d tagged tag (NULL: all entries). */
static size_t
index_entries(const char *d, const char *tag)
{
  char p[1024];
  json_t *j, *arr, *e;
  size_t i, n = 0;

  snprintf(p, sizeof p, "%s/index.json", d);
  j = json_load_file(p, 0, NULL);
  arr = json_object_get(j, "manifests");
  json_array_foreach(arr, i, e) {
    const char *t = json_string_value(json_object_get(
      json_object_get(e, "annotations"), "org.opencontainers.image.ref.name"));

    if (tag == NULL || (t && strcmp(t, tag) == 0))
      n++;
  }
  json_decref(j);
  return n;
}

static void
test_writes(void)
{
  char d[512], p[2048], blobs[1024], dg[SN_DIGEST_STRLEN + 1];
  char mdg[SN_DIGEST_STRLEN + 1], m2dg[SN_DIGEST_STRLEN + 1];
  char man[2048], man2[2048], *tmp = NULL;
  struct sn_layout *l;
  struct sn_manifest *m;
  uint8_t *buf = NULL, *file;
  size_t len, flen;
  int64_t size;
  int fd;

  /* The first push creates the layout. */
  snprintf(d, sizeof d, "%s/new/deep/layout", tmpdir);
  snprintf(blobs, sizeof blobs, "%s/blobs/sha256", d);
  l = sn_layout_open(d, NULL);
  digest_of(layer, sizeof layer, dg);
  OK(sn_layout_push_blob(l, dg, layer, sizeof layer) == 0,
     "push a blob into a layout that does not exist: %s", ERR);
  snprintf(p, sizeof p, "%s/oci-layout", d);
  file = slurp(p, &flen);
  {
    json_t *j = json_loadb((const char *) file, flen, 0, NULL);
    const char *v = json_string_value(json_object_get(j,
                                                      "imageLayoutVersion"));

    ok(v && strncmp(v, "1.", 2) == 0, "... it wrote oci-layout (%s)",
       v ? v : "?");
    json_decref(j);
  }
  free(file);
  ok(index_entries(d, NULL) == 0, "... and an empty index.json");
  OK(sn_layout_blob_exists(l, dg, &size) == 1 && size == sizeof layer &&
     sn_layout_get_blob_mem(l, dg, 1 << 20, &buf, &len) == 0 &&
     len == sizeof layer && memcmp(buf, layer, len) == 0,
     "... and the blob reads back: %s", ERR);
  free(buf);
  OK(sn_layout_push_blob(l, dg, layer, sizeof layer) == 0,
     "pushing it again is fine: %s", ERR);
  ok(count_files(blobs) == 1, "... one file in blobs/sha256, no temporary");

  /* Pushed from memory with the wrong digest: the read refuses it. */
  {
    char wrong[SN_DIGEST_STRLEN + 1];

    digest_of("other", 5, wrong);
    if (sn_layout_push_blob(l, wrong, (const uint8_t *) "not other", 9) == 0)
      OK(sn_layout_get_blob_mem(l, wrong, 100, &buf, &len) == -1 &&
         strstr(sn_error(), "content has digest"),
         "bytes pushed under a wrong digest are not served: %s", WHY);
    else
      ok(1, "push of bytes under a wrong digest refused: %s", sn_error());
    snprintf(p, sizeof p, "%s/%s", blobs, wrong + 7);
    unlink(p);
  }

  /* From a file descriptor: verified while copied. */
  snprintf(p, sizeof p, "%s/big.bin", tmpdir);
  write_at(p, big, big_len);
  fd = open(p, O_RDONLY);
  OK(sn_layout_push_blob_fd(l, big_dg, fd, (int64_t) big_len) == 0 &&
     sn_layout_blob_exists(l, big_dg, &size) == 1 &&
     size == (int64_t) big_len, "push_blob_fd of %zu bytes: %s", big_len,
     ERR);
  OK(sn_layout_push_blob_fd(l, "sha256:222222222222222222222222222222222222"
                            "2222222222222222222222222222", fd,
                            (int64_t) big_len) == -1 &&
     strstr(sn_error(), "the data has digest"),
     "push_blob_fd of bytes not matching the digest: %s", WHY);
  close(fd);
  ok(count_files(blobs) == 2, "... left nothing behind (%zu files)",
     count_files(blobs));

  /* Streaming: a temporary file beside the blob, adopted when complete. */
  digest_of("streamed", 8, dg);
  fd = sn_layout_blob_tmp(l, dg, &tmp);
  OK(fd >= 0 && tmp && strncmp(tmp, blobs, strlen(blobs)) == 0,
     "blob_tmp: a temporary in blobs/sha256: %s", ERR);
  ok(write(fd, "streamed", 8) == 8 && close(fd) == 0, "... written");
  OK(sn_layout_blob_adopt(l, dg, tmp, 8) == 0 &&
     sn_layout_blob_exists(l, dg, &size) == 1 && size == 8 &&
     access(tmp, F_OK) == -1, "blob_adopt renames it into place: %s", ERR);
  free(tmp);
  digest_of("short", 5, dg);
  fd = sn_layout_blob_tmp(l, dg, &tmp);
  ok(fd >= 0 && write(fd, "shor", 4) == 4 && close(fd) == 0,
     "blob_tmp: 4 bytes of 5");
  OK(sn_layout_blob_adopt(l, dg, tmp, 5) == -1 &&
     strstr(sn_error(), "4 bytes written, 5 expected") &&
     access(tmp, F_OK) == -1 && sn_layout_blob_exists(l, dg, NULL) == 0,
     "blob_adopt of a short file refuses and removes it: %s", WHY);
  free(tmp);

  /* put_manifest by tag, then a retag; by digest, listed once. */
  put_manifest(d, layer_dg, sizeof layer, NULL, man, sizeof man, mdg);
  put_manifest(d, layer_dg, sizeof layer, ",\"annotations\":{\"x\":\"2\"}",
               man2, sizeof man2, m2dg);
  OK(sn_layout_put_manifest(l, "v1", SN_MT_OCI_MANIFEST,
                            (const uint8_t *) man, strlen(man)) == 0,
     "put_manifest tagged v1: %s", ERR);
  m = sn_layout_get_manifest(l, "v1");
  OK(m && strcmp(m->digest, mdg) == 0, "... v1 resolves to it: %s", ERR);
  sn_manifest_free(m);
  OK(sn_layout_put_manifest(l, "v1", SN_MT_OCI_MANIFEST,
                            (const uint8_t *) man2, strlen(man2)) == 0,
     "put another manifest as v1: %s", ERR);
  m = sn_layout_get_manifest(l, "v1");
  OK(m && strcmp(m->digest, m2dg) == 0 && index_entries(d, "v1") == 1,
     "... v1 moved to it, one entry tagged v1: %s", ERR);
  sn_manifest_free(m);
  OK(sn_layout_put_manifest(l, mdg, SN_MT_OCI_MANIFEST,
                            (const uint8_t *) man, strlen(man)) == 0 &&
     sn_layout_put_manifest(l, mdg, SN_MT_OCI_MANIFEST,
                            (const uint8_t *) man, strlen(man)) == 0,
     "put_manifest by digest, twice: %s", ERR);
  ok(index_entries(d, NULL) == 2, "... listed once (%zu entries)",
     index_entries(d, NULL));
  OK(sn_layout_put_manifest(l, "bad", SN_MT_OCI_MANIFEST,
                            (const uint8_t *) "{}", 2) == -1 &&
     index_entries(d, "bad") == 0,
     "put_manifest of something that is no manifest: %s", WHY);
  snprintf(p, sizeof p, "ls -A '%s' | grep -q tmp", blobs);
  ok(system(p) != 0, "no temporary files left in blobs/sha256");
  snprintf(p, sizeof p, "ls -A '%s' | grep -q tmp", d);
  ok(system(p) != 0, "no temporary index.json left");
  sn_layout_close(l);
}

/* ---- referrers -------------------------------------------------------- */

static void
test_referrers(void)
{
  char d[512], idx[4096], sig[2048], sig_dg[SN_DIGEST_STRLEN + 1];
  char sig2[2048], sig2_dg[SN_DIGEST_STRLEN + 1];
  char fb[2048], fb_dg[SN_DIGEST_STRLEN + 1];
  char base[2048], base_dg[SN_DIGEST_STRLEN + 1], cfg[SN_DIGEST_STRLEN + 1];
  char tag[80];
  struct sn_layout *l;
  struct sn_manifest *m, *f;

  new_layout(d, sizeof d, "referrers");
  put_blob(d, layer, sizeof layer, layer_dg);
  put_manifest(d, layer_dg, sizeof layer, NULL, base, sizeof base, base_dg);
  put_blob(d, "{}", 2, cfg);
  /* An artifact whose subject is base, listed in index.json. */
  snprintf(sig, sizeof sig, "{\"schemaVersion\":2,\"mediaType\":\""
           SN_MT_OCI_MANIFEST "\",\"artifactType\":\"" ART_TYPE "\","
           "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","
           "\"digest\":\"%s\",\"size\":2},\"layers\":[],"
           "\"subject\":{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\","
           "\"digest\":\"%s\",\"size\":%zu},"
           "\"annotations\":{\"who\":\"me\"}}", cfg, base_dg, strlen(base));
  put_blob(d, sig, strlen(sig), sig_dg);
  /* Another, only reachable through the fallback tag index. */
  snprintf(sig2, sizeof sig2, "{\"schemaVersion\":2,\"mediaType\":\""
           SN_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
           "\"application/x-other\",\"digest\":\"%s\",\"size\":2},"
           "\"layers\":[]}", cfg);
  put_blob(d, sig2, strlen(sig2), sig2_dg);
  snprintf(fb, sizeof fb, "{\"schemaVersion\":2,\"mediaType\":\""
           SN_MT_OCI_INDEX "\",\"manifests\":[{\"mediaType\":\""
           SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu}]}",
           sig2_dg, strlen(sig2));
  put_blob(d, fb, strlen(fb), fb_dg);
  snprintf(tag, sizeof tag, "sha256-%s", base_dg + 7);
  snprintf(idx, sizeof idx, "{\"schemaVersion\":2,\"manifests\":["
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"v1\"}},"
           "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"%s\","
           "\"size\":%zu},"
           "{\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"digest\":\"%s\","
           "\"size\":%zu,\"annotations\":{"
           "\"org.opencontainers.image.ref.name\":\"%s\"}},"
           "{\"mediaType\":\"application/x-not-a-manifest\","
           "\"digest\":\"%s\",\"size\":3000}]}",
           base_dg, strlen(base), sig_dg, strlen(sig), fb_dg, strlen(fb),
           tag, layer_dg);
  put_file(d, "index.json", idx);
  l = sn_layout_open(d, NULL);

  m = sn_layout_referrers(l, base_dg, NULL);
  OK(m && m->is_index && m->nmanifests == 2, "two referrers of the image: "
     "%s (%zu)", ERR, m ? m->nmanifests : 0);
  if (m && m->nmanifests == 2) {
    const struct sn_descriptor *a = &m->manifests[0], *b = &m->manifests[1];

    if (strcmp(a->digest, sig_dg) != 0) {
      a = &m->manifests[1];
      b = &m->manifests[0];
    }
    ok(strcmp(a->digest, sig_dg) == 0 && a->size == (int64_t) strlen(sig)
       && a->artifact_type && strcmp(a->artifact_type, ART_TYPE) == 0,
       "... the subject's referrer, with its artifactType");
    ok(sn_annotation_get(a->annotations, a->nannotations, "who") &&
       strcmp(sn_annotation_get(a->annotations, a->nannotations, "who"),
              "me") == 0, "... and its annotations");
    ok(strcmp(b->digest, sig2_dg) == 0 && b->artifact_type &&
       strcmp(b->artifact_type, "application/x-other") == 0,
       "... the fallback tag's entry, typed by its config media type");
  }
  sn_manifest_free(m);
  m = sn_layout_referrers(l, base_dg, ART_TYPE);
  OK(m && m->nmanifests == 1 && strcmp(m->manifests[0].digest, sig_dg) == 0,
     "filtered by artifactType: one: %s", ERR);
  sn_manifest_free(m);
  m = sn_layout_referrers(l, base_dg, "application/x-nothing");
  OK(m && m->nmanifests == 0, "an artifactType nobody has: none: %s", ERR);
  sn_manifest_free(m);
  m = sn_layout_referrers(l, sig_dg, NULL);
  OK(m && m->nmanifests == 0, "the referrer has no referrers: %s", ERR);
  sn_manifest_free(m);

  /* sn_index_filter / sn_empty_index. */
  m = sn_layout_referrers(l, base_dg, NULL);
  f = m ? sn_index_filter(m, ART_TYPE) : NULL;
  OK(f && f->nmanifests == 1 && strcmp(f->manifests[0].digest, sig_dg) == 0,
     "sn_index_filter keeps the entries of one artifactType: %s", ERR);
  sn_manifest_free(f);
  f = m ? sn_index_filter(m, NULL) : NULL;
  OK(f && f->nmanifests == 2, "sn_index_filter NULL keeps all: %s", ERR);
  sn_manifest_free(f);
  sn_manifest_free(m);
  m = sn_empty_index();
  OK(m && m->is_index && m->nmanifests == 0 &&
     strcmp(m->media_type, SN_MT_OCI_INDEX) == 0, "sn_empty_index: %s", ERR);
  sn_manifest_free(m);

  /* A listed manifest whose blob is corrupt: referrers says so. */
  {
    char p[1024];

    snprintf(p, sizeof p, "%s/blobs/sha256/%s", d, sig_dg + 7);
    write_at(p, sig, strlen(sig) - 1);
    m = sn_layout_referrers(l, base_dg, NULL);
    OK(m == NULL && strstr(sn_error(), "referrers of"),
       "a broken referrer blob is an error, not silence: %s", WHY);
  }
  sn_layout_close(l);
}

int
main(void)
{
  tap_tmpdir(tmpdir, sizeof tmpdir, "ocilayout");
  make_fixture();
  test_tags();
  test_blobs();
  test_missing_and_corrupt();
  test_malformed_layout();
  test_traversal();
  test_writes();
  test_referrers();
  free(big);
  tap_rm_tree(tmpdir);
  return done_testing();
}
