/*
 * wire.h - encoding and decoding of protocol envelopes, with limits.
 *
 * Decoding untrusted bytes goes through a wire_arena: a bump allocator with
 * a per-message byte budget handed to protobuf-c, so that a small message
 * cannot make the decoder allocate without bound (protobuf-c allocates up to
 * ~49x the input for adversarial messages) and decoding costs one or two
 * mallocs. A decoded envelope lives until the arena is reset.
 */
#ifndef TRELLIS_WIRE_H
#define TRELLIS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "proto/trellis.pb-c.h"
#include "trellis/trellis_status.h"

#define WIRE_VERSION 1

/* The defaults of the `limits` section of deploy/trellis.yml (the server
 * layer's configuration schema states them again; a test keeps the two in
 * step). */
#define WIRE_DEFAULT_MAX_MESSAGE     (4u << 20)
#define WIRE_DEFAULT_MAX_KEY         1024u
#define WIRE_DEFAULT_MAX_VALUE       (1u << 20)
#define WIRE_DEFAULT_MAX_OPS         4096u
#define WIRE_DEFAULT_MAX_SET_MEMBERS 65536u
#define WIRE_DEFAULT_BUDGET_FACTOR   16u

/* Limits applied to every decoded message (a server takes them from the
 * `limits` section of its configuration). */
typedef struct wire_limits {
    size_t max_message;
    size_t max_key;
    size_t max_value;
    size_t max_ops;
    size_t max_set_members;
    size_t budget_factor;
} wire_limits;

/* The defaults above. */
void wire_limits_default(wire_limits *out);

typedef struct wire_arena wire_arena;

/* A new arena, NULL on allocation failure. */
wire_arena *wire_arena_new(void);
/* Releases everything decoded into the arena; keeps its first chunk. */
void wire_arena_reset(wire_arena *a);
void wire_arena_free(wire_arena *a);
/* Allocates n bytes (aligned for any type) from the arena for the caller's
 * own use, such as building a reply; no budget applies. NULL on OOM. Lives
 * until the next reset. */
void *wire_arena_alloc(wire_arena *a, size_t n);
/* Copies [p, p + n) into the arena. */
void *wire_arena_dup(wire_arena *a, const void *p, size_t n);

/* Bytes currently allocated from the arena. */
size_t wire_arena_used(const wire_arena *a);

/* Decodes an envelope from [buf, len). Fails with TRELLIS_TOO_LARGE when len
 * exceeds lim->max_message or decoding would exceed the arena budget
 * (budget_factor * len + 64 KiB + 256 bytes for each of the max_ops
 * operations a batch may hold, so that every batch within the limits
 * decodes), TRELLIS_MALFORMED when the bytes are not an envelope or carry
 * another protocol version. On success *out lives until
 * wire_arena_reset/free; on failure the space the attempt took is reclaimed
 * by the next reset. */
int wire_decode(wire_arena *a, const void *buf, size_t len, const wire_limits *lim,
                Trellis__Envelope **out);

/* Appends the encoding of env to the body of msg (which may already hold a
 * header). TRELLIS_INTERNAL on allocation failure, msg unchanged. */
int wire_append(nng_msg *msg, const Trellis__Envelope *env);

/* Allocates a message holding env. */
int wire_to_msg(const Trellis__Envelope *env, nng_msg **out);

/* Builds the reply to a request received on a raw rep socket: the request's
 * backtrace header, then env's encoding. The request is left alone.
 * TRELLIS_INTERNAL on allocation failure. */
int wire_reply_msg(nng_msg *req, const Trellis__Envelope *env, nng_msg **out);

/* Makes env an ErrorReply envelope (status, text); er is storage the caller
 * provides, living as long as env. */
void wire_error_init(Trellis__Envelope *env, Trellis__ErrorReply *er, int status, const char *text);

/* Initialises env as a version-1 envelope with the given epoch and token. */
void wire_envelope_init(Trellis__Envelope *env, uint64_t epoch, const char *token);

/* Constant-time comparison of the envelope's token with `token`; 1 if they
 * match or token is NULL/empty (authentication off). */
int wire_auth_ok(const Trellis__Envelope *env, const char *token);

/* Checks the token of an undecoded envelope, before any allocation: scans
 * the top-level fields for `auth` (field 2). Returns 1 if the token matches
 * (or token is NULL/empty), 0 otherwise, including for bytes that do not
 * parse far enough. Servers call it first, so that an unauthenticated peer
 * costs no decoding; unauthenticated messages over
 * limits.unauth_message_bytes also close the peer's connection. */
int wire_peek_auth(const void *buf, size_t len, const char *token);

/* Checks a key against the limits: TRELLIS_OK, TRELLIS_INVALID (empty) or
 * TRELLIS_TOO_LARGE. */
int wire_check_key(const ProtobufCBinaryData *key, const wire_limits *lim);

/* "kv", "replicate", ... for logging a body case. */
const char *wire_body_name(int body_case);

#endif
