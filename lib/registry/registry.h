/* soci-nbd: OCI distribution client over libcurl, and the same API over a
 * local OCI image layout directory.
 *
 * One struct sn_registry talks to one repository (registry host + name,
 * with its mirrors) or one layout directory.
 *
 * Thread safety: after sn_registry_open() returns, every function may be
 * called from many threads at once on the same struct sn_registry (the
 * plugin's threads call sn_registry_read_range concurrently).
 * DNS answers and TLS sessions are shared through a curl share handle
 * (each under its own mutex); a request borrows an easy handle, with its
 * idle connections, from a pool, so each thread uses its own handle while
 * its request runs.  The token cache (per endpoint, per scope) and the per-blob
 * location cache are behind mutexes; a token request is made by one
 * thread at a time.  Only sn_registry_close() must not race with others.
 *
 * Endpoints: mirrors (opts->mirrors, in order) then the upstream.  Pulls
 * (manifests, blobs, ranges, referrers) try each mirror and fall back to
 * the next endpoint on any failure, 404 included (containerd hosts.toml
 * semantics; mirror requests carry "?ns=<registry>"); pushes and
 * sn_registry_blob_exists go to the upstream only.  A host given without
 * a scheme uses HTTPS, except hosts in plain_http_hosts (plain HTTP) and
 * loopback hosts, which are probed once: HTTPS if it answers (or fails on
 * its certificate), else plain HTTP, as Docker does.
 *
 * Redirects (e.g. to S3 or a CDN) are followed; the Authorization header
 * is never sent to another origin.  A range read remembers, per blob,
 * the endpoint that served it and the URL it was redirected to, and goes
 * there directly next time; when that URL fails (expired: 401/403/...) it
 * asks the registry again, once.  Transient failures (connection errors,
 * 429 with Retry-After, 5xx) are retried with backoff; a whole-blob
 * download that breaks resumes with a Range request.
 *
 * Integrity: everything fetched by digest is verified (manifests, whole
 * blobs).  Range reads cannot be verified here: callers verify them (span
 * digests).  Secrets (passwords, tokens, Authorization headers) never
 * appear in error messages or debug output.
 *
 * Ownership: out-parameters are malloc'd and owned by the caller.  Errors
 * follow err.h; messages name the registry, repository and object.
 */
#ifndef SN_REGISTRY_H
#define SN_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/manifest.h"
#include "registry/ref.h"

struct sn_registry_opts {
  const char *username;      /* with password: Basic or token auth */
  const char *password;
  const char *auth_file;     /* docker config.json; NULL: $DOCKER_CONFIG,
                              * then ~/.docker/config.json */
  const char *cacert;        /* CA bundle file for TLS */
  bool insecure;             /* skip TLS verification (explicit opt-in) */
  const char *const *plain_http_hosts; /* NULL-terminated; besides
                                        * loopback, which is plain HTTP */
  const char *const *mirrors;  /* NULL-terminated URLs tried in order
                                * before the upstream ("http://h:p") */
  long timeout_ms;           /* per request; 0 → 60 s */
  int max_retries;           /* 0 → default 5; -1 → none */
  const char *user_agent;    /* NULL → "soci-nbd/VERSION" */
  void (*debug)(void *opaque, const char *msg); /* may be NULL */
  void *debug_opaque;
};

struct sn_registry;

struct sn_registry *sn_registry_open(const struct sn_ref *ref,
                                     const struct sn_registry_opts *o);
void sn_registry_close(struct sn_registry *r);

/* Manifest or index by tag or digest (verified when by digest; capped at
 * SN_MAX_DOCUMENT). */
struct sn_manifest *sn_registry_get_manifest(struct sn_registry *r,
                                             const char *tag_or_digest);

/* The image manifest for the reference and platform (want NULL = the
 * host's): follows an index/manifest list to the matching entry.  *index
 * (may be NULL) receives the top-level index when there was one. */
struct sn_manifest *sn_registry_resolve(struct sn_registry *r,
                                        const char *tag_or_digest,
                                        const struct sn_platform *want,
                                        struct sn_manifest **index);

/* A small blob (config, ztoc, SOCI index) into memory, verified, at most
 * max bytes. */
int sn_registry_get_blob_mem(struct sn_registry *r, const char *digest,
                             size_t max, uint8_t **buf, size_t *len);
/* The blob descriptor d names, the same way: refused before fetching when
 * d->size is not in (0, max] ("WHAT DIGEST: N bytes (the limit is M
 * MiB)"); other errors prefixed "WHAT DIGEST: ". */
int sn_registry_get_blob_desc(struct sn_registry *r,
                              const struct sn_descriptor *d, size_t max,
                              const char *what, uint8_t **buf, size_t *len);

/* A whole blob streamed to sink, verified against digest at the end: the
 * data is trustworthy only once this returns 0.  size is the descriptor's
 * size: the transfer stops with an error as soon as more bytes arrive, a
 * shorter blob is an error too, and the transfer's deadline grows with it
 * (sn_http_req.expect_size).  -1: unknown (no bound; avoid). */
typedef int (*sn_sink_fn)(void *opaque, const uint8_t *data, size_t len);
int sn_registry_get_blob(struct sn_registry *r, const char *digest,
                         int64_t size, sn_sink_fn sink, void *opaque);

/* Bytes [off, off+len) of a blob (Range request; 206 + Content-Range
 * checked; a 200 is accepted only for small blobs, by slicing). */
int sn_registry_read_range(struct sn_registry *r, const char *digest,
                           void *buf, size_t len, int64_t off);

/* 1 if the blob exists (its size in *size if not NULL), 0 if not. */
int sn_registry_blob_exists(struct sn_registry *r, const char *digest,
                            int64_t *size);

/* Upload a blob unless it exists (POST + monolithic PUT). */
int sn_registry_push_blob(struct sn_registry *r, const char *digest,
                          const uint8_t *data, size_t len);
/* Same, streaming from a file descriptor of known size. */
int sn_registry_push_blob_fd(struct sn_registry *r, const char *digest,
                             int fd, int64_t size);

/* A blob written as its bytes arrive (convert copies a layer while it
 * indexes it, in the same pass).  To a layout: a temporary file beside
 * the final blob, renamed into place on commit; to a registry: a
 * temporary file uploaded on commit.  The caller commits only bytes it
 * has already verified against digest (e.g. the data of a
 * sn_registry_get_blob that returned 0): commit checks the size, not the
 * digest.  commit and abort free w; abort removes what was written. */
struct sn_blob_writer;
struct sn_blob_writer *sn_blob_writer_new(struct sn_registry *r,
                                          const char *digest, int64_t size);
int sn_blob_writer_write(struct sn_blob_writer *w, const uint8_t *data,
                         size_t len);
int sn_blob_writer_commit(struct sn_blob_writer *w);
void sn_blob_writer_abort(struct sn_blob_writer *w);

/* PUT a manifest or index by tag or by digest. */
int sn_registry_put_manifest(struct sn_registry *r, const char *tag_or_digest,
                             const char *media_type, const uint8_t *data,
                             size_t len);

/* Referrers of a manifest digest, filtered by artifact type (NULL = all):
 * the referrers API, or the fallback tag "sha256-<hex>" when the registry
 * has no such API.  Returns an index (possibly with no entries).  Asked
 * of the image's own registry only, never of a mirror: a referrer points
 * at unpinned content, so it must come from where the image lives.
 * sn_registry_put_manifest of a manifest with a subject keeps that
 * fallback tag up to date when the registry does not answer with an
 * OCI-Subject header (no referrers API). */
struct sn_manifest *sn_registry_referrers(struct sn_registry *r,
                                          const char *digest,
                                          const char *artifact_type);

#endif
