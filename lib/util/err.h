/* soci-nbd: error reporting shared by every lib/ module.
 *
 * Convention, once for the whole library: a function that can fail returns
 * -1 (or NULL) and records a one-line, human-readable message with
 * sn_set_error().  The message is one line (control characters become
 * '?'), never contains a secret, and is kept per thread until the next
 * failure.  Callers add
 * context with sn_prefix_error() ("ztoc: " + "truncated vtable at 40").
 */
#ifndef SN_ERR_H
#define SN_ERR_H

#include <stdarg.h>

#define SN_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Record an error message for the calling thread.  Always returns -1, so
 * "return sn_set_error(...)" reads naturally. */
int sn_set_error(const char *fmt, ...) SN_PRINTF(1, 2);

/* Prepend formatted context to the calling thread's current message. */
int sn_prefix_error(const char *fmt, ...) SN_PRINTF(1, 2);

/* The calling thread's last message ("unknown error" if none). */
const char *sn_error(void);

/* Set "out of memory" and return -1. */
int sn_oom(void);

#endif
