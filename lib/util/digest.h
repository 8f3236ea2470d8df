/* soci-nbd: SHA-256 (OpenSSL libcrypto) and "sha256:<hex>" digest strings.
 * Errors follow err.h: -1 and a message. */
#ifndef SN_DIGEST_H
#define SN_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define SN_SHA256_LEN 32
#define SN_DIGEST_STRLEN 71 /* "sha256:" + 64 lowercase hex digits */

struct sn_sha256 {
  void *ctx; /* EVP_MD_CTX, owned */
};

/* Start a hash.  The context is reusable after sn_sha256_final(). */
int sn_sha256_init(struct sn_sha256 *h);
void sn_sha256_update(struct sn_sha256 *h, const void *data, size_t len);
/* Write the digest and reset the context for a new message. */
void sn_sha256_final(struct sn_sha256 *h, uint8_t out[SN_SHA256_LEN]);
void sn_sha256_free(struct sn_sha256 *h);

/* One-shot hash. */
void sn_sha256(const void *data, size_t len, uint8_t out[SN_SHA256_LEN]);

/* "sha256:<hex>", NUL-terminated, into out[SN_DIGEST_STRLEN + 1]. */
void sn_digest_format(const uint8_t d[SN_SHA256_LEN], char *out);

/* "sha256:<hex>" of len bytes at data, into out (SN_DIGEST_STRLEN + 1). */
void sn_digest_of(const void *data, size_t len, char *out);

/* Parse exactly "sha256:" followed by 64 lowercase hex digits. */
int sn_digest_parse(const char *s, size_t len, uint8_t out[SN_SHA256_LEN]);

#endif
