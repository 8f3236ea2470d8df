/* soci-nbd fuzzing: the prefetch record document (lib/record/record.c) on
 * hostile bytes.  Whatever sn_record_parse accepts must keep what it
 * promises (digests well formed and distinct, every range naming a listed
 * layer, len > 0, no overflow), encode, and parse back to the same record
 * and the same bytes; binding it to an image of its own layers must map
 * each layer to itself, and to an image missing one must be refused. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/record.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
  fprintf(stderr, "record: %s (last error: %s)\n", what, sn_error());
  abort();
}

static void
same(const struct sn_record *a, const struct sn_record *b)
{
  size_t i;

  if (a->nlayers != b->nlayers || a->nranges != b->nranges)
    fail("a round trip changed the counts");
  for (i = 0; i < a->nlayers; i++)
    if (strcmp(a->layers[i], b->layers[i]) != 0)
      fail("a round trip changed a layer");
  for (i = 0; i < a->nranges; i++)
    if (a->ranges[i].layer != b->ranges[i].layer ||
        a->ranges[i].off != b->ranges[i].off ||
        a->ranges[i].len != b->ranges[i].len)
      fail("a round trip changed a range");
}

static void
check_bind(const struct sn_record *r)
{
  size_t *map = calloc(r->nlayers + 1, sizeof *map), i;
  const char **dg = calloc(r->nlayers + 1, sizeof *dg);

  if (map == NULL || dg == NULL)
    abort();
  /* The image's layers: the record's, in reverse order. */
  for (i = 0; i < r->nlayers; i++)
    dg[i] = r->layers[r->nlayers - 1 - i];
  if (sn_record_bind(r, dg, NULL, r->nlayers, map) == -1)
    fail("a record does not bind to its own layers");
  for (i = 0; i < r->nlayers; i++)
    if (map[i] != r->nlayers - 1 - i)
      fail("bind mapped a layer to another");
  if (r->nlayers > 0 &&
      sn_record_bind(r, dg, NULL, r->nlayers - 1, map) != -1)
    fail("bind accepted an image missing a layer");
  free(map);
  free(dg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct sn_record r, again;
  uint8_t *enc, *enc2;
  size_t len, len2, i;

  if (sn_record_parse(data, size, &r) == -1)
    return 0;
  for (i = 0; i < r.nranges; i++)
    if (r.ranges[i].layer >= r.nlayers || r.ranges[i].len == 0 ||
        r.ranges[i].off + r.ranges[i].len < r.ranges[i].off ||
        r.ranges[i].off + r.ranges[i].len > (uint64_t) INT64_MAX)
      fail("an accepted range breaks the rules");
  if (sn_record_encode(&r, &enc, &len) == -1)
    fail("an accepted record does not encode");
  if (sn_record_parse(enc, len, &again) == -1)
    fail("an encoded record does not parse");
  same(&r, &again);
  if (sn_record_encode(&again, &enc2, &len2) == -1 || len2 != len ||
      memcmp(enc, enc2, len) != 0)
    fail("encoding is not canonical");
  check_bind(&r);
  free(enc);
  free(enc2);
  sn_record_clear(&again);
  sn_record_clear(&r);
  return 0;
}
