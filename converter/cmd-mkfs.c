/* soci-nbd: the "mkfs" command — write the tar-identity squashfs image of
 * local layer files (tar or tar.gz, bottom first) to a file: the flattened
 * image, or with --layer the overlayfs image of one layer.  The ztocs are
 * built in memory; the tar bytes are read through verified spans
 * (lib/span/layer.h), exactly as the nbdkit plugin will serve them. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soci/build.h"
#include "util/fdio.h"
#include "cli.h"
#include "span/layer.h"
#include "squashfs/sqfs.h"
#include "soci/ztoc.h"

#define CHUNK (1024 * 1024)

/* The mkfs help text. */
static void
mkfs_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd mkfs -o IMAGE [--layer] LAYER [LAYER...]\n"
"\n"
"Write the squashfs image of local layer files (tar or tar.gz, bottom\n"
"first).  Each layer's uncompressed tar is stored verbatim in the image;\n"
"files' data blocks point into it.  The kernel mounts the result:\n"
"  mount -t squashfs -o loop,ro IMAGE DIR\n"
"\n"
"  -o, --output FILE        the image to write (required)\n"
"  -l, --layer              one layer, for overlayfs: whiteouts become\n"
"                           0/0 char devices and opaque directories get\n"
"                           trusted.overlay.opaque=y (default: all layers\n"
"                           flattened with OCI semantics)\n"
"  -b, --block-size N       squashfs block size, a power of two from 4K\n"
"                           to 1M (default 128K)\n"
"  -q, --quiet              print no warnings and no summary\n"
"  -h, --help               show this help\n");
}

struct source {
  struct sn_layer **layers;
  size_t n;
};

/* sqfs read callback: tar bytes through the layer's verified spans. */
static int
read_tar(void *opaque, size_t layer, void *buf, size_t len, uint64_t off)
{
  struct source *s = opaque;

  return sn_layer_read(s->layers[layer], buf, len, (int64_t) off);
}

/* sqfs warnings (dropped xattrs...) on stderr unless --quiet. */
static void
warn(void *opaque, const char *msg)
{
  (void) opaque;
  if (!cli_quiet)
    fprintf(stderr, "soci-nbd: warning: %s\n", msg);
}

/* Stream the whole image into path, through a temporary file renamed
 * over it when complete (util/fdio.h). */
static int
write_image(const char *path, const struct sn_sqfs *img, struct source *s)
{
  uint64_t size = sn_sqfs_size(img), off;
  uint8_t *buf = malloc(CHUNK);
  struct sn_atomic_file f;
  char *tmpl = NULL;
  int r;

  if (buf == NULL || asprintf(&tmpl, "%s.tmp.%ld.XXXXXX", path,
                              (long) getpid()) == -1) {
    free(buf);
    return cli_fail("out of memory");
  }
  r = sn_atomic_open(&f, path, tmpl, 0644);
  free(tmpl);
  if (r == -1)
    goto io_error;
  for (off = 0; off < size; off += CHUNK) {
    size_t n = size - off < CHUNK ? (size_t) (size - off) : CHUNK;

    if (sn_sqfs_read(img, buf, n, off, read_tar, s) == -1) {
      cli_fail_lib("%s", path);
      sn_atomic_abort(&f);
      free(buf);
      return 1;
    }
    if (sn_write_all(f.fd, buf, n) == -1) {
      sn_atomic_abort(&f);
      goto io_error;
    }
  }
  if (sn_atomic_commit(&f, 1) == -1)
    goto io_error;
  free(buf);
  return 0;

io_error:
  cli_fail("%s: %s", path, strerror(errno));
  free(buf);
  return 1;
}

/* Build each layer's ztoc in memory, open it as a layer over its file,
 * build the squashfs description and stream the image out.  Returns the
 * exit status. */
int
cmd_mkfs(int argc, char **argv)
{
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "layer", no_argument, NULL, 'l' },
    { "block-size", required_argument, NULL, 'b' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct sn_sqfs_opts so = { .mode = SN_SQFS_FLAT, .warn = warn };
  const char *output = NULL;
  const struct sn_ztoc **ztocs = NULL;
  struct source src = { NULL, 0 };
  struct sn_sqfs *img = NULL;
  int *fds = NULL;
  int64_t bs;
  size_t i, n;
  int c, r = 1;

  while ((c = getopt_long(argc, argv, "o:lb:qh", opts, NULL)) != -1) {
    switch (c) {
    case 'o': output = optarg; break;
    case 'l': so.mode = SN_SQFS_LAYER; break;
    case 'b':
      if (cli_parse_size(optarg, &bs) == -1 || bs < 4096 || bs > (1 << 20) ||
          (bs & (bs - 1)) != 0)
        return cli_usage_error("mkfs", "invalid block size '%s' (a power "
                               "of two from 4K to 1M)", optarg);
      so.block_size = (uint32_t) bs;
      break;
    case 'q': cli_quiet = true; break;
    case 'h': mkfs_usage(stdout); return 0;
    default: return cli_usage_error("mkfs", NULL);
    }
  }
  if (output == NULL)
    return cli_usage_error("mkfs", "missing -o IMAGE");
  n = (size_t) (argc - optind);
  if (n == 0)
    return cli_usage_error("mkfs", "expected at least one LAYER");
  if (so.mode == SN_SQFS_LAYER && n != 1)
    return cli_usage_error("mkfs", "--layer takes exactly one LAYER");

  src.layers = calloc(n, sizeof *src.layers);
  ztocs = calloc(n, sizeof *ztocs);
  fds = malloc(n * sizeof *fds);
  if (src.layers == NULL || ztocs == NULL || fds == NULL) {
    cli_fail("out of memory");
    goto out;
  }
  for (i = 0; i < n; i++)
    fds[i] = -1;
  for (i = 0; i < n; i++) {
    const char *path = argv[optind + i];
    struct sn_ztoc *z = sn_ztoc_build_file(path, NULL, NULL);

    if (z == NULL) {
      cli_fail_lib("%s", path);
      goto out;
    }
    fds[i] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[i] == -1) {
      sn_ztoc_free(z);
      cli_fail("%s: %s", path, strerror(errno));
      goto out;
    }
    src.layers[i] = sn_layer_new(z, sn_blob_read_fd, &fds[i]);
    if (src.layers[i] == NULL) {
      cli_fail_lib("%s", path);
      goto out;
    }
    src.n = i + 1;
    ztocs[i] = sn_layer_ztoc(src.layers[i]);
  }

  img = sn_sqfs_new(ztocs, n, &so);
  if (img == NULL) {
    cli_fail_lib(NULL);
    goto out;
  }
  r = write_image(output, img, &src);
  if (r == 0 && !cli_quiet)
    printf("%s: %" PRIu64 " bytes, %" PRIu32 " inodes\n", output,
            sn_sqfs_size(img), sn_sqfs_inode_count(img));

out:
  sn_sqfs_free(img);
  for (i = 0; i < src.n; i++)
    sn_layer_free(src.layers[i]);
  for (i = 0; fds && i < n; i++)
    if (fds[i] != -1)
      close(fds[i]);
  free(fds);
  free(ztocs);
  free(src.layers);
  return r;
}
