/* soci-nbd: the "tar-identity" squashfs image (docs/squashfs-layout.md), synthesized
 * from ztocs.
 *
 * Layout of an image built from layers 0..N-1 (bottom first):
 *
 *   0        superblock (96 bytes), zeros up to 4096
 *   base_L   layer L's uncompressed tar, verbatim (ztoc uncompressed_size
 *            bytes; bases 4096-aligned, one after another)
 *   meta     inode, directory, export, id and xattr tables (4096-aligned
 *            start; bytes_used ends with them)
 *            zeros up to a multiple of 4096 = sn_sqfs_size()
 *
 * A regular file's data blocks are its bytes inside the tar: blocks_start
 * = base_L + the ztoc entry's offset, every block stored uncompressed, no
 * fragments.  Metadata is stored uncompressed too (compressor id gzip, as
 * the kernel insists on a known one), so the bytes depend only on the
 * inputs and the options, never on a zlib version.
 *
 * Two modes:
 *   SN_SQFS_FLAT   all layers merged with OCI apply semantics (later layer
 *                  wins, whiteouts delete lower entries, opaque directories
 *                  hide lower children, hard links resolve against the tree
 *                  built so far); no whiteouts remain.
 *   SN_SQFS_LAYER  exactly one layer, for overlayfs: DIR/.wh.NAME becomes a
 *                  char device 0/0 named NAME, DIR/.wh..wh..opq becomes
 *                  trusted.overlay.opaque=y on DIR, other .wh..wh.* entries
 *                  are dropped.  A hard link whose target is not in the
 *                  layer is refused (its data lives in another blob).
 *
 * In both modes, trusted.overlay.* and user.overlay.* xattrs coming from
 * the tar are stripped, xattrs outside user./trusted./security. are dropped
 * (reported through the warning callback), mtimes are clamped to u32
 * seconds, and paths longer than 4096 bytes (after cleaning) or deeper
 * than 1024 directories, names longer than 256 bytes, more than 65536 distinct
 * uid/gid values, symlink targets longer than 4096 bytes and device
 * numbers the squashfs encoding cannot hold are refused with a message
 * naming the entry.
 *
 * The image description is immutable once built: sn_sqfs_read() may be
 * called from several threads at once (the callback must cope).
 *
 * Ownership: sn_sqfs_new() only reads the ztocs (they may be freed after
 * it returns); the image owns its buffers until sn_sqfs_free().  Errors
 * follow err.h.
 */
#ifndef SN_SQFS_H
#define SN_SQFS_H

#include <stddef.h>
#include <stdint.h>

#include "soci/ztoc.h"

enum sn_sqfs_mode {
  SN_SQFS_FLAT = 0,
  SN_SQFS_LAYER = 1,
};

#define SN_SQFS_DEFAULT_BLOCK_SIZE (128 * 1024)

/* Told about each dropped xattr or other lossy conversion (one line, no
 * newline). */
typedef void (*sn_sqfs_warn_fn)(void *opaque, const char *msg);

struct sn_sqfs_opts {
  enum sn_sqfs_mode mode;
  uint32_t block_size;      /* power of two, 4 KiB..1 MiB; 0 → 128 KiB */
  uint32_t mkfs_time;       /* superblock modification time; default 0 */
  sn_sqfs_warn_fn warn;     /* may be NULL */
  void *warn_opaque;
};

struct sn_sqfs;

/* Build the image description from nlayers ztocs, bottom layer first
 * (exactly one in SN_SQFS_LAYER mode).  o may be NULL (FLAT, defaults).
 * The same inputs and options always give the same bytes. */
struct sn_sqfs *sn_sqfs_new(const struct sn_ztoc *const *layers,
                            size_t nlayers, const struct sn_sqfs_opts *o);
void sn_sqfs_free(struct sn_sqfs *img);

/* Size of the image in bytes, a multiple of 4096. */
uint64_t sn_sqfs_size(const struct sn_sqfs *img);
/* Superblock bytes_used (where the metadata ends). */
uint64_t sn_sqfs_bytes_used(const struct sn_sqfs *img);
/* Where the first layer's tar starts (docs/squashfs-layout.md §1): the
 * first MiB holds only the superblock and zeros, so that a probe of the
 * device's start (partition scan, blkid, readahead of the superblock's
 * page) reads no layer data. */
#define SN_SQFS_FIRST_BASE ((uint64_t) 1 << 20)

/* Number of layers and where layer L's tar starts in the image. */
size_t sn_sqfs_nlayers(const struct sn_sqfs *img);
uint64_t sn_sqfs_layer_base(const struct sn_sqfs *img, size_t layer);
/* Number of inodes written (root included). */
uint32_t sn_sqfs_inode_count(const struct sn_sqfs *img);

/* Reads len uncompressed tar bytes of layer `layer` at tar_off into buf;
 * 0 on success, -1 with sn_set_error on failure.  Requests never leave
 * [0, uncompressed_size) of that layer. */
typedef int (*sn_sqfs_read_tar_fn)(void *opaque, size_t layer, void *buf,
                                   size_t len, uint64_t tar_off);

/* Fill buf with image bytes [off, off+len), which must lie inside
 * [0, sn_sqfs_size()).  Superblock, metadata and padding come from
 * memory; tar bytes from read_tar (which may be NULL if the range holds
 * none).  0 on success, -1 with sn_set_error on failure. */
int sn_sqfs_read(const struct sn_sqfs *img, void *buf, size_t len,
                 uint64_t off, sn_sqfs_read_tar_fn read_tar, void *opaque);

/* The regions of the image, in order, for tools and tests: kind is one of
 * the SN_SQFS_REGION_* values; for tar regions, layer and tar_off give
 * the source of the first byte. */
enum sn_sqfs_region_kind {
  SN_SQFS_REGION_SUPER, SN_SQFS_REGION_ZERO, SN_SQFS_REGION_TAR,
  SN_SQFS_REGION_META,
};
struct sn_sqfs_region {
  uint64_t start, end;          /* [start, end) in the image */
  enum sn_sqfs_region_kind kind;
  size_t layer;                 /* SN_SQFS_REGION_TAR only */
};
size_t sn_sqfs_nregions(const struct sn_sqfs *img);
const struct sn_sqfs_region *sn_sqfs_region(const struct sn_sqfs *img,
                                            size_t i);

#endif
