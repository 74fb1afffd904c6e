/*
 * tcriterion.c - linked into every Criterion test (trellis_add_test, with
 * -Wl,--wrap=criterion_internal_test_main): when a test body returns, the
 * checks of tcheck.h run inside the test itself.
 *
 * Criterion 2.4 settles a test's verdict when its body returns: an
 * assertion that fails in .fini, or a LeakSanitizer report when the test
 * process exits, is printed but the test still passes. So the checks run
 * right after the body, while an assertion still counts: every watched
 * cluster is stopped cleanly and its logs scanned for sanitizer reports
 * (tcheck_end), then LeakSanitizer checks this process. Memory the test
 * still reaches (a static cluster or ring its .fini frees) is not a leak;
 * memory nothing points to any more is.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#include "tcheck.h"

void __real_criterion_internal_test_main(void (*fn)(void));
void __wrap_criterion_internal_test_main(void (*fn)(void));

static void (*test_body)(void);

/* 1 for a parameterized test, whose body takes its parameter. The worker's
 * copy of the test's description is not aligned for its types: read it
 * bytewise. */
static int parameterized(void)
{
    struct criterion_test_extra_data *data;
    struct criterion_test_params (*param)(void);
    memcpy(&data, (const char *)criterion_current_test + offsetof(struct criterion_test, data),
           sizeof(data));
    memcpy(&param, (const char *)data + offsetof(struct criterion_test_extra_data, param_),
           sizeof(param));
    return param != NULL;
}

static void checked_body(void *param)
{
    if (parameterized())
        ((void (*)(void *))test_body)(param);
    else
        test_body();
    int problems = tcheck_end();
    cr_assert_eq(problems, 0,
                 "%d problem(s) when the test's processes stopped (sanitizer reports or a process "
                 "that did not stop; see above)",
                 problems);
    cr_assert_eq(tcheck_leaks(), 0, "the test leaked memory (LeakSanitizer's report above)");
}

void __wrap_criterion_internal_test_main(void (*fn)(void))
{
    test_body = fn;
    __real_criterion_internal_test_main((void (*)(void))checked_body);
}
