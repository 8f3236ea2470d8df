/* soci-nbd: internal to lib/soci/tar.c and tar-header.c — the parser's
 * state, shared by tar.c (building entries, the streaming interface) and
 * tar-header.c (header blocks, numbers and PAX records, Go archive/tar's
 * rules; see docs/soci-format.md §3).  Not an interface: see tar.h for
 * that.  Errors follow err.h.
 */
#ifndef SN_TAR_INT_H
#define SN_TAR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "soci/tar.h"

#define BLK SN_TAR_BLOCK

enum state {
  ST_HEADER,   /* assembling a header block */
  ST_ZERO2,    /* one zero block seen: assembling the next block */
  ST_SPECIAL,  /* collecting the data of a PAX 'x' or GNU 'L'/'K' header */
  ST_SKIP,     /* skipping entry data, then block padding */
  ST_END,      /* end of archive: later bytes are ignored */
  ST_ERROR,    /* sticky failure, message in err */
};

/* An owned byte buffer, always NUL-terminated at len when allocated. */
struct buf {
  char *data;
  size_t len, cap;
};

/* A PAX record while sorting: keys compare bytewise, then by position so
 * that the last of equal keys wins. */
struct rec {
  struct sn_pax kv;
  size_t idx;
};

/* The fields of one header block (Go's readHeader). */
struct hdr {
  char typeflag;
  char name[155 + 1 + 100 + 1];   /* prefix "/" name */
  char linkname[101];
  char uname[33], gname[33];
  int64_t mode, uid, gid, size, mtime, devmajor, devminor;
};

struct sn_tar_parser {
  sn_tar_entry_fn fn;
  void *opaque;
  enum state state;
  bool marker;                /* two zero blocks seen */
  int64_t pos;                /* bytes consumed so far */
  int64_t end;                /* ST_END: the end of archive position */

  uint8_t blk[BLK];
  size_t blk_len;

  /* ST_SPECIAL */
  char special_type;
  struct buf *special_dst;
  size_t special_want;
  int64_t special_off;
  char special_name[128];     /* quoted, for messages */

  /* ST_SKIP */
  int64_t skip_data, skip_pad;
  int64_t last_off;           /* header block of the entry being skipped */
  char last_name[128];

  /* The pending header chain (Go's paxHdrs / gnuLongName / gnuLongLink). */
  int64_t chain_start;        /* -1: no header of this entry seen yet */
  struct buf pax_buf;         /* raw 'x' data, records NUL-split in place */
  struct rec *recs;
  size_t nrecs, recs_cap;
  struct sn_pax *pax;         /* sorted, unique keys */
  size_t npax, pax_cap;
  struct buf lname, llink;    /* len 0: none (Go ignores empty names) */

  char err[1024];
};

/* ---- small helpers (tar-header.c) --------------------------------------- */

/* Make room for n bytes and a NUL in b; -1 with a message. */
int tar_buf_reserve(struct buf *b, size_t n);
void tar_buf_free(struct buf *b);

/* Copy s (n bytes) into dst as a printable, double-quoted, bounded string
 * for error messages; returns dst. */
const char *tar_quote(char *dst, size_t dstlen, const char *s, size_t n);

bool tar_is_zero_block(const uint8_t *b);

/* Go's blockPadding, for n >= 0. */
int64_t tar_block_padding(int64_t n);

/* Types '1'..'6' never have a data section, whatever their size says. */
bool tar_header_only(char t);

/* ---- numbers (tar-header.c) --------------------------------------------- */

/* strconv.ParseInt(s, 10, 64): optional sign, decimal digits only.  0, or
 * -1 (no message) when s is not such a number. */
int tar_parse_int(const char *s, size_t n, int64_t *out);

/* parsePAXTime: "%d" or "%d.%d", normalised as time.Unix does (0 <= nsec
 * < 1e9).  0, or -1 (no message). */
int tar_parse_pax_time(const char *s, size_t n, int64_t *sec, uint32_t *nsec);

/* ---- header blocks and PAX records (tar-header.c) ----------------------- */

/* Go's readHeader: the fields of header block b (at archive offset off)
 * into *h; -1 with a message on a bad checksum or number. */
int tar_parse_header(const uint8_t *b, int64_t off, struct hdr *h);

/* Key k is the C string s. */
bool tar_key_is(const struct sn_bytes *k, const char *s);

/* Go's parsePAX: split p->pax_buf into records (in place) and leave their
 * keys sorted and unique, the last value winning, in p->pax / p->npax.
 * -1 with a message on an invalid record or GNU sparse map. */
int tar_parse_pax(struct sn_tar_parser *p);

#endif
