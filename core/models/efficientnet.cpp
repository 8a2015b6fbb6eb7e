// torchvision.models.efficientnet, module for module: efficientnet_b0 … efficientnet_b4 (MBConv)
// and efficientnet_v2_s / efficientnet_v2_m (FusedMBConv stages, then MBConv).
#include "architectures.h"
#include "layers.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

// torchvision's MBConvConfig / FusedMBConvConfig after adjust_channels / adjust_depth.
struct StageConfig {
    bool fused;
    double expand_ratio;
    int kernel, stride, input_channels, out_channels, num_layers;
};

struct NormConfig {
    double eps, momentum;
};

ConvNormActivationOptions cna(int in, int out, int kernel, int stride, int groups, Activation act, const NormConfig& norm) {
    ConvNormActivationOptions o;
    o.in = in;
    o.out = out;
    o.kernel = kernel;
    o.stride = stride;
    o.groups = groups;
    o.bn_eps = norm.eps;
    o.bn_momentum = norm.momentum;
    o.activation = act;
    return o;
}

// (nn.Sequential containers become nn::ModuleList: same keys, and LibTorch's Sequential cannot
// hold a Sequential; the forwards call the typed modules directly.)
// MBConv (expand 1x1, depthwise kxk, squeeze-excitation, project 1x1) or FusedMBConv (fused
// expand kxk, project 1x1), keys block.0 … block.n, with row-mode stochastic depth on the
// residual branch.
class MBConvImpl : public nn::Module {
public:
    MBConvImpl(const StageConfig& c, int in, int stride, double sd_prob, const NormConfig& norm)
        : use_res_(stride == 1 && in == c.out_channels), sd_prob_(sd_prob) {
        block_ = register_module("block", nn::ModuleList());
        const int expanded = make_divisible(in * c.expand_ratio, 8);
        auto add = [&](const ConvNormActivationOptions& o) {
            ConvNormActivation m(o);
            block_->push_back(m);
            convs_.push_back(m);
        };
        if (c.fused) {
            if (expanded != in) {
                add(cna(in, expanded, c.kernel, stride, 1, Activation::SiLU, norm));
                add(cna(expanded, c.out_channels, 1, 1, 1, Activation::None, norm));
            } else {
                add(cna(in, c.out_channels, c.kernel, stride, 1, Activation::SiLU, norm));
            }
        } else {
            if (expanded != in) add(cna(in, expanded, 1, 1, 1, Activation::SiLU, norm));
            add(cna(expanded, expanded, c.kernel, stride, expanded, Activation::SiLU, norm));
            se_ = SqueezeExcitation(expanded, std::max(1, in / 4), Activation::SiLU, Activation::Sigmoid);
            block_->push_back(se_);
            se_after_ = convs_.size();
            add(cna(expanded, c.out_channels, 1, 1, 1, Activation::None, norm));
        }
    }

    at::Tensor forward(const at::Tensor& x) {
        at::Tensor y = x;
        for (std::size_t i = 0; i < convs_.size(); ++i) {
            y = convs_[i](y);
            if (i + 1 == se_after_) y = se_(y);
        }
        if (use_res_) {
            y = stochastic_depth(y, sd_prob_, is_training());
            y += x;
        }
        return y;
    }

private:
    bool use_res_;
    double sd_prob_;
    nn::ModuleList block_{nullptr};
    std::vector<ConvNormActivation> convs_;
    SqueezeExcitation se_{nullptr};
    std::size_t se_after_ = 0;  // 0: no squeeze-excitation
};
TORCH_MODULE(MBConv);

class EfficientNet : public ImageNetModel {
public:
    EfficientNet(Arch arch, const std::vector<StageConfig>& setting, int last_channel, double dropout,
                 double stochastic_depth_prob, NormConfig norm, bool with_classifier, int num_classes)
        : ImageNetModel(arch, with_classifier) {
        features_ = register_module("features", nn::ModuleList());
        stem_ = ConvNormActivation(cna(3, setting.front().input_channels, 3, 2, 1, Activation::SiLU, norm));
        features_->push_back(stem_);
        // body_groups: the late group starts at the first stage that brings the total stride to 16.
        int total_stride = 2;
        int total_blocks = 0;
        for (const auto& c : setting) total_blocks += c.num_layers;
        int block_id = 0;
        for (const auto& c : setting) {
            nn::ModuleList stage;
            std::vector<MBConv> blocks;
            for (int i = 0; i < c.num_layers; ++i) {
                const double sd_prob = stochastic_depth_prob * static_cast<double>(block_id) / total_blocks;
                MBConv b(c, i == 0 ? c.input_channels : c.out_channels, i == 0 ? c.stride : 1, sd_prob, norm);
                stage->push_back(b);
                blocks.push_back(b);
                ++block_id;
            }
            total_stride *= c.stride;
            if (split_ == 0 && total_stride >= 16) split_ = features_->size();
            features_->push_back(stage);
            stages_.push_back(std::move(blocks));
        }
        const int last_in = setting.back().out_channels;
        const int last_out = last_channel > 0 ? last_channel : 4 * last_in;
        last_ = ConvNormActivation(cna(last_in, last_out, 1, 1, 1, Activation::SiLU, norm));
        features_->push_back(last_);
        if (with_classifier) {
            dropout_ = nn::Dropout(nn::DropoutOptions(dropout).inplace(true));
            fc_ = nn::Linear(last_out, num_classes);
            register_module("classifier", nn::Sequential(dropout_, fc_));
        }
        // torchvision: Kaiming-normal (fan_out) convolutions with zero bias, BatchNorm weight 1 and
        // bias 0, Linear uniform(±1/sqrt(out_features)) with zero bias.
        for (auto& m : modules(false)) {
            if (auto* conv = m->as<nn::Conv2d>()) {
                nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kLeakyReLU);
                if (conv->bias.defined()) nn::init::zeros_(conv->bias);
            } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
                nn::init::ones_(bn->weight);
                nn::init::zeros_(bn->bias);
            } else if (auto* l = m->as<nn::Linear>()) {
                const double range = 1.0 / std::sqrt(static_cast<double>(l->options.out_features()));
                nn::init::uniform_(l->weight, -range, range);
                nn::init::zeros_(l->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override {
        at::Tensor y = stem_(x);
        for (auto& stage : stages_)
            for (auto& b : stage) y = b(y);
        return last_(y);
    }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return fc_(dropout_(at::adaptive_avg_pool2d(features(x), {1, 1}).flatten(1)));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        return split_children(*features_, split_);
    }

private:
    nn::ModuleList features_{nullptr};
    ConvNormActivation stem_{nullptr}, last_{nullptr};
    std::vector<std::vector<MBConv>> stages_;
    nn::Dropout dropout_{nullptr};
    nn::Linear fc_{nullptr};
    std::size_t split_ = 0;
};

// torchvision's _efficientnet_conf for efficientnet_b*: the B0 table scaled by width and depth.
std::vector<StageConfig> v1_setting(double width_mult, double depth_mult) {
    struct Row {
        double expand;
        int kernel, stride, in, out, layers;
    };
    const Row rows[] = {{1, 3, 1, 32, 16, 1}, {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},  {6, 3, 2, 40, 80, 3},
                        {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1}};
    std::vector<StageConfig> setting;
    for (const Row& r : rows)
        setting.push_back({false, r.expand, r.kernel, r.stride, make_divisible(r.in * width_mult, 8),
                           make_divisible(r.out * width_mult, 8),
                           static_cast<int>(std::ceil(r.layers * depth_mult))});
    return setting;
}

}  // namespace

std::shared_ptr<ImageNetModel> make_efficientnet(Arch arch, bool with_classifier, int num_classes) {
    const NormConfig v1_norm{1e-5, 0.1};  // nn.BatchNorm2d's defaults
    const NormConfig v2_norm{1e-3, 0.1};  // partial(nn.BatchNorm2d, eps=1e-03)
    auto v1 = [&](double width, double depth, double dropout) {
        return std::make_shared<EfficientNet>(arch, v1_setting(width, depth), 0, dropout, 0.2, v1_norm, with_classifier,
                                              num_classes);
    };
    switch (arch) {
        case Arch::EfficientNet_B0: return v1(1.0, 1.0, 0.2);
        case Arch::EfficientNet_B1: return v1(1.0, 1.1, 0.2);
        case Arch::EfficientNet_B2: return v1(1.1, 1.2, 0.3);
        case Arch::EfficientNet_B3: return v1(1.2, 1.4, 0.3);
        case Arch::EfficientNet_B4: return v1(1.4, 1.8, 0.4);
        case Arch::EfficientNet_V2_S:
            return std::make_shared<EfficientNet>(arch,
                                                  std::vector<StageConfig>{{true, 1, 3, 1, 24, 24, 2},
                                                                           {true, 4, 3, 2, 24, 48, 4},
                                                                           {true, 4, 3, 2, 48, 64, 4},
                                                                           {false, 4, 3, 2, 64, 128, 6},
                                                                           {false, 6, 3, 1, 128, 160, 9},
                                                                           {false, 6, 3, 2, 160, 256, 15}},
                                                  1280, 0.2, 0.2, v2_norm, with_classifier, num_classes);
        case Arch::EfficientNet_V2_M:
            return std::make_shared<EfficientNet>(arch,
                                                  std::vector<StageConfig>{{true, 1, 3, 1, 24, 24, 3},
                                                                           {true, 4, 3, 2, 24, 48, 5},
                                                                           {true, 4, 3, 2, 48, 80, 5},
                                                                           {false, 4, 3, 2, 80, 160, 7},
                                                                           {false, 6, 3, 1, 160, 176, 14},
                                                                           {false, 6, 3, 2, 176, 304, 18},
                                                                           {false, 6, 3, 1, 304, 512, 5}},
                                                  1280, 0.3, 0.2, v2_norm, with_classifier, num_classes);
        default: throw std::invalid_argument("not an EfficientNet");
    }
}

}  // namespace whisker::models::detail
