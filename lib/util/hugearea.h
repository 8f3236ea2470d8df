/* soci-nbd: a fixed stretch of address space, advised for transparent huge
 * pages, carved into 64 KiB units (used by lib/util/bufpool.c).
 *
 * Why: a layer's cache and staged bytes are tens of MiB of fresh memory,
 * and on a virtual machine each 4 KiB page fault costs ~10 µs: faulting in
 * a 64 MiB cache took ~0.2 CPU-s of a whole-device read.  With huge pages
 * one fault maps 2 MiB (docs/architecture.md, "Memory").
 *
 * The stretch is reserved when the area is made and touched only as it is
 * used, lowest addresses first, so its resident size is at most the most
 * it held at once, bounded by its size.  Its first 2 MiB keep small pages:
 * an area little used (a layer a container start reads a few files of)
 * holds no more memory than malloc would.  When the last block is given
 * back, all but those first 2 MiB go back to the kernel (a stream's staged
 * runs do not stay resident once read).  When the kernel has no
 * transparent huge pages (or allows them only "never"), the area still
 * works, with small pages.
 *
 * Not thread-safe: the caller serializes every call on one area.
 * Errors follow err.h.
 */
#ifndef SN_HUGEAREA_H
#define SN_HUGEAREA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_HUGEAREA_UNIT ((size_t) 64 << 10)

struct sn_hugearea;

/* An area of at least bytes (rounded up to 2 MiB); NULL and a message if
 * the address space cannot be had. */
struct sn_hugearea *sn_hugearea_new(size_t bytes);
/* Unmaps everything: no block may be used afterwards. */
void sn_hugearea_free(struct sn_hugearea *a);

/* A block of at least len bytes (a whole number of units, the lowest that
 * fit) and its size in *size; NULL when no run of free units is long
 * enough (not an error: no message). */
uint8_t *sn_hugearea_alloc(struct sn_hugearea *a, size_t len, size_t *size);
/* p is inside the area (p came from sn_hugearea_alloc on it). */
bool sn_hugearea_owns(const struct sn_hugearea *a, const void *p);
/* Give back the block p of size bytes (as returned by the alloc). */
void sn_hugearea_release(struct sn_hugearea *a, uint8_t *p, size_t size);

/* Bytes in blocks now, and the highest offset used since the area was
 * last handed back (what is resident at most). */
void sn_hugearea_usage(const struct sn_hugearea *a, size_t *in_use,
                       size_t *touched);

#endif
