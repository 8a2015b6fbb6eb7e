#include "whisker/train/precision.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

// LibTorch 2.4 replaced the per-device autocast functions with ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define WHISKER_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace whisker::train {

const char* precision_name(Precision p) {
    switch (p) {
        case Precision::Auto: return "auto";
        case Precision::FP32: return "fp32";
        case Precision::BF16: return "bf16";
        case Precision::FP16: return "fp16";
    }
    return "fp32";
}

Precision parse_precision(const std::string& name) {
    for (Precision p : {Precision::Auto, Precision::FP32, Precision::BF16, Precision::FP16})
        if (name == precision_name(p)) return p;
    throw UserError("unknown precision '" + name + "'",
                    "use auto (bf16 where the CPU or GPU computes it, else fp32 on a CPU and fp16 on a GPU), fp32, "
                    "bf16 or fp16 (GPU only)");
}

bool prefer_channels_last(Precision resolved, bool cuda) {
    return resolved == Precision::BF16 || (cuda && resolved == Precision::FP16);
}

Precision resolve_precision(Precision requested, bool cuda) {
    if (requested == Precision::FP16 && !cuda)
        throw UserError("fp16 needs a GPU (a CPU computes float16 slowly and without loss scaling)",
                        "use --precision bf16 or fp32 on the CPU, or auto");
    if (requested != Precision::Auto) return requested;
    const ComputeDevice d = detect_compute_device();
    if (cuda) return d.cuda_capability >= 8 ? Precision::BF16 : Precision::FP16;
    return d.cpu_bf16 ? Precision::BF16 : Precision::FP32;
}

std::string describe_precision(Precision requested, bool cuda) {
    const Precision p = resolve_precision(requested, cuda);
    std::string why;
    if (requested == Precision::Auto) {
        if (cuda) why = p == Precision::BF16 ? "auto: the GPU computes bf16" : "auto: fp16 with loss scaling on this GPU";
        else why = p == Precision::BF16 ? "auto: this CPU has AVX512-BF16/AMX" : "auto: this CPU has no bf16 instructions";
    } else if (p == Precision::BF16 && !cuda && !detect_compute_device().cpu_bf16) {
        why = "slow: this CPU has no bf16 instructions";
    }
    return std::string(precision_name(p)) + (why.empty() ? "" : " (" + why + ")");
}

// Scopes nest: each puts back the state it found.
AutocastScope::AutocastScope(Precision p, bool cuda) : on_(p == Precision::BF16 || p == Precision::FP16), cuda_(cuda) {
    if (!on_) return;
    const at::ScalarType dtype = p == Precision::BF16 ? at::kBFloat16 : at::kHalf;
#ifdef WHISKER_AUTOCAST_BY_DEVICE_TYPE
    const at::DeviceType type = cuda ? at::kCUDA : at::kCPU;
    was_enabled_ = at::autocast::is_autocast_enabled(type);
    was_dtype_ = at::autocast::get_autocast_dtype(type);
    at::autocast::set_autocast_dtype(type, dtype);
    at::autocast::set_autocast_enabled(type, true);
#else
    if (cuda) {
        was_enabled_ = at::autocast::is_enabled();
        was_dtype_ = at::autocast::get_autocast_gpu_dtype();
        at::autocast::set_autocast_gpu_dtype(dtype);
        at::autocast::set_enabled(true);
    } else {
        was_enabled_ = at::autocast::is_cpu_enabled();
        was_dtype_ = at::autocast::get_autocast_cpu_dtype();
        at::autocast::set_autocast_cpu_dtype(dtype);
        at::autocast::set_cpu_enabled(true);
    }
#endif
}

AutocastScope::~AutocastScope() {
    if (!on_) return;
    if (!was_enabled_) at::autocast::clear_cache();   // the cast weights of the outermost scope
#ifdef WHISKER_AUTOCAST_BY_DEVICE_TYPE
    const at::DeviceType type = cuda_ ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_enabled(type, was_enabled_);
    at::autocast::set_autocast_dtype(type, was_dtype_);
#else
    if (cuda_) {
        at::autocast::set_enabled(was_enabled_);
        at::autocast::set_autocast_gpu_dtype(was_dtype_);
    } else {
        at::autocast::set_cpu_enabled(was_enabled_);
        at::autocast::set_autocast_cpu_dtype(was_dtype_);
    }
#endif
}

}  // namespace whisker::train
