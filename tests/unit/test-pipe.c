/* soci-nbd tests: sn_pipe (lib/util/pipe.c) — messages are applied in the
 * order sent, with their data, on the helper thread (or at once without
 * one); a sender waits while too much is queued; close applies everything
 * sent, free drops what is left. */
#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/pipe.h"
#include "tap.h"

#define N 20000

struct sink {
  pthread_t sender;
  size_t applied, wrong, data_bytes;
  int64_t next;                 /* the a of the next message expected */
  bool other_thread;            /* every apply ran off the sender's */
  bool same_thread;             /* every apply ran on it */
  useconds_t sleep_us;
};

static void
apply(void *opaque, const struct sn_pipe_msg *m)
{
  struct sink *s = opaque;
  bool on_sender = pthread_equal(pthread_self(), s->sender);
  size_t i;

  if (on_sender)
    s->other_thread = false;
  else
    s->same_thread = false;
  if (m->a != s->next || m->kind != (int) (m->a % 3) ||
      m->b != -m->a || m->c != (uint64_t) m->a * 7 ||
      m->len != (size_t) (m->a % 5000))
    s->wrong++;
  for (i = 0; i < m->len; i++)
    if (m->data[i] != (uint8_t) (m->a + (int64_t) i))
      s->wrong++;
  s->data_bytes += m->len;
  s->next = m->a + 1;
  __atomic_add_fetch(&s->applied, 1, __ATOMIC_SEQ_CST);
  if (s->sleep_us)
    usleep(s->sleep_us);
}

/* Send messages a = from..to-1 with data derived from a. */
static int
send_range(struct sn_pipe *p, int64_t from, int64_t to)
{
  static uint8_t buf[5000];

  for (int64_t a = from; a < to; a++) {
    size_t len = (size_t) (a % 5000), i;

    for (i = 0; i < len; i++)
      buf[i] = (uint8_t) (a + (int64_t) i);
    if (sn_pipe_send(p, &(struct sn_pipe_msg) {
          .kind = (int) (a % 3), .a = a, .b = -a, .c = (uint64_t) a * 7,
          .data = len ? buf : NULL, .len = len }) == -1)
      return -1;
  }
  return 0;
}

static void
run(bool thread)
{
  const char *how = thread ? "helper thread" : "no thread";
  struct sink s = { .sender = pthread_self(), .other_thread = true,
                    .same_thread = true };
  struct sn_pipe *p = sn_pipe_new(apply, &s, 1 << 20, thread);
  size_t expect = 0;

  if (p == NULL) {
    ok(0, "%s: sn_pipe_new", how);
    return;
  }
  ok(send_range(p, 0, N) == 0, "%s: %d messages sent", how, N);
  sn_pipe_close(p);
  for (int64_t a = 0; a < N; a++)
    expect += (size_t) (a % 5000);
  ok(s.applied == N && s.wrong == 0 && s.data_bytes == expect,
     "%s: all applied after close, in order, with their data (%zu, %zu "
     "wrong)", how, s.applied, s.wrong);
  if (thread)
    ok(s.other_thread, "%s: applied on the helper thread", how);
  else
    ok(s.same_thread, "%s: applied at once by the sender", how);
  sn_pipe_close(p);             /* twice: nothing more happens */
  ok(s.applied == N, "%s: a second close applies nothing", how);
  sn_pipe_free(p);
}

/* A slow consumer: the sender is held back (at most about max_bytes
 * queued), and free drops what is left. */
static void
slow(void)
{
  struct sink s = { .sender = pthread_self(), .other_thread = true,
                    .same_thread = true, .sleep_us = 2000, .next = 4000 };
  struct sn_pipe *p = sn_pipe_new(apply, &s, 64 << 10, true);
  size_t at_send;

  if (p == NULL) {
    ok(0, "slow: sn_pipe_new");
    return;
  }
  /* 400 messages of 4000-4399 bytes (1.7 MB) against 64 KiB queued: the
   * sender must wait for the consumer most of the way. */
  ok(send_range(p, 4000, 4400) == 0, "slow: 400 messages sent");
  at_send = __atomic_load_n(&s.applied, __ATOMIC_SEQ_CST);
  ok(at_send >= 200, "slow: the sender waited for the consumer (%zu of "
     "400 applied when the last was sent)", at_send);
  sn_pipe_free(p);
  ok(s.applied < 400 && s.wrong == 0, "slow: free dropped the rest (%zu "
     "applied, in order)", s.applied);
}

int
main(void)
{
  run(true);
  run(false);
  slow();
  return done_testing();
}
