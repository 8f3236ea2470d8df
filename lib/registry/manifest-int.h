/* soci-nbd: internal to lib/registry/manifest*.c — what manifest.c
 * (documents, descriptors, annotations, layer kinds) shares with
 * manifest-platform.c (platform strings, matching, index selection).
 * Not an interface: see manifest.h.  Errors follow err.h.
 */
#ifndef SN_MANIFEST_INT_H
#define SN_MANIFEST_INT_H

/* strdup that sets the error on OOM. */
char *sn_manifest_dup_str(const char *s);

#endif
