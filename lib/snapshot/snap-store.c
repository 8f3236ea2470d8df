/* soci-nbd: the snapshot store's table and its metadata file
 * (docs/snapshotter.md, "State"): ROOT/metadata.json, rewritten whole and
 * atomically after every change, read back when the daemon starts. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "snapshot/snap-int.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/json.h"

#define META_NAME "metadata.json"
#define META_MAX ((size_t) 256 << 20)
#define META_VERSION 1

static const char *const kind_names[] = {
  [SN_SNAP_KIND_UNKNOWN] = "unknown", [SN_SNAP_KIND_VIEW] = "view",
  [SN_SNAP_KIND_ACTIVE] = "active", [SN_SNAP_KIND_COMMITTED] = "committed",
};

int64_t
snap_now_ns(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

char *
snap_dir(const struct sn_snapshots *s, uint64_t id, const char *sub)
{
  char *p;

  if (asprintf(&p, "%s/snapshots/%" PRIu64 "%s%s", s->root, id,
               sub ? "/" : "", sub ? sub : "") < 0)
    return NULL;
  return p;
}

struct snap *
snap_find(struct sn_snapshots *s, const char *key)
{
  size_t i;

  for (i = 0; key && i < s->n; i++)
    if (strcmp(s->v[i].info.name, key) == 0)
      return &s->v[i];
  return NULL;
}

static int
label_cmp(const void *a, const void *b)
{
  return strcmp(((const struct sn_snap_label *) a)->key,
                ((const struct sn_snap_label *) b)->key);
}

/* A copy of src, sorted by key; a repeated key keeps its last value. */
int
snap_labels_copy(struct sn_snap_label **dst, size_t *n,
                 const struct sn_snap_label *src, size_t nsrc)
{
  size_t i, k = 0;

  *dst = NULL;
  *n = 0;
  if (nsrc == 0)
    return 0;
  *dst = calloc(nsrc, sizeof **dst);
  if (*dst == NULL)
    return sn_oom();
  for (i = 0; i < nsrc; i++) {
    (*dst)[i].key = strdup(src[i].key);
    (*dst)[i].value = strdup(src[i].value);
    *n = i + 1;
    if ((*dst)[i].key == NULL || (*dst)[i].value == NULL)
      return sn_oom();
  }
  qsort(*dst, nsrc, sizeof **dst, label_cmp);   /* stable enough: dups */
  for (i = 0; i < nsrc; i++) {                  /* drop repeated keys */
    if (k > 0 && strcmp((*dst)[k - 1].key, (*dst)[i].key) == 0) {
      free((*dst)[k - 1].key);
      free((*dst)[k - 1].value);
      k--;
    }
    (*dst)[k++] = (*dst)[i];
  }
  *n = k;
  return 0;
}

int
snap_info_copy(struct sn_snap_info *dst, const struct sn_snap_info *src)
{
  memset(dst, 0, sizeof *dst);
  dst->name = strdup(src->name);
  dst->parent = strdup(src->parent ? src->parent : "");
  dst->kind = src->kind;
  dst->created_ns = src->created_ns;
  dst->updated_ns = src->updated_ns;
  if (dst->name == NULL || dst->parent == NULL ||
      snap_labels_copy(&dst->labels, &dst->nlabels, src->labels,
                       src->nlabels) == -1) {
    sn_snap_info_clear(dst);
    return sn_oom();
  }
  return 0;
}

/* ---- reading ------------------------------------------------------------ */

static const char *
str_member(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);

  return json_is_string(v) ? json_string_value(v) : NULL;
}

static int
int_member(json_t *o, const char *k, int64_t *out)
{
  json_t *v = json_object_get(o, k);

  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return -1;
  *out = (int64_t) json_integer_value(v);
  return 0;
}

/* One snapshot of the file into s->v[s->n]. */
static int
load_one(struct sn_snapshots *s, json_t *o, size_t i)
{
  struct snap *p = &s->v[s->n];
  const char *name = str_member(o, "name"), *parent = str_member(o, "parent");
  const char *kind = str_member(o, "kind");
  json_t *labels = json_object_get(o, "labels"), *v;
  int64_t id;
  const char *k;
  size_t j = 0;

  memset(p, 0, sizeof *p);
  if (!json_is_object(o) || name == NULL || parent == NULL || kind == NULL ||
      int_member(o, "id", &id) == -1 || id == 0 ||
      int_member(o, "created_ns", &p->info.created_ns) == -1 ||
      int_member(o, "updated_ns", &p->info.updated_ns) == -1 ||
      int_member(o, "size", &p->size) == -1 ||
      int_member(o, "inodes", &p->inodes) == -1 ||
      (labels && !json_is_object(labels)))
    return sn_set_error("snapshot %zu: a field is missing or malformed", i);
  p->id = (uint64_t) id;
  p->remote = json_is_true(json_object_get(o, "remote"));
  for (p->info.kind = SN_SNAP_KIND_VIEW;
       p->info.kind <= SN_SNAP_KIND_COMMITTED &&
       strcmp(kind_names[p->info.kind], kind) != 0; p->info.kind++)
    ;
  if (p->info.kind > SN_SNAP_KIND_COMMITTED)
    return sn_set_error("snapshot %zu: unknown kind \"%s\"", i, kind);
  if (snap_find(s, name))
    return sn_set_error("snapshot %zu: name \"%s\" twice", i, name);
  p->info.name = strdup(name);
  p->info.parent = strdup(parent);
  if (p->info.name == NULL || p->info.parent == NULL)
    return sn_oom();
  if (labels && json_object_size(labels)) {
    p->info.labels = calloc(json_object_size(labels), sizeof *p->info.labels);
    if (p->info.labels == NULL)
      return sn_oom();
    json_object_foreach(labels, k, v) {
      if (!json_is_string(v))
        return sn_set_error("snapshot %zu: label %s is not a string", i, k);
      p->info.labels[j].key = strdup(k);
      p->info.labels[j].value = strdup(json_string_value(v));
      p->info.nlabels = ++j;
      if (p->info.labels[j - 1].key == NULL ||
          p->info.labels[j - 1].value == NULL)
        return sn_oom();
    }
    qsort(p->info.labels, p->info.nlabels, sizeof *p->info.labels,
          label_cmp);
  }
  s->n++;
  return 0;
}

int
snap_load(struct sn_snapshots *s)
{
  char *path;
  uint8_t *buf = NULL;
  size_t len, i;
  json_t *doc = NULL, *arr;
  json_error_t je;
  int64_t ver, next;
  int r = -1;

  if (asprintf(&path, "%s/" META_NAME, s->root) < 0)
    return sn_oom();
  if (sn_read_file(path, META_MAX, true, &buf, &len) == -1) {
    if (errno == ENOENT)
      r = 0;                    /* a new store */
    else
      sn_set_error("%s: %s", path, strerror(errno));
    goto out;
  }
  doc = json_loadb((const char *) buf, len, 0, &je);
  if (doc == NULL) {
    sn_set_error("%s: not JSON (%s, line %d)", path, je.text, je.line);
    goto out;
  }
  arr = json_object_get(doc, "snapshots");
  if (int_member(doc, "version", &ver) == -1 || ver != META_VERSION ||
      int_member(doc, "next_id", &next) == -1 || !json_is_array(arr)) {
    sn_set_error("%s: not a version %d snapshot store", path, META_VERSION);
    goto out;
  }
  s->next_id = (uint64_t) next;
  s->cap = json_array_size(arr) + 16;
  s->v = calloc(s->cap, sizeof *s->v);
  if (s->v == NULL) {
    sn_oom();
    goto out;
  }
  for (i = 0; i < json_array_size(arr); i++)
    if (load_one(s, json_array_get(arr, i), i) == -1) {
      sn_prefix_error("%s: ", path);
      if (s->v[s->n].info.name || s->v[s->n].info.labels)
        sn_snap_info_clear(&s->v[s->n].info);   /* the partial one */
      goto out;
    }
  for (i = 0; i < s->n; i++)
    if (s->v[i].id >= s->next_id) {
      sn_set_error("%s: snapshot id %" PRIu64 " is not below next_id",
                   path, s->v[i].id);
      goto out;
    }
  r = 0;
out:
  json_decref(doc);
  free(buf);
  free(path);
  return r;
}

/* ---- writing ------------------------------------------------------------ */

int
snap_save(struct sn_snapshots *s)
{
  struct sn_json w;
  char *doc, *path;
  size_t len, i, j;
  int r;

  sn_json_init(&w);
  sn_json_set_indent(&w, 1);
  sn_json_begin_object(&w);
  sn_json_member_int(&w, "version", META_VERSION);
  sn_json_member_int(&w, "next_id", (int64_t) s->next_id);
  sn_json_key(&w, "snapshots");
  sn_json_begin_array(&w);
  for (i = 0; i < s->n; i++) {
    const struct snap *p = &s->v[i];

    sn_json_begin_object(&w);
    sn_json_member_int(&w, "id", (int64_t) p->id);
    sn_json_member_string(&w, "name", p->info.name);
    sn_json_member_string(&w, "parent", p->info.parent);
    sn_json_member_string(&w, "kind", kind_names[p->info.kind]);
    sn_json_member_int(&w, "created_ns", p->info.created_ns);
    sn_json_member_int(&w, "updated_ns", p->info.updated_ns);
    sn_json_member_int(&w, "size", p->size);
    sn_json_member_int(&w, "inodes", p->inodes);
    if (p->remote)
      sn_json_member_bool(&w, "remote", true);
    sn_json_key(&w, "labels");
    sn_json_begin_object(&w);
    for (j = 0; j < p->info.nlabels; j++)
      sn_json_member_string(&w, p->info.labels[j].key,
                            p->info.labels[j].value);
    sn_json_end_object(&w);
    sn_json_end_object(&w);
  }
  sn_json_end_array(&w);
  sn_json_end_object(&w);
  if (sn_json_finish(&w, &doc, &len) == -1)
    return -1;
  if (asprintf(&path, "%s/" META_NAME, s->root) < 0) {
    free(doc);
    return sn_oom();
  }
  r = sn_write_file_atomic(path, doc, len, 0600, 1);
  if (r == -1)
    sn_set_error("%s: %s", path, strerror(errno));
  free(path);
  free(doc);
  return r;
}

const char *
sn_snap_label_get(const struct sn_snap_label *l, size_t n, const char *key)
{
  for (size_t i = 0; i < n; i++)
    if (l[i].key && strcmp(l[i].key, key) == 0)
      return l[i].value;
  return NULL;
}
