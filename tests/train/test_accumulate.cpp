// Gradient accumulation (FitOptions::accumulate, --accumulate): N batches per optimiser step
// train like one batch N times as large, the schedule and the LR finder count optimiser steps,
// and a fit stopped inside a group resumes exactly.
//
// "Like one batch" holds for a network whose BatchNorm does not see the batches (it normalises
// each batch by its own statistics otherwise): the tests freeze every BatchNorm (eval mode: a
// fixed affine map, so the network is BatchNorm-free in effect) and use no dropout.
#include "small_learner_fixture.h"
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/models/checkpoint.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"
#include "whisker/train/schedule.h"
#include "whisker/train/training_options.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::train;

namespace {

class AccumulateTest : public test::SmallLearnerTest {
protected:
    // A project of 40 training images (8 for validation): batch 32 is 2 batches an epoch
    // (32 + 8); batch 8 with 4 per step is 5 batches in 2 groups (4 + 1): the same images in
    // the same two steps, the second a short one.
    static void SetUpTestSuite() {
        dir_ = new test::TempDir;
        test::write_sample(*dir_ / "dl", 48, 2);
        data::PrepareOptions o;
        o.project = *dir_ / "p";
        o.source = *dir_ / "dl";
        o.valid_per_class = 4;
        dataset_ = new data::Dataset(data::prepare_dataset(o));
        ASSERT_EQ(dataset_->count(data::Split::Train), 40u);
    }
    static std::unique_ptr<Learner> make_with(int batch_size, int accumulate) {
        LearnerConfig c = config();
        c.batch_size = batch_size;
        c.accumulate = accumulate;
        c.head = models::HeadOptions::with_dropout(0);
        auto l = std::make_unique<Learner>(*dir_ / "p", *dataset_, c);
        l->unfreeze();
        l->bn_freeze(true);
        l->autosave = false;
        return l;
    }
    static double largest_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
        EXPECT_EQ(a.size(), b.size());
        double worst = 0;
        for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
            if (a[i].numel() == 0) continue;
            const at::Tensor x = a[i].to(at::kDouble), y = b[i].to(at::kDouble);
            worst = std::max(worst, (x - y).abs().max().item<double>() / (1.0 + y.abs().max().item<double>()));
        }
        return worst;
    }
    static FitOptions two_sgdr_epochs() {
        FitOptions o;
        o.lrs = {1e-3, 3e-3, 1e-2};
        o.n_cycle = 2;
        o.cycle_len = 1;
        return o;
    }
};

struct LrRecorder : Callback {
    std::vector<double> lrs;
    std::vector<long> iterations;
    void after_batch(Learner&, const BatchRecord& r) override {
        lrs.push_back(r.lr);
        iterations.push_back(r.iteration);
    }
};

// Stops the fit after the batch with the given iteration.
struct StopAfterBatch : Callback {
    long at;
    explicit StopAfterBatch(long a) : at(a) {}
    void after_batch(Learner& l, const BatchRecord& r) override {
        if (r.iteration == at) l.request_stop("test stop inside a group");
    }
};

}  // namespace

TEST_F(AccumulateTest, FourBatchesOfEightTrainLikeOneOfThirtyTwo) {
    auto one = make_with(32, 1);
    auto lr_one = std::make_shared<LrRecorder>();
    one->add_callback(lr_one);
    const FitResult r1 = one->fit(two_sgdr_epochs());

    auto four = make_with(8, 4);
    auto lr_four = std::make_shared<LrRecorder>();
    four->add_callback(lr_four);
    const FitResult r4 = four->fit(two_sgdr_epochs());

    ASSERT_EQ(r1.epochs.size(), 2u);
    ASSERT_EQ(r4.epochs.size(), 2u);
    const double diff = largest_difference(weights(*one), weights(*four));
    std::fprintf(stderr, "4 x 8 vs 32: largest relative weight difference %.3g\n", diff);
    EXPECT_LT(diff, 1e-5);
    EXPECT_FALSE(same(weights(*one), weights(*make_with(32, 1)))) << "the weights did change";
    for (std::size_t e = 0; e < 2; ++e) EXPECT_NEAR(r4.epochs[e].val_loss, r1.epochs[e].val_loss, 1e-5);

    // Progress stays per batch (5 a epoch), the schedule per optimiser step (2 a epoch): the
    // four batches of a group share their step's rate, which is the large batch's.
    ASSERT_EQ(lr_one->lrs.size(), 4u);
    ASSERT_EQ(lr_four->lrs.size(), 10u);
    EXPECT_EQ(lr_four->iterations.back(), 9);
    for (int epoch = 0; epoch < 2; ++epoch) {
        for (int b = 0; b < 4; ++b) EXPECT_DOUBLE_EQ(lr_four->lrs[static_cast<std::size_t>(epoch * 5 + b)], lr_one->lrs[static_cast<std::size_t>(epoch * 2)]);
        EXPECT_DOUBLE_EQ(lr_four->lrs[static_cast<std::size_t>(epoch * 5 + 4)], lr_one->lrs[static_cast<std::size_t>(epoch * 2 + 1)]);
    }
    const auto m = sgdr_multipliers(2, 1, 1, 2);
    EXPECT_DOUBLE_EQ(lr_four->lrs[4], 1e-2 * m[1]);
}

TEST_F(AccumulateTest, AccumulationOfOneIsThePlainFit) {
    FitOptions o = two_sgdr_epochs();
    o.n_cycle = 1;
    auto plain = make_with(8, 1);
    plain->fit(o);
    auto explicit_one = make_with(8, 4);
    o.accumulate = 1;   // the fit's own beats the learner's
    explicit_one->fit(o);
    EXPECT_TRUE(same(weights(*plain), weights(*explicit_one)));
}

TEST_F(AccumulateTest, ResumeInsideAGroupContinuesExactly) {
    // Batch 8, a step every 3 batches: groups of 3 + 2 per epoch. Stopped after iteration 6
    // (epoch 2, the 2nd batch of its first group), then resumed by a new learner.
    FitOptions o = two_sgdr_epochs();
    o.accumulate = 3;
    auto straight = make_with(8, 1);
    straight->fit(o);
    const auto expected = weights(*straight);

    auto stopped = make_with(8, 1);
    stopped->autosave = true;
    stopped->add_callback(std::make_shared<StopAfterBatch>(6));
    const FitResult rs = stopped->fit(o);
    ASSERT_TRUE(rs.stopped);
    const fs::path checkpoints = *dir_ / "p" / "models";
    ASSERT_TRUE(fs::exists(checkpoints / "autosave.grads.safetensors")) << "the group's gradients are kept";
    const auto saved = nlohmann::json::parse(read_file(checkpoints / "autosave.json"));
    EXPECT_EQ(saved["fit"]["accumulated"], 2);
    EXPECT_EQ(saved["fit"]["batch"], 2);
    EXPECT_EQ(saved["fit"]["step"], 2);
    EXPECT_EQ(saved["fit"]["options"]["accumulate"], 3);

    // What the checkpoint kept is a real partial sum (a resume without it would drift).
    double kept = 0;
    for (const auto& [name, g] : models::read_safetensors(checkpoints / "autosave.grads.safetensors")) kept += g.abs().sum().item<double>();
    EXPECT_GT(kept, 0.0);

    auto resumed = make_with(8, 1);   // the checkpoint's accumulation (3) applies
    resumed->autosave = true;
    const FitResult rr = resumed->resume("autosave");
    EXPECT_FALSE(rr.stopped);
    ASSERT_EQ(rr.epochs.size(), 1u);
    const double diff = largest_difference(expected, weights(*resumed));
    std::fprintf(stderr, "resumed inside a group vs straight: largest relative weight difference %.3g\n", diff);
    EXPECT_LT(diff, 1e-6);

    // The autosave at the end of the epoch (a group's end) leaves no gradients file behind.
    EXPECT_FALSE(fs::exists(checkpoints / "autosave.grads.safetensors"));
}

TEST_F(AccumulateTest, TheLrFinderCountsOptimiserSteps) {
    auto l = make_with(8, 1);
    l->freeze();
    l->set_precompute(true);
    auto counter = std::make_shared<LrRecorder>();
    l->add_callback(counter);
    const auto r = l->lr_find(1e-5, 1e-3, false, nullptr, 4);
    // 5 batches an epoch are 2 steps: 100 steps (points) are 50 epochs of 5 batches.
    EXPECT_EQ(r.lrs.size(), 100u);
    EXPECT_EQ(counter->lrs.size(), 250u);
    EXPECT_DOUBLE_EQ(r.lrs.front(), 1e-5);
    EXPECT_NEAR(r.lrs.back(), 1e-5 * std::pow(100.0, 99.0 / 100.0), 1e-12);
}

TEST_F(AccumulateTest, OptionsAreChecked) {
    FitOptions o;
    o.accumulate = -1;
    EXPECT_THROW(check_training_options(o), UserError);
    o.accumulate = 4;
    EXPECT_NO_THROW(check_training_options(o));
    EXPECT_NE(describe_training_options(o).find("a step every 4 batches"), std::string::npos);
    LearnerConfig c = config();
    c.accumulate = 0;
    EXPECT_THROW(Learner(*dir_ / "p", *dataset_, c), UserError);
    auto l = make();
    EXPECT_THROW(l->set_accumulate(0), UserError);
    l->set_accumulate(2);
    EXPECT_EQ(l->accumulate(), 2);
    // Recipes: "accumulate" on fit and lr_find steps, checked before anything runs.
    EXPECT_THROW(run_recipe(*l, R"([{"step": "fit", "lr": 0.01, "accumulate": 0}])"), UserError);
    EXPECT_THROW(run_recipe(*l, R"([{"step": "lr_find", "accumulate": "four"}])"), UserError);
    EXPECT_NE(describe_step(R"({"step": "fit", "lr": 0.01, "accumulate": 4})", 0.01).find("a step every 4 batches"), std::string::npos);
    EXPECT_NE(describe_step(R"({"step": "lr_find", "accumulate": 4})", 0.01).find("a step every 4 batches"), std::string::npos);
}
