/* soci-nbd: the memory cache of a layer's uncompressed spans (used by
 * lib/span/layer.c).
 *
 * An LRU of decoded spans bounded by a byte budget, safe to use from many
 * threads at once.  Entries are reference counted: a span handed out by
 * sn_spancache_get stays valid until sn_spancache_put, whatever the
 * budget; only unreferenced spans are evicted, and a span larger than the
 * whole budget is served but not kept.  Loads are single flight: while a
 * span is loading, other readers of it wait for that load and share its
 * result (or its error; a failed span is forgotten, so a later get tries
 * again).  One get may ask for up to SN_SPANCACHE_MAX_GET spans; the ones
 * nobody is loading yet are loaded concurrently, one short-lived thread
 * per span beyond the first (threads are only created inside get).
 *
 * The disk half: verified compressed spans kept as files DIR/<span>
 * (DIR is per layer), written atomically and re-verified when loaded.
 *
 * Errors follow err.h.
 */
#ifndef SN_SPANCACHE_H
#define SN_SPANCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/digest.h"

#define SN_SPANCACHE_MAX_GET 8

/* Load span i: on success store a malloc'd buffer (ownership passes to
 * the cache; released with free() or the sn_spancache_set_release fn)
 * and its length.  Called from any thread, concurrently for
 * different spans, never concurrently for the same span. */
typedef int (*sn_span_load_fn)(void *opaque, size_t i, uint8_t **data,
                               size_t *len);

/* Release a buffer a load stored (opaque as given to sn_spancache_new). */
typedef void (*sn_span_release_fn)(void *opaque, uint8_t *data);

struct sn_spancache;
struct sn_span_ent;

struct sn_spancache_stats {
  uint64_t hits;        /* spans found cached or being loaded by another */
  uint64_t misses;      /* spans this cache had to load */
  uint64_t bytes;       /* bytes held now (cached and in use) */
  uint64_t peak;        /* the most bytes ever held at once */
};

/* budget == 0 keeps nothing once unreferenced. */
struct sn_spancache *sn_spancache_new(size_t nspans, size_t budget,
                                      sn_span_load_fn load, void *opaque);
/* Entries' data is released with fn instead of free() (call before the
 * first get). */
void sn_spancache_set_release(struct sn_spancache *c, sn_span_release_fn fn);
/* No get may be running and every entry must have been put. */
void sn_spancache_free(struct sn_spancache *c);

/* Spans [first, first+n), n <= SN_SPANCACHE_MAX_GET, first+n <= nspans,
 * into ents[0..n).  All or nothing: on -1 no entry is held and the
 * message is that of the first failed span. */
int sn_spancache_get(struct sn_spancache *c, size_t first, size_t n,
                     struct sn_span_ent **ents);
/* A held entry's bytes. */
const uint8_t *sn_spancache_data(const struct sn_span_ent *e, size_t *len);
void sn_spancache_put(struct sn_spancache *c, struct sn_span_ent *e);

/* Hold span i (0, *ent set; sn_spancache_put it) if it is cached, or
 * (wait true) once the load under way ends well; 1 if it is absent, being
 * loaded and wait is false, or that load failed.  Never loads a span: for
 * a loader that can use a neighbour's bytes but must not cause a fetch. */
int sn_spancache_join(struct sn_spancache *c, size_t i, bool wait,
                      struct sn_span_ent **ent);
/* Span i is cached and ready now (a hint: it may be evicted right after). */
bool sn_spancache_has(struct sn_spancache *c, size_t i);
/* Span i is cached or being loaded now. */
bool sn_spancache_present(struct sn_spancache *c, size_t i);
/* Forget span i if it is cached and nobody holds it. */
void sn_spancache_drop(struct sn_spancache *c, size_t i);
/* len more bytes would fit in the budget without evicting anything. */
bool sn_spancache_room(struct sn_spancache *c, size_t len);

void sn_spancache_get_stats(struct sn_spancache *c,
                            struct sn_spancache_stats *st);

/* Span i's compressed bytes from DIR/<i> if the file is exactly clen bytes
 * hashing to want (malloc'd, caller owns); NULL otherwise, and a short,
 * long or mismatching file is deleted. */
uint8_t *sn_disk_span_load(const char *dir, size_t i, size_t clen,
                           const uint8_t want[SN_SHA256_LEN]);
/* Best effort, no message: write DIR/<i> via a temporary file
 * (DIR/.<i>.<pid>.XXXXXX, see diskcache.h), fsync and rename; 0 when stored.
 * Creates DIR and its parent if missing (0700).  A successful load bumps
 * the file's mtime (LRU order of the size bound). */
int sn_disk_span_store(const char *dir, size_t i, const uint8_t *buf,
                        size_t len);

#endif
