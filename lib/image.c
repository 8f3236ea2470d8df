/* soci-nbd: open an image for serving — resolve it, find its SOCI index,
 * set up one sn_layer per layer (lazy through registry ranges, or a whole
 * local copy), and build the squashfs images of every export. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "fdio.h"
#include "digest.h"
#include "err.h"
#include "image.h"
#include "layer.h"
#include "manifest.h"
#include "ref.h"
#include "registry.h"
#include "sqfs.h"
#include "ztoc.h"

#define SOCI_INDEX_V1 "application/vnd.amazon.soci.index.v1+json"
#define SOCI_INDEX_V2 "application/vnd.amazon.soci.index.v2+json"
#define ANN_INDEX_DIGEST "com.amazon.soci.index-digest"
#define ANN_LAYER_DIGEST "com.amazon.soci.image-layer-digest"
#define ZTOC_MEDIA_TYPE "application/octet-stream"
#define MAX_ZTOC ((size_t) 1 << 30)
#define CHUNK (1024 * 1024)

struct img_layer {
  struct sn_image *img;
  size_t index;
  char *digest;
  char *media_type;
  int64_t size;
  bool lazy;
  int fd;                       /* local copy, or -1 */
  struct sn_layer *layer;
  uint64_t spans_total;
  uint64_t whole_bytes;         /* downloaded whole at open */
  uint64_t local_bytes;         /* atomically: read from fd */
  char *sqfs_error;             /* why its overlayfs image is missing */
};

struct sn_image {
  struct sn_ref ref;
  struct sn_registry *reg;
  char *manifest_digest;
  char *index_digest;
  const char *index_source;
  struct img_layer *layers;
  size_t nlayers;
  struct sn_image_export *exports;
  size_t nexports;
  void (*trace)(void *opaque, size_t layer, size_t span,
                const struct sn_span *s);
  void (*log)(void *opaque, const char *msg);
  void *opaque;
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
  if (sn_registry_get_blob(img->reg, l->digest, whole_sink, &s) == -1)
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

/* The digest of the SOCI index to use, or NULL (no error) for none. */
static int
find_index(struct sn_image *img, const struct sn_manifest *m,
           const char *want, char **digest)
{
  const char *v2;
  struct sn_manifest *refs;
  size_t i;

  *digest = NULL;
  if (want && strcmp(want, "none") == 0) {
    img->index_source = "none";
    return 0;
  }
  if (want && strcmp(want, "auto") != 0) {
    uint8_t d[SN_SHA256_LEN];

    if (sn_digest_parse(want, strlen(want), d) == -1)
      return sn_set_error("index=%s: expected auto, none or sha256:<hex>",
                          want);
    img->index_source = "explicit";
    *digest = strdup(want);
    return *digest ? 0 : sn_oom();
  }

  v2 = sn_annotation_get(m->annotations, m->nannotations, ANN_INDEX_DIGEST);
  if (v2) {
    img->index_source = "v2";
    *digest = strdup(v2);
    return *digest ? 0 : sn_oom();
  }

  refs = sn_registry_referrers(img->reg, m->digest, SOCI_INDEX_V1);
  if (refs == NULL) {
    logf_(img, "no SOCI index: looking up referrers of %s failed: %s",
          m->digest, sn_error());
    img->index_source = "none";
    return 0;
  }
  for (i = 0; i < refs->nmanifests; i++) {
    const struct sn_descriptor *d = &refs->manifests[i];

    if (d->artifact_type == NULL ||
        strcmp(d->artifact_type, SOCI_INDEX_V1) == 0) {
      *digest = strdup(d->digest);
      if (*digest == NULL) {
        sn_manifest_free(refs);
        return sn_oom();
      }
      img->index_source = "v1";
      break;
    }
  }
  sn_manifest_free(refs);
  if (*digest == NULL)
    img->index_source = "none";
  return 0;
}

/* Fetch the index and attach ztocs to the layers (ztocs[i]). */
static int
load_index(struct sn_image *img, const struct sn_manifest *m,
           struct sn_ztoc **ztocs)
{
  struct sn_manifest *idx;
  const char *type;
  size_t i, j, found = 0;

  idx = sn_registry_get_manifest(img->reg, img->index_digest);
  if (idx == NULL)
    return sn_prefix_error("SOCI index %s: ", img->index_digest);
  type = idx->config.media_type;
  if (idx->is_index || type == NULL ||
      (strcmp(type, SOCI_INDEX_V1) != 0 && strcmp(type, SOCI_INDEX_V2) != 0)) {
    sn_set_error("%s is not a SOCI index (config media type %s)",
                 img->index_digest, type ? type : "none");
    goto fail;
  }
  if (idx->subject && strcmp(idx->subject->digest, m->digest) != 0) {
    sn_set_error("SOCI index %s belongs to manifest %s, not %s",
                 img->index_digest, idx->subject->digest, m->digest);
    goto fail;
  }

  for (i = 0; i < idx->nlayers; i++) {
    const struct sn_descriptor *d = &idx->layers[i];
    const char *ld;
    uint8_t *buf;
    size_t len;

    if (d->media_type == NULL || strcmp(d->media_type, ZTOC_MEDIA_TYPE) != 0)
      continue;
    ld = sn_annotation_get(d->annotations, d->nannotations, ANN_LAYER_DIGEST);
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
      if (sn_registry_get_blob_mem(img->reg, d->digest,
                                   d->size > 0 && (uint64_t) d->size < MAX_ZTOC
                                   ? (size_t) d->size : MAX_ZTOC,
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
      ztocs[j] = z;
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
  char *rs = NULL;

  if (img == NULL) {
    sn_oom();
    return NULL;
  }
  img->trace = o->trace;
  img->log = o->log;
  img->opaque = o->opaque;
  img->index_source = "none";

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

  if (find_index(img, m, o->index, &img->index_digest) == -1)
    goto fail;
  if (img->index_digest == NULL)
    logf_(img, "no SOCI index%s: every layer is fetched whole",
          strcmp(img->index_source, "none") == 0 && o->index &&
          strcmp(o->index, "none") == 0 ? " (index=none)" : "");
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
    free(l->sqfs_error);
  }
  free(img->layers);
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

int
sn_image_pread(struct sn_image *img, struct sn_image_export *e, void *buf,
               size_t len, uint64_t off)
{
  struct rd rd = { img, e->first_layer };

  if (sn_sqfs_read(e->sqfs, buf, len, off, read_tar, &rd) == -1)
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

  for (i = 0; i < n; i++) {
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
      return sn_prefix_error("layer %zu (%s): ", l->index, l->digest);
  }
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
  st->cache_hits += ls->cache_hits;
  st->cache_misses += ls->cache_misses;
  st->disk_hits += ls->disk_hits;
  st->headers_checked += ls->headers_checked;
  st->whole_layer_bytes_fetched += l->whole_bytes;
}

void
sn_image_get_stats(struct sn_image *img, struct sn_image_stats *st)
{
  size_t i;

  memset(st, 0, sizeof *st);
  for (i = 0; i < img->nlayers; i++) {
    struct sn_layer_stats ls;

    sn_layer_get_stats(img->layers[i].layer, &ls);
    add_layer_stats(st, &img->layers[i], &ls);
  }
}

char *
sn_image_stats_json(struct sn_image *img)
{
  struct sn_image_stats st = { 0 };
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
  fprintf(f, ",\n  \"index_source\": \"%s\",\n  \"layers\": [",
          img->index_source);
  for (i = 0; i < img->nlayers; i++) {
    const struct img_layer *l = &img->layers[i];
    struct sn_layer_stats ls;

    sn_layer_get_stats(l->layer, &ls);
    add_layer_stats(&st, l, &ls);
    fprintf(f, "%s\n    {\"index\": %zu, \"digest\": \"%s\", \"lazy\": %s, "
            "\"spans_total\": %" PRIu64 ", \"spans_fetched\": %" PRIu64
            ", \"spans_verified\": %" PRIu64 ", \"spans_failed\": %" PRIu64
            ", \"bytes_fetched\": %" PRIu64 ", \"cache_hits\": %" PRIu64
            ", \"cache_misses\": %" PRIu64 ", \"disk_hits\": %" PRIu64
            ", \"headers_checked\": %" PRIu64
            ", \"whole_layer_bytes_fetched\": %" PRIu64 "}",
            i ? "," : "", i, l->digest, l->lazy ? "true" : "false",
            l->spans_total, ls.spans_fetched, ls.spans_verified,
            ls.spans_failed, ls.bytes_fetched, ls.cache_hits,
            ls.cache_misses, ls.disk_hits, ls.headers_checked,
            l->whole_bytes);
  }
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
          "  \"local_bytes_read\": %" PRIu64 "\n}\n",
          st.bytes_fetched, st.spans_total, st.spans_fetched,
          st.spans_verified, st.spans_failed, st.cache_hits, st.cache_misses,
          st.disk_hits, st.headers_checked, st.whole_layer_bytes_fetched,
          st.local_bytes_read);
  if (fclose(f) != 0) {
    free(s);
    sn_oom();
    return NULL;
  }
  return s;
}
