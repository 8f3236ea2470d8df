/* soci-nbd: the one string hash of the library's hash tables — 64-bit
 * FNV-1a over len bytes, from a seed the caller picks (SN_HASH_SEED, or
 * one mixed with more of the key). */
#ifndef SN_HASH_H
#define SN_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SN_HASH_SEED 14695981039346656037u    /* FNV-1a's offset basis */

static inline uint64_t
sn_hash_bytes(uint64_t seed, const void *p, size_t len)
{
  const unsigned char *s = p;
  uint64_t h = seed;

  while (len--)
    h = (h ^ *s++) * 1099511628211u;
  return h;
}

#endif
