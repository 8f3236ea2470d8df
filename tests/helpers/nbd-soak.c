/* soci-nbd tests: random reads of an NBD export compared with a reference
 * image, a helper of tests/plugin/soak.sh.
 *
 *   nbd-soak URI REFERENCE THREADS READS SEED faults|clean
 *
 * THREADS threads, each on its own connection, make READS reads in all:
 * a random offset and a random length (1 byte to 64 KiB, within the
 * export), each compared with the same bytes of REFERENCE (the image the
 * export must equal).  A read may fail ("faults": the registry behind the
 * server is injecting faults) but must never return other bytes.  Prints
 * "reads N ok N errors N wrong N"; exits 1 on any wrong byte, and in
 * "clean" mode on any error too, 2 on a setup failure. */
#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>

#include "tap.h"

#define MAX_LEN (64 * 1024)
#define MAX_THREADS 64

static const char *uri;
static const uint8_t *ref;
static uint64_t ref_size;
static uint64_t seed;
static atomic_uint_fast64_t next_read, nreads, nok, nerrors, nwrong;

static void *
work(void *arg)
{
  uint64_t rs = seed * 2654435761u + (uintptr_t) arg + 1;
  struct nbd_handle *h = nbd_create();
  uint8_t *buf = malloc(MAX_LEN);
  uint64_t size;

  if (h == NULL || buf == NULL || nbd_connect_uri(h, uri) == -1 ||
      (size = (uint64_t) nbd_get_size(h)) != ref_size) {
    fprintf(stderr, "nbd-soak: connect: %s\n",
            h ? nbd_get_error() : "out of memory");
    atomic_fetch_add(&nerrors, 1);
    goto out;
  }
  while (atomic_fetch_add(&next_read, 1) < nreads) {
    uint64_t len = 1 + tap_xorshift(&rs) % MAX_LEN;
    uint64_t off = tap_xorshift(&rs) % size;

    if (len > size - off)
      len = size - off;
    if (nbd_pread(h, buf, (size_t) len, off, 0) == -1) {
      atomic_fetch_add(&nerrors, 1);
      if (nbd_aio_is_ready(h) == 0) {     /* the connection died: again */
        nbd_close(h);
        h = nbd_create();
        if (h == NULL || nbd_connect_uri(h, uri) == -1)
          goto out;
      }
      continue;
    }
    if (memcmp(buf, ref + off, (size_t) len) != 0) {
      fprintf(stderr, "nbd-soak: WRONG BYTES at %" PRIu64 "+%" PRIu64 "\n",
              off, len);
      atomic_fetch_add(&nwrong, 1);
    }
    else
      atomic_fetch_add(&nok, 1);
  }
out:
  if (h)
    nbd_close(h);
  free(buf);
  return NULL;
}

int
main(int argc, char **argv)
{
  pthread_t th[MAX_THREADS];
  unsigned long nthreads;
  struct stat st;
  bool clean;
  int fd;

  if (argc != 7 || (strcmp(argv[6], "faults") && strcmp(argv[6], "clean"))) {
    fprintf(stderr, "usage: nbd-soak URI REFERENCE THREADS READS SEED "
            "faults|clean\n");
    return 2;
  }
  uri = argv[1];
  nthreads = strtoul(argv[3], NULL, 10);
  nreads = strtoull(argv[4], NULL, 10);
  seed = strtoull(argv[5], NULL, 10);
  clean = strcmp(argv[6], "clean") == 0;
  if (nthreads < 1 || nthreads > MAX_THREADS) {
    fprintf(stderr, "nbd-soak: THREADS must be 1..%d\n", MAX_THREADS);
    return 2;
  }
  fd = open(argv[2], O_RDONLY);
  if (fd == -1 || fstat(fd, &st) == -1 || st.st_size == 0 ||
      (ref = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0))
      == MAP_FAILED) {
    perror(argv[2]);
    return 2;
  }
  ref_size = (uint64_t) st.st_size;
  for (unsigned long i = 0; i < nthreads; i++)
    if (pthread_create(&th[i], NULL, work, (void *) (uintptr_t) i) != 0) {
      fprintf(stderr, "nbd-soak: pthread_create failed\n");
      return 2;
    }
  for (unsigned long i = 0; i < nthreads; i++)
    pthread_join(th[i], NULL);
  printf("reads %" PRIu64 " ok %" PRIu64 " errors %" PRIu64 " wrong %"
         PRIu64 "\n", (uint64_t) (atomic_load(&nok) + atomic_load(&nerrors)
                                  + atomic_load(&nwrong)),
         (uint64_t) atomic_load(&nok), (uint64_t) atomic_load(&nerrors),
         (uint64_t) atomic_load(&nwrong));
  if (atomic_load(&nwrong) > 0)
    return 1;
  if (clean && (atomic_load(&nerrors) > 0 ||
                atomic_load(&nok) != nreads))
    return 1;
  return 0;
}
