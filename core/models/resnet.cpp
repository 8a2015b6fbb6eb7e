// torchvision.models.resnet, module for module: resnet18/34 (BasicBlock), resnet50/101/152
// and resnext50_32x4d (Bottleneck, grouped 3x3 convolutions).
#include "architectures.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

namespace nn = torch::nn;

namespace whisker::models::detail {

namespace {

nn::Conv2d conv(int in, int out, int k, int stride = 1, int padding = 0, int groups = 1) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(padding).groups(groups).bias(false));
}

// A residual block: BasicBlock (two 3x3) or Bottleneck (1x1, grouped 3x3, 1x1 with 4x channels).
class ResidualBlockImpl : public nn::Module {
public:
    ResidualBlockImpl(bool bottleneck, int inplanes, int planes, int stride, int groups, int base_width)
        : bottleneck_(bottleneck) {
        const int expansion = bottleneck ? 4 : 1;
        if (bottleneck) {
            const int width = static_cast<int>(planes * (base_width / 64.0)) * groups;
            conv1_ = register_module("conv1", conv(inplanes, width, 1));
            bn1_ = register_module("bn1", nn::BatchNorm2d(width));
            conv2_ = register_module("conv2", conv(width, width, 3, stride, 1, groups));
            bn2_ = register_module("bn2", nn::BatchNorm2d(width));
            conv3_ = register_module("conv3", conv(width, planes * expansion, 1));
            bn3_ = register_module("bn3", nn::BatchNorm2d(planes * expansion));
        } else {
            conv1_ = register_module("conv1", conv(inplanes, planes, 3, stride, 1));
            bn1_ = register_module("bn1", nn::BatchNorm2d(planes));
            conv2_ = register_module("conv2", conv(planes, planes, 3, 1, 1));
            bn2_ = register_module("bn2", nn::BatchNorm2d(planes));
        }
        if (stride != 1 || inplanes != planes * expansion) {
            downsample_ = register_module(
                "downsample", nn::Sequential(conv(inplanes, planes * expansion, 1, stride), nn::BatchNorm2d(planes * expansion)));
        }
    }

    at::Tensor forward(const at::Tensor& x) {
        at::Tensor out = bn1_(conv1_(x)).relu_();
        if (bottleneck_) {
            out = bn2_(conv2_(out)).relu_();
            out = bn3_(conv3_(out));
        } else {
            out = bn2_(conv2_(out));
        }
        out += downsample_ ? downsample_->forward(x) : x;
        return out.relu_();
    }

private:
    bool bottleneck_;
    nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
    nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
    nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(ResidualBlock);

class ResNet : public ImageNetModel {
public:
    ResNet(Arch arch, bool bottleneck, std::vector<int> layers, int groups, int width_per_group, bool with_classifier,
           int num_classes)
        : ImageNetModel(arch, with_classifier), bottleneck_(bottleneck), groups_(groups), base_width_(width_per_group) {
        conv1_ = register_module("conv1", conv(3, 64, 7, 2, 3));
        bn1_ = register_module("bn1", nn::BatchNorm2d(64));
        relu_ = register_module("relu", nn::ReLU(nn::ReLUOptions(true)));
        maxpool_ = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
        layer1_ = register_module("layer1", make_layer(64, layers[0], 1));
        layer2_ = register_module("layer2", make_layer(128, layers[1], 2));
        layer3_ = register_module("layer3", make_layer(256, layers[2], 2));
        layer4_ = register_module("layer4", make_layer(512, layers[3], 2));
        if (with_classifier) {
            avgpool_ = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
            fc_ = register_module("fc", nn::Linear(512 * (bottleneck ? 4 : 1), num_classes));
        }
        // torchvision: Kaiming-normal (fan_out) convolutions, BatchNorm weight 1 and bias 0.
        for (auto& m : modules(false)) {
            if (auto* c = m->as<nn::Conv2d>()) {
                nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
            } else if (auto* b = m->as<nn::BatchNorm2d>()) {
                nn::init::ones_(b->weight);
                nn::init::zeros_(b->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override {
        at::Tensor y = maxpool_(relu_(bn1_(conv1_(x))));
        return layer4_->forward(layer3_->forward(layer2_->forward(layer1_->forward(y))));
    }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return fc_(avgpool_(features(x)).flatten(1));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        return {{conv1_.ptr(), bn1_.ptr(), relu_.ptr(), maxpool_.ptr(), layer1_.ptr(), layer2_.ptr()},
                {layer3_.ptr(), layer4_.ptr()}};
    }

private:
    nn::Sequential make_layer(int planes, int blocks, int stride) {
        nn::Sequential seq;
        const int expansion = bottleneck_ ? 4 : 1;
        seq->push_back(ResidualBlock(bottleneck_, inplanes_, planes, stride, groups_, base_width_));
        inplanes_ = planes * expansion;
        for (int i = 1; i < blocks; ++i) seq->push_back(ResidualBlock(bottleneck_, inplanes_, planes, 1, groups_, base_width_));
        return seq;
    }

    bool bottleneck_;
    int groups_, base_width_;
    int inplanes_ = 64;
    nn::Conv2d conv1_{nullptr};
    nn::BatchNorm2d bn1_{nullptr};
    nn::ReLU relu_{nullptr};
    nn::MaxPool2d maxpool_{nullptr};
    nn::Sequential layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr}, layer4_{nullptr};
    nn::AdaptiveAvgPool2d avgpool_{nullptr};
    nn::Linear fc_{nullptr};
};

}  // namespace

std::shared_ptr<ImageNetModel> make_resnet(Arch arch, bool with_classifier, int num_classes) {
    switch (arch) {
        case Arch::ResNet18: return std::make_shared<ResNet>(arch, false, std::vector<int>{2, 2, 2, 2}, 1, 64, with_classifier, num_classes);
        case Arch::ResNet34: return std::make_shared<ResNet>(arch, false, std::vector<int>{3, 4, 6, 3}, 1, 64, with_classifier, num_classes);
        case Arch::ResNet50: return std::make_shared<ResNet>(arch, true, std::vector<int>{3, 4, 6, 3}, 1, 64, with_classifier, num_classes);
        case Arch::ResNet101: return std::make_shared<ResNet>(arch, true, std::vector<int>{3, 4, 23, 3}, 1, 64, with_classifier, num_classes);
        case Arch::ResNet152: return std::make_shared<ResNet>(arch, true, std::vector<int>{3, 8, 36, 3}, 1, 64, with_classifier, num_classes);
        case Arch::ResNeXt50_32x4d: return std::make_shared<ResNet>(arch, true, std::vector<int>{3, 4, 6, 3}, 32, 4, with_classifier, num_classes);
        default: throw std::invalid_argument("not a ResNet");
    }
}

}  // namespace whisker::models::detail
