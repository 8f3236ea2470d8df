/* soci-nbd: an ordered queue of messages handed to one helper thread, so
 * that a producer (a layer's decoding) goes on while a consumer (the
 * dense index's bookkeeping of that layer) works on what it was sent.
 *
 * sn_pipe_new(apply, opaque, max_bytes, thread) starts the thread (thread
 * false: none, every message is applied by sn_pipe_send); sn_pipe_send
 * copies a message (kind, three numbers, and data bytes) into the queue;
 * the thread calls apply(opaque, msg) for every message, in the order
 * they were sent.  A sender waits while more than max_bytes of data are
 * queued.  sn_pipe_close waits until every message sent was applied and
 * joins the thread; sn_pipe_free closes a pipe that is still open,
 * dropping the messages not applied yet.  apply
 * cannot fail: a consumer records its own failures (and a producer may
 * read them once sn_pipe_close returned).  If the thread cannot be
 * started, sn_pipe_send applies each message itself, at once.
 *
 * Errors follow err.h: sn_pipe_new returns NULL, sn_pipe_send -1 (out of
 * memory: the message is not sent).
 */
#ifndef SN_PIPE_H
#define SN_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sn_pipe_msg {
  int kind;
  int64_t a, b;
  uint64_t c;
  const uint8_t *data;          /* len bytes, valid during apply */
  size_t len;
};

typedef void (*sn_pipe_apply_fn) (void *opaque, const struct sn_pipe_msg *m);

struct sn_pipe;

struct sn_pipe *sn_pipe_new(sn_pipe_apply_fn apply, void *opaque,
                            size_t max_bytes, bool thread);
/* m->data (m->len bytes, may be NULL when len is 0) is copied. */
int sn_pipe_send(struct sn_pipe *p, const struct sn_pipe_msg *m);
void sn_pipe_close(struct sn_pipe *p);
void sn_pipe_free(struct sn_pipe *p);

#endif
