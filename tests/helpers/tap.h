/* soci-nbd tests: a minimal TAP producer for C unit tests.
 * ok(cond, fmt, ...) prints one TAP line; done_testing() prints the plan
 * and returns the exit status.  OK/ERR/WHY (below) show the library's
 * error in a message; tap_tmpdir and tap_rm_tree give a test its own
 * scratch directory; tap_buf_put grows a byte buffer. */
#ifndef SN_TAP_H
#define SN_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

/* ok() whose condition is evaluated before the arguments of its message
 * (which often show sn_error() of the call in the condition). */
#define OK(cond, ...)                                                        \
  do {                                                                       \
    int c_ = !!(cond);                                                       \
    ok(c_, __VA_ARGS__);                                                     \
  } while (0)
/* In OK()'s message: the library's error when the check failed (ERR, for
 * calls expected to succeed) or passed (WHY, for calls expected to fail):
 * then it is the error of the call just made, never a stale one.  The
 * test includes util/err.h. */
#define ERR (c_ ? "ok" : sn_error())
#define WHY (c_ ? sn_error() : "no error")

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

/* A growing byte buffer for building test inputs (tar streams, gzip
 * members); aborts when out of memory. */
struct tap_buf {
  uint8_t *p;
  size_t len, cap;
};

static inline void
tap_buf_put(struct tap_buf *b, const void *d, size_t n)
{
  while (b->len + n > b->cap) {
    b->cap = b->cap ? b->cap * 2 : 1 << 20;
    b->p = realloc(b->p, b->cap);
    if (b->p == NULL)
      abort();
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

/* Append a ustar header for an entry of the given type and size (mode
 * 0755 for directories, else 0644; uid and gid 1000; link target for
 * links, or NULL) to t; the caller appends the data and its padding. */
static inline void
tap_tar_header(struct tap_buf *t, const char *name, char type, uint64_t size,
               uint64_t mtime, const char *link)
{
  uint8_t h[512];
  unsigned sum = 0;
  size_t i;

  memset(h, 0, sizeof h);
  snprintf((char *) h, 100, "%s", name);
  snprintf((char *) h + 100, 8, "%07o", type == '5' ? 0755 : 0644);
  snprintf((char *) h + 108, 8, "%07o", 1000);
  snprintf((char *) h + 116, 8, "%07o", 1000);
  snprintf((char *) h + 124, 12, "%011llo", (unsigned long long) size);
  snprintf((char *) h + 136, 12, "%011llo", (unsigned long long) mtime);
  h[156] = (uint8_t) type;
  if (link)
    snprintf((char *) h + 157, 100, "%s", link);
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  for (i = 0; i < 512; i++)
    sum += h[i];
  snprintf((char *) h + 148, 8, "%06o", sum);
  tap_buf_put(t, h, 512);
}

/* A new directory $TMPDIR/soci-nbd-test-NAME-XXXXXX in buf (n bytes);
 * bails out (exit 1) when it cannot be made. */
static inline void
tap_tmpdir(char *buf, size_t n, const char *name)
{
  const char *t = getenv("TMPDIR");

  snprintf(buf, n, "%s/soci-nbd-test-%s-XXXXXX", t ? t : "/tmp", name);
  if (mkdtemp(buf) == NULL) {
    printf("Bail out! mkdtemp %s: %s\n", buf, strerror(errno));
    exit(1);
  }
}

/* Remove dir and everything below it, made writable first (tests take
 * permissions away); a diagnostic if that fails. */
static inline void
tap_rm_tree(const char *dir)
{
  char cmd[4200];

  snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'",
           dir, dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
}

#endif
