/* soci-nbd: the SOCI index commands — "create" (v1 index, a referrer of
 * the image manifest) and "index list|info"; "convert" (v2 indexes bound
 * into a new image index) is in cmd-convert.c, and the building itself
 * in lib/soci/index-build.c.  Also the options create and convert share
 * (cmd-index.h). */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd-index.h"
#include "record/record.h"
#include "util/fdio.h"
#include "progress.h"
#include "dense/dense-manifest.h"
#include "soci/index-find.h"
#include "soci/index.h"
#include "soci/zinfo.h"

char *
cmdidx_platform_string(const struct sn_platform *p)
{
  char *s;

  if (p == NULL || p->os == NULL)
    return strdup("-");
  if (asprintf(&s, "%s/%s%s%s", p->os, p->architecture ? p->architecture
               : "?", p->variant ? "/" : "", p->variant ? p->variant : "")
      == -1)
    return NULL;
  return s;
}

bool
cmdidx_is_image_manifest_type(const char *mt)
{
  return mt && (strcmp(mt, SN_MT_OCI_MANIFEST) == 0 ||
                strcmp(mt, SN_MT_DOCKER_MANIFEST) == 0);
}

bool
cmdidx_is_attestation(const struct sn_platform *p)
{
  return p->os && strcmp(p->os, "unknown") == 0;
}

/* ---- option parsing shared by create and convert ------------------------ */

enum { OPT_SPAN = 0x2000, OPT_MIN, OPT_TOOL, OPT_PLATFORM, OPT_ALL,
       OPT_PREFETCH, OPT_OPTIM, OPT_QUIET, OPT_HELP, OPT_NO_DENSE,
       OPT_RECORD };

static const struct option build_options[] = {
  { "span-size", required_argument, NULL, OPT_SPAN },
  { "min-layer-size", required_argument, NULL, OPT_MIN },
  { "build-tool-id", required_argument, NULL, OPT_TOOL },
  { "platform", required_argument, NULL, OPT_PLATFORM },
  { "all-platforms", no_argument, NULL, OPT_ALL },
  { "prefetch-file", required_argument, NULL, OPT_PREFETCH },
  { "optimizations", required_argument, NULL, OPT_OPTIM },
  { "quiet", no_argument, NULL, OPT_QUIET },
  { "no-dense", no_argument, NULL, OPT_NO_DENSE },
  { "prefetch-record", required_argument, NULL, OPT_RECORD },
  { "help", no_argument, NULL, OPT_HELP },
  REGOPTS_LONG_OPTIONS,
  { NULL, 0, NULL, 0 },
};

/* Parse the options of create/convert; returns -1 to go on, or an exit
 * status. */
int
cmdidx_parse_build_options(int argc, char **argv, const char *cmd,
                           void (*usage)(FILE *),
                           struct sn_index_build_cfg *cfg,
                           struct regopts *ro, const char **platform,
                           bool *all)
{
  int c, h;

  cfg->span_size = SN_DEFAULT_SPAN_SIZE;
  cfg->min_layer_size = SN_INDEX_BUILD_DEFAULT_MIN_LAYER_SIZE;
  cfg->build_tool = SN_BUILD_TOOL_DEFAULT;
  cfg->dense = strcmp(cmd, "convert") == 0;  /* convert's default */
  optind = 1;
  while ((c = getopt_long(argc, argv, "s:m:b:p:qhu:a:v", build_options,
                          NULL)) != -1) {
    switch (c) {
    case 's': case OPT_SPAN:
      if (cli_parse_size(optarg, &cfg->span_size) == -1 ||
          cfg->span_size == 0)
        return cli_usage_error(cmd, "invalid span size '%s'", optarg);
      break;
    case 'm': case OPT_MIN:
      if (cli_parse_size(optarg, &cfg->min_layer_size) == -1)
        return cli_usage_error(cmd, "invalid min layer size '%s'", optarg);
      break;
    case 'b': case OPT_TOOL: cfg->build_tool = optarg; break;
    case 'p': case OPT_PLATFORM:
      if (platform == NULL)
        return cli_usage_error(cmd, "unknown option --platform");
      *platform = optarg;
      break;
    case OPT_ALL:
      if (all == NULL)
        return cli_usage_error(cmd, "unknown option --all-platforms");
      *all = true;
      break;
    case OPT_PREFETCH:
      if (cfg->nprefetch == SN_INDEX_BUILD_MAX_PREFETCH)
        return cli_usage_error(cmd, "too many --prefetch-file paths");
      cfg->prefetch[cfg->nprefetch++] = optarg;
      break;
    case OPT_RECORD: {
      struct sn_record *rec;

      if (cfg->record)
        return cli_usage_error(cmd, "--prefetch-record given twice");
      if ((rec = calloc(1, sizeof *rec)) == NULL)
        return cli_fail("out of memory");
      cfg->record = rec;
      if (cmdidx_load_record(optarg, rec) == -1)
        return cli_fail_lib(NULL);
      break;
    }
    case OPT_OPTIM:
      if (strcmp(optarg, "xattr") != 0)
        return cli_usage_error(cmd, "unknown optimization '%s'", optarg);
      cfg->xattr_opt = true;
      break;
    case 'q': case OPT_QUIET: cli_quiet = true; break;
    case 'h': case OPT_HELP: usage(stdout); return 0;
    case OPT_NO_DENSE:
      if (strcmp(cmd, "convert") != 0)
        return cli_usage_error(cmd, "unknown option --no-dense");
      cfg->dense = false;
      break;
    default:
      h = regopts_handle(ro, c, optarg, cmd);
      if (h == 1)
        continue;
      return h ? h : cli_usage_error(cmd, NULL);
    }
  }
  return -1;
}

int
cmdidx_load_top(struct sn_registry *src, const struct sn_ref *ref,
                struct sn_manifest **top, struct sn_oci_index **x)
{
  struct sn_manifest *t;

  *x = NULL;
  *top = t = sn_registry_get_manifest(src, ref->digest ? ref->digest
                                                       : ref->tag);
  if (t == NULL)
    return -1;
  if (t->is_index)
    *x = sn_oci_index_from_index(t->raw, t->raw_len);
  else {
    uint8_t *cfg = NULL;
    size_t len;

    if (sn_registry_get_blob_mem(src, t->config.digest, SN_MAX_DOCUMENT,
                                 &cfg, &len) == -1)
      return -1;
    *x = sn_oci_index_wrap(t->media_type, t->digest, (int64_t) t->raw_len,
                           cfg, len);
    free(cfg);
  }
  return *x ? 0 : -1;
}

int
cmdidx_load_record(const char *path, struct sn_record *rec)
{
  uint8_t *buf;
  size_t len;
  int r;

  if (sn_read_file(path, SN_RECORD_MAX_SIZE, false, &buf, &len) == -1)
    return sn_prefix_error("%s: ", path);
  r = sn_record_parse(buf, len, rec);
  free(buf);
  if (r == -1)
    return sn_prefix_error("%s: ", path);
  if (rec->nranges == 0) {
    sn_record_clear(rec);
    return sn_set_error("%s: the record is empty", path);
  }
  return 0;
}

void
cmdidx_free_build_options(struct sn_index_build_cfg *cfg)
{
  if (cfg->record) {
    sn_record_clear((struct sn_record *) cfg->record);
    free((struct sn_record *) cfg->record);
    cfg->record = NULL;
  }
}

/* Do a and b name the same repository (nothing to copy)? */
bool
cmdidx_same_repo(const struct sn_ref *a, const struct sn_ref *b)
{
  if (a->kind != b->kind)
    return false;
  if (a->kind == SN_REF_OCI_LAYOUT)
    return strcmp(a->layout_dir, b->layout_dir) == 0;
  return strcmp(a->registry, b->registry) == 0 &&
    strcmp(a->repository, b->repository) == 0;
}

int
cmdidx_open_ref(const char *s, const struct regopts *ro, const char *cmd,
                struct sn_ref *ref, struct sn_registry **reg)
{
  *reg = NULL;
  if (sn_ref_parse(s, ref) == -1)
    return cli_usage_error(cmd, "invalid image reference '%s': %s", s,
                           sn_error());
  *reg = sn_registry_open(ref, &ro->ro);
  if (*reg == NULL) {
    sn_ref_clear(ref);
    return cli_fail_lib(NULL);
  }
  return 0;
}

/* ---- create --------------------------------------------------------------- */

/* The help of create, to f (stdout for --help, stderr on bad usage). */
static void
create_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd create IMAGE [OPTIONS]\n"
"\n"
"Build a SOCI index v1 for IMAGE's manifest (for --platform, default this\n"
"host's): one ztoc per tar or tar+gzip layer of at least --min-layer-size,\n"
"pushed to IMAGE's repository with the index manifest, whose subject is\n"
"the image manifest (found through the referrers API or the sha256-<hex>\n"
"fallback tag).  Prints the index digest.\n"
"\n"
"  -p, --platform P         os/arch[/variant] to select from an index\n"
BUILD_HELP
REGOPTS_HELP
"  -h, --help               show this help\n");
}

/* soci-nbd create: build a v1 index of IMAGE's manifest (docs/soci-format.md
 * §5.1) and push it to the same repository; prints its digest.  The exit
 * status: 0, 1 on failure, 2 on bad usage. */
int
cmd_create(int argc, char **argv)
{
  struct sn_index_build_cfg cfg = { 0 };
  struct regopts ro;
  const char *platform = NULL;
  struct sn_platform want = { 0 };
  struct sn_ref ref = { 0 };
  struct sn_registry *reg = NULL;
  struct sn_manifest *m = NULL;
  struct sn_doc idx = { 0 };
  int st, r;

  regopts_init(&ro);
  st = cmdidx_parse_build_options(argc, argv, "create", create_usage, &cfg,
                                  &ro, &platform, NULL);
  if (st >= 0)
    goto out;
  st = 1;
  progress_start(&cfg);
  if (argc - optind != 1) {
    st = cli_usage_error("create", "expected one IMAGE argument");
    goto out;
  }
  if (platform && sn_platform_parse(platform, &want) == -1) {
    st = cli_usage_error("create", "%s", sn_error());
    goto out;
  }
  if ((r = regopts_finish(&ro, "create")) != 0 ||
      (r = cmdidx_open_ref(argv[optind], &ro, "create", &ref, &reg)) != 0) {
    st = r;
    goto out;
  }
  m = sn_registry_resolve(reg, ref.digest ? ref.digest : ref.tag,
                          platform ? &want : NULL, NULL);
  if (m == NULL) {
    cli_fail_lib(NULL);
    goto out;
  }
  r = sn_index_build_run(reg, reg, m, 1, &cfg, &idx, NULL);
  if (r == 1)
    cli_fail("%s: no layer indexed (all smaller than min-layer-size %"
             PRId64 " or not tar or tar+gzip)", m->digest, cfg.min_layer_size);
  if (r)
    goto fail;
  if (sn_registry_put_manifest(reg, idx.digest, SN_MT_OCI_MANIFEST, idx.data,
                               idx.len) == -1)
    goto fail;
  progress("soci index %s (v1) for image manifest %s", idx.digest,
           m->digest);
  progress_summary();
  printf("%s\n", idx.digest);
  st = fflush(stdout) == 0 ? 0 : cli_fail("stdout: %s", strerror(errno));
  goto out;
fail:
  if (r != 1)
    cli_fail_lib(NULL);
out:
  sn_doc_free(&idx);
  sn_manifest_free(m);
  sn_registry_close(reg);
  sn_ref_clear(&ref);
  sn_platform_clear(&want);
  regopts_clear(&ro);
  cmdidx_free_build_options(&cfg);
  return st;
}

/* ---- index list / info ---------------------------------------------------- */

/* The help of index list|info, to f. */
static void
index_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd index list IMAGE [OPTIONS]\n"
"       soci-nbd index info IMAGE [DIGEST] [OPTIONS]\n"
"\n"
"list: print the SOCI indexes of IMAGE, one per line:\n"
"  DIGEST VERSION SIZE IMAGE-MANIFEST-DIGEST PLATFORM\n"
"v2 indexes are found through the com.amazon.soci.index-digest annotation\n"
"of each image manifest, v1 indexes through the referrers API (or its\n"
"sha256-<hex> fallback tag); a dense index (VERSION \"dense\", soci-nbd's\n"
"own, docs/dense-index.md) through the io.soci-nbd.dense-index.digest\n"
"annotation.\n"
"info: print a SOCI index manifest as stored: DIGEST in IMAGE's\n"
"repository (a SOCI or a dense index), IMAGE itself when it names an\n"
"index, else the first index of IMAGE's manifest for --platform (v2\n"
"first).\n"
"\n"
"  -p, --platform P         only this platform (list), or the platform to\n"
"                           pick from an index (info; default: this host's)\n"
REGOPTS_HELP
"  -h, --help               show this help\n");
}

struct found {
  char *digest;
  int version;
  int64_t size;
  char *manifest;
  char *platform;
};

/* Append an index to *f unless that index and manifest pair is there; -1
 * after sn_oom (what was stored stays for index_free). */
static int
add_found(struct found **f, size_t *n, const char *digest, int version,
          int64_t size, const char *manifest, const struct sn_platform *p)
{
  struct found *nf;
  size_t i;

  for (i = 0; i < *n; i++)
    if (strcmp((*f)[i].digest, digest) == 0 &&
        strcmp((*f)[i].manifest, manifest) == 0)
      return 0;
  nf = realloc(*f, (*n + 1) * sizeof *nf);
  if (nf == NULL)
    return sn_oom();
  *f = nf;
  nf[*n].digest = strdup(digest);
  nf[*n].version = version;
  nf[*n].size = size;
  nf[*n].manifest = strdup(manifest);
  nf[*n].platform = cmdidx_platform_string(p);
  (*n)++;
  if (!nf[*n - 1].digest || !nf[*n - 1].manifest || !nf[*n - 1].platform)
    return sn_oom();
  return 0;
}

/* The dense index of image manifest m, if it names one (version 0,
 * printed "dense"; docs/dense-index.md). */
static int
find_dense(struct sn_registry *reg, const struct sn_manifest *m,
           const struct sn_platform *p, struct found **f, size_t *n)
{
  struct sn_manifest *dm;
  int r;

  if (sn_dense_fetch(reg, m, &dm) == -1)
    return -1;
  if (dm == NULL)
    return 0;
  r = add_found(f, n, dm->digest, 0, (int64_t) dm->raw_len, m->digest, p);
  sn_manifest_free(dm);
  return r;
}

/* The SOCI indexes of one image manifest: its v2 index and the v1
 * referrers that pass the checks of lib/soci/index-find.h (others are named on
 * stderr and skipped). */
static int
find_for_manifest(struct sn_registry *reg, const struct sn_manifest *m,
                  const struct sn_platform *p, struct found **f, size_t *n)
{
  const char *v2 = sn_annotation_get(m->annotations, m->nannotations,
                                     SN_ANN_INDEX_DIGEST);
  struct sn_manifest *refs, *idx;
  size_t i;
  int r;

  if (v2) {
    if ((idx = sn_index_fetch(reg, v2, m)) == NULL)
      return -1;
    r = add_found(f, n, v2, 2, (int64_t) idx->raw_len, m->digest, p);
    sn_manifest_free(idx);
    if (r == -1)
      return -1;
  }
  refs = sn_registry_referrers(reg, m->digest, SN_MT_SOCI_INDEX_V1);
  if (refs == NULL)
    return -1;
  for (i = 0; i < refs->nmanifests; i++) {
    const struct sn_descriptor *d = &refs->manifests[i];

    if (!sn_index_v1_candidate(d))
      continue;
    if ((idx = sn_index_fetch(reg, d->digest, m)) == NULL) {
      fprintf(stderr, "soci-nbd: index: referrer skipped: %s\n", sn_error());
      continue;
    }
    r = add_found(f, n, d->digest, 1, (int64_t) idx->raw_len, m->digest, p);
    sn_manifest_free(idx);
    if (r == -1) {
      sn_manifest_free(refs);
      return -1;
    }
  }
  sn_manifest_free(refs);
  return find_dense(reg, m, p, f, n);
}

/* The indexes of top, an image manifest, or of each entry of an image index
 * that is an image for want (attestations and artifacts skipped). */
static int
find_indexes(struct sn_registry *reg, const struct sn_manifest *top,
             const struct sn_platform *want, struct found **f, size_t *n)
{
  size_t i;

  if (!top->is_index)
    return find_for_manifest(reg, top, NULL, f, n);
  for (i = 0; i < top->nmanifests; i++) {
    const struct sn_descriptor *d = &top->manifests[i];
    struct sn_manifest *m;
    int r;

    if (!cmdidx_is_image_manifest_type(d->media_type) ||
        d->artifact_type ||
        (d->platform && cmdidx_is_attestation(d->platform)) ||
        (want && (d->platform == NULL ||
                  !sn_platform_matches(want, d->platform))))
      continue;
    m = sn_registry_get_manifest(reg, d->digest);
    if (m == NULL)
      return -1;
    r = find_for_manifest(reg, m, d->platform, f, n);
    sn_manifest_free(m);
    if (r == -1)
      return -1;
  }
  return 0;
}

/* The state of one index command; index_free releases it. */
struct index_cmd {
  bool list;                    /* list, else info */
  struct regopts ro;
  const char *platform;
  const char *image, *digest;   /* IMAGE [DIGEST] as given */
  struct sn_platform want;
  struct sn_ref ref;
  struct sn_registry *reg;
  struct sn_manifest *top, *m;
  struct found *f;
  size_t nf;
};

/* Options (after the subcommand), arguments, and IMAGE opened.  -1 to go
 * on, or an exit status. */
static int
index_parse(int argc, char **argv, struct index_cmd *c)
{
  static const struct option opts[] = {
    { "platform", required_argument, NULL, 'p' },
    { "help", no_argument, NULL, 'h' },
    REGOPTS_LONG_OPTIONS,
    { NULL, 0, NULL, 0 },
  };
  bool list = c->list;
  int ch, h, r;

  optind = 1;
  while ((ch = getopt_long(argc, argv, "p:hu:a:v", opts, NULL)) != -1) {
    switch (ch) {
    case 'p': c->platform = optarg; break;
    case 'h': index_usage(stdout); return 0;
    default:
      h = regopts_handle(&c->ro, ch, optarg, "index");
      if (h == 1)
        continue;
      return h ? h : cli_usage_error("index", NULL);
    }
  }
  if (argc - optind != 1 && (list || argc - optind != 2))
    return cli_usage_error("index", list ? "expected one IMAGE argument"
                           : "expected IMAGE [DIGEST]");
  if (strncmp(argv[optind], "sha256:", 7) == 0)
    return cli_usage_error("index", "a bare digest needs IMAGE before it");
  if (c->platform && sn_platform_parse(c->platform, &c->want) == -1)
    return cli_usage_error("index", "%s", sn_error());
  c->image = argv[optind];
  c->digest = argc - optind == 2 ? argv[optind + 1] : NULL;
  if ((r = regopts_finish(&c->ro, "index")) != 0 ||
      (r = cmdidx_open_ref(c->image, &c->ro, "index", &c->ref,
                           &c->reg)) != 0)
    return r;
  return -1;
}

/* list: the indexes found (c->f); info: the index manifest to print
 * (c->m).  0, -1, or an exit status (the message printed). */
static int
index_find(struct index_cmd *c)
{
  struct sn_registry *reg = c->reg;
  bool list = c->list;
  int r;

  if (!list && c->digest) {
    c->m = sn_registry_get_manifest(reg, c->digest);
    if (c->m == NULL)
      return -1;
    if (!sn_index_is_soci(c->m) && sn_dense_check(c->m) == -1)
      return cli_fail("%s is not a SOCI index or a dense index",
                      c->digest);
    return 0;
  }
  c->top = sn_registry_get_manifest(reg, c->ref.digest ? c->ref.digest
                                    : c->ref.tag);
  if (c->top == NULL)
    return -1;
  if (!list && sn_index_is_soci(c->top)) {
    c->m = c->top;
    c->top = NULL;
  } else if (list) {
    if (find_indexes(reg, c->top, c->platform ? &c->want : NULL, &c->f,
                     &c->nf) == -1)
      return -1;
  } else {
    struct sn_manifest *img = c->top;
    const struct sn_descriptor *d;

    if (c->top->is_index) {
      if (c->platform == NULL && sn_platform_host(&c->want) == -1)
        return -1;
      d = sn_manifest_select(c->top, &c->want);
      if (d == NULL || (img = sn_registry_get_manifest(reg, d->digest))
          == NULL)
        return -1;
    }
    r = find_for_manifest(reg, img, NULL, &c->f, &c->nf);
    if (img != c->top)
      sn_manifest_free(img);
    if (r == -1)
      return -1;
    if (c->nf == 0)
      return cli_fail("%s: no SOCI index", c->image);
    c->m = sn_registry_get_manifest(reg, c->f[0].digest);
    if (c->m == NULL)
      return -1;
  }
  return 0;
}

/* Print the list, or the index manifest as stored.  0, or 1 when stdout
 * fails. */
static int
index_print(const struct index_cmd *c)
{
  size_t i;

  if (c->list) {
    for (i = 0; i < c->nf; i++)
      printf("%s %s%.0d %" PRId64 " %s %s\n", c->f[i].digest,
             c->f[i].version ? "v" : "dense", c->f[i].version,
             c->f[i].size, c->f[i].manifest, c->f[i].platform);
  } else {
    if (fwrite(c->m->raw, 1, c->m->raw_len, stdout) != c->m->raw_len)
      return cli_fail("stdout: %s", strerror(errno));
    putchar('\n');
  }
  if (fflush(stdout) == EOF || ferror(stdout))
    return cli_fail("stdout: %s", strerror(errno));
  return 0;
}

/* Release what c holds (c itself is the caller's). */
static void
index_free(struct index_cmd *c)
{
  size_t i;

  for (i = 0; i < c->nf; i++) {
    free(c->f[i].digest);
    free(c->f[i].manifest);
    free(c->f[i].platform);
  }
  free(c->f);
  sn_manifest_free(c->m);
  sn_manifest_free(c->top);
  sn_registry_close(c->reg);
  sn_ref_clear(&c->ref);
  sn_platform_clear(&c->want);
  regopts_clear(&c->ro);
}

/* soci-nbd index list|info: parse, find, print.  The exit status: 0, 1 on
 * failure, 2 on bad usage. */
int
cmd_index(int argc, char **argv)
{
  struct index_cmd c = { 0 };
  const char *sub;
  int st;

  if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "--help") == 0) {
    index_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  sub = argv[1];
  if (strcmp(sub, "list") != 0 && strcmp(sub, "info") != 0)
    return cli_usage_error("index", "unknown subcommand '%s'", sub);
  c.list = strcmp(sub, "list") == 0;
  regopts_init(&c.ro);
  st = index_parse(argc - 1, argv + 1, &c);
  if (st < 0) {
    st = index_find(&c);
    if (st == -1)
      st = cli_fail_lib(NULL);
    else if (st == 0)
      st = index_print(&c);
  }
  index_free(&c);
  return st;
}
