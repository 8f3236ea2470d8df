/* soci-nbd: reading a layer through a dense index (docs/dense-index.md).
 * Its spans are the index's sub-spans, a few tens of KiB each, and carry
 * no window of their own.  A sub-span is decoded with the output before it
 * when its neighbour is decoded already (or being decoded: then after it),
 * else with its sparse window, fetched from the windows blob and checked
 * against its digest.  A read that misses stages the rest of the file it
 * falls in (capped at DENSE_AHEAD bytes of output) with range requests of
 * at most DENSE_BATCH compressed bytes, all under way at once, and decodes
 * them in order on one thread, so that each sub-span after the first finds
 * its window in the cache.  The read itself waits only for its own
 * sub-spans.  A streaming reader (a copy of the device) gets a stretch
 * staged far ahead in larger runs, each decoded in order by its thread
 * from the one window of its first sub-span; reads of a run's sub-spans
 * wait for that thread.  The chunks of an eStargz or zstd:chunked layer
 * (lib/stargz/stargz.h) are staged the same way; they decode on their own,
 * with no window.  Shared state:
 * layer-int.h. */
#include <config.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dense/dense.h"
#include "span/layer.h"
#include "span/layer-int.h"
#include "span/spancache.h"
#include "util/err.h"

/* How far past a missed read the rest of its file is fetched and decoded
 * (uncompressed bytes), and the largest range request for it. */
#define DENSE_AHEAD ((int64_t) 1 << 20)
#define DENSE_BATCH ((int64_t) 512 << 10)
/* The same when streaming: fewer, larger requests (each costs a registry
 * a buffer fill of its own: bench/README.md, seventeenth session). */
#define DENSE_STREAM_BATCH ((int64_t) 8 << 20)
/* The most tar header bytes (with PAX records) before a file's data. */
#define DENSE_HEADER_SLACK ((int64_t) 64 << 10)
/* Once reads stream (ra_streaming: layer-readahead.c), DENSE_STREAM_AHEAD
 * bytes (or readahead_bytes if more, at most half the cache) are fetched
 * ahead, across files, in runs decoded in parallel.  32 MiB against 8 and
 * 16: fewer small requests when the stream outruns the staged stretch
 * (bench/README.md, fifteenth session). */
#define DENSE_STREAM_AHEAD ((int64_t) 32 << 20)

/* Copy the output [start, end) from the memory cache into dst, waiting for
 * spans being loaded if wait; 1 if a span of it is not there (or loading
 * and !wait). */
static int
window_from_cache(struct sn_layer *l, size_t i, int64_t start, int64_t end,
                  bool wait, uint8_t *dst)
{
  size_t j = sn_zinfo_span_of(l->zi, start);

  for (; j < i && start < end; j++) {
    struct sn_span_ent *e;
    struct sn_span s;
    const uint8_t *data;
    size_t dlen;
    int64_t b;

    sn_zinfo_span(l->zi, j, &s);
    if (s.uncomp_end <= start)
      continue;
    if (sn_spancache_join(l->cache, j, wait, &e) != 0)
      return 1;
    data = sn_spancache_data(e, &dlen);
    b = s.uncomp_end < end ? s.uncomp_end : end;
    if (s.uncomp_start > start || s.uncomp_start + (int64_t) dlen < b) {
      sn_spancache_put(l->cache, e);
      return 1;
    }
    memcpy(dst, data + (start - s.uncomp_start), (size_t) (b - start));
    dst += b - start;
    start = b;
    sn_spancache_put(l->cache, e);
  }
  return start == end ? 0 : 1;
}

/* Fetch span i's sparse window and check it (refetching on a mismatch as
 * spans are). */
static int
window_fetch(struct sn_layer *l, size_t i, uint8_t *win)
{
  const struct sn_winref *r = &l->zi->winref[i];
  uint8_t *frame;
  int n, ret = -1;

  if (l->win_read == NULL)
    return sn_set_error("span %zu of %s: no source for the dense index's "
                        "windows", i, l->name);
  frame = malloc(r->len ? r->len : 1);
  if (frame == NULL)
    return sn_oom();
  for (n = 1; n <= 1 + l->max_refetch; n++) {
    layer_count(&l->windows_fetched, 1);
    if (l->win_read(l->win_opaque, frame, r->len, r->off) == -1) {
      sn_prefix_error("window of span %zu of %s: ", i, l->name);
      break;
    }
    layer_count(&l->bytes_fetched, r->len);
    ret = sn_dense_window_unpack(r, frame, r->len, win);
    if (ret == 0)
      break;
    sn_prefix_error("window of span %zu of %s: ", i, l->name);
  }
  free(frame);
  return ret;
}

/* Span i's window from a frame fetched for it as the first of a run
 * (layer_dense_stage_window): 0, or 1 when there is none (or it does not
 * check: then it is fetched anew). */
static int
window_staged(struct sn_layer *l, size_t i, uint8_t *win)
{
  uint8_t *frame;
  int r;

  pthread_mutex_lock(&l->ra_lock);
  while (l->win_fetching[i])
    pthread_cond_wait(&l->ra_staged, &l->ra_lock);
  frame = l->win_frames[i];
  l->win_frames[i] = NULL;
  pthread_mutex_unlock(&l->ra_lock);
  if (frame == NULL)
    return 1;
  r = sn_dense_window_unpack(&l->zi->winref[i], frame, l->zi->winref[i].len,
                             win);
  free(frame);
  return r == 0 ? 0 : 1;
}

/* Decode staged sub-spans (their bytes fetched or on their way) before a
 * window of their own: at most DENSE_CHAIN spans, ~0.2 ms each, against a
 * round trip for the window (bench/README.md, eighteenth session). */
#define DENSE_CHAIN 64

/* Set while a thread decodes such a chain: the chain's first span fetches
 * its window rather than start a chain of its own. */
static _Thread_local bool in_chain;

/* When the spans just before i are staged but not decoded (a dependency
 * prefetch's or a file's run, whose thread may not have reached them),
 * decode them in order, back to one that decodes on its own (its window
 * frame staged, or the span before it in the cache), so that i finds its
 * window in the cache.  Nothing if i has a window frame of its own. */
static void
decode_staged_before(struct sn_layer *l, size_t i)
{
  size_t j = i;

  if (in_chain || l->staging == NULL)
    return;
  pthread_mutex_lock(&l->ra_lock);
  if (l->win_frames[i] == NULL && !l->win_fetching[i])
    while (j > 0 && i - j < DENSE_CHAIN &&
           (l->staging[j - 1] || l->staged[j - 1]) &&
           !sn_spancache_present(l->cache, j - 1)) {
      j--;
      if (l->win_frames[j] || l->win_fetching[j])
        break;
    }
  pthread_mutex_unlock(&l->ra_lock);
  if (j == i)
    return;
  in_chain = true;
  /* A failure is the reads' to report: then i fetches its window. */
  (void) layer_load_in_order(l, j, i - 1);
  in_chain = false;
}

/* The output before span i (its checkpoint's window) from the memory
 * cache, or else from the windows blob: the neighbour's output when it is
 * decoded; a frame fetched with its run's; the neighbour's output once
 * its decode under way ends (unless i starts a run that decodes on its
 * own); its own frame, fetched now. */
int
layer_dense_window(struct sn_layer *l, size_t i, uint8_t *win)
{
  const struct sn_checkpoint *c = &l->zi->cp[i];
  int64_t need = c->out < SN_ZINFO_WINSIZE ? c->out : SN_ZINFO_WINSIZE;
  uint8_t *tail = win + SN_ZINFO_WINSIZE - need;
  bool cached;

  memset(win, 0, SN_ZINFO_WINSIZE);
  if (l->zi->winref[i].len == 0 || need == 0)
    return 0;                   /* nothing reads it */
  cached = window_from_cache(l, i, c->out - need, c->out, false, tail) == 0;
  if (!cached && !atomic_load(&l->win_nowait[i])) {
    decode_staged_before(l, i);
    cached = window_from_cache(l, i, c->out - need, c->out, true, tail) == 0;
  }
  if (cached) {
    layer_count(&l->windows_from_cache, 1);
    return 0;
  }
  memset(win, 0, SN_ZINFO_WINSIZE);
  if (window_staged(l, i, win) == 0)
    return 0;
  memset(win, 0, SN_ZINFO_WINSIZE);
  return window_fetch(l, i, win);
}

struct win_job {
  struct sn_layer *l;
  size_t i;
};

/* Fetch span i's window frame and keep it for the span's decode, which
 * checks it against its digest (window_staged). */
static void *
win_thread(void *arg)
{
  struct win_job *j = arg;
  struct sn_layer *l = j->l;
  const struct sn_winref *r = &l->zi->winref[j->i];
  uint8_t *f = NULL;

  if (r->len && l->win_read && (f = malloc(r->len)) != NULL &&
      l->win_read(l->win_opaque, f, r->len, r->off) == 0) {
    layer_count(&l->bytes_fetched, r->len);
    layer_count(&l->windows_fetched, 1);
    layer_count(&l->windows_staged, 1);
  }
  else {
    free(f);
    f = NULL;
  }
  pthread_mutex_lock(&l->ra_lock);
  if (f) {
    free(l->win_frames[j->i]);
    l->win_frames[j->i] = f;
  }
  l->win_fetching[j->i] = 0;
  pthread_cond_broadcast(&l->ra_staged);
  free(j);
  layer_ra_thread_done(l);
  pthread_mutex_unlock(&l->ra_lock);
  return NULL;
}

/* Fetch span i's window on a thread (ra_lock held), so that it decodes
 * without waiting for the span before it: the first of a run. */
void
layer_dense_stage_window(struct sn_layer *l, size_t i)
{
  struct win_job *j = malloc(sizeof *j);

  if (j == NULL)
    return;
  *j = (struct win_job) { .l = l, .i = i };
  l->win_fetching[i] = 1;
  if (layer_ra_thread_start(l, win_thread, j) == -1) {
    l->win_fetching[i] = 0;
    free(j);
  }
}

/* The end of the data of the file that offset off falls in, or of the
 * next file when off is in the tar headers just before its data (a read
 * of a file's header comes first: layer-check.c), or -1. */
static int64_t
file_end_at(const struct sn_layer *l, int64_t off)
{
  /* After the last file starting at or before off; files may overlap,
   * and max_end says whether any before it reaches off. */
  size_t lo = layer_files_upto(l, off);

  if (lo > 0 && l->df[lo - 1].max_end > off)
    return l->df[lo - 1].max_end;
  if (lo < l->ndf && l->df[lo].off - off <= DENSE_HEADER_SLACK)
    return l->df[lo].end;
  return -1;
}

/* Are all spans first..last cached or on their way? */
static bool
all_present(struct sn_layer *l, size_t first, size_t last)
{
  size_t i;

  for (i = first; i <= last; i++)
    if (!sn_spancache_present(l->cache, i) && !l->staging[i] && !l->staged[i])
      return false;
  return true;
}

/* Spans first..last are no run thread's to decode any more: their reads
 * stop waiting (ra_lock held). */
static void
run_release(struct sn_layer *l, size_t first, size_t last)
{
  size_t i;

  for (i = first; i <= last; i++)
    atomic_store(&l->run_pending[i], 0);
  if (last - first + 1 >= LAYER_RUN_CONDS)
    for (i = 0; i < LAYER_RUN_CONDS; i++)
      pthread_cond_broadcast(&l->run_done[i]);
  else
    for (i = first; i <= last; i++)
      pthread_cond_broadcast(&l->run_done[i % LAYER_RUN_CONDS]);
}

struct dense_run {
  struct sn_layer *l;
  size_t first, last;
};

/* Decode spans first..last in order through the cache (each finds its
 * window in the one before); errors are left to the reads. */
static void *
dense_run_thread(void *arg)
{
  struct dense_run *r = arg;
  struct sn_layer *l = r->l;
  size_t i;

  for (i = r->first; i <= r->last && !atomic_load(&l->poison) &&
       !atomic_load(&l->closing); i++) {
    struct sn_span_ent *e;

    if (sn_spancache_get(l->cache, i, 1, &e) == -1)
      break;
    sn_spancache_put(l->cache, e);
    if (atomic_load(&l->run_pending[i])) {
      pthread_mutex_lock(&l->ra_lock);
      run_release(l, i, i);
      pthread_mutex_unlock(&l->ra_lock);
    }
  }
  pthread_mutex_lock(&l->ra_lock);
  /* Given up (an error, or the layer closing): the reads decode the rest
   * themselves. */
  if (i <= r->last)
    run_release(l, i, r->last);
  free(r);
  layer_ra_thread_done(l);
  pthread_mutex_unlock(&l->ra_lock);
  return NULL;
}

/* Stage spans [first, stop] in runs of at most DENSE_BATCH compressed
 * bytes, each decoded in order on a thread of its own (ra_lock held).
 * streaming: runs of DENSE_STREAM_BATCH, each with the window of its
 * first span (one more, small, range request) so that runs decode in
 * parallel, and the reads of a run's spans wait for its thread instead of
 * fetching their own windows. */
static void
stage_runs(struct sn_layer *l, size_t first, size_t stop, bool streaming)
{
  size_t next = first, rf, n;

  while (next <= stop) {
    struct dense_run *r;

    next = layer_stage(l, next, stop + 1,
                       streaming ? DENSE_STREAM_BATCH : DENSE_BATCH, 0,
                       &rf, &n);
    if (n == 0)
      break;
    if (streaming && layer_windows(l)) {
      size_t k;

      for (k = rf; k < rf + n; k++)
        atomic_store(&l->run_pending[k], 1);
      if (rf > 0 && !sn_spancache_present(l->cache, rf - 1)) {
        atomic_store(&l->win_nowait[rf], 1);
        layer_dense_stage_window(l, rf);
      }
    }
    r = malloc(sizeof *r);
    if (r)
      *r = (struct dense_run) { .l = l, .first = rf, .last = rf + n - 1 };
    if (r == NULL || layer_ra_thread_start(l, dense_run_thread, r) == -1) {
      free(r);
      run_release(l, rf, rf + n - 1);   /* its reads decode it */
      break;
    }
  }
}

void
layer_dense_await_run(struct sn_layer *l, size_t i)
{
  if (!atomic_load(&l->run_pending[i]))
    return;
  pthread_mutex_lock(&l->ra_lock);
  while (atomic_load(&l->run_pending[i]))
    pthread_cond_wait(&l->run_done[i % LAYER_RUN_CONDS], &l->ra_lock);
  pthread_mutex_unlock(&l->ra_lock);
}

bool
sn_layer_streaming(struct sn_layer *l)
{
  bool seq;

  pthread_mutex_lock(&l->ra_lock);
  seq = layer_streams(l);
  pthread_mutex_unlock(&l->ra_lock);
  return seq;
}

void
layer_dense_note(struct sn_layer *l, int64_t off, size_t len, size_t first,
                 size_t last, bool fg)
{
  int64_t end = off + (int64_t) len, fend = file_end_at(l, off), ahead = 0;
  bool hit, seq;
  size_t stop, next, rf, n;

  pthread_mutex_lock(&l->ra_lock);
  hit = all_present(l, first, last);
  /* Streaming (a copy of the device): far more read in one forward run
   * than a program reads of its files. */
  seq = fg && l->ra_bytes > 0 && layer_streams(l);
  if (hit && !seq) {
    pthread_mutex_unlock(&l->ra_lock);
    return;
  }
  /* The rest of the file (capped), or the stretch ahead when reads
   * stream. */
  if (fend > end)
    end = fend < off + DENSE_AHEAD ? fend : off + DENSE_AHEAD;
  if (seq) {
    ahead = l->ra_bytes > DENSE_STREAM_AHEAD ? l->ra_bytes
      : DENSE_STREAM_AHEAD;
    if (ahead > (int64_t) l->cache_budget / 2)
      ahead = (int64_t) l->cache_budget / 2;
    if (end < off + (int64_t) len + ahead)
      end = off + (int64_t) len + ahead;
  }
  if (end > l->zi->uncompressed_size)
    end = l->zi->uncompressed_size;
  stop = end > off ? sn_zinfo_span_of(l->zi, end - 1) : last;
  if (stop < last)
    stop = last;
  /* The read's own spans in a request of their own (the read decodes
   * them), then the rest, all at once. */
  for (next = first; !hit && next <= last;)
    next = layer_stage(l, next, last + 1, 0, 0, &rf, &n);
  if (seq) {
    /* Streaming: top the staged stretch up to readahead_bytes ahead once
     * less than half of it is left, so that runs stay large. */
    size_t from = l->ra_next > last + 1 ? l->ra_next : last + 1;
    struct sn_span s;

    sn_zinfo_span(l->zi, from < l->zi->nspans ? from : l->zi->nspans - 1,
                  &s);
    if (from <= stop && s.uncomp_start - (off + (int64_t) len) <
        ahead / 2) {
      stage_runs(l, from, stop, true);
      l->ra_next = stop + 1;
    }
  }
  else if (stop > last)
    stage_runs(l, last + 1, stop, false);
  pthread_mutex_unlock(&l->ra_lock);
}
