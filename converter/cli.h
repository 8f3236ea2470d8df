/* soci-nbd command line: shared helpers between the command files. */
#ifndef SN_CLI_H
#define SN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

/* Print "soci-nbd: <msg>" to stderr; returns the exit status 1. */
int cli_fail(const char *fmt, ...) SN_PRINTF(1, 2);
/* Same, with the library's last error appended after ": " when fmt is
 * non-empty, or alone when fmt is NULL. */
int cli_fail_lib(const char *fmt, ...) SN_PRINTF(1, 2);
/* "bad usage": message plus a pointer to --help; returns exit status 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) SN_PRINTF(2, 3);

/* Parse a size with an optional binary suffix (K, M, G, T; "KiB" too). */
int cli_parse_size(const char *s, int64_t *out);

/* Write a whole buffer to path ("-" = stdout), atomically for files
 * (temporary file + rename). */
int cli_write_file(const char *path, const void *buf, size_t len);

extern bool cli_quiet;

int cmd_ztoc(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_mkfs(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_prefetch(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_mounts(int argc, char **argv);

#endif
