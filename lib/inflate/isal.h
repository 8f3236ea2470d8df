/* soci-nbd: ISA-L's inflate started inside a raw deflate stream — the
 * fast path of decoding from a restart point, shared by span decoding
 * (lib/soci/zinfo-decode.c) and the sparse-window check
 * (lib/inflate/window-verify.c).  zlib stays the reference: whenever this
 * does not produce the whole output, the caller decodes with zlib, whose
 * verdict and message count.
 */
#ifndef SN_INFLATE_ISAL_H
#define SN_INFLATE_ISAL_H

#include <stddef.h>
#include <stdint.h>

#include "inflate/inflate.h"

/* Raw-inflate exactly out_len bytes from in[0..in_len): the stream's first
 * `bits` bits (0-7) are the high bits of in[0] (zlib's inflatePrime
 * convention: in[0] >> (8 - bits)), the rest starts at in[1] (at in[0]
 * when bits is 0); window (SN_INFLATE_WINSIZE bytes) is the dictionary.
 * 0: out is filled.  1: not decided here (ISA-L stopped early or reports
 * an error, the stream ended, lengths beyond 4 GiB, or a build without
 * ISA-L).  Never sets an error message. */
int sn_isal_inflate_primed(const uint8_t *in, size_t in_len, unsigned bits,
                           const uint8_t *window, uint8_t *out,
                           size_t out_len);

#endif
