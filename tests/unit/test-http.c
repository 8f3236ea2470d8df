/* soci-nbd tests: the HTTP and authentication helpers (lib/registry/http*.c,
 * lib/registry/auth*.c) — WWW-Authenticate, Content-Range, Retry-After, URLs,
 * docker config.json and credential helpers, and that no secret reaches
 * an error message or the debug output.  A tiny scripted HTTP server on
 * 127.0.0.1 checks the token flow and that a cross-origin redirect does
 * not carry the Authorization header.
 */
#include <config.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "registry/auth.h"
#include "util/base64.h"
#include "util/err.h"
#include "registry/http.h"
#include "registry/site.h"
#include "tap.h"

#define PASSWORD "pa55-SECRET-word"
#define IDTOKEN "IDTOKEN-SECRET-0123"
#define TOKEN "TOKEN-SECRET-abcdef"

static char debug_log[65536];

static void
collect(void *opaque, const char *msg)
{
  (void) opaque;
  strncat(debug_log, msg, sizeof debug_log - strlen(debug_log) - 2);
  strcat(debug_log, "\n");
}

static bool
no_secret(const char *s)
{
  return strstr(s, PASSWORD) == NULL && strstr(s, IDTOKEN) == NULL
    && strstr(s, TOKEN) == NULL && strstr(s, "cGE1NS1T") == NULL;
}

/* ---- WWW-Authenticate ---------------------------------------------------- */

static void
test_challenges(void)
{
  struct sn_auth_challenge *c;
  size_t n;

  ok(sn_auth_parse_challenges("Bearer realm=\"https://auth.docker.io/token\","
                              "service=\"registry.docker.io\",scope=\"repo"
                              "sitory:library/ubuntu:pull\"", &c, &n) == 0
     && n == 1 && strcmp(c[0].scheme, "bearer") == 0 && c[0].nparams == 3
     && strcmp(sn_auth_challenge_param(&c[0], "realm"),
               "https://auth.docker.io/token") == 0
     && strcmp(sn_auth_challenge_param(&c[0], "service"),
               "registry.docker.io") == 0
     && strcmp(sn_auth_challenge_param(&c[0], "scope"),
               "repository:library/ubuntu:pull") == 0,
     "Docker Hub Bearer challenge");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Basic realm=\"Registry Realm\"", &c, &n) == 0
     && n == 1 && strcmp(c[0].scheme, "basic") == 0
     && strcmp(sn_auth_challenge_param(&c[0], "realm"), "Registry Realm") == 0,
     "Basic challenge");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Bearer realm=\"https://a/t?x=1,2\",scope=\"re"
                              "pository:a/b:pull,push\"", &c, &n) == 0
     && n == 1 && c[0].nparams == 2
     && strcmp(sn_auth_challenge_param(&c[0], "realm"), "https://a/t?x=1,2")
     == 0
     && strcmp(sn_auth_challenge_param(&c[0], "scope"),
               "repository:a/b:pull,push") == 0,
     "commas inside quoted values");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Basic realm=\"x\", Bearer realm=\"y\","
                              "service=\"z\"", &c, &n) == 0 && n == 2
     && strcmp(c[0].scheme, "basic") == 0 && c[0].nparams == 1
     && strcmp(c[1].scheme, "bearer") == 0 && c[1].nparams == 2
     && strcmp(sn_auth_challenge_param(&c[1], "service"), "z") == 0,
     "two challenges in one header");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("BEARER Realm=\"x\" ,  SERVICE = \"s\"", &c,
                              &n) == 0 && n == 1
     && strcmp(c[0].scheme, "bearer") == 0
     && strcmp(sn_auth_challenge_param(&c[0], "realm"), "x") == 0
     && strcmp(sn_auth_challenge_param(&c[0], "service"), "s") == 0,
     "case-insensitive names, blanks around '=' and ','");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Bearer realm=\"a\\\"b\\\\c\"", &c, &n) == 0
     && n == 1 && strcmp(sn_auth_challenge_param(&c[0], "realm"), "a\"b\\c")
     == 0, "quoted-pair escapes");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Negotiate abc==, Basic realm=\"r\"", &c, &n)
     == 0 && n == 2 && c[0].token68 && strcmp(c[0].token68, "abc==") == 0
     && strcmp(c[1].scheme, "basic") == 0, "token68 then another challenge");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Basic, Bearer realm=\"r\"", &c, &n) == 0
     && n == 2 && c[0].nparams == 0 && strcmp(c[1].scheme, "bearer") == 0,
     "a challenge without parameters");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Bearer realm=https://h/t,service=reg", &c, &n)
     == -1 || (n == 1 && sn_auth_challenge_param(&c[0], "service") != NULL),
     "unquoted values (token syntax) or a clean refusal");
  sn_auth_challenges_free(c, n);

  ok(sn_auth_parse_challenges("Bearer realm=\"unterminated", &c, &n) == -1,
     "unterminated quoted string refused: %s", sn_error());
  ok(sn_auth_parse_challenges("", &c, &n) == 0 && n == 0 && c == NULL,
     "empty header: no challenges");
  ok(sn_auth_parse_challenges(NULL, &c, &n) == 0 && n == 0,
     "NULL header: no challenges");
  ok(sn_auth_parse_challenges("Bearer realm=\"r\", error=\"insufficient_sc"
                              "ope\",scope=\"repository:x:push\"", &c, &n)
     == 0 && n == 1 && c[0].nparams == 3
     && strcmp(sn_auth_challenge_param(&c[0], "error"),
               "insufficient_scope") == 0,
     "error parameter kept");
  sn_auth_challenges_free(c, n);
}

/* ---- Content-Range, Retry-After ------------------------------------------ */

static void
test_ranges(void)
{
  int64_t a, b, t;
  struct tm tm = { 0 };
  time_t now;

  ok(sn_http_parse_content_range("bytes 0-99/1000", &a, &b, &t) == 0
     && a == 0 && b == 99 && t == 1000, "bytes 0-99/1000");
  ok(sn_http_parse_content_range("bytes 5-5/*", &a, &b, &t) == 0
     && a == 5 && b == 5 && t == -1, "unknown total");
  ok(sn_http_parse_content_range("BYTES  7-9/10 ", &a, &b, &t) == 0
     && a == 7 && b == 9 && t == 10, "unit case and blanks");
  ok(sn_http_parse_content_range("bytes 10-5/100", &a, &b, &t) == -1,
     "end before start refused");
  ok(sn_http_parse_content_range("bytes 0-100/100", &a, &b, &t) == -1,
     "end beyond total refused");
  ok(sn_http_parse_content_range("bits 0-1/2", &a, &b, &t) == -1,
     "other unit refused");
  ok(sn_http_parse_content_range("bytes 0-1", &a, &b, &t) == -1,
     "missing total refused");
  ok(sn_http_parse_content_range("bytes */100", &a, &b, &t) == -1,
     "unsatisfied-range form refused");
  ok(sn_http_parse_content_range("bytes 0-99999999999999999999/1", &a, &b,
                                 &t) == -1, "overflow refused");
  ok(sn_http_parse_content_range("bytes -1-5/10", &a, &b, &t) == -1,
     "negative refused");
  ok(sn_http_parse_content_range(NULL, &a, &b, &t) == -1, "absent refused");

  tm.tm_year = 2015 - 1900;
  tm.tm_mon = 9;
  tm.tm_mday = 21;
  tm.tm_hour = 7;
  tm.tm_min = 27;
  now = timegm(&tm);
  ok(sn_http_parse_retry_after("120", now) == 120000, "Retry-After seconds");
  ok(sn_http_parse_retry_after(" 0 ", now) == 0, "Retry-After 0");
  ok(sn_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 60000,
     "Retry-After HTTP-date one minute ahead");
  ok(sn_http_parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0,
     "Retry-After date in the past");
  ok(sn_http_parse_retry_after("soon", now) == -1, "Retry-After junk");
  ok(sn_http_parse_retry_after("12abc", now) == -1, "Retry-After trailing");
}

/* ---- URLs ------------------------------------------------------------------ */

static void
test_urls(void)
{
  char *s;

  ok(sn_http_same_origin("http://a:80/x", "http://A/y"),
     "same origin: default port and host case");
  ok(sn_http_same_origin("https://r.example:443/v2/", "https://r.example/b"),
     "same origin: https default port");
  ok(!sn_http_same_origin("https://a/x", "http://a/x"), "scheme differs");
  ok(!sn_http_same_origin("https://a/x", "https://b/x"), "host differs");
  ok(!sn_http_same_origin("https://a:444/x", "https://a/x"), "port differs");
  ok(!sn_http_same_origin("http://127.0.0.1:5000/", "http://localhost:5000/"),
     "127.0.0.1 and localhost are different origins");
  ok(!sn_http_same_origin("http://a.example/", "http://a.example.evil/"),
     "suffix host differs");
  ok(!sn_http_same_origin("not a url", "not a url"), "invalid URLs differ");

  s = sn_http_resolve("http://h:1/v2/x/blobs/uploads/",
                      "/v2/x/blobs/uploads/u?_state=s");
  ok(s && strcmp(s, "http://h:1/v2/x/blobs/uploads/u?_state=s") == 0,
     "relative Location resolved: %s", s ? s : "(null)");
  free(s);
  s = sn_http_resolve("http://h:1/v2/x/blobs/sha256:00",
                      "https://s3.example/b/c?X-Amz-Signature=1");
  ok(s && strcmp(s, "https://s3.example/b/c?X-Amz-Signature=1") == 0,
     "absolute Location kept");
  free(s);
  s = sn_http_resolve("http://h/v2/", "ftp://h/x");
  ok(s == NULL, "non-HTTP redirect refused");
  free(s);

  s = sn_http_redact("https://user:" PASSWORD "@h.example:8443/p/q?X-Amz-"
                     "Signature=" TOKEN "#frag");
  ok(s && strcmp(s, "https://h.example:8443/p/q") == 0 && no_secret(s),
     "redacted URL: %s", s ? s : "(null)");
  free(s);

  s = sn_http_api_base("127.0.0.1:5000", true);
  ok(s && strcmp(s, "http://127.0.0.1:5000/v2") == 0, "plain API base: %s",
     s ? s : "(null)");
  free(s);
  s = sn_http_api_base("mirror.example/prefix/", false);
  ok(s && strcmp(s, "https://mirror.example/prefix/v2") == 0,
     "mirror with a path: %s", s ? s : "(null)");
  free(s);
  s = sn_http_api_base("http://m.example:5000/v2/", false);
  ok(s && strcmp(s, "http://m.example:5000/v2") == 0,
     "URL already ending in /v2: %s", s ? s : "(null)");
  free(s);
  s = sn_http_api_base("https://m.example/?x=1", false);
  ok(s == NULL, "query in an endpoint refused");
  free(s);
  s = sn_http_api_base("ftp://m.example/", false);
  ok(s == NULL, "non-HTTP endpoint refused");
  free(s);

  s = sn_http_escape("repository:a/b:pull,push");
  ok(s && strcmp(s, "repository%3Aa%2Fb%3Apull%2Cpush") == 0,
     "scope escaped: %s", s ? s : "(null)");
  free(s);
  s = sn_http_url_host("http://[::1]:5000/v2/");
  ok(s && strcmp(s, "[::1]:5000") == 0, "IPv6 host and port: %s",
     s ? s : "(null)");
  free(s);
  s = sn_http_url_host("https://r.example/v2/");
  ok(s && strcmp(s, "r.example") == 0, "host without a port");
  free(s);

  s = sn_base64("alice:" PASSWORD, strlen("alice:" PASSWORD));
  ok(s && strcmp(s, "YWxpY2U6cGE1NS1TRUNSRVQtd29yZA==") == 0,
     "base64 of user:password");
  free(s);
}

/* ---- docker config.json and helpers ----------------------------------------- */

/* Which token realms may receive a registry's credentials (site.h). */
static void
test_site(void)
{
  static const struct { const char *a, *b; bool same; } t[] = {
    { "https://registry-1.docker.io/v2/", "https://auth.docker.io/token", true },
    { "https://registry.gitlab.com", "https://gitlab.com/jwt/auth", true },
    { "https://ghcr.io/v2/", "https://ghcr.io/token", true },
    { "https://Ghcr.IO:443/v2/", "https://ghcr.io/token", true },
    { "https://a.herokuapp.com/v2/", "https://b.herokuapp.com/t", false },
    { "https://registry.example.com", "https://evil.example.net/t", false },
    { "https://registry.example.com", "https://example.com.evil.net/", false },
    { "http://127.0.0.1:5000/v2/", "http://127.0.0.1:6000/token", true },
    { "http://127.0.0.1:5000/v2/", "http://localhost:6000/token", false },
    { "http://127.0.0.1:5000/v2/", "http://127.0.0.2:5000/token", false },
    { "https://[::1]:5000/v2/", "https://[::1]:7000/t", true },
    { "https://[::1]:5000/v2/", "https://localhost/t", false },
    { "https://reg.example.com", "not a url", false },
  };
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++)
    ok(sn_site_same(t[i].a, t[i].b) == t[i].same &&
       sn_site_same(t[i].b, t[i].a) == t[i].same,
       "%s and %s: %s site", t[i].a, t[i].b,
       t[i].same ? "same" : "not the same");
}

static char dir[] = "/tmp/test-http-XXXXXX";

static void
write_file(const char *name, const char *text, int mode)
{
  char path[256];
  FILE *f;

  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  if (f == NULL) {
    printf("Bail out! cannot write %s\n", path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

static int
lookup(const char *cfg, const char *host, struct sn_auth_creds *c)
{
  char path[256];

  snprintf(path, sizeof path, "%s/%s", dir, cfg);
  return sn_auth_creds_lookup(path, host, c);
}

static void
test_config(void)
{
  struct sn_auth_creds c;
  char *old_path, *p;
  int r;

  /* base64("hubuser:hubpass"), base64("alice:s3:" PASSWORD) */
  write_file("config.json",
             "{\"auths\":{"
             "\"https://index.docker.io/v1/\":{\"auth\":\"aHVidXNlcjpodWJwYXNz\"},"
             "\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6czM6cGE1NS1TRUNSRVQtd29yZA==\"},"
             "\"tok.example\":{\"auth\":\"\",\"identitytoken\":\"" IDTOKEN "\"},"
             "\"http://scheme.example/v2/\":{\"auth\":\"dTpw\"},"
             "\"nopad.example\":{\"auth\":\"dTpwdw\"}"
             "},\"credHelpers\":{\"helped.example\":\"test\","
             "\"tokenhelped.example\":\"test\",\"missing.example\":\"test\","
             "\"broken.example\":\"test\",\"bad.example\":\"../evil\"}}", 0600);

  r = lookup("config.json", "docker.io", &c);
  ok(r == 1 && strcmp(c.username, "hubuser") == 0
     && strcmp(c.password, "hubpass") == 0,
     "docker.io finds https://index.docker.io/v1/");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "registry-1.docker.io", &c);
  ok(r == 1 && strcmp(c.username, "hubuser") == 0, "registry-1.docker.io too");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "127.0.0.1:5000", &c);
  ok(r == 1 && strcmp(c.username, "alice") == 0
     && strcmp(c.password, "s3:" PASSWORD) == 0,
     "host:port entry, password containing ':'");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "tok.example", &c);
  ok(r == 1 && c.identity_token && strcmp(c.identity_token, IDTOKEN) == 0
     && c.username == NULL, "identitytoken");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "scheme.example", &c);
  ok(r == 1 && strcmp(c.username, "u") == 0 && strcmp(c.password, "p") == 0,
     "URL key with scheme and path");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "nopad.example", &c);
  ok(r == 1 && strcmp(c.password, "pw") == 0, "unpadded base64");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "127.0.0.1:5001", &c);
  ok(r == 0 && c.username == NULL, "no entry: none");

  /* Credential helper on PATH. */
  write_file("docker-credential-test",
             "#!/bin/sh\n"
             "[ \"$1\" = get ] || exit 3\n"
             "read host\n"
             "case $host in\n"
             "helped.example) echo '{\"ServerURL\":\"helped.example\","
             "\"Username\":\"helper-user\",\"Secret\":\"" PASSWORD "\"}' ;;\n"
             "tokenhelped.example) echo '{\"Username\":\"<token>\","
             "\"Secret\":\"" IDTOKEN "\"}' ;;\n"
             "https://index.docker.io/v1/) echo '{\"Username\":\"hub\","
             "\"Secret\":\"x\"}' ;;\n"
             "broken.example) echo 'oops " PASSWORD "'; echo '" PASSWORD
             "' >&2; exit 1 ;;\n"
             "*) echo 'credentials not found in native keychain'; exit 1 ;;\n"
             "esac\n", 0755);
  old_path = getenv("PATH") ? strdup(getenv("PATH")) : strdup("/usr/bin:/bin");
  if (asprintf(&p, "%s:%s", dir, old_path) < 0)
    abort();
  setenv("PATH", p, 1);
  free(p);

  r = lookup("config.json", "helped.example", &c);
  ok(r == 1 && strcmp(c.username, "helper-user") == 0
     && strcmp(c.password, PASSWORD) == 0, "credHelpers: Username/Secret");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "tokenhelped.example", &c);
  ok(r == 1 && c.identity_token && strcmp(c.identity_token, IDTOKEN) == 0,
     "credHelpers: <token> gives an identity token");
  sn_auth_creds_clear(&c);
  r = lookup("config.json", "missing.example", &c);
  ok(r == 0, "credHelpers: not found is no credentials");
  r = lookup("config.json", "broken.example", &c);
  ok(r == -1 && no_secret(sn_error()),
     "credHelpers: failure reported without its output: %s", sn_error());
  r = lookup("config.json", "bad.example", &c);
  ok(r == -1, "helper name with a path refused: %s", sn_error());

  write_file("store.json", "{\"credsStore\":\"test\"}", 0600);
  r = lookup("store.json", "docker.io", &c);
  ok(r == 1 && strcmp(c.username, "hub") == 0,
     "credsStore asked with https://index.docker.io/v1/ for docker.io");
  sn_auth_creds_clear(&c);

  /* $DOCKER_CONFIG when no file is given; a missing default is fine. */
  setenv("DOCKER_CONFIG", dir, 1);
  r = sn_auth_creds_lookup(NULL, "127.0.0.1:5000", &c);
  ok(r == 1 && strcmp(c.username, "alice") == 0, "$DOCKER_CONFIG/config.json");
  sn_auth_creds_clear(&c);
  setenv("DOCKER_CONFIG", "/nonexistent-soci-nbd-test", 1);
  ok(sn_auth_creds_lookup(NULL, "127.0.0.1:5000", &c) == 0,
     "missing default config: no credentials");
  unsetenv("DOCKER_CONFIG");
  ok(lookup("nonexistent.json", "x", &c) == -1,
     "missing explicit config is an error: %s", sn_error());

  /* Broken files never echo their content. */
  write_file("broken.json", "{\"auths\":{\"h\":{\"auth\":\"" PASSWORD "\"", 0600);
  ok(lookup("broken.json", "h", &c) == -1 && no_secret(sn_error()),
     "truncated JSON: %s", sn_error());
  write_file("badb64.json", "{\"auths\":{\"h\":{\"auth\":\"" PASSWORD
             "!!\"}}}", 0600);
  ok(lookup("badb64.json", "h", &c) == -1 && no_secret(sn_error()),
     "invalid base64: %s", sn_error());
  write_file("nocolon.json", "{\"auths\":{\"h\":{\"auth\":\"cGE1NS1TRUNSRVQ=\"}}}",
             0600);
  ok(lookup("nocolon.json", "h", &c) == -1 && no_secret(sn_error()),
     "auth without ':': %s", sn_error());

  setenv("PATH", old_path, 1);
  free(old_path);
}

/* ---- a scripted HTTP server on 127.0.0.1 ---------------------------------- */

struct server {
  int fd;
  int port;
  const char *const *replies;     /* one per connection; NULL ends */
  char requests[8][4096];
  int nreq;
  pthread_t th;
};

static void *
serve(void *opaque)
{
  struct server *s = opaque;
  int i;

  for (i = 0; s->replies[i] && i < 8; i++) {
    int c = accept(s->fd, NULL, NULL);
    size_t n = 0;
    char *req = s->requests[i];

    if (c == -1)
      break;
    while (n < 4095) {
      ssize_t r = read(c, req + n, 4095 - n);

      if (r <= 0)
        break;
      n += (size_t) r;
      req[n] = 0;
      if (strstr(req, "\r\n\r\n")) {
        /* A body follows when there is a Content-Length. */
        char *cl = strcasestr(req, "content-length:");
        char *end = strstr(req, "\r\n\r\n") + 4;

        if (cl == NULL || (size_t) (req + n - end) >= strtoul(cl + 15, NULL, 10))
          break;
      }
    }
    s->nreq = i + 1;
    if (write(c, s->replies[i], strlen(s->replies[i])) < 0)
      diag("server: write failed");
    close(c);
  }
  return NULL;
}

static int
server_start(struct server *s, const char *const *replies)
{
  struct sockaddr_in a = { .sin_family = AF_INET };
  socklen_t len = sizeof a;

  memset(s, 0, sizeof *s);
  s->replies = replies;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (s->fd == -1 || bind(s->fd, (struct sockaddr *) &a, sizeof a) == -1
      || listen(s->fd, 8) == -1
      || getsockname(s->fd, (struct sockaddr *) &a, &len) == -1)
    return -1;
  s->port = ntohs(a.sin_port);
  return pthread_create(&s->th, NULL, serve, s) == 0 ? 0 : -1;
}

static void
server_stop(struct server *s)
{
  shutdown(s->fd, SHUT_RDWR);
  close(s->fd);
  pthread_join(s->th, NULL);
}

static void
test_server(void)
{
  struct sn_http_opts ho = { .max_retries = -1, .timeout_ms = 5000,
                             .debug = collect };
  struct sn_http *h = sn_http_new(&ho);
  struct sn_http_req q = { 0 };
  struct sn_http_resp r = { 0 };
  struct server a, b;
  struct sn_auth *au;
  char url[256], loc[512], hdr[512], *authz = NULL;
  const char *ra[3] = { loc, NULL, NULL };
  const char *rb[2] = {
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    NULL };
  char tok_reply[512];
  const char *rt[3] = { tok_reply, NULL, NULL };

  if (h == NULL) {
    ok(0, "sn_http_new: %s", sn_error());
    return;
  }

  /* Cross-origin redirect (127.0.0.1 → localhost, other port): the
   * Authorization header must not follow. */
  if (server_start(&b, rb) == -1) {
    printf("Bail out! cannot listen on 127.0.0.1\n");
    exit(1);
  }
  snprintf(loc, sizeof loc, "HTTP/1.1 307 Temporary Redirect\r\nLocation: "
           "http://localhost:%d/blob?X-Amz-Signature=" TOKEN "\r\n"
           "Content-Length: 0\r\nConnection: close\r\n\r\n", b.port);
  server_start(&a, ra);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/r/blobs/sha256:00",
           a.port);
  q.url = url;
  q.authorization = "Bearer " TOKEN;
  ok(sn_http_request(h, &q, &r) == 0 && r.status == 200 && r.redirected
     && r.cross_origin && r.body_len == 2, "redirect followed: %s",
     sn_error());
  server_stop(&a);
  server_stop(&b);
  ok(strstr(a.requests[0], "Authorization: Bearer " TOKEN) != NULL,
     "Authorization sent to the registry");
  ok(b.nreq == 1 && strcasestr(b.requests[0], "authorization") == NULL,
     "no Authorization after a cross-origin redirect");
  ok(r.url && strstr(r.url, "localhost") != NULL, "final URL reported");
  sn_http_resp_clear(&r);

  /* Same-origin redirect keeps it. */
  snprintf(loc, sizeof loc, "HTTP/1.1 302 Found\r\nLocation: /other\r\n"
           "Content-Length: 0\r\nConnection: close\r\n\r\n");
  ra[1] = rb[0];
  server_start(&a, ra);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/", a.port);
  ok(sn_http_request(h, &q, &r) == 0 && r.status == 200 && r.redirected
     && !r.cross_origin, "same-origin redirect followed");
  server_stop(&a);
  ok(strstr(a.requests[1], "Authorization: Bearer " TOKEN) != NULL,
     "same-origin redirect keeps Authorization");
  sn_http_resp_clear(&r);
  ra[1] = NULL;

  /* A POST with a body (a refresh token) redirected 307/308 to another
   * origin: refused, and the other origin never sees the request. */
  {
    static const char body[] = "grant_type=refresh_token&refresh_token="
                               TOKEN;
    int code;

    for (code = 307; code <= 308; code++) {
      if (server_start(&b, rb) == -1)
        break;
      snprintf(loc, sizeof loc, "HTTP/1.1 %d Moved\r\nLocation: "
               "http://localhost:%d/token\r\nContent-Length: 0\r\n"
               "Connection: close\r\n\r\n", code, b.port);
      server_start(&a, ra);
      snprintf(url, sizeof url, "http://127.0.0.1:%d/token", a.port);
      q.method = "POST";
      q.body = (const uint8_t *) body;
      q.body_size = (int64_t) strlen(body);
      ok(sn_http_request(h, &q, &r) == -1
         && strstr(sn_error(), "refusing to re-send the request body to "
                               "another origin"),
         "POST body not re-sent across origins on a %d: %s", code,
         sn_error());
      server_stop(&a);
      server_stop(&b);
      ok(b.nreq == 0 && strstr(a.requests[0], TOKEN) != NULL,
         "%d: the other origin got no request", code);
      ok(strstr(sn_error(), TOKEN) == NULL, "%d: no secret in the message",
         code);
      sn_http_resp_clear(&r);
    }
    q.method = NULL;
    q.body = NULL;
    q.body_size = 0;
  }

  /* Body cap: a 200 larger than max_body fails before reading it. */
  snprintf(loc, sizeof loc, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
           "Connection: close\r\n\r\n%0100d", 0);
  server_start(&a, ra);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/", a.port);
  q.max_body = 10;
  q.authorization = NULL;
  ok(sn_http_request(h, &q, &r) == -1
     && strstr(sn_error(), "larger than 10 bytes"), "size cap: %s",
     sn_error());
  server_stop(&a);
  sn_http_resp_clear(&r);
  q.max_body = 0;

  /* Token flow: Basic credentials to the realm, token cached per scope. */
  snprintf(tok_reply, sizeof tok_reply, "HTTP/1.1 200 OK\r\nContent-Type: "
           "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
           "\r\n{\"access_token\":\"" TOKEN "\",\"expires_in\":300}",
           strlen("{\"access_token\":\"" TOKEN "\",\"expires_in\":300}"));
  server_start(&a, rt);
  au = sn_auth_new(h, "127.0.0.1:5000", "http://127.0.0.1:5000/v2",
                   "alice", PASSWORD, NULL);
  snprintf(hdr, sizeof hdr, "Bearer realm=\"http://127.0.0.1:%d/token\","
           "service=\"reg\"", a.port);
  ok(sn_auth_header(au, "repository:x:pull", &authz) == 0 && authz == NULL,
     "no header before a challenge");
  ok(sn_auth_challenge(au, hdr, "repository:x:pull", NULL) == 0,
     "token obtained: %s", sn_error());
  server_stop(&a);
  ok(strstr(a.requests[0], "GET /token?service=reg&scope=repository%3Ax%3A"
            "pull&account=alice ") != NULL
     && strstr(a.requests[0], "Authorization: Basic YWxpY2U6cGE1NS1TRUNSRVQt"
               "d29yZA==") != NULL, "token request with Basic credentials");
  ok(sn_auth_header(au, "repository:x:pull", &authz) == 0 && authz
     && strcmp(authz, "Bearer " TOKEN) == 0, "cached token used");
  free(authz);
  authz = NULL;

  /* The token server refuses: no secret in the message. */
  snprintf(tok_reply, sizeof tok_reply, "HTTP/1.1 401 Unauthorized\r\n"
           "Content-Length: 24\r\nConnection: close\r\n\r\n"
           "bad " PASSWORD "!!!!");
  server_start(&a, rt);
  snprintf(hdr, sizeof hdr, "Bearer realm=\"http://127.0.0.1:%d/token\","
           "service=\"reg\"", a.port);
  ok(sn_auth_challenge(au, hdr, "repository:y:pull", NULL) == -1
     && strstr(sn_error(), "refused the credentials")
     && no_secret(sn_error()), "refused credentials: %s", sn_error());
  server_stop(&a);
  sn_auth_free(au);

  /* Identity token: OAuth2 POST with grant_type=refresh_token. */
  snprintf(tok_reply, sizeof tok_reply, "HTTP/1.1 200 OK\r\nContent-Length: "
           "%zu\r\nConnection: close\r\n\r\n{\"token\":\"" TOKEN "\"}",
           strlen("{\"token\":\"" TOKEN "\"}"));
  server_start(&a, rt);
  write_file("idt.json", "{\"auths\":{\"127.0.0.1:5000\":{\"identitytoken\":"
             "\"" IDTOKEN "\"}}}", 0600);
  snprintf(url, sizeof url, "%s/idt.json", dir);
  au = sn_auth_new(h, "127.0.0.1:5000", "http://127.0.0.1:5000/v2", NULL,
                   NULL, url);
  snprintf(hdr, sizeof hdr, "Bearer realm=\"http://127.0.0.1:%d/token\","
           "service=\"reg\",scope=\"repository:x:pull\"", a.port);
  ok(sn_auth_challenge(au, hdr, "repository:x:pull", NULL) == 0,
     "identity token exchanged: %s", sn_error());
  server_stop(&a);
  ok(strncmp(a.requests[0], "POST /token ", 12) == 0
     && strstr(a.requests[0], "grant_type=refresh_token")
     && strstr(a.requests[0], "refresh_token=" IDTOKEN)
     && strstr(a.requests[0], "service=reg"), "OAuth2 refresh_token POST");
  sn_auth_free(au);

  /* Credentials are not sent to a plain-HTTP realm on another host, even
   * of the registry's site, nor to an HTTPS realm of another site. */
  au = sn_auth_new(h, "r.example.com", "https://r.example.com/v2", "alice",
                   PASSWORD, NULL);
  ok(sn_auth_challenge(au, "Bearer realm=\"http://auth.example.com/token\"",
                       "repository:x:pull", NULL) == -1
     && strstr(sn_error(), "plain HTTP to another host")
     && no_secret(sn_error()),
     "plain-HTTP realm refused: %s", sn_error());
  ok(sn_auth_challenge(au, "Bearer realm=\"https://auth.example.net/token\"",
                       "repository:x:pull", NULL) == -1
     && strstr(sn_error(), "not on the registry's site")
     && no_secret(sn_error()),
     "HTTPS realm of another site refused: %s", sn_error());
  /* Basic: header built, and a refused one is reported cleanly. */
  ok(sn_auth_challenge(au, "Basic realm=\"r\"", "repository:x:pull", NULL)
     == 0 && sn_auth_header(au, "repository:x:pull", &authz) == 0 && authz
     && strcmp(authz, "Basic YWxpY2U6cGE1NS1TRUNSRVQtd29yZA==") == 0,
     "Basic header");
  ok(sn_auth_challenge(au, "Basic realm=\"r\"", "repository:x:pull", authz)
     == -1 && no_secret(sn_error()), "Basic refused: %s", sn_error());
  free(authz);
  sn_auth_free(au);

  /* A realm that does not answer. */
  au = sn_auth_new(h, "127.0.0.1:5000", "http://127.0.0.1:5000/v2", "alice",
                   PASSWORD, NULL);
  ok(sn_auth_challenge(au, "Bearer realm=\"http://127.0.0.1:1/token\"",
                       "repository:x:pull", NULL) == -1
     && no_secret(sn_error()), "unreachable realm: %s", sn_error());
  sn_auth_free(au);

  ok(no_secret(debug_log) && strstr(debug_log, "GET ") != NULL,
     "debug output has request lines and no secret");
  sn_http_free(h);
}

int
main(void)
{
  char cmd[128];

  if (mkdtemp(dir) == NULL) {
    printf("Bail out! mkdtemp\n");
    return 1;
  }
  test_challenges();
  test_ranges();
  test_urls();
  test_site();
  test_config();
  test_server();
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
