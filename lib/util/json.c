/* soci-nbd: a JSON writer byte-compatible with Go's encoding/json
 * (json.Marshal with its default HTML escaping). */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/json.h"

void
sn_json_init(struct sn_json *w)
{
  memset(w, 0, sizeof *w);
}

/* Values outside 1..8 mean compact. */
void
sn_json_set_indent(struct sn_json *w, int spaces)
{
  w->indent = spaces > 0 && spaces <= 8 ? spaces : 0;
}

void
sn_json_free(struct sn_json *w)
{
  free(w->buf);
  sn_json_init(w);
}

/* Record the first error; every later call then does nothing. */
static void
fail(struct sn_json *w, const char *msg)
{
  if (w->err == 0) {
    w->err = -1;
    snprintf(w->errmsg, sizeof w->errmsg, "%s", msg);
  }
}

/* Append n bytes, growing the buffer by doubling; the text stays
 * NUL-terminated (not counted in len). */
static void
put(struct sn_json *w, const char *s, size_t n)
{
  if (w->err)
    return;
  if (w->cap - w->len < n + 1) {
    size_t cap = w->cap ? w->cap : 256;
    char *p;

    while (cap - w->len < n + 1) {
      if (cap > SIZE_MAX / 2) {
        fail(w, "document too large");
        return;
      }
      cap *= 2;
    }
    p = realloc(w->buf, cap);
    if (p == NULL) {
      fail(w, "out of memory");
      return;
    }
    w->buf = p;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
  w->buf[w->len] = '\0';
}

static void
putc1(struct sn_json *w, char c)
{
  put(w, &c, 1);
}

/* With indentation: a line break and depth levels of spaces. */
static void
newline(struct sn_json *w, int depth)
{
  int i;

  if (w->indent == 0)
    return;
  putc1(w, '\n');
  for (i = 0; i < depth * w->indent; i++)
    putc1(w, ' ');
}

/* Before any value: the separating comma, unless it follows a key. */
static void
value_prefix(struct sn_json *w)
{
  if (w->err)
    return;
  if (w->after_key) {
    w->after_key = false;
    return;
  }
  if (w->in_object[w->depth]) {
    fail(w, "value without a key inside an object");
    return;
  }
  if (w->need_comma[w->depth])
    putc1(w, ',');
  w->need_comma[w->depth] = true;
  if (w->depth > 0)
    newline(w, w->depth);
}

/* Open an object or array as a value: comma, bracket, a new level. */
static void
begin(struct sn_json *w, char c, bool object)
{
  value_prefix(w);
  if (w->err)
    return;
  if (w->depth == SN_JSON_MAX_DEPTH) {
    fail(w, "nesting too deep");
    return;
  }
  putc1(w, c);
  w->depth++;
  w->need_comma[w->depth] = false;
  w->in_object[w->depth] = object;
}

/* Close the innermost level, which must be of the same kind and not be
 * waiting for a key's value. */
static void
end(struct sn_json *w, char c, bool object)
{
  if (w->err)
    return;
  if (w->depth == 0 || w->in_object[w->depth] != object || w->after_key) {
    fail(w, "unbalanced end of object or array");
    return;
  }
  if (w->need_comma[w->depth])   /* not empty */
    newline(w, w->depth - 1);
  putc1(w, c);
  w->depth--;
}

void
sn_json_begin_object(struct sn_json *w)
{
  begin(w, '{', true);
}

void
sn_json_end_object(struct sn_json *w)
{
  end(w, '}', true);
}

void
sn_json_begin_array(struct sn_json *w)
{
  begin(w, '[', false);
}

void
sn_json_end_array(struct sn_json *w)
{
  end(w, ']', false);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when Go's
 * utf8.DecodeRune would return (RuneError, 1): bad lead or continuation
 * bytes, overlong forms, surrogates, code points above U+10FFFF,
 * truncation.  *cp receives the code point. */
static size_t
utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
  unsigned char b0 = s[0], lo = 0x80, hi = 0xBF;
  size_t len, i;
  uint32_t c;

  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    c = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    c = b0 & 0x0F;
    if (b0 == 0xE0)
      lo = 0xA0;
    else if (b0 == 0xED)
      hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    c = b0 & 0x07;
    if (b0 == 0xF0)
      lo = 0x90;
    else if (b0 == 0xF4)
      hi = 0x8F;
  } else
    return 0;
  if (n < len)
    return 0;
  for (i = 1; i < len; i++) {
    unsigned char b = s[i];

    if (b < lo || b > hi)
      return 0;
    lo = 0x80;
    hi = 0xBF;
    c = (c << 6) | (b & 0x3F);
  }
  *cp = c;
  return len;
}

/* A quoted string as Go's encodeState.string escapes it (json.h): runs of
 * plain bytes are copied whole, the rest escaped one by one. */
static void
put_escaped(struct sn_json *w, const char *str, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *) str;
  size_t i = 0, start = 0;

  putc1(w, '"');
  while (i < n) {
    unsigned char b = s[i];
    char esc[8];
    size_t elen = 0;

    if (b < 0x80) {
      if (b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' &&
          b != '&') {
        i++;
        continue;
      }
      esc[0] = '\\';
      switch (b) {
      case '"': case '\\': esc[1] = (char) b; elen = 2; break;
      case '\b': esc[1] = 'b'; elen = 2; break;
      case '\f': esc[1] = 'f'; elen = 2; break;
      case '\n': esc[1] = 'n'; elen = 2; break;
      case '\r': esc[1] = 'r'; elen = 2; break;
      case '\t': esc[1] = 't'; elen = 2; break;
      default:
        memcpy(esc + 1, "u00", 3);
        esc[4] = hex[b >> 4];
        esc[5] = hex[b & 0xF];
        elen = 6;
      }
      put(w, str + start, i - start);
      put(w, esc, elen);
      i++;
      start = i;
    } else {
      uint32_t cp = 0;
      size_t len = utf8_seq(s + i, n - i, &cp);

      if (len == 0) {
        put(w, str + start, i - start);
        put(w, "\\ufffd", 6);
        i++;
        start = i;
      } else if (cp == 0x2028 || cp == 0x2029) {
        put(w, str + start, i - start);
        put(w, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
        i += len;
        start = i;
      } else
        i += len;
    }
  }
  put(w, str + start, n - start);
  putc1(w, '"');
}

/* Keys get their own comma (value_prefix would refuse them in an
 * object); the value that follows does not. */
void
sn_json_key(struct sn_json *w, const char *key)
{
  if (w->err)
    return;
  if (!w->in_object[w->depth] || w->after_key) {
    fail(w, "key outside an object");
    return;
  }
  if (w->need_comma[w->depth])
    putc1(w, ',');
  w->need_comma[w->depth] = true;
  newline(w, w->depth);
  put_escaped(w, key, strlen(key));
  putc1(w, ':');
  if (w->indent)
    putc1(w, ' ');
  w->after_key = true;
}

void
sn_json_string_len(struct sn_json *w, const char *s, size_t len)
{
  value_prefix(w);
  if (w->err)
    return;
  put_escaped(w, s, len);
}

/* NULL is written as "", Go's zero string. */
void
sn_json_string(struct sn_json *w, const char *s)
{
  sn_json_string_len(w, s ? s : "", s ? strlen(s) : 0);
}

void
sn_json_int(struct sn_json *w, int64_t v)
{
  char buf[24];
  int n;

  value_prefix(w);
  if (w->err)
    return;
  n = snprintf(buf, sizeof buf, "%" PRId64, v);
  put(w, buf, (size_t) n);
}

void
sn_json_bool(struct sn_json *w, bool v)
{
  value_prefix(w);
  if (w->err)
    return;
  if (v)
    put(w, "true", 4);
  else
    put(w, "false", 5);
}

void
sn_json_null(struct sn_json *w)
{
  value_prefix(w);
  if (w->err)
    return;
  put(w, "null", 4);
}

/* Not checked: json must be exactly one valid value. */
void
sn_json_member_int(struct sn_json *w, const char *key, int64_t v)
{
  sn_json_key(w, key);
  sn_json_int(w, v);
}

void
sn_json_member_bool(struct sn_json *w, const char *key, bool v)
{
  sn_json_key(w, key);
  sn_json_bool(w, v);
}

void
sn_json_member_string(struct sn_json *w, const char *key, const char *s)
{
  sn_json_key(w, key);
  if (s)
    sn_json_string(w, s);
  else
    sn_json_null(w);
}

void
sn_json_member_string_len(struct sn_json *w, const char *key, const char *s,
                          size_t len)
{
  sn_json_key(w, key);
  sn_json_string_len(w, s, len);
}

void
sn_json_raw(struct sn_json *w, const char *json, size_t len)
{
  value_prefix(w);
  if (w->err)
    return;
  put(w, json, len);
}

struct kv_sort {
  const char *key;
  size_t idx;
};

/* Bytewise keys, original order on ties (a stable qsort). */
static int
kv_cmp(const void *a, const void *b)
{
  const struct kv_sort *x = a, *y = b;
  int c = strcmp(x->key, y->key); /* compares as unsigned char: bytewise */

  if (c)
    return c;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort indexes, not the caller's arrays; keys and values stay theirs. */
void
sn_json_string_map(struct sn_json *w, const char *const *keys,
                   const char *const *values, size_t n)
{
  struct kv_sort *order;
  size_t i;

  if (w->err)
    return;
  order = n ? calloc(n, sizeof *order) : NULL;
  if (n && order == NULL) {
    fail(w, "out of memory");
    return;
  }
  for (i = 0; i < n; i++) {
    order[i].key = keys[i];
    order[i].idx = i;
  }
  if (n > 1)
    qsort(order, n, sizeof *order, kv_cmp);
  sn_json_begin_object(w);
  for (i = 0; i < n; i++) {
    sn_json_key(w, order[i].key);
    sn_json_string(w, values[order[i].idx]);
  }
  sn_json_end_object(w);
  free(order);
}

/* A document must be complete: depth 0, no dangling key, not empty. */
int
sn_json_finish(struct sn_json *w, char **out, size_t *len)
{
  if (w->err == 0 && (w->depth != 0 || w->after_key || w->len == 0))
    fail(w, "incomplete document");
  if (w->err) {
    sn_set_error("json: %s", w->errmsg);
    sn_json_free(w);
    return -1;
  }
  *out = w->buf;
  *len = w->len;
  w->buf = NULL;
  sn_json_free(w);
  return 0;
}
