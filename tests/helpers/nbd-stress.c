/* soci-nbd tests: many concurrent NBD readers verifying every byte, a
 * helper of tests/plugin/plugin-more.sh.
 *
 *   nbd-stress URI LIST THREADS [SEED]
 *
 * LIST has one range a line: "OFFSET LENGTH SHA256HEX" (a file's bytes in
 * the export and their digest).  Each of THREADS threads opens its own
 * connection to URI, then reads every range of LIST in its own random
 * order, each in random-sized pieces (1 byte to 1 MiB), and checks the
 * digest.  Prints a summary; exits 1 on any failed read or mismatch. */
#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>

#include "util/digest.h"
#include "tap.h"

#define MAX_PIECE (1024 * 1024)
#define MAX_THREADS 256

struct range {
  uint64_t off, len;
  char hex[SN_SHA256_LEN * 2 + 1];
};

static const char *uri;
static struct range *ranges;
static size_t nranges;
static uint64_t seed;

struct worker {
  pthread_t tid;
  unsigned n;
  uint64_t bytes, reads;
  unsigned errors;
};

static void *
work(void *arg)
{
  struct worker *w = arg;
  struct nbd_handle *h = nbd_create();
  uint64_t rs = seed * 2654435761u + w->n + 1;
  size_t *order = malloc(nranges * sizeof *order);
  char *buf = malloc(MAX_PIECE);
  size_t i;

  if (h == NULL || order == NULL || buf == NULL) {
    fprintf(stderr, "nbd-stress: thread %u: out of memory\n", w->n);
    w->errors++;
    goto out;
  }
  if (nbd_connect_uri(h, uri) == -1) {
    fprintf(stderr, "nbd-stress: thread %u: %s\n", w->n, nbd_get_error());
    w->errors++;
    goto out;
  }
  for (i = 0; i < nranges; i++)
    order[i] = i;
  for (i = nranges; i > 1; i--) {
    size_t j = (size_t) (tap_xorshift(&rs) % i), t = order[i - 1];

    order[i - 1] = order[j];
    order[j] = t;
  }
  for (i = 0; i < nranges; i++) {
    const struct range *r = &ranges[order[i]];
    struct sn_sha256 sh;
    uint8_t d[SN_SHA256_LEN];
    char hex[SN_SHA256_LEN * 2 + 1];
    uint64_t done = 0;
    int failed = 0;

    if (sn_sha256_init(&sh) == -1) {
      w->errors++;
      break;
    }
    while (done < r->len) {
      uint64_t n = 1 + tap_xorshift(&rs) % MAX_PIECE;

      if (n > r->len - done)
        n = r->len - done;
      if (nbd_pread(h, buf, (size_t) n, r->off + done, 0) == -1) {
        fprintf(stderr, "nbd-stress: thread %u: read %" PRIu64 "+%" PRIu64
                ": %s\n", w->n, r->off + done, n, nbd_get_error());
        failed = 1;
        break;
      }
      sn_sha256_update(&sh, buf, (size_t) n);
      done += n;
      w->bytes += n;
      w->reads++;
    }
    sn_sha256_final(&sh, d);
    sn_sha256_free(&sh);
    if (!failed) {
      for (size_t k = 0; k < SN_SHA256_LEN; k++)
        snprintf(hex + 2 * k, 3, "%02x", d[k]);
      if (strcmp(hex, r->hex) != 0) {
        fprintf(stderr, "nbd-stress: thread %u: range %" PRIu64 "+%" PRIu64
                ": sha256 %s, want %s\n", w->n, r->off, r->len, hex, r->hex);
        failed = 1;
      }
    }
    if (failed)
      w->errors++;
  }
  nbd_shutdown(h, 0);
out:
  if (h)
    nbd_close(h);
  free(order);
  free(buf);
  return NULL;
}

static int
load_list(const char *path)
{
  FILE *f = fopen(path, "r");
  size_t cap = 0;
  uint64_t off, len;
  char hex[80];

  if (f == NULL) {
    perror(path);
    return -1;
  }
  while (fscanf(f, "%" SCNu64 " %" SCNu64 " %79s", &off, &len, hex) == 3) {
    if (strlen(hex) != SN_SHA256_LEN * 2) {
      fprintf(stderr, "nbd-stress: %s: bad digest %s\n", path, hex);
      fclose(f);
      return -1;
    }
    if (nranges == cap) {
      struct range *n;

      cap = cap ? cap * 2 : 64;
      n = realloc(ranges, cap * sizeof *n);
      if (n == NULL) {
        fclose(f);
        return -1;
      }
      ranges = n;
    }
    ranges[nranges].off = off;
    ranges[nranges].len = len;
    memcpy(ranges[nranges].hex, hex, sizeof ranges[nranges].hex);
    nranges++;
  }
  fclose(f);
  if (nranges == 0) {
    fprintf(stderr, "nbd-stress: %s: no ranges\n", path);
    return -1;
  }
  return 0;
}

int
main(int argc, char **argv)
{
  struct worker *w;
  unsigned nthreads, i, errors = 0;
  uint64_t bytes = 0, reads = 0;
  struct timespec t0, t1;

  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: nbd-stress URI LIST THREADS [SEED]\n");
    return 2;
  }
  uri = argv[1];
  nthreads = (unsigned) strtoul(argv[3], NULL, 0);
  seed = argc == 5 ? strtoull(argv[4], NULL, 0) : (uint64_t) time(NULL);
  if (nthreads < 1 || nthreads > MAX_THREADS) {
    fprintf(stderr, "nbd-stress: THREADS must be 1..%d\n", MAX_THREADS);
    return 2;
  }
  if (load_list(argv[2]) == -1)
    return 1;
  w = calloc(nthreads, sizeof *w);
  if (w == NULL)
    return 1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (i = 0; i < nthreads; i++) {
    w[i].n = i;
    if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
      fprintf(stderr, "nbd-stress: pthread_create failed\n");
      return 1;
    }
  }
  for (i = 0; i < nthreads; i++) {
    pthread_join(w[i].tid, NULL);
    errors += w[i].errors;
    bytes += w[i].bytes;
    reads += w[i].reads;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("nbd-stress: %u threads, %zu ranges each, %" PRIu64 " reads, %"
         PRIu64 " bytes, %.2f s, seed %" PRIu64 ", %u errors\n",
         nthreads, nranges, reads, bytes,
         (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9,
         seed, errors);
  free(w);
  free(ranges);
  return errors ? 1 : 0;
}
