/* soci-nbd: reading an ELF file's DT_NEEDED names and run path from
 * untrusted bytes: the ELF header, the program headers, PT_DYNAMIC and the
 * part of the dynamic string table the names are in, each read once and
 * bounds-checked (docs/dependency-prefetch.md §2). */
#include <config.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "deps/elf.h"
#include "util/err.h"

enum {
  ET_EXEC = 2, ET_DYN = 3,
  PT_LOAD = 1, PT_DYNAMIC = 2,
  DT_NULL = 0, DT_NEEDED = 1, DT_STRTAB = 5, DT_STRSZ = 10, DT_RPATH = 15,
  DT_RUNPATH = 29,
};

struct elf {
  bool is64, be;
  const uint8_t *phdrs;
  size_t phnum, phentsize;
  uint64_t size;
};

static uint64_t
get(const struct elf *e, const uint8_t *p, int n)
{
  uint64_t v = 0;
  int i;

  for (i = 0; i < n; i++)
    v |= (uint64_t) p[e->be ? n - 1 - i : i] << (8 * i);
  return v;
}

/* A word of the class: 4 or 8 bytes. */
static uint64_t
word(const struct elf *e, const uint8_t *p)
{
  return get(e, p, e->is64 ? 8 : 4);
}

struct phdr {
  uint32_t type;
  uint64_t offset, vaddr, filesz;
};

static void
phdr_at(const struct elf *e, size_t k, struct phdr *ph)
{
  const uint8_t *p = e->phdrs + k * e->phentsize;

  ph->type = (uint32_t) get(e, p, 4);
  if (e->is64) {
    ph->offset = get(e, p + 8, 8);
    ph->vaddr = get(e, p + 16, 8);
    ph->filesz = get(e, p + 32, 8);
  }
  else {
    ph->offset = get(e, p + 4, 4);
    ph->vaddr = get(e, p + 8, 4);
    ph->filesz = get(e, p + 16, 4);
  }
}

/* Is [off, off+len) inside the file? */
static bool
in_file(const struct elf *e, uint64_t off, uint64_t len)
{
  return off <= e->size && len <= e->size - off;
}

/* The file offset of virtual address a, through the PT_LOAD holding it. */
static int
vaddr_to_off(const struct elf *e, uint64_t a, uint64_t *off, uint64_t *room)
{
  size_t k;

  for (k = 0; k < e->phnum; k++) {
    struct phdr ph;

    phdr_at(e, k, &ph);
    if (ph.type == PT_LOAD && a >= ph.vaddr && a - ph.vaddr < ph.filesz) {
      *off = ph.offset + (a - ph.vaddr);
      *room = ph.filesz - (a - ph.vaddr);
      if (*off < ph.offset || !in_file(e, ph.offset, ph.filesz))
        return sn_set_error("elf: PT_LOAD at %llu is outside the file",
                            (unsigned long long) ph.offset);
      return 0;
    }
  }
  return sn_set_error("elf: DT_STRTAB address %#llx is in no PT_LOAD",
                      (unsigned long long) a);
}

/* Read and check the header and program headers into e (e->phdrs
 * malloc'd).  1: not a dynamically linkable ELF file. */
static int
read_headers(sn_elf_read_fn read, void *opaque, struct elf *e,
             uint16_t *machine)
{
  uint8_t h[64];
  uint64_t phoff, type;
  size_t hlen, want, phbytes;
  uint8_t *ph;

  if (e->size < 52)
    return 1;
  hlen = e->size < sizeof h ? (size_t) e->size : sizeof h;
  if (read(opaque, h, hlen, 0) == -1)
    return -1;
  if (memcmp(h, "\177ELF", 4) != 0)
    return 1;
  if ((h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2) || h[6] != 1)
    return sn_set_error("elf: unknown class %u, data %u or version %u",
                        h[4], h[5], h[6]);
  e->is64 = h[4] == 2;
  e->be = h[5] == 2;
  if (e->is64 && hlen < 64)
    return sn_set_error("elf: header truncated at %zu bytes", hlen);
  type = get(e, h + 16, 2);
  *machine = (uint16_t) get(e, h + 18, 2);
  if (type != ET_EXEC && type != ET_DYN)
    return 1;
  phoff = e->is64 ? get(e, h + 32, 8) : get(e, h + 28, 4);
  e->phentsize = (size_t) get(e, h + (e->is64 ? 54 : 42), 2);
  e->phnum = (size_t) get(e, h + (e->is64 ? 56 : 44), 2);
  want = e->is64 ? 56 : 32;
  if (e->phnum == 0)
    return 1;
  if (e->phnum > SN_ELF_MAX_PHNUM)
    return sn_set_error("elf: %zu program headers (at most %d)", e->phnum,
                        SN_ELF_MAX_PHNUM);
  if (e->phentsize < want || e->phentsize > 256)
    return sn_set_error("elf: program header size %zu (expected %zu)",
                        e->phentsize, want);
  phbytes = e->phnum * e->phentsize;
  if (!in_file(e, phoff, phbytes))
    return sn_set_error("elf: program headers at %llu are outside the file",
                        (unsigned long long) phoff);
  if ((ph = malloc(phbytes)) == NULL)
    return sn_oom();
  if (read(opaque, ph, phbytes, phoff) == -1) {
    free(ph);
    return -1;
  }
  e->phdrs = ph;
  return 0;
}

/* A NUL-terminated name at offset o of the string table's first have
 * bytes (strsz in all): malloc'd into *name. */
static int
string_at(const uint8_t *tab, size_t have, uint64_t strsz, uint64_t o,
          size_t max, const char *what, char **name)
{
  const uint8_t *nul;
  size_t n;

  if (o >= strsz || o >= have)
    return sn_set_error("elf: %s at %llu is outside the string table "
                        "(%llu bytes)", what, (unsigned long long) o,
                        (unsigned long long) strsz);
  n = have - (size_t) o;
  nul = memchr(tab + o, 0, n);
  if (nul == NULL)
    return sn_set_error("elf: %s at %llu is not NUL-terminated", what,
                        (unsigned long long) o);
  n = (size_t) (nul - (tab + o));
  if (n == 0 || n > max)
    return sn_set_error("elf: %s at %llu is %zu bytes long", what,
                        (unsigned long long) o, n);
  if ((*name = strndup((const char *) tab + o, n)) == NULL)
    return sn_oom();
  return 0;
}

int
sn_elf_deps_read(sn_elf_read_fn read, void *opaque, uint64_t size,
                 struct sn_elf_deps *out)
{
  struct elf e = { .size = size };
  struct phdr dyn = { 0 };
  uint64_t need[SN_ELF_MAX_NEEDED], strtab = 0, strsz = 0, path = 0;
  uint64_t stroff = 0, room = 0, maxo = 0;
  bool have_strtab = false, have_strsz = false, have_path = false;
  bool found = false;
  size_t k, nneed = 0, esize, have;
  uint8_t *d = NULL, *tab = NULL;
  int r;

  memset(out, 0, sizeof *out);
  if ((r = read_headers(read, opaque, &e, &out->machine)) != 0)
    goto done;
  for (k = 0; k < e.phnum && !found; k++) {
    phdr_at(&e, k, &dyn);
    found = dyn.type == PT_DYNAMIC;
  }
  if (!found) {
    r = 1;
    goto done;
  }
  esize = e.is64 ? 16 : 8;
  if (dyn.filesz > SN_ELF_MAX_DYNAMIC)
    dyn.filesz = SN_ELF_MAX_DYNAMIC;        /* the names come first */
  dyn.filesz -= dyn.filesz % esize;
  r = -1;
  if (!in_file(&e, dyn.offset, dyn.filesz)) {
    sn_set_error("elf: PT_DYNAMIC at %llu is outside the file",
                 (unsigned long long) dyn.offset);
    goto done;
  }
  if ((d = malloc(dyn.filesz ? dyn.filesz : 1)) == NULL) {
    sn_oom();
    goto done;
  }
  if (read(opaque, d, dyn.filesz, dyn.offset) == -1)
    goto done;
  for (k = 0; k + esize <= dyn.filesz; k += esize) {
    uint64_t tag = word(&e, d + k), val = word(&e, d + k + esize / 2);

    if (tag == DT_NULL)
      break;
    switch (tag) {
    case DT_NEEDED:
      if (nneed < SN_ELF_MAX_NEEDED)
        need[nneed++] = val;
      break;
    case DT_STRTAB:
      strtab = val;
      have_strtab = true;
      break;
    case DT_STRSZ:
      strsz = val;
      have_strsz = true;
      break;
    case DT_RUNPATH:            /* it overrides DT_RPATH */
    case DT_RPATH:
      if (!have_path || tag == DT_RUNPATH)
        path = val;
      have_path = true;
      break;
    }
  }
  if (nneed == 0 && !have_path) {
    r = 0;
    goto done;
  }
  if (!have_strtab || !have_strsz) {
    sn_set_error("elf: DT_NEEDED without DT_STRTAB and DT_STRSZ");
    goto done;
  }
  if (vaddr_to_off(&e, strtab, &stroff, &room) == -1)
    goto done;
  if (strsz > room || !in_file(&e, stroff, strsz)) {
    sn_set_error("elf: string table of %llu bytes at %llu is outside its "
                 "segment", (unsigned long long) strsz,
                 (unsigned long long) stroff);
    goto done;
  }
  /* Only the table's bytes up to the last name (and its room). */
  for (k = 0; k < nneed; k++)
    if (need[k] > maxo)
      maxo = need[k];
  if (have_path && path > maxo)
    maxo = path;
  if (maxo >= strsz) {
    sn_set_error("elf: name at %llu is outside the string table "
                 "(%llu bytes)", (unsigned long long) maxo,
                 (unsigned long long) strsz);
    goto done;
  }
  have = strsz - maxo > 4096 ? (size_t) maxo + 4096 : (size_t) strsz;
  if (have > SN_ELF_MAX_STRTAB) {
    sn_set_error("elf: names beyond %zu bytes of the string table",
                 SN_ELF_MAX_STRTAB);
    goto done;
  }
  if ((tab = malloc(have)) == NULL ||
      (out->needed = calloc(nneed ? nneed : 1, sizeof *out->needed)) == NULL) {
    sn_oom();
    goto done;
  }
  if (read(opaque, tab, have, stroff) == -1)
    goto done;
  for (k = 0; k < nneed; k++) {
    if (string_at(tab, have, strsz, need[k], SN_ELF_MAX_NAME, "DT_NEEDED name",
                  &out->needed[k]) == -1)
      goto done;
    out->nneeded++;
  }
  if (have_path && string_at(tab, have, strsz, path, SN_ELF_MAX_PATH, "run path",
                             &out->runpath) == -1)
    goto done;
  r = 0;

done:
  free((void *) e.phdrs);
  free(d);
  free(tab);
  if (r != 0) {
    uint16_t m = out->machine;

    sn_elf_deps_free(out);
    out->machine = m;
  }
  return r;
}

void
sn_elf_deps_free(struct sn_elf_deps *d)
{
  size_t k;

  for (k = 0; k < d->nneeded; k++)
    free(d->needed[k]);
  free(d->needed);
  free(d->runpath);
  memset(d, 0, sizeof *d);
}
