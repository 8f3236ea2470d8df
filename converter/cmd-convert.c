/* soci-nbd: "convert" — a SOCI-enabled copy of an image, as soci convert
 * does: v2 indexes (lib/soci/index-build.h) bound into a new image index
 * (docs/soci-format.md), the blobs DST lacks copied on the way
 * (lib/registry/copy.h).  Layers are streamed, never held whole. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd-index.h"
#include "progress.h"
#include "registry/copy.h"
#include "dense/dense.h"
#include "soci/index.h"

static void
convert_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd convert SRC DST [OPTIONS]\n"
"\n"
"Make a SOCI-enabled copy of image SRC at DST, as \"soci convert\" does: a\n"
"SOCI index v2 per platform, each image manifest re-written as OCI with the\n"
"com.amazon.soci.index-digest annotation, and an OCI image index holding\n"
"the images and their SOCI indexes, pushed to DST's tag.  Blobs missing at\n"
"DST are copied.  SRC and DST are registry references or\n"
"oci-layout:DIR[:TAG].  Prints the digest of the new image index.\n"
"\n"
"  -p, --platform P         index this platform (default: this host's, or\n"
"                           the image's own for a single-platform image)\n"
"      --all-platforms      index every platform of SRC\n"
BUILD_HELP
"      --no-dense           no dense index (by default one is written beside\n"
"                           the SOCI index: docs/dense-index.md)\n"
REGOPTS_HELP
"  -h, --help               show this help\n");
}

/* One entry of the image index being made. */
struct entry {
  struct sn_manifest *m;        /* the source manifest (image manifests) */
  bool image;                   /* re-serialized */
  bool indexed;                 /* indexed: a SOCI index (soci.len; none
                                 * when only zstd layers were), a dense
                                 * index, or both */
  struct sn_platform plat;      /* the SOCI entry's platform */
  bool plat_given;              /* else copied from the entry */
  struct sn_doc soci;
  struct sn_doc dense;          /* its dense-index manifest (len 0: none) */
  struct sn_doc ann;
};

/* Skip copying the layers indexed (their indexing job copies them). */
static bool
skip_indexed(void *opaque, const struct sn_descriptor *d)
{
  const struct sn_index_build_cfg *cfg = opaque;

  return cfg->copy_layers && sn_index_build_will_index(d, cfg, false);
}

/* The state of one convert command; convert_free releases it. */
struct convert {
  struct sn_index_build_cfg cfg;
  struct regopts ro;
  const char *platform;
  bool all, same;
  const char *srcname, *dstname; /* SRC and DST as given */
  struct sn_ref sref, dref;
  struct sn_registry *src, *dst;
  struct sn_manifest *top;
  struct sn_oci_index *x;
  struct entry *e;
  size_t n;
  struct sn_doc out;
};

/* Options, arguments, and SRC and DST opened.  -1 to go on, or an exit
 * status. */
static int
convert_parse(int argc, char **argv, struct convert *c)
{
  int st, r;

  st = cmdidx_parse_build_options(argc, argv, "convert", convert_usage,
                                  &c->cfg, &c->ro, &c->platform, &c->all);
  if (st >= 0)
    return st;
  progress_start(&c->cfg);
  if (argc - optind != 2)
    return cli_usage_error("convert", "expected SRC and DST arguments");
  if (c->platform && c->all)
    return cli_usage_error("convert", "--platform and --all-platforms "
                           "exclude each other");
  c->srcname = argv[optind];
  c->dstname = argv[optind + 1];
  if ((r = regopts_finish(&c->ro, "convert")) != 0 ||
      (r = cmdidx_open_ref(c->srcname, &c->ro, "convert", &c->sref,
                           &c->src)) != 0 ||
      (r = cmdidx_open_ref(c->dstname, &c->ro, "convert", &c->dref,
                           &c->dst)) != 0)
    return r;
  if (c->dref.digest)
    return cli_usage_error("convert", "DST must be a tag, not a digest");
  c->same = cmdidx_same_repo(&c->sref, &c->dref);
  c->cfg.copy_layers = !c->same;
  return -1;
}

/* SRC's top manifest, as an image index to edit (a single image is
 * wrapped), and its entries.  0 or -1. */
static int
convert_load(struct convert *c)
{
  if (cmdidx_load_top(c->src, &c->sref, &c->top, &c->x) == -1)
    return -1;
  c->n = sn_oci_index_count(c->x);
  c->e = calloc(c->n ? c->n : 1, sizeof *c->e);
  if (c->e == NULL)
    return sn_oom();
  return 0;
}

/* Which entries get a SOCI index, with which platform.  0, -1, or an exit
 * status (the message printed). */
static int
convert_select(struct convert *c)
{
  struct sn_platform want = { 0 };
  const struct sn_descriptor *sel = NULL;
  const char *platform = c->platform;
  const struct sn_manifest *top = c->top;
  struct sn_oci_index *x = c->x;
  struct entry *e = c->e;
  size_t n = c->n, i;
  bool all = c->all;
  int r;

  if (!all) {
    if (platform) {
      if (sn_platform_parse(platform, &want) == -1) {
        return cli_usage_error("convert", "%s", sn_error());
      }
    } else if (top->is_index && sn_platform_host(&want) == -1)
      return -1;
    if (top->is_index) {
      sel = sn_manifest_select(top, &want);
      if (sel == NULL) {
        sn_platform_clear(&want);
        return -1;
      }
    } else if (platform) {
      struct sn_platform have;

      if (sn_oci_index_platform(x, 0, &have) == -1) {
        sn_platform_clear(&want);
        return -1;
      }
      r = sn_platform_matches(&want, &have);
      sn_platform_clear(&have);
      if (!r) {
        cli_fail("%s: the image is not for platform %s", c->srcname,
                 platform);
        sn_platform_clear(&want);
        return 1;
      }
    }
  }
  for (i = 0; i < n; i++) {
    const char *mt = sn_oci_index_media_type(x, i);
    struct sn_platform p;

    if (!cmdidx_is_image_manifest_type(mt) ||
        sn_oci_index_artifact_type(x, i))
      continue;
    e[i].image = true;
    if (!top->is_index) {
      e[i].indexed = true;      /* platform: the image config's */
      continue;
    }
    if (all) {                  /* platform: the entry's */
      if (sn_oci_index_platform(x, i, &p) == -1)
        return -1;
      e[i].indexed = p.os && !cmdidx_is_attestation(&p);
      sn_platform_clear(&p);
      continue;
    }
    if (strcmp(sn_oci_index_digest(x, i), sel->digest) != 0)
      continue;
    /* soci records the requested (or the host's) platform, normalized. */
    e[i].indexed = true;
    e[i].plat_given = true;
    if ((e[i].plat.os = strdup(want.os)) == NULL ||
        (e[i].plat.architecture = strdup(want.architecture)) == NULL ||
        (want.variant &&
         (e[i].plat.variant = strdup(want.variant)) == NULL)) {
      sn_platform_clear(&want);
      return sn_oom();
    }
    if (sn_index_platform_normalize(&e[i].plat) == -1) {
      sn_platform_clear(&want);
      return -1;
    }
  }
  sn_platform_clear(&want);
  return 0;
}

/* Copy what DST lacks, then build the SOCI indexes.  0, -1, or an exit
 * status (no layer indexed at all). */
static int
convert_build(struct convert *c)
{
  struct sn_registry *src = c->src, *dst = c->dst;
  struct entry *e = c->e;
  bool same = c->same;
  size_t i, nindexed = 0;
  int r;

  for (i = 0; i < c->n; i++) {
    const char *dg = sn_oci_index_digest(c->x, i);
    struct sn_registry_copy_opts co = {
      .skip_layer = e[i].indexed ? skip_indexed : NULL,
      .copied = progress_copied, .opaque = &c->cfg,
    };

    e[i].m = sn_registry_get_manifest(src, dg);
    if (e[i].m == NULL)
      return -1;
    if (!same && sn_registry_copy_tree(src, dst, e[i].m, &co) == -1)
      return -1;
    if (!e[i].image && !same &&
        sn_registry_put_manifest(dst, e[i].m->digest, e[i].m->media_type,
                                 e[i].m->raw, e[i].m->raw_len) == -1)
      return -1;
    if (e[i].indexed) {
      char *ps = cmdidx_platform_string(e[i].plat_given ? &e[i].plat : NULL);

      r = sn_index_build_run(src, dst, e[i].m, 2, &c->cfg, &e[i].soci,
                             &e[i].dense);
      if (r == 1) {
        progress("no layer indexed for %s (platform %s): skipped",
                 e[i].m->digest, ps ? ps : "?");
        e[i].indexed = false;
      }
      free(ps);
      if (r == -1)
        return -1;
      if (r == 0)
        nindexed++;
    }
  }
  if (nindexed == 0)
    return cli_fail("%s: no layer indexed (all smaller than min-layer-size %"
                    PRId64 " or not tar, tar+gzip or tar+zstd)", c->srcname,
                    c->cfg.min_layer_size);
  return 0;
}

/* Push the SOCI indexes, the re-serialized manifests, then the index
 * (to DST's tag).  0 or -1. */
static int
convert_push(struct convert *c)
{
  struct sn_registry *dst = c->dst;
  struct sn_oci_index *x = c->x;
  struct entry *e = c->e;
  size_t i;

  for (i = 0; i < c->n; i++) {
    if (!e[i].image)
      continue;
    if (e[i].indexed && e[i].soci.len &&
        sn_registry_put_manifest(dst, e[i].soci.digest, SN_MT_OCI_MANIFEST,
                                 e[i].soci.data, e[i].soci.len) == -1)
      return -1;
    if (e[i].indexed && e[i].dense.len &&
        sn_registry_put_manifest(dst, e[i].dense.digest, SN_MT_OCI_MANIFEST,
                                 e[i].dense.data, e[i].dense.len) == -1)
      return -1;
    if (sn_index_annotate_manifest_dense(e[i].m->raw, e[i].m->raw_len,
                                         e[i].indexed && e[i].soci.len
                                         ? e[i].soci.digest : NULL,
                                         e[i].indexed && e[i].dense.len
                                         ? e[i].dense.digest : NULL,
                                         &e[i].ann) == -1 ||
        sn_registry_put_manifest(dst, e[i].ann.digest, SN_MT_OCI_MANIFEST,
                                 e[i].ann.data, e[i].ann.len) == -1 ||
        sn_oci_index_set_manifest(x, i, &e[i].ann) == -1)
      return -1;
    if (e[i].indexed)
      progress("image manifest %s -> %s, soci index %s", e[i].m->digest,
               e[i].ann.digest, e[i].soci.len ? e[i].soci.digest
               : "none (only zstd layers indexed)");
    if (e[i].indexed && e[i].dense.len)
      progress("dense index %s", e[i].dense.digest);
  }
  for (i = 0; i < c->n; i++) {
    if (e[i].indexed && e[i].soci.len &&
        sn_oci_index_add_soci(x, &e[i].soci, e[i].ann.digest,
                              e[i].plat_given ? &e[i].plat : NULL, i) == -1)
      return -1;
    if (e[i].indexed && e[i].dense.len &&
        sn_oci_index_add_artifact(x, &e[i].dense, SN_DENSE_ARTIFACT_TYPE,
                                  e[i].ann.digest,
                                  e[i].plat_given ? &e[i].plat : NULL,
                                  i) == -1)
      return -1;
  }
  if (sn_oci_index_encode(x, &c->out) == -1 ||
      sn_registry_put_manifest(dst, c->dref.tag, SN_MT_OCI_INDEX, c->out.data,
                               c->out.len) == -1)
    return -1;
  return 0;
}

static void
convert_free(struct convert *c)
{
  size_t i;

  for (i = 0; c->e && i < c->n; i++) {
    sn_manifest_free(c->e[i].m);
    sn_platform_clear(&c->e[i].plat);
    sn_doc_free(&c->e[i].soci);
    sn_doc_free(&c->e[i].dense);
    sn_doc_free(&c->e[i].ann);
  }
  free(c->e);
  sn_doc_free(&c->out);
  sn_oci_index_free(c->x);
  sn_manifest_free(c->top);
  sn_registry_close(c->src);
  sn_registry_close(c->dst);
  sn_ref_clear(&c->sref);
  sn_ref_clear(&c->dref);
  regopts_clear(&c->ro);
  cmdidx_free_build_options(&c->cfg);
}

int
cmd_convert(int argc, char **argv)
{
  struct convert c = { 0 };
  int st;

  regopts_init(&c.ro);
  st = convert_parse(argc, argv, &c);
  if (st >= 0)
    goto out;
  if ((st = convert_load(&c)) == 0 && (st = convert_select(&c)) == 0 &&
      (st = convert_build(&c)) == 0 && (st = convert_push(&c)) == 0) {
    progress("image index %s pushed as %s", c.out.digest, c.dstname);
    progress_summary();
    printf("%s\n", c.out.digest);
    st = fflush(stdout) == 0 ? 0 : cli_fail("stdout: %s", strerror(errno));
  } else if (st == -1) {
    st = cli_fail_lib(NULL);
  }
out:
  convert_free(&c);
  return st;
}
