/* soci-nbd: a small, bounded, thread-safe pool of large buffers (used by
 * lib/span/layer.c for decoded spans and compressed span bytes).
 *
 * Why: a span buffer is several MiB; glibc hands blocks that big back to
 * the kernel when they are freed, so every new span page-faults and has
 * its pages zeroed again.  A buffer given back to the pool is kept (up to
 * max_bufs buffers and max_bytes bytes of capacity) and handed out again
 * by the next get that fits in it; anything beyond the bounds is freed.
 *
 * A pool may also carve buffers out of a huge-page area (util/hugearea.h),
 * made on its first get: gets are served from there while it has room,
 * and from the idle list or malloc beyond it.  Its memory is faulted in
 * 2 MiB at a time and stays with the pool until sn_bufpool_free.
 *
 * Buffers from sn_bufpool_get must be released with sn_bufpool_put (never
 * free()): each carries a small header recording its capacity.
 * Errors follow err.h.
 */
#ifndef SN_BUFPOOL_H
#define SN_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

struct sn_bufpool;

struct sn_bufpool_stats {
  uint64_t reused;      /* gets served from the pool */
  uint64_t allocated;   /* gets that had to allocate */
  uint64_t held;        /* buffers idle in the pool now */
  uint64_t held_bytes;  /* their capacity */
  uint64_t carved;      /* gets served from the huge-page area */
  uint64_t area_touched; /* bytes of the area ever used (resident at most) */
};

/* max_bufs == 0 or max_bytes == 0: keep nothing idle (every put of a
 * malloc'd buffer frees it).  area_bytes: the size of the huge-page area,
 * 0 for none (also when it cannot be mapped: then gets just malloc). */
struct sn_bufpool *sn_bufpool_new(size_t max_bufs, size_t max_bytes,
                                  size_t area_bytes);
/* Frees the idle buffers; buffers still out must not be put afterwards. */
void sn_bufpool_free(struct sn_bufpool *p);

/* A buffer of at least len bytes, contents undefined: carved from the
 * area if it has room, else the smallest idle one that fits, else a new
 * one (with some slack, so that spans of a slightly different size fit it
 * later).  NULL + sn_oom on failure. */
uint8_t *sn_bufpool_get(struct sn_bufpool *p, size_t len);
/* Give back buf (NULL is ignored): back to the area if carved from it,
 * else kept idle if the bounds allow, else freed. */
void sn_bufpool_put(struct sn_bufpool *p, uint8_t *buf);
/* buf's usable capacity (>= the len it was got with). */
size_t sn_bufpool_cap(const uint8_t *buf);

void sn_bufpool_get_stats(struct sn_bufpool *p, struct sn_bufpool_stats *st);

#endif
