/* soci-nbd: standard base64 (RFC 4648 §4) with padding.
 *
 * Both return a malloc'd, NUL-terminated string the caller frees, or NULL
 * (out of memory; for decode also invalid input or more than 1 MiB).  No
 * message is set.  Decoded buffers are wiped before a failure frees them
 * (they may hold credentials).
 */
#ifndef SN_BASE64_H
#define SN_BASE64_H

#include <stddef.h>

char *sn_base64(const void *s, size_t n);
/* Padding optional; trailing CR, LF and spaces ignored; *outlen bytes. */
char *sn_base64_decode(const char *s, size_t *outlen);

#endif
