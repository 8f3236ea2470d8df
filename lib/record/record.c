/* soci-nbd: the prefetch record document (docs/prefetch-record.md) —
 * parsing it (hostile input: every field checked), writing it in its one
 * canonical form, and binding its layers to an image's. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "record/record.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/json.h"

void
sn_record_clear(struct sn_record *r)
{
  size_t i;

  for (i = 0; i < r->nlayers; i++)
    free(r->layers[i]);
  free(r->layers);
  free(r->ranges);
  memset(r, 0, sizeof *r);
}

/* A JSON integer in [0, max] into *v. */
static bool
get_uint(const json_t *j, uint64_t max, uint64_t *v)
{
  json_int_t x;

  if (!json_is_integer(j) || (x = json_integer_value(j)) < 0 ||
      (uint64_t) x > max)
    return false;
  *v = (uint64_t) x;
  return true;
}

/* "layers": distinct well-formed digests. */
static int
parse_layers(const json_t *a, struct sn_record *out)
{
  uint8_t bin[SN_SHA256_LEN];
  const json_t *v;
  size_t i, k;

  if (!json_is_array(a))
    return sn_set_error("prefetch record: \"layers\" is not an array");
  if (json_array_size(a) > SN_RECORD_MAX_LAYERS)
    return sn_set_error("prefetch record: %zu layers (the limit is %d)",
                        json_array_size(a), SN_RECORD_MAX_LAYERS);
  out->layers = calloc(json_array_size(a) + 1, sizeof *out->layers);
  if (out->layers == NULL)
    return sn_oom();
  json_array_foreach(a, i, v) {
    const char *s = json_string_value(v);

    if (s == NULL || sn_digest_parse(s, json_string_length(v), bin) == -1)
      return sn_set_error("prefetch record: layers[%zu] is not a sha256 "
                          "digest", i);
    for (k = 0; k < out->nlayers; k++)
      if (strcmp(out->layers[k], s) == 0)
        return sn_set_error("prefetch record: layers[%zu] repeats %s", i, s);
    if ((out->layers[out->nlayers] = strdup(s)) == NULL)
      return sn_oom();
    out->nlayers++;
  }
  return 0;
}

/* "ranges": [LAYER, OFF, LEN] each. */
static int
parse_ranges(const json_t *a, struct sn_record *out)
{
  const json_t *v;
  size_t i;

  if (!json_is_array(a))
    return sn_set_error("prefetch record: \"ranges\" is not an array");
  if (json_array_size(a) > SN_RECORD_MAX_RANGES)
    return sn_set_error("prefetch record: %zu ranges (the limit is %zu)",
                        json_array_size(a), SN_RECORD_MAX_RANGES);
  out->ranges = calloc(json_array_size(a) + 1, sizeof *out->ranges);
  if (out->ranges == NULL)
    return sn_oom();
  json_array_foreach(a, i, v) {
    struct sn_record_range *g = &out->ranges[i];
    uint64_t layer;

    if (!json_is_array(v) || json_array_size(v) != 3 ||
        !get_uint(json_array_get(v, 0), UINT32_MAX, &layer) ||
        !get_uint(json_array_get(v, 1), INT64_MAX, &g->off) ||
        !get_uint(json_array_get(v, 2), INT64_MAX, &g->len))
      return sn_set_error("prefetch record: ranges[%zu] is not [LAYER, "
                          "OFFSET, LENGTH] of non-negative integers", i);
    if (layer >= out->nlayers)
      return sn_set_error("prefetch record: ranges[%zu]: layer %" PRIu64
                          " of %zu", i, layer, out->nlayers);
    if (g->len == 0 || g->len > (uint64_t) INT64_MAX - g->off)
      return sn_set_error("prefetch record: ranges[%zu]: length %" PRIu64
                          " at offset %" PRIu64, i, g->len, g->off);
    g->layer = (uint32_t) layer;
    out->nranges = i + 1;
  }
  return 0;
}

/* jansson builds a tree of about 60 bytes a value: bound the values (a
 * range is 4: its array and 3 integers) before parsing, so that a hostile
 * document of SN_RECORD_MAX_SIZE cannot take gigabytes.  Counted: '[',
 * '{' and ',' outside strings. */
#define MAX_VALUES (4 * SN_RECORD_MAX_RANGES + SN_RECORD_MAX_LAYERS + 4096)

static int
check_values(const uint8_t *buf, size_t len)
{
  size_t i, n = 0;
  bool str = false;

  for (i = 0; i < len; i++) {
    if (str) {
      if (buf[i] == '\\')
        i++;
      else if (buf[i] == '"')
        str = false;
    } else if (buf[i] == '"') {
      str = true;
    } else if ((buf[i] == '[' || buf[i] == '{' || buf[i] == ',') &&
               ++n > MAX_VALUES) {
      return sn_set_error("prefetch record: more than %zu JSON values",
                          MAX_VALUES);
    }
  }
  return 0;
}

int
sn_record_parse(const uint8_t *buf, size_t len, struct sn_record *out)
{
  json_error_t je;
  json_t *root, *mt;
  int r;

  memset(out, 0, sizeof *out);
  if (len > SN_RECORD_MAX_SIZE)
    return sn_set_error("prefetch record: %zu bytes (the limit is %zu MiB)",
                        len, SN_RECORD_MAX_SIZE >> 20);
  if (check_values(buf, len) == -1)
    return -1;
  root = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL)
    return sn_set_error("prefetch record: not JSON: %s (line %d)", je.text,
                        je.line);
  if (!json_is_object(root) ||
      !json_is_string(mt = json_object_get(root, "mediaType")) ||
      strcmp(json_string_value(mt), SN_RECORD_MEDIA_TYPE) != 0) {
    json_decref(root);
    return sn_set_error("not a prefetch record (mediaType %s expected)",
                        SN_RECORD_MEDIA_TYPE);
  }
  r = parse_layers(json_object_get(root, "layers"), out);
  if (r == 0)
    r = parse_ranges(json_object_get(root, "ranges"), out);
  json_decref(root);
  if (r == -1)
    sn_record_clear(out);
  return r;
}

int
sn_record_encode(const struct sn_record *r, uint8_t **out, size_t *len)
{
  struct sn_json w;
  char *s;
  size_t i;

  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_member_string(&w, "mediaType", SN_RECORD_MEDIA_TYPE);
  sn_json_key(&w, "layers");
  sn_json_begin_array(&w);
  for (i = 0; i < r->nlayers; i++)
    sn_json_string(&w, r->layers[i]);
  sn_json_end_array(&w);
  sn_json_key(&w, "ranges");
  sn_json_begin_array(&w);
  for (i = 0; i < r->nranges; i++) {
    sn_json_begin_array(&w);
    sn_json_int(&w, r->ranges[i].layer);
    sn_json_int(&w, (int64_t) r->ranges[i].off);
    sn_json_int(&w, (int64_t) r->ranges[i].len);
    sn_json_end_array(&w);
  }
  sn_json_end_array(&w);
  sn_json_end_object(&w);
  if (sn_json_finish(&w, &s, len) == -1)
    return -1;
  *out = (uint8_t *) s;
  return 0;
}

int
sn_record_bind(const struct sn_record *r, const char *const *digests,
               const int64_t *sizes, size_t n, size_t *map)
{
  size_t i, k;

  for (k = 0; k < r->nlayers; k++) {
    for (i = 0; i < n && strcmp(digests[i], r->layers[k]) != 0; i++)
      ;
    if (i == n)
      return sn_set_error("the record names layer %s which the image does "
                          "not have", r->layers[k]);
    map[k] = i;
  }
  for (k = 0; k < r->nranges; k++) {
    const struct sn_record_range *g = &r->ranges[k];
    int64_t size = sizes ? sizes[map[g->layer]] : -1;

    if (size >= 0 && g->off + g->len > (uint64_t) size)
      return sn_set_error("the record's range %zu [%" PRIu64 ", +%" PRIu64
                          ") is past the end of layer %s (%" PRId64
                          " bytes)", k, g->off, g->len,
                          r->layers[g->layer], size);
  }
  return 0;
}
