/*
 * fuzz_resp.c - the Redis protocol parser (gateway/resp_proto.c) on
 * arbitrary bytes, fed as the gateway feeds it: in pieces of random sizes
 * into a buffer that keeps the unparsed rest. It must never crash or read
 * out of bounds, never ask for more bytes than the limits allow, and find
 * the same commands (and the same protocol error) whatever the pieces:
 * the input is parsed once whole and once in pieces, and the two runs are
 * compared.
 *
 * The first input byte picks the limits (those of an authenticated client
 * or of one before AUTH) and seeds the piece sizes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gateway/resp_proto.h"

typedef struct run {
    uint64_t digest; /* of every command's words, in order */
    size_t commands;
    int error; /* ended with a protocol error */
} run;

static uint64_t mix(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ n;
}

/* Checks a parsed command and folds it into the digest; every byte of
 * every argument is read, so that an argument pointing outside its buffer
 * is caught by the sanitizer. */
static void take(run *r, const resp_command *c, resp_buf *out)
{
    if (c->argc == 0)
        abort();
    for (size_t i = 0; i < c->argc; i++) {
        r->digest = mix(r->digest, c->argv[i], c->argl[i]);
        resp_add_bulk(out, c->argv[i], c->argl[i]);
    }
    r->digest = mix(r->digest, (const uint8_t *)"|", 1);
    r->commands++;
    out->len = 0;
}

static void check_need(size_t need, size_t have, const resp_limits *lim)
{
    size_t most = lim->max_command + RESP_MAX_HEADER;
    if (RESP_MAX_INLINE + 2 > most)
        most = RESP_MAX_INLINE + 2;
    if (need > most || need <= have)
        abort(); /* asks for bytes it has, or beyond the limits */
}

/* pieces == 0: the whole input at once. */
static run parse_all(const uint8_t *data, size_t size, const resp_limits *lim, uint64_t seed,
                     int pieces)
{
    run r = {1469598103934665603ull, 0, 0};
    resp_parser p;
    resp_parser_init(&p);
    resp_buf out = {0};
    uint8_t *buf = malloc(size ? size : 1);
    size_t have = 0, fed = 0;
    if (!buf)
        abort();
    while (fed < size || have > 0) {
        if (fed < size) {
            size_t n = size - fed;
            if (pieces) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t k = (size_t)(seed >> 33) % 64 + 1;
                if (k < n)
                    n = k;
            }
            memcpy(buf + have, data + fed, n);
            have += n;
            fed += n;
        }
        /* Parse what the buffer holds, as the server does after a receive. */
        size_t at = 0;
        int more = 1;
        while (more) {
            resp_command c;
            size_t used = 0, need = 0;
            int rc = resp_parse(&p, buf + at, have - at, lim, &c, &used, &need);
            if (used > have - at)
                abort();
            at += used;
            switch (rc) {
            case RESP_COMMAND:
                take(&r, &c, &out);
                break;
            case RESP_NEED_MORE:
                check_need(need, have - at, lim);
                more = 0;
                break;
            case RESP_PROTO_ERROR:
                if (p.err[0] == '\0')
                    abort();
                r.error = 1;
                goto done;
            default: /* out of memory: not expected here */
                abort();
            }
        }
        memmove(buf, buf + at, have - at);
        have -= at;
        if (fed == size)
            break; /* what is left is an incomplete command */
    }
done:
    free(buf);
    resp_buf_free(&out);
    resp_parser_free(&p);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The gateway's limits, scaled down so that the fuzzer reaches them. */
    static const resp_limits limits[2] = {
        {4096, 64, 16384}, /* authenticated */
        {64, 8, 128},      /* before AUTH */
    };
    const resp_limits *lim = &limits[data[0] & 1];
    uint64_t seed = data[0];
    data++;
    size--;
    run whole = parse_all(data, size, lim, seed, 0);
    run split = parse_all(data, size, lim, seed, 1);
    if (whole.digest != split.digest || whole.commands != split.commands ||
        whole.error != split.error)
        abort();
    return 0;
}
