/* soci-nbd: an image opened for serving — the reference resolved to one
 * platform's manifest, its SOCI index found (or not), one struct
 * sn_layer per layer, and the squashfs images built from them: the
 * flattened image (export "") and one overlayfs image per layer (exports
 * "layer/N" and the layer digest).
 *
 * SOCI index discovery (opts->index NULL or "auto"), first hit wins:
 *   1. the image manifest annotation com.amazon.soci.index-digest (v2);
 *   2. the first referrer of the manifest digest with artifact type
 *      application/vnd.amazon.soci.index.v1+json (v1; the referrers API or
 *      the fallback tag "sha256-<hex>");
 *   3. none.
 * "none" disables the lookup; "sha256:…" uses that index.  The index and
 * its ztocs are fetched by digest (verified).  A layer gets the ztoc whose
 * application/octet-stream descriptor carries
 * com.amazon.soci.image-layer-digest = the layer digest; it is then read
 * lazily through registry range requests (spans verified by sn_layer).  A
 * layer without a ztoc is downloaded whole once, into cache_dir (reused
 * next time after re-hashing) or an unlinked temporary file in $TMPDIR,
 * building its ztoc in the same pass; it is used only after its digest
 * has been verified.
 *
 * Thread safety: after sn_image_open() returns, the image is immutable and
 * sn_image_pread/prefetch/stats may be called from many threads at once.
 * Ownership: the image owns everything it points to (sn_image_free).
 * Errors follow err.h; sn_image_open's message is one line that names the
 * image, layer or object at fault.
 */
#ifndef SN_IMAGE_H
#define SN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/registry.h"
#include "squashfs/sqfs.h"
#include "soci/zinfo.h"

/* What runs in the background once sn_image_start_background is called. */
enum sn_prefetch_mode {
  SN_PREFETCH_NONE = 0,
  SN_PREFETCH_AUTO,         /* the prefetch record of the dense index and
                             * the SOCI index's prefetch artifacts, replayed
                             * in record order (docs/prefetch-record.md) */
  SN_PREFETCH_ARTIFACT,     /* the prefetch artifacts only, likewise */
  SN_PREFETCH_BACKGROUND,   /* every span of every lazy layer, in order, one
                             * at a time, only while no foreground read
                             * runs, at SCHED_IDLE; then the whole-layer
                             * check unless no_layer_check */
};

struct sn_image_opts {
  struct sn_registry_opts reg;  /* credentials, TLS, mirrors, debug */
  const char *platform;         /* "os/arch[/variant]"; NULL: the host's */
  const char *index;            /* NULL/"auto", "none" or "sha256:…" */
  bool allow_v1;                /* auto: look for v1 indexes (referrers)
                                 * when the manifest names no v2 index */
  bool no_dense;                /* ignore the image's dense index
                                 * (docs/dense-index.md) */
  bool no_deps;                 /* no dependency prefetch
                                 * (docs/dependency-prefetch.md) */
  bool no_stargz;               /* ignore eStargz TOCs (docs/estargz.md) */
  bool no_zchunked;             /* ignore zstd:chunked manifests
                                 * (docs/zstd-chunked.md) */
  const char *cache_dir;        /* whole layers and verified spans; NULL:
                                 * temporary files, no disk span cache */
  uint64_t cache_size;          /* memory span cache per layer; 0: default */
  uint32_t block_size;          /* squashfs block size; 0: 128 KiB */
  uint64_t cache_dir_size;      /* bound of cache_dir in bytes; 0: none */
  enum sn_prefetch_mode prefetch;
  bool no_layer_check;          /* background: skip the whole-layer check */
  bool plan_only;               /* choose how each layer is served (the
                                 * dense tables and ztocs are fetched) but
                                 * download no layer and build no export:
                                 * for sn_image_layer_served only */
  /* Told about each span fetched (layer = index in the image). */
  void (*trace)(void *opaque, size_t layer, size_t span,
                const struct sn_span *s);
  /* Progress and lossy conversions, one line each (may be NULL). */
  void (*log)(void *opaque, const char *msg);
  /* Called by the prefetch thread after each layer and when it ends. */
  void (*progress)(void *opaque);
  void *opaque;                 /* for trace, log and progress */
};

struct sn_image;

/* An export: one squashfs image and the layers its tar regions read. */
struct sn_image_export {
  const char *name;             /* "", "layer/N" or a layer digest */
  struct sn_sqfs *sqfs;
  size_t first_layer;           /* image layer of the sqfs's layer 0 */
  uint64_t bytes_read;          /* updated atomically by sn_image_pread */
};

struct sn_image *sn_image_open(const char *image,
                               const struct sn_image_opts *o);
void sn_image_free(struct sn_image *img);

/* The image's layers, in manifest order. */
size_t sn_image_nlayers(const struct sn_image *img);
const char *sn_image_layer_digest(const struct sn_image *img, size_t i);
/* How layer i is served: "lazy-dense" (the dense index), "lazy-estargz"
 * or "lazy-zstd-chunked" (its own TOC), "lazy-soci" (a SOCI ztoc) or "whole" (downloaded
 * whole: no index covers it, or it is zstd). */
const char *sn_image_layer_served(const struct sn_image *img, size_t i);

/* Exports, in listing order: "", "flat" (the same image as ""), then
 * "layer/0", "layer/1", …, then each distinct layer digest.  A layer whose
 * overlayfs image could not be built (a hard link into a lower layer) has
 * no export; its reason is given by sn_image_find_export's error. */
size_t sn_image_nexports(const struct sn_image *img);
struct sn_image_export *sn_image_export(struct sn_image *img, size_t i);
/* By name; NULL with a message for unknown or unavailable exports. */
struct sn_image_export *sn_image_find_export(struct sn_image *img,
                                             const char *name);

/* Start the prefetch thread (after nbdkit's fork); a no-op for
 * SN_PREFETCH_NONE.  sn_image_free stops and joins it. */
int sn_image_start_background(struct sn_image *img);

/* Record the tar bytes reads use from now on (rec stays the caller's; it
 * must outlive the image's last read). */
struct sn_recorder;
void sn_image_set_recorder(struct sn_image *img, struct sn_recorder *rec);

/* Export bytes [off, off+len) (inside [0, sn_sqfs_size)): tar bytes come
 * from sn_layer_read_checked on the right layer.  0 or -1 (err.h). */
int sn_image_pread(struct sn_image *img, struct sn_image_export *e,
                   void *buf, size_t len, uint64_t off);
/* Fetch the spans behind [off, off+len) of an export into the caches. */
int sn_image_prefetch(struct sn_image *img, struct sn_image_export *e,
                      uint64_t len, uint64_t off);

/* A prefetch artifact's span ranges ({"version":"1.0","prefetch_spans":
 * [{"start_span":A,"end_span":B}, …]}; 0 <= A <= B <= INT32_MAX, not yet
 * checked against a ztoc): *out malloc'd (n + 1 entries), 0 or -1 (err.h).
 * Exposed for the fuzz target and tests. */
struct sn_prefetch_span;
int sn_image_parse_prefetch(const uint8_t *buf, size_t len,
                            struct sn_prefetch_span **out, size_t *n);

/* The statistics as one JSON object (with per-layer and per-export
 * details), malloc'd. */
char *sn_image_stats_json(struct sn_image *img);

#endif
