/* soci-nbd: recording a prefetch record (docs/prefetch-record.md,
 * "Recording") — the tar ranges reads use, per layer, in the order first
 * read, bytes read again dropped, a range continuing the last one merged
 * into it; ended by an idle gap, a size limit or the server's exit, and
 * written once, atomically. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record/record.h"
#include "util/err.h"
#include "util/fdio.h"

/* A layer's recorded bytes: sorted, disjoint, not touching. */
struct ivset {
  struct { uint64_t a, b; } *v;
  size_t n, cap;
};

struct sn_recorder {
  char *path;
  double idle;
  uint64_t limit;
  void (*log)(void *opaque, const char *msg);
  void *opaque;
  char **digests;
  size_t *first;                /* per image layer: the first image layer
                                 * of the same digest (a record names a
                                 * layer once, so a blob in the image twice
                                 * is recorded once) */
  size_t nlayers;

  pthread_mutex_t lock;
  pthread_cond_t cond;          /* a read, the end, or stop */
  struct ivset *sets;           /* per image layer */
  struct sn_record_range *ranges;   /* layer: the image layer */
  size_t nranges, cap;
  uint64_t bytes;
  struct timespec last;         /* CLOCK_MONOTONIC of the last read */
  bool ready;                   /* set up: free writes the record */
  bool any, ended, written, stop;
  int result;                   /* of the write */
  pthread_t thread;
  bool started;
};

/* The first interval of s ending after a (binary search). */
static size_t
first_after(const struct ivset *s, uint64_t a)
{
  size_t lo = 0, hi = s->n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (s->v[mid].b > a)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* Add [a, b) to s, merging what it overlaps or touches. */
static int
ivset_add(struct ivset *s, uint64_t a, uint64_t b)
{
  /* [lo, hi): the intervals overlapping or touching [a, b). */
  size_t lo = first_after(s, a ? a - 1 : 0), hi = lo;

  while (hi < s->n && s->v[hi].a <= b)
    hi++;
  if (lo < hi) {
    if (s->v[lo].a < a)
      a = s->v[lo].a;
    if (s->v[hi - 1].b > b)
      b = s->v[hi - 1].b;
    s->v[lo].a = a;
    s->v[lo].b = b;
    memmove(&s->v[lo + 1], &s->v[hi], (s->n - hi) * sizeof *s->v);
    s->n -= hi - lo - 1;
    return 0;
  }
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    void *v = realloc(s->v, cap * sizeof *s->v);

    if (v == NULL)
      return -1;
    s->v = v;
    s->cap = cap;
  }
  memmove(&s->v[lo + 1], &s->v[lo], (s->n - lo) * sizeof *s->v);
  s->v[lo].a = a;
  s->v[lo].b = b;
  s->n++;
  return 0;
}

/* Append [a, b) of layer to the ordered list (lock held). */
static int
append(struct sn_recorder *r, size_t layer, uint64_t a, uint64_t b)
{
  struct sn_record_range *t = r->nranges ? &r->ranges[r->nranges - 1] : NULL;

  r->bytes += b - a;
  if (t && t->layer == layer && t->off + t->len == a) {
    t->len += b - a;
    return 0;
  }
  if (r->nranges == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 256;
    void *v = realloc(r->ranges, cap * sizeof *r->ranges);

    if (v == NULL)
      return -1;
    r->ranges = v;
    r->cap = cap;
  }
  r->ranges[r->nranges++] = (struct sn_record_range) { (uint32_t) layer, a,
                                                       b - a };
  return 0;
}

void
sn_recorder_note(struct sn_recorder *r, size_t layer, uint64_t off,
                 uint64_t len)
{
  struct ivset *s;
  uint64_t cur = off, end, cut;
  size_t i;

  if (r == NULL || layer >= r->nlayers || len == 0 ||
      len > UINT64_MAX - off)
    return;
  layer = r->first[layer];
  end = off + len;
  pthread_mutex_lock(&r->lock);
  if (r->ended) {
    pthread_mutex_unlock(&r->lock);
    return;
  }
  s = &r->sets[layer];
  cut = end;
  /* The parts of [off, end) not recorded yet, up to the limit. */
  for (i = first_after(s, off); cur < end;) {
    uint64_t stop;

    if (i < s->n && s->v[i].a <= cur) {
      cur = s->v[i++].b;
      continue;
    }
    stop = i < s->n && s->v[i].a < end ? s->v[i].a : end;
    if (r->limit && stop - cur > r->limit - r->bytes) {
      stop = cur + (r->limit - r->bytes);
      cut = stop;
    }
    if (stop > cur && append(r, layer, cur, stop) == -1) {
      cut = cur;
      r->ended = true;          /* out of memory: keep what there is */
      break;
    }
    cur = stop;
    if (r->limit && r->bytes >= r->limit) {
      r->ended = true;
      break;
    }
  }
  if (cut > off && ivset_add(s, off, cut < end ? cut : end) == -1)
    r->ended = true;
  clock_gettime(CLOCK_MONOTONIC, &r->last);
  r->any = true;
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

/* Write the record (lock held, once ended): only the layers with ranges,
 * in the order first read. */
static int
write_record(struct sn_recorder *r)
{
  struct sn_record rec = { 0 };
  size_t *slot = calloc(r->nlayers + 1, sizeof *slot), i;
  uint8_t *buf = NULL;
  size_t len;
  int ret = -1;

  rec.layers = calloc(r->nlayers + 1, sizeof *rec.layers);
  rec.ranges = calloc(r->nranges + 1, sizeof *rec.ranges);
  if (slot == NULL || rec.layers == NULL || rec.ranges == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < r->nranges; i++) {
    size_t l = r->ranges[i].layer;

    if (slot[l] == 0) {
      rec.layers[rec.nlayers] = r->digests[l];
      slot[l] = ++rec.nlayers;
    }
    rec.ranges[i] = r->ranges[i];
    rec.ranges[i].layer = (uint32_t) (slot[l] - 1);
  }
  rec.nranges = r->nranges;
  if (sn_record_encode(&rec, &buf, &len) == -1)
    goto out;
  if (sn_write_file_atomic(r->path, buf, len, 0644, 0) == -1) {
    sn_set_error("%s", strerror(errno));
    goto out;
  }
  ret = 0;
out:
  free(buf);
  free(slot);
  free(rec.layers);             /* the digests are r's */
  free(rec.ranges);
  return ret;
}

/* End the record and write it unless done (lock held). */
static int
end_and_write(struct sn_recorder *r)
{
  char msg[1024];

  r->ended = true;
  if (r->written)
    return r->result;
  r->written = true;
  r->result = write_record(r);
  if (r->result == 0)
    snprintf(msg, sizeof msg, "record %s: %zu ranges, %" PRIu64 " bytes "
             "written", r->path, r->nranges, r->bytes);
  else
    snprintf(msg, sizeof msg, "error: record %s not written: %s", r->path,
             sn_error());
  if (r->log)
    r->log(r->opaque, msg);
  return r->result;
}

/* Ends the record at the first idle gap after a read (or once the limit
 * ended it), and writes it. */
static void *
idle_thread(void *arg)
{
  struct sn_recorder *r = arg;

  pthread_mutex_lock(&r->lock);
  while (!r->stop) {
    if (r->ended) {
      end_and_write(r);
      break;
    }
    if (r->any && r->idle > 0) {
      struct timespec dl = r->last, now;
      double whole = (double) (int64_t) r->idle;

      dl.tv_sec += (time_t) whole;
      dl.tv_nsec += (long) ((r->idle - whole) * 1e9);
      if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
      }
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec > dl.tv_sec ||
          (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec)) {
        r->ended = true;
        continue;
      }
      pthread_cond_timedwait(&r->cond, &r->lock, &dl);
    }
    else
      pthread_cond_wait(&r->cond, &r->lock);
  }
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

struct sn_recorder *
sn_recorder_new(const struct sn_recorder_opts *o, const char *const *digests,
                size_t n)
{
  struct sn_recorder *r = calloc(1, sizeof *r);
  pthread_condattr_t ca;
  size_t i;

  if (r == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cond, &ca);
  pthread_condattr_destroy(&ca);
  r->idle = o->idle_seconds > 0 ? o->idle_seconds : 0;
  r->limit = o->limit_bytes;
  r->log = o->log;
  r->opaque = o->opaque;
  r->path = strdup(o->path ? o->path : "");
  r->digests = calloc(n + 1, sizeof *r->digests);
  r->sets = calloc(n + 1, sizeof *r->sets);
  r->first = calloc(n + 1, sizeof *r->first);
  if (r->path == NULL || r->digests == NULL || r->sets == NULL ||
      r->first == NULL)
    goto oom;
  if (o->path == NULL || *o->path == '\0') {
    sn_set_error("no file to write the record to");
    goto fail;
  }
  for (i = 0; i < n; i++) {
    size_t j;

    if ((r->digests[r->nlayers++] = strdup(digests[i])) == NULL)
      goto oom;
    for (j = 0; j < i && strcmp(digests[j], digests[i]) != 0; j++)
      ;
    r->first[i] = j;
  }
  r->ready = true;
  return r;
oom:
  sn_oom();
fail:
  sn_recorder_free(r);
  return NULL;
}

int
sn_recorder_start(struct sn_recorder *r)
{
  int e;

  if (r->started)
    return 0;
  e = pthread_create(&r->thread, NULL, idle_thread, r);
  if (e != 0)
    return sn_set_error("record: cannot start its thread: %s", strerror(e));
  r->started = true;
  return 0;
}

int
sn_recorder_finish(struct sn_recorder *r)
{
  int ret;

  pthread_mutex_lock(&r->lock);
  ret = end_and_write(r);
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
  return ret;
}

void
sn_recorder_stats(struct sn_recorder *r, size_t *nranges, uint64_t *bytes,
                  bool *written)
{
  pthread_mutex_lock(&r->lock);
  *nranges = r->nranges;
  *bytes = r->bytes;
  *written = r->written && r->result == 0;
  pthread_mutex_unlock(&r->lock);
}

void
sn_recorder_free(struct sn_recorder *r)
{
  size_t i;

  if (r == NULL)
    return;
  if (r->ready)
    sn_recorder_finish(r);
  if (r->started) {
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
  }
  for (i = 0; r->sets && i < r->nlayers; i++)
    free(r->sets[i].v);
  for (i = 0; r->digests && i < r->nlayers; i++)
    free(r->digests[i]);
  free(r->sets);
  free(r->digests);
  free(r->first);
  free(r->ranges);
  free(r->path);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
  free(r);
}
