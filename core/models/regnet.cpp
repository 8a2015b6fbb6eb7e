// torchvision.models.regnet, module for module: the RegNetY models (squeeze-excitation)
// regnet_y_400mf, 800mf, 1_6gf, 3_2gf, 8gf and 16gf.
//
// Keys: stem (Conv2dNormActivation 3x3/2 "0"/"1"), trunk_output.block1..block4 (AnyStage) of
// ResBottleneckBlocks "block{stage}-{i}" (proj "0"/"1" when the shape changes; f.a 1x1,
// f.b grouped 3x3, f.se fc1/fc2, f.c 1x1), avgpool, fc.
#include "architectures.h"
#include "layers.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

struct StageParams {
    int width, stride, depth, group_width;
    double bottleneck_multiplier;
};

// torchvision's BlockParams.from_init_params (with the same float32 tensor arithmetic for the
// quantised block widths) and _adjust_widths_groups_compatibilty.
std::vector<StageParams> block_params(int depth, int w_0, double w_a, double w_m, int group_width,
                                      double bottleneck_multiplier = 1.0) {
    constexpr int quant = 8, stride = 2;
    if (w_a < 0 || w_0 <= 0 || w_m <= 1 || w_0 % 8 != 0) throw std::invalid_argument("Invalid RegNet settings");
    std::vector<int> block_widths;
    {
        torch::NoGradGuard no_grad;
        const at::Tensor widths_cont = at::arange(depth, at::kLong) * w_a + w_0;
        const at::Tensor block_capacity = at::round(at::log(widths_cont / w_0) / std::log(w_m));
        const at::Tensor widths = (at::round(at::pow(w_m, block_capacity) * w_0 / quant) * quant).to(at::kInt).contiguous();
        block_widths.assign(widths.data_ptr<int>(), widths.data_ptr<int>() + widths.numel());
    }
    const std::size_t num_stages = std::set<int>(block_widths.begin(), block_widths.end()).size();
    // Stages: runs of equal block widths (zip(...) in torchvision truncates to num_stages).
    std::vector<int> stage_widths, stage_depths;
    for (std::size_t i = 0; i < block_widths.size(); ++i) {
        if (i == 0 || block_widths[i] != block_widths[i - 1]) {
            stage_widths.push_back(block_widths[i]);
            stage_depths.push_back(0);
        }
        ++stage_depths.back();
    }
    std::vector<StageParams> stages;
    for (std::size_t s = 0; s < std::min(num_stages, stage_widths.size()); ++s) {
        const int w_bot = static_cast<int>(stage_widths[s] * bottleneck_multiplier);
        const int g = std::min(group_width, w_bot);
        const int w_bot_adjusted = make_divisible(w_bot, g);
        stages.push_back({static_cast<int>(w_bot_adjusted / bottleneck_multiplier), stride, stage_depths[s], g,
                          bottleneck_multiplier});
    }
    return stages;
}

// Conv2dNormActivation without its activation: the ReLUs are applied in place (torchvision's
// nn.ReLU(inplace=True)) by the callers.
ConvNormActivation conv_bn(int in, int out, int kernel, int stride = 1, int groups = 1) {
    ConvNormActivationOptions o;
    o.in = in;
    o.out = out;
    o.kernel = kernel;
    o.stride = stride;
    o.groups = groups;
    o.activation = Activation::None;
    return ConvNormActivation(o);
}

// BottleneckTransform: a (1x1, ReLU), b (grouped 3x3, ReLU), se, c (1x1).
class BottleneckTransformImpl : public nn::Module {
public:
    BottleneckTransformImpl(int width_in, int width_out, int stride, int group_width, double bottleneck_multiplier,
                            double se_ratio) {
        const int w_b = static_cast<int>(std::nearbyint(width_out * bottleneck_multiplier));
        const int g = w_b / group_width;
        a = register_module("a", conv_bn(width_in, w_b, 1));
        b = register_module("b", conv_bn(w_b, w_b, 3, stride, g));
        if (se_ratio > 0.0) {
            // The SE reduction ratio is relative to the block's input width.
            const int width_se_out = static_cast<int>(std::nearbyint(se_ratio * width_in));
            se = register_module("se", SqueezeExcitation(w_b, width_se_out, Activation::ReLU, Activation::Sigmoid));
        }
        c = register_module("c", conv_bn(w_b, width_out, 1));
    }
    at::Tensor forward(const at::Tensor& x) {
        at::Tensor y = a(x).relu_();
        y = b(y).relu_();
        if (se) y = se(y);
        return c(y);
    }
    ConvNormActivation a{nullptr}, b{nullptr}, c{nullptr};
    SqueezeExcitation se{nullptr};
};
TORCH_MODULE(BottleneckTransform);

// ResBottleneckBlock: relu(proj(x) + f(x)), proj only when the shape changes.
class ResBottleneckBlockImpl : public nn::Module {
public:
    ResBottleneckBlockImpl(int width_in, int width_out, int stride, int group_width, double bottleneck_multiplier,
                           double se_ratio) {
        if (width_in != width_out || stride != 1) proj = register_module("proj", conv_bn(width_in, width_out, 1, stride));
        f = register_module("f", BottleneckTransform(width_in, width_out, stride, group_width, bottleneck_multiplier, se_ratio));
    }
    at::Tensor forward(const at::Tensor& x) {
        at::Tensor out = f(x);
        out += proj ? proj(x) : x;
        return out.relu_();
    }
    ConvNormActivation proj{nullptr};
    BottleneckTransform f{nullptr};
};
TORCH_MODULE(ResBottleneckBlock);

// AnyStage: blocks "block{stage_index}-{i}".
class AnyStageImpl : public nn::Module {
public:
    AnyStageImpl(int stage_index, int width_in, const StageParams& p, double se_ratio) {
        for (int i = 0; i < p.depth; ++i) {
            blocks_.push_back(register_module(
                "block" + std::to_string(stage_index) + "-" + std::to_string(i),
                ResBottleneckBlock(i == 0 ? width_in : p.width, p.width, i == 0 ? p.stride : 1, p.group_width,
                                   p.bottleneck_multiplier, se_ratio)));
        }
    }
    at::Tensor forward(at::Tensor x) {
        for (auto& block : blocks_) x = block(x);
        return x;
    }

private:
    std::vector<ResBottleneckBlock> blocks_;
};
TORCH_MODULE(AnyStage);

class RegNet : public ImageNetModel {
public:
    RegNet(Arch arch, const std::vector<StageParams>& params, double se_ratio, bool with_classifier, int num_classes)
        : ImageNetModel(arch, with_classifier) {
        constexpr int stem_width = 32;
        stem_ = register_module("stem", conv_bn(3, stem_width, 3, 2));
        auto trunk = register_module("trunk_output", std::make_shared<nn::Module>("Sequential"));
        int width = stem_width;
        for (std::size_t i = 0; i < params.size(); ++i) {
            const int index = static_cast<int>(i) + 1;
            stages_.push_back(trunk->register_module("block" + std::to_string(index), AnyStage(index, width, params[i], se_ratio)));
            width = params[i].width;
        }
        if (with_classifier) {
            avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
            fc_ = register_module("fc", nn::Linear(width, num_classes));
        }
        // torchvision: ResNet-style initialisation, normal(0, sqrt(2 / fan_out)) convolution
        // weights (fan_out = k * k * out_channels; SE biases keep PyTorch's default), BatchNorm
        // weight 1 and bias 0, Linear normal(0, 0.01) with zero bias.
        torch::NoGradGuard no_grad;
        for (auto& m : modules(false)) {
            if (auto* c = m->as<nn::Conv2d>()) {
                const auto& k = c->options.kernel_size();
                const double fan_out = static_cast<double>((*k)[0] * (*k)[1] * c->options.out_channels());
                nn::init::normal_(c->weight, 0.0, std::sqrt(2.0 / fan_out));
            } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
                nn::init::ones_(bn->weight);
                nn::init::zeros_(bn->bias);
            } else if (auto* l = m->as<nn::Linear>()) {
                nn::init::normal_(l->weight, 0.0, 0.01);
                nn::init::zeros_(l->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override {
        at::Tensor y = stem_(x).relu_();
        for (auto& stage : stages_) y = stage(y);
        return y;
    }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return fc_(avgpool_(features(x)).flatten(1));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        std::vector<std::vector<std::shared_ptr<nn::Module>>> groups(2);
        groups[0].push_back(stem_.ptr());
        for (std::size_t i = 0; i < stages_.size(); ++i) groups[i < 2 ? 0 : 1].push_back(stages_[i].ptr());
        return groups;
    }

private:
    ConvNormActivation stem_{nullptr};
    std::vector<AnyStage> stages_;
    nn::AdaptiveAvgPool2d avgpool_{nullptr};
    nn::Linear fc_{nullptr};
};

}  // namespace

std::shared_ptr<ImageNetModel> make_regnet(Arch arch, bool with_classifier, int num_classes) {
    // torchvision's regnet_y_* builders (all with se_ratio 0.25).
    constexpr double se = 0.25;
    const auto make = [&](int depth, int w_0, double w_a, double w_m, int group_width) {
        return std::make_shared<RegNet>(arch, block_params(depth, w_0, w_a, w_m, group_width), se, with_classifier, num_classes);
    };
    switch (arch) {
        case Arch::RegNet_Y_400MF: return make(16, 48, 27.89, 2.09, 8);
        case Arch::RegNet_Y_800MF: return make(14, 56, 38.84, 2.4, 16);
        case Arch::RegNet_Y_1_6GF: return make(27, 48, 20.71, 2.65, 24);
        case Arch::RegNet_Y_3_2GF: return make(21, 80, 42.63, 2.66, 24);
        case Arch::RegNet_Y_8GF: return make(17, 192, 76.82, 2.19, 56);
        case Arch::RegNet_Y_16GF: return make(18, 200, 106.23, 2.48, 112);
        default: throw std::invalid_argument("not a RegNet");
    }
}

}  // namespace whisker::models::detail
