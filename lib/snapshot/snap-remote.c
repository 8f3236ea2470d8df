/* soci-nbd: remote snapshots (docs/snapshotter.md) — a layer that
 * containerd is about to download and unpack is mounted lazily instead,
 * by `soci-nbd mount --layer` (its device shared with every other mount
 * of the layer), and committed under the name containerd will look for.
 *
 * The mount is made by running the soci-nbd command, not in this
 * process: the daemon is multithreaded, and soci-nbd mount forks a
 * supervisor that must not inherit its threads' locks.  Programs are run
 * with posix_spawn and an empty signal mask; their first error line
 * becomes the message. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "snapshot/snap-int.h"
#include "util/err.h"

extern char **environ;

/* Run argv (NULL-terminated); 0 if it exits 0, else -1 with the last
 * line it printed (or how it ended) as the message. */
static int
run(char *const *argv)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none;
  char out[4096], *line;
  size_t len = 0;
  int p[2], st, r;
  pid_t pid;
  ssize_t n;

  if (pipe2(p, O_CLOEXEC) == -1)
    return sn_set_error("pipe: %s", strerror(errno));
  sigemptyset(&none);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawnattr_init(&at);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
  r = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(p[1]);
  if (r != 0) {
    close(p[0]);
    return sn_set_error("%s: %s", argv[0], strerror(r));
  }
  while ((n = read(p[0], out + len, sizeof out - 1 - len)) > 0 ||
         (n == -1 && errno == EINTR))
    if (n > 0 && (len += (size_t) n) == sizeof out - 1)
      len = 0;                  /* keep the end, roughly */
  close(p[0]);
  while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
    ;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  out[len] = 0;
  while (len > 0 && out[len - 1] == '\n')
    out[--len] = 0;
  line = strrchr(out, '\n');
  line = line ? line + 1 : out;
  if (*line)
    return sn_set_error("%s", line);
  if (WIFEXITED(st))
    return sn_set_error("%s exited with status %d", argv[0],
                        WEXITSTATUS(st));
  return sn_set_error("%s was killed by signal %d", argv[0],
                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Run prefix (NULL-terminated) followed by the words given (up to NULL,
 * at most 7), as run does. */
static int
run_with(char *const *prefix, ...)
{
  size_t n = 0, k;
  va_list ap;
  char **v;
  const char *w;
  int r;

  while (prefix && prefix[n])
    n++;
  v = calloc(n + 8, sizeof *v);
  if (v == NULL)
    return sn_oom();
  for (k = 0; k < n; k++)
    v[k] = prefix[k];
  va_start(ap, prefix);
  while ((w = va_arg(ap, const char *)) != NULL && k < n + 7)
    v[k++] = (char *) w;
  va_end(ap);
  r = run(v);
  free(v);
  return r;
}

int
snap_remote_mount(struct sn_snapshots *s, const char *image,
                  const char *layer, const char *dir)
{
  return run_with(s->remote.mount_argv, "--layer", layer, image, dir,
                  (const char *) NULL);
}

int
snap_remote_umount(struct sn_snapshots *s, const char *dir)
{
  return run_with(s->remote.umount_argv, dir, (const char *) NULL);
}
