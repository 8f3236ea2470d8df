/* soci-nbd tests: print a ztoc decoded by sn_ztoc_decode as JSON shaped
 * like `flatc --json --strict-json --defaults-json tests/helpers/ztoc.fbs` output,
 * so tests/format/ztoc-flatc.sh can compare our reader with flatc's.
 *
 *   ztoc-dump ZTOC          the ztoc
 *   ztoc-dump -t TARZINFO   a TarZinfo buffer (tests/helpers/zinfo.fbs shape)
 *
 * Run without arguments (as the test harness does with every check
 * program) it reports a TAP skip. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "tap.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"

static void
json_str(const struct sn_bytes *b)
{
  size_t i;

  putchar('"');
  for (i = 0; i < b->len; i++) {
    unsigned char c = (unsigned char) b->data[i];
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void
field_str(const char *key, const struct sn_bytes *b, int comma)
{
  printf("\"%s\": ", key);
  json_str(b);
  printf("%s\n", comma ? "," : "");
}

static void
field_int(const char *key, int64_t v, int comma)
{
  printf("\"%s\": %" PRId64 "%s\n", key, v, comma ? "," : "");
}

static void
dump_file(const struct sn_ztoc_file *f, int comma)
{
  size_t i;

  printf("{\n");
  field_str("name", &f->name, 1);
  field_str("type", &f->type, 1);
  field_int("uncompressed_offset", f->offset, 1);
  field_int("uncompressed_size", f->size, 1);
  field_str("linkname", &f->linkname, 1);
  field_int("mode", f->mode, 1);
  field_int("uid", f->uid, 1);
  field_int("gid", f->gid, 1);
  field_str("uname", &f->uname, 1);
  field_str("gname", &f->gname, 1);
  field_str("mod_time", &f->mod_time, 1);
  field_int("devmajor", f->devmajor, 1);
  field_int("devminor", f->devminor, 1);
  printf("\"xattrs\": [\n");
  for (i = 0; i < f->npax; i++) {
    printf("{\n");
    field_str("key", &f->pax[i].key, 1);
    field_str("value", &f->pax[i].value, 0);
    printf("}%s\n", i + 1 < f->npax ? "," : "");
  }
  printf("]\n}%s\n", comma ? "," : "");
}

static void
dump_ztoc(const struct sn_ztoc *z)
{
  size_t i;

  printf("{\n");
  field_str("version", &z->version, 1);
  field_str("build_tool_identifier", &z->build_tool, 1);
  field_int("compressed_archive_size", z->compressed_size, 1);
  field_int("uncompressed_archive_size", z->uncompressed_size, 1);
  printf("\"toc\": {\n\"metadata\": [\n");
  for (i = 0; i < z->nfiles; i++)
    dump_file(&z->files[i], i + 1 < z->nfiles);
  printf("]\n},\n\"compression_info\": {\n");
  printf("\"compression_algorithm\": \"%s\",\n",
         z->compression == SN_COMP_GZIP ? "Gzip" : "Uncompressed");
  field_int("max_span_id", z->max_span_id, 1);
  printf("\"span_digests\": [\n");
  for (i = 0; i < z->nspan_digests; i++) {
    json_str(&z->span_digests[i]);
    printf("%s\n", i + 1 < z->nspan_digests ? "," : "");
  }
  printf("],\n\"checkpoints\": [");
  for (i = 0; i < z->checkpoints_len; i++)
    printf("%s%u", i ? "," : "", z->checkpoints[i]);
  printf("]\n}\n}\n");
}

int
main(int argc, char **argv)
{
  if (argc == 1) {
    printf("1..0 # SKIP helper for tests/format/ztoc-flatc.sh\n");
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "-t") == 0) {
    size_t len;
    unsigned char *buf = slurp(argv[2], &len);
    int64_t span, size;

    if (sn_tarzinfo_decode(buf, len, &span, &size) == -1) {
      fprintf(stderr, "ztoc-dump: %s: %s\n", argv[2], sn_error());
      return 1;
    }
    free(buf);
    /* version is checked to be 2 by the decoder */
    printf("{\n\"version\": 2,\n\"span_size\": %" PRId64 ",\n"
           "\"size\": %" PRId64 "\n}\n", span, size);
    return 0;
  }
  if (argc == 2) {
    struct sn_ztoc *z = sn_ztoc_load(argv[1]);

    if (z == NULL) {
      fprintf(stderr, "ztoc-dump: %s\n", sn_error());
      return 1;
    }
    dump_ztoc(z);
    sn_ztoc_free(z);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  fprintf(stderr, "usage: ztoc-dump ZTOC | ztoc-dump -t TARZINFO\n");
  return 2;
}
