// torchvision.models.vgg: vgg16 and vgg16_bn (configuration "D").
#include "architectures.h"
#include "layers.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

class VGG : public ImageNetModel {
public:
    VGG(Arch arch, bool batch_norm, bool with_classifier, int num_classes) : ImageNetModel(arch, with_classifier) {
        const int cfg[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};  // 0 = "M"
        nn::Sequential features;
        int in = 3;
        for (int v : cfg) {
            if (v == 0) {
                features->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
                continue;
            }
            features->push_back(nn::Conv2d(nn::Conv2dOptions(in, v, 3).padding(1)));
            if (batch_norm) features->push_back(nn::BatchNorm2d(v));
            features->push_back(nn::ReLU(nn::ReLUOptions(true)));
            in = v;
        }
        features_ = register_module("features", features);
        // fastai 0.7 splits vgg16_bn's features at index 22 (the ReLU after conv3_3); the
        // same place in plain vgg16 is index 15.
        split_ = batch_norm ? 22 : 15;
        if (with_classifier) {
            avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(7)));
            classifier_ = register_module(
                "classifier",
                nn::Sequential(nn::Linear(512 * 7 * 7, 4096), nn::ReLU(nn::ReLUOptions(true)), nn::Dropout(0.5),
                               nn::Linear(4096, 4096), nn::ReLU(nn::ReLUOptions(true)), nn::Dropout(0.5),
                               nn::Linear(4096, num_classes)));
        }
        for (auto& m : modules(false)) {
            if (auto* c = m->as<nn::Conv2d>()) {
                nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
                nn::init::zeros_(c->bias);
            } else if (auto* b = m->as<nn::BatchNorm2d>()) {
                nn::init::ones_(b->weight);
                nn::init::zeros_(b->bias);
            } else if (auto* l = m->as<nn::Linear>()) {
                nn::init::normal_(l->weight, 0, 0.01);
                nn::init::zeros_(l->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override { return features_->forward(x); }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return classifier_->forward(avgpool_(features(x)).flatten(1));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        return split_children(*features_, split_);
    }

private:
    nn::Sequential features_{nullptr};
    nn::AdaptiveAvgPool2d avgpool_{nullptr};
    nn::Sequential classifier_{nullptr};
    std::size_t split_ = 22;
};

}  // namespace

std::shared_ptr<ImageNetModel> make_vgg(Arch arch, bool with_classifier, int num_classes) {
    return std::make_shared<VGG>(arch, arch == Arch::VGG16_BN, with_classifier, num_classes);
}

}  // namespace whisker::models::detail
