/* soci-nbd: independent jobs on a few threads (see parallel.h). */
#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/parallel.h"

#define MAX_THREADS 16

struct par {
  size_t n, next;
  int (*fn)(void *arg, size_t i);
  void *arg;
  bool failed;
  size_t first_failed;          /* lowest i that failed (under lock) */
  char *msg;                    /* its message */
  pthread_mutex_t lock;
};

static void *
worker(void *opaque)
{
  struct par *p = opaque;

  for (;;) {
    size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);

    if (i >= p->n || __atomic_load_n(&p->failed, __ATOMIC_RELAXED))
      break;
    if (p->fn(p->arg, i) == 0)
      continue;
    pthread_mutex_lock(&p->lock);
    if (!p->failed || i < p->first_failed) {
      free(p->msg);
      p->msg = strdup(sn_error());
      p->first_failed = i;
      __atomic_store_n(&p->failed, true, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&p->lock);
  }
  return NULL;
}

int
sn_parallel_for(size_t n, size_t max_threads,
                int (*fn)(void *arg, size_t i), void *arg)
{
  struct par p = { .n = n, .fn = fn, .arg = arg };
  pthread_t tid[MAX_THREADS];
  size_t want, nt = 0, k;

  if (n == 0)
    return 0;
  want = max_threads < n ? max_threads : n;
  if (want > MAX_THREADS)
    want = MAX_THREADS;
  pthread_mutex_init(&p.lock, NULL);
  while (nt + 1 < want && pthread_create(&tid[nt], NULL, worker, &p) == 0)
    nt++;
  worker(&p);
  for (k = 0; k < nt; k++)
    pthread_join(tid[k], NULL);
  pthread_mutex_destroy(&p.lock);
  if (!p.failed)
    return 0;
  if (p.msg == NULL)
    return sn_oom();
  sn_set_error("%s", p.msg);
  free(p.msg);
  return -1;
}
