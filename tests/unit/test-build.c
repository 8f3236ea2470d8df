/* soci-nbd tests: the one-pass ztoc builder (lib/soci/build.c) and reading a
 * layer through verified spans (lib/span/layer.c), including the integrity
 * checks: corrupted spans and lying ztoc entries. */
#include <config.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soci/build.h"
#include "util/digest.h"
#include "util/err.h"
#include "span/layer.h"
#include "tap.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"

static const char REF[] = SN_REFERENCE_BUILD_TOOL;

/* Digest of a ztoc encoded from z, as "hex" without the prefix. */
static void
ztoc_hex(const struct sn_ztoc *z, char *out)
{
  uint8_t *buf, d[SN_SHA256_LEN];
  char s[SN_DIGEST_STRLEN + 1];
  size_t len;

  if (sn_ztoc_encode(z, &buf, &len) == -1) {
    strcpy(out, "(encode failed)");
    return;
  }
  sn_sha256(buf, len, d);
  sn_digest_format(d, s);
  strcpy(out, s + 7);
  free(buf);
}

/* Build from memory, feeding chunks of pseudo-random sizes. */
static struct sn_ztoc *
build_mem(const uint8_t *data, size_t len, enum sn_compression comp,
          int64_t span, unsigned seed, uint8_t *blobd)
{
  struct sn_build_opts o = { .span_size = span, .build_tool = REF };
  struct sn_ztoc_builder *b = sn_ztoc_builder_new(comp, &o);
  struct sn_ztoc *z;
  size_t pos = 0;

  srand(seed);
  while (b && pos < len) {
    size_t n = seed ? (size_t) (rand() % 700) + 1 : len;
    if (n > len - pos)
      n = len - pos;
    if (sn_ztoc_builder_feed(b, data + pos, n) == -1) {
      sn_ztoc_builder_free(b);
      return NULL;
    }
    pos += n;
  }
  z = b ? sn_ztoc_builder_finish(b, blobd) : NULL;
  sn_ztoc_builder_free(b);
  return z;
}

static void
vectors(void)
{
  static const struct {
    const char *layer; int64_t span; enum sn_compression comp;
    const char *want;
  } v[] = {
    { "A.tar.gz", 4194304, SN_COMP_GZIP,
      "586b12dcf5bd7ed9df0391485cc6811978080a3ac6b0466d1d05cc80d00b3c1e" },
    { "A.tar.gz", 4096, SN_COMP_GZIP,
      "e2cad9bdd5907d197861ad360523d52f3f6b7b277baf0edec19862be3caa5def" },
    { "A.tar", 4096, SN_COMP_UNCOMPRESSED,
      "49efb738833138942fbcb851cf5061abaca52f0572cb221af02002fc6c0d8724" },
    { "B.tar.gz", 4096, SN_COMP_GZIP,
      "55fb46d5624683f138ab9de95225c83c5b7529a466e0268217be4279ce98ef68" },
  };
  size_t i;
  unsigned seed;

  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    size_t len;
    uint8_t *data;
    char path[512], hex[80];
    uint8_t blobd[SN_SHA256_LEN], d[SN_SHA256_LEN];

    snprintf(path, sizeof path, "%s/%s", DATADIR, v[i].layer);
    data = slurp(path, &len);
    sn_sha256(data, len, d);
    for (seed = 0; seed < 3; seed++) {
      struct sn_ztoc *z = build_mem(data, len, v[i].comp, v[i].span, seed,
                                    blobd);
      if (!ok(z != NULL, "%s span %lld chunks %u: built", v[i].layer,
              (long long) v[i].span, seed)) {
        diag("%s", sn_error());
        continue;
      }
      ztoc_hex(z, hex);
      ok(strcmp(hex, v[i].want) == 0, "  digest %s", hex);
      ok(memcmp(blobd, d, sizeof d) == 0, "  layer digest");
      sn_ztoc_free(z);
    }
    free(data);
  }
}

/* Read every byte of A.tar through a layer over A.tar.gz. */
static void
read_through_spans(const char *layer, const char *plain, int64_t span,
                   enum sn_compression comp)
{
  char lp[512], pp[512];
  struct sn_build_opts o = { .span_size = span };
  struct sn_ztoc *z;
  struct sn_layer *l;
  uint8_t *want, *got;
  size_t wlen, i;
  int fd;

  (void) comp;
  snprintf(lp, sizeof lp, "%s/%s", DATADIR, layer);
  snprintf(pp, sizeof pp, "%s/%s", DATADIR, plain);
  want = slurp(pp, &wlen);
  z = sn_ztoc_build_file(lp, &o, NULL);
  fd = open(lp, O_RDONLY);
  l = z ? sn_layer_new(z, sn_blob_read_fd, &fd) : NULL;
  if (!ok(l != NULL, "%s: layer opened", layer)) {
    diag("%s", sn_error());
    free(want);
    close(fd);
    return;
  }
  z = (struct sn_ztoc *) sn_layer_ztoc(l);
  got = malloc(z->uncompressed_size);
  ok(sn_layer_read(l, got, z->uncompressed_size, 0) == 0 &&
     memcmp(got, want, z->uncompressed_size) == 0,
     "%s: whole archive reads back", layer);
  /* Odd slices crossing span boundaries. */
  for (i = 0; i + 777 < (size_t) z->uncompressed_size; i += 1013)
    if (sn_layer_read(l, got, 777, i) == -1 || memcmp(got, want + i, 777))
      break;
  ok(i + 777 >= (size_t) z->uncompressed_size, "%s: slices read back",
     layer);
  ok(sn_layer_read(l, got, 1, z->uncompressed_size) == -1,
     "%s: read past the end refused", layer);
  for (i = 0; i < z->nfiles; i++)
    if (sn_layer_check_file(l, &z->files[i]) == -1) {
      diag("%s", sn_error());
      break;
    }
  ok(i == z->nfiles, "%s: every tar header matches its ztoc entry", layer);
  free(got);
  free(want);
  sn_layer_free(l);
  close(fd);
}

/* A ztoc that points one file at another's bytes is caught; so is a
 * corrupted span. */
static void
integrity(void)
{
  struct sn_build_opts o = { .span_size = 4096 };
  char lp[512];
  struct sn_ztoc *z;
  struct sn_layer *l;
  struct sn_ztoc_file *hello = NULL, *x = NULL;
  uint8_t buf[64];
  size_t i, len;
  uint8_t *blob;
  int fd;

  snprintf(lp, sizeof lp, "%s/B.tar.gz", DATADIR);
  z = sn_ztoc_build_file(lp, &o, NULL);
  fd = open(lp, O_RDONLY);
  l = sn_layer_new(z, sn_blob_read_fd, &fd);
  z = (struct sn_ztoc *) sn_layer_ztoc(l);
  for (i = 0; i < z->nfiles; i++) {
    if (strcmp(z->files[i].name.data, "a.txt") == 0)
      hello = &z->files[i];
    if (strcmp(z->files[i].name.data, "dir/b.txt") == 0)
      x = &z->files[i];
  }
  ok(hello && x, "found a.txt and dir/b.txt");
  if (hello && x) {
    /* Swap where the two entries say their data lives. */
    int64_t ho = hello->header_offset, off = hello->offset;
    hello->header_offset = x->header_offset;
    hello->offset = x->offset;
    ok(sn_layer_check_file(l, hello) == -1 &&
       strstr(sn_error(), "does not match") != NULL,
       "lying ztoc entry caught: %s", sn_error());
    hello->header_offset = ho;
    hello->offset = off;
    hello->mode ^= 1;
    ok(sn_layer_check_file(l, hello) == -1 && strstr(sn_error(), "mode"),
       "mode mismatch caught: %s", sn_error());
    hello->mode ^= 1;
    ok(sn_layer_check_file(l, hello) == 0, "restored entry passes");
  }
  sn_layer_free(l);
  close(fd);

  /* Corrupt one byte of span 3 in a copy of the layer. */
  blob = slurp(lp, &len);
  blob[360] ^= 0x40;
  {
    char tmpl[] = "/tmp/soci-nbd-test-XXXXXX";
    int tfd = mkstemp(tmpl);
    struct sn_ztoc *good = sn_ztoc_build_file(lp, &o, NULL);
    ok(tfd >= 0 && write(tfd, blob, len) == (ssize_t) len, "wrote copy");
    l = sn_layer_new(good, sn_blob_read_fd, &tfd);
    ok(l && sn_layer_read(l, buf, 10, 0) == 0, "untouched span 0 reads");
    ok(l && sn_layer_read(l, buf, 10, 16000) == -1 &&
       strstr(sn_error(), "digest mismatch"),
       "corrupted span 3 refused: %s", sn_error());
    ok(l && sn_layer_read(l, buf, 10, 26000) == 0, "span 5 still reads");
    sn_layer_free(l);
    close(tfd);
    unlink(tmpl);
  }
  free(blob);
}

int
main(void)
{
  uint8_t head[4] = { 0x28, 0xb5, 0x2f, 0xfd };

  vectors();
  read_through_spans("A.tar.gz", "A.tar", 4096, SN_COMP_GZIP);
  read_through_spans("B.tar.gz", "B.tar", 4096, SN_COMP_GZIP);
  read_through_spans("A.tar", "A.tar", 512, SN_COMP_UNCOMPRESSED);
  read_through_spans("B.tar", "B.tar", 4096, SN_COMP_UNCOMPRESSED);
  integrity();
  ok(sn_layer_sniff(head, 4) == SN_LAYER_ZSTD, "zstd magic recognised");
  ok(sn_ztoc_build_file("/nonexistent/layer", NULL, NULL) == NULL &&
     strstr(sn_error(), "/nonexistent/layer"), "missing file: %s",
     sn_error());
  return done_testing();
}
