/* soci-nbd: zinfo — the places where decompression of a layer can restart.
 *
 * This file reads and writes soci's gzip checkpoint blob, derives the zinfo
 * of a decoded ztoc (checking it against the ztoc), computes span geometry,
 * decodes one span, and builds checkpoints plus span digests in a single
 * streaming pass over a layer (a zran.c-style inflate loop).  The
 * specification is docs/soci-format.md §4.
 */
#include <config.h>

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "util/err.h"
#include "inflate/inflate.h"
#include "soci/zinfo.h"

#if SN_INFLATE_WINSIZE != SN_ZINFO_WINSIZE
#error "checkpoint windows are the decoder's history"
#endif

/* zlib takes uInt lengths: feed it at most this much at a time. */
#define ZCHUNK ((size_t) 1 << 30)

/* ---- little-endian helpers ------------------------------------------- */

static uint64_t
get_le(const uint8_t *p, int n)
{
  uint64_t v = 0;

  while (n-- > 0)
    v = v << 8 | p[n];
  return v;
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
  int i;

  for (i = 0; i < n; i++, v >>= 8)
    p[i] = (uint8_t) v;
}

/* ---- the zinfo object --------------------------------------------------- */

void
sn_zinfo_free(struct sn_zinfo *zi)
{
  size_t i;

  if (zi == NULL)
    return;
  if (zi->cp)
    for (i = 0; i < zi->nspans; i++)
      free(zi->cp[i].window);
  free(zi->cp);
  free(zi);
}

/* A gzip zinfo with n checkpoints, windows not yet allocated. */
static struct sn_zinfo *
zinfo_new_gzip(int64_t span_size, size_t n)
{
  struct sn_zinfo *zi = calloc(1, sizeof *zi);

  if (zi == NULL || (zi->cp = calloc(n, sizeof *zi->cp)) == NULL) {
    free(zi);
    sn_oom();
    return NULL;
  }
  zi->compression = SN_COMP_GZIP;
  zi->span_size = span_size;
  zi->nspans = n;
  return zi;
}

/* Checks that hold for any checkpoint table: a sane first checkpoint,
 * bits in range, offsets non-negative and non-decreasing. */
static int
check_checkpoints(const struct sn_zinfo *zi)
{
  size_t i;

  if (zi->cp[0].out != 0)
    return sn_set_error("zinfo: checkpoint 0 is at uncompressed offset "
                        "%" PRId64 ", not 0", zi->cp[0].out);
  for (i = 0; i < zi->nspans; i++) {
    const struct sn_checkpoint *c = &zi->cp[i];

    if (c->bits > 7)
      return sn_set_error("zinfo: checkpoint %zu has %u bits (max 7)",
                          i, (unsigned) c->bits);
    if (c->in < 0 || c->out < 0 || (c->bits && c->in < 1))
      return sn_set_error("zinfo: checkpoint %zu has a bad offset "
                          "(in %" PRId64 ", out %" PRId64 ")",
                          i, c->in, c->out);
    if (i > 0 && (c->in < c[-1].in || c->out < c[-1].out))
      return sn_set_error("zinfo: checkpoint %zu goes backwards "
                          "(in %" PRId64 ", out %" PRId64 ")",
                          i, c->in, c->out);
  }
  return 0;
}

struct sn_zinfo *
sn_zinfo_parse_gzip(const uint8_t *blob, size_t len)
{
  struct sn_zinfo *zi;
  const uint8_t *p;
  uint64_t body;
  int32_t count;
  int64_t span;
  size_t i = 0;

  if (blob == NULL || len < SN_ZINFO_HEADER_LEN) {
    sn_set_error("zinfo: blob too short (%zu bytes)", len);
    return NULL;
  }
  count = (int32_t) get_le(blob, 4);
  span = (int64_t) get_le(blob + 4, 8);
  body = len - SN_ZINFO_HEADER_LEN;
  if (count < 1) {
    sn_set_error("zinfo: bad checkpoint count %" PRId32, count);
    return NULL;
  }
  /* v2 holds every checkpoint; legacy v1 leaves out checkpoint 0. */
  if (body != (uint64_t) count * SN_ZINFO_CP_LEN &&
      body != (uint64_t) (count - 1) * SN_ZINFO_CP_LEN) {
    sn_set_error("zinfo: blob of %zu bytes cannot hold %" PRId32
                 " checkpoints", len, count);
    return NULL;
  }
  if (span < 0) {
    sn_set_error("zinfo: negative span size %" PRId64, span);
    return NULL;
  }

  zi = zinfo_new_gzip(span, (size_t) count);
  if (zi == NULL)
    return NULL;
  p = blob + SN_ZINFO_HEADER_LEN;
  if (body != (uint64_t) count * SN_ZINFO_CP_LEN) {
    /* v1: the implied checkpoint 0 right after a 10-byte gzip header. */
    zi->cp[0].in = 10;
    zi->cp[0].window = calloc(1, SN_ZINFO_WINSIZE);
    if (zi->cp[0].window == NULL)
      goto oom;
    i = 1;
  }
  for (; i < zi->nspans; i++, p += SN_ZINFO_CP_LEN) {
    struct sn_checkpoint *c = &zi->cp[i];

    c->in = (int64_t) get_le(p, 8);
    c->out = (int64_t) get_le(p + 8, 8);
    c->bits = p[16];
    c->window = malloc(SN_ZINFO_WINSIZE);
    if (c->window == NULL)
      goto oom;
    memcpy(c->window, p + 17, SN_ZINFO_WINSIZE);
  }
  if (check_checkpoints(zi) == -1) {
    sn_zinfo_free(zi);
    return NULL;
  }
  return zi;

oom:
  sn_oom();
  sn_zinfo_free(zi);
  return NULL;
}

int
sn_zinfo_serialize_gzip(const struct sn_zinfo *zi, uint8_t **out,
                        size_t *len)
{
  uint8_t *buf, *p;
  size_t i, n;

  if (zi->compression != SN_COMP_GZIP || zi->cp == NULL)
    return sn_set_error("zinfo: not a gzip checkpoint table");
  if (zi->nspans < 1 || zi->nspans > INT32_MAX ||
      zi->nspans > (SIZE_MAX - SN_ZINFO_HEADER_LEN) / SN_ZINFO_CP_LEN)
    return sn_set_error("zinfo: cannot serialize %zu checkpoints",
                        zi->nspans);
  n = SN_ZINFO_HEADER_LEN + zi->nspans * SN_ZINFO_CP_LEN;
  buf = malloc(n);
  if (buf == NULL)
    return sn_oom();
  put_le(buf, zi->nspans, 4);
  put_le(buf + 4, (uint64_t) zi->span_size, 8);
  p = buf + SN_ZINFO_HEADER_LEN;
  for (i = 0; i < zi->nspans; i++, p += SN_ZINFO_CP_LEN) {
    const struct sn_checkpoint *c = &zi->cp[i];

    put_le(p, (uint64_t) c->in, 8);
    put_le(p + 8, (uint64_t) c->out, 8);
    p[16] = c->bits;
    if (c->window)
      memcpy(p + 17, c->window, SN_ZINFO_WINSIZE);
    else
      memset(p + 17, 0, SN_ZINFO_WINSIZE);
  }
  *out = buf;
  *len = n;
  return 0;
}

/* ---- zinfo of a ztoc --------------------------------------------------- */

/* What the snapshotter demands of a gzip ztoc's spans: each span but the
 * last is non-empty on both sides, and nothing starts past the blob. */
static int
check_gzip_spans(const struct sn_zinfo *zi)
{
  size_t i;

  for (i = 0; i < zi->nspans; i++) {
    const struct sn_checkpoint *c = &zi->cp[i];

    if (c->in > zi->compressed_size)
      return sn_set_error("ztoc: checkpoint %zu at compressed offset %"
                          PRId64 " is past the layer end (%" PRId64 ")",
                          i, c->in, zi->compressed_size);
    if (i + 1 < zi->nspans &&
        (c->in - (c->bits ? 1 : 0) >= c[1].in || c->out >= c[1].out))
      return sn_set_error("ztoc: span %zu is empty", i);
  }
  return 0;
}

static struct sn_zinfo *
zinfo_of_tar(const struct sn_ztoc *z)
{
  struct sn_zinfo *zi;
  int64_t span, size, n;

  if (sn_tarzinfo_decode(z->checkpoints, z->checkpoints_len,
                         &span, &size) == -1)
    return NULL;
  if (span <= 0) {
    sn_set_error("ztoc: uncompressed layer with span size %" PRId64, span);
    return NULL;
  }
  if (size <= 0 || size != z->compressed_size) {
    sn_set_error("ztoc: TarZinfo size %" PRId64 " does not match the "
                 "layer size %" PRId64, size, z->compressed_size);
    return NULL;
  }
  if (z->uncompressed_size > size) {
    sn_set_error("ztoc: tar end %" PRId64 " is past the layer end %" PRId64,
                 z->uncompressed_size, size);
    return NULL;
  }
  n = size / span + (size % span != 0);
  if (n != (int64_t) z->max_span_id + 1) {
    sn_set_error("ztoc: max_span_id %" PRId32 " but the layer has %"
                 PRId64 " spans", z->max_span_id, n);
    return NULL;
  }
  zi = calloc(1, sizeof *zi);
  if (zi == NULL) {
    sn_oom();
    return NULL;
  }
  zi->compression = SN_COMP_UNCOMPRESSED;
  zi->span_size = span;
  zi->nspans = (size_t) n;
  return zi;
}

struct sn_zinfo *
sn_zinfo_from_ztoc(const struct sn_ztoc *z)
{
  struct sn_zinfo *zi;

  if (z->compressed_size < 0 || z->uncompressed_size < 0) {
    sn_set_error("ztoc: negative archive size");
    return NULL;
  }
  if (z->max_span_id < 0) {
    sn_set_error("ztoc: negative max_span_id %" PRId32, z->max_span_id);
    return NULL;
  }
  if (z->nspan_digests != (size_t) z->max_span_id + 1) {
    sn_set_error("ztoc: %zu span digests but max_span_id is %" PRId32,
                 z->nspan_digests, z->max_span_id);
    return NULL;
  }

  switch (z->compression) {
  case SN_COMP_GZIP:
    zi = sn_zinfo_parse_gzip(z->checkpoints, z->checkpoints_len);
    if (zi == NULL)
      return NULL;
    zi->compressed_size = z->compressed_size;
    zi->uncompressed_size = z->uncompressed_size;
    if (zi->nspans != (size_t) z->max_span_id + 1) {
      sn_set_error("ztoc: %zu checkpoints but max_span_id is %" PRId32,
                   zi->nspans, z->max_span_id);
      goto fail;
    }
    if (check_gzip_spans(zi) == -1)
      goto fail;
    return zi;
  case SN_COMP_UNCOMPRESSED:
    zi = zinfo_of_tar(z);
    if (zi == NULL)
      return NULL;
    zi->compressed_size = z->compressed_size;
    zi->uncompressed_size = z->uncompressed_size;
    return zi;
  default:
    sn_set_error("ztoc: unsupported compression algorithm %d",
                 (int) z->compression);
    return NULL;
  }

fail:
  sn_zinfo_free(zi);
  return NULL;
}

/* ---- span geometry ------------------------------------------------------ */

int
sn_zinfo_check_spans(const struct sn_zinfo *zi)
{
  int64_t max = 0;
  size_t i, big = 0;

  for (i = 0; i < zi->nspans; i++) {
    struct sn_span s;
    int64_t need;

    sn_zinfo_span(zi, i, &s);
    need = s.uncomp_end - s.uncomp_start;
    if (s.comp_end - s.comp_start > need)     /* its fetch buffer */
      need = s.comp_end - s.comp_start;
    if (need > max) {
      max = need;
      big = i;
    }
  }
  if (max > SN_SPAN_MAX_OUT)
    return sn_set_error("span %zu inflates to %" PRId64 " bytes (the limit "
                        "is %" PRId64 " MiB)", big, max,
                        SN_SPAN_MAX_OUT >> 20);
  return 0;
}

void
sn_zinfo_span(const struct sn_zinfo *zi, size_t i, struct sn_span *s)
{
  bool last = i + 1 >= zi->nspans;

  memset(s, 0, sizeof *s);
  if (i >= zi->nspans)
    return;
  if (zi->compression == SN_COMP_GZIP) {
    const struct sn_checkpoint *c = &zi->cp[i];

    s->comp_start = c->in - (c->bits ? 1 : 0);
    s->comp_end = last ? zi->compressed_size : c[1].in;
    s->uncomp_start = c->out;
    s->uncomp_end = last ? zi->uncompressed_size : c[1].out;
  }
  else {
    s->comp_start = s->uncomp_start = (int64_t) i * zi->span_size;
    s->comp_end = last ? zi->compressed_size : s->comp_start + zi->span_size;
    s->uncomp_end = last ? zi->uncompressed_size : s->comp_end;
  }
  /* The tar end can precede the last span's start (§4.2): empty span. */
  if (s->uncomp_end < s->uncomp_start)
    s->uncomp_end = s->uncomp_start;
  if (s->comp_end < s->comp_start)
    s->comp_end = s->comp_start;
}

size_t
sn_zinfo_span_of(const struct sn_zinfo *zi, int64_t off)
{
  size_t lo = 0, hi;

  if (zi->nspans == 0 || off <= 0)
    return 0;
  hi = zi->nspans - 1;
  if (zi->compression != SN_COMP_GZIP) {
    int64_t i = zi->span_size > 0 ? off / zi->span_size : 0;
    return (uint64_t) i < hi ? (size_t) i : hi;
  }
  /* Largest i with out[i] <= off. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo + 1) / 2;

    if (zi->cp[mid].out <= off)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* ---- decoding one span -------------------------------------------------- */

static int
inflate_error(size_t i, const z_stream *strm, int ret)
{
  if (ret == Z_MEM_ERROR)
    return sn_oom();
  return sn_set_error("span %zu: corrupt compressed data: %s", i,
                      strm->msg ? strm->msg : "inflate error");
}

/* docs/soci-format.md §4.2: raw inflate from the checkpoint, primed with its leftover bits and
 * its window; a gzip member ending inside the span is followed into the
 * next member. */
static int
inflate_span(const struct sn_checkpoint *c, size_t i, const uint8_t *in,
             size_t in_len, uint8_t *out, size_t out_len)
{
  z_stream strm;
  size_t done = 0;
  bool raw = true;
  int ret;

  memset(&strm, 0, sizeof strm);
  if (inflateInit2(&strm, -15) != Z_OK)
    return sn_oom();
  if (c->bits) {
    if (in_len == 0) {
      ret = sn_set_error("span %zu: no compressed data", i);
      goto out;
    }
    inflatePrime(&strm, c->bits, in[0] >> (8 - c->bits));
    in++, in_len--;
  }
  if (c->window == NULL ||
      inflateSetDictionary(&strm, c->window, SN_ZINFO_WINSIZE) != Z_OK) {
    ret = sn_set_error("span %zu: cannot set the inflate window", i);
    goto out;
  }

  while (done < out_len) {
    size_t ain = in_len < ZCHUNK ? in_len : ZCHUNK;
    size_t aout = out_len - done < ZCHUNK ? out_len - done : ZCHUNK;
    size_t used, got;

    strm.next_in = (Bytef *) in;
    strm.avail_in = (uInt) ain;
    strm.next_out = out + done;
    strm.avail_out = (uInt) aout;
    ret = inflate(&strm, Z_NO_FLUSH);
    used = ain - strm.avail_in;
    got = aout - strm.avail_out;
    in += used, in_len -= used;
    done += got;

    if (ret == Z_STREAM_END) {
      if (done == out_len)
        break;
      /* A gzip member ends inside the span: the next one follows. */
      if (raw) {
        if (in_len < 8) {
          ret = sn_set_error("span %zu: truncated gzip trailer", i);
          goto out;
        }
        in += 8, in_len -= 8;
        raw = false;
        ret = inflateReset2(&strm, 47);
      }
      else
        ret = inflateReset(&strm);
      if (ret != Z_OK) {
        ret = inflate_error(i, &strm, ret);
        goto out;
      }
      continue;
    }
    if ((ret == Z_OK || ret == Z_BUF_ERROR) && (used || got))
      continue;
    if ((ret == Z_OK || ret == Z_BUF_ERROR) && in_len == 0)
      ret = sn_set_error("span %zu: compressed data ends after %zu of %zu "
                         "bytes", i, done, out_len);
    else if (ret == Z_NEED_DICT)
      ret = sn_set_error("span %zu: zlib stream wants a dictionary", i);
    else
      ret = inflate_error(i, &strm, ret);
    goto out;
  }
  ret = 0;

out:
  inflateEnd(&strm);
  return ret;
}

/* Spans the fast inflater filled (sn_zinfo_fast_decodes). */
static _Atomic uint64_t fast_decodes;

uint64_t
sn_zinfo_fast_decodes(void)
{
  return atomic_load_explicit(&fast_decodes, memory_order_relaxed);
}

#ifdef HAVE_ISAL
/* The same decode with ISA-L's inflate (2-3x faster than zlib's): the
 * leftover bits go into its bit buffer (LSB first, as inflatePrime puts
 * them), the window is its dictionary.  0: out is filled; 1: not handled
 * here (a gzip member ends inside the span, or ISA-L stopped early or
 * reports an error) — the caller decodes the span with zlib instead, which
 * handles member boundaries and words the errors. */
static int
inflate_span_isal(const struct sn_checkpoint *c, const uint8_t *in,
                  size_t in_len, uint8_t *out, size_t out_len)
{
  struct inflate_state st;
  int r;

  if (in_len > UINT32_MAX || out_len > UINT32_MAX || c->window == NULL ||
      (c->bits && in_len == 0))
    return 1;
  isal_inflate_init(&st);
  st.crc_flag = ISAL_DEFLATE;
  if (isal_inflate_set_dict(&st, c->window, SN_ZINFO_WINSIZE) !=
      COMP_OK)
    return 1;
  if (c->bits) {
    st.read_in = in[0] >> (8 - c->bits);
    st.read_in_length = c->bits;
    in++, in_len--;
  }
  st.next_in = (uint8_t *) in;
  st.avail_in = (uint32_t) in_len;
  st.next_out = out;
  st.avail_out = (uint32_t) out_len;
  r = isal_inflate(&st);
  if ((r == ISAL_DECOMP_OK || r == ISAL_OUT_OVERFLOW) && st.avail_out == 0)
    return 0;
  return 1;
}
#endif

const char *
sn_zinfo_inflater(void)
{
#ifdef HAVE_ISAL
  return "isa-l";
#else
  return "zlib";
#endif
}

int
sn_zinfo_decode_span(const struct sn_zinfo *zi, size_t i,
                     const uint8_t *comp, size_t comp_len,
                     uint8_t *out, size_t out_len)
{
  return sn_zinfo_decode_span_with(zi, i, comp, comp_len, out, out_len,
                                   true);
}

int
sn_zinfo_decode_span_with(const struct sn_zinfo *zi, size_t i,
                          const uint8_t *comp, size_t comp_len,
                          uint8_t *out, size_t out_len, bool fast)
{
  struct sn_span s;
  uint64_t want_in, want_out;

  if (i >= zi->nspans)
    return sn_set_error("span %zu does not exist (%zu spans)", i,
                        zi->nspans);
  sn_zinfo_span(zi, i, &s);
  want_in = (uint64_t) (s.comp_end - s.comp_start);
  want_out = (uint64_t) (s.uncomp_end - s.uncomp_start);
  if (comp_len != want_in)
    return sn_set_error("span %zu: %zu compressed bytes given, %" PRIu64
                        " expected", i, comp_len, want_in);
  if (out_len != want_out)
    return sn_set_error("span %zu: output of %zu bytes given, %" PRIu64
                        " expected", i, out_len, want_out);
  if (out_len == 0)
    return 0;
  if (zi->compression == SN_COMP_GZIP) {
#ifdef HAVE_ISAL
    if (fast && inflate_span_isal(&zi->cp[i], comp, comp_len, out,
                                  out_len) == 0) {
      atomic_fetch_add_explicit(&fast_decodes, 1, memory_order_relaxed);
      return 0;
    }
#else
    (void) fast;
#endif
    return inflate_span(&zi->cp[i], i, comp, comp_len, out, out_len);
  }
  if (out_len > comp_len)
    return sn_set_error("span %zu: tar end is past the layer end", i);
  memcpy(out, comp, out_len);
  return 0;
}

/* ---- the streaming builder ---------------------------------------------- *
 *
 * The main thread inflates (lib/inflate/inflate.c: zlib's block boundaries, at a
 * higher speed); it records a checkpoint at each qualifying
 * block boundary and, for span hashing, a "cut": the span ending at pos
 * (an index into the current feed) closes, and the next one opens, starting
 * with the byte before pos when bits != 0.
 *
 * The compressed input is hashed twice (whole blob, spans).  For feeds of
 * HASH_THREAD_MIN bytes or more this runs on a helper thread, overlapping
 * inflate: the helper hashes the blob, then the spans up to the "settled"
 * position (what inflate has consumed so far: no later cut can fall before
 * it), applying cuts in order.  Each feed waits for the helper before it
 * returns, so the caller's buffer is never used afterwards.  Smaller feeds
 * are hashed inline; both ways give the same digests.
 */

#define HASH_THREAD_MIN ((size_t) 64 * 1024)
/* Wake a waiting helper only once this much more input has settled. */
#define HASH_BATCH ((size_t) 128 * 1024)

struct cut {
  size_t pos;
  uint8_t bits, prev;
};

struct hasher {
  pthread_t tid;
  pthread_mutex_t lock;
  pthread_cond_t wake;          /* to the helper: new work, or quit */
  pthread_cond_t idle;          /* to the main thread: chunk done */
  bool started, quit;
  bool pending;                 /* a chunk waits to be picked up */
  bool closed;                  /* no more cuts or input for the chunk */
  bool finished;                /* the helper is done with the chunk */
  bool helper_waiting, main_waiting;
  bool oom;                     /* the helper could not grow the digests */
  const uint8_t *data;
  size_t len, settled, signaled;
  struct cut *cuts;
  size_t ncuts, cutcap, next_cut;
};

struct sn_zinfo_builder {
  enum sn_compression comp;
  int64_t span_size;
  sn_output_fn on_output;
  void *opaque;
  bool failed, finished;
  bool no_blob_hash;             /* sn_zinfo_builder_skip_blob_digest */

  int64_t totin, totout;         /* bytes consumed / produced so far */
  int64_t last;                  /* totout at the last checkpoint */

  /* gzip */
  struct sn_inflate *inf;
  bool out_full;                 /* the last call filled its output area */
  struct sn_checkpoint *cp;
  size_t ncp, cpcap;
  uint8_t prev_byte;             /* last byte of the previous feed */

  /* Digests: owned by the helper while it hashes a chunk. */
  struct sn_sha256 blob_hash, span_hash;
  bool span_open;                /* span_hash holds a span's first bytes */
  uint8_t (*digests)[SN_SHA256_LEN];
  size_t ndigests, dcap;

  struct hasher h;
};

/* Finish the current span's hash and append it to the digest list. */
static int
close_span(struct sn_zinfo_builder *b)
{
  if (b->ndigests == b->dcap) {
    size_t cap = b->dcap ? 2 * b->dcap : 64;
    void *p = realloc(b->digests, cap * sizeof *b->digests);

    if (p == NULL)
      return sn_oom();
    b->digests = p;
    b->dcap = cap;
  }
  sn_sha256_final(&b->span_hash, b->digests[b->ndigests++]);
  b->span_open = false;
  return 0;
}

/* Add data[*done..upto) to the open span (input before the first
 * checkpoint is the gzip header and belongs to no span). */
static void
span_hash_to(struct sn_zinfo_builder *b, const uint8_t *data, size_t *done,
             size_t upto)
{
  if (b->span_open)
    sn_sha256_update(&b->span_hash, data + *done, upto - *done);
  *done = upto;
}

static int
span_cut(struct sn_zinfo_builder *b, const uint8_t *data, size_t *done,
         const struct cut *c)
{
  span_hash_to(b, data, done, c->pos);
  if (b->span_open && close_span(b) == -1)
    return -1;
  b->span_open = true;
  if (c->bits)
    sn_sha256_update(&b->span_hash, &c->prev, 1);
  return 0;
}

/* ---- the hashing helper thread ---- */

/* Hash one chunk: the blob, then spans as inflate settles them. */
static void
hasher_chunk(struct sn_zinfo_builder *b)
{
  struct hasher *h = &b->h;
  const uint8_t *data = h->data;
  size_t len = h->len, done = 0;

  pthread_mutex_unlock(&h->lock);
  if (!b->no_blob_hash)
    sn_sha256_update(&b->blob_hash, data, len);
  pthread_mutex_lock(&h->lock);
  for (;;) {
    struct cut c;
    bool have_cut = false;
    size_t upto;

    while (h->next_cut == h->ncuts && done == h->settled && !h->closed) {
      h->helper_waiting = true;
      pthread_cond_wait(&h->wake, &h->lock);
      h->helper_waiting = false;
    }
    if (h->next_cut < h->ncuts) {
      c = h->cuts[h->next_cut++];
      have_cut = true;
    }
    else if (done == h->settled)
      break;                    /* closed, and everything hashed */
    upto = h->settled;
    pthread_mutex_unlock(&h->lock);
    if (!have_cut)
      span_hash_to(b, data, &done, upto);
    else if (h->oom)
      done = c.pos;
    else if (span_cut(b, data, &done, &c) == -1)
      h->oom = true;
    pthread_mutex_lock(&h->lock);
  }
}

static void *
hasher_main(void *arg)
{
  struct sn_zinfo_builder *b = arg;
  struct hasher *h = &b->h;

  pthread_mutex_lock(&h->lock);
  for (;;) {
    while (!h->quit && !h->pending) {
      h->helper_waiting = true;
      pthread_cond_wait(&h->wake, &h->lock);
      h->helper_waiting = false;
    }
    if (h->quit)
      break;
    h->pending = false;
    hasher_chunk(b);
    h->finished = true;
    if (h->main_waiting)
      pthread_cond_signal(&h->idle);
  }
  pthread_mutex_unlock(&h->lock);
  return NULL;
}

/* Start the helper on first use; false if it cannot run (hash inline). */
static bool
hasher_ready(struct sn_zinfo_builder *b)
{
  struct hasher *h = &b->h;

  if (h->started)
    return true;
  if (pthread_mutex_init(&h->lock, NULL) != 0)
    return false;
  if (pthread_cond_init(&h->wake, NULL) != 0)
    goto no_wake;
  if (pthread_cond_init(&h->idle, NULL) != 0)
    goto no_idle;
  if (pthread_create(&h->tid, NULL, hasher_main, b) != 0)
    goto no_thread;
  h->started = true;
  return true;

no_thread:
  pthread_cond_destroy(&h->idle);
no_idle:
  pthread_cond_destroy(&h->wake);
no_wake:
  pthread_mutex_destroy(&h->lock);
  return false;
}

static void
hasher_stop(struct hasher *h)
{
  if (!h->started)
    return;
  pthread_mutex_lock(&h->lock);
  h->quit = true;
  pthread_cond_signal(&h->wake);
  pthread_mutex_unlock(&h->lock);
  pthread_join(h->tid, NULL);
  pthread_cond_destroy(&h->idle);
  pthread_cond_destroy(&h->wake);
  pthread_mutex_destroy(&h->lock);
  free(h->cuts);
  h->started = false;
}

static void
hasher_begin(struct hasher *h, const uint8_t *data, size_t len)
{
  pthread_mutex_lock(&h->lock);
  h->data = data;
  h->len = len;
  h->settled = h->signaled = h->ncuts = h->next_cut = 0;
  h->closed = h->finished = false;
  h->pending = true;
  if (h->helper_waiting)
    pthread_cond_signal(&h->wake);
  pthread_mutex_unlock(&h->lock);
}

/* Inflate has consumed data[0..pos); c, if any, is a cut at pos. */
static int
hasher_settle(struct hasher *h, size_t pos, const struct cut *c)
{
  int r = 0;

  pthread_mutex_lock(&h->lock);
  if (c && h->ncuts == h->cutcap) {
    size_t cap = h->cutcap ? 2 * h->cutcap : 16;
    void *p = realloc(h->cuts, cap * sizeof *h->cuts);

    if (p == NULL)
      r = sn_oom();
    else {
      h->cuts = p;
      h->cutcap = cap;
    }
  }
  if (r == 0) {
    if (c)
      h->cuts[h->ncuts++] = *c;
    h->settled = pos;
    if (h->helper_waiting && pos - h->signaled >= HASH_BATCH) {
      h->signaled = pos;
      pthread_cond_signal(&h->wake);
    }
  }
  pthread_mutex_unlock(&h->lock);
  return r;
}

/* Wait until the helper is done with the chunk. */
static int
hasher_end(struct hasher *h)
{
  bool oom;

  pthread_mutex_lock(&h->lock);
  h->closed = true;
  if (h->helper_waiting)
    pthread_cond_signal(&h->wake);
  while (!h->finished) {
    h->main_waiting = true;
    pthread_cond_wait(&h->idle, &h->lock);
    h->main_waiting = false;
  }
  oom = h->oom;
  pthread_mutex_unlock(&h->lock);
  return oom ? sn_oom() : 0;
}

/* ---- the builder proper ---- */

struct sn_zinfo_builder *
sn_zinfo_builder_new(enum sn_compression comp, int64_t span_size,
                     sn_output_fn on_output, void *opaque)
{
  struct sn_zinfo_builder *b;

  if (comp != SN_COMP_GZIP && comp != SN_COMP_UNCOMPRESSED) {
    sn_set_error("zinfo: unsupported compression %d", (int) comp);
    return NULL;
  }
  if (span_size < 0 || (comp == SN_COMP_UNCOMPRESSED && span_size == 0)) {
    sn_set_error("zinfo: invalid span size %" PRId64, span_size);
    return NULL;
  }
  b = calloc(1, sizeof *b);
  if (b == NULL) {
    sn_oom();
    return NULL;
  }
  b->comp = comp;
  b->span_size = span_size;
  b->on_output = on_output;
  b->opaque = opaque;
  if (sn_sha256_init(&b->blob_hash) == -1 ||
      sn_sha256_init(&b->span_hash) == -1)
    goto fail;
  if (comp == SN_COMP_GZIP) {
    b->inf = sn_inflate_new(SN_INFLATE_GZIP);
    if (b->inf == NULL)
      goto fail;
  }
  return b;

fail:
  sn_zinfo_builder_free(b);
  return NULL;
}

void
sn_zinfo_builder_free(struct sn_zinfo_builder *b)
{
  size_t i;

  if (b == NULL)
    return;
  hasher_stop(&b->h);
  sn_inflate_free(b->inf);
  for (i = 0; i < b->ncp; i++)
    free(b->cp[i].window);
  free(b->cp);
  free(b->digests);
  sn_sha256_free(&b->blob_hash);
  sn_sha256_free(&b->span_hash);
  free(b);
}

/* Record a checkpoint at the current position, data[pos] of this feed,
 * and describe the span cut it makes. */
static int
add_checkpoint(struct sn_zinfo_builder *b, const uint8_t *data, size_t pos,
               struct cut *cut)
{
  struct sn_checkpoint *c;

  if (b->ncp == b->cpcap) {
    size_t cap = b->cpcap ? 2 * b->cpcap : 16;
    void *p = realloc(b->cp, cap * sizeof *b->cp);

    if (p == NULL)
      return sn_oom();
    b->cp = p;
    b->cpcap = cap;
  }
  c = &b->cp[b->ncp];
  c->window = malloc(SN_ZINFO_WINSIZE);
  if (c->window == NULL)
    return sn_oom();
  c->in = b->totin;
  c->out = b->totout;
  c->bits = (uint8_t) sn_inflate_bits(b->inf);
  sn_inflate_window(b->inf, c->window);
  b->ncp++;

  cut->pos = pos;
  cut->bits = c->bits;
  cut->prev = pos > 0 ? data[pos - 1] : b->prev_byte;
  return 0;
}

/* One decoder call on data[*pos..len), handing the output on.  Returns
 * -1 on error, else the decoder's event. */
static int
inflate_step(struct sn_zinfo_builder *b, const uint8_t *data, size_t len,
             size_t *pos)
{
  const uint8_t *out;
  size_t used, got;
  int ev;

  ev = sn_inflate_run(b->inf, data + *pos, len - *pos, &used, &out, &got);
  if (ev == -1)
    return -1;
  *pos += used;
  b->totin += (int64_t) used;
  b->totout += (int64_t) got;
  b->out_full = ev == SN_INFLATE_OUT_FULL;
  if (got && b->on_output && b->on_output(b->opaque, out, got) == -1)
    return -1;
  return ev;
}

/* Inflate data[0..len) (len may be 0: drain output inflate still holds),
 * stopping at every deflate block boundary to apply zran's checkpoint
 * rule (docs/soci-format.md §4.5): a block boundary, or the end of a header, that is not the
 * end of the stream, once more than span_size bytes of output have passed
 * since the last checkpoint (always for the first). */
static int
inflate_feed(struct sn_zinfo_builder *b, const uint8_t *data, size_t len,
             bool threaded)
{
  size_t pos = 0, done = 0;

  while (pos < len || b->out_full) {
    struct cut cut;
    bool have_cut = false;
    int ev = inflate_step(b, data, len, &pos);

    if (ev == -1)
      return -1;
    if (ev == SN_INFLATE_BLOCK &&
        (b->totout == 0 || b->totout - b->last > b->span_size)) {
      if (add_checkpoint(b, data, pos, &cut) == -1)
        return -1;
      b->last = b->totout;
      have_cut = true;
    }
    if (threaded) {
      if (hasher_settle(&b->h, pos, have_cut ? &cut : NULL) == -1)
        return -1;
    }
    else if (have_cut && span_cut(b, data, &done, &cut) == -1)
      return -1;
  }
  if (!threaded)
    span_hash_to(b, data, &done, len);
  return 0;
}

static int
feed_gzip(struct sn_zinfo_builder *b, const uint8_t *data, size_t len)
{
  bool threaded = len >= HASH_THREAD_MIN && hasher_ready(b);
  int r;

  if (threaded)
    hasher_begin(&b->h, data, len);
  else if (!b->no_blob_hash)
    sn_sha256_update(&b->blob_hash, data, len);
  r = inflate_feed(b, data, len, threaded);
  if (threaded && hasher_end(&b->h) == -1)
    r = -1;
  if (len)
    b->prev_byte = data[len - 1];
  return r;
}

/* Uncompressed layers: pass through, hash fixed-size chunks. */
static int
feed_tar(struct sn_zinfo_builder *b, const uint8_t *data, size_t len)
{
  size_t pos = 0;

  if (b->on_output && b->on_output(b->opaque, data, len) == -1)
    return -1;
  if (!b->no_blob_hash)
    sn_sha256_update(&b->blob_hash, data, len);
  while (pos < len) {
    int64_t room = b->span_size - b->totin % b->span_size;
    size_t n = (uint64_t) room < len - pos ? (size_t) room : len - pos;

    sn_sha256_update(&b->span_hash, data + pos, n);
    pos += n;
    b->totin += (int64_t) n;
    if (b->totin % b->span_size == 0 && close_span(b) == -1)
      return -1;
  }
  return 0;
}

int
sn_zinfo_builder_feed(struct sn_zinfo_builder *b, const uint8_t *data,
                      size_t len)
{
  int r;

  if (b->failed || b->finished)
    return sn_set_error("zinfo builder: %s",
                        b->failed ? "an earlier error stopped it"
                                  : "already finished");
  if (len == 0)
    return 0;
  if (b->totin > INT64_MAX - (int64_t) len)
    return sn_set_error("zinfo builder: layer too large");
  r = b->comp == SN_COMP_GZIP ? feed_gzip(b, data, len)
                              : feed_tar(b, data, len);
  if (r == -1)
    b->failed = true;
  return r;
}

/* Move the builder's results into a new zinfo. */
static struct sn_zinfo *
take_zinfo(struct sn_zinfo_builder *b)
{
  struct sn_zinfo *zi = calloc(1, sizeof *zi);

  if (zi == NULL) {
    sn_oom();
    return NULL;
  }
  zi->compression = b->comp;
  zi->span_size = b->span_size;
  zi->compressed_size = b->totin;
  zi->nspans = b->ndigests;
  if (b->comp == SN_COMP_GZIP) {
    zi->cp = b->cp;
    b->cp = NULL;
    b->ncp = b->cpcap = 0;
  }
  return zi;
}

static int
finish_input(struct sn_zinfo_builder *b)
{
  static const uint8_t none[1];

  if (b->comp == SN_COMP_GZIP) {
    /* Drain output inflate still holds; then the stream must be done. */
    if (inflate_feed(b, none, 0, false) == -1)
      return -1;
    if (sn_inflate_finish(b->inf) == -1 || b->ncp == 0)
      return sn_set_error("truncated gzip stream (%" PRId64 " bytes)",
                          b->totin);
    return close_span(b);
  }
  if (b->totin == 0)
    return sn_set_error("empty uncompressed layer: no spans");
  if (b->totin % b->span_size != 0)
    return close_span(b);
  return 0;
}

int
sn_zinfo_builder_finish(struct sn_zinfo_builder *b,
                        struct sn_zinfo **zi,
                        uint8_t (**span_digests)[SN_SHA256_LEN],
                        uint8_t blob_digest[SN_SHA256_LEN])
{
  struct sn_zinfo *z;

  if (b->failed || b->finished)
    return sn_set_error("zinfo builder: %s",
                        b->failed ? "an earlier error stopped it"
                                  : "already finished");
  if (finish_input(b) == -1) {
    b->failed = true;
    return -1;
  }
  z = take_zinfo(b);
  if (z == NULL) {
    b->failed = true;
    return -1;
  }
  b->finished = true;
  *zi = z;
  if (span_digests) {
    *span_digests = b->digests;
    b->digests = NULL;
    b->ndigests = b->dcap = 0;
  }
  if (blob_digest) {
    if (b->no_blob_hash)
      return sn_set_error("zinfo builder: the blob digest was not computed");
    sn_sha256_final(&b->blob_hash, blob_digest);
  }
  return 0;
}

void
sn_zinfo_builder_skip_blob_digest(struct sn_zinfo_builder *b)
{
  b->no_blob_hash = true;
}
