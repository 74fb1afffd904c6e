/*
 * resp_proto.h - the Redis serialization protocol without sockets: an
 * incremental request parser that checks every length against limits
 * before it allocates or waits for the bytes, and the reply encoders of
 * RESP2 and RESP3.
 *
 * Requests are what Redis accepts: arrays of bulk strings
 * ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), and inline commands (a line of words,
 * with "double" and 'single' quotes as redis-cli writes them), which telnet
 * users and some tools send. Anything else is a protocol error after which
 * the byte stream cannot be resynchronised: the server answers it and
 * closes the connection, as Redis does.
 *
 * The module is pure (no I/O, no threads, no globals), so that the fuzz
 * harness tests/fuzz/fuzz_resp.c drives it with arbitrary bytes.
 */
#ifndef TRELLIS_RESP_PROTO_H
#define TRELLIS_RESP_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Longest inline command line, and the scratch space its unquoted words
 * take (Redis: PROTO_INLINE_MAX_SIZE). */
#define RESP_MAX_INLINE (64 * 1024)
/* Longest "*N" or "$N" header line, CRLF included. */
#define RESP_MAX_HEADER 32
/* Room for an error text in the buffers that carry one (a parser's
 * message, a refused command's reply); replies themselves are never cut. */
#define RESP_ERR_MAX 512

/* What one command may announce. Every count and length in a request is
 * compared with these before anything is allocated for it or the parser
 * waits for its bytes. */
typedef struct resp_limits {
    size_t max_bulk;    /* longest argument (Redis: proto-max-bulk-len) */
    size_t max_args;    /* most arguments, the command name included */
    size_t max_command; /* most bytes of one command as sent */
} resp_limits;

/* A parsed command: argc arguments, argv[i] of argl[i] bytes. Each argument
 * is followed by a byte the caller must not rely on (not a NUL). */
typedef struct resp_command {
    size_t argc;
    const uint8_t *const *argv;
    const size_t *argl;
} resp_command;

/* Parser state: the progress through the command at the start of the
 * caller's buffer, kept between calls so that a command that arrives in
 * pieces is not parsed again from its start. */
typedef struct resp_parser {
    int in_array;        /* inside a "*N" command */
    size_t argc;         /* its announced argument count */
    size_t got;          /* arguments complete so far */
    size_t pos;          /* offset of the next unparsed byte from the command start */
    size_t *off, *len;   /* offsets and lengths of the complete arguments */
    const uint8_t **ptr; /* argv handed out */
    size_t cap;          /* entries of off/len/ptr */
    uint8_t *scratch;    /* inline words, unquoted (RESP_MAX_INLINE bytes) */
    char err[RESP_ERR_MAX];
} resp_parser;

enum {
    RESP_NEED_MORE = 0,    /* wait for more bytes */
    RESP_COMMAND = 1,      /* a command is ready */
    RESP_PROTO_ERROR = -1, /* the bytes are not RESP or break a limit; p->err says why */
    RESP_NO_MEMORY = -2,   /* an allocation failed; the parser state is intact */
};

/* Initialises p with no allocation. */
void resp_parser_init(resp_parser *p);
/* Releases what p allocated; p may be initialised again. */
void resp_parser_free(resp_parser *p);

/* Parses the command at the start of buf[0, len). The caller keeps the
 * bytes of an incomplete command between calls (it may move them, the
 * offsets are relative to buf) and calls again with more appended.
 * Empty inline lines and empty arrays ("*0") are skipped.
 *
 * RESP_COMMAND: *cmd is the command, valid until the next call or until the
 *   bytes of buf change; *used is how many bytes of buf it took (the next
 *   command starts there).
 * RESP_NEED_MORE: nothing complete yet. *used may be non-zero (skipped
 *   empty lines the caller may drop). *need is how many bytes buf must hold
 *   before a call can make progress; it never exceeds lim->max_command +
 *   RESP_MAX_HEADER for an array, RESP_MAX_INLINE + 2 for an inline line.
 * RESP_PROTO_ERROR: p->err holds the reason (without the "ERR " prefix);
 *   the stream cannot be resynchronised. Limits are checked as soon as a
 *   count or length is read, so a huge announcement fails at once.
 * RESP_NO_MEMORY: out of memory; nothing was consumed. */
int resp_parse(resp_parser *p, const uint8_t *buf, size_t len, const resp_limits *lim,
               resp_command *cmd, size_t *used, size_t *need);

/* ---- replies ----------------------------------------------------------------------- */

/* A growable reply buffer. On an allocation failure `failed` is set and
 * further appends are ignored; the owner then drops the connection. */
typedef struct resp_buf {
    uint8_t *data;
    size_t len, cap;
    int failed;
} resp_buf;

void resp_buf_free(resp_buf *b);
/* Appends raw bytes. */
void resp_buf_put(resp_buf *b, const void *p, size_t n);

/* "+text": text must not contain CR or LF. */
void resp_add_simple(resp_buf *b, const char *text);
/* "-text": CR and LF in text become spaces; the text is never cut. */
void resp_add_error(resp_buf *b, const char *text);
/* Formatted error, whole whatever its length. */
void resp_add_errorf(resp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void resp_add_int(resp_buf *b, int64_t v);
void resp_add_bulk(resp_buf *b, const void *p, size_t n);
void resp_add_cstr(resp_buf *b, const char *s);
/* The nil of the protocol version: "$-1" (RESP2) or "_" (RESP3). */
void resp_add_nil(resp_buf *b, int proto);
/* Aggregates: their elements follow. Sets and maps are arrays in RESP2 (a
 * map of n pairs then has 2n elements). */
void resp_add_array(resp_buf *b, size_t n);
void resp_add_set(resp_buf *b, size_t n, int proto);
void resp_add_map(resp_buf *b, size_t n, int proto);

/* Copies text into out (cap bytes, NUL-terminated) for an error message:
 * at most max bytes, non-printable bytes as '?'. Returns out. */
char *resp_printable(const uint8_t *p, size_t n, size_t max, char *out, size_t cap);

#endif
