/* soci-nbd: credentials from CRI pulls (snap-registry.h) — kept in
 * memory per repository, handed to a layer's mount as a docker
 * config.json that only root can read.  Secrets are wiped when replaced
 * or freed, and never put in a message. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/auth.h"
#include "registry/ref.h"
#include "snapshot/snap-registry.h"
#include "util/base64.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/json.h"

/* Repositories remembered; the oldest is forgotten past this. */
#define CREDS_MAX 256

struct creds_entry {
  char *repo;                   /* "registry/repository" */
  struct sn_auth_creds c;
  char *server;                 /* host[:port] they are for, or NULL */
};

struct sn_snap_creds {
  pthread_mutex_t lock;
  struct creds_entry v[CREDS_MAX];  /* oldest first */
  size_t n;
};

static void
entry_clear(struct creds_entry *e)
{
  free(e->repo);
  sn_auth_creds_clear(&e->c);
  free(e->server);
  memset(e, 0, sizeof *e);
}

struct sn_snap_creds *
sn_snap_creds_new(void)
{
  struct sn_snap_creds *c = calloc(1, sizeof *c);

  if (c == NULL) {
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&c->lock, NULL);
  return c;
}

void
sn_snap_creds_free(struct sn_snap_creds *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n; i++)
    entry_clear(&c->v[i]);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* "registry/repository" of an image reference (malloc'd), or NULL. */
static char *
repo_key(const char *image)
{
  struct sn_ref r;
  char *k;

  if (sn_ref_parse(image, &r) == -1)
    return NULL;
  if (r.kind != SN_REF_REGISTRY) {
    sn_ref_clear(&r);
    sn_set_error("%.200s: not a registry reference", image);
    return NULL;
  }
  if (asprintf(&k, "%s/%s", r.registry, r.repository) < 0) {
    k = NULL;
    sn_oom();
  }
  sn_ref_clear(&r);
  return k;
}

static bool
given(const char *s)
{
  return s && s[0];
}

/* server_address as CRI has it ("https://host:port/", "host") → host. */
static char *
server_host(const char *addr)
{
  const char *h = strstr(addr, "://");

  h = h ? h + 3 : addr;
  return strndup(h, strcspn(h, "/"));
}

/* The credentials of a CRI AuthConfig into e (username/password from the
 * base64 "auth" when given). */
static int
fill(struct creds_entry *e, const char *username, const char *password,
     const char *auth, const char *identity_token)
{
  bool ok = true;

  if (given(auth)) {
    size_t n;
    char *dec = sn_base64_decode(auth, &n), *colon;

    if (dec == NULL || (colon = memchr(dec, ':', n)) == NULL ||
        memchr(dec, 0, n)) {
      if (dec) {
        explicit_bzero(dec, n);
        free(dec);
      }
      return sn_set_error("the pull's \"auth\" is not base64 of "
                          "user:password");
    }
    e->c.username = strndup(dec, (size_t) (colon - dec));
    e->c.password = strdup(colon + 1);
    explicit_bzero(dec, n);
    free(dec);
    ok = e->c.username && e->c.password;
  }
  else if (given(username)) {
    e->c.username = strdup(username);
    e->c.password = strdup(password ? password : "");
    ok = e->c.username && e->c.password;
  }
  if (given(identity_token))
    ok = (e->c.identity_token = strdup(identity_token)) != NULL && ok;
  return ok ? 0 : sn_oom();
}

int
sn_snap_creds_put(struct sn_snap_creds *c, const char *image,
                  const char *username, const char *password,
                  const char *auth, const char *identity_token,
                  const char *server_address, const char **why)
{
  struct creds_entry e = { .repo = NULL };
  size_t i;

  *why = NULL;
  if (!given(auth) && !given(username) && !given(identity_token)) {
    if (given(password))
      *why = "a password without a username is not usable";
    return 1;
  }
  if ((e.repo = repo_key(image)) == NULL ||
      fill(&e, username, password, auth, identity_token) == -1) {
    entry_clear(&e);
    return -1;
  }
  if (given(server_address) &&
      (e.server = server_host(server_address)) == NULL) {
    entry_clear(&e);
    return sn_oom();
  }
  pthread_mutex_lock(&c->lock);
  for (i = 0; i < c->n && strcmp(c->v[i].repo, e.repo) != 0; i++)
    ;
  if (i == CREDS_MAX)
    i = 0;                      /* forget the oldest */
  if (i < c->n) {
    entry_clear(&c->v[i]);
    memmove(&c->v[i], &c->v[i + 1], (c->n - i - 1) * sizeof *c->v);
    c->n--;
  }
  c->v[c->n++] = e;             /* newest last */
  pthread_mutex_unlock(&c->lock);
  return 0;
}

/* The config.json text for entry e and hosts; the caller wipes it. */
static int
config_json(const struct creds_entry *e, const char *const *hosts,
            size_t nhosts, char **out, size_t *len)
{
  struct sn_json w;

  sn_json_init(&w);
  sn_json_begin_object(&w);
  sn_json_key(&w, "auths");
  sn_json_begin_object(&w);
  for (size_t i = 0; i < (e->server ? 1 : nhosts); i++) {
    sn_json_key(&w, e->server ? e->server : hosts[i]);
    sn_json_begin_object(&w);
    if (e->c.username) {
      sn_json_member_string(&w, "username", e->c.username);
      sn_json_member_string(&w, "password", e->c.password);
    }
    if (e->c.identity_token)
      sn_json_member_string(&w, "identitytoken", e->c.identity_token);
    sn_json_end_object(&w);
  }
  sn_json_end_object(&w);
  sn_json_end_object(&w);
  return sn_json_finish(&w, out, len) == -1 ? sn_oom() : 0;
}

int
sn_snap_creds_write(struct sn_snap_creds *c, const char *image,
                    const char *const *hosts, size_t nhosts,
                    const char *path)
{
  char *key = repo_key(image), *doc = NULL;
  size_t i, len = 0;
  int r = 0;

  if (key == NULL)
    return -1;
  pthread_mutex_lock(&c->lock);
  for (i = c->n; i > 0 && strcmp(c->v[i - 1].repo, key) != 0; i--)
    ;
  if (i > 0 && config_json(&c->v[i - 1], hosts, nhosts, &doc, &len) == -1)
    r = -1;
  pthread_mutex_unlock(&c->lock);
  free(key);
  if (r == -1)
    return -1;
  if (doc == NULL) {
    if (unlink(path) == -1 && errno != ENOENT)
      return sn_set_error("%s: %s", path, strerror(errno));
    return 0;
  }
  r = sn_write_file_atomic(path, doc, len, 0600, 1);
  explicit_bzero(doc, len);
  free(doc);
  if (r == -1)
    return sn_set_error("%s: %s", path, strerror(errno));
  return 1;
}
