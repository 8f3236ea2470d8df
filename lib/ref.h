/* soci-nbd: image references, with Docker's normalization.
 *
 *   ubuntu                      → docker.io/library/ubuntu:latest
 *   127.0.0.1:5000/a/b@sha256:… → registry 127.0.0.1:5000, repo a/b, digest
 *   oci-layout:/srv/img[:TAG]   → a local OCI image layout directory
 *
 * A first path component is a registry host when it contains '.' or ':'
 * or is "localhost" (Docker's rule).  Ownership: struct sn_ref owns its
 * strings (sn_ref_clear).  Errors follow err.h.
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
  char *digest;      /* "sha256:…" or NULL */
  char *layout_dir;  /* oci-layout: directory, else NULL */
};

int sn_ref_parse(const char *s, struct sn_ref *r);
void sn_ref_clear(struct sn_ref *r);
/* The normalized string form; malloc'd, caller frees. */
char *sn_ref_string(const struct sn_ref *r);
/* The host to talk to for r->registry: docker.io → registry-1.docker.io. */
const char *sn_ref_api_host(const struct sn_ref *r);
/* True for localhost, 127.0.0.0/8 and ::1 hosts (plain HTTP by default). */
bool sn_ref_is_loopback(const char *host);

#endif
