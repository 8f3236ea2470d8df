/* soci-nbd: decoding a run of zstd frames from its first byte, bounded to
 * the output wanted — a zstd:chunked chunk (lib/stargz/), a sub-span of a
 * zstd layer's dense index (lib/dense/).  Frames decode on their own, so
 * any frame start is a restart point.
 *
 * Errors follow util/err.h (-1 with a one-line message).
 */
#ifndef SN_ZSTD_FRAMES_H
#define SN_ZSTD_FRAMES_H

#include <stddef.h>
#include <stdint.h>

/* Decompress the zstd frames in comp[0..comp_len) (skippable frames are
 * passed over), drop the first skip bytes of output and write exactly
 * out_len bytes to out.  Output past them is never produced, so frames
 * cannot expand into a bomb; what is left of the input is not read.
 * Corrupt frames, or frames that end before out_len bytes: -1. */
int sn_zstd_frames_decode(const uint8_t *comp, size_t comp_len, int64_t skip,
                          uint8_t *out, size_t out_len);

#endif
