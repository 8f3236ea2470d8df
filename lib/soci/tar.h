/* soci-nbd: tar header parsing with Go archive/tar semantics, as soci's
 * ztoc builder sees them: ustar/V7/GNU/PAX headers, GNU long names and
 * links (L/K), PAX records (all kept, SCHILY.xattr.* among them), base-256
 * numbers, legacy '\0' typeflag.  A global PAX header ('g'), GNU sparse
 * members ('S' or PAX GNU.sparse.*) and other unknown typeflags are
 * refused with a clear message, as the reference refuses them.
 *
 * The parser is push-based so it can sit behind a streaming inflater: feed
 * bytes in chunks of any size; each complete entry is handed to a callback
 * with its header and data offsets.  File data is skipped, never buffered.
 *
 * Errors follow err.h; messages name the archive offset.
 */
#ifndef SN_TAR_H
#define SN_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "soci/ztoc.h"

#define SN_TAR_BLOCK 512
#define SN_TAR_MAX_SPECIAL (1 << 20) /* PAX / long-name data, as Go */

struct sn_tar_entry {
  struct sn_bytes name;      /* after PAX path / GNU long name */
  struct sn_bytes linkname;  /* after PAX linkpath / GNU long link */
  struct sn_bytes uname, gname;
  char typeflag;             /* '0','1','2','3','4','5','6' ('\0' mapped) */
  int64_t mode, uid, gid, size, devmajor, devminor;
  int64_t mtime_sec;
  uint32_t mtime_nsec;
  struct sn_pax *pax;        /* local PAX records, unique keys (last wins),
                              * sorted by key bytewise */
  size_t npax;
  int64_t header_offset;     /* first header block of this entry (PAX, L…) */
  int64_t data_offset;       /* first byte of data */
};

/* Called once per entry; the entry and its strings are valid only during
 * the call.  Return -1 (with an error set) to stop parsing. */
typedef int (*sn_tar_entry_fn)(void *opaque, const struct sn_tar_entry *e);

struct sn_tar_parser;

struct sn_tar_parser *sn_tar_parser_new(sn_tar_entry_fn fn, void *opaque);
void sn_tar_parser_free(struct sn_tar_parser *p);

/* Feed the next bytes of the tar stream.  Bytes after the end-of-archive
 * marker are ignored. */
int sn_tar_parser_feed(struct sn_tar_parser *p, const uint8_t *data,
                       size_t len);

/* End of stream.  *end = the reader position at end of archive: just after
 * the two zero blocks, or after one zero block / at an entry boundary /
 * inside the block padding after data when the stream ends there (Go's
 * io.EOF cases; *end is then the stream length).  -1 if the stream ends
 * inside a header block, PAX / long-name data or an entry's data.
 * PAX / long-name headers not followed by an entry are dropped, as Go
 * does. */
int sn_tar_parser_finish(struct sn_tar_parser *p, int64_t *end);

/* True once the end-of-archive marker has been seen. */
bool sn_tar_parser_at_end(const struct sn_tar_parser *p);

/* Parse buf[0..len) as exactly the header blocks of one entry (PAX/long
 * name blocks included) and nothing else; fill *e, whose strings are owned
 * by the caller afterwards (sn_tar_entry_clear).  Offsets are relative to
 * buf: header_offset 0, data_offset len.  Used to verify a ztoc entry
 * against the bytes actually served.  On failure *e is left cleared. */
int sn_tar_parse_headers(const uint8_t *buf, size_t len,
                         struct sn_tar_entry *e);
void sn_tar_entry_clear(struct sn_tar_entry *e);

/* The ztoc type string for a typeflag ("reg", "hardlink", ...), NULL for
 * any other typeflag. */
const char *sn_tar_type_name(char typeflag);

#endif
