/* soci-nbd: the command line of the "mount", "umount" and "mounts"
 * commands: options, usage and checks of the arguments; the mounting and
 * unmounting itself is lib/mount/mount.c (nbdkit's soci plugin serving the
 * image, kernel NBD devices, squashfs and overlayfs, every step journaled
 * first in mount-state.h so that `umount` undoes a mount in reverse
 * order, also a half-made one). */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "mount/mount-state.h"
#include "mount/mount.h"
#include "nbd/nbddev.h"
#include "regopts.h"

#define DEFAULT_RECONNECT_TIMEOUT 60

static void
mount_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd mount IMAGE DIR [OPTIONS]\n"
"       soci-nbd mount --restart-server DIR\n"
"\n"
"Serve IMAGE with nbdkit's soci plugin, attach it to NBD devices and mount\n"
"it on DIR (root only; needs the kernel's nbd driver).\n"
"\n"
"      --overlay            one device per layer, stacked with overlayfs\n"
"                           (default); layers are shared between mounts\n"
"      --flat               the flattened image on one device\n"
"      --layer DIGEST       only that layer, alone, read-only (its device is\n"
"                           shared with overlay mounts of the same layer)\n"
"      --lazy-only          with --layer: refuse a layer no index covers\n"
"                           (it would be downloaded whole)\n"
"      --rw                 writable: an overlayfs upper layer on a tmpfs\n"
"      --upper DIR          with --rw: keep the upper layer in DIR/upper\n"
"                           (and DIR/work) instead\n"
"      --suid               honour the image's setuid and setgid bits in DIR\n"
"                           (default: mounted nosuid)\n"
"      --dev                honour the image's device nodes in DIR\n"
"                           (default: mounted nodev)\n"
"  -p, --platform P         os/arch[/variant] to select from an index\n"
"      --index X            SOCI index: auto, none or sha256:...\n"
"      --cache-dir DIR      keep fetched layers and spans in DIR\n"
"      --cache-size SIZE    memory span cache per layer (default 64M)\n"
"      --block-size SIZE    squashfs block size (default 128K)\n"
"      --reconnect-timeout S  how long reads wait for a restarted server\n"
"                           (default %d s)\n"
"      --plugin PATH        nbdkit-soci-plugin.so (default: $SOCI_NBD_PLUGIN,\n"
"                           the build tree's, else nbdkit's installed 'soci')\n"
"      --nbdkit PATH        the nbdkit program (default: nbdkit on PATH)\n"
"      --restart-server     start the nbdkit of the mount on DIR again, with\n"
"                           the same arguments (after it crashed)\n"
"  -q, --quiet              print nothing on success\n"
REGOPTS_HELP
"  -h, --help               show this help\n"
"\n"
"State: $SOCI_NBD_RUN_DIR (default /run/soci-nbd).\n",
          DEFAULT_RECONNECT_TIMEOUT);
}

/* ---- plugin arguments --------------------------------------------------- */

static int
arg_add(struct sn_mount_args *a, const char *key, const char *val)
{
  char **nv = realloc(a->v, (a->n + 2) * sizeof *nv);

  if (nv == NULL)
    return -1;
  a->v = nv;
  if (asprintf(&nv[a->n], "%s=%s", key, val) == -1)
    return -1;
  nv[++a->n] = NULL;
  return 0;
}

/* An absolute path for a file option (nbdkit may be restarted elsewhere). */
static int
arg_add_path(struct sn_mount_args *a, const char *key, const char *val)
{
  char *abs = sn_mount_abs_dir(val);
  int r;

  if (abs == NULL)
    return -1;
  r = arg_add(a, key, abs);
  free(abs);
  return r;
}

/* ---- mount --------------------------------------------------------------- */

enum { OPT_OVERLAY = 256, OPT_FLAT, OPT_LAYER, OPT_LAZY_ONLY, OPT_RW, OPT_UPPER, OPT_INDEX,
       OPT_CACHE_DIR, OPT_CACHE_SIZE, OPT_BLOCK_SIZE, OPT_RECONNECT,
       OPT_PLUGIN, OPT_NBDKIT, OPT_RESTART, OPT_SUID, OPT_DEV };
static const struct option mount_opts[] = {
  { "overlay", no_argument, NULL, OPT_OVERLAY },
  { "flat", no_argument, NULL, OPT_FLAT },
  { "layer", required_argument, NULL, OPT_LAYER },
  { "lazy-only", no_argument, NULL, OPT_LAZY_ONLY },
  { "rw", no_argument, NULL, OPT_RW },
  { "upper", required_argument, NULL, OPT_UPPER },
  { "platform", required_argument, NULL, 'p' },
  { "index", required_argument, NULL, OPT_INDEX },
  { "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
  { "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
  { "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
  { "reconnect-timeout", required_argument, NULL, OPT_RECONNECT },
  { "plugin", required_argument, NULL, OPT_PLUGIN },
  { "nbdkit", required_argument, NULL, OPT_NBDKIT },
  { "restart-server", no_argument, NULL, OPT_RESTART },
  { "suid", no_argument, NULL, OPT_SUID },
  { "dev", no_argument, NULL, OPT_DEV },
  { "quiet", no_argument, NULL, 'q' },
  { "help", no_argument, NULL, 'h' },
  REGOPTS_LONG_OPTIONS,
  { NULL, 0, NULL, 0 },
};

/* The command line of mount: the options as given, then the request made
 * of them (m, whose strings point into this struct). */
struct mount_cli {
  struct regopts ro;
  struct sn_mount_req m;
  const char *plugin_opt, *nbdkit_opt, *upper;
  char *dir, *upper_abs, *plugin, *nbdkit, *image_abs;
  char bsbuf[32];
  bool restart;
  long reconnect;
};

/* The steps below return an exit status, or this to go on. */
#define MOUNT_GO_ON (-1)

/* Parse the options into mc (plugin arguments into mc->m.plugin_args)
 * and check the number of arguments. */
static int
mount_parse(struct mount_cli *mc, int argc, char **argv)
{
  struct sn_mount_req *m = &mc->m;
  struct sn_mount_args *pa = &m->plugin_args;
  int c, r;

  optind = 1;
  while ((c = getopt_long(argc, argv, "p:qu:a:vh", mount_opts, NULL)) != -1) {
    int64_t sz;

    switch (c) {
    case OPT_OVERLAY: m->flat = false; break;
    case OPT_FLAT: m->flat = true; break;
    case OPT_LAYER: m->layer = optarg; break;
    case OPT_LAZY_ONLY: m->lazy_only = true; break;
    case OPT_RW: m->rw = true; break;
    case OPT_SUID: m->suid = true; break;
    case OPT_DEV: m->dev = true; break;
    case OPT_UPPER: mc->upper = optarg; break;
    case OPT_RESTART: mc->restart = true; break;
    case OPT_PLUGIN: mc->plugin_opt = optarg; break;
    case OPT_NBDKIT: mc->nbdkit_opt = optarg; break;
    case 'q': m->quiet = true; break;
    case 'h': mount_usage(stdout); return 0;
    case OPT_RECONNECT: {
      char *end;

      errno = 0;
      mc->reconnect = strtol(optarg, &end, 10);
      if (errno || *end || end == optarg || mc->reconnect < 0 ||
          mc->reconnect > 86400)
        return cli_usage_error("mount", "invalid --reconnect-timeout '%s'",
                               optarg);
      break;
    }
    case 'p': if (arg_add(pa, "platform", optarg) == -1) goto oom; break;
    case OPT_INDEX: if (arg_add(pa, "index", optarg) == -1) goto oom; break;
    case OPT_CACHE_DIR:
      if (arg_add_path(pa, "cache-dir", optarg) == -1) goto oom;
      break;
    case OPT_CACHE_SIZE:
      if (cli_parse_size(optarg, &sz) == -1)
        return cli_usage_error("mount", "invalid --cache-size '%s'", optarg);
      if (arg_add(pa, "cache-size", optarg) == -1) goto oom;
      break;
    case OPT_BLOCK_SIZE:
      if (cli_parse_size(optarg, &sz) == -1 || sz < 4096 || sz > (1 << 20) ||
          (sz & (sz - 1)) != 0)
        return cli_usage_error("mount", "invalid --block-size '%s' (a power "
                               "of two from 4K to 1M)", optarg);
      snprintf(mc->bsbuf, sizeof mc->bsbuf, "%lld", (long long) sz);
      m->block_size = mc->bsbuf;
      if (arg_add(pa, "block-size", mc->bsbuf) == -1) goto oom;
      break;
    default:
      r = regopts_handle(&mc->ro, c, optarg, "mount");
      if (r == 0)
        return cli_usage_error("mount", NULL);
      if (r != 1)
        return r;
    }
  }
  if (mc->restart ? argc - optind != 1 : argc - optind != 2)
    return cli_usage_error("mount", mc->restart ? "expected one DIR argument"
                                                : "expected IMAGE and DIR");
  if (mc->upper && !m->rw)
    return cli_usage_error("mount", "--upper needs --rw");
  if (m->lazy_only && !m->layer)
    return cli_usage_error("mount", "--lazy-only goes with --layer");
  if (m->layer && (m->flat || m->rw))
    return cli_usage_error("mount", "--layer mounts one layer read-only: "
                           "not with --flat or --rw");
  if (m->layer && (strncmp(m->layer, "sha256:", 7) != 0 ||
                   strlen(m->layer) != 71 ||
                   strspn(m->layer + 7, "0123456789abcdef") != 64))
    return cli_usage_error("mount", "--layer takes a layer digest "
                           "(sha256: and 64 hex digits), not '%s'", m->layer);
  return MOUNT_GO_ON;

oom:
  return cli_fail("out of memory");
}

/* --restart-server DIR. */
static int
mount_restart(struct mount_cli *mc, struct ms *s, const char *arg)
{
  int r;

  if ((mc->dir = sn_mount_abs_dir(arg)) == NULL)
    return cli_fail("out of memory");
  if (ms_open(s) == -1)
    return cli_fail_lib(NULL);
  r = sn_mount_restart(s, mc->dir, mc->m.quiet);
  return r == -1 ? cli_fail_lib(NULL) : r;
}

/* IMAGE DIR and --upper: DIR a directory, both usable by overlayfs; the
 * registry options complete. */
static int
mount_check(struct mount_cli *mc, char **argv)
{
  struct sn_mount_req *m = &mc->m;
  struct stat st;
  int r;

  m->image = argv[optind];
  if (stat(argv[optind + 1], &st) == -1)
    return cli_fail("%s: %s", argv[optind + 1], strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return cli_fail("%s: not a directory", argv[optind + 1]);
  if ((mc->dir = sn_mount_abs_dir(argv[optind + 1])) == NULL)
    return cli_fail("out of memory");
  if (strchr(mc->dir, '\n'))
    return cli_fail("%s: a newline in the path is not supported", mc->dir);
  if (mc->upper) {
    if ((mc->upper_abs = sn_mount_abs_dir(mc->upper)) == NULL)
      return cli_fail("out of memory");
    if (stat(mc->upper_abs, &st) == -1 || !S_ISDIR(st.st_mode))
      return cli_fail("--upper %s: %s", mc->upper,
                      errno ? strerror(errno) : "not a directory");
    if (!sn_mount_overlay_safe(mc->upper_abs))
      return cli_fail("--upper %s: overlayfs cannot take a path with ',', "
                      "':' or '\\'", mc->upper_abs);
    m->upper = mc->upper_abs;
  }
  if ((r = regopts_finish(&mc->ro, "mount")) != 0)
    return r;
  return MOUNT_GO_ON;
}

/* The rest of the request: the image (an OCI layout's directory made
 * absolute) and the registry options as plugin arguments, the plugin and
 * nbdkit to run. */
static int
mount_build(struct mount_cli *mc)
{
  struct sn_mount_req *m = &mc->m;
  struct sn_mount_args *pa = &m->plugin_args;
  struct regopts *ro = &mc->ro;

  if (strncmp(m->image, "oci-layout:", 11) == 0 && m->image[11] != '/' &&
      m->image[11] != '\0') {
    char cwd[PATH_MAX];

    if (getcwd(cwd, sizeof cwd) == NULL ||
        asprintf(&mc->image_abs, "oci-layout:%s/%s", cwd, m->image + 11) == -1)
      goto oom;
    m->image = mc->image_abs;
  }
  if (arg_add(pa, "image", m->image) == -1)
    goto oom;
  if (ro->ro.username && arg_add(pa, "username", ro->ro.username) == -1)
    goto oom;
  if (ro->ro.auth_file &&
      arg_add_path(pa, "auth-file", ro->ro.auth_file) == -1)
    goto oom;
  if (ro->ro.cacert && arg_add_path(pa, "cacert", ro->ro.cacert) == -1)
    goto oom;
  if (ro->soci_v1 && arg_add(pa, "soci-v1", "true") == -1)
    goto oom;
  if (ro->ro.insecure && arg_add(pa, "tls-verify", "false") == -1)
    goto oom;
  for (size_t i = 0; i < ro->nplain; i++)
    if (arg_add(pa, "plain-http", ro->plain[i]) == -1)
      goto oom;
  for (size_t i = 0; i < ro->nmirrors; i++)
    if (arg_add(pa, "mirror", ro->mirrors[i]) == -1)
      goto oom;
  if (pa->v == NULL)
    goto oom;
  m->password = ro->ro.password;
  m->verbose = ro->ro.debug != NULL;
  if ((mc->plugin = sn_mount_find_plugin(mc->plugin_opt)) == NULL ||
      (mc->nbdkit = sn_mount_find_nbdkit(mc->nbdkit_opt)) == NULL)
    goto oom;
  m->plugin = mc->plugin;
  m->nbdkit = mc->nbdkit;
  m->dir = mc->dir;
  return MOUNT_GO_ON;

oom:
  return cli_fail("out of memory");
}

/* The NBD driver, the run directory, DIR not ours already nor a mount
 * point; then the mount. */
static int
mount_act(struct mount_cli *mc, struct ms *s)
{
  const char *dir = mc->dir;
  char id[17];
  int r;

  if (sn_nbd_driver_available() == -1)
    return cli_fail("mount: %s (see nbdkit-soci-plugin(1))", sn_error());
  if (ms_open(s) == -1)
    return cli_fail_lib(NULL);
  if (!sn_mount_overlay_safe(s->run))
    return cli_fail("the run directory %s has ',', ':' or '\\' in its path",
                    s->run);
  s->dead_conn_timeout = (unsigned) mc->reconnect;

  /* DIR: not ours already, not a mount point. */
  ms_mount_id(dir, id);
  {
    struct ms_journal j;

    r = ms_journal_read(s, id, &j);
    if (r == -1)
      return cli_fail_lib(NULL);
    if (r == 0) {
      bool done = ms_journal_get(&j, "done") != NULL;

      ms_journal_free(&j);
      return cli_fail(done ? "%s is already mounted by soci-nbd (soci-nbd "
                             "umount it first)"
                           : "%s has a half-made soci-nbd mount (run "
                             "soci-nbd umount on it first)", dir);
    }
  }
  if (ms_is_mountpoint(dir) == 1)
    return cli_fail("%s is busy: something is mounted on it", dir);

  if (sn_mount_make(s, id, &mc->m) == -1)
    return cli_fail_lib("mount %s", dir);
  return 0;
}

/* soci-nbd mount: parse, check, build the request, mount; the exit
 * status. */
int
cmd_mount(int argc, char **argv)
{
  struct mount_cli mc = { .reconnect = DEFAULT_RECONNECT_TIMEOUT };
  struct ms s = { .lockfd = -1 };
  int ret;

  regopts_init(&mc.ro);
  if ((ret = mount_parse(&mc, argc, argv)) != MOUNT_GO_ON)
    goto out;
  if (geteuid() != 0) {
    ret = cli_fail("mount: must be run as root (attaching NBD devices and "
                   "mounting need CAP_SYS_ADMIN)");
    goto out;
  }
  if (mc.restart) {
    ret = mount_restart(&mc, &s, argv[optind]);
    goto out;
  }
  if ((ret = mount_check(&mc, argv)) != MOUNT_GO_ON ||
      (ret = mount_build(&mc)) != MOUNT_GO_ON)
    goto out;
  ret = mount_act(&mc, &s);
out:
  ms_close(&s);
  ms_free_list(mc.m.plugin_args.v);
  regopts_clear(&mc.ro);
  free(mc.dir);
  free(mc.upper_abs);
  free(mc.plugin);
  free(mc.nbdkit);
  free(mc.image_abs);
  return ret;
}

/* ---- umount -------------------------------------------------------------- */

/* soci-nbd umount [--lazy] DIR: undo the journal of DIR's mount. */
int
cmd_umount(int argc, char **argv)
{
  static const struct option opts[] = {
    { "lazy", no_argument, NULL, 'l' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ms s = { .lockfd = -1 };
  bool lazy = false, quiet = false;
  char *dir = NULL, id[17];
  int c, ret = 1;

  optind = 1;
  while ((c = getopt_long(argc, argv, "lqh", opts, NULL)) != -1) {
    switch (c) {
    case 'l': lazy = true; break;
    case 'q': quiet = true; break;
    case 'h':
      printf("Usage: soci-nbd umount [--lazy] DIR\n"
             "\n"
             "Undo `soci-nbd mount` on DIR in reverse order: unmount DIR, the\n"
             "tmpfs of --rw, the squashfs mounts and devices no other mount\n"
             "shares, and stop servers no device uses any more.  Also undoes\n"
             "a half-made mount (after a crash).\n"
             "\n"
             "  -l, --lazy     detach DIR even when it is busy (MNT_DETACH)\n"
             "  -q, --quiet    print nothing on success\n");
      return 0;
    default: return cli_usage_error("umount", NULL);
    }
  }
  if (argc - optind != 1)
    return cli_usage_error("umount", "expected one DIR argument");
  if (geteuid() != 0)
    return cli_fail("umount: must be run as root");
  if ((dir = sn_mount_abs_dir(argv[optind])) == NULL)
    return cli_fail("out of memory");
  if (ms_open(&s) == -1) {
    ret = cli_fail_lib(NULL);
    goto out;
  }
  ms_mount_id(dir, id);
  {
    struct ms_journal j;
    int r = ms_journal_read(&s, id, &j);

    if (r == 1) {
      ret = cli_fail("%s is not mounted by soci-nbd", dir);
      goto out;
    }
    if (r == -1) {
      ret = cli_fail_lib(NULL);
      goto out;
    }
    ms_journal_free(&j);
  }
  if (sn_mount_unwind(&s, id, lazy) == -1) {
    ret = cli_fail_lib("umount %s", dir);
    goto out;
  }
  if (!quiet)
    printf("%s: unmounted\n", dir);
  ret = 0;
out:
  ms_close(&s);
  free(dir);
  return ret;
}

/* ---- mounts -------------------------------------------------------------- */

/* soci-nbd mounts: the table of sn_mount_list. */
int
cmd_mounts(int argc, char **argv)
{
  struct ms s = { .lockfd = -1, .no_lock = true };
  int ret = 1;

  if (argc > 1 && (strcmp(argv[1], "-h") == 0 ||
                   strcmp(argv[1], "--help") == 0)) {
    printf("Usage: soci-nbd mounts\n"
           "\n"
           "List the mounts made by soci-nbd mount, one per line, tab-separated:\n"
           "DIR IMAGE MODE DEVICES SERVERS STATE\n"
           "  MODE     overlay, flat or layer, \",rw\" when writable\n"
           "  DEVICES  /dev/nbdN of each layer, bottom first, comma-separated\n"
           "  SERVERS  nbdkit pids (\"-\" for one that is down)\n"
           "  STATE    ok, incomplete (a half-made mount: umount it),\n"
           "           server-down or supervisor-down\n");
    return 0;
  }
  if (argc > 1)
    return cli_usage_error("mounts", "no arguments expected");
  if (ms_open(&s) == -1) {
    ret = cli_fail_lib(NULL);
    goto out;
  }
  if (sn_mount_list(&s) == -1) {
    ret = cli_fail_lib(NULL);
    goto out;
  }
  if (fflush(stdout) == EOF || ferror(stdout)) {
    ret = cli_fail("stdout: %s", strerror(errno));
    goto out;
  }
  ret = 0;
out:
  ms_close(&s);
  return ret;
}
