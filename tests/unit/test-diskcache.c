/* soci-nbd tests: the cache directory (lib/span/diskcache.c) — counting,
 * removal of stale temporary files, LRU eviction under a bound at open and
 * while serving, pinned files, touch, symlinks never followed, refusal of a
 * directory with the wrong owner or mode — and the verified span files
 * kept in it (sn_disk_span_store/load, lib/span/spancache.c): round trip,
 * truncated, extended or corrupted files not served and deleted.  All in a
 * mkdtemp directory. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "span/diskcache.h"
#include "span/spancache.h"
#include "util/digest.h"
#include "util/err.h"
#include "tap.h"


#define HEX1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define HEX3 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static char tmpdir[256];
static int nlogs, nlogs_stale, nlogs_evict;

/* ---- helpers ---------------------------------------------------------- */

static void
log_cb(void *opaque, const char *msg)
{
  (void) opaque;
  nlogs++;
  if (strstr(msg, "stale temporary file"))
    nlogs_stale++;
  if (strstr(msg, "evicted"))
    nlogs_evict++;
}

/* mkdir a/b (b may be ""), 0700. */
static void
xmkdir(const char *a, const char *b)
{
  char p[1024];

  snprintf(p, sizeof p, "%s%s%s", a, *b ? "/" : "", b);
  if (mkdir(p, 0700) == -1 && errno != EEXIST) {
    printf("Bail out! mkdir %s: %s\n", p, strerror(errno));
    exit(1);
  }
}

/* A file of size bytes at path, with mtime now - age seconds. */
static void
mkfile(const char *path, size_t size, time_t age)
{
  struct timespec ts[2];
  char *buf = malloc(size ? size : 1);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

  memset(buf, 'x', size);
  if (fd == -1 || write(fd, buf, size) != (ssize_t) size || close(fd) == -1) {
    printf("Bail out! cannot write %s: %s\n", path, strerror(errno));
    exit(1);
  }
  free(buf);
  clock_gettime(CLOCK_REALTIME, &ts[0]);
  ts[0].tv_sec -= age;
  ts[1] = ts[0];
  if (utimensat(AT_FDCWD, path, ts, 0) == -1) {
    printf("Bail out! utimensat %s: %s\n", path, strerror(errno));
    exit(1);
  }
}

static bool
exists(const char *path)
{
  struct stat st;

  return lstat(path, &st) == 0;
}

/* A fresh cache directory DIR = tmpdir/name (mode 0700). */
static void
fresh(char *dir, size_t n, const char *name)
{
  char cmd[1200];

  snprintf(dir, n, "%s/%s", tmpdir, name);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    printf("Bail out! %s\n", cmd);
    exit(1);
  }
  xmkdir(dir, "");
}

/* A process id that no longer runs (a child reaped here). */
static long
dead_pid(void)
{
  pid_t p = fork();

  if (p == 0)
    _exit(0);
  if (p == -1 || waitpid(p, NULL, 0) != p) {
    printf("Bail out! fork\n");
    exit(1);
  }
  return (long) p;
}

/* ---- counting and stale temporaries ----------------------------------- */

static void
test_count_and_stale(void)
{
  char dir[512], p[1024], s1[1024], s2[1024], s3[1024], s4[1024], s5[1024];
  char k1[1024], k2[1024], k3[1024], k4[1024], k5[1024];
  struct sn_diskcache *dc;
  struct sn_diskcache_stats st;
  long dead = dead_pid(), me = (long) getpid();

  /* A directory that does not exist yet: nothing to count. */
  snprintf(dir, sizeof dir, "%s/not-yet", tmpdir);
  dc = sn_diskcache_open(dir, 1000, NULL, NULL);
  sn_diskcache_get_stats(dc, &st);
  OK(dc && st.bytes == 0 && st.max_bytes == 1000,
     "a missing cache directory opens empty: %s", ERR);
  sn_diskcache_free(dc);

  fresh(dir, sizeof dir, "count");
  xmkdir(dir, HEX1);
  xmkdir(dir, "blobs");
  xmkdir(dir, "blobs/sha256");
  xmkdir(dir, "not-a-layer");
  snprintf(p, sizeof p, "%s/%s/0", dir, HEX1);
  mkfile(p, 1000, 100);
  snprintf(p, sizeof p, "%s/%s/7", dir, HEX1);
  mkfile(p, 2000, 100);
  snprintf(p, sizeof p, "%s/blobs/sha256/%s", dir, HEX2);
  mkfile(p, 4000, 100);
  /* Unknown files: not counted, never removed. */
  snprintf(k1, sizeof k1, "%s/README", dir);
  mkfile(k1, 50000, 99999);
  snprintf(k2, sizeof k2, "%s/not-a-layer/0", dir);
  mkfile(k2, 50000, 99999);

  /* Temporaries: of a dead writer (removed), of a live one (kept), of
   * unknown origin, fresh (kept) or over an hour old (removed). */
  snprintf(s1, sizeof s1, "%s/%s/.3.%ld.AbC123", dir, HEX1, dead);
  mkfile(s1, 300, 10);
  snprintf(k3, sizeof k3, "%s/%s/.4.%ld.AbC123", dir, HEX1, me);
  mkfile(k3, 300, 99999);
  snprintf(s2, sizeof s2, "%s/%s/.5.XyZ789", dir, HEX1);
  mkfile(s2, 300, 7200);
  snprintf(k4, sizeof k4, "%s/%s/.6.XyZ789", dir, HEX1);
  mkfile(k4, 300, 60);
  snprintf(s3, sizeof s3, "%s/blobs/sha256/%s.tmp.%ld", dir, HEX3, dead);
  mkfile(s3, 300, 10);
  snprintf(s4, sizeof s4, "%s/blobs/sha256/%s.tmp.junk", dir, HEX3);
  mkfile(s4, 300, 7200);
  snprintf(p, sizeof p, "%s/blobs/sha256/%s.tmp.%ld", dir, HEX1, me);
  mkfile(p, 300, 99999);
  /* util/fdio.h's form of the same: <hex>.tmp.<pid>.XXXXXX */
  snprintf(s5, sizeof s5, "%s/blobs/sha256/%s.tmp.%ld.Qw3rTy", dir, HEX3,
           dead);
  mkfile(s5, 300, 10);
  snprintf(k5, sizeof k5, "%s/blobs/sha256/%s.tmp.%ld.Qw3rTy", dir, HEX2,
           me);
  mkfile(k5, 300, 99999);

  nlogs = nlogs_stale = nlogs_evict = 0;
  dc = sn_diskcache_open(dir, 0, log_cb, NULL);
  OK(dc != NULL, "open an unbounded cache directory: %s", ERR);
  sn_diskcache_get_stats(dc, &st);
  ok(st.bytes == 7000, "counts the 3 cached files, 7000 bytes (got %llu)",
     (unsigned long long) st.bytes);
  ok(st.max_bytes == 0 && st.evicted_files == 0 && st.evicted_bytes == 0,
     "unbounded: nothing evicted");
  ok(st.stale_removed == 5, "5 stale temporary files removed (got %llu)",
     (unsigned long long) st.stale_removed);
  ok(!exists(s1) && !exists(s2) && !exists(s3) && !exists(s4) && !exists(s5),
     "... a dead writer's span and blob temporaries, and old ones of "
     "unknown origin");
  ok(exists(k3) && exists(k4) && exists(p) && exists(k5),
     "a live writer's temporaries and fresh unnamed ones are kept");
  ok(exists(k1) && exists(k2), "unknown files are left alone");
  ok(nlogs_stale == 5 && nlogs_evict == 0,
     "one log line per removed temporary (%d)", nlogs_stale);

  /* add() counts; under no bound nothing is evicted. */
  sn_diskcache_add(dc, 123456);
  sn_diskcache_get_stats(dc, &st);
  ok(st.bytes == 7000 + 123456 && st.evicted_files == 0,
     "sn_diskcache_add counts bytes (%llu)", (unsigned long long) st.bytes);
  sn_diskcache_free(dc);
  sn_diskcache_free(NULL);
}

/* ---- eviction --------------------------------------------------------- */

static void
test_evict_at_open(void)
{
  char dir[512], f[4][1024], big[1024];
  struct sn_diskcache *dc;
  struct sn_diskcache_stats st;
  int i;

  fresh(dir, sizeof dir, "evict-open");
  xmkdir(dir, HEX1);
  xmkdir(dir, HEX2);
  xmkdir(dir, "blobs");
  xmkdir(dir, "blobs/sha256");
  /* Oldest first: f[0] (a blob), f[1], f[2], f[3]; 1000 bytes each. */
  snprintf(f[0], sizeof f[0], "%s/blobs/sha256/%s", dir, HEX3);
  snprintf(f[1], sizeof f[1], "%s/%s/2", dir, HEX1);
  snprintf(f[2], sizeof f[2], "%s/%s/0", dir, HEX2);
  snprintf(f[3], sizeof f[3], "%s/%s/1", dir, HEX1);
  for (i = 0; i < 4; i++)
    mkfile(f[i], 1000, 4000 - 1000 * i);
  snprintf(big, sizeof big, "%s/unrelated.bin", dir);
  mkfile(big, 100000, 99999);

  nlogs = nlogs_stale = nlogs_evict = 0;
  dc = sn_diskcache_open(dir, 2500, log_cb, NULL);
  OK(dc != NULL, "open with a 2500-byte bound: %s", ERR);
  sn_diskcache_get_stats(dc, &st);
  ok(st.evicted_files == 2 && st.evicted_bytes == 2000 && st.bytes == 2000,
     "evicted 2 files, 2000 bytes, 2000 left (%llu, %llu, %llu)",
     (unsigned long long) st.evicted_files,
     (unsigned long long) st.evicted_bytes, (unsigned long long) st.bytes);
  ok(!exists(f[0]) && !exists(f[1]) && exists(f[2]) && exists(f[3]),
     "... the two least recently used (a blob and a span)");
  ok(exists(big), "an unknown file is neither counted nor evicted");
  ok(nlogs_evict == 1, "eviction at open is logged once (%d)", nlogs_evict);
  sn_diskcache_free(dc);

  /* Touching a file makes it the most recently used. */
  mkfile(f[0], 1000, 5000);
  mkfile(f[1], 1000, 4000);
  sn_diskcache_touch(f[0]);
  {
    struct stat sb;

    ok(stat(f[0], &sb) == 0 && sb.st_mtime >= time(NULL) - 60,
       "sn_diskcache_touch bumps the mtime");
  }
  dc = sn_diskcache_open(dir, 3000, NULL, NULL);
  sn_diskcache_get_stats(dc, &st);
  OK(dc && st.evicted_files == 1 && !exists(f[1]) && exists(f[0]) &&
     exists(f[2]) && exists(f[3]),
     "after touch, the oldest untouched file goes instead: %s", ERR);
  sn_diskcache_free(dc);
}

static void
test_evict_serving(void)
{
  char dir[512], f[6][1024];
  struct sn_diskcache *dc;
  struct sn_diskcache_stats st;
  int i;

  fresh(dir, sizeof dir, "evict-serve");
  xmkdir(dir, HEX1);
  xmkdir(dir, "blobs");
  xmkdir(dir, "blobs/sha256");
  snprintf(f[0], sizeof f[0], "%s/blobs/sha256/%s", dir, HEX2);
  for (i = 1; i < 6; i++)
    snprintf(f[i], sizeof f[i], "%s/%s/%d", dir, HEX1, i);
  for (i = 0; i < 5; i++)
    mkfile(f[i], 2000, 5000 - 100 * i);

  dc = sn_diskcache_open(dir, 10000, NULL, NULL);
  sn_diskcache_get_stats(dc, &st);
  OK(dc && st.bytes == 10000 && st.evicted_files == 0,
     "exactly at the bound: nothing evicted at open: %s", ERR);
  OK(sn_diskcache_pin(dc, f[0]) == 0, "pin the oldest file (a blob): %s",
     ERR);

  /* Crossing the bound evicts down to 90% of it, skipping the pin. */
  mkfile(f[5], 2000, 0);
  sn_diskcache_add(dc, 2000);
  sn_diskcache_get_stats(dc, &st);
  ok(st.evicted_files == 2 && st.evicted_bytes == 4000 && st.bytes == 8000,
     "add over the bound: 2 evicted, 8000 left (%llu, %llu)",
     (unsigned long long) st.evicted_files, (unsigned long long) st.bytes);
  ok(exists(f[0]), "... the pinned file survives although the oldest");
  ok(!exists(f[1]) && !exists(f[2]) && exists(f[3]) && exists(f[4]) &&
     exists(f[5]), "... the next two oldest are gone, the rest kept");

  /* Under the bound, add only counts. */
  sn_diskcache_add(dc, 1000);
  sn_diskcache_get_stats(dc, &st);
  ok(st.bytes == 9000 && st.evicted_files == 2,
     "add under the bound evicts nothing");

  /* The directory becomes writable by others while serving: eviction
   * stops (what it would act on could have been planted). */
  chmod(dir, 0777);
  sn_diskcache_add(dc, 50000);
  sn_diskcache_get_stats(dc, &st);
  ok(st.evicted_files == 2 && exists(f[3]) && exists(f[4]) && exists(f[5]),
     "no eviction once the directory is writable by others");
  chmod(dir, 0700);
  sn_diskcache_free(dc);

  /* Pinned files are never deleted, even when nothing else is left. */
  dc = sn_diskcache_open(dir, 100000, NULL, NULL);
  for (i = 0; i < 6; i++)
    if (exists(f[i]))
      sn_diskcache_pin(dc, f[i]);
  sn_diskcache_add(dc, 200000);
  sn_diskcache_get_stats(dc, &st);
  ok(st.evicted_files == 0 && exists(f[0]) && exists(f[3]) && exists(f[5]),
     "every file pinned: nothing evicted");
  sn_diskcache_free(dc);
}

/* ---- symlinks --------------------------------------------------------- */

static void
test_symlinks(void)
{
  char dir[512], out[512], p[1024], real[1024], o1[1024], o2[1024];
  char o3[1024], l3[1024], tmpl[1024], otmp[1024];
  struct sn_diskcache *dc;
  struct sn_diskcache_stats st;

  /* Outside the cache: files a symlink inside it points to. */
  fresh(out, sizeof out, "outside");
  xmkdir(out, "sha256");
  snprintf(o1, sizeof o1, "%s/0", out);
  mkfile(o1, 3000, 99999);
  snprintf(o2, sizeof o2, "%s/sha256/%s", out, HEX3);
  mkfile(o2, 3000, 99999);
  snprintf(o3, sizeof o3, "%s/victim", out);
  mkfile(o3, 3000, 99999);
  snprintf(otmp, sizeof otmp, "%s/.1.XyZ789", out);
  mkfile(otmp, 10, 99999);

  fresh(dir, sizeof dir, "symlinks");
  xmkdir(dir, HEX2);
  snprintf(real, sizeof real, "%s/%s/0", dir, HEX2);
  mkfile(real, 1000, 500);
  /* A layer directory that is a symlink, blobs/ a symlink, and a span
   * file that is a symlink. */
  snprintf(p, sizeof p, "%s/%s", dir, HEX1);
  OK(symlink(out, p) == 0, "symlink %s -> %s", p, out);
  snprintf(p, sizeof p, "%s/blobs", dir);
  OK(symlink(out, p) == 0, "symlink blobs -> %s", out);
  snprintf(l3, sizeof l3, "%s/%s/1", dir, HEX2);
  OK(symlink(o3, l3) == 0, "symlink a span file -> %s", o3);
  /* A symlink with a stale temporary's name. */
  snprintf(tmpl, sizeof tmpl, "%s/%s/.2.XyZ789", dir, HEX2);
  OK(symlink(o3, tmpl) == 0, "symlink a temporary name -> %s", o3);
  {
    struct timespec ts[2] = { { 0, 0 }, { 0, 0 } };

    utimensat(AT_FDCWD, tmpl, ts, AT_SYMLINK_NOFOLLOW);
  }

  dc = sn_diskcache_open(dir, 1, NULL, NULL);
  OK(dc != NULL, "open with a 1-byte bound: %s", ERR);
  sn_diskcache_get_stats(dc, &st);
  ok(st.evicted_files == 1 && st.evicted_bytes == 1000 && st.bytes == 0,
     "only the real file is counted and evicted (%llu files, %llu bytes)",
     (unsigned long long) st.evicted_files,
     (unsigned long long) st.evicted_bytes);
  ok(!exists(real), "... it is gone");
  ok(exists(o1) && exists(o2) && exists(o3) && exists(otmp),
     "nothing outside the directory was removed");
  ok(exists(l3) && exists(tmpl), "the symlinks themselves are left alone");
  ok(st.stale_removed == 0, "a symlink is not a stale temporary");
  sn_diskcache_free(dc);
}

/* ---- owner and mode --------------------------------------------------- */

static void
test_owner_mode(void)
{
  char dir[512], f[1024];
  struct sn_diskcache *dc;
  static const struct {
    mode_t mode;
    const char *word;
  } bad[] = {
    { 0770, "writable by its group" },
    { 0720, "writable by its group" },
    { 0702, "writable by others" },
    { 0777, "writable by others" },
    { 01777, "writable by others" },
  };
  size_t i;

  fresh(dir, sizeof dir, "owner");
  xmkdir(dir, HEX1);
  snprintf(f, sizeof f, "%s/%s/0", dir, HEX1);
  mkfile(f, 1000, 1000);

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    chmod(dir, bad[i].mode);
    dc = sn_diskcache_open(dir, 1, NULL, NULL);
    OK(dc == NULL && strstr(sn_error(), bad[i].word) &&
       strstr(sn_error(), "refused") && strstr(sn_error(), dir),
       "mode %04o refused: %s", (unsigned) bad[i].mode, WHY);
    sn_diskcache_free(dc);
  }
  ok(exists(f), "... and nothing was evicted");
  chmod(dir, 0755);
  dc = sn_diskcache_open(dir, 0, NULL, NULL);
  OK(dc != NULL, "mode 0755 (readable by others, not writable) is fine: %s",
     ERR);
  sn_diskcache_free(dc);
  chmod(dir, 0700);

  if (geteuid() == 0) {
    OK(chown(dir, 4242, 4242) == 0, "chown the directory to uid 4242");
    dc = sn_diskcache_open(dir, 1, NULL, NULL);
    OK(dc == NULL && strstr(sn_error(), "owned by uid 4242") &&
       strstr(sn_error(), "refused"),
       "a directory owned by another user is refused: %s", WHY);
    sn_diskcache_free(dc);
    ok(exists(f), "... and nothing was evicted");
    /* Owned by root is accepted (here: root is this user too). */
    chown(dir, 0, 0);
  }
  else {
    /* Not root: a directory owned by someone else, if one exists. */
    struct stat st;

    if (stat("/", &st) == 0 && st.st_uid == 0 &&
        !(st.st_mode & (S_IWGRP | S_IWOTH))) {
      dc = sn_diskcache_open("/", 0, NULL, NULL);
      OK(dc != NULL, "a directory owned by root is accepted: %s", ERR);
      sn_diskcache_free(dc);
    }
    diag("not root: the foreign-owner case is not tested");
  }
}

/* ---- span files (sn_disk_span_store / sn_disk_span_load) -------------- */

static void
test_span_files(void)
{
  char base[512], ldir[700], path[800], cmd[900];
  uint8_t data[5000], want[SN_SHA256_LEN], other[SN_SHA256_LEN], *got;
  struct stat sb;
  struct sn_diskcache *dc;
  struct sn_diskcache_stats st;
  uint64_t seed = 0x1234567;
  size_t i;
  int fd;

  for (i = 0; i < sizeof data; i++)
    data[i] = (uint8_t) tap_xorshift(&seed);
  sn_sha256(data, sizeof data, want);
  /* base does not exist yet: store creates it and the layer dir. */
  snprintf(base, sizeof base, "%s/spans", tmpdir);
  snprintf(ldir, sizeof ldir, "%s/%s", base, HEX1);
  snprintf(path, sizeof path, "%s/3", ldir);

  ok(sn_disk_span_load(ldir, 3, sizeof data, want) == NULL,
     "load of a span never stored: NULL");
  ok(sn_disk_span_store(ldir, 3, data, sizeof data) == 0,
     "store span 3 (5000 bytes)");
  ok(stat(base, &sb) == 0 && S_ISDIR(sb.st_mode) &&
     (sb.st_mode & 07777) == 0700, "... created the cache directory, 0700");
  ok(stat(ldir, &sb) == 0 && S_ISDIR(sb.st_mode) &&
     (sb.st_mode & 07777) == 0700, "... and the layer directory, 0700");
  ok(stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
     sb.st_size == (off_t) sizeof data, "... as DIR/3, 5000 bytes");
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep -v '^3$')\"",
           ldir);
  ok(system(cmd) == 0, "... no temporary file left beside it");

  /* Make it old; a load serves the bytes and bumps the mtime. */
  mkfile(path, 0, 0);
  ok(sn_disk_span_store(ldir, 3, data, sizeof data) == 0,
     "store again over an existing file");
  {
    struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };

    utimensat(AT_FDCWD, path, ts, 0);
  }
  got = sn_disk_span_load(ldir, 3, sizeof data, want);
  ok(got && memcmp(got, data, sizeof data) == 0, "load returns the bytes");
  free(got);
  ok(stat(path, &sb) == 0 && sb.st_mtime > 1000000000,
     "... and bumps the file's mtime (LRU)");

  /* The diskcache counts stored spans. */
  dc = sn_diskcache_open(base, 0, NULL, NULL);
  sn_diskcache_get_stats(dc, &st);
  OK(dc && st.bytes == sizeof data, "the cache directory counts the span "
     "(%llu bytes): %s", (unsigned long long) st.bytes, ERR);
  sn_diskcache_free(dc);

  /* A wrong expected digest: not served, and the file is dropped. */
  memcpy(other, want, sizeof other);
  other[0] ^= 1;
  ok(sn_disk_span_load(ldir, 3, sizeof data, other) == NULL,
     "a digest mismatch is not served");
  ok(!exists(path), "... and the file is deleted");

  /* Truncated. */
  sn_disk_span_store(ldir, 3, data, sizeof data);
  ok(truncate(path, 4999) == 0 &&
     sn_disk_span_load(ldir, 3, sizeof data, want) == NULL,
     "a truncated span file is not served");
  ok(!exists(path), "... and is deleted");

  /* Longer than expected (trailing garbage). */
  sn_disk_span_store(ldir, 3, data, sizeof data);
  fd = open(path, O_WRONLY | O_APPEND);
  ok(fd >= 0 && write(fd, "junk", 4) == 4 && close(fd) == 0 &&
     sn_disk_span_load(ldir, 3, sizeof data, want) == NULL,
     "a span file with extra bytes is not served");
  ok(!exists(path), "... and is deleted");

  /* One byte flipped, same size. */
  sn_disk_span_store(ldir, 3, data, sizeof data);
  fd = open(path, O_RDWR);
  ok(fd >= 0 && pwrite(fd, "\xff", 1, 2500) == 1 && close(fd) == 0 &&
     sn_disk_span_load(ldir, 3, sizeof data, want) == NULL,
     "a corrupted span file is not served");
  ok(!exists(path), "... and is deleted");

  /* The right file under another index is not span 4. */
  sn_disk_span_store(ldir, 3, data, sizeof data);
  ok(sn_disk_span_load(ldir, 4, sizeof data, want) == NULL && exists(path),
     "spans are keyed by index");

  /* An empty span round-trips. */
  sn_sha256("", 0, other);
  ok(sn_disk_span_store(ldir, 9, (const uint8_t *) "", 0) == 0,
     "store an empty span");
  got = sn_disk_span_load(ldir, 9, 0, other);
  ok(got != NULL, "... and load it back");
  free(got);

  /* Store fails (no crash, -1) when the directory cannot be made. */
  snprintf(path, sizeof path, "%s/a-file", tmpdir);
  mkfile(path, 1, 0);
  snprintf(ldir, sizeof ldir, "%s/a-file/%s", tmpdir, HEX1);
  ok(sn_disk_span_store(ldir, 0, data, sizeof data) == -1,
     "store under a regular file fails");
}

int
main(void)
{
  tap_tmpdir(tmpdir, sizeof tmpdir, "diskcache");
  test_count_and_stale();
  test_evict_at_open();
  test_evict_serving();
  test_symlinks();
  test_owner_mode();
  test_span_files();
  tap_rm_tree(tmpdir);
  return done_testing();
}
