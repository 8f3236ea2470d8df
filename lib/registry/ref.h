/* soci-nbd: image references, with Docker's normalization.
 *
 *   ubuntu                      → docker.io/library/ubuntu:latest
 *   127.0.0.1:5000/a/b@sha256:… → registry 127.0.0.1:5000, repo a/b, digest
 *   oci-layout:/srv/img[:TAG]   → a local OCI image layout directory
 *
 * A first path component is a registry host when it contains '.' or ':',
 * is "localhost", or has an upper-case letter (Docker's rule);
 * "index.docker.io" becomes "docker.io".  Only sha256 digests are accepted.
 * oci-layout:DIR[:TAG][@sha256:…]: the TAG is what follows the last ':'
 * when it matches the tag grammar (no '/'), else DIR keeps the ':'.
 * Ownership: struct sn_ref owns its strings (sn_ref_clear).  Errors follow
 * err.h; on failure *r is left cleared.
 */
#ifndef SN_REF_H
#define SN_REF_H

#include <stdbool.h>

enum sn_ref_kind { SN_REF_REGISTRY, SN_REF_OCI_LAYOUT };

struct sn_ref {
  enum sn_ref_kind kind;
  char *registry;    /* "docker.io", "127.0.0.1:5000"; NULL for layouts */
  char *repository;  /* "library/ubuntu"; NULL for layouts */
  char *tag;         /* "latest" when neither tag nor digest was given */
  char *digest;      /* "sha256:…" or NULL; wins over tag for fetching */
  char *layout_dir;  /* oci-layout: directory, else NULL */
  bool tag_defaulted; /* tag is the default "latest" (none was given): a
                       * layout may then use its only manifest instead */
};

int sn_ref_parse(const char *s, struct sn_ref *r);
void sn_ref_clear(struct sn_ref *r);
/* The normalized string form ("docker.io/library/ubuntu:latest", both
 * tag and digest when both were given; a layout omits a defaulted tag),
 * which sn_ref_parse reads back to the same names, tag and digest;
 * malloc'd, caller frees. */
char *sn_ref_string(const struct sn_ref *r);
/* The host to talk to for r->registry: docker.io → registry-1.docker.io.
 * NULL for layouts. */
const char *sn_ref_api_host(const struct sn_ref *r);
/* True for localhost, 127.0.0.0/8 and ::1 hosts, with or without a port
 * ("[::1]:5000"); these use plain HTTP by default. */
bool sn_ref_is_loopback(const char *host);

#endif
