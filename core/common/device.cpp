#include "whisker/common/device.h"

#include "whisker/common/parallel.h"

#include <torch/cuda.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>

#include <fmt/format.h>

#include <mutex>

#ifdef WHISKER_HAVE_CUDA_RUNTIME
#include <cuda_runtime_api.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace whisker {

std::string ComputeDevice::describe() const {
    if (cuda) return fmt::format("GPU: {} ({:.0f} GiB)", name, memory_gib);
    return fmt::format("CPU: {} threads", cpu_threads);
}

bool cpu_has_bf16() {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    const bool amx_bf16 = (d >> 22) & 1u;
    __cpuid_count(7, 1, a, b, c, d);
    const bool avx512_bf16 = (a >> 5) & 1u;
    // The OS must save the AVX-512 registers (XCR0 bits 5-7 with SSE/AVX 1-2) for them to be usable.
    __cpuid(1, a, b, c, d);
    bool zmm_enabled = false;
    if ((c >> 27) & 1u) {   // OSXSAVE
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        zmm_enabled = (lo & 0xe6u) == 0xe6u;
    }
    return (avx512_bf16 && zmm_enabled) || amx_bf16;
#else
    return false;
#endif
}

ComputeDevice detect_compute_device() {
    static std::once_flag threads_once;
    std::call_once(threads_once, [] {
        // Debian's LibTorch starts with one intra-op thread; use every core.
        if (at::get_num_threads() < default_thread_count()) at::set_num_threads(default_thread_count());
    });
    ComputeDevice d;
    d.cpu_threads = at::get_num_threads();
    d.cpu_bf16 = cpu_has_bf16();
    if (torch::cuda::is_available()) {
        d.cuda = true;
        d.name = "CUDA device 0";
#ifdef WHISKER_HAVE_CUDA_RUNTIME
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
            d.name = prop.name;
            d.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
            d.cuda_capability = prop.major;
        }
#endif
    } else {
        d.name = "CPU";
    }
    return d;
}

}  // namespace whisker
