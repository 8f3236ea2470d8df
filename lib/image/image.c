/* soci-nbd: open an image for serving — resolve it, find its SOCI index,
 * set up one sn_layer per layer (lazy through registry ranges, or a whole
 * local copy), and build the squashfs images of every export; then serve
 * reads of those exports.  Whole-layer downloads: image-fetch.c; the SOCI
 * index: image-index.c; the prefetch thread: image-background.c;
 * statistics: image-stats.c. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "image/image-int.h"
#include "deps/deps.h"
#include "record/record.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "soci/index-find.h"
#include "soci/ztoc.h"
#include "span/diskcache.h"
#include "span/layer.h"
#include "squashfs/sqfs.h"
#include "util/err.h"

/* Sequential readahead window of each layer (see sn_layer_opts). */
#define SN_IMAGE_READAHEAD ((size_t) 8 << 20)

void
img_logf(struct sn_image *img, const char *fmt, ...)
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

/* The squashfs builder's warnings (lossy conversions), one log line each. */
static void
sqfs_warn(void *opaque, const char *msg)
{
  struct sn_image *img = opaque;

  img_logf(img, "warning: %s", msg);
}

/* ---- blob sources ----------------------------------------------------- */

/* Blob source of a lazy layer: byte ranges from the registry. */
static int
registry_read(void *opaque, void *buf, size_t len, int64_t off)
{
  struct img_layer *l = opaque;

  return sn_registry_read_range(l->img->reg, l->digest, buf, len, off);
}

/* Blob source of a layer's dense-index windows: registry range reads
 * (each window is checked against its digest by the layer). */
static int
windows_read(void *opaque, void *buf, size_t len, int64_t off)
{
  struct img_layer *l = opaque;

  return sn_registry_read_range(l->img->reg, l->windows_digest, buf, len,
                                off);
}

/* Blob source of a layer fetched whole: its local copy (counted). */
static int
local_read(void *opaque, void *buf, size_t len, int64_t off)
{
  struct img_layer *l = opaque;

  __atomic_fetch_add(&l->local_bytes, (uint64_t) len, __ATOMIC_RELAXED);
  return sn_blob_read_fd(&l->fd, buf, len, off);
}

/* sn_layer's trace hook: tell the image's trace which layer it is. */
static void
layer_trace(void *opaque, size_t span, const struct sn_span *s)
{
  struct img_layer *l = opaque;

  if (l->img->trace)
    l->img->trace(l->img->opaque, l->index, span, s);
}

/* ---- exports ---------------------------------------------------------- */

/* Append export name (the image sq, whose layer 0 is image layer first).
 * The export owns sq if owns (then it is freed here on failure). */
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

/* Is export i the first one to use its sqfs (the one that frees it)? */
static bool
owns_sqfs(const struct sn_image *img, size_t i)
{
  size_t j;

  for (j = 0; j < i; j++)
    if (img->exports[j].sqfs == img->exports[i].sqfs)
      return false;
  return true;
}

/* Build the squashfs images (flattened, then one per layer) and the
 * exports that name them.  0 or -1 (err.h). */
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
  img->deps = calloc(2 * img->nlayers + 2, sizeof *img->deps);
  if (zs == NULL || per == NULL || img->exports == NULL ||
      img->deps == NULL) {
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
      img_logf(img, "warning: export layer/%zu is not available: %s", i,
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

/* Set up img->layers from manifest m: ztocs from the SOCI index, one
 * sn_layer per layer (lazy, or over a whole local copy).  0 or -1. */
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

  /* Dense tables first: the SOCI index then skips those layers' ztocs,
   * and is not fetched at all when they cover every layer (its prefetch
   * artifacts name SOCI spans, which such layers do not have). */
  if (img_load_dense(img, m, ztocs) == -1 ||
      img_load_stargz(img, m, ztocs) == -1)
    goto out;
  for (i = 0; i < img->nlayers && ztocs[i]; i++)
    ;
  if (img->index_digest && i == img->nlayers)
    img_logf(img, "SOCI index %s not fetched: the dense index and layer "
             "TOCs cover every layer (dense=false, estargz=false and "
             "zstd-chunked=false use it)", img->index_digest);
  else if (img->index_digest && img_load_index(img, m, ztocs) == -1)
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
    case SN_LAYER_KIND_ZSTD:  /* fetched whole and decompressed */
      break;
    default:
      sn_set_error("layer %zu (%s) has unsupported media type %s", i,
                   l->digest, l->media_type ? l->media_type : "(none)");
      goto out;
    }
    ztocs[i] = NULL;
    if (z) {
      l->lazy = true;
      lo.cache_dir = o->cache_dir;
      if (l->windows_digest) {
        lo.windows_read = windows_read;
        lo.windows_opaque = l;
      }
      l->layer = sn_layer_new_opts(z, registry_read, l, &lo);
    }
    else if (o->plan_only)
      continue;                 /* served whole: not downloaded here */
    else {
      z = img_fetch_whole(img, l, k, o->cache_dir);
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
    if (l->dense && l->npf) {
      /* Its spans are SOCI spans; the dense table has sub-spans. */
      img_logf(img, "layer %zu (%s): prefetch artifact ignored: the layer is "
            "served from its dense index (dense=false uses it)", i,
            l->digest);
      l->npf = 0;
    }
    if (!l->lazy && l->npf) {
      img_logf(img, "layer %zu (%s): prefetch artifact ignored: the layer is "
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

/* Start-up in the order of docs/architecture.md, "Start-up": resolve, choose
 * the SOCI index, set up the layers, build the exports.  On failure the
 * half-built image is freed and its message kept. */
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
  img->no_dense = o->no_dense;
  img->deps_on = !o->no_deps;
  pthread_mutex_init(&img->deps_lock, NULL);
  img->no_stargz = o->no_stargz;
  img->no_zchunked = o->no_zchunked;
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
  img_logf(img, "image %s: manifest %s, %zu layers", rs ? rs : image,
        m->digest, m->nlayers);

  if (sn_index_find(img->reg, m, o->index, o->allow_v1, &img->index_digest,
                    &src, &why) == -1)
    goto fail;
  img->index_source = sn_index_source_name(src);
  img->index_why = why;
  if (img->index_digest == NULL)
    img_logf(img, "no SOCI index (%s): every layer is fetched whole", why);
  else
    img_logf(img, "SOCI index %s (%s): %s", img->index_digest,
          img->index_source, why);
  if (setup_layers(img, m, o) == -1)
    goto fail;
  if (!o->plan_only && build_exports(img, o->block_size) == -1)
    goto fail;
  /* A prefetch record to replay knows the start-up's bytes better than a
   * guess from its libraries: measured, the guess only competed with the
   * replay for the link (docs/dependency-prefetch.md §1). */
  if (img->deps_on && img->prefetch == SN_PREFETCH_AUTO &&
      img->record.nranges > 0) {
    img->deps_on = false;
    img_logf(img, "dependency prefetch off: the prefetch record is replayed");
  }

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

/* Stops and joins the prefetch thread first; a squashfs image shared by
 * several exports ("", "flat", a layer digest) is freed once. */
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
  for (i = 0; img->deps && i < img->nexports; i++)
    sn_deps_free(img->deps[i]);
  free(img->deps);
  pthread_mutex_destroy(&img->deps_lock);
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
    free(l->stargz_toc);
    free(l->windows_digest);
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
  free(img->dense_digest);
  free(img->record_digest);
  free(img->record_desc.digest);
  sn_record_clear(&img->record);
  free(img);
}

/* ---- accessors -------------------------------------------------------- */

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

const char *
sn_image_layer_served(const struct sn_image *img, size_t i)
{
  if (i >= img->nlayers || !img->layers[i].lazy)
    return "whole";
  if (img->layers[i].dense)
    return img->layers[i].windows_digest ? "lazy-dense"
                                         : "lazy-seekable-zstd";
  return img->layers[i].zchunked ? "lazy-zstd-chunked"
    : img->layers[i].stargz_toc ? "lazy-estargz" : "lazy-soci";
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
  struct sn_image_export *e;
};

/* Export e's dependency prefetcher, made now if it is not yet (NULL if it
 * cannot be: the reads go on without it). */
static struct sn_deps *
export_deps(struct sn_image *img, struct sn_image_export *e)
{
  size_t x = (size_t) (e - img->exports), k, n = sn_sqfs_nlayers(e->sqfs);
  struct sn_deps_layer *dl;
  struct sn_deps *d;

  if ((d = __atomic_load_n(&img->deps[x], __ATOMIC_ACQUIRE)))
    return d;
  pthread_mutex_lock(&img->deps_lock);
  if ((d = img->deps[x]) == NULL &&
      __atomic_load_n(&img->deps_on, __ATOMIC_RELAXED) &&
      (dl = calloc(n ? n : 1, sizeof *dl))) {
    for (k = 0; k < n; k++) {
      struct img_layer *l = &img->layers[e->first_layer + k];

      dl[k] = (struct sn_deps_layer) { sn_layer_ztoc(l->layer), l->layer };
    }
    d = sn_deps_new(dl, n);
    free(dl);
    if (d == NULL) {
      img_logf(img, "dependency prefetch off for export '%s': %s", e->name,
               sn_error());
      __atomic_store_n(&img->deps_on, false, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&img->deps[x], d, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&img->deps_lock);
  return d;
}

/* Could buf (a read of a tar region) hold an ELF file's start?  Until an
 * export's first one, this spares it a prefetcher. */
static bool
may_hold_elf(const uint8_t *buf, size_t len)
{
  return len >= 4 && memmem(buf, len, "\177ELF", 4) != NULL;
}

/* Show a read of layer k of rd's export to its dependency prefetcher:
 * dense-index layers only (docs/dependency-prefetch.md §1), and not while
 * they stream (a copy of the whole device reads every library anyway; and
 * nor is a streaming read searched for an ELF file). */
static void
note_deps(struct rd *rd, struct sn_layer *layer, size_t k, const void *buf,
          size_t len, uint64_t off)
{
  size_t x = (size_t) (rd->e - rd->img->exports);
  struct sn_deps *d = __atomic_load_n(&rd->img->deps[x], __ATOMIC_ACQUIRE);

  if (!sn_layer_stages_files(layer) || sn_layer_streaming(layer) ||
      (d == NULL && !may_hold_elf(buf, len)))
    return;
  if (d == NULL && (d = export_deps(rd->img, rd->e)) == NULL)
    return;
  sn_deps_note(d, k, (int64_t) off, buf, len);
}

/* sn_sqfs_read's tar source: a checked read of the export's layer. */
static int
read_tar(void *opaque, size_t layer, void *buf, size_t len, uint64_t off)
{
  struct rd *rd = opaque;
  struct img_layer *l = &rd->img->layers[rd->e->first_layer + layer];

  if (sn_layer_read_checked(l->layer, buf, len, (int64_t) off) == -1)
    return sn_prefix_error("layer %zu (%s): ", l->index, l->digest);
  if (__atomic_load_n(&rd->img->deps_on, __ATOMIC_RELAXED))
    note_deps(rd, l->layer, layer, buf, len, off);
  /* A record names tar ranges: a layer served from its own TOC has
   * offsets in its file data space instead (docs/estargz.md). */
  if (rd->img->recorder && !l->stargz_toc)
    sn_recorder_note(rd->img->recorder, l->index, off, len);
  return 0;
}

void
sn_image_set_recorder(struct sn_image *img, struct sn_recorder *rec)
{
  img->recorder = rec;
}

int64_t
img_now_ns(void)
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
  __atomic_store_n(&img->fg_last, img_now_ns(), __ATOMIC_RELEASE);
  __atomic_fetch_sub(&img->fg_active, 1, __ATOMIC_ACQ_REL);
}

/* Step 2 of the read path (docs/architecture.md): counted as a foreground
 * read, so background prefetch yields while it runs. */
int
sn_image_pread(struct sn_image *img, struct sn_image_export *e, void *buf,
               size_t len, uint64_t off)
{
  struct rd rd = { img, e };
  int r;

  fg_begin(img);
  r = sn_sqfs_read(e->sqfs, buf, len, off, read_tar, &rd);
  fg_end(img);
  if (r == -1)
    return -1;
  __atomic_fetch_add(&e->bytes_read, (uint64_t) len, __ATOMIC_RELAXED);
  return 0;
}

/* Only the tar regions behind the range are fetched (metadata is in memory);
 * it counts as a foreground read.  The first failing layer's error is kept. */
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
