/* soci-nbd: internal to lib/registry/ocilayout*.c — the layout handle and
 * the helpers that ocilayout.c (open, reads, referrers) shares with
 * ocilayout-write.c (layout creation, blob and index.json writes).  Not an
 * interface: see ocilayout.h.  Errors follow err.h.
 */
#ifndef SN_OCILAYOUT_INT_H
#define SN_OCILAYOUT_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/ocilayout.h"
#include "util/digest.h"

#define REF_NAME "org.opencontainers.image.ref.name"
#define CHUNK ((size_t) 1 << 20)

struct sn_layout {
  char *dir;
  char *default_tag;
  pthread_mutex_t lock;       /* serializes writers */
};

/* "<dir>/<rel>", malloc'd; NULL on OOM. */
char *layout_path_of(const struct sn_layout *l, const char *rel);

/* "<dir>/blobs/sha256/<hex>" of a valid sha256 digest, malloc'd; NULL
 * (with a message) for a malformed digest. */
char *layout_blob_path(const struct sn_layout *l, const char *digest);

/* 0 when dir holds an "oci-layout" file saying imageLayoutVersion 1.x;
 * -1 with a message otherwise. */
int layout_check(const struct sn_layout *l);

/* index.json parsed (duplicate keys refused), with a "manifests" array
 * checked; the caller owns the reference.  NULL with a message. */
json_t *layout_load_index(const struct sn_layout *l);

/* An index.json entry's tag (its ref.name annotation), or NULL. */
const char *layout_entry_tag(json_t *e);

#endif
