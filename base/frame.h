/*
 * frame.h - the data plane's binary frames (docs/protocol.md, "The data
 * plane"): encoding and decoding of the fixed little-endian header, of the
 * operations of a request and of the results of a reply.
 *
 * Decoding never copies and never allocates: a decoded operation or result
 * points into the buffer it was decoded from, and lives as long as that
 * buffer. Every length is checked against the caller's limits and against
 * the bytes actually present before anything is read through it, so a
 * decoder given any bytes answers TRELLIS_OK, TRELLIS_MALFORMED or
 * TRELLIS_TOO_LARGE and touches nothing outside the buffer.
 *
 * The module is pure code (no I/O, no protobuf): the storage node's shard
 * loops, libtrellis and the fuzz harness share it.
 */
#ifndef TRELLIS_FRAME_H
#define TRELLIS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "trellis/trellis_status.h"

#define FRAME_MAGIC0        0xD7u /* first byte: not ASCII, not a TLS record type */
#define FRAME_MAGIC1        0x54u /* 'T' */
#define FRAME_VERSION       1u
#define FRAME_HEADER_SIZE   40u
#define FRAME_OP_HEADER     8u     /* op, type, key length (u16), value length (u32) */
#define FRAME_RESULT_HEADER 8u     /* status, type, flags, reserved, value length (u32) */
#define FRAME_MAX_KEY       65535u /* the key length field has 16 bits */
#define FRAME_MAX_TOKEN     255u   /* bytes of a HELLO's token */
#define FRAME_MAX_TEXT      256u   /* bytes of an error reply's message */
#define FRAME_DELETE_ARG    16u    /* DELETE's value: timestamp and writer, u64 each */
#define FRAME_EXPIRE_ARG    16u    /* EXPIRE's value: deadline (Unix ms) and stamp, u64 each */
#define FRAME_DEADLINE_SIZE 8u     /* a result's deadline, when its flag is set */
#define FRAME_HELLO_INFO    24u    /* bytes of a HELLO_REPLY's body */

/* Frame kinds (header byte 3). */
enum {
    FRAME_HELLO = 1,       /* client -> shard: the token, first on a connection */
    FRAME_HELLO_REPLY = 2, /* shard -> client: status; the shard's limits */
    FRAME_REQUEST = 3,     /* client -> shard: operations */
    FRAME_REPLY = 4,       /* shard -> client: one result per operation, or a status */
};

/* Operation codes, as the protocol's OpCode. The arguments and results of
 * EXPIRE and of the operations after it travel in their values, in the
 * encodings of base/kvop.h. */
enum {
    FRAME_OP_GET = 0,
    FRAME_OP_PUT = 1,
    FRAME_OP_DELETE = 2,
    FRAME_OP_REMOVE = 3,
    FRAME_OP_EXPIRE = 4,
    FRAME_OP_HEAD = 5,
    FRAME_OP_PUT_EX = 6,
    FRAME_OP_MAP_SET = 7,
    FRAME_OP_SCAN = 8,
    FRAME_OP_COUNT
};

/* Result flags (a result's byte 2). Any other bit is MALFORMED. */
#define FRAME_R_DEADLINE 0x01u /* a u64 deadline (Unix ms) follows the result's header */
#define FRAME_R_KNOWN    FRAME_R_DEADLINE

/* Request flags (header bytes 36-37). Any other bit is MALFORMED. */
#define FRAME_F_ACK_ALL 0x0001u /* the caller asked for ack=all */
#define FRAME_F_KNOWN   FRAME_F_ACK_ALL

/* A decoded header. `length` counts the body's bytes (what follows the
 * header). */
typedef struct frame_header {
    uint8_t kind;
    uint32_t length;
    uint64_t id;     /* chosen by the client; its reply carries it back */
    uint64_t epoch;  /* ring epoch: the client's, or in replies the shard's */
    uint64_t clock;  /* hybrid logical clock: the client's, or the shard's */
    uint32_t count;  /* operations of a request, results of a reply */
    uint16_t flags;  /* FRAME_F_*; 0 in replies */
    uint16_t status; /* replies: TRELLIS_OK, or the status of the whole frame */
} frame_header;

/* What a decoder accepts. */
typedef struct frame_limits {
    size_t max_body; /* bytes after the header */
    size_t max_ops;  /* operations of a request, results of a reply */
} frame_limits;

/* Encodes h into out[0..FRAME_HEADER_SIZE). */
void frame_header_encode(const frame_header *h, uint8_t *out);

/* Decodes the header in buf[0..FRAME_HEADER_SIZE) (the caller has that
 * many bytes) and checks it: magic and version, a known kind, flags only
 * on requests and only known ones, the status a known code, length at most
 * lim->max_body, count at most lim->max_ops and no larger than the body
 * can hold (FRAME_OP_HEADER bytes per operation), a HELLO's token at most
 * FRAME_MAX_TOKEN bytes. Returns TRELLIS_OK with *out set, TRELLIS_TOO_LARGE
 * (length or count over the limits) or TRELLIS_MALFORMED. *out is set
 * whenever the first 8 bytes parse (magic, version, kind, length), so a
 * server can still answer a request id it refuses. */
int frame_header_decode(const uint8_t *buf, const frame_limits *lim, frame_header *out);

/* One operation of a request, pointing into the request's body. */
typedef struct frame_op {
    uint8_t op;   /* FRAME_OP_*; other values are the server's to refuse */
    uint8_t type; /* lattice type (LATTICE_NONE = 0 for "any") */
    const uint8_t *key;
    size_t klen;
    const uint8_t *value;
    size_t vlen;
} frame_op;

/* One result of a reply, pointing into the reply's body. */
typedef struct frame_result {
    uint8_t status;
    uint8_t type;
    uint64_t deadline_ms; /* the key's deadline (FRAME_R_DEADLINE), 0 without one */
    const uint8_t *value;
    size_t vlen;
} frame_result;

/* Walks the operations of a request body, or the results of a reply body. */
typedef struct frame_iter {
    const uint8_t *p, *end;
    uint32_t left; /* items still to come */
} frame_iter;

/* Starts walking body[0..h->length) of a request or a reply with header h. */
void frame_iter_init(frame_iter *it, const frame_header *h, const uint8_t *body);

/* The next operation. Returns 1 with *op set, 0 after the last one, or -1
 * when the body does not hold what its headers announce (the item's
 * lengths run past the body). */
int frame_next_op(frame_iter *it, frame_op *op);
int frame_next_result(frame_iter *it, frame_result *res);

/* Checks a whole body: exactly h->count items, each within the body, and
 * no byte left over. TRELLIS_OK or TRELLIS_MALFORMED. After it succeeds,
 * frame_next_* on the same body cannot fail. */
int frame_check_request(const frame_header *h, const uint8_t *body);
int frame_check_reply(const frame_header *h, const uint8_t *body);

/* Writes an operation's header at out and returns out + FRAME_OP_HEADER;
 * the key and value bytes are the caller's to place after it. klen must
 * be at most FRAME_MAX_KEY. */
uint8_t *frame_put_op_header(uint8_t *out, uint8_t op, uint8_t type, size_t klen, size_t vlen);
/* Writes a result's header (and its deadline when deadline_ms is not 0)
 * at out and returns where the value goes. */
uint8_t *frame_put_result_header(uint8_t *out, uint8_t status, uint8_t type, uint64_t deadline_ms,
                                 size_t vlen);

/* The bytes one operation or result takes in a body. */
static inline size_t frame_op_size(size_t klen, size_t vlen)
{
    return FRAME_OP_HEADER + klen + vlen;
}
static inline size_t frame_result_size(uint64_t deadline_ms, size_t vlen)
{
    return FRAME_RESULT_HEADER + (deadline_ms ? FRAME_DEADLINE_SIZE : 0) + vlen;
}

/* DELETE's value: the delete's timestamp and writer. */
void frame_put_delete_arg(uint8_t *out, uint64_t timestamp, uint64_t writer);
/* Reads them back; TRELLIS_MALFORMED unless op is a DELETE whose value is
 * exactly FRAME_DELETE_ARG bytes. */
int frame_get_delete_arg(const frame_op *op, uint64_t *timestamp, uint64_t *writer);

/* EXPIRE's value: the deadline (Unix ms; 0 removes it) and the HLC stamp
 * of the change. frame_get_expire_arg: TRELLIS_MALFORMED unless op is an
 * EXPIRE whose value is exactly FRAME_EXPIRE_ARG bytes. */
void frame_put_expire_arg(uint8_t *out, uint64_t deadline_ms, uint64_t stamp);
int frame_get_expire_arg(const frame_op *op, uint64_t *deadline_ms, uint64_t *stamp);

/* A HELLO_REPLY's body: the limits the shard applies. */
typedef struct frame_hello_info {
    uint32_t max_body;  /* largest request body it accepts */
    uint32_t max_ops;   /* operations per request */
    uint32_t max_key;   /* bytes of a key */
    uint32_t max_value; /* bytes of a value */
    uint16_t shard;     /* its index within its node */
    uint16_t shards;    /* its node's shard count */
} frame_hello_info;

void frame_hello_encode(const frame_hello_info *info, uint8_t *out);
/* TRELLIS_MALFORMED unless len is FRAME_HELLO_INFO. */
int frame_hello_decode(const uint8_t *body, size_t len, frame_hello_info *out);

/* Constant-time comparison of a presented token with the expected one: 1
 * if they are equal, or when token is NULL or empty (authentication off).
 * The time taken depends only on the expected token's length. */
int frame_token_ok(const uint8_t *presented, size_t len, const char *token);

/* Little-endian helpers, for code that builds frames around these. */
static inline void frame_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void frame_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void frame_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t frame_rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t frame_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t frame_rd64(const uint8_t *p)
{
    return (uint64_t)frame_rd32(p) | (uint64_t)frame_rd32(p + 4) << 32;
}

#endif
