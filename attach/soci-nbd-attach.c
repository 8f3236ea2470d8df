/* soci-nbd-attach: attach an NBD export to a kernel nbd device and keep it
 * attached across server restarts — a command-line front of
 * lib/nbd/nbddev.c (netlink, NBD_CMD_RECONFIGURE).  It is what the
 * boot=soci initramfs script uses for a root over NBD
 * (examples/initramfs-tools, examples/bare-metal.md), and what the QEMU
 * guest of tests/kernel/kernel-reconnect.sh runs (built static there, as
 * tests/helpers/nbd-attach).  SERVER is HOST:PORT or unix:PATH.
 *
 *   soci-nbd-attach [--tls-psk FILE [--tls-identity NAME]] COMMAND ...
 *                          TLS with a pre-shared key on every link
 *   soci-nbd-attach available
 *   soci-nbd-attach connect SERVER EXPORT       print "SIZE FLAGS"
 *   soci-nbd-attach attach [-i N] [-b BS] [-d DEAD_S] [-t IO_S] [-r] [-m]
 *                          SERVER EXPORT        print the device index
 *                                               (-m: as for supervise, for
 *                                               the TLS carrier it starts)
 *   soci-nbd-attach reconnect N SERVER EXPORT
 *   soci-nbd-attach supervise [-R RETRY_MS] [-m] N SERVER EXPORT
 *                          [N SERVER EXPORT]... until SIGTERM/SIGINT or
 *                                               every device is detached;
 *                                               -m: for a root device,
 *                                               from an initramfs: argv[0]
 *                                               starts with '@' (systemd
 *                                               does not kill it at
 *                                               shutdown), and sysfs is
 *                                               read through a descriptor
 *                                               that survives the switch
 *                                               to the new root
 *   soci-nbd-attach status N                    print 1 or 0
 *   soci-nbd-attach detach N
 *
 * Errors: the library's message on stderr, exit 1; usage errors exit 2.
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
static struct sn_nbd_psk *tls_psk;     /* --tls-psk FILE [--tls-identity N] */

static void
on_signal(int sig)
{
  (void) sig;
  stop = true;
}

#define USAGE \
  "usage: soci-nbd-attach [--tls-psk FILE [--tls-identity NAME]] COMMAND\n" \
  "COMMAND: available | connect SERVER EXPORT |\n" \
  "  attach [-i N] [-b BS] [-d DEAD_S] [-t IO_S] [-r] [-m] SERVER EXPORT |\n" \
  "  reconnect N SERVER EXPORT | supervise [-R RETRY_MS] [-m] N SERVER " \
  "EXPORT... |\n  status N | detach N\n"

static void
usage(void)
{
  fputs(USAGE, stderr);
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
  s->tls_psk = tls_psk;
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
  fprintf(stderr, "soci-nbd-attach: %s\n", sn_error());
  return 1;
}

int
main(int argc, char **argv)
{
  struct sn_nbd_server srv;
  const char *cmd, *tls_psk_file = NULL, *tls_identity = NULL;
  char *self = argv[0];
  int c;

  if (argc < 2)
    usage();
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    printf(USAGE "SERVER is HOST:PORT or unix:PATH.  "
           "See soci-nbd-attach(8).\n");
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);    /* a TLS write to a closed link: an error */
  while (argc > 2 && strncmp(argv[1], "--tls-", 6) == 0) {
    if (strcmp(argv[1], "--tls-psk") == 0)
      tls_psk_file = argv[2];
    else if (strcmp(argv[1], "--tls-identity") == 0)
      tls_identity = argv[2];
    else
      usage();
    argv += 2;
    argc -= 2;
  }
  if (argc < 2 || (tls_identity && !tls_psk_file))
    usage();
  /* Read now, kept in memory: a supervisor of a root device must not open
   * files once the root has switched. */
  if (tls_psk_file && (tls_psk = sn_nbd_psk_load(tls_psk_file,
                                                  tls_identity)) == NULL)
    return fail();
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

    while ((c = getopt(argc, argv, "i:b:d:t:rm")) != -1)
      switch (c) {
      case 'm': self[0] = '@'; break;  /* inherited by the TLS carrier */
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

    bool mark = false;

    while ((c = getopt(argc, argv, "R:m")) != -1)
      switch (c) {
      case 'R': retry = (unsigned) atoi(optarg); break;
      case 'm': mark = true; break;
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
    /* A root storage daemon (-m): systemd spares processes whose argv[0]
     * starts with '@' at shutdown; and after the switch to the new root
     * this process must not open a file (they are gone, or on the device
     * it keeps alive): sysfs through a pinned descriptor. */
    if (mark) {
      self[0] = '@';            /* argv[0] as /proc/PID/cmdline shows it */
      if (sn_nbd_pin_sysfs() == -1)
        return fail();
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "soci-nbd-attach: supervising %zu device(s)\n", n);
    c = sn_nbd_supervise(idx, srvs, n, retry, &stop);
    free(srvs);
    free(idx);
    if (c == -1)
      return fail();
    fprintf(stderr, "soci-nbd-attach: supervision ended\n");
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
