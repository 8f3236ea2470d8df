/* soci-nbd command line: progress on stderr while SOCI indexes are built
 * — the hooks of lib/soci/index-build.h: message lines, a line per layer
 * started and finished, or on a terminal a live block of the running
 * layers redrawn every 0.25 s; and the summary line. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"

/* One line on stderr, unless --quiet. */
void
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

/* Totals over the whole command, for the summary line. */
static struct {
  struct sn_index_build_stats st;
  double t0;
} summary;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static bool live;                /* live progress lines on a terminal */
static size_t live_lines;        /* lines of the live block on screen */

/* n bytes as "12 B", "3.4 MiB"... */
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
job_line(const struct sn_index_build_job *j, char *buf, size_t size)
{
  int st = __atomic_load_n(&j->state, __ATOMIC_ACQUIRE);
  uint64_t done = __atomic_load_n(&j->done, __ATOMIC_RELAXED);
  double el = (st == SN_INDEX_JOB_DONE ? j->t1 : sn_index_build_now()) - j->t0;
  double rate = el > 0 ? (double) done / el : 0;
  char a[32], b[32], r[32];

  human((double) done, a, sizeof a);
  human((double) j->d->size, b, sizeof b);
  human(rate, r, sizeof r);
  if (st == SN_INDEX_JOB_DONE) {
    /* A zstd layer has no ztoc: its dense table, or nothing. */
    snprintf(buf, size, "layer %s -> %s %s (%s in %.1f s, %s/s)",
             j->d->digest, j->comp != SN_COMP_ZSTD ? "ztoc"
             : j->tdig[0] ? "dense table" : "no index,", j->comp != SN_COMP_ZSTD
             ? j->zdig : j->tdig[0] ? j->tdig : "served whole", b, el, r);
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
redraw(struct sn_index_build_job *jobs, size_t njobs)
{
  char line[512];
  size_t i, n = 0;

  pthread_mutex_lock(&out_lock);
  if (live_lines)
    fprintf(stderr, "\033[%zuA", live_lines);
  fputs("\r\033[J", stderr);
  for (i = 0; i < njobs; i++) {
    struct sn_index_build_job *j = &jobs[i];

    if (j->shown ||
        __atomic_load_n(&j->state, __ATOMIC_ACQUIRE) != SN_INDEX_JOB_DONE)
      continue;
    job_line(j, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    j->shown = true;
  }
  for (i = 0; i < njobs; i++) {
    struct sn_index_build_job *j = &jobs[i];

    if (__atomic_load_n(&j->state, __ATOMIC_ACQUIRE) !=
        SN_INDEX_JOB_RUNNING)
      continue;
    job_line(j, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    n++;
  }
  live_lines = n;
  fflush(stderr);
  pthread_mutex_unlock(&out_lock);
}

/* ---- the hooks of lib/soci/index-build.h ------------------------------- */

static void on_message(void *opaque, const char *fmt, va_list ap)
  SN_PRINTF(2, 0);

static void
on_message(void *opaque, const char *fmt, va_list ap)
{
  (void) opaque;
  if (cli_quiet)
    return;
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

/* Line mode: "indexing layer ..." when a worker takes a layer. */
static void
on_job_start(void *opaque, const struct sn_index_build_job *j)
{
  (void) opaque;
  if (!live && !cli_quiet) {
    char sz[32];

    human((double) j->d->size, sz, sizeof sz);
    pthread_mutex_lock(&out_lock);
    fprintf(stderr, "indexing layer %zu %s (%s)\n", j->layer,
            j->d->digest, sz);
    pthread_mutex_unlock(&out_lock);
  }
}

/* Line mode: the final line of a layer indexed. */
static void
on_job_end(void *opaque, const struct sn_index_build_job *j, int r)
{
  (void) opaque;
  if (r == 0 && !live && !cli_quiet) {
    char line[512];

    job_line(j, line, sizeof line);
    pthread_mutex_lock(&out_lock);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&out_lock);
  }
}

/* Terminal mode: redraw; once the pool is done, the block is left as is. */
static void
on_tick(void *opaque, struct sn_index_build_job *jobs, size_t njobs,
        bool final)
{
  (void) opaque;
  redraw(jobs, njobs);
  if (final)
    live_lines = 0;
}

static struct sn_index_build_hooks hooks = {
  .message = on_message,
  .job_start = on_job_start,
  .job_end = on_job_end,
};

void
progress_start(struct sn_index_build_cfg *cfg)
{
  memset(&summary, 0, sizeof summary);
  summary.t0 = sn_index_build_now();
  live = !cli_quiet && isatty(STDERR_FILENO);
  hooks.tick = live ? on_tick : NULL;
  cfg->hooks = &hooks;
  cfg->stats = &summary.st;
}

void
progress_copied(void *opaque, const struct sn_descriptor *d)
{
  (void) opaque;
  progress("copied blob %s (%" PRId64 " bytes)", d->digest, d->size);
}

void
progress_summary(void)
{
  char zb[32], ib[32];

  if (cli_quiet)
    return;
  human((double) summary.st.ztoc_bytes, zb, sizeof zb);
  human((double) summary.st.image_bytes, ib, sizeof ib);
  fprintf(stderr, "indexed %zu layer%s, skipped %zu; ztocs %s (%.2f%% of "
          "the image's %s of layers) in %.1f s\n", summary.st.indexed,
          summary.st.indexed == 1 ? "" : "s", summary.st.skipped, zb,
          summary.st.image_bytes ? 100.0 * (double) summary.st.ztoc_bytes /
          (double) summary.st.image_bytes : 0.0, ib,
          sn_index_build_now() - summary.t0);
}
