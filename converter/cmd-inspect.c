/* soci-nbd: the "inspect" command — resolve an image in a registry (or an
 * OCI layout) and print its manifest and layers.  Thin: all protocol work
 * is in lib/registry. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "image/image.h"
#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "regopts.h"

/* The inspect help text (it documents the output lines too). */
static void
inspect_usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd inspect IMAGE [OPTIONS]\n"
"\n"
"Resolve IMAGE (registry/repo:tag, registry/repo@sha256:..., or\n"
"oci-layout:DIR[:TAG]) and print, one per line:\n"
"  index DIGEST MEDIA-TYPE              when IMAGE is an index / list\n"
"  platform OS/ARCH[/VARIANT]           the entry chosen from the index\n"
"  manifest DIGEST MEDIA-TYPE SIZE      the image manifest\n"
"  config DIGEST MEDIA-TYPE SIZE\n"
"  layer DIGEST MEDIA-TYPE SIZE         one line per layer, bottom first\n"
"With --serving, then one line per layer, as nbdkit soci would serve it:\n"
"  served DIGEST HOW                    lazy-dense (a gzip layer, the dense\n"
"                                       index), lazy-seekable-zstd (a zstd\n"
"                                       layer of several frames, the dense\n"
"                                       index), lazy-estargz (its TOC),\n"
"                                       lazy-zstd-chunked (its manifest),\n"
"                                       lazy-soci (a SOCI ztoc) or whole\n"
"                                       (downloaded whole: no index)\n"
"\n"
"  -p, --platform P         os/arch[/variant] to select from an index\n"
"                           (default: this host's)\n"
REGOPTS_HELP
"      --raw                print the image manifest's JSON as fetched\n"
"      --serving            also say how each layer is served (fetches the\n"
"                           image's indexes, as nbdkit soci does at start,\n"
"                           but no layer)\n"
"  -h, --help               show this help\n");
}

/* "os/arch[/variant]", malloc'd; NULL on OOM (no message set). */
static char *
platform_string(const struct sn_platform *p)
{
  char *s;

  if (asprintf(&s, "%s/%s%s%s", p->os ? p->os : "?",
               p->architecture ? p->architecture : "?",
               p->variant ? "/" : "", p->variant ? p->variant : "") == -1)
    return NULL;
  return s;
}

/* One "WHAT DIGEST MEDIA-TYPE SIZE" output line. */
static void
print_descriptor(const char *what, const struct sn_descriptor *d)
{
  printf("%s %s %s %" PRId64 "\n", what, d->digest,
         d->media_type ? d->media_type : "-", d->size);
}

/* Print the resolved image: m's JSON as fetched with raw, else the lines
 * of inspect_usage (index and platform only when resolved through one).
 * 0, or -1 after reporting the failure. */
static int
print_resolved(const struct sn_manifest *m, const struct sn_manifest *index,
               bool raw)
{
  size_t i;

  if (raw) {
    if (fwrite(m->raw, 1, m->raw_len, stdout) != m->raw_len) {
      cli_fail("stdout: %s", strerror(errno));
      return -1;
    }
  } else {
    if (index) {
      printf("index %s %s\n", index->digest,
             index->media_type ? index->media_type : "-");
      for (i = 0; i < index->nmanifests; i++) {
        const struct sn_descriptor *d = &index->manifests[i];
        char *ps;

        if (d->platform == NULL || strcmp(d->digest, m->digest) != 0)
          continue;
        ps = platform_string(d->platform);
        if (ps == NULL) {
          cli_fail("out of memory");
          return -1;
        }
        printf("platform %s\n", ps);
        free(ps);
        break;
      }
    }
    printf("manifest %s %s %zu\n", m->digest,
           m->media_type ? m->media_type : "-", m->raw_len);
    print_descriptor("config", &m->config);
    for (i = 0; i < m->nlayers; i++)
      print_descriptor("layer", &m->layers[i]);
  }
  return 0;
}

/* The "served" lines: IMAGE opened as the plugin opens it (the same
 * choice of index for each layer), without downloading any layer.  0, or
 * -1 after reporting the failure. */
static int
print_served(const char *image, const struct regopts *ro,
             const char *platform)
{
  struct sn_image_opts o = {
    .reg = ro->ro, .platform = platform, .allow_v1 = ro->soci_v1,
    .plan_only = true,
  };
  struct sn_image *img = sn_image_open(image, &o);
  size_t i;

  if (img == NULL) {
    cli_fail_lib(NULL);
    return -1;
  }
  for (i = 0; i < sn_image_nlayers(img); i++)
    printf("served %s %s\n", sn_image_layer_digest(img, i),
           sn_image_layer_served(img, i));
  sn_image_free(img);
  return 0;
}

/* Resolve IMAGE (through the index for the platform), then print the
 * lines of inspect_usage, or the manifest bytes with --raw.  Returns the
 * exit status. */
int
cmd_inspect(int argc, char **argv)
{
  enum { OPT_RAW = 256, OPT_SERVING };
  static const struct option opts[] = {
    { "platform", required_argument, NULL, 'p' },
    { "raw", no_argument, NULL, OPT_RAW },
    { "serving", no_argument, NULL, OPT_SERVING },
    { "help", no_argument, NULL, 'h' },
    REGOPTS_LONG_OPTIONS,
    { NULL, 0, NULL, 0 },
  };
  struct regopts ro;
  const char *platform = NULL;
  bool raw = false, serving = false;
  struct sn_platform want = { 0 }, *wantp = NULL;
  struct sn_ref ref;
  struct sn_registry *reg = NULL;
  struct sn_manifest *m = NULL, *index = NULL;
  int c, r, st = 1;

  regopts_init(&ro);
  optind = 1;
  while ((c = getopt_long(argc, argv, "p:u:a:vh", opts, NULL)) != -1) {
    switch (c) {
    case 'p': platform = optarg; break;
    case OPT_RAW: raw = true; break;
    case OPT_SERVING: serving = true; break;
    case 'h': inspect_usage(stdout); return 0;
    default:
      r = regopts_handle(&ro, c, optarg, "inspect");
      if (r == 0)
        return cli_usage_error("inspect", NULL);
      if (r != 1)
        return r;
    }
  }
  if (argc - optind != 1)
    return cli_usage_error("inspect", "expected one IMAGE argument");
  if (platform) {
    if (sn_platform_parse(platform, &want) == -1)
      return cli_usage_error("inspect", "invalid platform '%s': %s", platform,
                             sn_error());
    wantp = &want;
  }
  if (sn_ref_parse(argv[optind], &ref) == -1) {
    sn_platform_clear(&want);
    return cli_usage_error("inspect", "invalid image reference '%s': %s",
                           argv[optind], sn_error());
  }
  if ((r = regopts_finish(&ro, "inspect")) != 0) {
    st = r;
    goto out;
  }

  reg = sn_registry_open(&ref, &ro.ro);
  if (reg == NULL) {
    cli_fail_lib(NULL);
    goto out;
  }
  m = sn_registry_resolve(reg, ref.digest ? ref.digest : ref.tag, wantp,
                          &index);
  if (m == NULL) {
    cli_fail_lib(NULL);
    goto out;
  }

  if (print_resolved(m, index, raw) == -1)
    goto out;
  if (serving && !raw && print_served(argv[optind], &ro, platform) == -1)
    goto out;
  if (fflush(stdout) == EOF || ferror(stdout)) {
    cli_fail("stdout: %s", strerror(errno));
    goto out;
  }
  st = 0;

out:
  sn_manifest_free(m);
  sn_manifest_free(index);
  sn_registry_close(reg);
  regopts_clear(&ro);
  sn_ref_clear(&ref);
  sn_platform_clear(&want);
  return st;
}
