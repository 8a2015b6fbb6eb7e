#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/models/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::models;

namespace {
class Net : public torch::nn::Module {
public:
    Net() {
        fc = register_module("fc", torch::nn::Linear(3, 2));
        bn = register_module("bn", torch::nn::BatchNorm1d(2));
    }
    torch::nn::Linear fc{nullptr};
    torch::nn::BatchNorm1d bn{nullptr};
};

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const UserError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST(Safetensors, RoundTripDtypesShapesAndMetadata) {
    test::TempDir dir;
    StateDict sd{{"w", at::arange(12, at::kFloat).view({3, 4})},
                 {"t", at::arange(6, at::kLong).view({2, 3}).t()},  // non-contiguous
                 {"h", at::ones({5}, at::kHalf)},
                 {"b", at::tensor({1, 0}).to(at::kBool)},
                 {"s", at::scalar_tensor(2.5)}};
    write_safetensors(dir / "m.safetensors", sd, {{"arch", "resnet34"}});
    std::map<std::string, std::string> meta;
    const StateDict back = read_safetensors(dir / "m.safetensors", &meta);
    ASSERT_EQ(back.size(), sd.size());
    EXPECT_EQ(meta.at("arch"), "resnet34");
    for (std::size_t i = 0; i < sd.size(); ++i) {
        EXPECT_EQ(back[i].first, sd[i].first);  // file order is kept
        EXPECT_EQ(back[i].second.scalar_type(), sd[i].second.scalar_type());
        EXPECT_TRUE(at::equal(back[i].second, sd[i].second.contiguous())) << sd[i].first;
    }
    // The header is 8-byte aligned, as the format recommends.
    const std::string bytes = read_file(dir / "m.safetensors");
    std::uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(read_weights_file(dir / "m.safetensors").size(), sd.size());
}

TEST(Safetensors, TruncatedFileIsAClearError) {
    test::TempDir dir;
    write_safetensors(dir / "m.safetensors", {{"w", at::ones({100})}});
    const std::string bytes = read_file(dir / "m.safetensors");
    write_file_atomically(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 50));
    const std::string e = error_of([&] { read_safetensors(dir / "cut.safetensors"); });
    EXPECT_NE(e.find("cut.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(TorchCheckpoint, NotACheckpointIsAClearError) {
    test::TempDir dir;
    write_file_atomically(dir / "notes.pth", "just some text, not a checkpoint");
    EXPECT_NE(error_of([&] { read_torch_checkpoint(dir / "notes.pth"); }).find("not a PyTorch checkpoint"), std::string::npos);
    write_file_atomically(dir / "empty.pth", "");
    EXPECT_NE(error_of([&] { read_torch_checkpoint(dir / "empty.pth"); }).find("empty"), std::string::npos);
    EXPECT_NE(error_of([&] { read_weights_file(dir / "missing.pth"); }).find("cannot open"), std::string::npos);
}

TEST(TorchCheckpoint, ReadsBothFormatsWrittenByPyTorch) {
    WHISKER_REQUIRE_PYTHON_TORCHVISION();
    test::TempDir dir;
    const std::string script =
        "import torch, collections\n"
        "a = torch.arange(12, dtype=torch.float32).view(3, 4)\n"
        "sd = collections.OrderedDict()\n"
        "sd['a'] = a\n"
        "sd['row'] = a[1]\n"                                   // a view sharing a's storage
        "sd['t'] = torch.arange(6).view(2, 3).t()\n"           // int64, non-contiguous
        "sd['h'] = torch.full((4,), 0.5, dtype=torch.float16)\n"
        "sd['b'] = torch.tensor([True, False, True])\n"
        "sd['s'] = torch.tensor(3.5, dtype=torch.float64)\n"
        "sd['p'] = torch.nn.Parameter(torch.ones(2, 2))\n"
        "sd._metadata = collections.OrderedDict({'': {'version': 1}})\n"
        "d = '" + dir.path().string() + "'\n"
        "torch.save(sd, d + '/new.pth')\n"
        "torch.save(sd, d + '/old.pth', _use_new_zipfile_serialization=False)\n"
        "torch.save({'state_dict': sd, 'epoch': 3}, d + '/wrapped.pth')\n";
    write_file_atomically(dir / "make.py", script);
    ASSERT_EQ(std::system(("/usr/bin/python3 " + (dir / "make.py").string()).c_str()), 0);
    for (const char* file : {"new.pth", "old.pth", "wrapped.pth"}) {
        SCOPED_TRACE(file);
        const StateDict sd = read_torch_checkpoint(dir / file);
        ASSERT_EQ(sd.size(), 7u);
        EXPECT_EQ(sd[0].first, "a");
        EXPECT_TRUE(at::equal(find_tensor(sd, "a"), at::arange(12, at::kFloat).view({3, 4})));
        EXPECT_TRUE(at::equal(find_tensor(sd, "row"), at::tensor({4.f, 5.f, 6.f, 7.f})));
        EXPECT_TRUE(at::equal(find_tensor(sd, "t"), at::arange(6, at::kLong).view({2, 3}).t()));
        EXPECT_EQ(find_tensor(sd, "h").scalar_type(), at::kHalf);
        EXPECT_TRUE(at::equal(find_tensor(sd, "b"), at::tensor({1, 0, 1}).to(at::kBool)));
        EXPECT_EQ(find_tensor(sd, "s").dim(), 0);
        EXPECT_EQ(find_tensor(sd, "s").item<double>(), 3.5);
        EXPECT_TRUE(at::equal(find_tensor(sd, "p"), at::ones({2, 2})));
    }
    // A truncated download of either format is an error naming the file, never garbage.
    for (const char* file : {"new.pth", "old.pth"}) {
        const std::string bytes = read_file(dir / file);
        write_file_atomically(dir / "cut.pth", bytes.substr(0, bytes.size() * 2 / 3));
        const std::string e = error_of([&] { read_torch_checkpoint(dir / "cut.pth"); });
        EXPECT_NE(e.find("cut.pth"), std::string::npos) << file << ": " << e;
    }
}

TEST(LoadStateDict, StrictAboutKeysAndShapes) {
    Net net;
    StateDict good = state_dict_of(net);
    EXPECT_EQ(good.size(), 7u);  // fc.weight, fc.bias, bn.weight, bn.bias, running_mean, running_var, num_batches_tracked
    StateDict file;
    for (const auto& [k, v] : good) file.emplace_back(k, at::full_like(v, 2));
    load_state_dict(net, file, "x.pth");
    EXPECT_TRUE(at::equal(net.fc->weight, at::full({2, 3}, 2.f)));

    StateDict broken;
    for (const auto& [k, v] : file)
        if (k != "fc.bias") broken.emplace_back(k, k == "fc.weight" ? at::ones({4, 3}) : v);
    broken.emplace_back("extra.weight", at::ones({1}));
    const std::string e = error_of([&] { load_state_dict(net, broken, "x.pth"); });
    EXPECT_NE(e.find("x.pth"), std::string::npos);
    EXPECT_NE(e.find("missing keys (1):\n    fc.bias"), std::string::npos) << e;
    EXPECT_NE(e.find("unexpected keys (1):\n    extra.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("fc.weight (file [4, 3], model [2, 3])"), std::string::npos) << e;
    EXPECT_TRUE(at::equal(net.fc->weight, at::full({2, 3}, 2.f)));  // nothing was half-loaded
}

TEST(LoadStateDict, OldFilesWithoutNumBatchesTrackedLoad) {
    Net net;
    StateDict file;
    for (const auto& [k, v] : state_dict_of(net))
        if (k.find("num_batches_tracked") == std::string::npos) file.emplace_back(k, v.clone());
    const LoadReport r = load_state_dict(net, file, "old.pth");
    ASSERT_EQ(r.filled_defaults.size(), 1u);
    EXPECT_EQ(r.filled_defaults[0], "bn.num_batches_tracked");
}
