/* soci-nbd: SOCI index manifests, prefetch artifacts, and the documents
 * of "soci convert", emitted exactly as soci's Go code marshals them
 * (docs/soci-format.md §5).  This file has the SOCI index and prefetch
 * artifacts; the documents of "soci convert" (the annotated image
 * manifest, the OCI image index, platforms) are in index-oci.c. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "soci/index.h"
#include "soci/index-int.h"
#include "util/json.h"
#include "soci/zinfo.h"

void
sn_doc_free(struct sn_doc *d)
{
  if (d == NULL)
    return;
  free(d->data);
  memset(d, 0, sizeof *d);
}

/* Finish w into d (bytes + digest). */
int
sn_doc_finish(struct sn_json *w, struct sn_doc *d)
{
  char *buf;
  size_t len;

  memset(d, 0, sizeof *d);
  if (sn_json_finish(w, &buf, &len) == -1)
    return -1;
  d->data = (uint8_t *) buf;
  d->len = len;
  sn_digest_of(buf, len, d->digest);
  return 0;
}

/* ---- SOCI index --------------------------------------------------------- */

/* A descriptor's mediaType, digest and size members, in Go's order. */
static void
write_simple_desc(struct sn_json *w, const char *mt, const char *digest,
                  int64_t size)
{
  sn_json_key(w, "mediaType");
  sn_json_string(w, mt);
  sn_json_key(w, "digest");
  sn_json_string(w, digest);
  sn_json_key(w, "size");
  sn_json_int(w, size);
}

/* The members of docs/soci-format.md §5.1: config, the ztoc descriptors then
 * the prefetch artifacts, subject (v1), the build tool annotation. */
int
sn_index_encode(int version, const struct sn_index_ztoc *z, size_t nz,
                const struct sn_index_prefetch *pf, size_t npf,
                const struct sn_index_subject *subject,
                const char *build_tool, struct sn_doc *out)
{
  struct sn_json w;
  size_t i;

  memset(out, 0, sizeof *out);
  if (version != 1 && version != 2)
    return sn_set_error("SOCI index: unknown version %d", version);
  if (version == 1 && subject == NULL)
    return sn_set_error("SOCI index v1: no subject");
  if (version == 2 && subject != NULL)
    return sn_set_error("SOCI index v2: has no subject");
  if (nz + npf == 0)
    return sn_set_error("SOCI index: no ztocs (every layer was skipped)");

  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_key(&w, "schemaVersion");
  sn_json_int(&w, 2);
  sn_json_key(&w, "mediaType");
  sn_json_string(&w, SN_MT_OCI_MANIFEST);
  sn_json_key(&w, "config");
  sn_json_begin_object(&w);
  write_simple_desc(&w, version == 1 ? SN_MT_SOCI_INDEX_V1
                    : SN_MT_SOCI_INDEX_V2, SN_SOCI_CONFIG_DIGEST, 2);
  sn_json_end_object(&w);
  sn_json_key(&w, "layers");
  sn_json_begin_array(&w);
  for (i = 0; i < nz; i++) {
    const char *keys[4] = { SN_ANN_LAYER_DIGEST, SN_ANN_LAYER_MEDIA_TYPE,
                            SN_ANN_SPAN_SIZE, SN_ANN_DISABLE_XATTRS };
    const char *vals[4];
    char span[24];

    snprintf(span, sizeof span, "%lld", (long long) z[i].span_size);
    vals[0] = z[i].layer_digest;
    vals[1] = z[i].layer_media_type;
    vals[2] = span;
    vals[3] = "true";
    sn_json_begin_object(&w);
    write_simple_desc(&w, SN_MT_SOCI_ZTOC, z[i].digest, z[i].size);
    sn_json_key(&w, "annotations");
    sn_json_string_map(&w, keys, vals, z[i].disable_xattrs ? 4 : 3);
    sn_json_end_object(&w);
  }
  for (i = 0; i < npf; i++) {
    const char *key = SN_ANN_LAYER_DIGEST, *val = pf[i].layer_digest;

    sn_json_begin_object(&w);
    write_simple_desc(&w, SN_MT_SOCI_PREFETCH, pf[i].digest, pf[i].size);
    sn_json_key(&w, "annotations");
    sn_json_string_map(&w, &key, &val, 1);
    sn_json_end_object(&w);
  }
  sn_json_end_array(&w);
  if (subject) {
    sn_json_key(&w, "subject");
    sn_json_begin_object(&w);
    write_simple_desc(&w, subject->media_type, subject->digest,
                      subject->size);
    sn_json_end_object(&w);
  }
  if (build_tool) {
    const char *key = SN_ANN_BUILD_TOOL;

    sn_json_key(&w, "annotations");
    sn_json_string_map(&w, &key, &build_tool, 1);
  }
  sn_json_end_object(&w);
  return sn_doc_finish(&w, out);
}

static bool
has_suffix(const struct sn_bytes *b, const char *suffix)
{
  size_t n = strlen(suffix);

  return b->len >= n && memcmp(b->data + b->len - n, suffix, n) == 0;
}

bool
sn_index_ztoc_no_xattrs(const struct sn_ztoc *z)
{
  size_t i, j;

  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];

    if (has_suffix(&f->name, ".wh..wh..opq"))
      return false;
    for (j = 0; j < f->npax; j++)
      if (f->pax[j].key.len > 12 &&
          memcmp(f->pax[j].key.data, "SCHILY.xattr.", 13) == 0)
        return false;
  }
  return true;
}

/* ---- prefetch artifacts ------------------------------------------------ */

/* qsort order of prefetch spans: by start, then by end. */
static int
span_cmp(const void *a, const void *b)
{
  const struct sn_prefetch_span *x = a, *y = b;

  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return 0;
}

/* docs/soci-format.md §5.4; a merged run keeps its first span's priority. */
int
sn_prefetch_encode(const struct sn_prefetch_span *s, size_t n,
                   struct sn_doc *out)
{
  struct sn_prefetch_span *v, cur;
  struct sn_json w;
  size_t i;

  memset(out, 0, sizeof *out);
  if (n == 0)
    return sn_set_error("prefetch artifact: no spans");
  v = malloc(n * sizeof *v);
  if (v == NULL)
    return sn_oom();
  memcpy(v, s, n * sizeof *v);
  qsort(v, n, sizeof *v, span_cmp);

  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_key(&w, "version");
  sn_json_string(&w, "1.0");
  sn_json_key(&w, "prefetch_spans");
  sn_json_begin_array(&w);
  cur = v[0];
  for (i = 1; i <= n; i++) {
    if (i < n && (int64_t) v[i].start <= (int64_t) cur.end + 1) {
      if (v[i].end > cur.end)
        cur.end = v[i].end;
      continue;
    }
    sn_json_begin_object(&w);
    sn_json_key(&w, "start_span");
    sn_json_int(&w, cur.start);
    sn_json_key(&w, "end_span");
    sn_json_int(&w, cur.end);
    if (cur.priority != 0) {
      sn_json_key(&w, "priority");
      sn_json_int(&w, cur.priority);
    }
    sn_json_end_object(&w);
    if (i < n)
      cur = v[i];
  }
  sn_json_end_array(&w);
  sn_json_end_object(&w);
  free(v);
  return sn_doc_finish(&w, out);
}

/* From the span of the file's first byte to that of its end offset
 * (sn_zinfo_span_of), in the uncompressed tar. */
int
sn_prefetch_file_span(const struct sn_ztoc *z, const char *path,
                      struct sn_prefetch_span *out)
{
  const struct sn_ztoc_file *f = sn_ztoc_find(z, path);
  struct sn_zinfo *zi;
  size_t a, b;

  memset(out, 0, sizeof *out);
  if (f == NULL)
    return 0;
  zi = sn_zinfo_from_ztoc(z);
  if (zi == NULL)
    return -1;
  a = sn_zinfo_span_of(zi, f->offset);
  b = sn_zinfo_span_of(zi, f->offset + f->size);
  sn_zinfo_free(zi);
  if (b < a)
    b = a;
  out->start = (int32_t) a;
  out->end = (int32_t) b;
  return 1;
}
