/* soci-nbd: reading a layer's uncompressed bytes through verified spans
 * (fetched concurrently, single flight, cached in memory and optionally on
 * disk), and checking files' tar headers against their ztoc entries before
 * their bytes are served. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bufpool.h"
#include "soci/build.h"
#include "util/digest.h"
#include "span/diskcache.h"
#include "util/err.h"
#include "span/layer.h"
#include "span/spancache.h"
#include "soci/tar.h"

#define DEFAULT_CACHE_BYTES ((size_t) 64 << 20)
#define DEFAULT_MAX_REFETCH 2
#define POOL_BUFS 4

enum { FILE_UNKNOWN, FILE_OK, FILE_BAD };

/* A file with data, for finding the files a read overlaps. */
struct data_file {
  int64_t off, end;             /* [off, end) of its data in the tar */
  int64_t max_end;              /* max end of this and all earlier ones */
  size_t idx;                   /* into z->files */
};

/* A file whose header check failed, and why. */
struct bad_file {
  size_t idx;
  char *msg;
  struct bad_file *next;
};

struct sn_layer {
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  sn_blob_read_fn read;
  void *read_opaque;
  sn_span_trace_fn trace;
  void *trace_opaque;
  struct sn_spancache *cache;
  /* Reused buffers: decoded spans (released by the cache) and compressed
   * spans (released right after decoding). */
  struct sn_bufpool *span_pool, *comp_pool;
  char *name;                   /* for messages: digest or "the layer" */
  char *dir;                    /* disk cache DIR/<hex>, or NULL */
  struct sn_diskcache *disk;    /* its size accounting, or NULL */
  int max_refetch;
  /* Per span: a background fetcher wants a copy of the compressed bytes
   * of the next load (capture), and the copy (captured). */
  _Atomic(int) *capture;
  _Atomic(uint8_t *) *captured;
  _Atomic(char *) poison;       /* set: every read fails with this */

  struct data_file *df;         /* sorted by off */
  size_t ndf;
  _Atomic unsigned char *fstate;  /* per z->files entry: FILE_* */
  pthread_mutex_t lock;         /* protects bad */
  struct bad_file *bad;

  _Atomic uint64_t spans_fetched, spans_verified, spans_failed;
  _Atomic uint64_t bytes_fetched, disk_hits, headers_checked;
  _Atomic uint64_t readahead_spans;

  /* Sequential readahead (ra_window spans; 0 = off), under ra_lock. */
  size_t ra_window;
  int64_t ra_trigger;           /* bytes of a forward run that trigger it */
  int64_t ra_slack;             /* how far from the run's end a read may be */
  pthread_mutex_t ra_lock;
  pthread_cond_t ra_idle;       /* signalled when ra_threads drops to 0 */
  int64_t seq_start, seq_end;   /* the offsets the current run covers */
  int64_t seq_bytes;            /* bytes read in it */
  size_t ra_next;               /* first span readahead has not asked for */
  size_t ra_inflight;           /* spans its threads are loading */
  unsigned ra_threads;          /* its threads still running */
  /* Readahead threads are joinable: each one, done with the layer, adds
   * itself here (room is made before it starts) and is joined by the next
   * start of a readahead thread or by sn_layer_free, so that no thread
   * of the layer outlives it (a thread still exiting while the process
   * exits can hang in the libraries' destructors). */
  pthread_t *ra_done;
  size_t nra_done, ra_done_cap;
  /* Readahead fetches runs of spans with one range request (when there is
   * no disk cache): per span, a fetch covering it is under way (staging,
   * under ra_lock; loads of the span wait for it: ra_staged), and its
   * verified compressed bytes, a comp_pool buffer, once there (staged). */
  unsigned char *staging;
  uint8_t **staged;
  pthread_cond_t ra_staged;
};

static void
count(_Atomic uint64_t *c, uint64_t n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static int load_span(void *opaque, size_t i, uint8_t **data, size_t *len);
static void ra_reap(struct sn_layer *l);
static void set_readahead(struct sn_layer *l, size_t bytes, size_t budget);

static void
release_span(void *opaque, uint8_t *data)
{
  struct sn_layer *l = opaque;

  sn_bufpool_put(l->span_pool, data);
}

static int
cmp_data_file(const void *a, const void *b)
{
  const struct data_file *x = a, *y = b;

  if (x->off != y->off)
    return x->off < y->off ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Index the files that have data by offset (the ztoc is sorted already
 * when decoded, but a hand-made one may not be; overlaps are allowed). */
static int
index_files(struct sn_layer *l)
{
  const struct sn_ztoc *z = l->z;
  int64_t max_end = 0;
  size_t i;

  l->fstate = calloc(z->nfiles ? z->nfiles : 1, sizeof *l->fstate);
  l->df = calloc(z->nfiles ? z->nfiles : 1, sizeof *l->df);
  if (l->fstate == NULL || l->df == NULL)
    return sn_oom();
  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];
    struct data_file *d = &l->df[l->ndf];

    if (f->size <= 0 || f->offset < 0)
      continue;
    d->off = f->offset;
    d->end = f->size > INT64_MAX - f->offset ? INT64_MAX
      : f->offset + f->size;
    d->idx = i;
    l->ndf++;
  }
  qsort(l->df, l->ndf, sizeof *l->df, cmp_data_file);
  for (i = 0; i < l->ndf; i++) {
    if (l->df[i].end > max_end)
      max_end = l->df[i].end;
    l->df[i].max_end = max_end;
  }
  return 0;
}

/* DIR/<hex of the layer digest>. */
static int
set_cache_dir(struct sn_layer *l, const char *dir, const char *digest)
{
  uint8_t d[SN_SHA256_LEN];
  size_t n;

  if (digest == NULL)
    return sn_set_error("cache directory %s: the layer digest is needed "
                        "as the cache key", dir);
  if (sn_digest_parse(digest, strlen(digest), d) == -1)
    return sn_prefix_error("cache key: ");
  n = strlen(dir) + 1 + 64 + 1;
  l->dir = malloc(n);
  if (l->dir == NULL)
    return sn_oom();
  snprintf(l->dir, n, "%s/%s", dir, digest + 7);
  /* Spans are written there: never through a symlink. */
  {
    struct stat st;

    if (lstat(l->dir, &st) == 0 && !S_ISDIR(st.st_mode))
      return sn_set_error("cache directory %s: not a directory%s: refused",
                          l->dir, S_ISLNK(st.st_mode) ? " (a symlink)" : "");
  }
  return 0;
}

struct sn_layer *
sn_layer_new_opts(struct sn_ztoc *z, sn_blob_read_fn read, void *opaque,
                  const struct sn_layer_opts *o)
{
  struct sn_layer_opts def = { 0 };
  struct sn_layer *l = calloc(1, sizeof *l);
  size_t budget;

  if (l == NULL) {
    sn_oom();
    sn_ztoc_free(z);
    return NULL;
  }
  if (o == NULL)
    o = &def;
  pthread_mutex_init(&l->lock, NULL);
  pthread_mutex_init(&l->ra_lock, NULL);
  pthread_cond_init(&l->ra_idle, NULL);
  pthread_cond_init(&l->ra_staged, NULL);
  l->z = z;
  l->read = read;
  l->read_opaque = opaque;
  l->max_refetch = o->max_refetch > 0 ? o->max_refetch
    : o->max_refetch == 0 ? DEFAULT_MAX_REFETCH : 0;
  l->name = strdup(o->layer_digest ? o->layer_digest : "the layer");
  if (l->name == NULL) {
    sn_oom();
    goto fail;
  }
  if (o->cache_dir && set_cache_dir(l, o->cache_dir, o->layer_digest) == -1)
    goto fail;
  l->disk = o->disk;
  l->zi = sn_zinfo_from_ztoc(z);
  if (l->zi == NULL)
    goto fail;
  if (sn_zinfo_check_spans(l->zi) == -1) {
    sn_prefix_error("%s: ", l->name);
    goto fail;
  }
  if (index_files(l) == -1)
    goto fail;
  l->capture = calloc(l->zi->nspans ? l->zi->nspans : 1, sizeof *l->capture);
  l->captured = calloc(l->zi->nspans ? l->zi->nspans : 1,
                       sizeof *l->captured);
  if (l->capture == NULL || l->captured == NULL) {
    sn_oom();
    goto fail;
  }
  budget = o->cache_bytes ? o->cache_bytes : DEFAULT_CACHE_BYTES;
  /* Idle pooled buffers add at most a quarter of the cache budget (decoded
   * spans) and an eighth (compressed ones). */
  l->span_pool = sn_bufpool_new(POOL_BUFS, budget / 4);
  l->comp_pool = sn_bufpool_new(POOL_BUFS, budget / 8);
  if (l->span_pool == NULL || l->comp_pool == NULL)
    goto fail;
  l->cache = sn_spancache_new(l->zi->nspans, budget, load_span, l);
  if (l->cache == NULL)
    goto fail;
  sn_spancache_set_release(l->cache, release_span);
  set_readahead(l, o->readahead_bytes, budget);
  return l;

fail:
  sn_layer_free(l);
  return NULL;
}

struct sn_layer *
sn_layer_new(struct sn_ztoc *z, sn_blob_read_fn read, void *opaque)
{
  return sn_layer_new_opts(z, read, opaque, NULL);
}

void
sn_layer_free(struct sn_layer *l)
{
  if (l == NULL)
    return;
  /* Readahead threads hold the layer: wait for them. */
  pthread_mutex_lock(&l->ra_lock);
  l->ra_window = 0;
  while (l->ra_threads > 0)
    pthread_cond_wait(&l->ra_idle, &l->ra_lock);
  ra_reap(l);
  pthread_mutex_unlock(&l->ra_lock);
  free(l->ra_done);
  while (l->bad) {
    struct bad_file *b = l->bad;
    l->bad = b->next;
    free(b->msg);
    free(b);
  }
  sn_spancache_free(l->cache);
  if (l->staged) {
    size_t i;

    for (i = 0; i < l->zi->nspans; i++)
      sn_bufpool_put(l->comp_pool, l->staged[i]);
  }
  free(l->staged);
  free(l->staging);
  sn_bufpool_free(l->span_pool);
  sn_bufpool_free(l->comp_pool);
  if (l->captured && l->zi) {
    size_t i;

    for (i = 0; i < l->zi->nspans; i++)
      free(atomic_load(&l->captured[i]));
  }
  free(l->captured);
  free(l->capture);
  free(atomic_load(&l->poison));
  free(l->df);
  free(l->fstate);
  free(l->dir);
  free(l->name);
  sn_zinfo_free(l->zi);
  sn_ztoc_free(l->z);
  pthread_mutex_destroy(&l->lock);
  pthread_mutex_destroy(&l->ra_lock);
  pthread_cond_destroy(&l->ra_idle);
  pthread_cond_destroy(&l->ra_staged);
  free(l);
}

void
sn_layer_set_trace(struct sn_layer *l, sn_span_trace_fn fn, void *opaque)
{
  l->trace = fn;
  l->trace_opaque = opaque;
}

const struct sn_ztoc *
sn_layer_ztoc(const struct sn_layer *l)
{
  return l->z;
}

const struct sn_zinfo *
sn_layer_zinfo(const struct sn_layer *l)
{
  return l->zi;
}

void
sn_layer_get_stats(struct sn_layer *l, struct sn_layer_stats *st)
{
  struct sn_spancache_stats cs;
  struct sn_bufpool_stats ps;

  memset(st, 0, sizeof *st);
  sn_bufpool_get_stats(l->span_pool, &ps);
  st->pool_reused = ps.reused;
  st->pool_allocated = ps.allocated;
  sn_bufpool_get_stats(l->comp_pool, &ps);
  st->pool_reused += ps.reused;
  st->pool_allocated += ps.allocated;
  st->readahead_spans = atomic_load(&l->readahead_spans);
  sn_spancache_get_stats(l->cache, &cs);
  st->spans_fetched = atomic_load(&l->spans_fetched);
  st->spans_verified = atomic_load(&l->spans_verified);
  st->spans_failed = atomic_load(&l->spans_failed);
  st->bytes_fetched = atomic_load(&l->bytes_fetched);
  st->cache_hits = cs.hits;
  st->cache_misses = cs.misses;
  st->disk_hits = atomic_load(&l->disk_hits);
  st->headers_checked = atomic_load(&l->headers_checked);
  st->mem_bytes = cs.bytes;
  st->mem_peak = cs.peak;
}

/* ---- fetching spans --------------------------------------------------- */

static void
comp_free(uint8_t *comp, struct sn_bufpool *pool)
{
  if (pool)
    sn_bufpool_put(pool, comp);
  else
    free(comp);
}

/* Fetch span i from the source until its digest matches (at most
 * 1 + max_refetch times).  Returns the malloc'd compressed bytes. */
static uint8_t *
fetch_verified(struct sn_layer *l, size_t i, const struct sn_span *s,
               size_t clen, const uint8_t want[SN_SHA256_LEN],
               struct sn_bufpool *pool)
{
  uint8_t got[SN_SHA256_LEN];
  char gs[SN_DIGEST_STRLEN + 1];
  uint8_t *comp = pool ? sn_bufpool_get(pool, clen)
    : malloc(clen ? clen : 1);
  int n;

  if (comp == NULL) {
    sn_oom();
    return NULL;
  }
  for (n = 1; n <= 1 + l->max_refetch; n++) {
    if (l->trace)
      l->trace(l->trace_opaque, i, s);
    count(&l->spans_fetched, 1);
    if (l->read(l->read_opaque, comp, clen, s->comp_start) == -1) {
      sn_prefix_error("span %zu of %s: ", i, l->name);
      comp_free(comp, pool);
      return NULL;
    }
    count(&l->bytes_fetched, clen);
    sn_sha256(comp, clen, got);
    if (memcmp(want, got, SN_SHA256_LEN) == 0) {
      count(&l->spans_verified, 1);
      return comp;
    }
    count(&l->spans_failed, 1);
  }
  sn_digest_format(got, gs);
  sn_set_error("span %zu of %s: digest mismatch after %d fetches: ztoc "
               "says %.*s, blob bytes [%lld,%lld) hash to %s", i, l->name,
               n - 1, (int) l->z->span_digests[i].len,
               l->z->span_digests[i].data, (long long) s->comp_start,
               (long long) s->comp_end, gs);
  comp_free(comp, pool);
  return NULL;
}

/* Span i's compressed bytes fetched and verified by a readahead range
 * request (a comp_pool buffer), waiting for one under way; NULL if none
 * (or it failed: the caller fetches the span itself). */
static uint8_t *
take_staged(struct sn_layer *l, size_t i)
{
  uint8_t *comp;

  pthread_mutex_lock(&l->ra_lock);
  while (l->staging[i])
    pthread_cond_wait(&l->ra_staged, &l->ra_lock);
  comp = l->staged[i];
  l->staged[i] = NULL;
  pthread_mutex_unlock(&l->ra_lock);
  return comp;
}

/* Span i's verified compressed bytes: from the disk cache (malloc'd), else
 * fetched into a buffer of pool (if not NULL; else malloc'd).  *pooled
 * tells which. */
static int
span_comp(struct sn_layer *l, size_t i, uint8_t **comp_out, size_t *clen_out,
          struct sn_bufpool *pool, bool *pooled)
{
  const struct sn_bytes *d;
  uint8_t want[SN_SHA256_LEN];
  uint8_t *comp;
  struct sn_span s;
  size_t clen;

  if (i >= l->zi->nspans)
    return sn_set_error("span %zu of %s does not exist", i, l->name);
  d = &l->z->span_digests[i];
  sn_zinfo_span(l->zi, i, &s);
  if (s.comp_end < s.comp_start)
    return sn_set_error("span %zu of %s: invalid compressed range", i,
                        l->name);
  clen = (size_t) (s.comp_end - s.comp_start);
  if (sn_digest_parse(d->data, d->len, want) == -1)
    return sn_prefix_error("span %zu of %s: ", i, l->name);
  *pooled = false;
  if (l->staged && (comp = take_staged(l, i)) != NULL) {
    if (pool == NULL) {         /* the caller wants malloc'd bytes */
      uint8_t *copy = malloc(clen ? clen : 1);

      if (copy)
        memcpy(copy, comp, clen);
      sn_bufpool_put(l->comp_pool, comp);
      if (copy == NULL)
        return sn_oom();
      comp = copy;
    }
    *pooled = pool != NULL;
  }
  else if (l->dir && (comp = sn_disk_span_load(l->dir, i, clen, want))
           != NULL)
    count(&l->disk_hits, 1);
  else {
    comp = fetch_verified(l, i, &s, clen, want, pool);
    if (comp == NULL)
      return -1;
    *pooled = pool != NULL;
    if (l->dir && sn_disk_span_store(l->dir, i, comp, clen) == 0)
      sn_diskcache_add(l->disk, clen);
  }
  *comp_out = comp;
  *clen_out = clen;
  return 0;
}

int
sn_layer_span_comp(struct sn_layer *l, size_t i, uint8_t **comp_out,
                   size_t *clen_out)
{
  bool pooled;

  return span_comp(l, i, comp_out, clen_out, NULL, &pooled);
}

/* The span cache's loader: disk cache or source, verified, decoded (and
 * the compressed bytes copied for a background fetcher that asked). */
static int
load_span(void *opaque, size_t i, uint8_t **data, size_t *len)
{
  struct sn_layer *l = opaque;
  uint8_t *comp, *out;
  struct sn_span s;
  size_t clen, ulen;
  bool pooled;

  sn_zinfo_span(l->zi, i, &s);
  ulen = s.uncomp_end > s.uncomp_start
    ? (size_t) (s.uncomp_end - s.uncomp_start) : 0;
  if (span_comp(l, i, &comp, &clen, l->comp_pool, &pooled) == -1)
    return -1;
  if (atomic_load(&l->capture[i])) {
    uint8_t *copy = malloc(clen ? clen : 1);

    if (copy) {
      memcpy(copy, comp, clen);
      free(atomic_exchange(&l->captured[i], copy));
    }
  }
  out = sn_bufpool_get(l->span_pool, ulen);
  if (out == NULL) {
    comp_free(comp, pooled ? l->comp_pool : NULL);
    return -1;
  }
  if (sn_zinfo_decode_span(l->zi, i, comp, clen, out, ulen) == -1) {
    sn_prefix_error("span %zu of %s: ", i, l->name);
    comp_free(comp, pooled ? l->comp_pool : NULL);
    sn_bufpool_put(l->span_pool, out);
    return -1;
  }
  comp_free(comp, pooled ? l->comp_pool : NULL);
  *data = out;
  *len = ulen;
  return 0;
}

int
sn_layer_load_span(struct sn_layer *l, size_t i, bool keep, uint8_t **comp,
                   size_t *clen)
{
  struct sn_span_ent *e;
  struct sn_span s;
  int r;

  *comp = NULL;
  *clen = 0;
  atomic_store(&l->capture[i], 1);
  r = sn_spancache_get(l->cache, i, 1, &e);
  atomic_store(&l->capture[i], 0);
  if (r == 0) {
    sn_spancache_put(l->cache, e);
    if (!keep)
      sn_spancache_drop(l->cache, i);
  }
  *comp = atomic_exchange(&l->captured[i], NULL);
  if (*comp) {
    sn_zinfo_span(l->zi, i, &s);
    *clen = (size_t) (s.comp_end - s.comp_start);
  }
  return r;
}

bool
sn_layer_span_cached(struct sn_layer *l, size_t i)
{
  return sn_spancache_has(l->cache, i);
}

bool
sn_layer_cache_room(struct sn_layer *l, size_t i)
{
  struct sn_span s;

  sn_zinfo_span(l->zi, i, &s);
  return sn_spancache_room(l->cache, (size_t) (s.uncomp_end - s.uncomp_start));
}

size_t
sn_layer_nspans(const struct sn_layer *l)
{
  return l->zi->nspans;
}

void
sn_layer_poison(struct sn_layer *l, const char *msg)
{
  char *m = strdup(msg), *none = NULL;

  if (m && !atomic_compare_exchange_strong(&l->poison, &none, m))
    free(m);
}

static int
poisoned(struct sn_layer *l)
{
  char *m = atomic_load(&l->poison);

  return m ? sn_set_error("%s", m) : 0;
}

static int
check_range(const struct sn_layer *l, int64_t off, uint64_t len)
{
  if (off < 0 || len > (uint64_t) (INT64_MAX - off) ||
      off + (int64_t) len > l->z->uncompressed_size)
    return sn_set_error("read [%lld,+%llu) outside the layer's %lld bytes",
                        (long long) off, (unsigned long long) len,
                        (long long) l->z->uncompressed_size);
  return 0;
}

/* ---- sequential readahead ------------------------------------------- */

#define RA_MIN_TRIGGER ((int64_t) 1 << 20)
/* A read continues the run if it starts within ra_slack of the run's end,
 * before or after it: concurrent readers (nbdcopy has 16 MiB of requests
 * in flight, nbdkit 16 threads per connection) arrive out of order, and
 * squashfs reads skip the tar headers between files. */
#define RA_MIN_SLACK ((int64_t) 8 << 20)
#define RA_BATCH_MIN 4

static void
set_readahead(struct sn_layer *l, size_t bytes, size_t budget)
{
  int64_t span = l->zi->span_size > 0 ? l->zi->span_size : RA_MIN_TRIGGER;
  size_t w;

  if (bytes == 0 || l->zi->nspans < 2)
    return;
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
  if (l->dir == NULL && w >= RA_BATCH_MIN) {
    l->staging = calloc(l->zi->nspans, sizeof *l->staging);
    l->staged = calloc(l->zi->nspans, sizeof *l->staged);
    if (l->staging == NULL || l->staged == NULL) {
      free(l->staging);
      free(l->staged);
      l->staging = NULL;
      l->staged = NULL;
    }
  }
  l->ra_window = w;
  l->ra_trigger = span > RA_MIN_TRIGGER ? span : RA_MIN_TRIGGER;
  l->ra_slack = 2 * l->ra_trigger > RA_MIN_SLACK ? 2 * l->ra_trigger
    : RA_MIN_SLACK;
}

struct ra_job {
  struct sn_layer *l;
  size_t span;
};

/* Join the readahead threads that are done (with ra_lock held: they
 * released it for the last time before it was taken). */
static void
ra_reap(struct sn_layer *l)
{
  while (l->nra_done > 0)
    pthread_join(l->ra_done[--l->nra_done], NULL);
}

/* Start a readahead thread running fn(arg) (with ra_lock held; it ends
 * with ra_thread_done).  -1 if it could not be started. */
static int
ra_thread_start(struct sn_layer *l, void *(*fn)(void *), void *arg)
{
  pthread_t tid;
  size_t need;

  ra_reap(l);
  need = (size_t) l->ra_threads + 1;
  if (need > l->ra_done_cap) {
    size_t cap = need < 16 ? 16 : 2 * need;
    pthread_t *p = realloc(l->ra_done, cap * sizeof *p);

    if (p == NULL)
      return -1;
    l->ra_done = p;
    l->ra_done_cap = cap;
  }
  if (pthread_create(&tid, NULL, fn, arg) != 0)
    return -1;
  l->ra_threads++;
  return 0;
}

/* The end of a readahead thread's use of the layer (with ra_lock held):
 * after this it only unlocks ra_lock and returns. */
static void
ra_thread_done(struct sn_layer *l)
{
  l->ra_done[l->nra_done++] = pthread_self();
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
  ra_thread_done(l);
  pthread_mutex_unlock(&l->ra_lock);
  return NULL;
}

struct ra_batch {
  struct sn_layer *l;
  size_t first, n;              /* spans marked staging by readahead_note */
};

static void start_span_threads(struct sn_layer *l, size_t first, size_t n);

/* Fetch spans [first, first+n) with one range request, verify each span's
 * slice against its digest and stage it (a slice that does not match is
 * dropped: its load fetches the span itself, with the usual refetches),
 * then load the spans (decode into the cache) on a thread each. */
static void *
ra_batch_thread(void *arg)
{
  struct ra_batch *b = arg;
  struct sn_layer *l = b->l;
  struct sn_span s0, s1;
  uint8_t *all, *bufs[SN_SPANCACHE_MAX_GET] = { NULL };
  size_t len, k;
  bool ok;

  sn_zinfo_span(l->zi, b->first, &s0);
  sn_zinfo_span(l->zi, b->first + b->n - 1, &s1);
  len = (size_t) (s1.comp_end - s0.comp_start);
  /* From the pool too: big short-lived mallocs on ever new threads would
   * each leave their pages in another malloc arena. */
  all = sn_bufpool_get(l->comp_pool, len);
  for (k = 0; k < b->n && l->trace; k++) {
    struct sn_span s;

    sn_zinfo_span(l->zi, b->first + k, &s);
    l->trace(l->trace_opaque, b->first + k, &s);
  }
  ok = all && l->read(l->read_opaque, all, len, s0.comp_start) == 0;
  for (k = 0; k < b->n && ok; k++) {
    size_t i = b->first + k;
    const struct sn_bytes *d = &l->z->span_digests[i];
    uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];
    struct sn_span s;
    size_t clen;

    sn_zinfo_span(l->zi, i, &s);
    clen = (size_t) (s.comp_end - s.comp_start);
    count(&l->spans_fetched, 1);
    count(&l->bytes_fetched, clen);
    sn_sha256(all + (s.comp_start - s0.comp_start), clen, got);
    if (sn_digest_parse(d->data, d->len, want) == -1 ||
        memcmp(want, got, SN_SHA256_LEN) != 0) {
      count(&l->spans_failed, 1);
      continue;
    }
    count(&l->spans_verified, 1);
    bufs[k] = sn_bufpool_get(l->comp_pool, clen);
    if (bufs[k])
      memcpy(bufs[k], all + (s.comp_start - s0.comp_start), clen);
  }
  sn_bufpool_put(l->comp_pool, all);
  pthread_mutex_lock(&l->ra_lock);
  for (k = 0; k < b->n; k++) {
    l->staged[b->first + k] = bufs[k];
    l->staging[b->first + k] = 0;
  }
  pthread_cond_broadcast(&l->ra_staged);
  /* Decode the staged spans (those that failed are left to the reads). */
  for (k = 0; k < b->n; k++)
    if (bufs[k])
      start_span_threads(l, b->first + k, 1);
  l->ra_inflight -= b->n;       /* now counted by the span threads */
  free(b);
  ra_thread_done(l);
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
    if (ra_thread_start(l, ra_thread, j) == -1) {
      free(j);
      break;
    }
    l->ra_inflight++;
  }
}

/* Readahead of spans [first, end) (with ra_lock held): runs of spans
 * nobody is loading yet are fetched with one range request each (marked
 * staging before the cache is asked, so that a load starting meanwhile
 * waits for the fetch instead of fetching the span again); without
 * staging, a thread per span.  Returns the first span not handled. */
static size_t
start_readahead(struct sn_layer *l, size_t first, size_t end)
{
  if (l->staging == NULL) {
    size_t i;

    for (i = first; i < end; i++)
      if (!sn_spancache_has(l->cache, i)) {
        start_span_threads(l, i, 1);
        count(&l->readahead_spans, 1);
      }
    return end;
  }
  while (first < end) {
    struct ra_batch *b;
    size_t n = 0;

    while (first + n < end) {
      size_t i = first + n;

      /* Being fetched or staged by an earlier batch: not again. */
      if (l->staging[i] || l->staged[i])
        break;
      l->staging[i] = 1;
      if (sn_spancache_present(l->cache, i)) {
        l->staging[i] = 0;
        break;
      }
      n++;
    }
    if (n == 0) {
      first++;
      continue;
    }
    b = malloc(sizeof *b);
    if (b) {
      b->l = l;
      b->first = first;
      b->n = n;
    }
    if (b == NULL || ra_thread_start(l, ra_batch_thread, b) == -1) {
      size_t k;

      for (k = 0; k < n; k++)
        l->staging[first + k] = 0;
      pthread_cond_broadcast(&l->ra_staged);
      free(b);
      break;
    }
    l->ra_inflight += n;
    count(&l->readahead_spans, n);
    first += n;
  }
  return first;
}

/* Note a read of [off, off+len) whose last span is last; if it continues
 * a forward run of at least ra_trigger bytes, start loading the spans
 * after last (up to ra_window of them in flight) on background threads. */
static void
readahead_note(struct sn_layer *l, int64_t off, size_t len, size_t last)
{
  size_t first, end;

  if (l->ra_window == 0)
    return;
  pthread_mutex_lock(&l->ra_lock);
  if (off <= l->seq_end + l->ra_slack && off >= l->seq_end - l->ra_slack &&
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
  }
  /* Sequential: a span's worth read, covering at least half of the range
   * the run spans (scattered reads near each other are not a stream). */
  if (l->seq_bytes < l->ra_trigger ||
      2 * l->seq_bytes < l->seq_end - l->seq_start || l->ra_window == 0)
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

/* Get the spans covering [off, off+len) through the cache, at most
 * SN_SPANCACHE_MAX_GET at a time (fetched concurrently), copying into buf
 * unless it is NULL.  A window's bytes are copied only once all of its
 * spans are verified. */
static int
read_spans(struct sn_layer *l, uint8_t *buf, size_t len, int64_t off)
{
  struct sn_span_ent *ents[SN_SPANCACHE_MAX_GET];
  int64_t end = off + (int64_t) len, pos = off;
  size_t first, last, i, k, n;
  bool hole = false;

  if (len == 0)
    return 0;
  first = sn_zinfo_span_of(l->zi, off);
  last = sn_zinfo_span_of(l->zi, end - 1);
  if (buf)
    readahead_note(l, off, len, last);
  for (i = first; i <= last && !hole; i += n) {
    n = last - i + 1;
    if (n > SN_SPANCACHE_MAX_GET)
      n = SN_SPANCACHE_MAX_GET;
    if (sn_spancache_get(l->cache, i, n, ents) == -1)
      return -1;
    for (k = 0; k < n && buf && !hole; k++) {
      struct sn_span s;
      size_t dlen;
      const uint8_t *data = sn_spancache_data(ents[k], &dlen);
      int64_t a, b;

      sn_zinfo_span(l->zi, i + k, &s);
      a = s.uncomp_start > pos ? s.uncomp_start : pos;
      b = s.uncomp_start + (int64_t) dlen < end
        ? s.uncomp_start + (int64_t) dlen : end;
      if (a != pos)
        hole = true;
      else if (b > a) {
        memcpy(buf + (a - off), data + (a - s.uncomp_start), b - a);
        pos = b;
      }
    }
    for (k = 0; k < n; k++)
      sn_spancache_put(l->cache, ents[k]);
  }
  if (buf && pos != end)
    return sn_set_error("spans of %s do not cover offset %lld", l->name,
                        (long long) pos);
  return 0;
}

int
sn_layer_read(struct sn_layer *l, void *buf, size_t len, int64_t off)
{
  if (poisoned(l) == -1 || check_range(l, off, len) == -1)
    return -1;
  return read_spans(l, buf, len, off);
}

int
sn_layer_prefetch(struct sn_layer *l, int64_t off, int64_t len)
{
  if (poisoned(l) == -1)
    return -1;
  if (len < 0 || check_range(l, off, (uint64_t) len) == -1)
    return sn_set_error("prefetch [%lld,+%lld) outside the layer's %lld "
                        "bytes", (long long) off, (long long) len,
                        (long long) l->z->uncompressed_size);
  return read_spans(l, NULL, (size_t) len, off);
}

int
sn_layer_prefetch_spans(struct sn_layer *l, size_t first, size_t last)
{
  struct sn_span_ent *ents[SN_SPANCACHE_MAX_GET];
  size_t i, k, n;

  if (poisoned(l) == -1)
    return -1;
  if (first > last || last >= l->zi->nspans)
    return sn_set_error("spans %zu..%zu of %s: out of range (%zu spans)",
                        first, last, l->name, l->zi->nspans);
  for (i = first; i <= last; i += n) {
    n = last - i + 1;
    if (n > SN_SPANCACHE_MAX_GET)
      n = SN_SPANCACHE_MAX_GET;
    if (sn_spancache_get(l->cache, i, n, ents) == -1)
      return -1;
    for (k = 0; k < n; k++)
      sn_spancache_put(l->cache, ents[k]);
  }
  return 0;
}

static int
is_xattr_key(const struct sn_bytes *k)
{
  static const char pfx[] = "SCHILY.xattr.";

  return k->len >= sizeof pfx - 1 && memcmp(k->data, pfx, sizeof pfx - 1) == 0;
}

/* The SCHILY.xattr.* records of both sides must be the same set. */
static int
xattrs_match(const struct sn_pax *a, size_t na, const struct sn_pax *b,
             size_t nb)
{
  size_t i = 0, j = 0;

  for (;;) {
    while (i < na && !is_xattr_key(&a[i].key))
      i++;
    while (j < nb && !is_xattr_key(&b[j].key))
      j++;
    if (i == na || j == nb)
      return i == na && j == nb;
    if (a[i].key.len != b[j].key.len || a[i].value.len != b[j].value.len ||
        memcmp(a[i].key.data, b[j].key.data, a[i].key.len) != 0 ||
        memcmp(a[i].value.data, b[j].value.data, a[i].value.len) != 0)
      return 0;
    i++;
    j++;
  }
}

static int
bytes_eq(const struct sn_bytes *a, const struct sn_bytes *b)
{
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

int
sn_entry_matches(const struct sn_tar_entry *e, const struct sn_ztoc_file *f)
{
  const char *type = sn_tar_type_name(e->typeflag);
  const char *what = NULL;

  if (!bytes_eq(&e->name, &f->name))
    what = "name";
  else if (type == NULL || strlen(type) != f->type.len ||
           memcmp(type, f->type.data, f->type.len) != 0)
    what = "type";
  else if (e->size != f->size)
    what = "size";
  else if (e->mode != f->mode)
    what = "mode";
  else if ((uint32_t) e->uid != f->uid || (uint32_t) e->gid != f->gid)
    what = "owner";
  else if (!bytes_eq(&e->linkname, &f->linkname))
    what = "link target";
  else if (e->mtime_sec != f->mtime_sec || e->mtime_nsec != f->mtime_nsec)
    what = "mtime";
  else if (e->devmajor != f->devmajor || e->devminor != f->devminor)
    what = "device numbers";
  else if (!xattrs_match(e->pax, e->npax, f->pax, f->npax))
    what = "xattrs";
  if (what)
    return sn_set_error("tar header of \"%.*s\" does not match its ztoc "
                        "entry (%s differs)", (int) f->name.len,
                        f->name.data, what);
  if (e->data_offset != f->offset)
    return sn_set_error("tar header of \"%.*s\" ends at %lld, ztoc says "
                        "data starts at %lld", (int) f->name.len,
                        f->name.data, (long long) e->data_offset,
                        (long long) f->offset);
  return 0;
}

/* Check f's header region; *mismatch tells a lying entry (remembered by
 * callers) from a failure to read the region (retried later). */
static int
check_file(struct sn_layer *l, const struct sn_ztoc_file *f, bool *mismatch)
{
  struct sn_tar_entry e;
  int64_t hlen = f->offset - f->header_offset;
  uint8_t *hdr;
  int r;

  *mismatch = true;
  if (f->header_offset < 0 || hlen < SN_TAR_BLOCK ||
      hlen > SN_TAR_MAX_SPECIAL * 3)
    return sn_set_error("\"%.*s\": implausible tar header region [%lld,%lld)",
                        (int) f->name.len, f->name.data,
                        (long long) f->header_offset, (long long) f->offset);
  hdr = malloc(hlen);
  if (hdr == NULL) {
    *mismatch = false;
    return sn_oom();
  }
  r = sn_layer_read(l, hdr, hlen, f->header_offset);
  if (r == 0) {
    memset(&e, 0, sizeof e);
    r = sn_tar_parse_headers(hdr, hlen, &e);
    if (r == 0) {
      e.header_offset += f->header_offset;
      e.data_offset += f->header_offset;
      r = sn_entry_matches(&e, f);
    }
    else
      sn_prefix_error("\"%.*s\": ", (int) f->name.len, f->name.data);
    sn_tar_entry_clear(&e);
  }
  else
    *mismatch = false;
  free(hdr);
  return r;
}

int
sn_layer_check_file(struct sn_layer *l, const struct sn_ztoc_file *f)
{
  bool mismatch;

  return check_file(l, f, &mismatch);
}

/* The remembered reason file idx is refused. */
static int
bad_file_error(struct sn_layer *l, size_t idx)
{
  const struct bad_file *b;
  int r = 0;

  pthread_mutex_lock(&l->lock);
  for (b = l->bad; b; b = b->next)
    if (b->idx == idx) {
      r = sn_set_error("%s", b->msg);
      break;
    }
  pthread_mutex_unlock(&l->lock);
  if (r == 0) {
    const struct sn_ztoc_file *f = &l->z->files[idx];
    sn_set_error("\"%.*s\": tar header does not match its ztoc entry",
                 (int) f->name.len, f->name.data);
  }
  return -1;
}

/* Remember the calling thread's message as file idx's verdict (the first
 * one wins), then report the verdict. */
static int
mark_bad(struct sn_layer *l, size_t idx)
{
  struct bad_file *b = malloc(sizeof *b);

  if (b == NULL || (b->msg = strdup(sn_error())) == NULL) {
    free(b);
    return sn_oom();
  }
  b->idx = idx;
  pthread_mutex_lock(&l->lock);
  if (atomic_load(&l->fstate[idx]) != FILE_BAD) {
    b->next = l->bad;
    l->bad = b;
    atomic_store(&l->fstate[idx], FILE_BAD);
    b = NULL;
  }
  pthread_mutex_unlock(&l->lock);
  if (b) {
    free(b->msg);
    free(b);
  }
  return bad_file_error(l, idx);
}

/* Every file whose data overlaps [off, end) has a verified header. */
static int
check_files(struct sn_layer *l, int64_t off, int64_t end)
{
  size_t lo = 0, hi = l->ndf, k;

  /* The first entry whose running max end passes off: no earlier one
   * can overlap. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->df[mid].max_end > off)
      hi = mid;
    else
      lo = mid + 1;
  }
  for (k = lo; k < l->ndf && l->df[k].off < end; k++) {
    size_t idx = l->df[k].idx;
    unsigned char st;
    bool mismatch;

    if (l->df[k].end <= off)
      continue;
    st = atomic_load(&l->fstate[idx]);
    if (st == FILE_OK)
      continue;
    if (st == FILE_BAD)
      return bad_file_error(l, idx);
    if (check_file(l, &l->z->files[idx], &mismatch) == -1)
      return mismatch ? mark_bad(l, idx) : -1;
    st = FILE_UNKNOWN;
    if (atomic_compare_exchange_strong(&l->fstate[idx], &st, FILE_OK))
      count(&l->headers_checked, 1);
  }
  return 0;
}

int
sn_layer_read_checked(struct sn_layer *l, void *buf, size_t len,
                      int64_t off)
{
  if (poisoned(l) == -1 || check_range(l, off, len) == -1 ||
      check_files(l, off, off + (int64_t) len) == -1)
    return -1;
  return read_spans(l, buf, len, off);
}

int
sn_blob_read_fd(void *opaque, void *buf, size_t len, int64_t off)
{
  int fd = *(int *) opaque;
  char *p = buf;

  while (len > 0) {
    ssize_t n = pread(fd, p, len, off);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      return sn_set_error("read at %lld: %s", (long long) off,
                          strerror(errno));
    if (n == 0)
      return sn_set_error("layer file is shorter than the ztoc says "
                          "(EOF at %lld)", (long long) off);
    p += n;
    off += n;
    len -= n;
  }
  return 0;
}

/* ---- whole-layer check ------------------------------------------------ */

struct sn_layer_check {
  struct sn_layer *l;
  struct sn_ztoc_builder *b;
  int64_t fed;                  /* blob bytes fed to the builder so far */
  size_t next;                  /* the span expected next */
};

struct sn_layer_check *
sn_layer_check_new(struct sn_layer *l)
{
  struct sn_layer_check *c = calloc(1, sizeof *c);
  struct sn_build_opts bo = { .span_size = l->zi->span_size };

  if (c == NULL) {
    sn_oom();
    return NULL;
  }
  c->l = l;
  c->b = sn_ztoc_builder_new(l->z->compression, &bo);
  if (c->b == NULL) {
    free(c);
    return NULL;
  }
  return c;
}

void
sn_layer_check_free(struct sn_layer_check *c)
{
  if (c == NULL)
    return;
  sn_ztoc_builder_free(c->b);
  free(c);
}

/* Feed blob bytes [c->fed, end) that no span covers (the gzip header and
 * trailer), read straight from the source: only the final digest vouches
 * for them, and they are never served. */
static int
feed_gap(struct sn_layer_check *c, int64_t end, bool *mismatch)
{
  uint8_t buf[65536];

  while (c->fed < end) {
    size_t n = end - c->fed > (int64_t) sizeof buf ? sizeof buf
      : (size_t) (end - c->fed);

    if (c->l->read(c->l->read_opaque, buf, n, c->fed) == -1)
      return sn_prefix_error("%s: bytes [%lld,+%zu): ", c->l->name,
                             (long long) c->fed, n);
    if (sn_ztoc_builder_feed(c->b, buf, n) == -1) {
      *mismatch = true;
      return -1;
    }
    c->fed += (int64_t) n;
  }
  return 0;
}

int
sn_layer_check_span(struct sn_layer_check *c, size_t i, const uint8_t *comp,
                    size_t clen, bool *mismatch)
{
  struct sn_span s;
  int64_t skip;

  *mismatch = false;
  if (i != c->next)
    return sn_set_error("whole-layer check of %s: span %zu fed, %zu "
                        "expected", c->l->name, i, c->next);
  sn_zinfo_span(c->l->zi, i, &s);
  if ((int64_t) clen != s.comp_end - s.comp_start)
    return sn_set_error("whole-layer check of %s: span %zu has %zu bytes",
                        c->l->name, i, clen);
  if (feed_gap(c, s.comp_start, mismatch) == -1)
    return -1;
  /* Adjacent spans share a byte when a checkpoint is mid-byte. */
  skip = c->fed - s.comp_start;
  if (skip < (int64_t) clen) {
    if (sn_ztoc_builder_feed(c->b, comp + skip, clen - (size_t) skip) == -1) {
      *mismatch = true;
      return -1;
    }
    c->fed = s.comp_end;
  }
  c->next++;
  return 0;
}

static bool
bytes_same(const struct sn_bytes *a, const struct sn_bytes *b)
{
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Is the served ztoc (l's) what the layer's bytes imply (r)? */
static int
ztoc_same(struct sn_layer *l, const struct sn_ztoc *r)
{
  const struct sn_ztoc *z = l->z;
  struct sn_zinfo *rz;
  size_t i, j;
  int ret = 0;

  if (r->uncompressed_size != z->uncompressed_size)
    return sn_set_error("the tar stream is %lld bytes, the ztoc says %lld",
                        (long long) r->uncompressed_size,
                        (long long) z->uncompressed_size);
  if (r->nspan_digests != z->nspan_digests)
    return sn_set_error("a rebuild at span size %lld has %zu spans, the "
                        "ztoc %zu (checkpoints placed differently)",
                        (long long) l->zi->span_size, r->nspan_digests,
                        z->nspan_digests);
  for (i = 0; i < r->nspan_digests; i++)
    if (!bytes_same(&r->span_digests[i], &z->span_digests[i]))
      return sn_set_error("span %zu: digest differs from a rebuild", i);
  rz = sn_zinfo_from_ztoc(r);
  if (rz == NULL)
    return -1;
  for (i = 0; i < rz->nspans && l->zi->compression == SN_COMP_GZIP; i++) {
    const struct sn_checkpoint *a = &rz->cp[i], *b = &l->zi->cp[i];

    if (a->in != b->in || a->out != b->out || a->bits != b->bits) {
      ret = sn_set_error("checkpoint %zu is at (%lld, %lld, %u bits), a "
                         "rebuild puts it at (%lld, %lld, %u bits)", i,
                         (long long) b->in, (long long) b->out, b->bits,
                         (long long) a->in, (long long) a->out, a->bits);
      break;
    }
    /* The window of checkpoint 0 is not used. */
    if (i > 0 && memcmp(a->window, b->window, SN_ZINFO_WINSIZE) != 0) {
      ret = sn_set_error("checkpoint %zu: its 32 KiB window is not the "
                         "layer's", i);
      break;
    }
  }
  sn_zinfo_free(rz);
  if (ret == -1)
    return -1;
  if (r->nfiles != z->nfiles)
    return sn_set_error("the tar has %zu entries, the ztoc %zu", r->nfiles,
                        z->nfiles);
  for (i = 0; i < r->nfiles; i++) {
    const struct sn_ztoc_file *a = &r->files[i], *b = &z->files[i];
    const char *what = NULL;

    if (!bytes_same(&a->name, &b->name))
      what = "name";
    else if (!bytes_same(&a->type, &b->type))
      what = "type";
    else if (a->offset != b->offset || a->size != b->size)
      what = "offset or size";
    else if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid)
      what = "mode or owner";
    else if (!bytes_same(&a->linkname, &b->linkname))
      what = "link target";
    else if (a->mtime_sec != b->mtime_sec || a->mtime_nsec != b->mtime_nsec)
      what = "mtime";
    else if (a->devmajor != b->devmajor || a->devminor != b->devminor)
      what = "device numbers";
    else if (a->npax != b->npax)
      what = "PAX records";
    for (j = 0; what == NULL && j < a->npax; j++)
      if (!bytes_same(&a->pax[j].key, &b->pax[j].key) ||
          !bytes_same(&a->pax[j].value, &b->pax[j].value))
        what = "PAX records";
    if (what)
      return sn_set_error("entry %zu \"%.*s\": %s differs from the tar", i,
                          (int) b->name.len, b->name.data, what);
  }
  return 0;
}

int
sn_layer_check_finish(struct sn_layer_check *c, const char *layer_digest,
                      bool *mismatch)
{
  struct sn_layer *l = c->l;
  uint8_t d[SN_SHA256_LEN];
  char got[SN_DIGEST_STRLEN + 1];
  struct sn_ztoc *r;
  int ret;

  *mismatch = false;
  if (c->next != l->zi->nspans)
    return sn_set_error("whole-layer check of %s: %zu of %zu spans fed",
                        l->name, c->next, l->zi->nspans);
  if (feed_gap(c, l->z->compressed_size, mismatch) == -1)
    goto bad;
  r = sn_ztoc_builder_finish(c->b, d);
  if (r == NULL) {
    *mismatch = true;
    goto bad;
  }
  sn_digest_format(d, got);
  if (strcmp(got, layer_digest) != 0) {
    sn_ztoc_free(r);
    *mismatch = true;
    return sn_set_error("whole-layer check of %s: the verified spans and "
                        "the bytes between them hash to %s", l->name, got);
  }
  ret = ztoc_same(l, r);
  sn_ztoc_free(r);
  if (ret == -1) {
    *mismatch = true;
    return sn_prefix_error("whole-layer check of %s: the ztoc does not "
                           "describe the layer: ", l->name);
  }
  return 0;

bad:
  return sn_prefix_error("whole-layer check of %s: ", l->name);
}
