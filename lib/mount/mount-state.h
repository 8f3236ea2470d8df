/* soci-nbd: the state of `soci-nbd mount` under the run directory, and
 * the objects it records — nbdkit servers with their reconnect
 * supervisors (mount-server.c), and NBD devices shared by layer digest
 * (mount-device.c); the run directory and journals are mount-state.c.
 *
 * Layout ($SOCI_NBD_RUN_DIR, default /run/soci-nbd, mode 0700):
 *
 *   lock                     flock'ed by every command for its whole run
 *   mounts/ID/journal        one mount (ID: 16 hex digits of the SHA-256 of
 *                            its directory); "KEY VALUE" lines, each step
 *                            written before it is done, undone in reverse
 *   servers/SID/             one nbdkit: argv (NUL-separated, the exact
 *                            command), cmdline (the same, readable), sock,
 *                            pid, log, stats.json, password (0600, only
 *                            with --password-stdin), supervisor.pid,
 *                            supervised (the devices its supervisor keeps)
 *   devices/KEY/             one attached NBD device with its squashfs
 *                            mount: export, server (SID), dev (N of
 *                            /dev/nbdN, written once attached), mounted
 *                            (written before mounting), mnt/ (the mount
 *                            point), users/ID (one file per mount using it)
 *
 * A device of a layer has KEY = the first 32 hex digits of the layer
 * digest (plus "-bsN" with a non-default block size), so every mount of a
 * layer shares one device and one page cache; the server that attached it
 * stays up while any of its devices is in use.  Errors follow lib/util/err.h.
 */
#ifndef SN_MOUNT_STATE_H
#define SN_MOUNT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ms {
  char *run;                    /* the run directory */
  int lockfd;
  unsigned dead_conn_timeout;   /* for new devices, seconds */
  bool no_lock;                 /* a reader (mounts): may see a mount
                                   being made, as "incomplete" */
};

/* The run directory (creating it) and the lock (unless no_lock), held
 * until ms_close: commands that change the state run one at a time. */
int ms_open(struct ms *s);
void ms_close(struct ms *s);

/* "RUN/REL" (malloc'd) or NULL after sn_oom. */
char *ms_path(const struct ms *s, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* The mount ID of an absolute directory path: 16 hex digits. */
void ms_mount_id(const char *dir, char id[17]);

/* ---- journals --------------------------------------------------------- */
struct ms_journal {
  size_t n;
  char **key, **val;
};

/* Append "KEY VALUE\n" (fsync'ed) to mounts/ID/journal, creating it. */
int ms_journal_add(struct ms *s, const char *id, const char *key,
                   const char *val);
/* Read mounts/ID/journal; 0, 1 when there is none, -1 on error. */
int ms_journal_read(struct ms *s, const char *id, struct ms_journal *j);
/* The value of the first line with this key, or NULL. */
const char *ms_journal_get(const struct ms_journal *j, const char *key);
void ms_journal_free(struct ms_journal *j);
/* The IDs of every mount (a NULL-terminated array to free). */
char **ms_mount_ids(struct ms *s);
void ms_free_list(char **list);

/* ---- servers ---------------------------------------------------------- */
/* Make servers/SID/ and its argv: nbdkit -r -f -U SOCK -P PIDFILE PLUGIN
 * ARGS... stats-file=... (+ password=+FILE when password is set). */
int ms_server_create(struct ms *s, const char *nbdkit, bool verbose,
                     const char *plugin, char *const *args,
                     const char *password, char **sid);
/* Start the nbdkit of SID in the background and wait until it serves;
 * when it fails to start, the error is its own message from the log.
 * *interrupted (if set) aborts the wait. */
int ms_server_start(struct ms *s, const char *sid,
                    volatile int *interrupted);
/* Start it again from its argv (a crashed or running one), then kill the
 * old process if it still runs.  Restarts the supervisor if it is gone. */
int ms_server_restart(struct ms *s, const char *sid);
/* The layer digests of the image SID serves, bottom first (from its
 * stats file), the digest of what each is served lazily with (its ztoc,
 * dense table, eStargz TOC or zstd:chunked manifest; "whole" for a layer
 * downloaded whole), and whether each is offered as an export. */
int ms_server_layers(struct ms *s, const char *sid, char ***digests,
                     char ***ztocs, bool **exported, size_t *n);
/* (Re)start the supervisor of SID for the devices it serves now, unless
 * one runs for exactly that set; none is needed when it serves none. */
int ms_supervisor_update(struct ms *s, const char *sid);
/* Stop SID (supervisor, nbdkit, state) if no device uses it; otherwise
 * update its supervisor.  0 also when SID is already gone. */
int ms_server_release(struct ms *s, const char *sid);
/* pid of SID's nbdkit / supervisor when running, else 0. */
pid_t ms_server_pid(struct ms *s, const char *sid);
pid_t ms_supervisor_pid(struct ms *s, const char *sid);

/* ---- devices ---------------------------------------------------------- */
/* Can devices/KEY be shared?  1 = yes (attached, mounted, its server
 * up), 0 = no such device (a stale, unused one is removed first),
 * 2 = it exists but is broken and in use (use a private key instead),
 * -1 = error. */
int ms_device_check(struct ms *s, const char *key, const char *export_name);
/* Use devices/KEY for mount ID: share it when ms_device_check says 1,
 * else attach export_name of server SID to a free device and mount it
 * squashfs read-only.  Sets *dev; *shared when it existed. */
int ms_device_acquire(struct ms *s, const char *key, const char *export_name,
                      const char *sid, const char *id, int *dev,
                      bool *shared);
/* Drop mount ID's use of devices/KEY; the last user unmounts and detaches
 * it.  *sid (malloc'd) = its server when it was torn down, else NULL. */
int ms_device_release(struct ms *s, const char *key, const char *id,
                      char **sid);
/* devices/KEY/dev, or -1. */
int ms_device_index(struct ms *s, const char *key);
/* devices/KEY/server (malloc'd), or NULL. */
char *ms_device_server(struct ms *s, const char *key);

/* ---- helpers ---------------------------------------------------------- */
/* 1 if path is the root of a mount, 0 if not, -1 (errno) on error. */
int ms_is_mountpoint(const char *path);
/* Whole file as a string without its trailing newlines; NULL (errno). */
char *ms_read_file(const char *path);
/* Create/replace path with text (mode), atomically. */
int ms_write_file(const char *path, const char *text, mode_t mode);

#endif
