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

namespace whisker {

std::string ComputeDevice::describe() const {
    if (cuda) return fmt::format("GPU: {} ({:.0f} GiB)", name, memory_gib);
    return fmt::format("CPU: {} threads", cpu_threads);
}

ComputeDevice detect_compute_device() {
    static std::once_flag threads_once;
    std::call_once(threads_once, [] {
        // Debian's LibTorch starts with one intra-op thread; use every core.
        if (at::get_num_threads() < default_thread_count()) at::set_num_threads(default_thread_count());
    });
    ComputeDevice d;
    d.cpu_threads = at::get_num_threads();
    if (torch::cuda::is_available()) {
        d.cuda = true;
        d.name = "CUDA device 0";
#ifdef WHISKER_HAVE_CUDA_RUNTIME
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
            d.name = prop.name;
            d.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
        }
#endif
    } else {
        d.name = "CPU";
    }
    return d;
}

}  // namespace whisker
