/* soci-nbd: SHA-256 through OpenSSL's EVP interface, and digest strings. */
#include <config.h>

#include <string.h>

#include <openssl/evp.h>

#include "util/digest.h"
#include "util/err.h"

/* On failure h->ctx is NULL, so sn_sha256_free is still safe to call. */
int
sn_sha256_init(struct sn_sha256 *h)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();

  h->ctx = ctx;
  if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(ctx);
    h->ctx = NULL;
    return sn_set_error("sha256: cannot initialise OpenSSL digest");
  }
  return 0;
}

/* Nothing is hashed for len 0, so data may then be NULL. */
void
sn_sha256_update(struct sn_sha256 *h, const void *data, size_t len)
{
  if (len)
    EVP_DigestUpdate(h->ctx, data, len);
}

/* Re-initialised at once, so h can hash the next message. */
void
sn_sha256_final(struct sn_sha256 *h, uint8_t out[SN_SHA256_LEN])
{
  unsigned int n = SN_SHA256_LEN;

  EVP_DigestFinal_ex(h->ctx, out, &n);
  EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void
sn_sha256_free(struct sn_sha256 *h)
{
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
}

void
sn_sha256(const void *data, size_t len, uint8_t out[SN_SHA256_LEN])
{
  unsigned int n = SN_SHA256_LEN;

  EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void
sn_digest_format(const uint8_t d[SN_SHA256_LEN], char *out)
{
  static const char hex[] = "0123456789abcdef";
  size_t i;

  memcpy(out, "sha256:", 7);
  for (i = 0; i < SN_SHA256_LEN; i++) {
    out[7 + 2 * i] = hex[d[i] >> 4];
    out[8 + 2 * i] = hex[d[i] & 15];
  }
  out[SN_DIGEST_STRLEN] = '\0';
}

/* A lowercase hex digit's value, or -1 (digests are lowercase only). */
static int
hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

int
sn_digest_parse(const char *s, size_t len, uint8_t out[SN_SHA256_LEN])
{
  size_t i;

  if (len != SN_DIGEST_STRLEN || memcmp(s, "sha256:", 7) != 0)
    return sn_set_error("invalid digest \"%.*s\": want sha256:<64 hex digits>",
                        (int) (len > 80 ? 80 : len), s);
  for (i = 0; i < SN_SHA256_LEN; i++) {
    int hi = hexval(s[7 + 2 * i]), lo = hexval(s[8 + 2 * i]);
    if (hi < 0 || lo < 0)
      return sn_set_error("invalid digest \"%.*s\": want lowercase hex",
                          (int) len, s);
    out[i] = (uint8_t) (hi << 4 | lo);
  }
  return 0;
}

void
sn_digest_of(const void *data, size_t len, char *out)
{
  uint8_t d[SN_SHA256_LEN];

  sn_sha256(data, len, d);
  sn_digest_format(d, out);
}
