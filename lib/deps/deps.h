/* soci-nbd: dependency prefetch — when a read brings in the start of an
 * ELF file, the shared libraries it needs are found in the export's file
 * tree and staged at once, and theirs in turn, instead of one round trip
 * per library as the dynamic linker opens them (docs/dependency-
 * prefetch.md).  A hint only: what is staged is fetched and verified like
 * any read, and a wrong guess costs bytes, never correctness.
 *
 * Ownership: sn_deps_new copies the layer array; the ztocs and layers it
 * points to must outlive the sn_deps (sn_deps_free joins its thread
 * first).  Errors follow err.h.  sn_deps_note may be called from many
 * threads at once.
 */
#ifndef SN_DEPS_H
#define SN_DEPS_H

#include <stddef.h>
#include <stdint.h>

#include "soci/ztoc.h"
#include "span/layer.h"

/* The most a dependency set stages: files, bytes of each file from its
 * start (the rest is read, and fetched, as any file is), and bytes in all
 * (what is staged stays in memory until a read decodes it).  4 MiB holds
 * the whole of most libraries, whose tails the dynamic linker and the
 * program read soon after their heads (docs/dependency-prefetch.md). */
#define SN_DEPS_MAX_FILES 1024
#define SN_DEPS_AHEAD ((int64_t) 4 << 20)
#define SN_DEPS_MAX_BYTES ((int64_t) 64 << 20)

struct sn_deps_layer {
  const struct sn_ztoc *z;      /* its file table */
  struct sn_layer *layer;       /* where its files are read and staged */
};

struct sn_deps_stats {
  uint64_t files_parsed;        /* ELF files whose dependencies were read */
  uint64_t files_staged;        /* libraries found and staged */
  uint64_t not_found;           /* names found in no library directory */
  uint64_t errors;              /* malformed ELF files, failed reads */
};

struct sn_deps;

/* A dependency prefetcher over layers[0..n), bottom first (a path in a
 * higher layer hides the same path below; whiteouts remove it).  Its
 * thread starts on the first note and builds the path index then, off the
 * reads' path.  NULL on failure (error set). */
struct sn_deps *sn_deps_new(const struct sn_deps_layer *layers, size_t n);
void sn_deps_free(struct sn_deps *d);

/* A read of [off, off+len) of layer k returned buf: each ELF file whose
 * data starts in it (with its 4-byte magic) is queued, once.  Never waits
 * for the network. */
void sn_deps_note(struct sn_deps *d, size_t k, int64_t off, const void *buf,
                  size_t len);

void sn_deps_get_stats(struct sn_deps *d, struct sn_deps_stats *st);

/* The file path resolves to in the layers, following symlinks and hard
 * links ("usr/lib/x.so", no leading '/'); NULL when it does not name a
 * regular file (or the path index could not be built: error set).  *layer
 * is its layer.  The prefetch thread's, or a caller's with no thread. */
const struct sn_ztoc_file *sn_deps_lookup(struct sn_deps *d,
                                          const char *path, size_t *layer);

#endif
