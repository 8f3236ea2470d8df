/* soci-nbd: a JSON writer whose output is byte-identical to Go's
 * encoding/json (json.Marshal): no whitespace, Go's string escaping
 * (HTML-safe: <, >, & as \u003c \u003e \u0026; U+2028/U+2029 escaped;
 * invalid UTF-8 as \ufffd; \b \f \n \r \t short forms, as Go >= 1.22),
 * integers in decimal, object members in the order the caller writes them
 * (Go struct field order), and string maps with keys sorted bytewise (Go
 * sorts map keys).
 *
 * sn_json_set_indent makes the same document readable for people (Go's
 * json.MarshalIndent with prefix "" and the given number of spaces).
 *
 * Usage: sn_json_init, then begin/end object/array, key, values;
 * sn_json_finish hands the buffer over.  Errors are sticky: after the
 * first one (out of memory, nesting too deep, a key outside an object)
 * every call is a no-op and sn_json_finish returns -1 with the message.
 */
#ifndef SN_JSON_H
#define SN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_JSON_MAX_DEPTH 64

struct sn_json {
  char *buf;
  size_t len, cap;
  int err;                  /* 0, or -1 once anything failed */
  char errmsg[96];
  int depth;
  int indent;               /* spaces per level; 0: compact */
  bool after_key;           /* a key was written; its value comes next */
  bool need_comma[SN_JSON_MAX_DEPTH + 1];
  bool in_object[SN_JSON_MAX_DEPTH + 1];
};

void sn_json_init(struct sn_json *w);
/* Indent nested members and elements by spaces per level (before any
 * value is written; 0, the default, is compact). */
void sn_json_set_indent(struct sn_json *w, int spaces);
/* Free the buffer (unless handed over by sn_json_finish). */
void sn_json_free(struct sn_json *w);

void sn_json_begin_object(struct sn_json *w);
void sn_json_end_object(struct sn_json *w);
void sn_json_begin_array(struct sn_json *w);
void sn_json_end_array(struct sn_json *w);

/* A member name (NUL-terminated, escaped like a string value). */
void sn_json_key(struct sn_json *w, const char *key);

void sn_json_string(struct sn_json *w, const char *s);
void sn_json_string_len(struct sn_json *w, const char *s, size_t len);
void sn_json_int(struct sn_json *w, int64_t v);
void sn_json_bool(struct sn_json *w, bool v);
void sn_json_null(struct sn_json *w);
/* Already-encoded JSON, inserted verbatim as one value. */
void sn_json_raw(struct sn_json *w, const char *json, size_t len);

/* An object member in one call: sn_json_key, then the value.  A NULL
 * string is written as null. */
void sn_json_member_int(struct sn_json *w, const char *key, int64_t v);
void sn_json_member_bool(struct sn_json *w, const char *key, bool v);
void sn_json_member_string(struct sn_json *w, const char *key,
                           const char *s);
void sn_json_member_string_len(struct sn_json *w, const char *key,
                               const char *s, size_t len);

/* A Go map[string]string: an object with the n pairs, keys sorted
 * bytewise (duplicates keep their order; Go maps have none). */
void sn_json_string_map(struct sn_json *w, const char *const *keys,
                        const char *const *values, size_t n);

/* The finished document: *out (malloc'd, NUL-terminated, not counted in
 * *len) belongs to the caller; w is reset.  -1 if any error occurred or
 * the document is incomplete. */
int sn_json_finish(struct sn_json *w, char **out, size_t *len);

#endif
