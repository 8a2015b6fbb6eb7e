// Synchronised BatchNorm (whisker/train/sync_batch_norm.h): the math of PyTorch's
// torch.nn.SyncBatchNorm (batch_norm_stats, batch_norm_gather_stats_with_counts,
// batch_norm_backward_reduce/elemt), over Whisker's c10d group.
#include "whisker/train/sync_batch_norm.h"

#include "whisker/train/distributed.h"

#include <ATen/ATen.h>
#include <ATen/ops/batch_norm_native.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstdint>
#include <mutex>
#include <vector>

namespace whisker::train {

namespace {

thread_local Distributed* t_group = nullptr;

std::vector<std::int64_t> reduced_dims(const at::Tensor& x) {
    std::vector<std::int64_t> dims{0};
    for (std::int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    return dims;
}

// [C] -> [1, C, 1, …] to broadcast against an input of x's rank.
at::Tensor per_channel(const at::Tensor& v, const at::Tensor& x) {
    std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
    shape[1] = v.size(0);
    return v.reshape(shape);
}

Distributed* group_of(const torch::autograd::AutogradContext* ctx) {
    return reinterpret_cast<Distributed*>(static_cast<std::intptr_t>(ctx->saved_data.at("group").toInt()));
}

// y = (x − mean)·invstd·w + b with the global statistics; the backward synchronises the
// gradient of those statistics.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& invstd, double count,
                              std::int64_t group) {
        const at::Tensor x = input.to(at::kFloat);
        at::Tensor y = (x - per_channel(mean, x)) * per_channel(invstd, x);
        if (weight.defined()) y = y * per_channel(weight.to(at::kFloat), x);
        if (bias.defined()) y = y + per_channel(bias.to(at::kFloat), x);
        ctx->save_for_backward({input, weight, mean, invstd});
        ctx->saved_data["count"] = count;
        ctx->saved_data["group"] = group;
        return y.to(input.scalar_type());
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor& input = saved[0];
        const at::Tensor& weight = saved[1];
        const at::Tensor& mean = saved[2];
        const at::Tensor& invstd = saved[3];
        const double count = ctx->saved_data["count"].toDouble();
        const std::int64_t channels = mean.size(0);
        const at::Tensor x = input.to(at::kFloat);
        const at::Tensor dy = grads[0].defined() ? grads[0].to(at::kFloat) : at::zeros_like(x);
        const auto dims = reduced_dims(x);
        const at::Tensor xmu = x - per_channel(mean, x);
        at::Tensor sum_dy, sum_dy_xmu;
        if (x.numel() > 0) {
            sum_dy = dy.sum(dims);
            sum_dy_xmu = (dy * xmu).sum(dims);
        } else {
            sum_dy = at::zeros({channels}, x.options());
            sum_dy_xmu = at::zeros({channels}, x.options());
        }
        at::Tensor grad_weight, grad_bias;
        if (weight.defined()) {
            grad_weight = (sum_dy_xmu * invstd).to(weight.scalar_type());
            grad_bias = sum_dy.to(weight.scalar_type());
        }
        // The global Σdy and Σdy·(x−mean): every rank's outputs depend on every rank's inputs
        // through the mean and the variance.
        at::Tensor packed = at::cat({sum_dy, sum_dy_xmu}).to(at::kDouble);
        group_of(ctx)->all_reduce_sum(packed);
        const at::Tensor mean_dy = (packed.narrow(0, 0, channels) / count).to(at::kFloat);
        const at::Tensor mean_dy_xmu = (packed.narrow(0, channels, channels) / count).to(at::kFloat);
        at::Tensor scale = invstd;
        if (weight.defined()) scale = scale * weight.to(at::kFloat);
        const at::Tensor grad_input =
            ((dy - per_channel(mean_dy, x) - xmu * per_channel(invstd * invstd * mean_dy_xmu, x)) * per_channel(scale, x))
                .to(input.scalar_type());
        return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

at::Tensor synchronised_batch_norm(Distributed& group, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                                   const at::Tensor& running_mean, const at::Tensor& running_var, double momentum, double eps) {
    const std::int64_t channels = input.size(1);
    at::Tensor mean, invstd;
    double count = 0;
    {
        at::NoGradGuard no_grad;
        // Each rank's mean and centred sum of squares (two passes; float32 on GPUs as PyTorch's
        // SyncBatchNorm, double on CPUs as its plain BatchNorm there), exchanged as sums in
        // double so that the global variance does not lose digits to cancellation.
        const at::Tensor x = input.to(input.is_cuda() ? at::kFloat : at::kDouble);
        const auto dims = reduced_dims(x);
        const double local = channels ? static_cast<double>(x.numel() / channels) : 0.0;
        at::Tensor stats = at::zeros({2 * channels + 1}, x.options().dtype(at::kDouble));
        if (local > 0) {
            const at::Tensor m = x.mean(dims);
            const at::Tensor m2 = (x - per_channel(m, x)).square().sum(dims);
            const at::Tensor md = m.to(at::kDouble);
            stats.narrow(0, 0, channels).copy_(md * local);
            stats.narrow(0, channels, channels).copy_(m2.to(at::kDouble) + md * md * local);
            stats[2 * channels].fill_(local);
        }
        group.all_reduce_sum(stats);
        count = stats[2 * channels].item<double>();
        if (count <= 1)
            throw std::runtime_error("synchronised BatchNorm needs more than one value per channel over all processes (got " +
                                     std::to_string(static_cast<long long>(count)) + "): use a larger batch");
        const at::Tensor global_mean = stats.narrow(0, 0, channels) / count;
        const at::Tensor global_var = (stats.narrow(0, channels, channels) / count - global_mean * global_mean).clamp_min(0);
        mean = global_mean.to(at::kFloat);
        invstd = (global_var + eps).rsqrt().to(at::kFloat);
        if (running_mean.defined())
            running_mean.mul_(1 - momentum).add_(global_mean.to(running_mean.scalar_type()) * momentum);
        if (running_var.defined())
            running_var.mul_(1 - momentum).add_((global_var * (count / (count - 1))).to(running_var.scalar_type()) * momentum);
    }
    return SyncBatchNormFunction::apply(input, weight, bias, mean, invstd, count,
                                        static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(&group)));
}

// aten::batch_norm at the autograd keys: synchronised where a scope asks for it, otherwise
// exactly PyTorch's own (CompositeImplicitAutograd) implementation.
at::Tensor batch_norm_kernel(const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                             const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var,
                             bool training, double momentum, double eps, bool cudnn_enabled) {
    Distributed* group = t_group;
    if (!group || !training || input.dim() < 2)
        return at::native::batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled);
    auto value = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); };
    return synchronised_batch_norm(*group, input, value(weight), value(bias), value(running_mean), value(running_var), momentum, eps);
}

void install_kernel() {
    static std::once_flag once;
    std::call_once(once, [] {
        // Kept for the life of the process: the registration ends with its Library.
        for (c10::DispatchKey key : {c10::DispatchKey::AutogradCPU, c10::DispatchKey::AutogradCUDA}) {
            auto* library = new torch::Library(torch::Library::IMPL, "aten", key, __FILE__, __LINE__);
            library->impl("batch_norm", TORCH_FN(batch_norm_kernel));
        }
    });
}

}  // namespace

SyncBatchNormScope::SyncBatchNormScope(Distributed* group) : previous_(t_group) {
    if (group && group->world_size() > 1) {
        install_kernel();
        t_group = group;
    }
}

SyncBatchNormScope::~SyncBatchNormScope() { t_group = previous_; }

}  // namespace whisker::train
