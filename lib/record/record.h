/* soci-nbd: prefetch records (docs/prefetch-record.md) — the ordered list
 * of the layer bytes a real run read (a container's start, a VM's boot),
 * written by the plugin's record= key, attached to an image by "convert
 * --prefetch-record" and "prefetch add", and replayed at start by
 * prefetch=auto.
 *
 * A record names layers by digest and, per range, the uncompressed tar
 * bytes [off, off+len) of one of them, in the order they were first read.
 * The document is JSON:
 *   {"mediaType":"application/vnd.soci-nbd.prefetch-record.v1+json",
 *    "layers":["sha256:<hex>",...],"ranges":[[LAYER,OFF,LEN],...]}
 *
 * Ownership: a struct sn_record owns its arrays (sn_record_clear).  A
 * recorder owns its copy of the path and digests.  Errors follow
 * util/err.h: -1 (or NULL) with a one-line message.
 */
#ifndef SN_RECORD_H
#define SN_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_RECORD_MEDIA_TYPE "application/vnd.soci-nbd.prefetch-record.v1+json"
#define SN_RECORD_MAX_LAYERS 1024
#define SN_RECORD_MAX_RANGES ((size_t) 1 << 20)
/* The largest record document parsed (bytes). */
#define SN_RECORD_MAX_SIZE ((size_t) 64 << 20)

struct sn_record_range {
  uint32_t layer;               /* index into sn_record.layers */
  uint64_t off, len;            /* tar bytes [off, off+len); len > 0,
                                 * off + len <= INT64_MAX */
};

struct sn_record {
  char **layers;                /* "sha256:<64 lowercase hex>", distinct */
  size_t nlayers;
  struct sn_record_range *ranges;   /* in the order first read */
  size_t nranges;
};

/* Parse and check a record document: the mediaType, distinct well-formed
 * digests, every range naming a listed layer, len > 0, no overflow, at
 * most SN_RECORD_MAX_LAYERS / SN_RECORD_MAX_RANGES / SN_RECORD_MAX_SIZE.
 * Unknown members are ignored.  Zero ranges is a valid record.  0 and
 * *out filled (the caller clears it), or -1 (*out left empty). */
int sn_record_parse(const uint8_t *buf, size_t len, struct sn_record *out);

/* The document for r (compact, members in the order above; the same
 * record always gives the same bytes): *out malloc'd, not NUL-terminated.
 * 0 or -1. */
int sn_record_encode(const struct sn_record *r, uint8_t **out, size_t *len);

void sn_record_clear(struct sn_record *r);

/* Bind r to an image whose n layers have the given digests and
 * uncompressed (tar) sizes: map[k] (r->nlayers entries, the caller's) is
 * the image layer of r->layers[k].  -1 naming the first record layer the
 * image does not have ("the record names layer sha256:… which the image
 * does not have"), or the first range past its layer's end. */
int sn_record_bind(const struct sn_record *r, const char *const *digests,
                   const int64_t *sizes, size_t n, size_t *map);

/* ---- recording (the plugin's record= key) ---- */

struct sn_recorder_opts {
  const char *path;             /* where the record is written (atomically:
                                 * a temporary file renamed over it) */
  double idle_seconds;          /* stop at the first gap this long after
                                 * the first read; 0: no idle stop */
  uint64_t limit_bytes;         /* stop once this many bytes are recorded;
                                 * 0: no limit */
  /* One line when the record is written or fails to be (may be NULL). */
  void (*log)(void *opaque, const char *msg);
  void *opaque;
};

struct sn_recorder;

/* A recorder for an image of n layers with these digests (copied). */
struct sn_recorder *sn_recorder_new(const struct sn_recorder_opts *o,
                                    const char *const *digests, size_t n);
/* Start the thread that ends the record at the first idle gap (after
 * nbdkit's fork).  0 or -1. */
int sn_recorder_start(struct sn_recorder *r);
/* A read of tar bytes [off, off+len) of image layer `layer`.  Bytes
 * already recorded are dropped; what is left is appended, merged into the
 * last range when it continues it.  Thread-safe; a no-op once the record
 * has ended. */
void sn_recorder_note(struct sn_recorder *r, size_t layer, uint64_t off,
                      uint64_t len);
/* End the record (if it has not ended) and write it, once.  Only layers
 * with ranges are listed, in the order first read.  0 or -1. */
int sn_recorder_finish(struct sn_recorder *r);
/* Counters for the stats file: ranges and bytes recorded, and whether the
 * record has been written. */
void sn_recorder_stats(struct sn_recorder *r, size_t *nranges,
                       uint64_t *bytes, bool *written);
/* sn_recorder_finish, then stop the thread and free. */
void sn_recorder_free(struct sn_recorder *r);

#endif
