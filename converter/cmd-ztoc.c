/* soci-nbd: the "ztoc" commands — create, info, ls, get-file — over local
 * layer and ztoc files, and (ls, info, get-file) over the SOCI index of an
 * image in a registry or OCI layout.  Thin: all format work is in lib/. */
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


#include "dense/dense.h"
#include "soci/build.h"
#include "util/fdio.h"
#include "cli.h"
#include "util/digest.h"
#include "util/json.h"
#include "soci/index-find.h"
#include "soci/index.h"
#include "span/layer.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "regopts.h"
#include "ztoc-image.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"


/* ---- ztoc create --------------------------------------------------- */

/* The "ztoc create" help text. */
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

/* Build the ztoc of a local layer, encode it, write it (default name:
 * the layer's base name + ".ztoc") and print "DIGEST SIZE FILE". */
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
  sn_digest_of(buf, len, ds);
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

/* A member whose value is bytes as a JSON string (invalid UTF-8 bytes
 * become U+FFFD, as util/json.h does for every string). */
static void
put_bytes(struct sn_json *w, const char *key, const struct sn_bytes *b)
{
  sn_json_member_string_len(w, key, b->data, b->len);
}

/* One file of the ztoc's table, its PAX records in the archive's order. */
static void
put_file(struct sn_json *w, const struct sn_ztoc_file *f)
{
  size_t i;

  sn_json_begin_object(w);
  put_bytes(w, "name", &f->name);
  put_bytes(w, "type", &f->type);
  sn_json_member_int(w, "header_offset", f->header_offset);
  sn_json_member_int(w, "offset", f->offset);
  sn_json_member_int(w, "size", f->size);
  sn_json_member_int(w, "mode", f->mode);
  sn_json_member_int(w, "uid", f->uid);
  sn_json_member_int(w, "gid", f->gid);
  put_bytes(w, "uname", &f->uname);
  put_bytes(w, "gname", &f->gname);
  put_bytes(w, "mod_time", &f->mod_time);
  put_bytes(w, "linkname", &f->linkname);
  sn_json_member_int(w, "devmajor", f->devmajor);
  sn_json_member_int(w, "devminor", f->devminor);
  sn_json_key(w, "pax_records");
  sn_json_begin_object(w);
  for (i = 0; i < f->npax; i++) {
    char *k = strndup(f->pax[i].key.data, f->pax[i].key.len);

    if (k == NULL)
      continue;
    put_bytes(w, k, &f->pax[i].value);
    free(k);
  }
  sn_json_end_object(w);
  sn_json_end_object(w);
}

/* The whole ztoc (header, spans, files) as an indented JSON document in
 * *out (malloc'd).  0, or -1 (err.h). */
static int
ztoc_json(const struct sn_ztoc *z, const struct sn_zinfo *zi, char **out)
{
  struct sn_json w;
  size_t i, len;

  sn_json_init(&w);
  sn_json_set_indent(&w, 2);
  sn_json_begin_object(&w);
  put_bytes(&w, "version", &z->version);
  put_bytes(&w, "build_tool_identifier", &z->build_tool);
  sn_json_member_string(&w, "compression",
                        z->compression == SN_COMP_GZIP ? "gzip"
                        : z->compression == SN_COMP_ZSTD ? "zstd"
                        : "uncompressed");
  sn_json_member_int(&w, "compressed_archive_size", z->compressed_size);
  sn_json_member_int(&w, "uncompressed_archive_size", z->uncompressed_size);
  sn_json_member_int(&w, "span_size", zi->span_size);
  sn_json_member_int(&w, "max_span_id", z->max_span_id);
  sn_json_member_int(&w, "num_spans", zi->nspans);
  sn_json_member_int(&w, "num_files", z->nfiles);
  sn_json_member_int(&w, "checkpoints_size", z->checkpoints_len);
  if (zi->winref) {
    sn_json_member_string(&w, "index", "dense");
    sn_json_member_int(&w, "windows_size", zi->windows_size);
  }
  sn_json_key(&w, "spans");
  sn_json_begin_array(&w);
  for (i = 0; i < zi->nspans; i++) {
    struct sn_span sp;

    sn_zinfo_span(zi, i, &sp);
    sn_json_begin_object(&w);
    sn_json_member_int(&w, "id", i);
    sn_json_member_int(&w, "compressed_start", sp.comp_start);
    sn_json_member_int(&w, "compressed_end", sp.comp_end);
    sn_json_member_int(&w, "uncompressed_start", sp.uncomp_start);
    sn_json_member_int(&w, "uncompressed_end", sp.uncomp_end);
    if (zi->compression == SN_COMP_GZIP)
      sn_json_member_int(&w, "bits", zi->cp[i].bits);
    put_bytes(&w, "digest", &z->span_digests[i]);
    if (zi->winref) {           /* a dense table: where its window is */
      char wd[SN_DIGEST_STRLEN + 1];

      sn_json_member_int(&w, "window_offset", zi->winref[i].off);
      sn_json_member_int(&w, "window_length", zi->winref[i].len);
      if (zi->winref[i].len) {
        sn_digest_format(zi->winref[i].digest, wd);
        sn_json_member_string(&w, "window_digest", wd);
      }
    }
    sn_json_end_object(&w);
  }
  sn_json_end_array(&w);
  sn_json_key(&w, "files");
  sn_json_begin_array(&w);
  for (i = 0; i < z->nfiles; i++)
    put_file(&w, &z->files[i]);
  sn_json_end_array(&w);
  sn_json_end_object(&w);
  return sn_json_finish(&w, out, &len);
}

/* A ztoc file, or a dense index's table blob (a zstd frame,
 * docs/dense-format.md). */
static struct sn_ztoc *
load_ztoc_or_dense(const char *path)
{
  static const uint8_t zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
  struct sn_ztoc *z;
  uint8_t *buf;
  size_t len;

  if (sn_read_file(path, SN_ZTOC_MAX_BLOB, false, &buf, &len) == -1)
    return NULL;
  if (len >= 4 && memcmp(buf, zstd_magic, 4) == 0)
    z = sn_dense_table_decode(buf, len);
  else
    z = sn_ztoc_decode(buf, len);
  free(buf);
  if (z == NULL)
    sn_prefix_error("%s: ", path);
  return z;
}

/* The "ztoc info" help text. */
static void
info_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd ztoc info ZTOC\n"
"       soci-nbd ztoc info IMAGE --layer DIGEST|N [OPTIONS]\n"
"\n"
"Print a ztoc as JSON: sizes, compression, span size, every span's\n"
"compressed and uncompressed range and digest, and every file.  ZTOC may\n"
"also be a dense index's table blob (docs/dense-format.md): its spans are\n"
"the sub-spans, each with where its window is in the windows blob.  With\n"
"--layer, the ztoc of that layer (digest, or number in the image\n"
"manifest) is fetched through IMAGE's SOCI index.\n"
"\n"
"  -l, --layer DIGEST|N     the layer of IMAGE\n"
"  -p, --platform P         os/arch[/variant] (default: this host's)\n"
REGOPTS_HELP
"  -h, --help               show this help\n");
}

static const struct option image_opts[] = {
  { "layer", required_argument, NULL, 'l' },
  { "platform", required_argument, NULL, 'p' },
  { "output", required_argument, NULL, 'o' },
  { "help", no_argument, NULL, 'h' },
  REGOPTS_LONG_OPTIONS,
  { NULL, 0, NULL, 0 },
};

/* "ztoc info": a local ztoc file, or with --layer a layer's ztoc fetched
 * through IMAGE's SOCI index; checked by sn_zinfo_from_ztoc, then
 * printed as JSON.  Returns the exit status. */
static int
ztoc_info(int argc, char **argv)
{
  struct regopts ro;
  const char *layer = NULL, *platform = NULL;
  struct image_index ii = { 0 };
  const struct sn_descriptor *ld;
  struct sn_ztoc *z;
  struct sn_zinfo *zi;
  char *json;
  int c, h, r;

  regopts_init(&ro);
  while ((c = getopt_long(argc, argv, "l:p:hu:a:v", image_opts, NULL))
         != -1) {
    switch (c) {
    case 'l': layer = optarg; break;
    case 'p': platform = optarg; break;
    case 'h': info_usage(stdout); regopts_clear(&ro); return 0;
    default:
      h = c == 'o' ? 0 : regopts_handle(&ro, c, optarg, "ztoc info");
      if (h == 1)
        continue;
      regopts_clear(&ro);
      return h ? h : cli_usage_error("ztoc info", NULL);
    }
  }
  if (argc - optind != 1) {
    regopts_clear(&ro);
    return cli_usage_error("ztoc info", layer ? "expected one IMAGE argument"
                           : "expected one ZTOC argument");
  }
  if (layer) {
    if ((r = regopts_finish(&ro, "ztoc info")) != 0 ||
        (r = image_index_open(argv[optind], &ro, platform, "ztoc info",
                              &ii)) != 0) {
      regopts_clear(&ro);
      return r;
    }
    z = image_index_ztoc(&ii, argv[optind], layer, &ld);
    image_index_clear(&ii);
    regopts_clear(&ro);
    if (z == NULL)
      return 1;
  } else {
    regopts_clear(&ro);
    z = load_ztoc_or_dense(argv[optind]);
    if (z == NULL)
      return cli_fail_lib(NULL);
  }
  zi = sn_zinfo_from_ztoc(z);
  if (zi == NULL) {
    sn_ztoc_free(z);
    return cli_fail_lib("%s", argv[optind]);
  }
  r = ztoc_json(z, zi, &json);
  sn_zinfo_free(zi);
  sn_ztoc_free(z);
  if (r == -1)
    return cli_fail_lib(NULL);
  r = puts(json);
  free(json);
  return r >= 0 ? 0 : cli_fail("cannot write JSON");
}

/* ---- ztoc ls ------------------------------------------------------- */

/* "drwxr-xr-x"-style mode of a TOC entry (setuid, setgid, sticky too). */
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

/* Is arg a local file (else an image reference)? */
static bool
is_local(const char *arg)
{
  size_t n = strlen(arg);

  return access(arg, F_OK) == 0 || arg[0] == '/' || arg[0] == '.' ||
    (n > 5 && strcmp(arg + n - 5, ".ztoc") == 0);
}

/* "ztoc ls": the files of a local ztoc, or the ztocs of an image's SOCI
 * index (image_index_ls).  Returns the exit status. */
static int
ztoc_ls(int argc, char **argv)
{
  struct regopts ro;
  const char *platform = NULL;
  struct sn_ztoc *z;
  size_t i;
  int c, h, r;

  regopts_init(&ro);
  while ((c = getopt_long(argc, argv, "p:hu:a:v", image_opts, NULL))
         != -1) {
    switch (c) {
    case 'p': platform = optarg; break;
    case 'h':
      printf("Usage: soci-nbd ztoc ls ZTOC\n"
             "       soci-nbd ztoc ls IMAGE [OPTIONS]\n\n"
             "ZTOC (a local file): list its files, one per line, like tar -tv:\n"
             "mode, uid/gid, size, data offset in the uncompressed tar,\n"
             "modification time (UTC), name, and link target.\n"
             "IMAGE (a registry or oci-layout: reference): list the ztocs of\n"
             "its SOCI index (v2 annotation first, else the first v1\n"
             "referrer), one per line: ZTOC-DIGEST SIZE LAYER-DIGEST.\n\n"
             "  -p, --platform P         os/arch[/variant] (default: this host's)\n"
             REGOPTS_HELP
             "  -h, --help               show this help\n");
      regopts_clear(&ro);
      return 0;
    default:
      h = c == 'l' || c == 'o' ? 0
        : regopts_handle(&ro, c, optarg, "ztoc ls");
      if (h == 1)
        continue;
      regopts_clear(&ro);
      return h ? h : cli_usage_error("ztoc ls", NULL);
    }
  }
  if (argc - optind != 1) {
    regopts_clear(&ro);
    return cli_usage_error("ztoc ls", "expected one ZTOC or IMAGE argument");
  }
  if (!is_local(argv[optind])) {
    r = regopts_finish(&ro, "ztoc ls");
    if (r == 0)
      r = image_index_ls(argv[optind], &ro, platform);
    regopts_clear(&ro);
    return r;
  }
  regopts_clear(&ro);
  z = sn_ztoc_load(argv[optind]);
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

/* The "ztoc get-file" help text. */
static void
get_file_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd ztoc get-file LAYER ZTOC PATH [OPTIONS]\n"
"       soci-nbd ztoc get-file IMAGE --layer DIGEST|N PATH [OPTIONS]\n"
"\n"
"Extract the file PATH of LAYER by reading only the compressed spans that\n"
"hold it, verifying each against the span digest in ZTOC, and checking the\n"
"file's tar header against its ztoc entry.  A hard link is followed.\n"
"With --layer, the ztoc comes from IMAGE's SOCI index and the spans are\n"
"read from the registry with range requests.\n"
"\n"
"  -o, --output FILE        write to FILE instead of stdout\n"
"  -l, --layer DIGEST|N     the layer of IMAGE (digest or number)\n"
"  -p, --platform P         os/arch[/variant] (default: this host's)\n"
"  -v, --verbose            say on stderr which spans were read\n"
REGOPTS_HELP
"  -h, --help               show this help\n");
}

/* --verbose: each span read, as the layer reports it. */
static void
trace_span(void *opaque, size_t i, const struct sn_span *s)
{
  (void) opaque;
  fprintf(stderr, "soci-nbd: span %zu: compressed [%" PRId64 ",%" PRId64
          ") uncompressed [%" PRId64 ",%" PRId64 ")\n", i, s->comp_start,
          s->comp_end, s->uncomp_start, s->uncomp_end);
}

/* Check f's tar header against its entry, then copy its data in 1 MiB
 * reads through verified spans.  -1 with the error set. */
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

/* get-file with --layer: open IMAGE's index, its ztoc for layer, and the
 * layer over range requests through *rs.  0, or the exit status after
 * clearing *ii and *ro. */
static int
open_image_layer(int argc, char **argv, struct regopts *ro,
                 const char *platform, const char *layer,
                 struct image_index *ii, struct range_src *rs,
                 const struct sn_descriptor **ld, struct sn_layer **lp,
                 const char **pathp)
{
  struct sn_ztoc *z;
  int r;

  if (argc - optind != 2) {
    regopts_clear(ro);
    return cli_usage_error("ztoc get-file",
                           "expected IMAGE and PATH arguments with --layer");
  }
  *pathp = argv[optind + 1];
  if ((r = regopts_finish(ro, "ztoc get-file")) != 0 ||
      (r = image_index_open(argv[optind], ro, platform, "ztoc get-file",
                            ii)) != 0) {
    regopts_clear(ro);
    return r;
  }
  z = image_index_ztoc(ii, argv[optind], layer, ld);
  if (z == NULL) {
    image_index_clear(ii);
    regopts_clear(ro);
    return 1;
  }
  rs->reg = ii->reg;
  rs->digest = (*ld)->digest;
  *lp = sn_layer_new_opts(z, image_index_read_range, rs, &(struct sn_layer_opts) {
                            .layer_digest = (*ld)->digest });
  if (*lp == NULL) {
    image_index_clear(ii);
    regopts_clear(ro);
    return cli_fail_lib("%s: layer %s", argv[optind], (*ld)->digest);
  }
  return 0;
}

/* get-file LAYER ZTOC PATH: load the ztoc and open the layer over the
 * local blob, whose descriptor goes to *fd.  0, or the exit status. */
static int
open_local_layer(int argc, char **argv, struct regopts *ro, int *fd,
                 struct sn_layer **lp, const char **pathp)
{
  struct sn_ztoc *z;

  regopts_clear(ro);
  if (argc - optind != 3)
    return cli_usage_error("ztoc get-file",
                           "expected LAYER, ZTOC and PATH arguments");
  *pathp = argv[optind + 2];
  z = sn_ztoc_load(argv[optind + 1]);
  if (z == NULL)
    return cli_fail_lib(NULL);
  *fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
  if (*fd == -1) {
    sn_ztoc_free(z);
    return cli_fail("%s: %s", argv[optind], strerror(errno));
  }
  *lp = sn_layer_new(z, sn_blob_read_fd, fd);
  if (*lp == NULL) {
    close(*fd);
    return cli_fail_lib("%s", argv[optind + 1]);
  }
  return 0;
}

/* PATH's regular-file entry in l's ztoc, one hard link followed (where
 * names the layer in the message), or NULL after reporting why. */
static const struct sn_ztoc_file *
find_regular(struct sn_layer *l, const char *path, const char *where)
{
  const struct sn_ztoc_file *f = sn_ztoc_find(sn_layer_ztoc(l), path);

  if (f && f->ftype == SN_FT_HARDLINK) {
    char target[4097];
    if (sn_path_clean(f->linkname.data, f->linkname.len, target,
                      sizeof target) >= 0)
      f = sn_ztoc_find(sn_layer_ztoc(l), target);
    else
      f = NULL;
    if (f == NULL) {
      cli_fail("%s: hard link target of %s is not in the layer", where,
               path);
      return NULL;
    }
  }
  if (f == NULL) {
    cli_fail("%s: no such file in the ztoc", path);
    return NULL;
  }
  if (f->ftype != SN_FT_REG) {
    cli_fail("%s: not a regular file (%.*s)", path, (int) f->type.len,
             f->type.data);
    return NULL;
  }
  return f;
}

/* Extract f to output (stdout when NULL); a partial output file is
 * removed.  Returns the exit status. */
static int
write_file(struct sn_layer *l, const struct sn_ztoc_file *f,
           const char *output, const char *path)
{
  FILE *out = stdout;
  int r = 1;

  if (output && (out = fopen(output, "wb")) == NULL) {
    cli_fail("%s: %s", output, strerror(errno));
    return r;
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
  return r;
}

/* "ztoc get-file": open the layer over a local blob or (with --layer)
 * range requests, find PATH (one hard link is followed), and extract it;
 * a partial output file is removed.  Returns the exit status. */
static int
ztoc_get_file(int argc, char **argv)
{
  struct regopts ro;
  const char *output = NULL, *path = NULL, *layer = NULL, *platform = NULL;
  bool verbose = false;
  const struct sn_ztoc_file *f;
  const struct sn_descriptor *ld = NULL;
  struct image_index ii = { 0 };
  struct range_src rs = { 0 };
  struct sn_layer *l = NULL;
  int c, h, fd = -1, r;

  regopts_init(&ro);
  while ((c = getopt_long(argc, argv, "o:l:p:vhu:a:", image_opts, NULL))
         != -1) {
    switch (c) {
    case 'o': output = optarg; break;
    case 'l': layer = optarg; break;
    case 'p': platform = optarg; break;
    case 'v': verbose = true; break;
    case 'h': get_file_usage(stdout); regopts_clear(&ro); return 0;
    default:
      h = regopts_handle(&ro, c, optarg, "ztoc get-file");
      if (h == 1)
        continue;
      regopts_clear(&ro);
      return h ? h : cli_usage_error("ztoc get-file", NULL);
    }
  }
  r = layer ? open_image_layer(argc, argv, &ro, platform, layer, &ii, &rs,
                               &ld, &l, &path)
    : open_local_layer(argc, argv, &ro, &fd, &l, &path);
  if (r != 0)
    return r;
  if (verbose)
    sn_layer_set_trace(l, trace_span, NULL);

  r = 1;
  f = find_regular(l, path, layer ? ld->digest : argv[optind + 1]);
  if (f != NULL)
    r = write_file(l, f, output, path);
  sn_layer_free(l);
  if (fd != -1)
    close(fd);
  image_index_clear(&ii);
  regopts_clear(&ro);
  return r;
}

/* ---- dispatch ------------------------------------------------------ */

/* The "ztoc" help text: a summary of the subcommands. */
static void
ztoc_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd ztoc COMMAND ...\n"
"\n"
"  create LAYER [-o FILE]    build a ztoc from a local tar or tar.gz layer\n"
"  info ZTOC                 print a ztoc as JSON\n"
"  info IMAGE --layer L      the same for a layer's ztoc in IMAGE's index\n"
"  ls ZTOC                   list its files, like tar -tv\n"
"  ls IMAGE                  list the ztocs of IMAGE's SOCI index\n"
"  get-file LAYER ZTOC PATH  extract one file through its spans only\n"
"  get-file IMAGE --layer L PATH  the same, reading the registry\n"
"\n"
"Run 'soci-nbd ztoc COMMAND --help' for a command's options.\n");
}

/* Dispatch to the subcommand, argv starting at its name. */
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
