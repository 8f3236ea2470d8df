/* soci-nbd: build one SOCI index for an image manifest (docs/soci-format.md)
 * — the ztoc of every tar or tar+gzip layer, streamed from a registry and
 * built in parallel, the prefetch artifacts, and the index document.
 *
 * Each indexed layer is one job: a single streaming pass downloads it,
 * hashes it and builds its checkpoints and TOC, then the ztoc is encoded
 * and pushed.  Up to nproc jobs run at once, one thread each, the largest
 * waiting layer first; the first failure cancels the others.  What the
 * caller shows of it (messages, per-job progress) goes through the hooks
 * of struct sn_index_build_hooks; the library prints nothing.
 *
 * Ownership: the caller keeps the registries, the manifest and the cfg
 * (with its strings, hooks and stats); the document handed out belongs to
 * the caller (sn_doc_free).  Errors: -1 with the message set through
 * sn_set_error (err.h).
 */
#ifndef SN_INDEX_BUILD_H
#define SN_INDEX_BUILD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/manifest.h"
#include "record/record.h"
#include "registry/registry.h"
#include "soci/index.h"
#include "soci/ztoc.h"
#include "util/digest.h"

#define SN_INDEX_BUILD_DEFAULT_MIN_LAYER_SIZE ((int64_t) 10 << 20)
#define SN_INDEX_BUILD_MAX_PREFETCH 256

struct sn_index_build_pool;

/* One layer being indexed.  The hooks read it; the display's own field
 * is shown.  done and state are updated atomically by the worker. */
struct sn_index_build_job {
  const struct sn_descriptor *d;
  size_t layer;                  /* index in the manifest's layers */
  enum sn_compression comp;
  struct sn_index_build_pool *pool;
  uint64_t done;                 /* bytes received (atomic) */
  int state;                     /* SN_INDEX_JOB_* (atomic) */
  double t0, t1;                 /* sn_index_build_now() at start, end */
  struct sn_ztoc *z;
  char zdig[SN_DIGEST_STRLEN + 1];
  size_t zlen;
  /* Its dense index (gzip and zstd layers, when asked for): the table until it is
   * pushed, the digests and sizes of the two blobs pushed. */
  struct sn_ztoc *dense;
  uint8_t *windows;
  size_t windows_len;
  char tdig[SN_DIGEST_STRLEN + 1], wdig[SN_DIGEST_STRLEN + 1];
  size_t tlen;
  char *err;                     /* the failure's message */
  bool cancelled;                /* stopped because another job failed */
  bool shown;                    /* final line printed (the display's) */
};

enum { SN_INDEX_JOB_WAITING, SN_INDEX_JOB_RUNNING, SN_INDEX_JOB_DONE,
       SN_INDEX_JOB_FAILED };

/* What the caller is told while an index is built; any hook may be NULL.
 * message, job_start and job_end are called from worker threads too. */
struct sn_index_build_hooks {
  void *opaque;
  /* A progress message (printf format, no newline): a skipped layer, a
   * copied blob, a prefetch artifact. */
  void (*message)(void *opaque, const char *fmt, va_list ap);
  /* A worker took job j; j finished (r: 0 or -1). */
  void (*job_start)(void *opaque, const struct sn_index_build_job *j);
  void (*job_end)(void *opaque, const struct sn_index_build_job *j, int r);
  /* About every 0.25 s from the calling thread while jobs run, then once
   * with final once every worker has exited (a live display). */
  void (*tick)(void *opaque, struct sn_index_build_job *jobs, size_t njobs,
               bool final);
};

/* Totals over several builds (added to, never reset). */
struct sn_index_build_stats {
  size_t indexed, skipped;
  uint64_t ztoc_bytes, image_bytes;
};

struct sn_index_build_cfg {
  int64_t span_size;
  int64_t min_layer_size;
  const char *build_tool;
  bool xattr_opt;               /* --optimizations xattr */
  const char *prefetch[SN_INDEX_BUILD_MAX_PREFETCH];
  size_t nprefetch;
  bool copy_layers;             /* convert: indexed layers are copied to
                                   DST in the pass that indexes them */
  const struct sn_record *record;  /* a prefetch record to attach (its
                                   layers must be the image's; one naming
                                   none of them is skipped): prefetch
                                   artifacts, and a blob of the dense
                                   index (docs/prefetch-record.md) */
  bool dense;                   /* also build and push the dense index
                                   of every gzip layer indexed
                                   (docs/dense-index.md) */
  const struct sn_index_build_hooks *hooks;   /* may be NULL */
  struct sn_index_build_stats *stats;         /* may be NULL */
};

/* CLOCK_MONOTONIC in seconds: the clock of a job's t0 and t1. */
double sn_index_build_now(void);

/* Whether sn_index_build_run indexes layer d: a ztoc for a tar or gzip
 * layer, only a dense index for a zstd layer (with cfg->dense); else it
 * says why through cfg's message hook, when say_why. */
bool sn_index_build_will_index(const struct sn_descriptor *d,
                               const struct sn_index_build_cfg *cfg,
                               bool say_why);

/* Build and push (to dst) the ztocs of m's layers (read from src), the
 * prefetch artifacts and the config blob; encode the index (version 1,
 * with m as its subject, or 2).  0 and *out set; 1 when every layer was
 * skipped (nothing pushed); -1 on error.  The index manifest itself is
 * not pushed.  With cfg->dense, the dense blobs are pushed too and
 * *dense_out is the dense-index manifest (not pushed; len 0 when no layer
 * got one); dense_out may be NULL otherwise.  When only zstd layers were
 * indexed, *out is left empty (len 0): there is no SOCI index. */
int sn_index_build_run(struct sn_registry *src, struct sn_registry *dst,
                       const struct sn_manifest *m, int version,
                       const struct sn_index_build_cfg *cfg,
                       struct sn_doc *out, struct sn_doc *dense_out);

#endif
