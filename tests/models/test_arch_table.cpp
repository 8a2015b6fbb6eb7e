// The architecture table (zoo.h) against torchvision's own metadata, the compute counter
// (arch_stats.h) against hand-counted layers and torchvision's published GFLOPs, input-size
// rules, and the speed records the benchmarks leave for the workbench.
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/models/arch_stats.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <cstdio>
#include <memory>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::models;

namespace {
std::string run_and_read(const std::string& cmd) {
    std::string out;
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    if (!p) return out;
    char buf[4096];
    while (std::size_t n = fread(buf, 1, sizeof buf, p.get())) out.append(buf, n);
    return out;
}
}  // namespace

// Every row's weights file, transform, parameter count and top-1 are torchvision's for the
// weight set the row names (Debian's torchvision 0.14).
TEST(ArchTable, MatchesTorchvision) {
    WHISKER_REQUIRE_PYTHON_TORCHVISION();
    std::string request;
    for (const auto& a : all_architectures()) request += " " + a.name + ":" + a.weights_name;
    const std::string script = R"PY(
import json, sys
import torchvision.models as M
out = {}
for item in sys.argv[1:]:
    name, weights = item.split(":")
    w = getattr(M.get_model_weights(name), weights)
    t = w.transforms()
    out[name] = {"file": w.url.split("/")[-1], "crop": t.crop_size[0], "resize": t.resize_size[0],
                 "interpolation": t.interpolation.value, "params": w.meta["num_params"],
                 "top1": w.meta["_metrics"]["ImageNet-1K"]["acc@1"]}
print(json.dumps(out))
)PY";
    test::TempDir dir;
    write_file_atomically(dir / "meta.py", script);
    const auto j = nlohmann::json::parse(run_and_read("/usr/bin/python3 " + (dir / "meta.py").string() + request));
    ASSERT_EQ(j.size(), all_architectures().size());
    for (const auto& a : all_architectures()) {
        SCOPED_TRACE(a.name);
        const auto& m = j.at(a.name);
        EXPECT_EQ(a.weights_file, m.at("file").get<std::string>());
        EXPECT_EQ(a.eval.crop, m.at("crop").get<int>());
        EXPECT_EQ(a.eval.resize, m.at("resize").get<int>());
        EXPECT_EQ(a.eval.interpolation, m.at("interpolation").get<std::string>());
        EXPECT_EQ(a.parameters, m.at("params").get<std::int64_t>());
        EXPECT_DOUBLE_EQ(a.imagenet_top1, m.at("top1").get<double>());
    }
}

// The counter on layers counted by hand: a 3x3 convolution, a grouped one, a linear layer on
// a batch and on tokens, and a batched matrix product.
TEST(ArchStats, CountsMultiplyAccumulatesOfConvolutionsAndProducts) {
    torch::NoGradGuard no_grad;
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 8, 3).padding(1));
    torch::nn::Conv2d grouped(torch::nn::Conv2dOptions(8, 8, 3).padding(1).stride(2).groups(4).bias(false));
    torch::nn::Linear linear(5, 7);
    const at::Tensor image = at::randn({1, 3, 10, 10});
    // 8 x 10 x 10 outputs, each 3 x 3 x 3.
    EXPECT_DOUBLE_EQ(count_gmacs([&] { conv(image); }) * 1e9, 8 * 10 * 10 * 27);
    // 8 x 5 x 5 outputs, each (8 / 4) x 3 x 3.
    const at::Tensor map = at::randn({1, 8, 10, 10});
    EXPECT_DOUBLE_EQ(count_gmacs([&] { grouped(map); }) * 1e9, 8 * 5 * 5 * 18);
    EXPECT_DOUBLE_EQ(count_gmacs([&] { linear(at::randn({2, 5})); }) * 1e9, 2 * 5 * 7);
    EXPECT_DOUBLE_EQ(count_gmacs([&] { linear(at::randn({2, 3, 5})); }) * 1e9, 2 * 3 * 5 * 7);
    EXPECT_DOUBLE_EQ(count_gmacs([&] { at::bmm(at::randn({4, 2, 3}), at::randn({4, 3, 6})); }) * 1e9, 4 * 2 * 3 * 6);
    // Nothing is counted outside the call.
    EXPECT_DOUBLE_EQ(count_gmacs([] {}), 0.0);
}

// The table's GFLOPs (torchvision's published figures) are what the networks compute: the
// counter agrees within 2% for every architecture at its default size.
TEST(ArchStats, PublishedGflopsMatchTheCount) {
    for (const auto& a : all_architectures()) {
        const double counted = architecture_gflops(a.arch, a.default_size());
        EXPECT_NEAR(counted, a.gflops, 0.02 * a.gflops + 0.005) << a.name << " at " << a.default_size();
    }
}

TEST(ArchTable, SizeRulesNameTheSizesToUse) {
    EXPECT_EQ(arch_info(Arch::Swin_T).default_size(), 224);
    EXPECT_EQ(arch_info(Arch::EfficientNet_B3).default_size(), 300);
    EXPECT_TRUE(arch_info(Arch::Swin_T).size_problem(256).empty());
    EXPECT_TRUE(arch_info(Arch::ResNet34).size_problem(100).empty());
    const std::string swin = arch_info(Arch::Swin_T).size_problem(100);
    EXPECT_NE(swin.find("multiple of 32"), std::string::npos) << swin;
    EXPECT_NE(swin.find("try 96 or 128"), std::string::npos) << swin;
    const std::string vit = arch_info(Arch::ViT_B_16).size_problem(16);
    EXPECT_NE(vit.find("at least 32"), std::string::npos) << vit;
    EXPECT_THROW(check_input_size(Arch::ViT_B_16, 200), UserError);
    EXPECT_NO_THROW(check_input_size(Arch::ViT_B_16, 208));
    // The validation view: the weights' own resize for the new families, fastai 0.7's for its own.
    EXPECT_DOUBLE_EQ(arch_info(Arch::ConvNeXt_Tiny).default_eval_resize_ratio(), 236.0 / 224.0);
    EXPECT_DOUBLE_EQ(arch_info(Arch::ResNet34).default_eval_resize_ratio(), 1.0);
}

TEST(ArchStats, SpeedRecordsKeepTheLatestPerArchitectureAndKind) {
    test::TempDir dir;
    test::ScopedEnv cache("XDG_CACHE_HOME", dir.path().string());
    EXPECT_TRUE(read_speed_records().empty());
    record_speed("resnet18", "train", {120.5, 224, 16, "CPU (2 threads)", "2026-12-01 10:00"});
    record_speed("resnet18", "predict", {400, 224, 16, "CPU (2 threads)", "2026-12-01 10:01"});
    record_speed("swin_t", "train", {9, 224, 16, "CPU (2 threads)", "2026-12-01 10:02"});
    record_speed("resnet18", "train", {130, 224, 32, "CPU (2 threads)", "2026-12-01 11:00"});
    const auto r = read_speed_records();
    ASSERT_EQ(r.size(), 2u);
    ASSERT_TRUE(r.at("resnet18").train && r.at("resnet18").predict);
    EXPECT_DOUBLE_EQ(r.at("resnet18").train->images_per_second, 130);
    EXPECT_EQ(r.at("resnet18").train->batch_size, 32);
    EXPECT_DOUBLE_EQ(r.at("resnet18").predict->images_per_second, 400);
    EXPECT_FALSE(r.at("swin_t").predict);
    EXPECT_EQ(speed_records_file(), dir / "whisker" / "speed.json");
    // A damaged file reads as nothing measured, and the next record replaces it.
    write_file_atomically(speed_records_file(), "{not json");
    EXPECT_TRUE(read_speed_records().empty());
    record_speed("vit_b_16", "predict", {20, 224, 8, "CPU", "now"});
    EXPECT_EQ(read_speed_records().size(), 1u);
}
