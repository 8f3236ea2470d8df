/* soci-nbd benchmark: raw decode speed of a gzip file with lib/inflate/inflate.c
 * (stopping at every block boundary, as the ztoc builder does), zlib's
 * inflate (Z_BLOCK, as the builder used to, and Z_NO_FLUSH) and, when
 * built with it, ISA-L's igzip.  Output MB/s, best and median of N runs;
 * the outputs' CRC-32s must agree.
 *   usage: bench/inflate-speed FILE.gz [RUNS] */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "inflate/inflate.h"

#define FEED ((size_t) 256 * 1024)     /* input per call, like a network read */

static double
now(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t total;
static uint32_t crc;

static void
take(const uint8_t *p, size_t n)
{
  total += n;
  crc = (uint32_t) crc32(crc, p, (uInt) n);
}

static int verify = 1;

static void
sink(const uint8_t *p, size_t n)
{
  if (verify)
    take(p, n);
  else
    total += n;
}

static int
run_sn(const uint8_t *in, size_t len)
{
  struct sn_inflate *z = sn_inflate_new(SN_INFLATE_GZIP);
  size_t pos = 0;

  while (pos < len) {
    size_t n = len - pos < FEED ? len - pos : FEED, off = 0;

    for (;;) {
      const uint8_t *out;
      size_t used, outlen;
      int ev = sn_inflate_run(z, in + pos + off, n - off, &used, &out,
                              &outlen);

      if (ev < 0)
        return -1;
      sink(out, outlen);
      off += used;
      if (ev == SN_INFLATE_NEED_INPUT)
        break;
    }
    pos += n;
  }
  if (sn_inflate_finish(z) == -1)
    return -1;
  sn_inflate_free(z);
  return 0;
}

static int
run_zlib(const uint8_t *in, size_t len, int flush)
{
  static uint8_t out[512 * 1024];
  z_stream s;
  size_t pos = 0;
  int ret = Z_OK;

  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, 47) != Z_OK)
    return -1;
  while (pos < len) {
    size_t n = len - pos < FEED ? len - pos : FEED;

    s.next_in = (Bytef *) in + pos;
    s.avail_in = (uInt) n;
    while (s.avail_in > 0 || s.avail_out == 0) {
      if (ret == Z_STREAM_END)
        inflateReset2(&s, 47);
      s.next_out = out;
      s.avail_out = sizeof out;
      ret = inflate(&s, flush);
      if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR)
        return -1;
      sink(out, sizeof out - s.avail_out);
      if (ret == Z_BUF_ERROR)
        break;
    }
    pos += n;
  }
  inflateEnd(&s);
  return 0;
}

#ifdef HAVE_ISAL
static int
run_isal(const uint8_t *in, size_t len)
{
  static uint8_t out[512 * 1024];
  struct inflate_state st;
  size_t pos = 0;

  isal_inflate_init(&st);
  st.crc_flag = ISAL_GZIP;
  while (pos < len) {
    size_t n = len - pos < FEED ? len - pos : FEED;

    st.next_in = (uint8_t *) in + pos;
    st.avail_in = (uint32_t) n;
    do {
      st.next_out = out;
      st.avail_out = sizeof out;
      if (isal_inflate(&st) != ISAL_DECOMP_OK)
        return -1;
      sink(out, sizeof out - st.avail_out);
      if (st.block_state == ISAL_BLOCK_FINISH && st.avail_in > 0) {
        isal_inflate_reset(&st);
        st.crc_flag = ISAL_GZIP;
      }
    } while (st.avail_in > 0 || st.avail_out == 0);
    pos += n;
  }
  return 0;
}
#endif

static int
cmp_double(const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
  static const char *names[] = { "sn_inflate", "zlib Z_BLOCK", "zlib",
                                 "isa-l" };
  FILE *f;
  uint8_t *in;
  long len;
  int runs = argc > 2 ? atoi(argv[2]) : 5, i, k;
  uint32_t crcs[4] = { 0 };
  uint64_t outsize = 0;

  if (argc < 2 || (f = fopen(argv[1], "rb")) == NULL) {
    fprintf(stderr, "usage: inflate-speed FILE.gz [RUNS]\n");
    return 2;
  }
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  rewind(f);
  in = malloc((size_t) len);
  if (in == NULL || fread(in, 1, (size_t) len, f) != (size_t) len)
    return 2;
  fclose(f);

  for (k = 0; k < 4; k++) {
    double t[64];
    int r = 0;

#ifndef HAVE_ISAL
    if (k == 3)
      continue;
#endif
    for (i = 0; i <= runs && i < 64; i++) {
      double t0;

      verify = i == 0;
      total = 0;
      crc = 0;
      t0 = now();
      switch (k) {
      case 0: r = run_sn(in, (size_t) len); break;
      case 1: r = run_zlib(in, (size_t) len, Z_BLOCK); break;
      case 2: r = run_zlib(in, (size_t) len, Z_NO_FLUSH); break;
#ifdef HAVE_ISAL
      case 3: r = run_isal(in, (size_t) len); break;
#endif
      }
      t[i] = now() - t0;
      if (r == -1) {
        fprintf(stderr, "%s: decode failed\n", names[k]);
        return 1;
      }
      if (i == 0) {
        crcs[k] = crc;
        outsize = total;
      }
    }
    /* t[0] (the verifying run) is not timed */
    qsort(t + 1, (size_t) runs, sizeof t[0], cmp_double);
    printf("%-13s median %7.1f MB/s  best %7.1f MB/s  worst %7.1f MB/s"
           "  crc %08x\n", names[k], outsize / t[1 + runs / 2] / 1e6,
           outsize / t[1] / 1e6, outsize / t[runs] / 1e6, crcs[k]);
  }
  for (k = 1; k < 4; k++)
    if (crcs[k] && crcs[k] != crcs[0]) {
      printf("MISMATCH: %s differs from sn_inflate\n", names[k]);
      return 1;
    }
  return 0;
}
