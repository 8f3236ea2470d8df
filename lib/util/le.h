/* soci-nbd: little-endian integers in byte buffers, shared by the binary
 * formats (the SOCI zinfo blob, the dense checkpoint table). */
#ifndef SN_LE_H
#define SN_LE_H

#include <stdint.h>

/* The n (<= 8) bytes at p as an unsigned little-endian integer. */
static inline uint64_t
sn_get_le(const uint8_t *p, int n)
{
  uint64_t v = 0;

  while (n-- > 0)
    v = v << 8 | p[n];
  return v;
}

/* Store the low n (<= 8) bytes of v at p, little-endian. */
static inline void
sn_put_le(uint8_t *p, uint64_t v, int n)
{
  int i;

  for (i = 0; i < n; i++, v >>= 8)
    p[i] = (uint8_t) v;
}

#endif
