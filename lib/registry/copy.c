/* soci-nbd: copy an image tree between registries (lib/registry/copy.h):
 * blobs DST lacks are streamed through a sn_blob_writer, committed once
 * sn_registry_get_blob has verified the digest. */
#include <config.h>

#include <stdint.h>
#include <string.h>

#include "registry/copy.h"
#include "util/err.h"

/* sn_registry_get_blob's sink: the bytes go to the blob writer opaque. */
static int
writer_sink(void *opaque, const uint8_t *data, size_t len)
{
  return sn_blob_writer_write(opaque, data, len);
}

/* Copy a blob SRC → DST unless DST has it (streamed through a
 * sn_blob_writer, committed once get_blob has verified the digest). */
static int
copy_blob(struct sn_registry *src, struct sn_registry *dst,
          const struct sn_descriptor *d, const struct sn_registry_copy_opts *o)
{
  struct sn_blob_writer *w;
  int r;

  r = sn_registry_blob_exists(dst, d->digest, NULL);
  if (r != 0)
    return r == 1 ? 0 : -1;
  w = sn_blob_writer_new(dst, d->digest, d->size);
  if (w == NULL)
    return -1;
  if (sn_registry_get_blob(src, d->digest, d->size, writer_sink, w) == -1) {
    sn_blob_writer_abort(w);
    return -1;
  }
  if (sn_blob_writer_commit(w) == -1)
    return -1;
  if (o->copied)
    o->copied(o->opaque, d);
  return 0;
}

/* Copy the blobs of an image manifest, or a whole index tree (children
 * first, then each child manifest), SRC → DST; o->skip_layer applies at
 * the top only. */
static int
copy_tree(struct sn_registry *src, struct sn_registry *dst,
          const struct sn_manifest *m, int depth, bool top,
          const struct sn_registry_copy_opts *o)
{
  size_t i;

  if (depth > 4)
    return sn_set_error("%s: indexes nested too deeply", m->digest);
  if (!m->is_index) {
    if (copy_blob(src, dst, &m->config, o) == -1)
      return -1;
    for (i = 0; i < m->nlayers; i++) {
      const char *mt = m->layers[i].media_type ? m->layers[i].media_type : "";

      if (strstr(mt, "foreign") || strstr(mt, "nondistributable"))
        continue;
      if (top && o->skip_layer && o->skip_layer(o->opaque, &m->layers[i]))
        continue;               /* copied by the caller */
      if (copy_blob(src, dst, &m->layers[i], o) == -1)
        return -1;
    }
    return 0;
  }
  for (i = 0; i < m->nmanifests; i++) {
    struct sn_manifest *c = sn_registry_get_manifest(src,
                                                     m->manifests[i].digest);
    int r;

    if (c == NULL)
      return -1;
    r = copy_tree(src, dst, c, depth + 1, false, o);
    if (r == 0)
      r = sn_registry_put_manifest(dst, c->digest, c->media_type, c->raw,
                                   c->raw_len);
    sn_manifest_free(c);
    if (r == -1)
      return -1;
  }
  return 0;
}

int
sn_registry_copy_tree(struct sn_registry *src, struct sn_registry *dst,
                      const struct sn_manifest *m,
                      const struct sn_registry_copy_opts *o)
{
  return copy_tree(src, dst, m, 0, true, o);
}
