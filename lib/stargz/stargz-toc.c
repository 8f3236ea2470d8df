/* soci-nbd: the table of contents of an eStargz or zstd:chunked layer (the
 * same JSON schema), read into the library's layer model (stargz.h,
 * docs/estargz.md, docs/zstd-chunked.md): a ztoc whose offsets are
 * positions in the layer's file data space and whose spans are the
 * layer's chunks.  The JSON is believed only once its digest matched what
 * the image manifest pins (here for eStargz; for zstd:chunked the
 * compressed manifest is checked where it is found, stargz-find.c). */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "stargz/stargz.h"
#include "util/base64.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/le.h"

/* ---- the TOC ----------------------------------------------------------- */

/* What sn_stargz_ztoc builds: the ztoc, and the chunk table as it grows. */
struct toc_build {
  struct sn_ztoc *z;
  size_t cap_files, cap_spans;
  uint8_t *cp;                  /* chunk records */
  int64_t pos;                  /* next position in the file data space */
  int64_t last_in;              /* the previous chunk's member start */
  int64_t payload_end;          /* the TOC offset */
  size_t landmark;
};

/* An integer member of o (absent: 0) within [lo, hi]. */
static int
get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *v,
        size_t e)
{
  json_t *j = json_object_get(o, key);

  *v = 0;
  if (j == NULL)
    return 0;
  if (!json_is_integer(j) || json_integer_value(j) < lo ||
      json_integer_value(j) > hi)
    return sn_set_error("entry %zu: \"%s\" is not an integer in [%" PRId64
                        ", %" PRId64 "]", e, key, lo, hi);
  *v = json_integer_value(j);
  return 0;
}

/* A string member of o into b (absent: empty unless required). */
static int
get_str(json_t *o, const char *key, bool required, struct sn_bytes *b,
        size_t e)
{
  json_t *j = json_object_get(o, key);

  if (j == NULL && !required)
    return sn_bytes_set(b, "", 0);
  if (!json_is_string(j))
    return sn_set_error("entry %zu: \"%s\" is %s", e, key,
                        j ? "not a string" : "missing");
  return sn_bytes_set(b, json_string_value(j), json_string_length(j));
}

/* qsort order of PAX records: key bytewise (the ztoc's order). */
static int
cmp_pax(const void *a, const void *b)
{
  const struct sn_pax *x = a, *y = b;
  size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
  int c = memcmp(x->key.data, y->key.data, n);

  return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/* The entry's xattrs (name → base64 value) as SCHILY.xattr.* PAX records,
 * which is how the squashfs builder reads a tar entry's xattrs. */
static int
get_xattrs(json_t *o, struct sn_ztoc_file *f, size_t e)
{
  json_t *x = json_object_get(o, "xattrs"), *v;
  const char *k;
  size_t n;

  if (x == NULL || json_is_null(x))
    return 0;
  if (!json_is_object(x))
    return sn_set_error("entry %zu: \"xattrs\" is not an object", e);
  n = json_object_size(x);
  if (n == 0)
    return 0;
  f->pax = calloc(n, sizeof *f->pax);
  if (f->pax == NULL)
    return sn_oom();
  json_object_foreach(x, k, v) {
    struct sn_pax *p = &f->pax[f->npax];
    char *key, *val;
    size_t vlen;

    if (!json_is_string(v) ||
        (val = sn_base64_decode(json_string_value(v), &vlen)) == NULL)
      return sn_set_error("entry %zu: xattr \"%s\" is not base64", e, k);
    if (asprintf(&key, "SCHILY.xattr.%s", k) == -1) {
      free(val);
      return sn_oom();
    }
    p->key.data = key;
    p->key.len = strlen(key);
    p->value.data = val;
    p->value.len = vlen;
    f->npax++;
  }
  qsort(f->pax, f->npax, sizeof *f->pax, cmp_pax);
  return 0;
}

/* Room for one more file in b->z. */
static struct sn_ztoc_file *
new_file(struct toc_build *b)
{
  struct sn_ztoc *z = b->z;

  if (z->nfiles == b->cap_files) {
    size_t n = b->cap_files ? b->cap_files * 2 : 64;
    struct sn_ztoc_file *f = realloc(z->files, n * sizeof *f);

    if (f == NULL) {
      sn_oom();
      return NULL;
    }
    z->files = f;
    b->cap_files = n;
  }
  memset(&z->files[z->nfiles], 0, sizeof z->files[0]);
  return &z->files[z->nfiles++];
}

/* Append chunk (member start in, skip, len bytes, digest d) at b->pos. */
static int
add_chunk(struct toc_build *b, int64_t in, int64_t skip, int64_t len,
          const char *d, size_t dlen, size_t e)
{
  struct sn_ztoc *z = b->z;
  uint8_t raw[SN_SHA256_LEN];
  size_t n = z->nspan_digests;
  uint8_t *rec;

  if (in <= b->last_in || in >= b->payload_end)
    return sn_set_error("entry %zu: chunk offset %" PRId64 " is not after "
                        "the previous chunk's and before the TOC", e, in);
  if (skip < 0 || skip > SN_SPAN_MAX_OUT || len <= 0 ||
      len > SN_SPAN_MAX_OUT)
    return sn_set_error("entry %zu: chunk of %" PRId64 " bytes at inner "
                        "offset %" PRId64 " (at most %" PRId64 " each)", e,
                        len, skip, SN_SPAN_MAX_OUT);
  if (sn_digest_parse(d, dlen, raw) == -1)
    return sn_prefix_error("entry %zu: chunkDigest: ", e);
  if (n == b->cap_spans) {
    size_t c = b->cap_spans ? b->cap_spans * 2 : 64;
    struct sn_bytes *nd = realloc(z->span_digests, c * sizeof *nd);
    uint8_t *ncp;

    if (nd == NULL)
      return sn_oom();
    z->span_digests = nd;
    ncp = realloc(b->cp, SN_STARGZ_CP_HEADER_LEN + c *
                  SN_STARGZ_CP_RECORD_LEN);
    if (ncp == NULL)
      return sn_oom();
    b->cp = ncp;
    b->cap_spans = c;
  }
  memset(&z->span_digests[n], 0, sizeof z->span_digests[n]);
  if (sn_bytes_set(&z->span_digests[n], d, dlen) == -1)
    return -1;
  z->nspan_digests = n + 1;
  rec = b->cp + SN_STARGZ_CP_HEADER_LEN + n * SN_STARGZ_CP_RECORD_LEN;
  sn_put_le(rec, (uint64_t) in, 8);
  sn_put_le(rec + 8, (uint64_t) b->pos, 8);
  sn_put_le(rec + 16, (uint64_t) skip, 8);
  b->last_in = in;
  b->pos += len;
  return 0;
}

/* A regular file's chunks: the "reg" entry ent[*k] and the "chunk" entries
 * that follow it, which must cover its size in order.  *k: the last one. */
static int
add_reg_chunks(struct toc_build *b, json_t *ents, size_t *k, int64_t size,
               const struct sn_bytes *name)
{
  int64_t covered = 0;
  size_t e = *k;

  for (;;) {
    json_t *o = json_array_get(ents, e), *d;
    int64_t in, skip, coff, csize;

    if (get_int(o, "offset", 0, INT64_MAX, &in, e) == -1 ||
        get_int(o, "innerOffset", 0, INT64_MAX, &skip, e) == -1 ||
        get_int(o, "chunkOffset", 0, INT64_MAX, &coff, e) == -1 ||
        get_int(o, "chunkSize", 0, INT64_MAX, &csize, e) == -1)
      return -1;
    if (coff != covered)
      return sn_set_error("entry %zu: chunk at file offset %" PRId64 ", %"
                          PRId64 " expected", e, coff, covered);
    if (csize == 0 || csize > size - covered)
      csize = size - covered;     /* the last chunk may leave it out */
    d = json_object_get(o, "chunkDigest");
    /* A file in one chunk: zstd:chunked gives only the file's digest. */
    if (d == NULL && e == *k && csize == size)
      d = json_object_get(o, "digest");
    if (!json_is_string(d))
      return sn_set_error("entry %zu: a chunk without chunkDigest (a "
                          "legacy stargz TOC?)", e);
    if (add_chunk(b, in, skip, csize, json_string_value(d),
                  json_string_length(d), e) == -1)
      return -1;
    covered += csize;
    if (covered == size)
      break;
    /* More to come: the next entry is a chunk of the same file. */
    o = json_array_get(ents, ++e);
    {
      json_t *t = json_object_get(o, "type"), *n = json_object_get(o, "name");

      if (o == NULL || !json_is_string(t) ||
          strcmp(json_string_value(t), "chunk") != 0 || !json_is_string(n) ||
          json_string_length(n) != name->len ||
          memcmp(json_string_value(n), name->data, name->len) != 0)
        return sn_set_error("entry %zu: file %s has %" PRId64 " of its %"
                            PRId64 " bytes in chunks", *k, name->data,
                            covered, size);
    }
  }
  *k = e;
  return 0;
}

/* One non-chunk entry (index e) of the TOC as a ztoc file. */
static int
add_entry(struct toc_build *b, json_t *ents, size_t *e)
{
  json_t *o = json_array_get(ents, *e);
  struct sn_ztoc_file *f;
  int64_t mode, uid, gid;
  const char *tname;

  if (!json_is_object(o))
    return sn_set_error("entry %zu is not an object", *e);
  f = new_file(b);
  if (f == NULL)
    return -1;
  if (get_str(o, "name", true, &f->name, *e) == -1 ||
      get_str(o, "type", true, &f->type, *e) == -1 ||
      get_str(o, "linkName", false, &f->linkname, *e) == -1 ||
      get_str(o, "userName", false, &f->uname, *e) == -1 ||
      get_str(o, "groupName", false, &f->gname, *e) == -1 ||
      get_str(o, "modtime", false, &f->mod_time, *e) == -1 ||
      get_int(o, "size", 0, INT64_MAX, &f->size, *e) == -1 ||
      get_int(o, "mode", 0, 07777777, &mode, *e) == -1 ||
      get_int(o, "uid", 0, UINT32_MAX, &uid, *e) == -1 ||
      get_int(o, "gid", 0, UINT32_MAX, &gid, *e) == -1 ||
      get_int(o, "devMajor", 0, UINT32_MAX, &f->devmajor, *e) == -1 ||
      get_int(o, "devMinor", 0, UINT32_MAX, &f->devminor, *e) == -1 ||
      get_xattrs(o, f, *e) == -1)
    return -1;
  f->mode = mode;
  f->uid = (uint32_t) uid;
  f->gid = (uint32_t) gid;
  if (f->name.len == 0 || memchr(f->name.data, 0, f->name.len))
    return sn_set_error("entry %zu: empty name or a NUL in it", *e);
  tname = f->type.data;
  f->ftype = sn_ftype_parse(tname, f->type.len);
  if (f->ftype == SN_FT_UNKNOWN)
    return sn_set_error("entry %zu: type \"%s\" %s", *e, tname,
                        strcmp(tname, "chunk") == 0
                        ? "without its regular file before it"
                        : "is not a TOC entry type");
  if (f->mod_time.len &&
      sn_mod_time_parse(f->mod_time.data, f->mod_time.len, &f->mtime_sec,
                        &f->mtime_nsec) == -1)
    return sn_prefix_error("entry %zu: modtime: ", *e);
  f->offset = f->header_offset = b->pos;
  if (f->ftype != SN_FT_REG)
    f->size = 0;
  else if (f->size > 0 && add_reg_chunks(b, ents, e, f->size, &f->name) == -1)
    return -1;
  {
    char clean[32];

    if (sn_path_clean(f->name.data, f->name.len, clean, sizeof clean) >= 0 &&
        strcmp(clean, ".prefetch.landmark") == 0 && b->landmark == 0)
      b->landmark = b->z->nspan_digests;
  }
  return 0;
}

/* The TOC's own JSON as the file stargz.index.json, as the writer's tar
 * header has it (mode 0, root, time 0), and as the last chunk. */
static int
add_toc_file(struct toc_build *b, const char *toc_digest, int64_t skip,
             int64_t len)
{
  struct sn_ztoc_file *f = new_file(b);

  if (f == NULL ||
      sn_bytes_set(&f->name, SN_STARGZ_TOC_NAME,
                   strlen(SN_STARGZ_TOC_NAME)) == -1 ||
      sn_bytes_set(&f->type, "reg", 3) == -1 ||
      sn_bytes_set(&f->linkname, "", 0) == -1 ||
      sn_bytes_set(&f->uname, "", 0) == -1 ||
      sn_bytes_set(&f->gname, "", 0) == -1 ||
      sn_bytes_set(&f->mod_time, "", 0) == -1)
    return -1;
  f->ftype = SN_FT_REG;
  f->offset = f->header_offset = b->pos;
  f->size = len;
  if (len == 0)
    return sn_set_error("eStargz TOC: empty");
  /* The one chunk that starts at the payload's end: the TOC member. */
  b->payload_end++;
  return add_chunk(b, b->payload_end - 1, skip, len, toc_digest,
                   strlen(toc_digest), b->z->nfiles - 1);
}

/* The ztoc of kind from a TOC's JSON: chunks before payload_end, the last
 * one's range ending at compressed_size; for eStargz also the TOC itself
 * as the last chunk and the file stargz.index.json (toc_digest, toc_skip).
 * The JSON's digest is the caller's business. */
static struct sn_ztoc *
toc_ztoc(const uint8_t *json, size_t json_len, enum sn_compression kind,
         int64_t payload_end, int64_t compressed_size, const char *toc_digest,
         int64_t toc_skip, size_t *landmark)
{
  struct toc_build b = { .last_in = -1, .payload_end = payload_end };
  json_t *root = NULL, *ents;
  json_error_t je;
  size_t e, n;
  const char *what = kind == SN_COMP_ESTARGZ ? "eStargz TOC"
    : "zstd:chunked manifest";

  root = json_loadb((const char *) json, json_len, JSON_REJECT_DUPLICATES,
                    &je);
  if (root == NULL) {
    sn_set_error("%s: not JSON: %s (line %d)", what, je.text, je.line);
    return NULL;
  }
  ents = json_object_get(root, "entries");
  if (!json_is_integer(json_object_get(root, "version")) ||
      json_integer_value(json_object_get(root, "version")) != 1 ||
      !json_is_array(ents)) {
    sn_set_error("%s: not version 1 with an entries array", what);
    goto fail;
  }
  b.z = sn_ztoc_new();
  b.cp = malloc(SN_STARGZ_CP_HEADER_LEN);
  if (b.z == NULL || b.cp == NULL) {
    sn_oom();
    goto fail;
  }
  n = json_array_size(ents);
  for (e = 0; e < n; e++)
    if (add_entry(&b, ents, &e) == -1) {
      sn_prefix_error("%s: ", what);
      goto fail;
    }
  if (kind == SN_COMP_ESTARGZ &&
      add_toc_file(&b, toc_digest, toc_skip, (int64_t) json_len) == -1)
    goto fail;
  if (b.z->nspan_digests == 0) {
    /* No file has data (a zstd:chunked layer of directories): one empty
     * chunk, never read, keeps the layer's geometry whole. */
    char empty[SN_DIGEST_STRLEN + 1];
    uint8_t d[SN_SHA256_LEN];
    uint8_t *rec;

    sn_sha256("", 0, d);
    sn_digest_format(d, empty);
    b.z->span_digests = calloc(1, sizeof *b.z->span_digests);
    rec = realloc(b.cp, SN_STARGZ_CP_HEADER_LEN + SN_STARGZ_CP_RECORD_LEN);
    if (b.z->span_digests == NULL || rec == NULL) {
      if (rec)
        b.cp = rec;
      sn_oom();
      goto fail;
    }
    b.cp = rec;
    if (sn_bytes_set(&b.z->span_digests[0], empty, strlen(empty)) == -1)
      goto fail;
    b.z->nspan_digests = 1;
    memset(rec + SN_STARGZ_CP_HEADER_LEN, 0, SN_STARGZ_CP_RECORD_LEN);
  }
  if (b.z->nspan_digests > INT32_MAX) {
    sn_set_error("%s: too many chunks", what);
    goto fail;
  }
  memcpy(b.cp, SN_STARGZ_CP_MAGIC, 8);
  sn_put_le(b.cp + 8, b.z->nspan_digests, 4);
  sn_put_le(b.cp + 12, 0, 4);
  b.z->checkpoints = b.cp;
  b.z->checkpoints_len = SN_STARGZ_CP_HEADER_LEN +
    b.z->nspan_digests * SN_STARGZ_CP_RECORD_LEN;
  b.cp = NULL;
  b.z->compression = kind;
  b.z->max_span_id = (int32_t) (b.z->nspan_digests - 1);
  b.z->compressed_size = compressed_size;
  b.z->uncompressed_size = b.pos;
  json_decref(root);
  *landmark = b.landmark;
  return b.z;

fail:
  free(b.cp);
  sn_ztoc_free(b.z);
  json_decref(root);
  return NULL;
}

struct sn_ztoc *
sn_stargz_ztoc(const uint8_t *json, size_t json_len, const char *toc_digest,
               int64_t toc_off, int64_t toc_skip, int64_t blob_size,
               size_t *landmark)
{
  uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];

  if (sn_digest_parse(toc_digest, strlen(toc_digest), want) == -1) {
    sn_prefix_error("eStargz TOC digest annotation: ");
    return NULL;
  }
  sn_sha256(json, json_len, got);
  if (memcmp(want, got, SN_SHA256_LEN) != 0) {
    char gs[SN_DIGEST_STRLEN + 1];

    sn_digest_format(got, gs);
    sn_set_error("eStargz TOC: its digest is %s, the manifest says %s", gs,
                 toc_digest);
    return NULL;
  }
  if (toc_off < 0 || toc_off >= blob_size - SN_STARGZ_FOOTER_LEN) {
    sn_set_error("eStargz TOC offset %" PRId64 " outside the layer",
                 toc_off);
    return NULL;
  }
  return toc_ztoc(json, json_len, SN_COMP_ESTARGZ, toc_off,
                  blob_size - SN_STARGZ_FOOTER_LEN, toc_digest, toc_skip,
                  landmark);
}

struct sn_ztoc *
sn_zchunked_ztoc(const uint8_t *json, size_t json_len, int64_t payload_end,
                 size_t *landmark)
{
  return toc_ztoc(json, json_len, SN_COMP_ZSTD_CHUNKED, payload_end,
                  payload_end, NULL, 0, landmark);
}
