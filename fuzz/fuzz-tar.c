/* soci-nbd fuzzing: the streaming tar parser (in uneven chunks) and the
 * single-entry header parser used to verify ztoc entries. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "soci/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
on_entry(void *opaque, const struct sn_tar_entry *e)
{
  size_t *n = opaque;

  /* Touch every field so the sanitizers see any bad pointer. */
  if (e->name.len && e->name.data[e->name.len] != 0)
    abort();
  if (e->data_offset < e->header_offset)
    abort();
  (*n)++;
  return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t n = 0, pos = 0, chunk = size ? (data[0] % 13) + 1 : 1;
  struct sn_tar_parser *p = sn_tar_parser_new(on_entry, &n);
  struct sn_tar_entry e;
  int64_t end;

  if (p == NULL)
    return 0;
  while (pos < size) {
    size_t k = size - pos < chunk ? size - pos : chunk;
    if (sn_tar_parser_feed(p, data + pos, k) == -1)
      break;
    pos += k;
    chunk = chunk * 3 % 1031 + 1;
  }
  if (pos == size)
    (void) sn_tar_parser_finish(p, &end);
  sn_tar_parser_free(p);

  memset(&e, 0, sizeof e);
  if (sn_tar_parse_headers(data, size, &e) == 0)
    sn_tar_entry_clear(&e);
  return 0;
}
