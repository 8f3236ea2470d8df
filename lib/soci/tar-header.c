/* soci-nbd: the tar parser's reading of header blocks (tar.c drives it):
 * Go archive/tar's readHeader and getFormat, its number parsers
 * (strconv.go) and its PAX record rules (parsePAX, validPAXRecord),
 * restated at each function; see docs/soci-format.md §3.  The parser's
 * state is in tar-int.h.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "soci/tar-int.h"

/* ---- small helpers ---------------------------------------------------- */

int
tar_buf_reserve(struct buf *b, size_t n)
{
  char *d;

  if (n < b->cap)
    return 0;
  d = realloc(b->data, n + 1);
  if (d == NULL)
    return sn_oom();
  b->data = d;
  b->cap = n + 1;
  return 0;
}

void
tar_buf_free(struct buf *b)
{
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Copy s (n bytes) into dst as a printable, double-quoted, bounded string
 * for error messages. */
const char *
tar_quote(char *dst, size_t dstlen, const char *s, size_t n)
{
  size_t i, o = 0;

  dst[o++] = '"';
  for (i = 0; i < n && o + 5 < dstlen; i++) {
    unsigned char c = s[i];
    dst[o++] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
  }
  if (i < n) {
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  dst[o++] = '"';
  dst[o] = '\0';
  return dst;
}

static size_t
str_len(const char *s, size_t max)
{
  const char *z = memchr(s, 0, max);

  return z ? (size_t) (z - s) : max;
}

/* Go's parseString: the bytes up to the first NUL, into a C string. */
static void
parse_string(char *dst, const uint8_t *b, size_t n)
{
  size_t len = str_len((const char *) b, n);

  memcpy(dst, b, len);
  dst[len] = '\0';
}

bool
tar_is_zero_block(const uint8_t *b)
{
  size_t i;

  for (i = 0; i < BLK; i++)
    if (b[i] != 0)
      return false;
  return true;
}

/* Go's blockPadding, for n >= 0. */
int64_t
tar_block_padding(int64_t n)
{
  return (BLK - n % BLK) % BLK;
}

/* Types '1'..'6' never have a data section, whatever their size says. */
bool
tar_header_only(char t)
{
  return t >= '1' && t <= '6';
}

/* ---- numbers (Go's strconv.go) ---------------------------------------- */

/* parseOctal: trim spaces and NULs at both ends, stop at an inner NUL,
 * then strconv.ParseUint(s, 8, 64).  Empty is 0. */
static int
parse_octal(const uint8_t *b, size_t n, int64_t *out)
{
  size_t s = 0, e = n, i;
  uint64_t x = 0;

  *out = 0;
  while (s < e && (b[s] == ' ' || b[s] == 0))
    s++;
  while (e > s && (b[e - 1] == ' ' || b[e - 1] == 0))
    e--;
  if (s == e)
    return 0;
  e = s + str_len((const char *) b + s, e - s);
  for (i = s; i < e; i++) {
    if (b[i] < '0' || b[i] > '7' || (x >> 61) != 0)
      return -1;
    x = x * 8 + (uint64_t) (b[i] - '0');
  }
  *out = (int64_t) x;     /* <= 36 bits for tar fields */
  return 0;
}

/* parseNumeric: base-256 two's complement when the top bit is set (bit 6
 * of the first byte is the sign), octal otherwise. */
static int
parse_numeric(const uint8_t *b, size_t n, int64_t *out)
{
  uint8_t inv;
  uint64_t x = 0;
  size_t i;

  if (n == 0 || (b[0] & 0x80) == 0)
    return parse_octal(b, n, out);
  inv = (b[0] & 0x40) ? 0xff : 0x00;
  for (i = 0; i < n; i++) {
    uint8_t c = b[i] ^ inv;

    if (i == 0)
      c &= 0x7f;
    if ((x >> 56) != 0)
      return -1;
    x = x << 8 | c;
  }
  if ((x >> 63) != 0)
    return -1;
  *out = inv ? ~(int64_t) x : (int64_t) x;
  return 0;
}

/* strconv.ParseInt(s, 10, 64): optional sign, decimal digits only. */
int
tar_parse_int(const char *s, size_t n, int64_t *out)
{
  bool neg = false;
  uint64_t x = 0;
  size_t i = 0;

  if (n > 0 && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == n)
    return -1;
  for (; i < n; i++) {
    unsigned d = (unsigned char) s[i] - '0';

    if (d > 9 || x > (UINT64_MAX - d) / 10)
      return -1;
    x = x * 10 + d;
  }
  if (x > (uint64_t) INT64_MAX + neg)
    return -1;
  if (neg)
    *out = x == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) x;
  else
    *out = (int64_t) x;
  return 0;
}

/* parsePAXTime: "%d" or "%d.%d"; up to 9 fraction digits are used (more
 * are validated and ignored); a '-' makes the fraction negative too.  The
 * result is normalised as time.Unix does (0 <= nsec < 1e9). */
int
tar_parse_pax_time(const char *s, size_t n, int64_t *sec, uint32_t *nsec)
{
  const char *dot = memchr(s, '.', n);
  size_t ns = dot ? (size_t) (dot - s) : n, i;
  int64_t secs, frac = 0;

  if (tar_parse_int(s, ns, &secs) < 0)
    return -1;
  if (dot != NULL) {
    for (i = ns + 1; i < n; i++) {
      if (s[i] < '0' || s[i] > '9')
        return -1;
      if (i - ns <= 9)
        frac = frac * 10 + (s[i] - '0');
    }
    for (i = n - ns - 1; i < 9; i++)
      frac *= 10;
  }
  if (ns > 0 && s[0] == '-' && frac != 0) {
    /* time.Unix(secs, -frac); Go's int64 arithmetic wraps. */
    secs = (int64_t) ((uint64_t) secs - 1);
    frac = 1000000000 - frac;
  }
  *sec = secs;
  *nsec = (uint32_t) frac;
  return 0;
}

/* ---- header blocks (Go's readHeader and block.getFormat) -------------- */

enum format { FMT_V7, FMT_USTAR, FMT_GNU, FMT_STAR };

/* Go's header checksum: the stored octal value must equal the unsigned or
 * the signed sum of the block, its checksum field counted as spaces. */
static int
checksum_ok(const uint8_t *b)
{
  int64_t value, usum = 0, ssum = 0;
  size_t i;

  if (parse_octal(b + 148, 8, &value) < 0)
    return 0;
  for (i = 0; i < BLK; i++) {
    uint8_t c = (i >= 148 && i < 156) ? ' ' : b[i];

    usum += c;
    ssum += (int8_t) c;
  }
  return value == usum || value == ssum;
}

/* Go's block.getFormat, from the magic and version fields. */
static enum format
get_format(const uint8_t *b)
{
  if (memcmp(b + 257, "ustar\0", 6) == 0)
    return memcmp(b + 508, "tar\0", 4) == 0 ? FMT_STAR : FMT_USTAR;
  if (memcmp(b + 257, "ustar ", 6) == 0 && memcmp(b + 263, " \0", 2) == 0)
    return FMT_GNU;
  return FMT_V7;
}

/* The error for an unparsable numeric field what of block b; -1. */
static int
bad_field(const uint8_t *b, const char *what, int64_t off)
{
  char q[128];

  return sn_set_error("tar: invalid %s field in header %s at offset %" PRId64,
                      what, tar_quote(q, sizeof q, (const char *) b,
                                      str_len((const char *) b, 100)), off);
}

#define NUMERIC(field, at, len, what)                        \
  do {                                                       \
    if (parse_numeric(b + (at), (len), &h->field) < 0)       \
      return bad_field(b, (what), off);                      \
  } while (0)

/* Go's readHeader for one block: checksum, format, the V7 fields, then
 * the ustar / star / GNU extensions and the name prefix. */
int
tar_parse_header(const uint8_t *b, int64_t off, struct hdr *h)
{
  enum format fmt;
  char prefix[156] = "";
  int64_t t;

  if (!checksum_ok(b)) {
    char q[128];

    return sn_set_error("tar: bad header checksum %s at offset %" PRId64,
                        tar_quote(q, sizeof q, (const char *) b,
                                  str_len((const char *) b, 100)), off);
  }
  fmt = get_format(b);
  memset(h, 0, sizeof *h);
  h->typeflag = (char) b[156];
  parse_string(h->name, b, 100);
  parse_string(h->linkname, b + 157, 100);
  NUMERIC(size, 124, 12, "size");
  NUMERIC(mode, 100, 8, "mode");
  NUMERIC(uid, 108, 8, "uid");
  NUMERIC(gid, 116, 8, "gid");
  NUMERIC(mtime, 136, 12, "mtime");
  if (fmt == FMT_V7)
    return 0;

  parse_string(h->uname, b + 265, 32);
  parse_string(h->gname, b + 297, 32);
  NUMERIC(devmajor, 329, 8, "devmajor");
  NUMERIC(devminor, 337, 8, "devminor");
  switch (fmt) {
  case FMT_USTAR:
    parse_string(prefix, b + 345, 155);
    break;
  case FMT_STAR:
    parse_string(prefix, b + 345, 131);
    if (parse_numeric(b + 476, 12, &t) < 0)
      return bad_field(b, "atime", off);
    if (parse_numeric(b + 488, 12, &t) < 0)
      return bad_field(b, "ctime", off);
    break;
  case FMT_GNU:
    /* GNU has no prefix, but Go reads files from pre-1.8 Go writers that
     * put one where atime/ctime live: if either is set and does not parse,
     * an ASCII string there is taken as the prefix. */
    if ((b[345] != 0 && parse_numeric(b + 345, 12, &t) < 0) ||
        (b[357] != 0 && parse_numeric(b + 357, 12, &t) < 0)) {
      size_t i, n = str_len((const char *) b + 345, 155);

      for (i = 0; i < n && b[345 + i] < 0x80; i++)
        ;
      if (i == n)
        parse_string(prefix, b + 345, 155);
    }
    break;
  default:
    break;
  }
  if (prefix[0] != '\0') {
    size_t pl = strlen(prefix), nl = strlen(h->name);

    memmove(h->name + pl + 1, h->name, nl + 1);
    memcpy(h->name, prefix, pl);
    h->name[pl] = '/';
  }
  return 0;
}

#undef NUMERIC

/* ---- PAX records (Go's parsePAX, parsePAXRecord, validPAXRecord) ------ */

bool
tar_key_is(const struct sn_bytes *k, const char *s)
{
  size_t n = strlen(s);

  return k->len == n && memcmp(k->data, s, n) == 0;
}

static int
rec_cmp(const void *a, const void *b)
{
  const struct rec *x = a, *y = b;
  size_t n = x->kv.key.len < y->kv.key.len ? x->kv.key.len : y->kv.key.len;
  int c = memcmp(x->kv.key.data, y->kv.key.data, n);

  if (c != 0)
    return c;
  if (x->kv.key.len != y->kv.key.len)
    return x->kv.key.len < y->kv.key.len ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Append record k=v to p->recs (growing it); -1 with a message. */
static int
add_rec(struct sn_tar_parser *p, char *k, size_t klen, char *v, size_t vlen)
{
  if (p->nrecs == p->recs_cap) {
    size_t cap = p->recs_cap ? p->recs_cap * 2 : 16;
    struct rec *r = realloc(p->recs, cap * sizeof *r);

    if (r == NULL)
      return sn_oom();
    p->recs = r;
    p->recs_cap = cap;
  }
  p->recs[p->nrecs].kv.key.data = k;
  p->recs[p->nrecs].kv.key.len = klen;
  p->recs[p->nrecs].kv.value.data = v;
  p->recs[p->nrecs].kv.value.len = vlen;
  p->recs[p->nrecs].idx = p->nrecs;
  p->nrecs++;
  return 0;
}

/* Sort the records by key and keep the last of each key, as Go's map. */
static int
unique_recs(struct sn_tar_parser *p)
{
  size_t i;

  if (p->nrecs > 1)
    qsort(p->recs, p->nrecs, sizeof *p->recs, rec_cmp);
  if (p->nrecs > p->pax_cap) {
    struct sn_pax *x = realloc(p->pax, p->nrecs * sizeof *x);

    if (x == NULL)
      return sn_oom();
    p->pax = x;
    p->pax_cap = p->nrecs;
  }
  p->npax = 0;
  for (i = 0; i < p->nrecs; i++) {
    if (i + 1 < p->nrecs &&
        p->recs[i].kv.key.len == p->recs[i + 1].kv.key.len &&
        memcmp(p->recs[i].kv.key.data, p->recs[i + 1].kv.key.data,
               p->recs[i].kv.key.len) == 0)
      continue;
    p->pax[p->npax++] = p->recs[i].kv;
  }
  return 0;
}

/* One record "%d %s=%s\n" at s[0..rem): the length counts the whole
 * record; the key is up to the first '='; keys are non-empty and NUL-free;
 * values of path/linkpath/uname/gname are NUL-free.  Returns the record
 * length, or 0 if invalid.  The '=' and '\n' are overwritten with NULs. */
static size_t
parse_pax_record(char *s, size_t rem, char **k, size_t *klen,
                 char **v, size_t *vlen)
{
  char *sp = memchr(s, ' ', rem), *rec, *eq;
  struct sn_bytes key;
  size_t nlen, reclen;
  bool strfield;
  int64_t n;

  if (sp == NULL)
    return 0;
  nlen = (size_t) (sp - s);
  if (tar_parse_int(s, nlen, &n) < 0 || n < 5 || (uint64_t) n > rem ||
      n <= (int64_t) nlen + 1)
    return 0;
  rec = sp + 1;
  reclen = (size_t) n - nlen - 1;        /* includes the '\n' */
  if (rec[reclen - 1] != '\n')
    return 0;
  eq = memchr(rec, '=', reclen - 1);
  if (eq == NULL || eq == rec)
    return 0;
  *k = rec;
  *klen = (size_t) (eq - rec);
  *v = eq + 1;
  *vlen = reclen - 1 - *klen - 1;
  key.data = rec;
  key.len = *klen;
  strfield = tar_key_is(&key, "path") || tar_key_is(&key, "linkpath") ||
             tar_key_is(&key, "uname") || tar_key_is(&key, "gname");
  if (strfield ? memchr(*v, 0, *vlen) != NULL : memchr(rec, 0, *klen) != NULL)
    return 0;
  *eq = '\0';
  rec[reclen - 1] = '\0';
  return (size_t) n;
}

/* Parse all records of p->pax_buf, check the GNU sparse 0.0 map, and sort
 * and dedupe them into p->pax. */
int
tar_parse_pax(struct sn_tar_parser *p)
{
  char *s = p->pax_buf.data, *k, *v;
  size_t rem = p->pax_buf.len, n, klen, vlen, nsparse = 0;
  char q[128];

  p->nrecs = p->npax = 0;
  while (rem > 0) {
    n = parse_pax_record(s, rem, &k, &klen, &v, &vlen);
    if (n == 0)
      return sn_set_error("tar: invalid PAX record %s in header %s at offset %"
                          PRId64,
                          tar_quote(q, sizeof q, s, rem < 40 ? rem : 40),
                          p->special_name, p->special_off);
    /* GNU sparse 0.0 map records must alternate offset, numbytes. */
    if (strcmp(k, "GNU.sparse.offset") == 0 ||
        strcmp(k, "GNU.sparse.numbytes") == 0) {
      bool want_off = nsparse % 2 == 0;

      if (want_off != (strcmp(k, "GNU.sparse.offset") == 0) ||
          memchr(v, ',', vlen) != NULL)
        return sn_set_error("tar: invalid GNU sparse map in PAX header %s "
                            "at offset %" PRId64, p->special_name,
                            p->special_off);
      nsparse++;
    }
    if (add_rec(p, k, klen, v, vlen) < 0)
      return -1;
    s += n;
    rem -= n;
  }
  return unique_recs(p);
}
