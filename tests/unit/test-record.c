/* soci-nbd tests: prefetch records (lib/record/) — the document parsed,
 * encoded and refused when hostile; binding to an image; the recorder
 * against an independent model of what it must keep (a byte map per layer
 * and the order bytes were first read), its limit, its idle gap, its
 * single atomic write, and many threads noting at once. */
#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "record/record.h"
#include "util/err.h"
#include "util/fdio.h"
#include "tap.h"

#define MT "application/vnd.soci-nbd.prefetch-record.v1+json"
#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static char tmpdir[512];

static int
parse_str(const char *s, struct sn_record *r)
{
  return sn_record_parse((const uint8_t *) s, strlen(s), r);
}

static void
format(void)
{
  const char *good = "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA "\",\""
    DB "\"],\"ranges\":[[1,0,512],[0,4096,100],[1,9223372036854775806,1]]}";
  struct sn_record r, r2;
  uint8_t *enc;
  size_t len, i, refused = 0, cut;
  int c_;

  c_ = parse_str(good, &r) == 0;
  ok(c_ && r.nlayers == 2 && r.nranges == 3 && r.ranges[0].layer == 1 &&
     r.ranges[1].off == 4096 && r.ranges[2].off == INT64_MAX - 1,
     "a record parses: %s", ERR);
  c_ = sn_record_encode(&r, &enc, &len) == 0;
  ok(c_ && len == strlen(good) && memcmp(enc, good, len) == 0,
     "it encodes to the same canonical bytes");
  free(enc);
  ok(parse_str("{\"ranges\":[],\"x\":1,\"layers\":[],\"mediaType\":\"" MT
               "\"}", &r2) == 0 && r2.nranges == 0,
     "members in any order, unknown members ignored, no ranges: valid");
  sn_record_clear(&r2);

  /* Every truncation of a valid document is refused. */
  for (cut = 0; cut < strlen(good); cut++) {
    if (sn_record_parse((const uint8_t *) good, cut, &r2) == 0)
      sn_record_clear(&r2);
    else
      refused++;
  }
  ok(refused == strlen(good), "all %zu truncations refused", refused);

  {
    static const struct { const char *doc, *want; } bad[] = {
      { "[]", "not a prefetch record" },
      { "{\"mediaType\":\"x\",\"layers\":[],\"ranges\":[]}",
        "not a prefetch record" },
      { "{\"mediaType\":\"" MT "\",\"ranges\":[]}", "\"layers\" is not" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[]}", "\"ranges\" is not" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA "\",\"" DA
        "\"],\"ranges\":[]}", "repeats" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"sha256:AB\"],\"ranges\":[]}",
        "not a sha256 digest" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[1],\"ranges\":[]}",
        "not a sha256 digest" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA
        "\"],\"ranges\":[[1,0,1]]}", "layer 1 of 1" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA
        "\"],\"ranges\":[[0,0,0]]}", "length 0" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA
        "\"],\"ranges\":[[0,-1,5]]}", "non-negative" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA
        "\"],\"ranges\":[[0,1.5,5]]}", "non-negative integers" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA
        "\"],\"ranges\":[[0,1,5,6]]}", "[LAYER, OFFSET, LENGTH]" },
      { "{\"mediaType\":\"" MT "\",\"layers\":[\"" DA
        "\"],\"ranges\":[[0,9223372036854775807,1]]}", "at offset" },
      { "{\"mediaType\":\"" MT "\",\"mediaType\":\"" MT
        "\",\"layers\":[],\"ranges\":[]}", "not JSON" },
    };
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      c_ = parse_str(bad[i].doc, &r2) == -1;
      ok(c_ && strstr(sn_error(), bad[i].want) != NULL,
         "refused: %s", WHY);
    }
  }

  {
    /* A document of many small values: jansson's tree would take ~30
     * times its size, so the values are counted first.  Commas inside
     * strings do not count. */
    size_t n = SN_RECORD_MAX_SIZE - 64, k;
    char *doc = malloc(n + 64);
    struct rusage ru0, ru1;

    if (doc == NULL)
      abort();
    k = (size_t) sprintf(doc, "{\"mediaType\":\"" MT "\",\"x\":[");
    while (k + 4 < n) {
      doc[k++] = '0';
      doc[k++] = ',';
    }
    strcpy(doc + k, "0]}");
    getrusage(RUSAGE_SELF, &ru0);
    c_ = sn_record_parse((const uint8_t *) doc, strlen(doc), &r2) == -1;
    getrusage(RUSAGE_SELF, &ru1);
    ok(c_ && strstr(sn_error(), "JSON values") != NULL &&
       ru1.ru_maxrss - ru0.ru_maxrss < 256 * 1024,
       "%zu MiB of small values refused before parsing (peak memory +%ld "
       "KiB): %s", n >> 20, ru1.ru_maxrss - ru0.ru_maxrss, WHY);
    k = (size_t) sprintf(doc, "{\"mediaType\":\"" MT "\",\"layers\":[],"
                         "\"ranges\":[],\"note\":\"");
    memset(doc + k, ',', 8 << 20);
    strcpy(doc + k + (8 << 20), "\"}");
    c_ = sn_record_parse((const uint8_t *) doc, strlen(doc), &r2) == 0;
    ok(c_, "8 MiB of commas inside a string are not values: %s", ERR);
    if (c_)
      sn_record_clear(&r2);
    free(doc);
  }

  {
    const char *dg[3] = { DC, DA, DB };
    int64_t sizes[3] = { -1, 5000, 513 };
    size_t map[2];

    c_ = sn_record_bind(&r, dg, NULL, 3, map) == 0;
    ok(c_ && map[0] == 1 && map[1] == 2, "bind maps the record's layers to "
       "the image's: %s", ERR);
    c_ = sn_record_bind(&r, dg, NULL, 2, map) == -1;
    ok(c_ && strstr(sn_error(), "names layer " DB " which the image does "
                    "not have") != NULL, "a layer the image lacks: %s", WHY);
    c_ = sn_record_bind(&r, dg, sizes, 3, map) == -1;
    ok(c_ && strstr(sn_error(), "past the end of layer " DB) != NULL,
       "a range past its layer's end: %s", WHY);
  }
  sn_record_clear(&r);
}

/* ---- the recorder, against a model ------------------------------------- */

#define MLAYERS 3
#define MSIZE 4096

struct model {
  unsigned char seen[MLAYERS][MSIZE];
  /* The expected record: for each byte kept, in order, layer and offset. */
  struct { int layer, off; } order[MLAYERS * MSIZE];
  size_t n;
};

static void
model_note(struct model *m, int layer, int off, int len, size_t limit)
{
  int i;

  for (i = off; i < off + len; i++)
    if (!m->seen[layer][i] && (limit == 0 || m->n < limit)) {
      m->seen[layer][i] = 1;
      m->order[m->n].layer = layer;
      m->order[m->n++].off = i;
    }
}

static const char *digests[MLAYERS] = { DA, DB, DC };

/* The record at path, expanded byte by byte, equals the model's order. */
static int
matches(const char *path, const struct model *m, size_t *nranges)
{
  struct sn_record r;
  uint8_t *buf;
  size_t len, k = 0, i;
  int ok_ = 1;

  if (sn_read_file(path, 1 << 24, true, &buf, &len) == -1)
    return 0;
  if (sn_record_parse(buf, len, &r) == -1) {
    free(buf);
    return 0;
  }
  free(buf);
  for (i = 0; i < r.nranges && ok_; i++) {
    const char *d = r.layers[r.ranges[i].layer];
    uint64_t b;

    for (b = r.ranges[i].off; b < r.ranges[i].off + r.ranges[i].len; b++, k++)
      if (k >= m->n || strcmp(digests[m->order[k].layer], d) != 0 ||
          (uint64_t) m->order[k].off != b)
        ok_ = 0;
    /* Ranges that continue each other are merged. */
    if (i > 0 && r.ranges[i].layer == r.ranges[i - 1].layer &&
        r.ranges[i - 1].off + r.ranges[i - 1].len == r.ranges[i].off)
      ok_ = 0;
  }
  *nranges = r.nranges;
  sn_record_clear(&r);
  return ok_ && k == m->n;
}

static void
recorder_model(void)
{
  static struct model m;
  struct sn_recorder_opts o = { .idle_seconds = 0 };
  struct sn_recorder *rec;
  char path[600];
  unsigned seed = 12345;
  size_t n, nr = 0;
  uint64_t bytes;
  bool written;
  int i, round;

  for (round = 0; round < 3; round++) {
    size_t limit = round == 2 ? 3000 : 0;

    memset(&m, 0, sizeof m);
    snprintf(path, sizeof path, "%s/model%d.json", tmpdir, round);
    o.path = path;
    o.limit_bytes = limit;
    rec = sn_recorder_new(&o, digests, MLAYERS);
    for (i = 0; i < 400; i++) {
      int layer = (int) (rand_r(&seed) % MLAYERS);
      int off = (int) (rand_r(&seed) % (MSIZE - 100));
      int len = 1 + (int) (rand_r(&seed) % (round == 0 ? 100 : 20));

      /* Round 1: mostly reads that continue the last one. */
      if (round == 1 && m.n && i % 4) {
        layer = m.order[m.n - 1].layer;
        off = m.order[m.n - 1].off + 1;
        if (off + len > MSIZE)
          off = 0;
      }
      sn_recorder_note(rec, (size_t) layer, (uint64_t) off, (uint64_t) len);
      model_note(&m, layer, off, len, limit);
    }
    sn_recorder_note(rec, MLAYERS, 0, 10);  /* no such layer: ignored */
    sn_recorder_stats(rec, &n, &bytes, &written);
    ok(bytes == m.n && !written, "round %d: %llu bytes recorded, not written "
       "yet", round, (unsigned long long) bytes);
    OK(sn_recorder_finish(rec) == 0 && access(path, F_OK) == 0,
       "round %d: finish writes it: %s", round, ERR);
    ok(matches(path, &m, &nr), "round %d: the record is exactly the model's "
       "bytes in first-read order (%zu ranges)%s", round, nr,
       limit ? ", cut at the limit" : "");
    sn_recorder_note(rec, 0, MSIZE - 10, 5);
    sn_recorder_stats(rec, &n, &bytes, &written);
    ok(bytes == m.n && written, "round %d: notes after the end are ignored",
       round);
    ok(sn_recorder_finish(rec) == 0, "round %d: finish again: no-op", round);
    sn_recorder_free(rec);
  }
}

static void
recorder_idle(void)
{
  struct sn_recorder_opts o = { .idle_seconds = 0.2 };
  struct sn_recorder *rec;
  struct sn_record r;
  char path[600];
  uint8_t *buf;
  size_t len;
  int i, c_;

  snprintf(path, sizeof path, "%s/idle.json", tmpdir);
  o.path = path;
  rec = sn_recorder_new(&o, digests, MLAYERS);
  c_ = rec && sn_recorder_start(rec) == 0;
  ok(c_, "recorder with a 0.2 s idle gap: %s", ERR);
  usleep(400000);
  ok(access(path, F_OK) != 0, "no read yet: no record, however long");
  sn_recorder_note(rec, 1, 100, 50);
  sn_recorder_note(rec, 1, 150, 50);
  sn_recorder_note(rec, 0, 0, 10);
  for (i = 0; i < 100 && access(path, F_OK) != 0; i++)
    usleep(100000);
  ok(access(path, F_OK) == 0, "the idle gap wrote it while running");
  c_ = sn_read_file(path, 1 << 20, true, &buf, &len) == 0 &&
    sn_record_parse(buf, len, &r) == 0;
  if (c_)
    free(buf);
  ok(c_ && r.nranges == 2 && r.nlayers == 2 && strcmp(r.layers[0], DB) == 0 &&
     r.ranges[0].off == 100 && r.ranges[0].len == 100 &&
     r.ranges[1].layer == 1, "it holds the two merged reads of layer 1, "
     "then layer 0 (listed in first-read order)");
  if (c_)
    sn_record_clear(&r);
  sn_recorder_note(rec, 2, 0, 10);
  sn_recorder_free(rec);
  c_ = sn_read_file(path, 1 << 20, true, &buf, &len) == 0 &&
    sn_record_parse(buf, len, &r) == 0;
  if (c_)
    free(buf);
  ok(c_ && r.nranges == 2, "a read after the gap is not added");
  if (c_)
    sn_record_clear(&r);

  snprintf(path, sizeof path, "%s/empty.json", tmpdir);
  o.path = path;
  rec = sn_recorder_new(&o, digests, MLAYERS);
  sn_recorder_free(rec);
  c_ = sn_read_file(path, 1 << 20, true, &buf, &len) == 0 &&
    sn_record_parse(buf, len, &r) == 0;
  if (c_)
    free(buf);
  ok(c_ && r.nranges == 0 && r.nlayers == 0, "no read at all: an empty "
     "record is written at the end");
  if (c_)
    sn_record_clear(&r);
  {
    /* An image may hold the same blob twice (a repeated empty layer): the
     * record names it once, and both layers' reads land in it. */
    const char *twice[3] = { DA, DB, DA };

    snprintf(path, sizeof path, "%s/twice.json", tmpdir);
    o.path = path;
    rec = sn_recorder_new(&o, twice, 3);
    sn_recorder_note(rec, 2, 0, 100);
    sn_recorder_note(rec, 1, 0, 10);
    sn_recorder_note(rec, 0, 50, 100);
    sn_recorder_free(rec);
    c_ = sn_read_file(path, 1 << 20, true, &buf, &len) == 0 &&
      sn_record_parse(buf, len, &r) == 0;
    if (c_)
      free(buf);
    ok(c_ && r.nlayers == 2 && strcmp(r.layers[0], DA) == 0 &&
       r.nranges == 3 && r.ranges[0].layer == 0 && r.ranges[0].off == 0 &&
       r.ranges[0].len == 100 && r.ranges[1].layer == 1 &&
       r.ranges[2].layer == 0 && r.ranges[2].off == 100 &&
       r.ranges[2].len == 50,
       "a blob twice in the image: named once, both layers' reads in it, "
       "no byte twice: %s", ERR);
    if (c_)
      sn_record_clear(&r);
  }
  o.path = "";
  c_ = sn_recorder_new(&o, digests, MLAYERS) == NULL;
  ok(c_, "no path: refused: %s", WHY);
  snprintf(path, sizeof path, "%s/no/such/dir/x.json", tmpdir);
  o.path = path;
  rec = sn_recorder_new(&o, digests, MLAYERS);
  sn_recorder_note(rec, 0, 0, 1);
  c_ = sn_recorder_finish(rec) == -1;
  ok(c_, "an unwritable path fails the write: %s", WHY);
  sn_recorder_free(rec);
}

struct tjob {
  struct sn_recorder *rec;
  int id;
};

static void *
noter(void *arg)
{
  struct tjob *j = arg;
  unsigned seed = (unsigned) j->id * 7919u;
  int i;

  for (i = 0; i < 2000; i++)
    sn_recorder_note(j->rec, rand_r(&seed) % 2,
                     (uint64_t) (rand_r(&seed) % 100000),
                     1 + (uint64_t) (rand_r(&seed) % 4000));
  return NULL;
}

static void
recorder_threads(void)
{
  struct sn_recorder_opts o = { 0 };
  struct sn_recorder *rec;
  struct sn_record r;
  pthread_t t[8];
  struct tjob j[8];
  char path[600];
  static unsigned char seen[2][104000];
  uint8_t *buf;
  size_t len, i, twice = 0;
  uint64_t b, total = 0;
  int c_;

  snprintf(path, sizeof path, "%s/threads.json", tmpdir);
  o.path = path;
  rec = sn_recorder_new(&o, digests, 2);
  for (i = 0; i < 8; i++) {
    j[i] = (struct tjob) { rec, (int) i + 1 };
    pthread_create(&t[i], NULL, noter, &j[i]);
  }
  for (i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  sn_recorder_free(rec);
  c_ = sn_read_file(path, 1 << 24, true, &buf, &len) == 0 &&
    sn_record_parse(buf, len, &r) == 0;
  if (c_)
    free(buf);
  ok(c_, "8 threads x 2000 reads: a valid record");
  for (i = 0; c_ && i < r.nranges; i++)
    for (b = r.ranges[i].off; b < r.ranges[i].off + r.ranges[i].len; b++) {
      int layer = strcmp(r.layers[r.ranges[i].layer], DA) == 0 ? 0 : 1;

      twice += seen[layer][b]++;
      total++;
    }
  ok(c_ && twice == 0 && total > 100000, "no byte recorded twice (%llu "
     "bytes)", (unsigned long long) total);
  if (c_)
    sn_record_clear(&r);
}

int
main(void)
{
  tap_tmpdir(tmpdir, sizeof tmpdir, "record");
  format();
  recorder_model();
  recorder_idle();
  recorder_threads();
  tap_rm_tree(tmpdir);
  return done_testing();
}
