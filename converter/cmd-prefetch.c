/* soci-nbd: "prefetch add" — attach a prefetch record (nbdkit soci
 * record=FILE) to an image that already has a SOCI index, writing a new
 * image (lib/soci/index-attach.h, docs/prefetch-record.md). */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd-index.h"
#include "dense/dense.h"
#include "progress.h"
#include "record/record.h"
#include "registry/copy.h"
#include "regopts.h"
#include "soci/index-attach.h"
#include "soci/index.h"

static void
prefetch_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd prefetch add SRC RECORD DST [OPTIONS]\n"
"\n"
"Attach the prefetch record RECORD (written by nbdkit soci record=FILE) to\n"
"image SRC, which must have a SOCI index v2 (soci-nbd convert), and push the\n"
"result to DST's tag: a new SOCI index whose prefetch artifacts are the\n"
"record's spans (what AWS soci prefetches), the record itself in a new\n"
"dense index when SRC has one (what nbdkit soci prefetch=auto replays), and\n"
"the image manifest and image index naming them.  Blobs missing at DST are\n"
"copied.  SRC and DST are registry references or oci-layout:DIR[:TAG].\n"
"Prints the digest of the new image index.\n"
"\n"
"  -p, --platform P         the image of this platform (default: this\n"
"                           host's)\n"
"  -q, --quiet              no progress messages on stderr\n"
REGOPTS_HELP
"  -h, --help               show this help\n");
}

enum { OPT_PLATFORM = 0x2100, OPT_QUIET, OPT_HELP };

static const struct option prefetch_options[] = {
  { "platform", required_argument, NULL, OPT_PLATFORM },
  { "quiet", no_argument, NULL, OPT_QUIET },
  { "help", no_argument, NULL, OPT_HELP },
  REGOPTS_LONG_OPTIONS,
  { NULL, 0, NULL, 0 },
};

/* The state of one command; add_free releases it. */
struct add {
  struct regopts ro;
  const char *platform;
  const char *srcname, *dstname;
  struct sn_record rec;
  struct sn_ref sref, dref;
  struct sn_registry *src, *dst;
  struct sn_manifest *top, *m;
  struct sn_oci_index *x;
  size_t entry;                 /* of the image in x */
  struct sn_index_attach a;
  struct sn_doc out;
};

static void
add_free(struct add *c)
{
  sn_index_attach_clear(&c->a);
  sn_doc_free(&c->out);
  sn_oci_index_free(c->x);
  if (c->m != c->top)
    sn_manifest_free(c->m);
  sn_manifest_free(c->top);
  sn_registry_close(c->src);
  sn_registry_close(c->dst);
  sn_ref_clear(&c->sref);
  sn_ref_clear(&c->dref);
  sn_record_clear(&c->rec);
  regopts_clear(&c->ro);
}

/* Options and arguments, the record read, SRC and DST opened: -1 to go
 * on, or an exit status. */
static int
add_parse(int argc, char **argv, struct add *c)
{
  int ch, h, r;

  optind = 1;
  while ((ch = getopt_long(argc, argv, "p:qhu:a:v", prefetch_options,
                           NULL)) != -1) {
    switch (ch) {
    case 'p': case OPT_PLATFORM: c->platform = optarg; break;
    case 'q': case OPT_QUIET: cli_quiet = true; break;
    case 'h': case OPT_HELP: prefetch_usage(stdout); return 0;
    default:
      h = regopts_handle(&c->ro, ch, optarg, "prefetch add");
      if (h == 1)
        continue;
      return h ? h : cli_usage_error("prefetch add", NULL);
    }
  }
  if (argc - optind != 3)
    return cli_usage_error("prefetch add", "expected SRC, RECORD and DST");
  c->srcname = argv[optind];
  c->dstname = argv[optind + 2];
  if (cmdidx_load_record(argv[optind + 1], &c->rec) == -1)
    return cli_fail_lib(NULL);
  if ((r = regopts_finish(&c->ro, "prefetch add")) != 0 ||
      (r = cmdidx_open_ref(c->srcname, &c->ro, "prefetch add", &c->sref,
                           &c->src)) != 0 ||
      (r = cmdidx_open_ref(c->dstname, &c->ro, "prefetch add", &c->dref,
                           &c->dst)) != 0)
    return r;
  if (c->dref.digest)
    return cli_usage_error("prefetch add", "DST must be a tag, not a digest");
  return -1;
}

/* SRC's image index (a single image is wrapped) and the entry of the
 * image for the platform: 0 or -1. */
static int
add_load(struct add *c)
{
  struct sn_platform want = { 0 };
  const struct sn_descriptor *sel;
  size_t i, n;

  if (cmdidx_load_top(c->src, &c->sref, &c->top, &c->x) == -1)
    return -1;
  if (!c->top->is_index) {
    c->m = c->top;
    c->entry = 0;
    return 0;
  }
  if ((c->platform ? sn_platform_parse(c->platform, &want)
                   : sn_platform_host(&want)) == -1)
    return -1;
  sel = sn_manifest_select(c->top, &want);
  sn_platform_clear(&want);
  if (sel == NULL)
    return -1;
  n = sn_oci_index_count(c->x);
  for (i = 0; i < n && strcmp(sn_oci_index_digest(c->x, i), sel->digest);
       i++)
    ;
  if (i == n)
    return sn_set_error("%s: entry %s not found", c->srcname, sel->digest);
  c->entry = i;
  c->m = sn_registry_get_manifest(c->src, sel->digest);
  return c->m ? 0 : -1;
}

/* Entries other than the image, copied to DST when it is elsewhere. */
static int
add_copy_others(struct add *c)
{
  size_t i, n = sn_oci_index_count(c->x);

  for (i = 0; i < n; i++) {
    struct sn_registry_copy_opts co = { 0 };
    struct sn_manifest *e;
    int r;

    if (i == c->entry)
      continue;
    e = sn_registry_get_manifest(c->src, sn_oci_index_digest(c->x, i));
    if (e == NULL)
      return -1;
    r = sn_registry_copy_tree(c->src, c->dst, e, &co) == -1 ||
        sn_registry_put_manifest(c->dst, e->digest, e->media_type, e->raw,
                                 e->raw_len) == -1 ? -1 : 0;
    sn_manifest_free(e);
    if (r == -1)
      return -1;
  }
  return 0;
}

int
cmd_prefetch(int argc, char **argv)
{
  struct add c = { 0 };
  bool copy;
  int st;

  regopts_init(&c.ro);
  if (argc < 2 || (strcmp(argv[1], "add") != 0 &&
                   strcmp(argv[1], "-h") != 0 &&
                   strcmp(argv[1], "--help") != 0)) {
    st = cli_usage_error("prefetch", "expected: prefetch add SRC RECORD DST");
    goto out;
  }
  if (strcmp(argv[1], "add") != 0) {
    prefetch_usage(stdout);
    st = 0;
    goto out;
  }
  st = add_parse(argc - 1, argv + 1, &c);
  if (st >= 0)
    goto out;
  copy = !cmdidx_same_repo(&c.sref, &c.dref);
  if (add_load(&c) == -1 || (copy && add_copy_others(&c) == -1) ||
      sn_index_attach_record(c.src, c.dst, c.m, &c.rec, copy, &c.a) == -1) {
    st = cli_fail_lib("%s", c.srcname);
    goto out;
  }
  if (sn_oci_index_set_manifest(c.x, c.entry, &c.a.image) == -1 ||
      sn_oci_index_add_soci(c.x, &c.a.soci, c.a.image.digest, NULL,
                            c.entry) == -1 ||
      (c.a.dense.len &&
       sn_oci_index_add_artifact(c.x, &c.a.dense, SN_DENSE_ARTIFACT_TYPE,
                                 c.a.image.digest, NULL, c.entry) == -1) ||
      sn_oci_index_encode(c.x, &c.out) == -1 ||
      sn_registry_put_manifest(c.dst, c.dref.tag, SN_MT_OCI_INDEX,
                               c.out.data, c.out.len) == -1) {
    st = cli_fail_lib("%s", c.dstname);
    goto out;
  }
  progress("image manifest %s -> %s, soci index %s%s%s", c.m->digest,
           c.a.image.digest, c.a.soci.digest, c.a.dense.len ? ", dense index "
           : "", c.a.dense.len ? c.a.dense.digest : "");
  printf("%s\n", c.out.digest);
  st = fflush(stdout) == 0 ? 0 : cli_fail("stdout: %s", strerror(errno));
out:
  add_free(&c);
  return st;
}
