#include "whisker/train/training_options.h"

#include "whisker/common/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/module.h>

#include <cmath>
#include <numeric>

namespace whisker::train {

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------

MixOptions mix_options(const FitOptions& o) {
    MixOptions m;
    m.mixup_alpha = o.mixup_alpha;
    m.cutmix_alpha = o.cutmix_alpha;
    m.switch_prob = o.mix_switch_prob;
    m.prob = o.mix_prob;
    return m;
}

at::Tensor smoothed_nll_loss(const at::Tensor& logp, const at::Tensor& y, double epsilon) {
    const at::Tensor nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1);
    if (epsilon <= 0) return nll.mean();
    const at::Tensor uniform = -logp.mean(1);   // ε/C·Σ_c −logp[c], divided by ε
    return ((1 - epsilon) * nll + epsilon * uniform).mean();
}

void check_training_options(const FitOptions& o) {
    auto alpha = [](double a, const char* flag) {
        if (!(a >= 0) || !std::isfinite(a))
            throw UserError(fmt::format("--{} {}: α must be a number of at least 0", flag, a),
                            "0 turns it off; typical values are 0.2 to 0.4 (MixUp) and 1 (CutMix)");
    };
    alpha(o.mixup_alpha, "mixup");
    alpha(o.cutmix_alpha, "cutmix");
    auto probability = [](double p, const char* flag) {
        if (!(p >= 0 && p <= 1))
            throw UserError(fmt::format("--{} {}: a probability must be between 0 and 1", flag, p));
    };
    probability(o.mix_switch_prob, "mix-switch-prob");
    probability(o.mix_prob, "mix-prob");
    if (!(o.label_smoothing >= 0 && o.label_smoothing < 1))
        throw UserError(fmt::format("--label-smoothing {}: ε must be at least 0 and below 1", o.label_smoothing),
                        "0 turns it off; 0.1 is the usual value");
    if (!(o.ema_decay >= 0 && o.ema_decay < 1))
        throw UserError(fmt::format("--ema {}: the decay must be at least 0 and below 1", o.ema_decay),
                        "0 turns it off; typical values are 0.99 to 0.9999 (closer to 1 averages over more steps)");
    if (o.accumulate < 0 || o.accumulate > 4096)
        throw UserError(fmt::format("--accumulate {}: the optimiser steps every N batches, N from 1 to 4096", o.accumulate),
                        "1 turns it off; e.g. --bs 16 --accumulate 4 trains like a batch of 64");
}

std::string describe_training_options(const FitOptions& o) {
    std::vector<std::string> parts;
    const MixOptions m = mix_options(o);
    if (m.mixup_alpha > 0 && m.cutmix_alpha > 0)
        parts.push_back(fmt::format("MixUp (α {:g}) or CutMix (α {:g}, on {:g} % of the mixed batches)", m.mixup_alpha,
                                    m.cutmix_alpha, 100 * m.switch_prob));
    else if (m.mixup_alpha > 0)
        parts.push_back(fmt::format("MixUp (α {:g})", m.mixup_alpha));
    else if (m.cutmix_alpha > 0)
        parts.push_back(fmt::format("CutMix (α {:g})", m.cutmix_alpha));
    if (m.enabled() && m.prob < 1) parts.back() += fmt::format(" on {:g} % of the batches", 100 * m.prob);
    if (o.label_smoothing > 0) parts.push_back(fmt::format("label smoothing {:g}", o.label_smoothing));
    if (o.ema_decay > 0) parts.push_back(fmt::format("weight EMA (decay {:g})", o.ema_decay));
    if (o.accumulate > 1) parts.push_back(fmt::format("gradient accumulation (a step every {} batches)", o.accumulate));
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
    return out;
}

// ------------------------------------------------------------------------------------------
// MixUp / CutMix
// ------------------------------------------------------------------------------------------

CutBox cutmix_box(std::int64_t height, std::int64_t width, double lambda, std::int64_t cy, std::int64_t cx) {
    const double ratio = std::sqrt(std::max(0.0, 1.0 - lambda));
    const auto cut_h = static_cast<std::int64_t>(static_cast<double>(height) * ratio);
    const auto cut_w = static_cast<std::int64_t>(static_cast<double>(width) * ratio);
    auto clip = [](std::int64_t v, std::int64_t hi) { return std::clamp<std::int64_t>(v, 0, hi); };
    CutBox b;
    b.y0 = clip(cy - cut_h / 2, height);
    b.y1 = clip(cy + cut_h / 2, height);
    b.x0 = clip(cx - cut_w / 2, width);
    b.x1 = clip(cx + cut_w / 2, width);
    return b;
}

double cutmix_lambda(const CutBox& box, std::int64_t height, std::int64_t width) {
    return 1.0 - static_cast<double>(box.area()) / static_cast<double>(height * width);
}

namespace {

// Gamma(a, 1): Marsaglia and Tsang (2000); for a < 1 Gamma(a + 1)·U^(1/a).
double sample_gamma(double a, Rng& rng) {
    if (a < 1) {
        const double u = rng.uniform();
        return sample_gamma(a + 1, rng) * std::pow(u, 1.0 / a);
    }
    const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng.normal();
            v = 1.0 + c * x;
        } while (v <= 0);
        v = v * v * v;
        const double u = rng.uniform();
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
}

}  // namespace

double sample_beta(double a, double b, Rng& rng) {
    const double x = sample_gamma(a, rng), y = sample_gamma(b, rng);
    // Both can underflow to 0 for a tiny α: Beta(α, α) then puts its mass at 0 and 1 alike.
    if (x + y <= 0) return rng.uniform() < 0.5 ? 0.0 : 1.0;
    return x / (x + y);
}

MixDraw draw_mix(const MixOptions& o, std::int64_t batch, std::int64_t height, std::int64_t width, Rng& rng) {
    MixDraw d;
    if (!o.enabled() || batch <= 0) return d;
    if (!(rng.uniform() < o.prob)) return d;
    if (o.mixup_alpha > 0 && o.cutmix_alpha > 0) d.cutmix = rng.uniform() < o.switch_prob;
    else d.cutmix = o.cutmix_alpha > 0;
    const double alpha = d.cutmix ? o.cutmix_alpha : o.mixup_alpha;
    d.lambda = sample_beta(alpha, alpha, rng);
    d.permutation.resize(static_cast<std::size_t>(batch));
    std::iota(d.permutation.begin(), d.permutation.end(), std::int64_t{0});
    shuffle_in_place(d.permutation, rng);
    if (d.cutmix) {
        const std::int64_t cy = rng.uniform_int(0, height - 1), cx = rng.uniform_int(0, width - 1);
        d.box = cutmix_box(height, width, d.lambda, cy, cx);
        d.lambda = cutmix_lambda(d.box, height, width);
    }
    d.mixed = true;
    return d;
}

namespace {
at::Tensor permutation_on(const MixDraw& d, const at::Device& device) {
    return at::tensor(d.permutation, at::kLong).to(device);
}
}  // namespace

at::Tensor mix_images(const at::Tensor& images, const MixDraw& d) {
    if (!d.mixed) return images;
    const at::Tensor other = images.index_select(0, permutation_on(d, images.device()));
    if (!d.cutmix) return images * d.lambda + other * (1.0 - d.lambda);
    at::Tensor out = images.clone();
    const std::int64_t h = d.box.y1 - d.box.y0, w = d.box.x1 - d.box.x0;
    if (h > 0 && w > 0)
        out.narrow(2, d.box.y0, h).narrow(3, d.box.x0, w).copy_(other.narrow(2, d.box.y0, h).narrow(3, d.box.x0, w));
    return out;
}

at::Tensor mixed_loss(const LossFunction& loss, const at::Tensor& out, const at::Tensor& y, const MixDraw& d) {
    if (!d.mixed) return loss(out, y);
    const at::Tensor y_b = y.index_select(0, permutation_on(d, y.device()));
    if (y.is_floating_point()) return loss(out, y * d.lambda + y_b * (1.0 - d.lambda));
    return loss(out, y) * d.lambda + loss(out, y_b) * (1.0 - d.lambda);
}

// ------------------------------------------------------------------------------------------
// Weight EMA
// ------------------------------------------------------------------------------------------

WeightEma::WeightEma(const torch::nn::Module& module, double decay) : decay_(decay) {
    torch::NoGradGuard no_grad;
    parameters_ = module.named_parameters(true).size();
    for (const auto& [name, t] : models::state_dict_of(module)) state_.emplace_back(name, t.detach().clone());
}

WeightEma::WeightEma(const torch::nn::Module& module, const models::StateDict& saved, double decay, long updates,
                     const std::string& source)
    : WeightEma(module, decay) {
    updates_ = updates;
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : state_) {
        const at::Tensor* found = nullptr;
        for (const auto& [n, s] : saved)
            if (n == name) found = &s;
        if (!found || !found->sizes().equals(t.sizes()))
            throw UserError(source + " does not hold the EMA weights of this model (" + name +
                                (found ? " has another shape)" : " is missing)"),
                            "load another checkpoint, or train again with --ema");
        t.copy_(*found);
    }
    if (saved.size() != state_.size())
        throw UserError(source + " does not hold the EMA weights of this model (it has other tensors too)");
}

void WeightEma::update(const torch::nn::Module& module) {
    torch::NoGradGuard no_grad;
    const auto now = models::state_dict_of(module);
    const double weight = 1.0 - decay_;
    for (std::size_t i = 0; i < state_.size(); ++i) {
        at::Tensor& e = state_[i].second;
        const at::Tensor& w = now[i].second;
        if (i < parameters_ && e.is_floating_point()) e.lerp_(w.detach(), weight);
        else e.copy_(w);
    }
    ++updates_;
}

void WeightEma::swap_with(const torch::nn::Module& module) {
    torch::NoGradGuard no_grad;
    const auto now = models::state_dict_of(module);
    for (std::size_t i = 0; i < state_.size(); ++i) {
        at::Tensor w = now[i].second;   // shares storage with the module's tensor
        const at::Tensor keep = w.detach().clone();
        w.detach().copy_(state_[i].second);
        state_[i].second.copy_(keep);
    }
}

}  // namespace whisker::train
