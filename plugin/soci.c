/* nbdkit-soci-plugin: serve a container image from an OCI registry as
 * read-only squashfs block devices (the flattened image, and one image per
 * layer for overlayfs), fetching compressed spans lazily through its SOCI
 * index.  nbdkit glue only: all the work is in lib/image/image.c. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "util/err.h"
#include "util/fdio.h"
#include "image/image.h"
#include "record/record.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#define MAX_LIST 32

/* -D soci.verbose=1: log registry requests and span fetches. */
NBDKIT_DLL_PUBLIC int soci_debug_verbose = 0;

static const char *image_ref;
static char *image_abs;         /* image_ref with an absolute layout dir */
static const char *platform;
static const char *index_opt;
static char *cache_dir;
static uint64_t cache_size;
static uint32_t block_size;
static const char *username;
static char *password;
static char *auth_file;
static bool insecure;
static char *cacert;
static const char *mirrors[MAX_LIST + 1];
static size_t nmirrors;
static const char *plain_hosts[MAX_LIST + 1];
static size_t nplain;
static char *stats_file;
static uint64_t cache_dir_size;
static enum sn_prefetch_mode prefetch_mode = SN_PREFETCH_AUTO;
static char *record_file;       /* record=: where the record goes */
static double record_idle = 5;  /* record-idle=SECONDS */
static uint64_t record_limit = (uint64_t) 1 << 30;  /* record-limit=SIZE */
static struct sn_recorder *recorder;
static bool layer_check = true;
static bool use_dense = true;
static bool use_deps = true;
static bool use_stargz = true;
static bool use_zchunked = true;
static bool soci_v1;            /* soci-v1=true: look for v1 indexes */

static struct sn_image *img;

/* Statistics file: rewritten when spans were fetched (at most once a
 * second from the data path, and within a second by stats_flusher), and
 * at close and cleanup. */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static int stats_dirty;        /* atomic */
static int64_t stats_last;     /* atomic, monotonic seconds */

/* Monotonic seconds, for throttling stats writes. */
static int64_t
now_sec(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

/* Rewrite the stats file.  Unforced (the data path): only when dirty, at
 * most once a second, and never waiting for the lock.  Failures are only
 * logged with -v. */
static void
write_stats(bool force)
{
  char *json;
  int64_t now = now_sec();

  if (stats_file == NULL || img == NULL)
    return;
  if (!force) {
    if (!__atomic_load_n(&stats_dirty, __ATOMIC_RELAXED) ||
        __atomic_load_n(&stats_last, __ATOMIC_RELAXED) >= now)
      return;
    if (pthread_mutex_trylock(&stats_lock) != 0)
      return;
  }
  else
    pthread_mutex_lock(&stats_lock);
  __atomic_store_n(&stats_dirty, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&stats_last, now, __ATOMIC_RELAXED);
  json = sn_image_stats_json(img);
  /* Never through a symlink: a new file in the same directory, renamed
   * over the old one. */
  if (json && sn_write_file_atomic(stats_file, json, strlen(json), 0644,
                                   0) == -1)
    nbdkit_debug("stats-file %s: %m", stats_file);
  free(json);
  pthread_mutex_unlock(&stats_lock);
}

/* The image's span callback: mark the stats dirty; log with -D verbose. */
static void
span_trace(void *opaque, size_t layer, size_t span, const struct sn_span *s)
{
  (void) opaque;
  __atomic_store_n(&stats_dirty, 1, __ATOMIC_RELAXED);
  if (soci_debug_verbose)
    nbdkit_debug("soci: layer %zu: span %zu fetched: compressed [%" PRId64
                 ", %" PRId64 ") -> tar [%" PRId64 ", %" PRId64 ")",
                 layer, span, s->comp_start, s->comp_end, s->uncomp_start,
                 s->uncomp_end);
}

/* The registry's debug callback, shown with -D soci.verbose=1. */
static void
reg_debug(void *opaque, const char *msg)
{
  (void) opaque;
  if (soci_debug_verbose)
    nbdkit_debug("soci: %s", msg);
}

/* The image's log: "error: " lines as nbdkit errors, the rest as debug. */
static void
image_log(void *opaque, const char *msg)
{
  (void) opaque;
  /* Errors found while serving (a failed whole-layer check) must be seen
   * without -v. */
  if (strncmp(msg, "error: ", 7) == 0)
    nbdkit_error("soci: %s", msg + 7);
  else
    nbdkit_debug("soci: %s", msg);
}

/* Start-up progress from the image: keep the stats file current. */
static void
image_progress(void *opaque)
{
  (void) opaque;
  write_stats(true);
}

/* Free what soci_config copied (the other values are nbdkit's). */
static void
soci_unload(void)
{
  free(image_abs);
  free(cache_dir);
  free(password);
  free(auth_file);
  free(cacert);
  free(stats_file);
  free(record_file);
}

/* *out = value made absolute (before nbdkit changes directory). */
static int
abs_path(const char *key, const char *value, char **out)
{
  free(*out);
  *out = nbdkit_absolute_path(value);
  if (*out == NULL) {
    nbdkit_error("%s: cannot make '%s' absolute", key, value);
    return -1;
  }
  return 0;
}

/* image=: given once; a relative oci-layout: directory is made absolute
 * (copied to image_abs).  0 or -1. */
static int
config_image(const char *value)
{
  if (image_ref) {
    nbdkit_error("image given twice");
    return -1;
  }
  /* A relative layout directory would break after nbdkit's chdir. */
  if (strncmp(value, "oci-layout:", 11) == 0 && value[11] != '/' &&
      value[11] != '\0') {
    char *dir = nbdkit_absolute_path(value + 11);

    if (dir == NULL)
      return -1;
    if (asprintf(&image_abs, "oci-layout:%s", dir) == -1) {
      free(dir);
      nbdkit_error("out of memory");
      return -1;
    }
    free(dir);
    value = image_abs;
  }
  image_ref = value;
  return 0;
}

/* Returned by a config_*_key function for a key it does not handle. */
#define CONFIG_NOT_MINE 1

/* The keys choosing the image and how it is served: 0, -1 on a bad value,
 * or CONFIG_NOT_MINE. */
static int
config_image_key(const char *key, const char *value)
{
  if (strcmp(key, "image") == 0)
    return config_image(value);
  else if (strcmp(key, "platform") == 0)
    platform = value;
  else if (strcmp(key, "index") == 0)
    index_opt = value;
  else if (strcmp(key, "prefetch") == 0) {
    if (strcmp(value, "none") == 0)
      prefetch_mode = SN_PREFETCH_NONE;
    else if (strcmp(value, "auto") == 0)
      prefetch_mode = SN_PREFETCH_AUTO;
    else if (strcmp(value, "artifact") == 0)
      prefetch_mode = SN_PREFETCH_ARTIFACT;
    else if (strcmp(value, "background") == 0)
      prefetch_mode = SN_PREFETCH_BACKGROUND;
    else {
      nbdkit_error("prefetch=%s: expected none, auto, artifact or "
                   "background", value);
      return -1;
    }
  }
  else if (strcmp(key, "soci-v1") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    soci_v1 = r;
  }
  else if (strcmp(key, "dense") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    use_dense = r;
  }
  else if (strcmp(key, "deps") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    use_deps = r;
  }
  else if (strcmp(key, "estargz") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    use_stargz = r;
  }
  else if (strcmp(key, "zstd-chunked") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    use_zchunked = r;
  }
  else if (strcmp(key, "verify") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    layer_check = r;
  }
  else if (strcmp(key, "block-size") == 0) {
    int64_t r = nbdkit_parse_size(value);

    if (r == -1)
      return -1;
    if (r < 4096 || r > (1 << 20) || (r & (r - 1)) != 0) {
      nbdkit_error("block-size=%s: a power of two from 4K to 1M", value);
      return -1;
    }
    block_size = (uint32_t) r;
  }
  else
    return CONFIG_NOT_MINE;
  return 0;
}

/* The local-file keys (caches and the stats file): 0, -1 on a bad value,
 * or CONFIG_NOT_MINE. */
static int
config_local_key(const char *key, const char *value)
{
  if (strcmp(key, "cache-dir") == 0)
    return abs_path(key, value, &cache_dir);
  else if (strcmp(key, "cache-size") == 0) {
    int64_t r = nbdkit_parse_size(value);

    if (r == -1)
      return -1;
    cache_size = (uint64_t) r;
  }
  else if (strcmp(key, "cache-dir-size") == 0) {
    int64_t r = nbdkit_parse_size(value);

    if (r == -1)
      return -1;
    cache_dir_size = (uint64_t) r;
  }
  else if (strcmp(key, "stats-file") == 0)
    return abs_path(key, value, &stats_file);
  else if (strcmp(key, "record") == 0)
    return abs_path(key, value, &record_file);
  else if (strcmp(key, "record-idle") == 0) {
    char *end;

    errno = 0;
    record_idle = strtod(value, &end);
    if (errno || end == value || *end || !(record_idle >= 0) ||
        record_idle > 86400) {
      nbdkit_error("record-idle=%s: seconds, 0 (no idle stop) to 86400",
                   value);
      return -1;
    }
  }
  else if (strcmp(key, "record-limit") == 0) {
    int64_t r = nbdkit_parse_size(value);

    if (r == -1)
      return -1;
    record_limit = (uint64_t) r;
  }
  else
    return CONFIG_NOT_MINE;
  return 0;
}

/* The registry keys (credentials, TLS, mirrors, plain HTTP): 0, -1 on a
 * bad value, or CONFIG_NOT_MINE. */
static int
config_registry_key(const char *key, const char *value)
{
  if (strcmp(key, "username") == 0 || strcmp(key, "user") == 0)
    username = value;
  else if (strcmp(key, "password") == 0) {
    free(password);
    password = NULL;
    if (nbdkit_read_password(value, &password) == -1)
      return -1;
  }
  else if (strcmp(key, "auth-file") == 0)
    return abs_path(key, value, &auth_file);
  else if (strcmp(key, "tls-verify") == 0) {
    int r = nbdkit_parse_bool(value);

    if (r == -1)
      return -1;
    insecure = !r;
  }
  else if (strcmp(key, "cacert") == 0)
    return abs_path(key, value, &cacert);
  else if (strcmp(key, "mirror") == 0) {
    if (nmirrors == MAX_LIST) {
      nbdkit_error("too many mirror= values (at most %d)", MAX_LIST);
      return -1;
    }
    mirrors[nmirrors++] = value;
  }
  else if (strcmp(key, "plain-http") == 0) {
    if (nplain == MAX_LIST) {
      nbdkit_error("too many plain-http= values (at most %d)", MAX_LIST);
      return -1;
    }
    plain_hosts[nplain++] = value;
  }
  else
    return CONFIG_NOT_MINE;
  return 0;
}

/* One key=value: validated and stored; opening waits for get_ready.  See
 * soci_config_help for the keys. */
static int
soci_config(const char *key, const char *value)
{
  int r = config_image_key(key, value);

  if (r == CONFIG_NOT_MINE)
    r = config_local_key(key, value);
  if (r == CONFIG_NOT_MINE)
    r = config_registry_key(key, value);
  if (r == CONFIG_NOT_MINE) {
    nbdkit_error("unknown parameter '%s'", key);
    return -1;
  }
  return r;
}

/* Cross-key checks: image given, credentials paired, cache-dir-size only
 * with cache-dir. */
static int
soci_config_complete(void)
{
  if (image_ref == NULL) {
    nbdkit_error("you must supply the image parameter (registry/repo:tag, "
                 "…@sha256:… or oci-layout:DIR[:TAG])");
    return -1;
  }
  if (password && username == NULL) {
    nbdkit_error("password needs username");
    return -1;
  }
  if (cache_dir_size && cache_dir == NULL) {
    nbdkit_error("cache-dir-size needs cache-dir");
    return -1;
  }
  if (username && password == NULL) {
    nbdkit_error("username needs password (password=+FILE, password=- or "
                 "password=-FD)");
    return -1;
  }
  return 0;
}

#define soci_config_help \
  "image=IMAGE          (required) registry/repo:tag, …@sha256:… or\n" \
  "                     oci-layout:DIR[:TAG]\n" \
  "platform=OS/ARCH[/VARIANT]  platform to pick from an index (default:\n" \
  "                     this host's)\n" \
  "index=auto|none|sha256:…  SOCI index: discover (the v2 annotation;\n" \
  "                     v1 referrers too with soci-v1=true), none (fetch\n" \
  "                     layers whole), or this one\n" \
  "soci-v1=true|false   with index=auto and no v2 index, use a v1 index\n" \
  "                     found through the referrers API (default false)\n" \
  "dense=true|false     use the image's dense index when its manifest\n" \
  "                     names one (default true): small sub-spans, file-\n" \
  "                     aware fetching, no ztoc download\n" \
  "deps=true|false      when a read brings in an ELF file, stage the\n" \
  "                     shared libraries it needs at once (default true;\n" \
  "                     dense-index layers; off while a record replays)\n" \
  "estargz=true|false   serve an eStargz layer lazily from its own TOC\n" \
  "                     when the manifest pins it (default true)\n" \
  "zstd-chunked=true|false  the same for a zstd:chunked layer and its\n" \
  "                     manifest (default true)\n" \
  "cache-dir=DIR        keep whole layers and verified spans in DIR\n" \
  "cache-dir-size=SIZE  bound DIR to SIZE bytes, least recently used\n" \
  "                     files evicted first (default: unbounded)\n" \
  "cache-size=SIZE      memory span cache per layer (default 64M)\n" \
  "prefetch=auto|none|artifact|background  after start: replay the\n" \
  "                     image's prefetch record and SOCI prefetch\n" \
  "                     artifacts (auto, the default), nothing, the\n" \
  "                     artifacts only, or every span of every layer in\n" \
  "                     order at low priority, yielding to reads\n" \
  "record=FILE          write what reads use, per layer, in order, to\n" \
  "                     FILE (a prefetch record: soci-nbd prefetch add)\n" \
  "record-idle=SECONDS  end the record at the first idle gap this long\n" \
  "                     (default 5; 0: at exit only)\n" \
  "record-limit=SIZE    end the record at SIZE bytes (default 1G)\n" \
  "verify=true|false    with prefetch=background, check each completed\n" \
  "                     layer against its digest and rebuild its ztoc\n" \
  "                     (default true); span digests are always checked\n" \
  "block-size=SIZE      squashfs block size, 4K..1M (default 128K)\n" \
  "username=USER        registry user name (with password)\n" \
  "password=PASSWORD    registry password: +FILE, - (prompt) or -FD\n" \
  "auth-file=FILE       docker config.json with credentials (default:\n" \
  "                     $DOCKER_CONFIG/config.json, ~/.docker/config.json)\n" \
  "tls-verify=false     do not verify the registry's TLS certificate\n" \
  "cacert=FILE          trust the CA certificates in FILE\n" \
  "mirror=URL           try this mirror before the registry (repeatable)\n" \
  "plain-http=HOST[:PORT]  talk plain HTTP to HOST (repeatable)\n" \
  "stats-file=FILE      write fetch statistics (JSON) to FILE"

/* Features for `nbdkit soci --dump-plugin` (tests probe them). */
static void
soci_dump_plugin(void)
{
  printf("soci_version=%s\n", PACKAGE_VERSION);
  printf("soci_exports=flat,layer/N,layer-digest\n");
  printf("soci_index_discovery=v2,v1\n");
  printf("soci_prefetch=none,auto,artifact,background\n");
  printf("soci_record=yes\n");
  printf("soci_layer_check=yes\n");
  printf("soci_cache_dir_size=yes\n");
}

/* record=: a recorder over the image's layers. */
static int
start_record(void)
{
  struct sn_recorder_opts ro = {
    .path = record_file, .idle_seconds = record_idle,
    .limit_bytes = record_limit, .log = image_log,
  };
  size_t i, n = sn_image_nlayers(img);
  const char **dg = calloc(n ? n : 1, sizeof *dg);

  if (dg == NULL) {
    nbdkit_error("record: out of memory");
    return -1;
  }
  for (i = 0; i < n; i++)
    dg[i] = sn_image_layer_digest(img, i);
  recorder = sn_recorder_new(&ro, dg, n);
  free(dg);
  if (recorder == NULL) {
    nbdkit_error("record=%s: %s", record_file, sn_error());
    return -1;
  }
  sn_image_set_recorder(img, recorder);
  return 0;
}

/* Open the image (resolve, fetch the ztocs, build the exports) before
 * nbdkit forks, so a bad image fails the start. */
static int
soci_get_ready(void)
{
  struct sn_image_opts o = {
    .reg = {
      .username = username,
      .password = password,
      .auth_file = auth_file,
      .cacert = cacert,
      .insecure = insecure,
      .plain_http_hosts = nplain ? plain_hosts : NULL,
      .mirrors = nmirrors ? mirrors : NULL,
      .debug = reg_debug,
    },
    .platform = platform,
    .index = index_opt,
    .allow_v1 = soci_v1,
    .no_dense = !use_dense,
    .no_deps = !use_deps,
    .no_stargz = !use_stargz,
    .no_zchunked = !use_zchunked,
    .cache_dir = cache_dir,
    .cache_size = cache_size,
    .cache_dir_size = cache_dir_size,
    .prefetch = prefetch_mode,
    .no_layer_check = !layer_check,
    .block_size = block_size,
    .trace = span_trace,
    .log = image_log,
    .progress = image_progress,
  };

  img = sn_image_open(image_ref, &o);
  if (img == NULL) {
    nbdkit_error("%s", sn_error());
    return -1;
  }
  if (record_file && start_record() == -1)
    return -1;
  write_stats(true);
  return 0;
}

/* With a stats-file: a thread that rewrites it within a second of a
 * change the data path left unwritten (its writes are throttled), so
 * readers of a long-lived server (soci-nbd mounts, scripts) see current
 * numbers without a disconnection. */
static pthread_t stats_thread;
static bool stats_thread_running;
static pthread_mutex_t stats_stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stats_stop_cond = PTHREAD_COND_INITIALIZER;
static bool stats_stop;

/* Once a second until stopped, write the stats if the data path left
 * them dirty. */
static void *
stats_flusher(void *arg)
{
  (void) arg;
  pthread_mutex_lock(&stats_stop_lock);
  while (!stats_stop) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&stats_stop_cond, &stats_stop_lock, &ts);
    if (stats_stop)
      break;
    pthread_mutex_unlock(&stats_stop_lock);
    if (__atomic_load_n(&stats_dirty, __ATOMIC_RELAXED))
      write_stats(true);
    pthread_mutex_lock(&stats_stop_lock);
  }
  pthread_mutex_unlock(&stats_stop_lock);
  return NULL;
}

/* Start the work that needs threads: background prefetch and the stats
 * flusher. */
static int
soci_after_fork(void)
{
  int e;

  if (sn_image_start_background(img) == -1 ||
      (recorder && sn_recorder_start(recorder) == -1)) {
    nbdkit_error("%s", sn_error());
    return -1;
  }
  if (stats_file) {
    e = pthread_create(&stats_thread, NULL, stats_flusher, NULL);
    if (e != 0) {
      nbdkit_error("stats-file: pthread_create: %s", strerror(e));
      return -1;
    }
    stats_thread_running = true;
  }
  return 0;
}

/* Stop the flusher, write the stats a last time, free the image. */
static void
soci_cleanup(void)
{
  if (stats_thread_running) {
    pthread_mutex_lock(&stats_stop_lock);
    stats_stop = true;
    pthread_cond_signal(&stats_stop_cond);
    pthread_mutex_unlock(&stats_stop_lock);
    pthread_join(stats_thread, NULL);
    stats_thread_running = false;
  }
  /* The record is written once no read can add to it. */
  if (img)
    sn_image_set_recorder(img, NULL);
  sn_recorder_free(recorder);
  recorder = NULL;
  write_stats(true);
  sn_image_free(img);
  img = NULL;
}

/* Every export of the image with a description for nbdinfo --list. */
static int
soci_list_exports(int readonly, int is_tls, struct nbdkit_exports *exports)
{
  size_t i, n = sn_image_nexports(img);

  (void) readonly;
  (void) is_tls;
  for (i = 0; i < n; i++) {
    struct sn_image_export *e = sn_image_export(img, i);
    char desc[160];

    if (e->name[0] == '\0')
      snprintf(desc, sizeof desc, "flattened image (%zu layers)",
               sn_image_nlayers(img));
    else if (strcmp(e->name, "flat") == 0)
      snprintf(desc, sizeof desc, "flattened image (%zu layers), "
               "same as the export \"\"", sn_image_nlayers(img));
    else
      snprintf(desc, sizeof desc, "layer %zu (%s)", e->first_layer,
               sn_image_layer_digest(img, e->first_layer));
    if (nbdkit_add_export(exports, e->name, desc) == -1)
      return -1;
  }
  return 0;
}

/* "" is the flattened image. */
static const char *
soci_default_export(int readonly, int is_tls)
{
  (void) readonly;
  (void) is_tls;
  return "";
}

/* The handle is the export named by the client (NULL: unknown name). */
static void *
soci_open(int readonly)
{
  const char *name = nbdkit_export_name();
  struct sn_image_export *e;

  (void) readonly;
  e = sn_image_find_export(img, name ? name : "");
  if (e == NULL) {
    nbdkit_error("%s", sn_error());
    return NULL;
  }
  return e;
}

static void
soci_close(void *handle)
{
  (void) handle;
  write_stats(true);
}

static int64_t
soci_get_size(void *handle)
{
  struct sn_image_export *e = handle;

  return (int64_t) sn_sqfs_size(e->sqfs);
}

/* Any byte range can be read; 4 KiB is the preferred size, 32 MiB the
 * largest request accepted. */
static int
soci_block_size(void *handle, uint32_t *minimum, uint32_t *preferred,
                uint32_t *maximum)
{
  (void) handle;
  *minimum = 1;
  *preferred = 4096;
  *maximum = 32 * 1024 * 1024;
  return 0;
}

static int
soci_can_write(void *handle)
{
  (void) handle;
  return 0;
}

static int
soci_can_multi_conn(void *handle)
{
  (void) handle;
  return 1;
}

static int
soci_can_cache(void *handle)
{
  (void) handle;
  return NBDKIT_CACHE_NATIVE;
}

/* The read path starts here (docs/architecture.md, "The read path"); a
 * failure is EIO with the library's one-line message in the log. */
static int
soci_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  struct sn_image_export *e = handle;
  int r;

  (void) flags;
  r = sn_image_pread(img, e, buf, count, offset);
  if (r == -1) {
    nbdkit_error("export '%s': read of %" PRIu32 " bytes at %" PRIu64
                 ": %s", e->name, count, offset, sn_error());
    nbdkit_set_error(EIO);
  }
  write_stats(false);
  return r;
}

/* NBD_CMD_CACHE: fetch and cache the spans under the range, no data back. */
static int
soci_cache(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct sn_image_export *e = handle;
  int r;

  if (flags != 0) {
    nbdkit_error("cache: unknown flags %#" PRIx32, flags);
    nbdkit_set_error(EINVAL);
    return -1;
  }
  r = sn_image_prefetch(img, e, count, offset);
  if (r == -1) {
    nbdkit_error("export '%s': cache of %" PRIu32 " bytes at %" PRIu64
                 ": %s", e->name, count, offset, sn_error());
    nbdkit_set_error(EIO);
  }
  write_stats(false);
  return r;
}

static struct nbdkit_plugin plugin = {
  .name = "soci",
  .longname = "nbdkit SOCI container image plugin",
  .version = PACKAGE_VERSION,
  .unload = soci_unload,
  .config = soci_config,
  .config_complete = soci_config_complete,
  .config_help = soci_config_help,
  .magic_config_key = "image",
  .dump_plugin = soci_dump_plugin,
  .get_ready = soci_get_ready,
  .after_fork = soci_after_fork,
  .cleanup = soci_cleanup,
  .list_exports = soci_list_exports,
  .default_export = soci_default_export,
  .open = soci_open,
  .close = soci_close,
  .get_size = soci_get_size,
  .block_size = soci_block_size,
  .can_write = soci_can_write,
  .can_multi_conn = soci_can_multi_conn,
  .can_cache = soci_can_cache,
  .pread = soci_pread,
  .cache = soci_cache,
};

NBDKIT_REGISTER_PLUGIN(plugin)
