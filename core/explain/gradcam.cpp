#include "whisker/explain/gradcam.h"

#include "../models/layers.h"

#include "whisker/common/errors.h"
#include "whisker/common/parallel.h"
#include "whisker/data/image_decode.h"
#include "whisker/data/transforms.h"
#include "whisker/models/learner_model.h"
#include "whisker/train/learner.h"
#include "whisker/train/training_options.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace nn = torch::nn;

namespace whisker::explain {

// ---- Heatmap ----

float Heatmap::value_at(double fx, double fy) const {
    if (values.empty() || width <= 0 || height <= 0) return 0.0f;
    auto axis = [](double f, int n, int& i0, int& i1, double& t) {
        const double g = std::clamp(f * n - 0.5, 0.0, static_cast<double>(n - 1));
        i0 = static_cast<int>(std::floor(g));
        i1 = std::min(i0 + 1, n - 1);
        t = g - i0;
    };
    int x0, x1, y0, y1;
    double tx, ty;
    axis(fx, width, x0, x1, tx);
    axis(fy, height, y0, y1, ty);
    auto at = [&](int x, int y) { return static_cast<double>(values[static_cast<std::size_t>(y * width + x)]); };
    const double top = at(x0, y0) * (1 - tx) + at(x1, y0) * tx;
    const double bottom = at(x0, y1) * (1 - tx) + at(x1, y1) * tx;
    return static_cast<float>(top * (1 - ty) + bottom * ty);
}

std::vector<float> Heatmap::resampled(int cols, int rows) const {
    std::vector<float> out(static_cast<std::size_t>(std::max(cols, 0)) * static_cast<std::size_t>(std::max(rows, 0)));
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < cols; ++x)
            out[static_cast<std::size_t>(y * cols + x)] = value_at((x + 0.5) / cols, (y + 0.5) / rows);
    return out;
}

// ---- tensors ----

at::Tensor grad_cam(const at::Tensor& activations, const at::Tensor& gradients) {
    TORCH_CHECK(activations.dim() == 4 && activations.sizes() == gradients.sizes(),
                "grad_cam needs activations and gradients of the same shape [N, K, h, w]");
    const at::Tensor alpha = gradients.mean({2, 3}, /*keepdim=*/true);
    return at::relu((alpha * activations).sum(1));
}

at::Tensor softmax_log_odds(const at::Tensor& logits) {
    const int64_t n = logits.size(0), c = logits.size(1);
    if (c == 1) return logits;
    const at::Tensor diagonal = at::eye(c, logits.options().dtype(at::kBool));
    const at::Tensor others = logits.unsqueeze(1).expand({n, c, c}).masked_fill(diagonal, -std::numeric_limits<double>::infinity());
    return logits - others.logsumexp(2);
}

namespace {

// d(score of classes[i][k]) / d(target) for each k: one backward pass of the part after the
// target per class, the graph kept between them.
std::vector<at::Tensor> class_gradients(const at::Tensor& target_in, const std::function<at::Tensor(const at::Tensor&)>& scores_of,
                                        const std::vector<std::vector<int>>& classes, at::Tensor& target, at::Tensor& scores) {
    const int64_t n = target_in.size(0);
    TORCH_CHECK(static_cast<int64_t>(classes.size()) == n, "grad_cam: one class list per image");
    const std::size_t k = classes.empty() ? 0 : classes[0].size();
    TORCH_CHECK(k > 0, "grad_cam: no class to explain");
    std::vector<int64_t> flat;
    for (const auto& c : classes) {
        TORCH_CHECK(c.size() == k, "grad_cam: every image needs the same number of classes");
        flat.insert(flat.end(), c.begin(), c.end());
    }
    at::AutoGradMode grad_on(true);
    target = target_in.detach().requires_grad_(true);
    scores = scores_of(target);
    TORCH_CHECK(scores.dim() == 2 && scores.size(0) == n, "grad_cam: the scores must be [N, C]");
    const at::Tensor index = at::tensor(flat, at::TensorOptions().dtype(at::kLong)).view({n, static_cast<int64_t>(k)}).to(scores.device());
    TORCH_CHECK(index.min().item<int64_t>() >= 0 && index.max().item<int64_t>() < scores.size(1), "grad_cam: class out of range");
    const at::Tensor chosen = scores.gather(1, index);
    std::vector<at::Tensor> out;
    for (std::size_t j = 0; j < k; ++j) {
        // Rows do not interact, so the gradient of the sum is each image's own.
        auto g = torch::autograd::grad({chosen.select(1, static_cast<int64_t>(j)).sum()}, {target}, /*grad_outputs=*/{},
                                       /*retain_graph=*/j + 1 < k, /*create_graph=*/false);
        out.push_back(g[0].detach());
    }
    scores = scores.detach();
    target = target.detach();
    return out;
}

// Every module's train/eval flag, put back exactly on destruction (a learner may have some
// BatchNorm layers in eval mode while the rest trains: bn_freeze).
class EvalModeGuard {
public:
    explicit EvalModeGuard(nn::Module& model) : model_(model), self_(model.is_training()) {
        for (const auto& m : model.modules(/*include_self=*/false)) modes_.emplace_back(m, m->is_training());
        model.eval();
    }
    ~EvalModeGuard() {
        // Module::train recurses, so parents first (modules() is pre-order), then each child.
        model_.train(self_);
        for (auto& [m, on] : modes_) m->train(on);
    }
    EvalModeGuard(const EvalModeGuard&) = delete;
    EvalModeGuard& operator=(const EvalModeGuard&) = delete;

private:
    nn::Module& model_;
    bool self_;
    std::vector<std::pair<std::shared_ptr<nn::Module>, bool>> modes_;
};

// The head without its final LogSoftmax/Sigmoid (fastai 0.7 style): logits.
at::Tensor head_logits(models::ClassifierModel& model, const at::Tensor& pooled) {
    auto& head = model.head();
    const std::size_t n = head->size() - (model.head_options().style == models::HeadStyle::Fastai07 ? 1 : 0);
    at::Tensor x = pooled;
    auto it = head->begin();
    for (std::size_t i = 0; i < n; ++i, ++it) x = it->forward(x);
    return x;
}

// ViT's parts, found by their torchvision names (the module types are the model file's own).
struct VitParts {
    std::shared_ptr<nn::Conv2dImpl> conv_proj;
    at::Tensor class_token, pos_embedding;
    std::shared_ptr<nn::SequentialImpl> layers;
    std::shared_ptr<models::detail::LayerNormLastDimImpl> ln;
};

VitParts vit_parts(nn::Module& body) {
    VitParts p;
    const auto modules = body.named_modules("", /*include_self=*/false);
    const auto params = body.named_parameters(/*recurse=*/true);
    if (auto* m = modules.find("conv_proj")) p.conv_proj = std::dynamic_pointer_cast<nn::Conv2dImpl>(*m);
    if (auto* m = modules.find("encoder.layers")) p.layers = std::dynamic_pointer_cast<nn::SequentialImpl>(*m);
    if (auto* m = modules.find("encoder.ln")) p.ln = std::dynamic_pointer_cast<models::detail::LayerNormLastDimImpl>(*m);
    if (auto* t = params.find("class_token")) p.class_token = *t;
    if (auto* t = params.find("encoder.pos_embedding")) p.pos_embedding = *t;
    if (!p.conv_proj || !p.layers || !p.ln || !p.class_token.defined() || !p.pos_embedding.defined() || p.layers->size() < 1)
        throw std::logic_error("Grad-CAM: the ViT body does not have torchvision's modules (conv_proj, encoder.layers, encoder.ln)");
    return p;
}

}  // namespace

at::Tensor grad_cam_of(const at::Tensor& feature_map, const std::function<at::Tensor(const at::Tensor&)>& scores_of,
                       const std::vector<std::vector<int>>& classes, at::Tensor* scores) {
    TORCH_CHECK(feature_map.dim() == 4, "grad_cam_of needs a feature map [N, K, h, w]");
    at::Tensor target, out_scores;
    const auto grads = class_gradients(feature_map, scores_of, classes, target, out_scores);
    std::vector<at::Tensor> maps;
    for (const auto& g : grads) maps.push_back(grad_cam(target, g));
    if (scores) *scores = out_scores;
    return at::stack(maps, 1);
}

ModelCams class_activation_maps(models::ClassifierModel& model, const at::Tensor& images, const std::vector<std::vector<int>>& classes) {
    EvalModeGuard eval(model);
    const bool multi_label = model.head_options().multi_label;
    auto scores_from_logits = [multi_label](const at::Tensor& logits) { return multi_label ? logits : softmax_log_odds(logits); };
    const at::Tensor input = images.to(at::kFloat);
    at::Tensor target, scores;
    std::vector<at::Tensor> grads;
    std::function<at::Tensor(const at::Tensor&)> scores_of;
    ModelCams out;
    std::vector<at::Tensor> maps;
    if (model.arch().body_output == models::BodyOutput::FeatureMap) {
        at::Tensor features;
        {
            at::NoGradGuard no_grad;
            features = model.body().features(input);
        }
        scores_of = [&](const at::Tensor& a) { return scores_from_logits(head_logits(model, models::adaptive_concat_pool(a))); };
        grads = class_gradients(features, scores_of, classes, target, scores);
        for (const auto& g : grads) maps.push_back(grad_cam(target, g));
    } else {
        // ViT: the tokens entering the last block.
        const VitParts vit = vit_parts(model.body());
        const int64_t n = input.size(0), dim = vit.conv_proj->options.out_channels();
        const int64_t patch = (*vit.conv_proj->options.stride())[0];
        TORCH_CHECK(input.size(2) % patch == 0 && input.size(3) % patch == 0, "ViT's input sides must be multiples of ", patch);
        const int64_t gh = input.size(2) / patch, gw = input.size(3) / patch;
        at::Tensor tokens;
        auto last = vit.layers->begin() + static_cast<std::ptrdiff_t>(vit.layers->size() - 1);
        {
            at::NoGradGuard no_grad;
            at::Tensor x = vit.conv_proj->forward(input).reshape({n, dim, gh * gw}).permute({0, 2, 1});
            x = at::cat({vit.class_token.expand({n, -1, -1}), x}, 1);
            x = x + models::detail::vit_position_embedding(vit.pos_embedding, gh, gw);
            for (auto it = vit.layers->begin(); it != last; ++it) x = it->forward(x);
            tokens = x;
        }
        scores_of = [&](const at::Tensor& t) {
            return scores_from_logits(head_logits(model, vit.ln->forward(last->forward(t)).select(1, 0)));
        };
        grads = class_gradients(tokens, scores_of, classes, target, scores);
        // Patch tokens [N, h*w, C] -> [N, C, h, w]; the class token has no place on the grid.
        auto grid = [&](const at::Tensor& t) { return t.narrow(1, 1, gh * gw).permute({0, 2, 1}).reshape({n, dim, gh, gw}); };
        for (const auto& g : grads) maps.push_back(grad_cam(grid(target), grid(g)));
    }
    out.maps = at::stack(maps, 1);
    // The scores are log-odds, log p / (1 - p), whichever the head: their sigmoid is p.
    out.probabilities = at::sigmoid(scores);
    return out;
}

// ---- images ----

namespace {

// Swaps the weight EMA in while the learner predicts with it, and back (bit for bit).
class EmaGuard {
public:
    explicit EmaGuard(train::Learner& learner) : learner_(learner) {
        if (learner.ema_weights_in_use()) {
            ema_ = const_cast<train::WeightEma*>(learner.ema());
            ema_->swap_with(learner.model());
        }
    }
    ~EmaGuard() {
        if (ema_) ema_->swap_with(learner_.model());
    }
    EmaGuard(const EmaGuard&) = delete;
    EmaGuard& operator=(const EmaGuard&) = delete;

private:
    train::Learner& learner_;
    train::WeightEma* ema_ = nullptr;
};

}  // namespace

CropBox crop_box(int cols, int rows, const data::AugmentSettings& s) {
    const int target = s.eval_side();
    const double ratio = static_cast<double>(target) / std::min(rows, cols);
    const int new_c = std::max(static_cast<int>(std::floor(cols * ratio)), target);
    const int new_r = std::max(static_cast<int>(std::floor(rows * ratio)), target);
    const int off_c = data::center_crop_offset(new_c, s.size), off_r = data::center_crop_offset(new_r, s.size);
    CropBox b;
    b.x0 = static_cast<double>(off_c) / new_c;
    b.x1 = static_cast<double>(off_c + s.size) / new_c;
    b.y0 = static_cast<double>(off_r) / new_r;
    b.y1 = static_cast<double>(off_r + s.size) / new_r;
    return b;
}

std::vector<ImageExplanation> explain_images(train::Learner& learner, const data::Dataset& dataset,
                                             const std::vector<ExplainRequest>& requests, const ExplainOptions& options) {
    models::ClassifierModel& model = learner.model();
    const int num_classes = model.num_classes();
    for (const auto& r : requests) {
        if (r.record >= dataset.images.size())
            throw UserError(fmt::format("image {} is not in the dataset ({} images)", r.record, dataset.images.size()));
        if (r.classes.empty()) throw UserError("no class to explain for " + dataset.images[r.record].path);
        for (int c : r.classes)
            if (c < 0 || c >= num_classes)
                throw UserError(fmt::format("class {} is out of range: the model has {} classes", c, num_classes));
    }
    const data::AugmentSettings settings = learner.augment_settings();
    const int size = settings.size;
    const at::Device device = learner.device();
    EmaGuard ema(learner);
    std::vector<ImageExplanation> out(requests.size());
    const std::size_t batch = static_cast<std::size_t>(std::max(1, options.batch_size));
    for (std::size_t start = 0; start < requests.size(); start += batch) {
        if (options.stop && options.stop->load()) throw Cancelled();
        const std::size_t end = std::min(requests.size(), start + batch);
        const std::size_t count = end - start;
        const std::size_t plane = 3 * static_cast<std::size_t>(size) * static_cast<std::size_t>(size);
        std::vector<float> pixels(count * plane);
        parallel_for(count, options.threads, [&](std::size_t i) {
            ImageExplanation& e = out[start + i];
            e.record = requests[start + i].record;
            try {
                data::DecodeOptions d;
                d.min_shorter_side = settings.eval_side();
                const data::DecodedImage img = data::decode_image_file(dataset.resolve(learner.project(), dataset.images[e.record]), d);
                e.crop = crop_box(img.rgb.cols, img.rgb.rows, settings);
                data::validation_transform(img.rgb, settings, pixels.data() + i * plane);
            } catch (const std::exception& ex) {
                e.error = ex.what();
            }
        });
        std::vector<std::size_t> good;
        for (std::size_t i = 0; i < count; ++i)
            if (out[start + i].error.empty()) good.push_back(i);
        if (!good.empty()) {
            at::Tensor images = at::empty({static_cast<int64_t>(good.size()), 3, size, size}, at::kFloat);
            std::size_t k = 0;
            for (const std::size_t i : good)
                std::copy_n(pixels.data() + i * plane, plane, images.data_ptr<float>() + (k++) * plane);
            // Every image gets as many maps as the longest list asks for (a short list repeats
            // its first class); only the asked ones are kept.
            std::size_t most = 0;
            for (const std::size_t i : good) most = std::max(most, requests[start + i].classes.size());
            std::vector<std::vector<int>> classes;
            for (const std::size_t i : good) {
                auto c = requests[start + i].classes;
                c.resize(most, c.front());
                classes.push_back(std::move(c));
            }
            const ModelCams cams = class_activation_maps(model, images.to(device), classes);
            const at::Tensor maps = cams.maps.to(at::kCPU).contiguous();
            const at::Tensor probs = cams.probabilities.to(at::kCPU).to(at::kDouble).contiguous();
            const int64_t h = maps.size(2), w = maps.size(3);
            for (std::size_t row = 0; row < good.size(); ++row) {
                ImageExplanation& e = out[start + good[row]];
                const auto& asked = requests[start + good[row]].classes;
                for (std::size_t j = 0; j < asked.size(); ++j) {
                    const at::Tensor m = maps[static_cast<int64_t>(row)][static_cast<int64_t>(j)];
                    Heatmap hm;
                    hm.cls = asked[j];
                    hm.width = static_cast<int>(w);
                    hm.height = static_cast<int>(h);
                    hm.peak = m.max().item<double>();
                    const float* v = m.data_ptr<float>();
                    hm.values.assign(v, v + h * w);
                    if (hm.peak > 0)
                        for (float& x : hm.values) x = static_cast<float>(x / hm.peak);
                    hm.probability = probs[static_cast<int64_t>(row)][asked[j]].item<double>();
                    e.maps.push_back(std::move(hm));
                }
            }
        }
        if (options.progress) options.progress(end, requests.size());
    }
    return out;
}

}  // namespace whisker::explain
