// The whole fastai workflow on each architecture family beyond ResNet (the smallest of each,
// random body, 32 px): layer groups, freezing, precompute equal to the full model, differential
// learning rates reaching the early layers, TTA predictions, stochastic depth only in training.
#include "small_learner_fixture.h"

#include "whisker/models/learner_model.h"
#include "whisker/models/zoo.h"
#include "whisker/train/learner.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <set>

using namespace whisker;
using namespace whisker::train;

namespace {

class FamilyWorkflow : public test::SmallLearnerTest, public ::testing::WithParamInterface<std::string> {
protected:
    std::unique_ptr<Learner> make_for(const std::string& arch) {
        LearnerConfig c = config();
        c.arch = arch;
        return std::make_unique<Learner>(*dir_ / "p", *dataset_, c);
    }
};

std::vector<bool> requires_grad_per_group(Learner& l) {
    std::vector<bool> out;
    for (const auto& g : l.model().layer_group_parameters()) {
        bool all = true, none = true;
        for (const auto& p : g) (p.requires_grad() ? none : all) = false;
        EXPECT_TRUE(all || none) << "a layer group is half frozen";
        out.push_back(all && !g.empty());
    }
    return out;
}

}  // namespace

TEST_P(FamilyWorkflow, GroupsFreezingPrecomputeDifferentialRatesAndTta) {
    auto l = make_for(GetParam());
    l->autosave = false;
    models::ClassifierModel& m = l->model();

    // Three layer groups that hold every parameter exactly once, none empty.
    const auto groups = m.layer_group_parameters();
    ASSERT_EQ(groups.size(), 3u);
    std::set<const void*> seen;
    std::int64_t total = 0;
    for (const auto& g : groups) {
        EXPECT_FALSE(g.empty());
        for (const auto& p : g) {
            EXPECT_TRUE(seen.insert(p.data_ptr()).second) << "a parameter is in two groups";
            total += p.numel();
        }
    }
    EXPECT_EQ(total, models::parameter_count(m));

    // Created frozen; freeze_to and unfreeze move the boundary as for ResNet.
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{false, false, true}));
    l->freeze_to(1);
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{false, true, true}));
    l->freeze();

    // Precompute: the head trains on cached body outputs, and validating the same head on the
    // images gives the same results.
    l->set_precompute(true);
    FitOptions o;
    o.lrs = {1e-2};
    const FitResult r = l->fit(o);
    ASSERT_EQ(r.epochs.size(), 1u);
    l->set_precompute(false);
    const Predictions plain = l->predict(data::Split::Valid);
    EXPECT_NEAR(plain.log_loss(), r.epochs[0].log_loss, 1e-4);
    EXPECT_NEAR(plain.accuracy(), r.epochs[0].accuracy, 1e-9);

    // Unfrozen with differential learning rates: the early layers train too.
    l->unfreeze();
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{true, true, true}));
    std::vector<at::Tensor> early;
    const auto before = l->model().layer_group_parameters();
    for (const auto& p : before[0]) early.push_back(p.detach().clone());
    o.lrs = {1e-3, 3e-3, 1e-2};
    o.cycle_len = 1;
    ASSERT_EQ(l->fit(o).epochs.size(), 1u);
    bool moved = false;
    const auto after = l->model().layer_group_parameters()[0];
    for (std::size_t i = 0; i < early.size(); ++i) moved = moved || !at::equal(early[i], after[i]);
    EXPECT_TRUE(moved) << "the early layer group did not train";

    // TTA on the test set: one row per test image, probabilities that sum to 1.
    const Predictions test = l->predict(data::Split::Test, 2);
    EXPECT_EQ(test.passes, 3);
    ASSERT_EQ(test.probs.size(0), static_cast<std::int64_t>(dataset_->count(data::Split::Test)));
    EXPECT_TRUE(at::allclose(test.probs.sum(1), at::ones({test.probs.size(0)}), 1e-4, 1e-5));
}

// Stochastic depth (ConvNeXt, EfficientNet, Swin) drops residual branches in training only:
// two training-mode passes over the same images differ, two eval passes are equal.
TEST(StochasticDepth, ActiveInTrainingOffInEval) {
    torch::manual_seed(1);
    const at::Tensor x = at::randn({4, 3, 64, 64});
    for (models::Arch arch : {models::Arch::ConvNeXt_Tiny, models::Arch::EfficientNet_B0, models::Arch::EfficientNet_V2_S,
                              models::Arch::Swin_T}) {
        SCOPED_TRACE(models::arch_info(arch).name);
        auto m = models::create_imagenet_model(arch, false);
        torch::NoGradGuard no_grad;
        // BatchNorm in training mode also depends on the batch alone (the same both times),
        // so any difference comes from the random drops.
        m->train();
        EXPECT_FALSE(at::allclose(m->features(x), m->features(x)));
        m->eval();
        EXPECT_TRUE(at::equal(m->features(x), m->features(x)));
    }
    // RegNet and MobileNetV3 have none: deterministic in training mode too.
    for (models::Arch arch : {models::Arch::RegNet_Y_400MF, models::Arch::MobileNet_V3_Small}) {
        auto m = models::create_imagenet_model(arch, false);
        torch::NoGradGuard no_grad;
        m->train();
        EXPECT_TRUE(at::allclose(m->features(x), m->features(x))) << models::arch_info(arch).name;
    }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyWorkflow,
                         ::testing::Values("convnext_tiny", "efficientnet_b0", "efficientnet_v2_s", "regnet_y_400mf",
                                           "mobilenet_v3_small", "swin_t", "vit_b_16"),
                         [](const auto& info) { return info.param; });

// bf16 autocast (--precision bf16) on every family: the forward pass runs (LayerNorm included,
// which LibTorch 1.13's CPU kernel cannot mix), its log-probabilities stay float32 and close to
// fp32's, and the backward pass gives float32 gradients to the float32 weights.
TEST(Bf16, EveryFamilyRunsForwardAndBackwardUnderAutocast) {
    torch::manual_seed(2);
    const at::Tensor x = at::randn({2, 3, 64, 64});
    const at::Tensor y = at::tensor({0, 1}, at::kLong);
    for (const char* name : {"resnet18", "densenet121", "vgg16_bn", "convnext_tiny", "efficientnet_b0", "efficientnet_v2_s",
                             "regnet_y_400mf", "mobilenet_v3_small", "swin_t", "vit_b_16"}) {
        SCOPED_TRACE(name);
        models::ClassifierModel m(models::parse_arch(name), 2);
        m.eval();
        at::Tensor fp32, bf16;
        {
            torch::NoGradGuard no_grad;
            fp32 = m.forward(x);
            AutocastScope autocast(Precision::BF16, false);
            bf16 = m.forward(x);
        }
        EXPECT_EQ(bf16.scalar_type(), at::kFloat);
        EXPECT_TRUE(at::allclose(bf16.exp(), fp32.exp(), 0.0, 0.05)) << "probabilities differ by more than 0.05";
        m.train();
        at::Tensor out;
        {
            AutocastScope autocast(Precision::BF16, false);
            out = m.forward(x);
        }
        at::nll_loss(out, y).backward();
        for (const auto& p : m.parameters()) {
            ASSERT_TRUE(p.grad().defined());
            EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
            EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>());
        }
    }
}
