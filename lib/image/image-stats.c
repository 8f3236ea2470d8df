/* soci-nbd: the image's statistics — counters summed over its layers and
 * exports, written as the JSON object of the plugin's stats file. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deps/deps.h"
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
  uint64_t windows_fetched;    /* dense index: sparse windows fetched */
  uint64_t windows_staged;     /* of those, fetched ahead of a run */
  uint64_t spans_released;     /* read whole by a stream, dropped behind it */
  uint64_t replay_spans, replay_bytes, replay_used_spans, replay_used_bytes;
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
    st->windows_fetched += ls->windows_fetched;
    st->windows_staged += ls->windows_staged;
    st->spans_released += ls->spans_released;
    st->replay_spans += ls->replay_spans;
    st->replay_bytes += ls->replay_bytes;
    st->replay_used_spans += ls->replay_used_spans;
    st->replay_used_bytes += ls->replay_used_bytes;
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
  case SN_PREFETCH_AUTO: return "auto";
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
  sn_json_member_int(w, "index", i);
  sn_json_member_string(w, "digest", l->digest);
  sn_json_member_bool(w, "lazy", l->lazy);
  sn_json_member_int(w, "spans_total", l->spans_total);
  sn_json_member_int(w, "spans_fetched", ls.spans_fetched);
  sn_json_member_int(w, "spans_verified", ls.spans_verified);
  sn_json_member_int(w, "spans_failed", ls.spans_failed);
  sn_json_member_int(w, "bytes_fetched", ls.bytes_fetched);
  sn_json_member_int(w, "cache_hits", ls.cache_hits);
  sn_json_member_int(w, "cache_misses", ls.cache_misses);
  sn_json_member_int(w, "disk_hits", ls.disk_hits);
  sn_json_member_int(w, "headers_checked", ls.headers_checked);
  sn_json_member_int(w, "spans_read_ahead", ls.readahead_spans);
  sn_json_member_int(w, "whole_layer_bytes_fetched", l->whole_bytes);
  sn_json_member_int(w, "prefetch_ranges", l->npf);
  sn_json_member_string(w, "verify", verify_name(v));
  sn_json_member_string(w, "ztoc", l->ztoc_digest);
  sn_json_member_string(w, "served", sn_image_layer_served(l->img, l->index));
  sn_json_member_int(w, "replay_bytes", ls.replay_bytes);
  sn_json_member_int(w, "replay_used_bytes", ls.replay_used_bytes);
  if (l->stargz_toc)
    sn_json_member_string(w, l->zchunked ? "zstd_chunked_manifest"
                          : "estargz_toc", l->stargz_toc);
  if (l->windows_digest) {
    sn_json_member_string(w, "dense_windows", l->windows_digest);
    sn_json_member_int(w, "windows_fetched", ls.windows_fetched);
    sn_json_member_int(w, "windows_staged", ls.windows_staged);
    sn_json_member_int(w, "windows_from_cache", ls.windows_from_cache);
  }
  if (v == VERIFY_FAILED && l->verify_msg)
    sn_json_member_string(w, "verify_error", l->verify_msg);
  sn_json_end_object(w);
}

/* The dependency prefetch's counters, summed over the exports. */
static void
deps_stats(struct sn_image *img, struct sn_deps_stats *sum)
{
  struct sn_deps_stats one;
  size_t i;

  memset(sum, 0, sizeof *sum);
  pthread_mutex_lock(&img->deps_lock);
  for (i = 0; img->deps && i < img->nexports; i++)
    if (img->deps[i]) {
      sn_deps_get_stats(img->deps[i], &one);
      sum->files_parsed += one.files_parsed;
      sum->files_staged += one.files_staged;
      sum->not_found += one.not_found;
      sum->errors += one.errors;
    }
  pthread_mutex_unlock(&img->deps_lock);
}

/* The stats file's document (plugin man page, "stats-file"), through the
 * one JSON writer (util/json.h), indented for people. */
char *
sn_image_stats_json(struct sn_image *img)
{
  struct sn_image_stats st = { 0 };
  struct sn_deps_stats dps;
  struct sn_diskcache_stats ds;
  struct sn_json w;
  char *out, *s;
  size_t len, i;

  sn_json_init(&w);
  sn_json_set_indent(&w, 2);
  sn_json_begin_object(&w);
  sn_json_member_string(&w, "manifest", img->manifest_digest);
  sn_json_member_string(&w, "index", img->index_digest);
  sn_json_member_string(&w, "index_source", img->index_source);
  sn_json_member_string(&w, "index_reason", img->index_why ? img->index_why : "");
  sn_json_member_string(&w, "dense_index", img->dense_digest);
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
    sn_json_member_int(&w, "bytes_read", __atomic_load_n(&img->exports[i].bytes_read,
                                               __ATOMIC_RELAXED));
    sn_json_end_object(&w);
  }
  sn_json_end_object(&w);
  sn_diskcache_get_stats(img->disk, &ds);
  sn_json_member_int(&w, "bytes_fetched", st.bytes_fetched);
  sn_json_member_int(&w, "spans_total", st.spans_total);
  sn_json_member_int(&w, "windows_fetched", st.windows_fetched);
  sn_json_member_int(&w, "windows_staged", st.windows_staged);
  sn_json_member_int(&w, "spans_released", st.spans_released);
  sn_json_member_int(&w, "spans_fetched", st.spans_fetched);
  sn_json_member_int(&w, "spans_verified", st.spans_verified);
  sn_json_member_int(&w, "spans_failed", st.spans_failed);
  sn_json_member_int(&w, "cache_hits", st.cache_hits);
  sn_json_member_int(&w, "cache_misses", st.cache_misses);
  sn_json_member_int(&w, "disk_hits", st.disk_hits);
  sn_json_member_int(&w, "headers_checked", st.headers_checked);
  sn_json_member_int(&w, "whole_layer_bytes_fetched", st.whole_layer_bytes_fetched);
  sn_json_member_int(&w, "local_bytes_read", st.local_bytes_read);
  sn_json_member_string(&w, "prefetch", prefetch_name(img->prefetch));
  sn_json_member_int(&w, "prefetch_artifacts", img->npf_docs);
  sn_json_member_bool(&w, "prefetch_done", __atomic_load_n(&img->bg_done,
                                                __ATOMIC_ACQUIRE));
  sn_json_member_int(&w, "spans_prefetched",
                     __atomic_load_n(&img->spans_prefetched, __ATOMIC_RELAXED)
                     + st.replay_spans);
  sn_json_member_string(&w, "prefetch_record",
                        __atomic_load_n(&img->record_digest, __ATOMIC_ACQUIRE));
  sn_json_member_int(&w, "replay_runs", __atomic_load_n(&img->replay_items,
                                                        __ATOMIC_ACQUIRE));
  sn_json_member_int(&w, "replay_runs_done",
                     __atomic_load_n(&img->replay_done, __ATOMIC_RELAXED));
  sn_json_member_int(&w, "replay_spans", st.replay_spans);
  sn_json_member_int(&w, "replay_bytes", st.replay_bytes);
  sn_json_member_int(&w, "replay_used_spans", st.replay_used_spans);
  sn_json_member_int(&w, "replay_used_bytes", st.replay_used_bytes);
  sn_json_member_int(&w, "spans_read_ahead", st.spans_read_ahead);
  deps_stats(img, &dps);
  sn_json_member_bool(&w, "deps",
                      __atomic_load_n(&img->deps_on, __ATOMIC_RELAXED));
  sn_json_member_int(&w, "deps_files_parsed", dps.files_parsed);
  sn_json_member_int(&w, "deps_files_staged", dps.files_staged);
  sn_json_member_int(&w, "deps_not_found", dps.not_found);
  sn_json_member_int(&w, "deps_errors", dps.errors);
  sn_json_member_bool(&w, "layer_check", img->layer_check
           && img->prefetch == SN_PREFETCH_BACKGROUND);
  sn_json_member_int(&w, "layers_verified", st.layers_verified);
  sn_json_member_int(&w, "layers_verify_failed", st.layers_verify_failed);
  sn_json_member_int(&w, "cache_dir_bytes", ds.bytes);
  sn_json_member_int(&w, "cache_dir_max_bytes", ds.max_bytes);
  sn_json_member_int(&w, "cache_dir_evicted_files", ds.evicted_files);
  sn_json_member_int(&w, "cache_dir_evicted_bytes", ds.evicted_bytes);
  sn_json_member_int(&w, "cache_dir_stale_removed", ds.stale_removed);
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
