/* soci-nbd tests: a command-line front of lib/nbd/nbddev.c for the QEMU guest
 * of tests/kernel/kernel-reconnect.sh (built static, so that it runs in the
 * guest's initramfs).  SERVER is HOST:PORT or unix:PATH.
 *
 *   nbd-attach available
 *   nbd-attach connect SERVER EXPORT            print "SIZE FLAGS"
 *   nbd-attach attach [-i N] [-b BS] [-d DEAD_S] [-t IO_S] [-r] SERVER EXPORT
 *                                               print the device index
 *   nbd-attach reconnect N SERVER EXPORT
 *   nbd-attach supervise [-R RETRY_MS] N SERVER EXPORT [N SERVER EXPORT]...
 *                                               until SIGTERM/SIGINT or
 *                                               every device is detached
 *   nbd-attach status N                         print 1 or 0
 *   nbd-attach detach N
 *
 * Errors: the library's message on stderr, exit 1.
 */
#include <config.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "nbd/nbddev.h"

static volatile bool stop;

static void
on_signal(int sig)
{
  (void) sig;
  stop = true;
}

static void
usage(void)
{
  fprintf(stderr, "usage: nbd-attach available | connect SERVER EXPORT |\n"
          "  attach [-i N] [-b BS] [-d DEAD_S] [-t IO_S] [-r] SERVER EXPORT |\n"
          "  reconnect N SERVER EXPORT | supervise [-R RETRY_MS] N SERVER "
          "EXPORT... |\n  status N | detach N\n");
  exit(2);
}

/* SERVER (HOST:PORT or unix:PATH) and EXPORT into *s; the strings of argv
 * are kept. */
static void
parse_server(char *arg, const char *export, struct sn_nbd_server *s)
{
  char *colon;

  memset(s, 0, sizeof *s);
  s->export_name = export;
  if (strncmp(arg, "unix:", 5) == 0) {
    s->unix_path = arg + 5;
    return;
  }
  colon = strrchr(arg, ':');
  if (colon == NULL)
    usage();
  *colon = '\0';
  s->host = arg;
  s->port = colon + 1;
}

static int
fail(void)
{
  fprintf(stderr, "nbd-attach: %s\n", sn_error());
  return 1;
}

int
main(int argc, char **argv)
{
  struct sn_nbd_server srv;
  const char *cmd;
  int c;

  if (argc < 2)
    usage();
  cmd = argv[1];
  argv++;
  argc--;

  if (strcmp(cmd, "available") == 0)
    return sn_nbd_driver_available() == 0 ? 0 : fail();

  if (strcmp(cmd, "connect") == 0) {
    uint64_t size;
    uint16_t flags;
    int fd;

    if (argc != 3)
      usage();
    parse_server(argv[1], argv[2], &srv);
    fd = sn_nbd_connect(&srv, &size, &flags);
    if (fd == -1)
      return fail();
    printf("%" PRIu64 " %" PRIu16 "\n", size, flags);
    close(fd);
    return 0;
  }

  if (strcmp(cmd, "attach") == 0) {
    struct sn_nbd_attach_opts o = { .index = -1 };
    int idx;

    while ((c = getopt(argc, argv, "i:b:d:t:r")) != -1)
      switch (c) {
      case 'i': o.index = atoi(optarg); break;
      case 'b': o.block_size = (uint32_t) strtoul(optarg, NULL, 10); break;
      case 'd': o.dead_conn_timeout = (unsigned) atoi(optarg); break;
      case 't': o.io_timeout = (unsigned) atoi(optarg); break;
      case 'r': o.read_only = true; break;
      default: usage();
      }
    if (argc - optind != 2)
      usage();
    parse_server(argv[optind], argv[optind + 1], &srv);
    idx = sn_nbd_attach(&srv, &o);
    if (idx == -1)
      return fail();
    printf("%d\n", idx);
    return 0;
  }

  if (strcmp(cmd, "reconnect") == 0) {
    if (argc != 4)
      usage();
    parse_server(argv[2], argv[3], &srv);
    return sn_nbd_reconnect(atoi(argv[1]), &srv) == 0 ? 0 : fail();
  }

  if (strcmp(cmd, "supervise") == 0) {
    unsigned retry = 500;
    struct sigaction sa = { .sa_handler = on_signal };
    struct sn_nbd_server *srvs;
    int *idx;
    size_t n;

    while ((c = getopt(argc, argv, "R:")) != -1)
      switch (c) {
      case 'R': retry = (unsigned) atoi(optarg); break;
      default: usage();
      }
    if (argc - optind < 3 || (argc - optind) % 3 != 0)
      usage();
    n = (size_t) (argc - optind) / 3;
    srvs = calloc(n, sizeof *srvs);
    idx = calloc(n, sizeof *idx);
    if (srvs == NULL || idx == NULL)
      return 1;
    for (size_t i = 0; i < n; i++) {
      idx[i] = atoi(argv[optind + 3 * (int) i]);
      parse_server(argv[optind + 3 * (int) i + 1],
                   argv[optind + 3 * (int) i + 2], &srvs[i]);
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "nbd-attach: supervising %zu device(s)\n", n);
    c = sn_nbd_supervise(idx, srvs, n, retry, &stop);
    free(srvs);
    free(idx);
    if (c == -1)
      return fail();
    fprintf(stderr, "nbd-attach: supervision ended\n");
    return 0;
  }

  if (strcmp(cmd, "status") == 0) {
    if (argc != 2)
      usage();
    c = sn_nbd_connected(atoi(argv[1]));
    if (c == -1)
      return fail();
    printf("%d\n", c);
    return 0;
  }

  if (strcmp(cmd, "detach") == 0) {
    if (argc != 2)
      usage();
    return sn_nbd_detach(atoi(argv[1])) == 0 ? 0 : fail();
  }
  usage();
  return 2;
}
