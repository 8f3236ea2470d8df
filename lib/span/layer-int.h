/* soci-nbd: internal to lib/span/layer*.c — struct sn_layer and the
 * helpers its files share (setup, fetching and reads in layer.c, sequential
 * readahead in layer-readahead.c, file header checks in layer-check.c, the
 * whole-layer check in layer-verify.c).  Not for use outside lib/span/.
 */
#ifndef SN_LAYER_INT_H
#define SN_LAYER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "soci/zinfo.h"
#include "span/layer.h"

struct sn_bufpool;
struct sn_spancache;

enum { FILE_UNKNOWN, FILE_OK, FILE_BAD };

/* A file with data, for finding the files a read overlaps. */
struct data_file {
  int64_t off, end;             /* [off, end) of its data in the tar */
  int64_t max_end;              /* max end of this and all earlier ones */
  size_t idx;                   /* into z->files */
};

/* A file whose header check failed, and why. */
struct bad_file {
  size_t idx;
  char *msg;
  struct bad_file *next;
};

#define LAYER_RUN_CONDS 32
/* How many spans a stream has read whole stay cached behind it (for the
 * header checks and stragglers of the reads in flight). */
#define LAYER_DONE_KEEP 64

struct sn_layer {
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  sn_blob_read_fn read;
  void *read_opaque;
  sn_blob_read_fn win_read;     /* dense index: the windows blob */
  void *win_opaque;
  sn_span_trace_fn trace;
  void *trace_opaque;
  struct sn_spancache *cache;
  /* Reused buffers: decoded spans (released by the cache) and compressed
   * spans (released right after decoding). */
  struct sn_bufpool *span_pool, *comp_pool;
  char *name;                   /* for messages: digest or "the layer" */
  char *dir;                    /* disk cache DIR/<hex>, or NULL */
  struct sn_diskcache *disk;    /* its size accounting, or NULL */
  int max_refetch;
  /* Per span: a background fetcher wants a copy of the compressed bytes
   * of the next load (capture), and the copy (captured). */
  _Atomic(int) *capture;
  _Atomic(uint8_t *) *captured;
  _Atomic(char *) poison;       /* set: every read fails with this */
  _Atomic bool closing;         /* sn_layer_free waits: background loops
                                 * stop at their next step */

  struct data_file *df;         /* sorted by off */
  size_t ndf;
  _Atomic unsigned char *fstate;  /* per z->files entry: FILE_* */
  pthread_mutex_t lock;         /* protects bad */
  struct bad_file *bad;

  _Atomic uint64_t spans_fetched, spans_verified, spans_failed;
  _Atomic uint64_t bytes_fetched, disk_hits, headers_checked;
  _Atomic uint64_t readahead_spans;
  _Atomic uint64_t windows_fetched, windows_staged, windows_from_cache;
  _Atomic uint64_t spans_released;
  /* Replay (layer-replay.c): per span, 1 once a replay staged it, 2 once
   * a read used it; and the counters of sn_layer_stats. */
  _Atomic unsigned char *replayed;
  _Atomic uint64_t replay_spans, replay_bytes, replay_used_spans,
    replay_used_bytes;
  size_t cache_budget;          /* the memory cache's budget (bytes) */
  /* Dense: per span, its decode may fetch its window rather than wait for
   * the span before it (set for the first span of a readahead run, so
   * that runs decode in parallel). */
  _Atomic unsigned char *win_nowait;
  /* Dense, streaming: per span, its window's frame fetched for its run
   * (the run's first span only; under ra_lock, win_fetching while the
   * request runs). */
  uint8_t **win_frames;
  unsigned char *win_fetching;
  /* Dense, streaming: per span, a run's decode thread will decode it
   * (set under ra_lock, cleared once it is in the cache or the thread
   * gave up; run_done signals): a read waits for that rather than
   * fetch the span's window to decode it itself. */
  _Atomic unsigned char *run_pending;
  /* Dense, streaming, and only in a layer larger than the cache (else
   * NULL): per span, the bytes client reads were given of it (header
   * checks not counted); once all, it joins done_ring, and the span
   * LAYER_DONE_KEEP places behind it leaves the memory cache (layer.c,
   * release_streamed).  A stream through such a layer evicts what it read
   * anyway; dropping it early spares fresh memory for a cache full of
   * bytes already read.  A layer the cache holds whole keeps them: read
   * again, they must not be fetched again.  done_ring under ra_lock. */
  _Atomic uint32_t *delivered;
  size_t done_ring[LAYER_DONE_KEEP];
  size_t done_next;
  /* Their reads wait on run_done[i % LAYER_RUN_CONDS] (with ra_lock): a
   * copy has dozens of reads waiting, each for its own sub-span, and one
   * condition for all woke every one of them at each sub-span decoded. */
  pthread_cond_t run_done[LAYER_RUN_CONDS];

  /* Sequential readahead (ra_window spans; 0 = off), under ra_lock. */
  size_t ra_window;
  int64_t ra_trigger;           /* bytes of a forward run that trigger it */
  int64_t ra_slack;             /* how far from the run's end a read may be */
  pthread_mutex_t ra_lock;
  pthread_cond_t ra_idle;       /* signalled when ra_threads drops to 0 */
  int64_t seq_start, seq_end;   /* the offsets the current run covers */
  int64_t seq_bytes;            /* bytes read in it */
  size_t ra_next;               /* first span readahead has not asked for */
  bool ra_sequential;           /* the last read continued a forward run */
  /* Client reads under way (sn_layer_read, sn_layer_read_checked): a copy
   * of the device keeps many in flight, a program's start a few. */
  _Atomic unsigned client_reads;
  bool ra_streaming;            /* the current run was seen to stream
                                 * (layer_readahead_note) */
  int64_t ra_bytes;             /* readahead_bytes (layer_dense_note) */
  size_t ra_inflight;           /* spans its threads are loading */
  unsigned ra_threads;          /* its jobs started and not yet done */
  /* Readahead jobs run on worker threads that wait a while for the next
   * job before they end (layer-readahead.c): a new thread per job faults
   * its stack and its malloc arena's pages in anew.  ra_work wakes an
   * idle worker for a queued job; ra_quit ends them all. */
  pthread_cond_t ra_work;
  struct ra_work *ra_queue, *ra_queue_tail;
  unsigned ra_workers, ra_idle_workers, ra_queued;
  bool ra_quit;
  /* Workers are joinable: each one, ending, adds itself here (room is
   * made before it starts) and is joined by the next start of a worker
   * or by sn_layer_free, so that no thread of the layer outlives it (a
   * thread still exiting while the process exits can hang in the
   * libraries' destructors). */
  pthread_t *ra_done;
  size_t nra_done, ra_done_cap;
  /* Readahead fetches runs of spans with one range request (when there is
   * no disk cache): per span, a fetch covering it is under way (staging,
   * under ra_lock; loads of the span wait for it: ra_staged), and its
   * verified compressed bytes once there (staged): a slice of its run's
   * buffer (staged_in, which the slice holds a reference to), or a
   * comp_pool buffer of its own (staged_in NULL). */
  unsigned char *staging;
  uint8_t **staged;
  struct layer_batch **staged_in;
  pthread_cond_t ra_staged;
};

/* A staged run's compressed bytes (a comp_pool buffer), shared by the
 * slices of its spans still staged or being decoded. */
struct layer_batch {
  _Atomic size_t refs;
  uint8_t *buf;
};

/* layer-readahead.c: give back span bytes that were staged: a slice of b
 * (one reference dropped; the last puts the buffer back), or, b NULL, a
 * comp_pool buffer of their own. */
void layer_staged_put(struct sn_layer *l, uint8_t *comp,
                      struct layer_batch *b);

/* Add n to a statistics counter. */
static inline void
layer_count(_Atomic uint64_t *c, uint64_t n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* A layer served from its own TOC (eStargz, zstd:chunked: zinfo skip
 * set): its span digests are of the decoded bytes, so a span is checked
 * after its decode (load_span) and never before; its data space holds no
 * tar header, and there is no whole-layer check. */
static inline bool
layer_toc_chunks(const struct sn_layer *l)
{
  return l->zi->skip != NULL;
}

/* Do the layer's reads stream (ra_lock held)?  As the sequential-read
 * detector last saw them (layer_readahead_note). */
static inline bool
layer_streams(const struct sn_layer *l)
{
  return l->ra_sequential && l->ra_streaming;
}

/* A dense index of a gzip layer: a sub-span decodes with the output
 * before it or its sparse window (layer-dense.c), so sub-spans load one
 * by one, in order.  A zstd layer's sub-spans (frames) decode on their
 * own. */
static inline bool
layer_windows(const struct sn_layer *l)
{
  return l->zi->winref != NULL && l->zi->compression == SN_COMP_GZIP;
}

/* Spans of a few KiB to tens of KiB (a dense index's sub-spans, eStargz
 * and zstd:chunked chunks, zstd frames): a read that misses stages the rest of its
 * file, and streaming reads stage ahead (layer-dense.c), instead of the
 * sequential readahead of layer-readahead.c. */
static inline bool
layer_fine(const struct sn_layer *l)
{
  return l->zi->winref != NULL || layer_toc_chunks(l);
}

/* layer.c: how many files of df start at or before off (the index of
 * the first one after it). */
size_t layer_files_upto(const struct sn_layer *l, int64_t off);
/* layer.c: -1 with the poison message if the layer is poisoned, else 0. */
int layer_poisoned(struct sn_layer *l);
/* layer.c: -1 with a message if [off, off+len) is not inside the layer. */
int layer_check_range(const struct sn_layer *l, int64_t off, uint64_t len);
/* Whose read layer_read_spans serves: a client's, which feeds the
 * sequential-read detector; a client's whose range was fed to it already
 * (layer_note_client: a checked read); a checked read's header check (its
 * bytes are not the client's); or the plugin's own (dependency prefetch),
 * which neither feeds it nor tops up a stream. */
enum layer_reader { LAYER_CLIENT, LAYER_CLIENT_NOTED, LAYER_CLIENT_HEADER,
                    LAYER_BACKGROUND };

/* layer.c: the spans covering [off, off+len) through the cache, copied
 * into buf unless it is NULL (then nothing is noted). */
int layer_read_spans(struct sn_layer *l, uint8_t *buf, size_t len,
                     int64_t off, enum layer_reader who);
/* layer.c: layer_read_spans after the checks every read gets (a poisoned
 * layer, the range inside the layer). */
int layer_read_as(struct sn_layer *l, void *buf, size_t len, int64_t off,
                  enum layer_reader who);
/* layer.c: feed a client's read of [off, off+len) to the sequential-read
 * detector. */
void layer_note_client(struct sn_layer *l, int64_t off, size_t len);

/* layer.c: load spans [first, last] through the cache in order, releasing
 * each at once (a dense sub-span decodes with the one before it): -1 on
 * the first that fails, or if the layer is closing. */
int layer_load_in_order(struct sn_layer *l, size_t first, size_t last);

/* layer-readahead.c: run fn(arg) on a worker of the layer (ra_lock held):
 * an idle one, else a new one, so that every job starts at once (jobs
 * wait for each other's fetches).  fn must end with layer_ra_thread_done
 * (ra_lock held, last thing before unlocking and returning).  -1 if no
 * worker could be started. */
int layer_ra_thread_start(struct sn_layer *l, void *(*fn)(void *), void *arg);
void layer_ra_thread_done(struct sn_layer *l);
/* layer_stage's flags: load each staged span on a thread of its own
 * (DECODE); give each span a buffer of its own instead of a slice of the
 * run's (APART: a replay's spans wait for reads that may never come, and
 * one of them must not hold its whole run's bytes). */
#define LAYER_STAGE_DECODE 1u
#define LAYER_STAGE_APART 2u

/* layer-readahead.c: stage the first run of spans in [first, end) that
 * nobody has, with one range request of at most max_bytes (0: no limit),
 * ra_lock held.  Returns the first span after it; *run_first, *n: the run
 * staged (*n 0: none). */
size_t layer_stage(struct sn_layer *l, size_t first, size_t end,
                   int64_t max_bytes, unsigned flags, size_t *run_first,
                   size_t *n);

/* layer-dense.c: with a dense index (zi->winref), the window that span i
 * is decoded with (SN_ZINFO_WINSIZE bytes into win): zeros when nothing
 * reads it, else the output before it from the memory cache, else its
 * sparse window from the windows blob, verified. */
int layer_dense_window(struct sn_layer *l, size_t i, uint8_t *win);
/* layer-dense.c: a read of [off, off+len) covering spans first..last is
 * about to load them: on a miss, stage the rest of the file it falls in
 * (capped) and decode it in order on a thread; a client's read (fg) of a
 * streaming client also tops up the stretch staged ahead of the stream. */
void layer_dense_note(struct sn_layer *l, int64_t off, size_t len,
                      size_t first, size_t last, bool fg);

/* layer-dense.c: wait while a streaming run's thread is yet to decode
 * span i (run_pending). */
void layer_dense_await_run(struct sn_layer *l, size_t i);

/* layer-dense.c: fetch span i's sparse window on a thread (ra_lock held);
 * the span's decode takes its frame (layer_dense_window). */
void layer_dense_stage_window(struct sn_layer *l, size_t i);

/* layer-replay.c: span i was just read by a reader (buf): count it as
 * used if a replay loaded it. */
void layer_replay_used(struct sn_layer *l, size_t i);

/* layer-readahead.c: set up staging (staging, staged, staged_in) unless
 * it is; -1 (and nothing set up) on failure. */
int layer_staging_init(struct sn_layer *l);
/* layer-readahead.c: set up readahead of about bytes (0 = off) within a
 * memory cache of budget bytes. */
void layer_set_readahead(struct sn_layer *l, size_t bytes, size_t budget);
/* layer-readahead.c: wait for every readahead job, then end and join the
 * workers. */
void layer_ra_end(struct sn_layer *l);
/* layer-readahead.c: note a read of [off, off+len) ending in span last;
 * may start readahead. */
void layer_readahead_note(struct sn_layer *l, int64_t off, size_t len,
                          size_t last);

#endif
