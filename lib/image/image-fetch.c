/* soci-nbd: layers without a ztoc — download one whole into the cache
 * directory (or an unlinked temporary file), building its ztoc in the same
 * pass, or reuse a cached copy after re-hashing it.  A copy is used only
 * after its digest has been verified.  A zstd layer is decompressed as it
 * streams in, into an unlinked temporary file that is then served as an
 * uncompressed tar layer (the cache keeps the compressed blob, which can
 * be re-hashed). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image-int.h"
#include "registry/registry.h"
#include "soci/build.h"
#include "span/diskcache.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"

#include <zstd.h>

#define CHUNK (1024 * 1024)
/* A zstd layer may expand to at most this many times its size, plus
 * ZSTD_SLACK bytes: a bound on the temporary file a hostile layer can
 * fill. */
#define ZSTD_MAX_RATIO 256
#define ZSTD_SLACK ((uint64_t) 64 << 20)

/* ---- whole-layer download -------------------------------------------- */

struct sink {
  int fd;                       /* the copy of the blob, or -1 */
  struct sn_ztoc_builder *b;
  uint64_t n;                   /* blob bytes */
  bool write_error;
  /* zstd: the blob is hashed here and decompressed into tar_fd, which
   * the builder (uncompressed) is fed. */
  ZSTD_DStream *zs;
  struct sn_sha256 *h;
  int tar_fd;
  uint64_t tar_n, tar_max;
  size_t zlast;                 /* ZSTD_decompressStream's last result */
  uint8_t *zout;
};

/* Uncompressed tar bytes of a zstd layer: to tar_fd and the builder. */
static int
tar_out(struct sink *s, const uint8_t *data, size_t len)
{
  s->tar_n += len;
  if (s->tar_n > s->tar_max)
    return sn_set_error("zstd layer expands past %" PRIu64 " bytes: refused",
                        s->tar_max);
  if (sn_write_all(s->tar_fd, data, len) == -1)
    return sn_set_error("writing the decompressed layer: %s",
                        strerror(errno));
  return sn_ztoc_builder_feed(s->b, data, len);
}

/* Decompress blob bytes of a zstd layer (all the output they make). */
static int
zstd_feed(struct sink *s, const uint8_t *data, size_t len)
{
  ZSTD_inBuffer in = { data, len, 0 };

  sn_sha256_update(s->h, data, len);
  for (;;) {
    ZSTD_outBuffer out = { s->zout, ZSTD_DStreamOutSize(), 0 };

    s->zlast = ZSTD_decompressStream(s->zs, &out, &in);
    if (ZSTD_isError(s->zlast))
      return sn_set_error("zstd: %s", ZSTD_getErrorName(s->zlast));
    if (out.pos && tar_out(s, s->zout, out.pos) == -1)
      return -1;
    if (in.pos == in.size && out.pos < out.size)
      return 0;
  }
}

/* Blob bytes, to the builder directly or through zstd. */
static int
feed(struct sink *s, const uint8_t *data, size_t len)
{
  s->n += len;
  return s->zs ? zstd_feed(s, data, len)
               : sn_ztoc_builder_feed(s->b, data, len);
}

/* sn_registry_get_blob's sink: write the bytes to the local copy and feed
 * them on. */
static int
whole_sink(void *opaque, const uint8_t *data, size_t len)
{
  struct sink *s = opaque;

  if (s->fd != -1 && sn_write_all(s->fd, data, len) == -1) {
    s->write_error = true;
    return sn_set_error("writing the local copy: %s", strerror(errno));
  }
  return feed(s, data, len);
}

static int open_unlinked_tmp(void);

/* Set up s for a blob of `size` bytes of the given kind (zstd: the
 * decompressing stage, and the builder for uncompressed tar).  0 or -1. */
static int
sink_init(struct sink *s, enum sn_layer_kind kind, int64_t size,
          const struct sn_build_opts *bo)
{
  enum sn_compression comp = kind == SN_LAYER_KIND_GZIP
    ? SN_COMP_GZIP : SN_COMP_UNCOMPRESSED;

  if (kind == SN_LAYER_KIND_ZSTD) {
    s->h = calloc(1, sizeof *s->h);
    s->zs = ZSTD_createDStream();
    s->zout = malloc(ZSTD_DStreamOutSize());
    if (s->h == NULL || s->zs == NULL || s->zout == NULL)
      return sn_oom();
    if (sn_sha256_init(s->h) == -1 || (s->tar_fd = open_unlinked_tmp()) == -1)
      return -1;
    s->tar_max = (uint64_t) (size > 0 ? size : 0) * ZSTD_MAX_RATIO +
      ZSTD_SLACK;
    s->zlast = 1;
  }
  s->b = sn_ztoc_builder_new(comp, bo);
  return s->b ? 0 : -1;
}

/* The ztoc of a fully fed sink, and (d) the digest of the blob. */
static struct sn_ztoc *
sink_finish(struct sink *s, uint8_t d[SN_SHA256_LEN])
{
  uint8_t td[SN_SHA256_LEN];

  if (s->zs == NULL)
    return sn_ztoc_builder_finish(s->b, d);
  if (s->zlast != 0) {
    sn_set_error("zstd: the layer ends inside a frame");
    return NULL;
  }
  sn_sha256_final(s->h, d);
  return sn_ztoc_builder_finish(s->b, td);
}

static void
sink_free(struct sink *s)
{
  sn_ztoc_builder_free(s->b);
  if (s->h)
    sn_sha256_free(s->h);
  free(s->h);
  ZSTD_freeDStream(s->zs);
  free(s->zout);
  if (s->tar_fd != -1)
    close(s->tar_fd);
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
 * it is not usable.  For zstd, *tar_fd gets the decompressed copy. */
static struct sn_ztoc *
reuse_cached(struct img_layer *l, enum sn_layer_kind kind,
             const struct sn_build_opts *bo, int *tar_fd)
{
  struct sink s = { .fd = -1, .tar_fd = -1 };
  uint8_t *buf = malloc(CHUNK), d[SN_SHA256_LEN];
  struct sn_ztoc *z = NULL;
  ssize_t n;

  if (buf == NULL || sink_init(&s, kind, l->size, bo) == -1)
    goto out;
  for (;;) {
    do
      n = read(l->fd, buf, CHUNK);
    while (n == -1 && errno == EINTR);
    if (n <= 0)
      break;
    if (feed(&s, buf, (size_t) n) == -1)
      goto out;
  }
  if (n == 0) {
    z = sink_finish(&s, d);
    if (z && !digest_matches(l, d)) {
      sn_ztoc_free(z);
      z = NULL;
    }
    if (z && s.zs) {
      *tar_fd = s.tar_fd;
      s.tar_fd = -1;
    }
  }
out:
  sink_free(&s);
  free(buf);
  return z;
}

/* Use the cached copy at path if it re-hashes to the layer's digest: true
 * with its ztoc in *zp (NULL if pinning it failed) and l->fd open on it;
 * false (l->fd closed) when there is none or it is not valid. */
static bool
use_cached(struct sn_image *img, struct img_layer *l,
           enum sn_layer_kind kind, const struct sn_build_opts *bo,
           const char *path, struct sn_ztoc **zp)
{
  struct sn_ztoc *z;
  int tar_fd = -1;

  l->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (l->fd == -1)
    return false;
  z = reuse_cached(l, kind, bo, &tar_fd);
  if (z && tar_fd != -1) {      /* zstd: serve the decompressed copy */
    close(l->fd);
    l->fd = tar_fd;
  }
  if (z) {
    img_logf(img, "layer %zu (%s): using the cached copy %s", l->index,
          l->digest, path);
    sn_diskcache_touch(path);
    if (img->disk && sn_diskcache_pin(img->disk, path) == -1) {
      sn_ztoc_free(z);
      z = NULL;
    }
    *zp = z;
    return true;
  }
  img_logf(img, "layer %zu (%s): cached copy %s is not valid, fetching "
        "again", l->index, l->digest, path);
  close(l->fd);
  l->fd = -1;
  return false;
}

/* Create the cache's temporary file for path, "<path>.tmp.<pid>.XXXXXX"
 * (the disk cache recognizes it), and the directory dir: 0 with f open,
 * or -1 with the error set. */
static int
open_cache_tmp(struct sn_atomic_file *f, const char *dir, const char *path)
{
  char *tmpl;
  int r;

  if (sn_mkdir_p(dir, 0755) == -1)
    return -1;
  if (asprintf(&tmpl, "%s.tmp.%ld.XXXXXX", path, (long) getpid()) == -1)
    return sn_oom();
  r = sn_atomic_open(f, path, tmpl, 0644);
  if (r == -1)
    sn_set_error("%s: %s", tmpl, strerror(errno));
  free(tmpl);
  return r;
}

/* Without a cache: an unlinked temporary file in $TMPDIR (or /tmp).  The
 * descriptor, or -1 with the error set. */
static int
open_unlinked_tmp(void)
{
  const char *t = getenv("TMPDIR");
  char *tmp;
  int fd;

  if (asprintf(&tmp, "%s/soci-nbd-layer.XXXXXX", t && *t ? t : "/tmp") == -1)
    return sn_oom();
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd == -1)
    sn_set_error("%s: %s", tmp, strerror(errno));
  else
    unlink(tmp);
  free(tmp);
  return fd;
}

/* Move a verified download from its temporary name to its cache path,
 * keeping the descriptor, then pin and count it in the disk cache.  0, or
 * -1 with the error set. */
static int
keep_in_cache(struct sn_image *img, struct sink *s, struct sn_atomic_file *f,
              const char *path)
{
  if (sn_atomic_publish(f, 1) == -1) {
    s->fd = -1;                 /* closed with the temporary */
    return sn_set_error("%s: %s", path, strerror(errno));
  }
  s->fd = f->fd;
  if (img->disk) {
    if (sn_diskcache_pin(img->disk, path) == -1)
      return -1;
    sn_diskcache_add(img->disk, s->n);
  }
  return 0;
}

/* Download layer l whole into a local file, building its ztoc. */
struct sn_ztoc *
img_fetch_whole(struct sn_image *img, struct img_layer *l,
                enum sn_layer_kind kind, const char *cache_dir)
{
  struct sn_build_opts bo = { 0 };
  struct sink s = { .fd = -1, .tar_fd = -1 };
  struct sn_ztoc *z = NULL;
  uint8_t d[SN_SHA256_LEN];
  struct sn_atomic_file f = { .fd = -1 };
  char *dir = NULL, *path = NULL;
  const char *hex = l->digest + strlen("sha256:");

  if (cache_dir) {
    if (asprintf(&dir, "%s/blobs/sha256", cache_dir) == -1 ||
        asprintf(&path, "%s/%s", dir, hex) == -1) {
      sn_oom();
      goto out;
    }
    if (use_cached(img, l, kind, &bo, path, &z))
      goto out;
    if (open_cache_tmp(&f, dir, path) == -1)
      goto out;
    s.fd = f.fd;
  }
  else if (kind != SN_LAYER_KIND_ZSTD && (s.fd = open_unlinked_tmp()) == -1)
    goto out;

  img_logf(img, "layer %zu (%s): %s, fetching it whole (%" PRId64
        " bytes)", l->index, l->digest, kind == SN_LAYER_KIND_ZSTD
        ? "zstd-compressed" : "no ztoc", l->size);
  if (sink_init(&s, kind, l->size, &bo) == -1)
    goto out;
  if (sn_registry_get_blob(img->reg, l->digest, l->size, whole_sink, &s) == -1)
    goto out;
  /* get_blob has verified the digest: only now is the copy usable. */
  z = sink_finish(&s, d);
  if (z == NULL)
    goto out;
  if (!digest_matches(l, d)) {
    sn_set_error("digest mismatch after download");
    sn_ztoc_free(z);
    z = NULL;
    goto out;
  }
  if (cache_dir && keep_in_cache(img, &s, &f, path) == -1) {
    sn_ztoc_free(z);
    z = NULL;
    goto out;
  }
  l->whole_bytes = s.n;
  if (s.zs) {                   /* served from the decompressed copy */
    l->fd = s.tar_fd;
    s.tar_fd = -1;
  }
  else {
    l->fd = s.fd;
    s.fd = -1;
  }

out:
  if (f.tmp)                    /* not published: remove the temporary */
    sn_atomic_abort(&f);
  else if (s.fd != -1)
    close(s.fd);
  sink_free(&s);
  free(dir);
  free(path);
  return z;
}
