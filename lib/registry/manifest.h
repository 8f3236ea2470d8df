/* soci-nbd: OCI / Docker manifests and indexes — parsing, descriptors,
 * platform selection.
 *
 * Accepts OCI image manifest and index, Docker schema2 manifest and
 * manifest list.  Ownership: a struct sn_manifest owns everything it
 * points to, including the raw bytes (sn_manifest_free).  Errors follow
 * err.h.
 */
#ifndef SN_MANIFEST_H
#define SN_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define SN_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define SN_MT_DOCKER_MANIFEST \
  "application/vnd.docker.distribution.manifest.v2+json"
#define SN_MT_DOCKER_LIST \
  "application/vnd.docker.distribution.manifest.list.v2+json"
#define SN_MAX_DOCUMENT (4 << 20) /* manifests, indexes, configs */

struct sn_platform {
  char *os, *architecture, *variant; /* variant may be NULL */
};

struct sn_annotation {
  char *key, *value;
};

struct sn_descriptor {
  char *media_type;
  char *digest;
  int64_t size;
  char *artifact_type;                 /* or NULL */
  struct sn_platform *platform;        /* or NULL */
  struct sn_annotation *annotations;   /* sorted by key */
  size_t nannotations;
};

struct sn_manifest {
  char *media_type;       /* from the document, else the Content-Type */
  char *digest;           /* sha256 of raw */
  uint8_t *raw;
  size_t raw_len;
  bool is_index;
  /* image manifest */
  struct sn_descriptor config;
  struct sn_descriptor *layers;
  size_t nlayers;
  struct sn_descriptor *subject;       /* or NULL */
  char *artifact_type;                 /* or NULL */
  /* index / manifest list */
  struct sn_descriptor *manifests;
  size_t nmanifests;
  struct sn_annotation *annotations;   /* sorted by key */
  size_t nannotations;
};

/* Parse raw (copied).  content_type (may be NULL; parameters ignored) is
 * used when the document has no mediaType; with neither, the kind is
 * inferred from "manifests" vs "config"/"layers".  Validates digests
 * (sha256 only), sizes (integers >= 0), media types, required fields;
 * refuses schemaVersion != 2, Docker schema1, unknown media types,
 * duplicate JSON keys and documents over SN_MAX_DOCUMENT.  digest is
 * computed over raw.  subject and artifact_type are filled for indexes
 * too. */
struct sn_manifest *sn_manifest_parse(const uint8_t *raw, size_t len,
                                      const char *content_type);
void sn_manifest_free(struct sn_manifest *m);

/* m's artifact type as a referrers list gives it: its artifactType, else
 * an image manifest's config media type, else NULL. */
const char *sn_manifest_artifact_type(const struct sn_manifest *m);

/* m's descriptor as a referrers index lists it (mediaType, digest, size,
 * artifactType, annotations copied): a new jansson object the caller
 * owns, or NULL (out of memory, message set). */
struct json_t;
struct json_t *sn_manifest_referrer_descriptor(const struct sn_manifest *m);

const char *sn_annotation_get(const struct sn_annotation *a, size_t n,
                              const char *key);

/* "os/arch[/variant]" → platform (lower-cased; variant NULL if absent). */
int sn_platform_parse(const char *s, struct sn_platform *p);
void sn_platform_clear(struct sn_platform *p);
/* The host's platform (linux/amd64, linux/arm64/v8, ...). */
int sn_platform_host(struct sn_platform *p);
/* containerd-style match after normalization (x86_64 = amd64, aarch64 =
 * arm64, arm64 "" = "v8", arm "" = "v7", amd64 "" = "v1"): os and
 * architecture equal, and the variants equal, or want has no variant (any
 * matches; but arm without a variant is arm/v7), or want is arm/vN and
 * have is arm/vM with 5 <= M < N. */
bool sn_platform_matches(const struct sn_platform *want,
                         const struct sn_platform *have);
/* The best index entry that is an image manifest for want: an exact
 * variant first, then the first other match (for arm the highest lower
 * version), then an entry without a platform; ties go to the earlier
 * entry.  Entries that are not OCI/Docker image manifests, that have an
 * artifactType (SOCI indexes), or that are attestations (platform
 * unknown/unknown or a vnd.docker.reference.type annotation) are skipped.
 * NULL with "no manifest for linux/s390x in index; available: linux/amd64,
 * linux/arm64/v8" when none fits. */
const struct sn_descriptor *
sn_manifest_select(const struct sn_manifest *index,
                   const struct sn_platform *want);

/* Layer media type classification (exact media types: OCI tar, tar+gzip,
 * tar+zstd incl. nondistributable; Docker rootfs.diff.tar[.gzip|.zstd]
 * incl. foreign; anything else, NULL included, is OTHER). */
enum sn_layer_kind {
  SN_LAYER_KIND_GZIP, SN_LAYER_KIND_TAR, SN_LAYER_KIND_ZSTD,
  SN_LAYER_KIND_OTHER,
};
enum sn_layer_kind sn_layer_kind(const char *media_type);

#endif
