/* soci-nbd: a minimal FlatBuffers builder and a bounds-checked reader.
 *
 * The builder (sn_fbb_*) emulates the Go flatbuffers Builder (v25.12.19)
 * step for step, so that a caller repeating a Go program's calls gets the
 * same bytes (docs/soci-format.md §2.3): the buffer grows backwards
 * from its end, every write is preceded by prep(size, extra) padding,
 * minalign only grows, and a table's vtable is trimmed of trailing absent
 * slots and shared with an identical earlier one (searched newest first).
 *
 * The reader (sn_fbr_*) walks any FlatBuffer whose schema the caller
 * knows.  Every offset, length and count it follows is checked against the
 * buffer, with 64-bit arithmetic, before anything is read; a hostile
 * buffer gives an error, never an out-of-bounds read.  Alignment is not
 * required (all reads are bytewise little-endian).
 *
 * Ownership and errors (see err.h):
 *  - struct sn_fbb owns its growing buffer; sn_fbb_free() releases it.
 *    sn_fbb_finish() hands its buffer, holding the result, to the caller,
 *    who frees it.
 *  - Builder errors are sticky: the first failure (out of memory, buffer
 *    over 2 GiB, misuse) records a message with sn_set_error() and makes
 *    every later call a no-op returning 0; sn_fbb_finish() then returns -1.
 *    So a caller may issue a whole sequence of calls and check once.
 *  - Reader views (struct sn_fbr_table, struct sn_fbr_vec) point into the
 *    caller's buffer and own nothing; they are valid while it is.  Reader
 *    functions return -1 with a message (without any "ztoc: " style prefix,
 *    which callers add with sn_prefix_error()) on malformed input.
 */
#ifndef SN_FBS_H
#define SN_FBS_H

#include <stddef.h>
#include <stdint.h>

/* A reference to an object already written by the builder: its offset
 * from the end of the buffer (Go's UOffsetT).  Never 0 for a real object,
 * so 0 means "none" / "error". */
typedef uint32_t sn_fbb_ref;

/* Largest buffer the builder produces (FlatBuffers' 2 GiB limit). */
#define SN_FBB_MAX_SIZE ((size_t) INT32_MAX)

struct sn_fbb {
  uint8_t *buf;         /* data occupies buf[cap - off, cap) */
  size_t cap;
  size_t off;           /* bytes written so far (Go's Offset()) */
  size_t minalign;
  uint32_t *slots;      /* table being built: offset of each field, or 0 */
  size_t nslots, slots_cap;
  size_t obj_end;       /* off when the table was started */
  int in_table;
  uint32_t *vtables;    /* offsets of every vtable written, oldest first */
  size_t nvtables, vtables_cap;
  int failed;           /* sticky error flag */
};

/* Initialise an empty builder (no allocation yet). */
void sn_fbb_init(struct sn_fbb *b);
/* Release everything the builder holds; it may be initialised again. */
void sn_fbb_free(struct sn_fbb *b);

/* A string: the bytes (which may contain NULs), a terminating NUL and the
 * u32 length.  Every call creates a new object (no sharing). */
sn_fbb_ref sn_fbb_create_string(struct sn_fbb *b, const void *s, size_t len);
/* A [ubyte] vector (no terminator). */
sn_fbb_ref sn_fbb_create_bytes(struct sn_fbb *b, const void *data,
                               size_t len);
/* A vector of references (tables or strings); refs[0] becomes element 0.
 * n may be 0. */
sn_fbb_ref sn_fbb_create_ref_vector(struct sn_fbb *b, const sn_fbb_ref *refs,
                                    size_t n);

/* Tables.  Start with the number of fields in the schema, add fields in
 * any order (the order decides the layout, as in Go), then end.  Scalars
 * equal to their default are not written (as Go's PrependXSlot).  A ref of
 * 0 is not written.  Strings and vectors must not be created while a table
 * is open (misuse: sticky error). */
void sn_fbb_start_table(struct sn_fbb *b, unsigned nfields);
void sn_fbb_add_i8(struct sn_fbb *b, unsigned slot, int8_t v, int8_t def);
void sn_fbb_add_i32(struct sn_fbb *b, unsigned slot, int32_t v, int32_t def);
void sn_fbb_add_u32(struct sn_fbb *b, unsigned slot, uint32_t v,
                    uint32_t def);
void sn_fbb_add_i64(struct sn_fbb *b, unsigned slot, int64_t v, int64_t def);
void sn_fbb_add_ref(struct sn_fbb *b, unsigned slot, sn_fbb_ref ref);
sn_fbb_ref sn_fbb_end_table(struct sn_fbb *b);

/* Make room for about n bytes in all before the first object is added:
 * a builder grown by doubling writes its bytes about three times over
 * (each larger buffer, then the result), and a large one touches as many
 * fresh pages.  Only a hint: the builder still grows past it. */
void sn_fbb_reserve(struct sn_fbb *b, size_t n);

/* Write the root reference (no file identifier, no size prefix) and hand
 * the builder's buffer, the finished bytes moved to its start, to the
 * caller as *out (malloc'd, *len bytes).  Returns 0, or -1 if any earlier
 * call failed (its message is kept).  The builder is left without a
 * buffer; free it afterwards. */
int sn_fbb_finish(struct sn_fbb *b, sn_fbb_ref root, uint8_t **out,
                  size_t *len);

/* ---- reader ---------------------------------------------------------- */

/* A table: pos is its start, vt its vtable, both inside buf[0, len). */
struct sn_fbr_table {
  const uint8_t *buf;
  size_t len;
  size_t pos;
  size_t vt;
  uint16_t vtlen;     /* vtable size in bytes (>= 4, even) */
};

/* A vector: n elements of elem_size bytes from buf[pos] (all in bounds). */
struct sn_fbr_vec {
  const uint8_t *buf;
  size_t len;
  size_t pos;
  size_t n;
  size_t elem_size;
};

/* The root table of buf[0, len).  0 or -1. */
int sn_fbr_root(const uint8_t *buf, size_t len, struct sn_fbr_table *t);

/* Scalars: *v gets the stored value, or def if the field is absent.
 * 0 or -1 (field out of bounds). */
int sn_fbr_i8(const struct sn_fbr_table *t, unsigned slot, int8_t def,
              int8_t *v);
int sn_fbr_i32(const struct sn_fbr_table *t, unsigned slot, int32_t def,
               int32_t *v);
int sn_fbr_u32(const struct sn_fbr_table *t, unsigned slot, uint32_t def,
               uint32_t *v);
int sn_fbr_i64(const struct sn_fbr_table *t, unsigned slot, int64_t def,
               int64_t *v);

/* Reference fields.  Each returns 1 if present (and fills the output), 0
 * if absent (output zeroed), -1 if malformed. */

/* A string field: *s points into the buffer at len bytes followed by a
 * NUL (checked); the bytes may contain NULs. */
int sn_fbr_string(const struct sn_fbr_table *t, unsigned slot,
                  const char **s, size_t *len);
/* A sub-table field. */
int sn_fbr_table(const struct sn_fbr_table *t, unsigned slot,
                 struct sn_fbr_table *sub);
/* A vector field of elem_size-byte elements (1 for [ubyte], 4 for vectors
 * of tables or strings).  The whole vector is checked to be in bounds, so
 * a count larger than the rest of the buffer is an error. */
int sn_fbr_vector(const struct sn_fbr_table *t, unsigned slot,
                  size_t elem_size, struct sn_fbr_vec *v);

/* Element i < v->n of a vector of tables / of strings.  0 or -1. */
int sn_fbr_vec_table(const struct sn_fbr_vec *v, size_t i,
                     struct sn_fbr_table *t);
int sn_fbr_vec_string(const struct sn_fbr_vec *v, size_t i, const char **s,
                      size_t *len);

/* The data of a vector (v->n * v->elem_size bytes). */
static inline const uint8_t *
sn_fbr_vec_data(const struct sn_fbr_vec *v)
{
  return v->buf + v->pos;
}

#endif
