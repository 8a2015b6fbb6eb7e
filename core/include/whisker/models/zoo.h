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

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::models {

enum class Arch { ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNeXt50_32x4d, VGG16, VGG16_BN, DenseNet121 };

struct ArchInfo {
    Arch arch;
    std::string name;              // torchvision's name: "resnet34"
    std::string weights_file;      // torchvision's ImageNet weights: "resnet34-b627a593.pth"
    int body_channels;             // channels of the body's output feature map
    std::string classifier_prefix; // the ImageNet head's key prefix: "fc." or "classifier."
    // The weights file's SHA-256 prefix, from its name (torch.hub's convention).
    std::string sha256_prefix() const;
};

const std::vector<ArchInfo>& all_architectures();
const ArchInfo& arch_info(Arch arch);
// Throws UserError listing the known names when `name` is not one of them.
Arch parse_arch(const std::string& name);

// A torchvision-compatible network.
class ImageNetModel : public torch::nn::Module {
public:
    // The whole ImageNet classifier: logits [N, num_classes]. Needs the classifier head.
    virtual at::Tensor forward(const at::Tensor& images) = 0;
    // The body: the feature map before pooling and classifier, [N, body_channels, h, w].
    virtual at::Tensor features(const at::Tensor& images) = 0;
    // fastai 0.7's two body layer groups (early layers, late layers), as modules.
    virtual std::vector<std::vector<std::shared_ptr<torch::nn::Module>>> body_groups() = 0;
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
