#include "CFuzzer.h"

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *, size_t));

int concord_fuzzer_run(int argc, char **argv, int (*callback)(const uint8_t *, size_t)) {
  return LLVMFuzzerRunDriver(&argc, &argv, callback);
}
