/* soci-nbd: internal to lib/image/image*.c — struct sn_image and its
 * layers, and the helpers the image's files share.  Not a public API.
 *
 * image.c opens and frees the image and serves reads; image-fetch.c
 * downloads layers without a ztoc whole; image-index.c loads the SOCI
 * index and its prefetch artifacts; image-background.c runs the prefetch
 * thread and the whole-layer check; image-stats.c reports statistics.
 * See docs/architecture.md.
 */
#ifndef SN_IMAGE_INT_H
#define SN_IMAGE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "registry/manifest.h"
#include "record/record.h"
#include "registry/ref.h"
#include "soci/index.h"
#include "soci/ztoc.h"
#include "span/diskcache.h"
#include "span/layer.h"
#include "util/err.h"

/* The start-up fetches (dense tables, ztocs, the prefetch record) made at
 * once: each is a round trip or more. */
#define SN_IMAGE_FETCH_THREADS 8

/* Whole-layer check of a lazy layer (img_layer.verify). */
enum verify_state { VERIFY_NONE, VERIFY_PENDING, VERIFY_OK, VERIFY_FAILED };

struct img_layer {
  struct sn_image *img;
  size_t index;
  char *digest;
  char *media_type;
  int64_t size;
  char *ztoc_digest;            /* the ztoc it is served with, or NULL */
  bool dense;                   /* served with a dense index
                                 * (ztoc_digest is its table) */
  char *windows_digest;         /* its windows blob (NULL for zstd) */
  char *stargz_toc;             /* served from its own TOC (eStargz, or
                                 * zstd:chunked if zchunked): the TOC's
                                 * digest (ztoc_digest is NULL) */
  bool zchunked;
  size_t stargz_landmark;       /* its chunks before the prefetch
                                 * landmark (0: none) */
  bool lazy;
  int fd;                       /* local copy, or -1 */
  struct sn_layer *layer;
  uint64_t spans_total;
  uint64_t whole_bytes;         /* downloaded whole at open */
  uint64_t local_bytes;         /* atomically: read from fd */
  char *sqfs_error;             /* why its overlayfs image is missing */
  struct sn_prefetch_span *pf;  /* its prefetch artifacts' span ranges */
  size_t npf;
  int verify;                   /* enum verify_state, atomically */
  char *verify_msg;             /* set before verify becomes FAILED */
};

struct sn_image {
  struct sn_ref ref;
  struct sn_registry *reg;
  char *manifest_digest;
  char *index_digest;
  const char *index_source;     /* how it was found: "v1", "v2",
                                 * "explicit" or "none" (the rule:
                                 * lib/soci/index-find.h) */
  const char *index_why;        /* static phrase: why that index (or none) */
  struct img_layer *layers;
  size_t nlayers;
  struct sn_image_export *exports;
  size_t nexports;
  void (*trace)(void *opaque, size_t layer, size_t span,
                const struct sn_span *s);
  void (*log)(void *opaque, const char *msg);
  void (*progress)(void *opaque);
  void *opaque;

  struct sn_diskcache *disk;
  enum sn_prefetch_mode prefetch;
  bool layer_check;
  bool no_dense;
  bool no_stargz;
  bool no_zchunked;
  char *dense_digest;           /* the dense index used, or NULL */
  size_t npf_docs;              /* prefetch artifacts used */
  pthread_t bg;
  bool bg_started;
  int bg_stop, bg_done;         /* atomically */
  int fg_active;                /* foreground reads running, atomically */
  int64_t fg_last;              /* when the last one ended (ns), atomically */
  uint64_t spans_prefetched;    /* atomically */
  /* Replay (image-replay.c): the dense index's prefetch record, named
   * (record_desc: its digest and size) and fetched (record; record_digest
   * once it parsed) at start-up, beside the dense tables, and the runs of
   * spans to load (atomically). */
  struct sn_descriptor record_desc;
  struct sn_record record;
  char *record_digest;
  size_t replay_items, replay_done;
  struct sn_recorder *recorder; /* record=: the caller's, or NULL */
  /* Dependency prefetch (lib/deps/deps.h): one per export, made on the
   * first ELF file a read of it brings in (under deps_lock). */
  bool deps_on;
  struct sn_deps **deps;        /* parallel to exports */
  pthread_mutex_t deps_lock;
};

/* Log one formatted line through img->log (nothing if it is NULL). */
void img_logf(struct sn_image *img, const char *fmt, ...) SN_PRINTF(2, 3);

/* The monotonic clock in nanoseconds (foreground/background timing). */
int64_t img_now_ns(void);

/* image-fetch.c: download layer l (of kind gzip, tar or zstd) whole into
 * cache_dir (or an unlinked temporary file), or reuse a valid cached copy,
 * building its ztoc; sets l->fd to what the ztoc describes (for zstd, an
 * unlinked decompressed copy and an uncompressed-tar ztoc).  The ztoc
 * (caller frees) or NULL (err.h). */
struct sn_ztoc *img_fetch_whole(struct sn_image *img, struct img_layer *l,
                                enum sn_layer_kind kind,
                                const char *cache_dir);

/* image-dense.c: if manifest m names a dense index, put the dense table
 * of each layer it covers in ztocs[i] (caller frees) and set the layer's
 * windows_digest.  0 or -1 (err.h). */
int img_load_dense(struct sn_image *img, const struct sn_manifest *m,
                   struct sn_ztoc **ztocs);

/* image-stargz.c: put the ztoc (lib/stargz/stargz.h) of each layer of
 * manifest m that has no ztoc yet and pins its own TOC (a gzip layer with
 * an eStargz TOC digest, a zstd layer with zstd:chunked manifest
 * annotations) in ztocs[i] (caller frees) and set its stargz_toc.  0 or
 * -1 (err.h). */
int img_load_stargz(struct sn_image *img, const struct sn_manifest *m,
                    struct sn_ztoc **ztocs);

/* image-replay.c: note the prefetch record dense-index manifest dm names
 * (img->record_desc).  0 also when it has none; -1 (err.h) when it is not
 * usable. */
int img_note_record(struct sn_image *img, const struct sn_manifest *dm);
/* image-replay.c: fetch and parse the record noted into img->record (the
 * caller clears it on failure).  0, or -1 (err.h). */
int img_load_record(struct sn_image *img);
/* image-replay.c: load the record's spans and the prefetch artifacts'
 * ahead of the reads (the prefetch thread, prefetch=auto or artifact). */
void img_replay_run(struct sn_image *img);

/* image-index.c: fetch the SOCI index img->index_digest of manifest m and
 * put the ztoc of layer i (caller frees) in ztocs[i]; loads prefetch
 * artifacts too.  0 or -1 (err.h). */
int img_load_index(struct sn_image *img, const struct sn_manifest *m,
                   struct sn_ztoc **ztocs);

#endif
