/* soci-nbd: a reader for the part of TOML (v1.0) that configuration files
 * such as containerd's hosts.toml use, giving a jansson tree.
 *
 * Read: comments, [table] headers with bare, quoted and dotted keys,
 * key = value with dotted keys, basic strings (all escapes) and literal
 * strings, booleans, decimal integers, arrays (over several lines, with
 * comments and a trailing comma) and inline tables.  Refused with a
 * one-line error naming the line: [[arrays of tables]], multi-line
 * strings, floats, dates, a key or table defined twice, nesting deeper
 * than 32, anything malformed.  Strings are UTF-8 and hold no NUL.
 */
#ifndef SN_TOML_H
#define SN_TOML_H

#include <stddef.h>

#include <jansson.h>

/* The document buf[0..len) as a JSON object (tables become objects,
 * integers JSON integers); the caller owns it (json_decref).  NULL with
 * the error set: "WHAT:LINE: what is wrong". */
json_t *sn_toml_parse(const char *buf, size_t len, const char *what);

#endif
