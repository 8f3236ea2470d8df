/* soci-nbd fuzzing: JSON that an outside program hands the registry
 * client — a token server's answer (sn_auth_parse_token_response) and a
 * docker credential helper's output (sn_auth_parse_helper_output).  The
 * whole input is given to both.  A token returned is non-empty and its
 * lifetime within the documented clamp; an error never repeats the
 * secret. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "registry/auth.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sn_auth_creds c;
  int64_t expires = 0;
  char *tok = sn_auth_parse_token_response(data, size, &expires);
  int r;

  if (tok) {
    if (*tok == '\0' || expires < 1 || expires > 86400 * 365)
      abort();
    free(tok);
  }
  r = sn_auth_parse_helper_output((const char *) data, size, &c);
  if (r == 1) {
    if (c.identity_token == NULL && (c.username == NULL || c.password == NULL
                                     || *c.password == '\0'))
      abort();
    sn_auth_creds_clear(&c);
  }
  else if (r == 0) {
    if (c.username || c.password || c.identity_token)
      abort();
  }
  else if (r != -1 || strstr(sn_error(), "Secret"))
    abort();
  return 0;
}
