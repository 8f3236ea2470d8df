/* soci-nbd: a small, bounded, thread-safe pool of large buffers (used by
 * lib/span/layer.c for decoded spans and compressed span bytes).
 *
 * Why: a span buffer is several MiB; glibc hands blocks that big back to
 * the kernel when they are freed, so every new span page-faults and has
 * its pages zeroed again.  A buffer given back to the pool is kept (up to
 * max_bufs buffers and max_bytes bytes of capacity) and handed out again
 * by the next get that fits in it; anything beyond the bounds is freed.
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
};

/* max_bufs == 0 or max_bytes == 0: keep nothing (every put frees). */
struct sn_bufpool *sn_bufpool_new(size_t max_bufs, size_t max_bytes);
/* Frees the idle buffers; buffers still out must not be put afterwards. */
void sn_bufpool_free(struct sn_bufpool *p);

/* A buffer of at least len bytes, contents undefined: the smallest idle
 * one that fits, else a new one (with some slack, so that spans of a
 * slightly different size fit it later).  NULL + sn_oom on failure. */
uint8_t *sn_bufpool_get(struct sn_bufpool *p, size_t len);
/* Give back buf (NULL is ignored): kept if the bounds allow, else freed. */
void sn_bufpool_put(struct sn_bufpool *p, uint8_t *buf);
/* buf's usable capacity (>= the len it was got with). */
size_t sn_bufpool_cap(const uint8_t *buf);

void sn_bufpool_get_stats(struct sn_bufpool *p, struct sn_bufpool_stats *st);

#endif
