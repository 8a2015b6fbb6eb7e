#include "whisker/common/allocator.h"

#include "whisker/common/environment.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace whisker {

bool keep_tensor_memory_for_reuse() {
#if defined(__GLIBC__)
    if (environment_variable("GLIBC_TUNABLES").find("glibc.malloc.") != std::string::npos) return false;
    // Blocks up to 1 GiB from the heap (not mmap), and never give the heap's top back: both
    // together, as the trim threshold alone also freezes the mmap threshold at 128 KiB.
    constexpr int kOneGiB = 1 << 30;
    return mallopt(M_MMAP_THRESHOLD, kOneGiB) == 1 && mallopt(M_TRIM_THRESHOLD, kOneGiB) == 1;
#else
    return false;
#endif
}

}  // namespace whisker
