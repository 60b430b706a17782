// The entry point of libFuzzer (LLVM 12 and later) for programs that have their own main.
#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer on `callback` with the command-line flags in `argv` and returns its exit
/// code; libFuzzer's own `main` does the same.
int concord_fuzzer_run(int argc, char **argv, int (*callback)(const uint8_t *, size_t));
