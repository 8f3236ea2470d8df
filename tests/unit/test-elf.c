/* soci-nbd tests: sn_elf_deps_read (lib/deps/elf.c) and the dependency
 * prefetch's path lookup (lib/deps/deps.c) — the DT_NEEDED names of real
 * binaries agree with `readelf -d`; synthetic ELF files of both classes
 * and byte orders parse; hostile ones (bad offsets and counts, names
 * outside the string table or unterminated, every truncation, random
 * flips) give an error or "not ELF", never a crash; paths resolve through
 * symlinks, "..", hard links and whiteouts as a kernel would. */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deps/deps.h"
#include "deps/elf.h"
#include "util/err.h"
#include "tap.h"

struct mem {
  const uint8_t *p;
  size_t n;
  size_t reads;
};

static int
mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
  struct mem *m = opaque;

  m->reads++;
  if (off > m->n || len > m->n - off)
    return sn_set_error("test: read [%llu,+%zu) beyond %zu bytes",
                        (unsigned long long) off, len, m->n);
  memcpy(buf, m->p + off, len);
  return 0;
}

static int
parse(const uint8_t *p, size_t n, struct sn_elf_deps *d)
{
  struct mem m = { p, n, 0 };

  return sn_elf_deps_read(mem_read, &m, n, d);
}

/* ---- synthetic files -------------------------------------------------- */

struct shape {
  bool is64, be;
  uint16_t type;                /* e_type */
  bool no_dynamic;
  uint64_t need_off[3];         /* string offsets of three DT_NEEDED */
  uint64_t strsz_delta;         /* added to DT_STRSZ */
  uint64_t strtab_delta;        /* added to DT_STRTAB's address */
  uint64_t dyn_off_delta;       /* added to PT_DYNAMIC's offset */
  uint16_t phnum;               /* 0: 2 */
};

#define BASE 0x400000
static const char strtab[] = "\0libfoo.so.1\0libc.so.6\0$ORIGIN/../lib\0";
enum { S_FOO = 1, S_LIBC = 13, S_RUNPATH = 23 };

static void
put(uint8_t *p, uint64_t v, int n, bool be)
{
  int i;

  for (i = 0; i < n; i++)
    p[be ? n - 1 - i : i] = (uint8_t) (v >> (8 * i));
}

/* Header, a PT_LOAD of the whole file, PT_DYNAMIC, then the dynamic
 * section and the string table.  Returns the size. */
static size_t
build(uint8_t *f, const struct shape *s)
{
  bool w = s->is64, be = s->be;
  size_t ehs = w ? 64 : 52, phs = w ? 56 : 32, ds = w ? 16 : 8, wd = w ? 8 : 4;
  size_t dyn = ehs + 2 * phs, ndyn = 7, str = dyn + ndyn * ds;
  size_t total = str + sizeof strtab, k = 0;
  uint8_t *ph;
  uint64_t tags[7][2] = {
    { 1, s->need_off[0] }, { 1, s->need_off[1] }, { 1, s->need_off[2] },
    { 29, S_RUNPATH }, { 5, BASE + str + s->strtab_delta },
    { 10, sizeof strtab + s->strsz_delta }, { 0, 0 },
  };

  memset(f, 0, total);
  memcpy(f, "\177ELF", 4);
  f[4] = w ? 2 : 1;
  f[5] = be ? 2 : 1;
  f[6] = 1;
  put(f + 16, s->type ? s->type : 3, 2, be);
  put(f + 18, w ? 62 : 3, 2, be);
  put(f + 20, 1, 4, be);
  put(f + (w ? 32 : 28), ehs, (int) wd, be);
  put(f + (w ? 54 : 42), phs, 2, be);
  put(f + (w ? 56 : 44), s->phnum ? s->phnum : 2, 2, be);
  for (k = 0; k < 2; k++) {
    uint64_t type = k == 0 ? 1 : (s->no_dynamic ? 4 : 2);
    uint64_t off = k == 0 ? 0 : dyn + s->dyn_off_delta;
    uint64_t size = k == 0 ? total : ndyn * ds;

    ph = f + ehs + k * phs;
    put(ph, type, 4, be);
    if (w) {
      put(ph + 8, off, 8, be);
      put(ph + 16, BASE + off, 8, be);
      put(ph + 32, size, 8, be);
      put(ph + 40, size, 8, be);
    }
    else {
      put(ph + 4, off, 4, be);
      put(ph + 8, BASE + off, 4, be);
      put(ph + 16, size, 4, be);
      put(ph + 20, size, 4, be);
    }
  }
  for (k = 0; k < ndyn; k++) {
    put(f + dyn + k * ds, tags[k][0], (int) wd, be);
    put(f + dyn + k * ds + wd, tags[k][1], (int) wd, be);
  }
  memcpy(f + str, strtab, sizeof strtab);
  return total;
}

static struct shape
good(bool is64, bool be)
{
  return (struct shape) { .is64 = is64, .be = be,
                          .need_off = { S_FOO, S_LIBC, S_FOO } };
}

static void
synthetic(void)
{
  uint8_t f[1024];
  struct sn_elf_deps d;
  size_t n, cut;
  int c, r;

  for (c = 0; c < 4; c++) {
    struct shape s = good(c & 1, c & 2);

    n = build(f, &s);
    r = parse(f, n, &d);
    ok(r == 0 && d.nneeded == 3 && strcmp(d.needed[0], "libfoo.so.1") == 0 &&
       strcmp(d.needed[1], "libc.so.6") == 0 &&
       strcmp(d.needed[2], "libfoo.so.1") == 0 && d.runpath &&
       strcmp(d.runpath, "$ORIGIN/../lib") == 0 &&
       d.machine == (c & 1 ? 62 : 3),
       "ELF%d %s: names, run path and machine read (%d: %s)", c & 1 ? 64 : 32,
       c & 2 ? "big-endian" : "little-endian", r, r ? sn_error() : "ok");
    sn_elf_deps_free(&d);
    /* Every truncation: an error or "not ELF", never a crash. */
    for (cut = 0, r = 0; cut < n && r != 2; cut++) {
      int t = parse(f, cut, &d);

      if (t == 0)
        r = 2;
      sn_elf_deps_free(&d);
    }
    ok(r != 2, "ELF%d %s: each of its %zu truncations refused",
       c & 1 ? 64 : 32, c & 2 ? "big-endian" : "little-endian", n);
  }

  {
    struct { const char *what; struct shape s; int want; } bad[] = {
      { "a name past DT_STRSZ", { .is64 = 1, .need_off = { 500 } }, -1 },
      { "an empty name", { .is64 = 1, .need_off = { 0 } }, -1 },
      { "a string table outside every PT_LOAD",
        { .is64 = 1, .need_off = { S_FOO }, .strtab_delta = 1 << 20 }, -1 },
      { "a string table longer than its segment",
        { .is64 = 1, .need_off = { S_FOO }, .strsz_delta = 1 << 20 }, -1 },
      { "PT_DYNAMIC beyond the file",
        { .is64 = 1, .need_off = { S_FOO }, .dyn_off_delta = 1 << 30 }, -1 },
      { "65535 program headers",
        { .is64 = 1, .need_off = { S_FOO }, .phnum = 65535 }, -1 },
      { "no PT_DYNAMIC (static)",
        { .is64 = 1, .need_off = { S_FOO }, .no_dynamic = 1 }, 1 },
      { "a relocatable object", { .is64 = 1, .type = 1 }, 1 },
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
      n = build(f, &bad[i].s);
      r = parse(f, n, &d);
      OK(r == bad[i].want && d.nneeded == 0 && d.needed == NULL &&
         d.runpath == NULL, "%s: %s (%d: %s)", bad[i].what,
         bad[i].want == 1 ? "not a dynamic ELF" : "refused", r,
         r == -1 ? sn_error() : "-");
      sn_elf_deps_free(&d);
    }
  }

  /* The run path, last in the table, loses its NUL (and the table's). */
  {
    struct shape s = good(true, false);

    n = build(f, &s);
    f[n - 2] = f[n - 1] = 'x';
    r = parse(f, n, &d);
    ok(r == -1 && strstr(sn_error(), "NUL"), "an unterminated name: "
       "refused (%s)", sn_error());
    sn_elf_deps_free(&d);
  }

  ok(parse((const uint8_t *) "#!/bin/sh\necho hello, this is not ELF at all\n",
           46, &d) == 1 && d.nneeded == 0, "a script: not ELF");

  /* Random flips of the good file: every name that comes out is a
   * NUL-terminated string of the file itself. */
  {
    unsigned seed = 12345;
    int i, parsed = 0, foreign = 0;

    for (i = 0; i < 20000; i++) {
      struct shape s = good(i & 1, i & 2);
      int k, flips = 1 + i % 4;
      size_t j;

      n = build(f, &s);
      for (k = 0; k < flips; k++) {
        seed = seed * 1103515245 + 12345;
        f[(seed >> 8) % n] ^= (uint8_t) (1 + (seed >> 20) % 255);
      }
      r = parse(f, n, &d);
      parsed += r == 0;
      for (j = 0; r == 0 && j < d.nneeded; j++) {
        size_t len = strlen(d.needed[j]);
        const uint8_t *at = memmem(f, n, d.needed[j], len + 1);

        if (at == NULL || len == 0 || len > SN_ELF_MAX_NAME)
          foreign++;
      }
      sn_elf_deps_free(&d);
    }
    ok(foreign == 0 && parsed > 0, "20000 files with random flips: %d "
       "parsed, every name one of the file's strings", parsed);
  }
}

/* ---- real binaries against readelf ------------------------------------ */

static void
real(const char *path)
{
  char cmd[512], line[1024], want[4096] = "", got[4096] = "";
  struct sn_elf_deps d;
  size_t n, i;
  uint8_t *p = slurp(path, &n);
  FILE *f;
  int r;

  snprintf(cmd, sizeof cmd, "readelf -d '%s'", path);
  f = popen(cmd, "r");
  if (f == NULL) {
    ok(0, "%s: readelf", path);
    free(p);
    return;
  }
  while (fgets(line, sizeof line, f)) {
    char *a = strstr(line, "(NEEDED)"), *b, *e;

    if (a && (b = strchr(a, '[')) && (e = strchr(b, ']'))) {
      *e = 0;
      strncat(want, b + 1, sizeof want - strlen(want) - 2);
      strcat(want, " ");
    }
  }
  pclose(f);
  r = parse(p, n, &d);
  for (i = 0; r == 0 && i < d.nneeded; i++) {
    strncat(got, d.needed[i], sizeof got - strlen(got) - 2);
    strcat(got, " ");
  }
  ok(r == 0 && want[0] && strcmp(want, got) == 0, "%s: DT_NEEDED as readelf "
     "says: [%s] (read [%s])", path, want, r == 0 ? got : sn_error());
  sn_elf_deps_free(&d);
  free(p);
}

/* ---- path lookup ------------------------------------------------------ */

struct entry { const char *name; enum sn_ftype t; const char *link;
               int64_t size; };

static void
fill(struct sn_ztoc *z, const struct entry *e, size_t n)
{
  size_t i;

  z->files = calloc(n, sizeof *z->files);
  z->nfiles = n;
  for (i = 0; i < n; i++) {
    struct sn_ztoc_file *f = &z->files[i];

    sn_bytes_set(&f->name, e[i].name, strlen(e[i].name));
    if (e[i].link)
      sn_bytes_set(&f->linkname, e[i].link, strlen(e[i].link));
    f->ftype = e[i].t;
    f->size = e[i].size;
    f->offset = 512 * (int64_t) (i + 1);
  }
}

static void
lookups(void)
{
  static const struct entry low[] = {
    { "./", SN_FT_DIR, NULL, 0 },
    { "./lib", SN_FT_SYMLINK, "usr/lib", 0 },
    { "./usr/lib/x86_64-linux-gnu/libc.so.6", SN_FT_REG, NULL, 100 },
    { "./usr/lib/x86_64-linux-gnu/libfoo.so.1", SN_FT_SYMLINK,
      "libfoo.so.1.2.3", 0 },
    { "./usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", SN_FT_REG, NULL, 100 },
    { "./usr/lib/x86_64-linux-gnu/libbar.so", SN_FT_SYMLINK,
      "../../../opt/bar/./lib/libbar.so", 0 },
    { "./opt/bar/lib/libbar.so", SN_FT_REG, NULL, 100 },
    { "./usr/lib/x86_64-linux-gnu/libhard.so", SN_FT_HARDLINK,
      "usr/lib/x86_64-linux-gnu/libc.so.6", 0 },
    { "./usr/lib/loop1", SN_FT_SYMLINK, "loop2", 0 },
    { "./usr/lib/loop2", SN_FT_SYMLINK, "/usr/lib/loop1", 0 },
    { "./usr/lib/gone.so", SN_FT_REG, NULL, 100 },
    { "./usr/lib/empty.so", SN_FT_REG, NULL, 0 },
    { "./usr/lib/abs", SN_FT_SYMLINK, "/usr/lib/x86_64-linux-gnu", 0 },
  };
  static const struct entry high[] = {
    { "usr/lib/.wh.gone.so", SN_FT_REG, NULL, 0 },
    { "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", SN_FT_REG, NULL, 200 },
  };
  struct sn_ztoc *z0 = sn_ztoc_new(), *z1 = sn_ztoc_new();
  struct sn_deps_layer dl[2];
  struct sn_deps *d;
  static const struct { const char *path; int layer; size_t file; } want[] = {
    { "lib/x86_64-linux-gnu/libc.so.6", 0, 2 },
    { "/lib/x86_64-linux-gnu/libc.so.6", 0, 2 },
    { "lib/x86_64-linux-gnu/libfoo.so.1", 1, 1 },
    { "usr/lib/x86_64-linux-gnu/libbar.so", 0, 6 },
    { "usr/lib/x86_64-linux-gnu/libhard.so", 0, 2 },
    { "usr/lib/abs/libc.so.6", 0, 2 },
    { "usr/lib/abs/../x86_64-linux-gnu/./libc.so.6", 0, 2 },
    { "usr/lib/loop1", -1, 0 },
    { "usr/lib/gone.so", -1, 0 },
    { "usr/lib/empty.so", -1, 0 },
    { "usr/lib/x86_64-linux-gnu", -1, 0 },
    { "usr/lib/nothing.so", -1, 0 },
  };
  size_t i;

  fill(z0, low, sizeof low / sizeof *low);
  fill(z1, high, sizeof high / sizeof *high);
  dl[0] = (struct sn_deps_layer) { z0, NULL };
  dl[1] = (struct sn_deps_layer) { z1, NULL };
  d = sn_deps_new(dl, 2);
  OK(d != NULL, "a path index over two layers: %s", ERR);
  for (i = 0; d && i < sizeof want / sizeof *want; i++) {
    size_t layer = 99;
    const struct sn_ztoc_file *f = sn_deps_lookup(d, want[i].path, &layer);
    const struct sn_ztoc *z = want[i].layer == 1 ? z1 : z0;

    if (want[i].layer < 0)
      ok(f == NULL, "%s: no regular file", want[i].path);
    else
      ok(f == &z->files[want[i].file] && layer == (size_t) want[i].layer,
         "%s: file %zu of layer %d", want[i].path, want[i].file,
         want[i].layer);
  }
  sn_deps_free(d);
  sn_ztoc_free(z0);
  sn_ztoc_free(z1);
}

int
main(void)
{
  synthetic();
  real("/usr/bin/ls");
  real("/usr/bin/apt-cache");
  {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

    if (n > 0) {
      self[n] = 0;
      real(self);
    }
    else
      ok(0, "readlink /proc/self/exe");
  }
  lookups();
  return done_testing();
}
