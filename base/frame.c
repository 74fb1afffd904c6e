/*
 * frame.c - the data plane's binary frames (frame.h, docs/protocol.md).
 */
#include "base/frame.h"

#include <string.h>

/* Byte offsets of the header's fields. */
enum {
    H_MAGIC0 = 0,
    H_MAGIC1 = 1,
    H_VERSION = 2,
    H_KIND = 3,
    H_LENGTH = 4,
    H_ID = 8,
    H_EPOCH = 16,
    H_CLOCK = 24,
    H_COUNT = 32,
    H_FLAGS = 36,
    H_STATUS = 38,
};

void frame_header_encode(const frame_header *h, uint8_t *out)
{
    out[H_MAGIC0] = FRAME_MAGIC0;
    out[H_MAGIC1] = FRAME_MAGIC1;
    out[H_VERSION] = FRAME_VERSION;
    out[H_KIND] = h->kind;
    frame_le32(out + H_LENGTH, h->length);
    frame_le64(out + H_ID, h->id);
    frame_le64(out + H_EPOCH, h->epoch);
    frame_le64(out + H_CLOCK, h->clock);
    frame_le32(out + H_COUNT, h->count);
    frame_le16(out + H_FLAGS, h->flags);
    frame_le16(out + H_STATUS, h->status);
}

int frame_header_decode(const uint8_t *buf, const frame_limits *lim, frame_header *out)
{
    memset(out, 0, sizeof(*out));
    if (buf[H_MAGIC0] != FRAME_MAGIC0 || buf[H_MAGIC1] != FRAME_MAGIC1 ||
        buf[H_VERSION] != FRAME_VERSION)
        return TRELLIS_MALFORMED;
    uint8_t kind = buf[H_KIND];
    if (kind < FRAME_HELLO || kind > FRAME_REPLY)
        return TRELLIS_MALFORMED;
    out->kind = kind;
    out->length = frame_rd32(buf + H_LENGTH);
    out->id = frame_rd64(buf + H_ID);
    out->epoch = frame_rd64(buf + H_EPOCH);
    out->clock = frame_rd64(buf + H_CLOCK);
    out->count = frame_rd32(buf + H_COUNT);
    out->flags = frame_rd16(buf + H_FLAGS);
    out->status = frame_rd16(buf + H_STATUS);
    if (out->length > lim->max_body)
        return TRELLIS_TOO_LARGE;
    if (out->status >= TRELLIS_STATUS_COUNT)
        return TRELLIS_MALFORMED;
    switch (kind) {
    case FRAME_HELLO:
        if (out->count || out->flags || out->status)
            return TRELLIS_MALFORMED;
        return out->length <= FRAME_MAX_TOKEN ? TRELLIS_OK : TRELLIS_TOO_LARGE;
    case FRAME_HELLO_REPLY:
        if (out->count || out->flags)
            return TRELLIS_MALFORMED;
        if (out->status == TRELLIS_OK)
            return out->length == FRAME_HELLO_INFO ? TRELLIS_OK : TRELLIS_MALFORMED;
        return out->length <= FRAME_MAX_TEXT ? TRELLIS_OK : TRELLIS_MALFORMED;
    case FRAME_REQUEST:
        if (out->status || (out->flags & ~FRAME_F_KNOWN))
            return TRELLIS_MALFORMED;
        break;
    default: /* FRAME_REPLY */
        if (out->flags)
            return TRELLIS_MALFORMED;
        if (out->status != TRELLIS_OK)
            return out->count == 0 && out->length <= FRAME_MAX_TEXT ? TRELLIS_OK
                                                                    : TRELLIS_MALFORMED;
        break;
    }
    if (out->count > lim->max_ops)
        return TRELLIS_TOO_LARGE;
    /* Every item has an 8-byte header: a count the body cannot hold is a
     * lie, caught before anyone sizes anything by it. */
    if ((uint64_t)out->count * FRAME_OP_HEADER > out->length)
        return TRELLIS_MALFORMED;
    return TRELLIS_OK;
}

void frame_iter_init(frame_iter *it, const frame_header *h, const uint8_t *body)
{
    it->p = body;
    it->end = body + h->length;
    it->left = h->count;
}

int frame_next_op(frame_iter *it, frame_op *op)
{
    if (it->left == 0)
        return 0;
    size_t room = (size_t)(it->end - it->p);
    if (room < FRAME_OP_HEADER)
        return -1;
    const uint8_t *p = it->p;
    size_t klen = frame_rd16(p + 2);
    size_t vlen = frame_rd32(p + 4);
    /* Subtractions only: room - header cannot wrap, and neither can what
     * is left after the key. */
    room -= FRAME_OP_HEADER;
    if (klen > room || vlen > room - klen)
        return -1;
    op->op = p[0];
    op->type = p[1];
    op->key = p + FRAME_OP_HEADER;
    op->klen = klen;
    op->value = op->key + klen;
    op->vlen = vlen;
    it->p = op->value + vlen;
    it->left--;
    return 1;
}

int frame_next_result(frame_iter *it, frame_result *res)
{
    if (it->left == 0)
        return 0;
    size_t room = (size_t)(it->end - it->p);
    if (room < FRAME_RESULT_HEADER)
        return -1;
    const uint8_t *p = it->p;
    uint8_t flags = p[2];
    size_t vlen = frame_rd32(p + 4);
    size_t extra = flags & FRAME_R_DEADLINE ? FRAME_DEADLINE_SIZE : 0;
    room -= FRAME_RESULT_HEADER;
    if ((flags & ~FRAME_R_KNOWN) || p[3] != 0 || extra > room || vlen > room - extra)
        return -1;
    res->status = p[0];
    res->type = p[1];
    res->deadline_ms = extra ? frame_rd64(p + FRAME_RESULT_HEADER) : 0;
    if (extra && res->deadline_ms == 0)
        return -1; /* the flag says there is one: 0 is no deadline */
    res->value = p + FRAME_RESULT_HEADER + extra;
    res->vlen = vlen;
    it->p = res->value + vlen;
    it->left--;
    return 1;
}

int frame_check_request(const frame_header *h, const uint8_t *body)
{
    frame_iter it;
    frame_op op;
    int rc;
    if (h->kind != FRAME_REQUEST)
        return TRELLIS_MALFORMED;
    frame_iter_init(&it, h, body);
    while ((rc = frame_next_op(&it, &op)) == 1)
        ;
    return rc == 0 && it.p == it.end ? TRELLIS_OK : TRELLIS_MALFORMED;
}

int frame_check_reply(const frame_header *h, const uint8_t *body)
{
    frame_iter it;
    frame_result res;
    int rc;
    if (h->kind != FRAME_REPLY)
        return TRELLIS_MALFORMED;
    if (h->status != TRELLIS_OK)
        return TRELLIS_OK; /* a status and a message, no results */
    frame_iter_init(&it, h, body);
    while ((rc = frame_next_result(&it, &res)) == 1)
        if (res.status >= TRELLIS_STATUS_COUNT)
            return TRELLIS_MALFORMED;
    return rc == 0 && it.p == it.end ? TRELLIS_OK : TRELLIS_MALFORMED;
}

uint8_t *frame_put_op_header(uint8_t *out, uint8_t op, uint8_t type, size_t klen, size_t vlen)
{
    out[0] = op;
    out[1] = type;
    frame_le16(out + 2, (uint16_t)klen);
    frame_le32(out + 4, (uint32_t)vlen);
    return out + FRAME_OP_HEADER;
}

uint8_t *frame_put_result_header(uint8_t *out, uint8_t status, uint8_t type, uint64_t deadline_ms,
                                 size_t vlen)
{
    out[0] = status;
    out[1] = type;
    out[2] = deadline_ms ? FRAME_R_DEADLINE : 0;
    out[3] = 0;
    frame_le32(out + 4, (uint32_t)vlen);
    if (!deadline_ms)
        return out + FRAME_RESULT_HEADER;
    frame_le64(out + FRAME_RESULT_HEADER, deadline_ms);
    return out + FRAME_RESULT_HEADER + FRAME_DEADLINE_SIZE;
}

void frame_put_delete_arg(uint8_t *out, uint64_t timestamp, uint64_t writer)
{
    frame_le64(out, timestamp);
    frame_le64(out + 8, writer);
}

int frame_get_delete_arg(const frame_op *op, uint64_t *timestamp, uint64_t *writer)
{
    if (op->op != FRAME_OP_DELETE || op->vlen != FRAME_DELETE_ARG)
        return TRELLIS_MALFORMED;
    *timestamp = frame_rd64(op->value);
    *writer = frame_rd64(op->value + 8);
    return TRELLIS_OK;
}

void frame_put_expire_arg(uint8_t *out, uint64_t deadline_ms, uint64_t stamp)
{
    frame_le64(out, deadline_ms);
    frame_le64(out + 8, stamp);
}

int frame_get_expire_arg(const frame_op *op, uint64_t *deadline_ms, uint64_t *stamp)
{
    if (op->op != FRAME_OP_EXPIRE || op->vlen != FRAME_EXPIRE_ARG)
        return TRELLIS_MALFORMED;
    *deadline_ms = frame_rd64(op->value);
    *stamp = frame_rd64(op->value + 8);
    return TRELLIS_OK;
}

void frame_hello_encode(const frame_hello_info *info, uint8_t *out)
{
    frame_le32(out, info->max_body);
    frame_le32(out + 4, info->max_ops);
    frame_le32(out + 8, info->max_key);
    frame_le32(out + 12, info->max_value);
    frame_le16(out + 16, info->shard);
    frame_le16(out + 18, info->shards);
    frame_le32(out + 20, 0);
}

int frame_hello_decode(const uint8_t *body, size_t len, frame_hello_info *out)
{
    if (len != FRAME_HELLO_INFO || frame_rd32(body + 20) != 0)
        return TRELLIS_MALFORMED;
    out->max_body = frame_rd32(body);
    out->max_ops = frame_rd32(body + 4);
    out->max_key = frame_rd32(body + 8);
    out->max_value = frame_rd32(body + 12);
    out->shard = frame_rd16(body + 16);
    out->shards = frame_rd16(body + 18);
    return TRELLIS_OK;
}

int frame_token_ok(const uint8_t *presented, size_t len, const char *token)
{
    if (!token || !token[0])
        return 1;
    size_t tlen = strlen(token);
    /* Compare over the token's length whatever the presented length, so the
     * time taken does not reveal how many leading bytes matched. */
    unsigned diff = len != tlen;
    for (size_t i = 0; i < tlen; i++) {
        uint8_t p = i < len ? presented[i] : 0;
        diff |= (unsigned)(p ^ (uint8_t)token[i]);
    }
    return diff == 0;
}
