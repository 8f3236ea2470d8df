/* soci-nbd command line: the IMAGE forms of the "ztoc" commands — an
 * image's SOCI index and its ztocs (see ztoc-image.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#include "soci/build.h"
#include "cli.h"
#include "util/digest.h"
#include "util/json.h"
#include "soci/index-find.h"
#include "soci/index.h"
#include "span/layer.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "regopts.h"
#include "ztoc-image.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"


/* ---- IMAGE forms: an image's SOCI index and its ztocs --------------- */

/* Free what image_index_open filled (safe on a zeroed or partial one). */
void
image_index_clear(struct image_index *ii)
{
  sn_manifest_free(ii->idx);
  sn_manifest_free(ii->m);
  sn_registry_close(ii->reg);
  sn_ref_clear(&ii->ref);
  memset(ii, 0, sizeof *ii);
}

/* Open IMAGE (for platform, NULL = the host's) and find its SOCI index
 * (lib/soci/index-find.h: the v2 annotation, a v1 referrer with --soci-v1).
 * 0, or an exit status after printing the message. */
int
image_index_open(const char *image, const struct regopts *ro,
                 const char *platform, const char *cmd,
                 struct image_index *ii)
{
  struct sn_platform want = { 0 };
  enum sn_index_source src;
  const char *why;
  char *dig = NULL;

  memset(ii, 0, sizeof *ii);
  if (platform && sn_platform_parse(platform, &want) == -1)
    return cli_usage_error(cmd, "%s", sn_error());
  if (sn_ref_parse(image, &ii->ref) == -1) {
    sn_platform_clear(&want);
    return cli_usage_error(cmd, "invalid image reference '%s': %s", image,
                           sn_error());
  }
  ii->reg = sn_registry_open(&ii->ref, &ro->ro);
  if (ii->reg == NULL)
    goto fail;
  ii->m = sn_registry_resolve(ii->reg, ii->ref.digest ? ii->ref.digest
                              : ii->ref.tag, platform ? &want : NULL, NULL);
  if (ii->m == NULL)
    goto fail;
  if (sn_index_find(ii->reg, ii->m, NULL, ro->soci_v1, &dig, &src,
                    &why) == -1)
    goto fail;
  if (dig == NULL) {
    cli_fail("%s: image manifest %s has no SOCI index (%s)", image,
             ii->m->digest, why);
    goto out;
  }
  ii->idx = sn_index_fetch(ii->reg, dig, ii->m);
  if (ii->idx == NULL)
    goto fail;
  free(dig);
  sn_platform_clear(&want);
  return 0;

fail:
  cli_fail_lib("%s", image);
out:
  free(dig);
  sn_platform_clear(&want);
  image_index_clear(ii);
  return 1;
}

/* A ztoc entry of a SOCI index: ztoc media type, and names its layer. */
static bool
is_ztoc_desc(const struct sn_descriptor *d)
{
  return d->media_type && strcmp(d->media_type, SN_MT_SOCI_ZTOC) == 0 &&
    sn_annotation_get(d->annotations, d->nannotations, SN_ANN_LAYER_DIGEST);
}

/* The ztoc of the layer named by sel (a layer digest or its number in the
 * image manifest), fetched by digest and decoded.  *layer receives the
 * layer's descriptor.  NULL after printing the message. */
struct sn_ztoc *
image_index_ztoc(struct image_index *ii, const char *image, const char *sel,
           const struct sn_descriptor **layer)
{
  const struct sn_descriptor *l = NULL, *zd = NULL;
  struct sn_ztoc *z;
  uint8_t *buf;
  size_t len, i;

  if (strncmp(sel, "sha256:", 7) == 0) {
    for (i = 0; i < ii->m->nlayers && l == NULL; i++)
      if (strcmp(ii->m->layers[i].digest, sel) == 0)
        l = &ii->m->layers[i];
  } else {
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(sel, &end, 10);
    if (errno == 0 && end != sel && *end == '\0' && sel[0] != '-' &&
        n < ii->m->nlayers)
      l = &ii->m->layers[n];
  }
  if (l == NULL) {
    cli_fail("%s: no layer '%s' in image manifest %s (%zu layers)", image,
             sel, ii->m->digest, ii->m->nlayers);
    return NULL;
  }
  for (i = 0; i < ii->idx->nlayers && zd == NULL; i++)
    if (is_ztoc_desc(&ii->idx->layers[i]) &&
        strcmp(sn_annotation_get(ii->idx->layers[i].annotations,
                                 ii->idx->layers[i].nannotations,
                                 SN_ANN_LAYER_DIGEST), l->digest) == 0)
      zd = &ii->idx->layers[i];
  if (zd == NULL) {
    cli_fail("%s: layer %s has no ztoc in SOCI index %s", image, l->digest,
             ii->idx->digest);
    return NULL;
  }
  if (sn_registry_get_blob_mem(ii->reg, zd->digest, SN_ZTOC_MAX_BLOB, &buf,
                               &len) == -1) {
    cli_fail_lib("%s", image);
    return NULL;
  }
  z = sn_ztoc_decode(buf, len);
  free(buf);
  if (z == NULL) {
    cli_fail_lib("ztoc %s", zd->digest);
    return NULL;
  }
  *layer = l;
  return z;
}

/* ztoc ls IMAGE: one line per ztoc of the image's SOCI index. */
int
image_index_ls(const char *image, const struct regopts *ro,
              const char *platform)
{
  struct image_index ii;
  size_t i;
  int st;

  st = image_index_open(image, ro, platform, "ztoc ls", &ii);
  if (st)
    return st;
  for (i = 0; i < ii.idx->nlayers; i++) {
    const struct sn_descriptor *d = &ii.idx->layers[i];

    if (!is_ztoc_desc(d))
      continue;
    printf("%s %" PRId64 " %s\n", d->digest, d->size,
           sn_annotation_get(d->annotations, d->nannotations,
                             SN_ANN_LAYER_DIGEST));
  }
  image_index_clear(&ii);
  if (fflush(stdout) == EOF || ferror(stdout))
    return cli_fail("stdout: %s", strerror(errno));
  return 0;
}

/* sn_layer blob reader: ranges of the layer blob by HTTP Range request. */
int
image_index_read_range(void *opaque, void *buf, size_t len, int64_t off)
{
  struct range_src *s = opaque;

  return sn_registry_read_range(s->reg, s->digest, buf, len, off);
}

