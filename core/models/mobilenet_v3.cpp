// torchvision.models.mobilenetv3, module for module: mobilenet_v3_large and mobilenet_v3_small
// (width 1.0, no reduced tail, no dilation).
#include "architectures.h"
#include "layers.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/functional.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <stdexcept>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

// torchvision's InvertedResidualConfig (channels after adjust_channels with width 1.0).
struct BlockConfig {
    int input_channels, kernel, expanded_channels, out_channels;
    bool use_se, use_hs;
    int stride;
};

// partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
ConvNormActivationOptions cna(int in, int out, int kernel, int stride, int groups, Activation act) {
    ConvNormActivationOptions o;
    o.in = in;
    o.out = out;
    o.kernel = kernel;
    o.stride = stride;
    o.groups = groups;
    o.bn_eps = 1e-3;
    o.bn_momentum = 0.01;
    o.activation = act;
    return o;
}

// InvertedResidual: expand 1x1 (when the width changes), depthwise kxk, squeeze-excitation
// (ReLU, Hardsigmoid), project 1x1; keys block.0 … block.n. (torchvision's nn.Sequential
// containers are nn::ModuleList here: same keys, and the forwards call the typed modules.)
class InvertedResidualImpl : public nn::Module {
public:
    explicit InvertedResidualImpl(const BlockConfig& c)
        : use_res_(c.stride == 1 && c.input_channels == c.out_channels) {
        block_ = register_module("block", nn::ModuleList());
        const Activation act = c.use_hs ? Activation::Hardswish : Activation::ReLU;
        auto add = [&](const ConvNormActivationOptions& o) {
            ConvNormActivation m(o);
            block_->push_back(m);
            convs_.push_back(m);
        };
        if (c.expanded_channels != c.input_channels) add(cna(c.input_channels, c.expanded_channels, 1, 1, 1, act));
        add(cna(c.expanded_channels, c.expanded_channels, c.kernel, c.stride, c.expanded_channels, act));
        if (c.use_se) {
            se_ = SqueezeExcitation(c.expanded_channels, make_divisible(c.expanded_channels / 4, 8), Activation::ReLU,
                                    Activation::Hardsigmoid);
            block_->push_back(se_);
            se_after_ = convs_.size();
        }
        add(cna(c.expanded_channels, c.out_channels, 1, 1, 1, Activation::None));
    }

    at::Tensor forward(const at::Tensor& x) {
        at::Tensor y = x;
        for (std::size_t i = 0; i < convs_.size(); ++i) {
            y = convs_[i](y);
            if (i + 1 == se_after_) y = se_(y);
        }
        if (use_res_) y += x;
        return y;
    }

private:
    bool use_res_;
    nn::ModuleList block_{nullptr};
    std::vector<ConvNormActivation> convs_;
    SqueezeExcitation se_{nullptr};
    std::size_t se_after_ = 0;  // 0: no squeeze-excitation
};
TORCH_MODULE(InvertedResidual);

class MobileNetV3 : public ImageNetModel {
public:
    MobileNetV3(Arch arch, const std::vector<BlockConfig>& setting, int last_channel, bool with_classifier,
                int num_classes)
        : ImageNetModel(arch, with_classifier) {
        features_ = register_module("features", nn::ModuleList());
        stem_ = ConvNormActivation(cna(3, setting.front().input_channels, 3, 2, 1, Activation::Hardswish));
        features_->push_back(stem_);
        // body_groups: the late group starts at the first block that brings the total stride to 16.
        int total_stride = 2;
        for (const auto& c : setting) {
            total_stride *= c.stride;
            if (split_ == 0 && total_stride >= 16) split_ = features_->size();
            InvertedResidual b(c);
            features_->push_back(b);
            blocks_.push_back(b);
        }
        const int last_in = setting.back().out_channels;
        const int last_out = 6 * last_in;
        last_ = ConvNormActivation(cna(last_in, last_out, 1, 1, 1, Activation::Hardswish));
        features_->push_back(last_);
        if (with_classifier) {
            fc1_ = nn::Linear(last_out, last_channel);
            dropout_ = nn::Dropout(nn::DropoutOptions(0.2).inplace(true));
            fc2_ = nn::Linear(last_channel, num_classes);
            register_module("classifier",
                            nn::Sequential(fc1_, nn::Functional([](const at::Tensor& t) { return at::hardswish(t); }),
                                           dropout_, fc2_));
        }
        // torchvision: Kaiming-normal (fan_out) convolutions with zero bias, BatchNorm weight 1 and
        // bias 0, Linear normal(0, 0.01) with zero bias.
        for (auto& m : modules(false)) {
            if (auto* conv = m->as<nn::Conv2d>()) {
                nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kLeakyReLU);
                if (conv->bias.defined()) nn::init::zeros_(conv->bias);
            } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
                nn::init::ones_(bn->weight);
                nn::init::zeros_(bn->bias);
            } else if (auto* l = m->as<nn::Linear>()) {
                nn::init::normal_(l->weight, 0, 0.01);
                nn::init::zeros_(l->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override {
        at::Tensor y = stem_(x);
        for (auto& b : blocks_) y = b(y);
        return last_(y);
    }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        at::Tensor y = fc1_(at::adaptive_avg_pool2d(features(x), {1, 1}).flatten(1));
        return fc2_(dropout_(at::hardswish(y)));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        return split_children(*features_, split_);
    }

private:
    nn::ModuleList features_{nullptr};
    ConvNormActivation stem_{nullptr}, last_{nullptr};
    std::vector<InvertedResidual> blocks_;
    nn::Linear fc1_{nullptr}, fc2_{nullptr};
    nn::Dropout dropout_{nullptr};
    std::size_t split_ = 0;
};

}  // namespace

std::shared_ptr<ImageNetModel> make_mobilenet_v3(Arch arch, bool with_classifier, int num_classes) {
    // torchvision's _mobilenet_v3_conf: input, kernel, expanded, out, SE, hardswish, stride.
    switch (arch) {
        case Arch::MobileNet_V3_Large:
            return std::make_shared<MobileNetV3>(arch,
                                                 std::vector<BlockConfig>{{16, 3, 16, 16, false, false, 1},
                                                                          {16, 3, 64, 24, false, false, 2},
                                                                          {24, 3, 72, 24, false, false, 1},
                                                                          {24, 5, 72, 40, true, false, 2},
                                                                          {40, 5, 120, 40, true, false, 1},
                                                                          {40, 5, 120, 40, true, false, 1},
                                                                          {40, 3, 240, 80, false, true, 2},
                                                                          {80, 3, 200, 80, false, true, 1},
                                                                          {80, 3, 184, 80, false, true, 1},
                                                                          {80, 3, 184, 80, false, true, 1},
                                                                          {80, 3, 480, 112, true, true, 1},
                                                                          {112, 3, 672, 112, true, true, 1},
                                                                          {112, 5, 672, 160, true, true, 2},
                                                                          {160, 5, 960, 160, true, true, 1},
                                                                          {160, 5, 960, 160, true, true, 1}},
                                                 1280, with_classifier, num_classes);
        case Arch::MobileNet_V3_Small:
            return std::make_shared<MobileNetV3>(arch,
                                                 std::vector<BlockConfig>{{16, 3, 16, 16, true, false, 2},
                                                                          {16, 3, 72, 24, false, false, 2},
                                                                          {24, 3, 88, 24, false, false, 1},
                                                                          {24, 5, 96, 40, true, true, 2},
                                                                          {40, 5, 240, 40, true, true, 1},
                                                                          {40, 5, 240, 40, true, true, 1},
                                                                          {40, 5, 120, 48, true, true, 1},
                                                                          {48, 5, 144, 48, true, true, 1},
                                                                          {48, 5, 288, 96, true, true, 2},
                                                                          {96, 5, 576, 96, true, true, 1},
                                                                          {96, 5, 576, 96, true, true, 1}},
                                                 1024, with_classifier, num_classes);
        default: throw std::invalid_argument("not a MobileNetV3");
    }
}

}  // namespace whisker::models::detail
