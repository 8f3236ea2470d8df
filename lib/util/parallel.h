/* soci-nbd: run independent jobs on a few threads — the start-up fetches
 * (dense tables, ztocs, the prefetch record) that would otherwise each
 * cost a round trip in turn.
 *
 * sn_parallel_for(n, max_threads, fn, arg) calls fn(arg, i) once for every
 * i in [0, n), on at most max_threads threads (the caller's among them),
 * and returns when all calls have returned.  fn returns 0, or -1 with
 * sn_set_error; after a failure the jobs not yet started are skipped.
 * The result: 0, or -1 with the message of the lowest i that failed.  If
 * threads cannot be created, the jobs run on fewer (at least the caller's).
 */
#ifndef SN_PARALLEL_H
#define SN_PARALLEL_H

#include <stddef.h>

int sn_parallel_for(size_t n, size_t max_threads,
                    int (*fn)(void *arg, size_t i), void *arg);

#endif
