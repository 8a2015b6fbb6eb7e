#pragma once
// Training options beyond fastai 0.7: MixUp and CutMix on the training batch, and an
// exponential moving average (EMA) of the weights. The Learner applies them during fit()
// (FitOptions::mixup_alpha, cutmix_alpha, mix_switch_prob, mix_prob, ema_decay); the pieces
// are here as plain functions so that they can be checked on their own. Exact semantics:
// docs/training.md, "MixUp and CutMix" and "Weight EMA".

#include "whisker/common/random.h"
#include "whisker/models/checkpoint.h"
#include "whisker/train/learner.h"

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace whisker::train {

// ---- MixUp / CutMix (timm's Mixup in "batch" mode: one λ and one pairing per batch) ----

struct MixOptions {
    double mixup_alpha = 0;    // MixUp: λ ~ Beta(α, α); 0 = off
    double cutmix_alpha = 0;   // CutMix: λ ~ Beta(α, α), then a box of area ≈ (1−λ)·H·W; 0 = off
    double switch_prob = 0.5;  // both on: the probability that a batch uses CutMix (timm's mixup_switch_prob)
    double prob = 1.0;         // the probability that a batch is mixed at all (timm's mix_prob)
    bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};

MixOptions mix_options(const FitOptions& o);

// Throws UserError, naming the CLI flag, for an option out of range: α < 0, a probability
// outside [0, 1], an EMA decay outside [0, 1), an accumulation below 0 (0: the learner's).
void check_training_options(const FitOptions& o);

// "MixUp (α 0.2), weight EMA (decay 0.999), gradient accumulation (a step every 4 batches)";
// "" when none is on.
std::string describe_training_options(const FitOptions& o);

// Rows [y0, y1) and columns [x0, x1) of an image.
struct CutBox {
    std::int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
    std::int64_t area() const { return (y1 - y0) * (x1 - x0); }
};

// timm's rand_bbox: cut = sqrt(1−λ), cut_h = int(H·cut), cut_w = int(W·cut), centred at
// (cy, cx) and clipped to the image: y0 = clip(cy − cut_h//2, 0, H), y1 = clip(cy + cut_h//2, 0, H),
// likewise for x.
CutBox cutmix_box(std::int64_t height, std::int64_t width, double lambda, std::int64_t cy, std::int64_t cx);
// λ corrected to the box actually pasted: 1 − area / (H·W) (timm's correct_lam, torchvision's).
double cutmix_lambda(const CutBox& box, std::int64_t height, std::int64_t width);

// One batch's mixing.
struct MixDraw {
    bool mixed = false;                     // false: the batch is used as it is
    bool cutmix = false;                    // CutMix (true) or MixUp (false)
    double lambda = 1;                      // weight of each row's own image and label (CutMix: corrected)
    std::vector<std::int64_t> permutation;  // row i is mixed with row permutation[i]
    CutBox box;                             // CutMix: the region pasted from the partner
};

// A draw from Beta(a, b) (two Gamma draws, Marsaglia and Tsang's method).
double sample_beta(double a, double b, Rng& rng);

// Draws one batch's mixing, in this order: u ~ U(0, 1) (the batch is mixed when u < prob);
// with both on, CutMix when U(0, 1) < switch_prob; λ ~ Beta(α, α) of the chosen method; a
// random permutation of the rows (Fisher-Yates); CutMix: the centre cy ∈ [0, H), cx ∈ [0, W)
// and λ corrected to the box.
MixDraw draw_mix(const MixOptions& o, std::int64_t batch, std::int64_t height, std::int64_t width, Rng& rng);

// The mixed images [N, C, H, W]: MixUp λ·x + (1−λ)·x[perm]; CutMix x with the box replaced
// by x[perm]'s. The input is not changed. Unmixed draws return `images` itself.
at::Tensor mix_images(const at::Tensor& images, const MixDraw& d);

// The loss of a mixed batch: λ·loss(out, y) + (1−λ)·loss(out, y[perm]). Multi-label targets
// (floating point, [N, C]) are mixed instead, loss(out, λ·y + (1−λ)·y[perm]): the same number
// for binary cross-entropy, which is linear in the target.
using LossFunction = std::function<at::Tensor(const at::Tensor& out, const at::Tensor& y)>;
at::Tensor mixed_loss(const LossFunction& loss, const at::Tensor& out, const at::Tensor& y, const MixDraw& d);

// ---- Label smoothing ----

// The mean over the batch of −(1−ε)·logp[y] − ε/C·Σ_c logp[c], for log-probabilities `logp`
// [N, C] and labels `y` [N]: PyTorch's cross_entropy(logits, y, label_smoothing=ε) when
// logp = log_softmax(logits). ε = 0 is the plain NLL loss.
at::Tensor smoothed_nll_loss(const at::Tensor& logp, const at::Tensor& y, double epsilon);

// ---- Weight EMA (timm's ModelEmaV2, with buffers copied) ----

// ema ← decay·ema + (1 − decay)·w for every parameter after each optimiser step (computed as
// ema.lerp_(w, 1 − decay), which leaves a parameter that does not change exactly as it is);
// buffers (BatchNorm statistics) are copied. The average lives on the module's device.
class WeightEma {
public:
    WeightEma() = default;
    // Starts the average at the module's current weights.
    WeightEma(const torch::nn::Module& module, double decay);
    // An average saved earlier (names as models::state_dict_of); UserError when the names or
    // shapes do not match the module's.
    WeightEma(const torch::nn::Module& module, const models::StateDict& saved, double decay, long updates,
              const std::string& source);

    void update(const torch::nn::Module& module);
    // Exchanges the module's weights with the average, bit for bit (twice restores both).
    void swap_with(const torch::nn::Module& module);

    double decay() const { return decay_; }
    long updates() const { return updates_; }
    const models::StateDict& state() const { return state_; }

private:
    double decay_ = 0;
    long updates_ = 0;
    std::size_t parameters_ = 0;   // state_ holds the parameters first, then the buffers
    models::StateDict state_;
};

}  // namespace whisker::train
