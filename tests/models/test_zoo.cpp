#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/learner_model.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <set>

using namespace whisker;
using namespace whisker::models;

namespace {
std::set<std::string> keys_of(const torch::nn::Module& m) {
    std::set<std::string> out;
    for (const auto& [k, v] : state_dict_of(m)) out.insert(k);
    return out;
}
}  // namespace

TEST(Zoo, ParameterCountsMatchTorchvision) {
    // torchvision's published parameter counts (its weights' meta "num_params", copied into
    // the architecture table; ArchTable.MatchesTorchvision checks the copy).
    EXPECT_EQ(arch_info(Arch::ResNet34).parameters, 21797672);
    EXPECT_EQ(arch_info(Arch::ConvNeXt_Tiny).parameters, 28589128);
    for (const auto& info : all_architectures())
        EXPECT_EQ(parameter_count(*create_imagenet_model(info.arch)), info.parameters) << info.name;
}

TEST(Zoo, KeysHaveTorchvisionNames) {
    const auto r18 = keys_of(*create_imagenet_model(Arch::ResNet18));
    EXPECT_TRUE(r18.count("conv1.weight"));
    EXPECT_TRUE(r18.count("layer1.0.bn2.running_var"));
    EXPECT_TRUE(r18.count("layer2.0.downsample.0.weight"));
    EXPECT_FALSE(r18.count("layer1.0.downsample.0.weight"));
    EXPECT_TRUE(r18.count("fc.bias"));
    EXPECT_EQ(r18.size(), 122u);  // len(torchvision.models.resnet18().state_dict())
    const auto r50 = keys_of(*create_imagenet_model(Arch::ResNet50));
    EXPECT_TRUE(r50.count("layer1.0.downsample.1.num_batches_tracked"));
    EXPECT_TRUE(r50.count("layer4.2.conv3.weight"));
    const auto vgg = keys_of(*create_imagenet_model(Arch::VGG16_BN));
    EXPECT_TRUE(vgg.count("features.41.running_mean"));
    EXPECT_TRUE(vgg.count("classifier.6.weight"));
    const auto dn = keys_of(*create_imagenet_model(Arch::DenseNet121));
    EXPECT_TRUE(dn.count("features.denseblock1.denselayer1.norm1.weight"));
    EXPECT_TRUE(dn.count("features.transition3.conv.weight"));
    EXPECT_TRUE(dn.count("features.norm5.running_var"));
    EXPECT_EQ(dn.size(), 727u);  // len(torchvision.models.densenet121().state_dict())
    // As a body, the ImageNet head is simply absent.
    const auto body = keys_of(*create_imagenet_model(Arch::ResNet18, false));
    EXPECT_FALSE(body.count("fc.weight"));
    EXPECT_EQ(body.size(), 120u);
}

TEST(Zoo, EveryArchitectureRunsAndItsBodyHasTheAdvertisedChannels) {
    torch::NoGradGuard no_grad;
    const at::Tensor x = at::randn({1, 3, 64, 64});
    for (const auto& info : all_architectures()) {
        auto m = create_imagenet_model(info.arch);
        m->eval();
        EXPECT_EQ(m->forward(x).sizes(), (at::IntArrayRef{1, 1000})) << info.name;
        EXPECT_EQ(m->features(x).size(1), info.body_channels) << info.name;
    }
}

TEST(Zoo, NamesParseAndUnknownNamesListTheChoices) {
    EXPECT_EQ(parse_arch("resnext50_32x4d"), Arch::ResNeXt50_32x4d);
    try {
        parse_arch("resnet35");
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(e.hint().find("resnet34"), std::string::npos);
    }
    EXPECT_EQ(arch_info(Arch::ResNet34).sha256_prefix(), "b627a593");
    EXPECT_EQ(arch_info(Arch::VGG16_BN).weights_file, "vgg16_bn-6c64b313.pth");
}

TEST(LearnerModel, HeadShapesPerArchitecture) {
    const std::map<Arch, int> nf{{Arch::ResNet18, 1024}, {Arch::ResNet34, 1024}, {Arch::ResNet50, 4096},
                                 {Arch::ResNeXt50_32x4d, 4096}, {Arch::VGG16_BN, 1024}, {Arch::DenseNet121, 2048}};
    for (const auto& [arch, n] : nf) {
        ClassifierModel m(arch, 2);
        EXPECT_EQ(m.head_inputs(), n) << arch_info(arch).name;
        auto head = m.head();
        ASSERT_EQ(head->size(), 8u);
        EXPECT_NE(head[0]->as<torch::nn::BatchNorm1d>(), nullptr);
        EXPECT_EQ(head[0]->as<torch::nn::BatchNorm1d>()->options.num_features(), n);
        EXPECT_DOUBLE_EQ(head[1]->as<torch::nn::Dropout>()->options.p(), 0.25);
        EXPECT_EQ(head[2]->as<torch::nn::Linear>()->weight.sizes(), (at::IntArrayRef{512, n}));
        EXPECT_DOUBLE_EQ(head[5]->as<torch::nn::Dropout>()->options.p(), 0.5);
        EXPECT_EQ(head[6]->as<torch::nn::Linear>()->weight.sizes(), (at::IntArrayRef{2, 512}));
    }
}

TEST(LearnerModel, ForwardGivesLogProbabilitiesAndPrecomputeSplitsExactly) {
    torch::NoGradGuard no_grad;
    ClassifierModel m(Arch::ResNet18, 3);
    m.eval();
    const at::Tensor x = at::randn({4, 3, 64, 64});
    const at::Tensor out = m.forward(x);
    EXPECT_EQ(out.sizes(), (at::IntArrayRef{4, 3}));
    EXPECT_TRUE(at::allclose(out.exp().sum(1), at::ones({4}), 1e-5, 1e-5));
    // What precompute caches, fed to the head, gives the full model's output.
    const at::Tensor act = m.pooled_features(x);
    EXPECT_EQ(act.sizes(), (at::IntArrayRef{4, 1024}));
    EXPECT_TRUE(at::equal(m.forward_head(act), out));
    // AdaptiveConcatPool2d: max first, then mean.
    const at::Tensor fm = m.body().features(x);
    EXPECT_TRUE(at::equal(act.narrow(1, 0, 512), std::get<0>(fm.flatten(2).max(2))));
    EXPECT_TRUE(at::allclose(act.narrow(1, 512, 512), fm.mean({2, 3})));
}

TEST(LearnerModel, HeadOptions) {
    HeadOptions v2;
    v2.style = HeadStyle::FastaiV2;
    ClassifierModel m(Arch::ResNet18, 5, v2);
    EXPECT_EQ(m.head()->size(), 7u);  // no LogSoftmax
    EXPECT_FALSE(m.head()[2]->as<torch::nn::Linear>()->bias.defined());
    EXPECT_FALSE(m.head()[6]->as<torch::nn::Linear>()->bias.defined());
    // Extra layers and dropout everywhere; p = 0 leaves the Dropout out.
    ClassifierModel wide(Arch::ResNet18, 2, HeadOptions::with_dropout(0.0, {512, 256}));
    EXPECT_EQ(wide.head()->size(), 9u);  // (BN, Linear, ReLU) x 2 + BN, Linear, LogSoftmax
    EXPECT_THROW(ClassifierModel(Arch::ResNet18, 2, HeadOptions{{512}, {0.5}}), UserError);
}

TEST(LearnerModel, HeadInitIsKaimingNormalWithZeroBias) {
    torch::manual_seed(1);
    ClassifierModel m(Arch::ResNet34, 2);
    const at::Tensor w = m.head()[2]->as<torch::nn::Linear>()->weight;
    EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / 1024), 0.002);
    EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.002);
    EXPECT_EQ(m.head()[2]->as<torch::nn::Linear>()->bias.abs().sum().item<double>(), 0.0);
}

TEST(LearnerModel, LayerGroupsCoverEveryParameterOnce) {
    for (Arch arch : {Arch::ResNet34, Arch::VGG16_BN, Arch::VGG16, Arch::DenseNet121}) {
        ClassifierModel m(arch, 2);
        const auto groups = m.layer_group_parameters();
        ASSERT_EQ(groups.size(), 3u);
        std::set<const void*> seen;
        std::int64_t total = 0;
        for (const auto& g : groups)
            for (const auto& p : g) {
                EXPECT_TRUE(seen.insert(p.data_ptr()).second) << arch_info(arch).name;
                total += p.numel();
            }
        EXPECT_EQ(total, parameter_count(m)) << arch_info(arch).name;
    }
    // ResNet34: G0 = conv1, bn1, layer1, layer2; G1 = layer3, layer4; G2 = the head.
    ClassifierModel r(Arch::ResNet34, 2);
    auto count = [](const std::vector<at::Tensor>& ps) {
        std::int64_t n = 0;
        for (const auto& p : ps) n += p.numel();
        return n;
    };
    const auto g = r.layer_group_parameters();
    auto& body = r.body();
    std::int64_t g0 = 0;
    for (const auto& p : body.named_parameters())
        if (p.key().rfind("layer3", 0) != 0 && p.key().rfind("layer4", 0) != 0) g0 += p.value().numel();
    EXPECT_EQ(count(g[0]), g0);
    EXPECT_EQ(count(g[2]), parameter_count(*r.head()));
    // VGG16_BN: fastai's cut at features[22].
    ClassifierModel v(Arch::VGG16_BN, 2);
    EXPECT_EQ(v.layer_groups()[0].size(), 22u);
    EXPECT_EQ(v.layer_groups()[1].size(), 22u);
}

TEST(LearnerModel, ExportUsesTorchvisionKeysAndDescribesTheModel) {
    test::TempDir dir;
    ClassifierModel m(Arch::ResNet18, 2);
    export_model(m, {"cat", "dog"}, 224, dir / "model.safetensors");
    std::map<std::string, std::string> meta;
    const StateDict sd = read_safetensors(dir / "model.safetensors", &meta);
    std::set<std::string> keys;
    for (const auto& [k, v] : sd) keys.insert(k);
    EXPECT_TRUE(keys.count("layer1.0.conv1.weight"));
    EXPECT_TRUE(keys.count("head.2.weight"));
    EXPECT_FALSE(keys.count("body.conv1.weight"));
    EXPECT_FALSE(keys.count("fc.weight"));
    const auto j = nlohmann::json::parse(read_file(dir / "model.safetensors.json"));
    EXPECT_EQ(j["arch"], "resnet18");
    EXPECT_EQ(j["classes"], nlohmann::json({"cat", "dog"}));
    EXPECT_EQ(j["input_size"], 224);
    EXPECT_EQ(j["head"]["output"], "log_softmax");
    EXPECT_TRUE(meta.count("whisker"));
}
