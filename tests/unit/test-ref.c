/* soci-nbd tests: image references (lib/registry/ref.c) — Docker's normalization
 * table (distribution/reference tests), invalid references and their
 * messages, oci-layout forms, API host and loopback detection. */
#include <config.h>

#include <stdbool.h>
#include <string.h>

#include "util/err.h"
#include "registry/ref.h"
#include "tap.h"

#define H64A "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
#define H64B "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
#define HEXID "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

static bool
streq(const char *a, const char *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

struct good {
  const char *in, *registry, *repository, *tag, *digest, *string;
};

static const struct good goods[] = {
  /* Familiar names on Docker Hub. */
  { "ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
    "docker.io/library/ubuntu:latest" },
  { "ubuntu:18.04", "docker.io", "library/ubuntu", "18.04", NULL,
    "docker.io/library/ubuntu:18.04" },
  { "library/ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
    "docker.io/library/ubuntu:latest" },
  { "docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
    "docker.io/library/ubuntu:latest" },
  { "docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest",
    NULL, "docker.io/library/ubuntu:latest" },
  { "index.docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
    "docker.io/library/ubuntu:latest" },
  { "index.docker.io/library/debian", "docker.io", "library/debian",
    "latest", NULL, "docker.io/library/debian:latest" },
  { "user/img", "docker.io", "user/img", "latest", NULL,
    "docker.io/user/img:latest" },
  { "fooo/bar", "docker.io", "fooo/bar", "latest", NULL,
    "docker.io/fooo/bar:latest" },
  { "index.docker.io/fooo/bar", "docker.io", "fooo/bar", "latest", NULL,
    "docker.io/fooo/bar:latest" },
  { "nonlibrary/ubuntu", "docker.io", "nonlibrary/ubuntu", "latest", NULL,
    "docker.io/nonlibrary/ubuntu:latest" },
  { "other/library", "docker.io", "other/library", "latest", NULL,
    "docker.io/other/library:latest" },
  { "library/foo/bar", "docker.io", "library/foo/bar", "latest", NULL,
    "docker.io/library/foo/bar:latest" },
  { "docker.io/library/foo/bar", "docker.io", "library/foo/bar", "latest",
    NULL, "docker.io/library/foo/bar:latest" },
  { "store/foo/bar", "docker.io", "store/foo/bar", "latest", NULL,
    "docker.io/store/foo/bar:latest" },
  { "ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest",
    NULL, "docker.io/library/ubuntu-12.04-base:latest" },
  { "test_com/foo", "docker.io", "test_com/foo", "latest", NULL,
    "docker.io/test_com/foo:latest" },
  { "docker/migrator", "docker.io", "docker/migrator", "latest", NULL,
    "docker.io/docker/migrator:latest" },
  { "dmcgowan/myapp:latest", "docker.io", "dmcgowan/myapp", "latest", NULL,
    "docker.io/dmcgowan/myapp:latest" },
  /* Path component grammar. */
  { "docker-rules/docker", "docker.io", "docker-rules/docker", "latest",
    NULL, "docker.io/docker-rules/docker:latest" },
  { "docker---rules/docker", "docker.io", "docker---rules/docker", "latest",
    NULL, "docker.io/docker---rules/docker:latest" },
  { "dock__er/docker", "docker.io", "dock__er/docker", "latest", NULL,
    "docker.io/dock__er/docker:latest" },
  { "d/docker", "docker.io", "d/docker", "latest", NULL,
    "docker.io/d/docker:latest" },
  { "jess/t", "docker.io", "jess/t", "latest", NULL,
    "docker.io/jess/t:latest" },
  { "ns/a.b_c__d-e--f/g", "docker.io", "ns/a.b_c__d-e--f/g", "latest", NULL,
    "docker.io/ns/a.b_c__d-e--f/g:latest" },
  { "docker.io/a.b/c", "docker.io", "a.b/c", "latest", NULL,
    "docker.io/a.b/c:latest" },
  { "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "docker.io",
    "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "latest", NULL,
    "docker.io/library/"
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest" },
  { "docker.io/" HEXID, "docker.io", "library/" HEXID, "latest", NULL,
    "docker.io/library/" HEXID ":latest" },
  { "192.168.0.1", "docker.io", "library/192.168.0.1", "latest", NULL,
    "docker.io/library/192.168.0.1:latest" },
  { "192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", NULL,
    "docker.io/library/192.168.0.1:80" },
  /* Registry hosts. */
  { "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000", "private/moonbase",
    "latest", NULL, "127.0.0.1:8000/private/moonbase:latest" },
  { "127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase", "latest",
    NULL, "127.0.0.1:8000/privatebase:latest" },
  { "127.0.0.1:5000/library/debian", "127.0.0.1:5000", "library/debian",
    "latest", NULL, "127.0.0.1:5000/library/debian:latest" },
  { "192.168.0.1:8/debian", "192.168.0.1:8", "debian", "latest", NULL,
    "192.168.0.1:8/debian:latest" },
  { "example.com/private/moonbase", "example.com", "private/moonbase",
    "latest", NULL, "example.com/private/moonbase:latest" },
  { "example.com/privatebase", "example.com", "privatebase", "latest", NULL,
    "example.com/privatebase:latest" },
  { "example.com:8000/privatebasee:v2", "example.com:8000", "privatebasee",
    "v2", NULL, "example.com:8000/privatebasee:v2" },
  { "test.com:8080/foo", "test.com:8080", "foo", "latest", NULL,
    "test.com:8080/foo:latest" },
  { "test-com:8080/foo", "test-com:8080", "foo", "latest", NULL,
    "test-com:8080/foo:latest" },
  { "xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", NULL,
    "xn--n3h.com:18080/foo:latest" },
  { "localhost/foo", "localhost", "foo", "latest", NULL,
    "localhost/foo:latest" },
  { "localhost:5000/a/b:v1", "localhost:5000", "a/b", "v1", NULL,
    "localhost:5000/a/b:v1" },
  { "Foo/bar", "Foo", "bar", "latest", NULL, "Foo/bar:latest" },
  { "DOCKER/docker", "DOCKER", "docker", "latest", NULL,
    "DOCKER/docker:latest" },
  { "[fc00::1]:5000/docker", "[fc00::1]:5000", "docker", "latest", NULL,
    "[fc00::1]:5000/docker:latest" },
  { "[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000",
    "library/debian", "latest", NULL,
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest" },
  { "[::1]/x", "[::1]", "x", "latest", NULL, "[::1]/x:latest" },
  { "registry-1.docker.io/library/x", "registry-1.docker.io", "library/x",
    "latest", NULL, "registry-1.docker.io/library/x:latest" },
  { "ghcr.io/org/team/app:1.2.3-rc.1_b", "ghcr.io", "org/team/app",
    "1.2.3-rc.1_b", NULL, "ghcr.io/org/team/app:1.2.3-rc.1_b" },
  /* Tags and digests. */
  { "busybox:latest@sha256:" H64A, "docker.io", "library/busybox", "latest",
    "sha256:" H64A, "docker.io/library/busybox:latest@sha256:" H64A },
  { "redis@sha256:" H64B, "docker.io", "library/redis", NULL,
    "sha256:" H64B, "docker.io/library/redis@sha256:" H64B },
  { "docker.io/dmcgowan/myapp@sha256:" H64B, "docker.io", "dmcgowan/myapp",
    NULL, "sha256:" H64B, "docker.io/dmcgowan/myapp@sha256:" H64B },
  { "127.0.0.1:5000/a/b@sha256:" H64A, "127.0.0.1:5000", "a/b", NULL,
    "sha256:" H64A, "127.0.0.1:5000/a/b@sha256:" H64A },
  { "x:_Tag.With-All_", "docker.io", "library/x", "_Tag.With-All_", NULL,
    "docker.io/library/x:_Tag.With-All_" },
  { "x:0123456789012345678901234567890123456789012345678901234567890123"
    "456789012345678901234567890123456789012345678901234567890123456",
    "docker.io", "library/x",
    "0123456789012345678901234567890123456789012345678901234567890123"
    "456789012345678901234567890123456789012345678901234567890123456", NULL,
    "docker.io/library/x:"
    "0123456789012345678901234567890123456789012345678901234567890123"
    "456789012345678901234567890123456789012345678901234567890123456" },
};

struct bad {
  const char *in, *msg;
};

static const struct bad bads[] = {
  { "", "invalid image reference: empty" },
  { "docker/Docker", "repository name must be lowercase" },
  { "docker.io/docker/Docker", "repository name must be lowercase" },
  { "UPPER", "repository name must be lowercase" },
  { "example.com/Foo/bar:v1", "repository name must be lowercase" },
  { "https://github.com/docker/docker", "a URL is not an image reference" },
  { "http://user:secret@example.com/a", "a URL is not an image reference" },
  { "-docker", "invalid repository name" },
  { "-docker/docker", "invalid repository name" },
  { "docker-/docker", "invalid repository name" },
  { "-docker-/docker", "invalid repository name" },
  { "____/____", "invalid repository name" },
  { "_docker/_docker", "invalid repository name" },
  /* (a '.' in the first component makes it a registry host) */
  { "dock..er/docker", "invalid registry host" },
  { "dock_.er/docker", "invalid registry host" },
  { "dock-.er/docker", "invalid registry host" },
  { "ns/dock..er", "invalid repository name" },
  { "ns/dock_.er", "invalid repository name" },
  { "ns/dock-.er", "invalid repository name" },
  { "ns/dock.-er", "invalid repository name" },
  { "ns/docker.", "invalid repository name" },
  { "dock___er/docker", "invalid repository name" },
  { "docker///docker", "invalid repository name" },
  { "docker.io/docker///docker", "invalid repository name" },
  { "docker/", "invalid repository name" },
  { "foo bar", "invalid repository name" },
  { "a/b/", "invalid repository name" },
  { "localhost:5000/", "repository name must have at least one component" },
  { "-docker.io/docker/docker", "invalid registry host \"-docker.io\"" },
  { "[fc00::1]", "invalid repository name" },
  { "[fc00::1]:5000", "invalid repository name" },
  { "fc00::1:5000/debian", "invalid registry host" },
  { "[fe80::1%eth0]:5000/debian", "invalid registry host" },
  { "[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid registry host" },
  { "[]:5000/x", "invalid registry host" },
  { "example.com:/foo", "invalid registry host" },
  { "example.com:80a/foo", "invalid registry host" },
  { "exa_mple.com/foo", "invalid registry host" },
  { "example..com/foo", "invalid registry host" },
  { HEXID, "cannot specify 64-byte hexadecimal strings" },
  { "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/"
    "docker", "must not be more than 255 characters" },
  { "ubuntu:", "invalid tag \"\"" },
  { "ubuntu:-bad", "invalid tag \"-bad\"" },
  { "ubuntu:.bad", "invalid tag" },
  { "ubuntu:a:b", "invalid tag" },
  { "a/b:c/d", "invalid tag" },
  { "x:0123456789012345678901234567890123456789012345678901234567890123"
    "45678901234567890123456789012345678901234567890123456789012345678",
    "invalid tag" },
  { "ubuntu@sha512:" H64A H64B, "unsupported digest algorithm \"sha512\"" },
  { "ubuntu:1@md5:0123456789abcdef0123456789abcdef",
    "unsupported digest algorithm \"md5\"" },
  { "ubuntu@sha256:abc", "want 64 hex digits, got 3" },
  { "ubuntu@sha256:" H64A "0", "want 64 hex digits, got 65" },
  { "ubuntu@sha256:86E0E091D0DA6BDE2456DBB48306F3956BBEB2EAE1B5B9A43045843F69FE4AAA",
    "want lowercase hex digits" },
  { "ubuntu@", "invalid digest" },
  { "ubuntu@@sha256:" H64A, "invalid digest" },
  { "ubuntu@" H64A, "invalid digest" },
  { "ubuntu@sha256:" H64A "@sha256:" H64A, "want 64 hex digits" },
};

struct layout {
  const char *in, *dir, *tag, *digest, *string;
  bool defaulted;
};

static const struct layout layouts[] = {
  { "oci-layout:/srv/img", "/srv/img", "latest", NULL,
    "oci-layout:/srv/img", true },
  { "oci-layout:/srv/img:v1", "/srv/img", "v1", NULL,
    "oci-layout:/srv/img:v1", false },
  { "oci-layout:./img:1.0", "./img", "1.0", NULL, "oci-layout:./img:1.0",
    false },
  { "oci-layout:img", "img", "latest", NULL, "oci-layout:img", true },
  { "oci-layout:/srv/a:b/img", "/srv/a:b/img", "latest", NULL,
    "oci-layout:/srv/a:b/img", true },
  { "oci-layout:/srv/a:b/img:v2", "/srv/a:b/img", "v2", NULL,
    "oci-layout:/srv/a:b/img:v2", false },
  { "oci-layout:/srv/a:b", "/srv/a", "b", NULL, "oci-layout:/srv/a:b",
    false },
  { "oci-layout:/srv/a:b/", "/srv/a:b/", "latest", NULL,
    "oci-layout:/srv/a:b/", true },
  { "oci-layout:/x:", "/x:", "latest", NULL, "oci-layout:/x:", true },
  { "oci-layout:/x:-y", "/x:-y", "latest", NULL, "oci-layout:/x:-y", true },
  { "oci-layout:/srv/img@sha256:" H64A, "/srv/img", NULL, "sha256:" H64A,
    "oci-layout:/srv/img@sha256:" H64A, false },
  { "oci-layout:/srv/img:v1@sha256:" H64A, "/srv/img", "v1", "sha256:" H64A,
    "oci-layout:/srv/img:v1@sha256:" H64A, false },
  { "oci-layout:/srv/x@y/img", "/srv/x@y/img", "latest", NULL,
    "oci-layout:/srv/x@y/img", true },
  { "oci-layout:/srv/me@host:tag", "/srv/me@host", "tag", NULL,
    "oci-layout:/srv/me@host:tag", false },
  { "oci-layout:/srv/me@host:tag@sha256:" H64B, "/srv/me@host", "tag",
    "sha256:" H64B, "oci-layout:/srv/me@host:tag@sha256:" H64B, false },
  { "oci-layout:/Srv/UPPER case:Tag", "/Srv/UPPER case", "Tag", NULL,
    "oci-layout:/Srv/UPPER case:Tag", false },
};

static const struct bad layout_bads[] = {
  { "oci-layout:", "no directory" },
  { "oci-layout::v1", "no directory" },
  { "oci-layout:@sha256:" H64A, "no directory" },
  { "oci-layout:/srv/img@sha512:" H64A H64B,
    "unsupported digest algorithm \"sha512\"" },
  { "oci-layout:/srv/img@sha256:abc", "want 64 hex digits" },
  { "oci-layout:/srv/img:v1@sha256:", "want 64 hex digits, got 0" },
  { "oci-layout:/srv/img@md5:0123456789abcdef0123456789abcdef",
    "unsupported digest algorithm \"md5\"" },
};

static void
test_goods(void)
{
  struct sn_ref r, r2;
  size_t i;

  for (i = 0; i < sizeof goods / sizeof goods[0]; i++) {
    const struct good *g = &goods[i];
    char *s = NULL, *s2 = NULL;
    int ret = sn_ref_parse(g->in, &r);

    if (!ok(ret == 0, "parse \"%s\"", g->in)) {
      diag("error: %s", sn_error());
      continue;
    }
    ok(r.kind == SN_REF_REGISTRY && streq(r.registry, g->registry)
       && streq(r.repository, g->repository) && streq(r.tag, g->tag)
       && streq(r.digest, g->digest) && r.layout_dir == NULL
       && r.tag_defaulted == (strcmp(g->string + strlen(g->string) - 7,
                                     ":latest") == 0
                              && strstr(g->in, ":latest") == NULL),
       "  \"%s\" → registry %s, repository %s, tag %s, digest %s",
       g->in, r.registry, r.repository, r.tag ? r.tag : "(none)",
       r.digest ? r.digest : "(none)");
    s = sn_ref_string(&r);
    ok(streq(s, g->string), "  string \"%s\"", s ? s : "(null)");
    /* The normalized form reads back to itself. */
    if (s != NULL && sn_ref_parse(s, &r2) == 0) {
      s2 = sn_ref_string(&r2);
      ok(streq(s2, s) && streq(r2.registry, r.registry)
         && streq(r2.repository, r.repository) && streq(r2.tag, r.tag)
         && streq(r2.digest, r.digest), "  round trip");
      sn_ref_clear(&r2);
    }
    else
      ok(0, "  round trip: %s", sn_error());
    free(s);
    free(s2);
    sn_ref_clear(&r);
    ok(r.registry == NULL && r.tag == NULL, "  cleared");
  }
}

static void
test_bads(const struct bad *b, size_t n)
{
  struct sn_ref r;
  size_t i;

  for (i = 0; i < n; i++) {
    int ret;

    memset(&r, 0x5a, sizeof r); /* garbage in: must not be freed */
    ret = sn_ref_parse(b[i].in, &r);
    if (ret == 0)
      sn_ref_clear(&r);
    ok(ret == -1 && strstr(sn_error(), b[i].msg) != NULL
       && strstr(sn_error(), "invalid image reference") == sn_error()
       && r.registry == NULL && r.repository == NULL && r.tag == NULL
       && r.digest == NULL && r.layout_dir == NULL,
       "reject \"%.60s\": %s", b[i].in, sn_error());
  }
}

static void
test_layouts(void)
{
  struct sn_ref r, r2;
  size_t i;

  for (i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
    const struct layout *l = &layouts[i];
    char *s;

    if (!ok(sn_ref_parse(l->in, &r) == 0, "parse \"%s\"", l->in)) {
      diag("error: %s", sn_error());
      continue;
    }
    ok(r.kind == SN_REF_OCI_LAYOUT && r.registry == NULL
       && r.repository == NULL && streq(r.layout_dir, l->dir)
       && streq(r.tag, l->tag) && streq(r.digest, l->digest)
       && r.tag_defaulted == l->defaulted,
       "  dir \"%s\", tag %s%s, digest %s", r.layout_dir,
       r.tag ? r.tag : "(none)", r.tag_defaulted ? " (default)" : "",
       r.digest ? r.digest : "(none)");
    ok(sn_ref_api_host(&r) == NULL, "  no API host for a layout");
    s = sn_ref_string(&r);
    ok(streq(s, l->string), "  string \"%s\"", s ? s : "(null)");
    if (s != NULL && sn_ref_parse(s, &r2) == 0) {
      ok(streq(r2.layout_dir, r.layout_dir) && streq(r2.tag, r.tag)
         && streq(r2.digest, r.digest)
         && r2.tag_defaulted == r.tag_defaulted, "  round trip");
      sn_ref_clear(&r2);
    }
    else
      ok(0, "  round trip: %s", sn_error());
    free(s);
    sn_ref_clear(&r);
  }

  /* A directory whose name would read back as a tag or digest is
   * printed with a trailing '/' (the same directory); others as is. */
  {
    static const struct {
      const char *dir, *tag, *digest, *want;
      bool slash;
    } t[] = {
      { "/srv/a:b", NULL, NULL, "oci-layout:/srv/a:b/", true },
      { "/srv/a@sha256:x", NULL, NULL, "oci-layout:/srv/a@sha256:x/", true },
      { "rel:1.0", NULL, NULL, "oci-layout:rel:1.0/", true },
      { "/srv/a:b", "v1", NULL, "oci-layout:/srv/a:b:v1", false },
      { "/srv/a:b", NULL, "sha256:" H64A, "oci-layout:/srv/a:b/@sha256:" H64A,
        true },
      { "/srv/a@sha256:" H64B, "v1", NULL,
        "oci-layout:/srv/a@sha256:" H64B "/:v1", true },
      { "/srv/a@sha256:" H64B, NULL, "sha256:" H64A,
        "oci-layout:/srv/a@sha256:" H64B "/@sha256:" H64A, true },
      { "/srv/a@b", NULL, "sha256:" H64A, "oci-layout:/srv/a@b@sha256:" H64A,
        false },
      { "/srv/a:b/", NULL, NULL, "oci-layout:/srv/a:b/", false },
      { "/srv/x:-y", NULL, NULL, "oci-layout:/srv/x:-y", false },
    };
    struct sn_ref m;
    char *s;

    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
      memset(&m, 0, sizeof m);
      m.kind = SN_REF_OCI_LAYOUT;
      m.layout_dir = (char *) t[i].dir;
      m.tag = (char *) (t[i].tag ? t[i].tag : "latest");
      m.tag_defaulted = t[i].tag == NULL && t[i].digest == NULL;
      if (t[i].digest != NULL && t[i].tag == NULL)
        m.tag = NULL;
      m.digest = (char *) t[i].digest;
      s = sn_ref_string(&m);
      ok(streq(s, t[i].want), "layout dir \"%s\" printed as \"%s\"",
         t[i].dir, s ? s : "(null)");
      if (s != NULL && sn_ref_parse(s, &r) == 0) {
        ok(strncmp(r.layout_dir, t[i].dir, strlen(t[i].dir)) == 0
           && strlen(r.layout_dir) == strlen(t[i].dir) + t[i].slash
           && streq(r.tag, m.tag) && streq(r.digest, m.digest)
           && r.tag_defaulted == m.tag_defaulted,
           "  reads back as the directory \"%s\"", r.layout_dir);
        sn_ref_clear(&r);
      }
      else
        ok(0, "  reads back: %s", sn_error());
      free(s);
    }
  }
}

static void
test_api_host(void)
{
  static const struct {
    const char *in, *host;
  } t[] = {
    { "ubuntu", "registry-1.docker.io" },
    { "docker.io/user/img", "registry-1.docker.io" },
    { "index.docker.io/user/img", "registry-1.docker.io" },
    { "registry-1.docker.io/user/img", "registry-1.docker.io" },
    { "ghcr.io/org/img", "ghcr.io" },
    { "127.0.0.1:5000/img", "127.0.0.1:5000" },
    { "localhost/img", "localhost" },
    { "[::1]:5000/img", "[::1]:5000" },
  };
  struct sn_ref r;
  size_t i;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (sn_ref_parse(t[i].in, &r) == -1) {
      ok(0, "api host of %s: %s", t[i].in, sn_error());
      continue;
    }
    ok(streq(sn_ref_api_host(&r), t[i].host), "api host of %s is %s",
       t[i].in, sn_ref_api_host(&r));
    sn_ref_clear(&r);
  }
}

static void
test_loopback(void)
{
  static const char *const yes[] = {
    "localhost", "localhost:5000", "LocalHost", "127.0.0.1",
    "127.0.0.1:5000", "127.1.2.3", "127.255.255.255:80", "::1", "[::1]",
    "[::1]:5000", "[0:0:0:0:0:0:0:1]:443", "[::ffff:127.0.0.1]",
  };
  static const char *const no[] = {
    "", "128.0.0.1", "10.0.0.1:5000", "example.com", "localhost.example.com",
    "localhost:", "localhost:50a0", "127.0.0.1.nip.io", "127.0.0.256",
    "1270.0.0.1", "127.0.0", "[::2]", "::2", "::1:5000", "[::1", "[::1]x",
    "[::1]:", "[127.0.0.1]", "docker.io", "0.0.0.0", "[::]",
  };
  size_t i;

  for (i = 0; i < sizeof yes / sizeof yes[0]; i++)
    ok(sn_ref_is_loopback(yes[i]), "loopback: \"%s\"", yes[i]);
  for (i = 0; i < sizeof no / sizeof no[0]; i++)
    ok(!sn_ref_is_loopback(no[i]), "not loopback: \"%s\"", no[i]);
  ok(!sn_ref_is_loopback(NULL), "not loopback: NULL");
}

static void
test_misc(void)
{
  struct sn_ref r;
  char big[5000];

  int ret;

  /* Error messages never repeat credentials typed into a reference. */
  ret = sn_ref_parse("https://user:hunter2@example.com/a", &r);
  ok(ret == -1 && strstr(sn_error(), "hunter2") == NULL,
     "URL password not echoed: %s", sn_error());
  ret = sn_ref_parse("user:hunter2@example.com/a", &r);
  ok(ret == -1 && strstr(sn_error(), "hunter2") == NULL,
     "user:password@host not echoed: %s", sn_error());
  ret = sn_ref_parse("oci-layout:/x@sha256:hunter2", &r);
  ok(ret == -1 && strstr(sn_error(), "hunter2") == NULL,
     "bad layout digest not echoed: %s", sn_error());
  /* Messages stay on one line. */
  ret = sn_ref_parse("ubuntu:a\nb\rc", &r);
  ok(ret == -1 && strchr(sn_error(), '\n') == NULL
     && strchr(sn_error(), '\r') == NULL
     && strstr(sn_error(), "invalid tag \"a?b?c\"") != NULL,
     "control characters in a message become '?': %s", sn_error());
  ret = sn_ref_parse("ex\tample.com/x", &r);
  ok(ret == -1 && strchr(sn_error(), '\t') == NULL,
     "tab in a host: %s", sn_error());
  /* Very long input is refused up front. */
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  {
    char huge[9000];

    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    ret = sn_ref_parse(huge, &r);
    ok(ret == -1 && strstr(sn_error(), "too long") != NULL,
       "an 8999-byte reference is refused: %s", sn_error());
    memcpy(huge, "oci-layout:/", 12);
    huge[5000] = '\0';
    ret = sn_ref_parse(huge, &r);
    ok(ret == -1 && strstr(sn_error(), "directory name too long") != NULL,
       "a long layout directory is refused: %s", sn_error());
    memset(huge, 'a', 300);
    memcpy(huge + 296, ".io/x", 6);
    ret = sn_ref_parse(huge, &r);
    ok(ret == -1 && strstr(sn_error(), "registry host too long") != NULL,
       "a 299-character host is refused: %s", sn_error());
  }
  memset(big, 'a', 4096);
  big[4096] = '\0';
  ret = sn_ref_parse(big, &r);
  ok(ret == -1 && strstr(sn_error(), "must not be more than 255") != NULL,
     "a 4096-byte name is refused by the length limit: %s", sn_error());
  ret = sn_ref_parse(NULL, &r);
  ok(ret == -1 && strstr(sn_error(), "empty") != NULL,
     "NULL reference refused");
  /* Clearing twice is harmless. */
  ok(sn_ref_parse("ubuntu", &r) == 0, "parse ubuntu");
  sn_ref_clear(&r);
  sn_ref_clear(&r);
  sn_ref_clear(NULL);
  ok(r.registry == NULL, "clear twice");
}

int
main(void)
{
  test_goods();
  test_bads(bads, sizeof bads / sizeof bads[0]);
  test_bads(layout_bads, sizeof layout_bads / sizeof layout_bads[0]);
  test_layouts();
  test_api_host();
  test_loopback();
  test_misc();
  return done_testing();
}
