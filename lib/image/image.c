/* soci-nbd: open an image for serving — resolve it, find its SOCI index,
 * set up one sn_layer per layer (lazy through registry ranges, or a whole
 * local copy), and build the squashfs images of every export. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "soci/build.h"
#include "span/diskcache.h"
#include "util/fdio.h"
#include "util/digest.h"
#include "soci/index.h"
#include "util/err.h"
#include "image/image.h"
#include "soci/index-find.h"
#include "span/layer.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "span/spancache.h"
#include "squashfs/sqfs.h"
#include "soci/ztoc.h"

/* Sequential readahead window of each layer (see sn_layer_opts). */
#define SN_IMAGE_READAHEAD ((size_t) 8 << 20)
#define MAX_PREFETCH_DOC ((size_t) 16 << 20)
/* Background fetches wait until no foreground read ran for this long. */
#define QUIET_NS (20 * 1000 * 1000)

enum verify_state { VERIFY_NONE, VERIFY_PENDING, VERIFY_OK, VERIFY_FAILED };
#define CHUNK (1024 * 1024)

struct img_layer {
  struct sn_image *img;
  size_t index;
  char *digest;
  char *media_type;
  int64_t size;
  char *ztoc_digest;            /* the ztoc it is served with, or NULL */
  bool lazy;
  int fd;                       /* local copy, or -1 */
  struct sn_layer *layer;
  uint64_t spans_total;
  uint64_t whole_bytes;         /* downloaded whole at open */
  uint64_t local_bytes;         /* atomically: read from fd */
  char *sqfs_error;             /* why its overlayfs image is missing */
  struct sn_prefetch_span *pf;  /* its prefetch artifacts' span ranges */
  size_t npf;
  int verify;                   /* enum verify_state, atomically */
  char *verify_msg;             /* set before verify becomes FAILED */
};

struct sn_image {
  struct sn_ref ref;
  struct sn_registry *reg;
  char *manifest_digest;
  char *index_digest;
  const char *index_source;
  const char *index_why;        /* static phrase: why that index (or none) */
  struct img_layer *layers;
  size_t nlayers;
  struct sn_image_export *exports;
  size_t nexports;
  void (*trace)(void *opaque, size_t layer, size_t span,
                const struct sn_span *s);
  void (*log)(void *opaque, const char *msg);
  void (*progress)(void *opaque);
  void *opaque;

  struct sn_diskcache *disk;
  enum sn_prefetch_mode prefetch;
  bool layer_check;
  size_t npf_docs;              /* prefetch artifacts used */
  pthread_t bg;
  bool bg_started;
  int bg_stop, bg_done;         /* atomically */
  int fg_active;                /* foreground reads running, atomically */
  int64_t fg_last;              /* when the last one ended (ns), atomically */
  uint64_t spans_prefetched;    /* atomically */
};

static void logf_(struct sn_image *img, const char *fmt, ...)
  SN_PRINTF(2, 3);

static void
logf_(struct sn_image *img, const char *fmt, ...)
{
  va_list ap;
  char *s;
  int r;

  if (img->log == NULL)
    return;
  va_start(ap, fmt);
  r = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (r == -1)
    return;
  img->log(img->opaque, s);
  free(s);
}

static void
sqfs_warn(void *opaque, const char *msg)
{
  struct sn_image *img = opaque;

  logf_(img, "warning: %s", msg);
}

/* ---- blob sources ----------------------------------------------------- */

static int
registry_read(void *opaque, void *buf, size_t len, int64_t off)
{
  struct img_layer *l = opaque;

  return sn_registry_read_range(l->img->reg, l->digest, buf, len, off);
}

static int
local_read(void *opaque, void *buf, size_t len, int64_t off)
{
  struct img_layer *l = opaque;

  __atomic_fetch_add(&l->local_bytes, (uint64_t) len, __ATOMIC_RELAXED);
  return sn_blob_read_fd(&l->fd, buf, len, off);
}

static void
layer_trace(void *opaque, size_t span, const struct sn_span *s)
{
  struct img_layer *l = opaque;

  if (l->img->trace)
    l->img->trace(l->img->opaque, l->index, span, s);
}

/* ---- whole-layer download -------------------------------------------- */

struct sink {
  int fd;
  struct sn_ztoc_builder *b;
  uint64_t n;
  bool write_error;
};

static int
whole_sink(void *opaque, const uint8_t *data, size_t len)
{
  struct sink *s = opaque;

  if (sn_write_all(s->fd, data, len) == -1) {
    s->write_error = true;
    return sn_set_error("writing the local copy: %s", strerror(errno));
  }
  if (sn_ztoc_builder_feed(s->b, data, len) == -1)
    return -1;
  s->n += len;
  return 0;
}

static int
mkdir_p(const char *dir)
{
  char *p = strdup(dir), *q;

  if (p == NULL)
    return sn_oom();
  for (q = p + 1; ; q++) {
    if (*q == '/' || *q == '\0') {
      char c = *q;

      *q = '\0';
      if (mkdir(p, 0755) == -1 && errno != EEXIST) {
        sn_set_error("%s: %s", p, strerror(errno));
        free(p);
        return -1;
      }
      *q = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  return 0;
}

/* Check a finished ztoc's blob digest against the layer's. */
static int
digest_matches(const struct img_layer *l, const uint8_t d[SN_SHA256_LEN])
{
  char s[SN_DIGEST_STRLEN + 1];

  sn_digest_format(d, s);
  return strcmp(s, l->digest) == 0;
}

/* Re-hash a cached copy while building its ztoc; NULL (no error set) if
 * it is not usable. */
static struct sn_ztoc *
reuse_cached(struct img_layer *l, enum sn_compression comp,
             const struct sn_build_opts *bo)
{
  struct sn_ztoc_builder *b = sn_ztoc_builder_new(comp, bo);
  uint8_t *buf = malloc(CHUNK), d[SN_SHA256_LEN];
  struct sn_ztoc *z = NULL;
  ssize_t n;

  if (b == NULL || buf == NULL)
    goto out;
  for (;;) {
    do
      n = read(l->fd, buf, CHUNK);
    while (n == -1 && errno == EINTR);
    if (n <= 0)
      break;
    if (sn_ztoc_builder_feed(b, buf, (size_t) n) == -1)
      goto out;
  }
  if (n == 0) {
    z = sn_ztoc_builder_finish(b, d);
    if (z && !digest_matches(l, d)) {
      sn_ztoc_free(z);
      z = NULL;
    }
  }
out:
  sn_ztoc_builder_free(b);
  free(buf);
  return z;
}

/* Download layer l whole into a local file, building its ztoc. */
static struct sn_ztoc *
fetch_whole(struct sn_image *img, struct img_layer *l, enum sn_compression comp,
            const char *cache_dir)
{
  struct sn_build_opts bo = { 0 };
  struct sink s = { .fd = -1 };
  struct sn_ztoc *z = NULL;
  uint8_t d[SN_SHA256_LEN];
  char *dir = NULL, *path = NULL, *tmp = NULL;
  const char *hex = l->digest + strlen("sha256:");

  if (cache_dir) {
    if (asprintf(&dir, "%s/blobs/sha256", cache_dir) == -1 ||
        asprintf(&path, "%s/%s", dir, hex) == -1 ||
        asprintf(&tmp, "%s.tmp.%ld", path, (long) getpid()) == -1) {
      sn_oom();
      goto out;
    }
    l->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (l->fd != -1) {
      z = reuse_cached(l, comp, &bo);
      if (z) {
        logf_(img, "layer %zu (%s): using the cached copy %s", l->index,
              l->digest, path);
        sn_diskcache_touch(path);
        if (img->disk && sn_diskcache_pin(img->disk, path) == -1) {
          sn_ztoc_free(z);
          z = NULL;
        }
        goto out;
      }
      logf_(img, "layer %zu (%s): cached copy %s is not valid, fetching "
            "again", l->index, l->digest, path);
      close(l->fd);
      l->fd = -1;
    }
    if (mkdir_p(dir) == -1)
      goto out;
    s.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s.fd == -1) {
      sn_set_error("%s: %s", tmp, strerror(errno));
      goto out;
    }
  }
  else {
    const char *t = getenv("TMPDIR");

    if (asprintf(&tmp, "%s/soci-nbd-layer.XXXXXX",
                 t && *t ? t : "/tmp") == -1) {
      sn_oom();
      goto out;
    }
    s.fd = mkostemp(tmp, O_CLOEXEC);
    if (s.fd == -1) {
      sn_set_error("%s: %s", tmp, strerror(errno));
      goto out;
    }
    unlink(tmp);
  }

  logf_(img, "layer %zu (%s): no ztoc, fetching it whole (%" PRId64
        " bytes)", l->index, l->digest, l->size);
  s.b = sn_ztoc_builder_new(comp, &bo);
  if (s.b == NULL)
    goto out;
  if (sn_registry_get_blob(img->reg, l->digest, l->size, whole_sink, &s) == -1)
    goto out;
  /* get_blob has verified the digest: only now is the copy usable. */
  z = sn_ztoc_builder_finish(s.b, d);
  if (z == NULL)
    goto out;
  if (!digest_matches(l, d)) {
    sn_set_error("digest mismatch after download");
    sn_ztoc_free(z);
    z = NULL;
    goto out;
  }
  if (cache_dir) {
    if (fsync(s.fd) == -1 || rename(tmp, path) == -1) {
      sn_set_error("%s: %s", path, strerror(errno));
      sn_ztoc_free(z);
      z = NULL;
      goto out;
    }
    if (img->disk) {
      if (sn_diskcache_pin(img->disk, path) == -1) {
        sn_ztoc_free(z);
        z = NULL;
        goto out;
      }
      sn_diskcache_add(img->disk, s.n);
    }
  }
  l->whole_bytes = s.n;
  l->fd = s.fd;
  s.fd = -1;

out:
  if (s.fd != -1) {
    close(s.fd);
    if (cache_dir && tmp)
      unlink(tmp);
  }
  sn_ztoc_builder_free(s.b);
  free(dir);
  free(path);
  free(tmp);
  return z;
}

/* ---- SOCI index ------------------------------------------------------- */

/* Parse a prefetch artifact: {"version":"1.0","prefetch_spans":
 * [{"start_span":A,"end_span":B[,"priority":N]}, …]}. */
int
sn_image_parse_prefetch(const uint8_t *buf, size_t len,
                        struct sn_prefetch_span **out, size_t *n)
{
  json_error_t je;
  json_t *root = json_loadb((const char *) buf, len, 0, &je), *spans, *v;
  const char *ver = NULL;
  size_t i;

  *out = NULL;
  *n = 0;
  if (root == NULL)
    return sn_set_error("not JSON: %s (line %d)", je.text, je.line);
  if (!json_is_object(root) ||
      !json_is_string(v = json_object_get(root, "version")) ||
      strcmp(ver = json_string_value(v), "1.0") != 0 ||
      !json_is_array(spans = json_object_get(root, "prefetch_spans"))) {
    /* ver points into root: format the message before freeing it. */
    sn_set_error("not a prefetch artifact v1.0%s%.100s",
                 ver ? ": version " : "", ver ? ver : "");
    json_decref(root);
    return -1;
  }
  *out = calloc(json_array_size(spans) + 1, sizeof **out);
  if (*out == NULL) {
    json_decref(root);
    return sn_oom();
  }
  json_array_foreach(spans, i, v) {
    json_t *a = json_object_get(v, "start_span"), *b = json_object_get(v,
                                                                 "end_span");

    if (!json_is_integer(a) || !json_is_integer(b) ||
        json_integer_value(a) < 0 ||
        json_integer_value(b) < json_integer_value(a) ||
        json_integer_value(b) > INT32_MAX) {
      json_decref(root);
      free(*out);
      *out = NULL;
      *n = 0;
      return sn_set_error("prefetch_spans[%zu]: want 0 <= start_span <= "
                          "end_span", i);
    }
    (*out)[*n].start = (int32_t) json_integer_value(a);
    (*out)[*n].end = (int32_t) json_integer_value(b);
    (*n)++;
  }
  json_decref(root);
  return 0;
}

/* Fetch one prefetch artifact (by digest: verified) and attach its span
 * ranges to its layer.  Unknown layers are ignored (as a ztoc would be);
 * span ids are checked when the ztoc is known (setup_layers). */
static int
load_prefetch(struct sn_image *img, const struct sn_descriptor *d)
{
  const char *ld = sn_annotation_get(d->annotations, d->nannotations,
                                     SN_ANN_LAYER_DIGEST);
  struct sn_prefetch_span *sp, *all;
  uint8_t *buf;
  size_t len, n, j;

  if (ld == NULL)
    return 0;
  for (j = 0; j < img->nlayers; j++)
    if (strcmp(img->layers[j].digest, ld) == 0)
      break;
  if (j == img->nlayers)
    return 0;
  if (sn_registry_get_blob_mem(img->reg, d->digest,
                               d->size > 0 &&
                               (uint64_t) d->size < MAX_PREFETCH_DOC
                               ? (size_t) d->size : MAX_PREFETCH_DOC,
                               &buf, &len) == -1)
    return sn_prefix_error("prefetch artifact %s of layer %zu: ", d->digest,
                           j);
  if (sn_image_parse_prefetch(buf, len, &sp, &n) == -1) {
    free(buf);
    return sn_prefix_error("prefetch artifact %s of layer %zu: ", d->digest,
                           j);
  }
  free(buf);
  /* Every layer with this digest gets the ranges. */
  for (; j < img->nlayers; j++) {
    struct img_layer *l = &img->layers[j];

    if (strcmp(l->digest, ld) != 0)
      continue;
    all = realloc(l->pf, (l->npf + n + 1) * sizeof *all);
    if (all == NULL) {
      free(sp);
      return sn_oom();
    }
    memcpy(all + l->npf, sp, n * sizeof *sp);
    l->pf = all;
    l->npf += n;
  }
  free(sp);
  img->npf_docs++;
  logf_(img, "prefetch artifact %s: %zu span ranges of layer %s", d->digest,
        n, ld);
  return 0;
}

/* Does a span of z inflate past SN_SPAN_MAX_OUT?  Then layer j is served
 * whole (downloaded, verified, read from disk) instead of lazily, which
 * bounds the memory any span can take.  (A ztoc that does not parse is
 * refused later, when the layer opens.) */
static bool
span_too_large(struct sn_image *img, const struct sn_ztoc *z, size_t j,
               const char *ztoc_digest)
{
  struct sn_zinfo *zi = sn_zinfo_from_ztoc(z);
  bool big = zi && sn_zinfo_check_spans(zi) == -1;

  if (big)
    logf_(img, "layer %zu: ztoc %s: %s: the layer is fetched whole", j,
          ztoc_digest, sn_error());
  sn_zinfo_free(zi);
  return big;
}

/* Fetch the index and attach ztocs to the layers (ztocs[i]). */
static int
load_index(struct sn_image *img, const struct sn_manifest *m,
           struct sn_ztoc **ztocs)
{
  struct sn_manifest *idx;
  size_t i, j, found = 0;

  idx = sn_index_fetch(img->reg, img->index_digest, m);
  if (idx == NULL)
    return -1;

  for (i = 0; i < idx->nlayers; i++) {
    const struct sn_descriptor *d = &idx->layers[i];
    const char *ld;
    uint8_t *buf;
    size_t len;

    if (d->media_type && strcmp(d->media_type, SN_MT_SOCI_PREFETCH) == 0) {
      if (img->prefetch == SN_PREFETCH_ARTIFACT &&
          load_prefetch(img, d) == -1)
        goto fail;
      continue;
    }
    if (d->media_type == NULL || strcmp(d->media_type, SN_MT_SOCI_ZTOC) != 0)
      continue;
    ld = sn_annotation_get(d->annotations, d->nannotations, SN_ANN_LAYER_DIGEST);
    if (ld == NULL)
      continue;
    for (j = 0; j < img->nlayers; j++) {
      struct img_layer *l = &img->layers[j];
      enum sn_layer_kind k = sn_layer_kind(l->media_type);
      struct sn_ztoc *z;

      if (ztocs[j] || strcmp(l->digest, ld) != 0)
        continue;
      if (k != SN_LAYER_KIND_GZIP && k != SN_LAYER_KIND_TAR)
        continue;         /* refused later with the layer's message */
      if (d->size > (int64_t) SN_ZTOC_MAX_BLOB) {
        sn_set_error("ztoc %s of layer %zu: %" PRId64 " bytes (the limit is "
                     "%zu MiB)", d->digest, j, d->size,
                     SN_ZTOC_MAX_BLOB >> 20);
        goto fail;
      }
      if (sn_registry_get_blob_mem(img->reg, d->digest,
                                   d->size > 0 ? (size_t) d->size
                                               : SN_ZTOC_MAX_BLOB,
                                   &buf, &len) == -1) {
        sn_prefix_error("ztoc %s of layer %zu: ", d->digest, j);
        goto fail;
      }
      z = sn_ztoc_decode(buf, len);
      free(buf);
      if (z == NULL) {
        sn_prefix_error("ztoc %s of layer %zu: ", d->digest, j);
        goto fail;
      }
      if (z->compressed_size != l->size ||
          z->compression != (k == SN_LAYER_KIND_GZIP ? SN_COMP_GZIP
                                                     : SN_COMP_UNCOMPRESSED)) {
        sn_set_error("ztoc %s does not describe layer %zu (%s): size or "
                     "compression differs", d->digest, j, l->digest);
        sn_ztoc_free(z);
        goto fail;
      }
      if (span_too_large(img, z, j, d->digest)) {
        sn_ztoc_free(z);
        continue;               /* served whole: see SN_SPAN_MAX_OUT */
      }
      ztocs[j] = z;
      if ((l->ztoc_digest = strdup(d->digest)) == NULL) {
        sn_oom();
        goto fail;
      }
      found++;
    }
  }
  logf_(img, "SOCI index %s (%s): ztocs for %zu of %zu layers",
        img->index_digest, img->index_source, found, img->nlayers);
  sn_manifest_free(idx);
  return 0;

fail:
  sn_manifest_free(idx);
  return -1;
}

/* ---- exports ---------------------------------------------------------- */

static int
add_export(struct sn_image *img, const char *name, struct sn_sqfs *sq,
           size_t first, bool owns)
{
  struct sn_image_export *e = &img->exports[img->nexports];

  e->name = strdup(name);
  if (e->name == NULL) {
    if (owns)
      sn_sqfs_free(sq);
    return sn_oom();
  }
  e->sqfs = sq;
  e->first_layer = first;
  e->bytes_read = 0;
  img->nexports++;
  return 0;
}

static bool
owns_sqfs(const struct sn_image *img, size_t i)
{
  size_t j;

  for (j = 0; j < i; j++)
    if (img->exports[j].sqfs == img->exports[i].sqfs)
      return false;
  return true;
}

static int
build_exports(struct sn_image *img, uint32_t block_size)
{
  const struct sn_ztoc **zs;
  struct sn_sqfs_opts so = { .mode = SN_SQFS_FLAT, .block_size = block_size,
                             .warn = sqfs_warn, .warn_opaque = img };
  struct sn_sqfs *sq, **per;
  size_t i, j;
  char name[32];
  int r = -1;

  zs = calloc(img->nlayers + 1, sizeof *zs);
  per = calloc(img->nlayers + 1, sizeof *per);
  img->exports = calloc(2 * img->nlayers + 2, sizeof *img->exports);
  if (zs == NULL || per == NULL || img->exports == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < img->nlayers; i++)
    zs[i] = sn_layer_ztoc(img->layers[i].layer);

  sq = sn_sqfs_new(zs, img->nlayers, &so);
  if (sq == NULL) {
    sn_prefix_error("flattened image: ");
    goto out;
  }
  if (add_export(img, "", sq, 0, true) == -1)
    goto out;
  /* "flat": the same image under a name that clients which handle an
   * empty export name awkwardly (nbd-client, QEMU's exportname=) can use. */
  if (add_export(img, "flat", sq, 0, false) == -1)
    goto out;

  so.mode = SN_SQFS_LAYER;
  for (i = 0; i < img->nlayers; i++) {
    per[i] = sn_sqfs_new(&zs[i], 1, &so);
    if (per[i] == NULL) {
      if (asprintf(&img->layers[i].sqfs_error, "layer %zu (%s): %s", i,
                   img->layers[i].digest, sn_error()) == -1) {
        img->layers[i].sqfs_error = NULL;
        sn_oom();
        goto out;
      }
      logf_(img, "warning: export layer/%zu is not available: %s", i,
            img->layers[i].sqfs_error);
      continue;
    }
    snprintf(name, sizeof name, "layer/%zu", i);
    if (add_export(img, name, per[i], i, true) == -1) {
      per[i] = NULL;
      goto out;
    }
  }
  for (i = 0; i < img->nlayers; i++) {
    bool dup = false;

    if (per[i] == NULL)
      continue;
    for (j = 0; j < i; j++)
      if (strcmp(img->layers[j].digest, img->layers[i].digest) == 0)
        dup = true;
    if (!dup && add_export(img, img->layers[i].digest, per[i], i,
                           false) == -1)
      goto out;
  }
  r = 0;
out:
  free(zs);
  free(per);
  return r;
}

/* ---- open / free ------------------------------------------------------ */

static int
setup_layers(struct sn_image *img, const struct sn_manifest *m,
             const struct sn_image_opts *o)
{
  struct sn_ztoc **ztocs = NULL;
  size_t i;
  int r = -1;

  img->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof *img->layers);
  ztocs = calloc(m->nlayers ? m->nlayers : 1, sizeof *ztocs);
  if (img->layers == NULL || ztocs == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < m->nlayers; i++) {
    struct img_layer *l = &img->layers[i];

    l->img = img;
    l->index = i;
    l->fd = -1;
    l->size = m->layers[i].size;
    l->digest = strdup(m->layers[i].digest);
    l->media_type = m->layers[i].media_type ? strdup(m->layers[i].media_type)
                                            : NULL;
    img->nlayers = i + 1;
    if (l->digest == NULL ||
        (m->layers[i].media_type && l->media_type == NULL)) {
      sn_oom();
      goto out;
    }
  }

  if (img->index_digest && load_index(img, m, ztocs) == -1)
    goto out;

  for (i = 0; i < img->nlayers; i++) {
    struct img_layer *l = &img->layers[i];
    enum sn_layer_kind k = sn_layer_kind(l->media_type);
    struct sn_layer_opts lo = {
      .cache_bytes = o->cache_size,
      .layer_digest = l->digest,
      .disk = img->disk,
      .readahead_bytes = SN_IMAGE_READAHEAD,
    };
    struct sn_ztoc *z = ztocs[i];

    switch (k) {
    case SN_LAYER_KIND_GZIP:
    case SN_LAYER_KIND_TAR:
      break;
    case SN_LAYER_KIND_ZSTD:
      sn_set_error("layer %zu (%s) is zstd-compressed: not supported", i,
                   l->digest);
      goto out;
    default:
      sn_set_error("layer %zu (%s) has unsupported media type %s", i,
                   l->digest, l->media_type ? l->media_type : "(none)");
      goto out;
    }
    ztocs[i] = NULL;
    if (z) {
      l->lazy = true;
      lo.cache_dir = o->cache_dir;
      l->layer = sn_layer_new_opts(z, registry_read, l, &lo);
    }
    else {
      z = fetch_whole(img, l, k == SN_LAYER_KIND_GZIP ? SN_COMP_GZIP
                                                      : SN_COMP_UNCOMPRESSED,
                      o->cache_dir);
      if (z == NULL) {
        sn_prefix_error("layer %zu (%s): ", i, l->digest);
        goto out;
      }
      l->layer = sn_layer_new_opts(z, local_read, l, &lo);
    }
    if (l->layer == NULL) {
      sn_prefix_error("layer %zu (%s): ", i, l->digest);
      goto out;
    }
    l->spans_total = (uint64_t) sn_layer_ztoc(l->layer)->max_span_id + 1;
    sn_layer_set_trace(l->layer, layer_trace, l);
    if (!l->lazy && l->npf) {
      logf_(img, "layer %zu (%s): prefetch artifact ignored: the layer is "
            "local", i, l->digest);
      l->npf = 0;
    }
    for (size_t p = 0; p < l->npf; p++)
      if ((uint64_t) l->pf[p].end >= l->spans_total) {
        sn_set_error("layer %zu (%s): prefetch artifact names span %d, the "
                     "ztoc has %" PRIu64, i, l->digest, (int) l->pf[p].end,
                     l->spans_total);
        goto out;
      }
  }
  r = 0;
out:
  for (i = 0; ztocs && i < m->nlayers; i++)
    sn_ztoc_free(ztocs[i]);
  free(ztocs);
  return r;
}

struct sn_image *
sn_image_open(const char *image, const struct sn_image_opts *o)
{
  struct sn_image *img = calloc(1, sizeof *img);
  struct sn_platform want = { 0 }, *wantp = NULL;
  struct sn_manifest *m = NULL, *top = NULL;
  enum sn_index_source src;
  const char *why;
  char *rs = NULL;

  if (img == NULL) {
    sn_oom();
    return NULL;
  }
  img->trace = o->trace;
  img->log = o->log;
  img->progress = o->progress;
  img->opaque = o->opaque;
  img->index_source = "none";
  img->prefetch = o->prefetch;
  img->layer_check = !o->no_layer_check;
  if (o->cache_dir) {
    img->disk = sn_diskcache_open(o->cache_dir, o->cache_dir_size,
                                  img->log, img->opaque);
    if (img->disk == NULL)
      goto fail;
  }
  else if (o->cache_dir_size) {
    sn_set_error("a cache directory size bound needs a cache directory");
    goto fail;
  }

  if (sn_ref_parse(image, &img->ref) == -1) {
    sn_prefix_error("%s: ", image);
    goto fail;
  }
  if (o->platform) {
    if (sn_platform_parse(o->platform, &want) == -1) {
      sn_prefix_error("invalid platform '%s': ", o->platform);
      goto fail;
    }
    wantp = &want;
  }
  img->reg = sn_registry_open(&img->ref, &o->reg);
  if (img->reg == NULL)
    goto fail;
  m = sn_registry_resolve(img->reg,
                          img->ref.digest ? img->ref.digest : img->ref.tag,
                          wantp, &top);
  if (m == NULL)
    goto fail;
  img->manifest_digest = strdup(m->digest);
  if (img->manifest_digest == NULL) {
    sn_oom();
    goto fail;
  }
  if (m->is_index || m->nlayers == 0) {
    sn_set_error("%s: manifest %s has no layers", image, m->digest);
    goto fail;
  }
  rs = sn_ref_string(&img->ref);
  logf_(img, "image %s: manifest %s, %zu layers", rs ? rs : image,
        m->digest, m->nlayers);

  if (sn_index_find(img->reg, m, o->index, o->allow_v1, &img->index_digest,
                    &src, &why) == -1)
    goto fail;
  img->index_source = sn_index_source_name(src);
  img->index_why = why;
  if (img->index_digest == NULL)
    logf_(img, "no SOCI index (%s): every layer is fetched whole", why);
  else
    logf_(img, "SOCI index %s (%s): %s", img->index_digest,
          img->index_source, why);
  if (setup_layers(img, m, o) == -1)
    goto fail;
  if (build_exports(img, o->block_size) == -1)
    goto fail;

  free(rs);
  sn_platform_clear(&want);
  sn_manifest_free(m);
  sn_manifest_free(top);
  return img;

fail:
  free(rs);
  sn_platform_clear(&want);
  sn_manifest_free(m);
  sn_manifest_free(top);
  /* Keep the message across the frees below. */
  {
    char *msg = strdup(sn_error());

    sn_image_free(img);
    if (msg) {
      sn_set_error("%s", msg);
      free(msg);
    }
  }
  return NULL;
}

void
sn_image_free(struct sn_image *img)
{
  size_t i;

  if (img == NULL)
    return;
  if (img->bg_started) {
    __atomic_store_n(&img->bg_stop, 1, __ATOMIC_RELEASE);
    pthread_join(img->bg, NULL);
  }
  for (i = 0; i < img->nexports; i++) {
    if (owns_sqfs(img, i))
      sn_sqfs_free(img->exports[i].sqfs);
  }
  for (i = 0; i < img->nexports; i++)
    free((char *) img->exports[i].name);
  free(img->exports);
  for (i = 0; i < img->nlayers; i++) {
    struct img_layer *l = &img->layers[i];

    sn_layer_free(l->layer);
    if (l->fd != -1)
      close(l->fd);
    free(l->digest);
    free(l->media_type);
    free(l->ztoc_digest);
    free(l->sqfs_error);
    free(l->pf);
    free(l->verify_msg);
  }
  free(img->layers);
  sn_diskcache_free(img->disk);
  sn_registry_close(img->reg);
  sn_ref_clear(&img->ref);
  free(img->manifest_digest);
  free(img->index_digest);
  free(img);
}

/* ---- accessors -------------------------------------------------------- */

const char *
sn_image_manifest_digest(const struct sn_image *img)
{
  return img->manifest_digest;
}

const char *
sn_image_index_digest(const struct sn_image *img)
{
  return img->index_digest;
}

const char *
sn_image_index_source(const struct sn_image *img)
{
  return img->index_source;
}

size_t
sn_image_nlayers(const struct sn_image *img)
{
  return img->nlayers;
}

const char *
sn_image_layer_digest(const struct sn_image *img, size_t i)
{
  return i < img->nlayers ? img->layers[i].digest : NULL;
}

bool
sn_image_layer_lazy(const struct sn_image *img, size_t i)
{
  return i < img->nlayers && img->layers[i].lazy;
}

size_t
sn_image_nexports(const struct sn_image *img)
{
  return img->nexports;
}

struct sn_image_export *
sn_image_export(struct sn_image *img, size_t i)
{
  return i < img->nexports ? &img->exports[i] : NULL;
}

struct sn_image_export *
sn_image_find_export(struct sn_image *img, const char *name)
{
  size_t i;

  for (i = 0; i < img->nexports; i++)
    if (strcmp(img->exports[i].name, name) == 0)
      return &img->exports[i];
  /* A known layer whose image could not be built: say why. */
  for (i = 0; i < img->nlayers; i++) {
    char n[32];

    snprintf(n, sizeof n, "layer/%zu", i);
    if (img->layers[i].sqfs_error &&
        (strcmp(name, n) == 0 || strcmp(name, img->layers[i].digest) == 0)) {
      sn_set_error("export '%s' is not available: %s", name,
                   img->layers[i].sqfs_error);
      return NULL;
    }
  }
  sn_set_error("no export '%.100s' (exports: \"\" or flat, "
               "layer/0..layer/%zu and the layer digests)", name,
               img->nlayers ? img->nlayers - 1 : 0);
  return NULL;
}

/* ---- reads ------------------------------------------------------------ */

struct rd {
  struct sn_image *img;
  size_t first;
};

static int
read_tar(void *opaque, size_t layer, void *buf, size_t len, uint64_t off)
{
  struct rd *rd = opaque;
  struct img_layer *l = &rd->img->layers[rd->first + layer];

  if (sn_layer_read_checked(l->layer, buf, len, (int64_t) off) == -1)
    return sn_prefix_error("layer %zu (%s): ", l->index, l->digest);
  return 0;
}

static int64_t
now_ns(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Foreground reads are counted so that background fetches yield to them. */
static void
fg_begin(struct sn_image *img)
{
  __atomic_fetch_add(&img->fg_active, 1, __ATOMIC_ACQ_REL);
}

static void
fg_end(struct sn_image *img)
{
  __atomic_store_n(&img->fg_last, now_ns(), __ATOMIC_RELEASE);
  __atomic_fetch_sub(&img->fg_active, 1, __ATOMIC_ACQ_REL);
}

int
sn_image_pread(struct sn_image *img, struct sn_image_export *e, void *buf,
               size_t len, uint64_t off)
{
  struct rd rd = { img, e->first_layer };
  int r;

  fg_begin(img);
  r = sn_sqfs_read(e->sqfs, buf, len, off, read_tar, &rd);
  fg_end(img);
  if (r == -1)
    return -1;
  __atomic_fetch_add(&e->bytes_read, (uint64_t) len, __ATOMIC_RELAXED);
  return 0;
}

int
sn_image_prefetch(struct sn_image *img, struct sn_image_export *e,
                  uint64_t len, uint64_t off)
{
  size_t i, n = sn_sqfs_nregions(e->sqfs);
  uint64_t end = off + len;
  int ret = 0;

  fg_begin(img);
  for (i = 0; i < n && ret == 0; i++) {
    const struct sn_sqfs_region *r = sn_sqfs_region(e->sqfs, i);
    uint64_t a, b;
    struct img_layer *l;

    if (r->kind != SN_SQFS_REGION_TAR || r->end <= off || r->start >= end)
      continue;
    a = off > r->start ? off : r->start;
    b = end < r->end ? end : r->end;
    l = &img->layers[e->first_layer + r->layer];
    if (sn_layer_prefetch(l->layer, (int64_t) (a - r->start),
                          (int64_t) (b - a)) == -1)
      ret = sn_prefix_error("layer %zu (%s): ", l->index, l->digest);
  }
  fg_end(img);
  return ret;
}

/* ---- the prefetch thread ---------------------------------------------- */

static bool
bg_stopping(struct sn_image *img)
{
  return __atomic_load_n(&img->bg_stop, __ATOMIC_ACQUIRE);
}

/* Wait until no foreground read has run for QUIET_NS.  False: stop. */
static bool
wait_quiet(struct sn_image *img)
{
  struct timespec ts = { 0, 5 * 1000 * 1000 };

  while (!bg_stopping(img)) {
    if (__atomic_load_n(&img->fg_active, __ATOMIC_ACQUIRE) == 0 &&
        now_ns() - __atomic_load_n(&img->fg_last, __ATOMIC_ACQUIRE)
        >= QUIET_NS)
      return true;
    nanosleep(&ts, NULL);
  }
  return false;
}

static void
prefetched(struct sn_image *img, uint64_t n)
{
  __atomic_fetch_add(&img->spans_prefetched, n, __ATOMIC_RELAXED);
}

/* The spans of the prefetch artifacts, in their order, as fast as the span
 * cache allows (SN_SPANCACHE_MAX_GET concurrent fetches per call). */
static void
run_artifacts(struct sn_image *img)
{
  size_t i, k, s, first, n;

  for (i = 0; i < img->nlayers; i++) {
    struct img_layer *l = &img->layers[i];

    for (k = 0; k < l->npf && !bg_stopping(img); k++) {
      for (s = (size_t) l->pf[k].start; s <= (size_t) l->pf[k].end;
           s += n) {
        /* Skip what is cached already; count what this loads. */
        while (s <= (size_t) l->pf[k].end &&
               sn_layer_span_cached(l->layer, s))
          s++;
        if (s > (size_t) l->pf[k].end || bg_stopping(img))
          break;
        first = s;
        for (n = 0; first + n <= (size_t) l->pf[k].end &&
             n < SN_SPANCACHE_MAX_GET &&
             !sn_layer_span_cached(l->layer, first + n); n++)
          ;
        if (sn_layer_prefetch_spans(l->layer, first, first + n - 1) == -1) {
          logf_(img, "warning: prefetch of spans %zu..%zu of layer %zu: %s",
                first, first + n - 1, i, sn_error());
          continue;
        }
        prefetched(img, n);
      }
    }
  }
  logf_(img, "prefetch artifacts: %" PRIu64 " spans loaded",
        __atomic_load_n(&img->spans_prefetched, __ATOMIC_RELAXED));
}

static void
verify_failed(struct sn_image *img, struct img_layer *l, const char *msg)
{
  char *m = NULL;

  if (asprintf(&m, "layer %zu (%s): %s", l->index, l->digest, msg) == -1)
    m = NULL;
  l->verify_msg = m;
  __atomic_store_n(&l->verify, VERIFY_FAILED, __ATOMIC_RELEASE);
  logf_(img, "error: %s; the layer is no longer served", m ? m : msg);
  sn_layer_poison(l->layer, m ? m : msg);
}

/* Every span of layer l, in order, one at a time when the foreground is
 * quiet, then (with layer_check) the whole-layer check.  False: stop. */
static bool
background_layer(struct sn_image *img, struct img_layer *l)
{
  size_t i, n = sn_layer_nspans(l->layer);
  struct sn_layer_check *c = NULL;
  bool mismatch = false;
  char msg[1024];

  if (img->layer_check) {
    c = sn_layer_check_new(l->layer);
    if (c == NULL) {
      logf_(img, "warning: layer %zu: whole-layer check not possible: %s",
            l->index, sn_error());
      return true;
    }
    __atomic_store_n(&l->verify, VERIFY_PENDING, __ATOMIC_RELEASE);
  }
  for (i = 0; i < n; i++) {
    uint8_t *comp;
    size_t clen;
    bool cached, warm;
    int tries;

    if (!wait_quiet(img))
      goto stop;
    cached = sn_layer_span_cached(l->layer, i);
    if (cached && c == NULL)
      continue;
    /* Keep the span in memory only where nothing needs evicting: the
     * foreground's working set wins. */
    warm = !cached && sn_layer_cache_room(l->layer, i);
    for (tries = 0; ; tries++) {
      struct timespec ts = { 1, 0 };

      if (sn_layer_load_span(l->layer, i, warm, &comp, &clen) == 0 &&
          (comp || c == NULL ||
           sn_layer_span_comp(l->layer, i, &comp, &clen) == 0))
        break;
      if (tries == 5) {
        logf_(img, "warning: background fetch of layer %zu stopped: %s",
              l->index, sn_error());
        if (c)
          __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
        sn_layer_check_free(c);
        return true;
      }
      if (bg_stopping(img))
        goto stop;
      nanosleep(&ts, NULL);
    }
    prefetched(img, 1);
    if (c && sn_layer_check_span(c, i, comp, clen, &mismatch) == -1) {
      snprintf(msg, sizeof msg, "%s", sn_error());
      free(comp);
      if (mismatch)
        verify_failed(img, l, msg);
      else {
        logf_(img, "warning: %s", msg);
        __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
      }
      sn_layer_check_free(c);
      return true;
    }
    free(comp);
  }
  if (c) {
    if (sn_layer_check_finish(c, l->digest, &mismatch) == -1) {
      snprintf(msg, sizeof msg, "%s", sn_error());
      if (mismatch)
        verify_failed(img, l, msg);
      else {
        logf_(img, "warning: %s", msg);
        __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
      }
    }
    else {
      __atomic_store_n(&l->verify, VERIFY_OK, __ATOMIC_RELEASE);
      logf_(img, "layer %zu (%s): whole-layer check passed", l->index,
            l->digest);
    }
    sn_layer_check_free(c);
  }
  return true;

stop:
  if (c)
    __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
  sn_layer_check_free(c);
  return false;
}

static void *
bg_main(void *arg)
{
  struct sn_image *img = arg;
  size_t i;

  if (img->prefetch == SN_PREFETCH_ARTIFACT)
    run_artifacts(img);
  else if (img->prefetch == SN_PREFETCH_BACKGROUND) {
#ifdef SCHED_IDLE
    struct sched_param sp = { 0 };

    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
#endif
    for (i = 0; i < img->nlayers; i++) {
      if (img->layers[i].lazy && !background_layer(img, &img->layers[i]))
        break;
      if (img->progress)
        img->progress(img->opaque);
    }
    logf_(img, "background fetch %s: %" PRIu64 " spans loaded",
          i == img->nlayers ? "done" : "stopped",
          __atomic_load_n(&img->spans_prefetched, __ATOMIC_RELAXED));
  }
  __atomic_store_n(&img->bg_done, 1, __ATOMIC_RELEASE);
  if (img->progress)
    img->progress(img->opaque);
  return NULL;
}

int
sn_image_start_background(struct sn_image *img)
{
  int e;

  if (img->prefetch == SN_PREFETCH_NONE || img->bg_started)
    return 0;
  e = pthread_create(&img->bg, NULL, bg_main, img);
  if (e != 0)
    return sn_set_error("prefetch thread: %s", strerror(e));
  img->bg_started = true;
  return 0;
}

/* ---- statistics ------------------------------------------------------- */

static void
add_layer_stats(struct sn_image_stats *st, const struct img_layer *l,
                const struct sn_layer_stats *ls)
{
  if (l->lazy) {
    st->bytes_fetched += ls->bytes_fetched;
    st->spans_fetched += ls->spans_fetched;
    st->spans_verified += ls->spans_verified;
    st->spans_failed += ls->spans_failed;
    st->spans_total += l->spans_total;
  }
  else
    st->local_bytes_read += __atomic_load_n(&l->local_bytes, __ATOMIC_RELAXED);
  switch (__atomic_load_n(&l->verify, __ATOMIC_ACQUIRE)) {
  case VERIFY_OK: st->layers_verified++; break;
  case VERIFY_FAILED: st->layers_verify_failed++; break;
  default: break;
  }
  st->cache_hits += ls->cache_hits;
  st->cache_misses += ls->cache_misses;
  st->disk_hits += ls->disk_hits;
  st->headers_checked += ls->headers_checked;
  st->spans_read_ahead += ls->readahead_spans;
  st->whole_layer_bytes_fetched += l->whole_bytes;
}

void
sn_image_get_stats(struct sn_image *img, struct sn_image_stats *st)
{
  size_t i;

  memset(st, 0, sizeof *st);
  st->spans_prefetched = __atomic_load_n(&img->spans_prefetched,
                                         __ATOMIC_RELAXED);
  for (i = 0; i < img->nlayers; i++) {
    struct sn_layer_stats ls;

    sn_layer_get_stats(img->layers[i].layer, &ls);
    add_layer_stats(st, &img->layers[i], &ls);
  }
}

static void
put_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;

    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static const char *
verify_name(int v)
{
  switch (v) {
  case VERIFY_PENDING: return "pending";
  case VERIFY_OK: return "ok";
  case VERIFY_FAILED: return "failed";
  default: return "none";
  }
}

static const char *
prefetch_name(enum sn_prefetch_mode m)
{
  switch (m) {
  case SN_PREFETCH_ARTIFACT: return "artifact";
  case SN_PREFETCH_BACKGROUND: return "background";
  default: return "none";
  }
}

char *
sn_image_stats_json(struct sn_image *img)
{
  struct sn_image_stats st = { 0 };
  struct sn_diskcache_stats ds;
  char *s = NULL;
  size_t len = 0, i;
  FILE *f = open_memstream(&s, &len);

  if (f == NULL) {
    sn_oom();
    return NULL;
  }
  fprintf(f, "{\n  \"manifest\": \"%s\",\n  \"index\": ", img->manifest_digest);
  if (img->index_digest)
    fprintf(f, "\"%s\"", img->index_digest);
  else
    fputs("null", f);
  fprintf(f, ",\n  \"index_source\": \"%s\",\n  \"index_reason\": \"%s\",\n"
          "  \"layers\": [", img->index_source,
          img->index_why ? img->index_why : "");
  for (i = 0; i < img->nlayers; i++) {
    const struct img_layer *l = &img->layers[i];
    struct sn_layer_stats ls;
    int v = __atomic_load_n(&l->verify, __ATOMIC_ACQUIRE);

    sn_layer_get_stats(l->layer, &ls);
    add_layer_stats(&st, l, &ls);
    fprintf(f, "%s\n    {\"index\": %zu, \"digest\": \"%s\", \"lazy\": %s, "
            "\"spans_total\": %" PRIu64 ", \"spans_fetched\": %" PRIu64
            ", \"spans_verified\": %" PRIu64 ", \"spans_failed\": %" PRIu64
            ", \"bytes_fetched\": %" PRIu64 ", \"cache_hits\": %" PRIu64
            ", \"cache_misses\": %" PRIu64 ", \"disk_hits\": %" PRIu64
            ", \"headers_checked\": %" PRIu64
            ", \"spans_read_ahead\": %" PRIu64
            ", \"whole_layer_bytes_fetched\": %" PRIu64
            ", \"prefetch_ranges\": %zu, \"verify\": \"%s\"",
            i ? "," : "", i, l->digest, l->lazy ? "true" : "false",
            l->spans_total, ls.spans_fetched, ls.spans_verified,
            ls.spans_failed, ls.bytes_fetched, ls.cache_hits,
            ls.cache_misses, ls.disk_hits, ls.headers_checked,
            ls.readahead_spans, l->whole_bytes, l->npf, verify_name(v));
    fputs(", \"ztoc\": ", f);
    if (l->ztoc_digest)
      put_str(f, l->ztoc_digest);
    else
      fputs("null", f);
    if (v == VERIFY_FAILED && l->verify_msg) {
      fputs(", \"verify_error\": ", f);
      put_str(f, l->verify_msg);
    }
    fputc('}', f);
  }
  sn_diskcache_get_stats(img->disk, &ds);
  fputs("\n  ],\n  \"exports\": {", f);
  for (i = 0; i < img->nexports; i++)
    fprintf(f, "%s\n    \"%s\": {\"bytes_read\": %" PRIu64 "}",
            i ? "," : "", img->exports[i].name,
            __atomic_load_n(&img->exports[i].bytes_read, __ATOMIC_RELAXED));
  fprintf(f, "\n  },\n"
          "  \"bytes_fetched\": %" PRIu64 ",\n"
          "  \"spans_total\": %" PRIu64 ",\n"
          "  \"spans_fetched\": %" PRIu64 ",\n"
          "  \"spans_verified\": %" PRIu64 ",\n"
          "  \"spans_failed\": %" PRIu64 ",\n"
          "  \"cache_hits\": %" PRIu64 ",\n"
          "  \"cache_misses\": %" PRIu64 ",\n"
          "  \"disk_hits\": %" PRIu64 ",\n"
          "  \"headers_checked\": %" PRIu64 ",\n"
          "  \"whole_layer_bytes_fetched\": %" PRIu64 ",\n"
          "  \"local_bytes_read\": %" PRIu64 ",\n"
          "  \"prefetch\": \"%s\",\n"
          "  \"prefetch_artifacts\": %zu,\n"
          "  \"prefetch_done\": %s,\n"
          "  \"spans_prefetched\": %" PRIu64 ",\n"
          "  \"spans_read_ahead\": %" PRIu64 ",\n"
          "  \"layer_check\": %s,\n"
          "  \"layers_verified\": %" PRIu64 ",\n"
          "  \"layers_verify_failed\": %" PRIu64 ",\n"
          "  \"cache_dir_bytes\": %" PRIu64 ",\n"
          "  \"cache_dir_max_bytes\": %" PRIu64 ",\n"
          "  \"cache_dir_evicted_files\": %" PRIu64 ",\n"
          "  \"cache_dir_evicted_bytes\": %" PRIu64 ",\n"
          "  \"cache_dir_stale_removed\": %" PRIu64 "\n}\n",
          st.bytes_fetched, st.spans_total, st.spans_fetched,
          st.spans_verified, st.spans_failed, st.cache_hits, st.cache_misses,
          st.disk_hits, st.headers_checked, st.whole_layer_bytes_fetched,
          st.local_bytes_read, prefetch_name(img->prefetch), img->npf_docs,
          __atomic_load_n(&img->bg_done, __ATOMIC_ACQUIRE) ? "true" : "false",
          __atomic_load_n(&img->spans_prefetched, __ATOMIC_RELAXED),
          st.spans_read_ahead, img->layer_check && img->prefetch == SN_PREFETCH_BACKGROUND
          ? "true" : "false",
          st.layers_verified, st.layers_verify_failed, ds.bytes,
          ds.max_bytes, ds.evicted_files, ds.evicted_bytes,
          ds.stale_removed);
  if (fclose(f) != 0) {
    free(s);
    sn_oom();
    return NULL;
  }
  return s;
}
