// Parity with torchvision: Debian's python3-torchvision builds each architecture with random
// weights and saves it in both torch.save formats; Whisker loads both files and must compute
// the same logits (eval mode) to a relative error below 1e-4.
#include "test_support.h"

#include "whisker/common/device.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/weights.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::models;

namespace {

const at::Tensor& entry(const StateDict& sd, const std::string& name) {
    for (const auto& [k, v] : sd)
        if (k == name) return v;
    throw std::runtime_error("missing " + name);
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
    return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

class Parity : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(Parity, LoadsBothFormatsAndMatchesTorchvision) {
    if (!test::have_python_torchvision()) GTEST_SKIP() << "python3-torchvision is not installed";
    detect_compute_device();
    const std::string arch_name = GetParam();
    test::TempDir dir;
    const std::string cmd = "/usr/bin/python3 " + (test::tests_dir() / "models/make_reference.py").string() + " " +
                            arch_name + " " + dir.path().string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const StateDict ref = read_torch_checkpoint(dir / (arch_name + ".reference.pth"));
    const at::Tensor input = entry(ref, "input"), logits = entry(ref, "logits");

    std::vector<std::string> files{arch_name + ".zip.pth", arch_name + ".legacy.pth"};
    if (arch_name == "resnet18") files.push_back(arch_name + ".legacy-old.pth");
    if (arch_name == "densenet121") files.push_back(arch_name + ".oldkeys.pth");
    for (const auto& file : files) {
        SCOPED_TRACE(file);
        auto model = create_imagenet_model(parse_arch(arch_name));
        load_torchvision_weights(*model, dir / file);
        model->eval();
        torch::NoGradGuard no_grad;
        const at::Tensor out = model->forward(input);
        ASSERT_EQ(out.sizes(), logits.sizes());
        EXPECT_LT(relative_error(out, logits), 1e-4);
    }
    // As a body, the same file loads without its classifier and gives the same features.
    auto body = create_imagenet_model(parse_arch(arch_name), false);
    load_torchvision_weights(*body, dir / (arch_name + ".zip.pth"));
}

INSTANTIATE_TEST_SUITE_P(Torchvision, Parity,
                         ::testing::Values("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                           "resnext50_32x4d", "vgg16", "vgg16_bn", "densenet121"),
                         [](const auto& info) { return info.param; });
