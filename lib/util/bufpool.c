/* soci-nbd: a bounded pool of large reusable buffers, so that span
 * buffers are not page-faulted and zeroed afresh for every span, carved
 * from a huge-page area where it has room (see bufpool.h). */
#include <config.h>

#include <pthread.h>
#include <stdlib.h>

#include "util/bufpool.h"
#include "util/err.h"
#include "util/hugearea.h"

/* Each buffer is preceded by this header (64 bytes keeps the data
 * cache-line aligned). */
struct hdr {
  size_t cap;
  struct hdr *next;             /* in the idle list */
  unsigned char pad[64 - sizeof(size_t) - sizeof(void *)];
};

/* New buffers get 1/16 more than asked, rounded up to 64 KiB: decoded
 * spans of one layer differ in size by a deflate block or so. */
#define ROUND ((size_t) 64 << 10)

struct sn_bufpool {
  pthread_mutex_t lock;
  size_t max_bufs, max_bytes;
  struct hdr *idle;             /* idle buffers, any order */
  size_t nidle, idle_bytes;
  uint64_t reused, allocated, carved;
  size_t area_bytes;            /* 0: no area (none asked, or none to be had) */
  struct sn_hugearea *area;     /* made by the first get */
};

struct sn_bufpool *
sn_bufpool_new(size_t max_bufs, size_t max_bytes, size_t area_bytes)
{
  struct sn_bufpool *p = calloc(1, sizeof *p);

  if (p == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&p->lock, NULL);
  p->max_bufs = max_bufs;
  p->max_bytes = max_bytes;
  p->area_bytes = area_bytes;
  return p;
}

void
sn_bufpool_free(struct sn_bufpool *p)
{
  if (p == NULL)
    return;
  while (p->idle) {
    struct hdr *h = p->idle;
    p->idle = h->next;
    free(h);
  }
  sn_hugearea_free(p->area);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* Under the lock: a buffer of len bytes from the area (made now if this
 * is the first get), or NULL if it has no room or cannot be had. */
static struct hdr *
carve(struct sn_bufpool *p, size_t len)
{
  struct hdr *h;
  size_t size;

  if (p->area == NULL && p->area_bytes) {
    p->area = sn_hugearea_new(p->area_bytes);
    if (p->area == NULL)
      p->area_bytes = 0;        /* no area: malloc from now on */
  }
  if (p->area == NULL || len > SIZE_MAX - sizeof *h ||
      (h = (struct hdr *) sn_hugearea_alloc(p->area, sizeof *h + len,
                                            &size)) == NULL)
    return NULL;
  h->cap = size - sizeof *h;
  h->next = NULL;
  p->carved++;
  return h;
}

/* Best fit among the idle buffers, under the lock; a miss allocates
 * outside it: len + 1/16, rounded up to ROUND (just len on overflow). */
uint8_t *
sn_bufpool_get(struct sn_bufpool *p, size_t len)
{
  struct hdr **pp, **best = NULL, *h;
  size_t cap;

  pthread_mutex_lock(&p->lock);
  if ((h = carve(p, len)) != NULL) {
    pthread_mutex_unlock(&p->lock);
    return (uint8_t *) (h + 1);
  }
  for (pp = &p->idle; *pp; pp = &(*pp)->next)
    if ((*pp)->cap >= len && (best == NULL || (*pp)->cap < (*best)->cap))
      best = pp;
  if (best) {
    h = *best;
    *best = h->next;
    p->nidle--;
    p->idle_bytes -= h->cap;
    p->reused++;
    pthread_mutex_unlock(&p->lock);
    h->next = NULL;
    return (uint8_t *) (h + 1);
  }
  p->allocated++;
  pthread_mutex_unlock(&p->lock);

  cap = len + len / 16;
  if (cap < len || cap > SIZE_MAX - ROUND - sizeof *h)
    cap = len;
  else
    cap = (cap + ROUND - 1) / ROUND * ROUND;
  if (cap > SIZE_MAX - sizeof *h || (h = malloc(sizeof *h + cap)) == NULL) {
    sn_oom();
    return NULL;
  }
  h->cap = cap;
  h->next = NULL;
  return (uint8_t *) (h + 1);
}

size_t
sn_bufpool_cap(const uint8_t *buf)
{
  return ((const struct hdr *) buf - 1)->cap;
}

/* Back to the area if carved from it, else keep buf while both bounds
 * allow, else free it (outside the lock). */
void
sn_bufpool_put(struct sn_bufpool *p, uint8_t *buf)
{
  struct hdr *h;

  if (buf == NULL)
    return;
  h = (struct hdr *) buf - 1;
  pthread_mutex_lock(&p->lock);
  if (sn_hugearea_owns(p->area, h)) {
    sn_hugearea_release(p->area, (uint8_t *) h, sizeof *h + h->cap);
    h = NULL;
  }
  else if (p->nidle < p->max_bufs && p->idle_bytes <= p->max_bytes &&
      h->cap <= p->max_bytes - p->idle_bytes) {
    h->next = p->idle;
    p->idle = h;
    p->nidle++;
    p->idle_bytes += h->cap;
    h = NULL;
  }
  pthread_mutex_unlock(&p->lock);
  free(h);
}

/* A snapshot of the counters, taken under the lock. */
void
sn_bufpool_get_stats(struct sn_bufpool *p, struct sn_bufpool_stats *st)
{
  pthread_mutex_lock(&p->lock);
  st->reused = p->reused;
  st->allocated = p->allocated;
  st->held = p->nidle;
  st->held_bytes = p->idle_bytes;
  st->carved = p->carved;
  st->area_touched = 0;
  if (p->area) {
    size_t in_use, touched;

    sn_hugearea_usage(p->area, &in_use, &touched);
    st->area_touched = touched;
  }
  pthread_mutex_unlock(&p->lock);
}
