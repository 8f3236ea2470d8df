/* soci-nbd: eStargz and zstd:chunked layers served lazily from their own
 * table of contents (docs/estargz.md, docs/zstd-chunked.md); eStargz
 * first (zstd:chunked below).  An eStargz layer is a gzip tar whose
 * regular files start a new gzip member (one member per chunk of at most a
 * few MiB), followed by a member holding the TOC (stargz.index.json, a tar entry)
 * and a 51-byte footer member that gives the TOC's offset.  The TOC lists
 * every entry's metadata and every chunk's compressed offset and SHA-256
 * (of its uncompressed bytes); the image manifest pins the TOC with the
 * layer annotation containerd.io/snapshot/stargz/toc.digest.
 *
 * In memory such a layer is a struct sn_ztoc with compression
 * SN_COMP_ESTARGZ (SN_COMP_ZSTD_CHUNKED; never encoded):
 *   - its offsets are not tar offsets but positions in the layer's "file
 *     data space": the regular files' contents one after another, in TOC
 *     order, then the TOC's JSON (served as the file stargz.index.json,
 *     which the layer's tar holds too);
 *   - span i is chunk i: compressed bytes from its member's start to the
 *     next chunk's (the last one, the TOC's, to the footer); its digest is
 *     the SHA-256 of its uncompressed bytes (the TOC's chunkDigest, or the
 *     TOC digest for the TOC), checked after every decode;
 *   - checkpoints hold the chunk table below, which sn_zinfo_from_ztoc
 *     turns into a struct sn_zinfo with skip set (zinfo.h).
 *
 * The chunk table ("SNSGZC01", little endian): magic[8], u32 count (>= 1),
 * u32 flags (0), then count records of 24 bytes: i64 in (member start),
 * i64 out (position in the file data space), i64 skip (bytes of the
 * member's output before the chunk's).
 *
 * Conventions: errors as in util/err.h (NULL or -1, one-line message);
 * returned buffers are malloc'd and the caller's.
 */
#ifndef SN_STARGZ_H
#define SN_STARGZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "soci/zinfo.h"
#include "soci/ztoc.h"

#define SN_STARGZ_TOC_ANNOTATION "containerd.io/snapshot/stargz/toc.digest"
#define SN_STARGZ_TOC_NAME "stargz.index.json"
#define SN_STARGZ_FOOTER_LEN 51
/* The largest TOC accepted: its compressed member and its JSON. */
#define SN_STARGZ_TOC_MAX_COMP ((int64_t) 64 << 20)
#define SN_STARGZ_TOC_MAX_JSON ((size_t) 256 << 20)
#define SN_STARGZ_CP_MAGIC "SNSGZC01"
#define SN_STARGZ_CP_HEADER_LEN 16
#define SN_STARGZ_CP_RECORD_LEN 24

/* The TOC's offset from the layer's last SN_STARGZ_FOOTER_LEN bytes (a
 * gzip member with the extra subfield "SG" = 16 hex digits + "STARGZ");
 * it must lie before the footer of a blob_size-byte layer.  0 or -1. */
int sn_stargz_footer_parse(const uint8_t *footer, size_t len,
                           int64_t blob_size, int64_t *toc_off);

/* The TOC's JSON from the compressed TOC member (the layer's bytes from
 * the TOC offset to the footer): a gzip member whose tar stream starts
 * with the regular file stargz.index.json.  *json (malloc'd) and *json_len;
 * *skip: the tar bytes before the JSON in the member's output.  0 or -1. */
int sn_stargz_toc_extract(const uint8_t *comp, size_t comp_len,
                          uint8_t **json, size_t *json_len, int64_t *skip);

/* The layer's ztoc (SN_COMP_ESTARGZ) from its TOC: json, checked against
 * toc_digest ("sha256:…", the manifest's annotation) first, then parsed;
 * toc_off and toc_skip as above, blob_size the layer's.  Refuses what it
 * cannot serve exactly: unknown entry types, chunks out of order, not
 * covering their file or without a digest, offsets outside the payload.
 * *landmark: the number of chunks before the prefetch landmark
 * (.prefetch.landmark), 0 without one.  NULL on error. */
struct sn_ztoc *sn_stargz_ztoc(const uint8_t *json, size_t json_len,
                               const char *toc_digest, int64_t toc_off,
                               int64_t toc_skip, int64_t blob_size,
                               size_t *landmark);

/* ---- zstd:chunked (docs/zstd-chunked.md) ----
 * containers/storage's format: a tar+zstd layer whose regular files start
 * new zstd frames (cut at content-defined chunk boundaries), followed by a
 * skippable frame holding the manifest (the TOC, one zstd frame of JSON in
 * the eStargz schema, plus endOffset and chunkType) and a footer frame.
 * The image manifest pins it: the layer annotations manifest-checksum
 * (sha256 of the compressed manifest) and manifest-position
 * (OFFSET:LENGTH:UNCOMPRESSED_LENGTH:1). */
#define SN_ZCHUNKED_CHECKSUM_ANNOTATION \
  "io.containers.zstd-chunked.manifest-checksum"
#define SN_ZCHUNKED_POSITION_ANNOTATION \
  "io.containers.zstd-chunked.manifest-position"
/* The same, as newer containers/storage names them. */
#define SN_ZCHUNKED_CHECKSUM_ANNOTATION2 \
  "io.github.containers.zstd-chunked.manifest-checksum"
#define SN_ZCHUNKED_POSITION_ANNOTATION2 \
  "io.github.containers.zstd-chunked.manifest-position"

/* Parse the position annotation of a blob_size-byte layer: the compressed
 * manifest's offset and length, its JSON's length (type must be 1; both
 * lengths within the TOC limits).  0 or -1. */
int sn_zchunked_position_parse(const char *s, int64_t blob_size,
                               int64_t *off, int64_t *clen, int64_t *ulen);
/* Check the compressed manifest comp against checksum ("sha256:…"), then
 * decompress it: exactly ulen bytes of JSON (*json malloc'd, NUL after).
 * 0 or -1. */
int sn_zchunked_toc_extract(const uint8_t *comp, size_t comp_len,
                            int64_t ulen, const char *checksum,
                            uint8_t **json, size_t *json_len);
/* The layer's ztoc (SN_COMP_ZSTD_CHUNKED) from its checked manifest: its
 * chunks lie before payload_end (where the manifest's skippable frame
 * starts), the last one's range ends there.  NULL on error. */
struct sn_ztoc *sn_zchunked_ztoc(const uint8_t *json, size_t json_len,
                                 int64_t payload_end, size_t *landmark);

/* The zinfo of a SN_COMP_ESTARGZ or SN_COMP_ZSTD_CHUNKED ztoc (for
 * sn_zinfo_from_ztoc): checks
 * the chunk table (magic, count == spans, in strictly increasing and
 * inside the payload, out non-decreasing from 0, skips bounded). */
struct sn_zinfo *sn_stargz_zinfo(const struct sn_ztoc *z);

/* Decode chunk i from its compressed bytes comp (exactly the span's
 * range): inflate the gzip member (eStargz) or decompress the zstd frames
 * (zstd:chunked) from its start, drop skip[i] bytes, write exactly out_len
 * bytes.  Output past them is never produced (a member cannot expand past
 * what the chunk needs).  0 or -1. */
int sn_stargz_decode(const struct sn_zinfo *zi, size_t i,
                     const uint8_t *comp, size_t comp_len, uint8_t *out,
                     size_t out_len);

#endif
