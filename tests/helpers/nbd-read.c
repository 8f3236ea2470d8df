/* soci-nbd tests: read a byte range of an NBD export to stdout (libnbd),
 * so shell tests can read one file's bytes without a kernel client.
 *
 *   nbd-read URI OFFSET LENGTH     (LENGTH -1: to the end of the export)
 *   nbd-read --cache URI OFFSET LENGTH   send NBD_CMD_CACHE instead
 *
 * Exits 1 with the server's error (e.g. EIO) on stderr if the read fails.
 * NBD_READ_HOLD=SECONDS keeps the connection open that long after the
 * read (stdout is closed first), for tests of what a server does while a
 * client stays connected. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <libnbd.h>

#define CHUNK (1024 * 1024)

int
main(int argc, char **argv)
{
  struct nbd_handle *h;
  int64_t size, off, len;
  char *buf;
  int r = 1, cache = 0;

  if (argc == 5 && strcmp(argv[1], "--cache") == 0) {
    cache = 1;
    argc--;
    argv++;
  }
  if (argc != 4) {
    fprintf(stderr, "usage: nbd-read URI OFFSET LENGTH\n");
    return 2;
  }
  off = strtoll(argv[2], NULL, 0);
  len = strtoll(argv[3], NULL, 0);
  h = nbd_create();
  buf = malloc(CHUNK);
  if (h == NULL || buf == NULL) {
    fprintf(stderr, "nbd-read: out of memory\n");
    return 1;
  }
  if (nbd_connect_uri(h, argv[1]) == -1 ||
      (size = nbd_get_size(h)) == -1) {
    fprintf(stderr, "nbd-read: %s\n", nbd_get_error());
    goto out;
  }
  if (len < 0)
    len = size - off;
  if (off < 0 || off > size || len > size - off) {
    fprintf(stderr, "nbd-read: range outside the export (size %" PRId64
            ")\n", size);
    goto out;
  }
  if (cache) {
    if (nbd_cache(h, (uint64_t) len, (uint64_t) off, 0) == -1) {
      fprintf(stderr, "nbd-read: cache: %s\n", nbd_get_error());
      goto out;
    }
    len = 0;
  }
  while (len > 0) {
    size_t n = len > CHUNK ? CHUNK : (size_t) len;

    if (nbd_pread(h, buf, n, (uint64_t) off, 0) == -1) {
      fprintf(stderr, "nbd-read: read at %" PRId64 ": %s (errno %d: %s)\n",
              off, nbd_get_error(), nbd_get_errno(),
              strerror(nbd_get_errno()));
      goto out;
    }
    if (fwrite(buf, 1, n, stdout) != n) {
      fprintf(stderr, "nbd-read: stdout: %s\n", strerror(errno));
      goto out;
    }
    off += (int64_t) n;
    len -= (int64_t) n;
  }
  if (getenv("NBD_READ_HOLD")) {
    fclose(stdout);
    sleep((unsigned) atoi(getenv("NBD_READ_HOLD")));
  }
  nbd_shutdown(h, 0);
  r = 0;
out:
  nbd_close(h);
  free(buf);
  return r;
}
