// torchvision.models.convnext, module for module: convnext_tiny, convnext_small, convnext_base.
//
// Keys: features.0 (stem: Conv2d 4x4/4 "0", LayerNorm2d "1"), features.1/3/5/7 (stages of
// CNBlocks: block.0 depthwise 7x7, block.2 LayerNorm, block.3 and block.5 Linear,
// layer_scale), features.2/4/6 (downsampling: LayerNorm2d "0", Conv2d 2x2/2 "1"), and the
// classifier (LayerNorm2d "0", Flatten, Linear "2"). As in torchvision, everything after the
// stem's LayerNorm2d runs in channels-last memory layout (a LayerNorm2d's output is an NHWC
// tensor seen as NCHW), so the MLP's Linear layers read the channels contiguously.
#include "architectures.h"
#include "layers.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

constexpr double kLayerNormEps = 1e-6;  // torchvision: partial(LayerNorm2d / nn.LayerNorm, eps=1e-6)

// torchvision's LayerNorm2d: nn.LayerNorm over the channels of an [N, C, H, W] tensor (permute
// to NHWC, normalise, permute back); keys weight, bias.
class LayerNorm2dImpl : public LayerNormLastDimImpl {
public:
    explicit LayerNorm2dImpl(int channels) : LayerNormLastDimImpl(channels, kLayerNormEps) {}
    at::Tensor forward(const at::Tensor& x) {
        return LayerNormLastDimImpl::forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
    }
};
TORCH_MODULE(LayerNorm2d);

// CNBlock.block: Conv2d 7x7 depthwise "0", Permute, LayerNorm "2", Linear "3", GELU,
// Linear "5", Permute. forward_nhwc leaves out the last Permute: [N, C, H, W] in,
// [N, H, W, C] out.
class CNBlockBranchImpl : public nn::Module {
public:
    explicit CNBlockBranchImpl(int dim) {
        dwconv = register_module("0", nn::Conv2d(nn::Conv2dOptions(dim, dim, 7).padding(3).groups(dim).bias(true)));
        norm = register_module("2", LayerNormLastDim(dim, kLayerNormEps));
        fc1 = register_module("3", nn::Linear(dim, 4 * dim));
        fc2 = register_module("5", nn::Linear(4 * dim, dim));
    }
    at::Tensor forward_nhwc(const at::Tensor& x) {
        at::Tensor y = norm(dwconv(x).permute({0, 2, 3, 1}));
        return fc2(at::gelu(fc1(y)));
    }
    nn::Conv2d dwconv{nullptr};
    LayerNormLastDim norm{nullptr};
    nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(CNBlockBranch);

// torchvision's CNBlock: x + stochastic_depth(layer_scale * block(x)), the stochastic depth
// mask (per sample) folded into the scale.
class CNBlockImpl : public nn::Module {
public:
    CNBlockImpl(int dim, double layer_scale_init, double stochastic_depth_prob) : p_(stochastic_depth_prob) {
        block = register_module("block", CNBlockBranch(dim));
        layer_scale = register_parameter("layer_scale", at::ones({dim, 1, 1}) * layer_scale_init);
    }
    at::Tensor forward(const at::Tensor& x) {
        const at::Tensor y = block->forward_nhwc(x).permute({0, 3, 1, 2});
        at::Tensor scale = layer_scale;
        if (is_training() && p_ > 0.0) {
            // torchvision.ops.stochastic_depth(mode="row")
            const double survival = 1.0 - p_;
            at::Tensor noise = at::empty({x.size(0), 1, 1, 1}, x.options()).bernoulli_(survival);
            if (survival > 0.0) noise.div_(survival);
            scale = layer_scale * noise;
        }
        // (torchvision's order: layer_scale * block(x), then += x.) One addcmul would save a
        // kernel in the forward pass but costs more in the backward pass (its gradient
        // recomputes tensor1 * value).
        return (y * scale).add_(x);
    }
    CNBlockBranch block{nullptr};
    at::Tensor layer_scale;

private:
    double p_;
};
TORCH_MODULE(CNBlock);

// The stem (Conv2d 4x4/4 "0", LayerNorm2d "1") and the downsampling layers (LayerNorm2d "0",
// Conv2d 2x2/2 "1"): torchvision's Conv2dNormActivation and nn.Sequential.
class ConvAndNormImpl : public nn::Module {
public:
    ConvAndNormImpl(int in, int out, int kernel, bool norm_first) : norm_first_(norm_first) {
        const auto conv_options = nn::Conv2dOptions(in, out, kernel).stride(kernel).padding(0).bias(true);
        if (norm_first) {
            norm = register_module("0", LayerNorm2d(in));
            conv = register_module("1", nn::Conv2d(conv_options));
        } else {
            conv = register_module("0", nn::Conv2d(conv_options));
            norm = register_module("1", LayerNorm2d(out));
        }
    }
    at::Tensor forward(const at::Tensor& x) { return norm_first_ ? conv(norm(x)) : norm(conv(x)); }
    nn::Conv2d conv{nullptr};
    LayerNorm2d norm{nullptr};

private:
    bool norm_first_;
};
TORCH_MODULE(ConvAndNorm);

// A stage: nn.Sequential of CNBlocks "0", "1", ...
class StageImpl : public nn::Module {
public:
    void add(CNBlock block) { blocks_.push_back(register_module(std::to_string(blocks_.size()), block)); }
    at::Tensor forward(at::Tensor x) {
        for (auto& block : blocks_) x = block(x);
        return x;
    }

private:
    std::vector<CNBlock> blocks_;
};
TORCH_MODULE(Stage);

struct StageSetting {
    int in;
    int out;  // 0: no downsampling after the stage
    int layers;
};

class ConvNeXt : public ImageNetModel {
public:
    ConvNeXt(Arch arch, const std::vector<StageSetting>& setting, double stochastic_depth_prob, bool with_classifier,
             int num_classes)
        : ImageNetModel(arch, with_classifier) {
        constexpr double layer_scale = 1e-6;
        features_ = nn::Sequential();
        features_->push_back(ConvAndNorm(3, setting[0].in, 4, false));
        int total_blocks = 0;
        for (const auto& s : setting) total_blocks += s.layers;
        int block_id = 0;
        for (const auto& s : setting) {
            Stage stage;
            for (int i = 0; i < s.layers; ++i, ++block_id) {
                const double sd_prob = stochastic_depth_prob * block_id / (total_blocks - 1.0);
                stage->add(CNBlock(s.in, layer_scale, sd_prob));
            }
            features_->push_back(stage);
            if (s.out > 0) features_->push_back(ConvAndNorm(s.in, s.out, 2, true));
        }
        register_module("features", features_);
        if (with_classifier) {
            const int channels = setting.back().out > 0 ? setting.back().out : setting.back().in;
            avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
            classifier_norm_ = LayerNormLastDim(channels, kLayerNormEps);
            classifier_fc_ = nn::Linear(channels, num_classes);
            register_module("classifier", nn::Sequential(classifier_norm_, nn::Flatten(), classifier_fc_));
        }
        // torchvision: truncated-normal (std 0.02) Conv2d and Linear weights, zero biases;
        // LayerNorm weight 1 and bias 0, layer_scale 1e-6 (as constructed).
        for (auto& m : modules(false)) {
            if (auto* c = m->as<nn::Conv2d>()) {
                trunc_normal_(c->weight, 0.02);
                if (c->bias.defined()) nn::init::zeros_(c->bias);
            } else if (auto* l = m->as<nn::Linear>()) {
                trunc_normal_(l->weight, 0.02);
                if (l->bias.defined()) nn::init::zeros_(l->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override { return features_->forward(x); }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        // classifier = LayerNorm2d, Flatten, Linear; on the pooled [N, C, 1, 1] map the
        // LayerNorm2d is a LayerNorm of the flattened [N, C].
        const at::Tensor pooled = avgpool_(features(x)).flatten(1);
        return classifier_fc_(classifier_norm_(pooled));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        std::vector<std::vector<std::shared_ptr<nn::Module>>> groups(2);
        for (std::size_t i = 0; i < features_->size(); ++i) groups[i < 4 ? 0 : 1].push_back(features_->ptr(i));
        return groups;
    }

private:
    nn::Sequential features_{nullptr};
    nn::AdaptiveAvgPool2d avgpool_{nullptr};
    LayerNormLastDim classifier_norm_{nullptr};
    nn::Linear classifier_fc_{nullptr};
};

}  // namespace

std::shared_ptr<ImageNetModel> make_convnext(Arch arch, bool with_classifier, int num_classes) {
    // torchvision's convnext_* builders: block settings and stochastic_depth_prob defaults.
    switch (arch) {
        case Arch::ConvNeXt_Tiny:
            return std::make_shared<ConvNeXt>(arch, std::vector<StageSetting>{{96, 192, 3}, {192, 384, 3}, {384, 768, 9}, {768, 0, 3}},
                                              0.1, with_classifier, num_classes);
        case Arch::ConvNeXt_Small:
            return std::make_shared<ConvNeXt>(arch, std::vector<StageSetting>{{96, 192, 3}, {192, 384, 3}, {384, 768, 27}, {768, 0, 3}},
                                              0.4, with_classifier, num_classes);
        case Arch::ConvNeXt_Base:
            return std::make_shared<ConvNeXt>(arch,
                                              std::vector<StageSetting>{{128, 256, 3}, {256, 512, 3}, {512, 1024, 27}, {1024, 0, 3}},
                                              0.5, with_classifier, num_classes);
        default: throw std::invalid_argument("not a ConvNeXt");
    }
}

}  // namespace whisker::models::detail
