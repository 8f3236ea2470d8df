/* soci-nbd tests: the dense index builder (lib/dense/dense-build.c) riding
 * on the ztoc builder — on tar layers made here and compressed by zlib in
 * several ways (levels, full and sync flushes, several members) and, when
 * installed, by pigz and gzip: the SOCI ztoc stays byte-identical, every
 * sub-span's digest and sparse window reproduce the layer, and the
 * checkpoints follow the placement rule (docs/dense-index.md). */
#include <config.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "dense/dense.h"
#include "soci/build.h"
#include "soci/zinfo.h"
#include "soci/ztoc.h"
#include "util/digest.h"
#include "util/err.h"
#include "tap.h"

#define MIN_GAP ((int64_t) 16 << 10)
#define MAX_GAP ((int64_t) 64 << 10)

/* ---- making layers ------------------------------------------------------ */


/* One ustar entry whose data is text-like (words) or random bytes. */
static void
tar_entry(struct tap_buf *t, const char *name, char type, size_t size,
          bool random, uint64_t seed)
{
  static const char *words[] = {
    "the ", "layer ", "index ", "window ", "block ", "deflate ", "span ",
    "file\n", "of ", "and ", "checkpoint ", "zstd ", "gzip ", "tar ",
  };
  uint8_t pad[512] = { 0 };
  size_t n = 0;

  tap_tar_header(t, name, type, size, 1700000000,
                 type == '2' ? "target" : NULL);
  seed = seed * 2654435761u + 1;
  while (n < size) {
    uint64_t r = tap_xorshift(&seed);

    if (random) {
      size_t k = size - n < 8 ? size - n : 8;
      tap_buf_put(t, &r, k);
      n += k;
    }
    else {
      const char *w = words[r % (sizeof words / sizeof *words)];
      size_t k = strlen(w) < size - n ? strlen(w) : size - n;
      tap_buf_put(t, w, k);
      n += k;
    }
  }
  if (size % 512)
    tap_buf_put(t, pad, 512 - size % 512);
}

/* The test tar: many files of varied sizes, text and random data, large
 * files, a few entries without data, the end marker and record padding. */
static void
make_tar(struct tap_buf *t)
{
  static const uint8_t zero[1024];
  uint64_t s = 0x9e3779b97f4a7c15u;
  char name[64];
  int i;

  tar_entry(t, "d/", '5', 0, false, 0);
  for (i = 0; i < 160; i++) {
    uint64_t r = tap_xorshift(&s);
    size_t size = i % 23 == 0 ? 300000 + r % 400000
                : i % 7 == 0 ? 20000 + r % 60000
                : r % 5000;

    snprintf(name, sizeof name, "d/f%03d", i);
    tar_entry(t, name, '0', i == 5 ? 0 : size, i % 3 == 1, r);
    if (i % 40 == 0)
      tar_entry(t, "d/link", '2', 0, false, 0);
  }
  tap_buf_put(t, zero, sizeof zero);
  while (t->len % 10240)
    tap_buf_put(t, zero, 512);
}

/* gzip tar[0..len) with zlib: level, flush every `every` input bytes (0:
 * never) with `flush`, a new member every `member` bytes (0: one). */
static void
zlib_gzip(const uint8_t *tar, size_t len, int level, size_t every, int flush,
          size_t member, struct tap_buf *gz)
{
  uint8_t out[65536];
  size_t pos = 0;

  while (pos < len || (pos == 0 && len == 0)) {
    size_t mend = member ? pos + member : len;
    z_stream z;
    int ret;

    if (mend > len)
      mend = len;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      abort();
    do {
      size_t n = mend - pos, step = every ? every : n;
      int f;

      if (n > step)
        n = step;
      f = pos + n == mend ? Z_FINISH : every ? flush : Z_NO_FLUSH;
      z.next_in = (Bytef *) tar + pos;
      z.avail_in = (uInt) n;
      do {
        z.next_out = out;
        z.avail_out = sizeof out;
        ret = deflate(&z, f);
        tap_buf_put(gz, out, sizeof out - z.avail_out);
      } while (z.avail_out == 0 || (f == Z_FINISH && ret != Z_STREAM_END));
      pos += n;
    } while (pos < mend);
    deflateEnd(&z);
    if (len == 0)
      break;
  }
}

/* Inflate every member of gz (zlib), all output into out. */
static int
gunzip(const uint8_t *gz, size_t len, struct tap_buf *out)
{
  uint8_t o[65536];
  z_stream z;
  int ret;

  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 47) != Z_OK)
    return -1;
  z.next_in = (Bytef *) gz;
  z.avail_in = (uInt) len;
  for (;;) {
    z.next_out = o;
    z.avail_out = sizeof o;
    ret = inflate(&z, Z_NO_FLUSH);
    tap_buf_put(out, o, sizeof o - z.avail_out);
    if (ret == Z_STREAM_END) {
      if (z.avail_in == 0)
        break;
      inflateReset(&z);
    }
    else if (ret != Z_OK) {
      inflateEnd(&z);
      return -1;
    }
  }
  inflateEnd(&z);
  return 0;
}

/* ---- building ------------------------------------------------------------ */

static const size_t chunks[] = { 1, 7, 4093, 65536 + 17, 300001, 33, 131072 };

/* The SOCI ztoc alone, fed in one piece, encoded. */
static int
ztoc_alone(const uint8_t *gz, size_t len, uint8_t **enc, size_t *elen)
{
  struct sn_build_opts o = { .build_tool = SN_REFERENCE_BUILD_TOOL };
  struct sn_ztoc_builder *b = sn_ztoc_builder_new(SN_COMP_GZIP, &o);
  struct sn_ztoc *z = NULL;
  int r = -1;

  if (b && sn_ztoc_builder_feed(b, gz, len) == 0 &&
      (z = sn_ztoc_builder_finish(b, NULL)) != NULL)
    r = sn_ztoc_encode(z, enc, elen);
  sn_ztoc_free(z);
  sn_ztoc_builder_free(b);
  return r;
}

struct built {
  struct sn_ztoc *z, *table;
  uint8_t *win;
  size_t winlen;
};

/* The ztoc and the dense index in one pass, fed in odd chunks; dense
 * gets dgz (the layer, or a corrupted copy) and the ztoc builder gz. */
static int
build_comp(enum sn_compression comp, const uint8_t *gz, const uint8_t *dgz,
           size_t len, const struct sn_dense_opts *dopts, struct built *out)
{
  struct sn_build_opts o = { .build_tool = SN_REFERENCE_BUILD_TOOL };
  struct sn_ztoc_builder *b = sn_ztoc_builder_new(comp, &o);
  struct sn_dense_builder *d = b ? sn_dense_builder_new(b, dopts) : NULL;
  size_t pos = 0, i = 0;
  int r = -1;

  memset(out, 0, sizeof *out);
  if (d == NULL)
    goto done;
  while (pos < len) {
    size_t n = chunks[i++ % (sizeof chunks / sizeof *chunks)];

    if (n > len - pos)
      n = len - pos;
    if (sn_dense_builder_feed(d, dgz + pos, n) == -1 ||
        sn_ztoc_builder_feed(b, gz + pos, n) == -1)
      goto done;
    pos += n;
  }
  out->z = sn_ztoc_builder_finish(b, NULL);
  if (out->z && sn_dense_builder_finish(d, out->z, &out->table, &out->win,
                                        &out->winlen) == 0)
    r = 0;
  else {
    sn_ztoc_free(out->z);       /* the caller frees only what succeeded */
    out->z = NULL;
  }

done:
  sn_ztoc_builder_free(b);
  sn_dense_builder_free(d);
  return r;
}

static int
build_both(const uint8_t *gz, const uint8_t *dgz, size_t len,
           const struct sn_dense_opts *dopts, struct built *out)
{
  return build_comp(SN_COMP_GZIP, gz, dgz, len, dopts, out);
}

static void
built_free(struct built *b)
{
  sn_ztoc_free(b->z);
  sn_ztoc_free(b->table);
  free(b->win);
}

/* ---- checks -------------------------------------------------------------- */

/* The boundary hook: note every boundary (empty blocks' too, as the
 * dense builder sees them). */
static int
record_boundary(void *opaque, int64_t in, unsigned bits, int64_t out)
{
  struct sn_zinfo *zi = opaque;

  zi->cp[zi->nspans++] = (struct sn_checkpoint) { .in = in, .out = out,
                                                  .bits = (uint8_t) bits };
  return 0;
}

/* Every block boundary, as the zinfo builder's boundary hook reports
 * them. */
static struct sn_zinfo *
all_boundaries(const uint8_t *gz, size_t len)
{
  struct sn_zinfo_builder *b = sn_zinfo_builder_new(SN_COMP_GZIP, 0, NULL,
                                                    NULL);
  struct sn_zinfo *zi = calloc(1, sizeof *zi), *ignored = NULL;

  zi->cp = calloc(len / 4 + 16, sizeof *zi->cp);
  if (b) {
    sn_zinfo_builder_set_boundary_hook(b, record_boundary, zi);
    if (sn_zinfo_builder_feed(b, gz, len) == 0)
      sn_zinfo_builder_finish(b, &ignored, NULL, NULL);
  }
  sn_zinfo_free(ignored);
  sn_zinfo_builder_free(b);
  return zi;
}

/* Every boundary of a zstd layer, as the zinfo builder reports them. */
static struct sn_zinfo *
zstd_boundaries(const uint8_t *zs, size_t len)
{
  struct sn_zinfo_builder *b = sn_zinfo_builder_new(SN_COMP_ZSTD, 0, NULL,
                                                    NULL);
  struct sn_zinfo *zi = calloc(1, sizeof *zi), *ignored = NULL;
  size_t pos = 0, i = 0;

  zi->cp = calloc(len / 4 + 16, sizeof *zi->cp);
  if (b) {
    sn_zinfo_builder_set_boundary_hook(b, record_boundary, zi);
    while (pos < len) {
      size_t n = chunks[i++ % (sizeof chunks / sizeof *chunks)];

      n = n < len - pos ? n : len - pos;
      if (sn_zinfo_builder_feed(b, zs + pos, n) == -1)
        break;
      pos += n;
    }
    sn_zinfo_builder_finish(b, &ignored, NULL, NULL);
  }
  sn_zinfo_free(ignored);
  sn_zinfo_builder_free(b);
  return zi;
}

/* Is there a file's data start in [lo, hi)? */
static bool
file_in(const struct sn_ztoc *z, int64_t lo, int64_t hi)
{
  size_t i;

  for (i = 0; i < z->nfiles; i++)
    if (z->files[i].ftype == SN_FT_REG && z->files[i].size > 0 &&
        z->files[i].offset >= lo && z->files[i].offset < hi)
      return true;
  return false;
}

/* The placement rule applied to every boundary (without the ones at the
 * output offset of the one before): 0 if zi's checkpoints are exactly the
 * ones it takes; *gap_ok: spacing <= max_gap wherever a boundary lay
 * between; *files: blocks with a file start, *files_cp: those with a
 * checkpoint. */
static int
check_placement(const struct sn_zinfo *zi, const struct sn_zinfo *all,
                const struct sn_ztoc *z, int64_t total_out, int64_t min_gap,
                int64_t max_gap, bool *gap_ok, size_t *files,
                size_t *files_cp)
{
  struct sn_checkpoint *b = malloc(all->nspans * sizeof *b);
  size_t nb = 0, i, t = 0;
  int64_t last, last_out = 0;
  int bad = 0;

  /* Of boundaries at one output offset, the last counts; a checkpoint is
   * decided when the first of the next offset arrives (its in: fin[]). */
  int64_t *fin = malloc(all->nspans * sizeof *fin);

  for (i = 0; i < all->nspans; i++) {
    if (nb > 1 && all->cp[i].out == b[nb - 1].out)
      nb--;
    else
      fin[nb] = all->cp[i].in;
    b[nb++] = all->cp[i];
  }
  *gap_ok = true;
  *files = *files_cp = 0;
  if (zi->nspans == 0 || zi->cp[0].in != b[0].in || zi->cp[0].out != 0)
    bad = 1;
  last = b[0].in;
  t = 1;
  for (i = 1; i < nb && !bad; i++) {
    int64_t next_in = i + 1 < nb ? fin[i + 1] : zi->compressed_size;
    int64_t next_out = i + 1 < nb ? b[i + 1].out : total_out;
    bool f = file_in(z, b[i].out, next_out);
    bool take = (f && b[i].in - last >= min_gap) || next_in - last > max_gap ||
                next_out - last_out > ((int64_t) 4 << 20);
    bool have = t < zi->nspans && zi->cp[t].in == b[i].in &&
                zi->cp[t].bits == b[i].bits && zi->cp[t].out == b[i].out;

    if (take != have) {
      diag("boundary %zu (in %lld out %lld, last %lld, next_in %lld "
           "next_out %lld, file %d): rule says %d, builder %d (cp %zu in "
           "%lld)", i, (long long) b[i].in, (long long) b[i].out,
           (long long) last, (long long) next_in, (long long) next_out, f,
           take, have, t, t < zi->nspans ? (long long) zi->cp[t].in : -1);
      bad = 1;
    }
    *files += f;
    *files_cp += f && have;
    if (have) {
      if (b[i].in - last > max_gap && i > 0 && b[i - 1].in > last)
        *gap_ok = false;
      last = b[i].in;
      last_out = b[i].out;
      t++;
    }
  }
  if (t != zi->nspans)
    bad = 1;
  free(fin);
  free(b);
  return bad ? -1 : 0;
}

/* Every sub-span: digest, and decoding from its own window alone and as
 * a run of up to 4 sub-spans; returns how many failed. */
static size_t
check_spans(const struct sn_zinfo *zi, const struct built *bt,
            const uint8_t *gz, const uint8_t *out, size_t *nowin)
{
  uint8_t *dec = malloc(64 << 20), win[SN_ZINFO_WINSIZE];
  size_t i, bad = 0;

  *nowin = 0;
  for (i = 0; i < zi->nspans; i++) {
    const struct sn_winref *r = &zi->winref[i];
    size_t last = i + 3 < zi->nspans ? i + 3 : zi->nspans - 1, j;
    struct sn_span s, e;
    char dg[SN_DIGEST_STRLEN + 1];

    sn_zinfo_span(zi, i, &s);
    sn_digest_of(gz + s.comp_start, (size_t) (s.comp_end - s.comp_start), dg);
    if (strcmp(dg, bt->table->span_digests[i].data) != 0) {
      diag("sub-span %zu: digest differs", i);
      bad++;
    }
    if (r->len == 0) {
      memset(win, 0, sizeof win);
      ++*nowin;
    }
    else if ((uint64_t) r->off + r->len > bt->winlen ||
             sn_dense_window_unpack(r, bt->win + r->off, r->len, win) == -1) {
      diag("sub-span %zu: window: %s", i, sn_error());
      bad++;
      continue;
    }
    for (j = i; j <= last; j += last - i ? last - i : 1) {
      sn_zinfo_span(zi, j, &e);
      if (sn_zinfo_decode_run(zi, i, j, win, gz + s.comp_start,
                              (size_t) (e.comp_end - s.comp_start), dec,
                              (size_t) (e.uncomp_end - s.uncomp_start)) ||
          memcmp(dec, out + s.uncomp_start,
                 (size_t) (e.uncomp_end - s.uncomp_start)) != 0) {
        diag("sub-spans %zu-%zu: decode differs: %s", i, j, sn_error());
        bad++;
      }
      if (j == last)
        break;
    }
  }
  free(dec);
  return bad;
}

static bool
bytes_eq(const struct sn_bytes *a, const struct sn_bytes *b)
{
  return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data,
                                                    a->len) == 0);
}

/* The table's files are the ztoc's, field by field. */
static bool
same_files(const struct sn_ztoc *t, const struct sn_ztoc *z)
{
  size_t i, k;

  if (t->nfiles != z->nfiles)
    return false;
  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *a = &t->files[i], *b = &z->files[i];

    if (!bytes_eq(&a->name, &b->name) || !bytes_eq(&a->type, &b->type) ||
        !bytes_eq(&a->linkname, &b->linkname) ||
        !bytes_eq(&a->uname, &b->uname) || !bytes_eq(&a->gname, &b->gname) ||
        !bytes_eq(&a->mod_time, &b->mod_time) || a->offset != b->offset ||
        a->size != b->size || a->mode != b->mode || a->uid != b->uid ||
        a->gid != b->gid || a->devmajor != b->devmajor ||
        a->devminor != b->devminor || a->npax != b->npax)
      return false;
    for (k = 0; k < a->npax; k++)
      if (!bytes_eq(&a->pax[k].key, &b->pax[k].key) ||
          !bytes_eq(&a->pax[k].value, &b->pax[k].value))
        return false;
  }
  return true;
}

/* The dense index is the same built with the other threading (o's
 * thread flipped): the table's encoding and the windows blob. */
static void
same_threaded(const char *name, const uint8_t *gz, size_t len,
              const struct sn_dense_opts *o, const struct built *bt)
{
  struct sn_dense_opts flip = o ? *o : (struct sn_dense_opts) { 0 };
  struct built other;
  uint8_t *a = NULL, *b = NULL;
  size_t alen = 0, blen = 0;
  bool same;

  flip.thread = !flip.thread;
  if (build_both(gz, gz, len, &flip, &other) != 0) {
    ok(0, "%s: built again %s a helper thread (%s)", name,
       flip.thread ? "with" : "without", sn_error());
    return;
  }
  same = sn_dense_table_encode(bt->table, &a, &alen) == 0 &&
         sn_dense_table_encode(other.table, &b, &blen) == 0 &&
         alen == blen && memcmp(a, b, alen) == 0 &&
         bt->winlen == other.winlen &&
         (bt->winlen == 0 || memcmp(bt->win, other.win, bt->winlen) == 0);
  ok(same, "%s: the same table and windows %s a helper thread", name,
     flip.thread ? "with" : "without");
  free(a);
  free(b);
  built_free(&other);
}

/* Everything about one layer. */
static void
check_layer(const char *name, const uint8_t *gz, size_t len,
            const struct sn_dense_opts *o)
{
  struct tap_buf out = { 0 };
  struct built bt;
  struct sn_zinfo *zi = NULL, *all = NULL;
  uint8_t *ref = NULL, *enc = NULL;
  size_t rlen, elen, nowin = 0, files = 0, files_cp = 0;
  int64_t min_gap = o && o->min_gap ? o->min_gap : MIN_GAP;
  int64_t max_gap = o && o->max_gap ? o->max_gap : MAX_GAP;
  bool gap_ok = false;
  int r;

  r = build_both(gz, gz, len, o, &bt);
  OK(r == 0, "%s: ztoc and dense index built in one pass (%s)", name, ERR);
  if (r != 0)
    goto out;
  same_threaded(name, gz, len, o, &bt);
  ok(same_files(bt.table, bt.z), "%s: the table's %zu files are the "
     "ztoc's, field by field", name, bt.z->nfiles);
  OK(ztoc_alone(gz, len, &ref, &rlen) == 0 &&
     sn_ztoc_encode(bt.z, &enc, &elen) == 0 && rlen == elen &&
     memcmp(ref, enc, rlen) == 0,
     "%s: the SOCI ztoc is byte-identical to the one built alone", name);
  zi = sn_dense_cp_parse(bt.table->checkpoints, bt.table->checkpoints_len);
  OK(zi != NULL, "%s: the dense checkpoint table parses (%s)", name, ERR);
  if (zi == NULL)
    goto out;
  zi->compressed_size = bt.table->compressed_size;
  zi->uncompressed_size = bt.table->uncompressed_size;
  ok(zi->nspans == (size_t) bt.table->max_span_id + 1 &&
     zi->nspans == bt.table->nspan_digests &&
     bt.table->compressed_size == (int64_t) len &&
     bt.table->uncompressed_size == bt.z->uncompressed_size &&
     bt.table->nfiles == bt.z->nfiles &&
     zi->windows_size == (int64_t) bt.winlen,
     "%s: table: %zu checkpoints, sizes and files as the ztoc's", name,
     zi->nspans);
  if (gunzip(gz, len, &out) == -1 ||
      out.len < (size_t) bt.z->uncompressed_size) {
    ok(0, "%s: zlib inflates the layer", name);
    goto out;
  }
  OK(check_spans(zi, &bt, gz, out.p, &nowin) == 0,
     "%s: every sub-span's digest matches, its window decodes it and the "
     "next 3 (%zu without a window, windows %zu bytes)", name, nowin,
     bt.winlen);
  all = all_boundaries(gz, len);
  OK(all && check_placement(zi, all, bt.z, (int64_t) out.len, min_gap,
                            max_gap, &gap_ok, &files, &files_cp) == 0,
     "%s: checkpoints are the placement rule's (%zu of %zu boundaries)",
     name, zi->nspans, all ? all->nspans : 0);
  ok(all && gap_ok, "%s: spacing <= %lld wherever a boundary allows", name,
     (long long) max_gap);
  if (min_gap == 1)
    ok(files == files_cp && files > 0,
       "%s: a checkpoint right before each file (%zu of %zu blocks with a "
       "file start)", name, files_cp, files);

out:
  if (r == 0)
    built_free(&bt);
  sn_zinfo_free(zi);
  sn_zinfo_free(all);
  free(ref);
  free(enc);
  free(out.p);
}

/* ---- layers made by pigz and gzip ---------------------------------------- */

/* Run prog with args on the tar at path, its stdout into a buffer.  1:
 * not installed. */
static int
run_compressor(const char *dir, const char *const argv[], struct tap_buf *gz)
{
  char outp[600];
  size_t n;
  uint8_t *data;
  int status, fd;
  pid_t pid;

  snprintf(outp, sizeof outp, "%s/out.gz", dir);
  pid = fork();
  if (pid == -1)
    return -1;
  if (pid == 0) {
    fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd == -1 || dup2(fd, 1) == -1)
      _exit(126);
    execvp(argv[0], (char *const *) argv);
    _exit(127);
  }
  if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status))
    return -1;
  if (WEXITSTATUS(status) == 127)
    return 1;
  if (WEXITSTATUS(status) != 0)
    return -1;
  data = slurp(outp, &n);
  tap_buf_put(gz, data, n);
  free(data);
  return 0;
}

static void
external(const char *dir, const struct tap_buf *tar)
{
  static const char *const pigz[] = { "pigz", "-c", "-6", NULL, NULL };
  static const char *const gzip[] = { "gzip", "-c", "-9", NULL, NULL };
  const char *const *progs[] = { pigz, gzip };
  char path[600];
  FILE *f;
  size_t i;

  snprintf(path, sizeof path, "%s/layer.tar", dir);
  f = fopen(path, "wb");
  if (f == NULL || fwrite(tar->p, 1, tar->len, f) != tar->len ||
      fclose(f) != 0) {
    ok(0, "write %s", path);
    return;
  }
  for (i = 0; i < 2; i++) {
    const char *argv[5];
    struct tap_buf gz = { 0 };
    int r;

    memcpy(argv, progs[i], sizeof argv);
    argv[3] = path;
    r = run_compressor(dir, argv, &gz);
    if (r == 1)
      ok(1, "# SKIP %s is not installed", argv[0]);
    else if (r == -1)
      ok(0, "%s ran", argv[0]);
    else
      check_layer(argv[0], gz.p, gz.len, NULL);
    free(gz.p);
  }
}

/* ---- refusals ------------------------------------------------------------ */

static void
refusals(const struct tap_buf *gz)
{
  struct sn_build_opts o = { 0 };
  struct sn_ztoc_builder *b;
  struct sn_dense_builder *d;
  struct sn_dense_opts bad = { .min_gap = 100, .max_gap = 50 };
  struct built bt;
  struct sn_ztoc *z, *table = NULL;
  uint8_t *copy, *win = NULL;
  size_t i, winlen;
  int r;

  b = sn_ztoc_builder_new(SN_COMP_UNCOMPRESSED, &o);
  d = sn_dense_builder_new(b, NULL);
  OK(b && d == NULL, "refused on an uncompressed layer (%s)", WHY);
  sn_ztoc_builder_free(b);

  b = sn_ztoc_builder_new(SN_COMP_GZIP, &o);
  d = sn_dense_builder_new(b, &bad);
  OK(b && d == NULL, "refused: max_gap below min_gap (%s)", WHY);
  r = b ? sn_ztoc_builder_feed(b, gz->p, 100) : -1;
  d = r == 0 ? sn_dense_builder_new(b, NULL) : NULL;
  OK(r == 0 && d == NULL, "refused after the first feed (%s)", WHY);
  sn_ztoc_builder_free(b);

  b = sn_ztoc_builder_new(SN_COMP_GZIP, &o);
  d = b ? sn_dense_builder_new(b, NULL) : NULL;
  copy = calloc(1, SN_DENSE_FEED_MAX + 1);
  OK(d && sn_dense_builder_feed(d, copy, SN_DENSE_FEED_MAX + 1) == -1,
     "a feed over SN_DENSE_FEED_MAX refused (%s)", WHY);
  free(copy);
  sn_ztoc_builder_free(b);
  sn_dense_builder_free(d);

  for (int t = 0; t < 2; t++) {
    struct sn_dense_opts th = { .thread = t };
    const char *how = t ? " (helper thread)" : "";

    /* The ztoc builder fed bytes the dense builder was not given first. */
    b = sn_ztoc_builder_new(SN_COMP_GZIP, &o);
    d = b ? sn_dense_builder_new(b, &th) : NULL;
    r = d ? sn_ztoc_builder_feed(b, gz->p, gz->len) : -1;
    z = r == 0 ? sn_ztoc_builder_finish(b, NULL) : NULL;
    OK(z && sn_dense_builder_finish(d, z, &table, &win, &winlen) == -1 &&
       strstr(sn_error(), "not fed"),
       "a dense builder not fed first%s: the ztoc is built, the dense index "
       "refused (%s)", how, WHY);
    sn_ztoc_free(z);
    sn_ztoc_builder_free(b);
    sn_dense_builder_free(d);

    /* The dense builder given other bytes than the layer (deflate data in
     * the middle garbled): the windows there cannot be made or verified. */
    copy = malloc(gz->len);
    memcpy(copy, gz->p, gz->len);
    for (i = gz->len / 2; i < gz->len / 2 + 200 && i < gz->len; i++)
      copy[i] ^= 0x5a;
    r = build_both(gz->p, copy, gz->len, &th, &bt);
    OK(r == -1, "a dense builder whose window check fails is refused%s (%s)",
       how, WHY);
    if (r == 0)
      built_free(&bt);
    free(copy);

    /* Freed half-way, its thread with messages still queued. */
    b = sn_ztoc_builder_new(SN_COMP_GZIP, &o);
    d = b ? sn_dense_builder_new(b, &th) : NULL;
    r = d && sn_dense_builder_feed(d, gz->p, gz->len / 2) == 0 &&
        sn_ztoc_builder_feed(b, gz->p, gz->len / 2) == 0 ? 0 : -1;
    sn_dense_builder_free(d);
    sn_ztoc_builder_free(b);
    ok(r == 0, "a dense builder freed half-way through the layer%s", how);
  }
}

/* ---- zstd layers ---------------------------------------------------------- */

#define MAXFRAMES 4096

/* zstd-compress tar in frames of `frame` input bytes (0: one frame), with
 * a skippable frame after the second and one at the end (where a seekable
 * layer's seek table is); *starts: where every frame starts, skippable
 * ones included (*n of them). */
static void
zstd_frames(const uint8_t *tar, size_t len, size_t frame, struct tap_buf *zs,
            int64_t *starts, size_t *n)
{
  static const uint8_t skip[] = { 0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0,
                                  1, 2, 3, 4 };
  size_t pos = 0, k = 0;

  *n = 0;
  while (pos < len) {
    size_t m = frame && len - pos > frame ? frame : len - pos;
    size_t cap = ZSTD_compressBound(m);
    uint8_t *o = malloc(cap);

    starts[(*n)++] = (int64_t) zs->len;
    tap_buf_put(zs, o, ZSTD_compress(o, cap, tar + pos, m, 3));
    free(o);
    pos += m;
    if (++k == 2 || pos == len) {
      starts[(*n)++] = (int64_t) zs->len;
      tap_buf_put(zs, skip, sizeof skip);
    }
  }
}

static bool
is_start(const int64_t *starts, size_t n, int64_t off)
{
  while (n-- > 0)
    if (starts[n] == off)
      return true;
  return false;
}

/* A zstd layer of many frames: boundaries at every frame start but the
 * trailing one's end; the dense table's checkpoints at frame starts, no
 * windows, every sub-span decoding on its own to the tar's bytes and
 * hashing as its table says; the file table that of the tar. */
static void
check_zstd(const struct tap_buf *tar)
{
  static int64_t starts[MAXFRAMES];
  struct tap_buf zs = { 0 }, one = { 0 };
  struct built bt, bu;
  struct sn_zinfo *bz = NULL, *zi = NULL;
  struct sn_ztoc *back = NULL;
  uint8_t *enc = NULL;
  size_t n, i, elen, bad = 0;
  bool at_starts = true, decodes = true, hashes = true;

  zstd_frames(tar->p, tar->len, 20000, &zs, starts, &n);
  diag("zstd layer: %zu bytes, %zu frames (2 skippable)", zs.len, n);
  bz = zstd_boundaries(zs.p, zs.len);
  for (i = 0; i < bz->nspans; i++)
    at_starts = at_starts && bz->cp[i].bits == 0 &&
                bz->cp[i].in == starts[i] && (i == 0 || bz->cp[i].out > 0);
  OK(bz->nspans == n && at_starts, "zstd: the boundaries are the %zu frame "
     "starts, (0, 0) first, the stream's end not one (%zu reported)", n,
     bz->nspans);
  sn_zinfo_free(bz);

  OK(build_comp(SN_COMP_ZSTD, zs.p, zs.p, zs.len, NULL, &bt) == 0,
     "zstd: the ztoc builder and the dense builder in one pass (%s)", ERR);
  if (bt.table == NULL) {
    free(zs.p);
    return;
  }
  zi = sn_zinfo_from_ztoc(bt.table);
  OK(zi && bt.table->compression == SN_COMP_ZSTD &&
     zi->compression == SN_COMP_ZSTD && zi->windows_size == 0 &&
     bt.winlen == 0 && zi->nspans > 1 && zi->nspans < n / 2,
     "a zstd table: %zu sub-spans of %zu frames, no windows (%s)",
     zi ? zi->nspans : 0, n, ERR);
  for (i = 0; zi && i < zi->nspans; i++) {
    struct sn_span sp;
    uint8_t d[SN_SHA256_LEN];
    char hex[SN_DIGEST_STRLEN + 1];
    uint8_t *out;

    sn_zinfo_span(zi, i, &sp);
    at_starts = at_starts && is_start(starts, n, zi->cp[i].in) &&
                zi->cp[i].bits == 0 && zi->winref[i].len == 0;
    out = malloc((size_t) (sp.uncomp_end - sp.uncomp_start) + 1);
    if (sn_zinfo_decode_span(zi, i, zs.p + sp.comp_start,
                             (size_t) (sp.comp_end - sp.comp_start), out,
                             (size_t) (sp.uncomp_end - sp.uncomp_start))
        == -1 || memcmp(out, tar->p + sp.uncomp_start,
                        (size_t) (sp.uncomp_end - sp.uncomp_start)) != 0)
      decodes = false, bad = i;
    free(out);
    sn_sha256(zs.p + sp.comp_start, (size_t) (sp.comp_end - sp.comp_start),
              d);
    sn_digest_format(d, hex);
    hashes = hashes && strcmp(hex, bt.table->span_digests[i].data) == 0;
  }
  ok(at_starts, "every checkpoint is a frame start, no bits, no window");
  OK(decodes, "every sub-span decodes on its own to the tar's bytes (first "
     "bad: %zu)", bad);
  ok(hashes, "every sub-span digest is its compressed bytes' SHA-256");

  /* The file table is the tar's. */
  {
    struct sn_ztoc_builder *tb = sn_ztoc_builder_new(SN_COMP_UNCOMPRESSED,
                                                     NULL);
    struct sn_ztoc *tz = tb && sn_ztoc_builder_feed(tb, tar->p, tar->len) == 0
      ? sn_ztoc_builder_finish(tb, NULL) : NULL;
    bool same = tz && tz->nfiles == bt.table->nfiles &&
                tz->uncompressed_size == bt.table->uncompressed_size;

    for (i = 0; same && i < tz->nfiles; i++)
      same = tz->files[i].offset == bt.table->files[i].offset &&
             tz->files[i].size == bt.table->files[i].size &&
             strcmp(tz->files[i].name.data,
                    bt.table->files[i].name.data) == 0;
    OK(same, "its file table is the uncompressed tar's (%zu files; %s)",
       bt.table->nfiles, ERR);
    sn_ztoc_free(tz);
    sn_ztoc_builder_free(tb);
  }

  OK(sn_dense_table_encode(bt.table, &enc, &elen) == 0 &&
     (back = sn_dense_table_decode(enc, elen)) != NULL &&
     back->compression == SN_COMP_ZSTD &&
     back->checkpoints_len == bt.table->checkpoints_len &&
     memcmp(back->checkpoints, bt.table->checkpoints,
            back->checkpoints_len) == 0,
     "the table blob round-trips, still zstd (%zu bytes; %s)", elen, ERR);
  sn_ztoc_free(back);
  free(enc);
  sn_zinfo_free(zi);
  built_free(&bt);

  /* One frame: nothing to restart at. */
  zstd_frames(tar->p, tar->len, 0, &one, starts, &n);
  OK(build_comp(SN_COMP_ZSTD, one.p, one.p, one.len, NULL, &bu) == -1 &&
     strstr(sn_error(), "one restart point"),
     "a zstd layer of one frame gets no dense index: %s", WHY);
  /* Cut inside the last frame. */
  OK(build_comp(SN_COMP_ZSTD, zs.p, zs.p, (size_t) starts[0] + 0, NULL,
                &bu) == -1, "an empty zstd layer refused: %s", WHY);
  OK(build_comp(SN_COMP_ZSTD, one.p, one.p, one.len - 20, NULL, &bu) == -1 &&
     strstr(sn_error(), "truncated zstd stream"),
     "a zstd layer ending inside a frame refused: %s", WHY);
  one.p[1] ^= 0xff;             /* the frame's magic */
  OK(build_comp(SN_COMP_ZSTD, one.p, one.p, one.len, NULL, &bu) == -1 &&
     strstr(sn_error(), "corrupt zstd frame"),
     "a corrupt zstd frame refused: %s", WHY);
  free(one.p);
  free(zs.p);
}

int
main(void)
{
  struct tap_buf tar = { 0 }, gz[7] = { { 0 } }, tiny = { 0 }, tinygz = { 0 };
  struct sn_dense_opts every = { .min_gap = 1, .max_gap = MAX_GAP };
  struct sn_dense_opts tight = { .min_gap = 4096, .max_gap = 8192 };
  static const char *names[] = {
    "zlib -1", "zlib -6", "zlib -9", "zlib -6 full flush/100000",
    "zlib -6 sync flush/30000", "zlib -6 4 members", "zlib -9 sync/7777",
  };
  char dir[512];
  size_t i;

  make_tar(&tar);
  diag("tar: %zu bytes", tar.len);
  zlib_gzip(tar.p, tar.len, 1, 0, Z_NO_FLUSH, 0, &gz[0]);
  zlib_gzip(tar.p, tar.len, 6, 0, Z_NO_FLUSH, 0, &gz[1]);
  zlib_gzip(tar.p, tar.len, 9, 0, Z_NO_FLUSH, 0, &gz[2]);
  zlib_gzip(tar.p, tar.len, 6, 100000, Z_FULL_FLUSH, 0, &gz[3]);
  zlib_gzip(tar.p, tar.len, 6, 30000, Z_SYNC_FLUSH, 0, &gz[4]);
  zlib_gzip(tar.p, tar.len, 6, 0, Z_NO_FLUSH, tar.len / 4 + 1, &gz[5]);
  zlib_gzip(tar.p, tar.len, 9, 7777, Z_SYNC_FLUSH, 1000000, &gz[6]);
  for (i = 0; i < 7; i++)
    check_layer(names[i], gz[i].p, gz[i].len, NULL);
  check_layer("zlib -6, min_gap 1", gz[1].p, gz[1].len, &every);
  check_layer("zlib -6 sync, min_gap 1", gz[4].p, gz[4].len, &every);
  check_layer("zlib -9 members, gaps 4K/8K", gz[6].p, gz[6].len, &tight);

  /* A layer of one small file: checkpoint 0 only. */
  tar_entry(&tiny, "a", '0', 100, false, 1);
  tap_buf_put(&tiny, (uint8_t[1024]) { 0 }, 1024);
  zlib_gzip(tiny.p, tiny.len, 6, 0, Z_NO_FLUSH, 0, &tinygz);
  check_layer("tiny", tinygz.p, tinygz.len, NULL);

  tap_tmpdir(dir, sizeof dir, "dense-build");
  external(dir, &tar);
  tap_rm_tree(dir);

  refusals(&gz[1]);
  check_zstd(&tar);

  for (i = 0; i < 7; i++)
    free(gz[i].p);
  free(tar.p);
  free(tiny.p);
  free(tinygz.p);
  return done_testing();
}
