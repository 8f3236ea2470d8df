/* soci-nbd: the image's statistics — counters summed over its layers and
 * exports, written as the JSON object of the plugin's stats file. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image-int.h"
#include "span/diskcache.h"
#include "span/layer.h"
#include "util/err.h"

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

/* Write s as a JSON string. */
static void
put_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;

    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
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

static const char *
prefetch_name(enum sn_prefetch_mode m)
{
  switch (m) {
  case SN_PREFETCH_ARTIFACT: return "artifact";
  case SN_PREFETCH_BACKGROUND: return "background";
  default: return "none";
  }
}

char *
sn_image_stats_json(struct sn_image *img)
{
  struct sn_image_stats st = { 0 };
  struct sn_diskcache_stats ds;
  char *s = NULL;
  size_t len = 0, i;
  FILE *f = open_memstream(&s, &len);

  if (f == NULL) {
    sn_oom();
    return NULL;
  }
  fprintf(f, "{\n  \"manifest\": \"%s\",\n  \"index\": ", img->manifest_digest);
  if (img->index_digest)
    fprintf(f, "\"%s\"", img->index_digest);
  else
    fputs("null", f);
  fprintf(f, ",\n  \"index_source\": \"%s\",\n  \"index_reason\": \"%s\",\n"
          "  \"layers\": [", img->index_source,
          img->index_why ? img->index_why : "");
  for (i = 0; i < img->nlayers; i++) {
    const struct img_layer *l = &img->layers[i];
    struct sn_layer_stats ls;
    int v = __atomic_load_n(&l->verify, __ATOMIC_ACQUIRE);

    sn_layer_get_stats(l->layer, &ls);
    add_layer_stats(&st, l, &ls);
    fprintf(f, "%s\n    {\"index\": %zu, \"digest\": \"%s\", \"lazy\": %s, "
            "\"spans_total\": %" PRIu64 ", \"spans_fetched\": %" PRIu64
            ", \"spans_verified\": %" PRIu64 ", \"spans_failed\": %" PRIu64
            ", \"bytes_fetched\": %" PRIu64 ", \"cache_hits\": %" PRIu64
            ", \"cache_misses\": %" PRIu64 ", \"disk_hits\": %" PRIu64
            ", \"headers_checked\": %" PRIu64
            ", \"spans_read_ahead\": %" PRIu64
            ", \"whole_layer_bytes_fetched\": %" PRIu64
            ", \"prefetch_ranges\": %zu, \"verify\": \"%s\"",
            i ? "," : "", i, l->digest, l->lazy ? "true" : "false",
            l->spans_total, ls.spans_fetched, ls.spans_verified,
            ls.spans_failed, ls.bytes_fetched, ls.cache_hits,
            ls.cache_misses, ls.disk_hits, ls.headers_checked,
            ls.readahead_spans, l->whole_bytes, l->npf, verify_name(v));
    fputs(", \"ztoc\": ", f);
    if (l->ztoc_digest)
      put_str(f, l->ztoc_digest);
    else
      fputs("null", f);
    if (v == VERIFY_FAILED && l->verify_msg) {
      fputs(", \"verify_error\": ", f);
      put_str(f, l->verify_msg);
    }
    fputc('}', f);
  }
  sn_diskcache_get_stats(img->disk, &ds);
  fputs("\n  ],\n  \"exports\": {", f);
  for (i = 0; i < img->nexports; i++)
    fprintf(f, "%s\n    \"%s\": {\"bytes_read\": %" PRIu64 "}",
            i ? "," : "", img->exports[i].name,
            __atomic_load_n(&img->exports[i].bytes_read, __ATOMIC_RELAXED));
  fprintf(f, "\n  },\n"
          "  \"bytes_fetched\": %" PRIu64 ",\n"
          "  \"spans_total\": %" PRIu64 ",\n"
          "  \"spans_fetched\": %" PRIu64 ",\n"
          "  \"spans_verified\": %" PRIu64 ",\n"
          "  \"spans_failed\": %" PRIu64 ",\n"
          "  \"cache_hits\": %" PRIu64 ",\n"
          "  \"cache_misses\": %" PRIu64 ",\n"
          "  \"disk_hits\": %" PRIu64 ",\n"
          "  \"headers_checked\": %" PRIu64 ",\n"
          "  \"whole_layer_bytes_fetched\": %" PRIu64 ",\n"
          "  \"local_bytes_read\": %" PRIu64 ",\n"
          "  \"prefetch\": \"%s\",\n"
          "  \"prefetch_artifacts\": %zu,\n"
          "  \"prefetch_done\": %s,\n"
          "  \"spans_prefetched\": %" PRIu64 ",\n"
          "  \"spans_read_ahead\": %" PRIu64 ",\n"
          "  \"layer_check\": %s,\n"
          "  \"layers_verified\": %" PRIu64 ",\n"
          "  \"layers_verify_failed\": %" PRIu64 ",\n"
          "  \"cache_dir_bytes\": %" PRIu64 ",\n"
          "  \"cache_dir_max_bytes\": %" PRIu64 ",\n"
          "  \"cache_dir_evicted_files\": %" PRIu64 ",\n"
          "  \"cache_dir_evicted_bytes\": %" PRIu64 ",\n"
          "  \"cache_dir_stale_removed\": %" PRIu64 "\n}\n",
          st.bytes_fetched, st.spans_total, st.spans_fetched,
          st.spans_verified, st.spans_failed, st.cache_hits, st.cache_misses,
          st.disk_hits, st.headers_checked, st.whole_layer_bytes_fetched,
          st.local_bytes_read, prefetch_name(img->prefetch), img->npf_docs,
          __atomic_load_n(&img->bg_done, __ATOMIC_ACQUIRE) ? "true" : "false",
          __atomic_load_n(&img->spans_prefetched, __ATOMIC_RELAXED),
          st.spans_read_ahead, img->layer_check && img->prefetch == SN_PREFETCH_BACKGROUND
          ? "true" : "false",
          st.layers_verified, st.layers_verify_failed, ds.bytes,
          ds.max_bytes, ds.evicted_files, ds.evicted_bytes,
          ds.stale_removed);
  if (fclose(f) != 0) {
    free(s);
    sn_oom();
    return NULL;
  }
  return s;
}
