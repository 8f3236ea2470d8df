/* soci-nbd: which SOCI index serves an image manifest — the one rule that
 * the plugin and every command that reads an index follow.
 *
 * Trust: an index chooses every directory, link, device node and
 * checkpoint window of the image it describes, so it is only taken from a
 * binding that starts at the (digest-pinned) image manifest:
 *   explicit  a digest the user gave (index=sha256:..., --index);
 *   v2        the manifest's com.amazon.soci.index-digest annotation;
 *   v1        only when the caller opts in (soci-snapshotter >= 0.10 does
 *             not look for v1 indexes by default either): a referrer of
 *             the manifest, asked of the image's own registry, never of a
 *             mirror (sn_registry_referrers).  The referrers API and its
 *             sha256-<hex> fallback tag are mutable pointers: the index
 *             they name must still carry subject = the manifest's digest
 *             (sn_index_check), as must every v1 index, however found.
 *
 * Ownership: strings handed out are malloc'd and the caller's; documents
 * returned belong to the caller (sn_manifest_free).  Errors follow err.h.
 */
#ifndef SN_INDEX_FIND_H
#define SN_INDEX_FIND_H

#include <stdbool.h>

#include "registry/manifest.h"
#include "registry/registry.h"

enum sn_index_source {
  SN_INDEX_SRC_NONE,            /* no index: layers are fetched whole */
  SN_INDEX_SRC_EXPLICIT,        /* the digest the user gave */
  SN_INDEX_SRC_V2,              /* the manifest's annotation */
  SN_INDEX_SRC_V1,              /* a referrer (opted in) */
};

/* "none", "explicit", "v2" or "v1" (stats and logs). */
const char *sn_index_source_name(enum sn_index_source s);

/* Choose the SOCI index of image manifest m.  want is NULL or "auto"
 * (v2, then v1 when allow_v1), "none", or "sha256:<hex>".  On success
 * *digest is the index digest (NULL with SN_INDEX_SRC_NONE) and *source
 * says where it came from; *why (may be NULL) gets a static phrase for the
 * log ("no com.amazon.soci.index-digest annotation; v1 indexes not
 * enabled", ...).  A failed referrers lookup is not an error: the image is
 * served without an index, and *why says so.  -1 on a bad want or OOM. */
int sn_index_find(struct sn_registry *reg, const struct sn_manifest *m,
                  const char *want, bool allow_v1, char **digest,
                  enum sn_index_source *source, const char **why);

/* Is d, a descriptor of a referrers list (sn_registry_referrers), a v1
 * index candidate: artifactType v1 or none?  Candidates only: each must
 * pass sn_index_check once fetched. */
bool sn_index_v1_candidate(const struct sn_descriptor *d);

/* Fetch the index document named digest and check that it is a SOCI
 * index usable for m: config media type v1 or v2; a v1 index has subject
 * = m's digest; a v2 index has no subject or that one.  Returns the
 * document, or NULL with an error naming both digests. */
struct sn_manifest *sn_index_fetch(struct sn_registry *reg,
                                   const char *digest,
                                   const struct sn_manifest *m);

/* Is m a SOCI index manifest (config media type v1 or v2)? */
bool sn_index_is_soci(const struct sn_manifest *m);

/* The checks of sn_index_fetch on a document already fetched. */
int sn_index_check(const struct sn_manifest *idx, const char *digest,
                   const struct sn_manifest *m);

#endif
