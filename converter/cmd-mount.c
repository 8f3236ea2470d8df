/* soci-nbd: the "mount", "umount" and "mounts" commands — serve an image
 * with nbdkit's soci plugin, attach its exports to kernel NBD devices
 * (lib/nbddev, netlink, kept attached across server restarts by a
 * supervisor process), mount them squashfs and stack them with overlayfs.
 * Every step is journaled first (mount-state.h), so that `umount` undoes
 * a mount in reverse order, also a half-made one. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "mount/mount-state.h"
#include "nbd/nbddev.h"
#include "regopts.h"

#define PLUGIN_FILE "nbdkit-soci-plugin.so"
#define DEFAULT_RECONNECT_TIMEOUT 60

static volatile int interrupted;

static void
on_signal(int sig)
{
  (void) sig;
  interrupted = 1;
}

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

/* ---- unwinding --------------------------------------------------------- */

/* Undo the journal of mount ID in reverse order.  A step that fails is
 * reported and the others are still tried, except that a busy top mount
 * stops everything (the devices under it must stay).  0 when all of it is
 * gone (then the journal too). */
static int
unwind(struct ms *s, const char *id, bool lazy)
{
  struct ms_journal j;
  int r, failed = 0;

  r = ms_journal_read(s, id, &j);
  if (r != 0)
    return r == 1 ? 0 : -1;
  for (size_t i = j.n; i-- > 0;) {
    const char *k = j.key[i], *v = j.val[i];

    if (strcmp(k, "mount") == 0 || strcmp(k, "tmpfs") == 0) {
      if (umount2(v, lazy ? MNT_DETACH : 0) == -1 && errno != EINVAL &&
          errno != ENOENT) {
        int e = errno;

        if (strcmp(k, "mount") == 0) {
          if (e == EBUSY)
            sn_set_error("%s is busy (a process uses it; umount --lazy "
                         "detaches it anyway)", v);
          else
            sn_set_error("umount %s: %s", v, strerror(e));
          ms_journal_free(&j);
          return -1;
        }
        fprintf(stderr, "soci-nbd: umount %s: %s\n", v, strerror(e));
        failed++;
      }
      if (strcmp(k, "tmpfs") == 0)
        rmdir(v);
    }
    else if (strcmp(k, "device") == 0) {
      char *sid = NULL;

      if (ms_device_release(s, v, id, &sid) == -1) {
        fprintf(stderr, "soci-nbd: device %s: %s\n", v, sn_error());
        failed++;
      }
      else if (sid && ms_server_release(s, sid) == -1) {
        fprintf(stderr, "soci-nbd: server %s: %s\n", sid, sn_error());
        failed++;
      }
      free(sid);
    }
    else if (strcmp(k, "server") == 0) {
      if (ms_server_release(s, v) == -1) {
        fprintf(stderr, "soci-nbd: server %s: %s\n", v, sn_error());
        failed++;
      }
    }
  }
  ms_journal_free(&j);
  if (failed)
    return sn_set_error("%d step(s) could not be undone; the state is kept "
                        "(run soci-nbd umount again)", failed);
  {
    char *p = ms_path(s, "mounts/%s/journal", id);
    char *d = ms_path(s, "mounts/%s", id);

    if (p)
      unlink(p);
    if (d)
      rmdir(d);
    free(p);
    free(d);
  }
  return 0;
}

/* ---- helpers ----------------------------------------------------------- */

/* An absolute, canonical path for DIR (lexical when it cannot be
 * resolved, so that a vanished directory can still be unmounted). */
static char *
abs_dir(const char *dir)
{
  char *r = realpath(dir, NULL), cwd[PATH_MAX];

  if (r)
    return r;
  if (dir[0] == '/')
    return strdup(dir);
  if (getcwd(cwd, sizeof cwd) == NULL)
    return NULL;
  if (asprintf(&r, "%s/%s", cwd, dir) == -1)
    return NULL;
  return r;
}

/* The plugin to load: --plugin, $SOCI_NBD_PLUGIN, the build tree next to
 * this program, else "soci" (nbdkit's plugin directory). */
static char *
find_plugin(const char *opt)
{
  const char *env = getenv("SOCI_NBD_PLUGIN");
  char exe[PATH_MAX], *p;
  ssize_t n;

  if (opt && *opt) {
    char *r = realpath(opt, NULL);

    return r ? r : strdup(opt);
  }
  if (env && *env)
    return strdup(env);
  n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    if ((p = strrchr(exe, '/')) != NULL) {
      char *cand;

      *p = '\0';
      if (asprintf(&cand, "%s/plugin/.libs/" PLUGIN_FILE, exe) != -1) {
        if (access(cand, R_OK) == 0)
          return cand;
        free(cand);
      }
    }
  }
  return strdup("soci");
}

/* nbdkit's absolute path (PATH search) so that a restart does not depend
 * on the caller's PATH. */
static char *
find_nbdkit(const char *opt)
{
  const char *path = getenv("PATH");
  char *copy, *dir, *save, *cand;

  if (opt && *opt)
    return strchr(opt, '/') ? abs_dir(opt) : strdup(opt);
  if (path == NULL || (copy = strdup(path)) == NULL)
    return strdup("nbdkit");
  for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    if (asprintf(&cand, "%s/nbdkit", *dir ? dir : ".") == -1)
      break;
    if (access(cand, X_OK) == 0) {
      char *a = abs_dir(cand);

      free(cand);
      free(copy);
      return a;
    }
    free(cand);
  }
  free(copy);
  return strdup("nbdkit");
}

/* Characters that overlayfs's option syntax cannot carry in a path. */
static bool
overlay_safe(const char *p)
{
  return strpbrk(p, ",:\\\n") == NULL;
}

struct args {
  char **v;
  size_t n;
};

static int
arg_add(struct args *a, const char *key, const char *val)
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
arg_add_path(struct args *a, const char *key, const char *val)
{
  char *abs = abs_dir(val);
  int r;

  if (abs == NULL)
    return -1;
  r = arg_add(a, key, abs);
  free(abs);
  return r;
}

/* Test hook: SOCI_NBD_TEST_ABORT=STEP ends the mount right after STEP
 * (devices, supervisor, upper, mount) as a crash would. */
static void
test_abort(const char *step)
{
  const char *a = getenv("SOCI_NBD_TEST_ABORT");

  if (a && strcmp(a, step) == 0) {
    fprintf(stderr, "soci-nbd: SOCI_NBD_TEST_ABORT: stopping after '%s'\n",
            step);
    _exit(70);
  }
}

struct mount_req {
  const char *image, *dir;       /* dir: absolute */
  bool flat, rw;
  const char *upper;             /* absolute or NULL */
  const char *block_size;
  struct args plugin_args;
  const char *nbdkit, *plugin, *password;
  bool verbose, quiet;
  bool suid, dev;                /* --suid, --dev: honour them in DIR */
};

/* Mount flags of what DIR shows: nosuid,nodev unless opted out.  The
 * devices' own squashfs mounts (in the state directory) are always
 * nosuid,nodev. */
static unsigned long
dir_flags(const struct mount_req *m)
{
  return (m->suid ? 0 : MS_NOSUID) | (m->dev ? 0 : MS_NODEV);
}

/* The mount proper; the journal of id records every step. */
static int
do_mount(struct ms *s, const char *id, const struct mount_req *m)
{
  char *sid = NULL, **digests = NULL, **ztocs = NULL, **keys = NULL;
  char *opts = NULL;
  char *rwdir = NULL, *devlist = NULL;
  bool *exported = NULL;
  size_t nlayers = 0, nkeys = 0;
  int r = -1;

  if (ms_journal_add(s, id, "dir", m->dir) == -1 ||
      ms_journal_add(s, id, "image", m->image) == -1 ||
      ms_journal_add(s, id, "mode", m->flat ? (m->rw ? "flat,rw" : "flat")
                                            : (m->rw ? "overlay,rw"
                                                     : "overlay")) == -1)
    return -1;

  /* 1. the server */
  if (ms_server_create(s, m->nbdkit, m->verbose, m->plugin,
                       m->plugin_args.v, m->password, &sid) == -1 ||
      ms_journal_add(s, id, "server", sid) == -1)
    goto out;
  if (ms_server_start(s, sid, &interrupted) == -1) {
    sn_prefix_error("nbdkit: ");
    goto out;
  }
  if (ms_server_layers(s, sid, &digests, &ztocs, &exported, &nlayers) == -1)
    goto out;
  if (nlayers == 0) {
    sn_set_error("%s has no layers", m->image);
    goto out;
  }

  /* 2. the devices, bottom first */
  for (size_t i = 0; !m->flat && i < nlayers; i++)
    if (!exported[i]) {
      sn_set_error("layer %zu (%s) cannot be served alone (it hard-links "
                   "a file of a lower layer); use --flat", i, digests[i]);
      goto out;
    }
  nkeys = m->flat ? 1 : nlayers;
  keys = calloc(nkeys + 1, sizeof *keys);
  if (keys == NULL) {
    sn_oom();
    goto out;
  }
  for (size_t i = 0; i < nkeys; i++) {
    const char *export_name = m->flat ? "flat" : digests[i];
    int dev, c;
    bool shared;
    char *nd;

    if (m->flat)
      r = asprintf(&keys[i], "flat-%s", id);
    else                        /* what the device serves: the layer as
                                 * its ztoc describes it, at a block size */
      r = asprintf(&keys[i], "%.32s-%.16s%s%s", digests[i] + 7,
                   strncmp(ztocs[i], "sha256:", 7) == 0 ? ztocs[i] + 7
                                                       : ztocs[i],
                   m->block_size ? "-bs" : "",
                   m->block_size ? m->block_size : "");
    if (r == -1) {
      keys[i] = NULL;
      sn_oom();
      goto out;
    }
    r = -1;
    c = ms_device_check(s, keys[i], export_name);
    if (c == -1)
      goto out;
    if (c == 2) {               /* a broken shared one: use our own */
      char *k;

      if (asprintf(&k, "%s-%s", keys[i], id) == -1) {
        sn_oom();
        goto out;
      }
      free(keys[i]);
      keys[i] = k;
    }
    if (ms_journal_add(s, id, "device", keys[i]) == -1 ||
        ms_device_acquire(s, keys[i], export_name, sid, id, &dev,
                          &shared) == -1)
      goto out;
    if (asprintf(&nd, "%s%snbd%d%s", devlist ? devlist : "",
                 devlist ? " " : "", dev, shared ? "(shared)" : "") == -1) {
      sn_oom();
      goto out;
    }
    free(devlist);
    devlist = nd;
  }
  test_abort("devices");

  /* 3. the supervisor of our server (or the server stops when every
   * device was shared from other mounts) */
  if (ms_server_release(s, sid) == -1)
    goto out;
  test_abort("supervisor");

  /* 4. the writable layer */
  if (m->rw) {
    const char *base = m->upper;

    if (base == NULL) {
      if ((rwdir = ms_path(s, "mounts/%s/rw", id)) == NULL)
        goto out;
      if (mkdir(rwdir, 0700) == -1 && errno != EEXIST) {
        sn_set_error("%s: %s", rwdir, strerror(errno));
        goto out;
      }
      if (ms_journal_add(s, id, "tmpfs", rwdir) == -1)
        goto out;
      if (mount("tmpfs", rwdir, "tmpfs", dir_flags(m), "mode=0755") == -1) {
        sn_set_error("mount -t tmpfs %s: %s", rwdir, strerror(errno));
        goto out;
      }
      base = rwdir;
    }
    else if (ms_journal_add(s, id, "upper", base) == -1)
      goto out;
    for (int i = 0; i < 2; i++) {
      char *p;

      if (asprintf(&p, "%s/%s", base, i == 0 ? "upper" : "work") == -1) {
        sn_oom();
        goto out;
      }
      if (mkdir(p, 0755) == -1 && errno != EEXIST) {
        sn_set_error("%s: %s", p, strerror(errno));
        free(p);
        goto out;
      }
      free(p);
    }
  }
  test_abort("upper");

  /* 5. DIR: overlayfs over the devices' mounts (top layer first), or a
   * read-only bind mount of the only one */
  if (ms_journal_add(s, id, "mount", m->dir) == -1)
    goto out;
  if (nkeys == 1 && !m->rw) {
    char *src = ms_path(s, "devices/%s/mnt", keys[0]);

    if (src == NULL)
      goto out;
    if (mount(src, m->dir, NULL, MS_BIND, NULL) == -1 ||
        mount(NULL, m->dir, NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | dir_flags(m), NULL) == -1) {
      sn_set_error("bind mount %s on %s: %s", src, m->dir, strerror(errno));
      free(src);
      goto out;
    }
    free(src);
  }
  else {
    size_t len = 0;

    /* Relative lower paths (from devices/) keep the option short. */
    for (size_t i = nkeys; i-- > 0;) {
      char *no;

      if (asprintf(&no, "%s%s%s/mnt", opts ? opts : "lowerdir=",
                   i + 1 < nkeys ? ":" : "", keys[i]) == -1) {
        sn_oom();
        goto out;
      }
      free(opts);
      opts = no;
    }
    if (m->rw) {
      const char *base = m->upper ? m->upper : rwdir;
      char *no;

      if (asprintf(&no, "%s,upperdir=%s/upper,workdir=%s/work", opts, base,
                   base) == -1) {
        sn_oom();
        goto out;
      }
      free(opts);
      opts = no;
    }
    len = strlen(opts);
    if (len >= 4096) {
      sn_set_error("%zu layers make an overlayfs option longer than a page; "
                   "use --flat", nkeys);
      goto out;
    }
    {
      char *devdir = ms_path(s, "devices"), cwd[PATH_MAX];
      int e = 0;

      if (devdir == NULL)
        goto out;
      if (getcwd(cwd, sizeof cwd) == NULL)
        strcpy(cwd, "/");
      if (chdir(devdir) == -1 ||
          mount("overlay", m->dir, "overlay",
                (m->rw ? 0 : MS_RDONLY) | dir_flags(m), opts) == -1)
        e = errno;
      if (chdir(cwd) == -1)
        e = e ? e : errno;
      free(devdir);
      if (e) {
        sn_set_error("mount -t overlay on %s: %s", m->dir, strerror(e));
        goto out;
      }
    }
  }
  test_abort("mount");
  if (ms_journal_add(s, id, "done", "1") == -1)
    goto out;
  if (!m->quiet)
    printf("%s: %s mounted (%s%s, %zu layer%s on %s)\n", m->dir, m->image,
           m->flat ? "flat" : "overlay", m->rw ? ", rw" : "", nlayers,
           nlayers == 1 ? "" : "s", devlist);
  r = 0;
out:
  free(sid);
  ms_free_list(digests);
  ms_free_list(ztocs);
  free(exported);
  ms_free_list(keys);
  free(opts);
  free(rwdir);
  free(devlist);
  return r;
}

/* The servers behind a mount's devices (and its own), deduplicated. */
static char **
mount_servers(struct ms *s, const struct ms_journal *j)
{
  char **v = calloc(1, sizeof *v);
  size_t n = 0;

  if (v == NULL)
    return NULL;
  for (size_t i = 0; i < j->n; i++) {
    char *sid = NULL, **nv;
    bool dup = false;

    if (strcmp(j->key[i], "device") == 0)
      sid = ms_device_server(s, j->val[i]);
    else if (strcmp(j->key[i], "server") == 0)
      sid = strdup(j->val[i]);
    if (sid == NULL)
      continue;
    for (size_t k = 0; k < n; k++)
      dup |= strcmp(v[k], sid) == 0;
    if (dup || (nv = realloc(v, (n + 2) * sizeof *nv)) == NULL) {
      free(sid);
      continue;
    }
    v = nv;
    v[n++] = sid;
    v[n] = NULL;
  }
  return v;
}

static int
restart_server(struct ms *s, const char *dir, bool quiet)
{
  char id[17], **sids;
  struct ms_journal j;
  int r, st = 0, nrestarted = 0;

  ms_mount_id(dir, id);
  r = ms_journal_read(s, id, &j);
  if (r == 1)
    return cli_fail("%s is not mounted by soci-nbd", dir);
  if (r == -1)
    return cli_fail_lib(NULL);
  sids = mount_servers(s, &j);
  ms_journal_free(&j);
  if (sids == NULL)
    return cli_fail("out of memory");
  for (char **p = sids; *p; p++) {
    char *argv = ms_path(s, "servers/%s/argv", *p);
    bool exists = argv && access(argv, F_OK) == 0;

    free(argv);
    if (!exists)
      continue;                 /* stopped: served no device */
    if (ms_server_restart(s, *p) == -1) {
      cli_fail_lib("restarting nbdkit %s", *p);
      st = 1;
      continue;
    }
    nrestarted++;
    if (!quiet)
      printf("%s: nbdkit restarted (pid %ld)\n", dir,
             (long) ms_server_pid(s, *p));
  }
  ms_free_list(sids);
  if (nrestarted == 0 && st == 0)
    return cli_fail("%s: no server to restart", dir);
  return st;
}

int
cmd_mount(int argc, char **argv)
{
  enum { OPT_OVERLAY = 256, OPT_FLAT, OPT_RW, OPT_UPPER, OPT_INDEX,
         OPT_CACHE_DIR, OPT_CACHE_SIZE, OPT_BLOCK_SIZE, OPT_RECONNECT,
         OPT_PLUGIN, OPT_NBDKIT, OPT_RESTART, OPT_SUID, OPT_DEV };
  static const struct option opts[] = {
    { "overlay", no_argument, NULL, OPT_OVERLAY },
    { "flat", no_argument, NULL, OPT_FLAT },
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
  struct regopts ro;
  struct mount_req m = { 0 };
  struct args *pa = &m.plugin_args;
  const char *plugin_opt = NULL, *nbdkit_opt = NULL, *upper = NULL;
  char *dir = NULL, *upper_abs = NULL, *plugin = NULL, *nbdkit = NULL;
  char *image_abs = NULL, bsbuf[32], id[17];
  bool restart = false;
  long reconnect = DEFAULT_RECONNECT_TIMEOUT;
  struct ms s = { .lockfd = -1 };
  struct stat st;
  int c, r, ret = 1;

  regopts_init(&ro);
  optind = 1;
  while ((c = getopt_long(argc, argv, "p:qu:a:vh", opts, NULL)) != -1) {
    int64_t sz;

    switch (c) {
    case OPT_OVERLAY: m.flat = false; break;
    case OPT_FLAT: m.flat = true; break;
    case OPT_RW: m.rw = true; break;
    case OPT_SUID: m.suid = true; break;
    case OPT_DEV: m.dev = true; break;
    case OPT_UPPER: upper = optarg; break;
    case OPT_RESTART: restart = true; break;
    case OPT_PLUGIN: plugin_opt = optarg; break;
    case OPT_NBDKIT: nbdkit_opt = optarg; break;
    case 'q': m.quiet = true; break;
    case 'h': mount_usage(stdout); ret = 0; goto out;
    case OPT_RECONNECT: {
      char *end;

      errno = 0;
      reconnect = strtol(optarg, &end, 10);
      if (errno || *end || end == optarg || reconnect < 0 ||
          reconnect > 86400) {
        ret = cli_usage_error("mount", "invalid --reconnect-timeout '%s'",
                              optarg);
        goto out;
      }
      break;
    }
    case 'p': if (arg_add(pa, "platform", optarg) == -1) goto oom; break;
    case OPT_INDEX: if (arg_add(pa, "index", optarg) == -1) goto oom; break;
    case OPT_CACHE_DIR:
      if (arg_add_path(pa, "cache-dir", optarg) == -1) goto oom;
      break;
    case OPT_CACHE_SIZE:
      if (cli_parse_size(optarg, &sz) == -1) {
        ret = cli_usage_error("mount", "invalid --cache-size '%s'", optarg);
        goto out;
      }
      if (arg_add(pa, "cache-size", optarg) == -1) goto oom;
      break;
    case OPT_BLOCK_SIZE:
      if (cli_parse_size(optarg, &sz) == -1 || sz < 4096 || sz > (1 << 20) ||
          (sz & (sz - 1)) != 0) {
        ret = cli_usage_error("mount", "invalid --block-size '%s' (a power "
                              "of two from 4K to 1M)", optarg);
        goto out;
      }
      snprintf(bsbuf, sizeof bsbuf, "%lld", (long long) sz);
      m.block_size = bsbuf;
      if (arg_add(pa, "block-size", bsbuf) == -1) goto oom;
      break;
    default:
      r = regopts_handle(&ro, c, optarg, "mount");
      if (r == 0) {
        ret = cli_usage_error("mount", NULL);
        goto out;
      }
      if (r != 1) {
        ret = r;
        goto out;
      }
    }
  }
  if (restart ? argc - optind != 1 : argc - optind != 2) {
    ret = cli_usage_error("mount", restart ? "expected one DIR argument"
                                           : "expected IMAGE and DIR");
    goto out;
  }
  if (upper && !m.rw) {
    ret = cli_usage_error("mount", "--upper needs --rw");
    goto out;
  }
  if (geteuid() != 0) {
    ret = cli_fail("mount: must be run as root (attaching NBD devices and "
                   "mounting need CAP_SYS_ADMIN)");
    goto out;
  }
  if (restart) {
    if ((dir = abs_dir(argv[optind])) == NULL)
      goto oom;
    if (ms_open(&s) == -1) {
      ret = cli_fail_lib(NULL);
      goto out;
    }
    ret = restart_server(&s, dir, m.quiet);
    goto out;
  }

  /* The arguments. */
  m.image = argv[optind];
  if (stat(argv[optind + 1], &st) == -1) {
    ret = cli_fail("%s: %s", argv[optind + 1], strerror(errno));
    goto out;
  }
  if (!S_ISDIR(st.st_mode)) {
    ret = cli_fail("%s: not a directory", argv[optind + 1]);
    goto out;
  }
  if ((dir = abs_dir(argv[optind + 1])) == NULL)
    goto oom;
  if (strchr(dir, '\n')) {
    ret = cli_fail("%s: a newline in the path is not supported", dir);
    goto out;
  }
  if (upper) {
    if ((upper_abs = abs_dir(upper)) == NULL)
      goto oom;
    if (stat(upper_abs, &st) == -1 || !S_ISDIR(st.st_mode)) {
      ret = cli_fail("--upper %s: %s", upper,
                     errno ? strerror(errno) : "not a directory");
      goto out;
    }
    if (!overlay_safe(upper_abs)) {
      ret = cli_fail("--upper %s: overlayfs cannot take a path with ',', "
                     "':' or '\\'", upper_abs);
      goto out;
    }
    m.upper = upper_abs;
  }
  if ((r = regopts_finish(&ro, "mount")) != 0) {
    ret = r;
    goto out;
  }

  /* The image: an OCI layout's directory made absolute. */
  if (strncmp(m.image, "oci-layout:", 11) == 0 && m.image[11] != '/' &&
      m.image[11] != '\0') {
    char cwd[PATH_MAX];

    if (getcwd(cwd, sizeof cwd) == NULL ||
        asprintf(&image_abs, "oci-layout:%s/%s", cwd, m.image + 11) == -1)
      goto oom;
    m.image = image_abs;
  }
  if (arg_add(pa, "image", m.image) == -1)
    goto oom;
  if (ro.ro.username && arg_add(pa, "username", ro.ro.username) == -1)
    goto oom;
  if (ro.ro.auth_file && arg_add_path(pa, "auth-file", ro.ro.auth_file) == -1)
    goto oom;
  if (ro.ro.cacert && arg_add_path(pa, "cacert", ro.ro.cacert) == -1)
    goto oom;
  if (ro.soci_v1 && arg_add(pa, "soci-v1", "true") == -1)
    goto oom;
  if (ro.ro.insecure && arg_add(pa, "tls-verify", "false") == -1)
    goto oom;
  for (size_t i = 0; i < ro.nplain; i++)
    if (arg_add(pa, "plain-http", ro.plain[i]) == -1)
      goto oom;
  for (size_t i = 0; i < ro.nmirrors; i++)
    if (arg_add(pa, "mirror", ro.mirrors[i]) == -1)
      goto oom;
  if (pa->v == NULL)
    goto oom;
  m.password = ro.ro.password;
  m.verbose = ro.ro.debug != NULL;
  if ((plugin = find_plugin(plugin_opt)) == NULL ||
      (nbdkit = find_nbdkit(nbdkit_opt)) == NULL)
    goto oom;
  m.plugin = plugin;
  m.nbdkit = nbdkit;
  m.dir = dir;

  if (sn_nbd_driver_available() == -1) {
    ret = cli_fail("mount: %s (see nbdkit-soci-plugin(1))", sn_error());
    goto out;
  }
  if (ms_open(&s) == -1) {
    ret = cli_fail_lib(NULL);
    goto out;
  }
  if (!overlay_safe(s.run)) {
    ret = cli_fail("the run directory %s has ',', ':' or '\\' in its path",
                   s.run);
    goto out;
  }
  s.dead_conn_timeout = (unsigned) reconnect;

  /* DIR: not ours already, not a mount point. */
  ms_mount_id(dir, id);
  {
    struct ms_journal j;

    r = ms_journal_read(&s, id, &j);
    if (r == -1) {
      ret = cli_fail_lib(NULL);
      goto out;
    }
    if (r == 0) {
      bool done = ms_journal_get(&j, "done") != NULL;

      ms_journal_free(&j);
      ret = cli_fail(done ? "%s is already mounted by soci-nbd (soci-nbd "
                            "umount it first)"
                          : "%s has a half-made soci-nbd mount (run "
                            "soci-nbd umount on it first)", dir);
      goto out;
    }
  }
  if (ms_is_mountpoint(dir) == 1) {
    ret = cli_fail("%s is busy: something is mounted on it", dir);
    goto out;
  }

  {
    struct sigaction sa = { .sa_handler = on_signal };

    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
  }
  if (do_mount(&s, id, &m) == -1) {
    char *msg = strdup(sn_error());

    if (unwind(&s, id, false) == -1)
      fprintf(stderr, "soci-nbd: undoing the mount of %s: %s\n", dir,
              sn_error());
    ret = cli_fail("mount %s: %s", dir, msg ? msg : "out of memory");
    free(msg);
    goto out;
  }
  ret = 0;
  goto out;

oom:
  ret = cli_fail("out of memory");
out:
  ms_close(&s);
  ms_free_list(pa->v);
  regopts_clear(&ro);
  free(dir);
  free(upper_abs);
  free(plugin);
  free(nbdkit);
  free(image_abs);
  return ret;
}

/* ---- umount -------------------------------------------------------------- */

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
  if ((dir = abs_dir(argv[optind])) == NULL)
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
  if (unwind(&s, id, lazy) == -1) {
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

int
cmd_mounts(int argc, char **argv)
{
  struct ms s = { .lockfd = -1, .no_lock = true };
  char **ids = NULL;
  int ret = 1;

  if (argc > 1 && (strcmp(argv[1], "-h") == 0 ||
                   strcmp(argv[1], "--help") == 0)) {
    printf("Usage: soci-nbd mounts\n"
           "\n"
           "List the mounts made by soci-nbd mount, one per line, tab-separated:\n"
           "DIR IMAGE MODE DEVICES SERVERS STATE\n"
           "  MODE     overlay or flat, \",rw\" when writable\n"
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
  if ((ids = ms_mount_ids(&s)) == NULL) {
    ret = cli_fail_lib(NULL);
    goto out;
  }
  for (char **id = ids; *id; id++) {
    struct ms_journal j;
    const char *state = "ok";
    char **sids;
    bool first = true;

    if (ms_journal_read(&s, *id, &j) != 0)
      continue;
    if (ms_journal_get(&j, "done") == NULL)
      state = "incomplete";
    printf("%s\t%s\t%s\t",
           ms_journal_get(&j, "dir") ? ms_journal_get(&j, "dir") : "?",
           ms_journal_get(&j, "image") ? ms_journal_get(&j, "image") : "?",
           ms_journal_get(&j, "mode") ? ms_journal_get(&j, "mode") : "?");
    for (size_t i = 0; i < j.n; i++) {
      int dev;

      if (strcmp(j.key[i], "device") != 0)
        continue;
      dev = ms_device_index(&s, j.val[i]);
      if (dev >= 0)
        printf("%s/dev/nbd%d", first ? "" : ",", dev);
      else
        printf("%s-", first ? "" : ",");
      first = false;
    }
    if (first)
      printf("-");
    putchar('\t');
    first = true;
    sids = mount_servers(&s, &j);
    for (char **p = sids; p && *p; p++) {
      char *argvp = ms_path(&s, "servers/%s/argv", *p);
      bool exists = argvp && access(argvp, F_OK) == 0;
      pid_t pid;

      free(argvp);
      if (!exists)
        continue;
      pid = ms_server_pid(&s, *p);
      if (pid)
        printf("%s%ld", first ? "" : ",", (long) pid);
      else
        printf("%s-", first ? "" : ",");
      if (strcmp(state, "ok") == 0 && pid == 0)
        state = "server-down";
      else if (strcmp(state, "ok") == 0 && ms_supervisor_pid(&s, *p) == 0)
        state = "supervisor-down";
      first = false;
    }
    if (first)
      printf("-");
    printf("\t%s\n", state);
    ms_free_list(sids);
    ms_journal_free(&j);
  }
  if (fflush(stdout) == EOF || ferror(stdout)) {
    ret = cli_fail("stdout: %s", strerror(errno));
    goto out;
  }
  ret = 0;
out:
  ms_free_list(ids);
  ms_close(&s);
  return ret;
}
