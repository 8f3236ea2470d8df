/* soci-nbd: a thread-safe, reference-counted LRU of decoded spans with
 * single-flight loading and concurrent loads of the spans one read needs,
 * and the on-disk cache of verified compressed spans (see spancache.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "span/diskcache.h"
#include "util/err.h"
#include "util/fdio.h"
#include "span/spancache.h"

enum ent_state { ENT_LOADING, ENT_READY, ENT_FAILED };

struct sn_span_ent {
  size_t idx;
  enum ent_state state;         /* under the cache lock */
  unsigned refs;                /* readers holding it, loader included */
  uint8_t *data;
  size_t len;
  char *err;                    /* the load's message when FAILED */
  pthread_cond_t done;          /* signalled when state leaves LOADING */
  struct sn_span_ent *prev, *next;  /* LRU links while refs == 0 */
};

struct sn_spancache {
  pthread_mutex_t lock;
  size_t nspans, budget;
  sn_span_load_fn load;
  void *opaque;
  sn_span_release_fn release;   /* frees an entry's data; NULL: free() */
  /* slot[i]: span i's entry (loading, ready, in use or idle), or NULL. */
  struct sn_span_ent **slot;
  /* Idle ready entries, most recently used first (circular, sentinel). */
  struct sn_span_ent lru;
  size_t bytes, peak;           /* bytes of ready entries in slot[] */
  _Atomic uint64_t hits, misses;
};

struct sn_spancache *
sn_spancache_new(size_t nspans, size_t budget, sn_span_load_fn load,
                 void *opaque)
{
  struct sn_spancache *c = calloc(1, sizeof *c);

  if (c == NULL || (c->slot = calloc(nspans ? nspans : 1,
                                     sizeof *c->slot)) == NULL) {
    free(c);
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&c->lock, NULL);
  c->nspans = nspans;
  c->budget = budget;
  c->load = load;
  c->opaque = opaque;
  c->lru.prev = c->lru.next = &c->lru;
  return c;
}

void
sn_spancache_set_release(struct sn_spancache *c, sn_span_release_fn release)
{
  c->release = release;
}

/* Free an entry and its data (through the release function, if set). */
static void
ent_free(struct sn_spancache *c, struct sn_span_ent *e)
{
  pthread_cond_destroy(&e->done);
  if (c->release)
    c->release(c->opaque, e->data);
  else
    free(e->data);
  free(e->err);
  free(e);
}

/* Every entry still in slot[] is idle (see spancache.h), so free them. */
void
sn_spancache_free(struct sn_spancache *c)
{
  size_t i;

  if (c == NULL)
    return;
  for (i = 0; i < c->nspans; i++)
    if (c->slot[i])
      ent_free(c, c->slot[i]);
  free(c->slot);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* Take e off the idle list (it is about to be used or freed). */
static void
lru_unlink(struct sn_span_ent *e)
{
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->prev = e->next = NULL;
}

/* Drop idle entries, least recently used first, until within budget.
 * Called with the lock held. */
static void
evict(struct sn_spancache *c)
{
  while (c->bytes > c->budget && c->lru.prev != &c->lru) {
    struct sn_span_ent *e = c->lru.prev;
    lru_unlink(e);
    c->slot[e->idx] = NULL;
    c->bytes -= e->len;
    ent_free(c, e);
  }
}

/* Run the load of e (which this thread created) and publish the result. */
static void
run_load(struct sn_spancache *c, struct sn_span_ent *e)
{
  uint8_t *data = NULL;
  size_t len = 0;
  int r = c->load(c->opaque, e->idx, &data, &len);
  char *msg = r == -1 ? strdup(sn_error()) : NULL;

  pthread_mutex_lock(&c->lock);
  if (r == 0) {
    e->data = data;
    e->len = len;
    e->state = ENT_READY;
    c->bytes += len;
    if (c->bytes > c->peak)
      c->peak = c->bytes;
    evict(c);
  }
  else {
    e->err = msg;
    e->state = ENT_FAILED;
    c->slot[e->idx] = NULL;     /* a later get loads it afresh */
  }
  pthread_cond_broadcast(&e->done);
  pthread_mutex_unlock(&c->lock);
}

struct load_job {
  struct sn_spancache *c;
  struct sn_span_ent *e;
};

/* Thread body for the extra spans of one get. */
static void *
load_thread(void *arg)
{
  struct load_job *j = arg;

  run_load(j->c, j->e);
  return NULL;
}

/* Called with the lock held. */
static void
put_locked(struct sn_spancache *c, struct sn_span_ent *e)
{
  if (--e->refs > 0)
    return;
  if (e->state != ENT_READY) {
    ent_free(c, e);                /* failed: already out of slot[] */
    return;
  }
  e->next = c->lru.next;
  e->prev = &c->lru;
  c->lru.next->prev = e;
  c->lru.next = e;
  evict(c);
}

/* Three phases: under the lock, take a reference on each span, creating
 * LOADING entries for the missing ones; without it, load those (the first
 * here, the rest on threads); under it again, wait for loads by others,
 * then keep all the references or, on any failure, put them all back. */
int
sn_spancache_get(struct sn_spancache *c, size_t first, size_t n,
                 struct sn_span_ent **ents)
{
  struct sn_span_ent *mine[SN_SPANCACHE_MAX_GET];
  struct load_job jobs[SN_SPANCACHE_MAX_GET];
  pthread_t tid[SN_SPANCACHE_MAX_GET];
  bool started[SN_SPANCACHE_MAX_GET];
  size_t k, m = 0, got = 0;
  const char *failed = NULL;
  char msg[1024];
  int r = 0;

  if (n > SN_SPANCACHE_MAX_GET || first > c->nspans ||
      n > c->nspans - first)
    return sn_set_error("span cache: spans [%zu,+%zu) out of range",
                        first, n);

  pthread_mutex_lock(&c->lock);
  for (got = 0; got < n; got++) {
    size_t i = first + got;
    struct sn_span_ent *e = c->slot[i];

    if (e == NULL) {
      e = calloc(1, sizeof *e);
      if (e == NULL)
        break;
      e->idx = i;
      e->state = ENT_LOADING;
      pthread_cond_init(&e->done, NULL);
      c->slot[i] = e;
      mine[m++] = e;
      atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
    }
    else {
      if (e->refs == 0)
        lru_unlink(e);          /* idle and ready: in use again */
      atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
    }
    e->refs++;
    ents[got] = e;
  }
  pthread_mutex_unlock(&c->lock);

  /* Load our spans: the first here, the others on their own threads. */
  for (k = 1; k < m; k++) {
    jobs[k].c = c;
    jobs[k].e = mine[k];
    started[k] = pthread_create(&tid[k], NULL, load_thread, &jobs[k]) == 0;
  }
  if (m > 0)
    run_load(c, mine[0]);
  for (k = 1; k < m; k++) {
    if (started[k])
      pthread_join(tid[k], NULL);
    else
      run_load(c, mine[k]);     /* no thread: load it here */
  }

  /* Wait for the spans others are loading, then keep all or nothing. */
  pthread_mutex_lock(&c->lock);
  for (k = 0; k < got; k++) {
    struct sn_span_ent *e = ents[k];
    while (e->state == ENT_LOADING)
      pthread_cond_wait(&e->done, &c->lock);
    if (e->state == ENT_FAILED && failed == NULL)
      failed = e->err ? e->err : "out of memory";
  }
  if (got < n)
    failed = "out of memory";
  if (failed) {
    snprintf(msg, sizeof msg, "%s", failed);
    for (k = 0; k < got; k++)
      put_locked(c, ents[k]);
    r = -1;
  }
  pthread_mutex_unlock(&c->lock);
  if (r == -1)
    sn_set_error("%s", msg);
  return r;
}

/* Hold span i if it is cached, or being loaded and wait is true, waiting
 * for that load; never starts one. */
int
sn_spancache_join(struct sn_spancache *c, size_t i, bool wait,
                  struct sn_span_ent **ent)
{
  struct sn_span_ent *e;
  int r = 1;

  pthread_mutex_lock(&c->lock);
  e = i < c->nspans ? c->slot[i] : NULL;
  if (e && !wait && e->state != ENT_READY)
    e = NULL;
  if (e) {
    if (e->refs == 0)
      lru_unlink(e);
    e->refs++;
    while (e->state == ENT_LOADING)
      pthread_cond_wait(&e->done, &c->lock);
    if (e->state == ENT_READY) {
      *ent = e;
      r = 0;
    }
    else
      put_locked(c, e);
  }
  pthread_mutex_unlock(&c->lock);
  return r;
}

bool
sn_spancache_has(struct sn_spancache *c, size_t i)
{
  bool r;

  pthread_mutex_lock(&c->lock);
  r = i < c->nspans && c->slot[i] != NULL && c->slot[i]->state == ENT_READY;
  pthread_mutex_unlock(&c->lock);
  return r;
}

bool
sn_spancache_present(struct sn_spancache *c, size_t i)
{
  bool r;

  pthread_mutex_lock(&c->lock);
  r = i < c->nspans && c->slot[i] != NULL;
  pthread_mutex_unlock(&c->lock);
  return r;
}

/* Frees at once, unlike eviction; held or loading entries are kept. */
void
sn_spancache_drop(struct sn_spancache *c, size_t i)
{
  struct sn_span_ent *e;

  pthread_mutex_lock(&c->lock);
  e = i < c->nspans ? c->slot[i] : NULL;
  if (e && e->refs == 0 && e->state == ENT_READY) {
    lru_unlink(e);
    c->slot[i] = NULL;
    c->bytes -= e->len;
    ent_free(c, e);
  }
  pthread_mutex_unlock(&c->lock);
}

bool
sn_spancache_room(struct sn_spancache *c, size_t len)
{
  bool r;

  pthread_mutex_lock(&c->lock);
  r = c->bytes + len <= c->budget;
  pthread_mutex_unlock(&c->lock);
  return r;
}

const uint8_t *
sn_spancache_data(const struct sn_span_ent *e, size_t *len)
{
  *len = e->len;
  return e->data;
}

void
sn_spancache_put(struct sn_spancache *c, struct sn_span_ent *e)
{
  pthread_mutex_lock(&c->lock);
  put_locked(c, e);
  pthread_mutex_unlock(&c->lock);
}

void
sn_spancache_get_stats(struct sn_spancache *c, struct sn_spancache_stats *st)
{
  st->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
  st->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
  pthread_mutex_lock(&c->lock);
  st->bytes = c->bytes;
  st->peak = c->peak;
  pthread_mutex_unlock(&c->lock);
}

/* ---- the disk cache -------------------------------------------------- */

/* Read len bytes from offset 0; -1 on error or a short file. */
static int
read_full(int fd, uint8_t *p, size_t len)
{
  int64_t off = 0;

  while (len > 0) {
    ssize_t n = pread(fd, p, len, off);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    off += n;
    len -= n;
  }
  return 0;
}

/* Span i's verified compressed bytes from the disk cache, or NULL (a
 * short or mismatching file is deleted). */
uint8_t *
sn_disk_span_load(const char *dir, size_t i, size_t clen,
                  const uint8_t want[SN_SHA256_LEN])
{
  char path[4096];
  uint8_t got[SN_SHA256_LEN];
  struct stat st;
  uint8_t *buf;
  int fd, ok;

  snprintf(path, sizeof path, "%s/%zu", dir, i);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return NULL;
  buf = malloc(clen ? clen : 1);
  ok = buf && fstat(fd, &st) == 0 && st.st_size == (off_t) clen &&
    read_full(fd, buf, clen) == 0;
  close(fd);
  if (ok) {
    sn_sha256(buf, clen, got);
    ok = memcmp(got, want, SN_SHA256_LEN) == 0;
  }
  if (!ok) {
    if (buf)
      unlink(path);
    free(buf);
    return NULL;
  }
  sn_diskcache_touch(path);     /* used: last to be evicted */
  return buf;
}

/* Best effort: a failure only means the span is fetched again later.
 * Written to a temporary name, synced, then renamed, so a reader sees
 * either nothing or the whole file (and verifies it anyway). */
int
sn_disk_span_store(const char *dir, size_t i, const uint8_t *buf,
                   size_t len)
{
  struct sn_atomic_file f;
  char path[4096], tmp[4096];
  int r;

  snprintf(path, sizeof path, "%s/%zu", dir, i);
  snprintf(tmp, sizeof tmp, "%s/.%zu.%ld.XXXXXX", dir, i, (long) getpid());
  r = sn_atomic_open(&f, path, tmp, 0600);
  if (r == -1 && errno == ENOENT) {
    /* Make DIR, then DIR/<hex>. */
    char *slash = strrchr(path, '/');
    *slash = '\0';
    slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%zu", dir, i);
    r = sn_atomic_open(&f, path, tmp, 0600);
  }
  if (r == -1)
    return -1;
  if (sn_write_all(f.fd, buf, len) == -1) {
    sn_atomic_abort(&f);
    return -1;
  }
  return sn_atomic_commit(&f, 1);
}
