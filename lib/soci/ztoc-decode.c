/* soci-nbd: the validating ztoc reader — every offset, length and count
 * bounds-checked (lib/util/fbs.c), a memory budget against shared objects,
 * then the checks soci's Unmarshal and the snapshotter make: files sorted
 * by offset, entries not overlapping, digests and times well-formed
 * (docs/soci-format.md §2.5). */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/fbs.h"
#include "soci/ztoc.h"
#include "soci/ztoc-int.h"

/* Go's zero time.Time, 0001-01-01T00:00:00Z, in Unix seconds. */
#define ZERO_TIME_SEC INT64_C(-62135596800)

/* ---- reader ------------------------------------------------------------- */

/* A name made safe for a one-line message: printable ASCII (other bytes
 * as \xNN), cut after about 70 characters, quoted. */
static const char *
quote(const struct sn_bytes *s, char out[80])
{
  size_t i, w = 0;

  out[w++] = '"';
  for (i = 0; i < s->len && w < 70; i++) {
    unsigned char c = (unsigned char) s->data[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      out[w++] = (char) c;
    else
      w += (size_t) snprintf(out + w, 80 - w, "\\x%02x", c);
  }
  if (i < s->len) {
    memcpy(out + w, "...", 3);
    w += 3;
  }
  out[w++] = '"';
  out[w] = '\0';
  return out;
}

/* The decoder's state: a memory budget, so that a small hostile buffer
 * whose objects are shared many times (legal in FlatBuffers) cannot make
 * us allocate without bound.  Legitimate sharing (e.g. one "root" string
 * for every uname) stays far below it. */
struct dec {
  uint64_t budget;
};

#define BUDGET_FACTOR SN_ZTOC_DECODE_FACTOR
#define BUDGET_EXTRA (UINT64_C(1) << 20)
#define ALLOC_OVERHEAD 16

/* Take n bytes from the budget; -1 with a message once it would run out. */
static int
charge(struct dec *d, uint64_t n)
{
  if (n > d->budget)
    return sn_set_error("objects shared too often: decoded size exceeds %d "
                        "times the buffer size", BUDGET_FACTOR);
  d->budget -= n;
  return 0;
}

/* Copy a string field (absent: the empty string). */
static int
get_string(struct dec *d, const struct sn_fbr_table *t, unsigned slot,
           struct sn_bytes *out)
{
  const char *s;
  size_t len;

  if (sn_fbr_string(t, slot, &s, &len) == -1 ||
      charge(d, (uint64_t) len + 1 + ALLOC_OVERHEAD) == -1)
    return -1;
  return sn_bytes_set(out, s, len);
}

/* FileMetadata's xattrs vector into f->pax (every PAX record, in stored
 * order); absent or empty is none. */
static int
decode_pax(struct dec *d, const struct sn_fbr_table *ft,
           struct sn_ztoc_file *f)
{
  struct sn_fbr_vec v;
  struct sn_fbr_table xt;
  size_t i;

  if (sn_fbr_vector(ft, FM_XATTRS, 4, &v) == -1)
    return sn_prefix_error("xattrs: ");
  if (v.n == 0)
    return 0;
  if (charge(d, (uint64_t) v.n * sizeof *f->pax) == -1)
    return -1;
  f->pax = calloc(v.n, sizeof *f->pax);
  if (f->pax == NULL)
    return sn_oom();
  f->npax = v.n;
  for (i = 0; i < v.n; i++) {
    if (sn_fbr_vec_table(&v, i, &xt) == -1 ||
        get_string(d, &xt, XA_KEY, &f->pax[i].key) == -1 ||
        get_string(d, &xt, XA_VALUE, &f->pax[i].value) == -1)
      return sn_prefix_error("xattrs[%zu]: ", i);
  }
  return 0;
}

/* One FileMetadata table, stored fields only. */
static int
decode_file(struct dec *d, const struct sn_fbr_table *t,
            struct sn_ztoc_file *f)
{
  if (get_string(d, t, FM_NAME, &f->name) == -1 ||
      get_string(d, t, FM_TYPE, &f->type) == -1 ||
      get_string(d, t, FM_LINKNAME, &f->linkname) == -1 ||
      get_string(d, t, FM_UNAME, &f->uname) == -1 ||
      get_string(d, t, FM_GNAME, &f->gname) == -1 ||
      get_string(d, t, FM_MOD_TIME, &f->mod_time) == -1 ||
      sn_fbr_i64(t, FM_OFFSET, 0, &f->offset) == -1 ||
      sn_fbr_i64(t, FM_SIZE, 0, &f->size) == -1 ||
      sn_fbr_i64(t, FM_MODE, 0, &f->mode) == -1 ||
      sn_fbr_u32(t, FM_UID, 0, &f->uid) == -1 ||
      sn_fbr_u32(t, FM_GID, 0, &f->gid) == -1 ||
      sn_fbr_i64(t, FM_DEVMAJOR, 0, &f->devmajor) == -1 ||
      sn_fbr_i64(t, FM_DEVMINOR, 0, &f->devminor) == -1 ||
      decode_pax(d, t, f) == -1)
    return -1;
  return 0;
}

/* The TOC's metadata vector into z->files, in stored order (sort_files
 * orders them); nfiles counts the files begun, so sn_ztoc_free releases a
 * partial decode.  An absent TOC is no files. */
static int
decode_toc(struct dec *d, const struct sn_fbr_table *root, struct sn_ztoc *z)
{
  struct sn_fbr_table toc, ft;
  struct sn_fbr_vec v;
  int r;
  size_t i;

  r = sn_fbr_table(root, ZT_TOC, &toc);
  if (r == -1)
    return sn_prefix_error("toc: ");
  if (r == 0)
    return 0;
  if (sn_fbr_vector(&toc, TOC_METADATA, 4, &v) == -1)
    return sn_prefix_error("toc.metadata: ");
  if (v.n == 0)
    return 0;
  if (charge(d, (uint64_t) v.n * sizeof *z->files) == -1)
    return -1;
  z->files = calloc(v.n, sizeof *z->files);
  if (z->files == NULL)
    return sn_oom();
  for (i = 0; i < v.n; i++) {
    z->nfiles = i + 1;
    if (sn_fbr_vec_table(&v, i, &ft) == -1 ||
        decode_file(d, &ft, &z->files[i]) == -1)
      return sn_prefix_error("toc.metadata[%zu]: ", i);
  }
  return 0;
}

/* CompressionInfo into z: algorithm, span digests (each parsed) and the
 * checkpoint blob (copied); sn_zinfo_from_ztoc checks the rest (§4). */
static int
decode_compression_info(struct dec *d, const struct sn_fbr_table *root,
                        struct sn_ztoc *z)
{
  struct sn_fbr_table ci;
  struct sn_fbr_vec v;
  int8_t alg;
  size_t i;
  int r;

  r = sn_fbr_table(root, ZT_COMPRESSION_INFO, &ci);
  if (r == -1)
    return sn_prefix_error("compression_info: ");
  if (r == 0)
    return 0;
  if (sn_fbr_i8(&ci, CI_ALGORITHM, SN_COMP_GZIP, &alg) == -1 ||
      sn_fbr_i32(&ci, CI_MAX_SPAN_ID, 0, &z->max_span_id) == -1)
    return sn_prefix_error("compression_info: ");
  if (alg != SN_COMP_GZIP && alg != SN_COMP_UNCOMPRESSED)
    return sn_set_error("unknown compression algorithm %d", alg);
  z->compression = (enum sn_compression) alg;
  if (z->max_span_id < 0)
    return sn_set_error("negative max_span_id %" PRId32, z->max_span_id);

  if (sn_fbr_vector(&ci, CI_SPAN_DIGESTS, 4, &v) == -1)
    return sn_prefix_error("span_digests: ");
  if (v.n) {
    if (charge(d, (uint64_t) v.n * sizeof *z->span_digests) == -1)
      return -1;
    z->span_digests = calloc(v.n, sizeof *z->span_digests);
    if (z->span_digests == NULL)
      return sn_oom();
    z->nspan_digests = v.n;
  }
  for (i = 0; i < v.n; i++) {
    uint8_t raw[SN_SHA256_LEN];
    const char *s;
    size_t slen;
    char q[80];

    if (sn_fbr_vec_string(&v, i, &s, &slen) == -1)
      return sn_prefix_error("span_digests[%zu]: ", i);
    if (sn_digest_parse(s, slen, raw) == -1) {
      struct sn_bytes b = { (char *) s, slen };
      return sn_set_error("span_digests[%zu]: invalid digest %s", i,
                          quote(&b, q));
    }
    if (charge(d, slen + 1 + ALLOC_OVERHEAD) == -1 ||
        sn_bytes_set(&z->span_digests[i], s, slen) == -1)
      return -1;
  }
  if (v.n && (uint64_t) z->max_span_id + 1 != v.n)
    return sn_set_error("max_span_id %" PRId32 " does not match %zu span "
                        "digests", z->max_span_id, v.n);

  if (sn_fbr_vector(&ci, CI_CHECKPOINTS, 1, &v) == -1)
    return sn_prefix_error("checkpoints: ");
  if (v.n) {
    if (charge(d, v.n) == -1)
      return -1;
    z->checkpoints = malloc(v.n);
    if (z->checkpoints == NULL)
      return sn_oom();
    memcpy(z->checkpoints, sn_fbr_vec_data(&v), v.n);
    z->checkpoints_len = v.n;
  }
  return 0;
}

/* Stable merge sort of the files by uncompressed offset (Go's
 * sort.SliceStable in soci's Unmarshal). */
static int
sort_files(struct sn_ztoc *z)
{
  struct sn_ztoc_file *a = z->files, *tmp;
  size_t n = z->nfiles, width, i;

  for (i = 1; i < n && a[i - 1].offset <= a[i].offset; i++)
    ;
  if (i >= n)
    return 0;
  tmp = malloc(n * sizeof *tmp);
  if (tmp == NULL)
    return sn_oom();
  for (width = 1; width < n; width *= 2) {
    for (i = 0; i < n; i += 2 * width) {
      size_t lo = i, mid = i + width, hi = i + 2 * width, l, r, w;
      if (mid > n)
        mid = n;
      if (hi > n)
        hi = n;
      for (l = lo, r = mid, w = lo; w < hi; w++) {
        if (l < mid && (r >= hi || a[l].offset <= a[r].offset))
          tmp[w] = a[l++];
        else
          tmp[w] = a[r++];
      }
    }
    memcpy(a, tmp, n * sizeof *a);
  }
  free(tmp);
  return 0;
}

/* The derived fields of every file, and the checks on them. */
static int
derive_files(struct sn_ztoc *z)
{
  int64_t header = 0;
  size_t i;
  char q[80], q2[80];

  for (i = 0; i < z->nfiles; i++) {
    struct sn_ztoc_file *f = &z->files[i];

    if (f->offset < 0 || f->size < 0)
      return sn_set_error("file %s: negative offset or size",
                          quote(&f->name, q));
    if (f->size > INT64_MAX - 511 - f->offset)
      return sn_set_error("file %s: offset + size overflows",
                          quote(&f->name, q));
    if (f->offset + f->size > z->uncompressed_size)
      return sn_set_error("file %s: data [%" PRId64 ", %" PRId64 ") extends "
                          "past the archive end %" PRId64,
                          quote(&f->name, q), f->offset,
                          f->offset + f->size, z->uncompressed_size);
    if (f->offset < header)
      return sn_set_error("file %s: offset %" PRId64 " is below its header "
                          "start %" PRId64 " (entries overlap)",
                          quote(&f->name, q), f->offset, header);
    f->header_offset = header;
    header = (f->offset + f->size + 511) & ~(int64_t) 511;

    f->ftype = sn_ftype_parse(f->type.data, f->type.len);
    if (f->mod_time.len == 0) {
      /* Go writes "" for years it cannot format and reads it back as
       * the zero time. */
      f->mtime_sec = ZERO_TIME_SEC;
      f->mtime_nsec = 0;
    }
    else if (sn_mod_time_parse(f->mod_time.data, f->mod_time.len,
                               &f->mtime_sec, &f->mtime_nsec) == -1)
      return sn_set_error("file %s: mod_time %s is not an RFC 3339 time",
                          quote(&f->name, q), quote(&f->mod_time, q2));
  }
  return 0;
}

/* Decode buf into z within a budget of BUDGET_FACTOR times its size, then
 * order and check the files (docs/soci-format.md §2.5); z keeps partials. */
static int
decode(const uint8_t *buf, size_t len, struct sn_ztoc *z)
{
  struct dec d = { (uint64_t) len * BUDGET_FACTOR + BUDGET_EXTRA };
  struct sn_fbr_table root;

  if (sn_fbr_root(buf, len, &root) == -1 ||
      get_string(&d, &root, ZT_VERSION, &z->version) == -1 ||
      get_string(&d, &root, ZT_BUILD_TOOL, &z->build_tool) == -1 ||
      sn_fbr_i64(&root, ZT_COMPRESSED, 0, &z->compressed_size) == -1 ||
      sn_fbr_i64(&root, ZT_UNCOMPRESSED, 0, &z->uncompressed_size) == -1)
    return -1;
  if (z->compressed_size < 0 || z->uncompressed_size < 0)
    return sn_set_error("negative archive size");
  if (decode_toc(&d, &root, z) == -1 ||
      decode_compression_info(&d, &root, z) == -1 ||
      sort_files(z) == -1 ||
      derive_files(z) == -1)
    return -1;
  return 0;
}

/* Buffers over SN_ZTOC_MAX_BLOB are refused before decode(); errors are
 * prefixed "ztoc: ".  The caller owns the result. */
struct sn_ztoc *
sn_ztoc_decode(const uint8_t *buf, size_t len)
{
  struct sn_ztoc *z = sn_ztoc_new();

  if (z == NULL)
    return NULL;
  if (len > SN_ZTOC_MAX_BLOB) {
    sn_set_error("ztoc: %zu bytes (the limit is %zu MiB)", len,
                 SN_ZTOC_MAX_BLOB >> 20);
    sn_ztoc_free(z);
    return NULL;
  }
  if (decode(buf, len, z) == -1) {
    sn_prefix_error("ztoc: ");
    sn_ztoc_free(z);
    return NULL;
  }
  return z;
}

/* Read the file (at most SN_FBB_MAX_SIZE bytes) and decode it; errors
 * name the path.  The caller owns the result. */
struct sn_ztoc *
sn_ztoc_load(const char *path)
{
  struct sn_ztoc *z;
  uint8_t *buf = NULL;
  size_t len = 0;

  if (sn_read_file(path, SN_FBB_MAX_SIZE, false, &buf, &len) == -1) {
    sn_prefix_error("ztoc: ");
    return NULL;
  }
  z = sn_ztoc_new();
  if (z && decode(buf, len, z) == -1) {
    sn_prefix_error("ztoc: %s: ", path);
    sn_ztoc_free(z);
    z = NULL;
  }
  free(buf);
  return z;
}
