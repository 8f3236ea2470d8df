/* soci-nbd fuzzing: image references and platform strings.  Properties
 * checked (abort() when violated):
 *   - a reference that parses serializes (sn_ref_string), and that string
 *     parses again to the same kind, registry, repository, tag, digest
 *     and layout directory (which may only gain a trailing '/', the form
 *     sn_ref_string uses to keep a directory name like "d:tag" apart),
 *     and for layouts whether the tag was defaulted (a registry reference
 *     spells the default ":latest" out);
 *   - serializing that second parse gives the same string (a fixed point);
 *   - a platform that parses is lower-case os/arch[/variant] and its
 *     "os/arch[/variant]" form parses back to the same platform. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "registry/manifest.h"
#include "registry/ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
str_eq(const char *a, const char *b)
{
  return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* b is a, or a + "/" (layout directories). */
static bool
dir_eq(const char *a, const char *b)
{
  size_t n;

  if (str_eq(a, b))
    return true;
  if (a == NULL || b == NULL)
    return false;
  n = strlen(a);
  return strncmp(a, b, n) == 0 && b[n] == '/' && b[n + 1] == '\0';
}

static void
fail(const char *what, const char *in, const char *s1, const char *s2)
{
  fprintf(stderr, "%s\n  input:  \"%s\"\n  string: \"%s\"\n  again:  \"%s\"\n"
          "  error:  %s\n", what, in, s1 ? s1 : "(null)", s2 ? s2 : "(null)",
          sn_error());
  abort();
}

static void
check_ref(const char *in)
{
  struct sn_ref a, b;
  char *s1, *s2;

  if (sn_ref_parse(in, &a) == -1) {
    if (a.registry || a.repository || a.tag || a.digest || a.layout_dir)
      abort();                  /* left cleared on failure */
    return;
  }
  if (a.kind == SN_REF_REGISTRY &&
      (a.registry == NULL || a.repository == NULL || a.layout_dir != NULL))
    abort();
  if (a.kind == SN_REF_OCI_LAYOUT &&
      (a.layout_dir == NULL || a.registry != NULL || a.repository != NULL))
    abort();
  if (a.tag == NULL && a.digest == NULL)
    abort();
  (void) sn_ref_api_host(&a);
  if (a.registry)
    (void) sn_ref_is_loopback(a.registry);

  s1 = sn_ref_string(&a);
  if (s1 == NULL)
    fail("sn_ref_string failed", in, NULL, NULL);
  if (sn_ref_parse(s1, &b) == -1)
    fail("serialized reference does not parse", in, s1, NULL);
  if (a.kind != b.kind || !str_eq(a.registry, b.registry) ||
      !str_eq(a.repository, b.repository) || !str_eq(a.tag, b.tag) ||
      !str_eq(a.digest, b.digest) || !dir_eq(a.layout_dir, b.layout_dir) ||
      (a.kind == SN_REF_OCI_LAYOUT && a.tag_defaulted != b.tag_defaulted))
    fail("serialized reference parses to something else", in, s1, NULL);
  s2 = sn_ref_string(&b);
  if (s2 == NULL || strcmp(s1, s2) != 0)
    fail("serialization is not a fixed point", in, s1, s2);
  free(s1);
  free(s2);
  sn_ref_clear(&a);
  sn_ref_clear(&b);
}

static void
check_platform(const char *in)
{
  struct sn_platform p, q;
  char *s;

  if (sn_platform_parse(in, &p) == -1)
    return;
  if (p.os == NULL || p.architecture == NULL || !*p.os || !*p.architecture ||
      (p.variant && !*p.variant))
    abort();
  if (asprintf(&s, "%s/%s%s%s", p.os, p.architecture, p.variant ? "/" : "",
               p.variant ? p.variant : "") < 0)
    abort();
  if (sn_platform_parse(s, &q) == -1 || !str_eq(p.os, q.os) ||
      !str_eq(p.architecture, q.architecture) || !str_eq(p.variant, q.variant))
    fail("platform does not round-trip", in, s, NULL);
  if (!sn_platform_matches(&p, &q))
    fail("platform does not match itself", in, s, NULL);
  free(s);
  sn_platform_clear(&p);
  sn_platform_clear(&q);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);

  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';               /* up to the first NUL, as from argv */
  check_ref(s);
  check_platform(s);
  (void) sn_ref_is_loopback(s);
  free(s);
  return 0;
}
