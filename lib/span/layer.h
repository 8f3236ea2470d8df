/* soci-nbd: one layer at run time — its ztoc, its zinfo, and a source of
 * compressed blob bytes (a local file now; the registry later).  Reads of
 * uncompressed tar bytes go span by span: fetch the compressed span,
 * verify it against the ztoc's span digest, inflate it from its
 * checkpoint.  Nothing unverified is ever returned.
 *
 * Before file bytes are served, the file's tar header region can be
 * re-parsed from verified spans and compared with its ztoc entry
 * (sn_layer_check_file), so a lying ztoc cannot map one file onto
 * another's bytes.
 *
 * Ownership: sn_layer_new() takes ownership of the ztoc.  Errors follow
 * err.h.
 */
#ifndef SN_LAYER_H
#define SN_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "soci/zinfo.h"
#include "soci/ztoc.h"

/* Read exactly len compressed bytes at off of the layer blob. */
typedef int (*sn_blob_read_fn)(void *opaque, void *buf, size_t len,
                               int64_t off);
/* Told about each span fetched from the source, once per fetch, when its
 * bytes have arrived and are counted in the statistics (for --verbose and
 * a statistics file); called from whichever thread fetches, possibly
 * several at once.  Set it before the first read. */
typedef void (*sn_span_trace_fn)(void *opaque, size_t span,
                                 const struct sn_span *s);

struct sn_layer;
struct sn_diskcache;

struct sn_layer *sn_layer_new(struct sn_ztoc *z, sn_blob_read_fn read,
                              void *opaque);
void sn_layer_free(struct sn_layer *l);
void sn_layer_set_trace(struct sn_layer *l, sn_span_trace_fn fn,
                        void *opaque);

/* Run-time options (sn_layer_new_opts).  Zero/NULL fields take defaults. */
struct sn_layer_opts {
  size_t cache_bytes;        /* memory LRU of uncompressed spans; 0 → 64 MiB,
                              * shared budget is the caller's business */
  const char *cache_dir;     /* keep verified compressed spans on disk,
                              * in cache_dir/<digest hex>/<span>; needs
                              * layer_digest; NULL = off; created if missing
                              * (cache_dir itself and the per-layer dir) */
  const char *layer_digest;  /* "sha256:…" of the blob (disk cache key; also
                              * names the layer in messages) */
  int max_refetch;           /* extra fetches after a digest mismatch; 0 → 2,
                              * < 0 → none */
  struct sn_diskcache *disk; /* counts the bytes stored in cache_dir (size
                              * bound); may be NULL */
  sn_blob_read_fn windows_read; /* a dense index's windows blob (the ztoc
                              * is a dense table, lib/dense/dense.h); each
                              * window is verified against its digest */
  void *windows_opaque;
  size_t readahead_bytes;    /* sequential readahead window; 0 = off.  Once
                              * reads have gone forward through at least one
                              * span's worth of bytes (max(span size, 1 MiB))
                              * without a jump, the spans after the one being
                              * read are loaded in the background, up to this
                              * many bytes of spans (at least 2 spans, at most
                              * SN_SPANCACHE_MAX_GET and half the cache
                              * budget), through the cache (single flight);
                              * with a window of 4 spans or more and no
                              * cache_dir, each run of spans nobody is
                              * loading is fetched with one range request
                              * (each span still verified on its own) */
};

/* Counters, read with sn_layer_get_stats (atomic snapshot). */
struct sn_layer_stats {
  uint64_t spans_fetched;    /* compressed spans fetched from the source */
  uint64_t spans_verified;   /* fetched spans whose digest matched */
  uint64_t spans_failed;     /* fetched spans whose digest did not match */
  uint64_t bytes_fetched;    /* compressed bytes fetched */
  uint64_t cache_hits;       /* reads served from the memory cache */
  uint64_t cache_misses;
  uint64_t disk_hits;        /* spans loaded from cache_dir */
  uint64_t headers_checked;  /* files whose tar header was verified */
  uint64_t mem_bytes;        /* bytes in the memory cache now (incl. in use) */
  uint64_t mem_peak;         /* the most it ever held */
  uint64_t readahead_spans;  /* spans asked for by sequential readahead */
  uint64_t pool_reused;      /* span buffers reused from the pools */
  uint64_t pool_allocated;   /* span buffers that had to be allocated */
  uint64_t pool_carved;      /* span buffers carved from the pools'
                              * huge-page areas (caches of 8 MiB or more) */
  uint64_t windows_fetched;  /* dense index: sparse windows fetched (their
                              * bytes are in bytes_fetched too) */
  uint64_t windows_staged;   /* of those, fetched ahead for the first
                              * sub-span of a staged run */
  uint64_t windows_from_cache; /* windows taken from decoded neighbours */
  uint64_t replay_spans;     /* spans fetched by sn_layer_replay */
  uint64_t replay_bytes;     /* their compressed bytes (windows excluded) */
  uint64_t replay_used_spans; /* of those, the ones a read then used */
  uint64_t replay_used_bytes;
  uint64_t spans_released;   /* spans a streaming reader had read whole,
                              * dropped from the memory cache behind it */
};

/* Like sn_layer_new, with options.  The returned layer is thread-safe:
 * sn_layer_read and friends may be called from many threads at once;
 * concurrent readers of one span cause one fetch (single flight); the
 * spans a read needs are fetched concurrently. */
struct sn_layer *sn_layer_new_opts(struct sn_ztoc *z, sn_blob_read_fn read,
                                   void *opaque,
                                   const struct sn_layer_opts *o);
void sn_layer_get_stats(struct sn_layer *l, struct sn_layer_stats *st);

/* Like sn_layer_read, but first makes sure that every file whose data
 * overlaps [off, off+len) has had its tar header checked against its ztoc
 * entry (each file once; results remembered).  What a server uses. */
int sn_layer_read_checked(struct sn_layer *l, void *buf, size_t len,
                          int64_t off);

/* Fetch (and cache) the spans covering [off, off+len) without copying
 * anything out: for NBD_CMD_CACHE / prefetch. */
int sn_layer_prefetch(struct sn_layer *l, int64_t off, int64_t len);

/* ---- replaying a prefetch record (lib/image/image-replay.c) ----
 * Load spans first..last into the memory cache ahead of the reads that
 * will want them.  begin fetches, in the background, the spans nobody has
 * (cached, being loaded or fetched), in runs of at most max_bytes
 * compressed bytes, one range request each, all under way at once; a
 * dense run whose first sub-span's neighbour is absent fetches that
 * sub-span's window alongside.  end decodes spans first..last in order in
 * the calling thread and returns once they are in the cache.  What a
 * replay fetches is counted in replay_spans / replay_bytes, and in
 * replay_used_* once a read (sn_layer_read) uses it.  Both: 0 or -1
 * (err.h); a span that failed is left to the reads.  sn_layer_replay is
 * begin then end. */
int sn_layer_replay_begin(struct sn_layer *l, size_t first, size_t last,
                          int64_t max_bytes);
int sn_layer_replay_end(struct sn_layer *l, size_t first, size_t last);
int sn_layer_replay(struct sn_layer *l, size_t first, size_t last,
                    int64_t max_bytes);
/* Call fn(opaque, i) for each file of the layer's ztoc with data (i
 * indexes z->files) whose data starts in [off, end), in offset order,
 * through the layer's own index of its files. */
void sn_layer_each_file_start(const struct sn_layer *l, int64_t off,
                              int64_t end, void (*fn)(void *opaque, size_t i),
                              void *opaque);
/* Is the layer read through a dense index's sub-spans, without a disk
 * cache: the layers sn_layer_stage_range stages? */
bool sn_layer_stages_files(const struct sn_layer *l);
/* Fetch in the background, as sn_layer_replay_begin does (not counted as
 * a replay), the sub-spans of [off, off+len) that nobody has: the start of
 * a file a read is expected to want (lib/deps/deps.h).  Only a layer that
 * sn_layer_stages_files stages anything; 1 otherwise, with nothing done.
 * 0 or -1. */
int sn_layer_stage_range(struct sn_layer *l, int64_t off, int64_t len,
                         int64_t max_bytes);
/* sn_layer_read for a reader of the library's own (dependency prefetch):
 * its reads do not count as the client's for the sequential-read
 * detector, so they cannot break a client's stream. */
int sn_layer_read_background(struct sn_layer *l, void *buf, size_t len,
                             int64_t off);
/* Are the layer's reads streaming: a forward run of several MiB read, as
 * a copy of the whole device does (a program's start reads far less)? */
bool sn_layer_streaming(struct sn_layer *l);
/* Where the tar header of the file whose data holds byte off begins (a
 * read of a file first checks its header, sn_layer_read_checked), or off
 * when no file's data holds it: a replay starts there. */
int64_t sn_layer_header_start(const struct sn_layer *l, int64_t off);
/* The memory cache's budget in bytes (sn_layer_opts.cache_bytes). */
size_t sn_layer_cache_budget(const struct sn_layer *l);

/* ---- for a background fetcher ----
 * Span i's verified compressed bytes (malloc'd, caller owns): from the disk
 * cache, else fetched (and stored in the disk cache).  Does not touch the
 * memory cache. */
int sn_layer_span_comp(struct sn_layer *l, size_t i, uint8_t **comp,
                       size_t *clen);
/* Load span i through the memory cache (single flight with foreground
 * reads: never a second fetch of a span being loaded).  If this call (or
 * the load it joined) fetched the span, *comp receives a copy of its
 * verified compressed bytes (caller frees), else NULL (it was cached).
 * keep false: drop the span from the memory cache again if nobody uses it
 * (so that a background pass does not evict the foreground's spans). */
int sn_layer_load_span(struct sn_layer *l, size_t i, bool keep,
                       uint8_t **comp, size_t *clen);
/* Hints: span i is in the memory cache; it would fit without evicting. */
bool sn_layer_span_cached(struct sn_layer *l, size_t i);
bool sn_layer_cache_room(struct sn_layer *l, size_t i);
size_t sn_layer_nspans(const struct sn_layer *l);
/* From now on every read of the layer fails with msg (first call wins). */
void sn_layer_poison(struct sn_layer *l, const char *msg);

/* Whole-layer check: feed every span's verified compressed bytes in order
 * (0, 1, …); the bytes no span covers (gzip header, trailer) are read
 * from the source.  The ztoc is rebuilt from the stream at its span size
 * and finish compares: the blob's digest with layer_digest, then the
 * rebuilt ztoc with the served one — uncompressed size, span digests,
 * every checkpoint (offsets, bits, 32 KiB window) and every TOC entry
 * (name, type, offset, size, mode, owner, link, mtime, devices, PAX).
 * Equal means every byte and every inode ever served from this layer is
 * the layer's.  On -1, *mismatch tells a verdict (the layer or its ztoc
 * is not what it claims) from a failure to read. */
struct sn_layer_check;
struct sn_layer_check *sn_layer_check_new(struct sn_layer *l);
int sn_layer_check_span(struct sn_layer_check *c, size_t i,
                        const uint8_t *comp, size_t clen, bool *mismatch);
int sn_layer_check_finish(struct sn_layer_check *c, const char *layer_digest,
                          bool *mismatch);
void sn_layer_check_free(struct sn_layer_check *c);

const struct sn_ztoc *sn_layer_ztoc(const struct sn_layer *l);
const struct sn_zinfo *sn_layer_zinfo(const struct sn_layer *l);

/* Uncompressed tar bytes [off, off+len), which must lie inside
 * [0, uncompressed_size). */
int sn_layer_read(struct sn_layer *l, void *buf, size_t len, int64_t off);

/* Re-parse f's header region from verified spans and compare it with f. */
int sn_layer_check_file(struct sn_layer *l, const struct sn_ztoc_file *f);

/* Compare a parsed tar entry with a ztoc entry (name, type, size, mode,
 * ids, link, mtime, devices, SCHILY.xattr set).  Exposed for tests. */
struct sn_tar_entry;
int sn_entry_matches(const struct sn_tar_entry *e,
                     const struct sn_ztoc_file *f);

/* A blob source reading a local file; opaque is a pointer to an int fd. */
int sn_blob_read_fd(void *opaque, void *buf, size_t len, int64_t off);

#endif
