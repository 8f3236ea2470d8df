/* soci-nbd: layers without a ztoc — download one whole into the cache
 * directory (or an unlinked temporary file), building its ztoc in the same
 * pass, or reuse a cached copy after re-hashing it.  A copy is used only
 * after its digest has been verified. */
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

#define CHUNK (1024 * 1024)

/* ---- whole-layer download -------------------------------------------- */

struct sink {
  int fd;
  struct sn_ztoc_builder *b;
  uint64_t n;
  bool write_error;
};

/* sn_registry_get_blob's sink: write the bytes to the local copy and feed
 * them to the ztoc builder. */
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

/* Use the cached copy at path if it re-hashes to the layer's digest: true
 * with its ztoc in *zp (NULL if pinning it failed) and l->fd open on it;
 * false (l->fd closed) when there is none or it is not valid. */
static bool
use_cached(struct sn_image *img, struct img_layer *l,
           enum sn_compression comp, const struct sn_build_opts *bo,
           const char *path, struct sn_ztoc **zp)
{
  struct sn_ztoc *z;

  l->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (l->fd == -1)
    return false;
  z = reuse_cached(l, comp, bo);
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
                enum sn_compression comp, const char *cache_dir)
{
  struct sn_build_opts bo = { 0 };
  struct sink s = { .fd = -1 };
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
    if (use_cached(img, l, comp, &bo, path, &z))
      goto out;
    if (open_cache_tmp(&f, dir, path) == -1)
      goto out;
    s.fd = f.fd;
  }
  else if ((s.fd = open_unlinked_tmp()) == -1)
    goto out;

  img_logf(img, "layer %zu (%s): no ztoc, fetching it whole (%" PRId64
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
  if (cache_dir && keep_in_cache(img, &s, &f, path) == -1) {
    sn_ztoc_free(z);
    z = NULL;
    goto out;
  }
  l->whole_bytes = s.n;
  l->fd = s.fd;
  s.fd = -1;

out:
  if (f.tmp)                    /* not published: remove the temporary */
    sn_atomic_abort(&f);
  else if (s.fd != -1)
    close(s.fd);
  sn_ztoc_builder_free(s.b);
  free(dir);
  free(path);
  return z;
}
