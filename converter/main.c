/* soci-nbd: command-line entry point — dispatches to the subcommands and
 * holds the helpers they share (error printing, size parsing, output). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util/fdio.h"

bool cli_quiet;

/* "soci-nbd: " + the formatted message, then ": " + lib when both are
 * given (either may be NULL), on one stderr line. */
static void vfail(const char *fmt, va_list ap, const char *lib)
  SN_PRINTF(1, 0);

static void
vfail(const char *fmt, va_list ap, const char *lib)
{
  fputs("soci-nbd: ", stderr);
  if (fmt) {
    vfprintf(stderr, fmt, ap);
    if (lib)
      fputs(": ", stderr);
  }
  if (lib)
    fputs(lib, stderr);
  fputc('\n', stderr);
}

int
cli_fail(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vfail(fmt, ap, NULL);
  va_end(ap);
  return 1;
}

int
cli_fail_lib(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vfail(fmt, ap, sn_error());
  va_end(ap);
  return 1;
}

int
cli_usage_error(const char *cmd, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vfail(fmt, ap, NULL);
  va_end(ap);
  fprintf(stderr, "Try 'soci-nbd %s --help'.\n", cmd);
  return 2;
}

/* Decimal digits with an optional K/M/G/T (then "B" or "iB"), all powers
 * of 1024; -1 on anything else, a sign or an overflow of int64_t. */
int
cli_parse_size(const char *s, int64_t *out)
{
  char *end;
  unsigned long long v;
  int shift = 0;

  errno = 0;
  if (*s == '-' || *s == '\0')
    return -1;
  v = strtoull(s, &end, 10);
  if (errno || end == s)
    return -1;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: return -1;
  }
  if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
    end += strlen(end);
  if (*end != '\0' || v > (unsigned long long) (INT64_MAX >> shift))
    return -1;
  *out = (int64_t) (v << shift);
  return 0;
}

/* Files are synced before the rename; errors are set with the path, for
 * cli_fail_lib. */
int
cli_write_file(const char *path, const void *buf, size_t len)
{
  if (strcmp(path, "-") == 0) {
    if (sn_write_all(STDOUT_FILENO, buf, len) == -1)
      return sn_set_error("stdout: %s", strerror(errno));
    return 0;
  }
  if (sn_write_file_atomic(path, buf, len, 0644, 1) == -1)
    return sn_set_error("%s: %s", path, strerror(errno));
  return 0;
}

/* The top-level help: one line per command (each has its own --help). */
static void
usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd COMMAND [ARGS...]\n"
"\n"
"Build and inspect SOCI indexes (ztocs) for lazily loaded container images,\n"
"and mount images from registries as lazily fetched NBD block devices.\n"
"\n"
"Commands:\n"
"  ztoc create LAYER [-o FILE]    build a ztoc from a local tar or tar.gz layer\n"
"  ztoc info ZTOC                 print a ztoc as JSON (spans, files)\n"
"  ztoc ls ZTOC                   list the files of a ztoc, like tar -tv\n"
"  ztoc get-file LAYER ZTOC PATH  extract one file through its spans only\n"
"  inspect IMAGE                  resolve an image: manifest, config, layers\n"
"  mkfs -o IMAGE LAYER...         write the squashfs image of local layers\n"
"  create IMAGE                   build and push a SOCI index v1 (referrer)\n"
"  convert SRC DST                SOCI-enable an image (index v2), as soci does\n"
"  prefetch add SRC RECORD DST    attach a prefetch record (nbdkit soci\n"
"                                 record=FILE) to a SOCI-enabled image\n"
"  index list IMAGE               list the SOCI indexes of an image\n"
"  index info IMAGE [DIGEST]      print a SOCI index manifest\n"
"  mount IMAGE DIR                serve IMAGE over NBD and mount it on DIR\n"
"                                 (--overlay, --flat, --rw; root only)\n"
"  umount DIR                     undo soci-nbd mount\n"
"  mounts                         list the mounts of soci-nbd mount\n"
"\n"
"Options:\n"
"  -h, --help                     show this help (also after a command)\n"
"  -V, --version                  show the version\n"
"\n"
"See soci-nbd(1) for details.\n");
}

/* Dispatch on argv[1]; each command gets argv from its own name on, as
 * getopt expects. */
int
main(int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : NULL;

  if (cmd == NULL) {
    usage(stderr);
    return 2;
  }
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
      strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
    printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
    return 0;
  }
  if (strcmp(cmd, "ztoc") == 0)
    return cmd_ztoc(argc - 1, argv + 1);
  if (strcmp(cmd, "inspect") == 0)
    return cmd_inspect(argc - 1, argv + 1);
  if (strcmp(cmd, "mkfs") == 0)
    return cmd_mkfs(argc - 1, argv + 1);
  if (strcmp(cmd, "create") == 0)
    return cmd_create(argc - 1, argv + 1);
  if (strcmp(cmd, "convert") == 0)
    return cmd_convert(argc - 1, argv + 1);
  if (strcmp(cmd, "prefetch") == 0)
    return cmd_prefetch(argc - 1, argv + 1);
  if (strcmp(cmd, "index") == 0)
    return cmd_index(argc - 1, argv + 1);
  if (strcmp(cmd, "mount") == 0)
    return cmd_mount(argc - 1, argv + 1);
  if (strcmp(cmd, "umount") == 0)
    return cmd_umount(argc - 1, argv + 1);
  if (strcmp(cmd, "mounts") == 0)
    return cmd_mounts(argc - 1, argv + 1);
  fprintf(stderr, "soci-nbd: unknown command '%s'\n", cmd);
  fprintf(stderr, "Try 'soci-nbd --help'.\n");
  return 2;
}
