#pragma once
// The network the learner trains: a pretrained body cut before its pooling and classifier,
// then fastai's head.
//
// fastai 0.7 (ConvLearner.pretrained), the default:
//   AdaptiveConcatPool2d (max then average, 2 x channels), Flatten,
//   [BatchNorm1d(ni), Dropout(p_i), Linear(ni, n_i), ReLU] for each extra layer (xtra_fc),
//   BatchNorm1d, Dropout(p_last), Linear(→ classes), LogSoftmax (Sigmoid for multi-label)
//   with xtra_fc = {512}, ps = {0.25, 0.5}; Dropout layers with p = 0 are left out.
//   Linear layers Kaiming-normal (fan_in), biases 0.
// fastai v2 (HeadStyle::FastaiV2): the same without the final activation (the loss takes
// logits) and Linear layers without bias (each follows a BatchNorm).
//
// Three layer groups, for differential learning rates and freezing: the body's two groups
// (zoo.h) and the head. Parameter names: "body.<torchvision key>" and "head.<index>.…".

#include "whisker/models/zoo.h"

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <filesystem>
#include <optional>

#include <string>
#include <vector>

namespace whisker::models {

enum class HeadStyle { Fastai07, FastaiV2 };

struct HeadOptions {
    std::vector<int> xtra_fc{512};      // sizes of the extra hidden layers
    std::vector<double> ps{0.25, 0.5};  // dropout before each Linear (xtra_fc.size() + 1 values)
    HeadStyle style = HeadStyle::Fastai07;
    bool multi_label = false;           // Sigmoid instead of LogSoftmax (Fastai07 style)
    // Sets every dropout to p (fastai's scalar `ps`).
    static HeadOptions with_dropout(double p, std::vector<int> xtra_fc = {512});
};

// Where the head's dropout masks come from in training mode. Without one, PyTorch's global
// generator (per process, as nn::Dropout). With one, the mask of a row depends only on `seed`,
// the Dropout layer and the row's position in the *global* batch: this forward's row i is row
// first_row + i * row_stride of that batch. A data-parallel rank (which holds rows rank,
// rank + world, … of every global batch, data::shard_positions) passes {seed, rank, world}, one
// process {seed, 0, 1}: both drop the same units of the same images, so any number of
// processes trains exactly like one. The Learner draws `seed` per (seed, epoch, batch).
struct DropoutDraw {
    std::uint64_t seed = 0;
    std::int64_t first_row = 0;
    std::int64_t row_stride = 1;
};

class ClassifierModel : public torch::nn::Module {
public:
    ClassifierModel(Arch arch, int num_classes, HeadOptions head = {});

    // Log-probabilities (Fastai07) or logits (FastaiV2), [N, num_classes].
    at::Tensor forward(const at::Tensor& images);
    // The body's pooled activations, [N, head_inputs()]: what precompute caches (for a token
    // body, the token itself).
    at::Tensor pooled_features(const at::Tensor& images);
    // The head alone, on pooled activations.
    at::Tensor forward_head(const at::Tensor& activations);

    int head_inputs() const { return head_inputs_; }    // nf: 2 x the body's channels (token bodies: 1 x)
    int num_classes() const { return num_classes_; }
    const ArchInfo& arch() const { return body_->info(); }
    const HeadOptions& head_options() const { return head_options_; }
    // The head's dropout masks for the following training forwards (see DropoutDraw);
    // nullopt: PyTorch's generator again.
    void set_dropout_draw(std::optional<DropoutDraw> draw) { dropout_draw_ = draw; }
    const std::optional<DropoutDraw>& dropout_draw() const { return dropout_draw_; }
    ImageNetModel& body() { return *body_; }
    torch::nn::Sequential& head() { return head_; }

    // The three layer groups: early body, late body, head.
    std::vector<std::vector<std::shared_ptr<torch::nn::Module>>> layer_groups();
    // Parameters of each layer group (all of them, frozen or not), including the body's loose
    // parameters (ViT's class token and position embeddings).
    std::vector<std::vector<at::Tensor>> layer_group_parameters();

private:
    std::shared_ptr<ImageNetModel> body_;
    torch::nn::Sequential head_{nullptr};
    HeadOptions head_options_;
    int head_inputs_;
    int num_classes_;
    bool token_body_ = false;
    std::optional<DropoutDraw> dropout_draw_;
};

// AdaptiveConcatPool2d + Flatten: [N, C, h, w] -> [N, 2C] (max-pooled, then average-pooled).
at::Tensor adaptive_concat_pool(const at::Tensor& feature_map);

// Writes the trained model as safetensors with torchvision-style keys (the body's keys as in
// torchvision, the head under "head.") plus `<path>.json` describing classes, architecture,
// input size, normalisation and the head, so a Python user can rebuild it. Atomic writes.
void export_model(ClassifierModel& model, const std::vector<std::string>& classes, int input_size,
                  const std::filesystem::path& path);

}  // namespace whisker::models
