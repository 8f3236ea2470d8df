/* soci-nbd tests: the tar parser (lib/soci/tar.c) against Go archive/tar
 * semantics: the A/B vectors, archives made by GNU tar checked against
 * python3's tarfile, hand-crafted headers (base-256, PAX, GNU long names,
 * legacy typeflags, STAR/GNU/V7 quirks), end-of-archive cases, hostile
 * inputs and random mutations.  Every archive is fed whole, byte by byte
 * and in random chunks, and the results must agree. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "tap.h"
#include "soci/tar.h"

/* ---- collecting entries ------------------------------------------------ */

struct coll {
  struct sn_tar_entry *v;
  size_t n, cap;
  size_t stop_at;          /* fail the callback on entry n (0: never) */
};

struct result {
  int rc;
  char err[1024];
  struct coll c;
  int64_t end;
  bool at_end;
};

static void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);

  if (p == NULL)
    abort();
  return p;
}

static void
dup_into(struct sn_bytes *d, const struct sn_bytes *s)
{
  d->data = xmalloc(s->len + 1);
  memcpy(d->data, s->data, s->len);
  d->data[s->len] = '\0';
  d->len = s->len;
}

static int
collect(void *opaque, const struct sn_tar_entry *e)
{
  struct coll *c = opaque;
  struct sn_tar_entry *d;
  size_t i;

  if (c->stop_at && c->n + 1 == c->stop_at)
    return sn_set_error("test: callback refuses entry %zu", c->n);
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 8;
    c->v = realloc(c->v, c->cap * sizeof *c->v);
    if (c->v == NULL)
      abort();
  }
  d = &c->v[c->n++];
  *d = *e;
  dup_into(&d->name, &e->name);
  dup_into(&d->linkname, &e->linkname);
  dup_into(&d->uname, &e->uname);
  dup_into(&d->gname, &e->gname);
  d->pax = e->npax ? xmalloc(e->npax * sizeof *d->pax) : NULL;
  for (i = 0; i < e->npax; i++) {
    dup_into(&d->pax[i].key, &e->pax[i].key);
    dup_into(&d->pax[i].value, &e->pax[i].value);
  }
  return 0;
}

static void
result_free(struct result *r)
{
  size_t i;

  for (i = 0; i < r->c.n; i++)
    sn_tar_entry_clear(&r->c.v[i]);
  free(r->c.v);
  memset(r, 0, sizeof *r);
}

static uint64_t rng_state;

static uint64_t
rnd(void)
{
  /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

enum feed_mode { WHOLE, BYTES, CHUNKS };

/* Parse d[0..len) fed as one piece, byte by byte, or in random chunks of
 * 1..1500 bytes (seeded); finish unless feeding failed. */
static void
run(const uint8_t *d, size_t len, enum feed_mode mode, uint64_t seed,
    size_t stop_at, struct result *r)
{
  struct sn_tar_parser *p;
  size_t off = 0;

  memset(r, 0, sizeof *r);
  r->c.stop_at = stop_at;
  r->end = -1;
  rng_state = seed | 1;
  p = sn_tar_parser_new(collect, &r->c);
  if (p == NULL)
    abort();
  while (off < len && r->rc == 0) {
    size_t n = len - off;

    if (mode == BYTES)
      n = 1;
    else if (mode == CHUNKS && n > 1)
      n = 1 + (size_t) (rnd() % (n < 1500 ? n : 1500));
    r->rc = sn_tar_parser_feed(p, d + off, n);
    off += n;
  }
  if (r->rc == 0)
    r->rc = sn_tar_parser_finish(p, &r->end);
  if (r->rc < 0)
    snprintf(r->err, sizeof r->err, "%s", sn_error());
  r->at_end = sn_tar_parser_at_end(p);
  sn_tar_parser_free(p);
}

static bool
bytes_eq(const struct sn_bytes *a, const struct sn_bytes *b)
{
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static bool
entry_eq(const struct sn_tar_entry *a, const struct sn_tar_entry *b)
{
  size_t i;

  if (!bytes_eq(&a->name, &b->name) || !bytes_eq(&a->linkname, &b->linkname) ||
      !bytes_eq(&a->uname, &b->uname) || !bytes_eq(&a->gname, &b->gname) ||
      a->typeflag != b->typeflag || a->mode != b->mode || a->uid != b->uid ||
      a->gid != b->gid || a->size != b->size || a->devmajor != b->devmajor ||
      a->devminor != b->devminor || a->mtime_sec != b->mtime_sec ||
      a->mtime_nsec != b->mtime_nsec || a->npax != b->npax ||
      a->header_offset != b->header_offset ||
      a->data_offset != b->data_offset)
    return false;
  for (i = 0; i < a->npax; i++)
    if (!bytes_eq(&a->pax[i].key, &b->pax[i].key) ||
        !bytes_eq(&a->pax[i].value, &b->pax[i].value))
      return false;
  return true;
}

static bool
result_eq(const struct result *a, const struct result *b)
{
  size_t i;

  if (a->rc != b->rc || strcmp(a->err, b->err) != 0 || a->c.n != b->c.n ||
      a->end != b->end || a->at_end != b->at_end)
    return false;
  for (i = 0; i < a->c.n; i++)
    if (!entry_eq(&a->c.v[i], &b->c.v[i]))
      return false;
  return true;
}

/* Parse whole; check byte-by-byte and 3 random chunkings agree. */
static void
run_all(const uint8_t *d, size_t len, struct result *r, const char *what)
{
  struct result o;
  bool same = true;
  int i;

  run(d, len, WHOLE, 0, 0, r);
  run(d, len, BYTES, 0, 0, &o);
  same = same && result_eq(r, &o);
  result_free(&o);
  for (i = 0; i < 3; i++) {
    run(d, len, CHUNKS, 1234 + (uint64_t) i, 0, &o);
    same = same && result_eq(r, &o);
    result_free(&o);
  }
  ok(same, "%s: same result whole, byte by byte and in random chunks", what);
}

static const char *
name_of(const struct sn_tar_entry *e)
{
  return e->name.data;
}

static bool
str_is(const struct sn_bytes *b, const char *s)
{
  return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

/* The PAX record list as "k=v;k=v". */
static void
pax_str(const struct sn_tar_entry *e, char *out, size_t n)
{
  size_t i, o = 0;

  out[0] = '\0';
  for (i = 0; i < e->npax && o < n; i++)
    o += (size_t) snprintf(out + o, n - o, "%s%.*s=%.*s", i ? ";" : "",
                           (int) e->pax[i].key.len, e->pax[i].key.data,
                           (int) e->pax[i].value.len, e->pax[i].value.data);
}

/* ---- building archives by hand ----------------------------------------- */

struct ar {
  uint8_t *d;
  size_t len, cap;
};

static void
ar_put(struct ar *a, const void *p, size_t n)
{
  if (a->len + n > a->cap) {
    a->cap = (a->len + n) * 2 + 1024;
    a->d = realloc(a->d, a->cap);
    if (a->d == NULL)
      abort();
  }
  if (p)
    memcpy(a->d + a->len, p, n);
  else
    memset(a->d + a->len, 0, n);
  a->len += n;
}

static void
ar_pad(struct ar *a)
{
  ar_put(a, NULL, (512 - a->len % 512) % 512);
}

static void
ar_end(struct ar *a)
{
  ar_put(a, NULL, 1024);
}

static void
ar_free(struct ar *a)
{
  free(a->d);
  memset(a, 0, sizeof *a);
}

enum fmt { V7, USTAR, GNU, STAR };

static void
octal(uint8_t *f, size_t n, int64_t v)
{
  char tmp[32];

  snprintf(tmp, sizeof tmp, "%0*" PRIo64, (int) n - 1, (uint64_t) v);
  memcpy(f, tmp, n - 1);
  f[n - 1] = '\0';
}

/* Two's complement base-256 in n bytes, top bit set. */
static void
base256(uint8_t *f, size_t n, int64_t v)
{
  size_t i;
  uint64_t u = (uint64_t) v;

  for (i = n; i-- > 0;) {
    f[i] = (uint8_t) u;
    u = v < 0 ? (u >> 8) | 0xff00000000000000ULL : u >> 8;
  }
  f[0] |= 0x80;
}

static void
hdr_sum(uint8_t *b)
{
  unsigned sum = 0;
  size_t i;

  memset(b + 148, ' ', 8);
  for (i = 0; i < 512; i++)
    sum += b[i];
  snprintf((char *) b + 148, 8, "%06o", sum);
  b[155] = ' ';
}

static void
hdr_init(uint8_t *b, const char *name, char type, int64_t size, enum fmt fmt)
{
  memset(b, 0, 512);
  memcpy(b, name, strlen(name) < 100 ? strlen(name) : 100);
  octal(b + 100, 8, 0644);
  octal(b + 108, 8, 1000);
  octal(b + 116, 8, 100);
  octal(b + 124, 12, size);
  octal(b + 136, 12, 1700000000);
  b[156] = (uint8_t) type;
  switch (fmt) {
  case V7:
    break;
  case STAR:
    memcpy(b + 508, "tar", 4);
    /* fallthrough */
  case USTAR:
    memcpy(b + 257, "ustar\0" "00", 8);
    break;
  case GNU:
    memcpy(b + 257, "ustar  ", 8);
    break;
  }
  if (fmt != V7) {
    memcpy(b + 265, "user", 4);
    memcpy(b + 297, "group", 5);
    octal(b + 329, 8, 0);
    octal(b + 337, 8, 0);
  }
  hdr_sum(b);
}

/* Header plus data (zero-filled if data is NULL), padded. */
static void
ar_file(struct ar *a, const uint8_t *hdr, const void *data, size_t n)
{
  ar_put(a, hdr, 512);
  ar_put(a, data, n);
  ar_pad(a);
}

static void
ar_simple(struct ar *a, const char *name, char type, const char *data)
{
  uint8_t h[512];
  size_t n = data ? strlen(data) : 0;

  hdr_init(h, name, type, (int64_t) n, USTAR);
  ar_file(a, h, data, n);
}

/* Append a PAX record "%d k=v\n" with the right length to a. */
static void
pax_rec(struct ar *a, const char *k, const char *v, size_t vlen)
{
  size_t base = strlen(k) + vlen + 3, n = base, digits;
  char num[32];

  for (;;) {
    digits = (size_t) snprintf(num, sizeof num, "%zu", n);
    if (base + digits == n)
      break;
    n = base + digits;
  }
  ar_put(a, num, digits);
  ar_put(a, " ", 1);
  ar_put(a, k, strlen(k));
  ar_put(a, "=", 1);
  ar_put(a, v, vlen);
  ar_put(a, "\n", 1);
}

/* An 'x' (or other special type) header carrying data. */
static void
ar_special(struct ar *a, char type, const char *name, const void *data,
           size_t n)
{
  uint8_t h[512];

  hdr_init(h, name, type, (int64_t) n, USTAR);
  ar_file(a, h, data, n);
}

/* ---- the A and B vectors --------------------------------------------- */

struct want {
  const char *name, *link;
  char type;
  int64_t size, mode, hdr, data;
  const char *pax;
};

static void
check_list(const struct result *r, const struct want *w, size_t n,
           const char *what)
{
  size_t i;

  ok(r->rc == 0, "%s: parses (%s)", what, r->rc ? r->err : "ok");
  ok(r->c.n == n, "%s: %zu entries (got %zu)", what, n, r->c.n);
  for (i = 0; i < n && i < r->c.n; i++) {
    const struct sn_tar_entry *e = &r->c.v[i];
    char pax[512];

    pax_str(e, pax, sizeof pax);
    ok(str_is(&e->name, w[i].name) && str_is(&e->linkname, w[i].link) &&
       e->typeflag == w[i].type && e->size == w[i].size &&
       e->mode == w[i].mode && e->header_offset == w[i].hdr &&
       e->data_offset == w[i].data && strcmp(pax, w[i].pax) == 0 &&
       e->uid == 0 && e->gid == 0 && str_is(&e->uname, "root") &&
       str_is(&e->gname, "root") && e->mtime_sec == 1700000000 &&
       e->mtime_nsec == 0 && e->devmajor == 0 && e->devminor == 0,
       "%s: entry %zu %s %s size %" PRId64 " header %" PRId64 " data %"
       PRId64 " pax {%s}", what, i, name_of(e),
       sn_tar_type_name(e->typeflag), e->size, e->header_offset,
       e->data_offset, pax);
  }
}

static void
test_vectors(void)
{
  static const struct want a[] = {
    { "etc/", "", '5', 0, 0755, 0, 512, "" },
    { "etc/hello.txt", "", '0', 12, 0644, 512, 1024, "" },
    { "etc/link", "hello.txt", '2', 0, 0777, 1536, 2048, "" },
    { "etc/hard", "etc/hello.txt", '1', 0, 0644, 2048, 2560, "" },
    { "etc/x", "", '0', 11, 0644, 2560, 4096, "SCHILY.xattr.user.k=v" },
    { "etc/.wh..wh..opq", "", '0', 0, 0644, 4608, 5120, "" },
  };
  static const struct want b[] = {
    { "a.txt", "", '0', 10800, 0644, 0, 512, "" },
    { "dir/", "", '5', 0, 0755, 11776, 12288, "" },
    { "dir/b.txt", "", '0', 15400, 0644, 12288, 12800, "" },
    { "dir/c.bin", "", '0', 40, 0644, 28672, 29184, "" },
  };
  struct result r;
  uint8_t *d;
  size_t len, i;

  d = slurp(DATADIR "/A.tar", &len);
  run_all(d, len, &r, "A.tar");
  check_list(&r, a, 6, "A.tar");
  ok(r.end == 6144 && r.at_end, "A.tar: end of archive at 6144 (got %"
     PRId64 "), marker seen", r.end);

  /* Each entry's header region parses alone to the same entry. */
  for (i = 0; i < r.c.n; i++) {
    const struct sn_tar_entry *s = &r.c.v[i];
    size_t h = (size_t) s->header_offset, n = (size_t) s->data_offset - h;
    struct sn_tar_entry e;
    int rc;

    rc = sn_tar_parse_headers(d + h, n, &e);
    e.header_offset += s->header_offset;
    e.data_offset += s->header_offset;
    ok(rc == 0 && entry_eq(&e, s), "A.tar: parse_headers on [%zu,%zu) "
       "gives %s", h, h + n, rc == 0 ? name_of(&e) : sn_error());
    sn_tar_entry_clear(&e);
    rc = sn_tar_parse_headers(d + h, n + 512, &e);
    ok(rc < 0 && e.name.data == NULL, "A.tar: parse_headers rejects "
       "[%zu,%zu) (extra block): %s", h, h + n + 512, sn_error());
    rc = sn_tar_parse_headers(d + h, n - 512, &e);
    ok(rc < 0, "A.tar: parse_headers rejects [%zu,%zu) (missing last "
       "block): %s", h, h + n - 512, sn_error());
    if (n > 512) {
      rc = sn_tar_parse_headers(d + h + 512, n - 512, &e);
      ok(rc < 0, "A.tar: parse_headers rejects [%zu,%zu) (missing first "
         "block): %s", h + 512, h + n, sn_error());
    }
    rc = sn_tar_parse_headers(d + h, n - 1, &e);
    ok(rc < 0, "A.tar: parse_headers rejects a region one byte short: %s",
       sn_error());
  }
  result_free(&r);

  /* Bytes after the marker are ignored, whatever they are. */
  memset(d + 6144, 0xa5, len - 6144);
  run_all(d, len, &r, "A.tar + garbage after the end");
  ok(r.rc == 0 && r.c.n == 6 && r.end == 6144,
     "A.tar: garbage after the end marker is ignored");
  result_free(&r);
  free(d);

  d = slurp(DATADIR "/B.tar", &len);
  run_all(d, len, &r, "B.tar");
  check_list(&r, b, 4, "B.tar");
  ok(r.end == 30720 && r.at_end && len == 30720,
     "B.tar: end of archive at 30720 (got %" PRId64 ")", r.end);
  result_free(&r);
  free(d);
}

/* ---- GNU tar output against python3's tarfile ------------------------- */

static const char oracle_py[] =
  "import sys, tarfile\n"
  "def hx(s):\n"
  "    if isinstance(s, str): s = s.encode('utf-8', 'surrogateescape')\n"
  "    return s.hex() or '-'\n"
  "t = tarfile.open(sys.argv[1], encoding='utf-8', errors='surrogateescape')\n"
  "for m in t:\n"
  "    ty = m.type.decode('latin-1')\n"
  "    name = m.name\n"
  "    if ty == '\\0': ty = '5' if name.endswith('/') else '0'\n"
  "    if ty == '5': name = name.rstrip('/')\n"
  "    p = m.pax_headers\n"
  "    if 'mtime' in p:\n"
  "        s, _, f = p['mtime'].partition('.')\n"
  "        sec, ns = int(s), int((f + '000000000')[:9])\n"
  "    else:\n"
  "        sec, ns = int(m.mtime), 0\n"
  "    keys = sorted(p, key=lambda k: k.encode('utf-8', 'surrogateescape'))\n"
  "    recs = ','.join(hx(k) + '=' + hx(p[k]) for k in keys) or '-'\n"
  "    print(hx(name), ty, m.size, hx(m.linkname), m.uid, m.gid, m.mode,\n"
  "          sec, ns, m.offset, m.offset_data, hx(m.uname), hx(m.gname),\n"
  "          m.devmajor, m.devminor, recs)\n"
  "print('END', t.offset + 1024)\n";

static void
hexs(char **o, const char *s, size_t n)
{
  size_t i;

  if (n == 0)
    *o += sprintf(*o, "-");
  for (i = 0; i < n; i++)
    *o += sprintf(*o, "%02x", (unsigned char) s[i]);
}

/* Our entry in the oracle's line format. */
static char *
entry_line(const struct sn_tar_entry *e)
{
  size_t cap = 64 + 2 * (e->name.len + e->linkname.len + e->uname.len +
                         e->gname.len) + 256, i, nl = e->name.len;
  char *s, *o;

  for (i = 0; i < e->npax; i++)
    cap += 2 * (e->pax[i].key.len + e->pax[i].value.len) + 8;
  s = o = xmalloc(cap);
  if (e->typeflag == '5')
    while (nl > 0 && e->name.data[nl - 1] == '/')
      nl--;
  hexs(&o, e->name.data, nl);
  o += sprintf(o, " %c %" PRId64 " ", e->typeflag, e->size);
  hexs(&o, e->linkname.data, e->linkname.len);
  o += sprintf(o, " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu32
               " %" PRId64 " %" PRId64 " ", e->uid, e->gid, e->mode,
               e->mtime_sec, e->mtime_nsec, e->header_offset, e->data_offset);
  hexs(&o, e->uname.data, e->uname.len);
  *o++ = ' ';
  hexs(&o, e->gname.data, e->gname.len);
  o += sprintf(o, " %" PRId64 " %" PRId64 " ", e->devmajor, e->devminor);
  if (e->npax == 0)
    *o++ = '-';
  for (i = 0; i < e->npax; i++) {
    if (i)
      *o++ = ',';
    hexs(&o, e->pax[i].key.data, e->pax[i].key.len);
    *o++ = '=';
    hexs(&o, e->pax[i].value.data, e->pax[i].value.len);
  }
  *o = '\0';
  return s;
}

static bool
have_tools(void)
{
  return system("tar --version >/dev/null 2>&1") == 0 &&
         system("python3 -c 'import tarfile' >/dev/null 2>&1") == 0;
}

static void
compare_with_oracle(const char *dir, const char *fmt, const char *opts,
                    const char *want_key)
{
  char cmd[4096], path[1024], line[65536];
  struct result r;
  uint8_t *d;
  size_t len, i = 0;
  FILE *f;
  bool all = true, count_ok = false;
  int64_t want_end = -1;

  snprintf(path, sizeof path, "%s/%s.tar", dir, fmt);
  snprintf(cmd, sizeof cmd, "cd '%s/src-%s' && tar --format=%s %s -cf '%s' "
           "--sort=name . 2>'%s/%s.log'", dir, fmt, fmt, opts, path, dir, fmt);
  if (!ok(system(cmd) == 0, "GNU tar --format=%s builds an archive", fmt)) {
    snprintf(cmd, sizeof cmd, "sed 's/^/# /' '%s/%s.log'", dir, fmt);
    if (system(cmd) != 0)
      diag("no log");
    return;
  }
  d = slurp(path, &len);
  run_all(d, len, &r, fmt);
  ok(r.rc == 0, "%s: parses (%s)", fmt, r.rc ? r.err : "ok");

  snprintf(cmd, sizeof cmd, "python3 '%s/oracle.py' '%s'", dir, path);
  f = popen(cmd, "r");
  if (f == NULL)
    abort();
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "END ", 4) == 0) {
      want_end = strtoll(line + 4, NULL, 10);
      count_ok = i == r.c.n;
      continue;
    }
    if (i < r.c.n) {
      char *mine = entry_line(&r.c.v[i]);

      if (strcmp(mine, line) != 0) {
        all = false;
        diag("entry %zu differs:\n#  tar.c:  %s\n#  python: %s", i, mine,
             line);
      }
      free(mine);
    }
    i++;
  }
  ok(pclose(f) == 0 && all && count_ok,
     "%s: %zu entries agree with python3 tarfile field by field "
     "(name, type, size, link, ids, mode, mtime, offsets, names, devs, PAX)",
     fmt, r.c.n);
  ok(r.end == want_end, "%s: end of archive %" PRId64 " (python: %" PRId64
     ")", fmt, r.end, want_end);
  if (want_key != NULL) {
    size_t k, nkey = 0;

    for (i = 0; i < r.c.n; i++)
      for (k = 0; k < r.c.v[i].npax; k++)
        nkey += str_is(&r.c.v[i].pax[k].key, want_key);
    ok(nkey == r.c.n && r.c.n > 0, "%s: every entry has a %s record", fmt,
       want_key);
  }
  result_free(&r);
  free(d);
}

/* Count entries of a type and find one by name suffix length. */
static void
check_long(const char *dir, const char *fmt, char special)
{
  char path[1024];
  struct result r;
  uint8_t *d;
  size_t len, i, nlong = 0, nspecial = 0;
  bool linklong = false;

  snprintf(path, sizeof path, "%s/%s.tar", dir, fmt);
  d = slurp(path, &len);
  run(d, len, WHOLE, 0, 0, &r);
  for (i = 0; i + 512 <= len; i += 512)
    if (d[i + 156] == (uint8_t) special &&
        memcmp(d + i + 257, "ustar", 5) == 0)
      nspecial++;
  for (i = 0; i < r.c.n; i++) {
    const struct sn_tar_entry *e = &r.c.v[i];

    if (e->name.len > 100)
      nlong++;
    if (e->typeflag == '2' && e->linkname.len == 150)
      linklong = true;
    if (e->header_offset + 512 >= e->data_offset && e->name.len > 100 &&
        special != 0)
      nlong += 100;   /* a long name without extra header blocks: wrong */
  }
  ok(nspecial > 0 && nlong >= 2 && nlong < 100 && linklong,
     "%s: %zu '%c' headers; long names (%zu) and a 150-byte symlink target "
     "come through, their header chains span several blocks", fmt,
     nspecial, special, nlong);
  result_free(&r);
  free(d);
}

/* GNU tar writes a global header ('g') for "keyword=value" pax options:
 * refused, as soci refuses it. */
static void
refuse_global(const char *dir)
{
  char cmd[4096], path[1024];
  struct result r;
  uint8_t *d;
  size_t len;

  snprintf(path, sizeof path, "%s/global.tar", dir);
  snprintf(cmd, sizeof cmd, "tar --format=pax --pax-option=zz.comment=hi "
           "-cf '%s' -C '%s/src-pax' . 2>/dev/null", path, dir);
  if (!ok(system(cmd) == 0, "GNU tar writes a pax archive with a global "
          "header"))
    return;
  d = slurp(path, &len);
  run_all(d, len, &r, "global header");
  ok(r.rc < 0 && r.c.n == 0 && d[156] == 'g' &&
     strstr(r.err, "unsupported tar entry 'g' (global PAX header)") &&
     strstr(r.err, "at offset 0"), "GNU tar's global header is refused: %s",
     r.err);
  result_free(&r);
  free(d);
}

static void
test_gnu_tar(void)
{
  char dir[] = "/tmp/test-tar.XXXXXX", cmd[8192], path[1024];
  char a[61], b[61], x[151];
  FILE *f;

  if (!have_tools()) {
    ok(1, "# SKIP GNU tar or python3 missing");
    return;
  }
  if (mkdtemp(dir) == NULL)
    abort();
  memset(a, 'a', 60);
  a[60] = '\0';
  memset(b, 'b', 60);
  b[60] = '\0';
  memset(x, 'x', 150);
  x[150] = '\0';

  snprintf(path, sizeof path, "%s/oracle.py", dir);
  f = fopen(path, "w");
  if (f == NULL)
    abort();
  fputs(oracle_py, f);
  fclose(f);

  /* gnu and pax: a 150+ byte path, a 150-byte symlink target, a hard link
   * to the long path (long link name), a fifo, sub-second mtimes. */
  snprintf(cmd, sizeof cmd,
           "set -e; for f in gnu pax; do s='%s'/src-$f; mkdir -p \"$s/d/%s/%s\";"
           " cd \"$s\"; printf 'hello\\n' > 'd/%s/%s/cccccccccccccccccccc.txt';"
           " ln 'd/%s/%s/cccccccccccccccccccc.txt' hard; ln -s '%s' lnk;"
           " mkfifo fifo; : > empty; mkdir emptydir;"
           " touch -d @1700000000.123456789 hard; touch -h -d @1600000000 lnk;"
           " done",
           dir, a, b, a, b, a, b, x);
  ok(system(cmd) == 0, "made GNU tar source trees in %s", dir);
  /* ustar: a path that needs the prefix field; v7: short names only. */
  snprintf(cmd, sizeof cmd,
           "set -e; s='%s'/src-ustar; mkdir -p \"$s/%s/%s\"; cd \"$s\";"
           " printf 'data' > '%s/%s/cccccccccccccccccccc.txt'; ln -s short lnk;"
           " printf 'x' > x1; ln x1 x2; mkfifo fifo;"
           " s='%s'/src-v7; mkdir -p \"$s/dir/sub\"; cd \"$s\";"
           " printf '0123456789' > dir/sub/f; ln -s f dir/sub/l; ln dir/sub/f h;"
           " : > e",
           dir, a, b, a, b, dir);
  ok(system(cmd) == 0, "made ustar / v7 source trees");

  compare_with_oracle(dir, "gnu", "", NULL);
  check_long(dir, "gnu", 'L');
  compare_with_oracle(dir, "pax", "", "ctime");
  check_long(dir, "pax", 'x');
  compare_with_oracle(dir, "ustar", "", NULL);
  compare_with_oracle(dir, "v7", "", NULL);
  /* The pax tree again with extra per-file records (an xattr and a
   * vendor key) and numeric owner 0. */
  compare_with_oracle(dir, "pax", "--numeric-owner --owner=0 --group=0 "
                      "--pax-option='SCHILY.xattr.user.k:=v,"
                      "zz.comment:=hello'", "SCHILY.xattr.user.k");
  refuse_global(dir);

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
}

/* ---- hand-made headers ------------------------------------------------- */

static void
test_crafted(void)
{
  struct ar a = { 0 };
  struct result r;
  uint8_t h[512];
  char pax[1024];

  /* Base-256 uid, gid, size, mtime (negative), devmajor. */
  hdr_init(h, "big", '0', 0, GNU);
  base256(h + 108, 8, 1LL << 40);
  base256(h + 116, 8, -5);
  base256(h + 124, 12, 600);
  base256(h + 136, 12, -1);
  base256(h + 329, 8, 300);
  hdr_sum(h);
  ar_file(&a, h, NULL, 600);
  ar_simple(&a, "next", '0', "x");
  ar_end(&a);
  run_all(a.d, a.len, &r, "base-256");
  ok(r.rc == 0 && r.c.n == 2 && r.c.v[0].uid == (1LL << 40) &&
     r.c.v[0].gid == -5 && r.c.v[0].size == 600 &&
     r.c.v[0].mtime_sec == -1 && r.c.v[0].devmajor == 300 &&
     r.c.v[0].data_offset == 512 && r.c.v[1].header_offset == 512 + 1024,
     "base-256 uid 2^40, gid -5, size 600, mtime -1, devmajor 300; data "
     "skipped by the decoded size");
  ok(r.end == (int64_t) a.len && r.at_end, "base-256: end %" PRId64, r.end);
  result_free(&r);
  ar_free(&a);

  /* Base-256 that overflows int64 is invalid. */
  hdr_init(h, "ovf", '0', 0, GNU);
  memset(h + 124, 0xff, 12);
  h[124] = 0x80;
  hdr_sum(h);
  ar_file(&a, h, NULL, 0);
  run_all(a.d, a.len, &r, "base-256 overflow");
  ok(r.rc < 0 && strstr(r.err, "invalid size field") &&
     strstr(r.err, "offset 0"), "base-256 overflow: %s", r.err);
  result_free(&r);
  ar_free(&a);

  /* Octal with leading spaces and trailing NULs / spaces. */
  hdr_init(h, "sp", '0', 0, USTAR);
  memcpy(h + 124, "   12 \0\0\0\0\0\0", 12);
  memcpy(h + 100, "\0 755  ", 8);
  hdr_sum(h);
  ar_file(&a, h, "0123456789", 10);
  ar_end(&a);
  run_all(a.d, a.len, &r, "octal padding");
  ok(r.rc == 0 && r.c.n == 1 && r.c.v[0].size == 10 &&
     r.c.v[0].mode == 0755, "octal fields with spaces and NULs around them");
  result_free(&r);
  ar_free(&a);

  /* Legacy '\0' typeflag: dir if the name ends in '/', else reg.  A '\0'
   * directory with a size has no data (Go re-checks after the mapping). */
  hdr_init(h, "olddir/", '\0', 100, V7);
  ar_put(&a, h, 512);
  hdr_init(h, "oldfile", '\0', 3, V7);
  ar_file(&a, h, "abc", 3);
  ar_end(&a);
  run_all(a.d, a.len, &r, "typeflag NUL");
  ok(r.rc == 0 && r.c.n == 2 && r.c.v[0].typeflag == '5' &&
     r.c.v[0].size == 100 && r.c.v[1].typeflag == '0' &&
     r.c.v[1].header_offset == 512 && r.c.v[1].data_offset == 1024 &&
     r.c.v[0].uname.len == 0,
     "'\\0' typeflag: \"olddir/\" -> dir (size 100 reported, no data), "
     "\"oldfile\" -> reg; V7 has no uname");
  result_free(&r);
  ar_free(&a);

  /* Header-only types skip no data, whatever their size field says. */
  hdr_init(h, "sym", '2', 5000, USTAR);
  memcpy(h + 157, "target", 6);
  hdr_sum(h);
  ar_put(&a, h, 512);
  hdr_init(h, "fifo", '6', 1, USTAR);
  ar_put(&a, h, 512);
  ar_simple(&a, "after", '0', "z");
  ar_end(&a);
  run_all(a.d, a.len, &r, "header-only");
  ok(r.rc == 0 && r.c.n == 3 && r.c.v[0].size == 5000 &&
     str_is(&r.c.v[0].linkname, "target") && r.c.v[1].header_offset == 512 &&
     r.c.v[2].header_offset == 1024 && r.c.v[2].data_offset == 1536,
     "symlink with size 5000 and fifo with size 1 carry no data");
  result_free(&r);
  ar_free(&a);

  /* A negative size is fine on a header-only type (Go ignores it) but an
   * error on a regular file. */
  hdr_init(h, "neglink", '1', 0, GNU);
  base256(h + 124, 12, -7);
  hdr_sum(h);
  ar_put(&a, h, 512);
  ar_end(&a);
  run_all(a.d, a.len, &r, "negative size hardlink");
  ok(r.rc == 0 && r.c.n == 1 && r.c.v[0].size == -7,
     "hardlink with size -7 is accepted, size reported as -7");
  result_free(&r);
  ar_free(&a);

  /* Signed checksum (Sun tar) is accepted. */
  hdr_init(h, "caf\xe9", '0', 0, USTAR);
  {
    int sum = 0, i;

    memset(h + 148, ' ', 8);
    for (i = 0; i < 512; i++)
      sum += (int8_t) h[i];
    snprintf((char *) h + 148, 8, "%06o", sum);
    h[155] = ' ';
  }
  ar_put(&a, h, 512);
  ar_end(&a);
  run_all(a.d, a.len, &r, "signed checksum");
  ok(r.rc == 0 && r.c.n == 1 && str_is(&r.c.v[0].name, "caf\xe9"),
     "a signed-byte checksum is accepted");
  result_free(&r);
  ar_free(&a);

  /* USTAR prefix; STAR prefix (131 bytes) and trailer; GNU has no prefix
   * unless atime/ctime do not parse (pre-Go-1.8 writers); V7 ignores
   * everything after the linkname. */
  hdr_init(h, "name", '0', 0, USTAR);
  memcpy(h + 345, "pre/fix", 7);
  hdr_sum(h);
  ar_put(&a, h, 512);
  hdr_init(h, "sname", '0', 0, STAR);
  memcpy(h + 345, "star", 4);
  octal(h + 476, 12, 5);
  hdr_sum(h);
  ar_put(&a, h, 512);
  hdr_init(h, "gname1", '0', 0, GNU);
  octal(h + 345, 12, 1700000000);
  hdr_sum(h);
  ar_put(&a, h, 512);
  hdr_init(h, "gname2", '0', 0, GNU);
  memcpy(h + 345, "oldgo", 5);
  hdr_sum(h);
  ar_put(&a, h, 512);
  hdr_init(h, "v7name", '0', 0, V7);
  memcpy(h + 265, "root", 4);
  memcpy(h + 345, "ignored", 7);
  hdr_sum(h);
  ar_put(&a, h, 512);
  ar_end(&a);
  run_all(a.d, a.len, &r, "prefixes");
  ok(r.rc == 0 && r.c.n == 5 && str_is(&r.c.v[0].name, "pre/fix/name") &&
     str_is(&r.c.v[1].name, "star/sname") &&
     str_is(&r.c.v[2].name, "gname1") &&
     str_is(&r.c.v[3].name, "oldgo/gname2") &&
     str_is(&r.c.v[4].name, "v7name") && r.c.v[4].uname.len == 0 &&
     str_is(&r.c.v[0].uname, "user") && str_is(&r.c.v[2].gname, "group"),
     "prefix: USTAR, STAR, GNU (none; Go's pre-1.8 fallback), V7 (none)");
  result_free(&r);
  ar_free(&a);

  /* STAR atime must parse (it is read with the main parser). */
  hdr_init(h, "sbad", '0', 0, STAR);
  memcpy(h + 476, "9z", 2);
  hdr_sum(h);
  ar_put(&a, h, 512);
  ar_end(&a);
  run_all(a.d, a.len, &r, "STAR bad atime");
  ok(r.rc < 0 && strstr(r.err, "atime"), "STAR bad atime: %s", r.err);
  result_free(&r);
  ar_free(&a);

  /* PAX: applied keys, sub-second and negative times, empty values kept
   * but not applied, duplicates (last wins), bytewise key order. */
  {
    struct ar p = { 0 };

    pax_rec(&p, "path", "pax/long/name", 13);
    pax_rec(&p, "linkpath", "pax-target", 10);
    pax_rec(&p, "uname", "paxuser", 7);
    pax_rec(&p, "gname", "", 0);
    pax_rec(&p, "uid", "+70000", 6);
    pax_rec(&p, "gid", "-3", 2);
    pax_rec(&p, "size", "5", 1);
    pax_rec(&p, "mtime", "1700000000.5", 12);
    pax_rec(&p, "b", "first", 5);
    pax_rec(&p, "SCHILY.xattr.user.z", "zz", 2);
    pax_rec(&p, "a", "1", 1);
    pax_rec(&p, "b", "second", 6);
    pax_rec(&p, "B", "upper", 5);
    pax_rec(&p, "SCHILY.xattr.security.capability", "\x01\0\x02", 3);
    ar_special(&a, 'x', "PaxHeaders/x", p.d, p.len);
    hdr_init(h, "short", '0', 99, USTAR);
    ar_file(&a, h, "hello", 5);
    ar_free(&p);

    pax_rec(&p, "mtime", "-1.25", 5);
    pax_rec(&p, "path", "", 0);
    pax_rec(&p, "atime", "12.3456789012345", 16);
    ar_special(&a, 'x', "PaxHeaders/y", p.d, p.len);
    ar_simple(&a, "keep", '2', NULL);
    ar_free(&p);

    pax_rec(&p, "mtime", "-0.5", 4);
    ar_special(&a, 'x', "PaxHeaders/z", p.d, p.len);
    ar_simple(&a, "neghalf", '5', NULL);
    ar_free(&p);
  }
  ar_end(&a);
  run_all(a.d, a.len, &r, "PAX");
  pax_str(&r.c.v[0], pax, sizeof pax);
  ok(r.rc == 0 && r.c.n == 3 && str_is(&r.c.v[0].name, "pax/long/name") &&
     str_is(&r.c.v[0].linkname, "pax-target") &&
     str_is(&r.c.v[0].uname, "paxuser") && str_is(&r.c.v[0].gname, "group") &&
     r.c.v[0].uid == 70000 && r.c.v[0].gid == -3 && r.c.v[0].size == 5 &&
     r.c.v[0].mtime_sec == 1700000000 &&
     r.c.v[0].mtime_nsec == 500000000 && r.c.v[0].header_offset == 0 &&
     r.c.v[0].data_offset == 1536,
     "PAX path/linkpath/uname/uid/gid/size/mtime applied, empty gname not");
  ok(r.rc == 0 && r.c.n == 3 && r.c.v[0].npax == 13 &&
     strcmp(pax, "B=upper;SCHILY.xattr.security.capability=\x01;"
            "SCHILY.xattr.user.z=zz;a=1;b=second;gid=-3;gname=;"
            "linkpath=pax-target;mtime=1700000000.5;path=pax/long/name;"
            "size=5;uid=+70000;uname=paxuser") == 0 &&
     memcmp(r.c.v[0].pax[1].value.data, "\x01\0\x02", 3) == 0 &&
     str_is(&r.c.v[0].pax[2].key, "SCHILY.xattr.user.z") &&
     str_is(&r.c.v[0].pax[3].key, "a") &&
     str_is(&r.c.v[0].pax[4].value, "second") &&
     str_is(&r.c.v[0].pax[5].key, "gid") &&
     str_is(&r.c.v[0].pax[6].key, "gname") &&
     r.c.v[0].pax[6].value.len == 0 &&
     str_is(&r.c.v[0].pax[10].key, "size") &&
     str_is(&r.c.v[0].pax[12].key, "uname"),
     "PAX records sorted bytewise, unique (last wins), empty value kept, "
     "value with a NUL kept");
  ok(r.rc == 0 && r.c.n == 3 && str_is(&r.c.v[1].name, "keep") &&
     r.c.v[1].mtime_sec == -2 && r.c.v[1].mtime_nsec == 750000000 &&
     r.c.v[1].header_offset == 2048 && r.c.v[1].data_offset == 3584 &&
     r.c.v[1].npax == 3 && r.c.v[2].mtime_sec == -1 &&
     r.c.v[2].mtime_nsec == 500000000,
     "PAX mtime -1.25 -> (-2, 0.75), -0.5 -> (-1, 0.5); empty path keeps the "
     "header name; a long atime fraction is fine");
  result_free(&r);
  ar_free(&a);

  /* Two 'x' headers in a row: the second replaces the first.  GNU L and
   * K apply to the next entry and win over PAX path; an empty L is
   * ignored. */
  {
    struct ar p = { 0 };

    pax_rec(&p, "path", "first", 5);
    pax_rec(&p, "uid", "1", 1);
    ar_special(&a, 'x', "x1", p.d, p.len);
    ar_free(&p);
    pax_rec(&p, "gid", "2", 1);
    ar_special(&a, 'x', "x2", p.d, p.len);
    ar_free(&p);
    ar_simple(&a, "plain", '0', NULL);

    pax_rec(&p, "path", "from-pax", 8);
    ar_special(&a, 'x', "x3", p.d, p.len);
    ar_free(&p);
  }
  {
    char longname[700], longlink[300];

    memset(longname, 'n', sizeof longname);
    memcpy(longname + 690, "/end\0junk", 9);
    longname[699] = 'j';
    memset(longlink, 'k', sizeof longlink);
    ar_special(&a, 'L', "././@LongLink", longname, sizeof longname);
    ar_special(&a, 'K', "././@LongLink", longlink, sizeof longlink);
    hdr_init(h, "short", '1', 0, GNU);
    ar_put(&a, h, 512);
    ar_special(&a, 'L', "././@LongLink", "\0ignored", 8);
    ar_simple(&a, "header-name", '0', "q");
  }
  ar_end(&a);
  run_all(a.d, a.len, &r, "PAX/GNU chains");
  ok(r.rc == 0 && r.c.n == 3 && str_is(&r.c.v[0].name, "plain") &&
     r.c.v[0].uid == 1000 && r.c.v[0].gid == 2 && r.c.v[0].npax == 1 &&
     r.c.v[0].header_offset == 0 && r.c.v[0].data_offset == 2560,
     "a second 'x' replaces the first (path/uid dropped, gid applied)");
  ok(r.rc == 0 && r.c.n == 3 && r.c.v[1].name.len == 694 &&
     memcmp(r.c.v[1].name.data + 690, "/end", 4) == 0 &&
     r.c.v[1].linkname.len == 300 && r.c.v[1].typeflag == '1' &&
     r.c.v[1].npax == 1 && r.c.v[1].header_offset == 2560 &&
     r.c.v[1].data_offset == 2560 + 1024 + 1536 + 1024 + 512,
     "GNU L (up to its NUL) and K apply and win over PAX path; chain from "
     "the 'x' header (%" PRId64 ", %" PRId64 ")",
     r.c.n > 1 ? r.c.v[1].header_offset : -1,
     r.c.n > 1 ? r.c.v[1].data_offset : -1);
  ok(r.rc == 0 && r.c.n == 3 && str_is(&r.c.v[2].name, "header-name") &&
     r.c.v[2].npax == 0, "an empty GNU long name is ignored");
  result_free(&r);
  ar_free(&a);

  /* A callback failure stops the parse with its message. */
  ar_simple(&a, "one", '0', "1");
  ar_simple(&a, "two", '0', "2");
  ar_end(&a);
  run(a.d, a.len, WHOLE, 0, 2, &r);
  ok(r.rc < 0 && r.c.n == 1 && strstr(r.err, "callback refuses"),
     "a callback error stops parsing: %s", r.err);
  result_free(&r);
  ar_free(&a);

  ok(strcmp(sn_tar_type_name('0'), "reg") == 0 &&
     strcmp(sn_tar_type_name('1'), "hardlink") == 0 &&
     strcmp(sn_tar_type_name('2'), "symlink") == 0 &&
     strcmp(sn_tar_type_name('3'), "char") == 0 &&
     strcmp(sn_tar_type_name('4'), "block") == 0 &&
     strcmp(sn_tar_type_name('5'), "dir") == 0 &&
     strcmp(sn_tar_type_name('6'), "fifo") == 0 &&
     sn_tar_type_name('7') == NULL && sn_tar_type_name('x') == NULL,
     "type names");
}

/* ---- where the archive ends ------------------------------------------- */

static void
test_end(void)
{
  struct ar a = { 0 };
  struct result r;
  uint8_t h[512];

  ar_simple(&a, "f", '0', "12345");         /* 1024 bytes */

  run_all(a.d, 1024, &r, "EOF at an entry boundary");
  ok(r.rc == 0 && r.c.n == 1 && r.end == 1024 && !r.at_end,
     "EOF right after an entry: end 1024, no marker");
  result_free(&r);

  run_all(a.d, 512 + 5, &r, "EOF in padding");
  ok(r.rc == 0 && r.c.n == 1 && r.end == 517,
     "EOF inside the padding after data is Go's io.EOF: end %" PRId64, r.end);
  result_free(&r);

  run_all(a.d, 512 + 3, &r, "EOF in data");
  ok(r.rc < 0 && r.c.n == 1 && strstr(r.err, "truncated data") &&
     strstr(r.err, "\"f\"") && strstr(r.err, "2 bytes missing"),
     "EOF inside data: %s", r.err);
  result_free(&r);

  run_all(a.d, 100, &r, "EOF in a header");
  ok(r.rc < 0 && r.c.n == 0 && strstr(r.err, "truncated header block at "
                                              "offset 0"),
     "EOF inside a header: %s", r.err);
  result_free(&r);

  run_all(a.d, 0, &r, "empty stream");
  ok(r.rc == 0 && r.c.n == 0 && r.end == 0, "an empty stream ends at 0");
  result_free(&r);

  ar_put(&a, NULL, 512);                    /* one zero block */
  run_all(a.d, a.len, &r, "one zero block");
  ok(r.rc == 0 && r.c.n == 1 && r.end == 1536 && !r.at_end,
     "EOF after one zero block: end 1536");
  result_free(&r);

  run_all(a.d, a.len - 10, &r, "partial zero block");
  ok(r.rc < 0 && strstr(r.err, "truncated header"),
     "EOF inside the first zero block: %s", r.err);
  result_free(&r);

  ar_put(&a, NULL, 100);
  run_all(a.d, a.len, &r, "zero block then partial block");
  ok(r.rc < 0 && strstr(r.err, "truncated header block at offset 1536"),
     "EOF inside the second zero block: %s", r.err);
  result_free(&r);
  a.len -= 100;

  hdr_init(h, "late", '0', 0, USTAR);
  ar_put(&a, h, 512);
  run_all(a.d, a.len, &r, "zero block then header");
  ok(r.rc < 0 && r.c.n == 1 &&
     strstr(r.err, "zero block followed by a non-zero block at offset 1536"),
     "zero block then a valid header: %s", r.err);
  result_free(&r);
  a.len -= 512;

  ar_put(&a, NULL, 512);
  a.d[a.len - 1] = 1;
  run_all(a.d, a.len, &r, "zero block then garbage");
  ok(r.rc < 0 && strstr(r.err, "zero block followed"),
     "zero block then garbage: %s", r.err);
  result_free(&r);
  a.d[a.len - 1] = 0;

  ar_put(&a, "trailing junk", 13);
  run_all(a.d, a.len, &r, "two zero blocks then junk");
  ok(r.rc == 0 && r.end == 2048 && r.at_end,
     "two zero blocks end the archive at 2048, junk after them ignored");
  result_free(&r);
  ar_free(&a);

  /* Metadata headers followed by the end: dropped, as Go does. */
  {
    struct ar p = { 0 };

    pax_rec(&p, "path", "dangling", 8);
    ar_special(&a, 'x', "x", p.d, p.len);
    ar_free(&p);
  }
  run_all(a.d, a.len, &r, "PAX then EOF");
  ok(r.rc == 0 && r.c.n == 0 && r.end == 1024,
     "a PAX header then EOF: no entry, end 1024");
  result_free(&r);
  run_all(a.d, 517, &r, "EOF in PAX data");
  ok(r.rc < 0 && strstr(r.err, "truncated data of PAX header"),
     "EOF inside PAX data: %s", r.err);
  result_free(&r);
  ar_end(&a);
  run_all(a.d, a.len, &r, "PAX then end marker");
  ok(r.rc == 0 && r.c.n == 0 && r.end == 2048 && r.at_end,
     "a PAX header then the end marker: no entry, end 2048");
  result_free(&r);
  ar_free(&a);
}

/* ---- hostile inputs ---------------------------------------------------- */

static void
expect_error(struct ar *a, const char *what, const char *needle)
{
  struct result r;

  ar_end(a);
  run_all(a->d, a->len, &r, what);
  ok(r.rc < 0 && strstr(r.err, needle) != NULL && strchr(r.err, '\n') == NULL,
     "%s: %s", what, r.err);
  result_free(&r);
  ar_free(a);
}

static void
pax_then_file(struct ar *a, const char *data, size_t n)
{
  ar_special(a, 'x', "PaxHeader", data, n);
  ar_simple(a, "file", '0', "data");
}

static void
test_hostile(void)
{
  struct ar a = { 0 };
  uint8_t h[512];
  struct result r;

  hdr_init(h, "badsum", '0', 0, USTAR);
  h[10] ^= 1;
  ar_put(&a, h, 512);
  expect_error(&a, "bad checksum", "bad header checksum \"badsum\" at offset 0");

  hdr_init(h, "nosum", '0', 0, USTAR);
  memcpy(h + 148, "abcdefg", 7);
  ar_simple(&a, "ok", '0', "x");
  ar_put(&a, h, 512);
  expect_error(&a, "checksum not octal", "bad header checksum \"nosum\" at "
               "offset 1024");

  hdr_init(h, "badmode", '0', 0, USTAR);
  memcpy(h + 100, "0000789", 7);
  hdr_sum(h);
  ar_put(&a, h, 512);
  expect_error(&a, "invalid octal", "invalid mode field in header \"badmode\"");

  hdr_init(h, "neg", '0', 0, GNU);
  base256(h + 124, 12, -512);
  hdr_sum(h);
  ar_put(&a, h, 512);
  expect_error(&a, "negative size", "negative size -512");

  hdr_init(h, "huge", '0', 0, GNU);
  base256(h + 124, 12, INT64_MAX - 100);
  hdr_sum(h);
  ar_put(&a, h, 512);
  expect_error(&a, "size near INT64_MAX", "is too large");

  hdr_init(h, "huge2", '0', 0, GNU);
  base256(h + 124, 12, INT64_MAX);
  hdr_sum(h);
  ar_put(&a, h, 512);
  expect_error(&a, "size INT64_MAX", "is too large");

  {
    struct ar p = { 0 };

    pax_rec(&p, "size", "9223372036854775000", 19);
    ar_special(&a, 'x', "P", p.d, p.len);
    ar_free(&p);
    ar_simple(&a, "f", '0', NULL);
    expect_error(&a, "PAX size near INT64_MAX", "is too large");

    pax_rec(&p, "size", "9223372036854775808", 19);
    ar_special(&a, 'x', "P", p.d, p.len);
    ar_free(&p);
    ar_simple(&a, "f", '0', NULL);
    expect_error(&a, "PAX size overflowing int64", "invalid PAX record size=");

    pax_rec(&p, "size", "-1", 2);
    ar_special(&a, 'x', "P", p.d, p.len);
    ar_free(&p);
    ar_simple(&a, "f", '0', NULL);
    expect_error(&a, "PAX negative size", "negative size -1");
  }

  /* Special headers larger than 1 MiB, or with a negative size. */
  hdr_init(h, "PaxHeader", 'x', SN_TAR_MAX_SPECIAL + 1, USTAR);
  ar_put(&a, h, 512);
  expect_error(&a, "PAX > 1 MiB", "is too large (1048577 bytes, limit "
               "1048576)");
  hdr_init(h, "@LongLink", 'L', 0, GNU);
  base256(h + 124, 12, 1LL << 40);
  hdr_sum(h);
  ar_put(&a, h, 512);
  expect_error(&a, "GNU long name of 1 TiB", "GNU long name \"@LongLink\"");
  hdr_init(h, "@LongLink", 'K', 0, GNU);
  base256(h + 124, 12, -1);
  hdr_sum(h);
  ar_put(&a, h, 512);
  expect_error(&a, "GNU long link with negative size", "negative size -1");

  /* Bad PAX records, each one as Go's parsePAXRecord rejects it. */
  pax_then_file(&a, "99 a=b\n", 7);
  expect_error(&a, "PAX length beyond the data", "invalid PAX record \"99 a=b?\"");
  pax_then_file(&a, "7 a=bcd", 7);
  expect_error(&a, "PAX record without its newline", "invalid PAX record");
  pax_then_file(&a, "6 abc\n", 6);
  expect_error(&a, "PAX record without '='", "invalid PAX record");
  pax_then_file(&a, "6 =bc\n", 6);
  expect_error(&a, "PAX record with an empty key", "invalid PAX record");
  pax_then_file(&a, "3 a\n", 4);
  expect_error(&a, "PAX length below 5", "invalid PAX record");
  pax_then_file(&a, "x6 a=b\n", 7);
  expect_error(&a, "PAX length not a number", "invalid PAX record");
  pax_then_file(&a, "6a=b\n", 5);
  expect_error(&a, "PAX record without a space", "invalid PAX record");
  pax_then_file(&a, "12 path=a\0b\n", 12);
  expect_error(&a, "PAX path with a NUL", "invalid PAX record");
  pax_then_file(&a, "8 k\0y=v\n", 8);
  expect_error(&a, "PAX key with a NUL", "invalid PAX record");
  pax_then_file(&a, "6 a=b\n\0\0\0", 9);
  expect_error(&a, "PAX data with trailing NULs", "invalid PAX record");
  pax_then_file(&a, "12 mtime=1x\n", 12);
  expect_error(&a, "PAX mtime not a number", "invalid PAX record mtime=\"1x\"");
  pax_then_file(&a, "13 mtime=1.x\n", 13);
  expect_error(&a, "PAX mtime fraction not a number", "invalid PAX record");
  pax_then_file(&a, "12 ctime=.5\n", 12);
  expect_error(&a, "PAX ctime without seconds", "invalid PAX record ctime=");
  pax_then_file(&a, "11 uid=abc\n", 11);
  expect_error(&a, "PAX uid not a number", "invalid PAX record uid=\"abc\"");

  /* Refused entry types. */
  hdr_init(h, "pax_global_header", 'g', 0, USTAR);
  ar_simple(&a, "before", '0', "b");
  ar_put(&a, h, 512);
  expect_error(&a, "global PAX header", "unsupported tar entry 'g' (global "
               "PAX header) \"pax_global_header\" at offset 1024");
  hdr_init(h, "sparse", 'S', 0, GNU);
  ar_put(&a, h, 512);
  expect_error(&a, "GNU sparse 'S'", "unsupported tar entry 'S' (GNU sparse "
               "file) \"sparse\" at offset 0");
  {
    struct ar p = { 0 };

    pax_rec(&p, "GNU.sparse.major", "1", 1);
    pax_rec(&p, "GNU.sparse.minor", "0", 1);
    pax_rec(&p, "GNU.sparse.name", "real", 4);
    ar_special(&a, 'x', "P", p.d, p.len);
    ar_free(&p);
    ar_simple(&a, "GNUSparseFile.0/real", '0', "packed");
    expect_error(&a, "PAX GNU.sparse.major", "unsupported GNU sparse file "
                 "(PAX GNU.sparse.* records) \"GNUSparseFile.0/real\" at "
                 "offset 1024");
    pax_rec(&p, "GNU.sparse.numbytes", "5", 1);
    ar_special(&a, 'x', "P", p.d, p.len);
    ar_free(&p);
    ar_simple(&a, "f", '0', NULL);
    expect_error(&a, "PAX sparse map out of order", "invalid GNU sparse map");
  }
  hdr_init(h, "contig", '7', 0, USTAR);
  ar_put(&a, h, 512);
  expect_error(&a, "typeflag '7'", "unsupported tar entry '7' \"contig\"");
  hdr_init(h, "volume", 'V', 0, GNU);
  ar_put(&a, h, 512);
  expect_error(&a, "typeflag 'V'", "unsupported tar entry 'V'");
  hdr_init(h, "ctl", '\x01', 0, USTAR);
  ar_put(&a, h, 512);
  expect_error(&a, "typeflag 0x01", "unsupported tar entry '\\x01'");
  {
    struct ar p = { 0 };

    pax_rec(&p, "path", "renamed/by/pax", 14);
    ar_special(&a, 'x', "P", p.d, p.len);
    ar_free(&p);
    hdr_init(h, "m", 'M', 0, GNU);
    ar_put(&a, h, 512);
    expect_error(&a, "typeflag 'M' with PAX path", "'M' \"renamed/by/pax\" "
                 "at offset 1024");
  }

  /* Errors are sticky. */
  {
    struct sn_tar_parser *p = sn_tar_parser_new(collect, &r.c);
    int64_t end;

    memset(&r, 0, sizeof r);
    hdr_init(h, "x", '0', 0, USTAR);
    h[0] = 'y';
    ok(sn_tar_parser_feed(p, h, 512) < 0, "bad block fails");
    sn_set_error("something else");
    ok(sn_tar_parser_feed(p, h, 1) < 0 && strstr(sn_error(), "checksum"),
       "feed after an error fails again with the same message");
    sn_set_error("something else");
    ok(sn_tar_parser_finish(p, &end) < 0 && strstr(sn_error(), "checksum"),
       "finish after an error fails with the same message");
    sn_tar_parser_free(p);
    result_free(&r);
  }
}

/* ---- random mutations of A.tar ---------------------------------------- */

static void
test_mutations(void)
{
  uint8_t *orig, *d;
  size_t len, i, k, agree = 0, ok_runs = 0, n = 3000;
  struct result r1, r2;

  orig = slurp(DATADIR "/A.tar", &len);
  d = xmalloc(len);
  rng_state = 42;
  for (i = 0; i < n; i++) {
    uint64_t seed;
    size_t cut = len, nflip;

    rng_state = 0x9e3779b97f4a7c15ULL * (i + 1);
    memcpy(d, orig, len);
    nflip = 1 + (size_t) (rnd() % 8);
    for (k = 0; k < nflip; k++) {
      size_t at = (size_t) (rnd() % 6144);

      switch (rnd() % 4) {
      case 0: d[at] ^= (uint8_t) (1u << (rnd() % 8)); break;
      case 1: d[at] = (uint8_t) rnd(); break;
      case 2: d[at] = (uint8_t) "0 7\0\x80\xff=\n"[rnd() % 8]; break;
      default: d[at] = 0; break;
      }
    }
    /* Keep some mutants valid by fixing their checksums. */
    if (rnd() % 2)
      for (k = 0; k + 512 <= 6144; k += 512)
        if (memcmp(orig + k + 257, "ustar", 5) == 0)
          hdr_sum(d + k);
    if (rnd() % 4 == 0)
      cut = (size_t) (rnd() % len);
    seed = rnd();
    run(d, cut, WHOLE, 0, 0, &r1);
    run(d, cut, i % 10 == 0 ? BYTES : CHUNKS, seed, 0, &r2);
    if (result_eq(&r1, &r2))
      agree++;
    if (r1.rc == 0)
      ok_runs++;
    if (r1.rc < 0 && (strchr(r1.err, '\n') || strncmp(r1.err, "tar: ", 5)))
      diag("bad message: %s", r1.err);
    result_free(&r1);
    result_free(&r2);
  }
  ok(agree == n, "%zu random mutations of A.tar: no crash, whole and "
     "chunked feeds agree on all (%zu parsed, %zu refused)", n, ok_runs,
     n - ok_runs);
  free(d);
  free(orig);
}

int
main(void)
{
  test_vectors();
  test_crafted();
  test_end();
  test_hostile();
  test_gnu_tar();
  test_mutations();
  return done_testing();
}
