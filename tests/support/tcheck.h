/*
 * tcheck.h - Criterion helpers shared by the tests.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TCHECK_H
#define TRELLIS_TESTS_SUPPORT_TCHECK_H

#include <criterion/criterion.h>

#include "trand.h"

/* Fails the test if LeakSanitizer finds memory leaked so far (a no-op
 * without sanitizers): LSan reports alone do not fail a Criterion test. */
#define TEST_LEAK_CHECK() cr_assert_eq(tsupport_leak_check(), 0, "memory leaked")

#endif
