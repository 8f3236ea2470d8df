/* soci-nbd tests: the registry client (lib/registry/registry.c) against real
 * servers.  Driven by the tests/registry-*.sh scripts, which start the
 * servers and describe them in the environment:
 *
 *   SN_TEST_REF      image reference of the "multi" test image
 *                    (127.0.0.1:PORT/test/multi:v1, or oci-layout:DIR:multi)
 *   SN_TEST_LAYOUT   the OCI layout it was pushed from (blob bytes to compare)
 *   SN_TEST_USER, SN_TEST_PASS, SN_TEST_CACERT, SN_TEST_MIRROR  (optional)
 *   SN_TEST_CONTROL  the fault proxy's control file (mode "faults")
 *   SN_TEST_SECONDS  how long mode "refresh" keeps reading (default 12)
 *
 * Modes (argv[1]): "read" (resolve, manifests, blobs, ranges, 404s),
 * "push" (push a blob and an image, read back, referrers through the
 * fallback tag), "concurrency" (8 threads of range reads), "refresh" (range
 * reads for SN_TEST_SECONDS, across token expiries), "faults" (through
 * tests/registry/fault-proxy.py).
 *
 * Run bare (no SN_TEST_REF, as "make check" does), it builds the test
 * images with tests/registry/mkimage.sh into a temporary OCI layout and runs
 * the read-only modes against "oci-layout:DIR:multi": the same API over the
 * layout backend. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/err.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "tap.h"

#define SOCI_TYPE "application/vnd.amazon.soci.index.v1+json"
#define EMPTY_JSON_DIGEST \
  "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


static const char *layout;   /* SN_TEST_LAYOUT */
static const char *image;    /* SN_TEST_REF */

struct blob {
  char digest[SN_DIGEST_STRLEN + 1];
  unsigned char *data;
  size_t len;
};

/* The image under test, as written in the layout (the expected truth). */
static char manifest_digest[SN_DIGEST_STRLEN + 1];
static struct blob config, layers[8];
static size_t nlayers;
static struct blob *big, *small;   /* largest and smallest layer */

static const char *
need_env(const char *k)
{
  const char *v = getenv(k);

  if (v == NULL || *v == '\0') {
    printf("Bail out! %s is not set\n", k);
    exit(1);
  }
  return v;
}

static double
now(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
load_blob(struct blob *b, const char *digest)
{
  char path[4096];

  snprintf(b->digest, sizeof b->digest, "%s", digest);
  snprintf(path, sizeof path, "%s/blobs/sha256/%s", layout, digest + 7);
  b->data = slurp(path, &b->len);
}

/* Read the expected image from the layout (with the library's own
 * parser: the layout is ours, so only the registry side is under test). */
static void
load_expected(void)
{
  char path[4096];
  struct sn_manifest *m;
  unsigned char *raw;
  size_t len, i;
  const char *want = getenv("SN_TEST_MANIFEST");

  if (want == NULL) {
    printf("Bail out! SN_TEST_MANIFEST is not set\n");
    exit(1);
  }
  snprintf(path, sizeof path, "%s/blobs/sha256/%s", layout, want + 7);
  raw = slurp(path, &len);
  m = sn_manifest_parse(raw, len, NULL);
  if (m == NULL) {
    printf("Bail out! %s: %s\n", path, sn_error());
    exit(1);
  }
  snprintf(manifest_digest, sizeof manifest_digest, "%s", m->digest);
  load_blob(&config, m->config.digest);
  for (i = 0; i < m->nlayers && i < 8; i++) {
    load_blob(&layers[i], m->layers[i].digest);
    if (big == NULL || layers[i].len > big->len)
      big = &layers[i];
    if (small == NULL || layers[i].len < small->len)
      small = &layers[i];
  }
  nlayers = i;
  sn_manifest_free(m);
  free(raw);
}

static struct sn_registry *
open_ref(const char *refstr, long timeout_ms, int retries)
{
  static const char *mirrors[2];
  struct sn_registry_opts o = { 0 };
  struct sn_ref ref;
  struct sn_registry *r;

  o.username = getenv("SN_TEST_USER");
  o.password = getenv("SN_TEST_PASS");
  o.cacert = getenv("SN_TEST_CACERT");
  o.timeout_ms = timeout_ms;
  o.max_retries = retries;
  if (getenv("SN_TEST_MIRROR")) {
    mirrors[0] = getenv("SN_TEST_MIRROR");
    o.mirrors = mirrors;
  }
  if (sn_ref_parse(refstr, &ref) == -1) {
    printf("Bail out! %s: %s\n", refstr, sn_error());
    exit(1);
  }
  r = sn_registry_open(&ref, &o);
  if (r == NULL)
    diag("open %s: %s", refstr, sn_error());
  sn_ref_clear(&ref);
  return r;
}

static struct sn_registry *
open_image(void)
{
  return open_ref(image, 0, 0);
}

/* A reference in the same repository with another tag or digest. */
static char *
sibling_ref(const char *repo_suffix, const char *tag)
{
  struct sn_ref ref;
  char *s;

  if (sn_ref_parse(image, &ref) == -1)
    abort();
  if (ref.kind == SN_REF_OCI_LAYOUT) {
    if (asprintf(&s, "oci-layout:%s%s:%s", ref.layout_dir, repo_suffix,
                 tag) == -1)
      abort();
  } else if (asprintf(&s, "%s/%s%s%s%s", ref.registry, ref.repository,
                      repo_suffix, strncmp(tag, "sha256:", 7) == 0 ? "@" : ":",
                      tag) == -1)
    abort();
  sn_ref_clear(&ref);
  return s;
}

struct sink {
  unsigned char *buf;
  size_t len, cap;
};

static int sink_fn(void *opaque, const uint8_t *data, size_t len);

/* sn_registry_get_blob into a throwaway buffer; returns its result. */
static int
get_blob_discard(struct sn_registry *r, const char *digest)
{
  struct sink s = { 0 };
  int rc = sn_registry_get_blob(r, digest, -1, sink_fn, &s);

  free(s.buf);
  return rc;
}

static int
sink_fn(void *opaque, const uint8_t *data, size_t len)
{
  struct sink *s = opaque;

  if (s->len + len > s->cap) {
    s->cap = (s->len + len) * 2;
    s->buf = realloc(s->buf, s->cap);
    if (s->buf == NULL)
      abort();
  }
  memcpy(s->buf + s->len, data, len);
  s->len += len;
  return 0;
}

static bool
range_ok(struct sn_registry *r, const struct blob *b, int64_t off, size_t len)
{
  unsigned char *buf = malloc(len ? len : 1);
  bool good;

  if (buf == NULL)
    abort();
  memset(buf, 0xa5, len);
  good = sn_registry_read_range(r, b->digest, buf, len, off) == 0 &&
         memcmp(buf, b->data + off, len) == 0;
  if (!good)
    diag("range %" PRId64 "+%zu of %s: %s", off, len, b->digest, sn_error());
  free(buf);
  return good;
}

/* 0: correct bytes; 1: an error; 2: "success" with wrong bytes. */
static int
range_result(struct sn_registry *r, const struct blob *b, int64_t off,
             size_t len)
{
  unsigned char *buf = malloc(len ? len : 1);
  int res;

  if (buf == NULL)
    abort();
  memset(buf, 0xa5, len);
  if (sn_registry_read_range(r, b->digest, buf, len, off) == -1) {
    diag("range %" PRId64 "+%zu: %s", off, len, sn_error());
    res = 1;
  } else
    res = memcmp(buf, b->data + off, len) == 0 ? 0 : 2;
  free(buf);
  return res;
}

static bool
whole_ok(struct sn_registry *r, const struct blob *b)
{
  struct sink s = { 0 };
  bool good = sn_registry_get_blob(r, b->digest, (int64_t) b->len, sink_fn,
                                  &s) == 0 &&
              s.len == b->len && memcmp(s.buf, b->data, b->len) == 0;

  if (!good)
    diag("get_blob %s: %s (got %zu bytes)", b->digest, sn_error(), s.len);
  free(s.buf);
  return good;
}

static bool
error_has(const char *needle)
{
  const char *e = sn_error();

  if (strstr(e, needle))
    return true;
  diag("error \"%s\" lacks \"%s\"", e, needle);
  return false;
}

/* ---- read ------------------------------------------------------------ */

static void
mode_read(void)
{
  struct sn_registry *r = open_image();
  struct sn_manifest *m, *idx = NULL;
  uint8_t *buf;
  size_t len, i;
  int64_t size = -1;
  int rc;
  const char *unknown =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  char *s;

  if (!ok(r != NULL, "open %s", image))
    return;

  {
    struct sn_ref ref;
    if (sn_ref_parse(image, &ref) == -1)
      abort();
    m = sn_registry_resolve(r, ref.digest ? ref.digest : ref.tag, NULL, &idx);
    sn_ref_clear(&ref);
  }
  OK(m != NULL && strcmp(m->digest, manifest_digest) == 0,
     "resolve gives the pushed manifest %s (%s)", manifest_digest,
     m ? m->digest : ERR);
  OK(idx == NULL, "no index for a single-platform image");
  OK(m && m->nlayers == nlayers, "%zu layers", nlayers);
  for (i = 0; m && i < m->nlayers && i < nlayers; i++)
    OK(strcmp(m->layers[i].digest, layers[i].digest) == 0 &&
       m->layers[i].size == (int64_t) layers[i].len,
       "layer %zu digest and size", i);
  sn_manifest_free(m);
  sn_manifest_free(idx);

  m = sn_registry_get_manifest(r, manifest_digest);
  OK(m != NULL && strcmp(m->digest, manifest_digest) == 0,
     "get_manifest by digest (%s)", ERR);
  sn_manifest_free(m);

  rc = sn_registry_get_blob_mem(r, config.digest, 1 << 20, &buf, &len);
  OK(rc == 0 && len == config.len && memcmp(buf, config.data, len) == 0,
     "get_blob_mem: config (%zu bytes)", config.len);
  if (rc == 0)
    free(buf);
  rc = sn_registry_get_blob_mem(r, big->digest, 1024, &buf, &len);
  OK(rc == -1, "get_blob_mem refuses a blob over max (%s)", WHY);
  if (rc == 0)
    free(buf);

  rc = sn_registry_blob_exists(r, big->digest, &size);
  OK(rc == 1 && size == (int64_t) big->len,
     "blob_exists: big layer, size %" PRId64, size);
  rc = sn_registry_blob_exists(r, unknown, NULL);
  OK(rc == 0, "blob_exists: unknown digest is 0 (%d)", rc);

  /* Ranges: first byte, last byte, a middle span, and the whole blob in
   * pieces of uneven size. */
  for (i = 0; i < nlayers; i++) {
    struct blob *b = &layers[i];
    OK(range_ok(r, b, 0, 1), "layer %zu: first byte", i);
    OK(range_ok(r, b, (int64_t) b->len - 1, 1), "layer %zu: last byte", i);
    OK(range_ok(r, b, 0, b->len), "layer %zu: all %zu bytes as one range",
       i, b->len);
  }
  {
    bool all = true;
    size_t off = 0, step = 65536 + 4097;
    while (all && off < big->len) {
      size_t n = big->len - off < step ? big->len - off : step;
      all = range_ok(r, big, (int64_t) off, n);
      off += n;
    }
    OK(all, "big layer read in %zu-byte ranges equals the blob", step);
  }
  {
    unsigned char b2[16];
    OK(sn_registry_read_range(r, small->digest, b2, 16,
                              (int64_t) small->len - 8) == -1,
       "range past the end fails (%s)", WHY);
  }

  for (i = 0; i < nlayers; i++)
    OK(whole_ok(r, &layers[i]), "get_blob: layer %zu verified (%zu bytes)", i,
       layers[i].len);

  /* Not found: blob, tag, repository — clear messages. */
  {
    unsigned char b1[1];
    OK(sn_registry_read_range(r, unknown, b1, 1, 0) == -1 &&
       error_has("0000000000"), "unknown blob: error names it");
    OK(get_blob_discard(r, unknown) == -1,
       "unknown blob: get_blob fails (%s)", WHY);
  }
  m = sn_registry_get_manifest(r, "no-such-tag");
  OK(m == NULL && error_has("no-such-tag"), "unknown tag: error names it");
  sn_manifest_free(m);
  sn_registry_close(r);

  s = sibling_ref("-missing", "v1");
  r = open_ref(s, 0, 0);
  m = r ? sn_registry_resolve(r, "v1", NULL, NULL) : NULL;
  OK(m == NULL && (r == NULL || error_has("missing")),
     "unknown repository %s: error names it", s);
  sn_manifest_free(m);
  sn_registry_close(r);
  free(s);
}

/* ---- concurrency ------------------------------------------------------ */

struct worker {
  struct sn_registry *r;
  unsigned seed;
  int reads, bad;
  char err[256];
};

static void *
worker_run(void *arg)
{
  struct worker *w = arg;
  unsigned char *buf = malloc(1 << 17);
  int i;

  for (i = 0; i < w->reads; i++) {
    size_t len = 1 + rand_r(&w->seed) % (1 << 17);
    int64_t off;
    if (len > big->len)
      len = big->len;
    off = rand_r(&w->seed) % (big->len - len + 1);
    if (sn_registry_read_range(w->r, big->digest, buf, len, off) == -1) {
      snprintf(w->err, sizeof w->err, "%s", sn_error());
      w->bad++;
    } else if (memcmp(buf, big->data + off, len) != 0) {
      snprintf(w->err, sizeof w->err, "wrong bytes at %" PRId64 "+%zu", off,
               len);
      w->bad++;
    }
  }
  free(buf);
  return NULL;
}

static void
mode_concurrency(void)
{
  struct sn_registry *r = open_image();
  struct worker w[8];
  pthread_t t[8];
  int i, bad = 0;
  double t0;

  if (!ok(r != NULL, "open %s", image))
    return;
  t0 = now();
  for (i = 0; i < 8; i++) {
    w[i] = (struct worker){ .r = r, .seed = 1234 + i, .reads = 40 };
    pthread_create(&t[i], NULL, worker_run, &w[i]);
  }
  for (i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
    if (w[i].bad)
      diag("thread %d: %d bad reads, last: %s", i, w[i].bad, w[i].err);
    bad += w[i].bad;
  }
  OK(bad == 0, "8 threads x 40 random range reads of one registry handle "
     "(%.2f s)", now() - t0);
  sn_registry_close(r);
}

/* ---- refresh ---------------------------------------------------------- */

static void
mode_refresh(void)
{
  struct sn_registry *r = open_image();
  const char *secs = getenv("SN_TEST_SECONDS");
  double t0 = now(), limit = secs ? atof(secs) : 12;
  int n = 0, bad = 0;

  if (!ok(r != NULL, "open %s", image))
    return;
  while (now() - t0 < limit) {
    size_t off = (size_t) (n * 7919) % (big->len - 4096);
    if (!range_ok(r, big, (int64_t) off, 4096))
      bad++;
    n++;
    usleep(250000);
  }
  OK(bad == 0 && n > 0, "%d range reads over %.0f s, %d failed", n, limit,
     bad);
  OK(whole_ok(r, small), "whole blob after the run");
  sn_registry_close(r);
}

/* ---- push and referrers ----------------------------------------------- */

static char *
digest_of(const void *p, size_t n)
{
  uint8_t d[SN_SHA256_LEN];
  char *s = malloc(SN_DIGEST_STRLEN + 1);

  sn_sha256(p, n, d);
  sn_digest_format(d, s);
  return s;
}

static void
mode_push(void)
{
  char *ref_s = sibling_ref("-pushed", "v1");
  struct sn_registry *r = open_ref(ref_s, 0, 0);
  unsigned char *layer;
  size_t layer_len = 300000, i;
  char *layer_d, *cfg_d, *man_d, *art_d, *idx_d, *man, *art, *idx, tag[80];
  const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\","
                    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
  struct sn_manifest *m;
  struct blob lb;
  int64_t size;
  char tmpl[] = "/tmp/soci-nbd-push.XXXXXX";
  int fd, rc;

  if (!ok(r != NULL, "open %s", ref_s))
    return;
  layer = malloc(layer_len);
  for (i = 0; i < layer_len; i++)
    layer[i] = (unsigned char) (i * 2654435761u >> 13);
  layer_d = digest_of(layer, layer_len);
  cfg_d = digest_of(cfg, strlen(cfg));

  rc = sn_registry_push_blob(r, layer_d, layer, layer_len);
  OK(rc == 0, "push_blob %zu bytes (%s)", layer_len, ERR);
  OK(sn_registry_push_blob(r, layer_d, layer, layer_len) == 0,
     "push_blob again (exists: no-op)");
  OK(sn_registry_push_blob(r, layer_d, layer, layer_len - 1) == -1,
     "push_blob with the wrong digest for the data fails (%s)", WHY);
  /* The same config through a file descriptor. */
  fd = mkstemp(tmpl);
  if (fd == -1 || write(fd, cfg, strlen(cfg)) != (ssize_t) strlen(cfg) ||
      lseek(fd, 0, SEEK_SET) != 0)
    abort();
  unlink(tmpl);
  OK(sn_registry_push_blob_fd(r, cfg_d, fd, (int64_t) strlen(cfg)) == 0,
     "push_blob_fd: config (%s)", ERR);
  close(fd);
  OK(sn_registry_blob_exists(r, layer_d, &size) == 1 &&
     size == (int64_t) layer_len, "pushed blob exists with its size");

  if (asprintf(&man,
               "{\"schemaVersion\":2,\"mediaType\":\"%s\","
               "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
               "\"digest\":\"%s\",\"size\":%zu},"
               "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
               "\"digest\":\"%s\",\"size\":%zu}]}",
               SN_MT_OCI_MANIFEST, cfg_d, strlen(cfg), layer_d, layer_len) == -1)
    abort();
  man_d = digest_of(man, strlen(man));
  OK(sn_registry_put_manifest(r, "v1", SN_MT_OCI_MANIFEST,
                              (const uint8_t *) man, strlen(man)) == 0,
     "put_manifest by tag (%s)", ERR);
  m = sn_registry_get_manifest(r, "v1");
  OK(m && strcmp(m->digest, man_d) == 0 && m->raw_len == strlen(man) &&
     memcmp(m->raw, man, m->raw_len) == 0,
     "manifest read back by tag is byte-identical (%s)", ERR);
  sn_manifest_free(m);
  snprintf(lb.digest, sizeof lb.digest, "%s", layer_d);
  lb.data = layer;
  lb.len = layer_len;
  OK(whole_ok(r, &lb), "pushed blob read back whole");
  OK(range_ok(r, &lb, 123457, 1000), "pushed blob read back by range");

  /* Referrers: distribution 2.8 has no referrers API, so the client must
   * use the fallback tag sha256-<hex>; the test writes that tag index the
   * way a pusher (e.g. soci) does. */
  m = sn_registry_referrers(r, man_d, NULL);
  OK(m != NULL && m->is_index && m->nmanifests == 0,
     "referrers of a manifest without any: empty index (%s)",
     ERR);
  sn_manifest_free(m);

  OK(sn_registry_push_blob(r, EMPTY_JSON_DIGEST, (const uint8_t *) "{}", 2) ==
     0, "push the empty JSON config");
  if (asprintf(&art,
               "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
               "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","
               "\"digest\":\"%s\",\"size\":2},"
               "\"layers\":[{\"mediaType\":\"application/octet-stream\","
               "\"digest\":\"%s\",\"size\":%zu}],"
               "\"subject\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}}",
               SN_MT_OCI_MANIFEST, SOCI_TYPE, EMPTY_JSON_DIGEST, cfg_d,
               strlen(cfg), SN_MT_OCI_MANIFEST, man_d, strlen(man)) == -1)
    abort();
  art_d = digest_of(art, strlen(art));
  OK(sn_registry_put_manifest(r, art_d, SN_MT_OCI_MANIFEST,
                              (const uint8_t *) art, strlen(art)) == 0,
     "put_manifest by digest: an artifact with a subject (%s)", ERR);
  if (asprintf(&idx,
               "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
               "\"artifactType\":\"%s\"}]}",
               SN_MT_OCI_INDEX, SN_MT_OCI_MANIFEST, art_d, strlen(art),
               SOCI_TYPE) == -1)
    abort();
  idx_d = digest_of(idx, strlen(idx));
  snprintf(tag, sizeof tag, "sha256-%s", man_d + 7);
  OK(sn_registry_put_manifest(r, tag, SN_MT_OCI_INDEX, (const uint8_t *) idx,
                              strlen(idx)) == 0,
     "put the fallback tag index %s (%s)", tag, ERR);
  m = sn_registry_referrers(r, man_d, SOCI_TYPE);
  OK(m && m->nmanifests == 1 && strcmp(m->manifests[0].digest, art_d) == 0,
     "referrers through the fallback tag find the artifact (%s)",
     ERR);
  sn_manifest_free(m);
  m = sn_registry_referrers(r, man_d, "application/x-other");
  OK(m && m->nmanifests == 0, "referrers filtered by another artifact type: "
     "none (%s)", ERR);
  sn_manifest_free(m);
  m = sn_registry_get_manifest(r, art_d);
  OK(m && m->subject && strcmp(m->subject->digest, man_d) == 0 &&
     m->artifact_type && strcmp(m->artifact_type, SOCI_TYPE) == 0,
     "artifact read back with subject and artifactType");
  sn_manifest_free(m);

  free(layer), free(layer_d), free(cfg_d), free(man), free(man_d);
  free(art), free(art_d), free(idx), free(idx_d), free(ref_s);
  sn_registry_close(r);
}

/* ---- faults (through tests/registry/fault-proxy.py) -------------------- */

static const char *control;

static void
set_rules(const char *json)
{
  char tmp[4096];
  FILE *f;

  snprintf(tmp, sizeof tmp, "%s.tmp", control);
  f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "{\"rules\": [%s]}\n", json) < 0 ||
      fclose(f) != 0 || rename(tmp, control) != 0) {
    printf("Bail out! cannot write %s: %s\n", control, strerror(errno));
    exit(1);
  }
}

static void
mode_faults(void)
{
  struct sn_registry *r, *r1;
  struct sn_manifest *m;
  uint8_t *buf;
  size_t len;
  double t0;
  int rc;

  control = need_env("SN_TEST_CONTROL");
  r = open_ref(image, 5000, 0);      /* default retries */
  r1 = open_ref(image, 1000, -1);    /* no retries, 1 s timeout */
  if (!ok(r != NULL && r1 != NULL, "open %s", image))
    return;
  set_rules("");
  OK(range_ok(r, big, 1000, 5000), "no fault: range read");

  /* Integrity: a corrupted body must never be accepted for anything
   * fetched by digest. */
  set_rules("{\"action\": \"corrupt\"}");
  OK(get_blob_discard(r, small->digest) ==
     -1, "corrupted whole blob: get_blob fails (%s)", WHY);
  rc = sn_registry_get_blob_mem(r, config.digest, 1 << 20, &buf, &len);
  OK(rc == -1, "corrupted config: get_blob_mem fails (%s)", WHY);
  if (rc == 0)
    free(buf);
  set_rules("{\"action\": \"corrupt\", \"match\": {\"path\": \"/manifests/sha256:\"}}");
  m = sn_registry_get_manifest(r, manifest_digest);
  OK(m == NULL, "corrupted manifest fetched by digest: fails (%s)",
     WHY);
  sn_manifest_free(m);

  /* Truncated bodies: errors, or retried into a complete one. */
  set_rules("{\"action\": \"truncate\"}");
  OK(get_blob_discard(r, big->digest) == -1,
     "always-truncated whole blob: get_blob fails (%s)", WHY);
  OK(!range_ok(r, big, 0, 100000), "always-truncated range: fails");
  set_rules("{\"action\": \"truncate\", \"times\": 1}");
  OK(range_result(r, big, 0, 100000) != 2,
     "truncated once: an error or retried, never wrong bytes");
  OK(range_ok(r, big, 0, 100000), "after the truncation: range read works");

  /* Server errors: retried, then success. */
  set_rules("{\"action\": \"status\", \"code\": 500, \"times\": 2}");
  OK(range_ok(r, big, 4096, 4096), "500 twice: retried, then success");
  set_rules("{\"action\": \"status\", \"code\": 503, \"times\": 1}");
  OK(whole_ok(r, small), "503 once on get_blob: retried, then success");
  set_rules("{\"action\": \"status\", \"code\": 429, \"retry_after\": 1, "
            "\"times\": 1}");
  t0 = now();
  OK(range_ok(r, big, 8192, 4096), "429 with Retry-After: 1: retried, then "
     "success (%.2f s)", now() - t0);
  set_rules("{\"action\": \"status\", \"code\": 500}");
  OK(!range_ok(r, big, 0, 10), "500 forever: gives up with an error");
  set_rules("{\"action\": \"status\", \"code\": 500, \"times\": 1}");
  OK(!range_ok(r1, big, 0, 10), "500 once with max_retries -1: error");

  /* Connection resets: retried. */
  set_rules("{\"action\": \"reset\", \"times\": 1}");
  OK(range_ok(r, big, 100, 200), "reset before the response: retried");
  set_rules("{\"action\": \"reset\", \"after\": 1000, \"times\": 1}");
  OK(range_result(r, big, 0, 200000) != 2,
     "reset mid-body: an error or retried, never wrong bytes");
  set_rules("{\"action\": \"reset\", \"after\": 1000, \"times\": 1}");
  {
    struct sink sk = { 0 };
    rc = sn_registry_get_blob(r, big->digest, (int64_t) big->len, sink_fn,
                              &sk);
    OK(rc == -1 || (sk.len == big->len &&
                    memcmp(sk.buf, big->data, big->len) == 0),
       "reset mid-body of a whole blob: an error, or exactly the blob's "
       "bytes once (rc %d, %zu bytes)", rc, sk.len);
    free(sk.buf);
  }
  OK(whole_ok(r, small), "after the reset: get_blob works");

  /* A blob longer than its descriptor (16 MiB more): the download stops
   * at the descriptor's size, the sink never sees a byte past it. */
  set_rules("{\"action\": \"pad\", \"bytes\": 16777216, "
            "\"match\": {\"range\": false}}");
  {
    struct sink sk = { 0 };
    rc = sn_registry_get_blob(r, big->digest, (int64_t) big->len, sink_fn,
                              &sk);
    OK(rc == -1 && strstr(sn_error(), "more than the") &&
       sk.len <= big->len,
       "a blob 16 MiB longer than its descriptor: stopped at its size "
       "(%zu of %zu bytes taken): %s", sk.len, big->len, sn_error());
    free(sk.buf);
  }
  set_rules("");
  {
    struct sink sk = { 0 };
    rc = sn_registry_get_blob(r, small->digest, (int64_t) small->len + 1,
                              sink_fn, &sk);
    OK(rc == -1 && strstr(sn_error(), "its descriptor says"),
       "a blob shorter than its descriptor: refused: %s", sn_error());
    free(sk.buf);
  }

  /* 200 with the whole blob instead of 206. */
  set_rules("{\"action\": \"full200\"}");
  OK(range_ok(r, small, 10, 20), "200 instead of 206, small blob: sliced");
  OK(!range_ok(r, big, 10, 20), "200 instead of 206, %zu-byte blob: error",
     big->len);

  /* Slow server. */
  set_rules("{\"action\": \"delay\", \"seconds\": 0.5, \"times\": 1}");
  OK(range_ok(r, big, 0, 10), "0.5 s delay: success");
  set_rules("{\"action\": \"delay\", \"seconds\": 3}");
  t0 = now();
  OK(!range_ok(r1, big, 0, 10) && now() - t0 < 2.9,
     "3 s delay with a 1 s timeout: error in %.2f s", now() - t0);

  /* A server dripping the body (4 bytes/s): the stall floor (1 KiB/s over
   * the timeout) and the size-based deadline end the transfer; before,
   * anything above 1 byte/s held it for as long as the server liked. */
  set_rules("{\"action\": \"drip\", \"rate\": 4}");
  t0 = now();
  {
    struct sink sk = { 0 };
    rc = sn_registry_get_blob(r1, small->digest, (int64_t) small->len,
                              sink_fn, &sk);
    double took = now() - t0;

    OK(rc == -1 && took < 10,
       "a %zu-byte blob dripped at 4 bytes/s with a 1 s timeout: cut off "
       "after %.1f s, resumes included (%s)", small->len, took, sn_error());
    free(sk.buf);
  }
  set_rules("");

  /* Cross-host redirect of blob GETs (the script checks the proxy log for
   * the Authorization header at the redirect target). */
  set_rules("{\"action\": \"redirect\", \"match\": {\"method\": \"GET\"}}");
  OK(range_ok(r, big, 777, 3333), "redirected range read");
  OK(whole_ok(r, small), "redirected whole blob");
  set_rules("");
  sn_registry_close(r);
  sn_registry_close(r1);
}

/* ---- main ------------------------------------------------------------- */

static int
run_layout_selftest(const char *self)
{
  const char *src = getenv("top_srcdir");
  char dir[] = "/tmp/soci-nbd-test-registry.XXXXXX", cmd[8192], ref[512];
  char lay[256], man[SN_DIGEST_STRLEN + 1] = "";
  FILE *f;
  int st;

  (void) self;
  if (src == NULL)
    src = ".";
  if (mkdtemp(dir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  snprintf(cmd, sizeof cmd, "'%s/tests/registry/mkimage.sh' build '%s' && "
           ". '%s/info.sh' && echo \"$IMG_MULTI_MANIFEST\" > '%s/m'",
           src, dir, dir, dir);
  if (system(cmd) != 0) {
    printf("Bail out! %s failed\n", cmd);
    return 1;
  }
  snprintf(cmd, sizeof cmd, "%s/m", dir);
  f = fopen(cmd, "r");
  if (f == NULL || fscanf(f, "%71s", man) != 1) {
    printf("Bail out! no manifest digest\n");
    return 1;
  }
  fclose(f);
  snprintf(lay, sizeof lay, "%s/layout", dir);
  snprintf(ref, sizeof ref, "oci-layout:%s:multi", lay);
  setenv("SN_TEST_LAYOUT", lay, 1);
  setenv("SN_TEST_REF", ref, 1);
  setenv("SN_TEST_MANIFEST", man, 1);
  layout = lay;
  image = ref;
  diag("layout backend: %s", ref);
  load_expected();
  mode_read();
  mode_concurrency();
  st = done_testing();
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return st;
}

int
main(int argc, char **argv)
{
  int i;

  if (getenv("SN_TEST_REF") == NULL)
    return run_layout_selftest(argv[0]);
  image = need_env("SN_TEST_REF");
  layout = need_env("SN_TEST_LAYOUT");
  load_expected();
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "read") == 0)
      mode_read();
    else if (strcmp(argv[i], "push") == 0)
      mode_push();
    else if (strcmp(argv[i], "concurrency") == 0)
      mode_concurrency();
    else if (strcmp(argv[i], "refresh") == 0)
      mode_refresh();
    else if (strcmp(argv[i], "faults") == 0)
      mode_faults();
    else {
      printf("Bail out! unknown mode %s\n", argv[i]);
      return 1;
    }
  }
  return done_testing();
}
