// GPU tests (CTest label "gpu"): they need a LibTorch built with CUDA and a GPU that answers.
// Elsewhere each one reports that it did not run (GTEST_SKIP, which CTest shows as "Skipped"), and
// the Quick start's test command leaves the label out (-LE gpu) unless both are there.
// packaging/gpu-check.sh builds and runs them on a GPU machine.
#include "test_support.h"

#include "whisker/common/device.h"
#include "whisker/common/errors.h"
#include "whisker/data/loader.h"
#include "whisker/data/prepare.h"
#include "whisker/models/checkpoint.h"
#include "whisker/models/zoo.h"
#include "whisker/train/learner.h"
#include "whisker/train/precision.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <ATen/Context.h>
#ifdef WHISKER_TEST_CUDA_LIBTORCH
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

using namespace whisker;
using namespace whisker::train;

namespace {

// Skips the calling test, saying why, when there is no GPU to run it on.
#define WHISKER_REQUIRE_CUDA()                                                                          \
    do {                                                                                              \
        if (!torch::cuda::is_available())                                                             \
            GTEST_SKIP() << "did not run: no CUDA device"                                             \
                         << (kCudaLibTorch ? "" : " (this LibTorch was built without CUDA)");         \
    } while (0)

#ifdef WHISKER_TEST_CUDA_LIBTORCH
constexpr bool kCudaLibTorch = true;
#else
constexpr bool kCudaLibTorch = false;
#endif

// A prepared sample competition shared by the tests of this file.
class GpuTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!torch::cuda::is_available()) return;
        dir_ = new test::TempDir;
        test::write_sample(*dir_ / "dl", 320, 8);
        data::PrepareOptions o;
        o.project = *dir_ / "p";
        o.source = *dir_ / "dl";
        o.valid_per_class = 16;
        dataset_ = new data::Dataset(data::prepare_dataset(o));
    }
    static void TearDownTestSuite() {
        delete dataset_;
        delete dir_;
        dataset_ = nullptr;
        dir_ = nullptr;
    }
    static LearnerConfig config() {
        LearnerConfig c;
        c.arch = "resnet18";
        c.size = 64;
        c.batch_size = 32;
        c.pretrained = false;
        c.seed = 11;
        return c;
    }
    static double fit_val_loss(Precision p, bool channels_last = false) {
        LearnerConfig c = config();
        c.precision = p;
        c.channels_last = channels_last;
        Learner l(*dir_ / "p", *dataset_, c);
        l.autosave = false;
        EXPECT_TRUE(l.device().is_cuda());
        FitOptions o;
        o.lrs = {1e-2};
        o.n_cycle = 2;
        o.cycle_len = 1;
        return l.fit(o).epochs.back().val_loss;
    }
    inline static test::TempDir* dir_ = nullptr;
    inline static data::Dataset* dataset_ = nullptr;
};

// fp16 (with dynamic loss scaling) and bf16 autocast train the same model from the same seed to a
// validation loss within 10% of fp32's (the tolerance of the CPU bf16 test: 16-bit rounding over
// ~20 steps of SGD), and the weights stay float32.
TEST_F(GpuTest, MixedPrecisionTrainsLikeFp32) {
    WHISKER_REQUIRE_CUDA();
    const double fp32 = fit_val_loss(Precision::FP32);
    const double fp16 = fit_val_loss(Precision::FP16);
    std::printf("val_loss after 2 epochs: fp32 %.5f, fp16 %.5f", fp32, fp16);
    EXPECT_NEAR(fp16, fp32, 0.1 * fp32);
    if (detect_compute_device().cuda_capability >= 8) {
        const double bf16 = fit_val_loss(Precision::BF16);
        std::printf(", bf16 %.5f", bf16);
        EXPECT_NEAR(bf16, fp32, 0.1 * fp32);
    }
    std::printf("\n");
    const ComputeDevice d = detect_compute_device();
    EXPECT_EQ(resolve_precision(Precision::Auto, true), d.cuda_capability >= 8 ? Precision::BF16 : Precision::FP16);
}

// Channels-last activations compute the same thing as contiguous ones (fp32, TF32 off so both
// take full-precision cuDNN kernels), for a residual and a depthwise/LayerNorm family.
TEST_F(GpuTest, ChannelsLastOutputEqualsContiguous) {
    WHISKER_REQUIRE_CUDA();
    at::globalContext().setAllowTF32CuDNN(false);
    torch::NoGradGuard no_grad;
    for (const char* name : {"resnet50", "convnext_tiny"}) {
        torch::manual_seed(3);
        auto model = models::create_imagenet_model(models::parse_arch(name), true, 1000);
        model->to(at::kCUDA);
        model->eval();
        const at::Tensor x = at::randn({4, 3, 224, 224}).to(at::kCUDA);
        const at::Tensor plain = model->forward(x);
        for (auto& p : model->parameters())
            if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
        const at::Tensor cl = model->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
        const double err = (plain - cl).abs().max().item<double>() / (plain.abs().max().item<double>() + 1e-12);
        EXPECT_LT(err, 1e-4) << name;
        std::printf("%s: channels-last vs contiguous, max relative difference %.2e\n", name, err);
    }
    at::globalContext().setAllowTF32CuDNN(true);
}

// On a CUDA machine the loader hands out pinned batches, and their asynchronous copies to the GPU
// arrive intact.
TEST_F(GpuTest, LoaderBatchesArePinnedAndCopyAsynchronously) {
    WHISKER_REQUIRE_CUDA();
    data::LoaderOptions lo;
    lo.batch_size = 16;
    auto loader = data::make_loader(*dataset_, *dir_ / "p", data::View::Valid,
                                    data::AugmentSettings::side_on(64), lo);
    loader->start_epoch(0);
    int batches = 0;
    while (auto b = loader->next()) {
        ASSERT_TRUE(b->images.is_pinned());
        const at::Tensor on_gpu = b->images.to(at::kCUDA, /*non_blocking=*/true);
        torch::cuda::synchronize();
        EXPECT_TRUE(at::equal(on_gpu.cpu(), b->images));
        ++batches;
    }
    EXPECT_GT(batches, 0);
}

// A batch too large for the GPU gives the out-of-memory message with a batch size to try, and the
// learner then trains with a smaller batch (nothing of the failed step is left half-done).
TEST_F(GpuTest, OutOfMemoryGivesTheMessageAndASmallerBatchTrains) {
    WHISKER_REQUIRE_CUDA();
#ifndef WHISKER_TEST_CUDA_LIBTORCH
    GTEST_SKIP() << "did not run: needs the CUDA caching allocator's headers";
#else
    // Limit this process to about 2 GiB of the GPU so a batch of 256 at 224 px (~8 GiB of
    // resnet50 activations) cannot fit on any GPU, while a batch of 8 (~0.4 GiB) does.
    const double total_gib = std::max(detect_compute_device().memory_gib, 16.0);
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::setMemoryFraction(std::min(1.0, 2.0 / total_gib), 0);
    LearnerConfig c = config();
    c.arch = "resnet50";
    c.size = 224;
    c.batch_size = 256;
    c.precision = Precision::FP32;
    Learner l(*dir_ / "p", *dataset_, c);
    l.autosave = false;
    l.unfreeze();
    FitOptions o;
    o.lrs = {1e-3};
    o.n_cycle = 1;
    try {
        l.fit(o);
        ADD_FAILURE() << "a batch of 256 at 224 px trained within 2 GiB";
    } catch (const UserError& e) {
        const std::string message = std::string(e.what()) + " " + e.hint();
        EXPECT_NE(message.find("ran out of memory"), std::string::npos) << message;
        EXPECT_NE(message.find("--bs 128"), std::string::npos) << message;
    }
    l.set_batch_size(8);
    const FitResult r = l.fit(o);
    ASSERT_FALSE(r.epochs.empty());
    EXPECT_TRUE(std::isfinite(r.epochs.back().val_loss));
    c10::cuda::CUDACachingAllocator::setMemoryFraction(1.0, 0);
#endif
}

// Two GPUs: whisker-cli trains data-parallel over NCCL, and both processes end with the same
// validation metrics as one process with the same global batch (within GPU arithmetic's spread).
TEST(GpuDataParallel, NcclWithTwoGpusMatchesOneProcess) {
    WHISKER_REQUIRE_CUDA();
    if (torch::cuda::device_count() < 2) GTEST_SKIP() << "did not run: needs two GPUs (this machine has one)";
    test::TempDir dir;
    const std::string cli = WHISKER_CLI_PATH;
    auto run = [&](const std::string& args) {
        const std::string cmd = cli + " -q " + args + " > " + (dir / "out.txt").string() + " 2>&1";
        const int rc = std::system(cmd.c_str());
        std::ifstream in(dir / "out.txt");
        return std::make_pair(rc, std::string(std::istreambuf_iterator<char>(in), {}));
    };
    ASSERT_EQ(run("sample " + (dir / "dl").string()).first, 0);
    ASSERT_EQ(run("data prepare " + (dir / "p").string() + " --from " + (dir / "dl").string()).first, 0);
    auto val_loss_of = [&](int nproc) {
        const auto [rc, out] =
            run("fit " + (dir / "p").string() + " --new-learner --no-pretrained --arch resnet18 --size 64 --bs 32 "
                "--precision fp32 --lr 1e-2 --cycles 1 --json --nproc " + std::to_string(nproc) +
                (nproc > 1 ? " --backend nccl" : ""));
        EXPECT_EQ(rc, 0) << out;
        const auto pos = out.rfind("\"val_loss\":");
        EXPECT_NE(pos, std::string::npos) << out;
        return pos == std::string::npos ? 0.0 : std::stod(out.substr(pos + 11));
    };
    const double one = val_loss_of(1);
    const double two = val_loss_of(2);
    EXPECT_NEAR(two, one, 0.02 * one) << "1 process " << one << ", 2 over NCCL " << two;
}

}  // namespace
