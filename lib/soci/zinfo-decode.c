/* soci-nbd: decoding one span of a layer from its checkpoint — raw inflate
 * primed with the checkpoint's leftover bits and 32 KiB window (zlib, or
 * ISA-L when built with it), or a copy for an uncompressed layer
 * (docs/soci-format.md §4.2). */
#include <config.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "util/err.h"
#include "soci/zinfo.h"
#include "inflate/isal.h"
#include "inflate/zstd-frames.h"
#include "stargz/stargz.h"

/* zlib takes uInt lengths: feed it at most this much at a time. */
#define ZCHUNK ((size_t) 1 << 30)

/* ---- decoding one span -------------------------------------------------- */

/* zlib's error ret in span i as a message (sn_oom for Z_MEM_ERROR); -1. */
static int
inflate_error(size_t i, const z_stream *strm, int ret)
{
  if (ret == Z_MEM_ERROR)
    return sn_oom();
  return sn_set_error("span %zu: corrupt compressed data: %s", i,
                      strm->msg ? strm->msg : "inflate error");
}

/* docs/soci-format.md §4.2: raw inflate from the checkpoint, primed with its leftover bits and
 * its window; a gzip member ending inside the span is followed into the
 * next member. */
static int
inflate_span(const struct sn_checkpoint *c, size_t i, const uint8_t *in,
             size_t in_len, uint8_t *out, size_t out_len)
{
  z_stream strm;
  size_t done = 0;
  bool raw = true;
  int ret;

  memset(&strm, 0, sizeof strm);
  if (inflateInit2(&strm, -15) != Z_OK)
    return sn_oom();
  if (c->bits) {
    if (in_len == 0) {
      ret = sn_set_error("span %zu: no compressed data", i);
      goto out;
    }
    inflatePrime(&strm, c->bits, in[0] >> (8 - c->bits));
    in++, in_len--;
  }
  if (c->window == NULL ||
      inflateSetDictionary(&strm, c->window, SN_ZINFO_WINSIZE) != Z_OK) {
    ret = sn_set_error("span %zu: cannot set the inflate window", i);
    goto out;
  }

  while (done < out_len) {
    size_t ain = in_len < ZCHUNK ? in_len : ZCHUNK;
    size_t aout = out_len - done < ZCHUNK ? out_len - done : ZCHUNK;
    size_t used, got;

    strm.next_in = (Bytef *) in;
    strm.avail_in = (uInt) ain;
    strm.next_out = out + done;
    strm.avail_out = (uInt) aout;
    ret = inflate(&strm, Z_NO_FLUSH);
    used = ain - strm.avail_in;
    got = aout - strm.avail_out;
    in += used, in_len -= used;
    done += got;

    if (ret == Z_STREAM_END) {
      if (done == out_len)
        break;
      /* A gzip member ends inside the span: the next one follows. */
      if (raw) {
        if (in_len < 8) {
          ret = sn_set_error("span %zu: truncated gzip trailer", i);
          goto out;
        }
        in += 8, in_len -= 8;
        raw = false;
        ret = inflateReset2(&strm, 47);
      }
      else
        ret = inflateReset(&strm);
      if (ret != Z_OK) {
        ret = inflate_error(i, &strm, ret);
        goto out;
      }
      continue;
    }
    if ((ret == Z_OK || ret == Z_BUF_ERROR) && (used || got))
      continue;
    if ((ret == Z_OK || ret == Z_BUF_ERROR) && in_len == 0)
      ret = sn_set_error("span %zu: compressed data ends after %zu of %zu "
                         "bytes", i, done, out_len);
    else if (ret == Z_NEED_DICT)
      ret = sn_set_error("span %zu: zlib stream wants a dictionary", i);
    else
      ret = inflate_error(i, &strm, ret);
    goto out;
  }
  ret = 0;

out:
  inflateEnd(&strm);
  return ret;
}

/* Spans the fast inflater filled (sn_zinfo_fast_decodes). */
static _Atomic uint64_t fast_decodes;

uint64_t
sn_zinfo_fast_decodes(void)
{
  return atomic_load_explicit(&fast_decodes, memory_order_relaxed);
}

/* The same decode with ISA-L's inflate (2-3x faster than zlib's;
 * lib/inflate/isal.h).  0: out is filled; 1: not handled here (a gzip
 * member ends inside the span, ISA-L stopped early or reports an error, a
 * build without ISA-L) — the caller decodes the span with zlib instead,
 * which handles member boundaries and words the errors. */
static int
inflate_span_isal(const struct sn_checkpoint *c, const uint8_t *in,
                  size_t in_len, uint8_t *out, size_t out_len)
{
  if (c->window == NULL)
    return 1;
  return sn_isal_inflate_primed(in, in_len, c->bits, c->window, out,
                                out_len);
}

const char *
sn_zinfo_inflater(void)
{
#ifdef HAVE_ISAL
  return "isa-l";
#else
  return "zlib";
#endif
}

/* sn_zinfo_decode_span_with, ISA-L first when built with it. */
int
sn_zinfo_decode_span(const struct sn_zinfo *zi, size_t i,
                     const uint8_t *comp, size_t comp_len,
                     uint8_t *out, size_t out_len)
{
  return sn_zinfo_decode_span_with(zi, i, comp, comp_len, out, out_len,
                                   true);
}

/* Decode span i (comp, exactly its compressed bytes) into out (exactly its
 * uncompressed size); fast: try ISA-L first when built with it. */
int
sn_zinfo_decode_span_with(const struct sn_zinfo *zi, size_t i,
                          const uint8_t *comp, size_t comp_len,
                          uint8_t *out, size_t out_len, bool fast)
{
  struct sn_span s;
  uint64_t want_in, want_out;

  if (i >= zi->nspans)
    return sn_set_error("span %zu does not exist (%zu spans)", i,
                        zi->nspans);
  sn_zinfo_span(zi, i, &s);
  want_in = (uint64_t) (s.comp_end - s.comp_start);
  want_out = (uint64_t) (s.uncomp_end - s.uncomp_start);
  if (comp_len != want_in)
    return sn_set_error("span %zu: %zu compressed bytes given, %" PRIu64
                        " expected", i, comp_len, want_in);
  if (out_len != want_out)
    return sn_set_error("span %zu: output of %zu bytes given, %" PRIu64
                        " expected", i, out_len, want_out);
  if (out_len == 0)
    return 0;
  if (zi->skip)                 /* eStargz, zstd:chunked */
    return sn_stargz_decode(zi, i, comp, comp_len, out, out_len);
  if (zi->compression == SN_COMP_GZIP) {
    if (fast && inflate_span_isal(&zi->cp[i], comp, comp_len, out,
                                  out_len) == 0) {
      atomic_fetch_add_explicit(&fast_decodes, 1, memory_order_relaxed);
      return 0;
    }
    return inflate_span(&zi->cp[i], i, comp, comp_len, out, out_len);
  }
  if (zi->compression == SN_COMP_ZSTD)  /* frames from a frame start */
    return sn_zstd_frames_decode(comp, comp_len, 0, out, out_len) == -1
      ? sn_prefix_error("span %zu: ", i) : 0;
  if (out_len > comp_len)
    return sn_set_error("span %zu: tar end is past the layer end", i);
  memcpy(out, comp, out_len);
  return 0;
}

/* Spans first..last from checkpoint first with the given window (zinfo.h). */
int
sn_zinfo_decode_run(const struct sn_zinfo *zi, size_t first, size_t last,
                    const uint8_t *window, const uint8_t *comp,
                    size_t comp_len, uint8_t *out, size_t out_len)
{
  struct sn_checkpoint c;
  struct sn_span a, b;

  if (zi->compression != SN_COMP_GZIP || first > last || last >= zi->nspans)
    return sn_set_error("spans %zu-%zu: no such run (%zu spans)", first, last,
                        zi->nspans);
  sn_zinfo_span(zi, first, &a);
  sn_zinfo_span(zi, last, &b);
  if (comp_len != (uint64_t) (b.comp_end - a.comp_start) ||
      out_len != (uint64_t) (b.uncomp_end - a.uncomp_start))
    return sn_set_error("spans %zu-%zu: %zu compressed bytes and %zu of "
                        "output given, %" PRId64 " and %" PRId64 " expected",
                        first, last, comp_len, out_len,
                        b.comp_end - a.comp_start,
                        b.uncomp_end - a.uncomp_start);
  if (out_len == 0)
    return 0;
  c = zi->cp[first];
  if (window)
    c.window = (uint8_t *) window;
  if (inflate_span_isal(&c, comp, comp_len, out, out_len) == 0) {
    atomic_fetch_add_explicit(&fast_decodes, 1, memory_order_relaxed);
    return 0;
  }
  return inflate_span(&c, first, comp, comp_len, out, out_len);
}
