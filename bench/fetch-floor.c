/* soci-nbd benchmark: the fewest compressed bytes any index of an
 * unmodified gzip layer could fetch for the reads of a prefetch record.
 *
 * A record (docs/prefetch-record.md) lists the tar bytes a real start read.
 * To produce tar byte x, a reader must at least fetch the DEFLATE symbol
 * that outputs x; to produce [a, b) it must fetch every symbol from the one
 * that outputs a to the one that outputs b - 1.  Those compressed bytes are
 * a floor for every index over the unchanged layer, however dense its
 * restart points, before it fetches a single window byte.  The tool feeds
 * the layer to zlib one byte at a time (so each output byte is placed to
 * the input byte that completed it; an independent decoder, not the one
 * under test) and adds up, over the record's ranges of this layer (merged):
 *   - the floor: restart points anywhere, no windows;
 *   - restart points only at deflate block boundaries (what a zran-style
 *     index such as the dense index can use: docs/dense-index.md), each
 *     block fetched whole;
 *   - restart points anywhere in the bit stream, on a grid of G compressed
 *     bytes (mid-block restart points, which would also need the block's
 *     Huffman header next to each window).
 * Shares are of the layer's compressed size.
 *   usage: bench/fetch-floor LAYER.tar.gz RECORD.json [GRID_BYTES...]
 *   (default grids 8192 16384 32768 65536) */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "record/record.h"

#define MAX_GRIDS 16

struct span {
  uint64_t a, b;                /* a half-open interval */
};

static int
cmp_span(const void *x, const void *y)
{
  const struct span *p = x, *q = y;

  return p->a < q->a ? -1 : p->a > q->a;
}

/* Sort and merge intervals in place; the number left. */
static size_t
merge(struct span *s, size_t n)
{
  size_t k = 0;

  qsort(s, n, sizeof *s, cmp_span);
  for (size_t i = 0; i < n; i++) {
    if (k > 0 && s[i].a <= s[k - 1].b) {
      if (s[i].b > s[k - 1].b)
        s[k - 1].b = s[i].b;
    }
    else
      s[k++] = s[i];
  }
  return k;
}

static uint64_t
total(const struct span *s, size_t n)
{
  uint64_t t = 0;

  for (size_t i = 0; i < n; i++)
    t += s[i].b - s[i].a;
  return t;
}

/* Print one line of the report: t compressed bytes of a layer of glen. */
static void
share(const char *what, uint64_t t, size_t glen)
{
  printf("  %-48s %10" PRIu64 "  %6.2f%%\n", what, t,
         100.0 * (double) t / (double) glen);
}

int
main(int argc, char **argv)
{
  uint64_t grids[MAX_GRIDS] = { 8192, 16384, 32768, 65536 };
  size_t ngrids = 4, glen, rlen, n = 0, nblocks = 0, k = 0, open_end = 0;
  char digest[SN_DIGEST_STRLEN + 1];
  struct sn_record rec;
  struct span *tar, *ideal, *block;
  uint64_t out = 0, last_boundary = 0;
  uint8_t *gz, *doc, buf[1 << 16];
  bool started = false;         /* range k's start is placed */
  z_stream z;
  long layer = -1;

  if (argc < 3) {
    fprintf(stderr, "usage: bench/fetch-floor LAYER.tar.gz RECORD.json "
            "[GRID_BYTES...]\n");
    return 2;
  }
  if (argc > 3) {
    ngrids = 0;
    for (int i = 3; i < argc && ngrids < MAX_GRIDS; i++)
      if ((grids[ngrids++] = strtoull(argv[i], NULL, 0)) == 0) {
        fprintf(stderr, "fetch-floor: bad grid %s\n", argv[i]);
        return 2;
      }
  }
  if (sn_read_file(argv[1], SIZE_MAX, true, &gz, &glen) == -1 ||
      sn_read_file(argv[2], SN_RECORD_MAX_SIZE, true, &doc, &rlen) == -1) {
    fprintf(stderr, "fetch-floor: %s\n", sn_error());
    return 1;
  }
  if (sn_record_parse(doc, rlen, &rec) == -1) {
    fprintf(stderr, "fetch-floor: %s: %s\n", argv[2], sn_error());
    return 1;
  }
  sn_digest_of(gz, glen, digest);
  for (size_t i = 0; i < rec.nlayers; i++)
    if (strcmp(rec.layers[i], digest) == 0)
      layer = (long) i;
  if (layer < 0) {
    fprintf(stderr, "fetch-floor: the record has no range of %s (%s)\n",
            argv[1], digest);
    return 1;
  }
  tar = calloc(rec.nranges + 1, sizeof *tar);
  ideal = calloc(rec.nranges + 1, sizeof *ideal);
  block = calloc(rec.nranges + 1, sizeof *block);
  if (tar == NULL || ideal == NULL || block == NULL)
    return 1;
  for (size_t i = 0; i < rec.nranges; i++)
    if (rec.ranges[i].layer == (uint32_t) layer) {
      tar[n].a = rec.ranges[i].off;
      tar[n].b = rec.ranges[i].off + rec.ranges[i].len;
      n++;
    }
  n = merge(tar, n);

  /* One pass, one input byte at a time.  Range k starts in the byte that
   * completes its first output byte and ends after the byte that completes
   * its last; a block-granular fetch widens each to the block boundaries
   * around it (open_end: ranges whose block end is not seen yet). */
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 32) != Z_OK)
    return 1;
  for (size_t i = 0; i < glen; i++) {
    z.next_in = gz + i;
    z.avail_in = 1;
    for (;;) {
      int r;

      z.next_out = buf;
      z.avail_out = sizeof buf;
      r = inflate(&z, Z_BLOCK);
      out += sizeof buf - z.avail_out;
      while (k < n && out > tar[k].a) {
        if (!started) {
          ideal[k].a = i;
          block[k].a = last_boundary;
          started = true;
        }
        if (out < tar[k].b)
          break;
        ideal[k++].b = i + 1;
        started = false;
      }
      if (r == Z_STREAM_END || ((z.data_type & 128) && !(z.data_type & 64))) {
        /* A block boundary (or a member's end) in this byte: a restart
         * point at it still needs the byte, so the byte counts to both
         * sides.  Close the block-granular end of the ranges done. */
        last_boundary = i;
        nblocks++;
        for (; open_end < k; open_end++)
          block[open_end].b = i + 1;
      }
      if (r == Z_STREAM_END) {
        if (inflateReset(&z) != Z_OK)
          return 1;
      }
      else if (r != Z_OK && r != Z_BUF_ERROR) {
        fprintf(stderr, "fetch-floor: %s: not gzip at byte %zu (%s)\n",
                argv[1], i, z.msg ? z.msg : "error");
        return 1;
      }
      if (z.avail_in == 0 && z.avail_out != 0)
        break;
      if (r == Z_BUF_ERROR)
        break;
    }
  }
  inflateEnd(&z);
  if (k < n) {
    fprintf(stderr, "fetch-floor: the record reads past the end of %s\n",
            argv[1]);
    return 1;
  }
  for (; open_end < n; open_end++)
    block[open_end].b = glen;

  printf("layer %s: %zu bytes, %" PRIu64 " uncompressed, %zu deflate "
         "blocks\n", digest, glen, out, nblocks);
  printf("record: %zu ranges of this layer (merged), %" PRIu64 " tar bytes "
         "(%.2f%% of the tar)\n", n, total(tar, n),
         out ? 100.0 * (double) total(tar, n) / (double) out : 0.0);
  printf("compressed bytes those reads need, share of the layer:\n");
  {
    struct span *s = malloc((n + 1) * sizeof *s);
    char what[80];

    if (s == NULL)
      return 1;
    memcpy(s, ideal, n * sizeof *s);
    share("restart points anywhere, no windows (the floor):",
          total(s, merge(s, n)), glen);
    memcpy(s, block, n * sizeof *s);
    share("at every deflate block boundary, no windows:",
          total(s, merge(s, n)), glen);
    for (size_t g = 0; g < ngrids; g++) {
      for (size_t i = 0; i < n; i++) {
        s[i].a = ideal[i].a / grids[g] * grids[g];
        s[i].b = (ideal[i].b + grids[g] - 1) / grids[g] * grids[g];
        if (s[i].b > glen)
          s[i].b = glen;
      }
      snprintf(what, sizeof what, "anywhere, on a grid of %6" PRIu64
               " bytes, no windows:", grids[g]);
      share(what, total(s, merge(s, n)), glen);
    }
    free(s);
  }
  sn_record_clear(&rec);
  free(tar);
  free(ideal);
  free(block);
  free(gz);
  free(doc);
  return 0;
}
