/*
 * cli_args.c - argument splitting and quoting for trellis-cli.
 */
#include "client/cli_args.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void cli_argv_init(cli_argv *a)
{
    memset(a, 0, sizeof(*a));
}

static void argv_clear(cli_argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

void cli_argv_free(cli_argv *a)
{
    argv_clear(a);
    free(a->v);
    free(a->len);
    cli_argv_init(a);
}

int cli_argv_push(cli_argv *a, const void *p, size_t n)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        char **v = realloc(a->v, cap * sizeof(*v));
        if (!v)
            return -1;
        a->v = v;
        size_t *len = realloc(a->len, cap * sizeof(*len));
        if (!len)
            return -1;
        a->len = len;
        a->cap = cap;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return -1;
    if (n)
        memcpy(copy, p, n);
    copy[n] = '\0';
    a->v[a->n] = copy;
    a->len[a->n] = n;
    a->n++;
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A growable byte buffer for the argument being read. */
typedef struct abuf {
    char *p;
    size_t n, cap;
} abuf;

static int abuf_put(abuf *b, char c)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = c;
    return 0;
}

static int split_fail(char *err, size_t errlen, const char *msg, abuf *cur, cli_argv *a)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    free(cur->p);
    argv_clear(a);
    return -1;
}

int cli_split(const char *line, size_t len, cli_argv *a, char *err, size_t errlen)
{
    const char *p = line, *end = line + len;
    argv_clear(a);
    abuf cur = {NULL, 0, 0};
    for (;;) {
        while (p < end && is_blank(*p))
            p++;
        if (p >= end)
            break;
        int inq = 0, insq = 0, done = 0;
        cur.n = 0;
        while (!done) {
            int rc = 0;
            if (inq) {
                if (p >= end)
                    return split_fail(err, errlen, "unbalanced quotes", &cur, a);
                if (*p == '\\' && end - p >= 4 && p[1] == 'x' && hex_val(p[2]) >= 0 &&
                    hex_val(p[3]) >= 0) {
                    rc = abuf_put(&cur, (char)(hex_val(p[2]) * 16 + hex_val(p[3])));
                    p += 3;
                } else if (*p == '\\' && end - p >= 2) {
                    p++;
                    char c = *p;
                    switch (c) {
                    case 'n':
                        c = '\n';
                        break;
                    case 'r':
                        c = '\r';
                        break;
                    case 't':
                        c = '\t';
                        break;
                    case 'b':
                        c = '\b';
                        break;
                    case 'a':
                        c = '\a';
                        break;
                    default:
                        break;
                    }
                    rc = abuf_put(&cur, c);
                } else if (*p == '"') {
                    if (p + 1 < end && !is_blank(p[1]))
                        return split_fail(err, errlen, "closing quote must be followed by a space",
                                          &cur, a);
                    done = 1;
                } else {
                    rc = abuf_put(&cur, *p);
                }
            } else if (insq) {
                if (p >= end)
                    return split_fail(err, errlen, "unbalanced quotes", &cur, a);
                if (*p == '\\' && p + 1 < end && p[1] == '\'') {
                    p++;
                    rc = abuf_put(&cur, '\'');
                } else if (*p == '\'') {
                    if (p + 1 < end && !is_blank(p[1]))
                        return split_fail(err, errlen, "closing quote must be followed by a space",
                                          &cur, a);
                    done = 1;
                } else {
                    rc = abuf_put(&cur, *p);
                }
            } else if (p >= end || is_blank(*p)) {
                done = 1;
            } else if (*p == '"') {
                inq = 1;
            } else if (*p == '\'') {
                insq = 1;
            } else {
                rc = abuf_put(&cur, *p);
            }
            if (rc != 0)
                return split_fail(err, errlen, "out of memory", &cur, a);
            if (p < end)
                p++;
        }
        if (a->n >= CLI_MAX_ARGS)
            return split_fail(err, errlen, "too many arguments", &cur, a);
        if (cli_argv_push(a, cur.p, cur.n) != 0)
            return split_fail(err, errlen, "out of memory", &cur, a);
    }
    free(cur.p);
    return 0;
}

int cli_printable(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] > 0x7e)
            return 0;
    return 1;
}

void cli_write_quoted(FILE *f, const void *p, size_t n)
{
    const uint8_t *b = p;
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        switch (c) {
        case '\\':
            fputs("\\\\", f);
            break;
        case '"':
            fputs("\\\"", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\a':
            fputs("\\a", f);
            break;
        case '\b':
            fputs("\\b", f);
            break;
        default:
            if (c >= 0x20 && c <= 0x7e)
                fputc(c, f);
            else
                fprintf(f, "\\x%02x", c);
            break;
        }
    }
    fputc('"', f);
}
