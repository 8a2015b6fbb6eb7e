// torchvision.models.densenet: densenet121 (growth rate 32, blocks 6-12-24-16, bn_size 4).
#include "architectures.h"

#include <ATen/ATen.h>
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

nn::Conv2d conv(int in, int out, int k, int stride = 1, int padding = 0) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(padding).bias(false));
}

class DenseLayerImpl : public nn::Module {
public:
    DenseLayerImpl(int in, int growth, int bn_size) {
        norm1_ = register_module("norm1", nn::BatchNorm2d(in));
        relu1_ = register_module("relu1", nn::ReLU(nn::ReLUOptions(true)));
        conv1_ = register_module("conv1", conv(in, bn_size * growth, 1));
        norm2_ = register_module("norm2", nn::BatchNorm2d(bn_size * growth));
        relu2_ = register_module("relu2", nn::ReLU(nn::ReLUOptions(true)));
        conv2_ = register_module("conv2", conv(bn_size * growth, growth, 3, 1, 1));
    }
    at::Tensor forward(const at::Tensor& concatenated) {
        return conv2_(relu2_(norm2_(conv1_(relu1_(norm1_(concatenated))))));
    }

private:
    nn::BatchNorm2d norm1_{nullptr}, norm2_{nullptr};
    nn::ReLU relu1_{nullptr}, relu2_{nullptr};
    nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
};
TORCH_MODULE(DenseLayer);

class DenseBlockImpl : public nn::Module {
public:
    DenseBlockImpl(int layers, int in, int growth, int bn_size) {
        for (int i = 0; i < layers; ++i)
            layers_.push_back(register_module("denselayer" + std::to_string(i + 1), DenseLayer(in + i * growth, growth, bn_size)));
    }
    at::Tensor forward(const at::Tensor& x) {
        std::vector<at::Tensor> features{x};
        for (auto& layer : layers_) features.push_back(layer->forward(at::cat(features, 1)));
        return at::cat(features, 1);
    }

private:
    std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

class TransitionImpl : public nn::Module {
public:
    TransitionImpl(int in, int out) {
        norm_ = register_module("norm", nn::BatchNorm2d(in));
        relu_ = register_module("relu", nn::ReLU(nn::ReLUOptions(true)));
        conv_ = register_module("conv", conv(in, out, 1));
        pool_ = register_module("pool", nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(2)));
    }
    at::Tensor forward(const at::Tensor& x) { return pool_(conv_(relu_(norm_(x)))); }

private:
    nn::BatchNorm2d norm_{nullptr};
    nn::ReLU relu_{nullptr};
    nn::Conv2d conv_{nullptr};
    nn::AvgPool2d pool_{nullptr};
};
TORCH_MODULE(Transition);

class DenseNet : public ImageNetModel {
public:
    DenseNet(Arch arch, bool with_classifier, int num_classes) : ImageNetModel(arch, with_classifier) {
        const int growth = 32, bn_size = 4;
        const int blocks[] = {6, 12, 24, 16};
        // The children have different module types, so they are registered by name on a plain
        // module called "features" (keys "features.conv0.weight", … as in torchvision).
        features_plain_ = register_module("features", std::make_shared<nn::Module>());
        int num = 64;
        children_.push_back(features_plain_->register_module("conv0", conv(3, num, 7, 2, 3)));
        children_.push_back(features_plain_->register_module("norm0", nn::BatchNorm2d(num)));
        children_.push_back(features_plain_->register_module("relu0", nn::ReLU(nn::ReLUOptions(true))));
        children_.push_back(
            features_plain_->register_module("pool0", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1))));
        for (int i = 0; i < 4; ++i) {
            children_.push_back(
                features_plain_->register_module("denseblock" + std::to_string(i + 1), DenseBlock(blocks[i], num, growth, bn_size))
                    );
            num += blocks[i] * growth;
            if (i != 3) {
                children_.push_back(
                    features_plain_->register_module("transition" + std::to_string(i + 1), Transition(num, num / 2)));
                num /= 2;
            }
        }
        children_.push_back(features_plain_->register_module("norm5", nn::BatchNorm2d(num)));
        if (with_classifier) classifier_ = register_module("classifier", nn::Linear(num, num_classes));
        for (auto& m : modules(false)) {
            if (auto* c = m->as<nn::Conv2d>()) {
                nn::init::kaiming_normal_(c->weight);
            } else if (auto* b = m->as<nn::BatchNorm2d>()) {
                nn::init::ones_(b->weight);
                nn::init::zeros_(b->bias);
            } else if (auto* l = m->as<nn::Linear>()) {
                nn::init::zeros_(l->bias);
            }
        }
    }

    at::Tensor features(const at::Tensor& x) override {
        at::Tensor y = x;
        for (auto& child : children_) y = call(child, y);
        return y;
    }

    at::Tensor forward(const at::Tensor& x) override {
        TORCH_CHECK(has_classifier_, "this ", info().name, " was built without its ImageNet classifier");
        return classifier_(at::adaptive_avg_pool2d(features(x).relu(), {1, 1}).flatten(1));
    }

    std::vector<std::vector<std::shared_ptr<nn::Module>>> body_groups() override {
        // fastai 0.7: children of features split at 7 (conv0 … transition2 | denseblock3 … norm5)
        return {{children_.begin(), children_.begin() + 7}, {children_.begin() + 7, children_.end()}};
    }

private:
    static at::Tensor call(const std::shared_ptr<nn::Module>& m, const at::Tensor& x) {
        if (auto* c = m->as<nn::Conv2d>()) return c->forward(x);
        if (auto* b = m->as<nn::BatchNorm2d>()) return b->forward(x);
        if (auto* r = m->as<nn::ReLU>()) return r->forward(x);
        if (auto* p = m->as<nn::MaxPool2d>()) return p->forward(x);
        if (auto* d = m->as<DenseBlockImpl>()) return d->forward(x);
        if (auto* t = m->as<TransitionImpl>()) return t->forward(x);
        throw std::logic_error("unexpected module in DenseNet features");
    }

    std::shared_ptr<nn::Module> features_plain_;
    std::vector<std::shared_ptr<nn::Module>> children_;
    nn::Linear classifier_{nullptr};
};

}  // namespace

std::shared_ptr<ImageNetModel> make_densenet(Arch arch, bool with_classifier, int num_classes) {
    return std::make_shared<DenseNet>(arch, with_classifier, num_classes);
}

}  // namespace whisker::models::detail
