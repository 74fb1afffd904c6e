/*
 * test_resp_proto.c - the RESP parser and encoders (gateway/resp_proto.c):
 * arrays and inline commands, commands that arrive in pieces, every limit
 * refused as soon as it is announced, framing errors, and the replies of
 * RESP2 and RESP3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "gateway/resp_proto.h"

static const resp_limits lim = {64, 8, 256};

typedef struct parsed {
    int rc;
    size_t used, need;
    size_t argc;
    char argv[8][80];
    size_t argl[8];
} parsed;

/* Parses buf with a fresh parser. */
static parsed parse_with(resp_parser *p, const char *buf, size_t len, const resp_limits *l)
{
    parsed r;
    memset(&r, 0, sizeof(r));
    resp_command c;
    r.rc = resp_parse(p, (const uint8_t *)buf, len, l, &c, &r.used, &r.need);
    if (r.rc == RESP_COMMAND) {
        r.argc = c.argc;
        for (size_t i = 0; i < c.argc && i < 8; i++) {
            cr_assert(c.argl[i] < sizeof(r.argv[i]));
            memcpy(r.argv[i], c.argv[i], c.argl[i]);
            r.argl[i] = c.argl[i];
        }
    }
    return r;
}

static parsed parse1(const char *buf, size_t len)
{
    resp_parser p;
    resp_parser_init(&p);
    parsed r = parse_with(&p, buf, len, &lim);
    resp_parser_free(&p);
    return r;
}

#define PARSE(lit) parse1((lit), sizeof(lit) - 1)

Test(resp_parse, array_command)
{
    parsed r = PARSE("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nrest");
    cr_assert(eq(int, r.rc, RESP_COMMAND));
    cr_assert(eq(sz, r.argc, 3));
    cr_assert(eq(str, r.argv[0], "SET"));
    cr_assert(eq(str, r.argv[2], "hello"));
    cr_assert(eq(sz, r.used, sizeof("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n") - 1));
}

Test(resp_parse, binary_safe_arguments)
{
    const char in[] = "*2\r\n$3\r\nGET\r\n$4\r\na\0\r\n\r\n";
    parsed r = parse1(in, sizeof(in) - 1);
    cr_assert(eq(int, r.rc, RESP_COMMAND));
    cr_assert(eq(sz, r.argl[1], 4));
    cr_assert(memcmp(r.argv[1], "a\0\r\n", 4) == 0);
    parsed e = PARSE("*1\r\n$0\r\n\r\n");
    cr_assert(eq(int, e.rc, RESP_COMMAND));
    cr_assert(eq(sz, e.argl[0], 0));
}

Test(resp_parse, inline_commands)
{
    parsed r = PARSE("SET  key \"a b\\x41\\n\" 'it\\'s'\r\n");
    cr_assert(eq(int, r.rc, RESP_COMMAND));
    cr_assert(eq(sz, r.argc, 4));
    cr_assert(eq(str, r.argv[1], "key"));
    cr_assert(eq(str, r.argv[2], "a bA\n"));
    cr_assert(eq(str, r.argv[3], "it's"));
    cr_assert(eq(sz, r.used, sizeof("SET  key \"a b\\x41\\n\" 'it\\'s'\r\n") - 1));
    parsed q = PARSE("ECHO 'it\\'s'\n");
    cr_assert(eq(str, q.argv[1], "it's"));
    parsed n = PARSE("PING\n");
    cr_assert(eq(int, n.rc, RESP_COMMAND));
    cr_assert(eq(sz, n.used, 5));
}

Test(resp_parse, empty_lines_and_arrays_are_skipped)
{
    parsed r = PARSE("\r\n\n*0\r\n*-1\r\nPING\r\n");
    cr_assert(eq(int, r.rc, RESP_COMMAND));
    cr_assert(eq(str, r.argv[0], "PING"));
    cr_assert(eq(sz, r.used, sizeof("\r\n\n*0\r\n*-1\r\nPING\r\n") - 1));
    parsed only = PARSE("\r\n*0\r\n");
    cr_assert(eq(int, only.rc, RESP_NEED_MORE));
    cr_assert(eq(sz, only.used, 6), "skipped bytes are consumed");
}

/* Feeding a command one byte at a time gives the same result, and the
 * parser asks for no more than the command needs. */
Test(resp_parse, pieces)
{
    const char in[] = "*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$2\r\nvv\r\n";
    size_t n = sizeof(in) - 1;
    resp_parser p;
    resp_parser_init(&p);
    uint8_t buf[128];
    size_t have = 0, fed = 0;
    parsed r = {0};
    while (fed < n) {
        buf[have++] = (uint8_t)in[fed++];
        resp_command c;
        size_t used, need;
        int rc = resp_parse(&p, buf, have, &lim, &c, &used, &need);
        if (rc == RESP_NEED_MORE) {
            cr_assert(need > have - used || need == 0, "need %zu with %zu bytes", need, have);
            cr_assert(need <= n, "need %zu for a command of %zu bytes", need, n);
            memmove(buf, buf + used, have - used);
            have -= used;
            continue;
        }
        cr_assert(eq(int, rc, RESP_COMMAND));
        r.rc = rc;
        r.argc = c.argc;
        cr_assert(eq(sz, used, n));
        cr_assert(memcmp(c.argv[1], "0123456789", 10) == 0);
    }
    cr_assert(eq(int, r.rc, RESP_COMMAND));
    cr_assert(eq(sz, r.argc, 3));
    resp_parser_free(&p);
}

Test(resp_parse, waits_for_announced_bytes)
{
    parsed r = PARSE("*2\r\n$3\r\nGET\r\n$10\r\nabc");
    cr_assert(eq(int, r.rc, RESP_NEED_MORE));
    cr_assert(eq(sz, r.need, sizeof("*2\r\n$3\r\nGET\r\n$10\r\n") - 1 + 12));
}

Test(resp_parse, limits_before_allocation)
{
    parsed r = PARSE("*9\r\n");
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "more arguments than max_args");
    r = PARSE("*1\r\n$65\r\n");
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "a bulk over max_bulk, before its bytes");
    r = PARSE("*1\r\n$9223372036854775807\r\n");
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR));
    r = PARSE("*1\r\n$99999999999999999999\r\n");
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "an overflowing length");
    r = PARSE("*1\r\n$-1\r\n");
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR));
    r = PARSE("*1\r\n$-0\r\n");
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR));
    /* 5 arguments of 60 bytes: each within max_bulk, together over max_command. */
    char big[512];
    size_t n = (size_t)snprintf(big, sizeof(big), "*5\r\n");
    for (int i = 0; i < 5; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "$60\r\n%060d\r\n", i);
    r = parse1(big, n);
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "over max_command");
}

Test(resp_parse, framing_errors)
{
    const char *bad[] = {
        "*1\r\n:4\r\nPING\r\n",                    /* not a bulk */
        "*1\r\n$4\r\nPINGxx",                      /* no CRLF after the data */
        "*x\r\n",                                  /* not a number */
        "*01\r\n",                                 /* leading zero */
        "*+1\r\n",                                 /* plus sign */
        "*1\r\r\n",                                /* CR without LF */
        "*1111111111111111111111111111111111\r\n", /* a header line too long */
        "SET \"a\r\n",                             /* unbalanced quotes */
        "SET \"a\"b\r\n",                          /* text after a closing quote */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parsed r = parse1(bad[i], strlen(bad[i]));
        cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "input %zu: %s", i, bad[i]);
    }
    resp_parser p;
    resp_parser_init(&p);
    parse_with(&p, "*1\r\n$4\r\nPINGxx", 14, &lim);
    cr_assert(strstr(p.err, "Protocol error") != NULL, "%s", p.err);
    resp_parser_free(&p);
}

Test(resp_parse, inline_line_limit)
{
    resp_limits l = {64, 8, 16};
    resp_parser p;
    resp_parser_init(&p);
    char line[64];
    memset(line, 'a', sizeof(line));
    parsed r = parse_with(&p, line, sizeof(line), &l);
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "an unterminated line over the limit");
    r = parse_with(&p, "a b c d e f g h i j\r\n", 21, &l);
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "a line over max_command");
    r = parse_with(&p, "a b c d e f g h i\n", 18, &lim);
    cr_assert(eq(int, r.rc, RESP_PROTO_ERROR), "more words than max_args");
    resp_parser_free(&p);
}

/* The parser keeps its state between calls and works on in the same
 * buffer after a command. */
Test(resp_parse, consecutive_commands)
{
    const char in[] = "*1\r\n$4\r\nPING\r\nECHO x\r\n*2\r\n$4\r\nECHO\r\n$1\r\ny\r\n";
    size_t n = sizeof(in) - 1, at = 0;
    const char *want[] = {"PING", "x", "y"};
    resp_parser p;
    resp_parser_init(&p);
    for (int i = 0; i < 3; i++) {
        resp_command c;
        size_t used, need;
        int rc = resp_parse(&p, (const uint8_t *)in + at, n - at, &lim, &c, &used, &need);
        cr_assert(eq(int, rc, RESP_COMMAND));
        cr_assert(memcmp(c.argv[c.argc - 1], want[i], strlen(want[i])) == 0);
        at += used;
    }
    cr_assert(eq(sz, at, n));
    resp_parser_free(&p);
}

static char *text(resp_buf *b)
{
    char *s = malloc(b->len + 1);
    cr_assert_not_null(s);
    memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

Test(resp_reply, encoders)
{
    resp_buf b = {0};
    resp_add_simple(&b, "OK");
    resp_add_error(&b, "ERR bad\r\nthing");
    resp_add_int(&b, -42);
    resp_add_bulk(&b, "a\0b", 3);
    resp_add_nil(&b, 2);
    resp_add_nil(&b, 3);
    resp_add_array(&b, 2);
    resp_add_set(&b, 1, 2);
    resp_add_set(&b, 1, 3);
    resp_add_map(&b, 2, 2);
    resp_add_map(&b, 2, 3);
    char *s = text(&b);
    const char want[] =
        "+OK\r\n-ERR bad  thing\r\n:-42\r\n$3\r\na\0b\r\n$-1\r\n_\r\n*2\r\n*1\r\n~1\r\n"
        "*4\r\n%2\r\n";
    cr_assert(eq(sz, b.len, sizeof(want) - 1));
    cr_assert(memcmp(s, want, b.len) == 0, "%s", s);
    free(s);
    resp_buf_free(&b);
}

Test(resp_reply, printable)
{
    char out[8];
    cr_assert(eq(str, resp_printable((const uint8_t *)"a\x01\xffzzzzzzz", 10, 5, out, sizeof(out)),
                 "a??zz"));
}
