/* soci-nbd: ISA-L's inflate from a restart point (isal.h). */
#include <config.h>

#include <stdint.h>

#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "inflate/isal.h"

int
sn_isal_inflate_primed(const uint8_t *in, size_t in_len, unsigned bits,
                       const uint8_t *window, uint8_t *out, size_t out_len)
{
#ifdef HAVE_ISAL
  struct inflate_state st;
  int r;

  if (in_len > UINT32_MAX || out_len > UINT32_MAX || bits > 7 ||
      (bits && in_len == 0))
    return 1;
  isal_inflate_init(&st);
  st.crc_flag = ISAL_DEFLATE;
  if (isal_inflate_set_dict(&st, (uint8_t *) window, SN_INFLATE_WINSIZE) !=
      COMP_OK)
    return 1;
  if (bits) {
    /* LSB first in ISA-L's bit buffer, as inflatePrime puts them. */
    st.read_in = in[0] >> (8 - bits);
    st.read_in_length = (int32_t) bits;
    in++, in_len--;
  }
  st.next_in = (uint8_t *) in;
  st.avail_in = (uint32_t) in_len;
  st.next_out = out;
  st.avail_out = (uint32_t) out_len;
  r = isal_inflate(&st);
  return (r == ISAL_DECOMP_OK || r == ISAL_OUT_OVERFLOW) && st.avail_out == 0
    ? 0 : 1;
#else
  (void) in, (void) in_len, (void) bits, (void) window, (void) out;
  (void) out_len;
  return 1;
#endif
}
