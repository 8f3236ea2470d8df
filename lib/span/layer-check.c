/* soci-nbd: checking files' tar headers against their ztoc entries before
 * their bytes are served, so that a lying ztoc cannot map one file onto
 * another's bytes.  A file's verdict is remembered per layer (struct
 * sn_layer, layer-int.h). */
#include <config.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "span/layer.h"
#include "span/layer-int.h"
#include "soci/tar.h"

static int
is_xattr_key(const struct sn_bytes *k)
{
  static const char pfx[] = "SCHILY.xattr.";

  return k->len >= sizeof pfx - 1 && memcmp(k->data, pfx, sizeof pfx - 1) == 0;
}

/* The SCHILY.xattr.* records of both sides must be the same set. */
static int
xattrs_match(const struct sn_pax *a, size_t na, const struct sn_pax *b,
             size_t nb)
{
  size_t i = 0, j = 0;

  for (;;) {
    while (i < na && !is_xattr_key(&a[i].key))
      i++;
    while (j < nb && !is_xattr_key(&b[j].key))
      j++;
    if (i == na || j == nb)
      return i == na && j == nb;
    if (a[i].key.len != b[j].key.len || a[i].value.len != b[j].value.len ||
        memcmp(a[i].key.data, b[j].key.data, a[i].key.len) != 0 ||
        memcmp(a[i].value.data, b[j].value.data, a[i].value.len) != 0)
      return 0;
    i++;
    j++;
  }
}

static int
bytes_eq(const struct sn_bytes *a, const struct sn_bytes *b)
{
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* 0 if tar header e says what ztoc entry f says (name, type, size, mode,
 * owner, link, mtime, devices, xattrs, data offset), else -1 naming the
 * first difference. */
int
sn_entry_matches(const struct sn_tar_entry *e, const struct sn_ztoc_file *f)
{
  const char *type = sn_tar_type_name(e->typeflag);
  const char *what = NULL;

  if (!bytes_eq(&e->name, &f->name))
    what = "name";
  else if (type == NULL || strlen(type) != f->type.len ||
           memcmp(type, f->type.data, f->type.len) != 0)
    what = "type";
  else if (e->size != f->size)
    what = "size";
  else if (e->mode != f->mode)
    what = "mode";
  else if ((uint32_t) e->uid != f->uid || (uint32_t) e->gid != f->gid)
    what = "owner";
  else if (!bytes_eq(&e->linkname, &f->linkname))
    what = "link target";
  else if (e->mtime_sec != f->mtime_sec || e->mtime_nsec != f->mtime_nsec)
    what = "mtime";
  else if (e->devmajor != f->devmajor || e->devminor != f->devminor)
    what = "device numbers";
  else if (!xattrs_match(e->pax, e->npax, f->pax, f->npax))
    what = "xattrs";
  if (what)
    return sn_set_error("tar header of \"%.*s\" does not match its ztoc "
                        "entry (%s differs)", (int) f->name.len,
                        f->name.data, what);
  if (e->data_offset != f->offset)
    return sn_set_error("tar header of \"%.*s\" ends at %lld, ztoc says "
                        "data starts at %lld", (int) f->name.len,
                        f->name.data, (long long) e->data_offset,
                        (long long) f->offset);
  return 0;
}

/* Check f's header region; *mismatch tells a lying entry (remembered by
 * callers) from a failure to read the region (retried later). */
static int
check_file(struct sn_layer *l, const struct sn_ztoc_file *f, bool *mismatch)
{
  struct sn_tar_entry e;
  int64_t hlen = f->offset - f->header_offset;
  uint8_t *hdr;
  int r;

  *mismatch = true;
  if (f->header_offset < 0 || hlen < SN_TAR_BLOCK ||
      hlen > SN_TAR_MAX_SPECIAL * 3)
    return sn_set_error("\"%.*s\": implausible tar header region [%lld,%lld)",
                        (int) f->name.len, f->name.data,
                        (long long) f->header_offset, (long long) f->offset);
  hdr = malloc(hlen);
  if (hdr == NULL) {
    *mismatch = false;
    return sn_oom();
  }
  /* The client read that needs this header has fed the detector. */
  r = layer_read_as(l, hdr, (size_t) hlen, f->header_offset,
                    LAYER_CLIENT_HEADER);
  if (r == 0) {
    memset(&e, 0, sizeof e);
    r = sn_tar_parse_headers(hdr, hlen, &e);
    if (r == 0) {
      e.header_offset += f->header_offset;
      e.data_offset += f->header_offset;
      r = sn_entry_matches(&e, f);
    }
    else
      sn_prefix_error("\"%.*s\": ", (int) f->name.len, f->name.data);
    sn_tar_entry_clear(&e);
  }
  else
    *mismatch = false;
  free(hdr);
  return r;
}

int
sn_layer_check_file(struct sn_layer *l, const struct sn_ztoc_file *f)
{
  bool mismatch;

  if (layer_toc_chunks(l))
    return 0;                   /* no tar headers (check_files) */
  return check_file(l, f, &mismatch);
}

/* The remembered reason file idx is refused. */
static int
bad_file_error(struct sn_layer *l, size_t idx)
{
  const struct bad_file *b;
  int r = 0;

  pthread_mutex_lock(&l->lock);
  for (b = l->bad; b; b = b->next)
    if (b->idx == idx) {
      r = sn_set_error("%s", b->msg);
      break;
    }
  pthread_mutex_unlock(&l->lock);
  if (r == 0) {
    const struct sn_ztoc_file *f = &l->z->files[idx];
    sn_set_error("\"%.*s\": tar header does not match its ztoc entry",
                 (int) f->name.len, f->name.data);
  }
  return -1;
}

/* Remember the calling thread's message as file idx's verdict (the first
 * one wins), then report the verdict. */
static int
mark_bad(struct sn_layer *l, size_t idx)
{
  struct bad_file *b = malloc(sizeof *b);

  if (b == NULL || (b->msg = strdup(sn_error())) == NULL) {
    free(b);
    return sn_oom();
  }
  b->idx = idx;
  pthread_mutex_lock(&l->lock);
  if (atomic_load(&l->fstate[idx]) != FILE_BAD) {
    b->next = l->bad;
    l->bad = b;
    atomic_store(&l->fstate[idx], FILE_BAD);
    b = NULL;
  }
  pthread_mutex_unlock(&l->lock);
  if (b) {
    free(b->msg);
    free(b);
  }
  return bad_file_error(l, idx);
}

/* Every file whose data overlaps [off, end) has a verified header. */
static int
check_files(struct sn_layer *l, int64_t off, int64_t end)
{
  size_t lo = 0, hi = l->ndf, k;

  /* A layer served from its own TOC (eStargz, zstd:chunked): its data
   * space holds file contents only, each chunk checked against the TOC's
   * digest; there is no tar header to check. */
  if (layer_toc_chunks(l))
    return 0;
  /* The first entry whose running max end passes off: no earlier one
   * can overlap. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->df[mid].max_end > off)
      hi = mid;
    else
      lo = mid + 1;
  }
  for (k = lo; k < l->ndf && l->df[k].off < end; k++) {
    size_t idx = l->df[k].idx;
    unsigned char st;
    bool mismatch;

    if (l->df[k].end <= off)
      continue;
    st = atomic_load(&l->fstate[idx]);
    if (st == FILE_OK)
      continue;
    if (st == FILE_BAD)
      return bad_file_error(l, idx);
    if (check_file(l, &l->z->files[idx], &mismatch) == -1)
      return mismatch ? mark_bad(l, idx) : -1;
    st = FILE_UNKNOWN;
    if (atomic_compare_exchange_strong(&l->fstate[idx], &st, FILE_OK))
      layer_count(&l->headers_checked, 1);
  }
  return 0;
}

/* sn_layer_read, once every file the range overlaps has a verified
 * header. */
int
sn_layer_read_checked(struct sn_layer *l, void *buf, size_t len,
                      int64_t off)
{
  int r;

  if (layer_poisoned(l) == -1 || layer_check_range(l, off, len) == -1)
    return -1;
  /* The range the client asked for feeds the sequential-read detector
   * before any header is fetched: the first reads of a device copy, all
   * at once, are header checks of files far apart, and a copy must be
   * seen as one before they come back. */
  atomic_fetch_add(&l->client_reads, 1);
  layer_note_client(l, off, len);
  r = check_files(l, off, off + (int64_t) len);
  if (r == 0)
    r = layer_read_spans(l, buf, len, off, LAYER_CLIENT_NOTED);
  atomic_fetch_sub(&l->client_reads, 1);
  return r;
}

int64_t
sn_layer_header_start(const struct sn_layer *l, int64_t off)
{
  size_t lo = layer_files_upto(l, off);

  if (lo > 0 && l->df[lo - 1].end > off) {
    int64_t h = l->z->files[l->df[lo - 1].idx].header_offset;

    if (h >= 0 && h < off)
      return h;
  }
  return off;
}
