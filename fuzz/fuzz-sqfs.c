/* soci-nbd fuzzing: squashfs synthesis from hostile layers.
 *
 * The first input byte picks the source: even, the rest is a tar stream
 * run through the one-pass ztoc builder (what `soci-nbd mkfs` and a layer
 * without an index go through); odd, the rest is a ztoc, decoded (what a
 * registry's SOCI index hands the plugin).  The ztoc is then synthesized
 * as a per-layer image and, stacked on itself, as a flat image.  Whatever
 * is built must be a squashfs that an independent reader (libsquashfs's
 * directory reader) walks completely with as many inodes as the writer
 * counted: a built image the kernel could not read is a bug, as is a
 * crash, a leak or a hang on any shape of tree (deep paths, huge
 * directories, conflicting paths, hard-link chains). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <sqfs/compressor.h>
#include <sqfs/dir_reader.h>
#include <sqfs/error.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/super.h>

#include "soci/build.h"
#include "squashfs/sqfs.h"
#include "soci/ztoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The image seen through sn_sqfs_read, as a libsquashfs file.  Tar bytes
 * read as zeros: only the metadata is walked. */
struct image_file {
  sqfs_file_t base;
  const struct sn_sqfs *img;
};

static int
zero_tar(void *opaque, size_t layer, void *buf, size_t len, uint64_t off)
{
  (void) opaque; (void) layer; (void) off;
  memset(buf, 0, len);
  return 0;
}

static int
image_read_at(sqfs_file_t *file, sqfs_u64 off, void *buf, size_t size)
{
  struct image_file *f = (struct image_file *) file;

  if (off > sn_sqfs_size(f->img) || size > sn_sqfs_size(f->img) - off)
    return SQFS_ERROR_OUT_OF_BOUNDS;
  return sn_sqfs_read(f->img, buf, size, off, zero_tar, NULL) == 0
         ? 0 : SQFS_ERROR_IO;
}

static int
image_write_at(sqfs_file_t *file, sqfs_u64 off, const void *buf, size_t size)
{
  (void) file; (void) off; (void) buf; (void) size;
  return SQFS_ERROR_IO;
}

static sqfs_u64
image_get_size(const sqfs_file_t *file)
{
  return sn_sqfs_size(((const struct image_file *) file)->img);
}

static int
image_truncate(sqfs_file_t *file, sqfs_u64 size)
{
  (void) file; (void) size;
  return SQFS_ERROR_IO;
}

static void
image_destroy(sqfs_object_t *obj)
{
  (void) obj;
}

/* Distinct inode numbers in a tree read back (hard links share one). */
static size_t
count_inodes(const sqfs_tree_node_t *root, uint8_t *seen, size_t nseen)
{
  const sqfs_tree_node_t *n = root;
  size_t count = 0;

  while (n != NULL) {                   /* pre-order, without recursion */
    sqfs_u32 ino = n->inode->base.inode_number;

    if (ino == 0 || ino > nseen)
      abort();                          /* numbers are 1..inode_count */
    if (!seen[ino - 1]) {
      seen[ino - 1] = 1;
      count++;
    }
    if (n->children != NULL) {
      n = n->children;
      continue;
    }
    while (n != NULL && n->next == NULL)
      n = n->parent;
    if (n != NULL)
      n = n->next;
  }
  return count;
}

/* Read the image back with libsquashfs; abort on any inconsistency. */
static void
check_image(const struct sn_sqfs *img)
{
  struct image_file f = { .img = img };
  sqfs_compressor_config_t cfg;
  sqfs_compressor_t *cmp = NULL;
  sqfs_id_table_t *ids = NULL;
  sqfs_dir_reader_t *dr = NULL;
  sqfs_tree_node_t *root = NULL;
  sqfs_super_t super;
  uint8_t *seen;
  size_t n;

  f.base.base.destroy = image_destroy;
  f.base.read_at = image_read_at;
  f.base.write_at = image_write_at;
  f.base.get_size = image_get_size;
  f.base.truncate = image_truncate;
  if (sqfs_super_read(&super, &f.base) != 0 ||
      super.inode_count != sn_sqfs_inode_count(img) ||
      super.bytes_used != sn_sqfs_bytes_used(img))
    abort();
  if (sqfs_compressor_config_init(&cfg, super.compression_id,
                                  super.block_size,
                                  SQFS_COMP_FLAG_UNCOMPRESS) != 0 ||
      sqfs_compressor_create(&cfg, &cmp) != 0)
    abort();
  ids = sqfs_id_table_create(0);
  dr = sqfs_dir_reader_create(&super, cmp, &f.base, 0);
  if (ids == NULL || dr == NULL)
    abort();
  if (sqfs_id_table_read(ids, &f.base, &super, cmp) != 0 ||
      sqfs_dir_reader_get_full_hierarchy(dr, ids, NULL,
                                         SQFS_TREE_STORE_PARENTS,
                                         &root) != 0)
    abort();
  seen = calloc(super.inode_count, 1);
  if (seen == NULL)
    abort();
  n = count_inodes(root, seen, super.inode_count);
  if (n != super.inode_count)
    abort();                            /* an inode written but unreachable */
  free(seen);
  sqfs_dir_tree_destroy(root);
  sqfs_destroy(dr);
  sqfs_destroy(ids);
  sqfs_destroy(cmp);
}

static struct sn_ztoc *
ztoc_from_tar(const uint8_t *data, size_t size)
{
  struct sn_build_opts o = { .no_blob_digest = true };
  struct sn_ztoc_builder *b = sn_ztoc_builder_new(SN_COMP_UNCOMPRESSED, &o);
  struct sn_ztoc *z = NULL;

  if (b != NULL && sn_ztoc_builder_feed(b, data, size) == 0)
    z = sn_ztoc_builder_finish(b, NULL);
  sn_ztoc_builder_free(b);
  return z;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const struct sn_ztoc *layers[2];
  struct sn_sqfs_opts o = { .block_size = 4096 };
  struct sn_ztoc *z;
  struct sn_sqfs *img;

  if (size < 1)
    return 0;
  z = data[0] & 1 ? sn_ztoc_decode(data + 1, size - 1)
                  : ztoc_from_tar(data + 1, size - 1);
  if (z == NULL)
    return 0;
  layers[0] = layers[1] = z;

  o.mode = SN_SQFS_LAYER;
  if ((img = sn_sqfs_new(layers, 1, &o)) != NULL)
    check_image(img);
  sn_sqfs_free(img);
  o.mode = SN_SQFS_FLAT;
  if ((img = sn_sqfs_new(layers, 2, &o)) != NULL)
    check_image(img);
  sn_sqfs_free(img);
  sn_ztoc_free(z);
  return 0;
}
