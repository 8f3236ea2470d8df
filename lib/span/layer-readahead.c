/* soci-nbd: sequential readahead of a layer's spans — once reads go
 * forward through a span's worth of bytes, the spans after them are loaded
 * on background threads (runs of them fetched with one range request when
 * there is no disk cache).  The layer is lib/span/layer.c; shared state is
 * in layer-int.h. */
#include <config.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/bufpool.h"
#include "util/digest.h"
#include "util/err.h"
#include "span/layer.h"
#include "span/layer-int.h"
#include "span/spancache.h"

/* ---- sequential readahead ------------------------------------------- */

#define RA_MIN_TRIGGER ((int64_t) 1 << 20)
/* A read continues the run if it starts within ra_slack of the range the
 * run covers: concurrent readers (nbdcopy has 16 MiB of requests
 * in flight, nbdkit 16 threads per connection) arrive out of order, and
 * squashfs reads skip the tar headers between files. */
#define RA_MIN_SLACK ((int64_t) 8 << 20)
#define RA_BATCH_MIN 4
/* A forward run streams (a copy of the device, not a program's start:
 * docs/dense-index.md, "Streaming") once STREAM_TRIGGER bytes are read in
 * it, or STREAM_TRIGGER_MANY with STREAM_READERS client reads or more
 * under way in the layer at once (nbdcopy keeps 64 in flight; a program's
 * start, a few): the first wave of a copy's reads, all arriving together,
 * is then fetched in a few large runs rather than read by read.  Once
 * seen, until a new run starts: a copy's reads in flight ebb and flow. */
#define STREAM_TRIGGER ((int64_t) 4 << 20)
#define STREAM_TRIGGER_MANY ((int64_t) 1 << 20)
#define STREAM_READERS 4

int
layer_staging_init(struct sn_layer *l)
{
  size_t n = l->zi->nspans ? l->zi->nspans : 1;

  if (l->staging)
    return 0;
  l->staging = calloc(n, sizeof *l->staging);
  l->staged = calloc(n, sizeof *l->staged);
  l->staged_in = calloc(n, sizeof *l->staged_in);
  if (l->staging && l->staged && l->staged_in)
    return 0;
  free(l->staging);
  free(l->staged);
  free(l->staged_in);
  l->staging = NULL;
  l->staged = NULL;
  l->staged_in = NULL;
  return sn_oom();
}

/* Size the readahead window from bytes (0 = off) so that it fits in half
 * the cache budget; with RA_BATCH_MIN spans or more and no disk cache,
 * set up staging for range requests. */
void
layer_set_readahead(struct sn_layer *l, size_t bytes, size_t budget)
{
  int64_t span = l->zi->span_size > 0 ? l->zi->span_size : RA_MIN_TRIGGER;
  size_t w;

  if (bytes == 0 || l->zi->nspans < 2)
    return;
  l->ra_bytes = (int64_t) bytes;
  w = bytes / (size_t) span;
  if (w < 2)
    w = 2;
  if (w > SN_SPANCACHE_MAX_GET)
    w = SN_SPANCACHE_MAX_GET;
  /* The spans read ahead must not push the ones being read out. */
  while (w > 0 && w * (size_t) span > budget / 2)
    w--;
  if (w == 0)
    return;
  /* Runs of spans are fetched with one range request when the window is
   * RA_BATCH_MIN spans or more (small spans: the registry's cost per
   * request dominates; with 2 big spans it saved nothing measurable and
   * held more memory).  With a disk cache, spans may be on disk: fetch
   * them one by one. */
  if (l->dir == NULL && w >= RA_BATCH_MIN)
    layer_staging_init(l);      /* without it, spans one by one */
  l->ra_window = w;
  l->ra_trigger = span > RA_MIN_TRIGGER ? span : RA_MIN_TRIGGER;
  l->ra_slack = 2 * l->ra_trigger > RA_MIN_SLACK ? 2 * l->ra_trigger
    : RA_MIN_SLACK;
}

struct ra_job {
  struct sn_layer *l;
  size_t span;
};

/* How long an idle worker waits for another job before it ends. */
#define RA_WORKER_LINGER_S 2

struct ra_work {
  void *(*fn)(void *);
  void *arg;
  struct ra_work *next;
};

/* Join the workers that have ended (ra_lock held: they released it for
 * the last time before it was taken). */
static void
ra_reap(struct sn_layer *l)
{
  while (l->nra_done > 0)
    pthread_join(l->ra_done[--l->nra_done], NULL);
}

void
layer_ra_end(struct sn_layer *l)
{
  pthread_mutex_lock(&l->ra_lock);
  l->ra_window = 0;
  while (l->ra_threads > 0)
    pthread_cond_wait(&l->ra_idle, &l->ra_lock);
  l->ra_quit = true;
  pthread_cond_broadcast(&l->ra_work);
  while (l->ra_workers > 0)
    pthread_cond_wait(&l->ra_idle, &l->ra_lock);
  ra_reap(l);
  pthread_mutex_unlock(&l->ra_lock);
  free(l->ra_done);
  l->ra_done = NULL;
}

/* What a new worker starts with. */
struct ra_boot {
  struct sn_layer *l;
  struct ra_work *first;
};

/* A worker: runs its first job, then queued ones, until none comes for
 * RA_WORKER_LINGER_S or the layer ends them. */
static void *
ra_worker(void *arg)
{
  struct sn_layer *l = ((struct ra_boot *) arg)->l;
  struct ra_work *w = ((struct ra_boot *) arg)->first;

  free(arg);
  for (;;) {
    struct timespec t;

    w->fn(w->arg);
    free(w);
    pthread_mutex_lock(&l->ra_lock);
    l->ra_idle_workers++;
    /* ra_work is on the realtime clock, as the layer's other conditions:
     * a clock step only changes how long an idle worker lingers. */
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += RA_WORKER_LINGER_S;
    while (l->ra_queue == NULL && !l->ra_quit &&
           pthread_cond_timedwait(&l->ra_work, &l->ra_lock, &t) == 0)
      ;
    l->ra_idle_workers--;
    w = l->ra_queue;
    if (w == NULL)
      break;
    l->ra_queue = w->next;
    if (l->ra_queue == NULL)
      l->ra_queue_tail = NULL;
    l->ra_queued--;
    pthread_mutex_unlock(&l->ra_lock);
  }
  /* Room in ra_done was made when this worker started. */
  l->ra_done[l->nra_done++] = pthread_self();
  if (--l->ra_workers == 0)
    pthread_cond_broadcast(&l->ra_idle);
  pthread_mutex_unlock(&l->ra_lock);
  return NULL;
}

/* Start a worker running w first (ra_lock held). */
static int
ra_worker_start(struct sn_layer *l, struct ra_work *w)
{
  struct ra_boot *boot = malloc(sizeof *boot);
  pthread_t tid;
  size_t need;

  if (boot == NULL)
    return -1;
  ra_reap(l);
  need = (size_t) l->ra_workers + 1;
  if (need > l->ra_done_cap) {
    size_t cap = need < 16 ? 16 : 2 * need;
    pthread_t *p = realloc(l->ra_done, cap * sizeof *p);

    if (p == NULL) {
      free(boot);
      return -1;
    }
    l->ra_done = p;
    l->ra_done_cap = cap;
  }
  *boot = (struct ra_boot) { .l = l, .first = w };
  if (pthread_create(&tid, NULL, ra_worker, boot) != 0) {
    free(boot);
    return -1;
  }
  l->ra_workers++;
  return 0;
}

int
layer_ra_thread_start(struct sn_layer *l, void *(*fn)(void *), void *arg)
{
  struct ra_work *w = malloc(sizeof *w);

  if (w == NULL || l->ra_quit) {
    free(w);
    return -1;
  }
  *w = (struct ra_work) { .fn = fn, .arg = arg };
  if (l->ra_idle_workers > l->ra_queued) {
    if (l->ra_queue_tail)
      l->ra_queue_tail->next = w;
    else
      l->ra_queue = w;
    l->ra_queue_tail = w;
    l->ra_queued++;
    pthread_cond_signal(&l->ra_work);
  }
  else if (ra_worker_start(l, w) == -1) {
    free(w);
    return -1;
  }
  l->ra_threads++;
  return 0;
}

/* The end of a job's use of the layer (with ra_lock held): after this it
 * only unlocks ra_lock and returns. */
void
layer_ra_thread_done(struct sn_layer *l)
{
  if (--l->ra_threads == 0)
    pthread_cond_broadcast(&l->ra_idle);
}

/* One span read ahead (one thread per span: the window refills as each
 * span completes, not when a whole batch has). */
static void *
ra_thread(void *arg)
{
  struct ra_job *j = arg;
  struct sn_layer *l = j->l;
  struct sn_span_ent *e;
  bool skip = false;

  /* Staged bytes already taken: a read has loaded the span. */
  if (l->staged) {
    pthread_mutex_lock(&l->ra_lock);
    skip = l->staged[j->span] == NULL;
    pthread_mutex_unlock(&l->ra_lock);
  }
  /* Errors are not reported here: a foreground read of a span that
   * failed loads it again and reports. */
  if (!skip && sn_spancache_get(l->cache, j->span, 1, &e) == 0)
    sn_spancache_put(l->cache, e);
  free(j);
  pthread_mutex_lock(&l->ra_lock);
  l->ra_inflight--;
  layer_ra_thread_done(l);
  pthread_mutex_unlock(&l->ra_lock);
  return NULL;
}

struct ra_batch {
  struct sn_layer *l;
  size_t first, n;              /* spans marked staging by layer_stage */
  unsigned flags;               /* LAYER_STAGE_* */
};

void
layer_staged_put(struct sn_layer *l, uint8_t *comp, struct layer_batch *b)
{
  if (b == NULL)
    sn_bufpool_put(l->comp_pool, comp);
  else if (atomic_fetch_sub(&b->refs, 1) == 1) {
    sn_bufpool_put(l->comp_pool, b->buf);
    free(b);
  }
}

static void start_span_threads(struct sn_layer *l, size_t first, size_t n);

/* Fetch spans [first, first+n) with one range request, verify each span's
 * slice against its digest and stage it (a slice that does not match is
 * dropped: its load fetches the span itself, with the usual refetches),
 * then load the spans (decode into the cache) on a thread each.  The
 * slices stay in the run's buffer unless LAYER_STAGE_APART. */
static void *
ra_batch_thread(void *arg)
{
  struct ra_batch *b = arg;
  struct sn_layer *l = b->l;
  bool apart = b->flags & LAYER_STAGE_APART;
  struct sn_span s0, s1;
  uint8_t *all, **bufs = calloc(b->n, sizeof *bufs);
  struct layer_batch *run = apart ? NULL : malloc(sizeof *run);
  size_t len, k, nref = 0;
  bool ok;

  sn_zinfo_span(l->zi, b->first, &s0);
  sn_zinfo_span(l->zi, b->first + b->n - 1, &s1);
  len = (size_t) (s1.comp_end - s0.comp_start);
  /* From the pool too: big short-lived mallocs on ever new threads would
   * each leave their pages in another malloc arena. */
  all = sn_bufpool_get(l->comp_pool, len);
  ok = all && bufs && (apart || run) &&
    l->read(l->read_opaque, all, len, s0.comp_start) == 0;
  for (k = 0; k < b->n && ok; k++) {
    size_t i = b->first + k;
    const struct sn_bytes *d = &l->z->span_digests[i];
    uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];
    uint8_t *slice;
    struct sn_span s;
    size_t clen;

    sn_zinfo_span(l->zi, i, &s);
    clen = (size_t) (s.comp_end - s.comp_start);
    slice = all + (s.comp_start - s0.comp_start);
    layer_count(&l->spans_fetched, 1);
    layer_count(&l->bytes_fetched, clen);
    /* Once its bytes are counted: the trace keeps a stats file current. */
    if (l->trace)
      l->trace(l->trace_opaque, i, &s);
    /* A TOC layer's chunk is checked once decoded (load_span). */
    if (!layer_toc_chunks(l)) {
      sn_sha256(slice, clen, got);
      if (sn_digest_parse(d->data, d->len, want) == -1 ||
          memcmp(want, got, SN_SHA256_LEN) != 0) {
        layer_count(&l->spans_failed, 1);
        continue;
      }
      layer_count(&l->spans_verified, 1);
    }
    if (!apart) {
      bufs[k] = slice;
      nref++;
    }
    else if ((bufs[k] = sn_bufpool_get(l->comp_pool, clen)) != NULL)
      memcpy(bufs[k], slice, clen);
  }
  if (nref > 0) {
    run->buf = all;
    atomic_init(&run->refs, nref);
  }
  else {
    sn_bufpool_put(l->comp_pool, all);
    free(run);
    run = NULL;
  }
  pthread_mutex_lock(&l->ra_lock);
  for (k = 0; k < b->n; k++) {
    l->staged[b->first + k] = bufs ? bufs[k] : NULL;
    l->staged_in[b->first + k] = bufs && bufs[k] ? run : NULL;
    l->staging[b->first + k] = 0;
  }
  pthread_cond_broadcast(&l->ra_staged);
  if (b->flags & LAYER_STAGE_DECODE) {
    /* Decode the staged spans (those that failed are left to the reads). */
    for (k = 0; k < b->n; k++)
      if (bufs && bufs[k])
        start_span_threads(l, b->first + k, 1);
    l->ra_inflight -= b->n;     /* now counted by the span threads */
  }
  free(bufs);
  free(b);
  layer_ra_thread_done(l);
  pthread_mutex_unlock(&l->ra_lock);
  return NULL;
}

/* Load spans [first, first+n) on a thread each (with ra_lock held). */
static void
start_span_threads(struct sn_layer *l, size_t first, size_t n)
{
  size_t i;

  for (i = first; i < first + n; i++) {
    struct ra_job *j = malloc(sizeof *j);

    if (j == NULL)
      break;
    j->l = l;
    j->span = i;
    if (layer_ra_thread_start(l, ra_thread, j) == -1) {
      free(j);
      break;
    }
    l->ra_inflight++;
  }
}

/* Stage one run of spans in [first, end) (with ra_lock held; staging set
 * up): from the first span nobody is loading, fetching or holding yet, up
 * to the next such span or max_bytes compressed bytes (0: no limit), with
 * one range request on a thread.  The spans are marked staging before the
 * cache is asked, so that a load starting meanwhile waits for the fetch
 * instead of fetching the span again.  LAYER_STAGE_DECODE: then load
 * each staged span on a thread of its own (counted in ra_inflight).
 * Returns the first span after the run (end if none was staged);
 * *run_first and *n say which spans were staged (*n 0: none). */
size_t
layer_stage(struct sn_layer *l, size_t first, size_t end, int64_t max_bytes,
            unsigned flags, size_t *run_first, size_t *n)
{
  *n = 0;
  *run_first = first;
  while (first < end) {
    struct ra_batch *b;
    struct sn_span s0, s;
    size_t k = 0;

    sn_zinfo_span(l->zi, first, &s0);
    while (first + k < end) {
      size_t i = first + k;

      /* Being fetched or staged by an earlier batch: not again. */
      if (l->staging[i] || l->staged[i])
        break;
      sn_zinfo_span(l->zi, i, &s);
      if (k > 0 && max_bytes > 0 && s.comp_end - s0.comp_start > max_bytes)
        break;
      l->staging[i] = 1;
      if (sn_spancache_present(l->cache, i)) {
        l->staging[i] = 0;
        break;
      }
      k++;
    }
    if (k == 0) {
      first++;
      continue;
    }
    b = malloc(sizeof *b);
    if (b) {
      b->l = l;
      b->first = first;
      b->n = k;
      b->flags = flags;
    }
    if (b == NULL || layer_ra_thread_start(l, ra_batch_thread, b) == -1) {
      size_t j;

      for (j = 0; j < k; j++)
        l->staging[first + j] = 0;
      pthread_cond_broadcast(&l->ra_staged);
      free(b);
      return end;
    }
    if (flags & LAYER_STAGE_DECODE)
      l->ra_inflight += k;
    *run_first = first;
    *n = k;
    return first + k;
  }
  return end;
}

/* Readahead of spans [first, end) (with ra_lock held): staged runs when
 * staging is set up, else a thread per span.  Returns the first span not
 * handled. */
static size_t
start_readahead(struct sn_layer *l, size_t first, size_t end)
{
  size_t i, next, n;

  if (l->staging == NULL) {
    for (i = first; i < end; i++)
      if (!sn_spancache_has(l->cache, i)) {
        start_span_threads(l, i, 1);
        layer_count(&l->readahead_spans, 1);
      }
    return end;
  }
  next = first;
  while (next < end) {
    size_t rf;

    next = layer_stage(l, next, end, 0, LAYER_STAGE_DECODE, &rf, &n);
    layer_count(&l->readahead_spans, n);
  }
  return next;
}

/* Note a read of [off, off+len) whose last span is last; if it continues
 * a forward run of at least ra_trigger bytes, start loading the spans
 * after last (up to ra_window of them in flight) on background threads. */
void
layer_readahead_note(struct sn_layer *l, int64_t off, size_t len, size_t last)
{
  size_t first, end;

  if (l->ra_window == 0)
    return;
  pthread_mutex_lock(&l->ra_lock);
  /* A read anywhere in the range the run covers continues it: of a
   * copy's dozens of reads in flight, one may come back to the stretch
   * more than ra_slack behind the newest. */
  if (off <= l->seq_end + l->ra_slack && off >= l->seq_start - l->ra_slack &&
      l->seq_bytes > 0) {
    l->seq_bytes += (int64_t) len;
    if (off + (int64_t) len > l->seq_end)
      l->seq_end = off + (int64_t) len;
    if (off < l->seq_start)
      l->seq_start = off;
  }
  else {                        /* a new run */
    l->seq_bytes = (int64_t) len;
    l->seq_start = off;
    l->seq_end = off + (int64_t) len;
    l->ra_next = 0;
    l->ra_streaming = false;
  }
  /* Sequential: a span's worth read, covering at least half of the range
   * the run spans (scattered reads near each other are not a stream). */
  l->ra_sequential = l->seq_bytes >= l->ra_trigger &&
    2 * l->seq_bytes >= l->seq_end - l->seq_start;
  if (l->ra_sequential && !l->ra_streaming)
    l->ra_streaming = l->seq_bytes >= STREAM_TRIGGER ||
      (l->seq_bytes >= STREAM_TRIGGER_MANY &&
       atomic_load(&l->client_reads) >= STREAM_READERS);
  /* A dense layer reads ahead by bytes, in layer_dense_note. */
  if (!l->ra_sequential || l->ra_window == 0 || layer_fine(l))
    goto out;
  first = last + 1 > l->ra_next ? last + 1 : l->ra_next;
  end = last + 1 + l->ra_window;
  if (end > l->zi->nspans)
    end = l->zi->nspans;
  /* Wait until half the window is free: fewer, larger range requests. */
  if (first >= end ||
      l->ra_window - l->ra_inflight < (l->ra_window + 1) / 2)
    goto out;
  if (end - first > l->ra_window - l->ra_inflight)
    end = first + (l->ra_window - l->ra_inflight);
  l->ra_next = start_readahead(l, first, end);

out:
  pthread_mutex_unlock(&l->ra_lock);
}
