/* soci-nbd: an ordered message queue to one helper thread (pipe.h). */
#include <config.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/pipe.h"

struct item {
  struct item *next;
  struct sn_pipe_msg m;
  size_t cap;                   /* of data */
  uint8_t data[];
};

/* Items of at least SPARE_MIN data bytes are kept for reuse once applied
 * (up to the pipe's max_bytes of them): large blocks that glibc would
 * otherwise hand back to the kernel and page-fault in again. */
#define SPARE_MIN ((size_t) 64 << 10)

/* The sender hands messages over in batches of about this much data (or
 * BATCH_COUNT messages): one lock and at most one wake-up per batch. */
#define BATCH_BYTES ((size_t) 256 << 10)
#define BATCH_COUNT 256

struct sn_pipe {
  sn_pipe_apply_fn apply;
  void *opaque;
  size_t max_bytes;
  bool threaded, closed;
  _Atomic bool discard;         /* sn_pipe_free: drop what is left */
  pthread_t tid;
  pthread_mutex_t lock;
  pthread_cond_t more;          /* the thread waits for items */
  pthread_cond_t room;          /* senders wait for queued bytes to drop */
  struct item *head, *tail;
  size_t queued;                /* data bytes handed over, not applied */
  bool idle;                    /* the thread waits on more */
  struct item *spare;           /* applied large items, for reuse */
  size_t spare_bytes;
  /* the sender's batch, not handed over yet */
  struct item *bhead, *btail;
  size_t bbytes, bcount;
};

static void *
pipe_main(void *arg)
{
  struct sn_pipe *p = arg;

  pthread_mutex_lock(&p->lock);
  for (;;) {
    struct item *batch = p->head, *it, *keep = NULL;
    size_t bytes = 0, kept = 0, room;

    if (batch == NULL) {
      if (p->closed)
        break;
      p->idle = true;
      pthread_cond_wait(&p->more, &p->lock);
      p->idle = false;
      continue;
    }
    p->head = p->tail = NULL;
    room = p->spare_bytes < p->max_bytes ? p->max_bytes - p->spare_bytes : 0;
    pthread_mutex_unlock(&p->lock);
    while ((it = batch) != NULL) {
      batch = it->next;
      if (!atomic_load_explicit(&p->discard, memory_order_relaxed))
        p->apply(p->opaque, &it->m);
      bytes += it->m.len;
      if (it->cap >= SPARE_MIN && kept + it->cap <= room) {
        it->next = keep;
        keep = it;
        kept += it->cap;
      }
      else
        free(it);
    }
    pthread_mutex_lock(&p->lock);
    while ((it = keep) != NULL) {
      keep = it->next;
      it->next = p->spare;
      p->spare = it;
    }
    p->spare_bytes += kept;
    p->queued -= bytes;
    pthread_cond_broadcast(&p->room);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

struct sn_pipe *
sn_pipe_new(sn_pipe_apply_fn apply, void *opaque, size_t max_bytes,
            bool thread)
{
  struct sn_pipe *p = calloc(1, sizeof *p);

  if (p == NULL) {
    sn_oom();
    return NULL;
  }
  p->apply = apply;
  p->opaque = opaque;
  p->max_bytes = max_bytes;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->more, NULL);
  pthread_cond_init(&p->room, NULL);
  p->threaded = thread && pthread_create(&p->tid, NULL, pipe_main, p) == 0;
  return p;
}

/* A spare item with room for len bytes, or NULL. */
static struct item *
take_spare(struct sn_pipe *p, size_t len)
{
  struct item **pp, *it = NULL;

  pthread_mutex_lock(&p->lock);
  for (pp = &p->spare; *pp; pp = &(*pp)->next)
    if ((*pp)->cap >= len) {
      it = *pp;
      *pp = it->next;
      p->spare_bytes -= it->cap;
      break;
    }
  pthread_mutex_unlock(&p->lock);
  return it;
}

/* Hand the sender's batch to the thread. */
static void
flush(struct sn_pipe *p)
{
  if (p->bhead == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  while (p->queued > p->max_bytes)
    pthread_cond_wait(&p->room, &p->lock);
  if (p->tail)
    p->tail->next = p->bhead;
  else
    p->head = p->bhead;
  p->tail = p->btail;
  p->queued += p->bbytes;
  if (p->idle)
    pthread_cond_signal(&p->more);
  pthread_mutex_unlock(&p->lock);
  p->bhead = p->btail = NULL;
  p->bbytes = p->bcount = 0;
}

int
sn_pipe_send(struct sn_pipe *p, const struct sn_pipe_msg *m)
{
  struct item *it;

  if (!p->threaded) {
    p->apply(p->opaque, m);
    return 0;
  }
  it = m->len >= SPARE_MIN ? take_spare(p, m->len) : NULL;
  if (it == NULL) {
    it = malloc(sizeof *it + m->len);
    if (it == NULL)
      return sn_oom();
    it->cap = m->len;
  }
  it->next = NULL;
  it->m = *m;
  if (m->len)
    memcpy(it->data, m->data, m->len);
  it->m.data = it->data;
  if (p->btail)
    p->btail->next = it;
  else
    p->bhead = it;
  p->btail = it;
  p->bbytes += m->len;
  if (++p->bcount >= BATCH_COUNT || p->bbytes >= BATCH_BYTES)
    flush(p);
  return 0;
}

void
sn_pipe_close(struct sn_pipe *p)
{
  if (p == NULL || p->closed)
    return;
  flush(p);
  pthread_mutex_lock(&p->lock);
  p->closed = true;
  pthread_cond_signal(&p->more);
  pthread_mutex_unlock(&p->lock);
  if (p->threaded)
    pthread_join(p->tid, NULL);
}

void
sn_pipe_free(struct sn_pipe *p)
{
  if (p == NULL)
    return;
  atomic_store_explicit(&p->discard, true, memory_order_relaxed);
  sn_pipe_close(p);
  while (p->spare) {
    struct item *it = p->spare;

    p->spare = it->next;
    free(it);
  }
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->more);
  pthread_cond_destroy(&p->room);
  free(p);
}
