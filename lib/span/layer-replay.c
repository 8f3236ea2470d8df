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

/* The most runs one call keeps under way. */
#define REPLAY_MAX_AHEAD 8

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

/* Load spans [first, last] through the cache in order, releasing them at
 * once (a dense sub-span decodes with the one before it). */
static int
load_in_order(struct sn_layer *l, size_t first, size_t last)
{
  struct sn_span_ent *ents[SN_SPANCACHE_MAX_GET];
  size_t i, k, n;

  for (i = first; i <= last; i += n) {
    n = l->zi->winref ? 1 : last - i + 1;
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

/* Stage the next run of spans in [*next, last] nobody has (ra_lock held),
 * with the window of its first sub-span when its neighbour is absent.
 * The run's last span, or (size_t) -1 when there is nothing to stage. */
static size_t
stage_one(struct sn_layer *l, size_t *next, size_t last, int64_t max_bytes)
{
  size_t rf, n;

  if (*next > last)
    return (size_t) -1;
  *next = layer_stage(l, *next, last + 1, max_bytes, false, &rf, &n);
  if (n == 0)
    return (size_t) -1;
  mark_replayed(l, rf, n);
  if (l->zi->winref && rf > 0 && !sn_spancache_present(l->cache, rf - 1))
    layer_dense_stage_windows(l, rf, 1);
  return rf + n - 1;
}

int
sn_layer_replay(struct sn_layer *l, size_t first, size_t last,
                int64_t max_bytes, unsigned ahead)
{
  size_t ends[REPLAY_MAX_AHEAD], head = 0, count = 0, next = first, done;
  size_t i;

  if (layer_poisoned(l) == -1)
    return -1;
  if (first > last || last >= l->zi->nspans)
    return sn_set_error("spans %zu..%zu of %s: out of range (%zu spans)",
                        first, last, l->name, l->zi->nspans);
  if (l->staging == NULL) {
    /* No range requests here (a disk cache): each span's load fetches it
     * (SN_SPANCACHE_MAX_GET at once). */
    for (i = first; i <= last; i++)
      if (!sn_spancache_present(l->cache, i))
        mark_replayed(l, i, 1);
    return load_in_order(l, first, last);
  }
  if (ahead == 0)
    ahead = 1;
  if (ahead > REPLAY_MAX_AHEAD)
    ahead = REPLAY_MAX_AHEAD;
  for (done = first; done <= last;) {
    size_t upto;

    pthread_mutex_lock(&l->ra_lock);
    while (count < ahead) {
      size_t e = stage_one(l, &next, last, max_bytes);

      if (e == (size_t) -1) {
        next = last + 1;
        break;
      }
      ends[(head + count++) % REPLAY_MAX_AHEAD] = e;
    }
    pthread_mutex_unlock(&l->ra_lock);
    /* Decode through the end of the oldest run under way (or to the end
     * when all is staged or held by others). */
    if (count > 0) {
      upto = ends[head];
      head = (head + 1) % REPLAY_MAX_AHEAD;
      count--;
    }
    else
      upto = last;
    if (upto < done)
      continue;
    /* On failure the runs still under way stay staged for the reads. */
    if (load_in_order(l, done, upto) == -1)
      return -1;
    done = upto + 1;
  }
  return 0;
}
