/* soci-nbd: reading a layer's uncompressed bytes through verified spans
 * (fetched concurrently, single flight, cached in memory and optionally on
 * disk).  This file sets a layer up, fetches and verifies spans, and serves
 * reads; sequential readahead is in layer-readahead.c, the check of files'
 * tar headers against their ztoc entries in layer-check.c, and the
 * whole-layer check in layer-verify.c (shared state: layer-int.h). */
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
#include "util/digest.h"
#include "span/diskcache.h"
#include "util/err.h"
#include "span/layer.h"
#include "span/layer-int.h"
#include "span/spancache.h"

#define DEFAULT_CACHE_BYTES ((size_t) 64 << 20)
#define DEFAULT_MAX_REFETCH 2
#define POOL_BUFS 4
/* Caches smaller than this carve no huge-page area: it is made of 2 MiB
 * pages, too coarse for them (and a 32-bit process has address space for
 * no area at all). */
#define AREA_MIN_BUDGET ((size_t) 8 << 20)

static int load_span(void *opaque, size_t i, uint8_t **data, size_t *len);

/* The span cache's release: a decoded span back to the span pool. */
static void
release_span(void *opaque, uint8_t *data)
{
  struct sn_layer *l = opaque;

  sn_bufpool_put(l->span_pool, data);
}

/* qsort order of index_files: by data offset, then by ztoc index. */
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

size_t
layer_files_upto(const struct sn_layer *l, int64_t off)
{
  size_t lo = 0, hi = l->ndf;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (l->df[mid].off <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void
sn_layer_each_file_start(const struct sn_layer *l, int64_t off, int64_t end,
                         void (*fn)(void *opaque, size_t i), void *opaque)
{
  size_t i = off > INT64_MIN ? layer_files_upto(l, off - 1) : 0;

  for (; i < l->ndf && l->df[i].off < end; i++)
    fn(opaque, l->df[i].idx);
}

/* A layer over z (owned from here on, freed on failure too) and the source
 * read/opaque: zinfo, file index, pools, span cache, readahead (layer.h). */
struct sn_layer *
sn_layer_new_opts(struct sn_ztoc *z, sn_blob_read_fn read, void *opaque,
                  const struct sn_layer_opts *o)
{
  struct sn_layer_opts def = { 0 };
  struct sn_layer *l = calloc(1, sizeof *l);
  size_t budget, k;
  bool area;

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
  pthread_cond_init(&l->ra_work, NULL);
  for (k = 0; k < LAYER_RUN_CONDS; k++)
    pthread_cond_init(&l->run_done[k], NULL);
  l->z = z;
  l->read = read;
  l->read_opaque = opaque;
  l->win_read = o->windows_read;
  l->win_opaque = o->windows_opaque;
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
  if (layer_windows(l) && l->win_read == NULL) {
    sn_set_error("%s: a dense table without its windows blob", l->name);
    goto fail;
  }
  if (layer_toc_chunks(l) && l->dir) {
    /* TOC layers' chunks are checked only once decoded: the disk cache,
     * which checks what it loads against compressed digests, is not
     * used. */
    free(l->dir);
    l->dir = NULL;
  }
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
  l->cache_budget = budget;
  l->replayed = calloc(l->zi->nspans ? l->zi->nspans : 1,
                       sizeof *l->replayed);
  if (l->replayed == NULL) {
    sn_oom();
    goto fail;
  }
  /* Idle pooled buffers add at most a quarter of the cache budget (decoded
   * spans) and an eighth (compressed ones).  The huge-page areas hold the
   * cache and what its readers hold beyond it (decoded), and a stream's
   * staged stretch, at most half the cache (compressed): docs/architecture.md,
   * "Memory". */
  area = budget >= AREA_MIN_BUDGET && sizeof(void *) >= 8;
  l->span_pool = sn_bufpool_new(POOL_BUFS, budget / 4,
                                area ? budget + budget / 4 : 0);
  l->comp_pool = sn_bufpool_new(POOL_BUFS, budget / 8,
                                area ? budget / 2 + budget / 8 : 0);
  if (l->span_pool == NULL || l->comp_pool == NULL)
    goto fail;
  l->cache = sn_spancache_new(l->zi->nspans, budget, load_span, l);
  if (l->cache == NULL)
    goto fail;
  sn_spancache_set_release(l->cache, release_span);
  layer_set_readahead(l, o->readahead_bytes, budget);
  if (layer_fine(l)) {          /* layer-dense.c stages and decodes */
    /* Only a layer larger than the cache releases what a stream read
     * (layer-int.h, delivered). */
    bool release = l->zi->uncompressed_size > (int64_t) budget;

    if (layer_staging_init(l) == -1)
      goto fail;
    l->win_nowait = calloc(l->zi->nspans, sizeof *l->win_nowait);
    l->run_pending = calloc(l->zi->nspans, sizeof *l->run_pending);
    if (release)
      l->delivered = calloc(l->zi->nspans, sizeof *l->delivered);
    l->win_frames = calloc(l->zi->nspans, sizeof *l->win_frames);
    l->win_fetching = calloc(l->zi->nspans, sizeof *l->win_fetching);
    if (l->win_nowait == NULL || l->run_pending == NULL ||
        (release && l->delivered == NULL) ||
        l->win_frames == NULL || l->win_fetching == NULL) {
      sn_oom();
      goto fail;
    }
  }
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

/* Wait for the readahead threads, then free everything the layer owns,
 * its ztoc included. */
void
sn_layer_free(struct sn_layer *l)
{
  size_t k;

  if (l == NULL)
    return;
  /* Readahead jobs hold the layer: tell the dense decode loops to stop,
   * and wait for them all. */
  atomic_store(&l->closing, true);
  layer_ra_end(l);
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
      if (l->staged[i])
        layer_staged_put(l, l->staged[i], l->staged_in[i]);
  }
  free(l->staged);
  free(l->staged_in);
  free(l->staging);
  free((void *) l->replayed);
  free(l->win_nowait);
  free(l->run_pending);
  free(l->delivered);
  if (l->win_frames) {
    size_t i;

    for (i = 0; i < l->zi->nspans; i++)
      free(l->win_frames[i]);
  }
  free(l->win_frames);
  free(l->win_fetching);
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
  for (k = 0; k < LAYER_RUN_CONDS; k++)
    pthread_cond_destroy(&l->run_done[k]);
  pthread_cond_destroy(&l->ra_work);
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

/* A snapshot of the layer's counters, its pools' and its span cache's. */
void
sn_layer_get_stats(struct sn_layer *l, struct sn_layer_stats *st)
{
  struct sn_spancache_stats cs;
  struct sn_bufpool_stats ps;

  memset(st, 0, sizeof *st);
  sn_bufpool_get_stats(l->span_pool, &ps);
  st->pool_reused = ps.reused;
  st->pool_allocated = ps.allocated;
  st->pool_carved = ps.carved;
  sn_bufpool_get_stats(l->comp_pool, &ps);
  st->pool_reused += ps.reused;
  st->pool_allocated += ps.allocated;
  st->pool_carved += ps.carved;
  st->readahead_spans = atomic_load(&l->readahead_spans);
  st->windows_fetched = atomic_load(&l->windows_fetched);
  st->windows_staged = atomic_load(&l->windows_staged);
  st->windows_from_cache = atomic_load(&l->windows_from_cache);
  st->replay_spans = atomic_load(&l->replay_spans);
  st->replay_bytes = atomic_load(&l->replay_bytes);
  st->replay_used_spans = atomic_load(&l->replay_used_spans);
  st->replay_used_bytes = atomic_load(&l->replay_used_bytes);
  st->spans_released = atomic_load(&l->spans_released);
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

/* Where a span's compressed bytes came from (span_comp), so that they go
 * back there. */
struct comp_owner {
  struct layer_batch *batch;    /* a staged slice of this run, else */
  struct sn_bufpool *pool;      /* a buffer of this pool; NULL: malloc'd */
};

/* Compressed bytes back to where they came from. */
static void
comp_free(struct sn_layer *l, uint8_t *comp, const struct comp_owner *o)
{
  if (o->batch)
    layer_staged_put(l, comp, o->batch);
  else if (o->pool)
    sn_bufpool_put(o->pool, comp);
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
    layer_count(&l->spans_fetched, 1);
    if (l->read(l->read_opaque, comp, clen, s->comp_start) == -1) {
      sn_prefix_error("span %zu of %s: ", i, l->name);
      comp_free(l, comp, &(struct comp_owner) { .pool = pool });
      return NULL;
    }
    layer_count(&l->bytes_fetched, clen);
    /* Once its bytes are counted: the trace keeps a stats file current. */
    if (l->trace)
      l->trace(l->trace_opaque, i, s);
    if (layer_toc_chunks(l))    /* checked once decoded (load_span) */
      return comp;
    sn_sha256(comp, clen, got);
    if (memcmp(want, got, SN_SHA256_LEN) == 0) {
      layer_count(&l->spans_verified, 1);
      return comp;
    }
    layer_count(&l->spans_failed, 1);
  }
  sn_digest_format(got, gs);
  sn_set_error("span %zu of %s: digest mismatch after %d fetches: ztoc "
               "says %.*s, blob bytes [%lld,%lld) hash to %s", i, l->name,
               n - 1, (int) l->z->span_digests[i].len,
               l->z->span_digests[i].data, (long long) s->comp_start,
               (long long) s->comp_end, gs);
  comp_free(l, comp, &(struct comp_owner) { .pool = pool });
  return NULL;
}

/* Span i's compressed bytes fetched and verified by a readahead range
 * request (*batch: the run they are a slice of, or NULL: a comp_pool
 * buffer of their own), waiting for one under way; NULL if none (or it
 * failed: the caller fetches the span itself). */
static uint8_t *
take_staged(struct sn_layer *l, size_t i, struct layer_batch **batch)
{
  uint8_t *comp;

  pthread_mutex_lock(&l->ra_lock);
  while (l->staging[i])
    pthread_cond_wait(&l->ra_staged, &l->ra_lock);
  comp = l->staged[i];
  *batch = l->staged_in[i];
  l->staged[i] = NULL;
  l->staged_in[i] = NULL;
  pthread_mutex_unlock(&l->ra_lock);
  return comp;
}

/* Span i's verified compressed bytes: staged by a range request, else
 * from the disk cache (malloc'd), else fetched into a buffer of pool (if
 * not NULL; else malloc'd).  *own tells which, for comp_free.  pool NULL:
 * the caller wants malloc'd bytes whatever their source. */
static int
span_comp(struct sn_layer *l, size_t i, uint8_t **comp_out, size_t *clen_out,
          struct sn_bufpool *pool, struct comp_owner *own)
{
  const struct sn_bytes *d;
  uint8_t want[SN_SHA256_LEN];
  struct layer_batch *batch = NULL;
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
  *own = (struct comp_owner) { 0 };
  if (l->staged && (comp = take_staged(l, i, &batch)) != NULL) {
    if (pool == NULL) {         /* the caller wants malloc'd bytes */
      uint8_t *copy = malloc(clen ? clen : 1);

      if (copy)
        memcpy(copy, comp, clen);
      layer_staged_put(l, comp, batch);
      if (copy == NULL)
        return sn_oom();
      comp = copy;
    }
    else                        /* a slice, or a buffer of its own */
      *own = (struct comp_owner) { .batch = batch, .pool = l->comp_pool };
    /* Staged by a range request (a dense layer stages with a disk cache
     * too): keep it on disk like a span fetched alone. */
    if (l->dir && sn_disk_span_store(l->dir, i, comp, clen) == 0)
      sn_diskcache_add(l->disk, clen);
  }
  else if (l->dir && (comp = sn_disk_span_load(l->dir, i, clen, want))
           != NULL)
    layer_count(&l->disk_hits, 1);
  else {
    comp = fetch_verified(l, i, &s, clen, want, pool);
    if (comp == NULL)
      return -1;
    own->pool = pool;
    if (l->dir && sn_disk_span_store(l->dir, i, comp, clen) == 0)
      sn_diskcache_add(l->disk, clen);
  }
  *comp_out = comp;
  *clen_out = clen;
  return 0;
}

/* span_comp without a pool, so *comp_out is malloc'd (the caller's). */
int
sn_layer_span_comp(struct sn_layer *l, size_t i, uint8_t **comp_out,
                   size_t *clen_out)
{
  struct comp_owner own;

  return span_comp(l, i, comp_out, clen_out, NULL, &own);
}

/* A TOC-indexed layer's chunk (eStargz, zstd:chunked), decoded into out
 * (decoded: the decode's result): its SHA-256 is the TOC's digest of it,
 * else -1 (counted as a failed span; a failed decode too). */
static int
stargz_check(struct sn_layer *l, size_t i, int decoded, const uint8_t *out,
             size_t ulen)
{
  const struct sn_bytes *d = &l->z->span_digests[i];
  uint8_t want[SN_SHA256_LEN], got[SN_SHA256_LEN];
  char gs[SN_DIGEST_STRLEN + 1];

  if (decoded == -1) {          /* corrupt: as good as a wrong digest */
    layer_count(&l->spans_failed, 1);
    return -1;
  }
  sn_sha256(out, ulen, got);
  if (sn_digest_parse(d->data, d->len, want) == 0 &&
      memcmp(want, got, SN_SHA256_LEN) == 0) {
    layer_count(&l->spans_verified, 1);
    return 0;
  }
  layer_count(&l->spans_failed, 1);
  sn_digest_format(got, gs);
  return sn_set_error("chunk %zu of %s: the TOC says %.*s, its bytes hash "
                      "to %s", i, l->name, (int) d->len, d->data, gs);
}

/* The span cache's loader: disk cache or source, verified, decoded (and
 * the compressed bytes copied for a background fetcher that asked).  With
 * a dense index the window comes first: it may wait for the span before
 * (layer-dense.c) while this span's bytes are still being fetched.  An
 * TOC layer's chunk is checked once decoded, and fetched again (at most
 * max_refetch times) when it does not match. */
static int
load_span(void *opaque, size_t i, uint8_t **data, size_t *len)
{
  struct sn_layer *l = opaque;
  uint8_t *comp, *out, *win = NULL;
  struct sn_span s;
  size_t clen, ulen;
  struct comp_owner own;
  int r, tries = 0;

  sn_zinfo_span(l->zi, i, &s);
  ulen = s.uncomp_end > s.uncomp_start
    ? (size_t) (s.uncomp_end - s.uncomp_start) : 0;
  if (layer_windows(l)) {
    win = malloc(SN_ZINFO_WINSIZE);
    if (win == NULL)
      return sn_oom();
    if (layer_dense_window(l, i, win) == -1) {
      free(win);
      return -1;
    }
  }
  if (span_comp(l, i, &comp, &clen, l->comp_pool, &own) == -1) {
    free(win);
    return -1;
  }
  if (atomic_load(&l->capture[i])) {
    uint8_t *copy = malloc(clen ? clen : 1);

    if (copy) {
      memcpy(copy, comp, clen);
      free(atomic_exchange(&l->captured[i], copy));
    }
  }
  out = sn_bufpool_get(l->span_pool, ulen);
  if (out == NULL) {
    comp_free(l, comp, &own);
    free(win);
    return -1;
  }
  r = win ? sn_zinfo_decode_run(l->zi, i, i, win, comp, clen, out, ulen)
    : sn_zinfo_decode_span(l->zi, i, comp, clen, out, ulen);
  comp_free(l, comp, &own);
  if (layer_toc_chunks(l) && stargz_check(l, i, r, out, ulen) == -1)
    while (r = -1, tries++ < l->max_refetch) {
      comp = fetch_verified(l, i, &s, clen, NULL, NULL);
      if (comp == NULL)
        break;
      r = sn_zinfo_decode_span(l->zi, i, comp, clen, out, ulen);
      free(comp);
      if ((r = stargz_check(l, i, r, out, ulen)) == 0)
        break;
    }
  free(win);
  if (r == -1) {
    sn_prefix_error("span %zu of %s: ", i, l->name);
    sn_bufpool_put(l->span_pool, out);
    return -1;
  }
  *data = out;
  *len = ulen;
  return 0;
}

int
layer_load_in_order(struct sn_layer *l, size_t first, size_t last)
{
  struct sn_span_ent *ents[SN_SPANCACHE_MAX_GET];
  size_t i, k, n;

  for (i = first; i <= last; i += n) {
    n = layer_windows(l) ? 1 : last - i + 1;
    if (n > SN_SPANCACHE_MAX_GET)
      n = SN_SPANCACHE_MAX_GET;
    if (atomic_load(&l->closing))
      return sn_set_error("%s: closing", l->name);
    if (sn_spancache_get(l->cache, i, n, ents) == -1)
      return -1;
    for (k = 0; k < n; k++)
      sn_spancache_put(l->cache, ents[k]);
  }
  return 0;
}

/* Load span i through the cache, asking load_span for a copy of the
 * compressed bytes it fetches (*comp, the caller's; layer.h). */
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

/* -1 with the poison message once sn_layer_poison was called, else 0. */
int
layer_poisoned(struct sn_layer *l)
{
  char *m = atomic_load(&l->poison);

  return m ? sn_set_error("%s", m) : 0;
}

/* -1 with a message if [off, off+len) is not within the tar stream. */
int
layer_check_range(const struct sn_layer *l, int64_t off, uint64_t len)
{
  if (off < 0 || len > (uint64_t) (INT64_MAX - off) ||
      off + (int64_t) len > l->z->uncompressed_size)
    return sn_set_error("read [%lld,+%llu) outside the layer's %lld bytes",
                        (long long) off, (unsigned long long) len,
                        (long long) l->z->uncompressed_size);
  return 0;
}

/* ---- reads ----------------------------------------------------------- */

/* A client read was given n more bytes of span i (of len): once it has
 * had them all while the layer's reads stream, the span joins the ring
 * of those read, and the one LAYER_DONE_KEEP before it leaves the cache
 * (layer-int.h, delivered). */
static void
release_streamed(struct sn_layer *l, size_t i, uint32_t n, uint32_t len)
{
  uint32_t had = atomic_fetch_add(&l->delivered[i], n);
  size_t old = SIZE_MAX;

  if (had >= len || had + n < len)
    return;
  pthread_mutex_lock(&l->ra_lock);
  if (layer_streams(l)) {
    if (l->done_next >= LAYER_DONE_KEEP)
      old = l->done_ring[l->done_next % LAYER_DONE_KEEP];
    l->done_ring[l->done_next++ % LAYER_DONE_KEEP] = i;
  }
  pthread_mutex_unlock(&l->ra_lock);
  if (old != SIZE_MAX) {
    sn_spancache_drop(l->cache, old);
    layer_count(&l->spans_released, 1);
  }
}

/* Get the spans covering [off, off+len) through the cache, at most
 * SN_SPANCACHE_MAX_GET at a time (fetched concurrently), copying into buf
 * unless it is NULL.  A window's bytes are copied only once all of its
 * spans are verified. */
int
layer_read_spans(struct sn_layer *l, uint8_t *buf, size_t len, int64_t off,
                 enum layer_reader who)
{
  struct sn_span_ent *ents[SN_SPANCACHE_MAX_GET];
  struct counted { size_t i; uint32_t n, len; } counted[SN_SPANCACHE_MAX_GET];
  size_t ncounted = 0;
  int64_t end = off + (int64_t) len, pos = off;
  size_t first, last, i, k, n;
  bool hole = false;

  if (len == 0)
    return 0;
  first = sn_zinfo_span_of(l->zi, off);
  last = sn_zinfo_span_of(l->zi, end - 1);
  if (buf && who == LAYER_CLIENT)
    layer_readahead_note(l, off, len, last);
  if (buf && layer_fine(l))
    layer_dense_note(l, off, len, first, last, who != LAYER_BACKGROUND);
  for (i = first; i <= last && !hole; i += n) {
    n = last - i + 1;
    if (n > SN_SPANCACHE_MAX_GET)
      n = SN_SPANCACHE_MAX_GET;
    /* Dense sub-spans one by one: each decodes with the one before. */
    if (layer_windows(l)) {
      n = 1;
      layer_dense_await_run(l, i);
    }
    if (sn_spancache_get(l->cache, i, n, ents) == -1)
      return -1;
    for (k = 0; k < n && buf && !hole; k++) {
      struct sn_span s;
      size_t dlen;
      const uint8_t *data = sn_spancache_data(ents[k], &dlen);
      int64_t a, b;

      layer_replay_used(l, i + k);
      sn_zinfo_span(l->zi, i + k, &s);
      a = s.uncomp_start > pos ? s.uncomp_start : pos;
      b = s.uncomp_start + (int64_t) dlen < end
        ? s.uncomp_start + (int64_t) dlen : end;
      if (a != pos)
        hole = true;
      else if (b > a) {
        memcpy(buf + (a - off), data + (a - s.uncomp_start), b - a);
        pos = b;
        if (l->delivered &&
            (who == LAYER_CLIENT || who == LAYER_CLIENT_NOTED))
          counted[ncounted++] = (struct counted) {
            i + k, (uint32_t) (b - a), (uint32_t) dlen };
      }
    }
    for (k = 0; k < n; k++)
      sn_spancache_put(l->cache, ents[k]);
    /* After the puts: a span held is not dropped. */
    for (k = 0; k < ncounted; k++)
      release_streamed(l, counted[k].i, counted[k].n, counted[k].len);
    ncounted = 0;
  }
  if (buf && pos != end)
    return sn_set_error("spans of %s do not cover offset %lld", l->name,
                        (long long) pos);
  return 0;
}

/* No header checks here (sn_layer_read_checked does them). */
int
layer_read_as(struct sn_layer *l, void *buf, size_t len, int64_t off,
              enum layer_reader who)
{
  if (layer_poisoned(l) == -1 || layer_check_range(l, off, len) == -1)
    return -1;
  return layer_read_spans(l, buf, len, off, who);
}

int
sn_layer_read(struct sn_layer *l, void *buf, size_t len, int64_t off)
{
  int r;

  atomic_fetch_add(&l->client_reads, 1);
  r = layer_read_as(l, buf, len, off, LAYER_CLIENT);
  atomic_fetch_sub(&l->client_reads, 1);
  return r;
}

void
layer_note_client(struct sn_layer *l, int64_t off, size_t len)
{
  if (len > 0)
    layer_readahead_note(l, off, len,
                         sn_zinfo_span_of(l->zi, off + (int64_t) len - 1));
}

int
sn_layer_read_background(struct sn_layer *l, void *buf, size_t len,
                         int64_t off)
{
  return layer_read_as(l, buf, len, off, LAYER_BACKGROUND);
}

/* layer_read_spans without a buffer: the spans stay in the memory cache. */
int
sn_layer_prefetch(struct sn_layer *l, int64_t off, int64_t len)
{
  if (layer_poisoned(l) == -1)
    return -1;
  if (len < 0 || layer_check_range(l, off, (uint64_t) len) == -1)
    return sn_set_error("prefetch [%lld,+%lld) outside the layer's %lld "
                        "bytes", (long long) off, (long long) len,
                        (long long) l->z->uncompressed_size);
  return layer_read_spans(l, NULL, (size_t) len, off, LAYER_BACKGROUND);
}

/* ---- a file as the source ------------------------------------------- */

/* A sn_blob_read_fn over a file descriptor (opaque points to it): pread
 * until len bytes are read; EOF before that is an error. */
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
