#include "layers.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace nn = torch::nn;

namespace whisker::models::detail {

at::Tensor activate(const at::Tensor& x, Activation activation) {
    switch (activation) {
        case Activation::None: return x;
        case Activation::ReLU: return at::relu(x);
        case Activation::SiLU: return at::silu(x);
        case Activation::Sigmoid: return at::sigmoid(x);
        case Activation::Hardswish: return at::hardswish(x);
        case Activation::Hardsigmoid: return at::hardsigmoid(x);
        case Activation::GELU: return at::gelu(x);
    }
    throw std::invalid_argument("unknown activation");
}

at::Tensor stochastic_depth(const at::Tensor& x, double p, bool training) {
    if (!training || p == 0.0) return x;
    const double survival = 1.0 - p;
    std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
    shape[0] = x.size(0);
    at::Tensor noise = at::empty(shape, x.options()).bernoulli_(survival);
    if (survival > 0.0) noise.div_(survival);
    return x * noise;
}

ConvNormActivationImpl::ConvNormActivationImpl(const ConvNormActivationOptions& o) : activation_(o.activation) {
    const int padding = o.padding >= 0 ? o.padding : (o.kernel - 1) / 2 * o.dilation;
    conv = register_module("0", nn::Conv2d(nn::Conv2dOptions(o.in, o.out, o.kernel)
                                               .stride(o.stride)
                                               .padding(padding)
                                               .dilation(o.dilation)
                                               .groups(o.groups)
                                               .bias(!o.norm)));
    if (o.norm) bn = register_module("1", nn::BatchNorm2d(nn::BatchNorm2dOptions(o.out).eps(o.bn_eps).momentum(o.bn_momentum)));
}

at::Tensor ConvNormActivationImpl::forward(const at::Tensor& x) {
    at::Tensor y = conv(x);
    if (bn) y = bn(y);
    // In place after a BatchNorm, as torchvision's inplace=True: BatchNorm's backward needs its
    // input, not its output, so this saves one activation's memory per layer.
    if (activation_ == Activation::ReLU && bn) return y.relu_();
    return activate(y, activation_);
}

SqueezeExcitationImpl::SqueezeExcitationImpl(int channels, int squeeze_channels, Activation activation,
                                             Activation scale_activation)
    : activation_(activation), scale_activation_(scale_activation) {
    fc1 = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze_channels, 1)));
    fc2 = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze_channels, channels, 1)));
}

at::Tensor SqueezeExcitationImpl::forward(const at::Tensor& x) {
    at::Tensor scale = at::adaptive_avg_pool2d(x, {1, 1});
    scale = activate(fc2(activate(fc1(scale), activation_)), scale_activation_);
    return scale * x;
}

std::vector<std::vector<std::shared_ptr<nn::Module>>> split_children(const nn::Module& container, std::size_t split) {
    std::vector<std::vector<std::shared_ptr<nn::Module>>> groups(2);
    const auto children = container.children();
    for (std::size_t i = 0; i < children.size(); ++i) groups[i < split ? 0 : 1].push_back(children[i]);
    return groups;
}

at::Tensor layer_norm(const at::Tensor& x, at::IntArrayRef shape, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
    if (weight.defined() && x.scalar_type() != weight.scalar_type())
        return at::layer_norm(x.to(weight.scalar_type()), shape, weight, bias, eps);
    return at::layer_norm(x, shape, weight, bias, eps);
}

LayerNormLastDimImpl::LayerNormLastDimImpl(int64_t dim, double eps) : dim_(dim), eps_(eps) {
    weight = register_parameter("weight", at::ones({dim}));
    bias = register_parameter("bias", at::zeros({dim}));
}

void trunc_normal_(at::Tensor t, double std, double mean, double a, double b) {
    at::NoGradGuard no_grad;
    auto norm_cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
    const double l = norm_cdf((a - mean) / std), u = norm_cdf((b - mean) / std);
    t.uniform_(2 * l - 1, 2 * u - 1);
    t.erfinv_();
    t.mul_(std * std::sqrt(2.0));
    t.add_(mean);
    t.clamp_(a, b);
}

int make_divisible(double v, int divisor, int min_value) {
    if (min_value < 0) min_value = divisor;
    int new_v = std::max(min_value, static_cast<int>(v + divisor / 2.0) / divisor * divisor);
    if (new_v < 0.9 * v) new_v += divisor;
    return new_v;
}

}  // namespace whisker::models::detail
