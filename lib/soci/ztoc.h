/* soci-nbd: the SOCI ztoc — a layer's file table plus its decompression
 * info — as a C data model, with a FlatBuffers reader and a writer whose
 * output is byte-identical to the reference (Go flatbuffers builder, soci's
 * call order; docs/soci-format.md §2).
 *
 * Ownership: a struct sn_ztoc owns every string, array and blob it points
 * to; sn_ztoc_free() releases all of it.  Errors follow err.h.
 */
#ifndef SN_ZTOC_H
#define SN_ZTOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A counted byte string.  data is always NUL-terminated (data[len] == 0)
 * for convenience, but may also contain NULs (xattr values do). */
struct sn_bytes {
  char *data;
  size_t len;
};

enum sn_compression {
  SN_COMP_GZIP = 1,         /* FlatBuffers default: not written */
  SN_COMP_UNCOMPRESSED = 2, /* checkpoints hold a nested TarZinfo */
  SN_COMP_ESTARGZ = 3,      /* in memory only, never encoded: an eStargz */
  SN_COMP_ZSTD_CHUNKED = 4, /* or zstd:chunked layer's TOC (stargz.h) */
  SN_COMP_ZSTD = 5,         /* in memory only: a zstd layer of several
                             * frames, its dense table (dense.h) */
};

/* One PAX record of the entry's local extended header, verbatim. */
struct sn_pax {
  struct sn_bytes key, value;
};

enum sn_ftype {
  SN_FT_UNKNOWN = 0,
  SN_FT_REG, SN_FT_HARDLINK, SN_FT_SYMLINK, SN_FT_CHAR, SN_FT_BLOCK,
  SN_FT_DIR, SN_FT_FIFO,
};

struct sn_ztoc_file {
  /* Stored fields (FileMetadata). */
  struct sn_bytes name, type, linkname, uname, gname, mod_time;
  int64_t offset;            /* uncompressed_offset: first byte of data */
  int64_t size;              /* uncompressed_size: the tar size field */
  int64_t mode;              /* raw tar mode field */
  uint32_t uid, gid;
  int64_t devmajor, devminor;
  struct sn_pax *pax;        /* "xattrs": all PAX records, sorted by key */
  size_t npax;

  /* Derived by the reader (sn_ztoc_decode), not stored. */
  int64_t header_offset;     /* start of this entry's tar header blocks */
  enum sn_ftype ftype;       /* from type; SN_FT_UNKNOWN if unrecognised */
  int64_t mtime_sec;         /* from mod_time (any RFC 3339 offset) */
  uint32_t mtime_nsec;
};

struct sn_ztoc {
  struct sn_bytes version;         /* "0.9" */
  struct sn_bytes build_tool;      /* build_tool_identifier */
  int64_t compressed_size;         /* layer blob size */
  int64_t uncompressed_size;       /* tar position after the end marker */

  struct sn_ztoc_file *files;      /* sorted by offset (stable) on decode */
  size_t nfiles;

  enum sn_compression compression;
  int32_t max_span_id;             /* number of spans - 1 */
  struct sn_bytes *span_digests;   /* "sha256:<hex>" each */
  size_t nspan_digests;
  uint8_t *checkpoints;            /* zinfo blob or TarZinfo FlatBuffer */
  size_t checkpoints_len;
};

#define SN_ZTOC_VERSION "0.9"
#define SN_REFERENCE_BUILD_TOOL "AWS SOCI CLI v0.2"

/* An empty ztoc (all zero, compression = gzip).  NULL on OOM. */
struct sn_ztoc *sn_ztoc_new(void);
/* A new ztoc with a deep copy of z's version, build tool, sizes,
 * compression and files (derived fields included), and no span digests
 * or checkpoints.  NULL on OOM. */
struct sn_ztoc *sn_ztoc_copy_toc(const struct sn_ztoc *z);
void sn_ztoc_free(struct sn_ztoc *z);
void sn_ztoc_file_clear(struct sn_ztoc_file *f);

/* Serialize exactly as soci's ztocToFlatbuffer does with the Go builder.
 * *out is malloc'd and owned by the caller. */
int sn_ztoc_encode(const struct sn_ztoc *z, uint8_t **out, size_t *len);

/* The largest ztoc accepted (and fetched): a 16 GiB layer at soci's 4 MiB
 * spans, or some 700,000 entries, stay below it.  Decoding one allocates
 * at most SN_ZTOC_DECODE_FACTOR times its size, plus 1 MiB. */
#define SN_ZTOC_MAX_BLOB ((size_t) 128 << 20)
#define SN_ZTOC_DECODE_FACTOR 8

/* Parse and validate any well-formed FlatBuffer of the ztoc schema.  Every
 * offset, length and count is bounds-checked; semantic checks too (span
 * count vs max_span_id, overlapping entries, bad digests, bad times).
 * Buffers over SN_ZTOC_MAX_BLOB are refused.  NULL and a one-line error on
 * bad input. */
struct sn_ztoc *sn_ztoc_decode(const uint8_t *buf, size_t len);

/* Read/write a ztoc file (decode/encode + I/O). */
struct sn_ztoc *sn_ztoc_load(const char *path);

/* Find a file by path; both sides are cleaned ("./a//b/" == "a/b").
 * Returns the last matching entry (a later entry wins, as in the FS view). */
const struct sn_ztoc_file *sn_ztoc_find(const struct sn_ztoc *z,
                                        const char *path);

/* Clean a tar path the way soci's FS view does (path.Clean("/"+p) without
 * the leading slash; "" for the root).  Writes into out[outlen]; returns
 * the length or -1 if it does not fit. */
int sn_path_clean(const char *p, size_t len, char *out, size_t outlen);

/* Type strings as soci writes them ("reg", "dir", ...). */
const char *sn_ftype_name(enum sn_ftype t);
enum sn_ftype sn_ftype_parse(const char *s, size_t len);

/* Go's time.Time.MarshalText in UTC: RFC 3339 with nanoseconds, trailing
 * zeros trimmed ("2023-11-14T22:13:20Z", "...:20.5Z").  Years outside
 * 0..9999 give "" (as Go does).  out must hold 40 bytes; returns length. */
size_t sn_mod_time_format(int64_t sec, uint32_t nsec, char *out);
/* Parse RFC 3339 with any offset and optional fraction. */
int sn_mod_time_parse(const char *s, size_t len, int64_t *sec,
                      uint32_t *nsec);

/* Helpers for building the model (-1 after sn_oom).  sn_bytes_copy and
 * sn_pax_copy overwrite dst without freeing it; a failed sn_pax_copy
 * leaves what it copied in *dst, *ndst for the caller to clear. */
int sn_bytes_set(struct sn_bytes *b, const void *data, size_t len);
int sn_bytes_copy(struct sn_bytes *dst, const struct sn_bytes *src);
int sn_pax_copy(struct sn_pax **dst, size_t *ndst, const struct sn_pax *src,
                size_t n);
void sn_bytes_clear(struct sn_bytes *b);

#endif
