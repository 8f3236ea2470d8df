/* soci-nbd tests: sn_parallel_for (lib/util/parallel.c) — every job runs
 * once, at most max_threads at a time and really at once, the lowest
 * failing job's message is the result, and later jobs are skipped after a
 * failure. */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/parallel.h"
#include "tap.h"

#define N 64

struct run {
  int count[N];
  int active, peak;
  size_t fail_from;             /* jobs >= this fail (N: none) */
  useconds_t sleep_us;
};

static int
job(void *arg, size_t i)
{
  struct run *r = arg;
  int a = __atomic_add_fetch(&r->active, 1, __ATOMIC_SEQ_CST);
  int p = __atomic_load_n(&r->peak, __ATOMIC_SEQ_CST);

  while (a > p && !__atomic_compare_exchange_n(&r->peak, &p, a, false,
                                               __ATOMIC_SEQ_CST,
                                               __ATOMIC_SEQ_CST))
    ;
  __atomic_add_fetch(&r->count[i], 1, __ATOMIC_SEQ_CST);
  usleep(r->sleep_us);
  __atomic_sub_fetch(&r->active, 1, __ATOMIC_SEQ_CST);
  if (i >= r->fail_from)
    return sn_set_error("job %zu failed", i);
  return 0;
}

int
main(void)
{
  struct run r;
  size_t i, once, ran;
  int c_;

  memset(&r, 0, sizeof r);
  r.fail_from = N;
  r.sleep_us = 20000;
  c_ = sn_parallel_for(N, 8, job, &r) == 0;
  for (i = 0, once = 0; i < N; i++)
    once += r.count[i] == 1;
  ok(c_ && once == N, "64 jobs on 8 threads: each ran once (%zu): %s", once,
     ERR);
  ok(r.peak >= 2 && r.peak <= 8, "at most 8 at a time, and several at once "
     "(peak %d)", r.peak);

  memset(&r, 0, sizeof r);
  r.fail_from = N;
  c_ = sn_parallel_for(3, 8, job, &r) == 0;
  ok(c_ && r.peak <= 3 && r.count[0] + r.count[1] + r.count[2] == 3,
     "3 jobs, 8 threads allowed: 3 runs, peak %d", r.peak);

  memset(&r, 0, sizeof r);
  r.fail_from = N;
  c_ = sn_parallel_for(N, 1, job, &r) == 0;
  ok(c_ && r.peak == 1, "one thread: one at a time (peak %d)", r.peak);

  memset(&r, 0, sizeof r);
  c_ = sn_parallel_for(0, 8, job, &r) == 0;
  ok(c_ && r.peak == 0, "no jobs: nothing runs");

  memset(&r, 0, sizeof r);
  r.fail_from = 5;
  r.sleep_us = 20000;
  c_ = sn_parallel_for(N, 4, job, &r) == -1;
  ok(c_ && strcmp(sn_error(), "job 5 failed") == 0,
     "jobs 5.. fail: the message is the lowest one's: %s", WHY);
  for (i = 0, ran = 0; i < N; i++)
    ran += r.count[i];
  ok(ran < N && r.count[0] && r.count[4],
     "jobs before the failure ran, later ones were skipped (%zu of %d ran)",
     ran, N);

  memset(&r, 0, sizeof r);
  r.fail_from = N - 1;
  c_ = sn_parallel_for(N, 8, job, &r) == -1;
  ok(c_ && strcmp(sn_error(), "job 63 failed") == 0,
     "only the last job fails: %s", WHY);
  return done_testing();
}
