/* soci-nbd: "same site" for credentials — may a token realm at one URL
 * receive the credentials meant for a registry at another?
 *
 * Two URLs are on the same site when their hosts are equal (ports may
 * differ), or when both are DNS names with the same registrable domain
 * according to the public suffix list (libpsl): registry-1.docker.io and
 * auth.docker.io are (docker.io), registry.gitlab.com and gitlab.com are,
 * two tenants of a shared hosting suffix (a.herokuapp.com,
 * b.herokuapp.com) are not.  IP literals and single-label names
 * (localhost) match only themselves. */
#ifndef SN_SITE_H
#define SN_SITE_H

#include <stdbool.h>

/* False also when either URL has no host. */
bool sn_site_same(const char *url_a, const char *url_b);

#endif
