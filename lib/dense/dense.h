/* soci-nbd: the dense index (docs/dense-index.md) — restart points at
 * deflate block boundaries, each with a sparse window kept in a separate
 * blob, so that a file's bytes are reachable without fetching much before
 * them.  Per gzip layer there are two blobs:
 *
 *   table    zstd frame of a ztoc FlatBuffer (the SOCI schema): the file
 *            table (TOC) as in the SOCI ztoc, span_digests = the SHA-256 of
 *            every sub-span (checkpoint to checkpoint, SOCI span geometry,
 *            docs/soci-format.md §4.2), and compression_info.checkpoints =
 *            the dense checkpoint table (below) instead of a zinfo blob.
 *   windows  the sparse windows, each a zstd frame of its own, concatenated;
 *            each checkpoint names its frame (offset, length, SHA-256).
 *
 * The dense checkpoint table ("SNDCKP01", little endian):
 *   magic[8] "SNDCKP01", u32 count (>= 1), u32 flags (0, or
 *   SN_DENSE_CP_ZSTD),
 *   i64 windows_size (bytes of the windows blob),
 *   count records of 64 bytes:
 *     i64 in, i64 out, u8 bits (0..7), u8 pad[3] (0), u32 win_len,
 *     i64 win_off, u8 win_sha256[32]
 *   Offsets as in a zinfo checkpoint.  win_len 0: the sub-span and the
 *   32 KiB of output after the point reference no window byte (win_off
 *   and win_sha256 then 0).  Else the frame [win_off, win_off+win_len) of
 *   the windows blob decompresses to exactly 32768 bytes: the window,
 *   with the bytes no back-reference reads zeroed.
 *
 * A zstd layer of several frames (flags SN_DENSE_CP_ZSTD): every
 * checkpoint is a frame's start (bits 0), no window (frames decode on
 * their own), windows_size 0 and no windows blob; the ztoc's
 * compression_algorithm stays the default and in memory the table is
 * SN_COMP_ZSTD.
 *
 * In memory a dense table is a struct sn_ztoc whose checkpoints hold the
 * table above; sn_zinfo_from_ztoc() turns it into a struct sn_zinfo with
 * windows NULL and winref set (zinfo.h).
 *
 * Conventions: errors as in util/err.h (NULL or -1, one-line message);
 * returned buffers are malloc'd and the caller's.
 */
#ifndef SN_DENSE_H
#define SN_DENSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "soci/zinfo.h"
#include "soci/ztoc.h"
#include "util/digest.h"

#define SN_DENSE_CP_MAGIC "SNDCKP01"
#define SN_DENSE_CP_HEADER_LEN 24
#define SN_DENSE_CP_RECORD_LEN 64
#define SN_DENSE_CP_ZSTD 1u    /* flags: the layer is zstd */
/* The largest compressed window frame accepted (a 32 KiB window cannot
 * need more, with zstd's worst-case overhead). */
#define SN_DENSE_WIN_MAX_FRAME 40000

/* Media types and annotations (docs/dense-index.md). */
#define SN_DENSE_ARTIFACT_TYPE "application/vnd.soci-nbd.dense-index.v1"
#define SN_DENSE_TABLE_MEDIA_TYPE \
  "application/vnd.soci-nbd.dense-index.table.v1+zstd"
#define SN_DENSE_WINDOWS_MEDIA_TYPE \
  "application/vnd.soci-nbd.dense-index.windows.v1"
/* On each layer descriptor of the dense-index manifest: the image layer it
 * indexes. */
#define SN_DENSE_LAYER_ANNOTATION "io.soci-nbd.dense-index.layer"
/* On the image manifest: the dense-index manifest's digest. */
#define SN_DENSE_INDEX_ANNOTATION "io.soci-nbd.dense-index.digest"

/* Where a checkpoint's sparse window is (len 0: none needed). */
struct sn_winref {
  int64_t off;
  uint32_t len;
  uint8_t digest[SN_SHA256_LEN];
};

/* ---- the checkpoint table (dense-format.c) ---------------------------- */

/* Serialize zi (gzip or zstd; windows ignored) with winref[zi->nspans] and the
 * windows blob's size.  Refuses (-1) what sn_dense_cp_parse would. */
int sn_dense_cp_encode(const struct sn_zinfo *zi,
                       const struct sn_winref *winref, int64_t windows_size,
                       uint8_t **out, size_t *len);
/* True if blob starts with the dense magic. */
bool sn_dense_cp_is(const uint8_t *blob, size_t len);
/* Parse: a gzip or zstd zinfo (windows NULL, winref and windows_size set).
 * Checks the length, magic, flags (zstd: bits 0, no window), count >= 1, bits <= 7, pads zero, offsets >= 0
 * and non-decreasing, out[0] == 0, each window frame inside the windows
 * blob with 0 < win_len <= SN_DENSE_WIN_MAX_FRAME or all zero. */
struct sn_zinfo *sn_dense_cp_parse(const uint8_t *blob, size_t len);

/* ---- the table blob (dense-format.c) ----------------------------------- */

/* The table's FlatBuffer: sn_ztoc_encode(z) with compression_algorithm
 * gzip whatever z's layer is (a zstd layer's table says zstd in its
 * checkpoint flag instead, docs/dense-format.md §7).  As sn_ztoc_encode. */
int sn_dense_fb_encode(const struct sn_ztoc *z, uint8_t **out, size_t *len);

/* zstd-compress sn_dense_fb_encode(z) (z->checkpoints a dense table; one
 * frame with its content size).  Refuses (-1) what sn_dense_table_decode
 * would refuse for its model. */
int sn_dense_table_encode(const struct sn_ztoc *z, uint8_t **out,
                          size_t *len);
/* Decompress (at most SN_ZTOC_MAX_BLOB bytes) and decode; refuses a table
 * whose checkpoints are not a dense table, and checks it as
 * sn_zinfo_from_ztoc would (span counts, geometry); a zstd layer's table
 * comes back SN_COMP_ZSTD.  The caller checks compressed_size against the
 * layer descriptor. */
struct sn_ztoc *sn_dense_table_decode(const uint8_t *buf, size_t len);

/* ---- windows (dense-format.c) ------------------------------------------ */

/* A compression context reused by sn_dense_window_pack (one per thread):
 * NULL on out of memory. */
struct sn_dense_packer;
struct sn_dense_packer *sn_dense_packer_new(void);
void sn_dense_packer_free(struct sn_dense_packer *pk);
/* Compress a 32 KiB sparse window as one zstd frame (*out malloc'd), with
 * pk's context (NULL: a fresh one). */
int sn_dense_window_pack(struct sn_dense_packer *pk,
                         const uint8_t window[SN_ZINFO_WINSIZE],
                         uint8_t **out, size_t *len);
/* Check frame against ref (digest, then length) and decompress it into
 * window (exactly SN_ZINFO_WINSIZE bytes or an error).  ref->len 0 (no
 * window needed): len must be 0 and window is zero-filled. */
int sn_dense_window_unpack(const struct sn_winref *ref, const uint8_t *frame,
                           size_t len, uint8_t window[SN_ZINFO_WINSIZE]);

/* ---- building, in the same pass as the SOCI ztoc (dense-build.c) ------- */

struct sn_dense_builder;
struct sn_ztoc_builder;

/* The largest feed sn_dense_builder_feed takes. */
#define SN_DENSE_FEED_MAX ((size_t) 16 << 20)

/* Placement (docs/dense-index.md): of several block boundaries at the
 * same output offset only the last counts; a checkpoint at a boundary
 * when a file's data starts before the next one and at least min_gap
 * compressed bytes have passed since the last checkpoint, and always when
 * the next boundary (or the stream's end) is more than max_gap compressed
 * bytes or 4 MiB of output past the last checkpoint.  0: defaults. */
struct sn_dense_opts {
  int64_t min_gap;   /* default 16 KiB */
  int64_t max_gap;   /* default 64 KiB */
  /* Do the dense index's work (sparse windows, their check, digests) on a
   * helper thread while the ztoc builder's thread decodes on: for a core
   * that would otherwise idle.  The result is the same either way. */
  bool thread;
};

/* A builder that rides on ztoc builder zb (gzip, or zstd: frame
 * boundaries, no windows): it is told every
 * block boundary, every piece of output and every file start by zb, and
 * must be given the same compressed bytes first: call
 * sn_dense_builder_feed(d, data, len) right before
 * sn_ztoc_builder_feed(zb, data, len), with the same chunks.  Its failures
 * never stop the ztoc's build: sn_dense_builder_finish reports the first
 * (then the layer gets no dense index). */
struct sn_dense_builder *sn_dense_builder_new(struct sn_ztoc_builder *zb,
                                              const struct sn_dense_opts *o);
int sn_dense_builder_feed(struct sn_dense_builder *d, const uint8_t *data,
                          size_t len);
/* After sn_ztoc_builder_finish(zb) gave z (the SOCI ztoc of the layer):
 * the dense table (a ztoc sharing z's TOC, copied) and the windows blob.
 * Every sparse window was decoded against the real output before it is
 * returned: a window that does not reproduce it is an error, never
 * shipped.  zstd: *windows NULL and 0; a layer whose frames give one
 * checkpoint, or a sub-span the plugin would not decode at once
 * (SN_SPAN_MAX_OUT), is an error. */
int sn_dense_builder_finish(struct sn_dense_builder *d,
                            const struct sn_ztoc *z,
                            struct sn_ztoc **table,
                            uint8_t **windows, size_t *windows_len);
void sn_dense_builder_free(struct sn_dense_builder *d);

#endif
