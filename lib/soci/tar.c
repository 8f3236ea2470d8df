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
 *
 * This file builds entries from a header chain and holds the streaming
 * interface; header blocks, numbers and PAX records are read in
 * tar-header.c; the parser's state is in tar-int.h.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "soci/tar.h"
#include "soci/tar-int.h"

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
    if (tar_key_is(k, "path"))
      e->name = *v;
    else if (tar_key_is(k, "linkpath"))
      e->linkname = *v;
    else if (tar_key_is(k, "uname"))
      e->uname = *v;
    else if (tar_key_is(k, "gname"))
      e->gname = *v;
    else if (tar_key_is(k, "uid"))
      r = tar_parse_int(v->data, v->len, &e->uid);
    else if (tar_key_is(k, "gid"))
      r = tar_parse_int(v->data, v->len, &e->gid);
    else if (tar_key_is(k, "size"))
      r = tar_parse_int(v->data, v->len, &e->size);
    else if (tar_key_is(k, "atime") || tar_key_is(k, "ctime"))
      r = tar_parse_pax_time(v->data, v->len, &sec, &nsec);
    else if (tar_key_is(k, "mtime")) {
      r = tar_parse_pax_time(v->data, v->len, &sec, &nsec);
      e->mtime_sec = sec;
      e->mtime_nsec = nsec;
    }
    if (r < 0) {
      char q[64];

      return sn_set_error("tar: invalid PAX record %s=%s at offset %" PRId64,
                          k->data, tar_quote(q, sizeof q, v->data, v->len),
                          off);
    }
  }
  return 0;
}

/* Whether the pending PAX records hold GNU.sparse.* (refused, as Go does). */
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

/* A typeflag for messages, into dst: 'c' when printable, else '\xNN'. */
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

/* Forget the pending header chain: the next header starts an entry. */
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
  tar_quote(q, sizeof q, e.name.data, e.name.len);

  data = tar_header_only(e.typeflag) ? 0 : e.size;
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
  p->skip_pad = tar_block_padding(data);
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
    if (tar_parse_pax(p) < 0)
      return -1;
  }
  else
    b->len = strlen(b->data);   /* Go's parseString */
  p->skip_data = 0;
  p->skip_pad = tar_block_padding((int64_t) p->special_want);
  p->state = p->skip_pad > 0 ? ST_SKIP : ST_HEADER;
  return 0;
}

/* A PAX 'x' or GNU 'L' / 'K' header: collect its data (bounded by
 * SN_TAR_MAX_SPECIAL) into the chain's buffer, in state ST_SPECIAL. */
static int
start_special(struct sn_tar_parser *p, const struct hdr *h, int64_t off)
{
  struct buf *b = h->typeflag == 'x' ? &p->pax_buf
                : h->typeflag == 'L' ? &p->lname : &p->llink;
  const char *what = h->typeflag == 'x' ? "PAX header" : "GNU long name";

  tar_quote(p->special_name, sizeof p->special_name, h->name, strlen(h->name));
  if (h->size > SN_TAR_MAX_SPECIAL)
    return sn_set_error("tar: %s %s at offset %" PRId64 " is too large (%"
                        PRId64 " bytes, limit %d)", what, p->special_name,
                        off, h->size, SN_TAR_MAX_SPECIAL);
  if (tar_buf_reserve(b, (size_t) h->size) < 0)
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
  if (tar_is_zero_block(p->blk)) {
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
  if (tar_parse_header(p->blk, off, &h) < 0)
    return -1;
  if (p->chain_start < 0)
    p->chain_start = off;
  if (!tar_header_only(h.typeflag) && h.size < 0)
    return sn_set_error("tar: negative size %" PRId64 " in header %s at "
                        "offset %" PRId64, h.size,
                        tar_quote(q, sizeof q, h.name, strlen(h.name)), off);
  switch (h.typeflag) {
  case 'x': case 'L': case 'K':
    return start_special(p, &h, off);
  case 'g':
    return sn_set_error("tar: unsupported tar entry 'g' (global PAX header) "
                        "%s at offset %" PRId64,
                        tar_quote(q, sizeof q, h.name, strlen(h.name)), off);
  default:
    return emit_entry(p, &h, off);
  }
}

/* ---- the public streaming interface ----------------------------------- */

/* A parser at the start of a stream, calling fn(opaque, entry) for each
 * entry; NULL after sn_oom. */
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
  tar_buf_free(&p->pax_buf);
  tar_buf_free(&p->lname);
  tar_buf_free(&p->llink);
  free(p->recs);
  free(p->pax);
  free(p);
}

/* Make the current error sticky: later calls replay it. */
static int
fail(struct sn_tar_parser *p)
{
  snprintf(p->err, sizeof p->err, "%s", sn_error());
  p->state = ST_ERROR;
  return -1;
}

/* Set the sticky error again: sn_error may hold another message by now. */
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

/* Header blocks are assembled in p->blk, PAX and long-name data in
 * special_dst, file data and padding only counted; after an error every call
 * replays it. */
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

/* sn_tar_parse_headers' callback: deep-copy the entry into o->e; it must
 * be the one whose data starts at the end of the buffer. */
static int
copy_entry(void *opaque, const struct sn_tar_entry *src)
{
  struct one *o = opaque;
  struct sn_tar_entry *e = o->e;

  if (src->data_offset != (int64_t) o->len) {
    char q[128];

    return sn_set_error("tar: header region of %zu bytes does not end with "
                        "the header of %s (its data starts at %" PRId64 ")",
                        o->len, tar_quote(q, sizeof q, src->name.data,
                                          src->name.len), src->data_offset);
  }
  *e = *src;
  e->name.data = e->linkname.data = e->uname.data = e->gname.data = NULL;
  e->pax = NULL;
  e->npax = 0;
  o->n++;
  if (sn_bytes_copy(&e->name, &src->name) < 0 ||
      sn_bytes_copy(&e->linkname, &src->linkname) < 0 ||
      sn_bytes_copy(&e->uname, &src->uname) < 0 ||
      sn_bytes_copy(&e->gname, &src->gname) < 0)
    return -1;
  return sn_pax_copy(&e->pax, &e->npax, src->pax, src->npax);
}

/* A parser fed buf once; copy_entry keeps its only entry. */
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
