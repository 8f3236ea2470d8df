/* soci-nbd: writes to an OCI image layout directory (see ocilayout.h):
 * the layout created at the first push, blobs and index.json written to a
 * temporary file, fsync'd and renamed into place, index.json entries added
 * or replaced by tag.  Reads and referrers are in ocilayout.c.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "registry/ocilayout.h"
#include "registry/ocilayout-int.h"

/* ---- writes ------------------------------------------------------------ */

/* Write a file atomically (util/fdio.h: a temporary in the same
 * directory, fsync, rename to final).  Data from memory, or (data NULL)
 * size bytes of fd from offset 0, hashed into got when got is not NULL. */
static int
write_atomic(const char *final, const uint8_t *data, int fd, int64_t size,
             char got[SN_DIGEST_STRLEN + 1])
{
  struct sn_atomic_file f;
  char *tmpl;
  int64_t done = 0;
  uint8_t *buf = NULL, d[SN_SHA256_LEN];
  struct sn_sha256 h;
  bool hashing = false;
  int r;

  if (asprintf(&tmpl, "%s.tmp-XXXXXX", final) < 0)
    return sn_oom();
  r = sn_atomic_open(&f, final, tmpl, 0600);
  free(tmpl);
  if (r == -1)
    return sn_set_error("%s: %s", final, strerror(errno));
  if (got) {
    if (sn_sha256_init(&h) == -1)
      goto fail;
    hashing = true;
  }
  if (data == NULL && (buf = malloc(CHUNK)) == NULL) {
    sn_oom();
    goto fail;
  }
  while (done < size) {
    size_t want = (size_t) (size - done < (int64_t) CHUNK ? size - done
                            : (int64_t) CHUNK);
    const uint8_t *src = data ? data + done : buf;

    if (data == NULL) {
      ssize_t n = pread(fd, buf, want, (off_t) done);

      if (n == -1 && errno == EINTR)
        continue;
      if (n <= 0) {
        sn_set_error("reading the blob: %s", n == 0 ? "unexpected end of file"
                     : strerror(errno));
        goto fail;
      }
      want = (size_t) n;
    }
    if (hashing)
      sn_sha256_update(&h, src, want);
    if (sn_write_all(f.fd, src, want) == -1) {
      sn_set_error("%s: %s", f.tmp, strerror(errno));
      goto fail;
    }
    done += (int64_t) want;
  }
  if (hashing) {
    sn_sha256_final(&h, d);
    sn_digest_format(d, got);
    sn_sha256_free(&h);
  }
  free(buf);
  if (sn_atomic_commit(&f, 1) == -1)
    return sn_set_error("%s: %s", final, strerror(errno));
  return 0;

fail:
  if (hashing)
    sn_sha256_free(&h);
  free(buf);
  sn_atomic_abort(&f);
  return -1;
}

/* Create what is missing of the layout (blobs/sha256, an oci-layout file,
 * an empty index.json; existing files are kept), then check it.  Called
 * with l->lock held. */
static int
ensure_layout(struct sn_layout *l)
{
  static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
  static const char index[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\","
    "\"manifests\":[]}";
  char *p = NULL;
  int rc = -1;

  if ((p = layout_path_of(l, "blobs/sha256")) == NULL
      || sn_mkdir_p(p, 0755) == -1)
    goto out;
  free(p);
  if ((p = layout_path_of(l, "oci-layout")) == NULL)
    goto out;
  if (access(p, F_OK) == -1
      && write_atomic(p, (const uint8_t *) layout, -1, sizeof layout - 1,
                      NULL) == -1)
    goto out;
  free(p);
  if ((p = layout_path_of(l, "index.json")) == NULL)
    goto out;
  if (access(p, F_OK) == -1
      && write_atomic(p, (const uint8_t *) index, -1, sizeof index - 1,
                      NULL) == -1)
    goto out;
  rc = layout_check(l);
out:
  free(p);
  return rc;
}

/* Store a blob unless one of that size exists: from memory as given, from
 * fd verified while copied and renamed into place only if it matches. */
static int
push(struct sn_layout *l, const char *digest, const uint8_t *data, int fd,
     int64_t size)
{
  char got[SN_DIGEST_STRLEN + 1], *p = NULL, *tmpname = NULL;
  int64_t have;
  int rc = -1, e;

  pthread_mutex_lock(&l->lock);
  if (ensure_layout(l) == -1)
    goto out;
  e = sn_layout_blob_exists(l, digest, &have);
  if (e == -1)
    goto out;
  if (e == 1 && have == size) {
    rc = 0;
    goto out;
  }
  p = layout_blob_path(l, digest);
  if (p == NULL)
    goto out;
  if (data) {
    rc = write_atomic(p, data, -1, size, NULL);
    goto out;
  }
  /* From a file descriptor: verify while copying, under a temporary name,
   * then rename. */
  if (asprintf(&tmpname, "%s.unverified", p) < 0) {
    tmpname = NULL;
    sn_oom();
    goto out;
  }
  if (write_atomic(tmpname, NULL, fd, size, got) == -1)
    goto out;
  if (strcmp(got, digest) != 0) {
    unlink(tmpname);
    sn_set_error("push blob %s: the data has digest %s", digest, got);
    goto out;
  }
  if (rename(tmpname, p) == -1) {
    sn_set_error("rename %s: %s", p, strerror(errno));
    unlink(tmpname);
    goto out;
  }
  rc = 0;
out:
  pthread_mutex_unlock(&l->lock);
  free(tmpname);
  free(p);
  if (rc == -1)
    sn_prefix_error("%s: ", l->dir);
  return rc;
}

/* From memory; an empty blob may come with data NULL. */
int
sn_layout_push_blob(struct sn_layout *l, const char *digest,
                    const uint8_t *data, size_t len)
{
  static const uint8_t empty[1];

  return push(l, digest, len ? data : empty, -1, (int64_t) len);
}

int
sn_layout_push_blob_fd(struct sn_layout *l, const char *digest, int fd,
                       int64_t size)
{
  return push(l, digest, NULL, fd, size);
}

/* The layout is created under the lock; the temporary file (beside the
 * final blob) is made outside it. */
int
sn_layout_blob_tmp(struct sn_layout *l, const char *digest, char **tmp)
{
  char *p;
  int fd = -1;

  *tmp = NULL;
  pthread_mutex_lock(&l->lock);
  if (ensure_layout(l) == -1 || (p = layout_blob_path(l, digest)) == NULL) {
    pthread_mutex_unlock(&l->lock);
    return sn_prefix_error("%s: ", l->dir);
  }
  pthread_mutex_unlock(&l->lock);
  if (asprintf(tmp, "%s.tmp-XXXXXX", p) < 0) {
    *tmp = NULL;
    free(p);
    return sn_oom();
  }
  free(p);
  fd = mkostemp(*tmp, O_CLOEXEC);
  if (fd == -1) {
    sn_set_error("%s: %s", *tmp, strerror(errno));
    free(*tmp);
    *tmp = NULL;
  }
  return fd;
}

/* Check tmp's size, then rename it over the blob's path under the lock;
 * tmp is removed on any failure. */
int
sn_layout_blob_adopt(struct sn_layout *l, const char *digest,
                     const char *tmp, int64_t size)
{
  struct stat st;
  char *p = layout_blob_path(l, digest);
  int rc = -1;

  if (p == NULL)
    goto out;
  if (stat(tmp, &st) == -1) {
    sn_set_error("%s: %s", tmp, strerror(errno));
    goto out;
  }
  if (st.st_size != size) {
    sn_set_error("blob %s: %jd bytes written, %jd expected", digest,
                 (intmax_t) st.st_size, (intmax_t) size);
    goto out;
  }
  pthread_mutex_lock(&l->lock);
  if (rename(tmp, p) == -1)
    sn_set_error("rename %s: %s", p, strerror(errno));
  else
    rc = 0;
  pthread_mutex_unlock(&l->lock);
out:
  if (rc == -1) {
    unlink(tmp);
    sn_prefix_error("%s: ", l->dir);
  }
  free(p);
  return rc;
}

/* Push the manifest as a blob, then list it in index.json: by tag, entries
 * with that tag are replaced; by digest, it is listed once. */
int
sn_layout_put_manifest(struct sn_layout *l, const char *tag_or_digest,
                       const char *media_type, const uint8_t *data,
                       size_t len)
{
  char dg[SN_DIGEST_STRLEN + 1], *p = NULL, *s = NULL;
  uint8_t d[SN_SHA256_LEN];
  struct sn_manifest *m = NULL;
  json_t *idx = NULL, *arr, *e, *nd = NULL;
  bool by_digest;
  size_t i;
  int rc = -1;

  sn_digest_of(data, len, dg);
  if (sn_layout_push_blob(l, dg, data, len) == -1)
    return -1;
  by_digest = sn_digest_parse(tag_or_digest, strlen(tag_or_digest), d) == 0;
  m = sn_manifest_parse(data, len, media_type);
  if (m == NULL)
    return sn_prefix_error("%s: manifest %s: ", l->dir, dg);

  pthread_mutex_lock(&l->lock);
  if ((idx = layout_load_index(l)) == NULL)
    goto out;
  arr = json_object_get(idx, "manifests");
  if (by_digest) {
    json_array_foreach(arr, i, e) {
      const char *x = json_string_value(json_object_get(e, "digest"));

      if (x && strcmp(x, dg) == 0) {
        rc = 0;                 /* already listed */
        goto out;
      }
    }
  }
  else
    for (i = json_array_size(arr); i-- > 0;) {
      const char *t = layout_entry_tag(json_array_get(arr, i));

      if (t && strcmp(t, tag_or_digest) == 0)
        json_array_remove(arr, i);
    }
  nd = json_pack("{s:s, s:s, s:I}", "mediaType", m->media_type, "digest", dg,
                 "size", (json_int_t) len);
  if (nd == NULL)
    goto oom;
  if (m->artifact_type
      && json_object_set_new(nd, "artifactType",
                             json_string(m->artifact_type)) == -1)
    goto oom;
  if (!by_digest
      && json_object_set_new(nd, "annotations",
                             json_pack("{s:s}", REF_NAME,
                                       tag_or_digest)) == -1)
    goto oom;
  if (json_array_append(arr, nd) == -1)
    goto oom;
  s = json_dumps(idx, JSON_COMPACT);
  p = layout_path_of(l, "index.json");
  if (s == NULL || p == NULL)
    goto oom;
  rc = write_atomic(p, (const uint8_t *) s, -1, (int64_t) strlen(s), NULL);
  if (rc == -1)
    sn_prefix_error("%s: ", l->dir);
  goto out;
oom:
  sn_oom();
out:
  pthread_mutex_unlock(&l->lock);
  json_decref(nd);
  json_decref(idx);
  sn_manifest_free(m);
  free(s);
  free(p);
  return rc;
}
