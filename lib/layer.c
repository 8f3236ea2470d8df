/* soci-nbd: reading a layer's uncompressed bytes through verified spans,
 * and checking a file's tar header against its ztoc entry. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "err.h"
#include "layer.h"
#include "tar.h"

struct sn_layer {
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  sn_blob_read_fn read;
  void *read_opaque;
  sn_span_trace_fn trace;
  void *trace_opaque;
  /* The last decoded span, so sequential readers decode each span once. */
  size_t cached_span;
  uint8_t *cached;
  size_t cached_len;
};

struct sn_layer *
sn_layer_new(struct sn_ztoc *z, sn_blob_read_fn read, void *opaque)
{
  struct sn_layer *l = calloc(1, sizeof *l);

  if (l == NULL) {
    sn_oom();
    sn_ztoc_free(z);
    return NULL;
  }
  l->z = z;
  l->read = read;
  l->read_opaque = opaque;
  l->cached_span = SIZE_MAX;
  l->zi = sn_zinfo_from_ztoc(z);
  if (l->zi == NULL) {
    sn_layer_free(l);
    return NULL;
  }
  return l;
}

void
sn_layer_free(struct sn_layer *l)
{
  if (l == NULL)
    return;
  sn_zinfo_free(l->zi);
  sn_ztoc_free(l->z);
  free(l->cached);
  free(l);
}

void
sn_layer_set_trace(struct sn_layer *l, sn_span_trace_fn fn, void *opaque)
{
  l->trace = fn;
  l->trace_opaque = opaque;
}

const struct sn_ztoc *
sn_layer_ztoc(const struct sn_layer *l)
{
  return l->z;
}

const struct sn_zinfo *
sn_layer_zinfo(const struct sn_layer *l)
{
  return l->zi;
}

/* Fetch, verify and decode span i into l->cached. */
static int
load_span(struct sn_layer *l, size_t i)
{
  struct sn_span s;
  uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];
  const struct sn_bytes *d = &l->z->span_digests[i];
  uint8_t *comp = NULL, *out = NULL;
  size_t clen, ulen;

  if (l->cached_span == i)
    return 0;
  sn_zinfo_span(l->zi, i, &s);
  if (s.comp_end < s.comp_start)
    return sn_set_error("span %zu: invalid compressed range", i);
  clen = (size_t) (s.comp_end - s.comp_start);
  ulen = s.uncomp_end > s.uncomp_start
    ? (size_t) (s.uncomp_end - s.uncomp_start) : 0;
  if (sn_digest_parse(d->data, d->len, want) == -1)
    return sn_prefix_error("span %zu: ", i);
  comp = malloc(clen ? clen : 1);
  out = malloc(ulen ? ulen : 1);
  if (comp == NULL || out == NULL) {
    sn_oom();
    goto fail;
  }
  if (l->trace)
    l->trace(l->trace_opaque, i, &s);
  if (l->read(l->read_opaque, comp, clen, s.comp_start) == -1) {
    sn_prefix_error("span %zu: ", i);
    goto fail;
  }
  sn_sha256(comp, clen, got);
  if (memcmp(want, got, SN_SHA256_LEN) != 0) {
    char gs[SN_DIGEST_STRLEN + 1];
    sn_digest_format(got, gs);
    sn_set_error("span %zu: digest mismatch: ztoc says %.*s, blob bytes "
                 "[%lld,%lld) hash to %s", i, (int) d->len, d->data,
                 (long long) s.comp_start, (long long) s.comp_end, gs);
    goto fail;
  }
  if (sn_zinfo_decode_span(l->zi, i, comp, clen, out, ulen) == -1) {
    sn_prefix_error("span %zu: ", i);
    goto fail;
  }
  free(comp);
  free(l->cached);
  l->cached = out;
  l->cached_len = ulen;
  l->cached_span = i;
  return 0;

fail:
  free(comp);
  free(out);
  return -1;
}

int
sn_layer_read(struct sn_layer *l, void *buf, size_t len, int64_t off)
{
  uint8_t *p = buf;

  if (off < 0 || (uint64_t) len > (uint64_t) (INT64_MAX - off) ||
      off + (int64_t) len > l->z->uncompressed_size)
    return sn_set_error("read [%lld,+%zu) outside the layer's %lld bytes",
                        (long long) off, len,
                        (long long) l->z->uncompressed_size);
  while (len > 0) {
    size_t i = sn_zinfo_span_of(l->zi, off);
    struct sn_span s;
    size_t skip, n;

    sn_zinfo_span(l->zi, i, &s);
    if (load_span(l, i) == -1)
      return -1;
    skip = (size_t) (off - s.uncomp_start);
    if (skip >= l->cached_len)
      return sn_set_error("span %zu does not cover offset %lld", i,
                          (long long) off);
    n = l->cached_len - skip;
    if (n > len)
      n = len;
    memcpy(p, l->cached + skip, n);
    p += n;
    off += n;
    len -= n;
  }
  return 0;
}

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

int
sn_layer_check_file(struct sn_layer *l, const struct sn_ztoc_file *f)
{
  struct sn_tar_entry e;
  int64_t hlen = f->offset - f->header_offset;
  uint8_t *hdr;
  int r;

  if (f->header_offset < 0 || hlen < SN_TAR_BLOCK ||
      hlen > SN_TAR_MAX_SPECIAL * 3)
    return sn_set_error("\"%.*s\": implausible tar header region [%lld,%lld)",
                        (int) f->name.len, f->name.data,
                        (long long) f->header_offset, (long long) f->offset);
  hdr = malloc(hlen);
  if (hdr == NULL)
    return sn_oom();
  r = sn_layer_read(l, hdr, hlen, f->header_offset);
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
  free(hdr);
  return r;
}

int
sn_blob_read_fd(void *opaque, void *buf, size_t len, int64_t off)
{
  int fd = *(int *) opaque;
  char *p = buf;

  while (len > 0) {
    ssize_t n = pread(fd, p, len, off);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      return sn_set_error("read at %lld: %s", (long long) off,
                          strerror(errno));
    if (n == 0)
      return sn_set_error("layer file is shorter than the ztoc says "
                          "(EOF at %lld)", (long long) off);
    p += n;
    off += n;
    len -= n;
  }
  return 0;
}
