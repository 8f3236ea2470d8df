/* soci-nbd: internal to lib/soci/index.c and index-oci.c — what the
 * OCI documents of "soci convert" (index-oci.c) share with the SOCI index
 * and prefetch documents (index.c).  Not an interface: see index.h.
 */
#ifndef SN_INDEX_INT_H
#define SN_INDEX_INT_H

#include "soci/index.h"
#include "util/json.h"

/* Finish w into d (bytes + digest; d owns the bytes, sn_doc_free).  w is
 * freed either way; -1 with a message. */
int sn_doc_finish(struct sn_json *w, struct sn_doc *d);

#endif
