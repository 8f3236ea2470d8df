/* soci-nbd: sparse windows for restart points of a raw deflate stream.
 *
 * A restart point is a deflate block boundary: a bit offset in the
 * compressed stream, an uncompressed offset, and the 32 KiB of output
 * before it (the window).  A back-reference reaches at most 32 KiB back,
 * so only matches in the first 32 KiB of output after the restart point
 * can copy window bytes.  sn_window_use finds which ones they copy by
 * parsing that much of the stream (the parse does not depend on the
 * window's contents); sn_window_sparse keeps those bytes and zeroes the
 * rest; sn_window_verify decodes a span with zlib twice, with the full
 * and with the sparse window, and compares.  A sparse window must not be
 * used unless sn_window_verify accepted it for the spans it will serve.
 *
 * Positions: the stream starts at bit bitoff of in[0..len) (bit 0 is the
 * least significant bit of in[0]).  A zlib/SOCI checkpoint (in, bits)
 * over a buffer that starts at the blob's byte 0 is bitoff = in * 8 -
 * bits.  Window index i is the byte at uncompressed offset out - 32768 +
 * i; only the last winlen bytes are real output (winlen = min(out, 32768)
 * within one gzip member), the rest is zero padding.
 *
 * Input: decoding never reads outside in[0..len).  When the input ends
 * before the output limit is reached and before the final block ends,
 * sn_window_use fails ("more input needed"): a partial map is never
 * returned.  Decoding stops at the end of the final block: a gzip member
 * after it starts with an empty window and cannot refer to this one.
 *
 * Errors follow err.h: -1 with a one-line message naming the bit offset,
 * on corrupt or truncated data.  The caller owns every buffer; nothing
 * is allocated.
 */
#ifndef SN_WINDOW_USE_H
#define SN_WINDOW_USE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inflate/inflate.h"

#define SN_WINDOW_SIZE SN_INFLATE_WINSIZE

/* What sn_window_use found. */
struct sn_window_use {
  size_t count;      /* window bytes referenced (entries set in the map) */
  size_t out;        /* output bytes parsed (>= limit unless end) */
  uint64_t in_bits;  /* bits consumed after bitoff */
  bool end;          /* the final block ended before the limit */
};

/* Parse the raw deflate stream from bitoff until `limit` bytes of output
 * were produced (limit is capped at SN_WINDOW_SIZE: later output cannot
 * reach the window) or the final block ends, and set map[i] to 1 for every
 * window byte a match copies (0 for the others).  winlen (<=
 * SN_WINDOW_SIZE): how many window bytes are real; a match reaching past
 * them is "distance too far back".  0 on success, filling *st. */
int sn_window_use(const uint8_t *in, size_t len, uint64_t bitoff,
                  size_t winlen, size_t limit,
                  uint8_t map[SN_WINDOW_SIZE], struct sn_window_use *st);

/* The sparse window for the restart point: sparse[i] = window[i] where a
 * match in the first `limit` bytes of output copies window byte i, else
 * 0 (SN_WINDOW_SIZE for limit: enough for the whole rest of the stream).
 * *st: what the parse found (st->count: the bytes kept; st->out: the
 * output parsed, what sn_window_verify can then check).  sparse must not
 * overlap window; on failure it is all zero. */
int sn_window_sparse(const uint8_t *in, size_t len, uint64_t bitoff,
                     const uint8_t window[SN_WINDOW_SIZE], size_t winlen,
                     size_t limit, uint8_t sparse[SN_WINDOW_SIZE],
                     struct sn_window_use *st);

/* Decode exactly outlen bytes from bitoff with zlib (raw inflate primed
 * with the leftover bits, the window as its dictionary), once with full
 * and once with sparse, and compare.  0: identical; 1: they differ (a
 * message names the first differing byte); -1: the stream is corrupt or
 * ends before outlen bytes (with either window).  Anything but 0 means
 * the sparse window must not be used. */
int sn_window_verify(const uint8_t *in, size_t len, uint64_t bitoff,
                     const uint8_t full[SN_WINDOW_SIZE],
                     const uint8_t sparse[SN_WINDOW_SIZE], size_t outlen);

/* The same check against the output itself: decode exactly outlen bytes
 * from bitoff with the sparse window and compare them with expect (the
 * real output after the restart point).  0: identical; 1: they differ;
 * -1: the stream is corrupt or ends before outlen bytes.  One decode
 * instead of two: what a builder that has the output uses.  Up to 64
 * KiB are decoded by ISA-L when the build has it (the plugin's decoder),
 * zlib deciding whenever ISA-L does not produce them all; otherwise, and
 * for longer outputs, by zlib. */
int sn_window_check(const uint8_t *in, size_t len, uint64_t bitoff,
                    const uint8_t sparse[SN_WINDOW_SIZE],
                    const uint8_t *expect, size_t outlen);

#endif
