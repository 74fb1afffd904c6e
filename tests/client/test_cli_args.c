/*
 * test_cli_args.c - trellis-cli's argument splitting (redis-cli quoting)
 * and output quoting.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli_args.h"

static cli_argv a;

static void setup(void)
{
    cli_argv_init(&a);
}

static void teardown(void)
{
    cli_argv_free(&a);
}

TestSuite(cli_args, .init = setup, .fini = teardown, .timeout = 10);

static int split(const char *s)
{
    char err[64];
    return cli_split(s, strlen(s), &a, err, sizeof(err));
}

Test(cli_args, plain_words)
{
    cr_assert(eq(int, split("  SET  key\tvalue  "), 0));
    cr_assert(eq(sz, a.n, 3));
    cr_assert(eq(str, a.v[0], "SET"));
    cr_assert(eq(str, a.v[1], "key"));
    cr_assert(eq(str, a.v[2], "value"));
    cr_assert(eq(int, split(""), 0));
    cr_assert(eq(sz, a.n, 0));
    cr_assert(eq(int, split("   \t "), 0));
    cr_assert(eq(sz, a.n, 0));
}

Test(cli_args, double_quotes)
{
    cr_assert(eq(int, split("SET \"a key\" \"tab\\there\\n\\x41\\x00z\\\\\\\"\""), 0));
    cr_assert(eq(sz, a.n, 3));
    cr_assert(eq(str, a.v[1], "a key"));
    const char want[] = "tab\there\nA\0z\\\"";
    cr_assert(eq(sz, a.len[2], sizeof(want) - 1));
    cr_assert(eq(int, memcmp(a.v[2], want, sizeof(want) - 1), 0));
    cr_assert(eq(int, split("GET \"\""), 0));
    cr_assert(eq(sz, a.n, 2));
    cr_assert(eq(sz, a.len[1], 0));
    /* \x with a bad digit is taken literally. */
    cr_assert(eq(int, split("\"\\xZZ\""), 0));
    cr_assert(eq(str, a.v[0], "xZZ"));
}

Test(cli_args, single_quotes)
{
    cr_assert(eq(int, split("SET k 'it\\'s \"raw\" \\n'"), 0));
    cr_assert(eq(sz, a.n, 3));
    cr_assert(eq(str, a.v[2], "it's \"raw\" \\n"));
}

Test(cli_args, errors)
{
    char err[64];
    cr_assert(eq(int, cli_split("SET \"open", 9, &a, err, sizeof(err)), -1));
    cr_assert(eq(str, err, "unbalanced quotes"));
    cr_assert(eq(sz, a.n, 0));
    cr_assert(eq(int, split("SET 'open"), -1));
    cr_assert(eq(int, split("SET \"a\"b"), -1));
    cr_assert(eq(int, split("SET 'a'b"), -1));
}

Test(cli_args, binary_bytes_outside_quotes)
{
    const char line[] = {'S', 'E', 'T', ' ', 'k', ' ', 'a', 0, (char)0xff};
    cr_assert(eq(int, cli_split(line, sizeof(line), &a, NULL, 0), 0));
    cr_assert(eq(sz, a.n, 3));
    cr_assert(eq(sz, a.len[2], 3));
    cr_assert(eq(int, memcmp(a.v[2], "a\0\xff", 3), 0));
}

Test(cli_args, quoting_round_trips)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    cr_assert_not_null(f);
    cli_write_quoted(f, all, sizeof(all));
    fclose(f);
    cr_assert(cli_printable(out, outlen), "quoted text is printable");
    cr_assert(eq(int, cli_split(out, outlen, &a, NULL, 0), 0));
    cr_assert(eq(sz, a.n, 1));
    cr_assert(eq(sz, a.len[0], 256));
    cr_assert(eq(int, memcmp(a.v[0], all, 256), 0));
    free(out);
    cr_assert(cli_printable("abc ~", 5));
    cr_assert(not(cli_printable("a\tb", 3)));
}
