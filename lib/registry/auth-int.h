/* soci-nbd: internal to lib/registry/auth*.c — what auth.c (the
 * authenticator and small helpers), auth-challenge.c (WWW-Authenticate
 * parsing) and auth-creds.c (credentials) share.  Not a public API.
 */
#ifndef SN_AUTH_INT_H
#define SN_AUTH_INT_H

#include <stddef.h>
#include <time.h>

/* Token lifetime (seconds) when the token server gives none or a bad
 * one. */
#define DEFAULT_EXPIRES 60

/* A malloc'd NUL-terminated copy of the n bytes at s; NULL on OOM. */
char *sn_auth_dup_n(const char *s, size_t n);

/* sn_auth_dup_n, lower-cased. */
char *sn_auth_lower_dup(const char *s, size_t n);

/* The CLOCK_MONOTONIC time. */
struct timespec sn_auth_now_mono(void);

#endif
