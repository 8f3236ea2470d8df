/* soci-nbd fuzzing: the dependency prefetch's readers of untrusted bytes
 * (lib/deps).  First byte even: the rest is an ELF file for
 * sn_elf_deps_read, whose reads must stay inside it and whose names must
 * be NUL-terminated strings of the file, within the bounds elf.h states.
 * Odd: the rest is a file table, one entry per line ("TYPE NAME[ LINK]",
 * TYPE r, l (symlink), h (hard link) or d), looked up with a few paths
 * through sn_deps_lookup, which must end (symlink loops, ".." above the
 * root, long names) on a regular file of the table or on nothing. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deps/deps.h"
#include "deps/elf.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
  fprintf(stderr, "deps: %s (last error: %s)\n", what, sn_error());
  abort();
}

struct mem {
  const uint8_t *p;
  size_t n;
};

static int
mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
  struct mem *m = opaque;

  if (off > m->n || len > m->n - off)
    fail("a read beyond the file");
  memcpy(buf, m->p + off, len);
  return 0;
}

static void
elf(const uint8_t *p, size_t n)
{
  struct mem m = { p, n };
  struct sn_elf_deps d;
  size_t i;
  int r = sn_elf_deps_read(mem_read, &m, n, &d);

  if (r != 0) {
    if (d.needed || d.nneeded || d.runpath)
      fail("a refused file left names");
    return;
  }
  if (d.nneeded > SN_ELF_MAX_NEEDED)
    fail("too many names");
  for (i = 0; i < d.nneeded; i++) {
    size_t len = strlen(d.needed[i]);

    if (len == 0 || len > SN_ELF_MAX_NAME ||
        memmem(p, n, d.needed[i], len + 1) == NULL)
      fail("a name that is not a string of the file");
  }
  if (d.runpath && (strlen(d.runpath) > SN_ELF_MAX_PATH ||
                    memmem(p, n, d.runpath, strlen(d.runpath) + 1) == NULL))
    fail("a run path that is not a string of the file");
  sn_elf_deps_free(&d);
}

static void
table(const uint8_t *p, size_t n)
{
  struct sn_ztoc *z = sn_ztoc_new();
  struct sn_deps_layer dl;
  struct sn_deps *d;
  size_t i = 0, nf = 0;
  static const char *const paths[] = {
    "lib/x86_64-linux-gnu/libc.so.6", "a", "a/b/c", "/a/../b", "usr/lib/x",
  };

  if (z == NULL)
    return;
  z->files = calloc(256, sizeof *z->files);
  while (z->files && i < n && nf < 256) {
    const uint8_t *eol = memchr(p + i, '\n', n - i);
    size_t len = eol ? (size_t) (eol - (p + i)) : n - i;
    const uint8_t *sp = len > 2 ? memchr(p + i + 2, ' ', len - 2) : NULL;
    struct sn_ztoc_file *f = &z->files[nf];

    if (len >= 2) {
      size_t nlen = sp ? (size_t) (sp - (p + i + 2)) : len - 2;

      f->ftype = p[i] == 'l' ? SN_FT_SYMLINK : p[i] == 'h' ? SN_FT_HARDLINK
        : p[i] == 'd' ? SN_FT_DIR : SN_FT_REG;
      f->size = f->ftype == SN_FT_REG ? 100 : 0;
      f->offset = 512 * (int64_t) (nf + 1);
      if (sn_bytes_set(&f->name, p + i + 2, nlen) == -1 ||
          (sp && sn_bytes_set(&f->linkname, sp + 1,
                              len - 2 - nlen - 1) == -1))
        break;
      nf++;
    }
    i += len + 1;
  }
  z->nfiles = nf;
  dl = (struct sn_deps_layer) { z, NULL };
  d = sn_deps_new(&dl, 1);
  for (i = 0; d && i < sizeof paths / sizeof *paths + nf; i++) {
    char buf[300];
    const char *path = buf;
    size_t layer = 7;
    const struct sn_ztoc_file *f;

    if (i < sizeof paths / sizeof *paths)
      path = paths[i];
    else {                      /* each name of the table */
      const struct sn_bytes *b = &z->files[i - sizeof paths / sizeof *paths].name;
      size_t l = b->len < sizeof buf - 1 ? b->len : sizeof buf - 1;

      memcpy(buf, b->data, l);
      buf[l] = 0;
    }
    f = sn_deps_lookup(d, path, &layer);
    if (f && (f < z->files || f >= z->files + nf || f->ftype != SN_FT_REG ||
              layer != 0))
      fail("a lookup ended on something else than a regular file");
  }
  sn_deps_free(d);
  sn_ztoc_free(z);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  if (data[0] % 2 == 0)
    elf(data + 1, size - 1);
  else
    table(data + 1, size - 1);
  return 0;
}
