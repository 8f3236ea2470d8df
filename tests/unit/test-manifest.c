/* soci-nbd tests: manifests and indexes (lib/registry/manifest.c) — the SOCI
 * vectors, each document kind written inline, descriptor validation,
 * hostile JSON, platform parsing/matching/selection, layer kinds. */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "util/digest.h"
#include "util/err.h"
#include "registry/manifest.h"
#include "tap.h"

#ifndef DATADIR
#define DATADIR "tests/data"
#endif

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"
#define D5 "sha256:5555555555555555555555555555555555555555555555555555555555555555"
#define D6 "sha256:6666666666666666666666666666666666666666666666666666666666666666"
#define D7 "sha256:7777777777777777777777777777777777777777777777777777777777777777"
#define D8 "sha256:8888888888888888888888888888888888888888888888888888888888888888"

#define IHDR_ "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\","
#define OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define SOCI_V2 "application/vnd.amazon.soci.index.v2+json"

static bool
streq(const char *a, const char *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

static struct sn_manifest *
parse_str(const char *s, const char *ct)
{
  return sn_manifest_parse((const uint8_t *) s, strlen(s), ct);
}

/* "sha256:<hex>" of a file from tests/data/SHA256SUMS. */
static bool
sum_of(const char *name, char *out)
{
  size_t len, i = 0;
  unsigned char *buf = slurp(DATADIR "/SHA256SUMS", &len);
  bool found = false;

  while (i < len && !found) {
    size_t j = i, nl;

    while (j < len && buf[j] != '\n')
      j++;
    nl = j;
    /* "<64 hex>  <name>" */
    if (nl - i == 66 + strlen(name)
        && memcmp(buf + i + 66, name, strlen(name)) == 0) {
      snprintf(out, SN_DIGEST_STRLEN + 1, "sha256:%.64s", (char *) buf + i);
      found = true;
    }
    i = nl + 1;
  }
  free(buf);
  return found;
}

static struct sn_manifest *
parse_vector(const char *name, char *want_digest)
{
  char path[512];
  unsigned char *buf;
  size_t len;
  struct sn_manifest *m;

  snprintf(path, sizeof path, "%s/%s", DATADIR, name);
  buf = slurp(path, &len);
  m = sn_manifest_parse(buf, len, NULL);
  if (!ok(m != NULL, "parse %s", name))
    diag("error: %s", sn_error());
  if (m != NULL) {
    ok(sum_of(name, want_digest) && streq(m->digest, want_digest),
       "  %s digest %s matches SHA256SUMS", name, m->digest);
    ok(m->raw_len == len && memcmp(m->raw, buf, len) == 0 && m->raw != buf,
       "  raw bytes copied");
  }
  free(buf);
  return m;
}

static void
test_vectors(void)
{
  char dm[80], dsoci[80], didx[80];
  struct sn_manifest *m, *ms, *ix;
  struct sn_platform want;
  const struct sn_descriptor *sel;

  m = parse_vector("image-manifest.json", dm);
  if (m != NULL) {
    ok(streq(m->media_type, SN_MT_OCI_MANIFEST) && !m->is_index,
       "  image manifest media type");
    ok(streq(m->config.media_type, OCI_CONFIG)
       && streq(m->config.digest, "sha256:bc985fd967583c8defa0c16b12dae181a4ecc1f1b5b3b26ed74248d11466a0fc")
       && m->config.size == 225 && m->config.platform == NULL,
       "  config descriptor");
    ok(m->nlayers == 2 && m->layers[0].size == 307 && m->layers[1].size == 573
       && streq(m->layers[0].digest, "sha256:de7173e022eda6dd50fae431dedbba7982c408691d8e982c89c1ddb5bf881f03")
       && streq(m->layers[1].digest, "sha256:0d4b4a975a663a4b4afae4bebe918e10582b982a9272cefd2a8864780d2a75a5"),
       "  two layers (A.tar.gz, B.tar.gz)");
    ok(sn_layer_kind(m->layers[0].media_type) == SN_LAYER_KIND_GZIP
       && sn_layer_kind(m->layers[1].media_type) == SN_LAYER_KIND_GZIP,
       "  layers are gzip");
    ok(m->nannotations == 0 && m->annotations == NULL && m->subject == NULL
       && m->artifact_type == NULL && m->nmanifests == 0,
       "  no annotations, subject, artifactType, manifests");
    ok(sn_annotation_get(m->annotations, m->nannotations,
                         "com.amazon.soci.index-digest") == NULL,
       "  no SOCI index annotation");
    sel = sn_manifest_select(m, &(struct sn_platform) { (char *) "linux",
                                                         (char *) "amd64",
                                                         NULL });
    ok(sel == NULL && strstr(sn_error(), "not an index") != NULL,
       "  selecting in a manifest fails: %s", sn_error());
  }

  ms = parse_vector("image-manifest-soci.json", dsoci);
  if (ms != NULL) {
    ok(ms->nannotations == 1
       && streq(sn_annotation_get(ms->annotations, ms->nannotations,
                                  "com.amazon.soci.index-digest"),
                "sha256:17118e0d403f4afc8834c6d8852bff5c2723ff462bff463cb82a58840b84fd65"),
       "  com.amazon.soci.index-digest annotation");
    ok(sn_annotation_get(ms->annotations, ms->nannotations, "com.amazon") == NULL
       && sn_annotation_get(ms->annotations, ms->nannotations, "") == NULL,
       "  other keys absent");
    ok(m != NULL && ms->nlayers == m->nlayers
       && streq(ms->config.digest, m->config.digest),
       "  same config and layers as the plain manifest");
  }

  ix = parse_vector("oci-index-soci.json", didx);
  if (ix != NULL) {
    ok(ix->is_index && streq(ix->media_type, SN_MT_OCI_INDEX)
       && ix->nmanifests == 2 && ix->nlayers == 0,
       "  OCI index with two entries");
    ok(streq(ix->manifests[0].digest, dsoci) && ix->manifests[0].size == 676
       && ix->manifests[0].artifact_type == NULL
       && ix->manifests[0].platform != NULL
       && streq(ix->manifests[0].platform->os, "linux")
       && streq(ix->manifests[0].platform->architecture, "amd64")
       && ix->manifests[0].platform->variant == NULL,
       "  entry 0: the annotated image manifest, linux/amd64");
    ok(streq(ix->manifests[1].artifact_type, SOCI_V2)
       && streq(ix->manifests[1].media_type, SN_MT_OCI_MANIFEST)
       && streq(sn_annotation_get(ix->manifests[1].annotations,
                                  ix->manifests[1].nannotations,
                                  "com.amazon.soci.image-manifest-digest"),
                dsoci),
       "  entry 1: the SOCI index v2, pointing back at the image");
    ok(sn_platform_parse("linux/amd64", &want) == 0, "parse linux/amd64");
    sel = sn_manifest_select(ix, &want);
    ok(sel == &ix->manifests[0] && streq(sel->digest, dsoci),
       "  select linux/amd64 → the image manifest, not the SOCI index");
    sn_platform_clear(&want);
    ok(sn_platform_parse("linux/arm64", &want) == 0, "parse linux/arm64");
    sel = sn_manifest_select(ix, &want);
    ok(sel == NULL
       && streq(sn_error(),
                "no manifest for linux/arm64 in index; available: linux/amd64"),
       "  select linux/arm64 fails: %s", sn_error());
    sn_platform_clear(&want);
  }
  sn_manifest_free(m);
  sn_manifest_free(ms);
  sn_manifest_free(ix);
}

/* The SOCI entry listed first must still be skipped. */
static void
test_soci_first(void)
{
  static const char doc[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\","
    "\"manifests\":["
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\","
    "\"size\":1093,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},"
    "\"artifactType\":\"" SOCI_V2 "\"},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
    "\"size\":676,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}"
    "]}";
  struct sn_manifest *m = parse_str(doc, NULL);
  struct sn_platform p = { (char *) "linux", (char *) "amd64", NULL };
  const struct sn_descriptor *d;

  if (!ok(m != NULL, "index with the SOCI entry first")) {
    diag("%s", sn_error());
    return;
  }
  d = sn_manifest_select(m, &p);
  ok(d != NULL && streq(d->digest, D2), "  the image entry is selected");
  sn_manifest_free(m);
}

static void
test_docker_schema2(void)
{
  static const char doc[] =
    "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"" SN_MT_DOCKER_MANIFEST "\",\n"
    "  \"config\": {\"mediaType\": \"application/vnd.docker.container.image.v1+json\","
    " \"size\": 7023, \"digest\": \"" D1 "\"},\n"
    "  \"layers\": [\n"
    "    {\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\","
    " \"size\": 32654, \"digest\": \"" D2 "\"},\n"
    "    {\"mediaType\": \"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\","
    " \"size\": 16724, \"digest\": \"" D3 "\", \"urls\": [\"https://example.com/l\"]},\n"
    "    {\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar\","
    " \"size\": 0, \"digest\": \"" D4 "\"}\n"
    "  ]\n}\n";
  struct sn_manifest *m = parse_str(doc, "application/json");
  uint8_t h[SN_SHA256_LEN];
  char hex[SN_DIGEST_STRLEN + 1];

  if (!ok(m != NULL, "Docker schema2 manifest")) {
    diag("%s", sn_error());
    return;
  }
  sn_sha256(doc, strlen(doc), h);
  sn_digest_format(h, hex);
  ok(streq(m->digest, hex), "  digest is sha256 of the raw bytes");
  ok(streq(m->media_type, SN_MT_DOCKER_MANIFEST) && !m->is_index,
     "  media type from the document");
  ok(m->config.size == 7023 && streq(m->config.digest, D1)
     && streq(m->config.media_type,
              "application/vnd.docker.container.image.v1+json"),
     "  config");
  ok(m->nlayers == 3 && m->layers[0].size == 32654 && m->layers[2].size == 0,
     "  three layers, sizes");
  ok(sn_layer_kind(m->layers[0].media_type) == SN_LAYER_KIND_GZIP
     && sn_layer_kind(m->layers[1].media_type) == SN_LAYER_KIND_GZIP
     && sn_layer_kind(m->layers[2].media_type) == SN_LAYER_KIND_TAR,
     "  layer kinds gzip, gzip (foreign), tar");
  sn_manifest_free(m);
}

static const char docker_list[] =
  "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_DOCKER_LIST "\",\"manifests\":["
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7143,\"digest\":\"" D1 "\","
  "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" D2 "\","
  "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}},"
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" D3 "\","
  "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}},"
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" D4 "\","
  "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\","
  "\"features\":[\"sse4\"]}},"
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" D5 "\","
  "\"platform\":{\"architecture\":\"386\",\"os\":\"linux\"}},"
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" D6 "\","
  "\"platform\":{\"architecture\":\"ppc64le\",\"os\":\"linux\"}},"
  "{\"mediaType\":\"" SN_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" D7 "\","
  "\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\","
  "\"os.version\":\"10.0.17763.1\"}}"
  "]}";

static void
test_docker_list(void)
{
  static const struct {
    const char *want, *digest;
  } t[] = {
    { "linux/amd64", D1 },        { "linux/x86_64", D1 },
    { "linux/arm/v7", D3 },       { "linux/arm", D3 },
    { "linux/armhf", D3 },        { "linux/arm/v6", D2 },
    { "linux/arm/v8", D3 },       { "linux/arm64", D4 },
    { "linux/arm64/v8", D4 },     { "linux/aarch64", D4 },
    { "linux/386", D5 },          { "linux/i386", D5 },
    { "linux/ppc64le", D6 },      { "windows/amd64", D7 },
    { "LINUX/AMD64", D1 },
  };
  struct sn_manifest *m = parse_str(docker_list, NULL);
  struct sn_platform p;
  const struct sn_descriptor *d;
  size_t i;

  if (!ok(m != NULL, "Docker manifest list")) {
    diag("%s", sn_error());
    return;
  }
  ok(m->is_index && streq(m->media_type, SN_MT_DOCKER_LIST)
     && m->nmanifests == 7, "  seven entries");
  ok(streq(m->manifests[1].platform->variant, "v6")
     && m->manifests[0].platform->variant == NULL,
     "  variants kept (NULL when absent)");
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (sn_platform_parse(t[i].want, &p) == -1) {
      ok(0, "parse %s: %s", t[i].want, sn_error());
      continue;
    }
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, t[i].digest), "  select %s → %.15s",
       t[i].want, d ? d->digest : sn_error());
    sn_platform_clear(&p);
  }
  static const char *const none[] = {
    "linux/s390x", "linux/arm/v5", "linux/arm64/v9", "darwin/amd64",
    "linux/riscv64",
  };
  for (i = 0; i < sizeof none / sizeof none[0]; i++) {
    char want[300];

    sn_platform_parse(none[i], &p);
    d = sn_manifest_select(m, &p);
    snprintf(want, sizeof want,
             "no manifest for %s in index; available: linux/amd64, "
             "linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/386, "
             "linux/ppc64le, windows/amd64", none[i]);
    ok(d == NULL && streq(sn_error(), want), "  no match for %s: %s",
       none[i], sn_error());
    sn_platform_clear(&p);
  }
  sn_manifest_free(m);
}

/* buildx attestations, nested indexes, artifacts, entries without a
 * platform, amd64 variants. */
static void
test_select_rules(void)
{
  static const char attest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":1,"
    "\"annotations\":{\"vnd.docker.reference.digest\":\"" D1 "\","
    "\"vnd.docker.reference.type\":\"attestation-manifest\"},"
    "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D4 "\",\"size\":1,"
    "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"},"
    "\"platform\":{\"architecture\":\"s390x\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"digest\":\"" D5 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"s390x\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D6 "\",\"size\":1,"
    "\"artifactType\":\"" SOCI_V2 "\","
    "\"platform\":{\"architecture\":\"s390x\",\"os\":\"linux\"}}"
    "]}";
  static const char variants[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":\"v3\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v9\"}},"
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D4 "\",\"size\":1}"
    "]}";
  static const char only_v3[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":\"v3\"}}"
    "]}";
  static const char empty_index[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\",\"manifests\":[]}";
  struct sn_manifest *m;
  struct sn_platform p;
  const struct sn_descriptor *d;

  m = parse_str(attest, NULL);
  if (ok(m != NULL, "index with attestations, nested index, artifact")) {
    sn_platform_parse("linux/s390x", &p);
    d = sn_manifest_select(m, &p);
    ok(d == NULL
       && streq(sn_error(), "no manifest for linux/s390x in index; "
                "available: linux/amd64, linux/arm64/v8"),
       "  skipped entries neither match nor are listed: %s", sn_error());
    sn_platform_clear(&p);
    sn_platform_parse("linux/arm64", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D2), "  linux/arm64 → arm64/v8 entry");
    sn_platform_clear(&p);
    ok(streq(sn_annotation_get(m->manifests[2].annotations,
                               m->manifests[2].nannotations,
                               "vnd.docker.reference.type"),
             "attestation-manifest")
       && streq(m->manifests[2].annotations[0].key,
                "vnd.docker.reference.digest"),
       "  entry annotations sorted and found");
    sn_manifest_free(m);
  }
  else
    diag("%s", sn_error());

  m = parse_str(variants, NULL);
  if (ok(m != NULL, "index with amd64/v3, amd64, arm64/v9, no-platform")) {
    sn_platform_parse("linux/amd64", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D2),
       "  linux/amd64 prefers the exact entry over an earlier amd64/v3");
    sn_platform_clear(&p);
    sn_platform_parse("linux/amd64/v3", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D1), "  linux/amd64/v3 → v3");
    sn_platform_clear(&p);
    sn_platform_parse("linux/amd64/v2", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D4),
       "  linux/amd64/v2 → only the entry without a platform");
    sn_platform_clear(&p);
    sn_platform_parse("linux/arm64", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D3),
       "  linux/arm64 (no variant) accepts arm64/v9");
    sn_platform_clear(&p);
    sn_platform_parse("linux/arm64/v8", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D4),
       "  linux/arm64/v8 does not take v9 (falls to the no-platform entry)");
    sn_platform_clear(&p);
    sn_manifest_free(m);
  }
  else
    diag("%s", sn_error());

  m = parse_str(only_v3, NULL);
  if (ok(m != NULL, "index with only amd64/v3")) {
    sn_platform_parse("linux/amd64", &p);
    d = sn_manifest_select(m, &p);
    ok(d != NULL && streq(d->digest, D1),
       "  linux/amd64 (no variant) accepts any amd64 variant");
    sn_platform_clear(&p);
    sn_manifest_free(m);
  }

  m = parse_str(empty_index, NULL);
  if (ok(m != NULL && m->nmanifests == 0 && m->manifests == NULL,
         "empty index")) {
    sn_platform_parse("linux/amd64", &p);
    ok(sn_manifest_select(m, &p) == NULL
       && streq(sn_error(), "no manifest for linux/amd64 in index; "
                "available: none"), "  %s", sn_error());
    ok(sn_manifest_select(m, NULL) == NULL, "  NULL platform refused");
    sn_platform_clear(&p);
    sn_manifest_free(m);
  }
  ok(sn_manifest_select(NULL, NULL) == NULL, "select in NULL refused");

  /* A big index: duplicates listed once, the list capped with "...",
   * control characters in the message replaced. */
  {
    size_t n = 15000, cap = n * 300 + 1000, off, i;
    char *doc = malloc(cap);

    if (doc == NULL)
      abort();
    off = (size_t) snprintf(doc, cap, IHDR_ "\"manifests\":[");
    for (i = 0; i < n; i++)
      off += (size_t) snprintf(doc + off, cap - off,
                               "%s{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\","
                               "\"digest\":\"" D2 "\",\"size\":1,"
                               "\"platform\":{\"os\":\"linux\","
                               "\"architecture\":\"%s%zu\"}}",
                               i ? "," : "", i < 3 ? "\\nx" : "arch",
                               i < 10 ? (size_t) 0 : i);
    snprintf(doc + off, cap - off, "]}");
    m = parse_str(doc, NULL);
    if (ok(m != NULL && m->nmanifests == n, "index with %zu entries", n)) {
      sn_platform_parse("linux/s390x", &p);
      static const char head[] = "no manifest for linux/s390x in index; "
        "available: linux/?x0, linux/arch0, linux/arch10, linux/arch11,";

      d = sn_manifest_select(m, &p);
      ok(d == NULL && strncmp(sn_error(), head, strlen(head)) == 0
         && strstr(sn_error(), "linux/arch0, linux/arch0") == NULL
         && strcmp(sn_error() + strlen(sn_error()) - 5, ", ...") == 0
         && strlen(sn_error()) < 800,
         "  no match: %.110s...", sn_error());
      sn_platform_clear(&p);
    }
    else
      diag("%s", sn_error());
    sn_manifest_free(m);
    free(doc);
  }
}

static void
test_oci_artifacts_and_annotations(void)
{
  static const char doc[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_MANIFEST "\","
    "\"artifactType\":\"application/vnd.example+type\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","
    "\"digest\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\","
    "\"size\":2,\"data\":\"e30=\"},"
    "\"layers\":[{\"mediaType\":\"application/octet-stream\",\"digest\":\"" D2 "\","
    "\"size\":10,\"annotations\":{\"z\":\"last\",\"a\":\"first\",\"m\":\"\"}}],"
    "\"subject\":{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\","
    "\"size\":676},"
    "\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\","
    "\"com.example.b\":\"2\",\"com.example.a\":\"1\",\"com.example.c\":\"3\","
    "\"\":\"empty key\"}}";
  struct sn_manifest *m = parse_str(doc, SN_MT_OCI_MANIFEST);
  size_t i;
  bool sorted = true;

  if (!ok(m != NULL, "OCI 1.1 artifact manifest with subject")) {
    diag("%s", sn_error());
    return;
  }
  ok(streq(m->artifact_type, "application/vnd.example+type"),
     "  artifactType");
  ok(m->subject != NULL && streq(m->subject->digest, D3)
     && m->subject->size == 676
     && streq(m->subject->media_type, SN_MT_OCI_MANIFEST), "  subject");
  ok(m->nlayers == 1
     && sn_layer_kind(m->layers[0].media_type) == SN_LAYER_KIND_OTHER,
     "  octet-stream layer is OTHER");
  ok(m->layers[0].nannotations == 3
     && streq(m->layers[0].annotations[0].key, "a")
     && streq(m->layers[0].annotations[1].key, "m")
     && streq(m->layers[0].annotations[1].value, "")
     && streq(m->layers[0].annotations[2].value, "last"),
     "  descriptor annotations sorted by key");
  ok(m->nannotations == 5, "  five manifest annotations");
  for (i = 1; i < m->nannotations; i++)
    if (strcmp(m->annotations[i - 1].key, m->annotations[i].key) >= 0)
      sorted = false;
  ok(sorted && streq(m->annotations[0].key, ""), "  sorted by key");
  ok(streq(sn_annotation_get(m->annotations, m->nannotations, "com.example.a"), "1")
     && streq(sn_annotation_get(m->annotations, m->nannotations, "com.example.b"), "2")
     && streq(sn_annotation_get(m->annotations, m->nannotations, "com.example.c"), "3")
     && streq(sn_annotation_get(m->annotations, m->nannotations, ""), "empty key")
     && streq(sn_annotation_get(m->annotations, m->nannotations,
                                "org.opencontainers.image.created"),
              "2024-01-01T00:00:00Z"),
     "  every annotation found");
  ok(sn_annotation_get(m->annotations, m->nannotations, "com.example") == NULL
     && sn_annotation_get(m->annotations, m->nannotations, "com.example.d") == NULL
     && sn_annotation_get(m->annotations, m->nannotations, "zzz") == NULL
     && sn_annotation_get(NULL, 0, "a") == NULL,
     "  missing keys are NULL");
  sn_manifest_free(m);
}

/* Media type from the document, the Content-Type, or the shape. */
static void
test_media_type_sources(void)
{
  static const char bare_manifest[] =
    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_CONFIG "\","
    "\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}";
  static const char bare_index[] =
    "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" SN_MT_OCI_MANIFEST
    "\",\"digest\":\"" D1 "\",\"size\":1}]}";
  static const struct {
    const char *doc, *ct, *mt;
    bool index;
  } t[] = {
    { bare_manifest, NULL, SN_MT_OCI_MANIFEST, false },
    { bare_manifest, "application/json", SN_MT_OCI_MANIFEST, false },
    { bare_manifest, "application/octet-stream", SN_MT_OCI_MANIFEST, false },
    { bare_manifest, "", SN_MT_OCI_MANIFEST, false },
    { bare_manifest, SN_MT_OCI_MANIFEST, SN_MT_OCI_MANIFEST, false },
    { bare_manifest, SN_MT_DOCKER_MANIFEST, SN_MT_DOCKER_MANIFEST, false },
    { bare_manifest,
      " Application/VND.oci.image.manifest.v1+json ; charset=utf-8",
      SN_MT_OCI_MANIFEST, false },
    { bare_index, NULL, SN_MT_OCI_INDEX, true },
    { bare_index, "application/json; charset=utf-8", SN_MT_OCI_INDEX, true },
    { bare_index, SN_MT_DOCKER_LIST, SN_MT_DOCKER_LIST, true },
    /* The document's own mediaType wins over the Content-Type. */
    { docker_list, SN_MT_OCI_INDEX, SN_MT_DOCKER_LIST, true },
  };
  struct sn_manifest *m;
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    m = parse_str(t[i].doc, t[i].ct);
    ok(m != NULL && streq(m->media_type, t[i].mt) && m->is_index == t[i].index,
       "media type %s (content type %s) → %s", t[i].index ? "index" : "manifest",
       t[i].ct ? t[i].ct : "NULL", m ? m->media_type : sn_error());
    sn_manifest_free(m);
  }
  m = parse_str(bare_manifest, "text/html");
  ok(m == NULL && strstr(sn_error(), "unsupported media type \"text/html\""),
     "no mediaType + Content-Type text/html refused: %s", sn_error());
  sn_manifest_free(m);
  m = parse_str(bare_manifest, SN_MT_OCI_INDEX);
  ok(m == NULL && strstr(sn_error(), "must not have \"config\" or \"layers\""),
     "manifest served as an index refused: %s", sn_error());
  sn_manifest_free(m);
  m = parse_str(bare_index, SN_MT_OCI_MANIFEST);
  ok(m == NULL && strstr(sn_error(), "must not have \"manifests\""),
     "index served as a manifest refused: %s", sn_error());
  sn_manifest_free(m);
}

struct bad {
  const char *doc, *ct, *msg;
};

#define CFG "\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"" D1 "\",\"size\":1}"
#define HDR "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_MANIFEST "\","
#define IHDR "{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_INDEX "\","
#define LAYER(x) HDR CFG ",\"layers\":[" x "]}"
#define ENTRY(x) IHDR "\"manifests\":[" x "]}"
#define GOODL "{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5}"

static const struct bad bads[] = {
  /* Not JSON, or not an object. */
  { "", NULL, "invalid JSON" },
  { "{", NULL, "invalid JSON" },
  { "[]", NULL, "not a JSON object" },
  { "null", NULL, "not a JSON object" },
  { "42", NULL, "not a JSON object" },
  { "\"manifest\"", NULL, "not a JSON object" },
  { "{}x", NULL, "invalid JSON" },
  { "{} {}", NULL, "invalid JSON" },
  { "{\"a\":\"\\u0000\"}", NULL, "invalid JSON" },
  { "{\"schemaVersion\":2,\"schemaVersion\":2}", NULL, "invalid JSON" },
  { "{\"a\":\"\xff\xfe\"}", NULL, "invalid JSON" },
  /* Versions and kinds. */
  { "{\"schemaVersion\":1,\"name\":\"library/x\",\"tag\":\"latest\","
    "\"fsLayers\":[],\"history\":[],\"signatures\":[]}", NULL,
    "Docker schema1 manifests are not supported" },
  { "{\"schemaVersion\":1}", "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "Docker schema1 manifests are not supported" },
  { "{\"schemaVersion\":2,\"mediaType\":"
    "\"application/vnd.docker.distribution.manifest.v1+json\"}", NULL,
    "Docker schema1 manifests are not supported" },
  { "{\"schemaVersion\":2}",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "Docker schema1 manifests are not supported" },
  { "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\"," CFG ",\"layers\":[]}", NULL,
    "schemaVersion: missing" },
  { "{\"schemaVersion\":\"2\",\"mediaType\":\"" SN_MT_OCI_MANIFEST "\"," CFG
    ",\"layers\":[]}", NULL, "schemaVersion: unsupported" },
  { "{\"schemaVersion\":3,\"mediaType\":\"" SN_MT_OCI_MANIFEST "\"," CFG
    ",\"layers\":[]}", NULL, "schemaVersion: unsupported" },
  { "{\"schemaVersion\":2.0,\"mediaType\":\"" SN_MT_OCI_MANIFEST "\"," CFG
    ",\"layers\":[]}", NULL, "schemaVersion: unsupported" },
  { "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.example+json\"}",
    NULL, "unsupported media type \"application/vnd.example+json\"" },
  { "{\"schemaVersion\":2,\"mediaType\":"
    "\"application/vnd.oci.image.config.v1+json\"," CFG ",\"layers\":[]}",
    NULL, "unsupported media type" },
  { "{\"schemaVersion\":2,\"mediaType\":7," CFG ",\"layers\":[]}", NULL,
    "mediaType: must be a string" },
  { "{\"schemaVersion\":2}", NULL, "neither an image manifest nor an index" },
  { "{\"schemaVersion\":2," CFG ",\"layers\":[],\"manifests\":[]}", NULL,
    "neither an image manifest nor an index" },
  { HDR CFG ",\"layers\":[],\"manifests\":[]}", NULL,
    "must not have \"manifests\"" },
  { IHDR "\"manifests\":[],\"layers\":[]}", NULL,
    "must not have \"config\" or \"layers\"" },
  /* Required members. */
  { HDR "\"layers\":[]}", NULL, "config: missing" },
  { HDR CFG "}", NULL, "layers: missing" },
  { IHDR "\"annotations\":{}}", NULL, "manifests: missing" },
  { HDR "\"config\":[]," "\"layers\":[]}", NULL, "config: must be an object" },
  { HDR "\"config\":null," "\"layers\":[]}", NULL, "config: must be an object" },
  { HDR CFG ",\"layers\":{}}", NULL, "layers: must be an array" },
  { HDR CFG ",\"layers\":\"x\"}", NULL, "layers: must be an array" },
  { IHDR "\"manifests\":{}}", NULL, "manifests: must be an array" },
  { LAYER("7"), NULL, "layers[0]: must be an object" },
  { LAYER(GOODL ",null"), NULL, "layers[1]: must be an object" },
  /* Descriptor fields. */
  { LAYER("{\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "layers[0]: mediaType: missing" },
  { LAYER("{\"mediaType\":\"\",\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "layers[0]: mediaType: empty" },
  { LAYER("{\"mediaType\":5,\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "layers[0]: mediaType: must be a string" },
  { LAYER("{\"mediaType\":\"tar\",\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "layers[0]: mediaType: invalid \"tar\"" },
  { LAYER("{\"mediaType\":\"a/b/c\",\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "mediaType: invalid" },
  { LAYER("{\"mediaType\":\"a/b c\",\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "mediaType: invalid" },
  { LAYER("{\"mediaType\":\"/gzip\",\"digest\":\"" D2 "\",\"size\":5}"), NULL,
    "mediaType: invalid" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"size\":5}"), NULL,
    "layers[0]: digest: missing" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"sha512:"
          "11111111111111111111111111111111111111111111111111111111111111111111"
          "111111111111111111111111111111111111111111111111111111111111\","
          "\"size\":5}"), NULL,
    "layers[0]: digest: unsupported digest algorithm \"sha512\"" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"sha256:"
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
          "\"size\":5}"), NULL, "layers[0]: digest: invalid digest" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"sha256:abc\","
          "\"size\":5}"), NULL, "layers[0]: digest: invalid digest" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"\",\"size\":5}"),
    NULL, "layers[0]: digest: empty" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":[],\"size\":5}"),
    NULL, "layers[0]: digest: must be a string" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\"}"), NULL,
    "layers[0]: size: missing" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":-1}"),
    NULL, "layers[0]: size: must be an integer >= 0" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":1.5}"),
    NULL, "size: must be an integer" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":1e3}"),
    NULL, "size: must be an integer" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":\"5\"}"),
    NULL, "size: must be an integer" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":null}"),
    NULL, "size: must be an integer" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\","
          "\"size\":99999999999999999999}"), NULL, "invalid JSON" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\","
          "\"size\":1e400}"), NULL, "invalid JSON" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\","
          "\"size\":-9223372036854775808}"), NULL, "size: must be an integer" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"annotations\":[]}"), NULL, "layers[0]: annotations: must be an object" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"annotations\":{\"k\":1}}"), NULL,
    "annotations: value of \"k\" must be a string" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"annotations\":{\"a\":\"x\",\"k\":null}}"), NULL,
    "annotations: value of \"k\" must be a string" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"urls\":\"http://x\"}"), NULL, "urls: must be an array of strings" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"urls\":[1]}"), NULL, "urls: must be an array of strings" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"artifactType\":3}"), NULL, "artifactType: must be a string" },
  { LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\",\"size\":5,"
          "\"artifactType\":\"nope\"}"), NULL, "artifactType: invalid" },
  { HDR CFG ",\"layers\":[],\"annotations\":\"x\"}", NULL,
    "manifest: annotations: must be an object" },
  { HDR CFG ",\"layers\":[],\"artifactType\":{}}", NULL,
    "manifest: artifactType: must be a string" },
  { HDR CFG ",\"layers\":[],\"subject\":{\"mediaType\":\"" SN_MT_OCI_MANIFEST
    "\",\"digest\":\"" D2 "\"}}", NULL, "manifest: subject: size: missing" },
  { HDR CFG ",\"layers\":[],\"subject\":[]}", NULL,
    "manifest: subject: must be an object" },
  /* Platforms. */
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5,\"platform\":\"linux/amd64\"}"), NULL,
    "index: manifests[0]: platform: must be an object" },
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5,\"platform\":{\"architecture\":\"amd64\"}}"), NULL,
    "index: manifests[0]: platform: os: missing" },
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5,\"platform\":{\"os\":\"linux\"}}"), NULL,
    "index: manifests[0]: platform: architecture: missing" },
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":1}}"),
    NULL, "platform: architecture: must be a string" },
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\","
          "\"variant\":7}}"), NULL, "platform: variant: must be a string" },
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5,\"platform\":{\"os\":\"\",\"architecture\":\"arm\"}}"),
    NULL, "platform: os: empty" },
  { ENTRY("{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\","
          "\"size\":5}," "{\"mediaType\":\"" SN_MT_OCI_MANIFEST "\","
          "\"digest\":\"md5:0123456789abcdef0123456789abcdef\",\"size\":5}"),
    NULL, "index: manifests[1]: digest: unsupported digest algorithm \"md5\"" },
};

static void
test_bad_documents(void)
{
  struct sn_manifest *m;
  size_t i;

  for (i = 0; i < sizeof bads / sizeof bads[0]; i++) {
    char shown[51];
    size_t k;

    /* The description shows the document's start, printable only. */
    for (k = 0; k < sizeof shown - 1 && bads[i].doc[k]; k++)
      shown[k] = bads[i].doc[k] >= 0x20 && bads[i].doc[k] < 0x7f
        ? bads[i].doc[k] : '?';
    shown[k] = '\0';
    m = parse_str(bads[i].doc, bads[i].ct);
    ok(m == NULL && strstr(sn_error(), bads[i].msg) != NULL,
       "reject %s…: %s", shown, sn_error());
    sn_manifest_free(m);
  }
}

static void
test_hostile(void)
{
  unsigned char *buf;
  size_t len, i, failures = 0;
  struct sn_manifest *m;
  char *deep, *big;
  const size_t depth = 100000, bigsz = SN_MAX_DOCUMENT + 1;

  /* Every proper prefix of a real manifest and index is refused. */
  buf = slurp(DATADIR "/oci-index-soci.json", &len);
  for (i = 0; i < len; i++) {
    m = sn_manifest_parse(buf, i, NULL);
    if (m != NULL || strstr(sn_error(), "invalid JSON") == NULL)
      failures++;
    sn_manifest_free(m);
  }
  ok(failures == 0, "all %zu truncations of oci-index-soci.json refused", len);
  /* Every single-byte corruption either parses or fails cleanly. */
  for (i = 0; i < len; i++) {
    unsigned char save = buf[i];

    buf[i] = (unsigned char) (save ^ 0x20);
    m = sn_manifest_parse(buf, len, NULL);
    if (m != NULL && (m->nmanifests != 2 || m->raw_len != len))
      failures++;
    sn_manifest_free(m);
    buf[i] = save;
  }
  ok(failures == 0, "all %zu case-flips of oci-index-soci.json handled", len);
  free(buf);

  buf = slurp(DATADIR "/image-manifest.json", &len);
  for (i = 0; i < len; i++) {
    m = sn_manifest_parse(buf, i, NULL);
    if (m != NULL)
      failures++;
    sn_manifest_free(m);
  }
  ok(failures == 0, "all %zu truncations of image-manifest.json refused", len);
  free(buf);

  /* Deep nesting: refused by the parser's depth limit, no stack overflow. */
  deep = malloc(2 * depth + 32);
  if (deep == NULL)
    abort();
  strcpy(deep, "{\"schemaVersion\":2,\"x\":");
  len = strlen(deep);
  memset(deep + len, '[', depth);
  memset(deep + len + depth, ']', depth);
  strcpy(deep + len + 2 * depth, "}");
  m = parse_str(deep, NULL);
  ok(m == NULL && strstr(sn_error(), "invalid JSON") != NULL,
     "100000-deep nesting refused: %.60s", sn_error());
  sn_manifest_free(m);
  free(deep);

  /* Over the size cap. */
  big = malloc(bigsz);
  if (big == NULL)
    abort();
  memset(big, ' ', bigsz);
  m = sn_manifest_parse((uint8_t *) big, bigsz, NULL);
  ok(m == NULL && strstr(sn_error(), "too large") != NULL,
     "a document over SN_MAX_DOCUMENT refused: %s", sn_error());
  sn_manifest_free(m);
  free(big);

  m = sn_manifest_parse(NULL, 5, NULL);
  ok(m == NULL, "NULL data refused: %s", sn_error());
  m = sn_manifest_parse(NULL, 0, NULL);
  ok(m == NULL && strstr(sn_error(), "invalid JSON") != NULL,
     "empty data refused: %s", sn_error());
  sn_manifest_free(NULL);
  ok(1, "sn_manifest_free(NULL) is harmless");

  /* Many layers, with long strings: fine. */
  {
    size_t n = 2000, cap = n * 200 + 1000, off;
    char *doc = malloc(cap);

    if (doc == NULL)
      abort();
    off = (size_t) snprintf(doc, cap, HDR CFG ",\"layers\":[");
    for (i = 0; i < n; i++)
      off += (size_t) snprintf(doc + off, cap - off,
                               "%s{\"mediaType\":\"" OCI_GZIP "\","
                               "\"digest\":\"" D2 "\",\"size\":%zu}",
                               i ? "," : "", i);
    snprintf(doc + off, cap - off, "]}");
    m = parse_str(doc, NULL);
    ok(m != NULL && m->nlayers == n && m->layers[n - 1].size == (int64_t) n - 1,
       "%zu layers parsed", n);
    sn_manifest_free(m);
    free(doc);
  }
  /* Largest size accepted. */
  m = parse_str(LAYER("{\"mediaType\":\"" OCI_GZIP "\",\"digest\":\"" D2 "\","
                      "\"size\":9223372036854775807}"), NULL);
  ok(m != NULL && m->layers[0].size == INT64_MAX, "size INT64_MAX accepted");
  sn_manifest_free(m);
  /* Unknown members are ignored. */
  m = parse_str("{\"schemaVersion\":2,\"mediaType\":\"" SN_MT_OCI_MANIFEST
                "\",\"extra\":{\"a\":[1,2,{}]}," CFG ",\"layers\":[" GOODL "]}",
                NULL);
  ok(m != NULL && m->nlayers == 1, "unknown members ignored");
  sn_manifest_free(m);
}

static void
test_platform_parse(void)
{
  static const struct {
    const char *in, *os, *arch, *variant;
  } good[] = {
    { "linux/amd64", "linux", "amd64", NULL },
    { "linux/arm64/v8", "linux", "arm64", "v8" },
    { "linux/arm/v7", "linux", "arm", "v7" },
    { "Linux/AMD64", "linux", "amd64", NULL },
    { "windows/amd64", "windows", "amd64", NULL },
    { "linux/ppc64le", "linux", "ppc64le", NULL },
    { "linux/x86_64", "linux", "x86_64", NULL },
  };
  static const char *const bad[] = {
    "", "linux", "linux/", "/amd64", "linux/arm/v7/x", "linux/am d64",
    "linux//v7", "linux/arm/", "linux/amd64\n",
  };
  struct sn_platform p;
  size_t i;

  for (i = 0; i < sizeof good / sizeof good[0]; i++) {
    int r = sn_platform_parse(good[i].in, &p);

    ok(r == 0 && streq(p.os, good[i].os)
       && streq(p.architecture, good[i].arch)
       && streq(p.variant, good[i].variant),
       "platform \"%s\" → %s %s %s", good[i].in, p.os, p.architecture,
       p.variant ? p.variant : "(none)");
    sn_platform_clear(&p);
    ok(p.os == NULL && p.architecture == NULL && p.variant == NULL,
       "  cleared");
  }
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ok(sn_platform_parse(bad[i], &p) == -1
       && strstr(sn_error(), "invalid platform") != NULL
       && strchr(sn_error(), '\n') == NULL && p.os == NULL,
       "bad platform %zu refused: %s", i, sn_error());
  ok(sn_platform_parse(NULL, &p) == -1, "NULL platform refused");
  sn_platform_clear(NULL);
}

static void
test_platform_host(void)
{
  struct sn_platform p;
  struct utsname u;
  const char *arch = NULL, *variant = NULL;

  ok(sn_platform_host(&p) == 0 && uname(&u) == 0, "host platform");
  if (strcmp(u.machine, "x86_64") == 0)
    arch = "amd64";
  else if (strcmp(u.machine, "aarch64") == 0)
    arch = "arm64", variant = "v8";
  else if (strcmp(u.machine, "armv7l") == 0)
    arch = "arm", variant = "v7";
  else if (strcmp(u.machine, "i686") == 0)
    arch = "386";
  else
    arch = u.machine;
  ok(streq(p.os, "linux") && streq(p.architecture, arch)
     && streq(p.variant, variant),
     "  host is %s/%s%s%s (uname %s)", p.os, p.architecture,
     p.variant ? "/" : "", p.variant ? p.variant : "", u.machine);
  {
    /* The host's platform selects its own entry in the Docker list. */
    struct sn_manifest *m = parse_str(docker_list, NULL);
    const struct sn_descriptor *d = m ? sn_manifest_select(m, &p) : NULL;

    if (strcmp(arch, "amd64") == 0)
      ok(d != NULL && streq(d->digest, D1), "  host selects linux/amd64");
    else if (strcmp(arch, "arm64") == 0)
      ok(d != NULL && streq(d->digest, D4), "  host selects linux/arm64/v8");
    sn_manifest_free(m);
  }
  sn_platform_clear(&p);
}

static void
test_platform_matches(void)
{
  static const struct {
    const char *want, *have;
    bool match;
  } t[] = {
    { "linux/amd64", "linux/amd64", true },
    { "linux/amd64", "linux/arm64", false },
    { "linux/amd64", "windows/amd64", false },
    { "linux/amd64", "linux/386", false },
    { "linux/amd64", "linux/amd64/v2", true },
    { "linux/amd64/v2", "linux/amd64", false },
    { "linux/amd64/v1", "linux/amd64", true },
    { "linux/amd64", "linux/amd64/v1", true },
    { "linux/x86_64", "linux/amd64", true },
    { "linux/amd64", "linux/x86-64", true },
    { "linux/i386", "linux/386", true },
    { "linux/arm64", "linux/arm64/v8", true },
    { "linux/arm64/v8", "linux/arm64", true },
    { "linux/arm64/8", "linux/arm64/v8", true },
    { "linux/aarch64", "linux/arm64/v8", true },
    { "linux/arm64/v8", "linux/arm64/v9", false },
    { "linux/arm64", "linux/arm64/v9", true },
    { "linux/arm64", "linux/arm/v7", false },
    { "linux/arm", "linux/arm/v7", true },
    { "linux/arm/v7", "linux/arm", true },
    { "linux/arm/7", "linux/arm/v7", true },
    { "linux/armhf", "linux/arm/v7", true },
    { "linux/armel", "linux/arm/v6", true },
    { "linux/arm", "linux/arm/v6", true },
    { "linux/arm/v7", "linux/arm/v5", true },
    { "linux/arm/v6", "linux/arm/v7", false },
    { "linux/arm/v8", "linux/arm/v7", true },
    { "linux/arm/v5", "linux/arm/v4", false },
    { "linux/arm/v6", "linux/arm/v6", true },
    { "darwin/arm64", "macos/arm64", true },
    { "linux/riscv64", "linux/riscv64", true },
    { "linux/s390x", "linux/ppc64le", false },
  };
  struct sn_platform w, h;
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (sn_platform_parse(t[i].want, &w) == -1
        || sn_platform_parse(t[i].have, &h) == -1) {
      ok(0, "parse %s / %s: %s", t[i].want, t[i].have, sn_error());
      continue;
    }
    ok(sn_platform_matches(&w, &h) == t[i].match, "want %s %s %s", t[i].want,
       t[i].match ? "matches" : "does not match", t[i].have);
    sn_platform_clear(&w);
    sn_platform_clear(&h);
  }
}

static void
test_layer_kinds(void)
{
  static const struct {
    const char *mt;
    enum sn_layer_kind kind;
  } t[] = {
    { "application/vnd.oci.image.layer.v1.tar+gzip", SN_LAYER_KIND_GZIP },
    { "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      SN_LAYER_KIND_GZIP },
    { "application/vnd.docker.image.rootfs.diff.tar.gzip", SN_LAYER_KIND_GZIP },
    { "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      SN_LAYER_KIND_GZIP },
    { "application/vnd.oci.image.layer.v1.tar", SN_LAYER_KIND_TAR },
    { "application/vnd.oci.image.layer.nondistributable.v1.tar",
      SN_LAYER_KIND_TAR },
    { "application/vnd.docker.image.rootfs.diff.tar", SN_LAYER_KIND_TAR },
    { "application/vnd.oci.image.layer.v1.tar+zstd", SN_LAYER_KIND_ZSTD },
    { "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      SN_LAYER_KIND_ZSTD },
    { "application/vnd.docker.image.rootfs.diff.tar.zstd", SN_LAYER_KIND_ZSTD },
    { "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
      SN_LAYER_KIND_OTHER },
    { "application/vnd.oci.image.layer.v1.tar+bzip2", SN_LAYER_KIND_OTHER },
    { "application/vnd.oci.image.config.v1+json", SN_LAYER_KIND_OTHER },
    { "application/octet-stream", SN_LAYER_KIND_OTHER },
    { "application/vnd.amazon.soci.prefetch.v1+json", SN_LAYER_KIND_OTHER },
    { "APPLICATION/VND.OCI.IMAGE.LAYER.V1.TAR+GZIP", SN_LAYER_KIND_OTHER },
    { "", SN_LAYER_KIND_OTHER },
  };
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++)
    ok(sn_layer_kind(t[i].mt) == t[i].kind, "layer kind of \"%s\" is %d",
       t[i].mt, (int) t[i].kind);
  ok(sn_layer_kind(NULL) == SN_LAYER_KIND_OTHER, "layer kind of NULL");
}

int
main(void)
{
  test_vectors();
  test_soci_first();
  test_docker_schema2();
  test_docker_list();
  test_select_rules();
  test_oci_artifacts_and_annotations();
  test_media_type_sources();
  test_bad_documents();
  test_hostile();
  test_platform_parse();
  test_platform_host();
  test_platform_matches();
  test_layer_kinds();
  return done_testing();
}
