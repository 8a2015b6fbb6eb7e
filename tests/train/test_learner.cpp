// The Learner on a tiny sample project (resnet18 at 32 px, random body: no network needed).
#include <nlohmann/json.hpp>
#include "small_learner_fixture.h"
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/prepare.h"
#include "whisker/kaggle/submission_check.h"
#include "whisker/models/checkpoint.h"
#include "whisker/train/callbacks.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>

#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::train;

namespace {

class LearnerTest : public test::SmallLearnerTest {};

// Records what the Learner looks like while it trains.
struct Probe : Callback {
    std::function<void(Learner&, long)> on_batch;
    std::function<void(Learner&, const BatchRecord&)> on_batch_end;
    std::function<void(Learner&, const EpochRecord&)> on_epoch;
    int fits = 0, fit_ends = 0;
    void before_fit(Learner&) override { ++fits; }
    void before_batch(Learner& l, long it) override {
        if (on_batch) on_batch(l, it);
    }
    void after_batch(Learner& l, const BatchRecord& r) override {
        if (on_batch_end) on_batch_end(l, r);
    }
    void after_epoch(Learner& l, const EpochRecord& r) override {
        if (on_epoch) on_epoch(l, r);
    }
    void after_fit(Learner&, const FitResult&) override { ++fit_ends; }
};

std::vector<bool> requires_grad_per_group(Learner& l) {
    std::vector<bool> out;
    for (const auto& g : l.model().layer_group_parameters()) out.push_back(g.front().requires_grad());
    return out;
}

}  // namespace

TEST_F(LearnerTest, CreatedFrozenAndFreezingMovesTheBoundary) {
    auto l = make();
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{false, false, true}));
    l->freeze_to(1);
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{false, true, true}));
    l->unfreeze();
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{true, true, true}));
    l->freeze();
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{false, false, true}));
    EXPECT_THROW(l->freeze_to(5), UserError);
}

TEST_F(LearnerTest, BatchNormModesFollowFreezingAndBnFreeze) {
    auto l = make();
    l->autosave = false;
    auto probe = std::make_shared<Probe>();
    std::vector<std::vector<int>> seen;  // per group: 1 when every BN trains, 0 when every BN is in eval
    probe->on_batch = [&](Learner& learner, long) {
        std::vector<int> g_modes;
        for (const auto& g : learner.model().layer_groups()) {
            int training = -1;
            for (const auto& m : g)
                for (auto& sub : m->modules(true))
                    if (sub->as<torch::nn::BatchNorm2d>() || sub->as<torch::nn::BatchNorm1d>()) {
                        const int t = sub->is_training() ? 1 : 0;
                        training = training == -1 ? t : (training == t ? t : 2);
                    }
            g_modes.push_back(training);
        }
        seen.push_back(g_modes);
        learner.request_stop("probe done");
    };
    l->add_callback(probe);
    FitOptions o;
    o.lrs = {1e-3};
    l->freeze_to(1);
    l->fit(o);
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back(), (std::vector<int>{0, 1, 1}));
    l->bn_freeze(true);
    l->fit(o);
    EXPECT_EQ(seen.back(), (std::vector<int>{0, 0, 0}));
    // bn_freeze keeps statistics but the affine weights of unfrozen groups still train.
    EXPECT_EQ(requires_grad_per_group(*l), (std::vector<bool>{false, true, true}));
}

TEST_F(LearnerTest, DifferentialLearningRatesAndTheSchedule) {
    auto l = make();
    l->autosave = false;
    l->unfreeze();
    auto probe = std::make_shared<Probe>();
    std::vector<std::vector<double>> rates;
    std::vector<double> recorded;
    probe->on_batch_end = [&](Learner& learner, const BatchRecord& b) {
        rates.push_back(learner.current_learning_rates());
        recorded.push_back(b.lr);
    };
    l->add_callback(probe);
    FitOptions o;
    o.lrs = {1e-4, 1e-3, 1e-2};
    o.cycle_len = 1;
    o.n_cycle = 2;
    const FitResult r = l->fit(o);
    ASSERT_EQ(r.epochs.size(), 2u);
    const auto m = sgdr_multipliers(4, 1, 1, 2);  // 16 training images, batch 4
    ASSERT_EQ(rates.size(), m.size());
    for (std::size_t i = 0; i < m.size(); ++i) {
        ASSERT_EQ(rates[i].size(), 3u);
        EXPECT_NEAR(rates[i][0], 1e-4 * m[i], 1e-15);
        EXPECT_NEAR(rates[i][1], 1e-3 * m[i], 1e-15);
        EXPECT_NEAR(rates[i][2], 1e-2 * m[i], 1e-15);
        EXPECT_NEAR(recorded[i], 1e-2 * m[i], 1e-15);  // the head's rate is the one recorded
    }
    FitOptions two;
    two.lrs = {1e-3, 1e-2};
    EXPECT_THROW(l->fit(two), UserError);  // two rates for three groups
}

TEST_F(LearnerTest, FitReportsFastaiMetricsAndSmoothedLoss) {
    auto l = make();
    l->autosave = false;
    FitOptions o;
    o.lrs = {1e-2};
    o.n_cycle = 2;
    const FitResult r = l->fit(o);
    ASSERT_EQ(r.epochs.size(), 2u);
    for (const auto& e : r.epochs) {
        EXPECT_GT(e.val_loss, 0);
        EXPECT_GE(e.accuracy, 0);
        EXPECT_LE(e.accuracy, 1);
        EXPECT_GT(e.log_loss, 0);
        EXPECT_GT(e.seconds, 0);
    }
    // trn_loss is the debiased moving average of the batch losses, not reset between epochs.
    const auto& b = l->batch_history();
    ASSERT_EQ(b.size(), 8u);
    double avg = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        avg = avg * 0.98 + b[i].loss * 0.02;
        EXPECT_NEAR(b[i].smooth_loss, avg / (1 - std::pow(0.98, static_cast<double>(i + 1))), 1e-9);
    }
    EXPECT_NEAR(r.epochs[1].trn_loss, b.back().smooth_loss, 1e-9);
    EXPECT_NE(epoch_table_row(r.epochs[0]).find("0.", 0), std::string::npos);
}

TEST_F(LearnerTest, LrFindLeavesNoTraceAndStopsWhenTheLossExplodes) {
    auto l = make();
    l->unfreeze();
    const auto before = weights(*l);  // includes BatchNorm running statistics
    const long epochs = l->epochs_trained();
    const LrFindResult r = l->lr_find(1e3, 1e12);  // diverges at once
    const auto after = weights(*l);
    for (std::size_t i = 0; i < before.size(); ++i)
        EXPECT_TRUE(at::equal(before[i], after[i])) << i << " " << models::state_dict_of(l->model())[i].first;
    EXPECT_EQ(l->epochs_trained(), epochs);
    EXPECT_TRUE(l->batch_history().empty());
    ASSERT_FALSE(r.lrs.empty());
    for (std::size_t i = 1; i < r.lrs.size(); ++i) EXPECT_GT(r.lrs[i], r.lrs[i - 1]);
    EXPECT_NEAR(r.lrs[0], 1e3, 1e-9);
    EXPECT_TRUE(r.stopped_early);
    EXPECT_LT(r.lrs.size(), 4u);
    // A sane sweep records one smoothed loss per batch: 100 batches at least (25 epochs of 4).
    const LrFindResult sane = l->lr_find(1e-5, 1e-2);
    EXPECT_EQ(sane.lrs.size(), 100u);
    EXPECT_EQ(sane.plot_lrs.size(), 85u);  // without the first 10 and the last 5
    EXPECT_FALSE(sane.stopped_early);
    EXPECT_TRUE(same(before, weights(*l)));
}

TEST_F(LearnerTest, NanLossStopsWithAMessage) {
    auto l = make();
    l->unfreeze();
    FitOptions o;
    o.lrs = {1e12};
    o.n_cycle = 3;
    const FitResult r = l->fit(o);
    EXPECT_TRUE(r.stopped);
    EXPECT_NE(r.stop_reason.find("NaN"), std::string::npos) << r.stop_reason;
    EXPECT_NE(r.stop_reason.find("learning rate"), std::string::npos);
}

TEST_F(LearnerTest, StopTakesEffectWithinOneBatch) {
    auto l = make();
    l->autosave = false;
    std::atomic<bool> stop{false};
    auto probe = std::make_shared<Probe>();
    long batches = 0;
    probe->on_batch_end = [&](Learner&, const BatchRecord&) {
        if (++batches == 2) stop = true;
    };
    l->add_callback(probe);
    FitOptions o;
    o.n_cycle = 5;
    const FitResult r = l->fit(o, &stop);
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.stop_reason, "stopped by the user");
    EXPECT_EQ(batches, 2);
    EXPECT_EQ(probe->fit_ends, 1);  // after_fit ran
    // The model is usable afterwards.
    const Predictions p = l->predict(data::Split::Valid);
    EXPECT_EQ(p.records.size(), 8u);
}

TEST_F(LearnerTest, PrecomputeCacheFollowsCorrectedLabelsAndNeedsAFrozenBody) {
    auto l = make();
    l->autosave = false;
    l->set_precompute(true);
    FitOptions o;
    o.lrs = {0.0};
    l->fit(o);
    const fs::path cache = *dir_ / "p" / "cache" / "precompute" / "resnet18-32.safetensors";
    auto key_of = [&] {
        std::map<std::string, std::string> meta;
        models::read_safetensors(cache, &meta);
        return meta["key"];
    };
    const std::string before = key_of();
    // A training label corrected on the Inspect page: the cached targets must not be reused.
    data::Dataset marked = *dataset_;
    std::size_t first_train = 0;
    while (marked.images[first_train].split != data::Split::Train) ++first_train;
    const int old_label = marked.images[first_train].labels.at(0);
    ASSERT_TRUE(marked.relabel(marked.images[first_train].path, {1 - old_label}));
    l->set_dataset(marked);
    l->fit(o);
    EXPECT_NE(key_of(), before);
    // Unfreezing part of the body turns precompute off (it trains the head alone).
    l->freeze_to(1);
    EXPECT_FALSE(l->precompute());
    EXPECT_THROW(l->set_precompute(true), UserError);
}

TEST_F(LearnerTest, PrecomputedActivationsGiveTheFullModelsResults) {
    auto l = make();
    l->autosave = false;
    l->set_precompute(true);
    FitOptions o;
    o.lrs = {1e-2};
    const FitResult r = l->fit(o);
    ASSERT_EQ(r.epochs.size(), 1u);
    EXPECT_TRUE(fs::exists(*dir_ / "p/cache/precompute/resnet18-32.safetensors"));
    // The same head on images (no precompute) validates identically.
    l->set_precompute(false);
    const Predictions p = l->predict(data::Split::Valid);
    EXPECT_NEAR(p.log_loss(), r.epochs[0].log_loss, 1e-5);
    EXPECT_NEAR(p.accuracy(), r.epochs[0].accuracy, 1e-9);
    // Continuing without precompute keeps the head's weights.
    const auto head_before = l->model().head()->parameters()[0].detach().clone();
    EXPECT_TRUE(at::equal(head_before, l->model().head()->parameters()[0]));
    // Unfreezing turns precompute off; precompute with an unfrozen body is refused.
    l->set_precompute(true);
    l->unfreeze();
    EXPECT_FALSE(l->precompute());
    EXPECT_THROW(l->set_precompute(true), UserError);
}

TEST_F(LearnerTest, TtaMakesOnePlusNPassesAndMixes) {
    auto l = make();
    const Predictions plain = l->predict(data::Split::Valid);
    EXPECT_EQ(plain.passes, 1);
    const Predictions tta = l->predict(data::Split::Valid, 3);
    EXPECT_EQ(tta.passes, 4);
    EXPECT_TRUE(at::allclose(tta.probs.sum(1), at::ones({8}, at::kFloat), 1e-4, 1e-4));
    EXPECT_FALSE(at::allclose(tta.probs, plain.probs));
    const Predictions beta = l->predict(data::Split::Valid, 3, TtaMix::Beta);
    EXPECT_TRUE(at::allclose(beta.probs.sum(1), at::ones({8}, at::kFloat), 1e-4, 1e-4));
    // Interpretation: the confusion matrix counts every validation image once.
    const auto cm = tta.confusion_matrix(2);
    EXPECT_EQ(cm[0][0] + cm[0][1] + cm[1][0] + cm[1][1], 8);
    const auto top = tta.top_losses(3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_GE(tta.losses[top[0]], tta.losses[top[1]]);
    const Predictions test = l->predict(data::Split::Test, 2);
    EXPECT_EQ(test.records.size(), 6u);
    for (int a : test.actual) EXPECT_EQ(a, -1);
}

TEST_F(LearnerTest, ResumeIsExact) {
    // A: two epochs straight. B: one epoch, stopped; C: resumed from B's autosave.
    FitOptions o;
    o.lrs = {1e-2};
    o.n_cycle = 2;
    auto a = make();
    a->unfreeze();
    a->fit(o);
    const auto wa = weights(*a);

    auto b = make();
    b->unfreeze();
    auto probe = std::make_shared<Probe>();
    probe->on_epoch = [](Learner& l, const EpochRecord&) { l.request_stop("after one epoch"); };
    b->add_callback(probe);
    const FitResult rb = b->fit(o);
    EXPECT_TRUE(rb.stopped);
    ASSERT_EQ(rb.epochs.size(), 1u);
    EXPECT_FALSE(same(wa, weights(*b)));

    // C is set to bf16 (as `--precision auto` on a bf16 CPU would): the fit still finishes in
    // the fp32 it began in, else its weights would end ~1e-3 away.
    auto c = make();
    c->set_precision(Precision::BF16);
    ASSERT_EQ(c->interrupted_fit_precision("autosave"), Precision::FP32);
    EXPECT_FALSE(c->interrupted_fit_precision("nope").has_value());
    const FitResult rc = c->resume("autosave");
    EXPECT_EQ(c->precision(), Precision::FP32);
    ASSERT_EQ(rc.epochs.size(), 1u);
    EXPECT_EQ(rc.epochs[0].epoch, 1);
    const auto wc = weights(*c);
    ASSERT_EQ(wa.size(), wc.size());
    for (std::size_t i = 0; i < wa.size(); ++i) EXPECT_TRUE(at::allclose(wa[i], wc[i], 1e-6, 1e-7)) << i;
    EXPECT_EQ(c->epochs_trained(), 2);
}

TEST_F(LearnerTest, SaveLoadAndDamagedCheckpoints) {
    auto l = make();
    l->unfreeze();
    l->save("mine");
    const auto w = weights(*l);
    {
        torch::NoGradGuard no_grad;
        for (auto& p : l->model().parameters()) p.add_(1.0);
    }
    l->load("mine");
    EXPECT_TRUE(same(w, weights(*l)));
    EXPECT_EQ(l->frozen_groups(), 0);
    EXPECT_THROW(l->load("nope"), UserError);
    // Weights from another save with the same name but not matching the state file.
    const fs::path models = *dir_ / "p/models";
    fs::copy_file(models / "mine.safetensors", models / "other.safetensors");
    l->save("other");
    fs::copy_file(models / "mine.safetensors", models / "other.safetensors", fs::copy_options::overwrite_existing);
    try {
        l->load("other");
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("incomplete"), std::string::npos);
    }
}

TEST_F(LearnerTest, SubmissionFileIsKaggleShaped) {
    auto l = make();
    const Predictions test = l->predict(data::Split::Test);
    write_submission(*dir_ / "sub.csv", *dataset_, test, 0.05);
    const auto check = kaggle::check_submission(*dir_ / "sub.csv", *dir_ / "p/sample_submission.csv", 0.05, 0.95);
    EXPECT_TRUE(check.ok()) << check.summary();
    const std::string text = read_file(*dir_ / "sub.csv");
    EXPECT_EQ(text.rfind("id,label\n1,", 0), 0u) << text;  // sorted by numeric id
    write_submission(*dir_ / "sub.csv.gz", *dataset_, test, 0.05);
    EXPECT_EQ(kaggle::read_text_maybe_gzip(*dir_ / "sub.csv.gz"), text);
    write_submission(*dir_ / "labels.csv", *dataset_, test, 0, true);
    const std::string labels = read_file(*dir_ / "labels.csv");
    EXPECT_TRUE(labels.find(",cat\n") != std::string::npos || labels.find(",dog\n") != std::string::npos);
}

TEST_F(LearnerTest, SetDatasetHonoursTheUsersMarks) {
    auto l = make();
    const Predictions before = l->predict(data::Split::Valid);
    data::Dataset marked = *dataset_;
    const auto valid = marked.indices(data::Split::Valid);
    const std::size_t gone = valid.at(0), relabelled = valid.at(1);
    const int old_label = marked.images[relabelled].labels.at(0);
    ASSERT_TRUE(marked.set_excluded(marked.images[gone].path, true));
    ASSERT_TRUE(marked.relabel(marked.images[relabelled].path, {1 - old_label}));
    l->set_dataset(marked);
    const Predictions after = l->predict(data::Split::Valid);
    EXPECT_EQ(after.records.size(), before.records.size() - 1);
    EXPECT_EQ(std::count(after.records.begin(), after.records.end(), gone), 0);
    for (std::size_t i = 0; i < after.records.size(); ++i) {
        if (after.records[i] == relabelled) {
            EXPECT_EQ(after.actual[i], 1 - old_label);
        }
    }
    // A fit after the change trains on the marked data without complaint.
    FitOptions o;
    o.lrs = {1e-3};
    EXPECT_FALSE(l->fit(o).stopped);
    data::Dataset other = *dataset_;
    other.classes.push_back("bird");
    EXPECT_THROW(l->set_dataset(other), UserError);
}

TEST(Predictions, PerClassMetricsAndTheMistakesCsv) {
    test::TempDir dir;
    data::Dataset d;
    d.classes = {"cat", "dog"};
    for (int i = 0; i < 4; ++i) {
        data::ImageRecord im;
        im.path = "valid/" + std::to_string(i) + ".jpg";
        im.split = data::Split::Valid;
        im.labels = {i < 2 ? 0 : 1};
        d.images.push_back(im);
    }
    Predictions p;
    p.records = {0, 1, 2, 3};
    p.probs = at::tensor({0.9f, 0.1f, 0.3f, 0.7f, 0.2f, 0.8f, 0.6f, 0.4f}).reshape({4, 2});
    p.predicted = {0, 1, 1, 0};
    p.actual = {0, 0, 1, 1};
    for (std::size_t i = 0; i < 4; ++i) p.losses.push_back(-std::log(p.probs[static_cast<long>(i)][p.actual[i]].item<double>()));
    const auto m = p.per_class(2);
    EXPECT_DOUBLE_EQ(m[0].precision, 0.5);   // predicted cat: rows 0 (cat) and 3 (dog)
    EXPECT_DOUBLE_EQ(m[0].recall, 0.5);
    EXPECT_EQ(m[0].support, 2);
    EXPECT_EQ(m[1].predicted, 2);
    EXPECT_EQ(p.probability_matrix(), (std::vector<float>{0.9f, 0.1f, 0.3f, 0.7f, 0.2f, 0.8f, 0.6f, 0.4f}));
    write_predictions_csv(dir / "m.csv", dir.path(), d, p, true);
    const std::string csv = read_file(dir / "m.csv");
    // Two mistakes, highest loss first: row 1 (cat at 0.3, loss 1.20) then row 3 (dog at 0.4, 0.92).
    const auto lines = [&] {
        std::vector<std::string> out;
        std::string line;
        std::istringstream in(csv);
        while (std::getline(in, line)) out.push_back(line);
        return out;
    }();
    ASSERT_EQ(lines.size(), 3u) << csv;
    EXPECT_EQ(lines[0], "path,id,actual,predicted,probability,probability_actual,loss,p_cat,p_dog");
    EXPECT_EQ(lines[1].substr(lines[1].find(",1,")), ",1,cat,dog,0.7,0.3,1.20397,0.3,0.7");
    EXPECT_EQ(lines[2].substr(lines[2].find(",3,")), ",3,dog,cat,0.6,0.4,0.916291,0.6,0.4");
    write_predictions_csv(dir / "all.csv", dir.path(), d, p, false);
    const std::string all = read_file(dir / "all.csv");
    EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 5);
}

TEST_F(LearnerTest, EarlyStoppingAndBestModel) {
    auto l = make();
    l->autosave = false;
    // A val_loss that never improves after the first epoch: stop after `patience` more.
    auto early = std::make_shared<EarlyStopping>(1, Monitor::Accuracy);
    auto best = std::make_shared<SaveBestModel>("best", Monitor::ValLoss, true);
    l->add_callback(best);
    l->add_callback(early);
    FitOptions o;
    o.lrs = {1e-9};  // the metric cannot improve
    o.n_cycle = 6;
    const FitResult r = l->fit(o);
    EXPECT_TRUE(r.stopped);
    EXPECT_NE(r.stop_reason.find("early stopping"), std::string::npos) << r.stop_reason;
    EXPECT_LT(r.epochs.size(), 6u);
    EXPECT_GE(best->best_epoch(), 0);
    EXPECT_TRUE(l->has_checkpoint("best"));
}

TEST(LearnerBadFiles, AnImageBrokenAfterPrepareIsLeftOutAndReported) {
    test::TempDir dir;
    test::write_sample(dir / "dl", 16, 2);
    data::PrepareOptions o;
    o.project = dir / "p";
    o.source = dir / "dl";
    o.valid_per_class = 2;
    const data::Dataset d = data::prepare_dataset(o);
    const auto train = d.indices(data::Split::Train);
    write_file_atomically(d.resolve(dir / "p", d.images[train[0]]), "broken since");
    LearnerConfig c;
    c.arch = "resnet18";
    c.size = 32;
    c.batch_size = 4;
    c.pretrained = false;
    Learner l(dir / "p", d, c);
    l.autosave = false;
    const FitResult r = l.fit(FitOptions{});
    EXPECT_FALSE(r.stopped);
    ASSERT_EQ(l.load_failures().size(), 1u);
    EXPECT_NE(l.load_failures()[0].reason.find("not an image"), std::string::npos);
}

TEST_F(LearnerTest, RecipesRunStepByStepAndRejectUnknownSteps) {
    auto l = make();
    l->autosave = false;
    std::vector<std::string> started;
    train::RecipeEvents ev;
    ev.step_started = [&](int n, int total, const std::string& s) {
        EXPECT_EQ(total, 7);
        EXPECT_EQ(n, static_cast<int>(started.size()) + 1);
        started.push_back(s);
    };
    bool chose = false;
    ev.lr_found = [&](const LrFindResult&, double lr, bool chosen) {
        chose = chosen;
        EXPECT_GE(lr, 1e-4);
        EXPECT_LE(lr, 1e-1);
    };
    const auto r = run_recipe(*l,
                              R"([{"step": "precompute", "on": true}, {"step": "lr_find"},
                                  {"step": "fit", "lr": "found", "cycles": 1},
                                  {"step": "precompute", "on": false}, {"step": "unfreeze"},
                                  {"step": "fit", "lr": ["found/100", "found/10", "found"], "cycles": 1, "cycle_len": 1},
                                  {"step": "predict", "split": "test", "tta": 1, "out": "recipe.csv"}])",
                              ev);
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(r.steps_done, 7);
    ASSERT_EQ(started.size(), 7u);
    EXPECT_EQ(started[0], "precompute activations (train the head on cached features)");
    EXPECT_EQ(started[4], "unfreeze the whole network");
    // "found" resolved to the rate the sweep chose, in words.
    EXPECT_EQ(started[5].rfind("fit 1 cycle of 1 epoch at differential rates ", 0), 0u) << started[5];
    EXPECT_EQ(started[6], "predict the test set with TTA (1 augmented pass), write recipe.csv");
    EXPECT_TRUE(chose);
    EXPECT_EQ(r.epochs.size(), 2u);
    EXPECT_TRUE(fs::exists(*dir_ / "p/recipe.csv"));
    EXPECT_EQ(l->frozen_groups(), 0);
    try {
        run_recipe(*l, R"([{"step": "fit"}, {"step": "dance"}])");
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
    }
    EXPECT_THROW(run_recipe(*l, "[{\"step\": \"fit\", \"lr\": \"lots\"}]"), UserError);
    EXPECT_NO_THROW(default_recipe());
    EXPECT_THROW(run_recipe(*l, "not json"), UserError);
    // A learner from scratch (this one) gets the same 8 steps adapted to a random network: the
    // same kinds of steps in the same order, the last fit at one rate with AdamW.
    EXPECT_EQ(recipe_for(*l), from_scratch_recipe());
    const auto scratch = nlohmann::json::parse(from_scratch_recipe());
    const auto seed = nlohmann::json::parse(default_recipe());
    ASSERT_EQ(scratch.size(), seed.size());
    for (std::size_t i = 0; i < seed.size(); ++i) EXPECT_EQ(scratch[i]["step"], seed[i]["step"]) << i;
    EXPECT_EQ(scratch[7]["optimizer"], "adamw");
    EXPECT_TRUE(scratch[7]["lr"].is_number());
}
