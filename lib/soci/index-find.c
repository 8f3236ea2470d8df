/* soci-nbd: choosing and checking the SOCI index of an image manifest
 * (index-find.h): the trust rule for indexes, written once. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "util/digest.h"
#include "util/err.h"
#include "soci/index-find.h"
#include "soci/index.h"

const char *
sn_index_source_name(enum sn_index_source s)
{
  switch (s) {
  case SN_INDEX_SRC_EXPLICIT: return "explicit";
  case SN_INDEX_SRC_V2: return "v2";
  case SN_INDEX_SRC_V1: return "v1";
  default: return "none";
  }
}

bool
sn_index_v1_candidate(const struct sn_descriptor *d)
{
  return d->artifact_type == NULL ||
         strcmp(d->artifact_type, SN_MT_SOCI_INDEX_V1) == 0;
}

/* The order of index-find.h: "none", an explicit digest, the v2
 * annotation, then (opted in) the first v1 candidate among the referrers.
 * Nothing found is not an error; *why says why. */
int
sn_index_find(struct sn_registry *reg, const struct sn_manifest *m,
              const char *want, bool allow_v1, char **digest,
              enum sn_index_source *source, const char **why)
{
  const char *v2, *dummy;
  struct sn_manifest *refs;
  size_t i;

  *digest = NULL;
  *source = SN_INDEX_SRC_NONE;
  if (why == NULL)
    why = &dummy;
  if (want && strcmp(want, "none") == 0) {
    *why = "index=none";
    return 0;
  }
  if (want && strcmp(want, "auto") != 0) {
    uint8_t d[SN_SHA256_LEN];

    if (sn_digest_parse(want, strlen(want), d) == -1)
      return sn_set_error("index=%s: expected auto, none or sha256:<hex>",
                          want);
    *source = SN_INDEX_SRC_EXPLICIT;
    *why = "given explicitly";
    *digest = strdup(want);
    return *digest ? 0 : sn_oom();
  }
  v2 = sn_annotation_get(m->annotations, m->nannotations,
                         SN_ANN_INDEX_DIGEST);
  if (v2) {
    *source = SN_INDEX_SRC_V2;
    *why = "named by the image manifest's " SN_ANN_INDEX_DIGEST
           " annotation";
    *digest = strdup(v2);
    return *digest ? 0 : sn_oom();
  }
  if (!allow_v1) {
    *why = "no " SN_ANN_INDEX_DIGEST " annotation, and v1 indexes "
           "(referrers) are not enabled";
    return 0;
  }
  refs = sn_registry_referrers(reg, m->digest, SN_MT_SOCI_INDEX_V1);
  if (refs == NULL) {
    *why = "no " SN_ANN_INDEX_DIGEST " annotation, and the referrers "
           "lookup failed";
    return 0;
  }
  for (i = 0; i < refs->nmanifests; i++)
    if (sn_index_v1_candidate(&refs->manifests[i]))
      break;
  if (i < refs->nmanifests) {
    *digest = strdup(refs->manifests[i].digest);
    if (*digest == NULL) {
      sn_manifest_free(refs);
      return sn_oom();
    }
    *source = SN_INDEX_SRC_V1;
    *why = "the first v1 index among the manifest's referrers";
  }
  else
    *why = "no " SN_ANN_INDEX_DIGEST " annotation, and no v1 index "
           "among the referrers";
  sn_manifest_free(refs);
  return 0;
}

bool
sn_index_is_soci(const struct sn_manifest *m)
{
  const char *type = m->config.media_type;

  return !m->is_index && type &&
    (strcmp(type, SN_MT_SOCI_INDEX_V1) == 0 ||
     strcmp(type, SN_MT_SOCI_INDEX_V2) == 0);
}

/* The subject rule of index-find.h: a v1 index must name m as subject, a
 * v2 one may omit it but not name another manifest. */
int
sn_index_check(const struct sn_manifest *idx, const char *digest,
               const struct sn_manifest *m)
{
  const char *type = idx->config.media_type;
  bool v1;

  if (!sn_index_is_soci(idx))
    return sn_set_error("%s is not a SOCI index (config media type %s)",
                        digest, type ? type : "none");
  v1 = strcmp(type, SN_MT_SOCI_INDEX_V1) == 0;
  if (idx->subject == NULL && v1)
    return sn_set_error("SOCI index %s (v1) has no subject: it is not "
                        "bound to image manifest %s", digest, m->digest);
  if (idx->subject && strcmp(idx->subject->digest, m->digest) != 0)
    return sn_set_error("SOCI index %s belongs to manifest %s, not %s",
                        digest, idx->subject->digest, m->digest);
  return 0;
}

/* Fetch by digest (so the bytes are digest-checked), then check. */
struct sn_manifest *
sn_index_fetch(struct sn_registry *reg, const char *digest,
               const struct sn_manifest *m)
{
  struct sn_manifest *idx = sn_registry_get_manifest(reg, digest);

  if (idx == NULL) {
    sn_prefix_error("SOCI index %s: ", digest);
    return NULL;
  }
  if (sn_index_check(idx, digest, m) == -1) {
    sn_manifest_free(idx);
    return NULL;
  }
  return idx;
}
