/* soci-nbd: the streaming zinfo builder — one pass over a layer that
 * inflates it (lib/inflate/inflate.c), records checkpoints by zran's rule
 * and hashes the blob and each span, the hashing on a helper thread for
 * large feeds (docs/soci-format.md §4.5). */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "util/err.h"
#include "inflate/inflate.h"
#include "soci/zinfo.h"

#if SN_INFLATE_WINSIZE != SN_ZINFO_WINSIZE
#error "checkpoint windows are the decoder's history"
#endif

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

  /* zstd */
  ZSTD_DStream *zs;
  uint8_t *zout;
  size_t zlast;                  /* the last call's result (0: between
                                  * frames) */
  bool zfull;                    /* the last call filled its output */
  bool frame_end;                /* a frame ended: a boundary if more
                                  * input follows */

  /* Digests: owned by the helper while it hashes a chunk. */
  struct sn_sha256 blob_hash, span_hash;
  bool span_open;                /* span_hash holds a span's first bytes */
  uint8_t (*digests)[SN_SHA256_LEN];
  size_t ndigests, dcap;

  struct hasher h;

  sn_boundary_fn boundary;       /* sn_zinfo_builder_set_boundary_hook */
  void *boundary_opaque;
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

/* Apply cut c: hash up to it, close the open span, open the next (with
 * the byte holding c's leftover bits, if any). */
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

/* The helper thread: hash each chunk handed over until told to quit. */
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

/* Stop and join the helper, if it was started, and free its state. */
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

/* Hand data[0..len) to the helper as the next chunk. */
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

/* A builder for a layer of compression comp (gzip: checkpoints more than
 * span_size output bytes apart; uncompressed: spans of span_size bytes).
 * on_output, if set, gets the uncompressed bytes. */
struct sn_zinfo_builder *
sn_zinfo_builder_new(enum sn_compression comp, int64_t span_size,
                     sn_output_fn on_output, void *opaque)
{
  struct sn_zinfo_builder *b;

  if (comp != SN_COMP_GZIP && comp != SN_COMP_UNCOMPRESSED &&
      comp != SN_COMP_ZSTD) {
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
  if (comp == SN_COMP_ZSTD) {
    b->zs = ZSTD_createDStream();
    b->zout = malloc(ZSTD_DStreamOutSize());
    b->cp = calloc(1, sizeof *b->cp);   /* the one checkpoint: (0, 0) */
    if (b->zs == NULL || b->zout == NULL || b->cp == NULL) {
      sn_oom();
      goto fail;
    }
    b->ncp = b->cpcap = 1;
  }
  return b;

fail:
  sn_zinfo_builder_free(b);
  return NULL;
}

/* Stop the helper thread and free whatever the builder still owns. */
void
sn_zinfo_builder_free(struct sn_zinfo_builder *b)
{
  size_t i;

  if (b == NULL)
    return;
  hasher_stop(&b->h);
  sn_inflate_free(b->inf);
  ZSTD_freeDStream(b->zs);
  free(b->zout);
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
    if (ev == SN_INFLATE_BLOCK && b->boundary &&
        b->boundary(b->boundary_opaque, b->totin, sn_inflate_bits(b->inf),
                    b->totout) == -1)
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

/* Feed a gzip layer's bytes: hashed on the helper when the feed is large
 * enough (and it runs), else inline, while inflate_feed runs. */
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

/* One zstd call on *in, handing the output on; a frame that ends there
 * is noted. */
static int
zstd_step(struct sn_zinfo_builder *b, ZSTD_inBuffer *in)
{
  ZSTD_outBuffer out = { b->zout, ZSTD_DStreamOutSize(), 0 };
  size_t before = in->pos;

  b->zlast = ZSTD_decompressStream(b->zs, &out, in);
  if (ZSTD_isError(b->zlast))
    return sn_set_error("corrupt zstd frame near offset %" PRId64 " (%s)",
                        b->totin, ZSTD_getErrorName(b->zlast));
  b->totin += (int64_t) (in->pos - before);
  b->totout += (int64_t) out.pos;
  b->zfull = out.pos == out.size;
  b->frame_end = b->zlast == 0;
  if (out.pos && b->on_output && b->on_output(b->opaque, b->zout,
                                              out.pos) == -1)
    return -1;
  return 0;
}

/* zstd layers (several frames, or one): decompressed for on_output, each
 * frame's end that more input follows told to the boundary hook (the
 * first at (0, 0)); one span, the whole blob, hashed inline. */
static int
feed_zstd(struct sn_zinfo_builder *b, const uint8_t *data, size_t len)
{
  ZSTD_inBuffer in = { data, len, 0 };

  if (!b->no_blob_hash)
    sn_sha256_update(&b->blob_hash, data, len);
  sn_sha256_update(&b->span_hash, data, len);
  if (b->totin == 0 && !b->frame_end && b->boundary &&
      b->boundary(b->boundary_opaque, 0, 0, 0) == -1)
    return -1;
  while (in.pos < in.size || b->zfull) {
    if (b->frame_end && in.pos < in.size && b->boundary &&
        b->boundary(b->boundary_opaque, b->totin, 0, b->totout) == -1)
      return -1;
    b->frame_end = false;
    if (zstd_step(b, &in) == -1)
      return -1;
  }
  return 0;
}

/* Feed the next len bytes of the blob; an error stops the builder. */
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
    : b->comp == SN_COMP_ZSTD ? feed_zstd(b, data, len)
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
  if (b->comp != SN_COMP_UNCOMPRESSED) {
    zi->cp = b->cp;
    b->cp = NULL;
    b->ncp = b->cpcap = 0;
  }
  return zi;
}

/* End of the blob: a gzip stream must be complete; close the last
 * span. */
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
  if (b->comp == SN_COMP_ZSTD) {
    ZSTD_inBuffer in = { none, 0, 0 };

    while (b->zfull)            /* output zstd still holds */
      if (zstd_step(b, &in) == -1)
        return -1;
    if (b->totin == 0 || b->zlast != 0)
      return sn_set_error("truncated zstd stream (%" PRId64 " bytes): the "
                          "layer ends inside a frame", b->totin);
    return close_span(b);
  }
  if (b->totin == 0)
    return sn_set_error("empty uncompressed layer: no spans");
  if (b->totin % b->span_size != 0)
    return close_span(b);
  return 0;
}

/* Finish: the zinfo (*zi) and the span digests (if asked) become the
 * caller's; blob_digest, if asked, fails after
 * sn_zinfo_builder_skip_blob_digest. */
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

void
sn_zinfo_builder_set_boundary_hook(struct sn_zinfo_builder *b,
                                   sn_boundary_fn fn, void *opaque)
{
  b->boundary = fn;
  b->boundary_opaque = opaque;
}

void
sn_zinfo_builder_window(const struct sn_zinfo_builder *b,
                        uint8_t window[SN_ZINFO_WINSIZE])
{
  if (b->inf)
    sn_inflate_window(b->inf, window);
  else
    memset(window, 0, SN_ZINFO_WINSIZE);   /* zstd frames need none */
}
