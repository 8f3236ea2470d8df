/* soci-nbd tests: the Go-compatible JSON writer (lib/util/json.c) and the SOCI
 * index / convert documents (lib/soci/index.c) against the reference vectors
 * of tests/data (docs/soci-format.md §6). */
#include <config.h>

#include <stdint.h>
#include <string.h>

#include "soci/build.h"
#include "util/digest.h"
#include "util/err.h"
#include "image/image.h"
#include "soci/index.h"
#include "util/json.h"
#include "tap.h"

static char *
data_path(const char *name)
{
  static char buf[4096];

  snprintf(buf, sizeof buf, "%s/%s", DATADIR, name);
  return buf;
}

/* Is doc byte-identical to the vector file? */
static int
same_as(const struct sn_doc *d, const char *file)
{
  size_t len;
  unsigned char *want = slurp(data_path(file), &len);
  int r = d->data && d->len == len && memcmp(d->data, want, len) == 0;

  if (!r)
    diag("got %.*s", (int) d->len, d->data ? (const char *) d->data : "");
  free(want);
  return r;
}

static void
file_digest(const char *file, char *out, size_t *len)
{
  unsigned char *b = slurp(data_path(file), len);
  uint8_t h[SN_SHA256_LEN];

  sn_sha256(b, *len, h);
  sn_digest_format(h, out);
  free(b);
}

/* One string through the writer. */
static int
esc_is(const char *in, size_t n, const char *want)
{
  struct sn_json w;
  char *out = NULL;
  size_t len;
  int r;

  sn_json_init(&w);
  sn_json_string_len(&w, in, n);
  r = sn_json_finish(&w, &out, &len) == 0 && strcmp(out, want) == 0;
  if (!r)
    diag("got %s, want %s", out ? out : "(error)", want);
  free(out);
  return r;
}

static void
test_writer(void)
{
  struct sn_json w;
  char *out = NULL;
  size_t len;
  const char *keys[] = { "b", "a", "B", "\xc3\xa9", "aa", "" };
  const char *vals[] = { "1", "2", "3", "4", "5", "6" };

  ok(esc_is("plain text/+=", 13, "\"plain text/+=\""), "plain ASCII as is");
  ok(esc_is("\"\\", 2, "\"\\\"\\\\\""), "quote and backslash");
  ok(esc_is("\n\r\t", 3, "\"\\n\\r\\t\""), "\\n \\r \\t");
  ok(esc_is("\b\f", 2, "\"\\b\\f\""), "\\b \\f short forms (Go >= 1.22)");
  ok(esc_is("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""),
     "other controls as \\u00XX, DEL as is");
  ok(esc_is("a\0b", 3, "\"a\\u0000b\""), "NUL as \\u0000");
  ok(esc_is("<a href=\"x\">&</a>", 17,
            "\"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\""),
     "HTML-safe < > &");
  ok(esc_is("\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\""),
     "U+2028 and U+2029 escaped");
  ok(esc_is("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbd", 12,
            "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbd\""),
     "valid UTF-8 (2, 3, 4 bytes, literal U+FFFD) as is");
  ok(esc_is("a\xff" "b", 3, "\"a\\ufffdb\""), "invalid byte as \\ufffd");
  ok(esc_is("\xc0\xaf", 2, "\"\\ufffd\\ufffd\""), "overlong: one per byte");
  ok(esc_is("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""),
     "surrogate: one per byte");
  ok(esc_is("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""),
     "above U+10FFFF: one per byte");
  ok(esc_is("\xe2\x82", 2, "\"\\ufffd\\ufffd\""), "truncated sequence");
  ok(esc_is("\x80x", 2, "\"\\ufffdx\""), "stray continuation byte");

  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_key(&w, "z<");
  sn_json_int(&w, INT64_MIN);
  sn_json_key(&w, "a");
  sn_json_begin_array(&w);
  sn_json_int(&w, 0);
  sn_json_int(&w, -1);
  sn_json_bool(&w, true);
  sn_json_bool(&w, false);
  sn_json_null(&w);
  sn_json_begin_object(&w);
  sn_json_end_object(&w);
  sn_json_begin_array(&w);
  sn_json_end_array(&w);
  sn_json_raw(&w, "{\"r\":1}", 7);
  sn_json_end_array(&w);
  sn_json_key(&w, "m");
  sn_json_string_map(&w, keys, vals, 6);
  sn_json_key(&w, "e");
  sn_json_string_map(&w, NULL, NULL, 0);
  sn_json_end_object(&w);
  ok(sn_json_finish(&w, &out, &len) == 0 &&
     strcmp(out, "{\"z\\u003c\":-9223372036854775808,\"a\":[0,-1,true,false,"
            "null,{},[],{\"r\":1}],\"m\":{\"\":\"6\",\"B\":\"3\",\"a\":\"2\","
            "\"aa\":\"5\",\"b\":\"1\",\"\xc3\xa9\":\"4\"},\"e\":{}}") == 0 &&
     len == strlen(out),
     "members in call order, map keys sorted bytewise, no whitespace");
  if (out)
    diag("%s", out);
  free(out);

  /* Indented like Go's json.MarshalIndent(v, "", "  "): empty
   * containers stay {} and [], a space after each colon. */
  sn_json_init(&w);
  sn_json_set_indent(&w, 2);
  sn_json_begin_object(&w);
  sn_json_key(&w, "a");
  sn_json_begin_array(&w);
  sn_json_int(&w, 1);
  sn_json_begin_object(&w);
  sn_json_end_object(&w);
  sn_json_end_array(&w);
  sn_json_key(&w, "b");
  sn_json_begin_object(&w);
  sn_json_key(&w, "c");
  sn_json_string(&w, "x\"");
  sn_json_end_object(&w);
  sn_json_key(&w, "d");
  sn_json_begin_array(&w);
  sn_json_end_array(&w);
  sn_json_end_object(&w);
  ok(sn_json_finish(&w, &out, &len) == 0 &&
     strcmp(out, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n"
            "    \"c\": \"x\\\"\"\n  },\n  \"d\": []\n}") == 0,
     "indented: one member or element per line, nested by two spaces");
  if (out)
    diag("%s", out);
  free(out);

  /* Sticky errors. */
  sn_json_init(&w);
  sn_json_begin_array(&w);
  sn_json_key(&w, "k");
  sn_json_int(&w, 1);
  sn_json_end_array(&w);
  ok(sn_json_finish(&w, &out, &len) == -1 &&
     strstr(sn_error(), "key outside an object"),
     "a key in an array is an error that sticks");
  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_int(&w, 1);
  sn_json_end_object(&w);
  ok(sn_json_finish(&w, &out, &len) == -1, "a value without a key fails");
  sn_json_init(&w);
  sn_json_begin_object(&w);
  ok(sn_json_finish(&w, &out, &len) == -1 &&
     strstr(sn_error(), "incomplete"), "an unclosed object fails");
  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_end_array(&w);
  ok(sn_json_finish(&w, &out, &len) == -1, "mismatched end fails");
  sn_json_init(&w);
  for (int i = 0; i < SN_JSON_MAX_DEPTH + 1; i++)
    sn_json_begin_array(&w);
  ok(sn_json_finish(&w, &out, &len) == -1 && strstr(sn_error(), "deep"),
     "nesting deeper than %d fails", SN_JSON_MAX_DEPTH);
}

static struct sn_ztoc *
build(const char *layer, uint8_t *blob_digest, struct sn_doc *zdoc)
{
  struct sn_build_opts o = { .span_size = 4096,
                             .build_tool = SN_REFERENCE_BUILD_TOOL };
  struct sn_ztoc *z = sn_ztoc_build_file(data_path(layer), &o, blob_digest);
  uint8_t h[SN_SHA256_LEN];

  memset(zdoc, 0, sizeof *zdoc);
  if (z == NULL || sn_ztoc_encode(z, &zdoc->data, &zdoc->len) == -1) {
    diag("%s: %s", layer, sn_error());
    return z;
  }
  sn_sha256(zdoc->data, zdoc->len, h);
  sn_digest_format(h, zdoc->digest);
  return z;
}

static void
test_vectors(void)
{
  struct sn_ztoc *za, *zb;
  struct sn_doc da, db, v1, v2, v2b, ann, oci, oci2, pf, rt;
  uint8_t ha[SN_SHA256_LEN], hb[SN_SHA256_LEN];
  char la[SN_DIGEST_STRLEN + 1], lb[SN_DIGEST_STRLEN + 1];
  char md[SN_DIGEST_STRLEN + 1], cd[SN_DIGEST_STRLEN + 1];
  size_t mlen, clen, len;
  unsigned char *mraw, *craw, *ociraw;
  struct sn_index_ztoc z[2];
  struct sn_index_subject subj;
  struct sn_oci_index *x;
  struct sn_prefetch_span span = { 0, 1, 0 };

  za = build("A.tar.gz", ha, &da);
  zb = build("B.tar.gz", hb, &db);
  sn_digest_format(ha, la);
  sn_digest_format(hb, lb);
  ok(same_as(&da, "A4096.ztoc"), "A.tar.gz span 4096 → A4096.ztoc");
  ok(same_as(&db, "B.ztoc"), "B.tar.gz span 4096 → B.ztoc");

  file_digest("image-manifest.json", md, &mlen);
  file_digest("config.json", cd, &clen);
  ok(strcmp(md, "sha256:9f49fea4609e2feb5fcc56e4dc5f02a2a89e06102b16aa8007b0c4cf595f2d4c") == 0
     && mlen == 555, "image manifest digest and size of the reference");

  z[0] = (struct sn_index_ztoc) { da.digest, (int64_t) da.len, la,
    "application/vnd.oci.image.layer.v1.tar+gzip", 4096, false };
  z[1] = (struct sn_index_ztoc) { db.digest, (int64_t) db.len, lb,
    "application/vnd.oci.image.layer.v1.tar+gzip", 4096, false };
  subj = (struct sn_index_subject) { SN_MT_OCI_MANIFEST, md,
                                     (int64_t) mlen };

  ok(sn_index_encode(1, z, 2, NULL, 0, &subj, SN_REFERENCE_BUILD_TOOL,
                     &v1) == 0 && same_as(&v1, "soci-index-v1.json"),
     "SOCI index v1 byte for byte");
  ok(strcmp(v1.digest, "sha256:88d5886289630cf329cd8c265408b9fbaad94db043b1ff9a0d0f51cd9b9bec66") == 0,
     "v1 digest %s", v1.digest);
  ok(sn_index_encode(2, z, 2, NULL, 0, NULL, SN_REFERENCE_BUILD_TOOL,
                     &v2) == 0 && same_as(&v2, "soci-index-v2.json"),
     "SOCI index v2 byte for byte");
  ok(sn_index_encode(2, z, 2, NULL, 0, NULL, SN_REFERENCE_BUILD_TOOL,
                     &v2b) == 0 && v2b.len == v2.len &&
     memcmp(v2b.data, v2.data, v2.len) == 0 &&
     strcmp(v2b.digest, v2.digest) == 0, "encoding is deterministic");
  sn_doc_free(&v2b);

  mraw = slurp(data_path("image-manifest.json"), &mlen);
  ok(sn_index_annotate_manifest(mraw, mlen, v2.digest, &ann) == 0 &&
     same_as(&ann, "image-manifest-soci.json"),
     "annotated image manifest byte for byte");
  craw = slurp(data_path("config.json"), &clen);
  x = sn_oci_index_wrap(SN_MT_OCI_MANIFEST, md, (int64_t) mlen, craw, clen);
  ok(x && sn_oci_index_count(x) == 1 &&
     sn_oci_index_set_manifest(x, 0, &ann) == 0 &&
     sn_oci_index_add_soci(x, &v2, ann.digest, NULL, 0) == 0 &&
     sn_oci_index_encode(x, &oci) == 0 && same_as(&oci, "oci-index-soci.json"),
     "OCI image index of a converted single-platform image byte for byte");
  ok(strcmp(oci.digest, "sha256:b576548ccdee2fea81a5abc6b996abf8d89857970ef08e95e43639e36dbdee80") == 0,
     "OCI index digest %s", oci.digest);
  sn_oci_index_free(x);

  /* Round trip: the vector re-read and re-encoded is unchanged; adding
   * the same SOCI index again replaces its entry. */
  ociraw = slurp(data_path("oci-index-soci.json"), &len);
  x = sn_oci_index_from_index(ociraw, len);
  ok(x && sn_oci_index_count(x) == 2 &&
     strcmp(sn_oci_index_artifact_type(x, 1), SN_MT_SOCI_INDEX_V2) == 0 &&
     sn_oci_index_artifact_type(x, 0) == NULL &&
     strcmp(sn_oci_index_digest(x, 0), ann.digest) == 0,
     "OCI index read back: entries and artifact types");
  ok(x && sn_oci_index_encode(x, &rt) == 0 &&
     same_as(&rt, "oci-index-soci.json"), "re-encoding is the identity");
  sn_doc_free(&rt);
  {
    struct sn_platform p = { .os = (char *) "linux",
                             .architecture = (char *) "amd64" };
    struct sn_platform q = { .os = (char *) "linux",
                             .architecture = (char *) "arm64" };

    ok(x && sn_oci_index_add_soci(x, &v2, ann.digest, &p, 0) == 0 &&
       sn_oci_index_count(x) == 2 && sn_oci_index_encode(x, &oci2) == 0 &&
       same_as(&oci2, "oci-index-soci.json"),
       "a v2 SOCI index for the same platform replaces the old entry");
    sn_doc_free(&oci2);
    ok(x && sn_oci_index_add_soci(x, &v2, ann.digest, &q, 0) == 0 &&
       sn_oci_index_count(x) == 3, "another platform is appended");
  }
  sn_oci_index_free(x);
  free(ociraw);

  ok(sn_prefetch_encode(&span, 1, &pf) == 0 && same_as(&pf, "pf.json") &&
     strcmp(pf.digest, "sha256:a8dbfe1d73cd03dd0dd111c97b5873844115f06c0dc875e700c3f20b1d03fb1a") == 0,
     "prefetch artifact byte for byte");

  /* An index with a prefetch descriptor and disable-xattrs. */
  {
    struct sn_index_prefetch p = { pf.digest, (int64_t) pf.len, lb };
    struct sn_doc d;
#define WANT \
      "{\"mediaType\":\"application/octet-stream\",\"digest\":\"%s\"," \
      "\"size\":230912,\"annotations\":{\"com.amazon.soci.disable-xattrs\":" \
      "\"true\",\"com.amazon.soci.image-layer-digest\":\"%s\"," \
      "\"com.amazon.soci.image-layer-mediaType\":" \
      "\"application/vnd.oci.image.layer.v1.tar+gzip\"," \
      "\"com.amazon.soci.span-size\":\"4096\"}},{\"mediaType\":" \
      "\"application/vnd.amazon.soci.prefetch.v1+json\",\"digest\":\"%s\"," \
      "\"size\":66,\"annotations\":{\"com.amazon.soci.image-layer-digest\":" \
      "\"%s\"}}]"
    char buf[2048];

    ok(za && !sn_index_ztoc_no_xattrs(za),
       "A (xattr, opaque whiteout) keeps xattrs");
    ok(zb && sn_index_ztoc_no_xattrs(zb), "B may disable xattrs");
    z[1].disable_xattrs = true;
    snprintf(buf, sizeof buf, WANT, db.digest, lb, pf.digest, lb);
    ok(sn_index_encode(2, z, 2, &p, 1, NULL, SN_REFERENCE_BUILD_TOOL,
                       &d) == 0 && strstr((char *) d.data, buf) != NULL,
       "disable-xattrs sorted first; prefetch descriptors after the ztocs");
    sn_doc_free(&d);
  }

  /* Misuse. */
  ok(sn_index_encode(1, z, 2, NULL, 0, NULL, "x", &v2b) == -1,
     "v1 without a subject fails");
  ok(sn_index_encode(2, z, 0, NULL, 0, NULL, "x", &v2b) == -1 &&
     strstr(sn_error(), "no ztocs"), "an empty index fails");

  /* File → spans. */
  {
    struct sn_prefetch_span s;

    ok(zb && sn_prefetch_file_span(zb, "/dir/b.txt", &s) == 1 &&
       s.start <= s.end && s.end > 0, "dir/b.txt spans %d..%d", s.start,
       s.end);
    ok(zb && sn_prefetch_file_span(zb, "nope", &s) == 0, "missing file: 0");
  }

  free(mraw);
  free(craw);
  sn_doc_free(&da);
  sn_doc_free(&db);
  sn_doc_free(&v1);
  sn_doc_free(&v2);
  sn_doc_free(&ann);
  sn_doc_free(&oci);
  sn_doc_free(&pf);
  sn_ztoc_free(za);
  sn_ztoc_free(zb);
}

static int
annotate_is(const char *in, const char *idx, const char *want)
{
  struct sn_doc d;
  int r = sn_index_annotate_manifest((const uint8_t *) in, strlen(in), idx,
                                     &d) == 0 && strcmp((char *) d.data, want) == 0;

  if (!r)
    diag("got %s", d.data ? (char *) d.data : sn_error());
  sn_doc_free(&d);
  return r;
}

static void
test_go_decoding(void)
{
  struct sn_prefetch_span s[] = { { 5, 6, 0 }, { 2, 3, 0 }, { 0, 1, 7 },
                                  { 9, 9, 0 }, { 5, 5, 0 } };
  struct sn_doc d;
  struct sn_platform p;
  struct sn_oci_index *x;
  const char *list =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution"
    ".manifest.list.v2+json\",\"manifests\":[{\"mediaType\":\"application/"
    "vnd.docker.distribution.manifest.v2+json\",\"size\":7,\"digest\":\"sha256"
    ":aa\",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
    "\"variant\":\"v8\",\"features\":[\"x\"],\"os.features\":[]}}]}";

  ok(annotate_is(
       "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution"
       ".manifest.v2+json\",\"config\":{\"mediaType\":\"application/vnd.docker"
       ".container.image.v1+json\",\"size\":3,\"digest\":\"sha256:cc\"},"
       "\"layers\":[{\"MediaType\":\"l\",\"size\":1,\"digest\":\"sha256:dd\","
       "\"urls\":[\"http://x/<\"],\"extra\":1,\"annotations\":{}}],"
       "\"annotations\":{\"z\":\"1\",\"a\":null}}", NULL,
       "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image."
       "manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci."
       "image.config.v1+json\",\"digest\":\"sha256:cc\",\"size\":3},\"layers\":"
       "[{\"mediaType\":\"l\",\"digest\":\"sha256:dd\",\"size\":1,\"urls\":"
       "[\"http://x/\\u003c\"]}],\"annotations\":{\"a\":\"\",\"z\":\"1\"}}"),
     "Docker manifest re-marshalled as Go does: OCI types, field order, "
     "case-insensitive names, unknown and empty members dropped");
  ok(annotate_is("{\"schemaVersion\":2,\"config\":null,\"subject\":{\"digest\""
                 ":\"sha256:ee\",\"size\":9,\"platform\":{\"os\":\"linux\"}}}",
                 "sha256:ff",
                 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci."
                 "image.manifest.v1+json\",\"config\":{\"mediaType\":\"application"
                 "/vnd.oci.image.config.v1+json\",\"digest\":\"\",\"size\":0},"
                 "\"layers\":null,\"subject\":{\"mediaType\":\"\",\"digest\":"
                 "\"sha256:ee\",\"size\":9,\"platform\":{\"architecture\":\"\","
                 "\"os\":\"linux\"}},\"annotations\":{\"com.amazon.soci.index-"
                 "digest\":\"sha256:ff\"}}"),
     "zero values, null layers, subject kept, annotation added");
  ok(sn_index_annotate_manifest((const uint8_t *) "{\"layers\":{}}", 13,
                                NULL, &d) == -1 &&
     strstr(sn_error(), "layers"), "type errors fail");
  ok(sn_index_annotate_manifest((const uint8_t *) "[1]", 3, NULL, &d) == -1,
     "not an object fails");

  x = sn_oci_index_from_index((const uint8_t *) list, strlen(list));
  ok(x && sn_oci_index_platform(x, 0, &p) == 1 &&
     strcmp(p.architecture, "arm64") == 0 && strcmp(p.variant, "v8") == 0,
     "manifest list entry platform");
  if (x)
    sn_platform_clear(&p);
  ok(x && sn_oci_index_encode(x, &d) == 0 &&
     strcmp((char *) d.data,
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image."
            "index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd."
            "docker.distribution.manifest.v2+json\",\"digest\":\"sha256:aa\","
            "\"size\":7,\"platform\":{\"architecture\":\"arm64\",\"os\":"
            "\"linux\",\"variant\":\"v8\"}}]}") == 0,
     "manifest list → OCI index: media type forced, entries re-marshalled");
  sn_doc_free(&d);
  sn_oci_index_free(x);

  ok(sn_prefetch_encode(s, 5, &d) == 0 &&
     strcmp((char *) d.data, "{\"version\":\"1.0\",\"prefetch_spans\":["
            "{\"start_span\":0,\"end_span\":3,\"priority\":7},"
            "{\"start_span\":5,\"end_span\":6},{\"start_span\":9,"
            "\"end_span\":9}]}") == 0,
     "prefetch spans sorted, adjacent and overlapping ones merged");
  sn_doc_free(&d);

  {
    struct sn_platform a = { 0 };
    int r;

    a.os = strdup("Linux");
    a.architecture = strdup("aarch64");
    a.variant = strdup("v8");
    r = sn_index_platform_normalize(&a);
    ok(r == 0 && strcmp(a.os, "linux") == 0 &&
       strcmp(a.architecture, "arm64") == 0 && a.variant == NULL,
       "normalize aarch64/v8 → arm64");
    sn_platform_clear(&a);
    a.os = strdup("linux");
    a.architecture = strdup("arm");
    r = sn_index_platform_normalize(&a);
    ok(r == 0 && a.variant && strcmp(a.variant, "v7") == 0,
       "normalize arm → arm/v7");
    sn_platform_clear(&a);
    a.os = strdup("linux");
    a.architecture = strdup("x86_64");
    a.variant = strdup("v1");
    r = sn_index_platform_normalize(&a);
    ok(r == 0 && strcmp(a.architecture, "amd64") == 0 && a.variant == NULL,
       "normalize x86_64/v1 → amd64");
    sn_platform_clear(&a);
  }
}

/* The plugin's prefetch artifact parser (lib/image/image.c). */
static void
test_prefetch_parse(void)
{
  static const char good[] =
    "{\"version\":\"1.0\",\"prefetch_spans\":[{\"start_span\":2,"
    "\"end_span\":5,\"priority\":1},{\"start_span\":0,\"end_span\":0}]}";
  static const char badver[] =
    "{\"version\":\"2.0-fuzz\",\"prefetch_spans\":[]}";
  static const char backwards[] =
    "{\"version\":\"1.0\",\"prefetch_spans\":[{\"start_span\":0,"
    "\"end_span\":1},{\"start_span\":3,\"end_span\":2}]}";
  struct sn_prefetch_span *sp;
  size_t n;

  ok(sn_image_parse_prefetch((const uint8_t *) good, strlen(good), &sp,
                             &n) == 0 && n == 2 && sp[0].start == 2 &&
     sp[0].end == 5 && sp[1].start == 0 && sp[1].end == 0,
     "prefetch artifact: span ranges in order");
  free(sp);
  /* Found by fuzz/fuzz-manifest: the message quoted the version string
   * after the document holding it was freed (ASan: heap-use-after-free). */
  ok(sn_image_parse_prefetch((const uint8_t *) badver, strlen(badver), &sp,
                             &n) == -1 && sp == NULL && n == 0 &&
     strstr(sn_error(), "version 2.0-fuzz") != NULL,
     "prefetch artifact of another version: %s", sn_error());
  ok(sn_image_parse_prefetch((const uint8_t *) backwards, strlen(backwards),
                             &sp, &n) == -1 && sp == NULL && n == 0,
     "prefetch artifact with end_span < start_span refused");
  ok(sn_image_parse_prefetch((const uint8_t *) "[1]", 3, &sp, &n) == -1 &&
     sp == NULL, "prefetch artifact that is not an object refused");
}

int
main(void)
{
  test_writer();
  test_vectors();
  test_go_decoding();
  test_prefetch_parse();
  return done_testing();
}
