/* soci-nbd: the one-pass ztoc builder — zinfo builder + tar parser glued
 * into a struct sn_ztoc exactly as soci's BuildZtoc fills it. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soci/build.h"
#include "util/err.h"
#include "soci/tar.h"
#include "soci/zinfo.h"

struct sn_ztoc_builder {
  enum sn_compression comp;
  int64_t span_size;
  struct sn_zinfo_builder *zb;
  struct sn_tar_parser *tp;
  struct sn_ztoc *z;
  size_t files_cap;
  int64_t in_bytes;
  sn_file_fn on_file;           /* sn_ztoc_builder_set_file_hook */
  void *file_opaque;
  sn_output_fn on_out;          /* sn_ztoc_builder_set_output_hook */
  void *out_opaque;
};

/* Copy the entry's PAX records into f (the ztoc's "xattrs", all of them,
 * docs/soci-format.md §3); f->npax counts those copied, for freeing. */
static int
copy_pax(struct sn_ztoc_file *f, const struct sn_tar_entry *e)
{
  size_t i;

  if (e->npax == 0)
    return 0;
  f->pax = calloc(e->npax, sizeof *f->pax);
  if (f->pax == NULL)
    return sn_oom();
  for (i = 0; i < e->npax; i++) {
    if (sn_bytes_set(&f->pax[i].key, e->pax[i].key.data, e->pax[i].key.len) ||
        sn_bytes_set(&f->pax[i].value, e->pax[i].value.data,
                     e->pax[i].value.len))
      return -1;
    f->npax = i + 1;
  }
  return 0;
}

/* Tar parser callback: one TOC entry per tar entry, in tar order. */
static int
on_entry(void *opaque, const struct sn_tar_entry *e)
{
  struct sn_ztoc_builder *b = opaque;
  struct sn_ztoc *z = b->z;
  struct sn_ztoc_file *f;
  const char *type = sn_tar_type_name(e->typeflag);
  char mtime[40];
  size_t mlen;

  if (type == NULL)
    return sn_set_error("unsupported input tar entry '%c'", e->typeflag);
  if (z->nfiles == b->files_cap) {
    size_t cap = b->files_cap ? b->files_cap * 2 : 64;
    struct sn_ztoc_file *n = realloc(z->files, cap * sizeof *n);
    if (n == NULL)
      return sn_oom();
    z->files = n;
    b->files_cap = cap;
  }
  f = &z->files[z->nfiles];
  memset(f, 0, sizeof *f);
  z->nfiles++;

  mlen = sn_mod_time_format(e->mtime_sec, e->mtime_nsec, mtime);
  if (sn_bytes_set(&f->name, e->name.data, e->name.len) ||
      sn_bytes_set(&f->type, type, strlen(type)) ||
      sn_bytes_set(&f->linkname, e->linkname.data, e->linkname.len) ||
      sn_bytes_set(&f->uname, e->uname.data, e->uname.len) ||
      sn_bytes_set(&f->gname, e->gname.data, e->gname.len) ||
      sn_bytes_set(&f->mod_time, mtime, mlen) ||
      copy_pax(f, e))
    return -1;
  f->offset = e->data_offset;
  f->size = e->size;
  f->mode = e->mode;
  f->uid = (uint32_t) e->uid;   /* soci stores uint32(hdr.Uid) */
  f->gid = (uint32_t) e->gid;
  f->devmajor = e->devmajor;
  f->devminor = e->devminor;
  f->header_offset = e->header_offset;
  f->ftype = sn_ftype_parse(type, strlen(type));
  f->mtime_sec = e->mtime_sec;
  f->mtime_nsec = e->mtime_nsec;
  if (b->on_file && e->size > 0)
    return b->on_file(b->file_opaque, e->data_offset, e->size);
  return 0;
}

/* zinfo builder callback: uncompressed bytes go to the tar parser until it
 * has seen the end-of-archive marker (the padding after it is ignored). */
static int
on_output(void *opaque, const uint8_t *data, size_t len)
{
  struct sn_ztoc_builder *b = opaque;

  if (b->on_out && b->on_out(b->out_opaque, data, len) == -1)
    return -1;
  if (sn_tar_parser_at_end(b->tp))
    return 0;   /* padding after the end-of-archive marker */
  return sn_tar_parser_feed(b->tp, data, len);
}

/* A builder whose ztoc already has its version and build tool strings; the
 * zinfo builder drives the tar parser through on_output. */
struct sn_ztoc_builder *
sn_ztoc_builder_new(enum sn_compression comp, const struct sn_build_opts *o)
{
  struct sn_ztoc_builder *b = calloc(1, sizeof *b);
  const char *tool = o && o->build_tool ? o->build_tool
                                        : SN_BUILD_TOOL_DEFAULT;

  if (b == NULL) {
    sn_oom();
    return NULL;
  }
  b->comp = comp;
  b->span_size = o && o->span_size ? o->span_size : SN_DEFAULT_SPAN_SIZE;
  if (b->span_size < 0) {
    sn_set_error("span size must be positive");
    goto fail;
  }
  b->z = sn_ztoc_new();
  b->tp = sn_tar_parser_new(on_entry, b);
  b->zb = sn_zinfo_builder_new(comp, b->span_size, on_output, b);
  if (b->z == NULL || b->tp == NULL || b->zb == NULL)
    goto fail;
  if (o && o->no_blob_digest)
    sn_zinfo_builder_skip_blob_digest(b->zb);
  b->z->compression = comp;
  if (sn_bytes_set(&b->z->version, SN_ZTOC_VERSION, strlen(SN_ZTOC_VERSION)) ||
      sn_bytes_set(&b->z->build_tool, tool, strlen(tool)))
    goto fail;
  return b;

fail:
  sn_ztoc_builder_free(b);
  return NULL;
}

/* Feed compressed (or tar) bytes; in_bytes becomes the blob size. */
int
sn_ztoc_builder_feed(struct sn_ztoc_builder *b, const uint8_t *data,
                     size_t len)
{
  b->in_bytes += len;
  return sn_zinfo_builder_feed(b->zb, data, len);
}

/* The checkpoint blob: a TarZinfo for tar (§4.3), the gzip checkpoints
 * serialized as v2 (§4.1), none for zstd (its ztoc is never encoded: only
 * its file table and sizes go into a dense table, lib/dense/dense.h). */
static int
set_checkpoints(struct sn_ztoc *z, const struct sn_zinfo *zi)
{
  if (z->compression == SN_COMP_ZSTD)
    return 0;
  if (z->compression == SN_COMP_UNCOMPRESSED)
    return sn_tarzinfo_encode(zi->span_size, zi->compressed_size,
                              &z->checkpoints, &z->checkpoints_len);
  return sn_zinfo_serialize_gzip(zi, &z->checkpoints, &z->checkpoints_len);
}

/* Close the stream, then fill sizes, span digests ("sha256:<hex>") and the
 * checkpoint blob.  The ztoc moves to the caller; the builder must still be
 * freed.  uncompressed_size is the tar end, not the stream's (§2.2). */
struct sn_ztoc *
sn_ztoc_builder_finish(struct sn_ztoc_builder *b,
                       uint8_t blob_digest[SN_SHA256_LEN])
{
  struct sn_zinfo *zi = NULL;
  uint8_t (*digests)[SN_SHA256_LEN] = NULL;
  uint8_t whole[SN_SHA256_LEN];
  struct sn_ztoc *z = b->z;
  int64_t end;
  size_t i;

  if (sn_zinfo_builder_finish(b->zb, &zi, &digests,
                              blob_digest ? whole : NULL) == -1 ||
      sn_tar_parser_finish(b->tp, &end) == -1)
    goto fail;
  zi->compressed_size = b->in_bytes;
  zi->uncompressed_size = end;
  if (zi->nspans == 0 || zi->nspans > INT32_MAX) {
    sn_set_error("layer has no spans");
    goto fail;
  }
  z->compressed_size = b->in_bytes;
  z->uncompressed_size = end;
  z->max_span_id = (int32_t) (zi->nspans - 1);
  z->span_digests = calloc(zi->nspans, sizeof *z->span_digests);
  if (z->span_digests == NULL) {
    sn_oom();
    goto fail;
  }
  for (i = 0; i < zi->nspans; i++) {
    char s[SN_DIGEST_STRLEN + 1];
    sn_digest_format(digests[i], s);
    if (sn_bytes_set(&z->span_digests[i], s, SN_DIGEST_STRLEN))
      goto fail;
    z->nspan_digests = i + 1;
  }
  if (set_checkpoints(z, zi) == -1)
    goto fail;
  if (blob_digest)
    memcpy(blob_digest, whole, SN_SHA256_LEN);
  sn_zinfo_free(zi);
  free(digests);
  b->z = NULL;
  return z;

fail:
  sn_zinfo_free(zi);
  free(digests);
  return NULL;
}

void
sn_ztoc_builder_free(struct sn_ztoc_builder *b)
{
  if (b == NULL)
    return;
  sn_zinfo_builder_free(b->zb);
  sn_tar_parser_free(b->tp);
  sn_ztoc_free(b->z);
  free(b);
}

/* gzip and zstd by their magic; anything else long enough is taken for a
 * tar, whose parser then checks the header checksum. */
enum sn_layer_format
sn_layer_sniff(const uint8_t *head, size_t len)
{
  if (len >= 2 && head[0] == 0x1f && head[1] == 0x8b)
    return SN_LAYER_GZIP;
  if (len >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f &&
      head[3] == 0xfd)
    return SN_LAYER_ZSTD;
  /* A tar stream: a header block (checksum is checked by the parser) or
   * an empty archive. */
  if (len == 0 || len >= SN_TAR_BLOCK)
    return SN_LAYER_TAR;
  return SN_LAYER_UNKNOWN;
}

/* Read the file in 1 MiB chunks, sniffing the first full chunk, and feed
 * the builder; errors are prefixed with the path. */
struct sn_ztoc *
sn_ztoc_build_file(const char *path, const struct sn_build_opts *o,
                   uint8_t blob_digest[SN_SHA256_LEN])
{
  enum { BUFSZ = 1 << 20 };
  struct sn_ztoc_builder *b = NULL;
  struct sn_ztoc *z = NULL;
  uint8_t *buf = malloc(BUFSZ);
  ssize_t n;
  size_t have = 0;
  int fd;

  if (buf == NULL) {
    sn_oom();
    return NULL;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    sn_set_error("%s: %s", path, strerror(errno));
    free(buf);
    return NULL;
  }
  /* Fill the first buffer (or read to EOF) before sniffing. */
  while (have < BUFSZ && (n = read(fd, buf + have, BUFSZ - have)) != 0) {
    if (n == -1) {
      if (errno == EINTR)
        continue;
      sn_set_error("%s: read: %s", path, strerror(errno));
      goto out;
    }
    have += n;
  }
  switch (sn_layer_sniff(buf, have)) {
  case SN_LAYER_GZIP:
    b = sn_ztoc_builder_new(SN_COMP_GZIP, o);
    break;
  case SN_LAYER_TAR:
    b = sn_ztoc_builder_new(SN_COMP_UNCOMPRESSED, o);
    break;
  case SN_LAYER_ZSTD:
    sn_set_error("%s: zstd-compressed layers are not supported "
                 "(SOCI indexes only gzip and uncompressed tar)", path);
    goto out;
  default:
    sn_set_error("%s: not a tar or tar.gz layer", path);
    goto out;
  }
  if (b == NULL)
    goto prefix;
  for (;;) {
    if (have && sn_ztoc_builder_feed(b, buf, have) == -1)
      goto prefix;
    do
      n = read(fd, buf, BUFSZ);
    while (n == -1 && errno == EINTR);
    if (n == -1) {
      sn_set_error("%s: read: %s", path, strerror(errno));
      goto out;
    }
    if (n == 0)
      break;
    have = n;
  }
  z = sn_ztoc_builder_finish(b, blob_digest);
  if (z == NULL)
    goto prefix;
  goto out;

prefix:
  sn_prefix_error("%s: ", path);
out:
  sn_ztoc_builder_free(b);
  close(fd);
  free(buf);
  return z;
}

void
sn_ztoc_builder_set_file_hook(struct sn_ztoc_builder *b, sn_file_fn fn,
                              void *opaque)
{
  b->on_file = fn;
  b->file_opaque = opaque;
}

void
sn_ztoc_builder_set_output_hook(struct sn_ztoc_builder *b, sn_output_fn fn,
                                void *opaque)
{
  b->on_out = fn;
  b->out_opaque = opaque;
}

struct sn_zinfo_builder *
sn_ztoc_builder_zinfo(struct sn_ztoc_builder *b)
{
  return b->zb;
}

enum sn_compression
sn_ztoc_builder_compression(const struct sn_ztoc_builder *b)
{
  return b->comp;
}

int64_t
sn_ztoc_builder_fed(const struct sn_ztoc_builder *b)
{
  return b->in_bytes;
}
