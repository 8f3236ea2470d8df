/* soci-nbd: replaying what an image's start reads (docs/prefetch-
 * record.md, "Replaying") — the prefetch record attached to its dense
 * index and its SOCI prefetch artifacts become a list of span runs, in
 * record order, which two threads load ahead of the reads.  A read never
 * waits behind them: what it needs and nobody fetches, it fetches. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dense/dense-manifest.h"
#include "image/image-int.h"
#include "record/record.h"
#include "span/layer.h"
#include "util/err.h"

/* Two threads each take the next runs, up to REPLAY_BATCH compressed
 * bytes, fetch them all at once (range requests of at most REPLAY_REQUEST
 * bytes) and decode them in order.  Measured on a 20 ms, 100 Mbit/s link
 * (bench/README.md, "Record and replay"): more in flight shares the link
 * among more runs, so each arrives later and the start, which reads them
 * in order, waits longer; fewer leaves the link idle between requests. */
#define REPLAY_THREADS 2
#define REPLAY_BATCH ((int64_t) 512 << 10)
#define REPLAY_REQUEST ((int64_t) 512 << 10)
/* Neighbouring runs of a layer this close (compressed bytes between them)
 * are fetched as one. */
#define REPLAY_GAP ((uint64_t) 32 << 10)

struct replay_item {
  size_t layer, first, last;     /* spans first..last of image layer */
  int64_t bytes;                 /* their compressed bytes */
};

/* The most items one thread takes at once. */
#define REPLAY_BATCH_ITEMS 32

struct replay {
  struct sn_image *img;
  struct replay_item *items;
  size_t n, cap;
  uint8_t **claimed;             /* per layer, per span: in an item */
  uint64_t *planned;             /* per layer: uncompressed bytes planned */
  pthread_mutex_t lock;
  size_t next;                   /* the next item to load */
  size_t landmarks;              /* eStargz layers with a landmark */
};

int
img_note_record(struct sn_image *img, const struct sn_manifest *dm)
{
  const struct sn_descriptor *d;
  int r = sn_dense_record(dm, &d);

  if (r <= 0)
    return r;
  if ((img->record_desc.digest = strdup(d->digest)) == NULL)
    return sn_oom();
  img->record_desc.size = d->size;
  return 0;
}

int
img_load_record(struct sn_image *img)
{
  const struct sn_descriptor *d = &img->record_desc;
  uint8_t *buf;
  size_t len;
  char *digest;
  int r;

  if (sn_registry_get_blob_desc(img->reg, d, SN_RECORD_MAX_SIZE,
                                "prefetch record", &buf, &len) == -1)
    return -1;
  r = sn_record_parse(buf, len, &img->record);
  free(buf);
  if (r == -1)
    return sn_prefix_error("prefetch record %s: ", d->digest);
  if ((digest = strdup(d->digest)) == NULL)
    return sn_oom();
  __atomic_store_n(&img->record_digest, digest, __ATOMIC_RELEASE);
  img_logf(img, "prefetch record %s: %zu ranges of %zu layers", d->digest,
           img->record.nranges, img->record.nlayers);
  return 0;
}

/* Append spans first..last of layer li, minus those in an item already,
 * merged into the last item when it continues it, or (fill) when the
 * spans between them are few. */
static int
plan_spans(struct replay *p, size_t li, size_t first, size_t last, bool fill)
{
  struct sn_layer *layer = p->img->layers[li].layer;
  const struct sn_zinfo *zi = sn_layer_zinfo(layer);
  uint64_t budget = sn_layer_cache_budget(layer) / 2;
  size_t i;

  for (i = first; i <= last; i++) {
    struct replay_item *t = p->n ? &p->items[p->n - 1] : NULL;
    struct sn_span s, e;

    if (p->claimed[li][i])
      continue;
    sn_zinfo_span(zi, i, &s);
    /* Replayed spans wait in the memory cache: leave room for the reads. */
    if (p->planned[li] + (uint64_t) (s.uncomp_end - s.uncomp_start) > budget)
      return 0;
    if (t && t->layer == li && t->last < i) {
      sn_zinfo_span(zi, t->last, &e);
      if (t->last + 1 == i ||
          (fill && (uint64_t) (s.comp_start - e.comp_end) <= REPLAY_GAP)) {
        for (size_t k = t->last + 1; k <= i; k++) {
          p->claimed[li][k] = 1;
          sn_zinfo_span(zi, k, &e);
          p->planned[li] += (uint64_t) (e.uncomp_end - e.uncomp_start);
          t->bytes += e.comp_end - e.comp_start;
        }
        t->last = i;
        continue;
      }
    }
    if (p->n == p->cap) {
      size_t cap = p->cap ? 2 * p->cap : 64;
      struct replay_item *x = realloc(p->items, cap * sizeof *x);

      if (x == NULL)
        return sn_oom();
      p->items = x;
      p->cap = cap;
    }
    p->items[p->n++] = (struct replay_item) { li, i, i,
                                              s.comp_end - s.comp_start };
    p->claimed[li][i] = 1;
    p->planned[li] += (uint64_t) (s.uncomp_end - s.uncomp_start);
  }
  return 0;
}

/* The record's ranges (of lazy layers) in order, then the eStargz layers'
 * chunks before their landmarks, then the SOCI prefetch artifacts' spans
 * (of layers with SOCI spans). */
static int
plan(struct replay *p)
{
  struct sn_image *img = p->img;
  const struct sn_record *rec = &img->record;
  size_t *map = NULL, i, k;
  int r = -1;
  int64_t *sizes = NULL;

  p->claimed = calloc(img->nlayers, sizeof *p->claimed);
  p->planned = calloc(img->nlayers, sizeof *p->planned);
  if (p->claimed == NULL || p->planned == NULL)
    return sn_oom();
  for (i = 0; i < img->nlayers; i++)
    if (img->layers[i].lazy &&
        (p->claimed[i] = calloc(sn_layer_nspans(img->layers[i].layer), 1))
        == NULL)
      return sn_oom();
  if (rec->nranges) {
    const char **dg = calloc(img->nlayers, sizeof *dg);
    int b;

    map = calloc(rec->nlayers, sizeof *map);
    sizes = calloc(img->nlayers, sizeof *sizes);
    if (dg == NULL || map == NULL || sizes == NULL) {
      free(dg);
      goto oom;
    }
    for (i = 0; i < img->nlayers; i++) {
      dg[i] = img->layers[i].digest;
      sizes[i] = sn_layer_zinfo(img->layers[i].layer)->uncompressed_size;
    }
    b = sn_record_bind(rec, dg, sizes, img->nlayers, map);
    free(dg);
    if (b == -1) {
      img_logf(img, "warning: prefetch record %s not replayed: %s",
               img->record_digest, sn_error());
      rec = NULL;
    }
  }
  for (k = 0; rec && k < rec->nranges; k++) {
    const struct sn_record_range *g = &rec->ranges[k];
    size_t li = map[g->layer];
    const struct sn_zinfo *zi;
    uint64_t end;

    if (!img->layers[li].lazy || img->layers[li].stargz_toc)
      continue;                 /* tar ranges: not a TOC layer's */
    zi = sn_layer_zinfo(img->layers[li].layer);
    end = g->off + g->len;      /* inside the layer: bound */
    /* The read checks its file's header first: replay that too. */
    if (plan_spans(p, li, sn_zinfo_span_of(zi, sn_layer_header_start(
                     img->layers[li].layer, (int64_t) g->off)),
                   sn_zinfo_span_of(zi, (int64_t) end - 1), true) == -1)
      goto out;
  }
  /* An eStargz layer's chunks before its prefetch landmark: what its
   * builder was told a start reads (prefetch=auto). */
  for (i = 0; img->prefetch == SN_PREFETCH_AUTO && i < img->nlayers; i++)
    if (img->layers[i].lazy && img->layers[i].stargz_landmark > 0) {
      p->landmarks++;
      if (plan_spans(p, i, 0, img->layers[i].stargz_landmark - 1, false)
          == -1)
        goto out;
    }
  for (i = 0; i < img->nlayers; i++)
    for (k = 0; k < img->layers[i].npf; k++)
      if (plan_spans(p, i, (size_t) img->layers[i].pf[k].start,
                     (size_t) img->layers[i].pf[k].end, false) == -1)
        goto out;
  r = 0;
  goto out;
oom:
  sn_oom();
out:
  free(map);
  free(sizes);
  return r;
}

/* Take the next runs, up to REPLAY_BATCH compressed bytes: their number,
 * 0 when there is none left (or the image is being freed). */
static size_t
take(struct replay *p, struct replay_item *its)
{
  int64_t got = 0;
  size_t n = 0;

  if (__atomic_load_n(&p->img->bg_stop, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock(&p->lock);
  while (p->next < p->n && n < REPLAY_BATCH_ITEMS &&
         (n == 0 || got + p->items[p->next].bytes <= REPLAY_BATCH)) {
    got += p->items[p->next].bytes;
    its[n++] = p->items[p->next++];
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}

static void *
replay_thread(void *arg)
{
  struct replay *p = arg;
  struct sn_image *img = p->img;
  struct replay_item its[REPLAY_BATCH_ITEMS];
  size_t n, k;

  while ((n = take(p, its)) > 0) {
    /* All of them under way at once, then decoded in order. */
    for (k = 0; k < n; k++)
      if (sn_layer_replay_begin(img->layers[its[k].layer].layer,
                                its[k].first, its[k].last,
                                REPLAY_REQUEST) == -1)
        img_logf(img, "warning: replay of spans %zu..%zu of layer %zu: %s",
                 its[k].first, its[k].last, its[k].layer, sn_error());
    for (k = 0; k < n; k++) {
      if (sn_layer_replay_end(img->layers[its[k].layer].layer, its[k].first,
                              its[k].last) == -1)
        img_logf(img, "warning: replay of spans %zu..%zu of layer %zu: %s",
                 its[k].first, its[k].last, its[k].layer, sn_error());
      __atomic_fetch_add(&img->replay_done, 1, __ATOMIC_RELAXED);
    }
  }
  return NULL;
}

void
img_replay_run(struct sn_image *img)
{
  struct replay p = { .img = img };
  pthread_t tid[REPLAY_THREADS];
  size_t i, nt = 0;

  pthread_mutex_init(&p.lock, NULL);
  if (plan(&p) == -1)
    img_logf(img, "warning: prefetch not replayed: %s", sn_error());
  else if (p.n > 0) {
    __atomic_store_n(&img->replay_items, p.n, __ATOMIC_RELEASE);
    img_logf(img, "replaying %zu runs of spans (%s%s%s%s%s)", p.n,
             img->record.nranges ? "prefetch record" : "",
             img->record.nranges && (p.landmarks || img->npf_docs)
             ? ", " : "", p.landmarks ? "eStargz landmarks" : "",
             p.landmarks && img->npf_docs ? ", " : "",
             img->npf_docs ? "prefetch artifacts" : "");
    for (i = 0; i + 1 < REPLAY_THREADS && i + 1 < p.n; i++)
      if (pthread_create(&tid[nt], NULL, replay_thread, &p) == 0)
        nt++;
    replay_thread(&p);
    for (i = 0; i < nt; i++)
      pthread_join(tid[i], NULL);
    img_logf(img, "replay done: %zu of %zu runs", (size_t) __atomic_load_n(
               &img->replay_done, __ATOMIC_RELAXED), p.n);
  }
  for (i = 0; p.claimed && i < img->nlayers; i++)
    free(p.claimed[i]);
  free(p.claimed);
  free(p.planned);
  free(p.items);
  pthread_mutex_destroy(&p.lock);
}
