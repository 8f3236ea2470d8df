/* soci-nbd tests: a minimal TAP producer for C unit tests.
 * ok(cond, fmt, ...) prints one TAP line; done_testing() prints the plan
 * and returns the exit status. */
#ifndef SN_TAP_H
#define SN_TAP_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

static inline int __attribute__((format(printf, 2, 3)))
ok(int cond, const char *fmt, ...)
{
  va_list ap;

  printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  if (!cond)
    tap_failed++;
  return cond;
}

static inline void __attribute__((format(printf, 1, 2)))
diag(const char *fmt, ...)
{
  va_list ap;

  printf("# ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
}

static inline int
done_testing(void)
{
  printf("1..%d\n", tap_n);
  return tap_failed ? 1 : 0;
}

/* Read a whole file into a malloc'd buffer; aborts the test on failure. */
static inline unsigned char *
slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  unsigned char *buf = NULL;
  size_t cap = 0, n = 0, r;

  if (f == NULL) {
    printf("Bail out! cannot open %s\n", path);
    exit(1);
  }
  do {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      buf = realloc(buf, cap);
      if (buf == NULL)
        abort();
    }
    r = fread(buf + n, 1, cap - n, f);
    n += r;
  } while (r > 0);
  fclose(f);
  *len = n;
  return buf;
}

/* xorshift64: the tests' reproducible pseudo-random numbers (*state must
 * not be 0). */
static inline uint64_t
tap_xorshift(uint64_t *state)
{
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

#endif
