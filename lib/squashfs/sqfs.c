/* soci-nbd: the tar-identity squashfs image — squashfs metadata written
 * with libsquashfs 1.2 (meta, directory, id and xattr writers; never its
 * block processor, which would need the data) over the tree of
 * sqfs-tree.c, and the region map that serves any byte range of the image
 * from the superblock buffer, zeros, the layers' tar bytes and the
 * metadata buffer.
 *
 * Write order (docs/squashfs-layout.md §4): every non-directory
 * inode first, in tree order, then directories post-order, numbered 1..N
 * in write order (the root is N); then the directory table, the export
 * table, the id table, the xattr tables; bytes_used ends there.
 *
 * This file: the image's in-memory file, the no-op compressor, the
 * region map, and the public API (sn_sqfs_new runs the steps in order).
 * The metadata tables are written by sqfs-tables.c and the inodes made by
 * sqfs-inodes.c; what they share is in sqfs-int.h.
 */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sqfs/compressor.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr_writer.h>

#include "util/err.h"
#include "squashfs/sqfs-int.h"
#include "squashfs/sqfs-tree.h"
#include "squashfs/sqfs.h"

/* v rounded up to ALIGN (4096): bases, meta_start, the image size (§1). */
static uint64_t
round_up(uint64_t v)
{
  return (v + ALIGN - 1) & ~(uint64_t) (ALIGN - 1);
}

/* ---- an in-memory sqfs_file_t: superblock at 0, metadata at the end --- */

/* The memfile's other methods: nothing to free, and the writers never read
 * back or truncate (an I/O error if they did). */
static void
memfile_destroy(sqfs_object_t *obj)
{
  (void) obj;                   /* embedded in the writer; nothing to free */
}

static int
memfile_read_at(sqfs_file_t *file, sqfs_u64 off, void *buf, size_t size)
{
  (void) file; (void) off; (void) buf; (void) size;
  return SQFS_ERROR_IO;         /* the writers never read back */
}

/* Store a writer's bytes: the superblock into img->super, everything at or
 * after meta_start into the growing img->meta (gaps zero-filled).  Returns
 * 0 or a SQFS_ERROR_* code, as libsquashfs expects; nothing below it. */
static int
memfile_write_at(sqfs_file_t *file, sqfs_u64 off, const void *buf,
                 size_t size)
{
  struct memfile *m = (struct memfile *) file;
  struct sn_sqfs *img = m->img;
  uint64_t rel, end;

  if (off == 0 && size <= SB_SIZE) {
    memcpy(img->super, buf, size);
    return 0;
  }
  if (off < img->meta_start)
    return SQFS_ERROR_IO;       /* would overwrite the layers' data */
  rel = off - img->meta_start;
  end = rel + size;
  if (end > SIZE_MAX / 2)
    return SQFS_ERROR_OVERFLOW;
  if (end > m->cap) {
    size_t cap = m->cap ? m->cap : 65536;
    uint8_t *p;

    while (cap < end)
      cap *= 2;
    p = realloc(img->meta, cap);
    if (p == NULL)
      return SQFS_ERROR_ALLOC;
    img->meta = p;
    m->cap = cap;
  }
  if (rel > img->meta_len)
    memset(img->meta + img->meta_len, 0, rel - img->meta_len);
  memcpy(img->meta + rel, buf, size);
  if (end > img->meta_len)
    img->meta_len = end;
  return 0;
}

/* The file's end as the writers see it: meta_start + metadata so far. */
sqfs_u64
sqw_memfile_get_size(const sqfs_file_t *file)
{
  const struct memfile *m = (const struct memfile *) file;

  return m->img->meta_start + m->img->meta_len;
}

static int
memfile_truncate(sqfs_file_t *file, sqfs_u64 size)
{
  (void) file; (void) size;
  return SQFS_ERROR_IO;
}

/* ---- a "compressor" that never compresses: blocks are stored raw ------- */

static void
nocomp_destroy(sqfs_object_t *obj)
{
  (void) obj;
}

/* Reports gzip, the id the superblock names (docs/squashfs-layout.md §2). */
static void
nocomp_get_configuration(const sqfs_compressor_t *cmp,
                         sqfs_compressor_config_t *cfg)
{
  (void) cmp;
  memset(cfg, 0, sizeof *cfg);
  cfg->id = SQFS_COMP_GZIP;
}

/* No compressor options block is written. */
static int
nocomp_options(sqfs_compressor_t *cmp, sqfs_file_t *file)
{
  (void) cmp; (void) file;
  return 0;
}

/* Returning 0 ("no gain") makes the writer store every block uncompressed. */
static sqfs_s32
nocomp_do_block(sqfs_compressor_t *cmp, const sqfs_u8 *in, sqfs_u32 size,
                sqfs_u8 *out, sqfs_u32 outsize)
{
  (void) cmp; (void) in; (void) size; (void) out; (void) outsize;
  return 0;                     /* "no gain": the writer stores it raw */
}

/* ---- the region map ----------------------------------------------------- */

/* Append [start, end) to the region map; empty ranges are skipped and
 * neighbouring zero regions merged. */
static int
add_region(struct sn_sqfs *img, size_t *cap, uint64_t start, uint64_t end,
           enum sn_sqfs_region_kind kind, size_t layer)
{
  struct sn_sqfs_region *r;

  if (start == end)
    return 0;
  if (img->nregions > 0 &&
      img->regions[img->nregions - 1].kind == SN_SQFS_REGION_ZERO &&
      kind == SN_SQFS_REGION_ZERO) {
    img->regions[img->nregions - 1].end = end;
    return 0;
  }
  if (img->nregions == *cap) {
    size_t c = *cap ? *cap * 2 : 8;

    r = realloc(img->regions, c * sizeof *r);
    if (r == NULL)
      return sn_oom();
    img->regions = r;
    *cap = c;
  }
  r = &img->regions[img->nregions++];
  r->start = start;
  r->end = end;
  r->kind = kind;
  r->layer = layer;
  return 0;
}

/* The region map of docs/squashfs-layout.md §1: superblock, then each
 * layer's tar between zero padding, then metadata, then zeros to size. */
static int
build_regions(struct sn_sqfs *img, const struct sn_ztoc *const *layers)
{
  size_t cap = 0, l;
  uint64_t pos = SB_SIZE;

  if (add_region(img, &cap, 0, SB_SIZE, SN_SQFS_REGION_SUPER, 0) == -1)
    return -1;
  for (l = 0; l < img->nlayers; l++) {
    uint64_t end = img->bases[l] + (uint64_t) layers[l]->uncompressed_size;

    if (add_region(img, &cap, pos, img->bases[l], SN_SQFS_REGION_ZERO,
                   0) == -1 ||
        add_region(img, &cap, img->bases[l], end, SN_SQFS_REGION_TAR,
                   l) == -1)
      return -1;
    pos = end;
  }
  if (add_region(img, &cap, pos, img->meta_start, SN_SQFS_REGION_ZERO,
                 0) == -1 ||
      add_region(img, &cap, img->meta_start, img->bytes_used,
                 SN_SQFS_REGION_META, 0) == -1 ||
      add_region(img, &cap, img->bytes_used, img->size, SN_SQFS_REGION_ZERO,
                 0) == -1)
    return -1;
  return 0;
}

/* ---- public API --------------------------------------------------------- */

/* Free the writer's libsquashfs objects, tables and tree (not the image). */
static void
writer_cleanup(struct writer *w)
{
  if (w->xw) sqfs_destroy(w->xw);
  if (w->ids) sqfs_destroy(w->ids);
  if (w->dw) sqfs_destroy(w->dw);
  if (w->dm) sqfs_destroy(w->dm);
  if (w->im) sqfs_destroy(w->im);
  free(w->order);
  free(w->idcache);
  free(w->order_node);
  sn_tree_free(w->tree);
}

/* sn_sqfs_new, step 1: the writer's block size (docs/squashfs-layout.md
 * §2) and the number of layers, checked against the options.  0, or -1
 * with the error set. */
static int
check_opts(struct writer *w, size_t nlayers, const struct sn_sqfs_opts *o)
{
  w->block_size = o->block_size ? o->block_size : SN_SQFS_DEFAULT_BLOCK_SIZE;
  if (w->block_size < 4096 || w->block_size > (1u << 20) ||
      (w->block_size & (w->block_size - 1)) != 0)
    return sn_set_error("squashfs: block size %" PRIu32 " is not a power "
                        "of two between 4K and 1M", w->block_size);
  if (nlayers == 0)
    return sn_set_error("squashfs: no layers");
  if (o->mode == SN_SQFS_LAYER && nlayers != 1)
    return sn_set_error("squashfs: a per-layer image takes exactly one "
                        "layer (got %zu)", nlayers);
  return 0;
}

/* Step 2: each layer's base (§1: SN_SQFS_FIRST_BASE, then each tar's end
 * rounded up to 4096) and meta_start after the last.  -1 if a size is out
 * of range. */
static int
lay_out_bases(struct sn_sqfs *img, const struct sn_ztoc *const *layers)
{
  uint64_t pos = SN_SQFS_FIRST_BASE;
  size_t l;

  for (l = 0; l < img->nlayers; l++) {
    int64_t len = layers[l]->uncompressed_size;

    if (len < 0 || (uint64_t) len > (UINT64_MAX >> 2) - pos)
      return sn_set_error("squashfs: layer %zu: bad uncompressed size "
                          "%" PRId64, l, len);
    img->bases[l] = pos;
    pos = round_up(pos + (uint64_t) len);
  }
  img->meta_start = pos;
  return 0;
}

/* Step 3: the tree of all layers, flattened or per layer (sqfs-tree.c);
 * errors name the layer when there are several. */
static int
build_tree(struct writer *w, size_t nlayers, const struct sn_sqfs_opts *o)
{
  size_t l;

  w->tree = sn_tree_new(o->mode, o->warn, o->warn_opaque);
  if (w->tree == NULL)
    return -1;
  for (l = 0; l < nlayers; l++)
    if (sn_tree_add_layer(w->tree, w->layers[l], l) == -1) {
      if (nlayers > 1)
        sn_prefix_error("layer %zu: ", l);
      return -1;
    }
  return sn_tree_finish(w->tree);
}

/* Step 4: the in-memory file and the no-op compressor, the superblock,
 * and libsquashfs's inode, directory, id and xattr writers.  0 or -1;
 * writer_cleanup frees whatever was made. */
static int
open_writers(struct writer *w, const struct sn_sqfs_opts *o)
{
  int err;

  w->file.base.base.destroy = memfile_destroy;
  w->file.base.read_at = memfile_read_at;
  w->file.base.write_at = memfile_write_at;
  w->file.base.get_size = sqw_memfile_get_size;
  w->file.base.truncate = memfile_truncate;
  w->file.img = w->img;
  w->cmp.base.destroy = nocomp_destroy;
  w->cmp.get_configuration = nocomp_get_configuration;
  w->cmp.write_options = nocomp_options;
  w->cmp.read_options = nocomp_options;
  w->cmp.do_block = nocomp_do_block;

  if ((err = sqfs_super_init(&w->super, w->block_size, o->mkfs_time,
                             SQFS_COMP_GZIP)) != 0)
    return sqw_fail(err, "superblock");
  w->im = sqfs_meta_writer_create(&w->file.base, &w->cmp, 0);
  w->dm = sqfs_meta_writer_create(&w->file.base, &w->cmp,
                                  SQFS_META_WRITER_KEEP_IN_MEMORY);
  w->dw = w->dm ? sqfs_dir_writer_create(w->dm,
                                         SQFS_DIR_WRITER_CREATE_EXPORT_TABLE)
                : NULL;
  w->ids = sqfs_id_table_create(0);
  w->idcache = calloc(ID_SLOTS, sizeof *w->idcache);
  w->xw = sqfs_xattr_writer_create(0);
  if (!w->im || !w->dm || !w->dw || !w->ids || !w->idcache || !w->xw)
    return sn_oom();
  return 0;
}

/* Build the tree of all layers, lay out the bases, write the metadata into
 * memory and map the regions, in that order (the steps above, then
 * sqfs-tables.c).  The writer is scratch; only img survives. */
struct sn_sqfs *
sn_sqfs_new(const struct sn_ztoc *const *layers, size_t nlayers,
            const struct sn_sqfs_opts *o)
{
  static const struct sn_sqfs_opts defaults = { 0 };
  struct writer w;
  struct sn_sqfs *img;

  if (o == NULL)
    o = &defaults;
  memset(&w, 0, sizeof w);
  if (check_opts(&w, nlayers, o) == -1)
    return NULL;

  img = calloc(1, sizeof *img);
  if (img == NULL || (img->bases = calloc(nlayers, sizeof *img->bases))
                     == NULL) {
    free(img);
    sn_oom();
    return NULL;
  }
  img->nlayers = nlayers;
  if (lay_out_bases(img, layers) == -1)
    goto fail;

  w.img = img;
  w.layers = layers;
  if (build_tree(&w, nlayers, o) == -1 || open_writers(&w, o) == -1 ||
      sqw_write_tables(&w) == -1)
    goto fail;
  img->size = round_up(img->bytes_used);
  if (build_regions(img, layers) == -1)
    goto fail;
  writer_cleanup(&w);
  return img;

fail:
  writer_cleanup(&w);
  sn_sqfs_free(img);
  return NULL;
}

void
sn_sqfs_free(struct sn_sqfs *img)
{
  if (img == NULL)
    return;
  free(img->meta);
  free(img->bases);
  free(img->regions);
  free(img);
}

uint64_t
sn_sqfs_size(const struct sn_sqfs *img)
{
  return img->size;
}

uint64_t
sn_sqfs_bytes_used(const struct sn_sqfs *img)
{
  return img->bytes_used;
}

size_t
sn_sqfs_nlayers(const struct sn_sqfs *img)
{
  return img->nlayers;
}

uint64_t
sn_sqfs_layer_base(const struct sn_sqfs *img, size_t layer)
{
  return layer < img->nlayers ? img->bases[layer] : 0;
}

uint32_t
sn_sqfs_inode_count(const struct sn_sqfs *img)
{
  return img->inode_count;
}

size_t
sn_sqfs_nregions(const struct sn_sqfs *img)
{
  return img->nregions;
}

const struct sn_sqfs_region *
sn_sqfs_region(const struct sn_sqfs *img, size_t i)
{
  return i < img->nregions ? &img->regions[i] : NULL;
}

/* Binary-search the region holding off, then copy region by region; a
 * read may span any number of regions. */
int
sn_sqfs_read(const struct sn_sqfs *img, void *buf, size_t len,
             uint64_t off, sn_sqfs_read_tar_fn read_tar, void *opaque)
{
  uint8_t *p = buf;
  size_t lo = 0, hi = img->nregions;

  if (off > img->size || len > img->size - off)
    return sn_set_error("squashfs: read of %zu bytes at %" PRIu64 " is "
                        "beyond the image size %" PRIu64, len, off,
                        img->size);
  if (len == 0)
    return 0;
  /* The last region starting at or before off. */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;

    if (img->regions[mid].start <= off)
      lo = mid;
    else
      hi = mid;
  }
  while (len > 0) {
    const struct sn_sqfs_region *r = &img->regions[lo];
    uint64_t rel = off - r->start;
    size_t n = r->end - off < len ? (size_t) (r->end - off) : len;

    switch (r->kind) {
    case SN_SQFS_REGION_SUPER:
      memcpy(p, img->super + rel, n);
      break;
    case SN_SQFS_REGION_ZERO:
      memset(p, 0, n);
      break;
    case SN_SQFS_REGION_META:
      memcpy(p, img->meta + rel, n);
      break;
    case SN_SQFS_REGION_TAR:
      if (read_tar == NULL)
        return sn_set_error("squashfs: no tar reader for layer %zu",
                            r->layer);
      if (read_tar(opaque, r->layer, p, n, rel) == -1)
        return -1;
      break;
    }
    p += n;
    off += n;
    len -= n;
    lo++;
  }
  return 0;
}
