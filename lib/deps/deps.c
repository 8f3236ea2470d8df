/* soci-nbd: dependency prefetch (deps.h, docs/dependency-prefetch.md) —
 * a path index over the export's layers, the dynamic linker's search
 * order, and one thread that reads each queued ELF file's DT_NEEDED names
 * (elf.c), stages the libraries they resolve to and queues them in turn. */
#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deps/deps.h"
#include "deps/elf.h"
#include "util/err.h"
#include "util/hash.h"

#define PATH_BUF 4096
#define MAX_HOPS 40                     /* symlinks followed, as Linux */
#define STAGE_BATCH ((int64_t) 512 << 10)

/* A path of the merged tree: the file that has it, or a whiteout (f
 * NULL).  key points into a ztoc name, or into owned (a whiteout's). */
struct pent {
  const char *key;
  size_t len;
  size_t layer;
  const struct sn_ztoc_file *f;
};

struct job {
  size_t layer;
  const struct sn_ztoc_file *f;
};

/* Per layer: which of its files were queued. */
struct dlayer {
  struct sn_deps_layer src;
  unsigned char *seen;                  /* by index in z->files */
};

struct sn_deps {
  struct dlayer *layers;
  size_t nlayers;
  struct pent *tab;                     /* open addressing, power of 2 */
  size_t cap;
  char **owned;
  size_t nowned;

  pthread_mutex_t lock;
  pthread_cond_t cond;                  /* queued, or closing */
  struct job *queue;                    /* FIFO, SN_DEPS_MAX_FILES */
  size_t qhead, qlen, queued;
  int64_t staged;                       /* bytes of files staged */
  bool started, closing;
  pthread_t thread;
  struct sn_deps_stats st;
};

/* ---- the path index --------------------------------------------------- */

static struct pent *
slot(struct sn_deps *d, const char *p, size_t n)
{
  size_t i = (size_t) sn_hash_bytes(SN_HASH_SEED, p, n) & (d->cap - 1);

  while (d->tab[i].key &&
         (d->tab[i].len != n || memcmp(d->tab[i].key, p, n) != 0))
    i = (i + 1) & (d->cap - 1);
  return &d->tab[i];
}

/* A ztoc name without "./" and '/' in front or '/' behind. */
static void
trim(const char **p, size_t *n)
{
  for (;;) {
    if (*n >= 2 && (*p)[0] == '.' && (*p)[1] == '/') {
      *p += 2;
      *n -= 2;
    }
    else if (*n >= 1 && (*p)[0] == '/') {
      (*p)++;
      (*n)--;
    }
    else
      break;
  }
  while (*n > 0 && (*p)[*n - 1] == '/')
    (*n)--;
}

static void
put(struct sn_deps *d, const char *key, size_t n, size_t layer,
    const struct sn_ztoc_file *f)
{
  struct pent *e = slot(d, key, n);

  if (e->key == NULL) {
    e->key = key;
    e->len = n;
  }
  e->layer = layer;
  e->f = f;
}

/* ".wh.NAME" in DIR hides DIR/NAME below: a key of our own for it. */
static int
put_whiteout(struct sn_deps *d, const char *p, size_t n, size_t layer)
{
  const char *base = memrchr(p, '/', n);
  size_t dlen = base ? (size_t) (base - p) + 1 : 0, blen = n - dlen;
  char *key, **o;

  if (blen == 12 && memcmp(p + dlen, ".wh..wh..opq", 12) == 0)
    return 0;                           /* opaque dir: kept (a hint) */
  if ((key = malloc(n - 4 + 1)) == NULL)
    return sn_oom();
  memcpy(key, p, dlen);
  memcpy(key + dlen, p + dlen + 4, blen - 4);
  key[n - 4] = 0;
  if ((o = realloc(d->owned, (d->nowned + 1) * sizeof *o)) == NULL) {
    free(key);
    return sn_oom();
  }
  d->owned = o;
  d->owned[d->nowned++] = key;
  put(d, key, n - 4, layer, NULL);
  return 0;
}

static int
index_layer(struct sn_deps *d, size_t k)
{
  const struct sn_ztoc *z = d->layers[k].src.z;
  size_t i;

  for (i = 0; i < z->nfiles; i++) {
    const struct sn_ztoc_file *f = &z->files[i];
    const char *p = (const char *) f->name.data, *b;
    size_t n = f->name.len;

    trim(&p, &n);
    if (n == 0)
      continue;
    b = memrchr(p, '/', n);
    b = b ? b + 1 : p;
    if ((size_t) (p + n - b) > 4 && memcmp(b, ".wh.", 4) == 0) {
      if (put_whiteout(d, p, n, k) == -1)
        return -1;
      continue;
    }
    put(d, p, n, k, f);
  }
  return 0;
}

/* The path index, built once, by its first user (the thread, off the
 * reads' path); -1 when it cannot be (then no name resolves). */
static int
build_index(struct sn_deps *d)
{
  size_t k, total = 0;

  if (d->tab)
    return 0;
  for (k = 0; k < d->nlayers; k++)
    total += d->layers[k].src.z->nfiles;
  for (d->cap = 16; d->cap < 2 * total + 16; d->cap *= 2)
    ;
  if ((d->tab = calloc(d->cap, sizeof *d->tab)) == NULL)
    return sn_oom();
  for (k = 0; k < d->nlayers; k++)
    if (index_layer(d, k) == -1) {
      free(d->tab);                     /* not half an index */
      d->tab = NULL;
      return -1;
    }
  return 0;
}

/* ---- resolving a path, as the kernel would ---------------------------- */

static const struct pent *
lookup(struct sn_deps *d, const char *p, size_t n)
{
  const struct pent *e = slot(d, p, n);

  return e->key ? e : NULL;
}

const struct sn_ztoc_file *
sn_deps_lookup(struct sn_deps *d, const char *path, size_t *layer)
{
  char cur[PATH_BUF], rest[PATH_BUF];
  size_t clen = 0, rlen = strlen(path), pos = 0;
  int hops = 0;
  const struct pent *e;

  if (rlen >= PATH_BUF || build_index(d) == -1)
    return NULL;
  memcpy(rest, path, rlen + 1);
again:
  for (;;) {
    size_t c, old = clen;

    while (pos < rlen && rest[pos] == '/')
      pos++;
    if (pos == rlen)
      break;
    for (c = pos; c < rlen && rest[c] != '/'; c++)
      ;
    if (c - pos == 1 && rest[pos] == '.') {
      pos = c;
      continue;
    }
    if (c - pos == 2 && rest[pos] == '.' && rest[pos + 1] == '.') {
      while (clen > 0 && cur[clen - 1] != '/')
        clen--;
      if (clen > 0)
        clen--;
      pos = c;
      continue;
    }
    if (clen + 1 + (c - pos) >= PATH_BUF)
      return NULL;
    if (clen > 0)
      cur[clen++] = '/';
    memcpy(cur + clen, rest + pos, c - pos);
    clen += c - pos;
    pos = c;
    e = lookup(d, cur, clen);
    if (e && e->f && e->f->ftype == SN_FT_SYMLINK) {
      const struct sn_bytes *t = &e->f->linkname;
      size_t left = rlen - pos;

      if (++hops > MAX_HOPS || t->len == 0 || t->len + 1 + left >= PATH_BUF)
        return NULL;
      /* rest := target + the rest after this component */
      memmove(rest + t->len, rest + pos, left + 1);
      memcpy(rest, t->data, t->len);
      rlen = t->len + left;
      pos = 0;
      clen = t->data[0] == '/' ? 0 : old;
    }
  }
  e = lookup(d, cur, clen);
  if (e == NULL || e->f == NULL)
    return NULL;
  if (e->f->ftype == SN_FT_HARDLINK) {
    const struct sn_bytes *t = &e->f->linkname;

    /* A hard link names its target from the archive's root. */
    if (++hops > MAX_HOPS || t->len == 0 || t->len >= PATH_BUF)
      return NULL;
    memcpy(rest, t->data, t->len);
    rest[t->len] = 0;
    rlen = t->len;
    pos = 0;
    clen = 0;
    goto again;
  }
  if (e->f->ftype != SN_FT_REG || e->f->size <= 0)
    return NULL;
  *layer = e->layer;
  return e->f;
}

/* The multiarch directory of a machine (Debian's triplets), or NULL. */
static const char *
triplet(uint16_t machine)
{
  switch (machine) {
  case 62: return "x86_64-linux-gnu";
  case 183: return "aarch64-linux-gnu";
  case 3: return "i386-linux-gnu";
  case 40: return "arm-linux-gnueabihf";
  case 21: return "powerpc64le-linux-gnu";
  case 22: return "s390x-linux-gnu";
  case 243: return "riscv64-linux-gnu";
  default: return NULL;
  }
}

/* Try DIR/NAME (dir n bytes, no leading '/'). */
static const struct sn_ztoc_file *
try_dir(struct sn_deps *d, const char *dir, size_t n, const char *name,
        size_t *layer)
{
  char p[PATH_BUF];

  while (n > 0 && dir[0] == '/') {
    dir++;
    n--;
  }
  if (n + 1 + strlen(name) >= sizeof p)
    return NULL;
  memcpy(p, dir, n);
  p[n] = '/';
  strcpy(p + n + 1, name);
  return sn_deps_lookup(d, p, layer);
}

/* The library name resolves to for an ELF file at origin (its directory):
 * its run path, then the system's directories (the ld.so.cache's usual
 * content), as the dynamic linker searches. */
static const struct sn_ztoc_file *
resolve(struct sn_deps *d, const char *name, const struct sn_elf_deps *ed,
        const char *origin, size_t olen, size_t *layer)
{
  static const char *const sys[] = {
    "lib64", "usr/lib64", "lib", "usr/lib", "usr/local/lib",
  };
  const struct sn_ztoc_file *f;
  const char *tri = triplet(ed->machine);
  char dir[64];
  size_t i;

  if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return NULL;
  for (const char *r = ed->runpath; r && *r;) {
    const char *end = strchr(r, ':');
    size_t n = end ? (size_t) (end - r) : strlen(r);
    char p[PATH_BUF];

    if (n >= 7 && (memcmp(r, "$ORIGIN", 7) == 0 ||
                   (n >= 9 && memcmp(r, "${ORIGIN}", 9) == 0))) {
      size_t skip = r[1] == '{' ? 9 : 7;

      if (olen + n - skip < sizeof p) {
        memcpy(p, origin, olen);
        memcpy(p + olen, r + skip, n - skip);
        if ((f = try_dir(d, p, olen + n - skip, name, layer)))
          return f;
      }
    }
    else if (n > 0 && r[0] == '/' && memchr(r, '$', n) == NULL &&
             (f = try_dir(d, r, n, name, layer)))
      return f;
    r = end ? end + 1 : r + n;
  }
  for (i = 0; tri && i < 2; i++) {
    snprintf(dir, sizeof dir, "%s/%s", i == 0 ? "lib" : "usr/lib", tri);
    if ((f = try_dir(d, dir, strlen(dir), name, layer)))
      return f;
  }
  for (i = 0; i < sizeof sys / sizeof *sys; i++)
    if ((f = try_dir(d, sys[i], strlen(sys[i]), name, layer)))
      return f;
  return NULL;
}

/* ---- the queue and its thread ----------------------------------------- */

struct fread {
  struct sn_layer *layer;
  const struct sn_ztoc_file *f;
};

static int
file_read(void *opaque, void *buf, size_t len, uint64_t off)
{
  struct fread *r = opaque;

  if (off > (uint64_t) r->f->size || len > (uint64_t) r->f->size - off)
    return sn_set_error("read beyond the file's %lld bytes",
                        (long long) r->f->size);
  return sn_layer_read_background(r->layer, buf, len,
                                  r->f->offset + (int64_t) off);
}

/* Queue f of layer k unless it was queued before (lock held): 1 if
 * queued now. */
static int
enqueue(struct sn_deps *d, size_t k, const struct sn_ztoc_file *f)
{
  struct dlayer *dl = &d->layers[k];
  size_t i = (size_t) (f - dl->src.z->files);

  if (dl->seen[i] || d->queued >= SN_DEPS_MAX_FILES || d->closing)
    return 0;
  dl->seen[i] = 1;
  d->queue[(d->qhead + d->qlen) % SN_DEPS_MAX_FILES] = (struct job) { k, f };
  d->qlen++;
  d->queued++;
  pthread_cond_broadcast(&d->cond);
  return 1;
}

/* Read job j's dependencies; stage and queue each library found. */
static void
work(struct sn_deps *d, const struct job *j)
{
  struct fread fr = { d->layers[j->layer].src.layer, j->f };
  struct sn_elf_deps ed;
  const char *name = (const char *) j->f->name.data, *slash;
  size_t nlen = j->f->name.len, olen, i;
  int r;

  /* A copy of the whole device reads every library anyway; a layer that
   * stages nothing would only fetch for the parse. */
  if (sn_layer_streaming(fr.layer) || !sn_layer_stages_files(fr.layer))
    return;
  trim(&name, &nlen);
  slash = memrchr(name, '/', nlen);
  olen = slash ? (size_t) (slash - name) : 0;
  r = sn_elf_deps_read(file_read, &fr, (uint64_t) j->f->size, &ed);
  pthread_mutex_lock(&d->lock);
  if (r == -1)
    d->st.errors++;
  else if (r == 0)
    d->st.files_parsed++;
  pthread_mutex_unlock(&d->lock);
  if (r != 0)
    return;
  for (i = 0; i < ed.nneeded; i++) {
    size_t k;
    const struct sn_ztoc_file *f = resolve(d, ed.needed[i], &ed, name, olen,
                                           &k);
    int64_t n = f && f->size < SN_DEPS_AHEAD ? f->size : SN_DEPS_AHEAD;
    int q;

    pthread_mutex_lock(&d->lock);
    if (f == NULL)
      d->st.not_found++;
    /* Staged bytes stay in memory until read: a bound for any image. */
    q = f && d->staged + n <= SN_DEPS_MAX_BYTES ? enqueue(d, k, f) : 0;
    if (q) {
      d->st.files_staged++;
      d->staged += n;
    }
    pthread_mutex_unlock(&d->lock);
    if (q) {
      /* Errors are left to the reads, which fetch what failed. */
      (void) sn_layer_stage_range(d->layers[k].src.layer, f->offset, n,
                                  STAGE_BATCH);
    }
  }
  sn_elf_deps_free(&ed);
}

static void *
deps_thread(void *arg)
{
  struct sn_deps *d = arg;

  pthread_mutex_lock(&d->lock);
  for (;;) {
    struct job j;

    while (d->qlen == 0 && !d->closing)
      pthread_cond_wait(&d->cond, &d->lock);
    if (d->closing)
      break;
    j = d->queue[d->qhead];
    d->qhead = (d->qhead + 1) % SN_DEPS_MAX_FILES;
    d->qlen--;
    pthread_mutex_unlock(&d->lock);
    work(d, &j);
    pthread_mutex_lock(&d->lock);
  }
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

struct note {
  struct sn_deps *d;
  size_t k;
  int64_t off, end;
  const uint8_t *buf;
};

/* A file whose data starts in the read: queued if its ELF magic is
 * there, and it is big enough for an ELF header. */
static void
note_file(void *opaque, size_t i)
{
  struct note *n = opaque;
  struct sn_deps *d = n->d;
  const struct sn_ztoc_file *f = &d->layers[n->k].src.z->files[i];

  if (f->ftype != SN_FT_REG || f->size < 52 || f->offset + 4 > n->end ||
      memcmp(n->buf + (f->offset - n->off), "\177ELF", 4) != 0)
    return;
  pthread_mutex_lock(&d->lock);
  if (enqueue(d, n->k, f) && !d->started) {
    d->started = pthread_create(&d->thread, NULL, deps_thread, d) == 0;
    if (!d->started)
      d->qlen = 0;                      /* no thread: no prefetch */
  }
  pthread_mutex_unlock(&d->lock);
}

void
sn_deps_note(struct sn_deps *d, size_t k, int64_t off, const void *buf,
             size_t len)
{
  struct note n = { d, k, off, off + (int64_t) len, buf };

  if (d == NULL || k >= d->nlayers)
    return;
  sn_layer_each_file_start(d->layers[k].src.layer, off, n.end, note_file,
                           &n);
}

void
sn_deps_get_stats(struct sn_deps *d, struct sn_deps_stats *st)
{
  pthread_mutex_lock(&d->lock);
  *st = d->st;
  pthread_mutex_unlock(&d->lock);
}

/* ---- life ------------------------------------------------------------- */

struct sn_deps *
sn_deps_new(const struct sn_deps_layer *layers, size_t n)
{
  struct sn_deps *d = calloc(1, sizeof *d);
  size_t k;

  if (d == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&d->lock, NULL);
  pthread_cond_init(&d->cond, NULL);
  d->layers = calloc(n ? n : 1, sizeof *d->layers);
  d->queue = malloc(SN_DEPS_MAX_FILES * sizeof *d->queue);
  if (d->layers == NULL || d->queue == NULL)
    goto oom;
  d->nlayers = n;
  for (k = 0; k < n; k++) {
    d->layers[k].src = layers[k];
    d->layers[k].seen = calloc(layers[k].z->nfiles ? layers[k].z->nfiles : 1,
                               1);
    if (d->layers[k].seen == NULL)
      goto oom;
  }
  return d;

oom:
  sn_oom();
  sn_deps_free(d);
  return NULL;
}

void
sn_deps_free(struct sn_deps *d)
{
  size_t k;

  if (d == NULL)
    return;
  pthread_mutex_lock(&d->lock);
  d->closing = true;
  pthread_cond_broadcast(&d->cond);
  pthread_mutex_unlock(&d->lock);
  if (d->started)
    pthread_join(d->thread, NULL);
  for (k = 0; k < d->nlayers; k++) {
    free(d->layers[k].seen);
  }
  for (k = 0; k < d->nowned; k++)
    free(d->owned[k]);
  free(d->owned);
  free(d->layers);
  free(d->tab);
  free(d->queue);
  pthread_cond_destroy(&d->cond);
  pthread_mutex_destroy(&d->lock);
  free(d);
}
