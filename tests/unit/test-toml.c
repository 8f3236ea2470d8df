/* soci-nbd tests: the TOML subset reader (lib/util/toml.h) — documents
 * as containerd's hosts.toml writes them, TOML's own examples of keys,
 * strings and tables, and what it refuses, each with the line named. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/toml.h"
#include "tap.h"

/* The document as compact JSON with sorted keys, or the error. */
static char *
as_json(const char *doc)
{
  json_t *j = sn_toml_parse(doc, strlen(doc), "t.toml");
  char *s;

  if (j == NULL)
    return strdup(sn_error());
  s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
  json_decref(j);
  return s;
}

static void
good(const char *doc, const char *want, const char *what)
{
  char *got = as_json(doc);

  ok(strcmp(got, want) == 0, "%s: %s", what, got);
  if (strcmp(got, want) != 0)
    diag("want %s", want);
  free(got);
}

static void
bad(const char *doc, const char *want, const char *what)
{
  json_t *j = sn_toml_parse(doc, strlen(doc), "t.toml");

  OK(j == NULL && strstr(sn_error(), want), "%s: refused (%s)", what,
     j ? "accepted" : sn_error());
  json_decref(j);
}

int
main(void)
{
  good("server = \"https://registry-1.docker.io\"\n"
       "\n"
       "[host.\"https://mirror.example:5000\"]\n"
       "  capabilities = [\"pull\", \"resolve\"]\n"
       "  ca = \"/etc/certs/mirror.pem\"\n"
       "  skip_verify = false\n"
       "\n"
       "[host.\"http://10.0.2.100:5001\"]\n"
       "  capabilities = [\"pull\"]   # a comment\n",
       "{\"host\":{\"http://10.0.2.100:5001\":{\"capabilities\":[\"pull\"]},"
       "\"https://mirror.example:5000\":{\"ca\":\"/etc/certs/mirror.pem\","
       "\"capabilities\":[\"pull\",\"resolve\"],\"skip_verify\":false}},"
       "\"server\":\"https://registry-1.docker.io\"}",
       "a hosts.toml with a server and two hosts");
  {
    /* The file's order of hosts is containerd's order of trying them. */
    const char *doc = "[host.\"https://b\"]\n[host.\"https://a\"]\n"
                      "[host.\"https://c\"]\n";
    json_t *j = sn_toml_parse(doc, strlen(doc), "t.toml"), *h, *v;
    const char *k;
    char order[64] = "";

    h = json_object_get(j, "host");
    json_object_foreach(h, k, v)
      strcat(order, k + 8);
    ok(strcmp(order, "bac") == 0, "tables keep the file's order (%s)",
       order);
    json_decref(j);
  }
  good("# only a comment\n\n   \t\n", "{}", "an empty document");
  good("", "{}", "nothing at all");
  good("a.b.c = 1\na.d = true\n\"quoted key\" = 'lit\\eral'\n",
       "{\"a\":{\"b\":{\"c\":1},\"d\":true},\"quoted key\":\"lit\\\\eral\"}",
       "dotted keys, a quoted key, a literal string (no escapes)");
  good("s = \"tab\\there \\\"q\\\" \\\\ \\u00e9\\U0001F600\"\n",
       "{\"s\":\"tab\\there \\\"q\\\" \\\\ \\u00E9\\uD83D\\uDE00\"}",
       "basic string escapes, \\u and \\U");
  good("n = [ -17, +0, 1_000, 9223372036854775807,\n"
       "  -9223372036854775808, # comments inside\n"
       "]\n",
       "{\"n\":[-17,0,1000,9223372036854775807,-9223372036854775808]}",
       "integers, an array over lines with a trailing comma");
  good("t = { a = \"x\", b.c = [ [1], [] ] }\n",
       "{\"t\":{\"a\":\"x\",\"b\":{\"c\":[[1],[]]}}}",
       "inline tables and nested arrays");
  good("[a.b]\nx = 1\n[a]\ny = 2\n[ c . \"d.e\" ]\nz = 3\r\n",
       "{\"a\":{\"b\":{\"x\":1},\"y\":2},\"c\":{\"d.e\":{\"z\":3}}}",
       "a super-table defined after its sub-table; spaces in a header; "
       "CRLF");

  bad("a = 1\na = 2\n", "t.toml:2: the key \"a\" is defined twice",
      "a key defined twice");
  bad("[t]\n[t]\n", "t.toml:2: the table [t] is defined twice",
      "a table defined twice");
  bad("a = 1\n[a]\n", "t.toml:2: \"a\" is not a table",
      "a header over a value");
  bad("[[bin]]\n", "arrays of tables", "an array of tables");
  bad("s = \"\"\"x\"\"\"\n", "multi-line strings", "a multi-line string");
  bad("f = 1.5\n", "floats", "a float");
  bad("d = 1979-05-27\n", "dates", "a date");
  bad("x = 0x1f\n", "non-decimal", "a hexadecimal integer");
  bad("x = 012\n", "leading zero", "a leading zero");
  bad("x = 9223372036854775808\n", "out of range", "an integer too big");
  bad("x = 1__0\n", "not supported", "a double underscore");
  bad("\n\ns = \"open\n", "t.toml:3: a string without its closing \"",
      "an unterminated string, on line 3");
  bad("s = \"a\\qb\"\n", "unknown escape", "an unknown escape");
  bad("s = \"\\uD800\"\n", "not a character", "a surrogate escape");
  bad("s = \"\\u0000\"\n", "not a character", "a NUL escape");
  bad("s = \"\xff\"\n", "not UTF-8", "invalid UTF-8");
  bad("s = \"a\x01\"\n", "control character", "a control character");
  bad("a = 1 b = 2\n", "after a value", "two pairs on a line");
  bad("a =\n", "a value is missing", "no value");
  bad("= 1\n", "where a key should be", "no key");
  bad("a = yes\n", "unknown value", "a bare word");
  bad("a = [1 2]\n", "',' or ']'", "an array without a comma");
  bad("a = [1,\n", "a value is missing", "an array without its end");
  bad("t = { a = 1,, }\n", "where a key should be",
      "an inline table with an empty member");
  bad("[a\n", "closing ']'", "a header without its ']'");
  {
    char deep[200];

    memset(deep, '[', 100);
    strcpy(deep + 100, "\n");
    deep[0] = 'a';
    deep[1] = '=';
    bad(deep, "nested more than", "arrays nested 98 deep");
  }
  {
    const char doc[] = "a = 1\0b = 2\n";

    OK(sn_toml_parse(doc, sizeof doc - 1, "t.toml") == NULL &&
       strstr(sn_error(), "NUL"), "a NUL byte: refused (%s)", sn_error());
  }
  return done_testing();
}
