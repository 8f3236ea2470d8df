/* soci-nbd: the shared-library names an ELF file asks the dynamic linker
 * for (DT_NEEDED), read from untrusted bytes (docs/dependency-prefetch.md).
 *
 * Ownership: sn_elf_deps_read fills *out with memory the caller frees with
 * sn_elf_deps_free.  Errors follow err.h.
 */
#ifndef SN_ELF_H
#define SN_ELF_H

#include <stddef.h>
#include <stdint.h>

/* Read len bytes at off of the file into buf: 0, or -1 (error set). */
typedef int (*sn_elf_read_fn)(void *opaque, void *buf, size_t len,
                              uint64_t off);

/* Bounds on what one file may make the reader read or keep. */
#define SN_ELF_MAX_PHNUM 512
#define SN_ELF_MAX_DYNAMIC ((size_t) 64 << 10)    /* bytes of PT_DYNAMIC */
#define SN_ELF_MAX_STRTAB ((size_t) 1 << 20)      /* bytes of DT_STRTAB */
#define SN_ELF_MAX_NEEDED 256
#define SN_ELF_MAX_NAME 255
#define SN_ELF_MAX_PATH 4095                      /* of the run path */

struct sn_elf_deps {
  char **needed;                /* DT_NEEDED names, in file order */
  size_t nneeded;
  char *runpath;                /* DT_RUNPATH, else DT_RPATH, else NULL */
  uint16_t machine;             /* e_machine */
};

/* The dependencies of the file of size bytes that read reads.  Returns 0
 * with *out filled (nneeded may be 0), 1 when the file is not a
 * dynamically linked ELF file (not ELF, no PT_DYNAMIC: *out is empty), or
 * -1 when it is malformed or a read fails (error set, *out empty).  Names
 * that are empty, longer than SN_ELF_MAX_NAME or not NUL-terminated inside
 * the string table make it malformed (a run path may have
 * SN_ELF_MAX_PATH bytes); at most SN_ELF_MAX_NEEDED are kept. */
int sn_elf_deps_read(sn_elf_read_fn read, void *opaque, uint64_t size,
                     struct sn_elf_deps *out);

void sn_elf_deps_free(struct sn_elf_deps *d);

#endif
