/* soci-nbd tests: SHA-256 and digest strings (lib/util/digest.c). */
#include <config.h>

#include <string.h>

#include "util/digest.h"
#include "tap.h"

int
main(void)
{
  uint8_t d[SN_SHA256_LEN], e[SN_SHA256_LEN];
  char s[SN_DIGEST_STRLEN + 1];
  struct sn_sha256 h;
  size_t i;

  /* FIPS 180-2 test vector, and the empty-config blob of SOCI indexes. */
  sn_sha256("abc", 3, d);
  sn_digest_format(d, s);
  ok(strcmp(s, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
     "sha256(abc) = %s", s);
  sn_sha256("{}", 2, d);
  sn_digest_format(d, s);
  ok(strcmp(s, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a") == 0,
     "sha256({}) is the SOCI empty config digest");

  /* Streaming in pieces equals one shot, and the context is reusable. */
  ok(sn_sha256_init(&h) == 0, "init");
  for (i = 0; i < 2; i++) {
    sn_sha256_update(&h, "a", 1);
    sn_sha256_update(&h, "", 0);
    sn_sha256_update(&h, "bc", 2);
    sn_sha256_final(&h, e);
    sn_sha256("abc", 3, d);
    ok(memcmp(d, e, sizeof d) == 0, "streaming hash equals one-shot (%zu)", i);
  }
  sn_sha256_free(&h);

  /* Parsing round trip and rejections. */
  ok(sn_digest_parse(s, strlen(s), e) == 0,
     "parse a formatted digest");
  sn_sha256("{}", 2, d);
  ok(memcmp(d, e, sizeof d) == 0, "parsed bytes equal the hash");
  ok(sn_digest_parse(s, strlen(s) - 1, e) == -1, "too short rejected");
  s[10] = 'A';
  ok(sn_digest_parse(s, strlen(s), e) == -1, "upper-case hex rejected");
  ok(sn_digest_parse("sha512:00", 9, e) == -1, "other algorithm rejected");
  ok(sn_digest_parse("", 0, e) == -1, "empty rejected");
  return done_testing();
}
