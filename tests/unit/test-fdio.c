/* soci-nbd tests: lib/util/fdio.c — whole files read into memory (size
 * caps, FIFOs refused without blocking), mkdir -p, and the one rule for
 * files written under a temporary name and renamed into place (complete
 * or absent, never through a symlink, nothing left behind on failure). */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fdio.h"
#include "tap.h"

static char tmpdir[512];

static void
put(const char *path, const char *s)
{
  FILE *f = fopen(path, "w");

  if (f == NULL || fputs(s, f) < 0 || fclose(f) != 0)
    diag("cannot write %s", path);
}

/* The bytes of path as a string ("" when unreadable). */
static const char *
contents(const char *path)
{
  static char buf[4096];
  FILE *f = fopen(path, "r");
  size_t n = 0;

  buf[0] = '\0';
  if (f) {
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
  }
  buf[n] = '\0';
  return buf;
}

/* Entries of dir other than . and .. */
static int
entries(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

static void
test_read_file(void)
{
  char p[600], q[600];
  uint8_t *buf = NULL;
  size_t len = 0;

  snprintf(q, sizeof q, "%s/r", tmpdir);
  mkdir(q, 0755);
  snprintf(p, sizeof p, "%s/r/ten", tmpdir);
  put(p, "0123456789");
  OK(sn_read_file(p, 10, true, &buf, &len) == 0 && len == 10
     && memcmp(buf, "0123456789", 10) == 0 && buf[10] == 0,
     "a file of exactly max bytes is read whole, NUL after it: %s", ERR);
  free(buf);
  buf = NULL;
  OK(sn_read_file(p, 9, true, &buf, &len) == -1 && buf == NULL
     && strstr(sn_error(), "larger than 9 bytes") && strstr(sn_error(), p),
     "one byte over max is refused, naming the file: %s", WHY);
  OK(sn_read_file(p, 9, false, &buf, &len) == -1 && buf == NULL,
     "... also when not only regular files are allowed: %s", WHY);
  snprintf(q, sizeof q, "%s/r/empty", tmpdir);
  put(q, "");
  OK(sn_read_file(q, 100, true, &buf, &len) == 0 && len == 0 && buf
     && buf[0] == 0, "an empty file: 0 bytes, a buffer: %s", ERR);
  free(buf);
  buf = NULL;
  snprintf(q, sizeof q, "%s/r/missing", tmpdir);
  OK(sn_read_file(q, 100, true, &buf, &len) == -1
     && strstr(sn_error(), "No such file"), "a missing file: %s", WHY);
  snprintf(q, sizeof q, "%s/r/fifo", tmpdir);
  if (mkfifo(q, 0600) == 0) {
    /* Nobody writes: a blocking open would never return. */
    OK(sn_read_file(q, 100, true, &buf, &len) == -1
       && strstr(sn_error(), "not a regular file"),
       "a FIFO is refused at once when only regular files are allowed: %s",
       WHY);
  }
  else
    ok(0, "mkfifo %s: %s", q, strerror(errno));
  snprintf(q, sizeof q, "%s/r", tmpdir);
  OK(sn_read_file(q, 100, true, &buf, &len) == -1
     && strstr(sn_error(), "not a regular file"), "a directory: %s", WHY);

  /* Not only regular files: a pipe is read to its end. */
  {
    int fds[2];
    char path[64];

    if (pipe(fds) == 0) {
      if (write(fds[1], "through a pipe", 14) != 14)
        diag("short write to the pipe");
      close(fds[1]);
      snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
      OK(sn_read_file(path, 100, false, &buf, &len) == 0 && len == 14
         && memcmp(buf, "through a pipe", 14) == 0,
         "a pipe is read to its end: %s", ERR);
      free(buf);
      buf = NULL;
      close(fds[0]);
    }
  }
}

static void
test_mkdir_p(void)
{
  char p[600], f[600];
  struct stat st;

  snprintf(p, sizeof p, "%s/m/a/b/c", tmpdir);
  OK(sn_mkdir_p(p, 0750) == 0 && stat(p, &st) == 0 && S_ISDIR(st.st_mode),
     "mkdir -p makes every level: %s", ERR);
  ok((st.st_mode & 0777 & ~0750) == 0 && (st.st_mode & 0700) == 0700,
     "with no more than the mode asked (less the umask): %o",
     (unsigned) (st.st_mode & 0777));
  OK(sn_mkdir_p(p, 0750) == 0, "existing directories are fine: %s", ERR);
  snprintf(f, sizeof f, "%s/m/file", tmpdir);
  put(f, "x");
  snprintf(p, sizeof p, "%s/m/file/sub", tmpdir);
  OK(sn_mkdir_p(p, 0755) == -1 && strstr(sn_error(), "mkdir"),
     "a regular file in the way is an error: %s", WHY);
}

static void
test_atomic(void)
{
  char dir[600], path[700], target[700];
  struct sn_atomic_file f;
  struct stat st;
  char b[8];

  snprintf(dir, sizeof dir, "%s/a", tmpdir);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/out", dir);

  OK(sn_write_file_atomic(path, "first", 5, 0640, 1) == 0
     && strcmp(contents(path), "first") == 0 && stat(path, &st) == 0
     && (st.st_mode & 0777) == 0640 && entries(dir) == 1,
     "write_file_atomic: the bytes, the mode, no temporary left: %s", ERR);

  OK(sn_atomic_open(&f, path, NULL, 0) == 0 && f.fd >= 0
     && entries(dir) == 2, "open: a temporary beside the file: %s", ERR);
  if (write(f.fd, "half", 4) != 4)
    diag("short write");
  ok(strcmp(contents(path), "first") == 0,
     "while it is written, the old file is untouched");
  sn_atomic_abort(&f);
  ok(strcmp(contents(path), "first") == 0 && entries(dir) == 1 && f.tmp == NULL
     && f.fd == -1, "abort: the temporary is gone, the file unchanged");

  OK(sn_atomic_open(&f, path, NULL, 0) == 0
     && sn_write_all(f.fd, "second", 6) == 0 && sn_atomic_commit(&f, 1) == 0
     && strcmp(contents(path), "second") == 0 && entries(dir) == 1
     && stat(path, &st) == 0 && (st.st_mode & 0777) == 0644,
     "commit: replaced whole, mode 0644 by default, nothing left: %s", ERR);

  /* publish keeps the descriptor: the caller reads what it wrote. */
  OK(sn_atomic_open(&f, path, NULL, 0600) == 0
     && sn_write_all(f.fd, "third", 5) == 0 && sn_atomic_publish(&f, 0) == 0
     && f.fd >= 0 && pread(f.fd, b, 5, 0) == 5 && memcmp(b, "third", 5) == 0
     && strcmp(contents(path), "third") == 0 && entries(dir) == 1,
     "publish: renamed, and the descriptor still reads it: %s", ERR);
  if (f.fd >= 0)
    close(f.fd);

  /* A symlink at the final path is replaced, never followed. */
  snprintf(target, sizeof target, "%s/target", tmpdir);
  put(target, "precious");
  unlink(path);
  if (symlink(target, path) != 0)
    diag("symlink: %s", strerror(errno));
  OK(sn_write_file_atomic(path, "new", 3, 0, 0) == 0
     && lstat(path, &st) == 0 && S_ISREG(st.st_mode)
     && strcmp(contents(target), "precious") == 0,
     "a symlink at the path is replaced, its target untouched: %s", ERR);

  /* A template naming the temporary, as the caches do. */
  {
    char tmpl[700];

    snprintf(tmpl, sizeof tmpl, "%s/.0.%ld.XXXXXX", dir, (long) getpid());
    OK(sn_atomic_open(&f, path, tmpl, 0) == 0 && f.tmp
       && strncmp(f.tmp, tmpl, strlen(tmpl) - 6) == 0
       && strcmp(f.tmp, tmpl) != 0, "the template names the temporary: %s",
       f.tmp ? f.tmp : sn_error());
    sn_atomic_abort(&f);
  }

  /* Failures leave nothing behind. */
  snprintf(path, sizeof path, "%s/no/such/dir/out", dir);
  ok(sn_atomic_open(&f, path, NULL, 0) == -1 && errno == ENOENT
     && f.tmp == NULL && f.fd == -1,
     "open in a missing directory: -1, ENOENT, nothing held");
  snprintf(path, sizeof path, "%s/sub", dir);
  mkdir(path, 0755);
  snprintf(target, sizeof target, "%s/sub/x", dir);
  put(target, "x");
  /* rename(2) of a file over a directory fails. */
  {
    int before = entries(dir);

    ok(sn_atomic_open(&f, path, NULL, 0) == 0
       && sn_atomic_commit(&f, 0) == -1 && f.tmp == NULL
       && entries(dir) == before,
       "a commit that cannot rename removes the temporary (%d entries, %d "
       "before)", entries(dir), before);
  }
}

int
main(void)
{
  tap_tmpdir(tmpdir, sizeof tmpdir, "fdio");
  test_read_file();
  test_mkdir_p();
  test_atomic();
  tap_rm_tree(tmpdir);
  return done_testing();
}
