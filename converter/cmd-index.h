/* soci-nbd command line: what cmd-index.c shares with cmd-convert.c and
 * cmd-prefetch.c — the
 * options of create and convert, opening a reference, and the image
 * manifest tests of the index commands.  Internal to converter/. */
#ifndef SN_CMD_INDEX_H
#define SN_CMD_INDEX_H

#include <stdbool.h>
#include <stdio.h>

#include "registry/manifest.h"
#include "registry/ref.h"
#include "registry/registry.h"
#include "regopts.h"
#include "soci/build.h"
#include "soci/index-build.h"

#define BUILD_HELP \
"  -s, --span-size N        minimum uncompressed bytes between checkpoints\n" \
"                           (K/M/G suffixes; default 4M)\n" \
"  -m, --min-layer-size N   skip layers smaller than N (default 10M)\n" \
"  -b, --build-tool-id S    build tool id in the ztocs and the index\n" \
"                           (default \"" SN_BUILD_TOOL_DEFAULT "\"; \"" \
SN_REFERENCE_BUILD_TOOL "\"\n" \
"                           gives the soci CLI's bytes)\n" \
"      --prefetch-file PATH add a prefetch artifact for the spans of PATH\n" \
"                           (repeatable)\n" \
"      --prefetch-record FILE  attach a prefetch record (nbdkit soci\n" \
"                           record=FILE): prefetch artifacts of its spans,\n" \
"                           and the record itself in the dense index\n" \
"      --optimizations xattr  mark layers without xattrs (disable-xattrs)\n" \
"  -q, --quiet              no progress messages on stderr\n"

/* "os/arch[/variant]", or "-" for NULL; malloc'd, NULL on OOM. */
char *cmdidx_platform_string(const struct sn_platform *p);
/* An OCI or Docker image manifest media type? */
bool cmdidx_is_image_manifest_type(const char *mt);
/* An attestation entry (platform unknown/unknown)? */
bool cmdidx_is_attestation(const struct sn_platform *p);

/* Parse the options of create/convert (platform, all: NULL when the
 * command has no such option); returns -1 to go on, or an exit status. */
int cmdidx_parse_build_options(int argc, char **argv, const char *cmd,
                               void (*usage)(FILE *),
                               struct sn_index_build_cfg *cfg,
                               struct regopts *ro, const char **platform,
                               bool *all);

/* Free what cmdidx_parse_build_options allocated (the record). */
void cmdidx_free_build_options(struct sn_index_build_cfg *cfg);
/* Read and parse the prefetch record at path (not empty): 0, or -1 with a
 * message naming the file. */
int cmdidx_load_record(const char *path, struct sn_record *rec);

/* SRC's top manifest (*top, by ref's digest or tag) as an image index to
 * edit (*x; a single image manifest is wrapped as convert does).  Both
 * the caller's, also on failure.  0 or -1 (err.h). */
struct sn_oci_index;
int cmdidx_load_top(struct sn_registry *src, const struct sn_ref *ref,
                    struct sn_manifest **top, struct sn_oci_index **x);

/* Do a and b name the same repository (nothing to copy)? */
bool cmdidx_same_repo(const struct sn_ref *a, const struct sn_ref *b);

/* Parse reference s and open its registry: 0, or an exit status (the
 * message printed). */
int cmdidx_open_ref(const char *s, const struct regopts *ro, const char *cmd,
                    struct sn_ref *ref, struct sn_registry **reg);

#endif
