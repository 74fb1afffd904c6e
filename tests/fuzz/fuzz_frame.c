/*
 * fuzz_frame.c - the data plane's frame decoder (base/frame.h) on a byte
 * stream, as a shard or libtrellis reads it: frames one after another,
 * each header checked against the limits before its body is looked at.
 * Whatever decodes must also re-encode to the same bytes: a request's
 * operations and a reply's results, rebuilt from the decoded pointers and
 * lengths, equal the body they came from, so the decoder cannot accept
 * bytes it then misreads.
 */
#include <stdlib.h>
#include <string.h>

#include "base/frame.h"
#include "fuzz.h"

static const frame_limits fz_lim = {1u << 16, 4096};

/* Rebuilds a checked request body from its decoded operations. */
static void fz_request(const frame_header *h, const uint8_t *body)
{
    uint8_t *copy = malloc(h->length ? h->length : 1), *p = copy;
    frame_iter it;
    frame_op op;
    frame_iter_init(&it, h, body);
    while (frame_next_op(&it, &op) == 1) {
        p = frame_put_op_header(p, op.op, op.type, op.klen, op.vlen);
        memcpy(p, op.key, op.klen);
        p += op.klen;
        memcpy(p, op.value, op.vlen);
        p += op.vlen;
        uint64_t a1, a2;
        uint8_t arg[FRAME_DELETE_ARG];
        if (frame_get_delete_arg(&op, &a1, &a2) == TRELLIS_OK) {
            frame_put_delete_arg(arg, a1, a2);
            if (memcmp(arg, op.value, sizeof(arg)) != 0)
                abort();
        }
        if (frame_get_expire_arg(&op, &a1, &a2) == TRELLIS_OK) {
            frame_put_expire_arg(arg, a1, a2);
            if (memcmp(arg, op.value, sizeof(arg)) != 0)
                abort();
        }
    }
    if ((size_t)(p - copy) != h->length || memcmp(copy, body, h->length) != 0)
        abort();
    free(copy);
}

static void fz_reply(const frame_header *h, const uint8_t *body)
{
    if (h->status != TRELLIS_OK)
        return;
    uint8_t *copy = malloc(h->length ? h->length : 1), *p = copy;
    frame_iter it;
    frame_result r;
    frame_iter_init(&it, h, body);
    while (frame_next_result(&it, &r) == 1) {
        p = frame_put_result_header(p, r.status, r.type, r.deadline_ms, r.vlen);
        memcpy(p, r.value, r.vlen);
        p += r.vlen;
    }
    if ((size_t)(p - copy) != h->length || memcmp(copy, body, h->length) != 0)
        abort();
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    while (size >= FRAME_HEADER_SIZE) {
        frame_header h;
        if (frame_header_decode(data, &fz_lim, &h) != TRELLIS_OK)
            return 0; /* a server closes the connection here */
        uint8_t enc[FRAME_HEADER_SIZE];
        frame_header_encode(&h, enc);
        if (memcmp(enc, data, FRAME_HEADER_SIZE) != 0)
            abort();
        data += FRAME_HEADER_SIZE;
        size -= FRAME_HEADER_SIZE;
        if (h.length > size)
            return 0; /* waits for the rest of the body */
        /* The body on its own, so that a read past it is caught. */
        uint8_t *body = malloc(h.length ? h.length : 1);
        memcpy(body, data, h.length);
        frame_hello_info info;
        switch (h.kind) {
        case FRAME_REQUEST:
            if (frame_check_request(&h, body) == TRELLIS_OK)
                fz_request(&h, body);
            break;
        case FRAME_REPLY:
            if (frame_check_reply(&h, body) == TRELLIS_OK)
                fz_reply(&h, body);
            break;
        case FRAME_HELLO_REPLY:
            if (h.status == TRELLIS_OK && frame_hello_decode(body, h.length, &info) == TRELLIS_OK) {
                uint8_t again[FRAME_HELLO_INFO];
                frame_hello_encode(&info, again);
                if (memcmp(again, body, FRAME_HELLO_INFO) != 0)
                    abort();
            }
            break;
        default:
            frame_token_ok(body, h.length, "fuzz-token");
            break;
        }
        free(body);
        data += h.length;
        size -= h.length;
    }
    return 0;
}
