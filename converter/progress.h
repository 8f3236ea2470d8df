/* soci-nbd command line: progress on stderr while SOCI indexes are built
 * (create, convert) — message lines, one line per layer (or a live block
 * of running layers on a terminal), and the summary line.  Nothing is
 * printed with --quiet. */
#ifndef SN_PROGRESS_H
#define SN_PROGRESS_H

#include "registry/manifest.h"
#include "soci/index-build.h"
#include "util/err.h"

/* One progress line on stderr (a newline is added). */
void progress(const char *fmt, ...) SN_PRINTF(1, 2);

/* Start the clock and the totals of the summary, and point cfg's hooks
 * and stats at this display (a live block when stderr is a terminal). */
void progress_start(struct sn_index_build_cfg *cfg);

/* "copied blob ..." for d (a sn_registry_copy_opts copied hook). */
void progress_copied(void *opaque, const struct sn_descriptor *d);

/* The summary line: layers indexed and skipped, ztoc bytes, time. */
void progress_summary(void);

#endif
