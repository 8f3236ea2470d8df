/* soci-nbd: building a layer's dense index (docs/dense-index.md) in the
 * same pass as its SOCI ztoc.  The ztoc builder tells it every deflate
 * block boundary, every piece of output and every file start; it keeps
 * the compressed bytes and the output it still needs, places checkpoints
 * by the rule of struct sn_dense_opts, and once the 32 KiB of output
 * after a checkpoint have gone by, computes its sparse window from the
 * 32 KiB before it (lib/inflate/window-use.h), checks that an independent
 * decoder reproduces that output with it, and packs it into the windows
 * blob.  Sub-span digests are taken over the kept bytes.
 *
 * The hooks and feeds are messages through a pipe (lib/util/pipe.h):
 * applied at once, or with sn_dense_opts.thread on a helper thread while
 * the ztoc builder's thread decodes on; the same work either way.
 *
 * Memory: the compressed bytes from the oldest of (the last checkpoint,
 * the oldest checkpoint still waiting for its window, the candidate
 * boundary) to the end of what was fed: about max_gap, plus a deflate
 * block, plus the compressed size of 32 KiB of output; the output from
 * 32 KiB before the oldest waiting checkpoint or the candidate on (a
 * deflate block's output plus 64 KiB; a layer whose blocks make more than
 * MAX_KEPT_OUT gets no dense index); with a helper thread, up to
 * PIPE_MAX bytes more, sent and not yet applied.
 *
 * A zstd layer's boundaries are its frame ends (the zinfo builder's zstd
 * mode): the same placement, no window (frames decode on their own), no
 * output kept, and at most MAX_ZSTD_KEPT compressed bytes since the last
 * checkpoint (a bigger frame: no dense index). */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dense/dense.h"
#include "inflate/window-use.h"
#include "soci/build.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/pipe.h"

#define DEFAULT_MIN_GAP ((int64_t) 16 << 10)
#define DEFAULT_MAX_GAP ((int64_t) 64 << 10)
/* The most output a sub-span may have (where boundaries allow): highly
 * compressible data would otherwise make sub-spans that inflate past
 * what a reader decodes at once (SN_SPAN_MAX_OUT). */
#define MAX_OUT_GAP ((int64_t) 4 << 20)
#define WIN SN_ZINFO_WINSIZE
#define MAX_KEPT_OUT ((size_t) 256 << 20)
#define MAX_ZSTD_KEPT ((size_t) SN_SPAN_MAX_OUT)
/* Bytes sent to the pipe's thread and not applied yet, at most. */
#define PIPE_MAX ((size_t) 8 << 20)

/* Bytes [start, start + len) of a stream, at p + off.  Dropping the
 * front moves only off; the live bytes move down when an append finds
 * the dead front at least as long as they are, so each byte moves about
 * once however often the front is dropped. */
struct kbuf {
  uint8_t *p;
  size_t off, len, cap;
  int64_t start;
};

/* A boundary: the candidate, or a checkpoint waiting for its window. */
struct point {
  int64_t in, out;
  unsigned bits;
  size_t cp;                    /* its checkpoint (waiting ones) */
};

/* A checkpoint taken. */
struct taken {
  int64_t in, out;
  unsigned bits;
  uint8_t digest[SN_SHA256_LEN];  /* of its sub-span, once closed */
  struct sn_winref ref;
};

struct sn_dense_builder {
  int64_t min_gap, max_gap;
  bool zstd;                    /* frame boundaries, no windows */
  struct sn_pipe *pipe;         /* to the thread that applies the hooks */
  _Atomic bool failed;
  char *why;                    /* the first failure's message */

  struct kbuf in;               /* compressed bytes kept */
  struct kbuf out;              /* output kept */
  int64_t out_end;              /* output seen so far */

  struct point cand;            /* the last boundary, not decided yet */
  bool have_cand;
  int64_t *files;               /* data offsets announced, not yet passed */
  size_t nfiles, filecap;

  struct taken *cp;
  size_t ncp, cpcap;
  struct point *wait;           /* FIFO: waiting for 32 KiB more output */
  size_t nwait, waitcap;

  uint8_t *windows;             /* the windows blob */
  struct sn_dense_packer *packer;
  size_t windows_len, windows_cap;
};

/* Make room for n elements of size sz in *p (capacity *cap). */
static int
grow(void *p, size_t *cap, size_t n, size_t sz)
{
  void **pp = p;
  size_t c = *cap ? *cap : 16;
  void *q;

  if (n <= *cap)
    return 0;
  while (c < n)
    c *= 2;
  q = realloc(*pp, c * sz);
  if (q == NULL)
    return sn_oom();
  *pp = q;
  *cap = c;
  return 0;
}

static const uint8_t *
kbuf_data(const struct kbuf *b)
{
  return b->p + b->off;
}

static int64_t
kbuf_end(const struct kbuf *b)
{
  return b->start + (int64_t) b->len;
}

static int
kbuf_append(struct kbuf *b, const uint8_t *data, size_t n)
{
  if (b->off && b->off >= b->len) {
    memmove(b->p, b->p + b->off, b->len);
    b->off = 0;
  }
  if (grow(&b->p, &b->cap, b->off + b->len + n, 1) == -1)
    return -1;
  memcpy(b->p + b->off + b->len, data, n);
  b->len += n;
  return 0;
}

/* Forget the bytes before offset keep. */
static void
kbuf_drop_to(struct kbuf *b, int64_t keep)
{
  size_t n;

  if (keep <= b->start)
    return;
  n = (uint64_t) (keep - b->start) < b->len ? (size_t) (keep - b->start)
                                             : b->len;
  b->off += n;
  b->len -= n;
  b->start += (int64_t) n;
}

/* The first kept byte a point needs (the one with its leftover bits). */
static int64_t
point_start(int64_t in, unsigned bits)
{
  return in - (bits ? 1 : 0);
}

/* Drop the kept bytes nobody needs any more. */
static void
trim(struct sn_dense_builder *d)
{
  int64_t keep = kbuf_end(&d->in), s;

  if (d->ncp && (s = point_start(d->cp[d->ncp - 1].in,
                                 d->cp[d->ncp - 1].bits)) < keep)
    keep = s;
  if (d->nwait && (s = point_start(d->wait[0].in, d->wait[0].bits)) < keep)
    keep = s;
  if (d->have_cand && (s = point_start(d->cand.in, d->cand.bits)) < keep)
    keep = s;
  kbuf_drop_to(&d->in, keep);
  keep = kbuf_end(&d->out);     /* a point's window is the output before it */
  if (d->nwait && d->wait[0].out < keep)
    keep = d->wait[0].out;
  if (d->have_cand && d->cand.out < keep)
    keep = d->cand.out;
  kbuf_drop_to(&d->out, keep - WIN);
}

/* The kept bytes from offset start on (NULL if they are not kept). */
static const uint8_t *
kept(const struct sn_dense_builder *d, int64_t start, size_t *len)
{
  if (start < d->in.start || start > kbuf_end(&d->in))
    return NULL;
  *len = d->in.len - (size_t) (start - d->in.start);
  return kbuf_data(&d->in) + (start - d->in.start);
}

/* Hash the sub-span of the last checkpoint, which ends at end. */
static int
close_subspan(struct sn_dense_builder *d, int64_t end)
{
  struct taken *t = &d->cp[d->ncp - 1];
  int64_t start = point_start(t->in, t->bits);
  const uint8_t *p;
  size_t len;

  p = kept(d, start, &len);
  if (p == NULL || end < start || (uint64_t) (end - start) > len)
    return sn_set_error("dense index: sub-span %zu [%" PRId64 ",%" PRId64
                        ") is not kept", d->ncp - 1, start, end);
  sn_sha256(p, (size_t) (end - start), t->digest);
  return 0;
}

/* Append a packed window to the blob; fill ref. */
static int
add_window(struct sn_dense_builder *d, const uint8_t sparse[WIN],
           struct sn_winref *ref)
{
  uint8_t *frame;
  size_t flen;

  if (sn_dense_window_pack(d->packer, sparse, &frame, &flen) == -1)
    return -1;
  if (grow(&d->windows, &d->windows_cap, d->windows_len + flen, 1) == -1) {
    free(frame);
    return -1;
  }
  memcpy(d->windows + d->windows_len, frame, flen);
  ref->off = (int64_t) d->windows_len;
  ref->len = (uint32_t) flen;
  sn_sha256(frame, flen, ref->digest);
  d->windows_len += flen;
  free(frame);
  return 0;
}

/* Waiting point p has the output after it (32 KiB, or to its member's
 * end): find the window bytes that output reads, check that it decodes
 * the same with only those, and store them (none: no window). */
static int
settle(struct sn_dense_builder *d, struct point *p)
{
  static const char what[] = "dense index: checkpoint";
  struct taken *t = &d->cp[p->cp];
  uint8_t sparse[WIN], front[WIN];
  struct sn_window_use st;
  const uint8_t *in, *window;
  size_t len, winlen = p->out < WIN ? (size_t) p->out : WIN;
  uint64_t bitoff = p->bits ? 8 - p->bits : 0;

  memset(&t->ref, 0, sizeof t->ref);
  if (winlen == 0)
    return 0;                   /* the stream's start: nothing before */
  in = kept(d, point_start(p->in, p->bits), &len);
  if (in == NULL)
    return sn_set_error("%s %zu: its bytes are not kept", what, p->cp);
  if (p->out - (int64_t) winlen < d->out.start || p->out > kbuf_end(&d->out))
    return sn_set_error("%s %zu: its window is not kept", what, p->cp);
  window = kbuf_data(&d->out) + (p->out - WIN - d->out.start);
  if (winlen < WIN) {           /* zeros before the stream's start */
    memset(front, 0, WIN - winlen);
    memcpy(front + WIN - winlen, kbuf_data(&d->out), winlen);
    window = front;
  }
  if (sn_window_sparse(in, len, bitoff, window, winlen, WIN, sparse,
                       &st) == -1)
    return sn_prefix_error("%s %zu (offset %" PRId64 "): ", what, p->cp,
                           p->in);
  if (st.count == 0)
    return 0;
  if (p->out < d->out.start || p->out + (int64_t) st.out > kbuf_end(&d->out))
    return sn_set_error("%s %zu: its output is not kept", what, p->cp);
  if (sn_window_check(in, len, bitoff, sparse,
                      kbuf_data(&d->out) + (p->out - d->out.start),
                      st.out) != 0)
    return sn_prefix_error("%s %zu (offset %" PRId64 "): its sparse window "
                           "does not reproduce the layer: ", what, p->cp,
                           p->in);
  return add_window(d, sparse, &t->ref);
}

/* Settle the waiting points whose 32 KiB of output ended before out (all
 * of them when out < 0: the end of the stream). */
static int
settle_ready(struct sn_dense_builder *d, int64_t out)
{
  size_t k = 0;
  int r = 0;

  while (k < d->nwait && (out < 0 || d->wait[k].out + WIN <= out)) {
    r = settle(d, &d->wait[k]);
    k++;
    if (r == -1)
      break;
  }
  if (k) {
    memmove(d->wait, d->wait + k, (d->nwait - k) * sizeof *d->wait);
    d->nwait -= k;
  }
  return r;
}

/* Make the candidate the next checkpoint (waiting for its window). */
static int
take_cand(struct sn_dense_builder *d)
{
  struct point *p = &d->cand;

  if (d->ncp && close_subspan(d, p->in) == -1)
    return -1;
  if (grow(&d->cp, &d->cpcap, d->ncp + 1, sizeof *d->cp) == -1 ||
      grow(&d->wait, &d->waitcap, d->nwait + 1, sizeof *d->wait) == -1)
    return -1;
  d->cp[d->ncp] = (struct taken) { .in = p->in, .out = p->out,
                                   .bits = p->bits };
  p->cp = d->ncp++;
  d->have_cand = false;
  if (d->zstd)
    return 0;                   /* no window to wait for */
  d->wait[d->nwait++] = *p;
  return 0;
}

/* Does a file's data start in [from, to)?  Forgets the starts before to. */
static bool
file_starts_in(struct sn_dense_builder *d, int64_t from, int64_t to)
{
  bool r = false;
  size_t k = 0;

  while (k < d->nfiles && d->files[k] < to) {
    if (d->files[k] >= from)
      r = true;
    k++;
  }
  if (k) {
    memmove(d->files, d->files + k, (d->nfiles - k) * sizeof *d->files);
    d->nfiles -= k;
  }
  return r;
}

/* The placement rule (dense.h) for the candidate, now that the next
 * boundary (in, out) is known. */
static bool
worth_it(struct sn_dense_builder *d, int64_t in, int64_t out)
{
  const struct taken *last = &d->cp[d->ncp - 1];
  const struct point *c = &d->cand;
  bool file = file_starts_in(d, c->out, out);

  if (c->in <= last->in || c->out <= last->out || out <= c->out)
    return false;               /* sub-spans are never empty */
  if (file && c->in - last->in >= d->min_gap)
    return true;
  return in - last->in > d->max_gap || out - last->out > MAX_OUT_GAP;
}

/* Remember the first failure; the SOCI ztoc's build goes on (the hooks
 * return 0) and sn_dense_builder_finish reports it. */
static int
give_up(struct sn_dense_builder *d)
{
  if (!d->failed) {
    d->why = strdup(sn_error());
    d->failed = true;
  }
  return 0;
}

/* A block boundary (the zinfo builder's boundary hook, applied). */
static int
apply_boundary(struct sn_dense_builder *d, int64_t in, unsigned bits,
               int64_t out)
{
  if (d->failed)
    return 0;
  if (in > kbuf_end(&d->in)) {
    sn_set_error("dense index: the compressed bytes were not fed to it "
                 "first (offset %" PRId64 ")", in);
    goto fail;
  }
  /* A boundary with no output since the candidate (an empty block, a
   * flush marker) replaces it: sub-spans are never empty. */
  if (d->have_cand && out == d->cand.out)
    d->have_cand = false;
  else if (d->have_cand && d->ncp && !worth_it(d, in, out))
    d->have_cand = false;
  else if (d->have_cand && take_cand(d) == -1)
    goto fail;
  if (d->ncp == 0 && out != 0) {
    sn_set_error("dense index: the stream does not start with a block");
    goto fail;
  }
  d->cand.in = in;
  d->cand.bits = bits;
  d->cand.out = out;
  d->have_cand = true;
  if (d->ncp == 0 && take_cand(d) == -1)   /* checkpoint 0: out 0 */
    goto fail;
  trim(d);
  return 0;
fail:
  return give_up(d);
}

/* Output (the ztoc builder's output hook, applied): keep it, and settle
 * the checkpoints whose 32 KiB of output are complete. */
static int
apply_output(struct sn_dense_builder *d, const uint8_t *data, size_t len)
{
  d->out_end += (int64_t) len;
  if (d->failed || len == 0 || d->zstd)
    return 0;
  if (d->out.len + len > MAX_KEPT_OUT) {
    sn_set_error("dense index: a deflate block makes more than %zu MiB of "
                 "output", MAX_KEPT_OUT >> 20);
    goto fail;
  }
  if (kbuf_append(&d->out, data, len) == -1 ||
      settle_ready(d, kbuf_end(&d->out)) == -1)
    goto fail;
  trim(d);
  return 0;
fail:
  return give_up(d);
}

/* A file's data start (the ztoc builder's file hook, applied). */
static int
apply_file(struct sn_dense_builder *d, int64_t data_offset)
{
  if (d->failed)
    return 0;
  if (grow(&d->files, &d->filecap, d->nfiles + 1, sizeof *d->files) == -1)
    return give_up(d);
  d->files[d->nfiles++] = data_offset;
  return 0;
}

/* Compressed bytes (sn_dense_builder_feed, applied). */
static int
apply_feed(struct sn_dense_builder *d, const uint8_t *data, size_t len)
{
  if (d->failed || len == 0)
    return 0;
  if (d->zstd && d->in.len + len > MAX_ZSTD_KEPT) {
    sn_set_error("dense index: a zstd frame (or run of frames) of more than "
                 "%zu MiB", MAX_ZSTD_KEPT >> 20);
    free(d->in.p);
    d->in = (struct kbuf) { .start = kbuf_end(&d->in) };
    return give_up(d);
  }
  if (kbuf_append(&d->in, data, len) == -1)
    return give_up(d);
  return 0;
}

/* ---- the hooks: what the ztoc builder's thread tells the pipe's ---- */

enum { M_FEED, M_BOUNDARY, M_OUTPUT, M_FILE };

/* The pipe's thread: apply one message. */
static void
apply(void *opaque, const struct sn_pipe_msg *m)
{
  struct sn_dense_builder *d = opaque;

  switch (m->kind) {
  case M_FEED:
    apply_feed(d, m->data, m->len);
    break;
  case M_BOUNDARY:
    apply_boundary(d, m->a, (unsigned) m->c, m->b);
    break;
  case M_OUTPUT:                /* a: its length (a zstd layer's: no data) */
    apply_output(d, m->data, (size_t) m->a);
    break;
  case M_FILE:
    apply_file(d, m->a);
    break;
  }
}

/* Send m unless the builder has failed; a message that cannot be sent
 * fails it. */
static int
send(struct sn_dense_builder *d, const struct sn_pipe_msg *m)
{
  if (d->failed || sn_pipe_send(d->pipe, m) == 0)
    return 0;
  sn_pipe_free(d->pipe);        /* stop the thread before failing */
  d->pipe = NULL;
  return give_up(d);
}

static int
on_boundary(void *opaque, int64_t in, unsigned bits, int64_t out)
{
  struct sn_dense_builder *d = opaque;

  return send(d, &(struct sn_pipe_msg) { .kind = M_BOUNDARY, .a = in,
                                         .b = out, .c = bits });
}

static int
on_output(void *opaque, const uint8_t *data, size_t len)
{
  struct sn_dense_builder *d = opaque;

  /* Only counted for a zstd layer, which keeps no output. */
  return send(d, &(struct sn_pipe_msg) { .kind = M_OUTPUT,
                                         .a = (int64_t) len,
                                         .data = d->zstd ? NULL : data,
                                         .len = d->zstd ? 0 : len });
}

static int
on_file(void *opaque, int64_t data_offset, int64_t size)
{
  struct sn_dense_builder *d = opaque;

  (void) size;
  return send(d, &(struct sn_pipe_msg) { .kind = M_FILE,
                                         .a = data_offset });
}

int
sn_dense_builder_feed(struct sn_dense_builder *d, const uint8_t *data,
                      size_t len)
{
  if (len > SN_DENSE_FEED_MAX)
    return sn_set_error("dense index: a feed of %zu bytes (at most %zu)",
                        len, SN_DENSE_FEED_MAX);
  if (len == 0)
    return 0;
  return send(d, &(struct sn_pipe_msg) { .kind = M_FEED, .data = data,
                                         .len = len });
}

struct sn_dense_builder *
sn_dense_builder_new(struct sn_ztoc_builder *zb, const struct sn_dense_opts *o)
{
  int64_t min_gap = o && o->min_gap > 0 ? o->min_gap : DEFAULT_MIN_GAP;
  int64_t max_gap = o && o->max_gap > 0 ? o->max_gap : DEFAULT_MAX_GAP;
  struct sn_dense_builder *d;

  if (sn_ztoc_builder_compression(zb) != SN_COMP_GZIP &&
      sn_ztoc_builder_compression(zb) != SN_COMP_ZSTD) {
    sn_set_error("dense index: only for gzip and zstd layers");
    return NULL;
  }
  if (max_gap < min_gap) {
    sn_set_error("dense index: max_gap %" PRId64 " is below min_gap %"
                 PRId64, max_gap, min_gap);
    return NULL;
  }
  if (sn_ztoc_builder_fed(zb) != 0) {
    sn_set_error("dense index: the ztoc builder was fed already");
    return NULL;
  }
  d = calloc(1, sizeof *d);
  if (d == NULL) {
    sn_oom();
    return NULL;
  }
  d->zstd = sn_ztoc_builder_compression(zb) == SN_COMP_ZSTD;
  if (!d->zstd && (d->packer = sn_dense_packer_new()) == NULL) {
    free(d);
    return NULL;
  }
  d->min_gap = min_gap;
  d->max_gap = max_gap;
  d->pipe = sn_pipe_new(apply, d, PIPE_MAX, o && o->thread);
  if (d->pipe == NULL) {
    sn_dense_packer_free(d->packer);
    free(d);
    return NULL;
  }
  sn_zinfo_builder_set_boundary_hook(sn_ztoc_builder_zinfo(zb), on_boundary,
                                     d);
  sn_ztoc_builder_set_file_hook(zb, on_file, d);
  sn_ztoc_builder_set_output_hook(zb, on_output, d);
  return d;
}

/* The dense table: a copy of z (its file table) with the sub-spans'
 * digests and the checkpoint table. */
static struct sn_ztoc *
make_table(struct sn_dense_builder *d, const struct sn_ztoc *z)
{
  struct sn_zinfo zi = { .compression = d->zstd ? SN_COMP_ZSTD : SN_COMP_GZIP,
                         .compressed_size = z->compressed_size,
                         .uncompressed_size = z->uncompressed_size,
                         .nspans = d->ncp };
  struct sn_winref *ref = calloc(d->ncp, sizeof *ref);
  struct sn_ztoc *t = NULL;
  size_t i;

  zi.cp = calloc(d->ncp, sizeof *zi.cp);
  if (ref == NULL || zi.cp == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < d->ncp; i++) {
    zi.cp[i] = (struct sn_checkpoint) { .in = d->cp[i].in,
                                        .out = d->cp[i].out,
                                        .bits = (uint8_t) d->cp[i].bits };
    ref[i] = d->cp[i].ref;
  }
  /* z's file table, with the dense checkpoints and digests. */
  if ((t = sn_ztoc_copy_toc(z)) == NULL)
    goto out;
  t->compression = zi.compression;
  t->span_digests = calloc(d->ncp, sizeof *t->span_digests);
  if (t->span_digests == NULL) {
    sn_oom();
    goto fail;
  }
  t->nspan_digests = d->ncp;
  t->max_span_id = (int32_t) d->ncp - 1;
  for (i = 0; i < d->ncp; i++) {
    char hex[SN_DIGEST_STRLEN + 1];

    sn_digest_format(d->cp[i].digest, hex);
    if (sn_bytes_set(&t->span_digests[i], hex, strlen(hex)) == -1)
      goto fail;
  }
  if (sn_dense_cp_encode(&zi, ref, (int64_t) d->windows_len, &t->checkpoints,
                         &t->checkpoints_len) == -1)
    goto fail;
  goto out;
fail:
  sn_ztoc_free(t);
  t = NULL;
out:
  free(zi.cp);
  free(ref);
  return t;
}

/* A sub-span the plugin would refuse to decode at once (SN_SPAN_MAX_OUT):
 * no dense index rather than one that is not used. */
static int
check_table(const struct sn_ztoc *t)
{
  struct sn_zinfo *zi = sn_zinfo_from_ztoc(t);
  int r;

  if (zi == NULL)
    return -1;
  r = sn_zinfo_check_spans(zi);
  sn_zinfo_free(zi);
  return r == -1 ? sn_prefix_error("dense index: ") : 0;
}

int
sn_dense_builder_finish(struct sn_dense_builder *d, const struct sn_ztoc *z,
                        struct sn_ztoc **table, uint8_t **windows,
                        size_t *windows_len)
{
  *table = NULL;
  *windows = NULL;
  *windows_len = 0;
  sn_pipe_close(d->pipe);       /* every hook applied */
  if (d->failed)
    return sn_set_error("%s", d->why ? d->why : "out of memory");
  if (d->ncp == 0)
    return sn_set_error("dense index: the layer has no deflate block");
  if (kbuf_end(&d->in) != z->compressed_size)
    return sn_set_error("dense index: %" PRId64 " bytes fed, the layer has "
                        "%" PRId64, kbuf_end(&d->in),
                        z->compressed_size);
  /* The last boundary, decided with the stream's end as the next one. */
  if (d->have_cand && worth_it(d, z->compressed_size, d->out_end) &&
      take_cand(d) == -1)
    return -1;
  d->have_cand = false;
  if (close_subspan(d, z->compressed_size) == -1 ||
      settle_ready(d, -1) == -1)
    return -1;
  if (d->zstd && d->ncp < 2)
    return sn_set_error("dense index: the zstd layer's frames give one "
                        "restart point (a layer of several frames is "
                        "served lazily)");
  *table = make_table(d, z);
  if (*table == NULL || check_table(*table) == -1) {
    sn_ztoc_free(*table);
    *table = NULL;
    return -1;
  }
  *windows = d->windows;
  *windows_len = d->windows_len;
  d->windows = NULL;
  d->windows_len = 0;
  return 0;
}

void
sn_dense_builder_free(struct sn_dense_builder *d)
{
  if (d == NULL)
    return;
  sn_pipe_free(d->pipe);
  free(d->wait);
  free(d->cp);
  free(d->files);
  free(d->in.p);
  free(d->out.p);
  free(d->windows);
  sn_dense_packer_free(d->packer);
  free(d->why);
  free(d);
}
