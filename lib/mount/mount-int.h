/* soci-nbd: internal to lib/mount/mount-*.c — the file helpers of the
 * run directory (mount-state.c) that the servers and devices use too. */
#ifndef SN_MOUNT_INT_H
#define SN_MOUNT_INT_H

#include <stdio.h>

/* fopen(path, "re") that never follows a symlink at path. */
FILE *ms_fopen_nofollow(const char *path);
/* Read a decimal number from a file; -1 if absent or not a number. */
long ms_read_long(const char *path);
/* rm -r of a state directory (regular files and directories only; mount
 * points are never inside: callers unmount first). */
void ms_remove_tree(const char *path);
/* Entries of a directory (not . and ..), NULL-terminated; NULL on error
 * (an absent directory is an empty list). */
char **ms_list_dir(const char *path);

#endif
