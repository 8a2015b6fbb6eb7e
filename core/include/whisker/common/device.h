#pragma once
// The compute device Whisker will use, chosen at run time: the first CUDA GPU when LibTorch
// was built with CUDA and a GPU is present, else the CPU with all its cores.

#include <string>

namespace whisker {

struct ComputeDevice {
    bool cuda = false;
    std::string name;            // "NVIDIA H100 80GB HBM3" or "CPU"
    double memory_gib = 0.0;     // GPU memory; 0 for the CPU
    int cpu_threads = 1;         // LibTorch intra-op threads
    std::string describe() const;  // one line for a status bar or a log
};

// Also sets LibTorch's intra-op thread count to the number of cores on first call.
ComputeDevice detect_compute_device();

}  // namespace whisker
