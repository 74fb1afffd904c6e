/*
 * test_frame.c - the data plane's binary frames: round trips of headers,
 * requests, replies, DELETE arguments and HELLO replies; rejection of
 * every malformed header field and of every body whose lengths do not add
 * up (truncated at every byte, trailing bytes, lengths that would wrap);
 * random bytes never decode past their buffer; the token comparison.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tsupport.h"
#include "base/frame.h"

TestSuite(frame, .timeout = 60);

static const frame_limits lim = {1u << 20, 4096};

static frame_header sample_header(uint8_t kind)
{
    frame_header h = {0};
    h.kind = kind;
    h.length = kind == FRAME_HELLO_REPLY ? FRAME_HELLO_INFO : 64;
    h.id = 0x0102030405060708ull;
    h.epoch = UINT64_MAX - 3;
    h.clock = 0xdeadbeefcafef00dull;
    h.count = kind == FRAME_REQUEST || kind == FRAME_REPLY ? 8 : 0;
    h.flags = kind == FRAME_REQUEST ? FRAME_F_ACK_ALL : 0;
    h.status = 0;
    return h;
}

Test(frame, header_round_trip_every_kind)
{
    const uint8_t kinds[] = {FRAME_HELLO, FRAME_HELLO_REPLY, FRAME_REQUEST, FRAME_REPLY};
    for (size_t k = 0; k < 4; k++) {
        frame_header h = sample_header(kinds[k]), out;
        uint8_t buf[FRAME_HEADER_SIZE];
        frame_header_encode(&h, buf);
        cr_assert_eq(buf[0], FRAME_MAGIC0);
        cr_assert_eq(buf[1], FRAME_MAGIC1);
        cr_assert_eq(buf[2], FRAME_VERSION);
        cr_assert_eq(frame_header_decode(buf, &lim, &out), TRELLIS_OK, "kind %u", kinds[k]);
        cr_assert_eq(out.kind, h.kind);
        cr_assert_eq(out.length, h.length);
        cr_assert_eq(out.id, h.id);
        cr_assert_eq(out.epoch, h.epoch);
        cr_assert_eq(out.clock, h.clock);
        cr_assert_eq(out.count, h.count);
        cr_assert_eq(out.flags, h.flags);
        cr_assert_eq(out.status, h.status);
    }
}

Test(frame, header_is_little_endian_at_fixed_offsets)
{
    frame_header h = {.kind = FRAME_REQUEST,
                      .length = 0x11223344,
                      .id = 0x0807060504030201ull,
                      .epoch = 2,
                      .clock = 3,
                      .count = 0x01020304,
                      .flags = 1};
    uint8_t b[FRAME_HEADER_SIZE];
    frame_header_encode(&h, b);
    const uint8_t want[FRAME_HEADER_SIZE] = {0xD7, 0x54, 1,    3,    /* magic, version, kind */
                                             0x44, 0x33, 0x22, 0x11, /* length */
                                             1,    2,    3,    4,    5, 6, 7, 8, /* id */
                                             2,    0,    0,    0,    0, 0, 0, 0, /* epoch */
                                             3,    0,    0,    0,    0, 0, 0, 0, /* clock */
                                             4,    3,    2,    1,                /* count */
                                             1,    0,                            /* flags */
                                             0,    0};                           /* status */
    cr_assert(memcmp(b, want, sizeof(want)) == 0);
}

/* Encodes h, lets `mutate` spoil the bytes, and expects `want`. */
static void expect_header(frame_header h, void (*mutate)(uint8_t *), int want, const char *what)
{
    uint8_t b[FRAME_HEADER_SIZE];
    frame_header out;
    frame_header_encode(&h, b);
    if (mutate)
        mutate(b);
    cr_assert_eq(frame_header_decode(b, &lim, &out), want, "%s: got %d", what,
                 frame_header_decode(b, &lim, &out));
}

static void bad_magic0(uint8_t *b)
{
    b[0] = '*'; /* a RESP array */
}
static void bad_magic1(uint8_t *b)
{
    b[1] ^= 0xff;
}
static void bad_version(uint8_t *b)
{
    b[2] = 2;
}
static void kind_zero(uint8_t *b)
{
    b[3] = 0;
}
static void kind_five(uint8_t *b)
{
    b[3] = 5;
}
static void kind_max(uint8_t *b)
{
    b[3] = 0xff;
}
static void tls_record(uint8_t *b)
{
    b[0] = 0x16; /* a TLS handshake record */
}

Test(frame, header_rejects_every_malformed_field)
{
    frame_header req = sample_header(FRAME_REQUEST);
    expect_header(req, bad_magic0, TRELLIS_MALFORMED, "RESP first byte");
    expect_header(req, tls_record, TRELLIS_MALFORMED, "TLS first byte");
    expect_header(req, bad_magic1, TRELLIS_MALFORMED, "magic byte 1");
    expect_header(req, bad_version, TRELLIS_MALFORMED, "version 2");
    expect_header(req, kind_zero, TRELLIS_MALFORMED, "kind 0");
    expect_header(req, kind_five, TRELLIS_MALFORMED, "kind 5");
    expect_header(req, kind_max, TRELLIS_MALFORMED, "kind 255");

    frame_header h = req;
    h.length = (uint32_t)lim.max_body + 1;
    expect_header(h, NULL, TRELLIS_TOO_LARGE, "length over the limit");
    h = req;
    h.length = UINT32_MAX;
    expect_header(h, NULL, TRELLIS_TOO_LARGE, "length 4 GiB");
    h = req;
    h.count = (uint32_t)lim.max_ops + 1;
    h.length = (uint32_t)lim.max_body;
    expect_header(h, NULL, TRELLIS_TOO_LARGE, "count over the limit");
    h = req;
    h.count = 9; /* 9 * 8 > 64 */
    expect_header(h, NULL, TRELLIS_MALFORMED, "count the body cannot hold");
    h = req;
    h.count = UINT32_MAX;
    expect_header(h, NULL, TRELLIS_TOO_LARGE, "count 2^32-1");
    h = req;
    h.status = TRELLIS_OK + 1;
    expect_header(h, NULL, TRELLIS_MALFORMED, "request with a status");
    h = req;
    h.flags = 0x8000;
    expect_header(h, NULL, TRELLIS_MALFORMED, "unknown request flag");

    frame_header rep = sample_header(FRAME_REPLY);
    h = rep;
    h.flags = FRAME_F_ACK_ALL;
    expect_header(h, NULL, TRELLIS_MALFORMED, "reply with flags");
    h = rep;
    h.status = TRELLIS_STATUS_COUNT;
    expect_header(h, NULL, TRELLIS_MALFORMED, "unknown status");
    h = rep;
    h.status = 0xffff;
    expect_header(h, NULL, TRELLIS_MALFORMED, "status 65535");
    h = rep;
    h.status = TRELLIS_OVERLOADED;
    expect_header(h, NULL, TRELLIS_MALFORMED, "error reply with results");
    h.count = 0;
    expect_header(h, NULL, TRELLIS_OK, "error reply");
    h.length = FRAME_MAX_TEXT + 1;
    expect_header(h, NULL, TRELLIS_MALFORMED, "error reply with a long message");

    frame_header hello = sample_header(FRAME_HELLO);
    hello.length = 0;
    expect_header(hello, NULL, TRELLIS_OK, "empty token");
    h = hello;
    h.length = FRAME_MAX_TOKEN + 1;
    expect_header(h, NULL, TRELLIS_TOO_LARGE, "long token");
    h = hello;
    h.count = 1;
    h.length = 8;
    expect_header(h, NULL, TRELLIS_MALFORMED, "hello with a count");
    h = hello;
    h.flags = 1;
    expect_header(h, NULL, TRELLIS_MALFORMED, "hello with flags");
    h = hello;
    h.status = 1;
    expect_header(h, NULL, TRELLIS_MALFORMED, "hello with a status");

    frame_header hr = sample_header(FRAME_HELLO_REPLY);
    h = hr;
    h.length = FRAME_HELLO_INFO - 1;
    expect_header(h, NULL, TRELLIS_MALFORMED, "short hello reply");
    h = hr;
    h.status = TRELLIS_UNAUTHORIZED;
    h.length = 10;
    expect_header(h, NULL, TRELLIS_OK, "refused hello");
    h.count = 1;
    expect_header(h, NULL, TRELLIS_MALFORMED, "hello reply with a count");
}

Test(frame, header_still_reports_the_id_of_a_refused_request)
{
    frame_header h = sample_header(FRAME_REQUEST), out;
    h.count = 100000;
    h.length = 900000;
    uint8_t b[FRAME_HEADER_SIZE];
    frame_header_encode(&h, b);
    cr_assert_eq(frame_header_decode(b, &lim, &out), TRELLIS_TOO_LARGE);
    cr_assert_eq(out.id, h.id, "the refusal can name the request");
    cr_assert_eq(out.kind, FRAME_REQUEST);
}

/* A request body of n operations; keys and values of assorted sizes. */
static uint8_t *build_request(size_t n, size_t *len, frame_header *h)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += frame_op_size(1 + i % 7, (i * 37) % 300);
    uint8_t *body = malloc(total ? total : 1), *p = body;
    for (size_t i = 0; i < n; i++) {
        size_t kl = 1 + i % 7, vl = (i * 37) % 300;
        p = frame_put_op_header(p, (uint8_t)(i % FRAME_OP_COUNT), (uint8_t)(i % 9), kl, vl);
        for (size_t k = 0; k < kl; k++)
            *p++ = (uint8_t)('a' + (i + k) % 26);
        for (size_t v = 0; v < vl; v++)
            *p++ = (uint8_t)(i ^ v);
    }
    *len = total;
    memset(h, 0, sizeof(*h));
    h->kind = FRAME_REQUEST;
    h->length = (uint32_t)total;
    h->count = (uint32_t)n;
    return body;
}

Test(frame, request_round_trip)
{
    size_t len;
    frame_header h;
    uint8_t *body = build_request(50, &len, &h);
    cr_assert_eq(frame_check_request(&h, body), TRELLIS_OK);
    frame_iter it;
    frame_iter_init(&it, &h, body);
    frame_op op;
    for (size_t i = 0; i < 50; i++) {
        cr_assert_eq(frame_next_op(&it, &op), 1);
        size_t kl = 1 + i % 7, vl = (i * 37) % 300;
        cr_assert_eq(op.op, i % FRAME_OP_COUNT);
        cr_assert_eq(op.type, i % 9);
        cr_assert_eq(op.klen, kl);
        cr_assert_eq(op.vlen, vl);
        cr_assert_eq(op.key[0], 'a' + i % 26);
        cr_assert(op.key >= body && op.value + op.vlen <= body + len, "points into the body");
        for (size_t v = 0; v < vl; v++)
            cr_assert_eq(op.value[v], (uint8_t)(i ^ v));
    }
    cr_assert_eq(frame_next_op(&it, &op), 0);
    free(body);
}

Test(frame, request_with_the_largest_key_and_an_empty_one)
{
    size_t kl = FRAME_MAX_KEY;
    size_t len = frame_op_size(kl, 3) + frame_op_size(0, 0);
    uint8_t *body = malloc(len), *p = body;
    p = frame_put_op_header(p, FRAME_OP_PUT, 1, kl, 3);
    memset(p, 'k', kl);
    p += kl;
    memcpy(p, "abc", 3);
    p += 3;
    p = frame_put_op_header(p, FRAME_OP_GET, 0, 0, 0);
    cr_assert_eq((size_t)(p - body), len);
    frame_header h = {.kind = FRAME_REQUEST, .length = (uint32_t)len, .count = 2};
    cr_assert_eq(frame_check_request(&h, body), TRELLIS_OK);
    frame_iter it;
    frame_op op;
    frame_iter_init(&it, &h, body);
    cr_assert_eq(frame_next_op(&it, &op), 1);
    cr_assert_eq(op.klen, FRAME_MAX_KEY);
    cr_assert_eq(op.vlen, 3);
    cr_assert_eq(frame_next_op(&it, &op), 1);
    cr_assert_eq(op.klen, 0, "an empty key decodes; the server refuses it per operation");
    free(body);
}

Test(frame, request_truncated_at_every_byte_is_malformed)
{
    size_t len;
    frame_header h;
    uint8_t *body = build_request(6, &len, &h);
    for (size_t cut = 0; cut < len; cut++) {
        frame_header t = h;
        t.length = (uint32_t)cut;
        /* A copy of exactly cut bytes, so ASan sees any read beyond it. */
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, body, cut);
        cr_assert_eq(frame_check_request(&t, copy), TRELLIS_MALFORMED, "cut at %zu of %zu", cut,
                     len);
        free(copy);
    }
    free(body);
}

Test(frame, request_with_bytes_left_over_or_a_wrong_count_is_malformed)
{
    size_t len;
    frame_header h;
    uint8_t *body = build_request(4, &len, &h);
    uint8_t *more = malloc(len + 1);
    memcpy(more, body, len);
    more[len] = 0;
    frame_header t = h;
    t.length = (uint32_t)len + 1;
    cr_assert_eq(frame_check_request(&t, more), TRELLIS_MALFORMED, "a trailing byte");
    t = h;
    t.count = 3;
    cr_assert_eq(frame_check_request(&t, body), TRELLIS_MALFORMED, "fewer ops than bytes");
    t = h;
    t.count = 5;
    cr_assert_eq(frame_check_request(&t, body), TRELLIS_MALFORMED, "more ops than bytes");
    t = h;
    t.kind = FRAME_REPLY;
    cr_assert_eq(frame_check_request(&t, body), TRELLIS_MALFORMED, "not a request");
    free(more);
    free(body);
}

Test(frame, lengths_that_would_wrap_are_malformed)
{
    /* One operation whose key and value lengths sum past the body, with
     * values chosen to wrap a careless addition. */
    uint8_t body[FRAME_OP_HEADER + 4];
    const struct {
        size_t klen, vlen;
    } cases[] = {{0xffff, 0xffffffff}, {4, 0xffffffff}, {0, 0xfffffffc}, {5, 0}, {0, 5}, {3, 2}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        frame_put_op_header(body, FRAME_OP_PUT, 1, cases[i].klen, cases[i].vlen);
        memset(body + FRAME_OP_HEADER, 'x', 4);
        frame_header h = {.kind = FRAME_REQUEST, .length = sizeof(body), .count = 1};
        cr_assert_eq(frame_check_request(&h, body), TRELLIS_MALFORMED, "case %zu", i);
    }
}

Test(frame, reply_round_trip_and_rejections)
{
    const char *vals[] = {"", "x", "a longer value of some bytes", ""};
    const uint8_t st[] = {TRELLIS_OK, TRELLIS_NOT_FOUND, TRELLIS_OK, TRELLIS_WRONG_SHARD};
    size_t len = 0;
    for (size_t i = 0; i < 4; i++)
        len += frame_result_size(i == 2 ? 1234567 : 0, strlen(vals[i]));
    uint8_t *body = malloc(len), *p = body;
    for (size_t i = 0; i < 4; i++) {
        p = frame_put_result_header(p, st[i], (uint8_t)i, i == 2 ? 1234567 : 0, strlen(vals[i]));
        memcpy(p, vals[i], strlen(vals[i]));
        p += strlen(vals[i]);
    }
    frame_header h = {.kind = FRAME_REPLY, .length = (uint32_t)len, .count = 4};
    cr_assert_eq(frame_check_reply(&h, body), TRELLIS_OK);
    frame_iter it;
    frame_result r;
    frame_iter_init(&it, &h, body);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(frame_next_result(&it, &r), 1);
        cr_assert_eq(r.status, st[i]);
        cr_assert_eq(r.type, i);
        cr_assert_eq(r.vlen, strlen(vals[i]));
        cr_assert_eq(r.deadline_ms, i == 2 ? 1234567u : 0u, "the deadline travels with its result");
        cr_assert(memcmp(r.value, vals[i], r.vlen) == 0);
    }
    cr_assert_eq(frame_next_result(&it, &r), 0);

    body[0] = TRELLIS_STATUS_COUNT;
    cr_assert_eq(frame_check_reply(&h, body), TRELLIS_MALFORMED, "unknown status");
    body[0] = TRELLIS_OK;
    body[3] = 1;
    cr_assert_eq(frame_check_reply(&h, body), TRELLIS_MALFORMED, "reserved byte set");
    body[3] = 0;
    body[2] = 0x80;
    cr_assert_eq(frame_check_reply(&h, body), TRELLIS_MALFORMED, "unknown result flag");
    body[2] = FRAME_R_DEADLINE; /* a deadline the first result does not have room for */
    cr_assert_eq(frame_check_reply(&h, body), TRELLIS_MALFORMED, "a deadline past the body");
    body[2] = 0;
    for (size_t cut = 0; cut < len; cut++) {
        frame_header t = h;
        t.length = (uint32_t)cut;
        cr_assert_eq(frame_check_reply(&t, body), TRELLIS_MALFORMED, "cut at %zu", cut);
    }
    frame_header e = {.kind = FRAME_REPLY, .status = TRELLIS_TOO_LARGE, .length = 3};
    cr_assert_eq(frame_check_reply(&e, (const uint8_t *)"big"), TRELLIS_OK, "an error reply");
    free(body);
}

Test(frame, delete_argument_round_trip)
{
    uint8_t arg[FRAME_DELETE_ARG];
    frame_put_delete_arg(arg, 0x1122334455667788ull, 42);
    frame_op op = {FRAME_OP_DELETE, 0, (const uint8_t *)"k", 1, arg, sizeof(arg)};
    uint64_t ts, w;
    cr_assert_eq(frame_get_delete_arg(&op, &ts, &w), TRELLIS_OK);
    cr_assert_eq(ts, 0x1122334455667788ull);
    cr_assert_eq(w, 42);
    op.vlen = 15;
    cr_assert_eq(frame_get_delete_arg(&op, &ts, &w), TRELLIS_MALFORMED);
    op.vlen = 16;
    op.op = FRAME_OP_PUT;
    cr_assert_eq(frame_get_delete_arg(&op, &ts, &w), TRELLIS_MALFORMED);
}

Test(frame, expire_argument_round_trip)
{
    uint8_t arg[FRAME_EXPIRE_ARG];
    frame_put_expire_arg(arg, 1800000000000ull, 0xabcdef);
    frame_op op = {FRAME_OP_EXPIRE, 0, (const uint8_t *)"k", 1, arg, sizeof(arg)};
    uint64_t deadline, stamp;
    cr_assert_eq(frame_get_expire_arg(&op, &deadline, &stamp), TRELLIS_OK);
    cr_assert_eq(deadline, 1800000000000ull);
    cr_assert_eq(stamp, 0xabcdef);
    op.vlen = 17;
    cr_assert_eq(frame_get_expire_arg(&op, &deadline, &stamp), TRELLIS_MALFORMED);
    op.vlen = 16;
    op.op = FRAME_OP_DELETE;
    cr_assert_eq(frame_get_expire_arg(&op, &deadline, &stamp), TRELLIS_MALFORMED);
}

Test(frame, hello_reply_round_trip)
{
    frame_hello_info in = {4u << 20, 4096, 1024, 1u << 20, 3, 8}, out;
    uint8_t b[FRAME_HELLO_INFO];
    frame_hello_encode(&in, b);
    cr_assert_eq(frame_hello_decode(b, sizeof(b), &out), TRELLIS_OK);
    cr_assert_eq(out.max_body, in.max_body);
    cr_assert_eq(out.max_ops, in.max_ops);
    cr_assert_eq(out.max_key, in.max_key);
    cr_assert_eq(out.max_value, in.max_value);
    cr_assert_eq(out.shard, 3);
    cr_assert_eq(out.shards, 8);
    cr_assert_eq(frame_hello_decode(b, sizeof(b) - 1, &out), TRELLIS_MALFORMED);
    b[23] = 1;
    cr_assert_eq(frame_hello_decode(b, sizeof(b), &out), TRELLIS_MALFORMED, "reserved set");
}

Test(frame, token_comparison)
{
    cr_assert(frame_token_ok((const uint8_t *)"s3cret", 6, "s3cret"));
    cr_assert_not(frame_token_ok((const uint8_t *)"s3cre", 5, "s3cret"), "prefix");
    cr_assert_not(frame_token_ok((const uint8_t *)"s3cretx", 7, "s3cret"), "longer");
    cr_assert_not(frame_token_ok((const uint8_t *)"S3cret", 6, "s3cret"), "one byte differs");
    cr_assert_not(frame_token_ok(NULL, 0, "s3cret"), "nothing presented");
    cr_assert(frame_token_ok(NULL, 0, NULL), "authentication off");
    cr_assert(frame_token_ok((const uint8_t *)"x", 1, ""), "authentication off");
}

/* Random headers and bodies: decoding never reads outside the buffer (an
 * exact-size copy, so ASan sees a stray read), and whatever checks as a
 * request walks to its end with exactly count operations. */
Test(frame, random_bytes_stay_within_their_buffer)
{
    trand r;
    trand_begin(&r, "frame_random");
    for (int round = 0; round < 20000; round++) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        trand_bytes(&r, hdr, sizeof(hdr));
        if (trand_chance(&r, 80)) {
            hdr[0] = FRAME_MAGIC0;
            hdr[1] = FRAME_MAGIC1;
            hdr[2] = FRAME_VERSION;
            hdr[3] = (uint8_t)(1 + trand_below(&r, 4));
            frame_le32(hdr + 4, (uint32_t)trand_below(&r, 200));
            frame_le32(hdr + 32, (uint32_t)trand_below(&r, 30));
            frame_le16(hdr + 36, (uint16_t)trand_below(&r, 2));
            frame_le16(hdr + 38, (uint16_t)trand_below(&r, 3));
        }
        frame_header h;
        if (frame_header_decode(hdr, &lim, &h) != TRELLIS_OK)
            continue;
        uint8_t *body = malloc(h.length ? h.length : 1);
        trand_bytes(&r, body, h.length);
        if (h.kind == FRAME_REQUEST && frame_check_request(&h, body) == TRELLIS_OK) {
            frame_iter it;
            frame_op op;
            uint32_t n = 0;
            frame_iter_init(&it, &h, body);
            while (frame_next_op(&it, &op) == 1)
                n++;
            cr_assert_eq(n, h.count, "seed %llu", (unsigned long long)r.seed);
            cr_assert_eq(it.p, body + h.length);
        } else if (h.kind == FRAME_REPLY) {
            frame_check_reply(&h, body);
        }
        free(body);
    }
}
