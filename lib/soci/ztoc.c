/* soci-nbd: the ztoc data model, its FlatBuffers writer (byte-identical to
 * soci's Go code, docs/soci-format.md §2.3-§2.4) and a validating reader
 * (§2.5, plus the checks soci's Unmarshal and the snapshotter make), and
 * the small helpers around it: paths, type names, RFC 3339 times. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/fbs.h"
#include "soci/ztoc.h"

/* Field slots (docs/soci-format.md §2.1). */
enum { ZT_VERSION, ZT_BUILD_TOOL, ZT_COMPRESSED, ZT_UNCOMPRESSED, ZT_TOC,
       ZT_COMPRESSION_INFO, ZT_NFIELDS };
enum { TOC_METADATA, TOC_NFIELDS };
enum { FM_NAME, FM_TYPE, FM_OFFSET, FM_SIZE, FM_LINKNAME, FM_MODE, FM_UID,
       FM_GID, FM_UNAME, FM_GNAME, FM_MOD_TIME, FM_DEVMAJOR, FM_DEVMINOR,
       FM_XATTRS, FM_NFIELDS };
enum { XA_KEY, XA_VALUE, XA_NFIELDS };
enum { CI_ALGORITHM, CI_MAX_SPAN_ID, CI_SPAN_DIGESTS, CI_CHECKPOINTS,
       CI_NFIELDS };

/* Go's zero time.Time, 0001-01-01T00:00:00Z, in Unix seconds. */
#define ZERO_TIME_SEC INT64_C(-62135596800)

/* ---- the model ---------------------------------------------------------- */

int
sn_bytes_set(struct sn_bytes *b, const void *data, size_t len)
{
  char *p;

  if (len == SIZE_MAX)
    return sn_oom();
  p = malloc(len + 1);
  if (p == NULL)
    return sn_oom();
  if (len)
    memcpy(p, data, len);
  p[len] = '\0';
  free(b->data);
  b->data = p;
  b->len = len;
  return 0;
}

void
sn_bytes_clear(struct sn_bytes *b)
{
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

struct sn_ztoc *
sn_ztoc_new(void)
{
  struct sn_ztoc *z = calloc(1, sizeof *z);

  if (z == NULL) {
    sn_oom();
    return NULL;
  }
  z->compression = SN_COMP_GZIP;
  return z;
}

void
sn_ztoc_file_clear(struct sn_ztoc_file *f)
{
  size_t i;

  sn_bytes_clear(&f->name);
  sn_bytes_clear(&f->type);
  sn_bytes_clear(&f->linkname);
  sn_bytes_clear(&f->uname);
  sn_bytes_clear(&f->gname);
  sn_bytes_clear(&f->mod_time);
  for (i = 0; i < f->npax; i++) {
    sn_bytes_clear(&f->pax[i].key);
    sn_bytes_clear(&f->pax[i].value);
  }
  free(f->pax);
  memset(f, 0, sizeof *f);
}

void
sn_ztoc_free(struct sn_ztoc *z)
{
  size_t i;

  if (z == NULL)
    return;
  sn_bytes_clear(&z->version);
  sn_bytes_clear(&z->build_tool);
  for (i = 0; i < z->nfiles; i++)
    sn_ztoc_file_clear(&z->files[i]);
  free(z->files);
  for (i = 0; i < z->nspan_digests; i++)
    sn_bytes_clear(&z->span_digests[i]);
  free(z->span_digests);
  free(z->checkpoints);
  free(z);
}

/* ---- type names --------------------------------------------------------- */

static const char *const ftype_names[] = {
  [SN_FT_UNKNOWN] = "unknown",
  [SN_FT_REG] = "reg",
  [SN_FT_HARDLINK] = "hardlink",
  [SN_FT_SYMLINK] = "symlink",
  [SN_FT_CHAR] = "char",
  [SN_FT_BLOCK] = "block",
  [SN_FT_DIR] = "dir",
  [SN_FT_FIFO] = "fifo",
};

#define NFTYPES (sizeof ftype_names / sizeof ftype_names[0])

const char *
sn_ftype_name(enum sn_ftype t)
{
  if ((unsigned) t >= NFTYPES)
    t = SN_FT_UNKNOWN;
  return ftype_names[t];
}

enum sn_ftype
sn_ftype_parse(const char *s, size_t len)
{
  size_t i;

  for (i = SN_FT_REG; i < NFTYPES; i++)
    if (strlen(ftype_names[i]) == len && memcmp(s, ftype_names[i], len) == 0)
      return (enum sn_ftype) i;
  return SN_FT_UNKNOWN;
}

/* ---- paths -------------------------------------------------------------- */

/* Go's path.Clean("/" + p) without the leading slash, into out, which
 * must hold len + 1 bytes (cleaning never makes a path longer).  Returns
 * the length; out is NUL-terminated. */
static size_t
clean_into(const char *p, size_t len, char *out)
{
  size_t i = 0, w = 0;

  while (i < len) {
    size_t start, seglen;

    while (i < len && p[i] == '/')
      i++;
    start = i;
    while (i < len && p[i] != '/')
      i++;
    seglen = i - start;
    if (seglen == 0 || (seglen == 1 && p[start] == '.'))
      continue;
    if (seglen == 2 && p[start] == '.' && p[start + 1] == '.') {
      while (w > 0 && out[w - 1] != '/')   /* drop the last element */
        w--;
      if (w > 0)
        w--;                               /* and its separator */
      continue;
    }
    if (w > 0)
      out[w++] = '/';
    memcpy(out + w, p + start, seglen);
    w += seglen;
  }
  out[w] = '\0';
  return w;
}

int
sn_path_clean(const char *p, size_t len, char *out, size_t outlen)
{
  char *tmp;
  size_t n;

  if (len == SIZE_MAX)
    return sn_set_error("path too long");
  if (outlen > len)
    n = clean_into(p, len, out);
  else {
    tmp = malloc(len + 1);
    if (tmp == NULL)
      return sn_oom();
    n = clean_into(p, len, tmp);
    if (n < outlen)
      memcpy(out, tmp, n + 1);
    free(tmp);
    if (n >= outlen)
      return sn_set_error("path too long");
  }
  if (n > INT32_MAX)
    return sn_set_error("path too long");
  return (int) n;
}

const struct sn_ztoc_file *
sn_ztoc_find(const struct sn_ztoc *z, const char *path)
{
  const struct sn_ztoc_file *found = NULL;
  size_t plen = strlen(path), cap = 0, n, i;
  char *want, *buf = NULL;

  want = malloc(plen + 1);
  if (want == NULL) {
    sn_oom();
    return NULL;
  }
  n = clean_into(path, plen, want);
  for (i = z->nfiles; i-- > 0;) {
    const struct sn_bytes *name = &z->files[i].name;

    if (name->len >= cap) {
      free(buf);
      cap = name->len + 1;
      buf = malloc(cap);
      if (buf == NULL) {
        sn_oom();
        break;
      }
    }
    if (clean_into(name->data ? name->data : "", name->len, buf) == n &&
        memcmp(buf, want, n) == 0) {
      found = &z->files[i];
      break;
    }
  }
  free(buf);
  free(want);
  return found;
}

/* ---- RFC 3339 times ----------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
  int64_t era, yoe, doy, doe;

  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* The inverse: the date of day z since 1970-01-01 (Hinnant's algorithm). */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
  int64_t era, doe, yoe, doy, mp;

  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = z - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = (unsigned) (doy - (153 * mp + 2) / 5 + 1);
  *m = (unsigned) (mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static unsigned
days_in_month(int64_t y, unsigned m)
{
  static const unsigned char dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
                                      31, 30, 31 };

  if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
    return 29;
  return dm[m - 1];
}

size_t
sn_mod_time_format(int64_t sec, uint32_t nsec, char *out)
{
  int64_t days, rem, y;
  unsigned m, d;
  size_t n;

  out[0] = '\0';
  if (nsec >= 1000000000)
    return 0;
  days = sec / 86400;
  rem = sec % 86400;
  if (rem < 0) {
    rem += 86400;
    days--;
  }
  civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999)
    return 0;
  n = (size_t) snprintf(out, 40, "%04d-%02u-%02uT%02d:%02d:%02d", (int) y,
                        m, d, (int) (rem / 3600), (int) (rem / 60 % 60),
                        (int) (rem % 60));
  if (nsec) {
    unsigned digits = 9;
    while (nsec % 10 == 0) {
      nsec /= 10;
      digits--;
    }
    n += (size_t) snprintf(out + n, 40 - n, ".%0*" PRIu32, (int) digits,
                           nsec);
  }
  out[n++] = 'Z';
  out[n] = '\0';
  return n;
}

/* Digits s[0, n) as a number in [lo, hi]; -1 if not. */
static int
parse_num(const char *s, size_t n, int lo, int hi)
{
  int v = 0;
  size_t i;

  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v < lo || v > hi ? -1 : v;
}

int
sn_mod_time_parse(const char *s, size_t len, int64_t *sec, uint32_t *nsec)
{
  int y, mo, d, h, mi, se, oh, om;
  uint32_t ns = 0;
  int64_t off = 0;
  size_t i;

  if (len < 20)
    goto bad;
  y = parse_num(s, 4, 0, 9999);
  mo = parse_num(s + 5, 2, 1, 12);
  d = mo < 0 ? -1 : parse_num(s + 8, 2, 1, (int) days_in_month(y, mo));
  h = parse_num(s + 11, 2, 0, 23);
  mi = parse_num(s + 14, 2, 0, 59);
  se = parse_num(s + 17, 2, 0, 59);
  if (y < 0 || d < 0 || h < 0 || mi < 0 || se < 0 || s[4] != '-' ||
      s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
    goto bad;
  i = 19;
  if (len - i >= 2 && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
    unsigned digits = 0;
    for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
      if (digits < 9) {       /* Go ignores digits beyond nanoseconds */
        ns = ns * 10 + (uint32_t) (s[i] - '0');
        digits++;
      }
    for (; digits < 9; digits++)
      ns *= 10;
  }
  if (len - i == 1 && s[i] == 'Z')
    ;
  else if (len - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    oh = parse_num(s + i + 1, 2, 0, 23);
    om = parse_num(s + i + 4, 2, 0, 59);
    if (oh < 0 || om < 0)
      goto bad;
    off = (oh * 60 + om) * 60;
    if (s[i] == '-')
      off = -off;
  }
  else
    goto bad;
  *sec = days_from_civil(y, (unsigned) mo, (unsigned) d) * 86400 +
         h * 3600 + mi * 60 + se - off;
  *nsec = ns;
  return 0;

bad:
  return sn_set_error("not an RFC 3339 time");
}

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
