/* soci-nbd tests: how a remote layer's mount reaches its registry
 * (lib/snapshot/snap-registry.h) — containerd's hosts.toml turned into
 * soci-nbd mount options, the credentials of CRI pulls kept per repository
 * and written for a mount (mode 0600, one entry per host), and the store
 * passing both to its mount command and removing the file with the last
 * snapshot of the layer. */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snap-registry.h"
#include "snapshot/snapshots.h"
#include "util/err.h"
#include "util/fdio.h"
#include "tap.h"

static char root[512];
static char logged[4096];

static void
log_it(const char *msg)
{
  size_t n = strlen(logged);

  snprintf(logged + n, sizeof logged - n, "%s\n", msg);
}

static void
put(const char *path, const char *text)
{
  FILE *f;
  char dir[1024], *slash;

  snprintf(dir, sizeof dir, "%s", path);
  if ((slash = strrchr(dir, '/')) != NULL) {
    *slash = 0;
    sn_mkdir_p(dir, 0755);
  }
  f = fopen(path, "w");
  if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
    printf("Bail out! cannot write %s\n", path);
    exit(1);
  }
}

/* The options as one line, root shown as R. */
static const char *
args_of(const struct sn_snap_hosts *h)
{
  static char buf[4096];
  size_t rl = strlen(root);
  char *p = buf;

  buf[0] = 0;
  for (size_t i = 0; i < h->nargs; i++) {
    const char *a = h->args[i];

    if (strncmp(a, root, rl) == 0)
      p += sprintf(p, "%sR%s", i ? " " : "", a + rl);
    else
      p += sprintf(p, "%s%s", i ? " " : "", a);
  }
  return buf;
}

static const char *
hosts_of(const struct sn_snap_hosts *h)
{
  static char buf[2048];
  char *p = buf;

  buf[0] = 0;
  for (size_t i = 0; i < h->nhosts; i++)
    p += sprintf(p, "%s%s", i ? " " : "", h->hosts[i]);
  return buf;
}

static char *
slurp_str(const char *path)
{
  size_t n;
  unsigned char *b = slurp(path, &n);
  char *s = realloc(b, n + 1);

  s[n] = 0;
  return s;
}

static void
test_hosts(void)
{
  char dirs[1100], certs[600], path[1024], want[2048];
  struct sn_snap_hosts h;
  int r;

  snprintf(dirs, sizeof dirs, "%s/none:%s/certs.d", root, root);
  snprintf(certs, sizeof certs, "%s/bundles", root);

  r = sn_snap_hosts_load(dirs, "reg.example:5000", certs, log_it, &h);
  OK(r == 0 && h.nargs == 0 && strcmp(hosts_of(&h), "reg.example:5000") == 0
     && h.file == NULL, "no hosts.toml: no options, the registry alone "
     "(%s)", ERR);
  sn_snap_hosts_clear(&h);
  r = sn_snap_hosts_load(NULL, "reg.example:5000", certs, log_it, &h);
  OK(r == 0 && h.nargs == 0, "no directories at all (%s)", ERR);
  sn_snap_hosts_clear(&h);

  snprintf(path, sizeof path, "%s/certs.d/reg.example:5000/hosts.toml", root);
  put(path,
      "server = \"http://reg.example:5000\"\n"
      "[host.\"http://10.0.2.100:6000/v2\"]\n"
      "  capabilities = [\"pull\", \"resolve\"]\n"
      "[host.\"https://push-only.example\"]\n"
      "  capabilities = [\"push\"]\n"
      "[host.\"https://mirror.example\"]\n"
      "  header = { x-a = \"b\" }\n"
      "[host.\"https://pathy.example/some/path\"]\n"
      "[host.\"https://over.example/v2/x\"]\n"
      "  override_path = true\n");
  logged[0] = 0;
  r = sn_snap_hosts_load(dirs, "reg.example:5000", certs, log_it, &h);
  OK(r == 0 && strcmp(args_of(&h), "--mirror http://10.0.2.100:6000 "
                      "--mirror https://mirror.example --plain-http "
                      "reg.example:5000") == 0,
     "mirrors with pull, in the file's order (push-only, path and "
     "override_path hosts left out), an http server: %s (%s)", args_of(&h),
     ERR);
  OK(strcmp(hosts_of(&h), "reg.example:5000 10.0.2.100:6000 "
            "mirror.example") == 0, "... the hosts the mount may ask: %s",
     hosts_of(&h));
  ok(strstr(logged, "https://mirror.example: extra headers are not "
            "supported") && strstr(logged, "https://pathy.example/some/path "
            "is skipped: ") && strstr(logged, "override_path is not "
            "supported") && strstr(logged, "hosts.toml: "),
     "... and the log says what is not followed, naming the file");
  sn_snap_hosts_clear(&h);

  /* containerd's other directory name for a host with a port. */
  snprintf(path, sizeof path, "%s/certs.d/reg.example_5000_/hosts.toml",
           root);
  put(path, "server = \"https://reg.example:5000\"\n"
            "[host.\"https://m.example\"]\n  skip_verify = true\n");
  r = sn_snap_hosts_load(dirs, "reg.example:5000", certs, log_it, &h);
  OK(r == 0 && strcmp(args_of(&h), "--mirror https://m.example") == 0 &&
     strstr(h.file, "reg.example_5000_/hosts.toml"),
     "HOST_PORT_ is looked for first; skip_verify on one HTTPS host of "
     "two: TLS stays verified (%s) (%s)", args_of(&h), ERR);
  ok(strstr(logged, "skip_verify is followed only when every HTTPS host "
            "has it") != NULL, "... and the log says so");
  sn_snap_hosts_clear(&h);
  put(path, "server = \"https://reg.example:5000\"\nskip_verify = true\n"
            "[host.\"https://m.example\"]\n  skip_verify = true\n"
            "[host.\"http://plain.example\"]\n");
  r = sn_snap_hosts_load(dirs, "reg.example:5000", certs, log_it, &h);
  OK(r == 0 && strcmp(args_of(&h), "--mirror https://m.example --mirror "
                      "http://plain.example --insecure") == 0,
     "skip_verify on every HTTPS host: --insecure (%s) (%s)", args_of(&h),
     ERR);
  sn_snap_hosts_clear(&h);

  /* _default, a server elsewhere, and CA files. */
  snprintf(path, sizeof path, "%s/certs.d/_default/hosts.toml", root);
  put(path, "server = \"https://other.example\"\n"
            "ca = \"ca1.pem\"\n"
            "[host.\"https://m2.example\"]\n  ca = [\"/nonexistent/x\"]\n");
  logged[0] = 0;
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == -1 && strstr(sn_error(), "/nonexistent/x"),
     "a CA file that is missing: an error naming it (%s)", WHY);
  sn_snap_hosts_clear(&h);
  snprintf(path, sizeof path, "%s/certs.d/_default/ca1.pem", root);
  put(path, "-----CA ONE-----");
  snprintf(path, sizeof path, "%s/ca2.pem", root);
  put(path, "-----CA TWO-----\n");
  snprintf(want, sizeof want,
           "server = \"https://other.example\"\n"
           "ca = \"ca1.pem\"\n"
           "[host.\"https://m2.example\"]\n  ca = [\"%s\"]\n", path);
  snprintf(path, sizeof path, "%s/certs.d/_default/hosts.toml", root);
  put(path, want);
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == 0 && h.nargs == 6 &&
     strncmp(args_of(&h), "--mirror https://m2.example --mirror "
             "https://other.example --cacert R/bundles/", 78) == 0 &&
     strstr(hosts_of(&h), "docker.io m2.example other.example"),
     "_default for any host; a server elsewhere is the last mirror; CA "
     "files make a bundle: %s / %s (%s)", args_of(&h), hosts_of(&h), ERR);
  ok(strstr(logged, "server https://other.example is tried as the last "
            "mirror, before docker.io itself") != NULL,
     "... and the log says how the server is used");
  if (h.nargs == 6) {
    char *b = slurp_str(h.args[5]);

    ok(strstr(b, "-----CA TWO-----\n-----CA ONE-----\n") != NULL &&
       (access("/etc/ssl/certs/ca-certificates.crt", F_OK) != 0 ||
        strlen(b) > 40), "... the bundle: the system's CAs, then the "
       "hosts' and the server's (relative to the file's directory)");
    free(b);
  }
  sn_snap_hosts_clear(&h);
  put(path, "server = \"https://registry-1.docker.io\"\n");
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == 0 && h.nargs == 0, "docker.io's server is registry-1.docker.io: "
     "nothing to change (%s)", args_of(&h));
  sn_snap_hosts_clear(&h);

  put(path, "server = [\"x\"]\n");
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == -1 && strstr(sn_error(), "server must be a URL"),
     "a server that is not a string: an error (%s)", WHY);
  put(path, "server = \"ftp://x\"\n");
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == -1 && strstr(sn_error(), "not an http:// or https:// URL"),
     "a server that is not HTTP: an error (%s)", WHY);
  put(path, "[host.\"https://a\"]\ncapabilities = \"pull\"\n");
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == -1 && strstr(sn_error(), "capabilities must be a list"),
     "capabilities that are not a list: an error (%s)", WHY);
  put(path, "[host.\"https://a\"]\nskip_verify = 1\n");
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == -1 && strstr(sn_error(), "skip_verify must be true or false"),
     "skip_verify that is not a boolean: an error (%s)", WHY);
  put(path, "server = \"https://x\n");
  r = sn_snap_hosts_load(dirs, "docker.io", certs, log_it, &h);
  OK(r == -1 && strstr(sn_error(), "_default/hosts.toml:1: a string "
                       "without its closing"),
     "malformed TOML: the file and line (%s)", WHY);
}

static void
test_creds(void)
{
  struct sn_snap_creds *c = sn_snap_creds_new();
  const char *hosts[] = { "reg.example:5000", "mirror.example" };
  const char *why;
  char path[1024], *doc;
  struct stat st;
  int r;

  snprintf(path, sizeof path, "%s/auth.json", root);
  r = sn_snap_creds_put(c, "reg.example:5000/a/b:v1", "", "", "", "", "",
                        &why);
  OK(r == 1 && why == NULL, "a pull without credentials: nothing kept");
  r = sn_snap_creds_put(c, "reg.example:5000/a/b:v1", "", "pw", "", "", "",
                        &why);
  OK(r == 1 && why && strstr(why, "without a username"),
     "a password without a username: not usable (%s)", why ? why : "");
  r = sn_snap_creds_put(c, "reg.example:5000/a/b:v1", "", "", "bm90LWJhc2U",
                        "", "", &why);
  OK(r == -1 && strstr(sn_error(), "not base64 of user:password") &&
     !strstr(sn_error(), "bm90"), "an auth that is not base64 of "
     "user:password: an error without it (%s)", WHY);
  r = sn_snap_creds_write(c, "reg.example:5000/a/b@sha256:"
                          "0123456789abcdef0123456789abcdef0123456789abcdef"
                          "0123456789abcdef", hosts, 2, path);
  OK(r == 0 && access(path, F_OK) != 0, "no credentials for the "
     "repository: no file (%s)", ERR);

  /* "dXNlcjpwYXNzOndvcmQ=" is base64 of "user:pass:word". */
  r = sn_snap_creds_put(c, "reg.example:5000/a/b:v1", "", "",
                        "dXNlcjpwYXNzOndvcmQ=", "", "", &why);
  OK(r == 0, "a pull with auth (base64 user:password): kept (%s)", ERR);
  r = sn_snap_creds_write(c, "reg.example:5000/a/b@sha256:"
                          "0123456789abcdef0123456789abcdef0123456789abcdef"
                          "0123456789abcdef", hosts, 2, path);
  OK(r == 1 && stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
     "written for the same repository by digest, mode 0600 (%o) (%s)",
     (unsigned) st.st_mode & 0777, ERR);
  doc = slurp_str(path);
  ok(strcmp(doc, "{\"auths\":{\"reg.example:5000\":{\"username\":\"user\","
                 "\"password\":\"pass:word\"},\"mirror.example\":{"
                 "\"username\":\"user\",\"password\":\"pass:word\"}}}") == 0,
     "... a docker config with an entry per host, split at the first "
     "colon: %s", doc);
  free(doc);
  r = sn_snap_creds_write(c, "reg.example:5000/a/other:v1", hosts, 2, path);
  OK(r == 0, "another repository of the registry: none (%s)", ERR);

  r = sn_snap_creds_put(c, "reg.example:5000/a/b", "u2", "p\"2", "", "tok",
                        "https://only.example:443/v1/", &why);
  OK(r == 0, "the repository's next pull replaces them (%s)", ERR);
  r = sn_snap_creds_write(c, "reg.example:5000/a/b:v2", hosts, 2, path);
  doc = r == 1 ? slurp_str(path) : strdup("");
  ok(strcmp(doc, "{\"auths\":{\"only.example:443\":{\"username\":\"u2\","
                 "\"password\":\"p\\\"2\",\"identitytoken\":\"tok\"}}}") == 0,
     "... with a server address, for that host alone; an identity token; "
     "JSON escaping: %s", doc);
  free(doc);
  r = sn_snap_creds_put(c, "docker.io/library/x", "me", "secret", "", "", "",
                        &why);
  OK(r == 0 && sn_snap_creds_write(c, "x:latest", hosts, 1, path) == 1,
     "docker.io names normalized: library/x and x are one repository");
  r = sn_snap_creds_put(c, "reg.example/a b", "me", "secret", "", "", "",
                        &why);
  OK(r == -1, "a malformed image reference: an error (%s)", WHY);
  for (int i = 0; i < 300; i++) {
    char img[64];

    snprintf(img, sizeof img, "reg.example:5000/many/r%d", i);
    sn_snap_creds_put(c, img, "u", "p", "", "", "", &why);
  }
  OK(sn_snap_creds_write(c, "reg.example:5000/many/r299", hosts, 1, path)
     == 1 && sn_snap_creds_write(c, "reg.example:5000/many/r0", hosts, 1,
                                 path) == 0,
     "past 256 repositories the oldest are forgotten");
  sn_snap_creds_free(c);
}

/* The store: hosts.toml and credentials reach soci-nbd mount's command
 * line; the file goes with the last snapshot of its layer. */
static void
test_store(void)
{
  char sroot[600], dirs[700], state[700], path[1024], mscript[1024], *args;
  char *mount[] = { "/bin/sh", "-c", mscript, "sh", "--lazy-only", NULL };
  char *umount[] = { "/bin/true", NULL };
  struct sn_snap_creds *c = sn_snap_creds_new();
  struct sn_snap_remote rem = { mount, umount, log_it, dirs, c, state };
  const char *layer = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaa";
  struct sn_snap_label l[3] = {
    { SN_SNAP_LABEL_TARGET, "c1" },
    { SN_SNAP_LABEL_IMAGE, "10.0.2.100:5000/img:v1" },
    { SN_SNAP_LABEL_LAYER, (char *) layer },
  };
  struct sn_snap_mounts m;
  struct sn_snapshots *s;
  const char *why;
  struct stat st;
  char auth[1024];

  snprintf(sroot, sizeof sroot, "%s/store", root);
  snprintf(dirs, sizeof dirs, "%s/hostsdir", root);
  snprintf(state, sizeof state, "%s/state", root);
  snprintf(path, sizeof path, "%s/hostsdir/10.0.2.100:5000/hosts.toml", root);
  put(path, "server = \"http://10.0.2.100:5000\"\n"
            "[host.\"http://10.0.2.100:5001\"]\n");
  /* The last word is the directory: the arguments go into it. */
  snprintf(mscript, sizeof mscript, "eval \"d=\\${$#}\"; echo \"$*\" > "
           "\"$d/args\"");
  s = sn_snapshots_open(sroot);
  if (s == NULL || c == NULL) {
    ok(0, "open %s: %s", sroot, sn_error());
    return;
  }
  sn_snapshots_set_remote(s, &rem);
  sn_snap_creds_put(c, "10.0.2.100:5000/img:v1", "ci", "s3cret", "", "", "",
                    &why);
  OK(sn_snapshots_prepare(s, "extract-1 c1", "", l, 3, &m) == SN_SNAP_EXISTS,
     "a remote layer of a pull with credentials: mounted (%s)", WHY);
  snprintf(path, sizeof path, "%s/snapshots/1/fs/args", sroot);
  args = slurp_str(path);
  args[strcspn(args, "\n")] = 0;
  snprintf(auth, sizeof auth, "%s/auth/%s.json", state, layer + 7);
  {
    char want[2048];

    snprintf(want, sizeof want, "--lazy-only --mirror http://10.0.2.100:5001 "
             "--plain-http 10.0.2.100:5000 --auth-file %s --layer %s "
             "10.0.2.100:5000/img:v1 %s/snapshots/1/fs", auth, layer,
             sroot);
    ok(strcmp(args, want) == 0, "... soci-nbd mount got hosts.toml's "
       "options and the credentials' file: %s", args);
  }
  ok(strstr(args, "s3cret") == NULL, "... no secret on its command line");
  free(args);
  OK(stat(auth, &st) == 0 && (st.st_mode & 0777) == 0600,
     "... the file is root's alone (%o), in the state directory",
     (unsigned) st.st_mode & 0777);
  snprintf(path, sizeof path, "%s/auth", state);
  OK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700,
     "... in a directory only root may enter (%o)",
     (unsigned) st.st_mode & 0777);
  args = slurp_str(auth);
  ok(strstr(args, "\"10.0.2.100:5000\"") && strstr(args,
                                                   "\"10.0.2.100:5001\"") &&
     strstr(args, "s3cret"), "... for the registry and its mirror");
  free(args);
  OK(sn_snapshots_remove(s, "c1") == 0 && access(auth, F_OK) != 0,
     "removing the layer's last snapshot removes the file (%s)", ERR);
  snprintf(path, sizeof path, "%s/auth/%s.json", state,
           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
  put(path, "{}");
  OK(sn_snapshots_cleanup(s) == 0 && access(path, F_OK) != 0,
     "cleanup removes the file of a layer no snapshot has (%s)", ERR);

  snprintf(path, sizeof path, "%s/hostsdir/10.0.2.100:5000/hosts.toml", root);
  put(path, "server = [\n");
  logged[0] = 0;
  OK(sn_snapshots_prepare(s, "extract-2 c1", "", l, 3, &m) == 0 &&
     strstr(logged, "not served lazily") && strstr(logged, "hosts.toml:"),
     "a malformed hosts.toml: the layer is unpacked by containerd, and the "
     "log says why");
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_remove(s, "extract-2 c1") == 0, "remove it (%s)", ERR);
  put(path, "server = \"http://10.0.2.100:5000\"\n");
  strcpy(mscript, "exit 1");
  OK(sn_snapshots_prepare(s, "extract-3 c1", "", l, 3, &m) == 0 &&
     access(auth, F_OK) != 0, "a mount that fails leaves no credentials "
     "file (%s)", ERR);
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_remove(s, "extract-3 c1") == 0, "remove it (%s)", ERR);
  l[1].value = "oci-layout:/srv/img";
  logged[0] = 0;
  OK(sn_snapshots_prepare(s, "extract-4 c1", "", l, 3, &m) == 0 &&
     strstr(logged, "not a registry reference"),
     "an image label naming no registry: unpacked by containerd, and "
     "logged (%s)", ERR);
  sn_snap_mounts_clear(&m);
  OK(sn_snapshots_remove(s, "extract-4 c1") == 0, "remove it (%s)", ERR);

  /* soci's labels (soci image rpull, nerdctl --snapshotter soci). */
  {
    const char *man = "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
                      "eeeeeeeeeeeeeeee";
    const char *idx = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddd"
                      "dddddddddddddddd";
    struct sn_snap_label sl[6] = {
      { SN_SNAP_LABEL_TARGET, "s1" },
      { SN_SNAP_LABEL_SOCI_REF, "10.0.2.100:5000/img:v1" },
      { SN_SNAP_LABEL_SOCI_LAYER, (char *) layer },
      { SN_SNAP_LABEL_SOCI_MANIFEST, (char *) man },
      { SN_SNAP_LABEL_SOCI_INDEX, (char *) idx },
      { "containerd.io/snapshot/remote/soci.size", "123" },
    };
    char want[2048];

    snprintf(mscript, sizeof mscript, "echo \"$*\" > %s/last-args", sroot);
    OK(sn_snapshots_prepare(s, "extract-5 s1", "", sl, 6, &m) ==
       SN_SNAP_EXISTS, "soci's labels: the layer mounted (%s)", WHY);
    snprintf(path, sizeof path, "%s/last-args", sroot);
    args = access(path, F_OK) == 0 ? slurp_str(path) : strdup("(none)");
    args[strcspn(args, "\n")] = 0;
    snprintf(want, sizeof want, "--lazy-only --plain-http 10.0.2.100:5000 "
             "--auth-file %s --index %s --layer %s "
             "10.0.2.100:5000/img:v1@%s %s/snapshots/", auth, idx, layer,
             man, sroot);
    ok(strncmp(args, want, strlen(want)) == 0, "... with the SOCI index "
       "soci named, the image pinned to its manifest, the pull's "
       "credentials: %s", args);
    free(args);
    sl[0].value = "s2";
    sl[4].value = "";
    OK(sn_snapshots_prepare(s, "extract-6 s2", "s1", sl, 6, &m) ==
       SN_SNAP_EXISTS, "... an empty index label: the index is found as "
       "usual (%s)", WHY);
    args = access(path, F_OK) == 0 ? slurp_str(path) : strdup("(none)");
    args[strcspn(args, "\n")] = 0;
    ok(strstr(args, "--index") == NULL && strstr(args, "--layer"),
       "... no --index: %s", args);
    free(args);
  }
  sn_snapshots_close(s);
  sn_snap_creds_free(c);
}

int
main(void)
{
  tap_tmpdir(root, sizeof root, "snap-registry");
  test_hosts();
  test_creds();
  test_store();
  tap_rm_tree(root);
  return done_testing();
}
