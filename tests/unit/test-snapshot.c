/* soci-nbd tests: the snapshot store (lib/snapshot/snapshots.h) —
 * containerd's rules for active, view and committed snapshots, the mounts
 * of each (bind or overlayfs over the parent chain), labels and their
 * update masks, usage, the errors containerd maps to gRPC codes, and the
 * metadata file: what a restarted daemon finds, and a corrupt one refused;
 * remote snapshots with stand-in mount commands, the store's other
 * operations going on while a slow one mounts, a cleanup undoing a layer
 * mount left by a stopped daemon, and layers mounted again after a
 * reboot.
 */
#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snapshots.h"
#include "util/err.h"
#include "tap.h"

static char root[512];

/* "TYPE SOURCE OPT,OPT..." of mount i, with root shown as R. */
static const char *
show(const struct sn_snap_mounts *m, size_t i)
{
  static char buf[4096];
  size_t rl = strlen(root), k;
  char *p = buf;
  const char *src;

  if (i >= m->n)
    return "(none)";
  p += sprintf(p, "%s ", m->m[i].type);
  src = m->m[i].source;
  p += sprintf(p, "%s", strncmp(src, root, rl) == 0 ? "R" : "");
  p += sprintf(p, "%s", strncmp(src, root, rl) == 0 ? src + rl : src);
  for (k = 0; k < m->m[i].noptions; k++) {
    const char *o = m->m[i].options[k];
    char tmp[2048];
    char *q = tmp;

    /* Replace every occurrence of root in the option by R. */
    while (*o) {
      if (strncmp(o, root, rl) == 0) {
        *q++ = 'R';
        o += rl;
      }
      else
        *q++ = *o++;
    }
    *q = 0;
    p += sprintf(p, "%s%s", k ? "," : " ", tmp);
  }
  return buf;
}

static bool
is(const struct sn_snap_mounts *m, const char *want)
{
  bool r = m->n == 1 && strcmp(show(m, 0), want) == 0;

  if (!r)
    diag("mounts: %s (want %s)", show(m, 0), want);
  return r;
}

static const char *
label(const struct sn_snap_info *i, const char *k)
{
  size_t j;

  for (j = 0; j < i->nlabels; j++)
    if (strcmp(i->labels[j].key, k) == 0)
      return i->labels[j].value;
  return NULL;
}

static int
count_one(void *opaque, const struct sn_snap_info *i)
{
  char *names = opaque;

  strcat(names, i->name);
  strcat(names, i->kind == SN_SNAP_KIND_COMMITTED ? "=c " :
         i->kind == SN_SNAP_KIND_ACTIVE ? "=a " : "=v ");
  return 0;
}

static void
write_file(const char *dir, const char *name, size_t size)
{
  char path[1024];
  FILE *f;

  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  while (f && size--)
    fputc('x', f);
  if (f)
    fclose(f);
}

/* ---- remote snapshots, with stand-in mount commands ---------------------- */

static char logged[2048];

static void
log_it(const char *msg)
{
  snprintf(logged, sizeof logged, "%s", msg);
}

static bool
file_is(const char *path, const char *want)
{
  char buf[1024] = "";
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;

  if (f)
    fclose(f);
  buf[n] = 0;
  if (strcmp(buf, want) != 0)
    diag("%s: \"%s\", want \"%s\"", path, buf, want);
  return strcmp(buf, want) == 0;
}

/* Digests as containerd gives them (the store checks the reference). */
#define H16(c) c c c c c c c c c c c c c c c c
#define DIGEST(c) "sha256:" H16(c) H16(c) H16(c) H16(c)

static void
test_remote(void)
{
  char rroot[600], path[1024], mscript[1024], uscript[1024];
  /* The store appends --layer DIGEST IMAGE DIR (and DIR): $1..$4. */
  char *mount_ok[] = { "/bin/sh", "-c", mscript, "sh", NULL };
  char *mount_bad[] = { "/bin/sh", "-c",
                        "echo starting >&2; echo 'no such layer' >&2; exit 1",
                        "sh", NULL };
  char *umount[] = { "/bin/sh", "-c", uscript, "sh", NULL };
  struct sn_snap_remote rem = { mount_ok, umount, log_it, NULL, NULL, NULL };
  struct sn_snap_label l[4] = {
    { SN_SNAP_LABEL_TARGET, "c1" }, { SN_SNAP_LABEL_IMAGE, "reg/img:v1" },
    { SN_SNAP_LABEL_LAYER, DIGEST("a") },
    { SN_SNAP_LABEL_MANIFEST, DIGEST("e") },
  };
  struct sn_snapshots *s;
  struct sn_snap_mounts m;
  struct sn_snap_info info;
  int r;

  snprintf(rroot, sizeof rroot, "%s/remote", root);
  snprintf(mscript, sizeof mscript, "echo \"$2 $3\" > \"$4/layer-was\"");
  snprintf(uscript, sizeof uscript, "echo \"$1\" >> %s/umounts; "
           "test ! -e \"$1/fail\"", rroot);
  s = sn_snapshots_open(rroot);
  if (s == NULL) {
    ok(0, "open %s: %s", rroot, sn_error());
    return;
  }
  sn_snapshots_set_remote(s, &rem);
  r = sn_snapshots_prepare(s, "extract-1 c1", "", l, 4, &m);
  OK(r == SN_SNAP_EXISTS && strstr(sn_error(), "served lazily"),
     "remote: prepare with the target, image and layer labels: the layer "
     "mounted, already exists: %s", WHY);
  snprintf(path, sizeof path, "%s/snapshots/1/fs/layer-was", rroot);
  ok(file_is(path, DIGEST("a") " reg/img:v1@" DIGEST("e") "\n"),
     "... the mount command got --layer DIGEST, the image pinned to the "
     "manifest digest, the snapshot's directory");
  r = sn_snapshots_stat(s, "c1", &info);
  OK(r == 0 && info.kind == SN_SNAP_KIND_COMMITTED &&
     strcmp(label(&info, SN_SNAP_LABEL_REMOTE), DIGEST("a")) == 0 &&
     strcmp(label(&info, SN_SNAP_LABEL_IMAGE), "reg/img:v1") == 0,
     "... committed under the target's name, with the labels and the "
     "layer (%s)", ERR);
  sn_snap_info_clear(&info);
  OK(sn_snapshots_stat(s, "extract-1 c1", &info) == SN_SNAP_NOT_FOUND,
     "... and no active snapshot under the key");
  l[0].value = "c2";
  l[2].value = DIGEST("b");
  OK(sn_snapshots_prepare(s, "extract-2 c2", "c1", l, 4, &m) ==
     SN_SNAP_EXISTS, "the next layer on it: already exists too: %s", WHY);
  l[0].value = "c1";
  OK(sn_snapshots_prepare(s, "extract-3 c1", "", l, 4, &m) ==
     SN_SNAP_EXISTS && strstr(sn_error(), "target snapshot c1: already "
                                          "exists"),
     "a target that exists: already exists, nothing mounted: %s", WHY);
  r = sn_snapshots_view(s, "v", "c2", NULL, 0, &m);
  OK(r == 0 && strstr(show(&m, 0), "lowerdir=") &&
     strstr(show(&m, 0), "/snapshots/2/fs:") &&
     strstr(show(&m, 0), "/snapshots/1/fs"),
     "a view of them: overlayfs of the two layer mounts (%s)", show(&m, 0));
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_usage(s, "c2", &(int64_t) { 0 }, &(int64_t) { 0 }) == 0,
     "usage of a remote snapshot (%s)", ERR);

  rem.mount_argv = mount_bad;
  sn_snapshots_set_remote(s, &rem);
  l[0].value = "c3";
  r = sn_snapshots_prepare(s, "extract-4 c3", "c2", l, 4, &m);
  OK(r == 0 && m.n == 1 && strcmp(m.m[0].type, "overlay") == 0 &&
     strstr(logged, "not served lazily") && strstr(logged, "no such layer"),
     "a layer that cannot be mounted: an ordinary prepare, and why in "
     "the log (%s)", logged);
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_remove(s, "extract-4 c3") == 0 &&
     sn_snapshots_remove(s, "v") == 0, "remove them (%s)", ERR);

  snprintf(path, sizeof path, "%s/snapshots/2/fs/fail", rroot);
  fclose(fopen(path, "w"));
  OK(sn_snapshots_remove(s, "c2") == SN_SNAP_INTERNAL,
     "a layer that cannot be unmounted: the remove fails (%s)",
     sn_error());
  OK(sn_snapshots_stat(s, "c2", &info) == 0, "... and the snapshot stays");
  sn_snap_info_clear(&info);
  remove(path);
  OK(sn_snapshots_remove(s, "c2") == 0 && sn_snapshots_remove(s, "c1") == 0,
     "remove the remote snapshots (%s)", ERR);
  snprintf(path, sizeof path, "%s/umounts", rroot);
  {
    char want[2048];

    snprintf(want, sizeof want, "%s/snapshots/2/fs\n%s/snapshots/2/fs\n"
             "%s/snapshots/1/fs\n", rroot, rroot, rroot);
    ok(file_is(path, want), "... each unmounted first (the failed try "
       "too)");
  }
  sn_snapshots_close(s);
}

/* A Prepare on a thread of its own (the store's operations are called
 * concurrently by containerd). */
struct prep {
  struct sn_snapshots *s;
  const char *key;
  struct sn_snap_label *l;
  pthread_t t;
  int r;
  char msg[512];
  volatile int done;
};

static void *
prep_thread(void *opaque)
{
  struct prep *p = opaque;
  struct sn_snap_mounts m;

  p->r = sn_snapshots_prepare(p->s, p->key, "", p->l, 4, &m);
  snprintf(p->msg, sizeof p->msg, "%s", sn_error());
  if (p->r == 0)
    sn_snap_mounts_clear(&m);
  __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

static bool
exists(const char *path)
{
  return access(path, F_OK) == 0;
}

/* Wait up to 10 s for path to exist. */
static bool
wait_for(const char *path)
{
  for (int i = 0; i < 1000 && !exists(path); i++)
    usleep(10000);
  return exists(path);
}

/* A remote mount can take seconds (a registry far away): the store's lock
 * is not held meanwhile, and a second Prepare of the same target waits
 * for the first one's outcome instead of mounting the layer again.  The
 * stand-in mount command holds until the test creates ROOT/go (10 s at
 * most), and says which happened. */
static void
test_remote_slow(void)
{
  char rroot[600], mscript[3000], path[1024], go[700], how[700], called[700];
  char *mount_slow[] = { "/bin/sh", "-c", mscript, "sh", NULL };
  char *umount[] = { "/bin/true", NULL };
  struct sn_snap_remote rem = { mount_slow, umount, log_it, NULL, NULL, NULL };
  struct sn_snap_label l[4] = {
    { SN_SNAP_LABEL_TARGET, "t1" }, { SN_SNAP_LABEL_IMAGE, "reg/img:v1" },
    { SN_SNAP_LABEL_LAYER, DIGEST("c") },
    { SN_SNAP_LABEL_MANIFEST, DIGEST("e") },
  };
  struct prep a = { .key = "extract-a t1", .l = l };
  struct prep b = { .key = "extract-b t1", .l = l };
  struct sn_snapshots *s;
  struct sn_snap_mounts m;
  struct sn_snap_info info;
  bool running;
  int r;

  snprintf(rroot, sizeof rroot, "%s/remote-slow", root);
  snprintf(go, sizeof go, "%s/go", rroot);
  snprintf(called, sizeof called, "%s/mounts-called", rroot);
  snprintf(mscript, sizeof mscript,
           "echo \"$2\" >> %s; i=0; while [ ! -e %s ] && [ $i -lt 1000 ]; "
           "do sleep 0.01; i=$((i+1)); done; "
           "if [ -e %s ]; then echo released; else echo timeout; fi "
           "> \"$4/how\"", called, go, go);
  s = sn_snapshots_open(rroot);
  if (s == NULL) {
    ok(0, "open %s: %s", rroot, sn_error());
    return;
  }
  sn_snapshots_set_remote(s, &rem);
  a.s = b.s = s;
  pthread_create(&a.t, NULL, prep_thread, &a);
  ok(wait_for(called), "slow mount: the Prepare of target t1 runs the "
     "mount command");
  r = sn_snapshots_prepare(s, "other", "", NULL, 0, &m);
  OK(r == 0, "... meanwhile another Prepare is answered (%s)", ERR);
  if (r == 0)
    sn_snap_mounts_clear(&m);
  OK(sn_snapshots_stat(s, "t1", &info) == SN_SNAP_NOT_FOUND,
     "... a Stat of the target too: not there yet");
  snprintf(how, sizeof how, "%s/snapshots/1/fs/how", rroot);
  running = !exists(how);
  ok(running && !exists(go), "... while the mount is still under way");
  pthread_create(&b.t, NULL, prep_thread, &b);
  usleep(200000);
  ok(!__atomic_load_n(&b.done, __ATOMIC_ACQUIRE),
     "a second Prepare of the same target waits for the first");
  fclose(fopen(go, "w"));
  pthread_join(a.t, NULL);
  pthread_join(b.t, NULL);
  ok(a.r == SN_SNAP_EXISTS && strstr(a.msg, "served lazily"),
     "... the first: the layer mounted, already exists (%s)", a.msg);
  ok(b.r == SN_SNAP_EXISTS && strstr(b.msg, "target snapshot t1: already "
                                            "exists"),
     "... the second: already exists (%s)", b.msg);
  ok(file_is(how, "released\n"), "... the mount ended when the test let "
     "it, not on its timeout");
  ok(file_is(called, DIGEST("c") "\n"), "... and the layer was mounted "
     "once");
  r = sn_snapshots_stat(s, "t1", &info);
  OK(r == 0 && info.kind == SN_SNAP_KIND_COMMITTED,
     "t1 is a committed snapshot (%s)", ERR);
  if (r == 0)
    sn_snap_info_clear(&info);
  snprintf(path, sizeof path, "%s/snapshots/2/fs", rroot);
  ok(exists(path), "the other Prepare got the next directory (2)");
  OK(sn_snapshots_remove(s, "other") == 0 &&
     sn_snapshots_remove(s, "t1") == 0, "remove them (%s)", ERR);
  sn_snapshots_close(s);
}

/* A reboot unmounts every layer while ROOT keeps the snapshots: at start
 * the store mounts each remote snapshot's layer again with its own labels,
 * and one it cannot mount is unavailable, never an empty tree under a
 * container.  The stand-in mount command mounts a tmpfs for real. */
static void
test_restore(void)
{
  char rroot[600], fs[720], path[800], mscript[1024], uscript[1024];
  char *mount_ok[] = { "/bin/sh", "-c", mscript, "sh", NULL };
  char *mount_bad[] = { "/bin/sh", "-c", "echo 'registry unreachable' >&2; "
                        "exit 1", "sh", NULL };
  char *umount[] = { "/bin/sh", "-c", uscript, "sh", NULL };
  struct sn_snap_remote works = { mount_ok, umount, log_it, NULL, NULL,
                                  NULL };
  struct sn_snap_remote fails = { mount_bad, umount, log_it, NULL, NULL,
                                  NULL };
  struct sn_snap_label l[4] = {
    { SN_SNAP_LABEL_TARGET, "r1" }, { SN_SNAP_LABEL_IMAGE, "reg/img:v1" },
    { SN_SNAP_LABEL_LAYER, DIGEST("a") },
    { SN_SNAP_LABEL_MANIFEST, DIGEST("e") },
  };
  struct sn_snap_mounts m;
  struct sn_snapshots *s;
  int r;

  if (geteuid() != 0) {
    ok(1, "# SKIP remote layers mounted again after a reboot: the "
       "stand-in mount command mounts a tmpfs, which needs root");
    return;
  }
  snprintf(rroot, sizeof rroot, "%s/restore", root);
  snprintf(fs, sizeof fs, "%s/snapshots/1/fs", rroot);
  snprintf(path, sizeof path, "%s/layer-was", fs);
  snprintf(mscript, sizeof mscript, "mount -t tmpfs tmpfs \"$4\" && "
           "echo \"$2 $3\" > \"$4/layer-was\"");
  snprintf(uscript, sizeof uscript, "echo \"$1\" >> %s/umounts; "
           "umount \"$1\"", rroot);
  s = sn_snapshots_open(rroot);
  if (s == NULL) {
    ok(0, "open %s: %s", rroot, sn_error());
    return;
  }
  sn_snapshots_set_remote(s, &works);
  r = sn_snapshots_prepare(s, "extract-1 r1", "", l, 4, &m);
  OK(r == SN_SNAP_EXISTS && exists(path), "restore: a remote snapshot, its "
     "layer mounted: %s", WHY);
  r = sn_snapshots_prepare(s, "ctr", "r1", NULL, 0, &m);
  OK(r == 0, "... a container's snapshot on it (%s)", ERR);
  if (r == 0)
    sn_snap_mounts_clear(&m);
  OK(sn_snapshots_restore(s) == 0, "... nothing to restore while it is "
     "mounted (%s)", ERR);
  sn_snapshots_close(s);

  umount2(fs, 0);               /* the reboot */
  logged[0] = 0;
  s = sn_snapshots_open(rroot);
  if (s)
    sn_snapshots_set_remote(s, &works);
  r = s ? sn_snapshots_restore(s) : -1;
  ok(r == 0 && file_is(path, DIGEST("a") " reg/img:v1@" DIGEST("e") "\n"),
     "after a reboot: the layer mounted again, with the snapshot's own "
     "layer and pinned image");
  ok(strstr(logged, "snapshot r1: its layer was not mounted") &&
     strstr(logged, "mounted again"), "... and logged: %s", logged);
  r = s ? sn_snapshots_mounts(s, "ctr", &m) : -1;
  OK(r == 0, "... the container's snapshot mounts as before (%s)", ERR);
  if (r == 0)
    sn_snap_mounts_clear(&m);
  sn_snapshots_close(s);

  umount2(fs, 0);
  logged[0] = 0;
  s = sn_snapshots_open(rroot);
  if (s)
    sn_snapshots_set_remote(s, &fails);
  r = s ? sn_snapshots_restore(s) : -1;
  ok(r == 1 && strstr(logged, "snapshot r1") &&
     strstr(logged, "unavailable") &&
     strstr(logged, "registry unreachable"), "a layer that cannot be "
     "mounted again: one unavailable, and why in the log: %s", logged);
  r = s ? sn_snapshots_mounts(s, "ctr", &m) : -1;
  OK(r == SN_SNAP_UNAVAILABLE && strstr(sn_error(), "r1") &&
     strstr(sn_error(), DIGEST("a")), "... the mounts of a snapshot on it "
     "are refused, not an empty layer: %s", WHY);
  r = s ? sn_snapshots_view(s, "v", "r1", NULL, 0, &m) : -1;
  OK(r == SN_SNAP_UNAVAILABLE, "... so is a view of it: %s", WHY);
  snprintf(path, sizeof path, "%s/umounts", rroot);
  remove(path);
  OK(s && sn_snapshots_remove(s, "ctr") == 0 &&
     sn_snapshots_remove(s, "r1") == 0, "... it can be removed (%s)", ERR);
  ok(!exists(path), "... with no umount command run for it");
  sn_snapshots_close(s);
  umount2(fs, MNT_DETACH);      /* in case a check failed */
}

/* A daemon that stopped while a remote layer mounted leaves the layer
 * mounted in a directory no snapshot owns (a tmpfs stands for it): a
 * cleanup undoes the mount with the umount command before it removes the
 * directory, and leaves alone what it cannot unmount.  Each step opens the
 * store afresh, as a restarted daemon does. */
static void
test_cleanup_mounted(void)
{
  char croot[600], dir[700], fs[720], file[800], called[700], script[2000];
  char *no_mount[] = { "/bin/false", NULL };
  char *umount_fails[] = { "/bin/sh", "-c", "echo busy >&2; exit 32", "sh",
                           NULL };
  char *umount_works[] = { "/bin/sh", "-c", script, "sh", NULL };
  struct sn_snap_remote fails = { no_mount, umount_fails, log_it, NULL,
                                  NULL, NULL };
  struct sn_snap_remote works = { no_mount, umount_works, log_it, NULL,
                                  NULL, NULL };
  struct sn_snapshots *s;
  int r;

  if (geteuid() != 0) {
    ok(1, "# SKIP a layer mount left by a stopped daemon: mounting the "
       "tmpfs that stands for it needs root");
    return;
  }
  snprintf(croot, sizeof croot, "%s/cleanup-mounted", root);
  snprintf(dir, sizeof dir, "%s/snapshots/5", croot);
  snprintf(fs, sizeof fs, "%s/fs", dir);
  snprintf(file, sizeof file, "%s/data", fs);
  snprintf(called, sizeof called, "%s/umount-called", croot);
  snprintf(script, sizeof script, "echo \"$1\" >> %s && umount \"$1\"",
           called);
  s = sn_snapshots_open(croot);
  if (s == NULL || mkdir(dir, 0700) == -1 || mkdir(fs, 0700) == -1 ||
      mount("tmpfs", fs, "tmpfs", 0, "size=1m") == -1) {
    ok(0, "a tmpfs on %s: %s", fs, s ? strerror(errno) : sn_error());
    sn_snapshots_close(s);
    return;
  }
  write_file(fs, "data", 10);
  r = sn_snapshots_cleanup(s);
  OK(r == SN_SNAP_INTERNAL &&
     strstr(sn_error(), "a mount no snapshot owns") && exists(file),
     "a stray mount, no umount command: the cleanup leaves it and its "
     "files, and says so: %s", WHY);
  sn_snapshots_close(s);

  s = sn_snapshots_open(croot);
  if (s)
    sn_snapshots_set_remote(s, &fails);
  r = s ? sn_snapshots_cleanup(s) : -1;
  OK(r == SN_SNAP_INTERNAL && strstr(sn_error(), fs) &&
     strstr(sn_error(), "busy") && exists(file), "... an umount command "
     "that fails: the same, with its message: %s", WHY);
  sn_snapshots_close(s);

  logged[0] = 0;
  s = sn_snapshots_open(croot);
  if (s)
    sn_snapshots_set_remote(s, &works);
  r = s ? sn_snapshots_cleanup(s) : -1;
  OK(r == 0 && !exists(dir), "... one that works: the layer unmounted, "
     "then the directory removed (%s)", ERR);
  snprintf(script, sizeof script, "%s\n", fs);
  ok(file_is(called, script), "... the umount command got the mount point");
  ok(strstr(logged, "cleanup: unmounted") && strstr(logged, fs),
     "... and the log says what was undone: %s", logged);
  sn_snapshots_close(s);
  umount2(fs, MNT_DETACH);      /* in case a check failed */
}

int
main(void)
{
  struct sn_snapshots *s;
  struct sn_snap_mounts m;
  struct sn_snap_info info, out;
  struct sn_snap_label lab[] = { { "containerd.io/gc.root", "1" },
                                 { "a", "1" }, { "b", "2" } };
  char path[1024], names[1024] = "", big[5000];
  int64_t size, inodes;
  int r;

  tap_tmpdir(root, sizeof root, "snapshot");
  s = sn_snapshots_open(root);
  OK(s != NULL, "open an empty store (%s)", ERR);
  if (s == NULL)
    return done_testing();

  /* ---- the chain: a -> A, b on A -> B, views ---- */
  r = sn_snapshots_prepare(s, "a", "", lab, 3, &m);
  OK(r == 0 && is(&m, "bind R/snapshots/1/fs rw,rbind"),
     "prepare a (no parent): its directory, bind rw (%s)", ERR);
  sn_snap_mounts_clear(&m);
  snprintf(path, sizeof path, "%s/snapshots/1/fs", root);
  write_file(path, "f", 10000);
  write_file(path, "g", 1);
  r = sn_snapshots_usage(s, "a", &size, &inodes);
  OK(r == 0 && size >= 10000 && inodes == 3,
     "usage of active a: %lld bytes, %lld inodes (the directory and two "
     "files) (%s)", (long long) size, (long long) inodes, ERR);
  r = sn_snapshots_commit(s, "A", "a", lab + 1, 1);
  OK(r == 0, "commit a as A (%s)", ERR);
  r = sn_snapshots_stat(s, "A", &info);
  OK(r == 0 && info.kind == SN_SNAP_KIND_COMMITTED && info.parent[0] == 0 &&
     info.nlabels == 1 && strcmp(label(&info, "a"), "1") == 0 &&
     info.updated_ns >= info.created_ns && info.created_ns > 0,
     "stat A: committed, no parent, the commit's labels (%s)", ERR);
  sn_snap_info_clear(&info);
  OK(sn_snapshots_stat(s, "a", &info) == SN_SNAP_NOT_FOUND,
     "a is gone once committed: %s", WHY);
  r = sn_snapshots_usage(s, "A", &size, &inodes);
  OK(r == 0 && size >= 10000 && inodes == 3,
     "usage of A: as measured at its commit (%s)", ERR);

  r = sn_snapshots_prepare(s, "b", "A", NULL, 0, &m);
  OK(r == 0 && is(&m, "overlay overlay index=off,workdir=R/snapshots/2/work,"
                  "upperdir=R/snapshots/2/fs,lowerdir=R/snapshots/1/fs"),
     "prepare b on A: overlay, b upper, A lower (%s)", ERR);
  sn_snap_mounts_clear(&m);
  r = sn_snapshots_mounts(s, "b", &m);
  OK(r == 0 && is(&m, "overlay overlay index=off,workdir=R/snapshots/2/work,"
                  "upperdir=R/snapshots/2/fs,lowerdir=R/snapshots/1/fs"),
     "mounts of b: the same (%s)", ERR);
  sn_snap_mounts_clear(&m);
  r = sn_snapshots_view(s, "v", "A", NULL, 0, &m);
  OK(r == 0 && is(&m, "bind R/snapshots/1/fs ro,rbind"),
     "view v of A: A's directory, bind ro (%s)", ERR);
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_commit(s, "B", "b", NULL, 0) == 0, "commit b as B (%s)",
     ERR);
  r = sn_snapshots_view(s, "v2", "B", NULL, 0, &m);
  OK(r == 0 && is(&m, "overlay overlay index=off,"
                  "lowerdir=R/snapshots/2/fs:R/snapshots/1/fs"),
     "view v2 of B: overlay of B over A, no upper (%s)", ERR);
  sn_snap_mounts_clear(&m);
  r = sn_snapshots_view(s, "v0", NULL, NULL, 0, &m);
  OK(r == 0 && is(&m, "bind R/snapshots/5/fs ro,rbind"),
     "a view with no parent: its own empty directory, ro (%s)", ERR);
  sn_snap_mounts_clear(&m);

  /* ---- what containerd gets as errors ---- */
  OK(sn_snapshots_prepare(s, "c", "nope", NULL, 0, &m) == SN_SNAP_NOT_FOUND &&
     strstr(sn_error(), "parent snapshot nope of c does not exist"),
     "a parent that does not exist: not found: %s", WHY);
  OK(sn_snapshots_prepare(s, "c", "v", NULL, 0, &m) == SN_SNAP_INVALID,
     "a parent that is not committed: invalid argument: %s", WHY);
  OK(sn_snapshots_prepare(s, "v", "A", NULL, 0, &m) == SN_SNAP_EXISTS,
     "a key that exists: already exists: %s", WHY);
  OK(sn_snapshots_prepare(s, "", "A", NULL, 0, &m) == SN_SNAP_INVALID,
     "an empty key: invalid argument: %s", WHY);
  OK(sn_snapshots_commit(s, "V", "v", NULL, 0) == SN_SNAP_PRECONDITION,
     "commit of a view: failed precondition: %s", WHY);
  OK(sn_snapshots_prepare(s, "c", "A", NULL, 0, &m) == 0 &&
     sn_snapshots_commit(s, "B", "c", NULL, 0) == SN_SNAP_EXISTS,
     "commit to a name that exists: already exists: %s", WHY);
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_commit(s, "C", "zz", NULL, 0) == SN_SNAP_NOT_FOUND,
     "commit of an unknown key: not found: %s", WHY);
  OK(sn_snapshots_remove(s, "A") == SN_SNAP_PRECONDITION &&
     strstr(sn_error(), "has it as parent"),
     "remove of a snapshot with children: failed precondition: %s", WHY);
  OK(sn_snapshots_mounts(s, "A", &m) == SN_SNAP_PRECONDITION,
     "mounts of a committed snapshot: failed precondition: %s", WHY);
  OK(sn_snapshots_mounts(s, "zz", &m) == SN_SNAP_NOT_FOUND,
     "mounts of an unknown key: not found: %s", WHY);
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  OK(sn_snapshots_prepare(s, "d", "A",
                          &(struct sn_snap_label) { "k", big }, 1, &m)
     == SN_SNAP_INVALID, "a label over 4096 bytes: invalid argument: %s",
     WHY);
  OK(sn_snapshots_stat(s, "d", &info) == SN_SNAP_NOT_FOUND,
     "... and nothing made");

  /* ---- labels ---- */
  memset(&info, 0, sizeof info);
  info.name = "B";
  info.labels = lab;
  info.nlabels = 3;
  r = sn_snapshots_update(s, &info, NULL, 0, &out);
  OK(r == 0 && out.nlabels == 3 && strcmp(label(&out, "b"), "2") == 0,
     "update with no mask: every label replaced (%s)", ERR);
  sn_snap_info_clear(&out);
  info.labels = (struct sn_snap_label[]) { { "a", "3" } };
  info.nlabels = 1;
  r = sn_snapshots_update(s, &info,
                          (const char *[]) { "labels.a", "labels.b" }, 2,
                          &out);
  OK(r == 0 && out.nlabels == 2 && strcmp(label(&out, "a"), "3") == 0 &&
     label(&out, "b") == NULL && label(&out, "containerd.io/gc.root"),
     "update labels.a and labels.b: a set, b (absent) removed, the rest "
     "kept (%s)", ERR);
  sn_snap_info_clear(&out);
  OK(sn_snapshots_update(s, &info, (const char *[]) { "parent" }, 1, &out)
     == SN_SNAP_INVALID, "update of the parent: invalid argument: %s", WHY);

  /* ---- persistence ---- */
  sn_snapshots_walk(s, count_one, names);
  OK(strcmp(names, "A=c B=c v=v v2=v v0=v c=a ") == 0,
     "walk: every snapshot in creation order (%s)", names);
  sn_snapshots_close(s);
  s = sn_snapshots_open(root);
  names[0] = 0;
  if (s)
    sn_snapshots_walk(s, count_one, names);
  OK(s && strcmp(names, "A=c B=c v=v v2=v v0=v c=a ") == 0,
     "reopened: the same snapshots (%s)", s ? names : sn_error());
  if (s == NULL)
    return done_testing();
  r = sn_snapshots_stat(s, "B", &info);
  OK(r == 0 && strcmp(info.parent, "A") == 0 &&
     strcmp(label(&info, "a"), "3") == 0,
     "... with their parents and labels (%s)", ERR);
  sn_snap_info_clear(&info);
  r = sn_snapshots_prepare(s, "e", "B", NULL, 0, &m);
  OK(r == 0 && strstr(show(&m, 0), "snapshots/7/work"),
     "... and ids not reused (%s)", show(&m, 0));
  sn_snap_mounts_clear(&m);

  /* ---- removal and cleanup ---- */
  OK(sn_snapshots_remove(s, "v2") == 0, "remove v2 (%s)", ERR);
  snprintf(path, sizeof path, "%s/snapshots/4", root);
  OK(access(path, F_OK) == -1, "... its directory is gone");
  snprintf(path, sizeof path, "%s/snapshots/99", root);
  mkdir(path, 0700);
  write_file(path, "left", 3);
  OK(sn_snapshots_cleanup(s) == 0 && access(path, F_OK) == -1,
     "cleanup removes a directory no snapshot owns (%s)", ERR);
  OK(sn_snapshots_mounts(s, "v2", &m) == SN_SNAP_NOT_FOUND,
     "mounts of a removed snapshot: not found: %s", WHY);
  sn_snapshots_close(s);

  snprintf(path, sizeof path, "%s/metadata.json", root);
  {
    FILE *f = fopen(path, "w");

    if (f) {
      fputs("{\"version\": 1, \"next_id\": 3, \"snapshots\": [{}]}", f);
      fclose(f);
    }
  }
  s = sn_snapshots_open(root);
  OK(s == NULL && strstr(sn_error(), "metadata.json") &&
     strstr(sn_error(), "malformed"),
     "a corrupt metadata file is refused, not replaced: %s",
     s ? "opened" : sn_error());
  sn_snapshots_close(s);
  test_remote();
  test_remote_slow();
  test_cleanup_mounted();
  test_restore();
  tap_rm_tree(root);
  return done_testing();
}
