/* SPDX-License-Identifier: MIT */
/* libFuzzer entry point for fuzz_xyz (body in fuzz/targets.c); built by `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
int fuzz_xyz(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_xyz(data, size); }
