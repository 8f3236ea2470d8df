/* soci-nbd: the image's statistics — counters summed over its layers and
 * exports, written as the JSON object of the plugin's stats file. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image-int.h"
#include "span/diskcache.h"
#include "span/layer.h"
#include "util/err.h"
#include "util/json.h"

/* ---- statistics ------------------------------------------------------- */

/* Counters summed over the image's layers. */
struct sn_image_stats {
  uint64_t bytes_fetched;      /* compressed bytes of spans, registry */
  uint64_t spans_fetched, spans_verified, spans_failed;
  uint64_t cache_hits, cache_misses, disk_hits, headers_checked;
  uint64_t spans_total;        /* spans of the lazy layers */
  uint64_t whole_layer_bytes_fetched; /* layers downloaded whole */
  uint64_t local_bytes_read;   /* span bytes read from local layer files */
  uint64_t spans_read_ahead;   /* spans asked for by sequential readahead */
  uint64_t layers_verified;    /* whole-layer checks passed */
  uint64_t layers_verify_failed;
};

/* Add layer l (with its sn_layer counters ls) to the image totals st. */
static void
add_layer_stats(struct sn_image_stats *st, const struct img_layer *l,
                const struct sn_layer_stats *ls)
{
  if (l->lazy) {
    st->bytes_fetched += ls->bytes_fetched;
    st->spans_fetched += ls->spans_fetched;
    st->spans_verified += ls->spans_verified;
    st->spans_failed += ls->spans_failed;
    st->spans_total += l->spans_total;
  }
  else
    st->local_bytes_read += __atomic_load_n(&l->local_bytes, __ATOMIC_RELAXED);
  switch (__atomic_load_n(&l->verify, __ATOMIC_ACQUIRE)) {
  case VERIFY_OK: st->layers_verified++; break;
  case VERIFY_FAILED: st->layers_verify_failed++; break;
  default: break;
  }
  st->cache_hits += ls->cache_hits;
  st->cache_misses += ls->cache_misses;
  st->disk_hits += ls->disk_hits;
  st->headers_checked += ls->headers_checked;
  st->spans_read_ahead += ls->readahead_spans;
  st->whole_layer_bytes_fetched += l->whole_bytes;
}

/* One member of the object being written: an integer, a string (null
 * when s is NULL) or a boolean. */
static void
put_int(struct sn_json *w, const char *key, uint64_t v)
{
  sn_json_key(w, key);
  sn_json_int(w, (int64_t) v);
}

static void
put_str(struct sn_json *w, const char *key, const char *s)
{
  sn_json_key(w, key);
  if (s)
    sn_json_string(w, s);
  else
    sn_json_null(w);
}

static void
put_bool(struct sn_json *w, const char *key, bool v)
{
  sn_json_key(w, key);
  sn_json_bool(w, v);
}

/* The stats file's name of a layer's whole-layer check state (VERIFY_*). */
static const char *
verify_name(int v)
{
  switch (v) {
  case VERIFY_PENDING: return "pending";
  case VERIFY_OK: return "ok";
  case VERIFY_FAILED: return "failed";
  default: return "none";
  }
}

/* The stats file's name of the prefetch mode (sn_image_opts.prefetch). */
static const char *
prefetch_name(enum sn_prefetch_mode m)
{
  switch (m) {
  case SN_PREFETCH_ARTIFACT: return "artifact";
  case SN_PREFETCH_BACKGROUND: return "background";
  default: return "none";
  }
}

/* Layer i's object in the "layers" array; its counters are added to st. */
static void
put_layer(struct sn_json *w, struct sn_image_stats *st, size_t i,
          const struct img_layer *l)
{
  struct sn_layer_stats ls;
  int v = __atomic_load_n(&l->verify, __ATOMIC_ACQUIRE);

  sn_layer_get_stats(l->layer, &ls);
  add_layer_stats(st, l, &ls);
  sn_json_begin_object(w);
  put_int(w, "index", i);
  put_str(w, "digest", l->digest);
  put_bool(w, "lazy", l->lazy);
  put_int(w, "spans_total", l->spans_total);
  put_int(w, "spans_fetched", ls.spans_fetched);
  put_int(w, "spans_verified", ls.spans_verified);
  put_int(w, "spans_failed", ls.spans_failed);
  put_int(w, "bytes_fetched", ls.bytes_fetched);
  put_int(w, "cache_hits", ls.cache_hits);
  put_int(w, "cache_misses", ls.cache_misses);
  put_int(w, "disk_hits", ls.disk_hits);
  put_int(w, "headers_checked", ls.headers_checked);
  put_int(w, "spans_read_ahead", ls.readahead_spans);
  put_int(w, "whole_layer_bytes_fetched", l->whole_bytes);
  put_int(w, "prefetch_ranges", l->npf);
  put_str(w, "verify", verify_name(v));
  put_str(w, "ztoc", l->ztoc_digest);
  if (v == VERIFY_FAILED && l->verify_msg)
    put_str(w, "verify_error", l->verify_msg);
  sn_json_end_object(w);
}

/* The stats file's document (plugin man page, "stats-file"), through the
 * one JSON writer (util/json.h), indented for people. */
char *
sn_image_stats_json(struct sn_image *img)
{
  struct sn_image_stats st = { 0 };
  struct sn_diskcache_stats ds;
  struct sn_json w;
  char *out, *s;
  size_t len, i;

  sn_json_init(&w);
  sn_json_set_indent(&w, 2);
  sn_json_begin_object(&w);
  put_str(&w, "manifest", img->manifest_digest);
  put_str(&w, "index", img->index_digest);
  put_str(&w, "index_source", img->index_source);
  put_str(&w, "index_reason", img->index_why ? img->index_why : "");
  sn_json_key(&w, "layers");
  sn_json_begin_array(&w);
  for (i = 0; i < img->nlayers; i++)
    put_layer(&w, &st, i, &img->layers[i]);
  sn_json_end_array(&w);
  sn_json_key(&w, "exports");
  sn_json_begin_object(&w);
  for (i = 0; i < img->nexports; i++) {
    sn_json_key(&w, img->exports[i].name);
    sn_json_begin_object(&w);
    put_int(&w, "bytes_read", __atomic_load_n(&img->exports[i].bytes_read,
                                               __ATOMIC_RELAXED));
    sn_json_end_object(&w);
  }
  sn_json_end_object(&w);
  sn_diskcache_get_stats(img->disk, &ds);
  put_int(&w, "bytes_fetched", st.bytes_fetched);
  put_int(&w, "spans_total", st.spans_total);
  put_int(&w, "spans_fetched", st.spans_fetched);
  put_int(&w, "spans_verified", st.spans_verified);
  put_int(&w, "spans_failed", st.spans_failed);
  put_int(&w, "cache_hits", st.cache_hits);
  put_int(&w, "cache_misses", st.cache_misses);
  put_int(&w, "disk_hits", st.disk_hits);
  put_int(&w, "headers_checked", st.headers_checked);
  put_int(&w, "whole_layer_bytes_fetched", st.whole_layer_bytes_fetched);
  put_int(&w, "local_bytes_read", st.local_bytes_read);
  put_str(&w, "prefetch", prefetch_name(img->prefetch));
  put_int(&w, "prefetch_artifacts", img->npf_docs);
  put_bool(&w, "prefetch_done", __atomic_load_n(&img->bg_done,
                                                __ATOMIC_ACQUIRE));
  put_int(&w, "spans_prefetched", __atomic_load_n(&img->spans_prefetched,
                                                  __ATOMIC_RELAXED));
  put_int(&w, "spans_read_ahead", st.spans_read_ahead);
  put_bool(&w, "layer_check", img->layer_check
           && img->prefetch == SN_PREFETCH_BACKGROUND);
  put_int(&w, "layers_verified", st.layers_verified);
  put_int(&w, "layers_verify_failed", st.layers_verify_failed);
  put_int(&w, "cache_dir_bytes", ds.bytes);
  put_int(&w, "cache_dir_max_bytes", ds.max_bytes);
  put_int(&w, "cache_dir_evicted_files", ds.evicted_files);
  put_int(&w, "cache_dir_evicted_bytes", ds.evicted_bytes);
  put_int(&w, "cache_dir_stale_removed", ds.stale_removed);
  sn_json_end_object(&w);
  if (sn_json_finish(&w, &out, &len) == -1)
    return NULL;
  /* A text file: it ends with a line break. */
  s = realloc(out, len + 2);
  if (s == NULL) {
    free(out);
    sn_oom();
    return NULL;
  }
  s[len] = '\n';
  s[len + 1] = '\0';
  return s;
}
