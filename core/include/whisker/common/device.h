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
    int cuda_capability = 0;     // major compute capability (8 = Ampere: bf16); 0 when unknown
    bool cpu_bf16 = false;       // the CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16)
    std::string describe() const;  // one line for a status bar or a log
};

// True when this CPU has bfloat16 instructions the OS lets programs use: AVX512-BF16
// (CPUID 7.1:EAX bit 5, with the AVX-512 register state enabled in XCR0) or AMX-BF16
// (CPUID 7.0:EDX bit 22). Always false off x86-64.
bool cpu_has_bf16();

// Also sets LibTorch's intra-op thread count to the number of cores on first call.
ComputeDevice detect_compute_device();

}  // namespace whisker
