// Parity with torchvision: Debian's python3-torchvision builds each architecture with random
// weights and saves it in both torch.save formats; Whisker loads both files and must compute
// the same logits (eval mode) to a relative error below 1e-4.
#include "test_support.h"

#include "whisker/common/device.h"
#include "whisker/common/files.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/learner_model.h"
#include "whisker/models/weights.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::models;

namespace {

double relative_error(const at::Tensor& got, const at::Tensor& want) {
    return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

class Parity : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(Parity, LoadsBothFormatsAndMatchesTorchvision) {
    WHISKER_REQUIRE_PYTHON_TORCHVISION();
    detect_compute_device();
    // "arch" or "arch_at_SIZE" (the input's side; default 224).
    const std::string param = GetParam();
    const auto at = param.find("_at_");
    const std::string arch_name = param.substr(0, at);
    const std::string size = at == std::string::npos ? "224" : param.substr(at + 4);
    test::TempDir dir;
    const std::string cmd = "/usr/bin/python3 " + (test::tests_dir() / "models/make_reference.py").string() + " " +
                            arch_name + " " + dir.path().string() + " " + size;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const StateDict ref = read_torch_checkpoint(dir / (arch_name + ".reference.pth"));
    const at::Tensor input = find_tensor(ref, "input"), logits = find_tensor(ref, "logits");

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
    // As a body, the same file loads without its classifier and gives the features the
    // classifier reads.
    auto full = create_imagenet_model(parse_arch(arch_name));
    load_torchvision_weights(*full, dir / (arch_name + ".zip.pth"));
    auto body = create_imagenet_model(parse_arch(arch_name), false);
    load_torchvision_weights(*body, dir / (arch_name + ".zip.pth"));
    full->eval();
    body->eval();
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(at::allclose(body->features(input), full->features(input)));
}

INSTANTIATE_TEST_SUITE_P(Torchvision, Parity,
                         ::testing::Values("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                           "resnext50_32x4d", "vgg16", "vgg16_bn", "densenet121",
                                           // The largest of a family is covered by its smallest
                                           // sibling (same code, other widths and depths) and the
                                           // parameter counts (test_zoo).
                                           "convnext_tiny", "efficientnet_b0", "efficientnet_b3",
                                           "efficientnet_v2_s", "regnet_y_400mf", "regnet_y_800mf",
                                           "mobilenet_v3_large", "mobilenet_v3_small", "swin_t",
                                           "swin_t_at_256", "vit_b_16", "vit_b_16_at_160"),
                         [](const auto& info) { return info.param; });

// An exported learner model loads into torchvision from Python (reading the safetensors file
// by hand: Debian has no safetensors package) and its body computes what Whisker's does.
TEST(ExportParity, TorchvisionLoadsTheExportedBody) {
    WHISKER_REQUIRE_PYTHON_TORCHVISION();
    test::TempDir dir;
    torch::manual_seed(3);
    ClassifierModel model(Arch::ResNet18, 2);
    model.eval();
    export_model(model, {"cat", "dog"}, 64, dir / "m.safetensors");
    torch::NoGradGuard no_grad;
    const at::Tensor x = at::randn({1, 3, 64, 64});
    write_safetensors(dir / "io.safetensors", {{"x", x}, {"features", model.body().features(x)}});
    const std::string script = R"PY(
import json, struct, sys
import numpy as np, torch, torchvision
def read(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == '__metadata__': continue
        a, b = v['data_offsets']
        assert v['dtype'] in ('F32', 'I64'), v['dtype']
        dt = np.float32 if v['dtype'] == 'F32' else np.int64
        out[k] = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).copy().reshape(v['shape']))
    return out
d = sys.argv[1]
sd = read(d + '/m.safetensors')
meta = json.load(open(d + '/m.safetensors.json'))
m = getattr(torchvision.models, meta['arch'])()
missing, unexpected = m.load_state_dict({k: v for k, v in sd.items() if not k.startswith('head.')}, strict=False)
assert sorted(missing) == ['fc.bias', 'fc.weight'], missing
assert not unexpected, unexpected
m.eval()
io = read(d + '/io.safetensors')
body = torch.nn.Sequential(*list(m.children())[:-2])
with torch.no_grad():
    f = body(io['x'])
err = (f - io['features']).abs().max() / io['features'].abs().max()
assert err < 1e-4, float(err)
print('export parity ok', float(err))
)PY";
    write_file_atomically(dir / "check.py", script);
    EXPECT_EQ(std::system(("/usr/bin/python3 " + (dir / "check.py").string() + " " + dir.path().string()).c_str()), 0);
}
