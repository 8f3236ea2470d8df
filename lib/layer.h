/* soci-nbd: one layer at run time — its ztoc, its zinfo, and a source of
 * compressed blob bytes (a local file now; the registry later).  Reads of
 * uncompressed tar bytes go span by span: fetch the compressed span,
 * verify it against the ztoc's span digest, inflate it from its
 * checkpoint.  Nothing unverified is ever returned.
 *
 * Before file bytes are served, the file's tar header region can be
 * re-parsed from verified spans and compared with its ztoc entry
 * (sn_layer_check_file), so a lying ztoc cannot map one file onto
 * another's bytes.
 *
 * Ownership: sn_layer_new() takes ownership of the ztoc.  Errors follow
 * err.h.  A struct sn_layer is not thread-safe yet.
 */
#ifndef SN_LAYER_H
#define SN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "zinfo.h"
#include "ztoc.h"

/* Read exactly len compressed bytes at off of the layer blob. */
typedef int (*sn_blob_read_fn)(void *opaque, void *buf, size_t len,
                               int64_t off);
/* Told about each span fetched (for --verbose and statistics). */
typedef void (*sn_span_trace_fn)(void *opaque, size_t span,
                                 const struct sn_span *s);

struct sn_layer;

struct sn_layer *sn_layer_new(struct sn_ztoc *z, sn_blob_read_fn read,
                              void *opaque);
void sn_layer_free(struct sn_layer *l);
void sn_layer_set_trace(struct sn_layer *l, sn_span_trace_fn fn,
                        void *opaque);

const struct sn_ztoc *sn_layer_ztoc(const struct sn_layer *l);
const struct sn_zinfo *sn_layer_zinfo(const struct sn_layer *l);

/* Uncompressed tar bytes [off, off+len), which must lie inside
 * [0, uncompressed_size). */
int sn_layer_read(struct sn_layer *l, void *buf, size_t len, int64_t off);

/* Re-parse f's header region from verified spans and compare it with f. */
int sn_layer_check_file(struct sn_layer *l, const struct sn_ztoc_file *f);

/* Compare a parsed tar entry with a ztoc entry (name, type, size, mode,
 * ids, link, mtime, devices, SCHILY.xattr set).  Exposed for tests. */
struct sn_tar_entry;
int sn_entry_matches(const struct sn_tar_entry *e,
                     const struct sn_ztoc_file *f);

/* A blob source reading a local file; opaque is a pointer to an int fd. */
int sn_blob_read_fd(void *opaque, void *buf, size_t len, int64_t off);

#endif
