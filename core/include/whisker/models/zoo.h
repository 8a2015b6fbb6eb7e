#pragma once
// The model zoo: torchvision's ImageNet classifiers rebuilt as LibTorch modules whose
// parameter and buffer names are exactly torchvision's state-dict keys, so torchvision's
// weight files load unchanged and compute what torchvision computes.
//
// Each architecture exists as a plain ImageNet classifier (torchvision's own head, `fc` or
// `classifier`) and as a body for the fastai learner (the same module without that head;
// see learner_model.h). Threading: modules follow LibTorch's rules (use one from one thread
// at a time; grad mode is thread-local).

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::models {

enum class Arch {
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNeXt50_32x4d, VGG16, VGG16_BN, DenseNet121,
    ConvNeXt_Tiny, ConvNeXt_Small, ConvNeXt_Base,
    EfficientNet_B0, EfficientNet_B1, EfficientNet_B2, EfficientNet_B3, EfficientNet_B4,
    EfficientNet_V2_S, EfficientNet_V2_M,
    RegNet_Y_400MF, RegNet_Y_800MF, RegNet_Y_1_6GF, RegNet_Y_3_2GF, RegNet_Y_8GF, RegNet_Y_16GF,
    MobileNet_V3_Large, MobileNet_V3_Small,
    Swin_T, Swin_S, ViT_B_16,
};

// What the body hands the head: a feature map [N, C, h, w] (pooled by the head's
// AdaptiveConcatPool2d) or one token per image [N, C] (ViT's class token, used as it is).
enum class BodyOutput { FeatureMap, Token };

// How the weights were evaluated on ImageNet (torchvision's transforms of that weight set):
// the shorter side resized to `resize` with `interpolation`, then a centre crop of `crop`.
struct EvalTransform {
    int resize;
    int crop;
    std::string interpolation;     // "bilinear" or "bicubic"
};

struct ArchInfo {
    Arch arch;
    std::string name;              // torchvision's name: "resnet34"
    std::string family;            // "ResNet", "ConvNeXt", "EfficientNet", "Swin", …
    std::string weights_file;      // torchvision's ImageNet weights: "resnet34-b627a593.pth"
    std::string weights_name;      // torchvision's name of that weight set: "IMAGENET1K_V1"
    int body_channels;             // channels of the body's output
    std::string classifier_prefix; // the ImageNet head's key prefix: "fc.", "classifier.", "head."
    BodyOutput body_output;
    EvalTransform eval;            // eval.crop is the architecture's default image size
    std::int64_t parameters;       // torchvision's count for the whole ImageNet classifier
    double imagenet_top1;          // torchvision's published ImageNet-1K top-1 of the weights (%)
    double gflops;                 // torchvision's published GFLOPs (multiply-accumulates) at eval.crop
    int size_multiple;             // input sizes must be multiples of this (Swin 32, ViT 16)
    int min_size;                  // smallest input size that works

    int default_size() const { return eval.crop; }
    // The validation view's resize as a ratio of the image size: the weights' resize/crop
    // (e.g. 236/224 for convnext_tiny), except for the architectures of fastai 0.7's time
    // (ResNet, ResNeXt, VGG, DenseNet), which keep its Scale(sz) + CenterCrop(sz): 1.
    double default_eval_resize_ratio() const;
    // The weights file's SHA-256 prefix, from its name (torch.hub's convention).
    std::string sha256_prefix() const;
    // Empty when `size` suits the architecture, else what is wrong and the sizes to use.
    std::string size_problem(int size) const;
};

const std::vector<ArchInfo>& all_architectures();
const ArchInfo& arch_info(Arch arch);
// Throws UserError listing the known names when `name` is not one of them.
Arch parse_arch(const std::string& name);
// Throws UserError with size_problem() when the size does not suit the architecture.
void check_input_size(Arch arch, int size);

// A torchvision-compatible network.
class ImageNetModel : public torch::nn::Module {
public:
    // The whole ImageNet classifier: logits [N, num_classes]. Needs the classifier head.
    virtual at::Tensor forward(const at::Tensor& images) = 0;
    // The body: the feature map before pooling and classifier, [N, body_channels, h, w], or
    // for BodyOutput::Token bodies the token the classifier reads, [N, body_channels].
    virtual at::Tensor features(const at::Tensor& images) = 0;
    // fastai 0.7's two body layer groups (early layers, late layers), as modules.
    virtual std::vector<std::vector<std::shared_ptr<torch::nn::Module>>> body_groups() = 0;
    // Parameters registered directly on a module that spans both groups (ViT's class token
    // and position embeddings), per body group; the groups' modules hold all the others.
    virtual std::vector<std::vector<at::Tensor>> body_group_loose_parameters() { return {{}, {}}; }
    const ArchInfo& info() const { return arch_info(arch_); }
    bool has_classifier() const { return has_classifier_; }

protected:
    ImageNetModel(Arch arch, bool has_classifier) : arch_(arch), has_classifier_(has_classifier) {}
    Arch arch_;
    bool has_classifier_;
};

// Builds an architecture with torchvision's random initialisation. Without the classifier,
// only the body's modules exist (and forward() throws).
std::shared_ptr<ImageNetModel> create_imagenet_model(Arch arch, bool with_classifier = true, int num_classes = 1000);

// Number of trainable parameters (for tests and the UI).
std::int64_t parameter_count(const torch::nn::Module& module);

}  // namespace whisker::models
