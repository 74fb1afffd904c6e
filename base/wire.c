/*
 * wire.c - envelopes, limits and the budgeted decode arena.
 */
#include "base/wire.h"
#include "base/frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK       (64 * 1024)
#define ARENA_BASE_BUDGET (64 * 1024)
/* What one operation or result of a batch may take decoded: protobuf-c's
 * struct, its key, the pointer to it and protobuf-c's scan record of the
 * field (32 bytes, in slabs that double). A batch of 4096 GETs of 1-byte
 * keys (20 KiB on the wire) takes ~184 bytes per operation. */
#define ARENA_OP_BUDGET 256

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;
    size_t used;
    max_align_t data[];
} arena_chunk;

struct wire_arena {
    arena_chunk *head; /* current chunk; the first chunk is kept across resets */
    arena_chunk *first;
    size_t total;  /* bytes handed out since the last reset */
    size_t budget; /* limit for the decode in progress */
    int over;      /* the budget was exceeded */
    ProtobufCAllocator pb;
};

static arena_chunk *arena_chunk_new(size_t cap)
{
    arena_chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

static void *arena_alloc(void *data, size_t size)
{
    wire_arena *a = data;
    size_t need = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    if (need < size || (a->budget != SIZE_MAX && a->total + need > a->budget)) {
        a->over = 1;
        return NULL;
    }
    arena_chunk *c = a->head;
    if (c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        arena_chunk *n = arena_chunk_new(cap);
        if (!n)
            return NULL;
        n->next = a->head;
        a->head = n;
        c = n;
    }
    void *p = (char *)c->data + c->used;
    c->used += need;
    a->total += need;
    return p;
}

static void arena_free(void *data, void *p)
{
    /* Everything goes at once in wire_arena_reset. */
    (void)data;
    (void)p;
}

wire_arena *wire_arena_new(void)
{
    wire_arena *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->first = a->head = arena_chunk_new(ARENA_CHUNK);
    if (!a->first) {
        free(a);
        return NULL;
    }
    a->pb.alloc = arena_alloc;
    a->pb.free = arena_free;
    a->pb.allocator_data = a;
    return a;
}

void wire_arena_reset(wire_arena *a)
{
    while (a->head != a->first) {
        arena_chunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->first->used = 0;
    a->total = 0;
    a->over = 0;
}

void wire_arena_free(wire_arena *a)
{
    if (!a)
        return;
    wire_arena_reset(a);
    free(a->first);
    free(a);
}

void *wire_arena_alloc(wire_arena *a, size_t n)
{
    size_t saved = a->budget;
    a->budget = SIZE_MAX;
    void *p = arena_alloc(a, n ? n : 1);
    a->budget = saved;
    return p;
}

void *wire_arena_dup(wire_arena *a, const void *p, size_t n)
{
    void *d = wire_arena_alloc(a, n);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

size_t wire_arena_used(const wire_arena *a)
{
    return a->total;
}

void wire_limits_default(wire_limits *out)
{
    out->max_message = WIRE_DEFAULT_MAX_MESSAGE;
    out->max_key = WIRE_DEFAULT_MAX_KEY;
    out->max_value = WIRE_DEFAULT_MAX_VALUE;
    out->max_ops = WIRE_DEFAULT_MAX_OPS;
    out->max_set_members = WIRE_DEFAULT_MAX_SET_MEMBERS;
    out->budget_factor = WIRE_DEFAULT_BUDGET_FACTOR;
}

int wire_decode(wire_arena *a, const void *buf, size_t len, const wire_limits *lim,
                Trellis__Envelope **out)
{
    *out = NULL;
    if (len > lim->max_message)
        return TRELLIS_TOO_LARGE;
    a->budget =
        a->total + ARENA_BASE_BUDGET + lim->budget_factor * len + lim->max_ops * ARENA_OP_BUDGET;
    a->over = 0;
    Trellis__Envelope *env = trellis__envelope__unpack(&a->pb, len, buf);
    if (!env) {
        /* What the failed decode took stays counted until the next reset,
         * so repeated failures into one arena stay bounded too. */
        int over = a->over;
        a->over = 0;
        return over ? TRELLIS_TOO_LARGE : TRELLIS_MALFORMED;
    }
    if (env->version != WIRE_VERSION)
        return TRELLIS_MALFORMED;
    *out = env;
    return TRELLIS_OK;
}

int wire_append(nng_msg *msg, const Trellis__Envelope *env)
{
    size_t n = trellis__envelope__get_packed_size(env);
    size_t off = nng_msg_len(msg);
    if (nng_msg_realloc(msg, off + n) != 0)
        return TRELLIS_INTERNAL;
    trellis__envelope__pack(env, (uint8_t *)nng_msg_body(msg) + off);
    return TRELLIS_OK;
}

int wire_to_msg(const Trellis__Envelope *env, nng_msg **out)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, 0) != 0)
        return TRELLIS_INTERNAL;
    int rc = wire_append(m, env);
    if (rc != TRELLIS_OK) {
        nng_msg_free(m);
        return rc;
    }
    *out = m;
    return TRELLIS_OK;
}

int wire_reply_msg(nng_msg *req, const Trellis__Envelope *env, nng_msg **out)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, 0) != 0)
        return TRELLIS_INTERNAL;
    if (nng_msg_header_append(m, nng_msg_header(req), nng_msg_header_len(req)) != 0 ||
        wire_append(m, env) != TRELLIS_OK) {
        nng_msg_free(m);
        return TRELLIS_INTERNAL;
    }
    *out = m;
    return TRELLIS_OK;
}

void wire_error_init(Trellis__Envelope *env, Trellis__ErrorReply *er, int status, const char *text)
{
    trellis__envelope__init(env);
    trellis__error_reply__init(er);
    er->status = (Trellis__Status)status;
    er->message = (char *)text;
    env->body_case = TRELLIS__ENVELOPE__BODY_ERROR;
    env->error = er;
}

void wire_envelope_init(Trellis__Envelope *env, uint64_t epoch, const char *token)
{
    trellis__envelope__init(env);
    env->version = WIRE_VERSION;
    env->ring_epoch = epoch;
    if (token && token[0]) {
        env->auth.data = (uint8_t *)token;
        env->auth.len = strlen(token);
    }
}

int wire_auth_ok(const Trellis__Envelope *env, const char *token)
{
    return frame_token_ok(env->auth.data, env->auth.len, token);
}

int wire_check_key(const ProtobufCBinaryData *key, const wire_limits *lim)
{
    if (key->len == 0)
        return TRELLIS_INVALID;
    if (key->len > lim->max_key)
        return TRELLIS_TOO_LARGE;
    return TRELLIS_OK;
}

const char *wire_body_name(int body_case)
{
    switch (body_case) {
    case TRELLIS__ENVELOPE__BODY_KV:
        return "kv";
    case TRELLIS__ENVELOPE__BODY_KV_REPLY:
        return "kv_reply";
    case TRELLIS__ENVELOPE__BODY_REPLICATE:
        return "replicate";
    case TRELLIS__ENVELOPE__BODY_REPLICATE_ACK:
        return "replicate_ack";
    case TRELLIS__ENVELOPE__BODY_DIGEST:
        return "digest";
    case TRELLIS__ENVELOPE__BODY_DIGEST_REPLY:
        return "digest_reply";
    case TRELLIS__ENVELOPE__BODY_RING_REQUEST:
        return "ring_request";
    case TRELLIS__ENVELOPE__BODY_RING:
        return "ring";
    case TRELLIS__ENVELOPE__BODY_HELLO:
        return "hello";
    case TRELLIS__ENVELOPE__BODY_MEMBERSHIP:
        return "membership";
    case TRELLIS__ENVELOPE__BODY_LOOKUP:
        return "lookup";
    case TRELLIS__ENVELOPE__BODY_LOOKUP_REPLY:
        return "lookup_reply";
    case TRELLIS__ENVELOPE__BODY_STATS:
        return "stats";
    case TRELLIS__ENVELOPE__BODY_STATS_REQUEST:
        return "stats_request";
    case TRELLIS__ENVELOPE__BODY_STATS_REPLY:
        return "stats_reply";
    case TRELLIS__ENVELOPE__BODY_COMMAND:
        return "command";
    case TRELLIS__ENVELOPE__BODY_COMMAND_REPLY:
        return "command_reply";
    case TRELLIS__ENVELOPE__BODY_ERROR:
        return "error";
    default:
        return "none";
    }
}

/* Reads a base-128 varint; 0 on success. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int wire_peek_auth(const void *buf, size_t len, const char *token)
{
    if (!token || !token[0])
        return 1;
    const uint8_t *p = buf, *end = p + len;
    const uint8_t *auth = NULL;
    size_t alen = 0;
    while (p < end) {
        uint64_t tag, v;
        if (read_varint(&p, end, &tag) != 0)
            return 0;
        unsigned wt = (unsigned)(tag & 7);
        uint64_t field = tag >> 3;
        if (wt == 0) {
            if (read_varint(&p, end, &v) != 0)
                return 0;
        } else if (wt == 2) {
            if (read_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                return 0;
            if (field == 2) {
                auth = p;
                alen = (size_t)v;
            }
            p += v;
        } else if (wt == 1) {
            if (end - p < 8)
                return 0;
            p += 8;
        } else if (wt == 5) {
            if (end - p < 4)
                return 0;
            p += 4;
        } else {
            return 0;
        }
    }
    Trellis__Envelope env;
    trellis__envelope__init(&env);
    env.auth.data = (uint8_t *)auth;
    env.auth.len = auth ? alen : 0;
    return wire_auth_ok(&env, token);
}
