/* soci-nbd benchmark: sparse windows at every deflate block boundary of a
 * gzip layer.  Finds the boundaries with zlib's inflate(Z_BLOCK) (as
 * zran.c and the ztoc builder do), computes each boundary's sparse window
 * (lib/inflate/window-use.c), verifies it by inflating with the full and
 * with the sparse window (window-verify.c) the span to the next boundary,
 * and at least 32 KiB (all the output that can reach the window, so that
 * a run of spans starting there is covered too), and compresses each full
 * and each sparse window on its own with zlib -9 (and zstd, level 19 by
 * default, when built with libzstd).  Prints boundary spacing, referenced
 * bytes, compressed window sizes, verification failures and times (and
 * the time of the sn_window_use calls alone, with their output rate).
 *   usage: bench/window-measure [LAYER.tar.gz [ZSTD_LEVEL]]
 *   (default /var/cache/soci-nbd-bench/minbase.tar.gz, bench/mklayer.sh) */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "util/err.h"
#include "inflate/window-use.h"

#define WIN SN_WINDOW_SIZE
#define DEFAULT_LAYER "/var/cache/soci-nbd-bench/minbase.tar.gz"

static int zstd_level = 19;

struct bound {
  uint64_t bit;          /* absolute bit offset in the file */
  size_t out;            /* uncompressed offset */
  size_t member_out;     /* where its gzip member's output starts */
  size_t end_out;        /* its member's output end */
  size_t end_in;         /* its member's deflate data end (bytes) */
};

struct result {
  size_t count, zlib_full, zlib_sparse, zstd_full, zstd_sparse;
  size_t parsed;         /* output bytes sn_window_use parsed */
  uint64_t in_bits;
  double dist;           /* compressed bytes to the next boundary */
};

static double
now(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
xrealloc(void *p, size_t n)
{
  p = realloc(p, n);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

static uint8_t *
read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0, r;

  if (f == NULL) {
    perror(path);
    exit(1);
  }
  do {
    if (n == cap)
      buf = xrealloc(buf, cap = cap ? cap * 2 : 1 << 20);
    r = fread(buf + n, 1, cap - n, f);
    n += r;
  } while (r > 0);
  fclose(f);
  *len = n;
  return buf;
}

/* Inflate every gzip member of in, keeping all output (*out, *outlen) and
 * recording every block boundary (zlib's data_type & 128 without 64). */
static size_t
find_bounds(const uint8_t *in, size_t len, uint8_t **outp, size_t *outlen,
            struct bound **bp)
{
  size_t cap = len * 4 + WIN, nb = 0, bcap = 0, first = 0, mstart = 0, i;
  uint8_t *out = xrealloc(NULL, cap);
  struct bound *b = NULL;
  z_stream z;
  int ret;

  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 47) != Z_OK)
    exit(1);
  z.next_in = (Bytef *) in;
  z.avail_in = (uInt) len;
  for (;;) {
    if (z.total_out == cap) {
      out = xrealloc(out, cap *= 2);
    }
    z.next_out = out + z.total_out;
    z.avail_out = (uInt) (cap - z.total_out);
    ret = inflate(&z, Z_BLOCK);
    if (ret == Z_OK && (z.data_type & 128) && !(z.data_type & 64)) {
      uint64_t bit = (uint64_t) z.total_in * 8 - (z.data_type & 7);

      if (nb == first || b[nb - 1].bit != bit) {
        if (nb == bcap)
          b = xrealloc(b, (bcap = bcap ? bcap * 2 : 1024) * sizeof *b);
        b[nb].bit = bit;
        b[nb].out = z.total_out;
        b[nb].member_out = mstart;
        nb++;
      }
    }
    else if (ret == Z_STREAM_END) {
      /* The member ends; its deflate data ended before the 8-byte
       * trailer.  Another member may follow. */
      for (i = first; i < nb; i++) {
        b[i].end_out = z.total_out;
        b[i].end_in = z.total_in - 8;
      }
      first = nb;
      mstart = z.total_out;
      if (z.avail_in == 0 || in[z.total_in] != 0x1f)
        break;
      inflateReset(&z);
    }
    else if (ret != Z_OK && !(ret == Z_BUF_ERROR && z.avail_out == 0)) {
      fprintf(stderr, "zlib: %s at byte %lu\n", z.msg ? z.msg : "error",
              (unsigned long) z.total_in);
      exit(1);
    }
  }
  *outlen = z.total_out;
  inflateEnd(&z);
  *outp = out;
  *bp = b;
  return nb;
}

static size_t
zlib_size(const uint8_t *p)
{
  static uint8_t buf[WIN + 1024];
  uLongf n = sizeof buf;

  if (compress2(buf, &n, p, WIN, 9) != Z_OK)
    exit(1);
  return n;
}

static size_t
zstd_size(const uint8_t *p)
{
#ifdef HAVE_ZSTD
  static uint8_t buf[WIN + 1024];
  static ZSTD_CCtx *cx;
  size_t n;

  if (cx == NULL)
    cx = ZSTD_createCCtx();
  n = ZSTD_compressCCtx(cx, buf, sizeof buf, p, WIN, zstd_level);
  if (ZSTD_isError(n))
    exit(1);
  return n;
#else
  (void) p;
  return 0;
#endif
}

static int
cmp_double(const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

/* Median and maximum of v[0..n) (sorted in place). */
static void
med_max(double *v, size_t n, double *med, double *max)
{
  qsort(v, n, sizeof *v, cmp_double);
  *med = n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
  *max = n ? v[n - 1] : 0;
}

/* One boundary: sparse window, verification, compressed sizes.  Returns
 * 0 when verified; times are added to t[0] (sparse map), t[1] (verify),
 * t[2] (zlib), t[3] (zstd) and t[4] (the sn_window_use call alone). */
static int
measure(const uint8_t *in, const uint8_t *out, const struct bound *b,
        size_t next_out, struct result *r, double t[5])
{
  static uint8_t full[WIN], sparse[WIN], map[WIN];
  size_t winlen = b->out - b->member_out, i;
  struct sn_window_use st;
  size_t check = next_out - b->out;
  double t0 = now(), t1, t2, t3, tp;
  int ok, rc;

  memset(r, 0, sizeof *r);
  winlen = winlen < WIN ? winlen : WIN;
  memset(full, 0, WIN - winlen);
  memcpy(full + WIN - winlen, out + b->out - winlen, winlen);
  tp = now();
  rc = sn_window_use(in, b->end_in, b->bit, winlen, WIN, map, &st);
  t[4] += now() - tp;
  if (rc < 0) {
    fprintf(stderr, "boundary at bit %" PRIu64 ": %s\n", b->bit,
            sn_error());
    return -1;
  }
  for (i = 0; i < WIN; i++)
    sparse[i] = map[i] ? full[i] : 0;
  r->count = st.count;
  r->in_bits = st.in_bits;
  r->parsed = st.out;
  t1 = now();
  /* The span, and at least the 32 KiB that can reach the window. */
  if (check < WIN)
    check = b->end_out - b->out < WIN ? b->end_out - b->out : WIN;
  ok = sn_window_verify(in, b->end_in, b->bit, full, sparse, check);
  if (ok != 0)
    fprintf(stderr, "boundary at bit %" PRIu64 ": %s\n", b->bit,
            sn_error());
  t2 = now();
  r->zlib_full = zlib_size(full);
  r->zlib_sparse = zlib_size(sparse);
  t3 = now();
  r->zstd_full = zstd_size(full);
  r->zstd_sparse = zstd_size(sparse);
  t[0] += t1 - t0;
  t[1] += t2 - t1;
  t[2] += t3 - t2;
  t[3] += now() - t3;
  return ok == 0 ? 0 : -1;
}

static void
report(const struct result *r, size_t n, double *dist, double *refd)
{
  double sum[6] = { 0 }, med, max, rmed, rmax;
  size_t i, zero = 0;

  for (i = 0; i < n; i++) {
    sum[0] += (double) r[i].count;
    sum[1] += (double) r[i].zlib_full;
    sum[2] += (double) r[i].zlib_sparse;
    sum[3] += (double) r[i].zstd_full;
    sum[4] += (double) r[i].zstd_sparse;
    sum[5] += (double) r[i].in_bits / 8;
    zero += r[i].count == 0;
    refd[i] = (double) r[i].count;
  }
  med_max(dist, n ? n - 1 : 0, &med, &max);
  med_max(refd, n, &rmed, &rmax);
  printf("block boundaries:                 %zu\n", n);
  printf("compressed distance between them: median %.0f B, max %.0f B\n",
         med, max);
  printf("referenced window bytes:          mean %.0f, median %.0f, max "
         "%.0f\n", sum[0] / n, rmed, rmax);
  printf("boundaries needing 0 bytes:       %zu\n", zero);
  printf("compressed input parsed per boundary (for 32 KiB of output): "
         "mean %.0f B\n", sum[5] / n);
  printf("full window, zlib -9:             mean %.0f B (total %.2f MB)\n",
         sum[1] / n, sum[1] / 1e6);
  printf("sparse window, zlib -9:           mean %.0f B (total %.2f MB)\n",
         sum[2] / n, sum[2] / 1e6);
#ifdef HAVE_ZSTD
  printf("full window, zstd -%-2d:            mean %.0f B (total %.2f MB)\n",
         zstd_level, sum[3] / n, sum[3] / 1e6);
  printf("sparse window, zstd -%-2d:          mean %.0f B (total %.2f MB)\n",
         zstd_level, sum[4] / n, sum[4] / 1e6);
#else
  printf("zstd:                             not built (no libzstd)\n");
#endif
}

int
main(int argc, char **argv)
{
  const char *path = argc > 1 ? argv[1] : DEFAULT_LAYER;
  size_t len, outlen, nb, i, failed = 0;
  uint8_t *in, *out;
  struct bound *b;
  struct result *r;
  double *dist, *refd, t[5] = { 0 }, start, tfind, parsed = 0;

  if (argc > 2)
    zstd_level = atoi(argv[2]);
  in = read_file(path, &len);
  start = now();
  nb = find_bounds(in, len, &out, &outlen, &b);
  tfind = now() - start;
  r = xrealloc(NULL, (nb + 1) * sizeof *r);
  dist = xrealloc(NULL, (nb + 1) * sizeof *dist);
  refd = xrealloc(NULL, (nb + 1) * sizeof *refd);
  for (i = 0; i < nb; i++) {
    int same = i + 1 < nb && b[i + 1].member_out == b[i].member_out;
    size_t next = same ? b[i + 1].out : b[i].end_out;

    if (i + 1 < nb)
      dist[i] = same ? (double) (b[i + 1].bit - b[i].bit) / 8
                     : (double) b[i].end_in - (double) b[i].bit / 8;
    failed += measure(in, out, &b[i], next, &r[i], t) != 0;
    parsed += (double) r[i].parsed;
  }
  printf("%s: %zu bytes gzip, %zu bytes uncompressed\n", path, len, outlen);
  report(r, nb, dist, refd);
  printf("verification failures:            %zu\n", failed);
  printf("time: %.2f s (boundaries %.2f, sparse maps %.2f, verify %.2f, "
         "zlib -9 %.2f, zstd %.2f)\n", now() - start, tfind, t[0], t[1],
         t[2], t[3]);
  printf("parse (sn_window_use alone): %.3f s for %.1f MB of output, "
         "%.0f MB/s\n", t[4], parsed / 1e6, t[4] > 0 ? parsed / 1e6 / t[4]
         : 0);
  free(in);
  free(out);
  free(b);
  free(r);
  free(dist);
  free(refd);
  return failed ? 1 : 0;
}
