/* soci-nbd: the ztoc data model and the small helpers around it: type
 * names, paths (soci's FS view cleaning), RFC 3339 times.  The FlatBuffers
 * writer (byte-identical to soci's Go code, docs/soci-format.md §2.3-§2.4)
 * is in ztoc-encode.c, the validating reader (§2.5) in ztoc-decode.c. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "soci/ztoc.h"

/* ---- the model ---------------------------------------------------------- */

/* Replace b's bytes with a NUL-terminated copy of data[0, len); b is
 * left as it was on OOM. */
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

int
sn_bytes_copy(struct sn_bytes *dst, const struct sn_bytes *src)
{
  dst->data = NULL;
  dst->len = 0;
  return sn_bytes_set(dst, src->data, src->len);
}

int
sn_pax_copy(struct sn_pax **dst, size_t *ndst, const struct sn_pax *src,
            size_t n)
{
  size_t i;

  *dst = NULL;
  *ndst = 0;
  if (n == 0)
    return 0;
  *dst = calloc(n, sizeof **dst);
  if (*dst == NULL)
    return sn_oom();
  *ndst = n;
  for (i = 0; i < n; i++)
    if (sn_bytes_copy(&(*dst)[i].key, &src[i].key) == -1 ||
        sn_bytes_copy(&(*dst)[i].value, &src[i].value) == -1)
      return -1;
  return 0;
}

static int
file_copy(struct sn_ztoc_file *to, const struct sn_ztoc_file *from)
{
  *to = *from;                  /* the numbers; no pointer of from's kept: */
  to->name = to->type = to->linkname = (struct sn_bytes) { 0 };
  to->uname = to->gname = to->mod_time = (struct sn_bytes) { 0 };
  to->pax = NULL;
  to->npax = 0;
  if (sn_bytes_copy(&to->name, &from->name) == -1 ||
      sn_bytes_copy(&to->type, &from->type) == -1 ||
      sn_bytes_copy(&to->linkname, &from->linkname) == -1 ||
      sn_bytes_copy(&to->uname, &from->uname) == -1 ||
      sn_bytes_copy(&to->gname, &from->gname) == -1 ||
      sn_bytes_copy(&to->mod_time, &from->mod_time) == -1)
    return -1;
  return sn_pax_copy(&to->pax, &to->npax, from->pax, from->npax);
}

struct sn_ztoc *
sn_ztoc_copy_toc(const struct sn_ztoc *z)
{
  struct sn_ztoc *t = sn_ztoc_new();
  size_t i;

  if (t == NULL)
    return NULL;
  t->compressed_size = z->compressed_size;
  t->uncompressed_size = z->uncompressed_size;
  t->compression = z->compression;
  if (sn_bytes_copy(&t->version, &z->version) == -1 ||
      sn_bytes_copy(&t->build_tool, &z->build_tool) == -1)
    goto fail;
  if (z->nfiles) {
    t->files = calloc(z->nfiles, sizeof *t->files);
    if (t->files == NULL) {
      sn_oom();
      goto fail;
    }
  }
  for (i = 0; i < z->nfiles; i++) {
    t->nfiles = i + 1;          /* what sn_ztoc_free clears */
    if (file_copy(&t->files[i], &z->files[i]) == -1)
      goto fail;
  }
  return t;
fail:
  sn_ztoc_free(t);
  return NULL;
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

/* Exact names only; anything else (and "unknown") is SN_FT_UNKNOWN. */
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

/* clean_into straight into out when it is large enough, else through a
 * temporary, so that a short out gets an error, never a partial path. */
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

/* Clean path once, then each entry's name from the last to the first (a
 * later entry wins); NULL when none matches, or on OOM. */
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

/* Days in month m (1..12) of proleptic Gregorian year y. */
static unsigned
days_in_month(int64_t y, unsigned m)
{
  static const unsigned char dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
                                      31, 30, 31 };

  if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
    return 29;
  return dm[m - 1];
}

/* Days and seconds of day (floored, for times before 1970), the civil
 * date, then the fraction with its trailing zeros trimmed and "Z". */
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

/* The fixed layout YYYY-MM-DDTHH:MM:SS (days checked against the month),
 * an optional fraction (digits past nanoseconds ignored, as Go does), then
 * "Z" or +HH:MM / -HH:MM; -1 with a message otherwise. */
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
