#ifndef CDEVIDFUZZ_H
#define CDEVIDFUZZ_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry point for a program with its own main (compiler-rt FuzzerDriver.cpp). Only defined when the
/// program is linked with -sanitize=fuzzer; devid-fuzz calls it only when built with -DFUZZING.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
