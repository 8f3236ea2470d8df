/* soci-nbd: the ztoc FlatBuffers writer — byte-identical to soci's Go code
 * (ztocToFlatbuffer with the Go flatbuffers builder): the same call order,
 * the same defaults left out (docs/soci-format.md §2.3-§2.4). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/fbs.h"
#include "soci/ztoc.h"
#include "soci/ztoc-int.h"

/* ---- writer ------------------------------------------------------------- */

static sn_fbb_ref
bytes_string(struct sn_fbb *b, const struct sn_bytes *s)
{
  return sn_fbb_create_string(b, s->data, s->len);
}

/* Bytewise order of PAX keys (Go's sort.Strings). */
static int
pax_cmp(const void *a, const void *b)
{
  const struct sn_bytes *x = &(*(const struct sn_pax *const *) a)->key;
  const struct sn_bytes *y = &(*(const struct sn_pax *const *) b)->key;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = n ? memcmp(x->data, y->data, n) : 0;

  if (c)
    return c;
  if (x->len != y->len)
    return x->len < y->len ? -1 : 1;
  /* Equal keys (impossible from Go's map): keep model order. */
  return x < y ? -1 : x > y;
}

/* Scratch space reused for every file's PAX records. */
struct scratch {
  const struct sn_pax **pax;
  sn_fbb_ref *refs;
  size_t cap;
};

/* One FileMetadata, exactly as soci's ztocToFlatbuffer writes it. */
static sn_fbb_ref
encode_file(struct sn_fbb *b, const struct sn_ztoc_file *f,
            struct scratch *sc)
{
  sn_fbb_ref name, type, linkname, uname, gname, mod_time, xattrs;
  size_t i;

  name = bytes_string(b, &f->name);
  type = bytes_string(b, &f->type);
  linkname = bytes_string(b, &f->linkname);
  uname = bytes_string(b, &f->uname);
  gname = bytes_string(b, &f->gname);
  mod_time = bytes_string(b, &f->mod_time);

  if (f->npax > sc->cap) {
    free(sc->pax);
    free(sc->refs);
    sc->pax = malloc(f->npax * sizeof *sc->pax);
    sc->refs = malloc(f->npax * sizeof *sc->refs);
    sc->cap = f->npax;
    if (sc->pax == NULL || sc->refs == NULL) {
      sc->cap = 0;
      sn_oom();
      return 0;
    }
  }
  for (i = 0; i < f->npax; i++)
    sc->pax[i] = &f->pax[i];
  if (f->npax > 1)
    qsort(sc->pax, f->npax, sizeof *sc->pax, pax_cmp);
  for (i = 0; i < f->npax; i++) {
    sn_fbb_ref k = bytes_string(b, &sc->pax[i]->key);
    sn_fbb_ref v = bytes_string(b, &sc->pax[i]->value);
    sn_fbb_start_table(b, XA_NFIELDS);
    sn_fbb_add_ref(b, XA_KEY, k);
    sn_fbb_add_ref(b, XA_VALUE, v);
    sc->refs[i] = sn_fbb_end_table(b);
  }
  xattrs = sn_fbb_create_ref_vector(b, sc->refs, f->npax);

  sn_fbb_start_table(b, FM_NFIELDS);
  sn_fbb_add_ref(b, FM_NAME, name);
  sn_fbb_add_ref(b, FM_TYPE, type);
  sn_fbb_add_i64(b, FM_OFFSET, f->offset, 0);
  sn_fbb_add_i64(b, FM_SIZE, f->size, 0);
  sn_fbb_add_ref(b, FM_LINKNAME, linkname);
  sn_fbb_add_i64(b, FM_MODE, f->mode, 0);
  sn_fbb_add_u32(b, FM_UID, f->uid, 0);
  sn_fbb_add_u32(b, FM_GID, f->gid, 0);
  sn_fbb_add_ref(b, FM_UNAME, uname);
  sn_fbb_add_ref(b, FM_GNAME, gname);
  sn_fbb_add_ref(b, FM_MOD_TIME, mod_time);
  sn_fbb_add_i64(b, FM_DEVMAJOR, f->devmajor, 0);
  sn_fbb_add_i64(b, FM_DEVMINOR, f->devminor, 0);
  sn_fbb_add_ref(b, FM_XATTRS, xattrs);
  return sn_fbb_end_table(b);
}

/* The TOC table: files last to first, then the vector and the table. */
static sn_fbb_ref
encode_toc(struct sn_fbb *b, const struct sn_ztoc *z)
{
  struct scratch sc = { NULL, NULL, 0 };
  sn_fbb_ref *refs, metadata;
  size_t i;

  refs = malloc((z->nfiles ? z->nfiles : 1) * sizeof *refs);
  if (refs == NULL) {
    sn_oom();
    return 0;
  }
  for (i = z->nfiles; i-- > 0;) {
    refs[i] = encode_file(b, &z->files[i], &sc);
    if (refs[i] == 0)
      break;
  }
  free(sc.pax);
  free(sc.refs);
  metadata = i == SIZE_MAX ? sn_fbb_create_ref_vector(b, refs, z->nfiles)
                           : 0;
  free(refs);
  if (metadata == 0)
    return 0;
  sn_fbb_start_table(b, TOC_NFIELDS);
  sn_fbb_add_ref(b, TOC_METADATA, metadata);
  return sn_fbb_end_table(b);
}

/* CompressionInfo in soci's call order (docs/soci-format.md §2.4, step 4). */
static sn_fbb_ref
encode_compression_info(struct sn_fbb *b, const struct sn_ztoc *z)
{
  sn_fbb_ref checkpoints, digests, *refs;
  size_t i;

  checkpoints = sn_fbb_create_bytes(b, z->checkpoints, z->checkpoints_len);
  refs = malloc((z->nspan_digests ? z->nspan_digests : 1) * sizeof *refs);
  if (refs == NULL) {
    sn_oom();
    return 0;
  }
  for (i = 0; i < z->nspan_digests; i++)
    refs[i] = bytes_string(b, &z->span_digests[i]);
  digests = sn_fbb_create_ref_vector(b, refs, z->nspan_digests);
  free(refs);

  sn_fbb_start_table(b, CI_NFIELDS);
  sn_fbb_add_i32(b, CI_MAX_SPAN_ID, z->max_span_id, 0);
  sn_fbb_add_ref(b, CI_SPAN_DIGESTS, digests);
  sn_fbb_add_ref(b, CI_CHECKPOINTS, checkpoints);
  /* soci sets the algorithm last; Gzip is the default, so not written. */
  sn_fbb_add_i8(b, CI_ALGORITHM, (int8_t) z->compression, SN_COMP_GZIP);
  return sn_fbb_end_table(b);
}

/* About the size of z's FlatBuffer, some 10% over (sn_fbb_reserve;
 * measured on the bench's layers: within 1% before the margin): per file
 * a table and its strings, per span digest a string and its reference,
 * and the checkpoints. */
static size_t
encoded_size(const struct sn_ztoc *z)
{
  size_t n = 1024 + z->checkpoints_len + z->nspan_digests * 84, i, k;

  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];

    n += 128 + f->name.len + f->linkname.len + f->uname.len + f->gname.len;
    for (k = 0; k < f->npax; k++)
      n += 32 + f->pax[k].key.len + f->pax[k].value.len;
  }
  return n + n / 8;
}

/* In soci's order (docs/soci-format.md §2.4): steps 1 and 5 here, 2-4 in
 * encode_toc and encode_compression_info.  Only gzip and uncompressed are
 * encodable.  *out is malloc'd, the caller's. */
int
sn_ztoc_encode(const struct sn_ztoc *z, uint8_t **out, size_t *len)
{
  struct sn_fbb b;
  sn_fbb_ref version, tool, toc, ci, root;
  int r;

  *out = NULL;
  *len = 0;
  if (z->compression != SN_COMP_GZIP &&
      z->compression != SN_COMP_UNCOMPRESSED)
    return sn_set_error("ztoc: unknown compression %d", (int) z->compression);
  sn_fbb_init(&b);
  sn_fbb_reserve(&b, encoded_size(z));
  version = bytes_string(&b, &z->version);
  tool = bytes_string(&b, &z->build_tool);
  toc = encode_toc(&b, z);
  ci = toc ? encode_compression_info(&b, z) : 0;
  if (ci == 0) {
    sn_fbb_free(&b);
    return sn_prefix_error("ztoc: ");
  }
  sn_fbb_start_table(&b, ZT_NFIELDS);
  sn_fbb_add_ref(&b, ZT_VERSION, version);
  sn_fbb_add_ref(&b, ZT_BUILD_TOOL, tool);
  sn_fbb_add_ref(&b, ZT_TOC, toc);
  sn_fbb_add_i64(&b, ZT_COMPRESSED, z->compressed_size, 0);
  sn_fbb_add_i64(&b, ZT_UNCOMPRESSED, z->uncompressed_size, 0);
  sn_fbb_add_ref(&b, ZT_COMPRESSION_INFO, ci);
  root = sn_fbb_end_table(&b);
  r = sn_fbb_finish(&b, root, out, len);
  sn_fbb_free(&b);
  if (r == -1)
    return sn_prefix_error("ztoc: ");
  return 0;
}
