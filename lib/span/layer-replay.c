/* soci-nbd: replaying a prefetch record into a layer (docs/prefetch-
 * record.md) — the spans a recorded run read are fetched ahead of the
 * reads, in runs with one range request each, a few under way at once,
 * and decoded in order by the replaying thread, so that the reads find
 * them in the memory cache.  Every span still goes through the cache's
 * single flight and its digest check: a span is never fetched twice, and
 * nothing unverified is kept.  Shared state: layer-int.h. */
#include <config.h>

#include <stdatomic.h>
#include <stdlib.h>

#include "span/layer.h"
#include "span/layer-int.h"
#include "span/spancache.h"
#include "util/err.h"

size_t
sn_layer_cache_budget(const struct sn_layer *l)
{
  return l->cache_budget;
}

/* Compressed size of span i. */
static uint64_t
comp_size(const struct sn_layer *l, size_t i)
{
  struct sn_span s;

  sn_zinfo_span(l->zi, i, &s);
  return (uint64_t) (s.comp_end - s.comp_start);
}

void
layer_replay_used(struct sn_layer *l, size_t i)
{
  unsigned char one = 1;

  if (atomic_load_explicit(&l->replayed[i], memory_order_relaxed) == 1 &&
      atomic_compare_exchange_strong(&l->replayed[i], &one, 2)) {
    layer_count(&l->replay_used_spans, 1);
    layer_count(&l->replay_used_bytes, comp_size(l, i));
  }
}

/* Spans [first, first+n) are being fetched for a replay. */
static void
mark_replayed(struct sn_layer *l, size_t first, size_t n)
{
  size_t i;

  for (i = first; i < first + n; i++) {
    unsigned char zero = 0;

    if (atomic_compare_exchange_strong(&l->replayed[i], &zero, 1)) {
      layer_count(&l->replay_spans, 1);
      layer_count(&l->replay_bytes, comp_size(l, i));
    }
  }
}

/* Stage the runs of spans in [first, last] nobody has (ra_lock held),
 * each with the window of its first sub-span when its neighbour is
 * absent. */
static void
stage_all(struct sn_layer *l, size_t first, size_t last, int64_t max_bytes,
          bool replay)
{
  size_t next = first, rf, n;

  while (next <= last) {
    next = layer_stage(l, next, last + 1, max_bytes, LAYER_STAGE_APART, &rf,
                       &n);
    if (n == 0)
      break;
    if (replay)
      mark_replayed(l, rf, n);
    if (layer_windows(l) && rf > 0 && !sn_spancache_present(l->cache, rf - 1))
      layer_dense_stage_window(l, rf);
  }
}

int
sn_layer_replay_begin(struct sn_layer *l, size_t first, size_t last,
                      int64_t max_bytes)
{
  size_t i;

  if (layer_poisoned(l) == -1)
    return -1;
  if (first > last || last >= l->zi->nspans)
    return sn_set_error("spans %zu..%zu of %s: out of range (%zu spans)",
                        first, last, l->name, l->zi->nspans);
  if (l->staging == NULL) {
    /* No range requests here (a disk cache): each span's load fetches it
     * (sn_layer_replay_end). */
    for (i = first; i <= last; i++)
      if (!sn_spancache_present(l->cache, i))
        mark_replayed(l, i, 1);
    return 0;
  }
  pthread_mutex_lock(&l->ra_lock);
  stage_all(l, first, last, max_bytes, true);
  pthread_mutex_unlock(&l->ra_lock);
  return 0;
}

bool
sn_layer_stages_files(const struct sn_layer *l)
{
  return layer_fine(l) && !layer_toc_chunks(l) && l->staging != NULL;
}

int
sn_layer_stage_range(struct sn_layer *l, int64_t off, int64_t len,
                     int64_t max_bytes)
{
  if (layer_poisoned(l) == -1)
    return -1;
  if (!sn_layer_stages_files(l))
    return 1;
  if (len <= 0)
    return 0;
  if (layer_check_range(l, off, (uint64_t) len) == -1)
    return -1;
  pthread_mutex_lock(&l->ra_lock);
  stage_all(l, sn_zinfo_span_of(l->zi, off),
            sn_zinfo_span_of(l->zi, off + len - 1), max_bytes, false);
  pthread_mutex_unlock(&l->ra_lock);
  return 0;
}

int
sn_layer_replay_end(struct sn_layer *l, size_t first, size_t last)
{
  if (first > last || last >= l->zi->nspans)
    return sn_set_error("spans %zu..%zu of %s: out of range (%zu spans)",
                        first, last, l->name, l->zi->nspans);
  /* On failure the runs still under way stay staged for the reads. */
  return layer_load_in_order(l, first, last);
}

int
sn_layer_replay(struct sn_layer *l, size_t first, size_t last,
                int64_t max_bytes)
{
  if (sn_layer_replay_begin(l, first, last, max_bytes) == -1)
    return -1;
  return sn_layer_replay_end(l, first, last);
}
