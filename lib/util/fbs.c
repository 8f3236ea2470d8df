/* soci-nbd: FlatBuffers building (a step-for-step emulation of the Go
 * Builder, so the output bytes match Go's) and bounds-checked reading.
 * Nothing here knows any particular schema; see fbs.h. */
#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/fbs.h"

/* ---- little-endian helpers ------------------------------------------ */

/* Little-endian loads, bytewise: no alignment needed. */
static uint16_t
get_u16(const uint8_t *p)
{
  return (uint16_t) (p[0] | p[1] << 8);
}

static uint32_t
get_u32(const uint8_t *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
         (uint32_t) p[3] << 24;
}

static uint64_t
get_u64(const uint8_t *p)
{
  return (uint64_t) get_u32(p) | (uint64_t) get_u32(p + 4) << 32;
}

/* Store the low n bytes of v at p, little-endian. */
static void
put_le(uint8_t *p, uint64_t v, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    p[i] = (uint8_t) (v >> (8 * i));
}

/* ---- builder ----------------------------------------------------------- */

void
sn_fbb_init(struct sn_fbb *b)
{
  memset(b, 0, sizeof *b);
  b->minalign = 1;
}

void
sn_fbb_free(struct sn_fbb *b)
{
  free(b->buf);
  free(b->slots);
  free(b->vtables);
  sn_fbb_init(b);
}

/* Record the first failure; later calls become no-ops. */
static void
fail(struct sn_fbb *b, const char *msg)
{
  if (!b->failed) {
    sn_set_error("flatbuffers builder: %s", msg);
    b->failed = 1;
  }
}

/* Make room for n more bytes at the front.  Data stays at the end, so
 * offsets (counted from the end) are unchanged by growing. */
static bool
reserve(struct sn_fbb *b, size_t n)
{
  size_t need, cap;
  uint8_t *nb;

  if (b->failed)
    return false;
  if (n > SN_FBB_MAX_SIZE - b->off) {
    fail(b, "buffer would exceed 2 GiB");
    return false;
  }
  need = b->off + n;
  if (need <= b->cap)
    return true;
  cap = b->cap ? b->cap : 1024;
  while (cap < need)
    cap *= 2;
  nb = malloc(cap);
  if (nb == NULL) {
    b->failed = 1;
    sn_oom();
    return false;
  }
  if (b->off)
    memcpy(nb + cap - b->off, b->buf + b->cap - b->off, b->off);
  free(b->buf);
  b->buf = nb;
  b->cap = cap;
  return true;
}

void
sn_fbb_reserve(struct sn_fbb *b, size_t n)
{
  uint8_t *nb;

  if (b->buf != NULL || b->failed || n == 0 || n > SN_FBB_MAX_SIZE)
    return;
  /* A failed hint is no failure: reserve() tries again as it grows. */
  if ((nb = malloc(n)) != NULL) {
    b->buf = nb;
    b->cap = n;
  }
}

/* Prepend n bytes (copied from data, or zeros if data is NULL). */
static bool
place(struct sn_fbb *b, const void *data, size_t n)
{
  uint8_t *p;

  if (!reserve(b, n))
    return false;
  if (n == 0)
    return true;
  b->off += n;
  p = b->buf + b->cap - b->off;
  if (data)
    memcpy(p, data, n);
  else
    memset(p, 0, n);
  return true;
}

/* Prepend an n-byte little-endian integer (no alignment). */
static bool
place_le(struct sn_fbb *b, uint64_t v, size_t n)
{
  uint8_t tmp[8];

  put_le(tmp, v, n);
  return place(b, tmp, n);
}

/* Go's Prep(size, additionalBytes): pad with zeros so that after writing
 * `extra` more bytes, the next `size`-byte value is size-aligned. */
static bool
prep(struct sn_fbb *b, size_t size, size_t extra)
{
  size_t pad;

  if (b->failed)
    return false;
  if (size > b->minalign)
    b->minalign = size;
  pad = (0 - (b->off + extra)) & (size - 1);
  return place(b, NULL, pad);
}

/* A scalar: prep(n, 0) then the value. */
static bool
prepend_scalar(struct sn_fbb *b, uint64_t v, size_t n)
{
  return prep(b, n, 0) && place_le(b, v, n);
}

/* A u32 reference to the object at ref, relative to where it is written. */
static bool
prepend_ref(struct sn_fbb *b, sn_fbb_ref ref)
{
  if (!prep(b, 4, 0))
    return false;
  if (ref == 0 || ref > b->off) {
    fail(b, "reference to an object not yet written");
    return false;
  }
  return place_le(b, b->off + 4 - ref, 4);
}

/* Strings and vectors may not be created inside an open table. */
static bool
not_nested(struct sn_fbb *b)
{
  if (b->in_table)
    fail(b, "object created inside a table");
  return !b->failed;
}

/* Go's EndVector: the element count (space already prepared). */
static sn_fbb_ref
end_vector(struct sn_fbb *b, size_t n)
{
  if (!place_le(b, n, 4))
    return 0;
  return (sn_fbb_ref) b->off;
}

/* docs/soci-format.md §2.3: prep(4, len + 1), the NUL, the bytes, the
 * u32 length. */
sn_fbb_ref
sn_fbb_create_string(struct sn_fbb *b, const void *s, size_t len)
{
  if (!not_nested(b))
    return 0;
  if (len > SN_FBB_MAX_SIZE) {
    fail(b, "string too long");
    return 0;
  }
  if (!prep(b, 4, len + 1) || !place(b, NULL, 1) || !place(b, s, len))
    return 0;
  return end_vector(b, len);
}

/* As a string without the NUL: prep(4, len), the bytes, the length. */
sn_fbb_ref
sn_fbb_create_bytes(struct sn_fbb *b, const void *data, size_t len)
{
  if (!not_nested(b))
    return 0;
  if (len > SN_FBB_MAX_SIZE) {
    fail(b, "vector too long");
    return 0;
  }
  if (!prep(b, 4, len) || !place(b, data, len))
    return 0;
  return end_vector(b, len);
}

/* The references from last to first, so element 0 ends up first. */
sn_fbb_ref
sn_fbb_create_ref_vector(struct sn_fbb *b, const sn_fbb_ref *refs, size_t n)
{
  size_t i;

  if (!not_nested(b))
    return 0;
  if (n > SN_FBB_MAX_SIZE / 4) {
    fail(b, "vector too long");
    return 0;
  }
  /* Go's StartVector(4, n, 4) preps twice: for the count, then the
   * element alignment. */
  if (!prep(b, 4, 4 * n) || !prep(b, 4, 4 * n))
    return 0;
  for (i = n; i-- > 0;)
    if (!prepend_ref(b, refs[i]))
      return 0;
  return end_vector(b, n);
}

/* Clear the slot offsets and remember where the table's data begins
 * (obj_end), as Go's StartObject does. */
void
sn_fbb_start_table(struct sn_fbb *b, unsigned nfields)
{
  if (!not_nested(b))
    return;
  if (nfields > 0x7ffe / 2) {   /* vtable size must fit in a u16 */
    fail(b, "too many fields");
    return;
  }
  if (nfields > b->slots_cap) {
    uint32_t *s = realloc(b->slots, nfields * sizeof *s);
    if (s == NULL) {
      b->failed = 1;
      sn_oom();
      return;
    }
    b->slots = s;
    b->slots_cap = nfields;
  }
  if (nfields)
    memset(b->slots, 0, nfields * sizeof *b->slots);
  b->nslots = nfields;
  b->obj_end = b->off;
  b->in_table = 1;
}

/* A field may be added only inside a table and to a declared slot. */
static bool
slot_ok(struct sn_fbb *b, unsigned slot)
{
  if (b->failed)
    return false;
  if (!b->in_table || slot >= b->nslots) {
    fail(b, "field added outside a table or beyond its fields");
    return false;
  }
  return true;
}

/* Go's PrependXSlot: write unless equal to the default, record the slot. */
static void
add_scalar(struct sn_fbb *b, unsigned slot, uint64_t v, size_t n)
{
  if (slot_ok(b, slot) && prepend_scalar(b, v, n))
    b->slots[slot] = (uint32_t) b->off;
}

void
sn_fbb_add_i8(struct sn_fbb *b, unsigned slot, int8_t v, int8_t def)
{
  if (v != def)
    add_scalar(b, slot, (uint8_t) v, 1);
}

void
sn_fbb_add_i32(struct sn_fbb *b, unsigned slot, int32_t v, int32_t def)
{
  if (v != def)
    add_scalar(b, slot, (uint32_t) v, 4);
}

void
sn_fbb_add_u32(struct sn_fbb *b, unsigned slot, uint32_t v, uint32_t def)
{
  if (v != def)
    add_scalar(b, slot, v, 4);
}

void
sn_fbb_add_i64(struct sn_fbb *b, unsigned slot, int64_t v, int64_t def)
{
  if (v != def)
    add_scalar(b, slot, (uint64_t) v, 8);
}

void
sn_fbb_add_ref(struct sn_fbb *b, unsigned slot, sn_fbb_ref ref)
{
  if (ref == 0)
    return;
  if (slot_ok(b, slot) && prepend_ref(b, ref))
    b->slots[slot] = (uint32_t) b->off;
}

/* Go's vtableEqual: does the vtable written at offset vt describe the
 * table being ended (at offset obj, n slots after trimming)?  As in Go, a
 * slot is compared as obj - slot even when one side is absent. */
static bool
vtable_equal(const struct sn_fbb *b, uint32_t vt, uint32_t obj, size_t n)
{
  const uint8_t *p = b->buf + b->cap - vt;
  size_t i;

  if (get_u16(p) != (n + 2) * 2)
    return false;
  for (i = 0; i < n; i++) {
    uint16_t x = get_u16(p + 4 + 2 * i);
    if (x == 0 && b->slots[i] == 0)
      continue;
    if ((int64_t) x != (int64_t) obj - (int64_t) b->slots[i])
      return false;
  }
  return true;
}

/* Add vt to the vtables searched by later tables; false on OOM. */
static bool
remember_vtable(struct sn_fbb *b, uint32_t vt)
{
  if (b->nvtables == b->vtables_cap) {
    size_t cap = b->vtables_cap ? b->vtables_cap * 2 : 16;
    uint32_t *v = realloc(b->vtables, cap * sizeof *v);
    if (v == NULL) {
      b->failed = 1;
      sn_oom();
      return false;
    }
    b->vtables = v;
    b->vtables_cap = cap;
  }
  b->vtables[b->nvtables++] = vt;
  return true;
}

/* Go's WriteVtable (docs/soci-format.md §2.3): the int32 placeholder,
 * trimming of trailing absent slots, the search for an identical vtable
 * (newest first), else a new one just before the table; the placeholder
 * then gets the signed distance to whichever vtable is used. */
sn_fbb_ref
sn_fbb_end_table(struct sn_fbb *b)
{
  uint32_t obj, found = 0;
  size_t n, i;
  uint8_t *soff;

  if (b->failed)
    return 0;
  if (!b->in_table) {
    fail(b, "end of a table that was not started");
    return 0;
  }
  /* Placeholder for the offset to the vtable. */
  if (!prepend_scalar(b, 0, 4))
    return 0;
  b->in_table = 0;
  obj = (uint32_t) b->off;
  if (obj - b->obj_end > 0xffff) {
    fail(b, "table larger than 64 KiB");
    return 0;
  }
  n = b->nslots;
  while (n > 0 && b->slots[n - 1] == 0)
    n--;

  for (i = b->nvtables; i-- > 0;) {
    if (vtable_equal(b, b->vtables[i], obj, n)) {
      found = b->vtables[i];
      break;
    }
  }

  if (found == 0) {
    for (i = n; i-- > 0;)
      if (!prepend_scalar(b, b->slots[i] ? obj - b->slots[i] : 0, 2))
        return 0;
    if (!prepend_scalar(b, obj - b->obj_end, 2) ||
        !prepend_scalar(b, (n + 2) * 2, 2))
      return 0;
    found = (uint32_t) b->off;
    if (!remember_vtable(b, found))
      return 0;
  }
  /* The table's first field: vtable position relative to the table,
   * positive when the vtable precedes it in the final buffer. */
  soff = b->buf + b->cap - obj;
  put_le(soff, (uint32_t) ((int64_t) found - (int64_t) obj), 4);
  return obj;
}

/* prep(minalign, 4) and the root reference, then the buffer handed over. */
int
sn_fbb_finish(struct sn_fbb *b, sn_fbb_ref root, uint8_t **out, size_t *len)
{
  uint8_t *shrunk;

  *out = NULL;
  *len = 0;
  if (!b->failed && b->in_table)
    fail(b, "finish with a table still open");
  if (b->failed || !prep(b, b->minalign, 4) || !prepend_ref(b, root))
    return -1;
  /* Moved down in place, not copied to a new buffer: a large result
   * would fault in as many fresh pages again. */
  memmove(b->buf, b->buf + b->cap - b->off, b->off);
  shrunk = realloc(b->buf, b->off);
  *out = shrunk ? shrunk : b->buf;
  *len = b->off;
  b->buf = NULL;
  b->cap = 0;
  b->off = 0;
  return 0;
}

/* ---- reader ------------------------------------------------------------ */

/* The table at pos: its vtable must lie inside the buffer, be at least 4
 * bytes and even-sized; the table's declared size must fit too. */
static int
table_at(const uint8_t *buf, size_t len, size_t pos, struct sn_fbr_table *t)
{
  int64_t vt;
  uint16_t vtlen, tlen;

  if (len < 4 || pos > len - 4)
    return sn_set_error("table at %zu is outside the buffer (size %zu)",
                        pos, len);
  vt = (int64_t) pos - (int32_t) get_u32(buf + pos);
  if (vt < 0 || (uint64_t) vt > len - 4)
    return sn_set_error("table at %zu: vtable at %" PRId64
                        " is outside the buffer", pos, vt);
  vtlen = get_u16(buf + vt);
  tlen = get_u16(buf + vt + 2);
  if (vtlen < 4 || vtlen % 2 || vtlen > len - (size_t) vt)
    return sn_set_error("table at %zu: bad vtable size %u", pos, vtlen);
  if (tlen < 4 || tlen > len - pos)
    return sn_set_error("table at %zu: bad table size %u", pos, tlen);
  t->buf = buf;
  t->len = len;
  t->pos = pos;
  t->vt = (size_t) vt;
  t->vtlen = vtlen;
  return 0;
}

/* The root reference is the first u32; at least 8 bytes are required. */
int
sn_fbr_root(const uint8_t *buf, size_t len, struct sn_fbr_table *t)
{
  if (len < 8)
    return sn_set_error("buffer too short (%zu bytes)", len);
  return table_at(buf, len, get_u32(buf), t);
}

/* Position of a field of `size` bytes: 1 and *fpos if present, 0 if
 * absent, -1 if it does not fit in the buffer. */
static int
field(const struct sn_fbr_table *t, unsigned slot, size_t size, size_t *fpos)
{
  size_t vo = 4 + 2 * (size_t) slot;
  uint16_t o;

  if (vo + 2 > t->vtlen)
    return 0;
  o = get_u16(t->buf + t->vt + vo);
  if (o == 0)
    return 0;
  if (t->pos + o > t->len || size > t->len - t->pos - o)
    return sn_set_error("table at %zu: field %u is outside the buffer",
                        t->pos, slot);
  *fpos = t->pos + o;
  return 1;
}

/* Follow the u32 reference stored at p.  0 and *target, or -1. */
static int
follow(const uint8_t *buf, size_t len, size_t p, size_t *target)
{
  uint32_t u = get_u32(buf + p);

  if (u == 0)
    return sn_set_error("reference at %zu is zero", p);
  if (u > INT32_MAX || u > len - p)
    return sn_set_error("reference at %zu points outside the buffer (+%"
                        PRIu32 ")", p, u);
  *target = p + u;
  return 0;
}

/* The string at pos: u32 length, bytes and NUL, all inside buf. */
static int
string_at(const uint8_t *buf, size_t len, size_t pos, const char **s,
          size_t *slen)
{
  uint32_t n;

  if (len < 4 || pos > len - 4)
    return sn_set_error("string at %zu is outside the buffer", pos);
  n = get_u32(buf + pos);
  if (n >= len - pos - 4)
    return sn_set_error("string at %zu: length %" PRIu32
                        " exceeds the buffer", pos, n);
  if (buf[pos + 4 + n] != 0)
    return sn_set_error("string at %zu is not NUL-terminated", pos);
  *s = (const char *) buf + pos + 4;
  *slen = n;
  return 0;
}

/* The vector at pos: u32 count, then count elements inside buf. */
static int
vector_at(const uint8_t *buf, size_t len, size_t pos, size_t elem_size,
          struct sn_fbr_vec *v)
{
  uint32_t n;

  if (len < 4 || pos > len - 4)
    return sn_set_error("vector at %zu is outside the buffer", pos);
  n = get_u32(buf + pos);
  if (elem_size == 0 || n > (len - pos - 4) / elem_size)
    return sn_set_error("vector at %zu: %" PRIu32 " %zu-byte elements "
                        "exceed the buffer", pos, n, elem_size);
  v->buf = buf;
  v->len = len;
  v->pos = pos + 4;
  v->n = n;
  v->elem_size = elem_size;
  return 0;
}

/* A 1-, 4- or 8-byte field into *v: 1 if present, 0 absent, -1 bad. */
static int
scalar(const struct sn_fbr_table *t, unsigned slot, size_t size,
       uint64_t *v)
{
  size_t p = 0;
  int r = field(t, slot, size, &p);

  if (r == 1) {
    switch (size) {
    case 1: *v = t->buf[p]; break;
    case 4: *v = get_u32(t->buf + p); break;
    default: *v = get_u64(t->buf + p); break;
    }
  }
  return r;
}

int
sn_fbr_i8(const struct sn_fbr_table *t, unsigned slot, int8_t def, int8_t *v)
{
  uint64_t x;
  int r = scalar(t, slot, 1, &x);

  *v = r == 1 ? (int8_t) (uint8_t) x : def;
  return r < 0 ? -1 : 0;
}

int
sn_fbr_i32(const struct sn_fbr_table *t, unsigned slot, int32_t def,
           int32_t *v)
{
  uint64_t x;
  int r = scalar(t, slot, 4, &x);

  *v = r == 1 ? (int32_t) (uint32_t) x : def;
  return r < 0 ? -1 : 0;
}

int
sn_fbr_u32(const struct sn_fbr_table *t, unsigned slot, uint32_t def,
           uint32_t *v)
{
  uint64_t x;
  int r = scalar(t, slot, 4, &x);

  *v = r == 1 ? (uint32_t) x : def;
  return r < 0 ? -1 : 0;
}

int
sn_fbr_i64(const struct sn_fbr_table *t, unsigned slot, int64_t def,
           int64_t *v)
{
  uint64_t x;
  int r = scalar(t, slot, 8, &x);

  *v = r == 1 ? (int64_t) x : def;
  return r < 0 ? -1 : 0;
}

/* The target of a reference field: 1 and *target, 0 if absent, -1. */
static int
ref_field(const struct sn_fbr_table *t, unsigned slot, size_t *target)
{
  size_t p = 0;
  int r = field(t, slot, 4, &p);

  if (r != 1)
    return r;
  return follow(t->buf, t->len, p, target) == 0 ? 1 : -1;
}

int
sn_fbr_string(const struct sn_fbr_table *t, unsigned slot, const char **s,
              size_t *len)
{
  size_t p = 0;
  int r = ref_field(t, slot, &p);

  *s = NULL;
  *len = 0;
  if (r != 1)
    return r;
  return string_at(t->buf, t->len, p, s, len) == 0 ? 1 : -1;
}

int
sn_fbr_table(const struct sn_fbr_table *t, unsigned slot,
             struct sn_fbr_table *sub)
{
  size_t p = 0;
  int r = ref_field(t, slot, &p);

  memset(sub, 0, sizeof *sub);
  if (r != 1)
    return r;
  return table_at(t->buf, t->len, p, sub) == 0 ? 1 : -1;
}

int
sn_fbr_vector(const struct sn_fbr_table *t, unsigned slot, size_t elem_size,
              struct sn_fbr_vec *v)
{
  size_t p = 0;
  int r = ref_field(t, slot, &p);

  memset(v, 0, sizeof *v);
  if (r != 1)
    return r;
  return vector_at(t->buf, t->len, p, elem_size, v) == 0 ? 1 : -1;
}

/* Position of element i of a vector of references, checked. */
static int
vec_elem(const struct sn_fbr_vec *v, size_t i, size_t *target)
{
  if (i >= v->n || v->elem_size != 4)
    return sn_set_error("vector element %zu out of range", i);
  return follow(v->buf, v->len, v->pos + 4 * i, target);
}

int
sn_fbr_vec_table(const struct sn_fbr_vec *v, size_t i,
                 struct sn_fbr_table *t)
{
  size_t p = 0;

  if (vec_elem(v, i, &p) == -1)
    return -1;
  return table_at(v->buf, v->len, p, t);
}

int
sn_fbr_vec_string(const struct sn_fbr_vec *v, size_t i, const char **s,
                  size_t *len)
{
  size_t p = 0;

  if (vec_elem(v, i, &p) == -1)
    return -1;
  return string_at(v->buf, v->len, p, s, len);
}
