/* soci-nbd: the "ztoc" commands — create, info, ls, get-file — over local
 * layer and ztoc files.  Thin: all format work is in lib/. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "build.h"
#include "cli.h"
#include "digest.h"
#include "layer.h"
#include "zinfo.h"
#include "ztoc.h"

/* ---- ztoc create --------------------------------------------------- */

static void
create_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd ztoc create LAYER [OPTIONS]\n"
"\n"
"Build the ztoc of LAYER, a local tar or tar.gz layer blob, in one\n"
"streaming pass, and print its digest and size.\n"
"\n"
"  -o, --output FILE        write the ztoc to FILE ('-' = stdout;\n"
"                           default: LAYER's file name + .ztoc, here)\n"
"  -s, --span-size N        minimum uncompressed bytes between checkpoints\n"
"                           (K/M/G suffixes; default 4M)\n"
"  -b, --build-tool-id S    build tool id recorded in the ztoc (default\n"
"                           \"%s\"; \"%s\" gives\n"
"                           ztocs byte-identical to the soci CLI's)\n"
"  -q, --quiet              print nothing on success\n"
"  -h, --help               show this help\n",
          SN_BUILD_TOOL_DEFAULT, SN_REFERENCE_BUILD_TOOL);
}

static int
ztoc_create(int argc, char **argv)
{
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "span-size", required_argument, NULL, 's' },
    { "build-tool-id", required_argument, NULL, 'b' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct sn_build_opts bo = { 0 };
  const char *output = NULL;
  char *defout = NULL;
  struct sn_ztoc *z;
  uint8_t *buf;
  size_t len;
  uint8_t d[SN_SHA256_LEN];
  char ds[SN_DIGEST_STRLEN + 1];
  int c, r;

  while ((c = getopt_long(argc, argv, "o:s:b:qh", opts, NULL)) != -1) {
    switch (c) {
    case 'o': output = optarg; break;
    case 's':
      if (cli_parse_size(optarg, &bo.span_size) == -1 || bo.span_size == 0)
        return cli_usage_error("ztoc create", "invalid span size '%s'",
                               optarg);
      break;
    case 'b': bo.build_tool = optarg; break;
    case 'q': cli_quiet = true; break;
    case 'h': create_usage(stdout); return 0;
    default: return cli_usage_error("ztoc create", NULL);
    }
  }
  if (argc - optind != 1)
    return cli_usage_error("ztoc create", "expected one LAYER argument");
  if (output == NULL) {
    const char *base = strrchr(argv[optind], '/');
    base = base ? base + 1 : argv[optind];
    if (asprintf(&defout, "%s.ztoc", base) == -1)
      return cli_fail("out of memory");
    output = defout;
  }

  z = sn_ztoc_build_file(argv[optind], &bo, NULL);
  if (z == NULL) {
    free(defout);
    return cli_fail_lib(NULL);
  }
  r = sn_ztoc_encode(z, &buf, &len);
  sn_ztoc_free(z);
  if (r == -1) {
    free(defout);
    return cli_fail_lib("%s", argv[optind]);
  }
  sn_sha256(buf, len, d);
  sn_digest_format(d, ds);
  r = cli_write_file(output, buf, len);
  free(buf);
  if (r == -1) {
    free(defout);
    return cli_fail_lib(NULL);
  }
  if (!cli_quiet)
    fprintf(strcmp(output, "-") == 0 ? stderr : stdout, "%s %zu %s\n", ds,
            len, output);
  free(defout);
  return 0;
}

/* ---- ztoc info ----------------------------------------------------- */

/* A JSON string from bytes; invalid UTF-8 bytes become U+FFFD. */
static json_t *
jstr(const struct sn_bytes *b)
{
  json_t *j = json_stringn(b->data, b->len);
  char *clean, *q;
  size_t i;

  if (j)
    return j;
  clean = malloc(b->len * 3 + 1);
  if (clean == NULL)
    return NULL;
  for (i = 0, q = clean; i < b->len; i++) {
    unsigned char ch = b->data[i];
    if (ch < 0x80)
      *q++ = ch;
    else {
      memcpy(q, "\xef\xbf\xbd", 3);
      q += 3;
    }
  }
  j = json_stringn(clean, q - clean);
  free(clean);
  return j;
}

static json_t *
file_json(const struct sn_ztoc_file *f)
{
  json_t *o = json_object(), *x = json_object();
  size_t i;

  json_object_set_new(o, "name", jstr(&f->name));
  json_object_set_new(o, "type", jstr(&f->type));
  json_object_set_new(o, "header_offset", json_integer(f->header_offset));
  json_object_set_new(o, "offset", json_integer(f->offset));
  json_object_set_new(o, "size", json_integer(f->size));
  json_object_set_new(o, "mode", json_integer(f->mode));
  json_object_set_new(o, "uid", json_integer(f->uid));
  json_object_set_new(o, "gid", json_integer(f->gid));
  json_object_set_new(o, "uname", jstr(&f->uname));
  json_object_set_new(o, "gname", jstr(&f->gname));
  json_object_set_new(o, "mod_time", jstr(&f->mod_time));
  json_object_set_new(o, "linkname", jstr(&f->linkname));
  json_object_set_new(o, "devmajor", json_integer(f->devmajor));
  json_object_set_new(o, "devminor", json_integer(f->devminor));
  for (i = 0; i < f->npax; i++) {
    char *k = strndup(f->pax[i].key.data, f->pax[i].key.len);
    if (k)
      json_object_set_new(x, k, jstr(&f->pax[i].value));
    free(k);
  }
  json_object_set_new(o, "pax_records", x);
  return o;
}

static json_t *
ztoc_json(const struct sn_ztoc *z, const struct sn_zinfo *zi)
{
  json_t *o = json_object(), *spans = json_array(), *files = json_array();
  size_t i;

  json_object_set_new(o, "version", jstr(&z->version));
  json_object_set_new(o, "build_tool_identifier", jstr(&z->build_tool));
  json_object_set_new(o, "compression",
                      json_string(z->compression == SN_COMP_GZIP
                                  ? "gzip" : "uncompressed"));
  json_object_set_new(o, "compressed_archive_size",
                      json_integer(z->compressed_size));
  json_object_set_new(o, "uncompressed_archive_size",
                      json_integer(z->uncompressed_size));
  json_object_set_new(o, "span_size", json_integer(zi->span_size));
  json_object_set_new(o, "max_span_id", json_integer(z->max_span_id));
  json_object_set_new(o, "num_spans", json_integer(zi->nspans));
  json_object_set_new(o, "num_files", json_integer(z->nfiles));
  json_object_set_new(o, "checkpoints_size",
                      json_integer(z->checkpoints_len));
  for (i = 0; i < zi->nspans; i++) {
    json_t *s = json_object();
    struct sn_span sp;

    sn_zinfo_span(zi, i, &sp);
    json_object_set_new(s, "id", json_integer(i));
    json_object_set_new(s, "compressed_start", json_integer(sp.comp_start));
    json_object_set_new(s, "compressed_end", json_integer(sp.comp_end));
    json_object_set_new(s, "uncompressed_start",
                        json_integer(sp.uncomp_start));
    json_object_set_new(s, "uncompressed_end", json_integer(sp.uncomp_end));
    if (zi->compression == SN_COMP_GZIP)
      json_object_set_new(s, "bits", json_integer(zi->cp[i].bits));
    json_object_set_new(s, "digest", jstr(&z->span_digests[i]));
    json_array_append_new(spans, s);
  }
  json_object_set_new(o, "spans", spans);
  for (i = 0; i < z->nfiles; i++)
    json_array_append_new(files, file_json(&z->files[i]));
  json_object_set_new(o, "files", files);
  return o;
}

static int
ztoc_info(int argc, char **argv)
{
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  json_t *j;
  int r;

  if (argc == 2 && (strcmp(argv[1], "-h") == 0 ||
                    strcmp(argv[1], "--help") == 0)) {
    printf("Usage: soci-nbd ztoc info ZTOC\n\n"
           "Print ZTOC as JSON: sizes, compression, span size, every span's\n"
           "compressed and uncompressed range and digest, and every file.\n");
    return 0;
  }
  if (argc != 2)
    return cli_usage_error("ztoc info", "expected one ZTOC argument");
  z = sn_ztoc_load(argv[1]);
  if (z == NULL)
    return cli_fail_lib(NULL);
  zi = sn_zinfo_from_ztoc(z);
  if (zi == NULL) {
    sn_ztoc_free(z);
    return cli_fail_lib("%s", argv[1]);
  }
  j = ztoc_json(z, zi);
  r = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  putchar('\n');
  json_decref(j);
  sn_zinfo_free(zi);
  sn_ztoc_free(z);
  return r == 0 ? 0 : cli_fail("cannot write JSON");
}

/* ---- ztoc ls ------------------------------------------------------- */

static void
mode_string(const struct sn_ztoc_file *f, char out[11])
{
  static const char types[] = "?-hlcbdp";
  static const char rwx[] = "rwxrwxrwx";
  int i;

  out[0] = types[f->ftype];
  if (f->ftype == SN_FT_HARDLINK)
    out[0] = 'h';
  for (i = 0; i < 9; i++)
    out[1 + i] = (f->mode & (0400 >> i)) ? rwx[i] : '-';
  if (f->mode & 04000)
    out[3] = out[3] == 'x' ? 's' : 'S';
  if (f->mode & 02000)
    out[6] = out[6] == 'x' ? 's' : 'S';
  if (f->mode & 01000)
    out[9] = out[9] == 'x' ? 't' : 'T';
  out[10] = '\0';
}

static int
ztoc_ls(int argc, char **argv)
{
  struct sn_ztoc *z;
  size_t i;

  if (argc == 2 && (strcmp(argv[1], "-h") == 0 ||
                    strcmp(argv[1], "--help") == 0)) {
    printf("Usage: soci-nbd ztoc ls ZTOC\n\n"
           "List the files of ZTOC, one per line, like tar -tv:\n"
           "mode, uid/gid, size, data offset in the uncompressed tar,\n"
           "modification time (UTC), name, and link target.\n");
    return 0;
  }
  if (argc != 2)
    return cli_usage_error("ztoc ls", "expected one ZTOC argument");
  z = sn_ztoc_load(argv[1]);
  if (z == NULL)
    return cli_fail_lib(NULL);
  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];
    char mode[11], when[32] = "?";
    time_t t = (time_t) f->mtime_sec;
    struct tm tm;

    mode_string(f, mode);
    if (gmtime_r(&t, &tm))
      strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s %" PRIu32 "/%" PRIu32 " %12" PRId64 " %12" PRId64 " %s %.*s",
           mode, f->uid, f->gid, f->size, f->offset, when,
           (int) f->name.len, f->name.data);
    if (f->ftype == SN_FT_SYMLINK)
      printf(" -> %.*s", (int) f->linkname.len, f->linkname.data);
    else if (f->ftype == SN_FT_HARDLINK)
      printf(" link to %.*s", (int) f->linkname.len, f->linkname.data);
    putchar('\n');
  }
  sn_ztoc_free(z);
  return 0;
}

/* ---- ztoc get-file ------------------------------------------------- */

static void
get_file_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd ztoc get-file LAYER ZTOC PATH [OPTIONS]\n"
"\n"
"Extract the file PATH of LAYER by reading only the compressed spans that\n"
"hold it, verifying each against the span digest in ZTOC, and checking the\n"
"file's tar header against its ztoc entry.  A hard link is followed.\n"
"\n"
"  -o, --output FILE   write to FILE instead of stdout\n"
"  -v, --verbose       say on stderr which spans were read\n"
"  -h, --help          show this help\n");
}

static void
trace_span(void *opaque, size_t i, const struct sn_span *s)
{
  (void) opaque;
  fprintf(stderr, "soci-nbd: span %zu: compressed [%" PRId64 ",%" PRId64
          ") uncompressed [%" PRId64 ",%" PRId64 ")\n", i, s->comp_start,
          s->comp_end, s->uncomp_start, s->uncomp_end);
}

static int
extract(struct sn_layer *l, const struct sn_ztoc_file *f, FILE *out)
{
  enum { CHUNK = 1 << 20 };
  uint8_t *buf;
  int64_t pos;

  if (sn_layer_check_file(l, f) == -1)
    return -1;
  buf = malloc(CHUNK);
  if (buf == NULL)
    return sn_oom();
  for (pos = 0; pos < f->size;) {
    size_t n = f->size - pos > CHUNK ? CHUNK : (size_t) (f->size - pos);
    if (sn_layer_read(l, buf, n, f->offset + pos) == -1) {
      free(buf);
      return -1;
    }
    if (fwrite(buf, 1, n, out) != n) {
      free(buf);
      return sn_set_error("write: %s", strerror(errno));
    }
    pos += n;
  }
  free(buf);
  return 0;
}

static int
ztoc_get_file(int argc, char **argv)
{
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *output = NULL, *path;
  bool verbose = false;
  const struct sn_ztoc_file *f;
  struct sn_ztoc *z;
  struct sn_layer *l;
  FILE *out = stdout;
  int c, fd, r;

  while ((c = getopt_long(argc, argv, "o:vh", opts, NULL)) != -1) {
    switch (c) {
    case 'o': output = optarg; break;
    case 'v': verbose = true; break;
    case 'h': get_file_usage(stdout); return 0;
    default: return cli_usage_error("ztoc get-file", NULL);
    }
  }
  if (argc - optind != 3)
    return cli_usage_error("ztoc get-file",
                           "expected LAYER, ZTOC and PATH arguments");
  path = argv[optind + 2];
  z = sn_ztoc_load(argv[optind + 1]);
  if (z == NULL)
    return cli_fail_lib(NULL);
  fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    sn_ztoc_free(z);
    return cli_fail("%s: %s", argv[optind], strerror(errno));
  }
  l = sn_layer_new(z, sn_blob_read_fd, &fd);
  if (l == NULL) {
    close(fd);
    return cli_fail_lib("%s", argv[optind + 1]);
  }
  if (verbose)
    sn_layer_set_trace(l, trace_span, NULL);

  r = 1;
  f = sn_ztoc_find(sn_layer_ztoc(l), path);
  if (f && f->ftype == SN_FT_HARDLINK) {
    char target[4097];
    if (sn_path_clean(f->linkname.data, f->linkname.len, target,
                      sizeof target) >= 0)
      f = sn_ztoc_find(sn_layer_ztoc(l), target);
    else
      f = NULL;
    if (f == NULL) {
      cli_fail("%s: hard link target of %s is not in the layer",
               argv[optind + 1], path);
      goto out;
    }
  }
  if (f == NULL) {
    cli_fail("%s: no such file in the ztoc", path);
    goto out;
  }
  if (f->ftype != SN_FT_REG) {
    cli_fail("%s: not a regular file (%.*s)", path, (int) f->type.len,
             f->type.data);
    goto out;
  }
  if (output && (out = fopen(output, "wb")) == NULL) {
    cli_fail("%s: %s", output, strerror(errno));
    goto out;
  }
  if (extract(l, f, out) == -1)
    cli_fail_lib("%s", path);
  else if (out != stdout ? fclose(out) != 0 : fflush(out) != 0)
    cli_fail("%s: %s", output ? output : "stdout", strerror(errno));
  else
    r = 0;
  if (r != 0 && out != stdout) {
    fclose(out);
    unlink(output);
  }
out:
  sn_layer_free(l);
  close(fd);
  return r;
}

/* ---- dispatch ------------------------------------------------------ */

static void
ztoc_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd ztoc COMMAND ...\n"
"\n"
"  create LAYER [-o FILE]    build a ztoc from a local tar or tar.gz layer\n"
"  info ZTOC                 print a ztoc as JSON\n"
"  ls ZTOC                   list its files, like tar -tv\n"
"  get-file LAYER ZTOC PATH  extract one file through its spans only\n"
"\n"
"Run 'soci-nbd ztoc COMMAND --help' for a command's options.\n");
}

int
cmd_ztoc(int argc, char **argv)
{
  const char *sub = argc > 1 ? argv[1] : NULL;

  if (sub == NULL) {
    ztoc_usage(stderr);
    return 2;
  }
  if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
    ztoc_usage(stdout);
    return 0;
  }
  optind = 1;
  if (strcmp(sub, "create") == 0)
    return ztoc_create(argc - 1, argv + 1);
  if (strcmp(sub, "info") == 0)
    return ztoc_info(argc - 1, argv + 1);
  if (strcmp(sub, "ls") == 0)
    return ztoc_ls(argc - 1, argv + 1);
  if (strcmp(sub, "get-file") == 0)
    return ztoc_get_file(argc - 1, argv + 1);
  return cli_usage_error("ztoc", "unknown ztoc command '%s'", sub);
}
