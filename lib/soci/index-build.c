/* soci-nbd: build one SOCI index — per-layer ztocs streamed from the
 * registry through a pool of threads, the prefetch artifacts and the
 * index document (lib/soci/index-build.h, docs/soci-format.md). */
#include <config.h>

#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dense/dense.h"
#include "dense/dense-manifest.h"
#include "soci/build.h"
#include "soci/index-attach.h"
#include "soci/index-build.h"
#include "soci/index.h"
#include "soci/zinfo.h"
#include "util/digest.h"
#include "util/err.h"

#define FEED_CHUNK (1 << 20)

/* A progress message through cfg's hooks (none without a message hook). */
static void SN_PRINTF(2, 3)
say(const struct sn_index_build_cfg *cfg, const char *fmt, ...)
{
  va_list ap;

  if (cfg->hooks == NULL || cfg->hooks->message == NULL)
    return;
  va_start(ap, fmt);
  cfg->hooks->message(cfg->hooks->opaque, fmt, ap);
  va_end(ap);
}

/* Whether sn_index_build_run makes a ztoc for layer d (else it says why,
 * when say_why). */
bool
sn_index_build_will_index(const struct sn_descriptor *d,
                          const struct sn_index_build_cfg *cfg, bool say_why)
{
  enum sn_layer_kind k = sn_layer_kind(d->media_type);

  if (k == SN_LAYER_KIND_ZSTD && !cfg->dense) {
    if (say_why)
      say(cfg, "ztoc skipped - layer %s (%s) is zstd: it gets only a dense "
          "index (soci-nbd convert without --no-dense)", d->digest,
          d->media_type);
    return false;
  }
  if (k != SN_LAYER_KIND_GZIP && k != SN_LAYER_KIND_TAR &&
      k != SN_LAYER_KIND_ZSTD) {
    if (say_why)
      say(cfg, "ztoc skipped - layer %s (%s) is not a tar, tar+gzip or "
          "tar+zstd layer", d->digest, d->media_type ? d->media_type : "-");
    return false;
  }
  if (d->size < cfg->min_layer_size) {
    if (say_why)
      say(cfg, "ztoc skipped - layer %s (%s) size %" PRId64
          " is less than min-layer-size %" PRId64, d->digest,
          d->media_type, d->size, cfg->min_layer_size);
    return false;
  }
  return true;
}

/* ---- streaming layers into ztoc builders, in parallel -------------------
 *
 * Each indexed layer is one job: a single streaming pass downloads it,
 * hashes it and builds its checkpoints and TOC (sn_registry_get_blob into
 * sn_ztoc_builder, curl's small chunks gathered into FEED_CHUNK feeds),
 * then the ztoc is encoded and pushed.  Up to nproc jobs run at once, one
 * thread each, the largest waiting layer first (so that a big layer does
 * not start last and finish alone); the first failure cancels the others. */

struct sn_index_build_pool {
  struct sn_index_build_job *jobs;
  size_t njobs, started, exited;
  int failed;                    /* atomic */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct sn_registry *src, *dst;
  const struct sn_index_build_cfg *cfg;
  bool spare_cores;              /* fewer layers than cores */
};

/* CLOCK_MONOTONIC in seconds. */
double
sn_index_build_now(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

struct feed {
  struct sn_ztoc_builder *b;
  struct sn_dense_builder *dense;  /* or NULL */
  struct sn_index_build_job *j;
  struct sn_blob_writer *copy;   /* the layer's copy at DST, or NULL */
  uint8_t *buf;
  size_t len;
};

/* Hand a gathered piece to the layer's copy and to the builder. */
static int
feed_on(struct feed *f, const uint8_t *data, size_t len)
{
  if (f->copy && sn_blob_writer_write(f->copy, data, len) == -1)
    return -1;
  if (f->dense && sn_dense_builder_feed(f->dense, data, len) == -1)
    return -1;
  return sn_ztoc_builder_feed(f->b, data, len);
}

/* sn_registry_get_blob's sink: counts the bytes, gathers them into
 * FEED_CHUNK pieces; fails ("cancelled") once another job has failed. */
static int
feed_sink(void *opaque, const uint8_t *data, size_t len)
{
  struct feed *f = opaque;

  if (__atomic_load_n(&f->j->pool->failed, __ATOMIC_RELAXED)) {
    f->j->cancelled = true;
    return sn_set_error("cancelled");
  }
  __atomic_add_fetch(&f->j->done, len, __ATOMIC_RELAXED);
  while (len > 0) {
    size_t n;

    if (f->len == 0 && len >= FEED_CHUNK)
      return feed_on(f, data, len);
    n = FEED_CHUNK - f->len < len ? FEED_CHUNK - f->len : len;
    memcpy(f->buf + f->len, data, n);
    f->len += n;
    data += n;
    len -= n;
    if (f->len == FEED_CHUNK) {
      if (feed_on(f, f->buf, f->len) == -1)
        return -1;
      f->len = 0;
    }
  }
  return 0;
}

/* The ztoc of layer d, streamed from reg and checked against d's digest. */
static struct sn_ztoc *
build_ztoc(struct sn_registry *reg, struct sn_index_build_job *j,
           const struct sn_index_build_cfg *cfg)
{
  const struct sn_descriptor *d = j->d;
  /* sn_registry_get_blob verifies the layer digest: no second hash. */
  struct sn_build_opts bo = { .span_size = cfg->span_size,
                              .build_tool = cfg->build_tool,
                              .no_blob_digest = true };
  struct feed f = { .j = j };
  struct sn_ztoc *z = NULL;

  f.b = sn_ztoc_builder_new(j->comp, &bo);
  f.buf = malloc(FEED_CHUNK);
  if (f.b == NULL || f.buf == NULL) {
    if (f.buf == NULL)
      sn_oom();
    goto out;
  }
  /* The dense index's work on a core of its own if one is spare: a
   * single-layer image then converts in about the time of the SOCI
   * ztoc alone; with every core busy the thread would only add copies. */
  if (cfg->dense && j->comp != SN_COMP_UNCOMPRESSED &&
      (f.dense = sn_dense_builder_new(f.b, &(struct sn_dense_opts) {
          .thread = j->pool->spare_cores })) == NULL)
    goto out;
  if (cfg->copy_layers) {       /* copy it while indexing, unless DST has it */
    int e = sn_registry_blob_exists(j->pool->dst, d->digest, NULL);

    if (e == -1 ||
        (e == 0 && (f.copy = sn_blob_writer_new(j->pool->dst, d->digest,
                                                d->size)) == NULL))
      goto out;
  }
  if (sn_registry_get_blob(reg, d->digest, d->size, feed_sink, &f) == -1)
    goto out;
  if (f.len && feed_on(&f, f.buf, f.len) == -1)
    goto out;
  z = sn_ztoc_builder_finish(f.b, NULL);
  /* A gzip layer the dense index cannot describe keeps its SOCI ztoc; a
   * zstd layer is then served whole. */
  if (z && f.dense &&
      sn_dense_builder_finish(f.dense, z, &j->dense, &j->windows,
                              &j->windows_len) == -1)
    say(cfg, "layer %zu (%s): no dense index%s: %s", j->layer, d->digest,
        j->comp == SN_COMP_ZSTD ? " (the zstd layer is served whole)" : "",
        sn_error());
  if (z && f.copy) {            /* verified by get_blob */
    int r = sn_blob_writer_commit(f.copy);

    f.copy = NULL;
    if (r == -1) {
      sn_ztoc_free(z);
      z = NULL;
    }
    else
      say(cfg, "copied blob %s (%" PRId64 " bytes)", d->digest, d->size);
  }
out:
  sn_blob_writer_abort(f.copy);
  if (z == NULL)
    sn_prefix_error("layer %zu (%s): ", j->layer, d->digest);
  sn_dense_builder_free(f.dense);
  sn_ztoc_builder_free(f.b);
  free(f.buf);
  return z;
}

/* Encode and push job j's dense table and windows blob, noting their
 * digests. */
static int
push_dense(struct sn_index_build_pool *p, struct sn_index_build_job *j)
{
  uint8_t *buf;
  size_t len;
  int r;

  if (sn_dense_table_encode(j->dense, &buf, &len) == -1)
    return -1;
  sn_digest_of(buf, len, j->tdig);
  j->tlen = len;
  r = sn_registry_push_blob(p->dst, j->tdig, buf, len);
  free(buf);
  if (r == -1)
    return -1;
  if (j->comp == SN_COMP_ZSTD)
    j->wdig[0] = 0;             /* a zstd layer's table comes alone */
  else {
    sn_digest_of(j->windows, j->windows_len, j->wdig);
    if (sn_registry_push_blob(p->dst, j->wdig, j->windows,
                              j->windows_len) == -1)
      return -1;
  }
  sn_ztoc_free(j->dense);
  j->dense = NULL;
  free(j->windows);
  j->windows = NULL;
  return 0;
}

/* Build, encode and push the ztoc of one layer (and its dense index). */
static int
run_job(struct sn_index_build_pool *p, struct sn_index_build_job *j)
{
  uint8_t *buf = NULL;
  size_t len;

  j->z = build_ztoc(p->src, j, p->cfg);
  if (j->z == NULL)
    return -1;
  if (j->comp == SN_COMP_ZSTD) {  /* no SOCI ztoc: only the dense index */
    sn_ztoc_free(j->z);
    j->z = NULL;
    if (j->dense && push_dense(p, j) == -1)
      return sn_prefix_error("layer %zu (%s): dense index: ", j->layer,
                             j->d->digest);
    return 0;
  }
  if (sn_ztoc_encode(j->z, &buf, &len) == -1)
    return sn_prefix_error("layer %zu (%s): ", j->layer, j->d->digest);
  sn_digest_of(buf, len, j->zdig);
  j->zlen = len;
  if (sn_registry_push_blob(p->dst, j->zdig, buf, len) == -1) {
    free(buf);
    return sn_prefix_error("layer %zu (%s): ", j->layer, j->d->digest);
  }
  free(buf);
  if (j->dense && push_dense(p, j) == -1)
    return sn_prefix_error("layer %zu (%s): dense index: ", j->layer,
                           j->d->digest);
  return 0;
}

/* A pool thread: takes the largest waiting job until none is left or one
 * has failed. */
static void *
worker(void *arg)
{
  struct sn_index_build_pool *p = arg;
  const struct sn_index_build_hooks *hooks = p->cfg->hooks;

  for (;;) {
    struct sn_index_build_job *j = NULL;
    int r;

    pthread_mutex_lock(&p->lock);
    if (p->started < p->njobs &&
        !__atomic_load_n(&p->failed, __ATOMIC_RELAXED)) {
      for (size_t i = 0; i < p->njobs; i++)
        if (p->jobs[i].state == SN_INDEX_JOB_WAITING &&
            (j == NULL || p->jobs[i].d->size > j->d->size))
          j = &p->jobs[i];
      p->started++;
      j->t0 = sn_index_build_now();
      __atomic_store_n(&j->state, SN_INDEX_JOB_RUNNING, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&p->lock);
    if (j == NULL)
      break;
    if (hooks && hooks->job_start)
      hooks->job_start(hooks->opaque, j);
    r = run_job(p, j);
    j->t1 = sn_index_build_now();
    if (r == -1) {
      j->err = strdup(sn_error());
      __atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&j->state,
                     r == -1 ? SN_INDEX_JOB_FAILED : SN_INDEX_JOB_DONE,
                     __ATOMIC_RELEASE);
    if (hooks && hooks->job_end)
      hooks->job_end(hooks->opaque, j, r);
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
  }
  pthread_mutex_lock(&p->lock);
  p->exited++;
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* Run every job of p, at most nproc at once.  0, or -1 with the message
 * of the first failed layer (in layer order). */
static int
run_pool(struct sn_index_build_pool *p)
{
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  size_t nthreads = ncpu > 0 ? (size_t) ncpu : 1, started = 0, i;
  pthread_t *tids;
  const struct sn_index_build_hooks *hooks = p->cfg->hooks;
  void (*tick)(void *, struct sn_index_build_job *, size_t, bool) =
    hooks ? hooks->tick : NULL;
  double last = 0;
  int e, r = 0;

  p->spare_cores = p->njobs < nthreads;
  if (nthreads > p->njobs)
    nthreads = p->njobs;
  if (nthreads > 64)
    nthreads = 64;
  tids = calloc(nthreads ? nthreads : 1, sizeof *tids);
  if (tids == NULL)
    return sn_oom();
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cond, NULL);
  for (i = 0; i < nthreads; i++) {
    e = pthread_create(&tids[i], NULL, worker, p);
    if (e != 0) {
      if (started == 0) {
        free(tids);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        return sn_set_error("pthread_create: %s", strerror(e));
      }
      break;                    /* run with fewer threads */
    }
    started++;
  }
  pthread_mutex_lock(&p->lock);
  while (p->exited < started) {
    struct timespec ts;

    if (tick && sn_index_build_now() - last >= 0.25) {
      pthread_mutex_unlock(&p->lock);
      tick(hooks->opaque, p->jobs, p->njobs, false);
      last = sn_index_build_now();
      pthread_mutex_lock(&p->lock);
      continue;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&p->cond, &p->lock, &ts);
  }
  pthread_mutex_unlock(&p->lock);
  for (i = 0; i < started; i++)
    pthread_join(tids[i], NULL);
  free(tids);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->cond);
  if (tick)
    tick(hooks->opaque, p->jobs, p->njobs, true);
  /* The first real failure, in layer order (not a cancellation). */
  for (i = 0; i < p->njobs && r == 0; i++)
    if (p->jobs[i].state == SN_INDEX_JOB_FAILED && !p->jobs[i].cancelled)
      r = sn_set_error("%s", p->jobs[i].err ? p->jobs[i].err
                       : "out of memory");
  for (i = 0; i < p->njobs && r == 0; i++)
    if (p->jobs[i].state == SN_INDEX_JOB_FAILED)
      r = sn_set_error("%s", p->jobs[i].err ? p->jobs[i].err
                       : "out of memory");
  return r;
}

/* ---- building one SOCI index -------------------------------------------- */

struct built {
  struct sn_index_ztoc *z;
  struct sn_ztoc **ztocs;        /* parallel to z (for prefetch) */
  size_t *layer_of;              /* layer number of z[i] */
  size_t nz;
  struct sn_index_prefetch *pf;
  struct sn_doc *pfdocs;
  size_t npf;
  char (*zdig)[SN_DIGEST_STRLEN + 1];
};

/* Free what b owns (the ztocs and prefetch documents too). */
static void
built_free(struct built *b)
{
  size_t i;

  for (i = 0; i < b->nz; i++)
    sn_ztoc_free(b->ztocs[i]);
  for (i = 0; i < b->npf; i++)
    sn_doc_free(&b->pfdocs[i]);
  free(b->z);
  free(b->ztocs);
  free(b->layer_of);
  free(b->pf);
  free(b->pfdocs);
  free(b->zdig);
  memset(b, 0, sizeof *b);
}

/* Append span run s to spans (realloc'd). */
static int
push_span(struct sn_prefetch_span **spans, size_t *n,
          const struct sn_prefetch_span *s)
{
  struct sn_prefetch_span *p = realloc(*spans, (*n + 1) * sizeof *p);

  if (p == NULL)
    return sn_oom();
  *spans = p;
  p[(*n)++] = *s;
  return 0;
}

/* Bind cfg->record to m: 0 and *use true when it names layers of m (then
 * all of them must be; ranges within the ztocs built), *use false when it
 * names none (another platform's record), -1 otherwise. */
static int
bind_record(const struct sn_manifest *m, const struct built *b,
            const struct sn_index_build_cfg *cfg, bool *use)
{
  const struct sn_record *r = cfg->record;
  const char **dg = calloc(m->nlayers + 1, sizeof *dg);
  int64_t *sizes = calloc(m->nlayers + 1, sizeof *sizes);
  size_t *map = calloc(r->nlayers + 1, sizeof *map), i, k, known = 0;
  int ret = -1;

  *use = false;
  if (dg == NULL || sizes == NULL || map == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < m->nlayers; i++) {
    dg[i] = m->layers[i].digest;
    sizes[i] = -1;
    for (k = 0; k < r->nlayers; k++)
      known += strcmp(r->layers[k], dg[i]) == 0;
  }
  for (i = 0; i < b->nz; i++)
    sizes[b->layer_of[i]] = b->ztocs[i]->uncompressed_size;
  if (known == 0) {
    say(cfg, "soci-nbd: the prefetch record names no layer of %s: not "
        "attached to it", m->digest);
    ret = 0;
    goto out;
  }
  ret = sn_record_bind(r, dg, sizes, m->nlayers, map);
  *use = ret == 0;
out:
  free(dg);
  free(sizes);
  free(map);
  return ret;
}

/* Prefetch artifacts: each path is looked up from the top layer down, and
 * the spans covering the prefetch record's ranges (use_record) are added;
 * grouped per layer, in layer order. */
static int
build_prefetch(struct sn_registry *dst, const struct sn_manifest *m,
               struct built *b, const struct sn_index_build_cfg *cfg,
               bool use_record)
{
  struct sn_prefetch_span **spans;
  size_t *nspans, i, j, k;
  int r = -1;

  if ((cfg->nprefetch == 0 && !use_record) || b->nz == 0)
    return 0;
  spans = calloc(b->nz, sizeof *spans);
  nspans = calloc(b->nz, sizeof *nspans);
  b->pf = calloc(b->nz, sizeof *b->pf);
  b->pfdocs = calloc(b->nz, sizeof *b->pfdocs);
  if (spans == NULL || nspans == NULL || b->pf == NULL || b->pfdocs == NULL) {
    sn_oom();
    goto out;
  }
  for (j = 0; j < cfg->nprefetch; j++) {
    bool found = false;

    for (i = b->nz; i-- > 0 && !found;) {
      struct sn_prefetch_span s;
      int f = sn_prefetch_file_span(b->ztocs[i], cfg->prefetch[j], &s);

      if (f == -1 || (f == 1 && push_span(&spans[i], &nspans[i], &s) == -1))
        goto out;
      found = f == 1;
    }
    if (!found)
      say(cfg, "soci-nbd: prefetch file %s not found in any indexed layer",
          cfg->prefetch[j]);
  }
  for (i = 0; use_record && i < b->nz; i++)
    for (k = 0; k < cfg->record->nlayers; k++)
      if (strcmp(cfg->record->layers[k], m->layers[b->layer_of[i]].digest)
          == 0 &&
          sn_prefetch_record_spans(b->ztocs[i], cfg->record, k, &spans[i],
                                   &nspans[i]) == -1)
        goto out;
  for (i = 0; i < b->nz; i++) {
    struct sn_doc *d = &b->pfdocs[b->npf];

    if (nspans[i] == 0)
      continue;
    if (sn_prefetch_encode(spans[i], nspans[i], d) == -1 ||
        sn_registry_push_blob(dst, d->digest, d->data, d->len) == -1)
      goto out;
    b->pf[b->npf].digest = d->digest;
    b->pf[b->npf].size = (int64_t) d->len;
    b->pf[b->npf].layer_digest = m->layers[b->layer_of[i]].digest;
    b->npf++;
    say(cfg, "layer %s -> prefetch artifact %s",
        m->layers[b->layer_of[i]].digest, d->digest);
  }
  r = 0;
out:
  for (i = 0; spans && i < b->nz; i++)
    free(spans[i]);
  free(spans);
  free(nspans);
  return r;
}

/* Push the prefetch record (its canonical bytes) for the dense-index
 * manifest; *d gets its descriptor (digest in dig). */
static int
push_record(struct sn_registry *dst, const struct sn_record *r,
            struct sn_descriptor *d, char dig[SN_DIGEST_STRLEN + 1])
{
  uint8_t *buf;
  size_t len;
  int ret;

  if (sn_record_encode(r, &buf, &len) == -1)
    return -1;
  sn_digest_of(buf, len, dig);
  ret = sn_registry_push_blob(dst, dig, buf, len);
  free(buf);
  memset(d, 0, sizeof *d);
  d->media_type = (char *) SN_RECORD_MEDIA_TYPE;
  d->digest = dig;
  d->size = (int64_t) len;
  return ret;
}

/* Build and push (to dst) the ztocs of m's layers (read from src), the
 * prefetch artifacts and the config blob; encode the index.  0 and *out
 * set; 1 when every layer was skipped (nothing pushed); -1 on error. */
/* The dense-index manifest of the jobs that made dense blobs, in
 * image-layer order (jobs run largest first). */
static int
dense_manifest(const struct sn_index_build_job *jobs, size_t njobs,
               const struct sn_descriptor *record, struct sn_doc *out)
{
  struct sn_dense_entry *e = calloc(njobs + 1, sizeof *e);
  size_t i, k, n = 0;
  int r;

  if (e == NULL)
    return sn_oom();
  for (i = 0; i < njobs; i++) {
    const struct sn_index_build_job *j = &jobs[i];

    if (j->tdig[0] == 0)
      continue;
    for (k = n; k > 0 && jobs[e[k - 1].layer_index].layer > j->layer; k--)
      e[k] = e[k - 1];
    e[k] = (struct sn_dense_entry) {
      .layer_digest = j->d->digest, .layer_index = i,
      .table_digest = j->tdig, .table_size = (int64_t) j->tlen,
      .windows_digest = j->wdig[0] ? j->wdig : NULL,
      .windows_size = (int64_t) j->windows_len,
    };
    n++;
  }
  r = n ? sn_dense_manifest_encode(e, n, record, out) : 0;
  free(e);
  return r;
}

int
sn_index_build_run(struct sn_registry *src, struct sn_registry *dst,
                   const struct sn_manifest *m, int version,
                   const struct sn_index_build_cfg *cfg, struct sn_doc *out,
                   struct sn_doc *dense_out)
{
  struct sn_index_build_stats unused = { 0 };
  struct sn_index_build_stats *st = cfg->stats ? cfg->stats : &unused;
  struct built b = { 0 };
  struct sn_index_build_pool pool = { 0 };
  struct sn_index_build_job *jobs = NULL;
  struct sn_index_subject subj;
  struct sn_descriptor rdesc;
  char rdig[SN_DIGEST_STRLEN + 1];
  bool use_record = false;
  size_t i, ndense = 0;
  int r = -1;

  memset(out, 0, sizeof *out);
  if (dense_out)
    memset(dense_out, 0, sizeof *dense_out);
  b.z = calloc(m->nlayers + 1, sizeof *b.z);
  b.ztocs = calloc(m->nlayers + 1, sizeof *b.ztocs);
  b.layer_of = calloc(m->nlayers + 1, sizeof *b.layer_of);
  b.zdig = calloc(m->nlayers + 1, sizeof *b.zdig);
  if (b.z == NULL || b.ztocs == NULL || b.layer_of == NULL ||
      b.zdig == NULL) {
    sn_oom();
    goto out;
  }
  jobs = calloc(m->nlayers + 1, sizeof *jobs);
  if (jobs == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < m->nlayers; i++) {
    const struct sn_descriptor *d = &m->layers[i];
    enum sn_layer_kind k = sn_layer_kind(d->media_type);

    if (d->media_type && strcmp(d->media_type, SN_MT_SOCI_PREFETCH) == 0)
      continue;
    if (d->size > 0)
      st->image_bytes += (uint64_t) d->size;
    if (!sn_index_build_will_index(d, cfg, true)) {
      st->skipped++;
      continue;
    }
    jobs[pool.njobs++] = (struct sn_index_build_job) {
      .d = d, .layer = i, .pool = &pool,
      .comp = k == SN_LAYER_KIND_GZIP ? SN_COMP_GZIP
            : k == SN_LAYER_KIND_ZSTD ? SN_COMP_ZSTD : SN_COMP_UNCOMPRESSED,
    };
  }
  pool.jobs = jobs;
  pool.src = src;
  pool.dst = dst;
  pool.cfg = cfg;
  if (pool.njobs && run_pool(&pool) == -1)
    goto out;
  for (i = 0; i < pool.njobs; i++) {
    struct sn_index_build_job *j = &jobs[i];

    if (j->comp == SN_COMP_ZSTD) {   /* a dense index or nothing */
      if (j->tdig[0])
        st->indexed++, ndense++;
      continue;
    }
    b.ztocs[b.nz] = j->z;
    j->z = NULL;
    b.layer_of[b.nz] = j->layer;
    memcpy(b.zdig[b.nz], j->zdig, sizeof b.zdig[b.nz]);
    b.z[b.nz] = (struct sn_index_ztoc) {
      .digest = b.zdig[b.nz], .size = (int64_t) j->zlen,
      .layer_digest = j->d->digest, .layer_media_type = j->d->media_type,
      .span_size = cfg->span_size,
      .disable_xattrs = cfg->xattr_opt &&
                        sn_index_ztoc_no_xattrs(b.ztocs[b.nz]),
    };
    b.nz++;
    st->indexed++;
    st->ztoc_bytes += j->zlen;
  }
  if (b.nz == 0 && ndense == 0) {
    r = 1;
    goto out;
  }
  if (b.nz == 0) {
    /* Only zstd layers were indexed: no SOCI index (*out stays empty),
     * only the dense one. */
    if (cfg->record)
      say(cfg, "prefetch record not attached: no layer has a SOCI ztoc");
    r = dense_out ? dense_manifest(jobs, pool.njobs, NULL, dense_out) : 0;
    goto out;
  }
  if ((cfg->record && bind_record(m, &b, cfg, &use_record) == -1) ||
      build_prefetch(dst, m, &b, cfg, use_record) == -1)
    goto out;
  subj = (struct sn_index_subject) { m->media_type, m->digest,
                                     (int64_t) m->raw_len };
  if (sn_index_encode(version, b.z, b.nz, b.pf, b.npf,
                      version == 1 ? &subj : NULL, cfg->build_tool,
                      out) == -1 ||
      sn_registry_push_blob(dst, SN_SOCI_CONFIG_DIGEST,
                            (const uint8_t *) SN_SOCI_CONFIG, 2) == -1)
    goto out;
  if (cfg->dense && dense_out && use_record &&
      push_record(dst, cfg->record, &rdesc, rdig) == -1)
    goto out;
  if (cfg->dense && dense_out &&
      dense_manifest(jobs, pool.njobs, use_record ? &rdesc : NULL,
                     dense_out) == -1)
    goto out;
  r = 0;
out:
  for (i = 0; jobs && i < pool.njobs; i++) {
    sn_ztoc_free(jobs[i].z);
    sn_ztoc_free(jobs[i].dense);
    free(jobs[i].windows);
    free(jobs[i].err);
  }
  free(jobs);
  built_free(&b);
  return r;
}
