/*
 * trellis_status.h - the status codes shared by the wire protocol, the
 * servers and the client library.
 *
 * The numeric values are those of the `Status` enum in proto/trellis.proto
 * and never change. Every fallible trellis function returns one of them as an
 * int: 0 (TRELLIS_OK) for success, a positive code otherwise.
 */
#ifndef TRELLIS_STATUS_H
#define TRELLIS_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message): the single table behind the enum and the strings. */
#define TRELLIS_STATUS_MAP(X)                                                                      \
    X(OK, 0, "ok")                                                                                 \
    X(NOT_FOUND, 1, "key not found")                                                               \
    X(WRONG_SHARD, 2, "key belongs to another shard or node")                                      \
    X(LATTICE_MISMATCH, 3, "lattice type does not match the key's type")                           \
    X(TOO_LARGE, 4, "request or value exceeds a configured limit")                                 \
    X(MALFORMED, 5, "malformed input")                                                             \
    X(TIMEOUT, 6, "deadline expired")                                                              \
    X(UNAVAILABLE, 7, "no replica is reachable")                                                   \
    X(OVERLOADED, 8, "server over capacity; retry later")                                          \
    X(UNAUTHORIZED, 9, "authentication required or token rejected")                                \
    X(INTERNAL, 10, "internal error")                                                              \
    X(INVALID, 11, "invalid argument")                                                             \
    X(EXPIRED, 12, "the key expired since the operation's counter totals were read")

typedef enum trellis_status {
#define TRELLIS_STATUS_ENUM(name, value, msg) TRELLIS_##name = value,
    TRELLIS_STATUS_MAP(TRELLIS_STATUS_ENUM)
#undef TRELLIS_STATUS_ENUM
} trellis_status;

#define TRELLIS_STATUS_COUNT 13

/* A sentence describing code; "unknown status" for values outside the enum.
 * The string is static and must not be freed. */
const char *trellis_strerror(int code);

/* The code's name as in the protocol ("NOT_FOUND"); "UNKNOWN" otherwise. */
const char *trellis_status_name(int code);

#ifdef __cplusplus
}
#endif

#endif
