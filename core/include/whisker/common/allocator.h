#pragma once
// The C library's allocator, tuned for tensors.
//
// glibc serves allocations above a threshold (128 KiB, rising on its own to at most 32 MiB)
// with fresh mmap()s and returns freed heap tops to the system, so every training step's large
// activations are page-faulted in anew: measured on 2 cores, regnet_y_800mf trains at 14.9
// images/s that way and at 18-19 with the settings below (7.5 M page faults -> 0.3 M).
// Whisker's programs call this first thing: large blocks then come from the heap and freed
// memory is kept for the next step (a training process reaches its working set and stays
// there). Skipped when the user set glibc's malloc tunables (GLIBC_TUNABLES) themselves.
namespace whisker {

// True when the settings were applied (glibc, and no user tunables).
bool keep_tensor_memory_for_reuse();

}  // namespace whisker
