/* soci-nbd: the OCI documents of "soci convert" (docs/soci-format.md
 * §5.3): source manifests and indexes decoded the way Go's json.Unmarshal
 * fills ocispec's structs, then re-marshaled exactly as soci does — the
 * annotated image manifest and the OCI image index binding images and
 * their SOCI indexes — and containerd's platform normalization.  The SOCI
 * index and prefetch documents themselves are in index.c.
 */
#include <config.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "dense/dense.h"
#include "util/err.h"
#include "soci/index.h"
#include "soci/index-int.h"
#include "util/json.h"

/* ---- Go-style decoding of OCI documents ---------------------------------
 * Members are looked up as json.Unmarshal matches struct fields: by name,
 * case-insensitively, the last matching member winning.  A member that is
 * absent or null leaves the zero value. */

/* The member as json.Unmarshal finds it (borrowed); NULL if absent or null. */
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

/* Remove every case variant of obj's member name. */
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

/* An integer member: 0 when absent; -1 when of another type. */
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

/* A string member, written even when empty unless omitempty. */
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

/* A map[string]string member, omitempty, with the nextra (key, value)
 * pairs extra[] set on top (a NULL key is skipped). */
static int
write_map_member(struct sn_json *w, json_t *obj, const char *name,
                 const char *const extra[][2], size_t nextra)
{
  json_t *m = gofield(obj, name), *v;
  const char **keys = NULL, **vals = NULL, *k;
  size_t n = 0, cap, e;
  int r = -1;

  if (m && !json_is_object(m))
    return sn_set_error("\"%s\": not an object", name);
  cap = (m ? json_object_size(m) : 0) + nextra + 1;
  keys = calloc(cap, sizeof *keys);
  vals = calloc(cap, sizeof *vals);
  if (keys == NULL || vals == NULL) {
    sn_oom();
    goto out;
  }
  if (m) {
    json_object_foreach(m, k, v) {
      bool replaced = false;

      for (e = 0; e < nextra; e++)
        if (extra[e][0] && strcmp(k, extra[e][0]) == 0)
          replaced = true;
      if (replaced)
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
  for (e = 0; e < nextra; e++)
    if (extra[e][0]) {
      keys[n] = extra[e][0];
      vals[n++] = extra[e][1];
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
      write_map_member(w, d, "annotations", NULL, 0) == -1 ||
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

/* Decode raw as a JSON object (the caller owns it); NULL with a message
 * naming what on invalid JSON or another type. */
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
  return sn_index_annotate_manifest_dense(raw, len, soci_index_digest, NULL,
                                          out);
}

int
sn_index_annotate_manifest_dense(const uint8_t *raw, size_t len,
                                 const char *soci_index_digest,
                                 const char *dense_digest, struct sn_doc *out)
{
  const char *const extra[2][2] = {
    { soci_index_digest ? SN_ANN_INDEX_DIGEST : NULL, soci_index_digest },
    { dense_digest ? SN_DENSE_INDEX_ANNOTATION : NULL, dense_digest },
  };
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
  if (write_map_member(&w, m, "annotations", extra, 2) == -1)
    goto fail;
  sn_json_end_object(&w);
  json_decref(m);
  return sn_doc_finish(&w, out);

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

/* The "manifests" array, borrowed; NULL when absent or not an array. */
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

/* Set descriptor d's platform to p (architecture, os, variant if any). */
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

/* A malloc'd copy of string member name ("" when absent or not a string;
 * NULL then when nullable).  NULL also on OOM. */
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

/* The entry carries com.amazon.soci.image-manifest-digest and artifactType
 * v2; platforms are compared after normalization (§5.3). */
int
sn_oci_index_add_soci(struct sn_oci_index *x, const struct sn_doc *idx,
                      const char *manifest_digest,
                      const struct sn_platform *p, size_t i)
{
  return sn_oci_index_add_artifact(x, idx, SN_MT_SOCI_INDEX_V2,
                                   manifest_digest, p, i);
}

int
sn_oci_index_add_artifact(struct sn_oci_index *x, const struct sn_doc *idx,
                          const char *artifact_type,
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
                          json_string(artifact_type)) == -1)
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

    if (at == NULL || strcmp(at, artifact_type) != 0)
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

/* Marshal x as ocispec.Index (Go's member order) into out. */
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
  if (write_map_member(&w, x->root, "annotations", NULL, 0) == -1)
    goto fail;
  sn_json_end_object(&w);
  return sn_doc_finish(&w, out);

fail:
  sn_prefix_error("image index: ");
  sn_json_free(&w);
  return -1;
}

/* ---- platforms ---------------------------------------------------------- */

/* Replace *s (freed) by a copy of v (NULL: none). */
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
