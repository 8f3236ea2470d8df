/* soci-nbd: per-thread error messages (see err.h for the convention). */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "util/err.h"

#define SN_ERR_MAX 1024

static _Thread_local char errbuf[SN_ERR_MAX];

/* Messages are one line: control characters (often quoted from hostile
 * input) become '?'. */
static void
one_line(char *p)
{
  for (; *p; p++)
    if ((unsigned char) *p < 0x20 || *p == 0x7f)
      *p = '?';
}

/* Truncated to SN_ERR_MAX - 1 bytes and made one line. */
int
sn_set_error(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  one_line(errbuf);
  return -1;
}

/* Format the prefix over the buffer, then append the old message (lost
 * if the prefix alone fills the buffer). */
int
sn_prefix_error(const char *fmt, ...)
{
  char old[SN_ERR_MAX];
  va_list ap;
  int n;

  memcpy(old, errbuf, sizeof old);
  va_start(ap, fmt);
  n = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t) n < sizeof errbuf)
    snprintf(errbuf + n, sizeof errbuf - n, "%s", old);
  one_line(errbuf);
  return -1;
}

const char *
sn_error(void)
{
  return errbuf[0] ? errbuf : "unknown error";
}

int
sn_oom(void)
{
  return sn_set_error("out of memory");
}
