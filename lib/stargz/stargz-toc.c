/* soci-nbd: an eStargz layer's footer and table of contents, read into the
 * library's layer model (stargz.h, docs/estargz.md): the footer gives the
 * TOC's offset, the TOC member gives the JSON, which is checked against the
 * manifest's TOC digest before a byte of it is believed, then turned into
 * a ztoc whose offsets are positions in the layer's file data space and
 * whose spans are the layer's chunks. */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "soci/tar.h"
#include "stargz/stargz.h"
#include "util/base64.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/le.h"

/* ---- footer ------------------------------------------------------------ */

int
sn_stargz_footer_parse(const uint8_t *p, size_t len, int64_t blob_size,
                       int64_t *toc_off)
{
  int64_t off = 0;
  size_t i;

  if (len != SN_STARGZ_FOOTER_LEN || blob_size < SN_STARGZ_FOOTER_LEN)
    return sn_set_error("eStargz footer: %zu bytes, %d expected", len,
                        SN_STARGZ_FOOTER_LEN);
  /* gzip header with FEXTRA only; XLEN 26 = one subfield "SG" of 22. */
  if (p[0] != 0x1f || p[1] != 0x8b || p[2] != 8 || p[3] != 4 ||
      sn_get_le(p + 10, 2) != 26 || p[12] != 'S' || p[13] != 'G' ||
      sn_get_le(p + 14, 2) != 22 || memcmp(p + 32, "STARGZ", 6) != 0)
    return sn_set_error("eStargz footer: no STARGZ subfield");
  for (i = 16; i < 32; i++) {
    int c = p[i], v = c >= '0' && c <= '9' ? c - '0'
      : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

    if (v < 0)
      return sn_set_error("eStargz footer: TOC offset is not 16 lowercase "
                          "hex digits");
    if (off > (INT64_MAX >> 4))
      return sn_set_error("eStargz footer: TOC offset overflows");
    off = off << 4 | v;
  }
  if (off >= blob_size - SN_STARGZ_FOOTER_LEN)
    return sn_set_error("eStargz footer: TOC offset %" PRId64 " is past "
                        "the layer's payload (%" PRId64 " bytes)", off,
                        blob_size - SN_STARGZ_FOOTER_LEN);
  *toc_off = off;
  return 0;
}

/* ---- the TOC member ---------------------------------------------------- */

/* The first tar entry of the TOC member (sn_tar_parser callback). */
struct toc_entry {
  bool seen;
  bool ok;
  int64_t data, size;
};

static int
first_entry(void *opaque, const struct sn_tar_entry *e)
{
  struct toc_entry *t = opaque;
  char name[64];
  int n;

  if (t->seen)
    return 0;
  t->seen = true;
  n = sn_path_clean(e->name.data, e->name.len, name, sizeof name);
  t->ok = e->typeflag == '0' && n >= 0 &&
    strcmp(name, SN_STARGZ_TOC_NAME) == 0;
  t->data = e->data_offset;
  t->size = e->size;
  return 0;
}

int
sn_stargz_toc_extract(const uint8_t *comp, size_t comp_len, uint8_t **json,
                      size_t *json_len, int64_t *skip)
{
  /* The tar stream: headers (PAX included), the JSON, padding, the end. */
  size_t cap = SN_STARGZ_TOC_MAX_JSON + ((size_t) 2 << 20), have = 0;
  struct toc_entry t = { 0 };
  struct sn_tar_parser *tp = NULL;
  uint8_t *out = NULL;
  z_stream zs;
  int r, ret = -1;

  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + 15) != Z_OK)
    return sn_oom();
  /* Grow as it inflates: the member's own size bounds the first guess. */
  {
    size_t guess = comp_len < cap / 8 ? comp_len * 8 + 4096 : cap;

    out = malloc(guess);
    if (out == NULL) {
      sn_oom();
      goto out;
    }
    zs.next_out = out;
    zs.avail_out = (uInt) guess;
    zs.next_in = (Bytef *) comp;
    zs.avail_in = comp_len > UINT32_MAX ? UINT32_MAX : (uInt) comp_len;
    for (;;) {
      r = inflate(&zs, Z_NO_FLUSH);
      have = guess - zs.avail_out;
      if (r == Z_STREAM_END)
        break;
      if (r != Z_OK && r != Z_BUF_ERROR) {
        sn_set_error("eStargz TOC: corrupt gzip member (%s)",
                     zs.msg ? zs.msg : "zlib error");
        goto out;
      }
      if (zs.avail_out == 0) {
        uint8_t *bigger;

        if (guess >= cap) {
          sn_set_error("eStargz TOC: more than %zu bytes inflated", cap);
          goto out;
        }
        guess = guess > cap / 2 ? cap : guess * 2;
        bigger = realloc(out, guess);
        if (bigger == NULL) {
          sn_oom();
          goto out;
        }
        out = bigger;
        zs.next_out = out + have;
        zs.avail_out = (uInt) (guess - have);
      }
      else if (zs.avail_in == 0) {
        sn_set_error("eStargz TOC: the member is truncated");
        goto out;
      }
    }
  }
  tp = sn_tar_parser_new(first_entry, &t);
  if (tp == NULL)
    goto out;
  if (sn_tar_parser_feed(tp, out, have) == -1) {
    sn_prefix_error("eStargz TOC: ");
    goto out;
  }
  if (!t.seen || !t.ok) {
    sn_set_error("eStargz TOC: the member does not start with the regular "
                 "file " SN_STARGZ_TOC_NAME);
    goto out;
  }
  if (t.size < 0 || (uint64_t) t.size > SN_STARGZ_TOC_MAX_JSON ||
      t.data < 0 || t.data > (int64_t) have ||
      (uint64_t) t.size > have - (size_t) t.data) {
    sn_set_error("eStargz TOC: its JSON (%" PRId64 " bytes) is not all in "
                 "the member", t.size);
    goto out;
  }
  *json = malloc((size_t) t.size + 1);
  if (*json == NULL) {
    sn_oom();
    goto out;
  }
  memcpy(*json, out + t.data, (size_t) t.size);
  (*json)[t.size] = 0;
  *json_len = (size_t) t.size;
  *skip = t.data;
  ret = 0;
out:
  sn_tar_parser_free(tp);
  free(out);
  inflateEnd(&zs);
  return ret;
}

/* ---- the TOC ------------------------------------------------------------- */

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
    d = json_object_get(o, "chunkDigest");
    if (!json_is_string(d))
      return sn_set_error("entry %zu: a chunk without chunkDigest (not "
                          "eStargz)", e);
    if (csize == 0 || csize > size - covered)
      csize = size - covered;     /* the last chunk may leave it out */
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
                        : "is not one eStargz has");
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

struct sn_ztoc *
sn_stargz_ztoc(const uint8_t *json, size_t json_len, const char *toc_digest,
               int64_t toc_off, int64_t toc_skip, int64_t blob_size,
               size_t *landmark)
{
  struct toc_build b = { .last_in = -1, .payload_end = toc_off };
  uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];
  json_t *root = NULL, *ents;
  json_error_t je;
  size_t e, n;

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
  root = json_loadb((const char *) json, json_len, JSON_REJECT_DUPLICATES,
                    &je);
  if (root == NULL) {
    sn_set_error("eStargz TOC: not JSON: %s (line %d)", je.text, je.line);
    return NULL;
  }
  ents = json_object_get(root, "entries");
  if (!json_is_integer(json_object_get(root, "version")) ||
      json_integer_value(json_object_get(root, "version")) != 1 ||
      !json_is_array(ents)) {
    sn_set_error("eStargz TOC: not version 1 with an entries array");
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
      sn_prefix_error("eStargz TOC: ");
      goto fail;
    }
  if (add_toc_file(&b, toc_digest, toc_skip, (int64_t) json_len) == -1)
    goto fail;
  memcpy(b.cp, SN_STARGZ_CP_MAGIC, 8);
  sn_put_le(b.cp + 8, b.z->nspan_digests, 4);
  sn_put_le(b.cp + 12, 0, 4);
  b.z->checkpoints = b.cp;
  b.z->checkpoints_len = SN_STARGZ_CP_HEADER_LEN +
    b.z->nspan_digests * SN_STARGZ_CP_RECORD_LEN;
  b.cp = NULL;
  b.z->compression = SN_COMP_ESTARGZ;
  b.z->max_span_id = (int32_t) (b.z->nspan_digests - 1);
  b.z->compressed_size = blob_size - SN_STARGZ_FOOTER_LEN;
  b.z->uncompressed_size = b.pos;
  if (b.z->nspan_digests > INT32_MAX) {
    sn_set_error("eStargz TOC: too many chunks");
    goto fail;
  }
  json_decref(root);
  *landmark = b.landmark;
  return b.z;

fail:
  free(b.cp);
  sn_ztoc_free(b.z);
  json_decref(root);
  return NULL;
}
