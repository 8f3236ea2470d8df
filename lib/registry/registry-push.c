/* soci-nbd: pushes of the OCI distribution client (registry.h) — blobs
 * (monolithic upload, skipped when the registry has them), the blob
 * writer that gathers a blob in a temporary file before pushing it, and
 * manifests, keeping the referrers fallback tag up to date for registries
 * without the referrers API.  oci-layout: references go to ocilayout.c.
 */
#include <config.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/err.h"
#include "registry/http.h"
#include "registry/ocilayout.h"
#include "registry/registry.h"
#include "registry/registry-int.h"

/* ---- push -------------------------------------------------------------- */

/* Upload a blob to the upstream from data or fd (size bytes), unless it
 * is there with that size: POST for an upload URL, then one PUT. */
static int
push_blob(struct sn_registry *r, const char *digest, const uint8_t *data,
          int fd, int64_t size)
{
  static const char *const put_hdrs[] = {
    "Content-Type: application/octet-stream", NULL };
  struct endpoint *ep = reg_upstream(r);
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  char what[120], *url = NULL, *loc = NULL, *put = NULL, *esc = NULL;
  int64_t have = -1;
  int rc = -1, e;

  snprintf(what, sizeof what, "blob %s", digest);
  e = sn_registry_blob_exists(r, digest, &have);
  if (e == -1)
    return -1;
  if (e == 1 && (have < 0 || have == size)) {
    reg_debugf(r, "%s: already in %s", what, r->what);
    return 0;
  }
  reg_ep_ready(r, ep);
  if (asprintf(&url, "%s/%s/blobs/uploads/", ep->base, r->repo) < 0) {
    url = NULL;
    sn_oom();
    goto out;
  }
  q.method = "POST";
  q.url = url;
  q.no_redirect = true;
  if (reg_ep_request(r, ep, true, true, &q, &resp) == -1)
    goto out;
  if (resp.status != 202 || resp.location == NULL) {
    if (resp.status == 202)
      sn_set_error("%s: %s: upload without a Location", r->what, what);
    else
      reg_status_error(r, ep, what, &resp);
    goto out;
  }
  loc = sn_http_resolve(url, resp.location);
  esc = sn_http_escape(digest);
  if (loc == NULL || esc == NULL
      || asprintf(&put, "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?",
                  esc) < 0) {
    put = NULL;
    sn_set_error("%s: %s: invalid upload Location", r->what, what);
    goto out;
  }
  memset(&q, 0, sizeof q);
  q.method = "PUT";
  q.url = put;
  q.headers = put_hdrs;
  q.body = data;
  q.body_fd = fd;
  q.body_size = size;
  /* The upload location may be on another host: no credentials there. */
  if (reg_ep_request(r, ep, true, sn_http_same_origin(put, ep->base), &q,
                     &resp) == -1)
    goto out;
  if (resp.status != 201) {
    reg_status_error(r, ep, what, &resp);
    goto out;
  }
  if (resp.docker_content_digest
      && strcmp(resp.docker_content_digest, digest) != 0) {
    sn_set_error("%s: %s: the registry stored it as %.80s", r->what, what,
                 resp.docker_content_digest);
    goto out;
  }
  rc = 0;
out:
  sn_http_resp_clear(&resp);
  free(url);
  free(loc);
  free(put);
  free(esc);
  return rc;
}

/* Check data against digest, then push it (an empty blob too). */
int
sn_registry_push_blob(struct sn_registry *r, const char *digest,
                      const uint8_t *data, size_t len)
{
  char computed[SN_DIGEST_STRLEN + 1];

  if (reg_check_digest(digest) == -1)
    return -1;
  sn_digest_of(data, len, computed);
  if (strcmp(computed, digest) != 0)
    return sn_set_error("push blob %s: the data has digest %s", digest,
                        computed);
  if (r->layout)
    return sn_layout_push_blob(r->layout, digest, data, len);
  if (len == 0) {
    /* An empty body: the memory path with a non-NULL pointer. */
    static const uint8_t empty[1];

    return push_blob(r, digest, empty, -1, 0);
  }
  return push_blob(r, digest, data, -1, (int64_t) len);
}

int
sn_registry_push_blob_fd(struct sn_registry *r, const char *digest, int fd,
                         int64_t size)
{
  if (reg_check_digest(digest) == -1)
    return -1;
  if (size < 0)
    return sn_set_error("push blob %s: invalid size", digest);
  if (r->layout)
    return sn_layout_push_blob_fd(r->layout, digest, fd, size);
  return push_blob(r, digest, NULL, fd, size);
}

/* A blob being gathered in a temporary file (see registry.h). */
struct sn_blob_writer {
  struct sn_registry *r;
  char digest[SN_DIGEST_STRLEN + 1];
  int64_t size;
  int fd;                       /* the temporary file */
  FILE *tmpf;                   /* registry: the tmpfile() owning fd */
  char *tmp;                    /* layout: the temporary file's path */
  uint8_t *buf;                 /* WRITER_BUF bytes gathered for write(2) */
  size_t used;
};

/* Small pieces (curl's 16 KiB) are gathered into a buffer of this size;
 * a piece at least half as large goes straight to write(2), uncopied. */
#define WRITER_BUF ((size_t) 1 << 20)

/* write(2) all of data to the temporary file. */
static int
writer_put(struct sn_blob_writer *w, const uint8_t *data, size_t len)
{
  while (len > 0) {
    ssize_t n = write(w->fd, data, len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      return sn_set_error("blob %s: writing a temporary file: %s", w->digest,
                          n == -1 ? strerror(errno) : "short write");
    data += n;
    len -= (size_t) n;
  }
  return 0;
}

static int
writer_flush(struct sn_blob_writer *w)
{
  int r = writer_put(w, w->buf, w->used);

  w->used = 0;
  return r;
}

/* A writer with its buffer and temporary file: beside the blob in a
 * layout, an anonymous tmpfile() for a registry. */
struct sn_blob_writer *
sn_blob_writer_new(struct sn_registry *r, const char *digest, int64_t size)
{
  struct sn_blob_writer *w;

  if (reg_check_digest(digest) == -1)
    return NULL;
  if ((w = calloc(1, sizeof *w)) == NULL || (w->buf = malloc(WRITER_BUF))
      == NULL) {
    free(w);
    sn_oom();
    return NULL;
  }
  w->r = r;
  w->size = size;
  snprintf(w->digest, sizeof w->digest, "%s", digest);
  if (r->layout)
    w->fd = sn_layout_blob_tmp(r->layout, digest, &w->tmp);
  else if ((w->tmpf = tmpfile()) != NULL)
    w->fd = fileno(w->tmpf);
  else {
    sn_set_error("temporary file: %s", strerror(errno));
    w->fd = -1;
  }
  if (w->fd == -1) {
    free(w->buf);
    free(w);
    return NULL;
  }
  return w;
}

int
sn_blob_writer_write(struct sn_blob_writer *w, const uint8_t *data,
                     size_t len)
{
  if (len >= WRITER_BUF / 2)    /* in order: what is gathered goes first */
    return writer_flush(w) == -1 ? -1 : writer_put(w, data, len);
  if (w->used + len > WRITER_BUF && writer_flush(w) == -1)
    return -1;
  memcpy(w->buf + w->used, data, len);
  w->used += len;
  return 0;
}

/* Flush, then adopt the file into the layout or check its size and
 * push it; frees w either way. */
int
sn_blob_writer_commit(struct sn_blob_writer *w)
{
  int rc = -1;

  if (writer_flush(w) == -1)
    goto out;
  if (w->tmp) {
    if (fsync(w->fd) == -1) {
      sn_set_error("%s: fsync: %s", w->tmp, strerror(errno));
      goto out;
    }
    rc = sn_layout_blob_adopt(w->r->layout, w->digest, w->tmp, w->size);
    free(w->tmp);               /* adopted or removed */
    w->tmp = NULL;
  }
  else if (lseek(w->fd, 0, SEEK_END) != w->size)
    sn_set_error("blob %s: size differs from its descriptor", w->digest);
  else if (lseek(w->fd, 0, SEEK_SET) == -1)
    sn_set_error("temporary file: %s", strerror(errno));
  else
    rc = sn_registry_push_blob_fd(w->r, w->digest, w->fd, w->size);
out:
  sn_blob_writer_abort(w);
  return rc;
}

void
sn_blob_writer_abort(struct sn_blob_writer *w)
{
  if (w == NULL)
    return;
  if (w->tmpf)
    fclose(w->tmpf);
  else if (w->fd != -1)
    close(w->fd);
  free(w->buf);
  if (w->tmp) {
    unlink(w->tmp);
    free(w->tmp);
  }
  free(w);
}

/* PUT a manifest (computed: its digest) to the upstream as ref;
 * *has_subject_api (may be NULL): did the answer carry OCI-Subject? */
static int
put_manifest_on(struct sn_registry *r, const char *ref, const char *mt,
                const uint8_t *data, size_t len, const char *computed,
                bool *has_subject_api)
{
  struct endpoint *ep = reg_upstream(r);
  struct sn_http_req q = { 0 };
  struct sn_http_resp resp = { 0 };
  char ct[300], what[200];
  const char *hdrs[] = { ct, NULL };
  char *url = reg_api_url(r, ep, "manifests", ref, NULL);
  int rc = -1;

  if (url == NULL)
    return -1;
  snprintf(ct, sizeof ct, "Content-Type: %s", mt);
  snprintf(what, sizeof what, "put manifest %s", ref);
  q.method = "PUT";
  q.url = url;
  q.headers = hdrs;
  q.body = data;
  q.body_size = (int64_t) len;
  if (reg_ep_request(r, ep, true, true, &q, &resp) == -1)
    goto out;
  if (resp.status != 201 && resp.status != 200) {
    reg_status_error(r, ep, what, &resp);
    goto out;
  }
  if (resp.docker_content_digest
      && strncmp(resp.docker_content_digest, "sha256:", 7) == 0
      && strcmp(resp.docker_content_digest, computed) != 0) {
    sn_set_error("%s: %s: the registry stored %.80s, not %s", r->what, what,
                 resp.docker_content_digest, computed);
    goto out;
  }
  if (has_subject_api)
    *has_subject_api = resp.oci_subject != NULL;
  rc = 0;
out:
  sn_http_resp_clear(&resp);
  free(url);
  return rc;
}

/* The fallback tag of a digest: "sha256-<hex>". */
void
reg_fallback_tag(const char *digest, char out[SN_DIGEST_STRLEN + 1])
{
  snprintf(out, SN_DIGEST_STRLEN + 1, "sha256-%s", digest + 7);
}

/* Add the manifest m (digest, raw) to the fallback tag index of its
 * subject, for registries without the referrers API. */
static int
update_fallback_tag(struct sn_registry *r, const struct sn_manifest *m)
{
  char tag[SN_DIGEST_STRLEN + 1], computed[SN_DIGEST_STRLEN + 1];
  struct sn_manifest *old = NULL;
  json_t *root = NULL, *arr, *d = NULL;
  char *out = NULL;
  size_t i;
  int rc = -1;

  reg_fallback_tag(m->subject->digest, tag);
  old = reg_manifest_on(r, reg_upstream(r), tag);
  if (old == NULL && strstr(sn_error(), "HTTP 404") == NULL)
    return sn_prefix_error("referrers tag %s: ", tag);
  if (old && !old->is_index) {
    sn_manifest_free(old);
    return sn_set_error("%s: tag %s is not an index", r->what, tag);
  }
  if (old) {
    for (i = 0; i < old->nmanifests; i++)
      if (strcmp(old->manifests[i].digest, m->digest) == 0) {
        sn_manifest_free(old);
        return 0;
      }
    root = json_loadb((const char *) old->raw, old->raw_len, 0, NULL);
  }
  else
    root = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType",
                     SN_MT_OCI_INDEX, "manifests");
  arr = root ? json_object_get(root, "manifests") : NULL;
  if (!json_is_array(arr)) {
    sn_set_error("%s: tag %s: cannot update the index", r->what, tag);
    goto out;
  }
  d = sn_manifest_referrer_descriptor(m);
  if (d == NULL)
    goto out;
  if (json_array_append_new(arr, d) == -1) {
    d = NULL;
    goto oom;
  }
  d = NULL;
  out = json_dumps(root, JSON_COMPACT);
  if (out == NULL)
    goto oom;
  sn_digest_of((const uint8_t *) out, strlen(out), computed);
  rc = put_manifest_on(r, tag, SN_MT_OCI_INDEX, (const uint8_t *) out,
                       strlen(out), computed, NULL);
  goto out;
oom:
  sn_oom();
out:
  json_decref(d);
  json_decref(root);
  free(out);
  sn_manifest_free(old);
  return rc;
}

/* Check the reference, media type, size and digest, then put the
 * manifest; one with a subject also updates the fallback tag unless the
 * registry has the referrers API. */
int
sn_registry_put_manifest(struct sn_registry *r, const char *tag_or_digest,
                         const char *media_type, const uint8_t *data,
                         size_t len)
{
  char computed[SN_DIGEST_STRLEN + 1];
  struct sn_manifest *m;
  bool api = false;
  int rc;

  if (reg_check_reference(tag_or_digest) == -1)
    return -1;
  if (media_type == NULL || *media_type == '\0' || strchr(media_type, '\n')
      || strchr(media_type, '\r') || strlen(media_type) > 255)
    return sn_set_error("put manifest: invalid media type");
  if (len > SN_MAX_DOCUMENT)
    return sn_set_error("put manifest: %zu bytes is over the %d byte limit",
                        len, SN_MAX_DOCUMENT);
  sn_digest_of(data, len, computed);
  if (reg_is_digest(tag_or_digest) && strcmp(tag_or_digest, computed) != 0)
    return sn_set_error("put manifest %s: the data has digest %s",
                        tag_or_digest, computed);
  if (r->layout)
    return sn_layout_put_manifest(r->layout, tag_or_digest, media_type, data,
                                  len);
  if (put_manifest_on(r, tag_or_digest, media_type, data, len, computed,
                      &api) == -1)
    return -1;
  if (api)
    return 0;
  /* No OCI-Subject in the answer: keep the fallback tag up to date. */
  m = sn_manifest_parse(data, len, media_type);
  if (m == NULL)
    return 0;                   /* not ours to judge; it was accepted */
  rc = m->subject ? update_fallback_tag(r, m) : 0;
  sn_manifest_free(m);
  return rc;
}
