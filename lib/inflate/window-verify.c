/* soci-nbd: checking a sparse window — the span after a restart point
 * inflated by zlib (an implementation independent of the parser that
 * chose the bytes) with the full and with the sparse window, in step, 64
 * KiB at a time, and compared byte for byte.  Against the real output, a
 * build with ISA-L decodes with ISA-L first (what the plugin serves dense
 * runs with, about twice zlib's speed) and with zlib when ISA-L does not
 * produce the whole output. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "util/err.h"
#include "inflate/isal.h"
#include "inflate/window-use.h"

#define CHUNK ((size_t) 64 * 1024)     /* output compared per step */
#define ZIN ((size_t) 1 << 30)         /* zlib takes uInt lengths */

/* One raw inflate from the restart point. */
struct dec {
  z_stream z;
  bool init, ended;
  const uint8_t *in;                   /* input not yet given to zlib */
  size_t left;
};

/* Start d at bit bitoff of in[0..len) (bitoff <= len * 8) with window as
 * its dictionary. */
static int
dec_start(struct dec *d, const uint8_t *in, size_t len, uint64_t bitoff,
          const uint8_t window[SN_WINDOW_SIZE])
{
  size_t byte = (size_t) (bitoff >> 3);
  unsigned r = (unsigned) (bitoff & 7);

  memset(d, 0, sizeof *d);
  if (inflateInit2(&d->z, -15) != Z_OK)
    return sn_oom();
  d->init = true;
  if (r) {
    /* The 8 - r high bits of in[byte] are the stream's first bits. */
    if (inflatePrime(&d->z, (int) (8 - r), in[byte] >> r) != Z_OK)
      return sn_set_error("sparse window check: inflatePrime failed");
    byte++;
  }
  d->in = in + byte;
  d->left = len - byte;
  if (inflateSetDictionary(&d->z, window, SN_WINDOW_SIZE) != Z_OK)
    return sn_set_error("sparse window check: cannot set the window");
  return 0;
}

/* Inflate up to want bytes into buf; *got is how many came (fewer only
 * at the end of the stream or of the input). */
static int
dec_fill(struct dec *d, uint8_t *buf, size_t want, size_t *got)
{
  *got = 0;
  while (*got < want && !d->ended) {
    size_t ain = d->left < ZIN ? d->left : ZIN;
    size_t aout = want - *got, used, made;
    int ret;

    d->z.next_in = (Bytef *) d->in;
    d->z.avail_in = (uInt) ain;
    d->z.next_out = buf + *got;
    d->z.avail_out = (uInt) aout;
    ret = inflate(&d->z, Z_NO_FLUSH);
    used = ain - d->z.avail_in;
    made = aout - d->z.avail_out;
    d->in += used;
    d->left -= used;
    *got += made;
    if (ret == Z_STREAM_END)
      d->ended = true;
    else if (ret == Z_MEM_ERROR)
      return sn_oom();
    else if (ret != Z_OK && ret != Z_BUF_ERROR)
      return sn_set_error("corrupt deflate data: %s",
                          d->z.msg ? d->z.msg : "inflate error");
    else if (used == 0 && made == 0)
      break;                           /* the input ended */
  }
  return 0;
}

static void
dec_end(struct dec *d)
{
  if (d->init)
    inflateEnd(&d->z);
}

/* Compare one step of both decodes: 0 same, 1 differ, -1 short. */
static int
compare(const uint8_t *a, size_t ga, const uint8_t *b, size_t gb,
        size_t want, size_t done, size_t outlen)
{
  size_t i;

  for (i = 0; i < ga && i < gb; i++)
    if (a[i] != b[i]) {
      sn_set_error("sparse window: output byte %zu of %zu differs", done + i,
                   outlen);
      return 1;
    }
  if (ga < want || gb < want)
    return sn_set_error("sparse window check: the deflate stream ends "
                        "after %zu of %zu bytes", done + (ga < gb ? ga : gb),
                        outlen);
  return 0;
}

int
sn_window_verify(const uint8_t *in, size_t len, uint64_t bitoff,
                 const uint8_t full[SN_WINDOW_SIZE],
                 const uint8_t sparse[SN_WINDOW_SIZE], size_t outlen)
{
  struct dec a, b;
  uint8_t *buf = NULL;
  size_t done = 0;
  int ret = -1;             /* until both decoders are ready */

  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (bitoff > (uint64_t) len * 8) {
    sn_set_error("sparse window check: bit offset %" PRIu64 " is past "
                 "the input (%zu bytes)", bitoff, len);
    goto out;
  }
  buf = malloc(2 * CHUNK);
  if (buf == NULL) {
    sn_oom();
    goto out;
  }
  if (dec_start(&a, in, len, bitoff, full) < 0 ||
      dec_start(&b, in, len, bitoff, sparse) < 0)
    goto out;
  ret = 0;
  while (done < outlen) {
    size_t want = outlen - done < CHUNK ? outlen - done : CHUNK, ga, gb;

    if (dec_fill(&a, buf, want, &ga) < 0 ||
        dec_fill(&b, buf + CHUNK, want, &gb) < 0) {
      ret = -1;
      sn_prefix_error("sparse window check at byte %zu: ", done);
      goto out;
    }
    ret = compare(buf, ga, buf + CHUNK, gb, want, done, outlen);
    if (ret != 0)
      goto out;             /* 1: they differ; -1: the stream ended */
    done += want;
  }

out:
  dec_end(&a);
  dec_end(&b);
  free(buf);
  return ret;
}

int
sn_window_check(const uint8_t *in, size_t len, uint64_t bitoff,
                const uint8_t sparse[SN_WINDOW_SIZE], const uint8_t *expect,
                size_t outlen)
{
  struct dec d;
  uint8_t *buf = NULL;
  size_t done = 0;
  int ret = -1;

  memset(&d, 0, sizeof d);
  if (bitoff > (uint64_t) len * 8) {
    sn_set_error("sparse window check: bit offset %" PRIu64 " is past "
                 "the input (%zu bytes)", bitoff, len);
    goto out;
  }
  buf = malloc(CHUNK);
  if (buf == NULL) {
    sn_oom();
    goto out;
  }
  if (outlen <= CHUNK && bitoff < (uint64_t) len * 8 &&
      sn_isal_inflate_primed(in + (bitoff >> 3), len - (size_t) (bitoff >> 3),
                             (unsigned) (8 - (bitoff & 7)) & 7, sparse, buf,
                             outlen) == 0) {
    /* ISA-L made all of it (about 32 KiB: what a builder checks). */
    ret = compare(expect, outlen, buf, outlen, outlen, 0, outlen);
    goto out;
  }
  if (dec_start(&d, in, len, bitoff, sparse) < 0)
    goto out;
  ret = 0;
  while (done < outlen) {
    size_t want = outlen - done < CHUNK ? outlen - done : CHUNK, got;

    if (dec_fill(&d, buf, want, &got) < 0) {
      ret = -1;
      sn_prefix_error("sparse window check at byte %zu: ", done);
      goto out;
    }
    ret = compare(expect + done, want, buf, got, want, done, outlen);
    if (ret != 0)
      goto out;
    done += want;
  }

out:
  dec_end(&d);
  free(buf);
  return ret;
}
