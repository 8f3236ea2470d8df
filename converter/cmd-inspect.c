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
#include "manifest.h"
#include "ref.h"
#include "registry.h"

#define MAX_LIST 32 /* --plain-http / --mirror values */

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
"\n"
"  -p, --platform P         os/arch[/variant] to select from an index\n"
"                           (default: this host's)\n"
"  -u, --username U         user name for the registry\n"
"      --password-stdin     read the password from the first line of stdin\n"
"  -a, --auth-file F        docker config.json with credentials (default:\n"
"                           $DOCKER_CONFIG/config.json, ~/.docker/config.json)\n"
"      --cacert F           trust the CA certificates in F for TLS\n"
"      --insecure           do not verify TLS certificates\n"
"      --plain-http HOST    talk plain HTTP to HOST[:PORT] (repeatable;\n"
"                           loopback hosts: HTTPS if offered, else plain)\n"
"      --mirror URL         try this mirror (http[s]://host[:port]) before\n"
"                           the registry (repeatable, in order)\n"
"      --raw                print the image manifest's JSON as fetched\n"
"  -v, --verbose            log requests to stderr (no secrets)\n"
"  -h, --help               show this help\n");
}

static void
debug_log(void *opaque, const char *msg)
{
  (void) opaque;
  fprintf(stderr, "soci-nbd: %s\n", msg);
}

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

/* The password from the first line of stdin, without its newline. */
static char *
read_password(void)
{
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, stdin);

  if (n == -1) {
    free(line);
    return NULL;
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  return line;
}

static void
print_descriptor(const char *what, const struct sn_descriptor *d)
{
  printf("%s %s %s %" PRId64 "\n", what, d->digest,
         d->media_type ? d->media_type : "-", d->size);
}

int
cmd_inspect(int argc, char **argv)
{
  enum { OPT_PASSWORD_STDIN = 256, OPT_CACERT, OPT_INSECURE, OPT_PLAIN_HTTP,
         OPT_MIRROR, OPT_RAW };
  static const struct option opts[] = {
    { "platform", required_argument, NULL, 'p' },
    { "username", required_argument, NULL, 'u' },
    { "password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN },
    { "auth-file", required_argument, NULL, 'a' },
    { "cacert", required_argument, NULL, OPT_CACERT },
    { "insecure", no_argument, NULL, OPT_INSECURE },
    { "plain-http", required_argument, NULL, OPT_PLAIN_HTTP },
    { "mirror", required_argument, NULL, OPT_MIRROR },
    { "raw", no_argument, NULL, OPT_RAW },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct sn_registry_opts ro = { 0 };
  const char *plain[MAX_LIST + 1] = { NULL }, *mirrors[MAX_LIST + 1] = { NULL };
  size_t nplain = 0, nmirrors = 0;
  const char *platform = NULL;
  bool password_stdin = false, raw = false;
  struct sn_platform want = { 0 }, *wantp = NULL;
  struct sn_ref ref;
  struct sn_registry *reg = NULL;
  struct sn_manifest *m = NULL, *index = NULL;
  char *password = NULL;
  int c, st = 1;
  size_t i;

  optind = 1;
  while ((c = getopt_long(argc, argv, "p:u:a:vh", opts, NULL)) != -1) {
    switch (c) {
    case 'p': platform = optarg; break;
    case 'u': ro.username = optarg; break;
    case OPT_PASSWORD_STDIN: password_stdin = true; break;
    case 'a': ro.auth_file = optarg; break;
    case OPT_CACERT: ro.cacert = optarg; break;
    case OPT_INSECURE: ro.insecure = true; break;
    case OPT_PLAIN_HTTP:
      if (nplain == MAX_LIST)
        return cli_usage_error("inspect", "too many --plain-http hosts");
      plain[nplain++] = optarg;
      break;
    case OPT_MIRROR:
      if (nmirrors == MAX_LIST)
        return cli_usage_error("inspect", "too many --mirror URLs");
      mirrors[nmirrors++] = optarg;
      break;
    case OPT_RAW: raw = true; break;
    case 'v': ro.debug = debug_log; break;
    case 'h': inspect_usage(stdout); return 0;
    default: return cli_usage_error("inspect", NULL);
    }
  }
  if (argc - optind != 1)
    return cli_usage_error("inspect", "expected one IMAGE argument");
  if (password_stdin && ro.username == NULL)
    return cli_usage_error("inspect", "--password-stdin needs --username");
  if (ro.username && !password_stdin)
    return cli_usage_error("inspect", "--username needs --password-stdin");
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
  if (password_stdin) {
    password = read_password();
    if (password == NULL) {
      cli_fail("no password on standard input");
      goto out;
    }
    ro.password = password;
  }
  if (nplain)
    ro.plain_http_hosts = plain;
  if (nmirrors)
    ro.mirrors = mirrors;

  reg = sn_registry_open(&ref, &ro);
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

  if (raw) {
    if (fwrite(m->raw, 1, m->raw_len, stdout) != m->raw_len) {
      cli_fail("stdout: %s", strerror(errno));
      goto out;
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
          goto out;
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
  if (fflush(stdout) == EOF || ferror(stdout)) {
    cli_fail("stdout: %s", strerror(errno));
    goto out;
  }
  st = 0;

out:
  sn_manifest_free(m);
  sn_manifest_free(index);
  sn_registry_close(reg);
  if (password) {
    explicit_bzero(password, strlen(password));
    free(password);
  }
  sn_ref_clear(&ref);
  sn_platform_clear(&want);
  return st;
}
