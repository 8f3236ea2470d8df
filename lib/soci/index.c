/* soci-nbd: SOCI index manifests, prefetch artifacts, and the documents
 * of "soci convert", emitted exactly as soci's Go code marshals them
 * (docs/soci-format.md §5). */
#include <config.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "util/err.h"
#include "soci/index.h"
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
static int
doc_finish(struct sn_json *w, struct sn_doc *d)
{
  char *buf;
  size_t len;
  uint8_t h[SN_SHA256_LEN];

  memset(d, 0, sizeof *d);
  if (sn_json_finish(w, &buf, &len) == -1)
    return -1;
  d->data = (uint8_t *) buf;
  d->len = len;
  sn_sha256(buf, len, h);
  sn_digest_format(h, d->digest);
  return 0;
}

/* ---- SOCI index --------------------------------------------------------- */

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
  return doc_finish(&w, out);
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
  return doc_finish(&w, out);
}

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

/* ---- Go-style decoding of OCI documents ---------------------------------
 * Members are looked up as json.Unmarshal matches struct fields: by name,
 * case-insensitively, the last matching member winning.  A member that is
 * absent or null leaves the zero value. */

static json_t *
gofield(json_t *obj, const char *name)
{
  const char *k;
  json_t *v, *found = NULL;

  if (!json_is_object(obj))
    return NULL;
  json_object_foreach(obj, k, v) {
    if (strcasecmp(k, name) == 0)
      found = v;
  }
  if (found && json_is_null(found))
    return NULL;
  return found;
}

/* Set obj.name = v (stolen), removing every case variant first. */
static int
gofield_set(json_t *obj, const char *name, json_t *v)
{
  const char *k;
  json_t *old;
  void *tmp;

  if (v == NULL)
    return sn_oom();
  json_object_foreach_safe(obj, tmp, k, old) {
    if (strcasecmp(k, name) == 0)
      json_object_del(obj, k);
  }
  if (json_object_set_new(obj, name, v) == -1)
    return sn_oom();
  return 0;
}

static void
gofield_del(json_t *obj, const char *name)
{
  const char *k;
  json_t *old;
  void *tmp;

  json_object_foreach_safe(obj, tmp, k, old) {
    if (strcasecmp(k, name) == 0)
      json_object_del(obj, k);
  }
}

/* A string member: "" when absent; -1 when of another type. */
static int
gostring(json_t *obj, const char *name, const char **s, size_t *len)
{
  json_t *v = gofield(obj, name);

  *s = "";
  *len = 0;
  if (v == NULL)
    return 0;
  if (!json_is_string(v))
    return sn_set_error("\"%s\": not a string", name);
  *s = json_string_value(v);
  *len = json_string_length(v);
  return 0;
}

static int
goint(json_t *obj, const char *name, int64_t *out)
{
  json_t *v = gofield(obj, name);

  *out = 0;
  if (v == NULL)
    return 0;
  if (!json_is_integer(v))
    return sn_set_error("\"%s\": not an integer", name);
  *out = (int64_t) json_integer_value(v);
  return 0;
}

static int
write_string_member(struct sn_json *w, json_t *obj, const char *name,
                    bool omitempty)
{
  const char *s;
  size_t len;

  if (gostring(obj, name, &s, &len) == -1)
    return -1;
  if (omitempty && len == 0)
    return 0;
  sn_json_key(w, name);
  sn_json_string_len(w, s, len);
  return 0;
}

/* A map[string]string member, omitempty, extra (key, value) set on top. */
static int
write_map_member(struct sn_json *w, json_t *obj, const char *name,
                 const char *extra_key, const char *extra_val)
{
  json_t *m = gofield(obj, name), *v;
  const char **keys = NULL, **vals = NULL, *k;
  size_t n = 0, cap;
  int r = -1;

  if (m && !json_is_object(m))
    return sn_set_error("\"%s\": not an object", name);
  cap = (m ? json_object_size(m) : 0) + 1;
  keys = calloc(cap, sizeof *keys);
  vals = calloc(cap, sizeof *vals);
  if (keys == NULL || vals == NULL) {
    sn_oom();
    goto out;
  }
  if (m) {
    json_object_foreach(m, k, v) {
      if (extra_key && strcmp(k, extra_key) == 0)
        continue;
      if (json_is_null(v))
        vals[n] = "";
      else if (json_is_string(v))
        vals[n] = json_string_value(v);
      else {
        sn_set_error("\"%s\": value of \"%s\" is not a string", name, k);
        goto out;
      }
      keys[n++] = k;
    }
  }
  if (extra_key) {
    keys[n] = extra_key;
    vals[n++] = extra_val;
  }
  if (n) {
    sn_json_key(w, name);
    sn_json_string_map(w, keys, vals, n);
  }
  r = 0;
out:
  free(keys);
  free(vals);
  return r;
}

/* A []string member, omitempty. */
static int
write_strings_member(struct sn_json *w, json_t *obj, const char *name)
{
  json_t *a = gofield(obj, name), *v;
  size_t i;

  if (a == NULL)
    return 0;
  if (!json_is_array(a))
    return sn_set_error("\"%s\": not an array", name);
  if (json_array_size(a) == 0)
    return 0;
  sn_json_key(w, name);
  sn_json_begin_array(w);
  json_array_foreach(a, i, v) {
    if (json_is_null(v))
      sn_json_string(w, "");
    else if (json_is_string(v))
      sn_json_string_len(w, json_string_value(v), json_string_length(v));
    else
      return sn_set_error("\"%s\": not an array of strings", name);
  }
  sn_json_end_array(w);
  return 0;
}

/* ocispec.Platform. */
static int
write_platform(struct sn_json *w, json_t *p)
{
  if (!json_is_object(p))
    return sn_set_error("\"platform\": not an object");
  sn_json_begin_object(w);
  if (write_string_member(w, p, "architecture", false) == -1 ||
      write_string_member(w, p, "os", false) == -1 ||
      write_string_member(w, p, "os.version", true) == -1 ||
      write_strings_member(w, p, "os.features") == -1 ||
      write_string_member(w, p, "variant", true) == -1)
    return -1;
  sn_json_end_object(w);
  return 0;
}

/* ocispec.Descriptor; d NULL = the zero descriptor.  media_type non-NULL
 * replaces the mediaType member. */
static int
write_desc(struct sn_json *w, json_t *d, const char *media_type)
{
  int64_t size;
  json_t *p;

  if (d && !json_is_object(d))
    return sn_set_error("descriptor is not an object");
  sn_json_begin_object(w);
  if (media_type) {
    sn_json_key(w, "mediaType");
    sn_json_string(w, media_type);
  } else if (write_string_member(w, d, "mediaType", false) == -1)
    return -1;
  if (write_string_member(w, d, "digest", false) == -1 ||
      goint(d, "size", &size) == -1)
    return -1;
  sn_json_key(w, "size");
  sn_json_int(w, size);
  if (write_strings_member(w, d, "urls") == -1 ||
      write_map_member(w, d, "annotations", NULL, NULL) == -1 ||
      write_string_member(w, d, "data", true) == -1)
    return -1;
  p = gofield(d, "platform");
  if (p) {
    sn_json_key(w, "platform");
    if (write_platform(w, p) == -1)
      return -1;
  }
  if (write_string_member(w, d, "artifactType", true) == -1)
    return -1;
  sn_json_end_object(w);
  return 0;
}

/* A []Descriptor member (not omitempty: absent = null). */
static int
write_desc_array(struct sn_json *w, json_t *obj, const char *name)
{
  json_t *a = gofield(obj, name), *v;
  size_t i;

  sn_json_key(w, name);
  if (a == NULL) {
    sn_json_null(w);
    return 0;
  }
  if (!json_is_array(a))
    return sn_set_error("\"%s\": not an array", name);
  sn_json_begin_array(w);
  json_array_foreach(a, i, v) {
    if (write_desc(w, json_is_null(v) ? NULL : v, NULL) == -1)
      return -1;
  }
  sn_json_end_array(w);
  return 0;
}

static json_t *
load(const uint8_t *raw, size_t len, const char *what)
{
  json_error_t e;
  json_t *j = json_loadb((const char *) raw, len, JSON_ALLOW_NUL, &e);

  if (j == NULL) {
    sn_set_error("%s: invalid JSON at line %d column %d: %s", what, e.line,
                 e.column, e.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    sn_set_error("%s: not a JSON object", what);
    return NULL;
  }
  return j;
}

/* ---- the annotated image manifest --------------------------------------- */

int
sn_index_annotate_manifest(const uint8_t *raw, size_t len,
                           const char *soci_index_digest, struct sn_doc *out)
{
  struct sn_json w;
  json_t *m, *v;
  int64_t schema;

  memset(out, 0, sizeof *out);
  m = load(raw, len, "image manifest");
  if (m == NULL)
    return -1;
  sn_json_init(&w);
  if (goint(m, "schemaVersion", &schema) == -1)
    goto fail;
  sn_json_begin_object(&w);
  sn_json_key(&w, "schemaVersion");
  sn_json_int(&w, schema);
  sn_json_key(&w, "mediaType");
  sn_json_string(&w, SN_MT_OCI_MANIFEST);
  if (write_string_member(&w, m, "artifactType", true) == -1)
    goto fail;
  sn_json_key(&w, "config");
  if (write_desc(&w, gofield(m, "config"), SN_MT_OCI_CONFIG) == -1 ||
      write_desc_array(&w, m, "layers") == -1)
    goto fail;
  v = gofield(m, "subject");
  if (v) {
    sn_json_key(&w, "subject");
    if (write_desc(&w, v, NULL) == -1)
      goto fail;
  }
  if (write_map_member(&w, m, "annotations",
                       soci_index_digest ? SN_ANN_INDEX_DIGEST : NULL,
                       soci_index_digest) == -1)
    goto fail;
  sn_json_end_object(&w);
  json_decref(m);
  return doc_finish(&w, out);

fail:
  sn_prefix_error("image manifest: ");
  sn_json_free(&w);
  json_decref(m);
  return -1;
}

/* ---- the OCI image index ------------------------------------------------ */

struct sn_oci_index {
  json_t *root;      /* the index as decoded; entries edited in place */
};

static json_t *
entries(const struct sn_oci_index *x)
{
  json_t *a = gofield(x->root, "manifests");

  return json_is_array(a) ? a : NULL;
}

struct sn_oci_index *
sn_oci_index_from_index(const uint8_t *raw, size_t len)
{
  struct sn_oci_index *x;
  json_t *a, *v;
  size_t i;

  x = calloc(1, sizeof *x);
  if (x == NULL) {
    sn_oom();
    return NULL;
  }
  x->root = load(raw, len, "image index");
  if (x->root == NULL) {
    free(x);
    return NULL;
  }
  a = gofield(x->root, "manifests");
  if (a && !json_is_array(a)) {
    sn_set_error("image index: \"manifests\" is not an array");
    goto fail;
  }
  if (a) {
    json_array_foreach(a, i, v) {
      if (!json_is_object(v) && !json_is_null(v)) {
        sn_set_error("image index: manifests[%zu] is not an object", i);
        goto fail;
      }
    }
  }
  return x;

fail:
  sn_oci_index_free(x);
  return NULL;
}

static int
set_platform(json_t *d, const struct sn_platform *p)
{
  json_t *o = json_object();

  if (o == NULL)
    return sn_oom();
  if (json_object_set_new(o, "architecture",
                          json_string(p->architecture ? p->architecture
                                      : "")) == -1 ||
      json_object_set_new(o, "os", json_string(p->os ? p->os : "")) == -1 ||
      (p->variant && *p->variant &&
       json_object_set_new(o, "variant", json_string(p->variant)) == -1)) {
    json_decref(o);
    return sn_oom();
  }
  return gofield_set(d, "platform", o);
}

struct sn_oci_index *
sn_oci_index_wrap(const char *media_type, const char *digest, int64_t size,
                  const uint8_t *config, size_t config_len)
{
  struct sn_oci_index *x;
  struct sn_platform p = { 0 };
  const char *os, *arch;
  size_t n;
  json_t *cfg, *d, *a;

  cfg = load(config, config_len, "image config");
  if (cfg == NULL)
    return NULL;
  if (gostring(cfg, "os", &os, &n) == -1 ||
      gostring(cfg, "architecture", &arch, &n) == -1) {
    sn_prefix_error("image config: ");
    json_decref(cfg);
    return NULL;
  }
  p.os = strdup(os);
  p.architecture = strdup(arch);
  json_decref(cfg);
  if (p.os == NULL || p.architecture == NULL) {
    sn_platform_clear(&p);
    sn_oom();
    return NULL;
  }
  if (sn_index_platform_normalize(&p) == -1) {
    sn_platform_clear(&p);
    return NULL;
  }

  x = calloc(1, sizeof *x);
  if (x == NULL)
    goto oom;
  x->root = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType",
                      SN_MT_OCI_INDEX, "manifests");
  if (x->root == NULL)
    goto oom;
  a = json_object_get(x->root, "manifests");
  d = json_pack("{s:s, s:s, s:I}", "mediaType", media_type, "digest", digest,
                "size", (json_int_t) size);
  if (d == NULL || json_array_append_new(a, d) == -1 ||
      set_platform(d, &p) == -1)
    goto oom;
  sn_platform_clear(&p);
  return x;

oom:
  sn_oom();
  sn_platform_clear(&p);
  sn_oci_index_free(x);
  return NULL;
}

void
sn_oci_index_free(struct sn_oci_index *x)
{
  if (x == NULL)
    return;
  json_decref(x->root);
  free(x);
}

size_t
sn_oci_index_count(const struct sn_oci_index *x)
{
  json_t *a = entries(x);

  return a ? json_array_size(a) : 0;
}

static json_t *
entry(const struct sn_oci_index *x, size_t i)
{
  json_t *a = entries(x);

  return a ? json_array_get(a, i) : NULL;
}

static const char *
entry_string(const struct sn_oci_index *x, size_t i, const char *name)
{
  json_t *v = gofield(entry(x, i), name);

  return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *
sn_oci_index_media_type(const struct sn_oci_index *x, size_t i)
{
  const char *s = entry_string(x, i, "mediaType");

  return s ? s : "";
}

const char *
sn_oci_index_digest(const struct sn_oci_index *x, size_t i)
{
  const char *s = entry_string(x, i, "digest");

  return s ? s : "";
}

const char *
sn_oci_index_artifact_type(const struct sn_oci_index *x, size_t i)
{
  const char *s = entry_string(x, i, "artifactType");

  return s && *s ? s : NULL;
}

static char *
dup_member(json_t *o, const char *name, bool nullable)
{
  json_t *v = gofield(o, name);
  const char *s = json_is_string(v) ? json_string_value(v) : "";

  if (nullable && *s == '\0')
    return NULL;
  return strdup(s);
}

int
sn_oci_index_platform(const struct sn_oci_index *x, size_t i,
                      struct sn_platform *p)
{
  json_t *o = gofield(entry(x, i), "platform");

  memset(p, 0, sizeof *p);
  if (!json_is_object(o))
    return 0;
  p->os = dup_member(o, "os", false);
  p->architecture = dup_member(o, "architecture", false);
  p->variant = dup_member(o, "variant", true);
  if (p->os == NULL || p->architecture == NULL) {
    sn_platform_clear(p);
    return sn_oom();
  }
  return 1;
}

int
sn_oci_index_set_manifest(struct sn_oci_index *x, size_t i,
                          const struct sn_doc *m)
{
  json_t *d = entry(x, i), *doc, *ann;

  if (!json_is_object(d))
    return sn_set_error("image index: no entry %zu", i);
  doc = load(m->data, m->len, "image manifest");
  if (doc == NULL)
    return -1;
  ann = gofield(doc, "annotations");
  if (gofield_set(d, "mediaType", json_string(SN_MT_OCI_MANIFEST)) == -1 ||
      gofield_set(d, "digest", json_string(m->digest)) == -1 ||
      gofield_set(d, "size", json_integer((json_int_t) m->len)) == -1) {
    json_decref(doc);
    return -1;
  }
  if (ann && json_is_object(ann) && json_object_size(ann) > 0) {
    if (gofield_set(d, "annotations", json_deep_copy(ann)) == -1) {
      json_decref(doc);
      return -1;
    }
  } else
    gofield_del(d, "annotations");
  json_decref(doc);
  return 0;
}

/* Platforms equal after normalization (containerd's OnlyStrict). */
static bool
platform_same(const struct sn_platform *a, const struct sn_platform *b)
{
  return strcmp(a->os, b->os) == 0 &&
    strcmp(a->architecture, b->architecture) == 0 &&
    strcmp(a->variant ? a->variant : "", b->variant ? b->variant : "") == 0;
}

int
sn_oci_index_add_soci(struct sn_oci_index *x, const struct sn_doc *idx,
                      const char *manifest_digest,
                      const struct sn_platform *p, size_t i)
{
  json_t *d, *a, *plat;
  struct sn_platform want = { 0 };
  size_t j, n;
  int r;

  if (p) {
    d = json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType",
                  SN_MT_OCI_MANIFEST, "digest", idx->digest, "size",
                  (json_int_t) idx->len, "annotations",
                  SN_ANN_MANIFEST_DIGEST, manifest_digest);
    if (d == NULL || set_platform(d, p) == -1)
      goto oom;
  } else {
    plat = gofield(entry(x, i), "platform");
    if (!json_is_object(plat))
      return sn_set_error("image index: entry %zu has no platform", i);
    d = json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType",
                  SN_MT_OCI_MANIFEST, "digest", idx->digest, "size",
                  (json_int_t) idx->len, "annotations",
                  SN_ANN_MANIFEST_DIGEST, manifest_digest);
    if (d == NULL ||
        json_object_set_new(d, "platform", json_deep_copy(plat)) == -1)
      goto oom;
  }
  if (json_object_set_new(d, "artifactType",
                          json_string(SN_MT_SOCI_INDEX_V2)) == -1)
    goto oom;

  /* The platform of the new entry, to find an entry it replaces. */
  a = entries(x);
  if (a == NULL) {
    a = json_array();
    if (gofield_set(x->root, "manifests", a) == -1) {
      json_decref(d);
      return -1;
    }
  }
  {
    struct sn_oci_index tmp = { .root = NULL };
    json_t *one = json_pack("{s:[O]}", "manifests", d);

    if (one == NULL)
      goto oom;
    tmp.root = one;
    r = sn_oci_index_platform(&tmp, 0, &want);
    json_decref(one);
    if (r == -1)
      goto fail;
    if (sn_index_platform_normalize(&want) == -1)
      goto fail;
  }
  n = json_array_size(a);
  for (j = 0; j < n; j++) {
    struct sn_platform have;
    const char *at = sn_oci_index_artifact_type(x, j);
    bool same;

    if (at == NULL || strcmp(at, SN_MT_SOCI_INDEX_V2) != 0)
      continue;
    r = sn_oci_index_platform(x, j, &have);
    if (r == -1)
      goto fail;
    if (r == 0)
      continue;
    if (sn_index_platform_normalize(&have) == -1) {
      sn_platform_clear(&have);
      goto fail;
    }
    same = platform_same(&want, &have);
    sn_platform_clear(&have);
    if (same)
      break;
  }
  sn_platform_clear(&want);
  if (j < n)
    r = json_array_set_new(a, j, d);
  else
    r = json_array_append_new(a, d);
  if (r == -1)
    return sn_oom();
  return 0;

oom:
  sn_oom();
fail:
  sn_platform_clear(&want);
  json_decref(d);
  return -1;
}

int
sn_oci_index_encode(const struct sn_oci_index *x, struct sn_doc *out)
{
  struct sn_json w;
  int64_t schema;
  json_t *v;

  memset(out, 0, sizeof *out);
  sn_json_init(&w);
  if (goint(x->root, "schemaVersion", &schema) == -1)
    goto fail;
  sn_json_begin_object(&w);
  sn_json_key(&w, "schemaVersion");
  sn_json_int(&w, schema);
  sn_json_key(&w, "mediaType");
  sn_json_string(&w, SN_MT_OCI_INDEX);
  if (write_string_member(&w, x->root, "artifactType", true) == -1 ||
      write_desc_array(&w, x->root, "manifests") == -1)
    goto fail;
  v = gofield(x->root, "subject");
  if (v) {
    sn_json_key(&w, "subject");
    if (write_desc(&w, v, NULL) == -1)
      goto fail;
  }
  if (write_map_member(&w, x->root, "annotations", NULL, NULL) == -1)
    goto fail;
  sn_json_end_object(&w);
  return doc_finish(&w, out);

fail:
  sn_prefix_error("image index: ");
  sn_json_free(&w);
  return -1;
}

/* ---- platforms ---------------------------------------------------------- */

static int
replace(char **s, const char *v)
{
  char *n = v ? strdup(v) : NULL;

  if (v && n == NULL)
    return sn_oom();
  free(*s);
  *s = n;
  return 0;
}

int
sn_index_platform_normalize(struct sn_platform *p)
{
  const char *a = p->architecture ? p->architecture : "";
  const char *v = p->variant ? p->variant : "";
  char *s;

  for (s = p->os; s && *s; s++)
    *s = (char) tolower((unsigned char) *s);
  if (strcmp(a, "i386") == 0)
    return replace(&p->architecture, "386");
  if (strcmp(a, "x86_64") == 0 || strcmp(a, "x86-64") == 0 ||
      strcmp(a, "amd64") == 0) {
    if (replace(&p->architecture, "amd64") == -1)
      return -1;
    return strcmp(v, "v1") == 0 ? replace(&p->variant, NULL) : 0;
  }
  if (strcmp(a, "aarch64") == 0 || strcmp(a, "arm64") == 0) {
    if (replace(&p->architecture, "arm64") == -1)
      return -1;
    if (strcmp(v, "8") == 0 || strcmp(v, "v8") == 0 || strcmp(v, "v8.0") == 0)
      return replace(&p->variant, NULL);
    return 0;
  }
  if (strcmp(a, "armhf") == 0)
    return replace(&p->architecture, "arm") == -1 ? -1
      : replace(&p->variant, "v7");
  if (strcmp(a, "armel") == 0)
    return replace(&p->architecture, "arm") == -1 ? -1
      : replace(&p->variant, "v6");
  if (strcmp(a, "arm") == 0) {
    if (strcmp(v, "") == 0 || strcmp(v, "7") == 0)
      return replace(&p->variant, "v7");
    if (strcmp(v, "5") == 0 || strcmp(v, "6") == 0 || strcmp(v, "8") == 0) {
      char b[3] = { 'v', v[0], '\0' };
      return replace(&p->variant, b);
    }
  }
  if (p->variant && *p->variant == '\0')
    return replace(&p->variant, NULL);
  return 0;
}
