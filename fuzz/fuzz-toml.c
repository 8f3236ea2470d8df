/* soci-nbd fuzzing: the TOML subset reader (lib/util/toml.h), which reads
 * containerd's hosts.toml files.  Properties checked (abort() when
 * violated):
 *   - a document either parses to a JSON object or fails with a message
 *     naming the file and a line within the input;
 *   - a parsed tree, written back as TOML (every table inline, every
 *     string a basic string with \u escapes), parses to an equal tree —
 *     unless it nests deeper than the reader takes. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
  char *buf;
  size_t len, cap;
};

static void
put(struct out *o, const char *s, size_t n)
{
  if (o->len + n + 1 > o->cap) {
    o->cap = (o->len + n + 1) * 2;
    if ((o->buf = realloc(o->buf, o->cap)) == NULL)
      abort();
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
  o->buf[o->len] = 0;
}

static void
puts_(struct out *o, const char *s)
{
  put(o, s, strlen(s));
}

static void
string(struct out *o, const char *s)
{
  puts_(o, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;
    char esc[8];

    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      snprintf(esc, sizeof esc, "\\u%04X", c);
      puts_(o, esc);
    }
    else
      put(o, s, 1);
  }
  puts_(o, "\"");
}

/* v as a TOML value; false when it nests too deep to read back. */
static bool
value(struct out *o, json_t *v, int depth)
{
  char num[32];
  const char *k;
  json_t *e;
  size_t i;
  bool first = true;

  if (depth > 30)
    return false;
  switch (json_typeof(v)) {
  case JSON_STRING: string(o, json_string_value(v)); return true;
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    puts_(o, num);
    return true;
  case JSON_TRUE: puts_(o, "true"); return true;
  case JSON_FALSE: puts_(o, "false"); return true;
  case JSON_ARRAY:
    puts_(o, "[");
    json_array_foreach(v, i, e) {
      puts_(o, i ? ", " : "");
      if (!value(o, e, depth + 1))
        return false;
    }
    puts_(o, "]");
    return true;
  case JSON_OBJECT:
    puts_(o, "{");
    json_object_foreach(v, k, e) {
      puts_(o, first ? " " : ", ");
      first = false;
      string(o, k);
      puts_(o, " = ");
      if (!value(o, e, depth + 1))
        return false;
    }
    puts_(o, " }");
    return true;
  default:
    abort();                    /* the reader makes no reals or nulls */
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  json_t *a = sn_toml_parse((const char *) data, size, "f.toml"), *b, *e;
  struct out o = { NULL, 0, 0 };
  const char *k;
  bool fits = true;

  if (a == NULL) {
    const char *m = sn_error();
    long line;

    if (strncmp(m, "f.toml:", 7) != 0)
      abort();
    line = strtol(m + 7, NULL, 10);
    if (line < 1 || (size_t) line > size + 1)
      abort();
    return 0;
  }
  if (!json_is_object(a))
    abort();
  json_object_foreach(a, k, e) {
    string(&o, k);
    puts_(&o, " = ");
    if (!(fits = value(&o, e, 0)))
      break;
    puts_(&o, "\n");
  }
  if (fits) {
    b = sn_toml_parse(o.buf ? o.buf : "", o.len, "again.toml");
    if (b == NULL || !json_equal(a, b)) {
      fprintf(stderr, "round trip: %s\n%s\n", b ? "differs" : sn_error(),
              o.buf ? o.buf : "");
      abort();
    }
    json_decref(b);
  }
  free(o.buf);
  json_decref(a);
  return 0;
}
