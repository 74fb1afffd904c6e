/*
 * fuzz.h - the libFuzzer entry point every harness defines. Harnesses are
 * built twice: with clang's -fsanitize=fuzzer for campaigns
 * (tests/fuzz/run.sh), and with replay.c as main() so that the normal test
 * suite runs the committed corpus and every past crash through them.
 */
#ifndef TRELLIS_FUZZ_H
#define TRELLIS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
