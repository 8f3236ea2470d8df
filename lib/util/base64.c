/* soci-nbd: standard base64 (RFC 4648 §4), through OpenSSL's EVP block
 * coder: registry credentials and an eStargz TOC's xattr values. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/base64.h"

/* Encode n bytes at s (base64.h). */
char *
sn_base64(const void *s, size_t n)
{
  char *out = malloc(4 * ((n + 2) / 3) + 1);

  if (out == NULL)
    return NULL;
  EVP_EncodeBlock((unsigned char *) out, s, (int) n);
  return out;
}

/* Decode standard base64 (padding optional) into a malloc'd,
 * NUL-terminated buffer of *outlen bytes; NULL if invalid. */
char *
sn_base64_decode(const char *s, size_t *outlen)
{
  size_t n = strlen(s), pad = 0, padded;
  char *tmp, *out;
  int got;

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    n--;
  if (n % 4 == 1 || n > (1u << 20))
    return NULL;
  padded = (n + 3) / 4 * 4;
  tmp = malloc(padded + 1);
  out = malloc(padded / 4 * 3 + 1);
  if (tmp == NULL || out == NULL) {
    free(tmp);
    free(out);
    return NULL;
  }
  memcpy(tmp, s, n);
  memset(tmp + n, '=', padded - n);
  tmp[padded] = '\0';
  if (padded >= 1 && tmp[padded - 1] == '=')
    pad++;
  if (padded >= 2 && tmp[padded - 2] == '=')
    pad++;
  got = EVP_DecodeBlock((unsigned char *) out, (unsigned char *) tmp,
                        (int) padded);
  explicit_bzero(tmp, padded);
  free(tmp);
  if (got < 0 || (size_t) got < pad) {
    explicit_bzero(out, padded / 4 * 3 + 1);
    free(out);
    return NULL;
  }
  *outlen = (size_t) got - pad;
  out[*outlen] = '\0';
  return out;
}
