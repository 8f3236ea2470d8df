/* soci-nbd: containerd's filter syntax for List (docs/snapshotter.md),
 * the part containerd itself uses on a snapshotter: a filter is
 * SELECTOR[OP VALUE] terms joined by ',' (all must hold); SELECTOR is
 * name, parent, kind or labels.KEY (KEY bare or "quoted"); OP is == or
 * != (~=, regular expressions, is refused); VALUE bare (up to ',') or
 * "quoted" with \" and \\ escapes.  A bare selector asks that the field
 * be there and not empty. */
#include <config.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapshots.h"
#include "util/err.h"

/* A quoted or bare token at *p into buf (at most n-1 bytes); bare ends
 * at any of stop.  Advances *p.  -1 on a bad quote or overflow. */
static int
token(const char **p, const char *stop, char *buf, size_t n)
{
  size_t k = 0;
  const char *s = *p;

  if (*s == '"') {
    for (s++; *s && *s != '"'; s++) {
      if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
        s++;
      if (k + 1 >= n)
        return -1;
      buf[k++] = *s;
    }
    if (*s != '"')
      return -1;
    s++;
  }
  else
    for (; *s && !strchr(stop, *s); s++) {
      if (k + 1 >= n)
        return -1;
      buf[k++] = *s;
    }
  buf[k] = 0;
  *p = s;
  return 0;
}

static const char *const kinds[] = { "unknown", "view", "active",
                                     "committed" };

/* The value the selector names in i, or NULL when it has none. */
static const char *
field(const struct sn_snap_info *i, const char *sel, const char *key)
{
  if (strcmp(sel, "name") == 0)
    return i->name;
  if (strcmp(sel, "parent") == 0)
    return i->parent;
  if (strcmp(sel, "kind") == 0)
    return i->kind <= SN_SNAP_KIND_COMMITTED ? kinds[i->kind] : NULL;
  return sn_snap_label_get(i->labels, i->nlabels, key);
}

int
sn_snap_filter_match(const char *filter, const struct sn_snap_info *i,
                     bool *match)
{
  const char *p = filter;
  char sel[64], key[SN_SNAP_LABEL_MAX + 1], val[SN_SNAP_LABEL_MAX + 1];

  *match = true;
  while (*p) {
    const char *v;
    int op = 0;                 /* 0: present, 1: ==, 2: != */

    key[0] = 0;
    if (token(&p, ".=!~,", sel, sizeof sel) == -1)
      return sn_set_error("filter \"%s\": a bad selector", filter);
    if (strcmp(sel, "labels") == 0) {
      if (*p++ != '.' || token(&p, "=!~,", key, sizeof key) == -1 ||
          key[0] == 0)
        return sn_set_error("filter \"%s\": labels needs a key", filter);
    }
    else if (strcmp(sel, "name") && strcmp(sel, "parent") &&
             strcmp(sel, "kind"))
      return sn_set_error("filter \"%s\": unknown field %s", filter, sel);
    if (strncmp(p, "==", 2) == 0 || strncmp(p, "!=", 2) == 0) {
      op = p[0] == '=' ? 1 : 2;
      p += 2;
      if (token(&p, ",", val, sizeof val) == -1)
        return sn_set_error("filter \"%s\": a bad value", filter);
    }
    else if (*p == '~' || *p == '=' || *p == '!')
      return sn_set_error("filter \"%s\": only == and != are supported",
                          filter);
    if (*p == ',')
      p++;
    else if (*p)
      return sn_set_error("filter \"%s\": unexpected \"%s\"", filter, p);
    if (i == NULL)              /* a syntax check only */
      continue;
    v = field(i, sel, key);
    if ((op == 0 && (v == NULL || v[0] == 0)) ||
        (op == 1 && (v == NULL || strcmp(v, val) != 0)) ||
        (op == 2 && v != NULL && strcmp(v, val) == 0))
      *match = false;
  }
  return 0;
}
