/* soci-nbd: the SOCI index commands — "create" (v1 index, a referrer of
 * the image manifest), "convert" (v2 indexes bound into a new image
 * index, as soci convert does) and "index list|info".  Layers are
 * streamed from the registry into the ztoc builder, never held whole. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "soci/build.h"
#include "cli.h"
#include "util/digest.h"
#include "soci/index-find.h"
#include "soci/index.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "regopts.h"
#include "soci/zinfo.h"

#define DEFAULT_MIN_LAYER_SIZE ((int64_t) 10 << 20)
#define FEED_CHUNK (1 << 20)
#define MAX_PREFETCH 256

struct build_cfg {
  int64_t span_size;
  int64_t min_layer_size;
  const char *build_tool;
  bool xattr_opt;               /* --optimizations xattr */
  const char *prefetch[MAX_PREFETCH];
  size_t nprefetch;
  bool copy_layers;             /* convert: indexed layers are copied to
                                   DST in the pass that indexes them */
};

static void __attribute__((format(printf, 1, 2)))
progress(const char *fmt, ...)
{
  va_list ap;

  if (cli_quiet)
    return;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static char *
platform_string(const struct sn_platform *p)
{
  char *s;

  if (p == NULL || p->os == NULL)
    return strdup("-");
  if (asprintf(&s, "%s/%s%s%s", p->os, p->architecture ? p->architecture
               : "?", p->variant ? "/" : "", p->variant ? p->variant : "")
      == -1)
    return NULL;
  return s;
}

/* Whether build_index makes a ztoc for layer d (else it says why, when
 * why is not NULL). */
static bool
will_index(const struct sn_descriptor *d, const struct build_cfg *cfg,
           bool say_why)
{
  enum sn_layer_kind k = sn_layer_kind(d->media_type);

  if (k != SN_LAYER_KIND_GZIP && k != SN_LAYER_KIND_TAR) {
    if (say_why)
      progress("ztoc skipped - layer %s (%s) is not a tar or tar+gzip layer",
               d->digest, d->media_type ? d->media_type : "-");
    return false;
  }
  if (d->size < cfg->min_layer_size) {
    if (say_why)
      progress("ztoc skipped - layer %s (%s) size %" PRId64
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

struct job {
  const struct sn_descriptor *d;
  size_t layer;                  /* index in the manifest's layers */
  enum sn_compression comp;
  struct pool *pool;
  uint64_t done;                 /* bytes received (atomic) */
  int state;                     /* JOB_* (atomic) */
  double t0, t1;
  struct sn_ztoc *z;
  char zdig[SN_DIGEST_STRLEN + 1];
  size_t zlen;
  char *err;                     /* the failure's message */
  bool cancelled;                /* stopped because another job failed */
  bool shown;                    /* final line printed (terminal mode) */
};

enum { JOB_WAITING, JOB_RUNNING, JOB_DONE, JOB_FAILED };

struct pool {
  struct job *jobs;
  size_t njobs, started, exited;
  int failed;                    /* atomic */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct sn_registry *src, *dst;
  const struct build_cfg *cfg;
};

/* Totals over the whole command, for the summary line. */
static struct {
  size_t indexed, skipped;
  uint64_t ztoc_bytes, image_bytes;
  double t0;
} summary;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static bool live;                /* live progress lines on a terminal */
static size_t live_lines;        /* lines of the live block on screen */

static double
now_sec(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
human(double n, char *buf, size_t size)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  size_t u = 0;

  while (n >= 1024 && u < 4) {
    n /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%.0f %s", n, units[u]);
  else
    snprintf(buf, size, "%.1f %s", n, units[u]);
}

/* One line of progress for job j (no newline). */
static void
job_line(const struct job *j, char *buf, size_t size)
{
  int st = __atomic_load_n(&j->state, __ATOMIC_ACQUIRE);
  uint64_t done = __atomic_load_n(&j->done, __ATOMIC_RELAXED);
  double el = (st == JOB_DONE ? j->t1 : now_sec()) - j->t0;
  double rate = el > 0 ? (double) done / el : 0;
  char a[32], b[32], r[32];

  human((double) done, a, sizeof a);
  human((double) j->d->size, b, sizeof b);
  human(rate, r, sizeof r);
  if (st == JOB_DONE) {
    snprintf(buf, size, "layer %s -> ztoc %s (%s in %.1f s, %s/s)",
             j->d->digest, j->zdig, b, el, r);
    return;
  }
  if (rate > 0 && j->d->size > (int64_t) done)
    snprintf(buf, size, "layer %.19s... %s / %s (%d%%) %s/s ETA %.0f s",
             j->d->digest, a, b,
             (int) (j->d->size ? 100 * (double) done / j->d->size : 0), r,
             (double) (j->d->size - (int64_t) done) / rate);
  else
    snprintf(buf, size, "layer %.19s... %s / %s", j->d->digest, a, b);
}

/* Terminal mode: print the final lines of finished jobs once, then the
 * live lines of running ones, replacing the previous live block. */
static void
redraw(struct pool *p)
{
  char line[512];
  size_t i, n = 0;

  pthread_mutex_lock(&out_lock);
  if (live_lines)
    fprintf(stderr, "\033[%zuA", live_lines);
  fputs("\r\033[J", stderr);
  for (i = 0; i < p->njobs; i++) {
    struct job *j = &p->jobs[i];

    if (j->shown ||
        __atomic_load_n(&j->state, __ATOMIC_ACQUIRE) != JOB_DONE)
      continue;
    job_line(j, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    j->shown = true;
  }
  for (i = 0; i < p->njobs; i++) {
    struct job *j = &p->jobs[i];

    if (__atomic_load_n(&j->state, __ATOMIC_ACQUIRE) != JOB_RUNNING)
      continue;
    job_line(j, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    n++;
  }
  live_lines = n;
  fflush(stderr);
  pthread_mutex_unlock(&out_lock);
}

struct feed {
  struct sn_ztoc_builder *b;
  struct job *j;
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
  return sn_ztoc_builder_feed(f->b, data, len);
}

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
build_ztoc(struct sn_registry *reg, struct job *j,
           const struct build_cfg *cfg)
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
  if (z && f.copy) {            /* verified by get_blob */
    int r = sn_blob_writer_commit(f.copy);

    f.copy = NULL;
    if (r == -1) {
      sn_ztoc_free(z);
      z = NULL;
    }
    else
      progress("copied blob %s (%" PRId64 " bytes)", d->digest, d->size);
  }
out:
  sn_blob_writer_abort(f.copy);
  if (z == NULL)
    sn_prefix_error("layer %zu (%s): ", j->layer, d->digest);
  sn_ztoc_builder_free(f.b);
  free(f.buf);
  return z;
}

/* Build, encode and push the ztoc of one layer. */
static int
run_job(struct pool *p, struct job *j)
{
  uint8_t *buf = NULL, h[SN_SHA256_LEN];
  size_t len;

  j->z = build_ztoc(p->src, j, p->cfg);
  if (j->z == NULL)
    return -1;
  if (sn_ztoc_encode(j->z, &buf, &len) == -1)
    return sn_prefix_error("layer %zu (%s): ", j->layer, j->d->digest);
  sn_sha256(buf, len, h);
  sn_digest_format(h, j->zdig);
  j->zlen = len;
  if (sn_registry_push_blob(p->dst, j->zdig, buf, len) == -1) {
    free(buf);
    return sn_prefix_error("layer %zu (%s): ", j->layer, j->d->digest);
  }
  free(buf);
  return 0;
}

static void *
worker(void *arg)
{
  struct pool *p = arg;

  for (;;) {
    struct job *j = NULL;
    int r;

    pthread_mutex_lock(&p->lock);
    if (p->started < p->njobs &&
        !__atomic_load_n(&p->failed, __ATOMIC_RELAXED)) {
      for (size_t i = 0; i < p->njobs; i++)
        if (p->jobs[i].state == JOB_WAITING &&
            (j == NULL || p->jobs[i].d->size > j->d->size))
          j = &p->jobs[i];
      p->started++;
      j->t0 = now_sec();
      __atomic_store_n(&j->state, JOB_RUNNING, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&p->lock);
    if (j == NULL)
      break;
    if (!live && !cli_quiet) {
      char sz[32];

      human((double) j->d->size, sz, sizeof sz);
      pthread_mutex_lock(&out_lock);
      fprintf(stderr, "indexing layer %zu %s (%s)\n", j->layer,
              j->d->digest, sz);
      pthread_mutex_unlock(&out_lock);
    }
    r = run_job(p, j);
    j->t1 = now_sec();
    if (r == -1) {
      j->err = strdup(sn_error());
      __atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&j->state, r == -1 ? JOB_FAILED : JOB_DONE,
                     __ATOMIC_RELEASE);
    if (r == 0 && !live && !cli_quiet) {
      char line[512];

      job_line(j, line, sizeof line);
      pthread_mutex_lock(&out_lock);
      fprintf(stderr, "%s\n", line);
      pthread_mutex_unlock(&out_lock);
    }
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
run_pool(struct pool *p)
{
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  size_t nthreads = ncpu > 0 ? (size_t) ncpu : 1, started = 0, i;
  pthread_t *tids;
  double last = 0;
  int e, r = 0;

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

    if (live && now_sec() - last >= 0.25) {
      pthread_mutex_unlock(&p->lock);
      redraw(p);
      last = now_sec();
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
  if (live)
    redraw(p);
  live_lines = 0;
  /* The first real failure, in layer order (not a cancellation). */
  for (i = 0; i < p->njobs && r == 0; i++)
    if (p->jobs[i].state == JOB_FAILED && !p->jobs[i].cancelled)
      r = sn_set_error("%s", p->jobs[i].err ? p->jobs[i].err
                       : "out of memory");
  for (i = 0; i < p->njobs && r == 0; i++)
    if (p->jobs[i].state == JOB_FAILED)
      r = sn_set_error("%s", p->jobs[i].err ? p->jobs[i].err
                       : "out of memory");
  return r;
}

static void
start_progress(void)
{
  memset(&summary, 0, sizeof summary);
  summary.t0 = now_sec();
  live = !cli_quiet && isatty(STDERR_FILENO);
}

static void
print_summary(void)
{
  char zb[32], ib[32];

  if (cli_quiet)
    return;
  human((double) summary.ztoc_bytes, zb, sizeof zb);
  human((double) summary.image_bytes, ib, sizeof ib);
  fprintf(stderr, "indexed %zu layer%s, skipped %zu; ztocs %s (%.2f%% of "
          "the image's %s of layers) in %.1f s\n", summary.indexed,
          summary.indexed == 1 ? "" : "s", summary.skipped, zb,
          summary.image_bytes ? 100.0 * (double) summary.ztoc_bytes /
          (double) summary.image_bytes : 0.0, ib, now_sec() - summary.t0);
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

/* Prefetch artifacts: each path is looked up from the top layer down; the
 * spans found are grouped per layer, in layer order. */
static int
build_prefetch(struct sn_registry *dst, const struct sn_manifest *m,
               struct built *b, const struct build_cfg *cfg)
{
  struct sn_prefetch_span *spans;
  size_t *nspans, i, j;
  int r = -1;

  if (cfg->nprefetch == 0 || b->nz == 0)
    return 0;
  spans = calloc(b->nz * cfg->nprefetch, sizeof *spans);
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

      if (f == -1)
        goto out;
      if (f == 1) {
        spans[i * cfg->nprefetch + nspans[i]++] = s;
        found = true;
      }
    }
    if (!found)
      progress("soci-nbd: prefetch file %s not found in any indexed layer",
               cfg->prefetch[j]);
  }
  for (i = 0; i < b->nz; i++) {
    struct sn_doc *d = &b->pfdocs[b->npf];

    if (nspans[i] == 0)
      continue;
    if (sn_prefetch_encode(&spans[i * cfg->nprefetch], nspans[i], d) == -1 ||
        sn_registry_push_blob(dst, d->digest, d->data, d->len) == -1)
      goto out;
    b->pf[b->npf].digest = d->digest;
    b->pf[b->npf].size = (int64_t) d->len;
    b->pf[b->npf].layer_digest = m->layers[b->layer_of[i]].digest;
    b->npf++;
    progress("layer %s -> prefetch artifact %s",
             m->layers[b->layer_of[i]].digest, d->digest);
  }
  r = 0;
out:
  free(spans);
  free(nspans);
  return r;
}

/* Build and push (to dst) the ztocs of m's layers (read from src), the
 * prefetch artifacts and the config blob; encode the index.  0 and *out
 * set; 1 when every layer was skipped (nothing pushed); -1 on error. */
static int
build_index(struct sn_registry *src, struct sn_registry *dst,
            const struct sn_manifest *m, int version,
            const struct build_cfg *cfg, struct sn_doc *out)
{
  struct built b = { 0 };
  struct pool pool = { 0 };
  struct job *jobs = NULL;
  struct sn_index_subject subj;
  size_t i;
  int r = -1;

  memset(out, 0, sizeof *out);
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
      summary.image_bytes += (uint64_t) d->size;
    if (!will_index(d, cfg, true)) {
      summary.skipped++;
      continue;
    }
    jobs[pool.njobs++] = (struct job) {
      .d = d, .layer = i, .pool = &pool,
      .comp = k == SN_LAYER_KIND_GZIP ? SN_COMP_GZIP : SN_COMP_UNCOMPRESSED,
    };
  }
  pool.jobs = jobs;
  pool.src = src;
  pool.dst = dst;
  pool.cfg = cfg;
  if (pool.njobs && run_pool(&pool) == -1)
    goto out;
  for (i = 0; i < pool.njobs; i++) {
    struct job *j = &jobs[i];

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
    summary.indexed++;
    summary.ztoc_bytes += j->zlen;
  }
  if (b.nz == 0) {
    r = 1;
    goto out;
  }
  if (build_prefetch(dst, m, &b, cfg) == -1)
    goto out;
  subj = (struct sn_index_subject) { m->media_type, m->digest,
                                     (int64_t) m->raw_len };
  if (sn_index_encode(version, b.z, b.nz, b.pf, b.npf,
                      version == 1 ? &subj : NULL, cfg->build_tool,
                      out) == -1 ||
      sn_registry_push_blob(dst, SN_SOCI_CONFIG_DIGEST,
                            (const uint8_t *) SN_SOCI_CONFIG, 2) == -1)
    goto out;
  r = 0;
out:
  for (i = 0; jobs && i < pool.njobs; i++) {
    sn_ztoc_free(jobs[i].z);
    free(jobs[i].err);
  }
  free(jobs);
  built_free(&b);
  return r;
}

/* ---- option parsing shared by create and convert ------------------------ */

enum { OPT_SPAN = 0x2000, OPT_MIN, OPT_TOOL, OPT_PLATFORM, OPT_ALL,
       OPT_PREFETCH, OPT_OPTIM, OPT_QUIET, OPT_HELP };

static const struct option build_options[] = {
  { "span-size", required_argument, NULL, OPT_SPAN },
  { "min-layer-size", required_argument, NULL, OPT_MIN },
  { "build-tool-id", required_argument, NULL, OPT_TOOL },
  { "platform", required_argument, NULL, OPT_PLATFORM },
  { "all-platforms", no_argument, NULL, OPT_ALL },
  { "prefetch-file", required_argument, NULL, OPT_PREFETCH },
  { "optimizations", required_argument, NULL, OPT_OPTIM },
  { "quiet", no_argument, NULL, OPT_QUIET },
  { "help", no_argument, NULL, OPT_HELP },
  REGOPTS_LONG_OPTIONS,
  { NULL, 0, NULL, 0 },
};

#define BUILD_HELP \
"  -s, --span-size N        minimum uncompressed bytes between checkpoints\n" \
"                           (K/M/G suffixes; default 4M)\n" \
"  -m, --min-layer-size N   skip layers smaller than N (default 10M)\n" \
"  -b, --build-tool-id S    build tool id in the ztocs and the index\n" \
"                           (default \"" SN_BUILD_TOOL_DEFAULT "\"; \"" \
SN_REFERENCE_BUILD_TOOL "\"\n" \
"                           gives the soci CLI's bytes)\n" \
"      --prefetch-file PATH add a prefetch artifact for the spans of PATH\n" \
"                           (repeatable)\n" \
"      --optimizations xattr  mark layers without xattrs (disable-xattrs)\n" \
"  -q, --quiet              no progress messages on stderr\n"

/* Parse the options of create/convert; returns -1 to go on, or an exit
 * status. */
static int
parse_build_options(int argc, char **argv, const char *cmd,
                    void (*usage)(FILE *), struct build_cfg *cfg,
                    struct regopts *ro, const char **platform, bool *all)
{
  int c, h;

  cfg->span_size = SN_DEFAULT_SPAN_SIZE;
  cfg->min_layer_size = DEFAULT_MIN_LAYER_SIZE;
  cfg->build_tool = SN_BUILD_TOOL_DEFAULT;
  optind = 1;
  while ((c = getopt_long(argc, argv, "s:m:b:p:qhu:a:v", build_options,
                          NULL)) != -1) {
    switch (c) {
    case 's': case OPT_SPAN:
      if (cli_parse_size(optarg, &cfg->span_size) == -1 ||
          cfg->span_size == 0)
        return cli_usage_error(cmd, "invalid span size '%s'", optarg);
      break;
    case 'm': case OPT_MIN:
      if (cli_parse_size(optarg, &cfg->min_layer_size) == -1)
        return cli_usage_error(cmd, "invalid min layer size '%s'", optarg);
      break;
    case 'b': case OPT_TOOL: cfg->build_tool = optarg; break;
    case 'p': case OPT_PLATFORM:
      if (platform == NULL)
        return cli_usage_error(cmd, "unknown option --platform");
      *platform = optarg;
      break;
    case OPT_ALL:
      if (all == NULL)
        return cli_usage_error(cmd, "unknown option --all-platforms");
      *all = true;
      break;
    case OPT_PREFETCH:
      if (cfg->nprefetch == MAX_PREFETCH)
        return cli_usage_error(cmd, "too many --prefetch-file paths");
      cfg->prefetch[cfg->nprefetch++] = optarg;
      break;
    case OPT_OPTIM:
      if (strcmp(optarg, "xattr") != 0)
        return cli_usage_error(cmd, "unknown optimization '%s'", optarg);
      cfg->xattr_opt = true;
      break;
    case 'q': case OPT_QUIET: cli_quiet = true; break;
    case 'h': case OPT_HELP: usage(stdout); return 0;
    default:
      h = regopts_handle(ro, c, optarg, cmd);
      if (h == 1)
        continue;
      return h ? h : cli_usage_error(cmd, NULL);
    }
  }
  return -1;
}

static int
open_ref(const char *s, const struct regopts *ro, const char *cmd,
         struct sn_ref *ref, struct sn_registry **reg)
{
  *reg = NULL;
  if (sn_ref_parse(s, ref) == -1)
    return cli_usage_error(cmd, "invalid image reference '%s': %s", s,
                           sn_error());
  *reg = sn_registry_open(ref, &ro->ro);
  if (*reg == NULL) {
    sn_ref_clear(ref);
    return cli_fail_lib(NULL);
  }
  return 0;
}

/* ---- create --------------------------------------------------------------- */

static void
create_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd create IMAGE [OPTIONS]\n"
"\n"
"Build a SOCI index v1 for IMAGE's manifest (for --platform, default this\n"
"host's): one ztoc per tar or tar+gzip layer of at least --min-layer-size,\n"
"pushed to IMAGE's repository with the index manifest, whose subject is\n"
"the image manifest (found through the referrers API or the sha256-<hex>\n"
"fallback tag).  Prints the index digest.\n"
"\n"
"  -p, --platform P         os/arch[/variant] to select from an index\n"
BUILD_HELP
REGOPTS_HELP
"  -h, --help               show this help\n");
}

int
cmd_create(int argc, char **argv)
{
  struct build_cfg cfg = { 0 };
  struct regopts ro;
  const char *platform = NULL;
  struct sn_platform want = { 0 };
  struct sn_ref ref = { 0 };
  struct sn_registry *reg = NULL;
  struct sn_manifest *m = NULL;
  struct sn_doc idx = { 0 };
  int st, r;

  regopts_init(&ro);
  st = parse_build_options(argc, argv, "create", create_usage, &cfg, &ro,
                           &platform, NULL);
  if (st >= 0)
    goto out;
  st = 1;
  start_progress();
  if (argc - optind != 1) {
    st = cli_usage_error("create", "expected one IMAGE argument");
    goto out;
  }
  if (platform && sn_platform_parse(platform, &want) == -1) {
    st = cli_usage_error("create", "%s", sn_error());
    goto out;
  }
  if ((r = regopts_finish(&ro, "create")) != 0 ||
      (r = open_ref(argv[optind], &ro, "create", &ref, &reg)) != 0) {
    st = r;
    goto out;
  }
  m = sn_registry_resolve(reg, ref.digest ? ref.digest : ref.tag,
                          platform ? &want : NULL, NULL);
  if (m == NULL) {
    cli_fail_lib(NULL);
    goto out;
  }
  r = build_index(reg, reg, m, 1, &cfg, &idx);
  if (r == 1)
    cli_fail("%s: no layer indexed (all smaller than min-layer-size %"
             PRId64 " or not tar/tar+gzip)", m->digest, cfg.min_layer_size);
  if (r)
    goto fail;
  if (sn_registry_put_manifest(reg, idx.digest, SN_MT_OCI_MANIFEST, idx.data,
                               idx.len) == -1)
    goto fail;
  progress("soci index %s (v1) for image manifest %s", idx.digest,
           m->digest);
  print_summary();
  printf("%s\n", idx.digest);
  st = fflush(stdout) == 0 ? 0 : cli_fail("stdout: %s", strerror(errno));
  goto out;
fail:
  if (r != 1)
    cli_fail_lib(NULL);
out:
  sn_doc_free(&idx);
  sn_manifest_free(m);
  sn_registry_close(reg);
  sn_ref_clear(&ref);
  sn_platform_clear(&want);
  regopts_clear(&ro);
  return st;
}

/* ---- convert -------------------------------------------------------------- */

static void
convert_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd convert SRC DST [OPTIONS]\n"
"\n"
"Make a SOCI-enabled copy of image SRC at DST, as \"soci convert\" does: a\n"
"SOCI index v2 per platform, each image manifest re-written as OCI with the\n"
"com.amazon.soci.index-digest annotation, and an OCI image index holding\n"
"the images and their SOCI indexes, pushed to DST's tag.  Blobs missing at\n"
"DST are copied.  SRC and DST are registry references or\n"
"oci-layout:DIR[:TAG].  Prints the digest of the new image index.\n"
"\n"
"  -p, --platform P         index this platform (default: this host's, or\n"
"                           the image's own for a single-platform image)\n"
"      --all-platforms      index every platform of SRC\n"
BUILD_HELP
REGOPTS_HELP
"  -h, --help               show this help\n");
}

struct entry {
  struct sn_manifest *m;        /* the source manifest (image manifests) */
  bool image;                   /* re-serialized */
  bool indexed;                 /* a SOCI index was built for it */
  struct sn_platform plat;      /* the SOCI entry's platform */
  bool plat_given;              /* else copied from the entry */
  struct sn_doc soci;
  struct sn_doc ann;
};

static bool
is_image_manifest_type(const char *mt)
{
  return mt && (strcmp(mt, SN_MT_OCI_MANIFEST) == 0 ||
                strcmp(mt, SN_MT_DOCKER_MANIFEST) == 0);
}

static bool
same_repo(const struct sn_ref *a, const struct sn_ref *b)
{
  if (a->kind != b->kind)
    return false;
  if (a->kind == SN_REF_OCI_LAYOUT)
    return strcmp(a->layout_dir, b->layout_dir) == 0;
  return strcmp(a->registry, b->registry) == 0 &&
    strcmp(a->repository, b->repository) == 0;
}

static int
writer_sink(void *opaque, const uint8_t *data, size_t len)
{
  return sn_blob_writer_write(opaque, data, len);
}

/* Copy a blob SRC → DST unless DST has it (streamed through a
 * sn_blob_writer, committed once get_blob has verified the digest). */
static int
copy_blob(struct sn_registry *src, struct sn_registry *dst,
          const struct sn_descriptor *d)
{
  struct sn_blob_writer *w;
  int r;

  r = sn_registry_blob_exists(dst, d->digest, NULL);
  if (r != 0)
    return r == 1 ? 0 : -1;
  w = sn_blob_writer_new(dst, d->digest, d->size);
  if (w == NULL)
    return -1;
  if (sn_registry_get_blob(src, d->digest, d->size, writer_sink, w) == -1) {
    sn_blob_writer_abort(w);
    return -1;
  }
  if (sn_blob_writer_commit(w) == -1)
    return -1;
  progress("copied blob %s (%" PRId64 " bytes)", d->digest, d->size);
  return 0;
}

/* Copy the blobs of an image manifest, or a whole index tree (children
 * first, then the index itself), SRC → DST. */
static int
copy_tree(struct sn_registry *src, struct sn_registry *dst,
          const struct sn_manifest *m, int depth,
          const struct build_cfg *indexing)
{
  size_t i;

  if (depth > 4)
    return sn_set_error("%s: indexes nested too deeply", m->digest);
  if (!m->is_index) {
    if (copy_blob(src, dst, &m->config) == -1)
      return -1;
    for (i = 0; i < m->nlayers; i++) {
      const char *mt = m->layers[i].media_type ? m->layers[i].media_type : "";

      if (strstr(mt, "foreign") || strstr(mt, "nondistributable"))
        continue;
      if (indexing && indexing->copy_layers &&
          will_index(&m->layers[i], indexing, false))
        continue;               /* copied by its indexing job */
      if (copy_blob(src, dst, &m->layers[i]) == -1)
        return -1;
    }
    return 0;
  }
  for (i = 0; i < m->nmanifests; i++) {
    struct sn_manifest *c = sn_registry_get_manifest(src,
                                                     m->manifests[i].digest);
    int r;

    if (c == NULL)
      return -1;
    r = copy_tree(src, dst, c, depth + 1, NULL);
    if (r == 0)
      r = sn_registry_put_manifest(dst, c->digest, c->media_type, c->raw,
                                   c->raw_len);
    sn_manifest_free(c);
    if (r == -1)
      return -1;
  }
  return 0;
}

static bool
is_attestation(const struct sn_platform *p)
{
  return p->os && strcmp(p->os, "unknown") == 0;
}

int
cmd_convert(int argc, char **argv)
{
  struct build_cfg cfg = { 0 };
  struct regopts ro;
  const char *platform = NULL;
  bool all = false, same;
  struct sn_ref sref = { 0 }, dref = { 0 };
  struct sn_registry *src = NULL, *dst = NULL;
  struct sn_manifest *top = NULL;
  struct sn_oci_index *x = NULL;
  struct entry *e = NULL;
  struct sn_doc out = { 0 };
  size_t n = 0, i, nindexed = 0;
  int st, r;

  regopts_init(&ro);
  st = parse_build_options(argc, argv, "convert", convert_usage, &cfg, &ro,
                           &platform, &all);
  if (st >= 0)
    goto out;
  st = 1;
  start_progress();
  if (argc - optind != 2) {
    st = cli_usage_error("convert", "expected SRC and DST arguments");
    goto out;
  }
  if (platform && all) {
    st = cli_usage_error("convert",
                         "--platform and --all-platforms exclude each other");
    goto out;
  }
  if ((r = regopts_finish(&ro, "convert")) != 0 ||
      (r = open_ref(argv[optind], &ro, "convert", &sref, &src)) != 0 ||
      (r = open_ref(argv[optind + 1], &ro, "convert", &dref, &dst)) != 0) {
    st = r;
    goto out;
  }
  if (dref.digest) {
    st = cli_usage_error("convert", "DST must be a tag, not a digest");
    goto out;
  }
  same = same_repo(&sref, &dref);
  cfg.copy_layers = !same;

  top = sn_registry_get_manifest(src, sref.digest ? sref.digest : sref.tag);
  if (top == NULL)
    goto fail;
  if (top->is_index) {
    x = sn_oci_index_from_index(top->raw, top->raw_len);
  } else {
    uint8_t *cfgbuf = NULL;
    size_t cfglen;

    if (sn_registry_get_blob_mem(src, top->config.digest, SN_MAX_DOCUMENT,
                                 &cfgbuf, &cfglen) == -1)
      goto fail;
    x = sn_oci_index_wrap(top->media_type, top->digest,
                          (int64_t) top->raw_len, cfgbuf, cfglen);
    free(cfgbuf);
  }
  if (x == NULL)
    goto fail;
  n = sn_oci_index_count(x);
  e = calloc(n ? n : 1, sizeof *e);
  if (e == NULL) {
    sn_oom();
    goto fail;
  }

  /* Which entries get a SOCI index, with which platform. */
  {
    struct sn_platform want = { 0 };
    const struct sn_descriptor *sel = NULL;

    if (!all) {
      if (platform) {
        if (sn_platform_parse(platform, &want) == -1) {
          st = cli_usage_error("convert", "%s", sn_error());
          goto out;
        }
      } else if (top->is_index && sn_platform_host(&want) == -1)
        goto fail;
      if (top->is_index) {
        sel = sn_manifest_select(top, &want);
        if (sel == NULL) {
          sn_platform_clear(&want);
          goto fail;
        }
      } else if (platform) {
        struct sn_platform have;

        if (sn_oci_index_platform(x, 0, &have) == -1) {
          sn_platform_clear(&want);
          goto fail;
        }
        r = sn_platform_matches(&want, &have);
        sn_platform_clear(&have);
        if (!r) {
          cli_fail("%s: the image is not for platform %s", argv[optind],
                   platform);
          sn_platform_clear(&want);
          goto out;
        }
      }
    }
    for (i = 0; i < n; i++) {
      const char *mt = sn_oci_index_media_type(x, i);
      struct sn_platform p;

      if (!is_image_manifest_type(mt) || sn_oci_index_artifact_type(x, i))
        continue;
      e[i].image = true;
      if (!top->is_index) {
        e[i].indexed = true;      /* platform: the image config's */
        continue;
      }
      if (all) {                  /* platform: the entry's */
        if (sn_oci_index_platform(x, i, &p) == -1)
          goto fail;
        e[i].indexed = p.os && !is_attestation(&p);
        sn_platform_clear(&p);
        continue;
      }
      if (strcmp(sn_oci_index_digest(x, i), sel->digest) != 0)
        continue;
      /* soci records the requested (or the host's) platform, normalized. */
      e[i].indexed = true;
      e[i].plat_given = true;
      if ((e[i].plat.os = strdup(want.os)) == NULL ||
          (e[i].plat.architecture = strdup(want.architecture)) == NULL ||
          (want.variant &&
           (e[i].plat.variant = strdup(want.variant)) == NULL)) {
        sn_platform_clear(&want);
        sn_oom();
        goto fail;
      }
      if (sn_index_platform_normalize(&e[i].plat) == -1) {
        sn_platform_clear(&want);
        goto fail;
      }
    }
    sn_platform_clear(&want);
  }

  /* Copy what DST lacks, then build the SOCI indexes. */
  for (i = 0; i < n; i++) {
    const char *dg = sn_oci_index_digest(x, i);

    e[i].m = sn_registry_get_manifest(src, dg);
    if (e[i].m == NULL)
      goto fail;
    if (!same && copy_tree(src, dst, e[i].m, 0,
                           e[i].indexed ? &cfg : NULL) == -1)
      goto fail;
    if (!e[i].image && !same &&
        sn_registry_put_manifest(dst, e[i].m->digest, e[i].m->media_type,
                                 e[i].m->raw, e[i].m->raw_len) == -1)
      goto fail;
    if (e[i].indexed) {
      char *ps = platform_string(e[i].plat_given ? &e[i].plat : NULL);

      r = build_index(src, dst, e[i].m, 2, &cfg, &e[i].soci);
      if (r == 1) {
        progress("no layer indexed for %s (platform %s): skipped",
                 e[i].m->digest, ps ? ps : "?");
        e[i].indexed = false;
      }
      free(ps);
      if (r == -1)
        goto fail;
      if (r == 0)
        nindexed++;
    }
  }
  if (nindexed == 0) {
    cli_fail("%s: no layer indexed (all smaller than min-layer-size %"
             PRId64 " or not tar/tar+gzip)", argv[optind],
             cfg.min_layer_size);
    goto out;
  }

  /* Push the SOCI indexes, the re-serialized manifests, then the index. */
  for (i = 0; i < n; i++) {
    if (!e[i].image)
      continue;
    if (e[i].indexed &&
        sn_registry_put_manifest(dst, e[i].soci.digest, SN_MT_OCI_MANIFEST,
                                 e[i].soci.data, e[i].soci.len) == -1)
      goto fail;
    if (sn_index_annotate_manifest(e[i].m->raw, e[i].m->raw_len,
                                   e[i].indexed ? e[i].soci.digest : NULL,
                                   &e[i].ann) == -1 ||
        sn_registry_put_manifest(dst, e[i].ann.digest, SN_MT_OCI_MANIFEST,
                                 e[i].ann.data, e[i].ann.len) == -1 ||
        sn_oci_index_set_manifest(x, i, &e[i].ann) == -1)
      goto fail;
    if (e[i].indexed)
      progress("image manifest %s -> %s, soci index %s", e[i].m->digest,
               e[i].ann.digest, e[i].soci.digest);
  }
  for (i = 0; i < n; i++) {
    if (e[i].indexed &&
        sn_oci_index_add_soci(x, &e[i].soci, e[i].ann.digest,
                              e[i].plat_given ? &e[i].plat : NULL, i) == -1)
      goto fail;
  }
  if (sn_oci_index_encode(x, &out) == -1 ||
      sn_registry_put_manifest(dst, dref.tag, SN_MT_OCI_INDEX, out.data,
                               out.len) == -1)
    goto fail;
  progress("image index %s pushed as %s", out.digest, argv[optind + 1]);
  print_summary();
  printf("%s\n", out.digest);
  st = fflush(stdout) == 0 ? 0 : cli_fail("stdout: %s", strerror(errno));
  goto out;

fail:
  cli_fail_lib(NULL);
out:
  for (i = 0; e && i < n; i++) {
    sn_manifest_free(e[i].m);
    sn_platform_clear(&e[i].plat);
    sn_doc_free(&e[i].soci);
    sn_doc_free(&e[i].ann);
  }
  free(e);
  sn_doc_free(&out);
  sn_oci_index_free(x);
  sn_manifest_free(top);
  sn_registry_close(src);
  sn_registry_close(dst);
  sn_ref_clear(&sref);
  sn_ref_clear(&dref);
  regopts_clear(&ro);
  return st;
}

/* ---- index list / info ---------------------------------------------------- */

static void
index_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd index list IMAGE [OPTIONS]\n"
"       soci-nbd index info IMAGE [DIGEST] [OPTIONS]\n"
"\n"
"list: print the SOCI indexes of IMAGE, one per line:\n"
"  DIGEST VERSION SIZE IMAGE-MANIFEST-DIGEST PLATFORM\n"
"v2 indexes are found through the com.amazon.soci.index-digest annotation\n"
"of each image manifest, v1 indexes through the referrers API (or its\n"
"sha256-<hex> fallback tag).\n"
"info: print a SOCI index manifest as stored: DIGEST in IMAGE's\n"
"repository, IMAGE itself when it names an index, else the first index\n"
"of IMAGE's manifest for --platform (v2 first).\n"
"\n"
"  -p, --platform P         only this platform (list), or the platform to\n"
"                           pick from an index (info; default: this host's)\n"
REGOPTS_HELP
"  -h, --help               show this help\n");
}

struct found {
  char *digest;
  int version;
  int64_t size;
  char *manifest;
  char *platform;
};

static int
add_found(struct found **f, size_t *n, const char *digest, int version,
          int64_t size, const char *manifest, const struct sn_platform *p)
{
  struct found *nf;
  size_t i;

  for (i = 0; i < *n; i++)
    if (strcmp((*f)[i].digest, digest) == 0 &&
        strcmp((*f)[i].manifest, manifest) == 0)
      return 0;
  nf = realloc(*f, (*n + 1) * sizeof *nf);
  if (nf == NULL)
    return sn_oom();
  *f = nf;
  nf[*n].digest = strdup(digest);
  nf[*n].version = version;
  nf[*n].size = size;
  nf[*n].manifest = strdup(manifest);
  nf[*n].platform = platform_string(p);
  (*n)++;
  if (!nf[*n - 1].digest || !nf[*n - 1].manifest || !nf[*n - 1].platform)
    return sn_oom();
  return 0;
}

/* The SOCI indexes of one image manifest: its v2 index and the v1
 * referrers that pass the checks of lib/soci/index-find.h (others are named on
 * stderr and skipped). */
static int
find_for_manifest(struct sn_registry *reg, const struct sn_manifest *m,
                  const struct sn_platform *p, struct found **f, size_t *n)
{
  const char *v2 = sn_annotation_get(m->annotations, m->nannotations,
                                     SN_ANN_INDEX_DIGEST);
  struct sn_manifest *refs, *idx;
  size_t i;
  int r;

  if (v2) {
    if ((idx = sn_index_fetch(reg, v2, m)) == NULL)
      return -1;
    r = add_found(f, n, v2, 2, (int64_t) idx->raw_len, m->digest, p);
    sn_manifest_free(idx);
    if (r == -1)
      return -1;
  }
  refs = sn_registry_referrers(reg, m->digest, SN_MT_SOCI_INDEX_V1);
  if (refs == NULL)
    return -1;
  for (i = 0; i < refs->nmanifests; i++) {
    const struct sn_descriptor *d = &refs->manifests[i];

    if (!sn_index_v1_candidate(d))
      continue;
    if ((idx = sn_index_fetch(reg, d->digest, m)) == NULL) {
      fprintf(stderr, "soci-nbd: index: referrer skipped: %s\n", sn_error());
      continue;
    }
    r = add_found(f, n, d->digest, 1, (int64_t) idx->raw_len, m->digest, p);
    sn_manifest_free(idx);
    if (r == -1) {
      sn_manifest_free(refs);
      return -1;
    }
  }
  sn_manifest_free(refs);
  return 0;
}

static int
find_indexes(struct sn_registry *reg, const struct sn_manifest *top,
             const struct sn_platform *want, struct found **f, size_t *n)
{
  size_t i;

  if (!top->is_index)
    return find_for_manifest(reg, top, NULL, f, n);
  for (i = 0; i < top->nmanifests; i++) {
    const struct sn_descriptor *d = &top->manifests[i];
    struct sn_manifest *m;
    int r;

    if (!is_image_manifest_type(d->media_type) || d->artifact_type ||
        (d->platform && is_attestation(d->platform)) ||
        (want && (d->platform == NULL ||
                  !sn_platform_matches(want, d->platform))))
      continue;
    m = sn_registry_get_manifest(reg, d->digest);
    if (m == NULL)
      return -1;
    r = find_for_manifest(reg, m, d->platform, f, n);
    sn_manifest_free(m);
    if (r == -1)
      return -1;
  }
  return 0;
}

int
cmd_index(int argc, char **argv)
{
  static const struct option opts[] = {
    { "platform", required_argument, NULL, 'p' },
    { "help", no_argument, NULL, 'h' },
    REGOPTS_LONG_OPTIONS,
    { NULL, 0, NULL, 0 },
  };
  struct regopts ro;
  const char *platform = NULL, *sub;
  struct sn_platform want = { 0 };
  struct sn_ref ref = { 0 };
  struct sn_registry *reg = NULL;
  struct sn_manifest *top = NULL, *m = NULL;
  struct found *f = NULL;
  size_t nf = 0, i;
  bool list;
  int c, h, st = 1, r;

  if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "--help") == 0) {
    index_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  sub = argv[1];
  if (strcmp(sub, "list") != 0 && strcmp(sub, "info") != 0)
    return cli_usage_error("index", "unknown subcommand '%s'", sub);
  list = strcmp(sub, "list") == 0;
  regopts_init(&ro);
  optind = 1;
  argc--;
  argv++;
  while ((c = getopt_long(argc, argv, "p:hu:a:v", opts, NULL)) != -1) {
    switch (c) {
    case 'p': platform = optarg; break;
    case 'h': index_usage(stdout); st = 0; goto out;
    default:
      h = regopts_handle(&ro, c, optarg, "index");
      if (h == 1)
        continue;
      st = h ? h : cli_usage_error("index", NULL);
      goto out;
    }
  }
  if (argc - optind != 1 && (list || argc - optind != 2)) {
    st = cli_usage_error("index", list ? "expected one IMAGE argument"
                         : "expected IMAGE [DIGEST]");
    goto out;
  }
  if (strncmp(argv[optind], "sha256:", 7) == 0) {
    st = cli_usage_error("index", "a bare digest needs IMAGE before it");
    goto out;
  }
  if (platform && sn_platform_parse(platform, &want) == -1) {
    st = cli_usage_error("index", "%s", sn_error());
    goto out;
  }
  if ((r = regopts_finish(&ro, "index")) != 0 ||
      (r = open_ref(argv[optind], &ro, "index", &ref, &reg)) != 0) {
    st = r;
    goto out;
  }

  if (!list && argc - optind == 2) {
    m = sn_registry_get_manifest(reg, argv[optind + 1]);
    if (m == NULL)
      goto fail;
    if (!sn_index_is_soci(m)) {
      cli_fail("%s is not a SOCI index", argv[optind + 1]);
      goto out;
    }
  } else {
    top = sn_registry_get_manifest(reg, ref.digest ? ref.digest : ref.tag);
    if (top == NULL)
      goto fail;
    if (!list && sn_index_is_soci(top)) {
      m = top;
      top = NULL;
    } else if (list) {
      if (find_indexes(reg, top, platform ? &want : NULL, &f, &nf) == -1)
        goto fail;
    } else {
      struct sn_manifest *img = top;
      const struct sn_descriptor *d;

      if (top->is_index) {
        if (platform == NULL && sn_platform_host(&want) == -1)
          goto fail;
        d = sn_manifest_select(top, &want);
        if (d == NULL || (img = sn_registry_get_manifest(reg, d->digest))
            == NULL)
          goto fail;
      }
      r = find_for_manifest(reg, img, NULL, &f, &nf);
      if (img != top)
        sn_manifest_free(img);
      if (r == -1)
        goto fail;
      if (nf == 0) {
        cli_fail("%s: no SOCI index", argv[optind]);
        goto out;
      }
      m = sn_registry_get_manifest(reg, f[0].digest);
      if (m == NULL)
        goto fail;
    }
  }

  if (list) {
    for (i = 0; i < nf; i++)
      printf("%s v%d %" PRId64 " %s %s\n", f[i].digest, f[i].version,
             f[i].size, f[i].manifest, f[i].platform);
  } else {
    if (fwrite(m->raw, 1, m->raw_len, stdout) != m->raw_len)
      goto fail_out;
    putchar('\n');
  }
  if (fflush(stdout) == EOF || ferror(stdout))
    goto fail_out;
  st = 0;
  goto out;

fail_out:
  cli_fail("stdout: %s", strerror(errno));
  goto out;
fail:
  cli_fail_lib(NULL);
out:
  for (i = 0; i < nf; i++) {
    free(f[i].digest);
    free(f[i].manifest);
    free(f[i].platform);
  }
  free(f);
  sn_manifest_free(m);
  sn_manifest_free(top);
  sn_registry_close(reg);
  sn_ref_clear(&ref);
  sn_platform_clear(&want);
  regopts_clear(&ro);
  return st;
}
