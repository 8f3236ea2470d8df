/* soci-nbd: internal to lib/registry/registry*.c — the registry handle and
 * its endpoints, and the helpers the three parts share: registry.c (open,
 * close, endpoint probing, manifests, referrers), registry-blob.c (whole
 * blobs, ranges and the location cache) and registry-push.c (pushes, the
 * blob writer, manifests put and the fallback tag).  See registry.h for
 * the behaviour, docs/architecture.md for where the client sits.
 */
#ifndef SN_REGISTRY_INT_H
#define SN_REGISTRY_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/auth.h"
#include "registry/http.h"
#include "registry/ocilayout.h"
#include "registry/registry.h"
#include "util/digest.h"
#include "util/err.h"

#define REDIRECT_CACHE 64

struct endpoint {
  char *base;                 /* API root, ".../v2" */
  char *plain_base;           /* while probing: the http:// root */
  bool probe;                 /* loopback without a scheme: HTTPS or HTTP? */
  char *name;                 /* for messages and credentials */
  bool mirror;
  struct sn_auth *auth;
};

/* Where a blob's range reads go: the endpoint that served it, and the URL
 * it redirected to (NULL: the endpoint's own URL). */
struct blob_loc {
  char *digest;
  size_t ep;
  char *url;
  bool send_auth;
  uint64_t used;
};

struct sn_registry {
  struct sn_layout *layout;   /* oci-layout: references */
  struct sn_http *http;
  char *what;                 /* "registry/repository" for messages */
  char *repo;
  char *ns;                   /* "ns=<registry>" for mirror requests */
  char *scope_pull, *scope_push;
  struct endpoint *eps;       /* mirrors in order, then the upstream */
  size_t neps;
  void (*debug)(void *opaque, const char *msg);
  void *debug_opaque;
  pthread_mutex_t probe_lock; /* guards endpoint probing */
  pthread_mutex_t lock;       /* guards locs and tick */
  struct blob_loc locs[REDIRECT_CACHE];
  uint64_t tick;
};

/* ---- registry.c: small helpers ----------------------------------------- */

/* A debug message to the caller's debug callback, if any. */
void reg_debugf(struct sn_registry *r, const char *fmt, ...) SN_PRINTF(2, 3);

/* The upstream endpoint: the last one, after the mirrors. */
struct endpoint *reg_upstream(struct sn_registry *r);

/* 0 if digest is "sha256:<64 hex>", else -1 with the error set. */
int reg_check_digest(const char *digest);
bool reg_is_digest(const char *s);

/* A tag or digest that is safe in a URL path: 0, else -1. */
int reg_check_reference(const char *s);

/* Probe a loopback endpoint named without a scheme, once: HTTPS or HTTP. */
void reg_ep_ready(struct sn_registry *r, struct endpoint *ep);

/* "base/repo/kind/ref[?query]" for endpoint ep (malloc'd; NULL on OOM). */
char *reg_api_url(struct sn_registry *r, struct endpoint *ep,
                  const char *kind, const char *ref, const char *query);

/* Set the error for a failed response; returns -1. */
int reg_status_error(struct sn_registry *r, const struct endpoint *ep,
                     const char *what, const struct sn_http_resp *resp);

/* One request to ep, authorized for the pull or push scope if use_auth,
 * retried once after a 401 that produced new authorization. */
int reg_ep_request(struct sn_registry *r, struct endpoint *ep, bool push,
                   bool use_auth, struct sn_http_req *q,
                   struct sn_http_resp *resp);

/* ---- registry.c: manifests ------------------------------------------- */

/* The manifest ref (tag or digest) from endpoint ep, digest-checked;
 * caller frees.  NULL with the error set ("HTTP 404" when not found). */
struct sn_manifest *reg_manifest_on(struct sn_registry *r,
                                    struct endpoint *ep, const char *ref);

/* ---- registry-push.c: fallback tag ----------------------------------- */

/* The fallback tag of a digest: "sha256-<hex>". */
void reg_fallback_tag(const char *digest, char out[SN_DIGEST_STRLEN + 1]);

#endif
