/* soci-nbd: the TOML subset reader of toml.h — a recursive-descent parser
 * over the buffer, building the jansson tree as it goes. */
#include <config.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/toml.h"

#define TOML_MAX_DEPTH 32
#define TOML_MAX_KEY_PARTS 32

struct tp {
  const char *p, *end;
  int line;
  char err[160];               /* the first error, empty while none */
  json_t **defined;            /* tables given a [header] */
  size_t ndefined, capdefined;
};

static int
bad(struct tp *t, const char *fmt, ...) SN_PRINTF(2, 3);

static int
bad(struct tp *t, const char *fmt, ...)
{
  va_list ap;

  if (t->err[0] == 0) {
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static bool
at(const struct tp *t, char c)
{
  return t->p < t->end && *t->p == c;
}

static bool
starts(const struct tp *t, const char *s)
{
  size_t n = strlen(s);

  return (size_t) (t->end - t->p) >= n && memcmp(t->p, s, n) == 0;
}

static void
skip_blank(struct tp *t)
{
  while (at(t, ' ') || at(t, '\t'))
    t->p++;
}

/* A comment runs to the end of the line; it may not hold control
 * characters other than tab. */
static int
skip_comment(struct tp *t)
{
  if (!at(t, '#'))
    return 0;
  for (; t->p < t->end && *t->p != '\n'; t->p++) {
    unsigned char c = (unsigned char) *t->p;

    if ((c < 0x20 && c != '\t' && !(c == '\r' && t->p + 1 < t->end &&
                                    t->p[1] == '\n')) || c == 0x7f)
      return bad(t, "a control character in a comment");
  }
  return 0;
}

/* The end of a line (LF or CRLF); false if there is none here. */
static bool
eat_newline(struct tp *t)
{
  if (at(t, '\n') || (starts(t, "\r\n"))) {
    t->p += at(t, '\n') ? 1 : 2;
    t->line++;
    return true;
  }
  return false;
}

/* Blanks, comments and newlines (inside arrays). */
static int
skip_space(struct tp *t)
{
  for (;;) {
    skip_blank(t);
    if (skip_comment(t) == -1)
      return -1;
    if (!eat_newline(t))
      return 0;
  }
}

/* After a key/value pair or a header: blanks, a comment, then the end of
 * the line or of the document. */
static int
end_of_line(struct tp *t)
{
  skip_blank(t);
  if (skip_comment(t) == -1)
    return -1;
  if (t->p == t->end || eat_newline(t))
    return 0;
  return bad(t, "unexpected '%c' after a value", *t->p);
}

/* ---- strings --------------------------------------------------------- */

static int
put_utf8(char *o, uint32_t cp)
{
  if (cp < 0x80) {
    o[0] = (char) cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char) (0xc0 | cp >> 6);
    o[1] = (char) (0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char) (0xe0 | cp >> 12);
    o[1] = (char) (0x80 | (cp >> 6 & 0x3f));
    o[2] = (char) (0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char) (0xf0 | cp >> 18);
  o[1] = (char) (0x80 | (cp >> 12 & 0x3f));
  o[2] = (char) (0x80 | (cp >> 6 & 0x3f));
  o[3] = (char) (0x80 | (cp & 0x3f));
  return 4;
}

/* A \uXXXX or \UXXXXXXXX escape's digits (ndig of them) at t->p. */
static int
unicode_escape(struct tp *t, int ndig, char *o)
{
  uint32_t cp = 0;

  for (int i = 0; i < ndig; i++, t->p++) {
    char c = t->p < t->end ? *t->p : 0;
    int v = c >= '0' && c <= '9' ? c - '0'
      : c >= 'a' && c <= 'f' ? c - 'a' + 10
      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

    if (v < 0)
      return bad(t, "a \\%c escape needs %d hex digits", ndig == 4 ? 'u' : 'U',
                 ndig);
    cp = cp << 4 | (uint32_t) v;
  }
  if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return bad(t, "the escape \\u%04X is not a character allowed here",
               (unsigned) cp);
  return put_utf8(o, cp);
}

/* A quoted string at t->p ("basic" or 'literal'), as a NUL-terminated
 * malloc'd string. */
static char *
quoted(struct tp *t)
{
  char q = *t->p;
  const char *s;
  char *out, *o;

  if (starts(t, q == '"' ? "\"\"\"" : "'''")) {
    bad(t, "multi-line strings are not supported");
    return NULL;
  }
  s = ++t->p;
  while (t->p < t->end && *t->p != q && *t->p != '\n')
    t->p += (q == '"' && *t->p == '\\' && t->p + 1 < t->end) ? 2 : 1;
  if (!at(t, q)) {
    bad(t, "a string without its closing %c", q);
    return NULL;
  }
  /* Escapes only shrink: \U00XXXXXX (10 bytes) gives at most 4. */
  out = o = malloc((size_t) (t->p - s) + 1);
  if (out == NULL) {
    bad(t, "out of memory");
    return NULL;
  }
  t->p = s;
  while (*t->p != q) {
    unsigned char c = (unsigned char) *t->p++;
    int n;

    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      bad(t, "a control character in a string");
      goto fail;
    }
    if (c != '\\' || q == '\'') {
      *o++ = (char) c;
      continue;
    }
    c = (unsigned char) *t->p++;
    switch (c) {
    case 'b': *o++ = '\b'; break;
    case 't': *o++ = '\t'; break;
    case 'n': *o++ = '\n'; break;
    case 'f': *o++ = '\f'; break;
    case 'r': *o++ = '\r'; break;
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case 'u': case 'U':
      if ((n = unicode_escape(t, c == 'u' ? 4 : 8, o)) == -1)
        goto fail;
      o += n;
      break;
    default:
      bad(t, "an unknown escape in a string");
      goto fail;
    }
  }
  t->p++;
  *o = 0;
  return out;

fail:
  free(out);
  return NULL;
}

/* ---- keys ------------------------------------------------------------ */

struct key {
  char *part[TOML_MAX_KEY_PARTS];
  size_t n;
};

static void
key_clear(struct key *k)
{
  for (size_t i = 0; i < k->n; i++)
    free(k->part[i]);
  k->n = 0;
}

static bool
bare_char(char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A dotted key (a, "a b".c, 'x'.y) up to the blanks after it. */
static int
parse_key(struct tp *t, struct key *k)
{
  k->n = 0;
  for (;;) {
    char *s;

    skip_blank(t);
    if (k->n == TOML_MAX_KEY_PARTS)
      return bad(t, "a key of more than %d parts", TOML_MAX_KEY_PARTS);
    if (at(t, '"') || at(t, '\'')) {
      json_t *utf8;

      if ((s = quoted(t)) == NULL)
        return -1;
      if ((utf8 = json_string(s)) == NULL) {
        free(s);
        return bad(t, "a key that is not UTF-8");
      }
      json_decref(utf8);
    }
    else {
      const char *b = t->p;

      while (t->p < t->end && bare_char(*t->p))
        t->p++;
      if (t->p == b)
        return t->p < t->end && *t->p != '\n'
          ? bad(t, "unexpected '%c' where a key should be", *t->p)
          : bad(t, "a key is missing");
      if ((s = strndup(b, (size_t) (t->p - b))) == NULL)
        return bad(t, "out of memory");
    }
    k->part[k->n++] = s;
    skip_blank(t);
    if (!at(t, '.'))
      return 0;
    t->p++;
  }
}

/* ---- values ---------------------------------------------------------- */

static json_t *value(struct tp *t, int depth);
static int assign(struct tp *t, json_t *table, struct key *k, json_t *v);

static json_t *
string_value(struct tp *t)
{
  char *s = quoted(t);
  json_t *v;

  if (s == NULL)
    return NULL;
  v = json_string(s);
  free(s);
  if (v == NULL)
    bad(t, "a string that is not UTF-8");
  return v;
}

/* A decimal integer: digits with single underscores between them, an
 * optional sign, no leading zero. */
static json_t *
integer_value(struct tp *t)
{
  bool neg = false, digit = false;
  const char *b;
  uint64_t v = 0;

  if (at(t, '+') || at(t, '-'))
    neg = *t->p++ == '-';
  b = t->p;
  for (; t->p < t->end; t->p++) {
    char c = *t->p;

    if (c == '_' && digit && t->p + 1 < t->end && t->p[1] >= '0' &&
        t->p[1] <= '9')
      continue;
    if (c < '0' || c > '9')
      break;
    if (v > (UINT64_C(1) << 63) / 10 ||
        (v = v * 10 + (uint64_t) (c - '0')) > (UINT64_C(1) << 63) - !neg) {
      bad(t, "an integer out of range");
      return NULL;
    }
    digit = true;
  }
  if (!digit || (t->p < t->end && (bare_char(*t->p) || *t->p == '.' ||
                                   *t->p == ':' || *t->p == '+'))) {
    bad(t, "floats, dates and non-decimal numbers are not supported");
    return NULL;
  }
  if (*b == '0' && t->p - b > 1) {
    bad(t, "an integer with a leading zero");
    return NULL;
  }
  return json_integer(neg ? (json_int_t) (0 - v) : (json_int_t) v);
}

static json_t *
array_value(struct tp *t, int depth)
{
  json_t *a = json_array(), *v;

  t->p++;
  if (a == NULL)
    goto oom;
  for (;;) {
    if (skip_space(t) == -1)
      goto fail;
    if (at(t, ']'))
      break;
    if ((v = value(t, depth + 1)) == NULL)
      goto fail;
    if (json_array_append_new(a, v) == -1)
      goto oom;
    if (skip_space(t) == -1)
      goto fail;
    if (at(t, ','))
      t->p++;
    else if (!at(t, ']')) {
      bad(t, "an array needs ',' or ']' here");
      goto fail;
    }
  }
  t->p++;
  return a;

oom:
  bad(t, "out of memory");
fail:
  json_decref(a);
  return NULL;
}

/* key = value, into table (the value at depth). */
static int
pair(struct tp *t, json_t *table, int depth)
{
  struct key k = { .n = 0 };
  json_t *v;
  int r = -1;

  if (parse_key(t, &k) == -1)
    goto out;
  if (!at(t, '=')) {
    bad(t, "a key needs '=' and a value");
    goto out;
  }
  t->p++;
  skip_blank(t);
  if ((v = value(t, depth)) != NULL)
    r = assign(t, table, &k, v);
out:
  key_clear(&k);
  return r;
}

/* { k = v, ... } on one line, no trailing comma. */
static json_t *
inline_table(struct tp *t, int depth)
{
  json_t *o = json_object();

  t->p++;
  if (o == NULL) {
    bad(t, "out of memory");
    return NULL;
  }
  skip_blank(t);
  if (at(t, '}')) {
    t->p++;
    return o;
  }
  for (;;) {
    if (pair(t, o, depth + 1) == -1)
      goto fail;
    skip_blank(t);
    if (at(t, '}'))
      break;
    if (!at(t, ',')) {
      bad(t, "an inline table needs ',' or '}' here");
      goto fail;
    }
    t->p++;
  }
  t->p++;
  return o;

fail:
  json_decref(o);
  return NULL;
}

static json_t *
value(struct tp *t, int depth)
{
  if (depth > TOML_MAX_DEPTH) {
    bad(t, "values nested more than %d deep", TOML_MAX_DEPTH);
    return NULL;
  }
  if (t->p == t->end || *t->p == '\n' || *t->p == '\r' || *t->p == '#') {
    bad(t, "a value is missing");
    return NULL;
  }
  switch (*t->p) {
  case '"': case '\'': return string_value(t);
  case '[': return array_value(t, depth);
  case '{': return inline_table(t, depth);
  }
  if (starts(t, "true") || starts(t, "false")) {
    bool v = *t->p == 't';

    t->p += v ? 4 : 5;
    if (t->p == t->end || !bare_char(*t->p))
      return json_boolean(v);
  }
  else if ((*t->p >= '0' && *t->p <= '9') || *t->p == '+' || *t->p == '-')
    return integer_value(t);
  bad(t, "an unknown value (floats, dates and bare words are not supported)");
  return NULL;
}

/* ---- tables ---------------------------------------------------------- */

/* The table at the first n parts of k under table, made when missing; a
 * part naming something other than a table is an error. */
static json_t *
descend(struct tp *t, json_t *table, const struct key *k, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    json_t *next = json_object_get(table, k->part[i]);

    if (next == NULL) {
      next = json_object();
      if (next == NULL || json_object_set_new(table, k->part[i], next) == -1) {
        bad(t, "out of memory");
        return NULL;
      }
    }
    else if (!json_is_object(next)) {
      bad(t, "\"%.60s\" is not a table", k->part[i]);
      return NULL;
    }
    table = next;
  }
  return table;
}

/* table[k] = v (v's reference is taken, also on failure). */
static int
assign(struct tp *t, json_t *table, struct key *k, json_t *v)
{
  json_t *parent = descend(t, table, k, k->n - 1);
  const char *last = k->part[k->n - 1];

  if (parent == NULL) {
    json_decref(v);
    return -1;
  }
  if (json_object_get(parent, last)) {
    json_decref(v);
    return bad(t, "the key \"%.60s\" is defined twice", last);
  }
  if (json_object_set_new(parent, last, v) == -1)
    return bad(t, "out of memory");
  return 0;
}

/* [a.b.c]: the table to which the following pairs belong. */
static json_t *
header(struct tp *t, json_t *root)
{
  struct key k = { .n = 0 };
  json_t *table = NULL;

  t->p++;
  if (at(t, '[')) {
    bad(t, "arrays of tables ([[...]]) are not supported");
    return NULL;
  }
  if (parse_key(t, &k) == -1)
    goto out;
  if (!at(t, ']')) {
    bad(t, "a table header needs its closing ']'");
    goto out;
  }
  t->p++;
  if ((table = descend(t, root, &k, k.n)) == NULL)
    goto out;
  for (size_t i = 0; i < t->ndefined; i++)
    if (t->defined[i] == table) {
      bad(t, "the table [%.60s] is defined twice", k.part[k.n - 1]);
      table = NULL;
      goto out;
    }
  if (t->ndefined == t->capdefined) {
    size_t cap = t->capdefined ? 2 * t->capdefined : 16;
    json_t **d = realloc(t->defined, cap * sizeof *d);

    if (d == NULL) {
      bad(t, "out of memory");
      table = NULL;
      goto out;
    }
    t->defined = d;
    t->capdefined = cap;
  }
  t->defined[t->ndefined++] = table;
out:
  key_clear(&k);
  return table;
}

json_t *
sn_toml_parse(const char *buf, size_t len, const char *what)
{
  struct tp t = { .p = buf, .end = buf + len, .line = 1 };
  json_t *root = json_object(), *table = root;

  if (root == NULL) {
    sn_oom();
    return NULL;
  }
  if (memchr(buf, 0, len)) {
    bad(&t, "a NUL byte");
    goto fail;
  }
  while (t.p < t.end) {
    skip_blank(&t);
    if (skip_comment(&t) == -1)
      goto fail;
    if (t.p == t.end || eat_newline(&t))
      continue;
    if (at(&t, '[')) {
      if ((table = header(&t, root)) == NULL)
        goto fail;
    }
    else if (pair(&t, table, 0) == -1)
      goto fail;
    if (end_of_line(&t) == -1)
      goto fail;
  }
  free(t.defined);
  return root;

fail:
  free(t.defined);
  json_decref(root);
  sn_set_error("%s:%d: %s", what, t.line, t.err[0] ? t.err : "malformed");
  return NULL;
}
