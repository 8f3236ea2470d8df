/* soci-nbd tests: the thread-safe layer read path (lib/span/layer.c,
 * lib/span/spancache.c) — concurrent readers, single flight, bounded memory,
 * refetch on digest mismatch, the disk cache, header checks before file
 * bytes are served, prefetch, sequential readahead and the span buffer
 * pool (lib/util/bufpool.c) with its huge-page area (lib/util/hugearea.c)
 * — over a multi-span gzip layer made here, read
 * through a counting, faulting blob source. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "util/bufpool.h"
#include "util/hugearea.h"
#include "soci/build.h"
#include "util/err.h"
#include "span/layer.h"
#include "tap.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"

#define MAXSPANS 1024
#define NTHREADS 16

static char tmpdir[256];
static uint8_t *tarbuf;             /* the plain tar */
static size_t tarlen;
static uint8_t *ztocbuf;            /* its ztoc, encoded */
static size_t ztoclen;
static int64_t usize;               /* uncompressed_size of the ztoc */
static size_t nspans;
static size_t test_readahead;       /* readahead_bytes of the layers opened */

/* ---- making the layer ------------------------------------------------- */



/* One ustar entry; data of size bytes from an LCG over a small alphabet
 * (compresses to about half). */
static void
tar_entry(struct tap_buf *t, const char *name, char type, size_t size,
          const char *link, unsigned seed)
{
  uint8_t pad[512] = { 0 };
  size_t i;

  tap_tar_header(t, name, type, size, 1700000000 + (uint64_t) seed, link);
  for (i = 0; i < size; i++) {
    uint8_t c;
    seed = seed * 1103515245 + 12345;
    c = (uint8_t) ("abcdefghijklmnop"[(seed >> 16) & 15]);
    tap_buf_put(t, &c, 1);
  }
  if (size % 512)
    tap_buf_put(t, pad, 512 - size % 512);
}

static int
make_layer(void)
{
  struct tap_buf t = { 0 };
  struct sn_build_opts o = { .span_size = 65536 };
  uint8_t zero[512] = { 0 };
  char name[64], path[512];
  struct sn_ztoc *z;
  z_stream zs;
  uint8_t *gz;
  FILE *f;
  int i;

  tar_entry(&t, "dir/", '5', 0, NULL, 0);
  for (i = 0; i < 40; i++) {
    snprintf(name, sizeof name, "dir/f%02d", i);
    tar_entry(&t, name, '0', i == 3 ? 0 : (size_t) (i * 7919 % 200000) + 1,
              NULL, (unsigned) i + 1);
  }
  tar_entry(&t, "dir/sym", '2', 0, "f01", 99);
  tar_entry(&t, "dir/hard", '1', 0, "dir/f02", 98);
  tar_entry(&t, "dir/last", '0', 300000, NULL, 97);
  tap_buf_put(&t, zero, 512);
  tap_buf_put(&t, zero, 512);
  while (t.len % 10240)
    tap_buf_put(&t, zero, 512);
  tarbuf = t.p;
  tarlen = t.len;

  memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  gz = malloc(deflateBound(&zs, tarlen));
  zs.next_in = tarbuf;
  zs.avail_in = tarlen;
  zs.next_out = gz;
  zs.avail_out = deflateBound(&zs, tarlen);
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
    return -1;
  snprintf(path, sizeof path, "%s/layer.tar.gz", tmpdir);
  f = fopen(path, "wb");
  if (f == NULL || fwrite(gz, 1, zs.total_out, f) != zs.total_out ||
      fclose(f) != 0)
    return -1;
  deflateEnd(&zs);
  free(gz);
  z = sn_ztoc_build_file(path, &o, NULL);
  if (z == NULL || sn_ztoc_encode(z, &ztocbuf, &ztoclen) == -1)
    return -1;
  usize = z->uncompressed_size;
  nspans = (size_t) z->max_span_id + 1;
  sn_ztoc_free(z);
  return nspans <= MAXSPANS ? 0 : -1;
}

/* ---- a counting, faulting blob source --------------------------------- */

struct src {
  int fd;
  const struct sn_zinfo *zi;
  atomic_int count[MAXSPANS];       /* fetches per span */
  atomic_int inflight, max_inflight;
  atomic_int calls;                 /* reads of the source */
  int sleep_us;                     /* before each fetch */
  int corrupt_span;                 /* -1: none */
  atomic_int corrupt_left;          /* fetches still to corrupt; -1: all */
};

static size_t
span_at(const struct sn_zinfo *zi, int64_t off)
{
  struct sn_span s;
  size_t i;

  for (i = 0; i < zi->nspans; i++) {
    sn_zinfo_span(zi, i, &s);
    if (s.comp_start == off)
      return i;
  }
  return MAXSPANS - 1;
}

static int
src_read(void *opaque, void *buf, size_t len, int64_t off)
{
  struct src *s = opaque;
  size_t i = span_at(s->zi, off);
  int n, m, r;

  atomic_fetch_add(&s->calls, 1);
  if (i == MAXSPANS - 1)
    atomic_fetch_add(&s->count[i], 1);
  else {
    /* A read may cover a run of spans (readahead's range requests). */
    struct sn_span sp;
    size_t k;

    for (k = i; k < s->zi->nspans; k++) {
      sn_zinfo_span(s->zi, k, &sp);
      if (sp.comp_end > off + (int64_t) len)
        break;
      atomic_fetch_add(&s->count[k], 1);
    }
  }
  n = atomic_fetch_add(&s->inflight, 1) + 1;
  m = atomic_load(&s->max_inflight);
  while (n > m && !atomic_compare_exchange_weak(&s->max_inflight, &m, n))
    ;
  if (s->sleep_us)
    usleep(s->sleep_us);
  r = sn_blob_read_fd(&s->fd, buf, len, off);
  atomic_fetch_sub(&s->inflight, 1);
  if (r == 0 && (int) i == s->corrupt_span && len > 0) {
    int left = atomic_load(&s->corrupt_left);
    if (left < 0 || (left > 0 && atomic_fetch_sub(&s->corrupt_left, 1) > 0))
      ((uint8_t *) buf)[len / 2] ^= 0x20;
  }
  return r;
}

static int
total_fetches(struct src *s, int *max)
{
  size_t i;
  int t = 0;

  *max = 0;
  for (i = 0; i < MAXSPANS; i++) {
    int c = atomic_load(&s->count[i]);
    t += c;
    if (c > *max)
      *max = c;
  }
  return t;
}

/* A layer over z (NULL: the test layer's ztoc) reading through s. */
static struct sn_layer *
open_layer_z(struct src *s, size_t cache, const char *dir, int sleep_us,
             struct sn_ztoc *z)
{
  char path[512];
  struct sn_layer_opts o = {
    .cache_bytes = cache,
    .cache_dir = dir,
    .layer_digest = "sha256:0123456789abcdef0123456789abcdef"
                    "0123456789abcdef0123456789abcdef",
    .readahead_bytes = test_readahead,
  };
  struct sn_layer *l;
  size_t i;

  snprintf(path, sizeof path, "%s/layer.tar.gz", tmpdir);
  s->fd = open(path, O_RDONLY);
  s->zi = NULL;
  for (i = 0; i < MAXSPANS; i++)
    atomic_init(&s->count[i], 0);
  atomic_init(&s->inflight, 0);
  atomic_init(&s->max_inflight, 0);
  atomic_init(&s->calls, 0);
  atomic_init(&s->corrupt_left, 0);
  s->sleep_us = sleep_us;
  s->corrupt_span = -1;
  if (z == NULL)
    z = sn_ztoc_decode(ztocbuf, ztoclen);
  l = z ? sn_layer_new_opts(z, src_read, s, &o) : NULL;
  if (l == NULL) {
    printf("Bail out! layer: %s\n", sn_error());
    exit(1);
  }
  s->zi = sn_layer_zinfo(l);
  return l;
}

static struct sn_layer *
open_layer(struct src *s, size_t cache, const char *dir, int sleep_us)
{
  return open_layer_z(s, cache, dir, sleep_us, NULL);
}

static void
close_layer(struct sn_layer *l, struct src *s)
{
  sn_layer_free(l);
  close(s->fd);
}

static struct sn_span
span(struct src *s, size_t i)
{
  struct sn_span sp;

  sn_zinfo_span(s->zi, i, &sp);
  return sp;
}

static size_t
max_span_ulen(struct src *s)
{
  size_t i, m = 0;

  for (i = 0; i < nspans; i++) {
    struct sn_span sp = span(s, i);
    if ((size_t) (sp.uncomp_end - sp.uncomp_start) > m)
      m = sp.uncomp_end - sp.uncomp_start;
  }
  return m;
}

/* ---- the buffer pool ---------------------------------------------------- */

static void
bufpool(void)
{
  struct sn_bufpool *p = sn_bufpool_new(2, (size_t) 1 << 20, 0);
  struct sn_bufpool_stats st;
  uint8_t *a, *b, *c, *d;

  a = sn_bufpool_get(p, 100000);
  ok(a && sn_bufpool_cap(a) >= 100000, "pool: new buffer, capacity %zu",
     a ? sn_bufpool_cap(a) : 0);
  memset(a, 1, sn_bufpool_cap(a));
  sn_bufpool_put(p, a);
  b = sn_bufpool_get(p, 90000);
  sn_bufpool_get_stats(p, &st);
  ok(b == a && st.reused == 1 && st.allocated == 1 && st.held == 0,
     "pool: a smaller get reuses the idle buffer");
  c = sn_bufpool_get(p, sn_bufpool_cap(b) + 1);
  ok(c != b && sn_bufpool_cap(c) > sn_bufpool_cap(b),
     "pool: a bigger get allocates");
  d = sn_bufpool_get(p, 10);
  sn_bufpool_put(p, b);
  sn_bufpool_put(p, c);
  sn_bufpool_put(p, d);         /* a third idle buffer: freed */
  sn_bufpool_get_stats(p, &st);
  ok(st.held == 2 && st.held_bytes == sn_bufpool_cap(b) + sn_bufpool_cap(c),
     "pool: at most max_bufs idle (%llu held)", (unsigned long long) st.held);
  a = sn_bufpool_get(p, 50000);
  ok(a == b, "pool: the smallest idle buffer that fits is handed out");
  sn_bufpool_put(p, a);
  sn_bufpool_put(p, NULL);
  sn_bufpool_free(p);

  /* The byte bound: two buffers of ~100 KB do not both fit in 150000. */
  p = sn_bufpool_new(8, 150000, 0);
  a = sn_bufpool_get(p, 100000);
  b = sn_bufpool_get(p, 100000);
  sn_bufpool_put(p, a);
  sn_bufpool_put(p, b);
  sn_bufpool_get_stats(p, &st);
  ok(st.held == 1 && st.held_bytes <= 150000,
     "pool: at most max_bytes idle (%llu bytes)",
     (unsigned long long) st.held_bytes);
  sn_bufpool_free(p);
  p = sn_bufpool_new(0, 0, 0);
  a = sn_bufpool_get(p, 1000);
  sn_bufpool_put(p, a);
  sn_bufpool_get_stats(p, &st);
  ok(st.held == 0, "pool: bounds 0 keep nothing");
  sn_bufpool_free(p);
}

/* The kernel gives madvised memory huge pages ("always" or "madvise"). */
static bool
thp_possible(void)
{
  char line[128] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

  if (f == NULL)
    return false;
  if (fgets(line, sizeof line, f) == NULL)
    line[0] = 0;
  fclose(f);
  return strstr(line, "[never]") == NULL && line[0];
}

/* kB of anonymous huge pages mapped at [p, p+len) (/proc/self/smaps). */
static long
huge_kb_at(const void *p, size_t len)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[256];
  bool in = false;
  long kb = 0, v;
  uintptr_t lo, hi, a = (uintptr_t) p;

  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)    /* a mapping's line */
      in = lo < a + len && a < hi;
    else if (in && sscanf(line, "AnonHugePages: %ld kB", &v) == 1)
      kb += v;
  }
  fclose(f);
  return kb;
}

static void
hugearea(void)
{
  const size_t U = SN_HUGEAREA_UNIT, MB2 = (size_t) 2 << 20;
  struct sn_hugearea *a = sn_hugearea_new(1);
  struct sn_bufpool *p;
  struct sn_bufpool_stats st;
  uint8_t *b[40], *x, *y;
  size_t size[40], sz, in_use, touched, i;

  ok(a != NULL, "area: made (2 MiB for 1 byte)");
  for (i = 0; a && i < 33; i++)
    b[i] = sn_hugearea_alloc(a, i < 32 ? 1 : 0, &size[i]);
  ok(a && b[0] && (uintptr_t) b[0] % MB2 == 0 && size[0] == U &&
     b[31] == b[0] + 31 * U && b[32] == NULL,
     "area: 32 units of 64 KiB from a 2 MiB-aligned start, lowest first, "
     "then full");
  sn_hugearea_release(a, b[3], U);
  sn_hugearea_release(a, b[4], U);
  sn_hugearea_release(a, b[10], U);
  x = sn_hugearea_alloc(a, U + 1, &sz);
  ok(x == b[3] && sz == 2 * U, "area: two units go to the first hole that "
     "fits them");
  y = sn_hugearea_alloc(a, U + 1, &sz);
  ok(y == NULL, "area: no run of two free units left");
  ok(sn_hugearea_owns(a, b[10]) && !sn_hugearea_owns(a, b[0] + MB2) &&
     !sn_hugearea_owns(NULL, b[0]), "area: owns its own addresses only");
  sn_hugearea_usage(a, &in_use, &touched);
  ok(in_use == 31 * U && touched == 32 * U, "area: %zu bytes in use, %zu "
     "touched", in_use, touched);
  ok(sn_hugearea_alloc(a, 3 * MB2, &sz) == NULL, "area: a block bigger than "
     "the area: NULL");
  sn_hugearea_free(a);

  /* Emptied, an area hands back all but its first 2 MiB. */
  a = sn_hugearea_new(4 * MB2);
  x = a ? sn_hugearea_alloc(a, 3 * MB2, &sz) : NULL;
  y = a ? sn_hugearea_alloc(a, 1, &sz) : NULL;
  if (x && y) {
    unsigned char vec[(4 << 20) / 4096];
    size_t resident = 0;

    memset(x, 1, 3 * MB2);
    sn_hugearea_release(a, x, 3 * MB2);
    sn_hugearea_usage(a, &in_use, &touched);
    ok(touched == 3 * MB2 + U, "area: not handed back while a block is in "
       "use (%zu touched)", touched);
    sn_hugearea_release(a, y, U);
    sn_hugearea_usage(a, &in_use, &touched);
    if (mincore(x + MB2, 2 * MB2, vec) == 0)
      for (i = 0; i < sizeof vec; i++)
        resident += vec[i] & 1;
    ok(in_use == 0 && touched == MB2 && resident == 0, "area: emptied, "
       "it keeps 2 MiB (%zu touched; %zu pages resident beyond)", touched,
       resident);
  }
  else
    ok(0, "area: 8 MiB made and carved");
  sn_hugearea_free(a);

  /* Random blocks in and out of a 16 MiB area, each filled with its own
   * byte: no two blocks overlap, the accounting adds up, and emptied the
   * area has nothing in use. */
  a = sn_hugearea_new(8 * MB2);
  if (a) {
    uint8_t *blk[64] = { 0 };
    size_t bsz[64], want = 0, step, bad = 0;
    unsigned seed = 12345;

    for (step = 0; step < 20000; step++) {
      size_t k = (seed = seed * 1103515245 + 12345) >> 16 & 63;

      if (blk[k]) {
        size_t j;

        for (j = 0; j < bsz[k]; j += 4096)
          bad += blk[k][j] != (uint8_t) k;
        sn_hugearea_release(a, blk[k], bsz[k]);
        want -= bsz[k];
        blk[k] = NULL;
      }
      else if ((blk[k] = sn_hugearea_alloc(a, 1 + (seed >> 4) % (3 * MB2 / 2),
                                           &bsz[k])) != NULL) {
        size_t j;

        for (j = 0; j < bsz[k]; j += 4096)
          blk[k][j] = (uint8_t) k;
        want += bsz[k];
      }
    }
    sn_hugearea_usage(a, &in_use, &touched);
    ok(bad == 0 && in_use == want && touched <= 8 * MB2,
       "area: 20000 random gets and puts, no block overlaps another (%zu "
       "bytes in use as counted)", in_use);
    for (i = 0; i < 64; i++)
      if (blk[i])
        sn_hugearea_release(a, blk[i], bsz[i]);
    sn_hugearea_usage(a, &in_use, &touched);
    ok(in_use == 0 && touched <= MB2, "area: all given back");
  }
  else
    ok(0, "area: 16 MiB made");
  sn_hugearea_free(a);

  /* A pool with an area: carved while it has room, malloc beyond. */
  p = sn_bufpool_new(4, (size_t) 8 << 20, (size_t) 4 << 20);
  x = sn_bufpool_get(p, 3 << 20);
  y = sn_bufpool_get(p, 2 << 20);
  sn_bufpool_get_stats(p, &st);
  ok(x && y && st.carved == 1 && st.allocated == 1 &&
     sn_bufpool_cap(x) >= (3 << 20) && sn_bufpool_cap(y) >= (2 << 20),
     "pool with a 4 MiB area: 3 MiB carved, 2 MiB more allocated");
  memset(x, 7, sn_bufpool_cap(x));
  memset(y, 8, sn_bufpool_cap(y));
  if (thp_possible())
    ok(huge_kb_at(x, 3 << 20) >= 2048, "pool: the carved buffer is in huge "
       "pages (%ld kB)", huge_kb_at(x, 3 << 20));
  else
    ok(1, "# SKIP this kernel gives no transparent huge pages");
  sn_bufpool_put(p, x);
  sn_bufpool_put(p, y);
  sn_bufpool_get_stats(p, &st);
  ok(st.held == 1 && st.area_touched == (2 << 20), "pool: the carved buffer "
     "went back to the area (emptied, it keeps 2 MiB), the other one idle "
     "(%llu bytes touched)",
     (unsigned long long) st.area_touched);
  y = sn_bufpool_get(p, 1 << 20);
  sn_bufpool_get_stats(p, &st);
  ok(y == x && st.carved == 2, "pool: the area again, at its lowest free "
     "address");
  sn_bufpool_put(p, y);
  sn_bufpool_free(p);
}

/* ---- sequential readahead ---------------------------------------------- */

static size_t
spans_fetched(struct src *s)
{
  int max;

  return (size_t) total_fetches(s, &max);
}

struct seqjob {
  struct sn_layer *l;
  atomic_size_t *next;            /* the next chunk to read */
  size_t chunk;
  int bad;
};

/* Readers taking the next chunk in turn, like nbdcopy's requests. */
static void *
seq_reader(void *arg)
{
  struct seqjob *j = arg;
  uint8_t *buf = malloc(j->chunk);

  for (;;) {
    size_t k = atomic_fetch_add(j->next, 1);
    int64_t off = (int64_t) (k * j->chunk);
    size_t n;

    if (off >= usize)
      break;
    n = usize - off < (int64_t) j->chunk ? (size_t) (usize - off) : j->chunk;
    if (sn_layer_read(j->l, buf, n, off) == -1 ||
        memcmp(buf, tarbuf + off, n) != 0)
      j->bad++;
  }
  free(buf);
  return NULL;
}

/* The threads of this process that can still run user code: those in
 * /proc/self/task that still have their memory map (a thread that has
 * been joined may stay listed for a moment while the kernel finishes its
 * exit, without one: its vsize in stat is 0). */
static int
count_threads(void)
{
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[1024], *p;
    unsigned long vsize = 0;
    FILE *f;
    int k;

    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    f = fopen(path, "r");
    if (f == NULL)
      continue;                 /* gone meanwhile */
    p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
    fclose(f);
    /* After "(comm)": state is field 3, vsize field 23. */
    for (k = 3; p && k <= 23; k++) {
      p = strchr(p + 1, ' ');
      if (p && k == 23)
        vsize = strtoul(p + 1, NULL, 10);
    }
    if (vsize != 0)
      n++;
  }
  closedir(d);
  return n;
}

/* A disk cache directory for run i (fresh, so readahead has work). */
static const char *
dir_or_null(int i)
{
  static char dir[300];

  snprintf(dir, sizeof dir, "%s/ra-free-%d", tmpdir, i);
  return dir;
}

static void
seq_readahead(void)
{
  const size_t chunk = 65536, window = 4;
  struct sn_layer_stats st;
  struct src s;
  struct sn_layer *l;
  uint8_t *buf = malloc(usize);
  size_t i, want, got;
  int max, bad = 0;
  int64_t off;

  test_readahead = window * 65536;    /* 4 spans of the test layer */

  /* A small read and scattered reads (more than a span's worth in total,
   * but covering under half of the range they span) read nothing ahead. */
  l = open_layer(&s, 64 << 20, NULL, 0);
  off = usize / 2;
  ok(sn_layer_read(l, buf, 4096, off) == 0 &&
     memcmp(buf, tarbuf + off, 4096) == 0, "readahead on: a small read");
  want = sn_zinfo_span_of(s.zi, off + 4095) - sn_zinfo_span_of(s.zi, off) + 1;
  sn_layer_get_stats(l, &st);
  ok(spans_fetched(&s) == want && st.readahead_spans == 0,
     "... fetches only its span(s) (%zu), nothing ahead", spans_fetched(&s));
  close_layer(l, &s);
  l = open_layer(&s, 64 << 20, NULL, 0);
  for (i = 0; i < 60; i++) {
    off = (int64_t) (i * (usize / 60));
    if (sn_layer_read(l, buf, 24576, off) == -1 ||
        memcmp(buf, tarbuf + off, 24576) != 0)
      bad++;
  }
  sn_layer_get_stats(l, &st);
  ok(bad == 0 && st.readahead_spans == 0,
     "60 scattered 24 KiB reads (1.4 MiB over %lld bytes): nothing read "
     "ahead", (long long) usize);
  close_layer(l, &s);

  /* A sequential start: once a span's worth (1 MiB here) has been read,
   * the next spans are fetched, at most the window beyond the read. */
  l = open_layer(&s, 64 << 20, NULL, 2000);
  for (off = 0; off < (3 << 19); off += (int64_t) chunk)
    if (sn_layer_read(l, buf, chunk, off) == -1 ||
        memcmp(buf, tarbuf + off, chunk) != 0)
      bad++;
  want = sn_zinfo_span_of(s.zi, off - 1) + 1;
  sn_layer_get_stats(l, &st);
  close_layer(l, &s);             /* waits for the readahead threads */
  got = spans_fetched(&s);
  total_fetches(&s, &max);
  /* (got may equal want: under load the reads can catch up with spans
   * that were fetched ahead; readahead_spans counts those.) */
  ok(bad == 0 && st.readahead_spans > 0 && got >= want &&
     got <= want + window && max == 1,
     "sequential 1.5 MiB: %zu spans read, %zu fetched (%llu ahead, window "
     "%zu), none twice", want, got, (unsigned long long) st.readahead_spans,
     window);
  ok(atomic_load(&s.calls) < (int) got && st.spans_failed == 0,
     "... readahead fetched runs of spans with one range request each "
     "(%d requests for %zu spans), no span failed its digest",
     atomic_load(&s.calls), got);

  /* With a disk cache, readahead fetches span by span (spans may be on
   * disk already), still never one twice. */
  {
    char dir[300];

    snprintf(dir, sizeof dir, "%s/ra-cache", tmpdir);
    l = open_layer(&s, 64 << 20, dir, 0);
    for (off = 0; off < (3 << 19); off += (int64_t) chunk)
      if (sn_layer_read(l, buf, chunk, off) == -1 ||
          memcmp(buf, tarbuf + off, chunk) != 0)
        bad++;
    sn_layer_get_stats(l, &st);
    close_layer(l, &s);
    got = spans_fetched(&s);
    total_fetches(&s, &max);
    ok(bad == 0 && st.readahead_spans > 0 && max == 1 &&
       atomic_load(&s.calls) == (int) got && got <= want + window,
       "disk cache: readahead span by span (%d requests, %zu spans)",
       atomic_load(&s.calls), got);
  }

  /* 16 readers taking 64 KiB chunks in turn (out of order, as nbdcopy's):
   * right bytes, every span fetched exactly once. */
  {
    struct seqjob jobs[NTHREADS];
    pthread_t tid[NTHREADS];
    atomic_size_t next;

    atomic_init(&next, 0);
    l = open_layer(&s, 64 << 20, NULL, 300);
    for (i = 0; i < NTHREADS; i++) {
      jobs[i] = (struct seqjob) { .l = l, .next = &next, .chunk = chunk };
      pthread_create(&tid[i], NULL, seq_reader, &jobs[i]);
    }
    for (i = 0; i < NTHREADS; i++) {
      pthread_join(tid[i], NULL);
      bad += jobs[i].bad;
    }
    sn_layer_get_stats(l, &st);
    close_layer(l, &s);
    total_fetches(&s, &max);
    ok(bad == 0 && max == 1 && spans_fetched(&s) == nspans &&
       st.readahead_spans > 0,
       "%d sequential readers: right bytes, %zu spans fetched once each, "
       "%llu of them read ahead", NTHREADS, spans_fetched(&s),
       (unsigned long long) st.readahead_spans);
  }

  /* Freeing a layer while its readahead is in flight leaves no thread of
   * it behind: not one still exiting once sn_layer_free has returned. */
  {
    int base = count_threads(), extra = 0, runs;

    for (runs = 0; runs < 40 && extra == 0; runs++) {
      l = open_layer(&s, 64 << 20, runs % 2 ? dir_or_null(runs) : NULL, 500);
      for (off = 0; off < (3 << 19); off += (int64_t) chunk)
        if (sn_layer_read(l, buf, chunk, off) == -1)
          bad++;
      close_layer(l, &s);
      /* A joined thread can keep its memory map for a moment while the
       * kernel ends it (longer on a loaded machine): wait up to 100 ms
       * for that; a thread sn_layer_free did not join stays. */
      extra = count_threads() - base;
      for (int k = 0; extra > 0 && k < 50; k++) {
        usleep(2000);
        extra = count_threads() - base;
      }
    }
    ok(bad == 0 && extra == 0,
       "freeing a layer with readahead in flight: %d runs, %d of its "
       "threads left after sn_layer_free", runs, extra);
  }
  test_readahead = 0;
  free(buf);
}

/* ---- concurrent random readers ---------------------------------------- */

struct rjob {
  struct sn_layer *l;
  unsigned seed;
  int nreads;
  size_t maxlen;
  int bad;
  char msg[256];
};

static void *
reader(void *arg)
{
  struct rjob *j = arg;
  uint8_t *buf = malloc(j->maxlen);
  int k;

  for (k = 0; k < j->nreads; k++) {
    int64_t off = rand_r(&j->seed) % usize;
    size_t len = (size_t) rand_r(&j->seed) % j->maxlen + 1;
    int r;

    if ((int64_t) len > usize - off)
      len = usize - off;
    r = k % 2 ? sn_layer_read_checked(j->l, buf, len, off)
      : sn_layer_read(j->l, buf, len, off);
    if (r == -1 || memcmp(buf, tarbuf + off, len) != 0) {
      if (j->bad++ == 0)
        snprintf(j->msg, sizeof j->msg, "[%lld,+%zu): %s", (long long) off,
                 len, r == -1 ? sn_error() : "wrong bytes");
    }
  }
  free(buf);
  return NULL;
}

static int
run_readers(struct sn_layer *l, int nreads, size_t maxlen)
{
  pthread_t t[NTHREADS];
  struct rjob j[NTHREADS];
  int i, bad = 0;

  for (i = 0; i < NTHREADS; i++) {
    j[i] = (struct rjob) { .l = l, .seed = 1234u + i, .nreads = nreads,
                           .maxlen = maxlen };
    pthread_create(&t[i], NULL, reader, &j[i]);
  }
  for (i = 0; i < NTHREADS; i++) {
    pthread_join(t[i], NULL);
    if (j[i].bad && bad == 0)
      diag("thread %d: %s", i, j[i].msg);
    bad += j[i].bad;
  }
  return bad;
}

static void
parallel_big_cache(void)
{
  struct src s;
  struct sn_layer *l = open_layer(&s, 256 << 20, NULL, 200);
  struct sn_layer_stats st;
  int max, total;

  ok(run_readers(l, 60, 300000) == 0,
     "%d threads reading random ranges get the tar's bytes", NTHREADS);
  total = total_fetches(&s, &max);
  sn_layer_get_stats(l, &st);
  ok(max == 1, "big cache: each span fetched at most once (max %d)", max);
  ok(st.spans_fetched == (uint64_t) total &&
     st.spans_verified == (uint64_t) total && st.spans_failed == 0,
     "stats: %llu fetched, %llu verified", (unsigned long long)
     st.spans_fetched, (unsigned long long) st.spans_verified);
  ok(st.cache_misses == (uint64_t) total && st.cache_hits > 0,
     "stats: %llu hits, %llu misses", (unsigned long long) st.cache_hits,
     (unsigned long long) st.cache_misses);
  ok(st.pool_carved == 2 * st.spans_fetched && st.pool_allocated == 0,
     "big cache: every span's compressed and decoded buffers carved from the "
     "huge-page areas (%llu carved, %llu allocated)", (unsigned long long) st.pool_carved,
     (unsigned long long) st.pool_allocated);
  close_layer(l, &s);
}

static void
parallel_tiny_cache(void)
{
  struct src s;
  struct sn_layer *l = open_layer(&s, 200000, NULL, 0);
  struct sn_layer_stats st;
  size_t mx = max_span_ulen(&s), i, bad;
  uint8_t *buf = malloc(usize);
  int max;

  ok(run_readers(l, 60, 300000) == 0,
     "tiny cache: %d threads still get the right bytes", NTHREADS);
  sn_layer_get_stats(l, &st);
  ok(st.mem_bytes <= 200000, "tiny cache: %llu bytes kept afterwards",
     (unsigned long long) st.mem_bytes);
  ok(st.mem_peak <= 200000 + (uint64_t) NTHREADS * 8 * mx,
     "tiny cache: peak %llu bytes (budget + what readers hold)",
     (unsigned long long) st.mem_peak);
  close_layer(l, &s);

  /* A budget of 8 spans: evicted buffers come back from the pool.  Read
   * one span at a time, so that how many loads overlap (and so how many
   * buffers are out at once) does not depend on the threads' timing. */
  l = open_layer(&s, 8 * mx, NULL, 0);
  bad = 0;
  for (i = 0; i < nspans; i++) {
    struct sn_span sp = span(&s, i);
    size_t n = (size_t) (sp.uncomp_end - sp.uncomp_start);

    bad += sn_layer_read(l, buf + sp.uncomp_start, n, sp.uncomp_start) != 0;
  }
  ok(bad == 0 && memcmp(buf, tarbuf, usize) == 0,
     "budget of 8 spans: layer reads back, span by span");
  sn_layer_get_stats(l, &st);
  ok(st.pool_reused >= nspans && st.pool_allocated <= nspans + 16,
     "... span buffers reused from the pool (%llu reused, %llu allocated)",
     (unsigned long long) st.pool_reused,
     (unsigned long long) st.pool_allocated);
  close_layer(l, &s);

  /* One reader: the peak is the budget plus one window of spans. */
  l = open_layer(&s, 200000, NULL, 0);
  ok(sn_layer_read(l, buf, usize, 0) == 0 &&
     memcmp(buf, tarbuf, usize) == 0, "tiny cache: whole layer reads back");
  sn_layer_get_stats(l, &st);
  ok(st.mem_peak <= 200000 + 8 * mx && st.mem_bytes <= 200000,
     "tiny cache, one reader: peak %llu, now %llu",
     (unsigned long long) st.mem_peak, (unsigned long long) st.mem_bytes);
  total_fetches(&s, &max);
  ok(max == 1, "one sequential pass fetches each span once");
  sn_layer_get_stats(l, &st);
  ok(st.pool_allocated == 2 * nspans && st.readahead_spans == 0,
     "a 200000-byte budget pools no buffer (a quarter of it holds none); no "
     "readahead unless asked");
  close_layer(l, &s);

  /* A zero-ish budget (1 byte): nothing kept, still correct. */
  l = open_layer(&s, 1, NULL, 0);
  ok(sn_layer_read(l, buf, usize, 0) == 0 &&
     memcmp(buf, tarbuf, usize) == 0, "1-byte budget: spans still served");
  sn_layer_get_stats(l, &st);
  ok(st.mem_bytes == 0, "1-byte budget: nothing kept");
  close_layer(l, &s);
  free(buf);
}

/* ---- single flight ---------------------------------------------------- */

struct sjob {
  struct sn_layer *l;
  pthread_barrier_t *b;
  int64_t off;
  size_t len;
  int r;
  bool right;
  char msg[512];
};

static void *
same_span(void *arg)
{
  struct sjob *j = arg;
  uint8_t buf[256];

  memset(buf, 0xaa, sizeof buf);
  pthread_barrier_wait(j->b);
  j->r = sn_layer_read(j->l, buf, j->len, j->off);
  snprintf(j->msg, sizeof j->msg, "%s", j->r == -1 ? sn_error() : "");
  j->right = j->r == 0 ? memcmp(buf, tarbuf + j->off, j->len) == 0
    : buf[0] == 0xaa && buf[j->len - 1] == 0xaa;
  return NULL;
}

/* n threads read [off,+len) at once; returns how many succeeded with the
 * right bytes; failures must leave their buffers untouched. */
static int
stampede(struct sn_layer *l, int n, int64_t off, size_t len, int *right,
         char *msg)
{
  pthread_t t[NTHREADS];
  struct sjob j[NTHREADS];
  pthread_barrier_t b;
  int i, okc = 0;

  pthread_barrier_init(&b, NULL, n);
  for (i = 0; i < n; i++) {
    j[i] = (struct sjob) { .l = l, .b = &b, .off = off, .len = len };
    pthread_create(&t[i], NULL, same_span, &j[i]);
  }
  *right = 0;
  for (i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    okc += j[i].r == 0;
    *right += j[i].right;
    if (j[i].r == -1)
      strcpy(msg, j[i].msg);
  }
  pthread_barrier_destroy(&b);
  return okc;
}

static void
single_flight(void)
{
  struct src s;
  struct sn_layer *l = open_layer(&s, 0, NULL, 50000);
  struct sn_span sp = span(&s, 5);
  uint8_t *buf = malloc(2 << 20);
  char msg[512] = "";
  int right, max;
  struct sn_span a, b;

  ok(stampede(l, NTHREADS, sp.uncomp_start + 10, 100, &right, msg) ==
     NTHREADS && right == NTHREADS,
     "%d threads on one cold span all get its bytes", NTHREADS);
  ok(atomic_load(&s.count[5]) == 1 && total_fetches(&s, &max) == 1,
     "... from exactly one fetch (%d)", atomic_load(&s.count[5]));

  /* A read over 8 cold spans fetches them concurrently. */
  a = span(&s, 10);
  b = span(&s, 17);
  ok(sn_layer_read(l, buf, b.uncomp_end - a.uncomp_start - 1,
                   a.uncomp_start + 1) == 0 &&
     memcmp(buf, tarbuf + a.uncomp_start + 1,
            b.uncomp_end - a.uncomp_start - 1) == 0,
     "read over spans 10..17 is right");
  ok(atomic_load(&s.max_inflight) >= 4,
     "its 8 spans were fetched concurrently (%d at once)",
     atomic_load(&s.max_inflight));
  close_layer(l, &s);

  /* Single flight of a failure: one load (3 fetches), everyone gets the
   * error, nobody gets bytes; a later read tries again. */
  l = open_layer(&s, 0, NULL, 20000);
  s.corrupt_span = 9;
  atomic_store(&s.corrupt_left, -1);
  sp = span(&s, 9);
  ok(stampede(l, 8, sp.uncomp_start + 5, 50, &right, msg) == 0 &&
     right == 8, "8 threads on a corrupt span all fail, buffers untouched");
  ok(strstr(msg, "span 9 of sha256:0123") &&
     strstr(msg, "digest mismatch after 3 fetches"), "error: %s", msg);
  ok(atomic_load(&s.count[9]) == 3,
     "... after one load of 3 fetches (%d)", atomic_load(&s.count[9]));
  ok(sn_layer_read(l, buf, 10, sp.uncomp_start) == -1 &&
     atomic_load(&s.count[9]) == 6, "a later read retries");
  free(buf);
  close_layer(l, &s);
}

/* ---- verification ----------------------------------------------------- */

static void
refetch(void)
{
  struct src s;
  struct sn_layer *l = open_layer(&s, 0, NULL, 0);
  struct sn_layer_stats st;
  struct sn_span sp = span(&s, 7), a, b;
  uint8_t *buf = malloc(1 << 20);
  size_t n;

  s.corrupt_span = 7;
  atomic_store(&s.corrupt_left, 1);
  ok(sn_layer_read(l, buf, 1000, sp.uncomp_start) == 0 &&
     memcmp(buf, tarbuf + sp.uncomp_start, 1000) == 0,
     "corrupt once: refetched, right bytes");
  sn_layer_get_stats(l, &st);
  ok(atomic_load(&s.count[7]) == 2 && st.spans_failed == 1 &&
     st.spans_verified == 1 && st.spans_fetched == 2,
     "... 2 fetches, stats: %llu failed, %llu verified",
     (unsigned long long) st.spans_failed,
     (unsigned long long) st.spans_verified);
  close_layer(l, &s);

  l = open_layer(&s, 0, NULL, 0);
  s.corrupt_span = 9;
  atomic_store(&s.corrupt_left, -1);
  a = span(&s, 8);
  b = span(&s, 10);
  n = b.uncomp_end - a.uncomp_start;
  memset(buf, 0xaa, n);
  ok(sn_layer_read(l, buf, n, a.uncomp_start) == -1 &&
     strstr(sn_error(), "digest mismatch after 3 fetches"),
     "corrupt always: refused: %s", sn_error());
  for (n = 0; n < (size_t) (b.uncomp_end - a.uncomp_start); n++)
    if (buf[n] != 0xaa)
      break;
  ok(n == (size_t) (b.uncomp_end - a.uncomp_start),
     "... and not one byte returned, not even of spans 8 and 10");
  ok(sn_layer_read(l, buf, 100, a.uncomp_start) == 0 &&
     memcmp(buf, tarbuf + a.uncomp_start, 100) == 0 &&
     sn_layer_read(l, buf, 100, b.uncomp_start) == 0 &&
     memcmp(buf, tarbuf + b.uncomp_start, 100) == 0,
     "spans 8 and 10 unaffected");
  sn_layer_get_stats(l, &st);
  ok(st.spans_failed == 3, "stats: 3 failed fetches");
  free(buf);
  close_layer(l, &s);
}

/* ---- disk cache ------------------------------------------------------- */

static int
stray_temps(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] == '.' && strcmp(e->d_name, ".") &&
        strcmp(e->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

static void
disk_cache(void)
{
  char dir[512], ldir[700], path[800];
  struct src s;
  struct sn_layer *l;
  struct sn_layer_stats st;
  uint8_t *buf = malloc(usize);
  struct stat sb;
  int max, fd;

  snprintf(dir, sizeof dir, "%s/cache", tmpdir);
  snprintf(ldir, sizeof ldir, "%s/0123456789abcdef0123456789abcdef"
           "0123456789abcdef0123456789abcdef", dir);
  l = open_layer(&s, 0, dir, 0);
  ok(sn_layer_read(l, buf, usize, 0) == 0 &&
     memcmp(buf, tarbuf, usize) == 0, "disk cache: first layer reads");
  ok(total_fetches(&s, &max) == (int) nspans && max == 1,
     "... fetching all %zu spans once", nspans);
  close_layer(l, &s);
  ok(stray_temps(ldir) == 0, "no temporary files left in %s", ldir);

  l = open_layer(&s, 0, dir, 0);
  ok(sn_layer_read_checked(l, buf, usize, 0) == 0 &&
     memcmp(buf, tarbuf, usize) == 0, "second layer object reads");
  sn_layer_get_stats(l, &st);
  ok(total_fetches(&s, &max) == 0 && st.spans_fetched == 0 &&
     st.disk_hits == nspans, "... fetching nothing (%d fetched, %llu "
     "disk hits)", total_fetches(&s, &max),
     (unsigned long long) st.disk_hits);
  close_layer(l, &s);

  /* Truncate span 3's file, flip a byte of span 4's. */
  snprintf(path, sizeof path, "%s/3", ldir);
  ok(truncate(path, 100) == 0, "truncated %s", path);
  snprintf(path, sizeof path, "%s/4", ldir);
  fd = open(path, O_RDWR);
  ok(fd >= 0 && pwrite(fd, "X", 1, 50) == 1 && close(fd) == 0,
     "corrupted %s", path);
  l = open_layer(&s, 0, dir, 0);
  ok(sn_layer_read(l, buf, usize, 0) == 0 &&
     memcmp(buf, tarbuf, usize) == 0, "third layer object reads");
  ok(total_fetches(&s, &max) == 2 && atomic_load(&s.count[3]) == 1 &&
     atomic_load(&s.count[4]) == 1,
     "... refetching just the two bad cache files");
  ok(stat(path, &sb) == 0 &&
     sb.st_size == span(&s, 4).comp_end - span(&s, 4).comp_start,
     "... and rewriting them");
  close_layer(l, &s);

  {
    struct sn_layer_opts o = { .cache_dir = dir };
    struct sn_ztoc *z = sn_ztoc_decode(ztocbuf, ztoclen);
    ok(sn_layer_new_opts(z, src_read, &s, &o) == NULL &&
       strstr(sn_error(), "digest"), "cache_dir without a digest: %s",
       sn_error());
  }

  /* The layer's directory is a symlink (to a directory spans would be
   * written into): refused. */
  {
    char cdir[600], victim[600], lnk[800];
    struct sn_layer_opts o = {
      .cache_dir = cdir,
      .layer_digest = "sha256:0123456789abcdef0123456789abcdef"
                      "0123456789abcdef0123456789abcdef",
    };
    struct sn_ztoc *z = sn_ztoc_decode(ztocbuf, ztoclen);
    struct sn_layer *bad;

    snprintf(cdir, sizeof cdir, "%s/cache-link", tmpdir);
    snprintf(victim, sizeof victim, "%s/victim-dir", tmpdir);
    snprintf(lnk, sizeof lnk, "%s/%s", cdir, o.layer_digest + 7);
    mkdir(cdir, 0700);
    mkdir(victim, 0700);
    ok(symlink(victim, lnk) == 0, "symlink %s -> %s", lnk, victim);
    bad = sn_layer_new_opts(z, src_read, &s, &o);
    ok(bad == NULL && strstr(sn_error(), "not a directory (a symlink)"),
       "a symlinked layer cache directory is refused: %s",
       bad ? "(opened)" : sn_error());
    if (bad) {
      snprintf(path, sizeof path, "%s/layer.tar.gz", tmpdir);
      s.fd = open(path, O_RDONLY);
      s.zi = sn_layer_zinfo(bad);
      sn_layer_read(bad, buf, 100000, 0);
      sn_layer_free(bad);
      close(s.fd);
    }
    ok(stray_temps(victim) == 0 && rmdir(victim) == 0,
       "... nothing written where it points");
  }
  free(buf);
}

/* ---- header checks ---------------------------------------------------- */

static struct sn_ztoc_file *
find(struct sn_ztoc *z, const char *name)
{
  size_t i;

  for (i = 0; i < z->nfiles; i++)
    if (strcmp(z->files[i].name.data, name) == 0)
      return &z->files[i];
  return NULL;
}

static void
checked(void)
{
  struct src s;
  struct sn_layer *l = open_layer(&s, 0, NULL, 0);
  struct sn_layer_stats st;
  struct sn_ztoc *z = (struct sn_ztoc *) sn_layer_ztoc(l);
  struct sn_ztoc_file *f, *g, *h;
  uint8_t *buf = malloc(usize);
  char msg[1024];
  size_t i, nd = 0;

  for (i = 0; i < z->nfiles; i++)
    nd += z->files[i].size > 0;
  for (i = 0; i + 100000 < (size_t) usize; i += 100000)
    if (sn_layer_read_checked(l, buf, 100000, i) == -1 ||
        memcmp(buf, tarbuf + i, 100000) != 0)
      break;
  ok(i + 100000 >= (size_t) usize, "honest ztoc: checked reads all pass");
  sn_layer_get_stats(l, &st);
  ok(st.headers_checked == nd, "each of %zu files checked once (%llu)", nd,
     (unsigned long long) st.headers_checked);
  close_layer(l, &s);

  /* dir/f05 claims dir/f20's data. */
  z = sn_ztoc_decode(ztocbuf, ztoclen);
  f = find(z, "dir/f05");
  g = find(z, "dir/f20");
  h = find(z, "dir/f30");
  if (!ok(f && g && h && f->size > 0 && g->size > 0 && h->size > 0,
          "found dir/f05, dir/f20, dir/f30")) {
    sn_ztoc_free(z);
    free(buf);
    return;
  }
  f->header_offset = g->header_offset;
  f->offset = g->offset;
  l = open_layer_z(&s, 0, NULL, 0, z);
  ok(sn_layer_read_checked(l, buf, 100, g->offset) == -1 &&
     strstr(sn_error(), "dir/f05") && strstr(sn_error(), "does not match"),
     "lying entry refused: %s", sn_error());
  snprintf(msg, sizeof msg, "%s", sn_error());
  ok(sn_layer_read_checked(l, buf, 10, g->offset + 1) == -1 &&
     strcmp(sn_error(), msg) == 0, "... again, same error");
  ok(sn_layer_read_checked(l, buf, 100, h->offset) == 0 &&
     memcmp(buf, tarbuf + h->offset, 100) == 0, "other files still served");
  ok(sn_layer_read(l, buf, 100, g->offset) == 0,
     "unchecked read of the same bytes works (the spans are fine)");
  ok(sn_layer_read_checked(l, buf, 512, g->header_offset) == 0,
     "a tar header (gap) needs no check");
  close_layer(l, &s);
  free(buf);
}

/* ---- prefetch, the old API, the trace --------------------------------- */

static atomic_int traced;

static void
trace(void *opaque, size_t i, const struct sn_span *sp)
{
  (void) opaque;
  (void) i;
  (void) sp;
  atomic_fetch_add(&traced, 1);
}

/* sn_layer_replay: runs of spans with few range requests, each span
 * fetched once, counted as replayed and then as used by reads. */
static void
replay(void)
{
  struct src s;
  struct sn_layer *l;
  struct sn_layer_stats st;
  struct sn_span a, b;
  uint64_t bytes = 0;
  uint8_t *buf = malloc(usize);
  size_t i, save = test_readahead;
  int max, calls;

  test_readahead = (size_t) 1 << 20;      /* range requests (staging) */
  l = open_layer(&s, (size_t) 64 << 20, NULL, 0);
  a = span(&s, 3);
  b = span(&s, 9);
  for (i = 3; i <= 9; i++)
    bytes += (uint64_t) (span(&s, i).comp_end - span(&s, i).comp_start);
  ok(sn_layer_replay(l, 3, 9, 2 * (int64_t) (b.comp_end - a.comp_start) / 7)
     == 0, "replay of spans 3..9");
  for (i = 0; i < nspans; i++)
    if (atomic_load(&s.count[i]) != (i >= 3 && i <= 9))
      break;
  calls = atomic_load(&s.calls);
  ok(i == nspans, "... fetched each of them once, nothing else");
  ok(calls >= 2 && calls < 7, "... in %d range requests (runs)", calls);
  sn_layer_get_stats(l, &st);
  ok(st.replay_spans == 7 && st.replay_bytes == bytes &&
     st.replay_used_spans == 0, "stats: 7 spans, %llu bytes replayed, none "
     "used yet", (unsigned long long) st.replay_bytes);
  ok(sn_layer_read(l, buf, b.uncomp_end - a.uncomp_start, a.uncomp_start)
     == 0 && memcmp(buf, tarbuf + a.uncomp_start,
                    b.uncomp_end - a.uncomp_start) == 0 &&
     atomic_load(&s.calls) == calls, "reading them: right bytes, no fetch");
  sn_layer_get_stats(l, &st);
  ok(st.replay_used_spans == 7 && st.replay_used_bytes == bytes,
     "stats: all 7 used");
  ok(sn_layer_replay(l, 3, 9, 1 << 20) == 0 &&
     atomic_load(&s.calls) == calls, "replaying them again fetches nothing");
  ok(sn_layer_replay(l, 8, 12, 1 << 20) == 0 &&
     atomic_load(&s.count[8]) == 1 && atomic_load(&s.count[9]) == 1 &&
     atomic_load(&s.count[10]) == 1 && atomic_load(&s.count[12]) == 1,
     "an overlapping replay fetches only the new spans");
  sn_layer_get_stats(l, &st);
  ok(st.replay_spans == 10, "stats: 10 spans replayed");
  ok(sn_layer_replay(l, 5, 4, 1 << 20) == -1, "first > last: %s",
     sn_error());
  ok(sn_layer_replay(l, 0, nspans, 1 << 20) == -1, "past the end: %s",
     sn_error());
  s.corrupt_span = 15;
  atomic_store(&s.corrupt_left, -1);
  ok(sn_layer_replay(l, 14, 16, 1) == -1 &&
     strstr(sn_error(), "span 15") != NULL, "a corrupted span fails the "
     "replay: %s", sn_error());
  a = span(&s, 16);
  ok(sn_layer_read(l, buf, a.uncomp_end - a.uncomp_start, a.uncomp_start)
     == 0 && memcmp(buf, tarbuf + a.uncomp_start,
                    a.uncomp_end - a.uncomp_start) == 0,
     "the span after it is still served");
  ok(total_fetches(&s, &max) >= 0 && max <= 4,
     "no span fetched more than its refetches (max %d)", max);
  close_layer(l, &s);
  test_readahead = save;
  free(buf);
}

static void
prefetch(void)
{
  struct src s;
  struct sn_layer *l = open_layer(&s, 0, NULL, 0);
  struct sn_layer_stats st;
  struct sn_span a = span(&s, 2), b = span(&s, 6);
  uint8_t *buf = malloc(usize);
  size_t i;
  int max;

  ok(sn_layer_prefetch(l, a.uncomp_start + 1,
                       b.uncomp_end - a.uncomp_start - 2) == 0,
     "prefetch of spans 2..6");
  for (i = 0; i < nspans; i++)
    if (atomic_load(&s.count[i]) != (i >= 2 && i <= 6))
      break;
  ok(i == nspans, "... fetched exactly those");
  ok(sn_layer_read(l, buf, b.uncomp_end - a.uncomp_start, a.uncomp_start)
     == 0 && memcmp(buf, tarbuf + a.uncomp_start,
                    b.uncomp_end - a.uncomp_start) == 0 &&
     total_fetches(&s, &max) == 5, "reading them fetches nothing more");
  sn_layer_get_stats(l, &st);
  ok(st.cache_hits == 5 && st.cache_misses == 5, "stats: 5 hits, 5 misses");
  ok(sn_layer_prefetch(l, usize - 1, 2) == -1, "prefetch past the end: %s",
     sn_error());
  ok(sn_layer_prefetch(l, 0, 0) == 0 && total_fetches(&s, &max) == 5,
     "empty prefetch does nothing");
  close_layer(l, &s);

  /* sn_layer_new: defaults; the trace sees every fetch. */
  {
    char path[512];
    int fd;
    struct sn_ztoc *z = sn_ztoc_decode(ztocbuf, ztoclen);

    snprintf(path, sizeof path, "%s/layer.tar.gz", tmpdir);
    fd = open(path, O_RDONLY);
    l = sn_layer_new(z, sn_blob_read_fd, &fd);
    sn_layer_set_trace(l, trace, NULL);
    ok(l && run_readers(l, 20, 200000) == 0, "sn_layer_new: parallel reads");
    sn_layer_get_stats(l, &st);
    ok(st.spans_fetched == (uint64_t) atomic_load(&traced) &&
       st.spans_fetched <= nspans, "trace called once per fetch (%d)",
       atomic_load(&traced));
    sn_layer_free(l);
    close(fd);
  }
  free(buf);
}

int
main(void)
{
  char cmd[600];

  snprintf(tmpdir, sizeof tmpdir, "%s/soci-nbd-test-layer-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmpdir) == NULL || make_layer() == -1) {
    printf("Bail out! cannot make the test layer: %s\n", sn_error());
    return 1;
  }
  diag("layer: %zu tar bytes, %zu spans", tarlen, nspans);
  ok(nspans >= 20, "the layer has %zu spans", nspans);
  parallel_big_cache();
  parallel_tiny_cache();
  single_flight();
  refetch();
  disk_cache();
  checked();
  prefetch();
  replay();
  bufpool();
  hugearea();
  seq_readahead();
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    diag("could not remove %s", tmpdir);
  free(tarbuf);
  free(ztocbuf);
  return done_testing();
}
