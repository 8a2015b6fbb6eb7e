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

// Whether convolutions should run in channels-last (NHWC) memory at a resolved precision: with
// 16-bit arithmetic — on CUDA (the tensor cores' layout; PyTorch's own advice) and with bf16 on
// the CPU (oneDNN's bf16 kernels). fp32 stays contiguous (NCHW).
// Measured on a 2-core EPYC with AVX512-BF16, bf16, 224 px, batch 16, images/s NHWC vs NCHW
// (`whisker-cli bench train|predict --channels-last | --no-channels-last`, alternating, 2 runs):
// train resnet34 +10 %, resnet50 +6-12 %, densenet121 +14 %, efficientnet_b0 +7 %,
// mobilenet_v3_large +3-19 %, convnext_tiny -1 % (it permutes to NHWC itself); predict +25 %,
// +25 %, +37 %, +17 %, +28-69 %, -1 %. fp32 (idle machine): train resnet34 +2 %, resnet50
// +12 %, efficientnet_b0 +73 %, densenet121 +17 %, mobilenet_v3_large +45 %, convnext_tiny
// +3 %; predict +7 %, +13 %, +18 %, +12 %, +10 %, -4 %. fp32 nevertheless stays contiguous:
// in NHWC oneDNN's sums depend on the batch size, and one process and two (each with half the
// batch) then no longer train alike within 1e-5 (1e-3 measured,
// DistributedTest.TwoProcessesWithSyncBatchNormTrainLikeOne), the promise fp32 keeps.
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
