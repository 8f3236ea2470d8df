/* soci-nbd: the image's prefetch thread — the replay of the image's
 * prefetch record and artifacts (image-replay.c), or every span of every
 * lazy layer while the foreground is quiet, followed by the whole-layer
 * check that poisons a layer whose digest does not match. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image/image-int.h"
#include "span/layer.h"
#include "span/spancache.h"
#include "util/err.h"

/* Background fetches wait until no foreground read ran for this long. */
#define QUIET_NS (20 * 1000 * 1000)

/* ---- the prefetch thread ---------------------------------------------- */

/* Has sn_image_free asked the thread to stop? */
static bool
bg_stopping(struct sn_image *img)
{
  return __atomic_load_n(&img->bg_stop, __ATOMIC_ACQUIRE);
}

/* Wait until no foreground read has run for QUIET_NS.  False: stop. */
static bool
wait_quiet(struct sn_image *img)
{
  struct timespec ts = { 0, 5 * 1000 * 1000 };

  while (!bg_stopping(img)) {
    if (__atomic_load_n(&img->fg_active, __ATOMIC_ACQUIRE) == 0 &&
        img_now_ns() - __atomic_load_n(&img->fg_last, __ATOMIC_ACQUIRE)
        >= QUIET_NS)
      return true;
    nanosleep(&ts, NULL);
  }
  return false;
}

static void
prefetched(struct sn_image *img, uint64_t n)
{
  __atomic_fetch_add(&img->spans_prefetched, n, __ATOMIC_RELAXED);
}

/* Layer l failed its whole-layer check: record why (for the stats), log
 * it, and poison the layer so that no more of it is served. */
static void
verify_failed(struct sn_image *img, struct img_layer *l, const char *msg)
{
  char *m = NULL;

  if (asprintf(&m, "layer %zu (%s): %s", l->index, l->digest, msg) == -1)
    m = NULL;
  l->verify_msg = m;
  __atomic_store_n(&l->verify, VERIFY_FAILED, __ATOMIC_RELEASE);
  img_logf(img, "error: %s; the layer is no longer served", m ? m : msg);
  sn_layer_poison(l->layer, m ? m : msg);
}

/* Every span of layer l, in order, one at a time when the foreground is
 * quiet, then (with layer_check) the whole-layer check.  False: stop. */
static bool
background_layer(struct sn_image *img, struct img_layer *l)
{
  size_t i, n = sn_layer_nspans(l->layer);
  struct sn_layer_check *c = NULL;
  bool mismatch = false;
  char msg[1024];

  /* A layer served from its own TOC is checked chunk by chunk against
   * it (docs/estargz.md): there is no whole-layer check to run. */
  if (img->layer_check && !l->stargz_toc) {
    c = sn_layer_check_new(l->layer);
    if (c == NULL) {
      img_logf(img, "warning: layer %zu: whole-layer check not possible: %s",
            l->index, sn_error());
      return true;
    }
    __atomic_store_n(&l->verify, VERIFY_PENDING, __ATOMIC_RELEASE);
  }
  for (i = 0; i < n; i++) {
    uint8_t *comp;
    size_t clen;
    bool cached, warm;
    int tries;

    if (!wait_quiet(img))
      goto stop;
    cached = sn_layer_span_cached(l->layer, i);
    if (cached && c == NULL)
      continue;
    /* Keep the span in memory only where nothing needs evicting: the
     * foreground's working set wins. */
    warm = !cached && sn_layer_cache_room(l->layer, i);
    for (tries = 0; ; tries++) {
      struct timespec ts = { 1, 0 };

      if (sn_layer_load_span(l->layer, i, warm, &comp, &clen) == 0 &&
          (comp || c == NULL ||
           sn_layer_span_comp(l->layer, i, &comp, &clen) == 0))
        break;
      if (tries == 5) {
        img_logf(img, "warning: background fetch of layer %zu stopped: %s",
              l->index, sn_error());
        if (c)
          __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
        sn_layer_check_free(c);
        return true;
      }
      if (bg_stopping(img))
        goto stop;
      nanosleep(&ts, NULL);
    }
    prefetched(img, 1);
    if (c && sn_layer_check_span(c, i, comp, clen, &mismatch) == -1) {
      snprintf(msg, sizeof msg, "%s", sn_error());
      free(comp);
      if (mismatch)
        verify_failed(img, l, msg);
      else {
        img_logf(img, "warning: %s", msg);
        __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
      }
      sn_layer_check_free(c);
      return true;
    }
    free(comp);
  }
  if (c) {
    if (sn_layer_check_finish(c, l->digest, &mismatch) == -1) {
      snprintf(msg, sizeof msg, "%s", sn_error());
      if (mismatch)
        verify_failed(img, l, msg);
      else {
        img_logf(img, "warning: %s", msg);
        __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
      }
    }
    else {
      __atomic_store_n(&l->verify, VERIFY_OK, __ATOMIC_RELEASE);
      img_logf(img, "layer %zu (%s): whole-layer check passed", l->index,
            l->digest);
    }
    sn_layer_check_free(c);
  }
  return true;

stop:
  if (c)
    __atomic_store_n(&l->verify, VERIFY_NONE, __ATOMIC_RELEASE);
  sn_layer_check_free(c);
  return false;
}

/* The prefetch thread: the artifacts' spans or the background fetch (at
 * SCHED_IDLE), then bg_done. */
static void *
bg_main(void *arg)
{
  struct sn_image *img = arg;
  size_t i;

  if (img->prefetch == SN_PREFETCH_ARTIFACT ||
      img->prefetch == SN_PREFETCH_AUTO)
    img_replay_run(img);
  else if (img->prefetch == SN_PREFETCH_BACKGROUND) {
#ifdef SCHED_IDLE
    struct sched_param sp = { 0 };

    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
#endif
    for (i = 0; i < img->nlayers; i++) {
      if (img->layers[i].lazy && !background_layer(img, &img->layers[i]))
        break;
      if (img->progress)
        img->progress(img->opaque);
    }
    img_logf(img, "background fetch %s: %" PRIu64 " spans loaded",
          i == img->nlayers ? "done" : "stopped",
          __atomic_load_n(&img->spans_prefetched, __ATOMIC_RELAXED));
  }
  __atomic_store_n(&img->bg_done, 1, __ATOMIC_RELEASE);
  if (img->progress)
    img->progress(img->opaque);
  return NULL;
}

int
sn_image_start_background(struct sn_image *img)
{
  int e;

  if (img->prefetch == SN_PREFETCH_NONE || img->bg_started)
    return 0;
  e = pthread_create(&img->bg, NULL, bg_main, img);
  if (e != 0)
    return sn_set_error("prefetch thread: %s", strerror(e));
  img->bg_started = true;
  return 0;
}
