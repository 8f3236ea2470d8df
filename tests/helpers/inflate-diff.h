/* soci-nbd tests: run a compressed stream through lib/inflate/inflate.c and
 * through zlib's inflate(Z_BLOCK), driven the way the ztoc builder drives
 * them (input in given chunk sizes; gzip members one after another), and
 * compare output, block-boundary events and verdict.  Shared by
 * tests/unit/test-inflate.c and fuzz/fuzz-inflate.c. */
#ifndef SN_INFLATE_DIFF_H
#define SN_INFLATE_DIFF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "inflate/inflate.h"

struct diff_event {
  int64_t in, out, bits;        /* no padding: compared with memcmp */
};

struct diff_result {
  uint8_t *out;
  size_t outlen, outcap;
  struct diff_event *ev;
  size_t nev, evcap;
  bool ok;                      /* the stream ended cleanly */
  int64_t totin;                /* input consumed in all */
};

static void
diff_free(struct diff_result *r)
{
  free(r->out);
  free(r->ev);
  memset(r, 0, sizeof *r);
}

static void
diff_output(struct diff_result *r, const uint8_t *p, size_t n)
{
  if (r->outlen + n > r->outcap) {
    r->outcap = (r->outlen + n) * 2;
    r->out = realloc(r->out, r->outcap);
    if (r->out == NULL)
      abort();
  }
  if (n)
    memcpy(r->out + r->outlen, p, n);
  r->outlen += n;
}

static void
diff_event(struct diff_result *r, int64_t in, unsigned bits, int64_t out)
{
  if (r->nev == r->evcap) {
    r->evcap = r->evcap ? 2 * r->evcap : 64;
    r->ev = realloc(r->ev, r->evcap * sizeof *r->ev);
    if (r->ev == NULL)
      abort();
  }
  r->ev[r->nev].in = in;
  r->ev[r->nev].bits = (int64_t) bits;
  r->ev[r->nev].out = out;
  r->nev++;
}

/* The next chunk: sizes cycle through chunks[0..nchunks). */
static size_t
diff_chunk(const size_t *chunks, size_t nchunks, size_t *ci, size_t left)
{
  size_t n = chunks[(*ci)++ % nchunks];

  if (n == 0)
    n = 1;
  return n < left ? n : left;
}

/* zlib, as lib/soci/zinfo.c's builder used it (windowBits 47, inflateReset2
 * after each member), or raw (-15, stopping at the end). */
static void
diff_zlib(const uint8_t *in, size_t len, const size_t *chunks,
          size_t nchunks, bool raw, struct diff_result *r)
{
  static uint8_t out[65536];
  z_stream s;
  size_t off = 0, ci = 0;
  bool member_done = false, out_full = false, ended = false, err = false;

  memset(r, 0, sizeof *r);
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, raw ? -15 : 47) != Z_OK)
    abort();
  for (;;) {
    size_t n = off < len ? diff_chunk(chunks, nchunks, &ci, len - off) : 0;
    size_t pos = 0;
    /* Raw: zlib stops after the final block and says Z_STREAM_END only
     * when called again; at the end of input, call it once more. */
    bool last_call = raw && n == 0;

    while (!err && !ended && (pos < n || out_full || last_call)) {
      int ret, dt;

      last_call = false;
      size_t used;

      if (member_done) {
        if (inflateReset2(&s, 47) != Z_OK)
          abort();
        member_done = false;
      }
      s.next_in = (Bytef *) in + off + pos;
      s.avail_in = (uInt) (n - pos);
      s.next_out = out;
      s.avail_out = sizeof out;
      ret = inflate(&s, Z_BLOCK);
      used = n - pos - s.avail_in;
      pos += used;
      r->totin += (int64_t) used;
      diff_output(r, out, sizeof out - s.avail_out);
      out_full = s.avail_out == 0;
      dt = s.data_type;
      if ((dt & 128) && !(dt & 64))
        diff_event(r, r->totin, (unsigned) dt & 7, (int64_t) r->outlen);
      if (ret == Z_STREAM_END) {
        member_done = true;
        out_full = false;
        ended = raw;
      }
      else if (ret == Z_BUF_ERROR) {
        if (pos < n)
          err = true;
        out_full = false;
        break;
      }
      else if (ret != Z_OK)
        err = true;
    }
    off += n;
    if (err || ended || n == 0)
      break;
  }
  r->ok = !err && member_done;
  inflateEnd(&s);
}

/* lib/inflate/inflate.c, driven the same way. */
static void
diff_sn(const uint8_t *in, size_t len, const size_t *chunks, size_t nchunks,
        bool raw, struct diff_result *r)
{
  struct sn_inflate *z = sn_inflate_new(raw ? SN_INFLATE_RAW
                                            : SN_INFLATE_GZIP);
  size_t off = 0, ci = 0;
  bool out_full = false, ended = false, err = false;

  memset(r, 0, sizeof *r);
  if (z == NULL)
    abort();
  for (;;) {
    size_t n = off < len ? diff_chunk(chunks, nchunks, &ci, len - off) : 0;
    size_t pos = 0;

    while (!err && !ended && (pos < n || out_full)) {
      const uint8_t *o;
      size_t used, olen;
      int ev = sn_inflate_run(z, in + off + pos, n - pos, &used, &o, &olen);

      pos += used;
      r->totin += (int64_t) used;
      diff_output(r, o, olen);
      if (sn_inflate_total_in(z) != r->totin ||
          sn_inflate_total_out(z) != (int64_t) r->outlen)
        abort();                /* the decoder's own count is off */
      if (ev < 0) {
        err = true;
        break;
      }
      out_full = ev == SN_INFLATE_OUT_FULL;
      if (ev == SN_INFLATE_BLOCK) {
        if (sn_inflate_bits(z) > 7)
          abort();
        diff_event(r, r->totin, sn_inflate_bits(z), (int64_t) r->outlen);
      }
      if (ev == SN_INFLATE_END && raw)
        ended = true;
      if (ev == SN_INFLATE_NEED_INPUT && pos != n)
        abort();                /* must consume everything */
    }
    off += n;
    if (err || ended || n == 0)
      break;
  }
  r->ok = !err && sn_inflate_finish(z) == 0;
  sn_inflate_free(z);
}

static bool
diff_prefix(const void *a, size_t alen, const void *b, size_t blen,
            size_t size)
{
  size_t n = alen < blen ? alen : blen;

  return n == 0 || memcmp(a, b, n * size) == 0;
}

/* Compare a (zlib) with b (lib/inflate/inflate.c): NULL if they agree, else what
 * differs.  When both failed, b's output must be a prefix of a's (it
 * stops at the same symbol or earlier) and the events of one a prefix of
 * the other's. */
static const char *
diff_compare(const struct diff_result *a, const struct diff_result *b,
             bool raw)
{
  if (a->ok != b->ok)
    return "verdict";
  if (!diff_prefix(a->out, a->outlen, b->out, b->outlen, 1))
    return "output bytes";
  if (!diff_prefix(a->ev, a->nev, b->ev, b->nev, sizeof *a->ev))
    return "block boundary events";
  if (a->ok ? a->outlen != b->outlen : b->outlen > a->outlen)
    return "output length";     /* no bytes zlib would not give */
  if (a->ok && a->nev != b->nev)
    return "number of block boundaries";
  if (a->ok && raw && a->totin != b->totin)
    return "input consumed";
  return NULL;
}

#endif
