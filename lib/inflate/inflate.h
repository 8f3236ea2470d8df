/* soci-nbd: a DEFLATE decoder (RFC 1951) with gzip (RFC 1952) and zlib
 * (RFC 1950) framing that stops at deflate block boundaries, reporting
 * the position there exactly as zlib's inflate(Z_BLOCK) does, so that
 * zran-style checkpoints can be recorded while a layer streams.
 *
 * Conventions: sn_inflate_new returns NULL and sn_inflate_run returns -1
 * after recording a message with sn_set_error() (lib/util/err.h); a decoder
 * that failed stays failed.  The decoder owns its output buffer: output a
 * call returns is valid until the next call.
 */
#ifndef SN_INFLATE_H
#define SN_INFLATE_H

#include <stddef.h>
#include <stdint.h>

#define SN_INFLATE_WINSIZE 32768

enum sn_inflate_format {
  SN_INFLATE_GZIP,   /* gzip or zlib members, one after another (zlib's
                      * windowBits 47 + inflateReset2 after each end) */
  SN_INFLATE_RAW,    /* one raw deflate stream, nothing after it */
};

/* Why sn_inflate_run returned. */
enum sn_inflate_event {
  SN_INFLATE_NEED_INPUT,  /* all input consumed; more, or finish */
  SN_INFLATE_BLOCK,       /* at a block boundary: after a member's header
                           * or a non-final block (zlib's data_type 128
                           * without 64) */
  SN_INFLATE_END,         /* a member's trailer was read and verified
                           * (raw: the final block ended) */
  SN_INFLATE_OUT_FULL,    /* the output area is full: call again */
};

struct sn_inflate;

struct sn_inflate *sn_inflate_new(enum sn_inflate_format format);
void sn_inflate_free(struct sn_inflate *z);

/* Decode in[0..len).  Stores in *used how many input bytes were consumed
 * (all of them, unless the return is BLOCK, END or OUT_FULL: call again
 * with the rest) and in *out, *outlen the new output.  Returns an event,
 * or -1 on corrupt input ("gzip: corrupt data at offset N: reason"). */
int sn_inflate_run(struct sn_inflate *z, const uint8_t *in, size_t len,
                   size_t *used, const uint8_t **out, size_t *outlen);

/* After the last input: 0 if the stream ended cleanly (gzip: at the end
 * of a member, after at least one; raw: after the final block), else -1
 * ("truncated gzip stream (N bytes)"). */
int sn_inflate_finish(struct sn_inflate *z);

/* Input consumed (a byte counts once any of its bits is used) and output
 * produced so far, and the unused bits (0-7) of the last consumed byte.
 * At a BLOCK return these are zlib's total_in, total_out and
 * data_type & 7. */
int64_t sn_inflate_total_in(const struct sn_inflate *z);
int64_t sn_inflate_total_out(const struct sn_inflate *z);
unsigned sn_inflate_bits(const struct sn_inflate *z);

/* The SN_INFLATE_WINSIZE bytes of output before the current position,
 * zero-filled in front when fewer were produced. */
void sn_inflate_window(const struct sn_inflate *z,
                       uint8_t win[SN_INFLATE_WINSIZE]);

#endif
