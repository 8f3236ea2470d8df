/* soci-nbd: Huffman decode tables for lib/inflate/inflate*.c and
 * window-use.c (internal).
 *
 * A table entry is 32 bits:
 *   bits  0-4   bits to drop for this entry: code bits + extra bits (for a
 *               SUB entry: the root bits)
 *   bits  8-11  code bits alone (for a SUB entry: the subtable's index bits)
 *   bits 12-15  SN_TE_LIT, SN_TE_EOB, SN_TE_SUB, SN_TE_BAD (a length or
 *               distance has none)
 *   bits 16-31  literal byte, length or distance base, or subtable offset
 * so that extra bits, if any, are (bits & mask(total)) >> codebits.
 */
#ifndef SN_INFLATE_TABLE_H
#define SN_INFLATE_TABLE_H

#include <stdint.h>

#define SN_TE_LIT 0x1000u
#define SN_TE_EOB 0x2000u
#define SN_TE_SUB 0x4000u
#define SN_TE_BAD 0x8000u

#define SN_TE_TOTAL(e) ((e) & 31u)
#define SN_TE_CODE(e) (((e) >> 8) & 15u)
#define SN_TE_VAL(e) ((e) >> 16)

/* Root index bits and table capacities (root + subtables; zlib's
 * examples/enough.c bounds them at 2342 and 402). */
#define SN_LITLEN_ROOT 11
#define SN_LITLEN_CAP 2560
#define SN_DIST_ROOT 8
#define SN_DIST_CAP 512
#define SN_CLEN_ROOT 7
#define SN_CLEN_CAP 128

enum sn_table_kind { SN_TABLE_CLEN, SN_TABLE_LITLEN, SN_TABLE_DIST };

/* Build the table for code lengths lens[0..n) (0: symbol unused).  Codes
 * must be complete, except as zlib allows: no codes at all, or a single
 * one-bit code, for literal/lengths and distances (codes for the missing
 * half decode as SN_TE_BAD, taking one bit).  Returns 0; -1 for an
 * over-subscribed set (or n > 288, a length > 15); -2 for an incomplete
 * one that is not allowed.  On failure the table is unspecified. */
int sn_inflate_build_table(uint32_t *table, enum sn_table_kind kind,
                           const uint8_t *lens, unsigned n);

/* The tables of the fixed codes (RFC 1951 3.2.6): literal/lengths 0-287
 * (286 and 287 decode as SN_TE_BAD) and distances 0-31 (30 and 31 BAD). */
void sn_inflate_fixed_tables(uint32_t lt[SN_LITLEN_CAP],
                             uint32_t dt[SN_DIST_CAP]);

#endif
