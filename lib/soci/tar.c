/* soci-nbd: a push-based tar header parser that reproduces what Go's
 * archive/tar Reader.Next() (Go 1.21+) returns to soci's ztoc builder:
 * which headers become entries, their fields after PAX / GNU long-name
 * merging, where their data starts, and where the archive ends.  The
 * reference's rules are restated at each function; see also
 * docs/soci-format.md §3.
 *
 * The parser is a small state machine fed with chunks of any size: header
 * blocks are assembled in a 512-byte buffer, PAX and long-name data
 * (bounded by SN_TAR_MAX_SPECIAL) in owned buffers, and file data is only
 * counted, never copied.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "soci/tar.h"

#define BLK SN_TAR_BLOCK

enum state {
  ST_HEADER,   /* assembling a header block */
  ST_ZERO2,    /* one zero block seen: assembling the next block */
  ST_SPECIAL,  /* collecting the data of a PAX 'x' or GNU 'L'/'K' header */
  ST_SKIP,     /* skipping entry data, then block padding */
  ST_END,      /* end of archive: later bytes are ignored */
  ST_ERROR,    /* sticky failure, message in err */
};

/* An owned byte buffer, always NUL-terminated at len when allocated. */
struct buf {
  char *data;
  size_t len, cap;
};

/* A PAX record while sorting: keys compare bytewise, then by position so
 * that the last of equal keys wins. */
struct rec {
  struct sn_pax kv;
  size_t idx;
};

/* The fields of one header block (Go's readHeader). */
struct hdr {
  char typeflag;
  char name[155 + 1 + 100 + 1];   /* prefix "/" name */
  char linkname[101];
  char uname[33], gname[33];
  int64_t mode, uid, gid, size, mtime, devmajor, devminor;
};

struct sn_tar_parser {
  sn_tar_entry_fn fn;
  void *opaque;
  enum state state;
  bool marker;                /* two zero blocks seen */
  int64_t pos;                /* bytes consumed so far */
  int64_t end;                /* ST_END: the end of archive position */

  uint8_t blk[BLK];
  size_t blk_len;

  /* ST_SPECIAL */
  char special_type;
  struct buf *special_dst;
  size_t special_want;
  int64_t special_off;
  char special_name[128];     /* quoted, for messages */

  /* ST_SKIP */
  int64_t skip_data, skip_pad;
  int64_t last_off;           /* header block of the entry being skipped */
  char last_name[128];

  /* The pending header chain (Go's paxHdrs / gnuLongName / gnuLongLink). */
  int64_t chain_start;        /* -1: no header of this entry seen yet */
  struct buf pax_buf;         /* raw 'x' data, records NUL-split in place */
  struct rec *recs;
  size_t nrecs, recs_cap;
  struct sn_pax *pax;         /* sorted, unique keys */
  size_t npax, pax_cap;
  struct buf lname, llink;    /* len 0: none (Go ignores empty names) */

  char err[1024];
};

/* ---- small helpers ---------------------------------------------------- */

static int
buf_reserve(struct buf *b, size_t n)
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

static void
buf_free(struct buf *b)
{
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Copy s (n bytes) into dst as a printable, double-quoted, bounded string
 * for error messages. */
static const char *
quote(char *dst, size_t dstlen, const char *s, size_t n)
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

static bool
is_zero_block(const uint8_t *b)
{
  size_t i;

  for (i = 0; i < BLK; i++)
    if (b[i] != 0)
      return false;
  return true;
}

/* Go's blockPadding, for n >= 0. */
static int64_t
block_padding(int64_t n)
{
  return (BLK - n % BLK) % BLK;
}

/* Types '1'..'6' never have a data section, whatever their size says. */
static bool
header_only(char t)
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
static int
parse_int(const char *s, size_t n, int64_t *out)
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
static int
parse_pax_time(const char *s, size_t n, int64_t *sec, uint32_t *nsec)
{
  const char *dot = memchr(s, '.', n);
  size_t ns = dot ? (size_t) (dot - s) : n, i;
  int64_t secs, frac = 0;

  if (parse_int(s, ns, &secs) < 0)
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

static enum format
get_format(const uint8_t *b)
{
  if (memcmp(b + 257, "ustar\0", 6) == 0)
    return memcmp(b + 508, "tar\0", 4) == 0 ? FMT_STAR : FMT_USTAR;
  if (memcmp(b + 257, "ustar ", 6) == 0 && memcmp(b + 263, " \0", 2) == 0)
    return FMT_GNU;
  return FMT_V7;
}

static int
bad_field(const uint8_t *b, const char *what, int64_t off)
{
  char q[128];

  return sn_set_error("tar: invalid %s field in header %s at offset %" PRId64,
                      what, quote(q, sizeof q, (const char *) b,
                                  str_len((const char *) b, 100)), off);
}

#define NUMERIC(field, at, len, what)                        \
  do {                                                       \
    if (parse_numeric(b + (at), (len), &h->field) < 0)       \
      return bad_field(b, (what), off);                      \
  } while (0)

static int
parse_header(const uint8_t *b, int64_t off, struct hdr *h)
{
  enum format fmt;
  char prefix[156] = "";
  int64_t t;

  if (!checksum_ok(b)) {
    char q[128];

    return sn_set_error("tar: bad header checksum %s at offset %" PRId64,
                        quote(q, sizeof q, (const char *) b,
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

static bool
key_is(const struct sn_bytes *k, const char *s)
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
  if (parse_int(s, nlen, &n) < 0 || n < 5 || (uint64_t) n > rem ||
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
  strfield = key_is(&key, "path") || key_is(&key, "linkpath") ||
             key_is(&key, "uname") || key_is(&key, "gname");
  if (strfield ? memchr(*v, 0, *vlen) != NULL : memchr(rec, 0, *klen) != NULL)
    return 0;
  *eq = '\0';
  rec[reclen - 1] = '\0';
  return (size_t) n;
}

static int
parse_pax(struct sn_tar_parser *p)
{
  char *s = p->pax_buf.data, *k, *v;
  size_t rem = p->pax_buf.len, n, klen, vlen, nsparse = 0;
  char q[128];

  p->nrecs = p->npax = 0;
  while (rem > 0) {
    n = parse_pax_record(s, rem, &k, &klen, &v, &vlen);
    if (n == 0)
      return sn_set_error("tar: invalid PAX record %s in header %s at offset %"
                          PRId64, quote(q, sizeof q, s, rem < 40 ? rem : 40),
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

/* ---- building an entry (Go's next() after readHeader) ----------------- */

static void
set_bytes(struct sn_bytes *b, char *s, size_t n)
{
  b->data = s;
  b->len = n;
}

/* Go's mergePAX: non-empty values of the well-known keys override the
 * header; numbers and times must parse. */
static int
merge_pax(struct sn_tar_parser *p, struct sn_tar_entry *e, int64_t off)
{
  size_t i;

  for (i = 0; i < p->npax; i++) {
    const struct sn_bytes *k = &p->pax[i].key;
    struct sn_bytes *v = &p->pax[i].value;
    int64_t sec;
    uint32_t nsec;
    int r = 0;

    if (v->len == 0)
      continue;
    if (key_is(k, "path"))
      e->name = *v;
    else if (key_is(k, "linkpath"))
      e->linkname = *v;
    else if (key_is(k, "uname"))
      e->uname = *v;
    else if (key_is(k, "gname"))
      e->gname = *v;
    else if (key_is(k, "uid"))
      r = parse_int(v->data, v->len, &e->uid);
    else if (key_is(k, "gid"))
      r = parse_int(v->data, v->len, &e->gid);
    else if (key_is(k, "size"))
      r = parse_int(v->data, v->len, &e->size);
    else if (key_is(k, "atime") || key_is(k, "ctime"))
      r = parse_pax_time(v->data, v->len, &sec, &nsec);
    else if (key_is(k, "mtime")) {
      r = parse_pax_time(v->data, v->len, &sec, &nsec);
      e->mtime_sec = sec;
      e->mtime_nsec = nsec;
    }
    if (r < 0) {
      char q[64];

      return sn_set_error("tar: invalid PAX record %s=%s at offset %" PRId64,
                          k->data, quote(q, sizeof q, v->data, v->len), off);
    }
  }
  return 0;
}

static bool
has_sparse_record(const struct sn_tar_parser *p)
{
  size_t i;

  for (i = 0; i < p->npax; i++)
    if (p->pax[i].key.len >= 11 &&
        memcmp(p->pax[i].key.data, "GNU.sparse.", 11) == 0)
      return true;
  return false;
}

static const char *
typeflag_str(char *dst, size_t n, char t)
{
  unsigned char c = (unsigned char) t;

  if (c >= 0x20 && c < 0x7f)
    snprintf(dst, n, "'%c'", c);
  else
    snprintf(dst, n, "'\\x%02x'", c);
  return dst;
}

static void
reset_chain(struct sn_tar_parser *p)
{
  p->chain_start = -1;
  p->pax_buf.len = 0;
  p->nrecs = p->npax = 0;
  p->lname.len = 0;
  p->llink.len = 0;
}

/* A header that is not PAX/GNU metadata: finish it and hand it out. */
static int
emit_entry(struct sn_tar_parser *p, struct hdr *h, int64_t off)
{
  struct sn_tar_entry e;
  int64_t data;
  char q[128], t[16];

  memset(&e, 0, sizeof e);
  set_bytes(&e.name, h->name, strlen(h->name));
  set_bytes(&e.linkname, h->linkname, strlen(h->linkname));
  set_bytes(&e.uname, h->uname, strlen(h->uname));
  set_bytes(&e.gname, h->gname, strlen(h->gname));
  e.typeflag = h->typeflag;
  e.mode = h->mode;
  e.uid = h->uid;
  e.gid = h->gid;
  e.size = h->size;
  e.devmajor = h->devmajor;
  e.devminor = h->devminor;
  e.mtime_sec = h->mtime;
  e.mtime_nsec = 0;

  if (merge_pax(p, &e, off) < 0)
    return -1;
  if (p->lname.len > 0)
    set_bytes(&e.name, p->lname.data, p->lname.len);
  if (p->llink.len > 0)
    set_bytes(&e.linkname, p->llink.data, p->llink.len);
  if (e.typeflag == '\0')
    e.typeflag = e.name.len > 0 && e.name.data[e.name.len - 1] == '/'
                 ? '5' : '0';
  quote(q, sizeof q, e.name.data, e.name.len);

  data = header_only(e.typeflag) ? 0 : e.size;
  if (data < 0)
    return sn_set_error("tar: negative size %" PRId64 " for %s at offset %"
                        PRId64, data, q, off);
  if (e.typeflag == 'S')
    return sn_set_error("tar: unsupported tar entry 'S' (GNU sparse file) "
                        "%s at offset %" PRId64, q, off);
  if (has_sparse_record(p))
    return sn_set_error("tar: unsupported GNU sparse file (PAX GNU.sparse.* "
                        "records) %s at offset %" PRId64, q, off);
  if (e.typeflag < '0' || e.typeflag > '6')
    return sn_set_error("tar: unsupported tar entry %s %s at offset %" PRId64,
                        typeflag_str(t, sizeof t, e.typeflag), q, off);
  if (data > INT64_MAX - (BLK - 1) - p->pos)
    return sn_set_error("tar: size %" PRId64 " of %s at offset %" PRId64
                        " is too large", data, q, off);

  e.pax = p->npax ? p->pax : NULL;
  e.npax = p->npax;
  e.header_offset = p->chain_start;
  e.data_offset = p->pos;

  p->skip_data = data;
  p->skip_pad = block_padding(data);
  p->last_off = off;
  memcpy(p->last_name, q, sizeof q);
  p->state = data + p->skip_pad > 0 ? ST_SKIP : ST_HEADER;
  if (p->fn(p->opaque, &e) < 0)
    return -1;
  reset_chain(p);
  return 0;
}

/* PAX 'x' / GNU 'L' / 'K' data is complete. */
static int
finish_special(struct sn_tar_parser *p)
{
  struct buf *b = p->special_dst;

  b->len = p->special_want;
  b->data[b->len] = '\0';
  if (p->special_type == 'x') {
    if (parse_pax(p) < 0)
      return -1;
  }
  else
    b->len = strlen(b->data);   /* Go's parseString */
  p->skip_data = 0;
  p->skip_pad = block_padding((int64_t) p->special_want);
  p->state = p->skip_pad > 0 ? ST_SKIP : ST_HEADER;
  return 0;
}

static int
start_special(struct sn_tar_parser *p, const struct hdr *h, int64_t off)
{
  struct buf *b = h->typeflag == 'x' ? &p->pax_buf
                : h->typeflag == 'L' ? &p->lname : &p->llink;
  const char *what = h->typeflag == 'x' ? "PAX header" : "GNU long name";

  quote(p->special_name, sizeof p->special_name, h->name, strlen(h->name));
  if (h->size > SN_TAR_MAX_SPECIAL)
    return sn_set_error("tar: %s %s at offset %" PRId64 " is too large (%"
                        PRId64 " bytes, limit %d)", what, p->special_name,
                        off, h->size, SN_TAR_MAX_SPECIAL);
  if (buf_reserve(b, (size_t) h->size) < 0)
    return -1;
  if (h->typeflag == 'x')   /* replaces any earlier 'x' of this entry */
    p->nrecs = p->npax = 0;
  b->len = 0;
  p->special_type = h->typeflag;
  p->special_dst = b;
  p->special_want = (size_t) h->size;
  p->special_off = off;
  p->state = ST_SPECIAL;
  if (p->special_want == 0)
    return finish_special(p);
  return 0;
}

/* A full block has been assembled in p->blk. */
static int
handle_block(struct sn_tar_parser *p)
{
  int64_t off = p->pos - BLK;
  struct hdr h;
  char q[128];

  p->blk_len = 0;
  if (is_zero_block(p->blk)) {
    if (p->state == ST_HEADER)
      p->state = ST_ZERO2;
    else {
      p->state = ST_END;
      p->marker = true;
      p->end = p->pos;
    }
    return 0;
  }
  if (p->state == ST_ZERO2)
    return sn_set_error("tar: zero block followed by a non-zero block at "
                        "offset %" PRId64, off);
  if (parse_header(p->blk, off, &h) < 0)
    return -1;
  if (p->chain_start < 0)
    p->chain_start = off;
  if (!header_only(h.typeflag) && h.size < 0)
    return sn_set_error("tar: negative size %" PRId64 " in header %s at "
                        "offset %" PRId64, h.size,
                        quote(q, sizeof q, h.name, strlen(h.name)), off);
  switch (h.typeflag) {
  case 'x': case 'L': case 'K':
    return start_special(p, &h, off);
  case 'g':
    return sn_set_error("tar: unsupported tar entry 'g' (global PAX header) "
                        "%s at offset %" PRId64,
                        quote(q, sizeof q, h.name, strlen(h.name)), off);
  default:
    return emit_entry(p, &h, off);
  }
}

/* ---- the public streaming interface ----------------------------------- */

struct sn_tar_parser *
sn_tar_parser_new(sn_tar_entry_fn fn, void *opaque)
{
  struct sn_tar_parser *p = calloc(1, sizeof *p);

  if (p == NULL) {
    sn_oom();
    return NULL;
  }
  p->fn = fn;
  p->opaque = opaque;
  p->state = ST_HEADER;
  p->chain_start = -1;
  return p;
}

void
sn_tar_parser_free(struct sn_tar_parser *p)
{
  if (p == NULL)
    return;
  buf_free(&p->pax_buf);
  buf_free(&p->lname);
  buf_free(&p->llink);
  free(p->recs);
  free(p->pax);
  free(p);
}

static int
fail(struct sn_tar_parser *p)
{
  snprintf(p->err, sizeof p->err, "%s", sn_error());
  p->state = ST_ERROR;
  return -1;
}

static int
replay_error(const struct sn_tar_parser *p)
{
  return sn_set_error("%s", p->err);
}

static size_t
min_size(size_t a, uint64_t b)
{
  return (uint64_t) a < b ? a : (size_t) b;
}

int
sn_tar_parser_feed(struct sn_tar_parser *p, const uint8_t *data, size_t len)
{
  size_t n;

  if (p->state == ST_ERROR)
    return replay_error(p);
  if (p->state != ST_END && (uint64_t) len > (uint64_t) (INT64_MAX - p->pos)) {
    sn_set_error("tar: stream longer than %" PRId64 " bytes", INT64_MAX);
    return fail(p);
  }
  while (len > 0 && p->state != ST_END) {
    int r = 0;

    switch (p->state) {
    case ST_HEADER:
    case ST_ZERO2:
      n = min_size(len, BLK - p->blk_len);
      memcpy(p->blk + p->blk_len, data, n);
      p->blk_len += n;
      p->pos += (int64_t) n;
      if (p->blk_len == BLK)
        r = handle_block(p);
      break;
    case ST_SPECIAL: {
      struct buf *b = p->special_dst;

      n = min_size(len, p->special_want - b->len);
      memcpy(b->data + b->len, data, n);
      b->len += n;
      p->pos += (int64_t) n;
      if (b->len == p->special_want)
        r = finish_special(p);
      break;
    }
    case ST_SKIP:
      n = min_size(len, (uint64_t) (p->skip_data + p->skip_pad));
      if ((int64_t) n <= p->skip_data)
        p->skip_data -= (int64_t) n;
      else {
        p->skip_pad -= (int64_t) n - p->skip_data;
        p->skip_data = 0;
      }
      p->pos += (int64_t) n;
      if (p->skip_data == 0 && p->skip_pad == 0)
        p->state = ST_HEADER;
      break;
    default:
      n = len;
      break;
    }
    if (r < 0)
      return fail(p);
    data += n;
    len -= n;
  }
  return 0;
}

int
sn_tar_parser_finish(struct sn_tar_parser *p, int64_t *end)
{
  switch (p->state) {
  case ST_ERROR:
    return replay_error(p);
  case ST_END:
    break;
  case ST_HEADER:
  case ST_ZERO2:
    /* Go: io.EOF with 0 bytes of a block read is the end; a partial
     * block is io.ErrUnexpectedEOF. */
    if (p->blk_len != 0) {
      sn_set_error("tar: truncated header block at offset %" PRId64,
                   p->pos - (int64_t) p->blk_len);
      return fail(p);
    }
    p->end = p->pos;
    p->state = ST_END;
    break;
  case ST_SPECIAL:
    sn_set_error("tar: truncated data of %s header %s at offset %" PRId64,
                 p->special_type == 'x' ? "PAX" : "GNU long name",
                 p->special_name, p->special_off);
    return fail(p);
  case ST_SKIP:
    /* Go: the data must be complete; its padding need not be. */
    if (p->skip_data > 0) {
      sn_set_error("tar: truncated data of %s at offset %" PRId64
                   " (%" PRId64 " bytes missing)", p->last_name, p->last_off,
                   p->skip_data);
      return fail(p);
    }
    p->end = p->pos;
    p->state = ST_END;
    break;
  }
  *end = p->end;
  return 0;
}

bool
sn_tar_parser_at_end(const struct sn_tar_parser *p)
{
  return p->marker;
}

/* ---- one entry's header chain from a buffer --------------------------- */

struct one {
  struct sn_tar_entry *e;
  size_t len;
  int n;
};

static int
dup_bytes(struct sn_bytes *dst, const struct sn_bytes *src)
{
  dst->data = malloc(src->len + 1);
  if (dst->data == NULL)
    return sn_oom();
  if (src->len)
    memcpy(dst->data, src->data, src->len);
  dst->data[src->len] = '\0';
  dst->len = src->len;
  return 0;
}

static int
copy_entry(void *opaque, const struct sn_tar_entry *src)
{
  struct one *o = opaque;
  struct sn_tar_entry *e = o->e;
  size_t i;

  if (src->data_offset != (int64_t) o->len) {
    char q[128];

    return sn_set_error("tar: header region of %zu bytes does not end with "
                        "the header of %s (its data starts at %" PRId64 ")",
                        o->len, quote(q, sizeof q, src->name.data,
                                      src->name.len), src->data_offset);
  }
  *e = *src;
  e->name.data = e->linkname.data = e->uname.data = e->gname.data = NULL;
  e->pax = NULL;
  e->npax = 0;
  o->n++;
  if (dup_bytes(&e->name, &src->name) < 0 ||
      dup_bytes(&e->linkname, &src->linkname) < 0 ||
      dup_bytes(&e->uname, &src->uname) < 0 ||
      dup_bytes(&e->gname, &src->gname) < 0)
    return -1;
  if (src->npax == 0)
    return 0;
  e->pax = calloc(src->npax, sizeof *e->pax);
  if (e->pax == NULL)
    return sn_oom();
  for (i = 0; i < src->npax; i++) {
    e->npax = i + 1;
    if (dup_bytes(&e->pax[i].key, &src->pax[i].key) < 0 ||
        dup_bytes(&e->pax[i].value, &src->pax[i].value) < 0)
      return -1;
  }
  return 0;
}

int
sn_tar_parse_headers(const uint8_t *buf, size_t len, struct sn_tar_entry *e)
{
  struct one o = { e, len, 0 };
  struct sn_tar_parser *p;
  int r;

  memset(e, 0, sizeof *e);
  p = sn_tar_parser_new(copy_entry, &o);
  if (p == NULL)
    return -1;
  r = sn_tar_parser_feed(p, buf, len);
  if (r == 0 && o.n == 0)
    r = sn_set_error("tar: header region of %zu bytes holds no complete "
                     "entry header", len);
  sn_tar_parser_free(p);
  if (r < 0)
    sn_tar_entry_clear(e);
  return r;
}

void
sn_tar_entry_clear(struct sn_tar_entry *e)
{
  size_t i;

  free(e->name.data);
  free(e->linkname.data);
  free(e->uname.data);
  free(e->gname.data);
  for (i = 0; i < e->npax; i++) {
    free(e->pax[i].key.data);
    free(e->pax[i].value.data);
  }
  free(e->pax);
  memset(e, 0, sizeof *e);
}

const char *
sn_tar_type_name(char typeflag)
{
  switch (typeflag) {
  case '0': return "reg";
  case '1': return "hardlink";
  case '2': return "symlink";
  case '3': return "char";
  case '4': return "block";
  case '5': return "dir";
  case '6': return "fifo";
  default: return NULL;
  }
}
