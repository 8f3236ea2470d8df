/* soci-nbd: "zinfo" — where decompression of a layer can restart.
 *
 * For gzip layers: zran-style checkpoints (compressed offset, uncompressed
 * offset, leftover bits, 32 KiB window) built in one streaming pass over
 * every gzip member, serialized as soci's v2 blob (v1 read too), and a
 * decoder for one span.  For uncompressed tar layers: fixed-size spans
 * described by a nested TarZinfo FlatBuffer.  Span geometry follows
 * docs/soci-format.md §4.2 exactly, including the one-byte overlap.
 *
 * Ownership: a struct sn_zinfo owns its checkpoint array and windows.
 * Errors follow err.h.
 */
#ifndef SN_ZINFO_H
#define SN_ZINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/digest.h"
#include "soci/ztoc.h"

#define SN_ZINFO_WINSIZE 32768
#define SN_ZINFO_HEADER_LEN 12
#define SN_ZINFO_CP_LEN (8 + 8 + 1 + SN_ZINFO_WINSIZE)
#define SN_DEFAULT_SPAN_SIZE ((int64_t) 4 << 20)

struct sn_checkpoint {
  int64_t in;       /* compressed offset of the first full byte */
  int64_t out;      /* uncompressed offset */
  uint8_t bits;     /* 0..7 bits of byte in-1 that belong to this block */
  uint8_t *window;  /* SN_ZINFO_WINSIZE bytes preceding out (zero-padded) */
};

struct sn_winref;  /* lib/dense/dense.h */

struct sn_zinfo {
  enum sn_compression compression;
  int64_t span_size;
  int64_t compressed_size;    /* layer blob size */
  int64_t uncompressed_size;  /* ztoc's uncompressed_archive_size */
  size_t nspans;
  struct sn_checkpoint *cp;   /* nspans entries (gzip only) */
  /* A dense index (lib/dense/dense.h): per checkpoint, where its sparse
   * window is; the cp[].window are then NULL and a decode is given the
   * window (sn_zinfo_decode_run).  NULL for a SOCI zinfo. */
  struct sn_winref *winref;
  int64_t windows_size;       /* bytes of the windows blob */
  /* eStargz, zstd:chunked (lib/stargz/stargz.h): per span, the bytes of
   * its gzip member's (zstd frames') output before its own (cp[].bits 0,
   * windows NULL); span i's digest is of its uncompressed bytes.  NULL
   * otherwise. */
  int64_t *skip;
};

struct sn_span {
  int64_t comp_start, comp_end;      /* [start, end) in the layer blob */
  int64_t uncomp_start, uncomp_end;  /* [start, end) in the tar stream */
};

void sn_zinfo_free(struct sn_zinfo *zi);

/* The zinfo of a decoded ztoc: parses checkpoints (gzip blob v1/v2, a
 * dense checkpoint table (lib/dense/dense.h), or TarZinfo) and checks it
 * against the ztoc: span count == max_span_id+1 ==
 * number of digests, checkpoints inside the blob, every span but the last
 * non-empty on both sides (as the snapshotter demands); TarZinfo size ==
 * compressed size >= tar end.  A last checkpoint past the tar end (in the
 * record padding) is allowed: that span is simply empty. */
struct sn_zinfo *sn_zinfo_from_ztoc(const struct sn_ztoc *z);

/* Parse a gzip checkpoint blob (v2, or legacy v1 by length).  Checks
 * count >= 1, bits <= 7, offsets >= 0 and non-decreasing, out[0] == 0. */
struct sn_zinfo *sn_zinfo_parse_gzip(const uint8_t *blob, size_t len);
/* The checks every gzip checkpoint table passes (soci's blob or a dense
 * table): nspans >= 1, out[0] == 0, bits <= 7, offsets >= 0 (in >= 1
 * with bits), both non-decreasing.  0, or -1 with a message. */
int sn_zinfo_check_checkpoints(const struct sn_zinfo *zi);
/* Serialize as the v2 blob.  *out malloc'd, caller owns. */
int sn_zinfo_serialize_gzip(const struct sn_zinfo *zi, uint8_t **out,
                            size_t *len);

/* TarZinfo {version=2, span_size, size} as a FlatBuffer, byte-identical to
 * the reference. */
int sn_tarzinfo_encode(int64_t span_size, int64_t size, uint8_t **out,
                       size_t *len);
int sn_tarzinfo_decode(const uint8_t *buf, size_t len, int64_t *span_size,
                       int64_t *size);

/* Span geometry (docs/soci-format.md §4.2).  i < nspans.  Where the tar end precedes the last
 * span's start (§4.2), uncomp_end is clamped to uncomp_start: ends are
 * never below starts. */
void sn_zinfo_span(const struct sn_zinfo *zi, size_t i, struct sn_span *s);

/* The most a span may take, compressed or inflated: a span is fetched and
 * decoded whole into memory, so a ztoc whose checkpoints make one span
 * larger (a gzip bomb under checkpoints placed far apart, or a huge span
 * size) is not used for lazy reads (sn_layer_open refuses it; the plugin
 * serves such a layer whole instead). */
#define SN_SPAN_MAX_OUT ((int64_t) 64 << 20)

/* 0 if every span of zi fits SN_SPAN_MAX_OUT, compressed and inflated;
 * else -1 with an error naming the largest span. */
int sn_zinfo_check_spans(const struct sn_zinfo *zi);
/* The span holding uncompressed offset off (largest i with start <= off). */
size_t sn_zinfo_span_of(const struct sn_zinfo *zi, int64_t off);

/* Decode span i from its compressed bytes comp[0..comp_len) (exactly
 * comp_start..comp_end) into out[0..out_len), out_len being exactly
 * uncomp_end-uncomp_start.  Handles inflatePrime, the dictionary and
 * gzip member boundaries inside the span; plain copy for uncompressed.
 * Wrong lengths, corrupt or short data: -1. */
int sn_zinfo_decode_span(const struct sn_zinfo *zi, size_t i,
                         const uint8_t *comp, size_t comp_len,
                         uint8_t *out, size_t out_len);
/* The same; fast false: zlib only (for tests comparing the two).  With
 * ISA-L (HAVE_ISAL) the span is inflated by ISA-L first and by zlib when
 * ISA-L does not fill it (gzip member boundary inside the span, bad data:
 * zlib's verdict and message are the ones returned). */
int sn_zinfo_decode_span_with(const struct sn_zinfo *zi, size_t i,
                              const uint8_t *comp, size_t comp_len,
                              uint8_t *out, size_t out_len, bool fast);
/* Decode spans first..last (inclusive) as one run from checkpoint first,
 * with window (SN_ZINFO_WINSIZE bytes; NULL: the checkpoint's own) as the
 * dictionary: comp is exactly span first's comp_start to span last's
 * comp_end, out exactly their uncompressed bytes.  ISA-L first when built
 * with it, then zlib, as sn_zinfo_decode_span; gzip only.  For a dense
 * index, whose checkpoints carry no window. */
int sn_zinfo_decode_run(const struct sn_zinfo *zi, size_t first, size_t last,
                        const uint8_t *window, const uint8_t *comp,
                        size_t comp_len, uint8_t *out, size_t out_len);
/* "isa-l" or "zlib": what decodes spans first in this build. */
const char *sn_zinfo_inflater(void);
/* How many spans ISA-L decoded so far (process-wide; 0 without it). */
uint64_t sn_zinfo_fast_decodes(void);

/* ---- one streaming pass over a layer ---------------------------------
 * Feed the layer blob in chunks of any size.  The builder inflates it
 * (gzip: every member), hands each piece of uncompressed output to
 * on_output (may be NULL) in order, records checkpoints, and hashes every
 * span's compressed bytes and the whole blob as it goes.  For uncompressed
 * layers the input is passed through and spans are fixed chunks; an empty
 * uncompressed layer is an error (it would have no span).  zstd layers
 * (SN_COMP_ZSTD, for a dense table only) are decompressed frame by frame:
 * one checkpoint (0, 0) and one span, the whole blob; the boundary hook
 * gets the start and each frame end that more input follows.  span_size: >= 0
 * for gzip (0: a checkpoint at every block that produced output), > 0 for
 * uncompressed.
 *
 * Speed: for gzip feeds of 64 KiB or more, hashing runs on a helper thread
 * (one per builder, started on first use) overlapping inflate; feed in
 * chunks of ~1 MiB for the best throughput.  Every call returns only when
 * it is done with the caller's buffer; on_output runs on the caller's
 * thread.
 */
typedef int (*sn_output_fn)(void *opaque, const uint8_t *data, size_t len);

struct sn_zinfo_builder;

struct sn_zinfo_builder *sn_zinfo_builder_new(enum sn_compression comp,
                                              int64_t span_size,
                                              sn_output_fn on_output,
                                              void *opaque);
/* -1 on corrupt/truncated data (message names the offset) or when
 * on_output fails (its message is kept). */
int sn_zinfo_builder_feed(struct sn_zinfo_builder *b, const uint8_t *data,
                          size_t len);
/* End of input.  On success returns the zinfo (uncompressed_size left 0:
 * the caller knows the tar end), the span digests (nspans entries,
 * malloc'd array the caller owns), and the digest of the whole blob
 * (span_digests and blob_digest may be NULL).  Truncated input: -1,
 * "truncated gzip stream ...". */
int sn_zinfo_builder_finish(struct sn_zinfo_builder *b,
                            struct sn_zinfo **zi,
                            uint8_t (**span_digests)[SN_SHA256_LEN],
                            uint8_t blob_digest[SN_SHA256_LEN]);
void sn_zinfo_builder_free(struct sn_zinfo_builder *b);
/* Called at every deflate block boundary of a gzip layer (and the end of
 * each member's header; never the end of the stream), where zran's rule
 * may place a checkpoint: in, bits and out as a checkpoint there would
 * have them.  For zstd: (0, 0, 0) first, then every frame end (skippable
 * frames too) but the stream's.  -1 stops the build (its message is kept).  For the dense
 * index (lib/dense/dense.h). */
typedef int (*sn_boundary_fn)(void *opaque, int64_t in, unsigned bits,
                              int64_t out);
void sn_zinfo_builder_set_boundary_hook(struct sn_zinfo_builder *b,
                                        sn_boundary_fn fn, void *opaque);
/* Inside the hook: the 32 KiB of output before the boundary (zero-filled
 * in front when fewer were produced; all zero for zstd). */
void sn_zinfo_builder_window(const struct sn_zinfo_builder *b,
                             uint8_t window[SN_ZINFO_WINSIZE]);
/* Do not hash the whole blob (the caller verifies the layer digest by
 * other means); call before the first feed; finish then gives no
 * blob_digest (pass NULL). */
void sn_zinfo_builder_skip_blob_digest(struct sn_zinfo_builder *b);

#endif
