/* soci-nbd: containerd's registry hosts directories (hosts.toml) turned
 * into soci-nbd mount options for a remote layer (snap-registry.h,
 * docs/snapshotter.md "Registries and credentials").
 *
 * containerd tries each [host."URL"] with the pull capability, in the
 * file's order, then the server (https://HOST unless `server` says
 * otherwise).  soci-nbd mount tries its --mirror URLs in order, then the
 * registry: hosts become mirrors; a server on the registry's own host
 * decides only HTTP or HTTPS; a server elsewhere becomes the last mirror.
 * One TLS setting covers a mount: CA files are joined with the system's
 * into one bundle, and skip_verify is followed only when every HTTPS host
 * of the file has it (otherwise TLS is verified, and the log says so). */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "registry/ref.h"
#include "snapshot/snap-registry.h"
#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/toml.h"

#define HOSTS_FILE_MAX (1 << 20)
#define CA_FILE_MAX (4 << 20)
static const char system_cas[] = "/etc/ssl/certs/ca-certificates.crt";

/* What one host of the file (or its server) brings. */
struct hosts_acc {
  struct sn_snap_hosts *h;
  const char *dir;              /* of the hosts.toml, for relative CAs */
  char **cas;                   /* CA files, absolute */
  size_t ncas;
  size_t https, skip;           /* HTTPS hosts, those with skip_verify */
  void (*log)(const char *);
  const char *file;
};

static void
note(struct hosts_acc *a, const char *fmt, ...) SN_PRINTF(2, 3);

static void
note(struct hosts_acc *a, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  int n;

  if (a->log == NULL)
    return;
  n = snprintf(msg, sizeof msg, "%s: ", a->file);
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - (size_t) n, fmt, ap);
  va_end(ap);
  a->log(msg);
}

static int
push(char ***v, size_t *n, const char *s)
{
  char **nv = realloc(*v, (*n + 2) * sizeof *nv);

  if (nv == NULL)
    return sn_oom();
  *v = nv;
  if ((nv[*n] = strdup(s)) == NULL)
    return sn_oom();
  nv[++*n] = NULL;
  return 0;
}

int
sn_snap_hosts_add_arg(struct sn_snap_hosts *h, const char *opt,
                      const char *val)
{
  if (push(&h->args, &h->nargs, opt) == -1)
    return -1;
  return val ? push(&h->args, &h->nargs, val) : 0;
}

/* --mirror scheme://host (the URL without its /v2), and host among the
 * hosts the mount may ask. */
static int
add_mirror(struct sn_snap_hosts *h, const char *scheme, const char *host)
{
  char *u;
  size_t i;
  int r;

  if (asprintf(&u, "%s://%s", scheme, host) < 0)
    return sn_oom();
  r = sn_snap_hosts_add_arg(h, "--mirror", u);
  free(u);
  for (i = 0; i < h->nhosts && strcmp(h->hosts[i], host) != 0; i++)
    ;
  return r == 0 && i == h->nhosts ? push(&h->hosts, &h->nhosts, host) : r;
}

/* "scheme://host[:port][/v2][/]" → its parts; other paths are refused
 * (containerd would put them before /v2, soci-nbd mount cannot). */
static int
split_url(const char *url, char **scheme, char **host)
{
  const char *sep = strstr(url, "://"), *h, *end;
  size_t rest;

  *scheme = *host = NULL;
  if (sep == NULL || (sep - url != 4 && sep - url != 5) ||
      (strncmp(url, "http", 4) != 0) || (sep - url == 5 && url[4] != 's'))
    return sn_set_error("\"%.100s\" is not an http:// or https:// URL", url);
  h = sep + 3;
  end = h + strcspn(h, "/?#");
  rest = strlen(end);
  if (end == h || strchr(h, '@') ||
      !(rest == 0 || strcmp(end, "/") == 0 || strcmp(end, "/v2") == 0 ||
        strcmp(end, "/v2/") == 0))
    return sn_set_error("\"%.100s\": a URL with a path, user or query is not "
                        "supported", url);
  *scheme = strndup(url, (size_t) (sep - url));
  *host = strndup(h, (size_t) (end - h));
  if (*scheme == NULL || *host == NULL)
    return sn_oom();
  return 0;
}

/* ca = "file" or ["a", "b"]: remembered, made absolute. */
static int
collect_cas(struct hosts_acc *a, json_t *ca)
{
  size_t i, n = json_is_array(ca) ? json_array_size(ca) : 1;

  for (i = 0; i < n; i++) {
    json_t *e = json_is_array(ca) ? json_array_get(ca, i) : ca;
    const char *f = json_string_value(e);
    char *path;

    if (f == NULL || f[0] == 0)
      return sn_set_error("%s: \"ca\" must be a file name or a list of them",
                          a->file);
    if (f[0] == '/' ? (path = strdup(f)) == NULL
        : asprintf(&path, "%s/%s", a->dir, f) < 0)
      return sn_oom();
    if (push(&a->cas, &a->ncas, path) == -1) {
      free(path);
      return -1;
    }
    free(path);
  }
  return 0;
}

/* The settings of one host table (the file's top level for its server)
 * that apply to the whole mount, and the notes on the others. */
static int
host_settings(struct hosts_acc *a, json_t *t, const char *scheme,
              const char *what)
{
  json_t *ca = json_object_get(t, "ca");
  json_t *sv = json_object_get(t, "skip_verify");

  if (sv && !json_is_boolean(sv))
    return sn_set_error("%s: %s: skip_verify must be true or false",
                        a->file, what);
  if (strcmp(scheme, "https") == 0) {
    a->https++;
    a->skip += json_is_true(sv);
  }
  if (ca && collect_cas(a, ca) == -1)
    return -1;
  if (json_object_get(t, "client"))
    note(a, "%s: client certificates are not supported (the host is asked "
         "without one)", what);
  if (json_object_get(t, "header"))
    note(a, "%s: extra headers are not supported (the host is asked "
         "without them)", what);
  return 0;
}

/* Does host table t grant pull?  (No capabilities: all of them.) */
static int
can_pull(struct hosts_acc *a, json_t *t, const char *url, bool *pull)
{
  json_t *caps = json_object_get(t, "capabilities"), *c;
  size_t i;

  *pull = caps == NULL;
  if (caps && !json_is_array(caps))
    return sn_set_error("%s: %s: capabilities must be a list", a->file, url);
  json_array_foreach(caps, i, c) {
    if (!json_is_string(c))
      return sn_set_error("%s: %s: capabilities must be strings", a->file,
                          url);
    if (strcmp(json_string_value(c), "pull") == 0)
      *pull = true;
  }
  return 0;
}

/* [host."URL"] tables, in the file's order, as mirrors. */
static int
mirrors(struct hosts_acc *a, json_t *hosts)
{
  const char *url;
  json_t *t;

  if (hosts && !json_is_object(hosts))
    return sn_set_error("%s: \"host\" must be a table of URLs", a->file);
  json_object_foreach(hosts, url, t) {
    char *scheme = NULL, *host = NULL;
    json_t *op = json_object_get(t, "override_path");
    bool pull;
    int r = -1;

    if (!json_is_object(t))
      return sn_set_error("%s: host \"%.100s\" must be a table", a->file,
                          url);
    if (can_pull(a, t, url, &pull) == -1)
      return -1;
    if (!pull)
      continue;
    if (json_is_true(op) || split_url(url, &scheme, &host) == -1) {
      note(a, "host %s is skipped: %s", url, json_is_true(op)
           ? "override_path is not supported" : sn_error());
      r = 0;
    }
    else if (host_settings(a, t, scheme, url) == 0 &&
             add_mirror(a->h, scheme, host) == 0)
      r = 0;
    free(scheme);
    free(host);
    if (r == -1)
      return -1;
  }
  return 0;
}

/* The server: the registry itself (its scheme decides HTTP), or another
 * host, then tried as the last mirror. */
static int
server(struct hosts_acc *a, json_t *doc, const char *registry)
{
  json_t *sv = json_object_get(doc, "server");
  const char *url = json_string_value(sv);
  struct sn_ref ref = { .kind = SN_REF_REGISTRY,
                        .registry = (char *) registry };
  const char *api = sn_ref_api_host(&ref);
  char *scheme = NULL, *host = NULL;
  int r = -1;

  if (sv && url == NULL)
    return sn_set_error("%s: server must be a URL", a->file);
  if (url == NULL)
    return host_settings(a, doc, "https", registry);
  if (split_url(url, &scheme, &host) == -1) {
    sn_prefix_error("%s: server: ", a->file);
    goto out;
  }
  if (host_settings(a, doc, scheme, url) == -1)
    goto out;
  if (strcmp(host, registry) == 0 || strcmp(host, api) == 0)
    r = strcmp(scheme, "http") == 0
      ? sn_snap_hosts_add_arg(a->h, "--plain-http", registry) : 0;
  else {
    note(a, "server %s is tried as the last mirror, before %s itself", url,
         registry);
    r = add_mirror(a->h, scheme, host);
  }
out:
  free(scheme);
  free(host);
  return r;
}

/* The system's CAs and the file's, in one bundle named by its digest. */
static int
ca_bundle(struct hosts_acc *a, const char *certs_dir)
{
  uint8_t *all = NULL, *buf;
  size_t len = 0, n, i;
  char digest[SN_DIGEST_STRLEN + 1], *path = NULL;
  int r = -1;

  for (i = 0; i <= a->ncas; i++) {
    const char *f = i == 0 ? system_cas : a->cas[i - 1];
    uint8_t *na;

    if (i == 0 && access(f, F_OK) != 0)
      continue;
    if (sn_read_file(f, CA_FILE_MAX, true, &buf, &n) == -1) {
      sn_prefix_error("%s: ca: ", a->file);
      goto out;
    }
    if ((na = realloc(all, len + n + 1)) == NULL) {
      free(buf);
      sn_oom();
      goto out;
    }
    all = na;
    memcpy(all + len, buf, n);
    len += n;
    if (n && buf[n - 1] != '\n')
      all[len++] = '\n';
    free(buf);
  }
  sn_digest_of(all, len, digest);
  if (sn_mkdir_p(certs_dir, 0755) == -1)
    goto out;
  if (asprintf(&path, "%s/%s.pem", certs_dir, digest + 7) < 0) {
    path = NULL;
    sn_oom();
    goto out;
  }
  if (access(path, F_OK) != 0 &&
      sn_write_file_atomic(path, all, len, 0644, 1) == -1) {
    sn_set_error("%s: %s", path, strerror(errno));
    goto out;
  }
  r = sn_snap_hosts_add_arg(a->h, "--cacert", path);
out:
  free(all);
  free(path);
  return r;
}

/* The first hosts.toml for registry under the ':'-separated dirs:
 * malloc'd path, or NULL (none; no error). */
static char *
find_file(const char *dirs, const char *registry)
{
  const char *d = dirs, *colon = strrchr(registry, ':');
  char *alt = NULL, *path;

  if (colon && asprintf(&alt, "%.*s_%s_", (int) (colon - registry), registry,
                        colon + 1) < 0)
    return NULL;
  while (d && *d) {
    size_t dl = strcspn(d, ":");
    const char *names[] = { alt, registry, "_default" };

    for (size_t i = 0; i < 3; i++) {
      if (names[i] == NULL ||
          asprintf(&path, "%.*s/%s/hosts.toml", (int) dl, d, names[i]) < 0)
        continue;
      if (access(path, F_OK) == 0) {
        free(alt);
        return path;
      }
      free(path);
    }
    d += dl + (d[dl] == ':');
  }
  free(alt);
  return NULL;
}

int
sn_snap_hosts_load(const char *dirs, const char *registry,
                   const char *certs_dir, void (*log)(const char *),
                   struct sn_snap_hosts *h)
{
  struct hosts_acc a = { .h = h, .log = log };
  uint8_t *buf = NULL;
  json_t *doc = NULL;
  char *dir = NULL, *slash;
  size_t len;
  int r = -1;

  memset(h, 0, sizeof *h);
  if (push(&h->hosts, &h->nhosts, registry) == -1)
    return -1;
  if ((h->file = find_file(dirs, registry)) == NULL)
    return 0;
  a.file = h->file;
  if ((dir = strdup(h->file)) == NULL) {
    sn_oom();
    goto out;
  }
  if ((slash = strrchr(dir, '/')) != NULL)
    *slash = 0;
  a.dir = dir;
  if (sn_read_file(h->file, HOSTS_FILE_MAX, true, &buf, &len) == -1 ||
      (doc = sn_toml_parse((const char *) buf, len, h->file)) == NULL)
    goto out;
  if (mirrors(&a, json_object_get(doc, "host")) == -1 ||
      server(&a, doc, registry) == -1)
    goto out;
  if (a.ncas && ca_bundle(&a, certs_dir) == -1)
    goto out;
  if (a.skip && a.skip == a.https)
    r = sn_snap_hosts_add_arg(h, "--insecure", NULL);
  else {
    if (a.skip)
      note(&a, "skip_verify is followed only when every HTTPS host has it: "
           "TLS is verified");
    r = 0;
  }
out:
  for (size_t i = 0; i < a.ncas; i++)
    free(a.cas[i]);
  free(a.cas);
  json_decref(doc);
  free(buf);
  free(dir);
  if (r == -1)
    sn_snap_hosts_clear(h);
  return r;
}

void
sn_snap_hosts_clear(struct sn_snap_hosts *h)
{
  for (size_t i = 0; i < h->nargs; i++)
    free(h->args[i]);
  for (size_t i = 0; i < h->nhosts; i++)
    free(h->hosts[i]);
  free(h->args);
  free(h->hosts);
  free(h->file);
  memset(h, 0, sizeof *h);
}
