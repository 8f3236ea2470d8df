/* soci-nbd: registry authentication — WWW-Authenticate parsing, Basic and
 * Bearer (token) schemes, a token cache per scope, and credentials from
 * the caller or a docker config.json (auths, identitytoken, credHelpers,
 * credsStore).
 *
 * A struct sn_auth serves one registry endpoint (host) and may be used
 * from many threads: its state is behind a mutex, and a token request is
 * made by one thread while others wanting the same scope wait for it.
 * Credentials are looked up lazily, at the first challenge, so a
 * credential helper runs only when the registry asks for authentication.
 *
 * Secrets (passwords, tokens, identity tokens, helper output, header
 * values) never appear in error messages or debug output, and are wiped
 * from memory when freed.  Credentials are sent to a token realm over
 * plain HTTP only when the realm is a loopback host or the registry's own
 * origin.  Errors follow err.h.
 */
#ifndef SN_AUTH_H
#define SN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "registry/http.h"

/* ---- WWW-Authenticate (RFC 7235) ------------------------------------ */

struct sn_auth_param {
  char *name;               /* lower-cased */
  char *value;              /* unquoted, unescaped */
};

struct sn_auth_challenge {
  char *scheme;             /* lower-cased: "bearer", "basic", ... */
  char *token68;            /* or NULL */
  struct sn_auth_param *params;
  size_t nparams;
};

/* Parse a header value holding one or more challenges ("Bearer
 * realm=\"…\",service=\"…\", Basic realm=\"…\"").  *out is malloc'd
 * (free with sn_auth_challenges_free); 0 challenges is not an error. */
int sn_auth_parse_challenges(const char *hdr, struct sn_auth_challenge **out,
                             size_t *n);
void sn_auth_challenges_free(struct sn_auth_challenge *c, size_t n);
/* The value of a parameter (name case-insensitive), or NULL. */
const char *sn_auth_challenge_param(const struct sn_auth_challenge *c,
                                    const char *name);

/* ---- credentials ------------------------------------------------------- */

struct sn_auth_creds {
  char *username;           /* NULL when none */
  char *password;
  char *identity_token;     /* OAuth2 refresh token, or NULL */
};

/* Wipe and free the strings. */
void sn_auth_creds_clear(struct sn_auth_creds *c);
/* Wipe a secret s (NUL-terminated) and free it; NULL is fine. */
void sn_auth_wipe_free(char *s);
/* A password from the first line of f (--password-stdin), without its
 * line end: malloc'd, for sn_auth_wipe_free; NULL when there is no line
 * (no message). */
char *sn_auth_read_password(FILE *f);

/* Credentials for host ("docker.io", "127.0.0.1:5000") from a docker
 * config: auth_file, else $DOCKER_CONFIG/config.json, else
 * ~/.docker/config.json (a missing default file means none).  Order:
 * credHelpers[host], credsStore, then the "auths" entry (keyed by host or
 * URL; docker.io also matches index.docker.io and
 * https://index.docker.io/v1/).  Helpers run as "docker-credential-NAME
 * get" found on PATH.  Returns 1 with *c filled, 0 when there are none, -1
 * on error. */
int sn_auth_creds_lookup(const char *auth_file, const char *host,
                         struct sn_auth_creds *c);

/* A credential helper's "get" output, {"Username": U, "Secret": S}
 * (U "<token>": S is an identity token).  1 with *c filled, 0 when there
 * is no secret, -1 when it is not a JSON object (error set, without the
 * secret).  The secret's copies inside the parser are wiped. */
int sn_auth_parse_helper_output(const char *buf, size_t len,
                                struct sn_auth_creds *c);

/* A token server's answer: the token ("token", else "access_token"),
 * malloc'd (the caller wipes it), and *expires_in its lifetime in seconds
 * ("expires_in" clamped to 1 s .. 1 year; 60 when absent or invalid).
 * NULL with an error (never the token) when there is none. */
char *sn_auth_parse_token_response(const uint8_t *buf, size_t len,
                                   int64_t *expires_in);

/* ---- per-endpoint authenticator --------------------------------------- */

struct sn_auth;

/* host: the registry name for credential lookup ("docker.io").  origin:
 * the endpoint's URL (for the plain-HTTP realm rule).  username/password
 * (both or neither) win over the docker config; auth_file as in
 * sn_auth_creds_lookup.  http is borrowed. */
struct sn_auth *sn_auth_new(struct sn_http *http, const char *host,
                            const char *origin, const char *username,
                            const char *password, const char *auth_file);
void sn_auth_free(struct sn_auth *a);

/* The Authorization header value to send for scope
 * ("repository:a/b:pull"), malloc'd into *hdr, or *hdr = NULL when no
 * challenge has been seen yet (anonymous first try).  A cached token that
 * has expired is renewed here.  Returns 0 or -1. */
int sn_auth_header(struct sn_auth *a, const char *scope, char **hdr);

/* After a 401: www_authenticate is the response's header (may be NULL),
 * failed the Authorization value that was sent (may be NULL).  Obtains
 * new authorization for scope (a token, or Basic credentials); 0 means
 * retry the request with sn_auth_header(), -1 means give up (message
 * set: no credentials, credentials rejected, token server error). */
int sn_auth_challenge(struct sn_auth *a, const char *www_authenticate,
                      const char *scope, const char *failed);

#endif
