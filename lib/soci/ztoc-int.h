/* soci-nbd: internal to lib/soci/ztoc*.c — the FlatBuffers field slots
 * of the ztoc schema, shared by the writer (ztoc-encode.c) and the reader
 * (ztoc-decode.c).  Not an interface: see ztoc.h.
 */
#ifndef SN_ZTOC_INT_H
#define SN_ZTOC_INT_H

/* Field slots (docs/soci-format.md §2.1). */
enum { ZT_VERSION, ZT_BUILD_TOOL, ZT_COMPRESSED, ZT_UNCOMPRESSED, ZT_TOC,
       ZT_COMPRESSION_INFO, ZT_NFIELDS };
enum { TOC_METADATA, TOC_NFIELDS };
enum { FM_NAME, FM_TYPE, FM_OFFSET, FM_SIZE, FM_LINKNAME, FM_MODE, FM_UID,
       FM_GID, FM_UNAME, FM_GNAME, FM_MOD_TIME, FM_DEVMAJOR, FM_DEVMINOR,
       FM_XATTRS, FM_NFIELDS };
enum { XA_KEY, XA_VALUE, XA_NFIELDS };
enum { CI_ALGORITHM, CI_MAX_SPAN_ID, CI_SPAN_DIGESTS, CI_CHECKPOINTS,
       CI_NFIELDS };

#endif
