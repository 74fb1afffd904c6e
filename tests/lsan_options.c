/*
 * lsan_options.c - linked into every Criterion test of a sanitized build.
 *
 * Criterion's runner process leaks a block of its own at exit, which
 * LeakSanitizer's exit-time check would report as a failure of the whole
 * test binary although every test passed. The exit-time check is therefore
 * off; tests check their own leaks with __lsan_do_recoverable_leak_check()
 * (TEST_LEAK_CHECK in tests/support), which fails the test that leaked.
 */
const char *__lsan_default_options(void);
__attribute__((weak)) const char *__lsan_default_options(void)
{
    return "leak_check_at_exit=0";
}
