/*
 * test_mon_log.c - the decision log: one JSON object per line, binary keys
 * escaped byte for byte (with a hex copy), UTC timestamps, appending to an
 * existing file, and a log without a file.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor/mon_log.h"
#include "tsupport.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(log, escapes_binary_keys_byte_for_byte)
{
    mbuf b = {0};
    const unsigned char key[] = {'a', '"', '\\', 0x00, '\n', 0x7f, 0xff, 'z'};
    mon_log_begin(&b, 0, 0, "hot_keys", "raise");
    mon_json_bytes(&b, "key", key, sizeof(key));
    cr_assert(strstr(b.data, "\"key\":\"a\\\"\\\\\\u0000\\u000a\\u007f\\u00ffz\""), "%s", b.data);
    cr_assert(strstr(b.data, "\"key_hex\":\"61225c000a7fff7a\""), "%s", b.data);
    mbuf_free(&b);
}

Test(log, lines_have_the_documented_fields)
{
    char path[] = "/tmp/trellis-monlog-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    mon_log *l;
    cr_assert_eq(mon_log_open(path, &l), TRELLIS_OK);
    mbuf b = {0};
    /* 2026-11-23T12:46:25.123Z */
    uint64_t wall_us = 1795437985123456ULL;
    mon_log_begin(&b, wall_us, 4500, "elasticity", "add");
    mon_json_str(&b, "tier", "memory");
    mon_json_str(&b, "node", "m7003");
    mon_json_open(&b, "inputs");
    mon_json_dbl(&b, "busy_avg", 0.91);
    mon_json_u64(&b, "p99_us", 12345);
    mon_json_int(&b, "active", -1);
    mon_json_dbl(&b, "nan", 0.0 / 0.0);
    mon_json_close(&b);
    mon_json_str(&b, "result", "ok");
    cr_assert_eq(mon_log_write(l, &b), TRELLIS_OK);
    mon_log_begin(&b, wall_us, 4600, "tiering", "demote");
    mon_json_str(&b, "result", "failed: \"quoted\"");
    cr_assert_eq(mon_log_write(l, &b), TRELLIS_OK);
    cr_assert_eq(mon_log_lines(l), 2);
    mon_log_close(l);
    mbuf_free(&b);

    char *text = slurp(path);
    const char *want =
        "{\"time\":\"2026-11-23T12:46:25.123Z\",\"t_ms\":4500,\"policy\":\"elasticity\","
        "\"action\":\"add\",\"tier\":\"memory\",\"node\":\"m7003\",\"inputs\":{\"busy_avg\":0.91,"
        "\"p99_us\":12345,\"active\":-1,\"nan\":null},\"result\":\"ok\"}\n"
        "{\"time\":\"2026-11-23T12:46:25.123Z\",\"t_ms\":4600,\"policy\":\"tiering\","
        "\"action\":\"demote\",\"result\":\"failed: \\\"quoted\\\"\"}\n";
    cr_assert_str_eq(text, want);
    free(text);

    /* Reopening appends. */
    cr_assert_eq(mon_log_open(path, &l), TRELLIS_OK);
    mon_log_begin(&b, wall_us, 1, "hot_keys", "lower");
    mon_log_write(l, &b);
    mon_log_close(l);
    mbuf_free(&b);
    text = slurp(path);
    int lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 3);
    free(text);
    unlink(path);
}

Test(log, no_file_still_counts)
{
    mon_log *l;
    cr_assert_eq(mon_log_open("", &l), TRELLIS_OK);
    mbuf b = {0};
    mon_log_begin(&b, 0, 0, "elasticity", "hold");
    cr_assert_eq(mon_log_write(l, &b), TRELLIS_OK);
    cr_assert_eq(mon_log_lines(l), 1);
    mon_log_close(l);
    mbuf_free(&b);
    cr_assert_eq(mon_log_open("/nonexistent-dir/x/decisions.jsonl", &l), TRELLIS_UNAVAILABLE);
}

Test(log, iso_time)
{
    char buf[40];
    mon_iso_time(0, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
    mon_iso_time(1000999, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1970-01-01T00:00:01.000Z");
    mon_iso_time(1999999, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1970-01-01T00:00:01.999Z");
}
