#pragma once
// Grad-CAM: where in an image the model looked for a class (Selvaraju et al., 2017; fastai
// 0.7's lesson 7 drew class-activation maps on Dogs vs. Cats).
//
//   auto maps = explain::explain_images(learner, dataset, {{record, {predicted, actual}}});
//   maps[0].maps[0].values   // 7 x 7 in [0, 1] for a ResNet at 224 px, over maps[0].crop
//
// What is differentiated: the class's log-odds, log p_c / (1 - p_c), computed from the head's
// logits (the output before LogSoftmax; for a softmax over C classes it is
// z_c - logsumexp_{j != c} z_j, for multi-label sigmoid heads the logit z_c itself). Unlike the
// log-probability it does not saturate when the model is sure (so a confident prediction still
// has a map), and unlike the bare logit it is discriminative: for two classes it is z_c - z_other,
// so the map of the predicted class shows what made it win and the other class's map what
// argued for the other one.
//
// Where: the activations A the head reads —
//   feature-map bodies (ResNet, ResNeXt, VGG, DenseNet, ConvNeXt, EfficientNet, RegNet,
//     MobileNetV3, and Swin, whose final normed stage is permuted to [N, C, h, w]): the body's
//     output, i.e. the last stage's feature map before the head's pooling;
//   ViT: the tokens the last encoder block reads (the output of the block before it), the class
//     token dropped and the patch tokens reshaped to the patch grid (14 x 14 at 224 px). (The last
//     block's own output patch tokens cannot serve: only its class token reaches the head, so
//     their gradient is zero.)
// map = ReLU(sum_k alpha_k A_k) with alpha_k = mean over positions of d(score)/dA_k.
//
// Guarantees: the learner is left bit for bit as it was — weights (torch::autograd::grad
// computes the gradients, parameters' .grad are not touched), BatchNorm statistics (eval mode;
// every module's train/eval flag is restored exactly), the random state (nothing random runs).
// Arithmetic is float32 whatever the learner's precision (heatmaps are small, and 16-bit
// gradients of a sum would be coarse). The image is the plain validation view (the centre
// crop), also for predictions made with TTA. The body runs without a graph; only the head (ViT:
// the last block and the head) is differentiated, so memory stays that of inference.
// Threading: call from the thread that owns the learner (the workbench's worker thread).

#include "whisker/data/dataset.h"
#include "whisker/explain/heatmap.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <vector>

namespace whisker::data {
struct AugmentSettings;
}
namespace whisker::models {
class ClassifierModel;
}
namespace whisker::train {
class Learner;
}

namespace whisker::explain {

// ---- for programs: images in, plain heatmaps out ----

struct ExplainRequest {
    std::size_t record = 0;         // Dataset::images index
    std::vector<int> classes;       // the classes to explain (e.g. predicted and actual); at least one
};

struct ExplainOptions {
    int batch_size = 16;            // images per forward pass
    int threads = 0;                // decoding threads (0 = all cores)
    // Called after each batch: images done, images in all.
    std::function<void(std::size_t done, std::size_t total)> progress;
    const std::atomic<bool>* stop = nullptr;   // set: Cancelled is thrown before the next batch
};

// Heatmaps of `requests` with the learner's current weights (its weight EMA instead while
// Learner::use_ema_weights is on, as predict() does). `dataset` resolves the records (the
// dataset the predictions were made on; its classes must be the learner's). An image that
// cannot be read gets `error` and no maps; nothing throws for it. UserError for a class out of
// range, Cancelled when `stop` was set.
std::vector<ImageExplanation> explain_images(train::Learner& learner, const data::Dataset& dataset,
                                             const std::vector<ExplainRequest>& requests, const ExplainOptions& options = {});

// Where the validation transform's centre crop (what the model sees) lies in an upright image
// of cols x rows pixels: fastai's scale_min to settings.eval_side(), then a centre crop of
// settings.size (data/transforms.h), as fractions of the image.
CropBox crop_box(int cols, int rows, const data::AugmentSettings& settings);

// ---- for tests and other front ends: tensors ----

// Grad-CAM from activations [N, K, h, w] and the score's gradient with respect to them (same
// shape): ReLU(sum_k mean_hw(gradients_k) * activations_k), [N, h, w]. Unnormalised.
at::Tensor grad_cam(const at::Tensor& activations, const at::Tensor& gradients);

// Every class's log-odds under a softmax over `logits` [N, C]: z_c - logsumexp_{j != c} z_j,
// [N, C] (C = 1: the logits).
at::Tensor softmax_log_odds(const at::Tensor& logits);

// Grad-CAM of a score over a feature map: `feature_map` [N, K, h, w] is what a network computed
// (any graph is cut off); `scores_of` maps it to scores [N, C] (what the rest of the network
// does, image by image); classes[i] lists the classes of image i, the same number for every
// image. Returns the maps [N, classes[0].size(), h, w] and, in `scores` when given, scores_of's
// output. Rows must not interact in scores_of (true of every network in eval mode).
at::Tensor grad_cam_of(const at::Tensor& feature_map, const std::function<at::Tensor(const at::Tensor&)>& scores_of,
                       const std::vector<std::vector<int>>& classes, at::Tensor* scores = nullptr);

struct ModelCams {
    at::Tensor maps;                // [N, K, h, w], unnormalised, >= 0
    at::Tensor probabilities;       // [N, num_classes] of the model on these images
};

// The maps of a fastai classifier on a batch of normalised images [N, 3, S, S] (on the model's
// device), for classes[i] (K per image). Switches the model to eval mode for the call and
// restores every module's mode; float32.
ModelCams class_activation_maps(models::ClassifierModel& model, const at::Tensor& images,
                                const std::vector<std::vector<int>>& classes);

}  // namespace whisker::explain
