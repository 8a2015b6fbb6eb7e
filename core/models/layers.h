#pragma once
// Internal: building blocks torchvision's newer architectures share (torchvision.ops), with
// torchvision's state-dict keys. Used by convnext.cpp, efficientnet.cpp, regnet.cpp,
// mobilenet_v3.cpp, swin.cpp and vit.cpp.

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <vector>

namespace whisker::models::detail {

enum class Activation { None, ReLU, SiLU, Sigmoid, Hardswish, Hardsigmoid, GELU };
at::Tensor activate(const at::Tensor& x, Activation activation);

// torchvision.ops.stochastic_depth(x, p, mode="row", training): in training, each sample's
// residual branch is dropped with probability p and the survivors scaled by 1/(1-p); in eval
// mode (or p = 0) x unchanged.
at::Tensor stochastic_depth(const at::Tensor& x, double p, bool training);

// torchvision.ops.Conv2dNormActivation: Conv2d (bias only without norm) "0", BatchNorm2d "1",
// then the activation (no parameters, so no key). padding defaults to (kernel - 1) / 2 * dilation.
struct ConvNormActivationOptions {
    int in, out, kernel = 3, stride = 1, groups = 1, dilation = 1;
    int padding = -1;              // -1: torchvision's default
    bool norm = true;
    double bn_eps = 1e-5, bn_momentum = 0.1;
    Activation activation = Activation::ReLU;
};
class ConvNormActivationImpl : public torch::nn::Module {
public:
    explicit ConvNormActivationImpl(const ConvNormActivationOptions& options);
    at::Tensor forward(const at::Tensor& x);
    torch::nn::Conv2d conv{nullptr};
    torch::nn::BatchNorm2d bn{nullptr};

private:
    Activation activation_;
};
TORCH_MODULE(ConvNormActivation);

// torchvision.ops.SqueezeExcitation: global average pool, fc1 (1x1 conv), activation, fc2,
// scale activation, times the input. Keys fc1.weight/bias, fc2.weight/bias.
class SqueezeExcitationImpl : public torch::nn::Module {
public:
    SqueezeExcitationImpl(int channels, int squeeze_channels, Activation activation = Activation::ReLU,
                          Activation scale_activation = Activation::Sigmoid);
    at::Tensor forward(const at::Tensor& x);
    torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};

private:
    Activation activation_, scale_activation_;
};
TORCH_MODULE(SqueezeExcitation);

// at::layer_norm, also for a 16-bit input under autocast with float32 weights (LibTorch 1.13's
// CPU kernel needs one dtype): the input is then normalised in float32.
at::Tensor layer_norm(const at::Tensor& x, at::IntArrayRef shape, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);

// nn.LayerNorm over the last dimension (keys weight, bias), through layer_norm() above.
class LayerNormLastDimImpl : public torch::nn::Module {
public:
    LayerNormLastDimImpl(int64_t dim, double eps);
    at::Tensor forward(const at::Tensor& x) { return layer_norm(x, {dim_}, weight, bias, eps_); }
    at::Tensor weight, bias;

private:
    int64_t dim_;
    double eps_;
};
TORCH_MODULE(LayerNormLastDim);

// A container's children as the two body layer groups: [0, split) and [split, end).
std::vector<std::vector<std::shared_ptr<torch::nn::Module>>> split_children(const torch::nn::Module& container,
                                                                            std::size_t split);

// torch.nn.init.trunc_normal_(t, mean, std, a, b): inverse-CDF sampling of the truncated
// normal (a and b absolute bounds, default ±2, as PyTorch's). LibTorch's C++ API lacks it.
void trunc_normal_(at::Tensor t, double std, double mean = 0.0, double a = -2.0, double b = 2.0);

// torchvision's _make_divisible(v, divisor, min_value): the nearest multiple of divisor, not
// below 90% of v.
int make_divisible(double v, int divisor, int min_value = -1);

// ViT's position embedding for a grid_h x grid_w patch grid: torchvision's
// interpolate_embeddings() — the class token's embedding kept, the square grid resized bicubic
// (align_corners=True), differentiably; `pos_embedding` itself at its own grid (vit.cpp).
at::Tensor vit_position_embedding(const at::Tensor& pos_embedding, int64_t grid_h, int64_t grid_w);

}  // namespace whisker::models::detail
