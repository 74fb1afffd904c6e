/*
 * cli_args.h - the command-line client's text handling: splitting a typed
 * or piped line into arguments with redis-cli's quoting rules, and escaping
 * bytes for display at the interactive prompt.
 */
#ifndef TRELLIS_CLI_ARGS_H
#define TRELLIS_CLI_ARGS_H

#include <stddef.h>
#include <stdio.h>

#define CLI_MAX_ARGS 65536 /* arguments on one line */

/* Arguments of one line. Each v[i] is malloc'd, holds len[i] bytes and is
 * followed by a NUL byte (so text arguments are C strings; binary ones may
 * contain NULs). */
typedef struct cli_argv {
    size_t n, cap;
    char **v;
    size_t *len;
} cli_argv;

void cli_argv_init(cli_argv *a);
void cli_argv_free(cli_argv *a);
/* Appends a copy of [p, p + n). 0, or -1 when out of memory. */
int cli_argv_push(cli_argv *a, const void *p, size_t n);

/* Splits [line, line + len) into a (which is emptied first) the way
 * redis-cli does: arguments separated by blanks; "double quotes" with the
 * escapes \n \r \t \b \a \\ \" and \xHH; 'single quotes' with \' only; a
 * closing quote must be followed by a blank or the end of the line. Bytes
 * outside quotes are taken as they are (NUL included). Returns 0, or -1
 * with a message in err for unbalanced quotes, or too many arguments. */
int cli_split(const char *line, size_t len, cli_argv *a, char *err, size_t errlen);

/* 1 if every byte is printable ASCII (space through '~'). */
int cli_printable(const void *p, size_t n);

/* Writes [p, p + n) as a double-quoted string with the escapes cli_split
 * understands, so that it can be pasted back into the prompt. */
void cli_write_quoted(FILE *f, const void *p, size_t n);

#endif
