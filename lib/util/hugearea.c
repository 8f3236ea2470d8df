/* soci-nbd: a huge-page-advised stretch of memory carved into 64 KiB
 * units, first fit (see hugearea.h). */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/err.h"
#include "util/hugearea.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void) (p), (void) (n))
#define UNPOISON(p, n) ((void) (p), (void) (n))
#endif

#define HUGE_PAGE ((size_t) 2 << 20)
#define UNIT SN_HUGEAREA_UNIT
/* An empty area keeps this much of its memory (its small pages), handing
 * the rest back. */
#define KEEP_UNITS (HUGE_PAGE / UNIT)

struct sn_hugearea {
  uint8_t *base;                /* HUGE_PAGE aligned */
  size_t nunits;
  size_t in_use;                /* units in blocks */
  size_t touched;               /* units: the highest block end so far */
  uint64_t used[];              /* bit u: unit u is in a block */
};

struct sn_hugearea *
sn_hugearea_new(size_t bytes)
{
  struct sn_hugearea *a;
  size_t size, nunits, head;
  uint8_t *map;

  if (bytes == 0 || bytes > SIZE_MAX / 2) {
    sn_set_error("huge-page area: bad size %zu", bytes);
    return NULL;
  }
  size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  nunits = size / UNIT;
  a = calloc(1, sizeof *a + (nunits + 63) / 64 * sizeof a->used[0]);
  if (a == NULL) {
    sn_oom();
    return NULL;
  }
  /* Map a huge page more than needed, then trim to an aligned stretch. */
  map = mmap(NULL, size + HUGE_PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) {
    sn_set_error("huge-page area: cannot map %zu bytes", size);
    free(a);
    return NULL;
  }
  head = (HUGE_PAGE - (uintptr_t) map % HUGE_PAGE) % HUGE_PAGE;
  if (head)
    munmap(map, head);
  munmap(map + head + size, HUGE_PAGE - head);
  a->base = map + head;
  a->nunits = nunits;
#ifdef MADV_HUGEPAGE
  /* A hint (it fails without THP), past the first 2 MiB: a layer that
   * uses little of its area keeps small pages. */
  if (size > HUGE_PAGE)
    madvise(a->base + HUGE_PAGE, size - HUGE_PAGE, MADV_HUGEPAGE);
#endif
  POISON(a->base, size);
  return a;
}

void
sn_hugearea_free(struct sn_hugearea *a)
{
  if (a == NULL)
    return;
  UNPOISON(a->base, a->nunits * UNIT);
  munmap(a->base, a->nunits * UNIT);
  free(a);
}

static bool
unit_used(const struct sn_hugearea *a, size_t u)
{
  return a->used[u / 64] >> (u % 64) & 1;
}

static void
mark(struct sn_hugearea *a, size_t first, size_t n, bool on)
{
  size_t u;

  for (u = first; u < first + n; u++)
    if (on)
      a->used[u / 64] |= (uint64_t) 1 << (u % 64);
    else
      a->used[u / 64] &= ~((uint64_t) 1 << (u % 64));
}

uint8_t *
sn_hugearea_alloc(struct sn_hugearea *a, size_t len, size_t *size)
{
  size_t k, u, run = 0;

  if (len > a->nunits * UNIT)
    return NULL;
  k = len ? (len + UNIT - 1) / UNIT : 1;
  for (u = 0; u < a->nunits; u++) {
    if (run == 0 && u % 64 == 0 && a->used[u / 64] == UINT64_MAX) {
      u += 63;                  /* a whole word in use */
      continue;
    }
    if (unit_used(a, u)) {
      run = 0;
      continue;
    }
    if (++run == k) {
      size_t first = u + 1 - k;

      mark(a, first, k, true);
      a->in_use += k;
      if (a->touched < u + 1)
        a->touched = u + 1;
      *size = k * UNIT;
      UNPOISON(a->base + first * UNIT, *size);
      return a->base + first * UNIT;
    }
  }
  return NULL;
}

bool
sn_hugearea_owns(const struct sn_hugearea *a, const void *p)
{
  const uint8_t *b = p;

  return a && b >= a->base && b < a->base + a->nunits * UNIT;
}

void
sn_hugearea_release(struct sn_hugearea *a, uint8_t *p, size_t size)
{
  size_t first = (size_t) (p - a->base) / UNIT, k = size / UNIT;

  mark(a, first, k, false);
  a->in_use -= k;
  POISON(p, size);
  if (a->in_use == 0 && a->touched > KEEP_UNITS) {
    madvise(a->base + KEEP_UNITS * UNIT, (a->touched - KEEP_UNITS) * UNIT,
            MADV_DONTNEED);
    a->touched = KEEP_UNITS;
  }
}

void
sn_hugearea_usage(const struct sn_hugearea *a, size_t *in_use,
                  size_t *touched)
{
  *in_use = a->in_use * UNIT;
  *touched = a->touched * UNIT;
}
