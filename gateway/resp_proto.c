/*
 * resp_proto.c - RESP request parsing and reply encoding (see resp_proto.h).
 *
 * The parser follows Redis's processMultibulkBuffer and processInlineBuffer
 * (src/networking.c): an array header announces the argument count, each
 * "$N" header the argument's length, and both are compared with the limits
 * as soon as they are read, so that a peer cannot make the server allocate
 * or wait for more than the limits allow. Unlike Redis it also checks the
 * CRLF after each argument, so that a framing error is reported where it
 * happens instead of being misread as the next command.
 */
#include "gateway/resp_proto.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ---------------------------------------------------------------------------- */

void resp_parser_init(resp_parser *p)
{
    memset(p, 0, sizeof(*p));
}

void resp_parser_free(resp_parser *p)
{
    free(p->off);
    free(p->len);
    free(p->ptr);
    free(p->scratch);
    resp_parser_init(p);
}

static void parser_reset(resp_parser *p)
{
    p->in_array = 0;
    p->argc = 0;
    p->got = 0;
    p->pos = 0;
}

static int proto_error(resp_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int proto_error(resp_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    parser_reset(p);
    return RESP_PROTO_ERROR;
}

/* Makes room for n arguments. */
static int reserve_args(resp_parser *p, size_t n)
{
    if (n <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 16;
    while (cap < n)
        cap *= 2;
    size_t *off = realloc(p->off, cap * sizeof(*off));
    if (!off)
        return -1;
    p->off = off;
    size_t *len = realloc(p->len, cap * sizeof(*len));
    if (!len)
        return -1;
    p->len = len;
    const uint8_t **ptr = realloc(p->ptr, cap * sizeof(*ptr));
    if (!ptr)
        return -1;
    p->ptr = ptr;
    p->cap = cap;
    return 0;
}

/* A decimal integer as Redis's string2ll takes it: an optional '-', no
 * '+', no leading zeros, no spaces. 0 on success. */
static int parse_ll(const uint8_t *s, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (n == 0 || n > 20)
        return -1;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return -1;
    }
    if (s[i] == '0')
        return n == 1 ? (*out = 0, 0) : -1;
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return -1;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return -1;
        *out = (long long)v;
    }
    return 0;
}

/* Reads the header line ("*N\r\n" or "$N\r\n") at buf[at]. Returns 1 with
 * *value and *hlen (line length, CRLF included), 0 when more bytes are
 * needed, -1 when the line is too long or not a number (p->err set). */
static int read_header(resp_parser *p, const uint8_t *buf, size_t len, size_t at, long long *value,
                       size_t *hlen, const char *what)
{
    size_t avail = len - at;
    size_t scan = avail < RESP_MAX_HEADER ? avail : RESP_MAX_HEADER;
    const uint8_t *cr = memchr(buf + at, '\r', scan);
    if (!cr) {
        if (avail >= RESP_MAX_HEADER) {
            proto_error(p, "Protocol error: too big %s count string", what);
            return -1;
        }
        return 0;
    }
    size_t crpos = (size_t)(cr - buf);
    if (crpos + 1 >= len)
        return 0;
    if (buf[crpos + 1] != '\n') {
        proto_error(p, "Protocol error: %s length line does not end with CRLF", what);
        return -1;
    }
    if (parse_ll(buf + at + 1, crpos - at - 1, value) != 0) {
        proto_error(p, "Protocol error: invalid %s length", what);
        return -1;
    }
    *hlen = crpos + 2 - at;
    return 1;
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits an inline line into words as Redis's sdssplitargs does: words
 * separated by white space, "double quotes" with \n \r \t \b \a \\ \" and
 * \xHH escapes, 'single quotes' with \'. A closing quote must be followed
 * by white space or the end. The words are written to p->scratch; their
 * offsets and lengths go to p->off/p->len. Returns the word count, or -1
 * (p->err set) for unbalanced quotes, too many words or no memory. */
static long split_inline(resp_parser *p, const uint8_t *s, size_t n, const resp_limits *lim)
{
    const uint8_t *q = s, *end = s + n;
    uint8_t *w = p->scratch;
    size_t argc = 0;
    for (;;) {
        while (q < end && is_space(*q))
            q++;
        if (q == end)
            break;
        uint8_t *start = w;
        int inq = 0; /* 1: in "double", 2: in 'single' quotes */
        int done = 0;
        while (!done) {
            if (inq == 1) {
                if (q == end)
                    return proto_error(p, "Protocol error: unbalanced quotes in request");
                if (*q == '\\' && end - q >= 4 && q[1] == 'x' && hex_value(q[2]) >= 0 &&
                    hex_value(q[3]) >= 0) {
                    *w++ = (uint8_t)(hex_value(q[2]) * 16 + hex_value(q[3]));
                    q += 3;
                } else if (*q == '\\' && end - q >= 2) {
                    q++;
                    switch (*q) {
                    case 'n':
                        *w++ = '\n';
                        break;
                    case 'r':
                        *w++ = '\r';
                        break;
                    case 't':
                        *w++ = '\t';
                        break;
                    case 'b':
                        *w++ = '\b';
                        break;
                    case 'a':
                        *w++ = '\a';
                        break;
                    default:
                        *w++ = *q;
                        break;
                    }
                } else if (*q == '"') {
                    if (q + 1 < end && !is_space(q[1]))
                        return proto_error(p, "Protocol error: unbalanced quotes in request");
                    done = 1;
                } else {
                    *w++ = *q;
                }
            } else if (inq == 2) {
                if (q == end)
                    return proto_error(p, "Protocol error: unbalanced quotes in request");
                if (*q == '\\' && end - q >= 2 && q[1] == '\'') {
                    q++;
                    *w++ = '\'';
                } else if (*q == '\'') {
                    if (q + 1 < end && !is_space(q[1]))
                        return proto_error(p, "Protocol error: unbalanced quotes in request");
                    done = 1;
                } else {
                    *w++ = *q;
                }
            } else {
                if (q == end)
                    break;
                if (is_space(*q))
                    done = 1;
                else if (*q == '"')
                    inq = 1;
                else if (*q == '\'')
                    inq = 2;
                else
                    *w++ = *q;
            }
            if (q < end)
                q++;
        }
        if (argc + 1 > lim->max_args)
            return proto_error(p, "Protocol error: too many arguments (at most %zu)",
                               lim->max_args);
        if (reserve_args(p, argc + 1) != 0) {
            snprintf(p->err, sizeof(p->err), "out of memory");
            return -2;
        }
        p->off[argc] = (size_t)(start - p->scratch);
        p->len[argc] = (size_t)(w - start);
        argc++;
    }
    return (long)argc;
}

/* One inline line at buf[0, len). */
static int parse_inline(resp_parser *p, const uint8_t *buf, size_t len, const resp_limits *lim,
                        resp_command *cmd, size_t *used, size_t *need)
{
    size_t max = lim->max_command < RESP_MAX_INLINE ? lim->max_command : RESP_MAX_INLINE;
    size_t scan = len < max + 2 ? len : max + 2;
    const uint8_t *nl = memchr(buf, '\n', scan);
    if (!nl) {
        if (len >= max + 2)
            return proto_error(p, "Protocol error: too big inline request");
        *need = len + 1;
        return RESP_NEED_MORE;
    }
    size_t n = (size_t)(nl - buf);
    *used = n + 1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n > max)
        return proto_error(p, "Protocol error: too big inline request");
    if (!p->scratch && !(p->scratch = malloc(RESP_MAX_INLINE))) {
        *used = 0;
        return RESP_NO_MEMORY;
    }
    long argc = split_inline(p, buf, n, lim);
    if (argc == -2) {
        *used = 0;
        return RESP_NO_MEMORY;
    }
    if (argc < 0)
        return RESP_PROTO_ERROR;
    for (long i = 0; i < argc; i++)
        p->ptr[i] = p->scratch + p->off[i];
    cmd->argc = (size_t)argc;
    cmd->argv = p->ptr;
    cmd->argl = p->len;
    return argc > 0 ? RESP_COMMAND : RESP_NEED_MORE;
}

/* Continues the array command at buf[0, len). */
static int parse_array(resp_parser *p, const uint8_t *buf, size_t len, const resp_limits *lim,
                       resp_command *cmd, size_t *used, size_t *need)
{
    while (p->got < p->argc) {
        if (p->pos >= len) {
            *need = p->pos + 1;
            return RESP_NEED_MORE;
        }
        if (buf[p->pos] != '$') {
            uint8_t c = buf[p->pos];
            return proto_error(p, "Protocol error: expected '$', got '%c'",
                               c >= 0x20 && c < 0x7f ? c : '?');
        }
        long long blen;
        size_t hlen;
        int rc = read_header(p, buf, len, p->pos, &blen, &hlen, "bulk");
        if (rc < 0)
            return RESP_PROTO_ERROR;
        if (rc == 0) {
            *need = len + 1;
            return RESP_NEED_MORE;
        }
        if (blen < 0 || (unsigned long long)blen > lim->max_bulk)
            return proto_error(p, "Protocol error: invalid bulk length %lld (limit %zu bytes)",
                               blen, lim->max_bulk);
        size_t end = p->pos + hlen + (size_t)blen + 2;
        if (end > lim->max_command)
            return proto_error(p, "Protocol error: command longer than %zu bytes",
                               lim->max_command);
        if (len < end) {
            *need = end;
            return RESP_NEED_MORE;
        }
        if (buf[end - 2] != '\r' || buf[end - 1] != '\n')
            return proto_error(p, "Protocol error: bulk data does not end with CRLF");
        p->off[p->got] = p->pos + hlen;
        p->len[p->got] = (size_t)blen;
        p->got++;
        p->pos = end;
    }
    for (size_t i = 0; i < p->argc; i++)
        p->ptr[i] = buf + p->off[i];
    cmd->argc = p->argc;
    cmd->argv = p->ptr;
    cmd->argl = p->len;
    *used = p->pos;
    parser_reset(p);
    return RESP_COMMAND;
}

int resp_parse(resp_parser *p, const uint8_t *buf, size_t len, const resp_limits *lim,
               resp_command *cmd, size_t *used, size_t *need)
{
    size_t skipped = 0, dummy_need;
    *used = 0;
    if (!need)
        need = &dummy_need;
    *need = 0;
    cmd->argc = 0;
    cmd->argv = NULL;
    cmd->argl = NULL;
    for (;;) {
        const uint8_t *b = buf + skipped;
        size_t n = len - skipped;
        size_t u = 0;
        int rc;
        if (p->in_array) {
            rc = parse_array(p, b, n, lim, cmd, &u, need);
        } else if (n == 0) {
            *need = 1;
            rc = RESP_NEED_MORE;
        } else if (b[0] == '*') {
            long long argc;
            size_t hlen;
            int h = read_header(p, b, n, 0, &argc, &hlen, "multibulk");
            if (h < 0)
                return RESP_PROTO_ERROR;
            if (h == 0) {
                *need = n + 1;
                rc = RESP_NEED_MORE;
            } else if (argc <= 0) {
                /* "*0" and "*-1": nothing to run, as in Redis. */
                skipped += hlen;
                continue;
            } else if ((unsigned long long)argc > lim->max_args) {
                return proto_error(p, "Protocol error: invalid multibulk length %lld (limit %zu)",
                                   argc, lim->max_args);
            } else if (hlen > lim->max_command) {
                return proto_error(p, "Protocol error: command longer than %zu bytes",
                                   lim->max_command);
            } else if (reserve_args(p, (size_t)argc) != 0) {
                *used = skipped;
                return RESP_NO_MEMORY;
            } else {
                p->in_array = 1;
                p->argc = (size_t)argc;
                p->got = 0;
                p->pos = hlen;
                rc = parse_array(p, b, n, lim, cmd, &u, need);
            }
        } else {
            rc = parse_inline(p, b, n, lim, cmd, &u, need);
            if (rc == RESP_NEED_MORE && u > 0) {
                /* An empty line: skip it. */
                skipped += u;
                continue;
            }
        }
        if (rc == RESP_COMMAND) {
            *used = skipped + u;
        } else if (rc == RESP_NEED_MORE || rc == RESP_NO_MEMORY) {
            *used = skipped; /* *need counts from there */
        }
        return rc;
    }
}

/* ---- replies ------------------------------------------------------------------------------ */

void resp_buf_free(resp_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void resp_buf_put(resp_buf *b, const void *p, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_line(resp_buf *b, char type, const char *text, size_t n)
{
    resp_buf_put(b, &type, 1);
    resp_buf_put(b, text, n);
    resp_buf_put(b, "\r\n", 2);
}

static void put_count(resp_buf *b, char type, long long n)
{
    char num[24];
    int k = snprintf(num, sizeof(num), "%lld", n);
    put_line(b, type, num, (size_t)k);
}

void resp_add_simple(resp_buf *b, const char *text)
{
    put_line(b, '+', text, strlen(text));
}

void resp_add_error(resp_buf *b, const char *text)
{
    /* Written whole, CR and LF turned into blanks (they would end the
     * line early). */
    resp_buf_put(b, "-", 1);
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\r\n");
        resp_buf_put(b, p, n);
        p += n;
        if (*p) {
            resp_buf_put(b, " ", 1);
            p++;
        }
    }
    resp_buf_put(b, "\r\n", 2);
}

void resp_add_errorf(resp_buf *b, const char *fmt, ...)
{
    char text[RESP_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0) {
        resp_add_error(b, "ERR trellis: internal error");
        return;
    }
    if ((size_t)n < sizeof(text)) {
        resp_add_error(b, text);
        return;
    }
    /* Longer than the usual: formatted again at its size, never cut. */
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    resp_add_error(b, big);
    free(big);
}

void resp_add_int(resp_buf *b, int64_t v)
{
    char num[24];
    int k = snprintf(num, sizeof(num), "%" PRId64, v);
    put_line(b, ':', num, (size_t)k);
}

void resp_add_bulk(resp_buf *b, const void *p, size_t n)
{
    put_count(b, '$', (long long)n);
    resp_buf_put(b, p, n);
    resp_buf_put(b, "\r\n", 2);
}

void resp_add_cstr(resp_buf *b, const char *s)
{
    resp_add_bulk(b, s, strlen(s));
}

void resp_add_nil(resp_buf *b, int proto)
{
    if (proto >= 3)
        resp_buf_put(b, "_\r\n", 3);
    else
        resp_buf_put(b, "$-1\r\n", 5);
}

void resp_add_array(resp_buf *b, size_t n)
{
    put_count(b, '*', (long long)n);
}

void resp_add_set(resp_buf *b, size_t n, int proto)
{
    put_count(b, proto >= 3 ? '~' : '*', (long long)n);
}

void resp_add_map(resp_buf *b, size_t n, int proto)
{
    if (proto >= 3)
        put_count(b, '%', (long long)n);
    else
        put_count(b, '*', (long long)(2 * n));
}

char *resp_printable(const uint8_t *p, size_t n, size_t max, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && i < max && k + 1 < cap; i++)
        out[k++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    if (cap)
        out[k < cap ? k : cap - 1] = '\0';
    return out;
}
