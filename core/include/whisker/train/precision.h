#pragma once
// The arithmetic of forward passes (training, validation, prediction, precompute, benchmarks).
//
// Auto: bfloat16 on CPUs with bf16 instructions (ComputeDevice::cpu_bf16) and on GPUs of
// compute capability 8 and up, float16 with dynamic loss scaling on older GPUs, else float32.
// Mixed precision is autocast: weights, optimiser state, BatchNorm statistics and the loss stay
// float32, and checkpoints are the same whatever the precision.

#include <c10/core/ScalarType.h>

#include <optional>
#include <string>

namespace whisker::train {

enum class Precision { Auto, FP32, BF16, FP16 };
const char* precision_name(Precision p);                       // "auto", "fp32", "bf16", "fp16"
// UserError naming the choices for an unknown name.
Precision parse_precision(const std::string& name);
// What `requested` means on this device (never Auto); UserError for fp16 on a CPU.
Precision resolve_precision(Precision requested, bool cuda);
// What it resolved to and why, for messages: "bf16 (auto: this CPU has AVX512-BF16/AMX)".
std::string describe_precision(Precision requested, bool cuda);

// Whether convolutions should run in channels-last (NHWC) memory at a resolved precision:
// on CUDA with 16-bit arithmetic (the tensor cores' layout; PyTorch's own advice), nowhere else.
// Not on the CPU yet: on a 2-core EPYC with AVX512-BF16, bf16, 224 px, batch 16, resnet34/50
// ran 6-12 % faster training steps and ~25 % faster predictions in NHWC, but PyTorch's own
// resnet34 step was slower there, and depthwise-convolution networks are unmeasured — not a
// rule to apply unasked (`whisker-cli bench train|predict --channels-last` measures a machine).
bool prefer_channels_last(Precision resolved, bool cuda);

// Autocast at `precision` (already resolved) for the forward passes in its scope; nothing for
// fp32. Outputs may be 16-bit: convert them with .to(at::kFloat) before losses and softmax.
class AutocastScope {
public:
    AutocastScope(Precision precision, bool cuda);
    ~AutocastScope();
    AutocastScope(const AutocastScope&) = delete;
    AutocastScope& operator=(const AutocastScope&) = delete;

private:
    bool on_, cuda_;
    bool was_enabled_ = false;
    c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace whisker::train
