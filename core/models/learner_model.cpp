#include "whisker/models/learner_model.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/random.h"
#include "whisker/models/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

namespace nn = torch::nn;
namespace fs = std::filesystem;

namespace whisker::models {

HeadOptions HeadOptions::with_dropout(double p, std::vector<int> xtra_fc) {
    HeadOptions h;
    h.xtra_fc = std::move(xtra_fc);
    h.ps.assign(h.xtra_fc.size() + 1, p);
    return h;
}

at::Tensor adaptive_concat_pool(const at::Tensor& x) {
    return at::cat({std::get<0>(at::adaptive_max_pool2d(x, {1, 1})), at::adaptive_avg_pool2d(x, {1, 1})}, 1).flatten(1);
}

ClassifierModel::ClassifierModel(Arch arch, int num_classes, HeadOptions head)
    : head_options_(std::move(head)), num_classes_(num_classes) {
    if (num_classes < 1) throw UserError("a classifier needs at least one class");
    if (head_options_.ps.size() != head_options_.xtra_fc.size() + 1)
        throw UserError("the head needs " + std::to_string(head_options_.xtra_fc.size() + 1) + " dropout values (ps), got " +
                        std::to_string(head_options_.ps.size()));
    body_ = register_module("body", create_imagenet_model(arch, false));
    // A feature map is concat-pooled (max and average: 2 x channels); a token (ViT's class
    // token) goes to the head as it is.
    token_body_ = body_->info().body_output == BodyOutput::Token;
    head_inputs_ = token_body_ ? body_->info().body_channels : 2 * body_->info().body_channels;
    const bool v2 = head_options_.style == HeadStyle::FastaiV2;
    nn::Sequential h;
    int ni = head_inputs_;
    auto block = [&](int out, double p, bool relu) {
        h->push_back(nn::BatchNorm1d(ni));
        if (p > 0) h->push_back(nn::Dropout(p));
        auto lin = nn::Linear(nn::LinearOptions(ni, out).bias(!v2));
        nn::init::kaiming_normal_(lin->weight);  // fan_in, gain sqrt(2)
        if (lin->bias.defined()) nn::init::zeros_(lin->bias);
        h->push_back(lin);
        if (relu) h->push_back(nn::ReLU(nn::ReLUOptions(true)));
        ni = out;
    };
    for (std::size_t i = 0; i < head_options_.xtra_fc.size(); ++i) block(head_options_.xtra_fc[i], head_options_.ps[i], true);
    block(num_classes, head_options_.ps.back(), false);
    if (!v2) {
        if (head_options_.multi_label) h->push_back(nn::Sigmoid());
        else h->push_back(nn::LogSoftmax(nn::LogSoftmaxOptions(1)));
    }
    head_ = register_module("head", h);
}

at::Tensor ClassifierModel::pooled_features(const at::Tensor& images) {
    at::Tensor features = body_->features(images);
    return token_body_ ? features : adaptive_concat_pool(features);
}

namespace {

// Dropout of `x` ([rows, features]) with the masks of DropoutDraw: element (i, f) is kept when
// a hash of (seed, layer, global row, f) says so, with probability 1 - p, and scaled by
// 1 / (1 - p) as nn::Dropout. A counter-based draw: each rank computes only its own rows, and
// the mask does not depend on the device, the thread count or LibTorch's generators.
at::Tensor drawn_dropout(const at::Tensor& x, double p, const DropoutDraw& draw, std::uint64_t layer) {
    if (p >= 1.0) return x * 0.0;
    const std::int64_t rows = x.size(0), features = x.numel() / std::max<std::int64_t>(1, x.size(0));
    at::Tensor mask = at::empty({rows, features}, at::kFloat);
    float* m = mask.data_ptr<float>();
    const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
    const std::uint64_t layer_seed = derive_seed(draw.seed, 0x64726f70, layer);
    // Each element is a function of its position alone, so threads cannot change the result.
    at::parallel_for(0, rows, std::max<std::int64_t>(1, 65536 / std::max<std::int64_t>(1, features)), [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            const auto row = static_cast<std::uint64_t>(draw.first_row + i * draw.row_stride);
            const std::uint64_t row_seed = derive_seed(layer_seed, row);
            for (std::int64_t f = 0; f < features; ++f) {
                const double u = static_cast<double>(derive_seed(row_seed, static_cast<std::uint64_t>(f)) >> 11) * 0x1.0p-53;
                m[i * features + f] = u < p ? 0.0f : keep_scale;
            }
        }
    });
    return x * mask.view(x.sizes()).to(x.device(), x.scalar_type());
}

}  // namespace

at::Tensor ClassifierModel::forward_head(const at::Tensor& activations) {
    const bool drawn = dropout_draw_.has_value();
    if (head_options_.style == HeadStyle::FastaiV2 && !drawn) return head_->forward(activations);
    // Fastai07: the final LogSoftmax (or Sigmoid) in float32 even under 16-bit autocast:
    // probabilities that sum to 1 and losses without bf16's rounding.
    const bool last_in_float = head_options_.style != HeadStyle::FastaiV2;
    at::Tensor x = activations;
    std::uint64_t dropout_layer = 0;
    std::size_t i = 0;
    for (auto it = head_->begin(); it != head_->end(); ++it, ++i) {
        if (drawn) {
            if (const auto* d = it->ptr()->as<nn::Dropout>()) {
                if (d->is_training()) x = drawn_dropout(x, d->options.p(), *dropout_draw_, dropout_layer);
                ++dropout_layer;
                continue;
            }
        }
        if (last_in_float && i + 1 == head_->size() && x.scalar_type() != at::kFloat) x = x.to(at::kFloat);
        x = it->forward(x);
    }
    return x;
}

at::Tensor ClassifierModel::forward(const at::Tensor& images) { return forward_head(pooled_features(images)); }

std::vector<std::vector<std::shared_ptr<nn::Module>>> ClassifierModel::layer_groups() {
    auto groups = body_->body_groups();
    groups.push_back({head_.ptr()});
    return groups;
}

std::vector<std::vector<at::Tensor>> ClassifierModel::layer_group_parameters() {
    std::vector<std::vector<at::Tensor>> out;
    const auto loose = body_->body_group_loose_parameters();
    const auto groups = layer_groups();
    for (std::size_t g = 0; g < groups.size(); ++g) {
        std::vector<at::Tensor> params;
        if (g < loose.size()) params = loose[g];
        for (const auto& m : groups[g])
            for (const auto& p : m->parameters(true)) params.push_back(p);
        out.push_back(std::move(params));
    }
    return out;
}

void export_model(ClassifierModel& model, const std::vector<std::string>& classes, int input_size, const fs::path& path) {
    StateDict tensors;
    for (auto& [name, t] : state_dict_of(model)) {
        // "body.layer1.0.conv1.weight" -> "layer1.0.conv1.weight" (torchvision's key)
        const std::string key = name.rfind("body.", 0) == 0 ? name.substr(5) : name;
        tensors.emplace_back(key, t);
    }
    const HeadOptions& h = model.head_options();
    nlohmann::json j{{"format", "whisker-model"},
                     {"version", 1},
                     {"arch", model.arch().name},
                     {"classes", classes},
                     {"input_size", input_size},
                     {"normalization", {{"mean", {0.485, 0.456, 0.406}}, {"std", {0.229, 0.224, 0.225}}}},
                     {"head", {{"style", h.style == HeadStyle::Fastai07 ? "fastai-0.7" : "fastai-v2"},
                               {"xtra_fc", h.xtra_fc},
                               {"ps", h.ps},
                               {"pool", model.arch().body_output == BodyOutput::Token ? "class token (no pooling)"
                                                                                      : "AdaptiveConcatPool2d(max, avg)"},
                               {"output", h.style == HeadStyle::FastaiV2 ? "logits"
                                          : h.multi_label              ? "sigmoid"
                                                                       : "log_softmax"}}},
                     {"body_keys", "torchvision " + model.arch().name + " without '" + model.arch().classifier_prefix + "'"}};
    if (model.arch().family == "ViT" && input_size != model.arch().default_size())
        j["position_embeddings"] = "stored for " + std::to_string(model.arch().default_size()) +
                                   " px; for input_size use torchvision's interpolate_embeddings(input_size, 16, state_dict)";
    write_safetensors(path, tensors, {{"whisker", j.dump()}});
    write_file_atomically(path.string() + ".json", j.dump(2) + "\n");
}

}  // namespace whisker::models
