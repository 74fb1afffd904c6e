/*
 * tagged.c - stored states and their total merge: the one the RocksDB
 * merge operator runs on whatever bytes it finds.
 *
 * A tagged state is either plain, [type 1..8][encoding] (incarnation 0, no
 * expiry register), or starts with a header byte 0x80 | flags:
 *   EPOCH 0x01  epoch u64 (1 .. LAT_EPOCH_MAX) follows
 *   TTL   0x02  the expiry register follows: stamp u64 (>= 1), deadline u64
 *   TOMB  0x04  a tombstone: cleared u64 follows, and nothing else
 * in that order, then (unless TOMB) the type byte and the encoding. The
 * type byte may be 0 (no value yet) only with TTL, and then ends the state.
 * The headers that occur are 0x81, 0x82, 0x83 and 0x85: a header with
 * nothing to say is the plain form, so every state has one encoding.
 */
#include "lattices/lat_enc.h"
#include "lattices/lat_impl.h"

#define TAG_EXT   0x80
#define TAG_EPOCH 0x01
#define TAG_TTL   0x02
#define TAG_TOMB  0x04
#define TAG_FLAGS (TAG_EPOCH | TAG_TTL | TAG_TOMB)

/* Parses the header and locates the value without validating it: fills
 * *s and returns 1 when [buf, len) is a well-formed tagged state apart from
 * its encoding, 0 otherwise. Reads only inside the buffer. */
static int parse_header(const uint8_t *buf, size_t len, lat_stored *s)
{
    lat_rd r = lat_rd_make(buf, len);
    uint8_t flags;
    memset(s, 0, sizeof *s);
    if (buf == NULL || len < 1)
        return 0;
    if (lat_type_valid(buf[0])) {
        s->type = (lat_type)buf[0];
        s->value.data = buf + 1;
        s->value.len = len - 1;
        return 1;
    }
    if ((buf[0] & ~TAG_FLAGS) != TAG_EXT)
        return 0;
    flags = buf[0] & TAG_FLAGS;
    r.pos = 1;
    if (flags != TAG_EPOCH && flags != TAG_TTL && flags != (TAG_EPOCH | TAG_TTL) &&
        flags != (TAG_EPOCH | TAG_TOMB))
        return 0;
    if ((flags & TAG_EPOCH) &&
        (!lat_rd_u64(&r, &s->epoch) || s->epoch == 0 || s->epoch > LAT_EPOCH_MAX))
        return 0;
    if (flags & TAG_TTL) {
        s->has_ttl = 1;
        if (!lat_rd_u64(&r, &s->ttl_stamp) || !lat_rd_u64(&r, &s->deadline_ms) || s->ttl_stamp == 0)
            return 0;
    }
    if (flags & TAG_TOMB) {
        s->tombstone = 1;
        return lat_rd_u64(&r, &s->cleared_ms) && lat_rd_left(&r) == 0;
    }
    if (lat_rd_left(&r) < 1)
        return 0;
    uint8_t t = r.p[r.pos++];
    if (t == LAT_NONE)
        return s->has_ttl && lat_rd_left(&r) == 0;
    if (!lat_type_valid(t))
        return 0;
    s->type = (lat_type)t;
    s->value.data = r.p + r.pos;
    s->value.len = lat_rd_left(&r);
    return 1;
}

/* Parses a valid state (the header only: the value is known valid). */
static lat_stored view(const uint8_t *buf, size_t len)
{
    lat_stored s;
    parse_header(buf, len, &s);
    return s;
}

void lat_tagged_view(const uint8_t *buf, size_t len, lat_stored *out)
{
    *out = view(buf, len);
}

/* See lattice.h. */
int lat_tagged_parse(const uint8_t *buf, size_t len, lat_stored *out)
{
    if (!parse_header(buf, len, out))
        return TRELLIS_MALFORMED;
    if (out->type != LAT_NONE &&
        lat_validate(out->type, out->value.data, out->value.len) != TRELLIS_OK)
        return TRELLIS_MALFORMED;
    return TRELLIS_OK;
}

/* Returns TRELLIS_OK if [buf, len) is a canonical tagged state with a
 * valid value, TRELLIS_MALFORMED otherwise (also for NULL). */
int lat_tagged_validate(const uint8_t *buf, size_t len)
{
    lat_stored s;
    return lat_tagged_parse(buf, len, &s);
}

/* Appends the header of *s and its type byte (nothing for a plain state's
 * header; the whole state for a tombstone). TRELLIS_INTERNAL on OOM. */
static int put_header(const lat_stored *s, lat_buf *out)
{
    uint8_t h[1 + 4 * LAT_U64_SIZE + 1], *w = h + 1;
    int flags =
        (s->epoch ? TAG_EPOCH : 0) | (s->has_ttl ? TAG_TTL : 0) | (s->tombstone ? TAG_TOMB : 0);
    if (flags == 0) {
        h[0] = (uint8_t)s->type;
        return lat__buf_append(out, h, 1);
    }
    h[0] = (uint8_t)(TAG_EXT | flags);
    if (s->epoch) {
        lat_put_u64(w, s->epoch);
        w += LAT_U64_SIZE;
    }
    if (s->has_ttl) {
        lat_put_u64(w, s->ttl_stamp);
        lat_put_u64(w + LAT_U64_SIZE, s->deadline_ms);
        w += 2 * LAT_U64_SIZE;
    }
    if (s->tombstone) {
        lat_put_u64(w, s->cleared_ms);
        w += LAT_U64_SIZE;
    } else {
        *w++ = (uint8_t)s->type;
    }
    return lat__buf_append(out, h, (size_t)(w - h));
}

/* Whether *s describes a state that has an encoding. */
static int buildable(const lat_stored *s)
{
    if (s->epoch > LAT_EPOCH_MAX || (s->has_ttl && s->ttl_stamp == 0))
        return 0;
    if (s->tombstone)
        return s->epoch > 0 && !s->has_ttl && s->type == LAT_NONE && s->value.len == 0;
    if (s->type == LAT_NONE)
        return s->has_ttl && s->value.len == 0;
    return lat_type_valid(s->type);
}

/* See lattice.h. */
int lat_tagged_build(const lat_stored *s, lat_buf *out)
{
    if (!buildable(s))
        return TRELLIS_INVALID;
    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, s->value.data, s->value.len, NULL, 0);
    int rc = put_header(s, dst);
    if (rc == TRELLIS_OK)
        rc = lat__buf_append(dst, s->value.data, s->value.len);
    return lat__out_end(out, &tmp, dst, rc);
}

/* -1, 0 or 1 as register a is below, equal to or above b in last-writer-
 * wins order by (stamp, deadline); an absent register is the bottom. */
static int ttl_cmp(const lat_stored *a, const lat_stored *b)
{
    if (!a->has_ttl || !b->has_ttl)
        return a->has_ttl - b->has_ttl;
    int c = lat_u64_cmp(a->ttl_stamp, b->ttl_stamp);
    return c != 0 ? c : lat_u64_cmp(a->deadline_ms, b->deadline_ms);
}

/* Appends the join of two valid states of one epoch that are not
 * tombstones: the greater register, and the values as before the header
 * existed (the larger type wins, one type merges; no type is the bottom). */
static int join_values(const lat_stored *a, const lat_stored *b, lat_buf *out)
{
    lat_stored m = ttl_cmp(a, b) >= 0 ? *a : *b;
    const lat_stored *win = a->type >= b->type ? a : b;
    m.type = win->type;
    m.value = win->value;
    int rc = put_header(&m, out);
    if (rc != TRELLIS_OK || m.type == LAT_NONE)
        return rc;
    if (a->type == b->type)
        return lat__merge_append(a->type, a->value.data, a->value.len, b->value.data, b->value.len,
                                 out);
    return lat__buf_append(out, win->value.data, win->value.len);
}

/* The join of two tagged states over all byte strings: malformed operands
 * rank below valid ones and among themselves in byte order; valid states
 * join lexicographically by epoch, then as join_values (a tombstone ranks
 * below the rest of its epoch, two tombstones keep the later clearing).
 * out may alias a or b. When malformed is not NULL, the number of
 * malformed operands of this call (0 to 2) is added to *malformed. Returns
 * TRELLIS_OK, or TRELLIS_INTERNAL on OOM (out's contents then
 * unspecified). */
int lat_tagged_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out,
                     unsigned *malformed)
{
    if (a == NULL)
        alen = 0;
    if (b == NULL)
        blen = 0;
    lat_stored sa, sb;
    int a_ok = lat_tagged_parse(a, alen, &sa) == TRELLIS_OK;
    int b_ok = lat_tagged_parse(b, blen, &sb) == TRELLIS_OK;
    if (malformed != NULL)
        *malformed += (unsigned)!a_ok + (unsigned)!b_ok;

    lat_buf tmp;
    lat_buf *dst = lat__out_begin(out, &tmp, a, alen, b, blen);
    int rc, take_a;
    if (a_ok && b_ok && sa.epoch == sb.epoch && !sa.tombstone && !sb.tombstone) {
        rc = join_values(&sa, &sb, dst);
        return lat__out_end(out, &tmp, dst, rc);
    }
    if (a_ok != b_ok)
        take_a = a_ok;
    else if (!a_ok)
        take_a = lat_bytes_cmp(a, alen, b, blen) >= 0;
    else if (sa.epoch != sb.epoch)
        take_a = sa.epoch > sb.epoch;
    else if (sa.tombstone && sb.tombstone)
        take_a = sa.cleared_ms >= sb.cleared_ms;
    else
        take_a = sb.tombstone;
    rc = take_a ? lat__buf_append(dst, a, alen) : lat__buf_append(dst, b, blen);
    return lat__out_end(out, &tmp, dst, rc);
}

/* ---- expiry ----------------------------------------------------------------- */

lat_type lat_tagged_type(const uint8_t *buf, size_t len)
{
    return view(buf, len).type;
}

static int has_passed(const lat_stored *s, uint64_t now_ms)
{
    return !s->tombstone && s->has_ttl && s->deadline_ms != 0 && s->deadline_ms <= now_ms;
}

int lat_tagged_live(const uint8_t *buf, size_t len, uint64_t now_ms)
{
    lat_stored s = view(buf, len);
    return s.type != LAT_NONE && !has_passed(&s, now_ms);
}

int lat_tagged_expired(const uint8_t *buf, size_t len, uint64_t now_ms)
{
    lat_stored s = view(buf, len);
    return has_passed(&s, now_ms);
}

/* See lattice.h. */
int lat_tagged_tombstone(const uint8_t *buf, size_t len, uint64_t now_ms, lat_buf *out)
{
    lat_stored s = view(buf, len);
    if (!has_passed(&s, now_ms) || s.epoch >= LAT_EPOCH_MAX)
        return TRELLIS_INVALID;
    lat_stored t = {0};
    t.epoch = s.epoch + 1;
    t.tombstone = 1;
    t.cleared_ms = s.deadline_ms;
    return lat_tagged_build(&t, out);
}

int lat_tagged_collectable(const uint8_t *buf, size_t len, uint64_t now_ms, uint64_t grace_ms)
{
    lat_stored s = view(buf, len);
    if (now_ms < grace_ms)
        return 0;
    if (s.tombstone)
        return s.cleared_ms <= now_ms - grace_ms;
    return has_passed(&s, now_ms - grace_ms);
}

/* See lattice.h. */
int lat_tagged_write_epoch(const uint8_t *buf, size_t len, uint64_t now_ms, uint64_t *epoch)
{
    if (buf == NULL || len == 0) {
        *epoch = 0;
        return TRELLIS_OK;
    }
    lat_stored s = view(buf, len);
    if (!has_passed(&s, now_ms)) {
        *epoch = s.epoch;
        return TRELLIS_OK;
    }
    if (s.epoch >= LAT_EPOCH_MAX)
        return TRELLIS_INVALID;
    *epoch = s.epoch + 1;
    return TRELLIS_OK;
}

/* See lattice.h. */
int lat_tagged_wrap(uint64_t epoch, lat_type t, const uint8_t *value, size_t vlen, lat_buf *out)
{
    lat_stored s = {0};
    s.epoch = epoch;
    s.type = t;
    s.value.data = value;
    s.value.len = vlen;
    return lat_type_valid(t) ? lat_tagged_build(&s, out) : TRELLIS_INVALID;
}

/* See lattice.h. */
int lat_tagged_expiry(uint64_t epoch, uint64_t stamp, uint64_t deadline_ms, lat_buf *out)
{
    lat_stored s = {0};
    s.epoch = epoch;
    s.has_ttl = 1;
    s.ttl_stamp = stamp;
    s.deadline_ms = deadline_ms;
    return lat_tagged_build(&s, out);
}
