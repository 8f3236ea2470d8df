/* soci-nbd: how a remote layer's mount reaches its registry, by
 * containerd's conventions (docs/snapshotter.md, "Registries and
 * credentials"):
 *
 *  - hosts: containerd's registry hosts directories (CRI's config_path,
 *    for example /etc/containerd/certs.d): DIR/HOST/hosts.toml names the
 *    mirrors to try, the server, CA files and skip_verify; they become
 *    soci-nbd mount options (snap-hosts.c);
 *  - credentials: those kubelet gave with a CRI PullImage, which reach the
 *    daemon through its image-service proxy and are kept in memory per
 *    repository; a mount is given them in a docker config.json of mode
 *    0600 under STATE/auth, a tmpfs (snap-creds.c, snap-remote.c).
 *
 * Secrets never appear in messages or logs.  Errors follow util/err.h.
 */
#ifndef SN_SNAP_REGISTRY_H
#define SN_SNAP_REGISTRY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What hosts.toml says about a registry, for soci-nbd mount. */
struct sn_snap_hosts {
  char **args;                  /* mount options (--mirror URL,
                                 * --plain-http HOST, --cacert FILE,
                                 * --insecure) */
  size_t nargs;
  char **hosts;                 /* every host[:port] the mount may ask,
                                 * the registry's own first */
  size_t nhosts;
  char *file;                   /* the hosts.toml read, or NULL */
};

/* The configuration for registry ("docker.io", "10.0.2.100:5000") from
 * the first directory of dirs (':'-separated; NULL or "" for none) that
 * has DIR/HOST_PORT_/hosts.toml, DIR/HOST[:PORT]/hosts.toml or
 * DIR/_default/hosts.toml, as containerd looks for them.  A CA bundle
 * (the system's CAs and the file's) is written under certs_dir when the
 * file names CA files.  What the file says that soci-nbd cannot follow
 * (client certificates, headers, paths) is told to log, once per call.
 * 0 and *h filled (no file: only the registry in hosts); -1 when the
 * file is unreadable or malformed. */
int sn_snap_hosts_load(const char *dirs, const char *registry,
                       const char *certs_dir, void (*log)(const char *),
                       struct sn_snap_hosts *h);
void sn_snap_hosts_clear(struct sn_snap_hosts *h);
/* One more mount option opt, with its value val unless NULL. */
int sn_snap_hosts_add_arg(struct sn_snap_hosts *h, const char *opt,
                          const char *val);

/* ---- credentials from CRI pulls ------------------------------------ */

struct sn_snap_creds;

struct sn_snap_creds *sn_snap_creds_new(void);
/* Wipes every secret. */
void sn_snap_creds_free(struct sn_snap_creds *c);

/* A CRI AuthConfig given with a pull of image (a reference as kubelet
 * sends it): username and password, or auth (base64 "user:password"),
 * or an identity token; server_address, when not empty, the only host
 * they are for.  Empty strings are absent.  They replace what the image's
 * repository had.  0; 1 when there is nothing usable (registry_token
 * only: *why says so); -1 on a malformed image reference or auth. */
int sn_snap_creds_put(struct sn_snap_creds *c, const char *image,
                      const char *username, const char *password,
                      const char *auth, const char *identity_token,
                      const char *server_address, const char **why);

/* For a mount of a layer of image, the credentials of its repository as a
 * docker config.json written to path (mode 0600, atomically), with an
 * "auths" entry for each of hosts (or for the server address alone).
 * 1 written, 0 when there are none (path is then removed), -1 on error. */
int sn_snap_creds_write(struct sn_snap_creds *c, const char *image,
                        const char *const *hosts, size_t nhosts,
                        const char *path);

#ifdef __cplusplus
}
#endif

#endif
