// project::Session on a tiny sample project (resnet18 at 32 px, random body: no network):
// the learner persisted and reopened as it was left, new learners keeping trained weights,
// results tagged with the learner state they came from, recipes, checkpoints and resuming.
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/prepare.h"
#include "whisker/project/session.h"
#include "whisker/train/recipe.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <fstream>
#include <thread>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::project;
using nlohmann::json;

namespace {

constexpr int kTrain = 24, kTest = 6, kValidPerClass = 4;   // 16 train, 8 valid: 2 batches of 8

class SessionTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        sample_ = new test::TempDir;
        test::write_sample(*sample_ / "dl", kTrain, kTest);
    }
    static void TearDownTestSuite() {
        delete sample_;
        sample_ = nullptr;
    }
    void SetUp() override {
        data::PrepareOptions o;
        o.project = project();
        o.source = *sample_ / "dl";
        o.valid_per_class = kValidPerClass;
        o.threads = 2;
        data::prepare_dataset(o);
    }
    fs::path project() const { return dir_ / "p"; }
    static LearnerSpec spec() {
        LearnerSpec s;
        s.arch = "resnet18";
        s.size = 32;
        s.batch_size = 8;
        s.pretrained = false;
        s.seed = 7;
        return s;
    }
    static SessionOptions options() {
        SessionOptions o;
        o.base.threads = 2;
        return o;
    }
    std::unique_ptr<Session> open() const { return std::make_unique<Session>(project(), options()); }
    static train::FitOptions one_epoch(double lr = 1e-2) {
        train::FitOptions o;
        o.lrs = {lr};
        o.n_cycle = 1;
        return o;
    }
    static std::size_t lines_of(const fs::path& file) {
        std::ifstream in(file);
        std::size_t n = 0;
        for (std::string line; std::getline(in, line);)
            if (!line.empty()) ++n;
        return n;
    }

    static test::TempDir* sample_;
    test::TempDir dir_;
};
test::TempDir* SessionTest::sample_ = nullptr;

// Calls `on_batch` after every training batch.
struct BatchHook : train::Callback {
    std::function<void(const train::BatchRecord&)> on_batch;
    void after_batch(train::Learner&, const train::BatchRecord& b) override {
        if (on_batch) on_batch(b);
    }
};

}  // namespace

TEST_F(SessionTest, AProjectWithoutALearner) {
    Session s(project(), options());
    EXPECT_TRUE(s.has_dataset());
    EXPECT_EQ(s.dataset().count(data::Split::Test), static_cast<std::size_t>(kTest));
    EXPECT_FALSE(s.has_learner());
    EXPECT_FALSE(s.spec().has_value());
    EXPECT_EQ(s.describe_learner(), "");
    EXPECT_TRUE(s.learner_error().empty());
    EXPECT_FALSE(s.learner_is_trained());
    EXPECT_THROW(s.learner(), UserError);
    EXPECT_FALSE(s.interrupted_fit().has_value());
    EXPECT_FALSE(s.predictions(data::Split::Test).has_value());
    EXPECT_THROW(s.write_submission(dir_ / "sub.csv"), UserError);
    EXPECT_TRUE(s.training_log().batches.empty());
    // Opening reads only.
    EXPECT_FALSE(fs::exists(project() / LearnerSpec::kFileName));
    EXPECT_FALSE(fs::exists(project() / "models" / "current.json"));
    EXPECT_FALSE(fs::exists(project() / ProjectLock::kFileName));

    // A folder without a dataset opens; a path that is no folder does not.
    fs::create_directories(dir_ / "empty");
    Session empty(dir_ / "empty", options());
    EXPECT_FALSE(empty.has_dataset());
    EXPECT_FALSE(empty.dataset_error().empty());
    EXPECT_THROW(empty.dataset(), UserError);
    EXPECT_THROW(empty.new_learner(spec()), UserError);
    EXPECT_THROW(Session(dir_ / "missing", options()), UserError);
}

TEST_F(SessionTest, ANewLearnerIsPersistedAndReopenedAsItWasLeft) {
    auto s = open();
    EXPECT_EQ(s->new_learner(spec()), "");   // nothing trained to keep
    ASSERT_TRUE(s->has_learner());
    EXPECT_TRUE(fs::exists(project() / LearnerSpec::kFileName));
    EXPECT_TRUE(fs::exists(project() / "models" / "current.json"));
    EXPECT_TRUE(fs::exists(project() / "models" / "current.safetensors"));
    const auto read = LearnerSpec::read(project());
    ASSERT_TRUE(read.has_value());
    EXPECT_TRUE(*read == spec());
    EXPECT_EQ(s->describe_learner(), "resnet18 at 32 px, from scratch, 0 epochs, body frozen");

    auto t = open();
    ASSERT_TRUE(t->has_learner()) << t->learner_error();
    ASSERT_TRUE(t->spec().has_value());
    EXPECT_TRUE(*t->spec() == spec());
    EXPECT_EQ(t->describe_learner(), "resnet18 at 32 px, from scratch, 0 epochs, body frozen");
    EXPECT_EQ(t->learner().config().batch_size, 8);
    EXPECT_EQ(t->learner().config().seed, 7u);
    EXPECT_EQ(t->learner().config().threads, 2);   // from the session's options
    // The same weights: the same state.
    EXPECT_EQ(t->state(), s->state());
    EXPECT_FALSE(t->learner_is_trained());

    // freeze_to and precompute in words.
    t->learner().freeze_to(1);
    EXPECT_EQ(t->describe_learner(), "resnet18 at 32 px, from scratch, 0 epochs, first 1 layer group of the body frozen");
    t->learner().freeze();
    t->learner().set_precompute(true);
    EXPECT_EQ(t->describe_learner(), "resnet18 at 32 px, from scratch, 0 epochs, body frozen, precompute on");
    LearnerSpec pre = spec();
    pre.pretrained = true;
    pre.arch = "resnet34";
    pre.size = 224;
    fs::create_directories(dir_ / "other");
    pre.write(dir_ / "other");   // only the words for a pretrained spec, no learner made from it
    EXPECT_TRUE(*LearnerSpec::read(dir_ / "other") == pre);
}

TEST_F(SessionTest, TheAugmentationIsChosenWithTheLearnerAndRemembered) {
    LearnerSpec top = spec();
    top.augment = data::AugmentPreset::TopDown;
    top.max_zoom = 1.25;
    top.no_flip = true;
    {
        auto s = open();
        s->new_learner(top);
        EXPECT_EQ(s->describe_learner(),
                  "resnet18 at 32 px, from scratch, top-down augmentation without flips, max zoom 1.25, 0 epochs, body frozen");
    }
    const json written = json::parse(read_file(project() / LearnerSpec::kFileName));
    EXPECT_EQ(written.at("augment"), "top-down");
    EXPECT_EQ(written.at("max_zoom"), 1.25);
    EXPECT_EQ(written.at("no_flip"), true);
    ASSERT_TRUE(LearnerSpec::read(project()).has_value());
    EXPECT_TRUE(*LearnerSpec::read(project()) == top);

    // Reopened: the learner's loaders (training and TTA) use it.
    auto t = open();
    ASSERT_TRUE(t->has_learner()) << t->learner_error();
    EXPECT_TRUE(*t->spec() == top);
    const train::LearnerConfig& c = t->learner().config();
    EXPECT_EQ(c.augment, data::AugmentPreset::TopDown);
    EXPECT_EQ(c.max_zoom, 1.25);
    EXPECT_TRUE(c.no_flip);
    const data::AugmentSettings a = t->learner().augment_settings();
    EXPECT_EQ(a.preset, data::AugmentPreset::TopDown);
    EXPECT_EQ(a.size, 32);
    EXPECT_EQ(a.max_zoom, 1.25);
    EXPECT_TRUE(a.no_flip);
    const auto& p = t->predict(data::Split::Valid, 2);   // TTA through the top-down loader
    EXPECT_EQ(p.predictions->passes, 3);

    // Each of the other presets, by name.
    for (data::AugmentPreset preset : {data::AugmentPreset::Basic, data::AugmentPreset::None, data::AugmentPreset::SideOn}) {
        LearnerSpec other = spec();
        other.augment = preset;
        other.max_zoom = data::default_max_zoom(preset);
        other.write(project());
        EXPECT_EQ(json::parse(read_file(project() / LearnerSpec::kFileName)).at("augment"), data::augment_preset_name(preset));
        EXPECT_TRUE(*LearnerSpec::read(project()) == other) << data::augment_preset_name(preset);
    }
}

TEST_F(SessionTest, AnOldLearnerFileReadsAsSideOnAugmentation) {
    // learner.json as written before the augmentation options.
    write_file_atomically(project() / LearnerSpec::kFileName,
                          R"({"arch": "resnet18", "size": 32, "batch_size": 8, "pretrained": false, "seed": 7})");
    const auto read = LearnerSpec::read(project());
    ASSERT_TRUE(read.has_value());
    EXPECT_TRUE(*read == spec());
    EXPECT_EQ(read->augment, data::AugmentPreset::SideOn);
    EXPECT_EQ(read->max_zoom, 1.1);
    EXPECT_FALSE(read->no_flip);
    auto s = open();
    ASSERT_TRUE(s->has_learner()) << s->learner_error();
    EXPECT_EQ(s->learner().config().augment, data::AugmentPreset::SideOn);
    EXPECT_EQ(s->learner().config().max_zoom, 1.1);
    EXPECT_FALSE(s->learner().config().no_flip);
    EXPECT_EQ(s->describe_learner(), "resnet18 at 32 px, from scratch, 0 epochs, body frozen");   // the default goes unsaid

    // An unknown augmentation or a zoom below 1 is a damaged file, not a silent default.
    write_file_atomically(project() / LearnerSpec::kFileName, R"({"arch": "resnet18", "augment": "sideways"})");
    try {
        LearnerSpec::read(project());
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("unknown augmentation 'sideways'"), std::string::npos) << e.what();
        EXPECT_NE(e.hint().find("--new-learner"), std::string::npos);
    }
    write_file_atomically(project() / LearnerSpec::kFileName, R"({"arch": "resnet18", "max_zoom": 0.5})");
    EXPECT_THROW(LearnerSpec::read(project()), UserError);
    write_file_atomically(project() / LearnerSpec::kFileName, R"({"arch": "resnet18", "no_flip": "yes"})");
    EXPECT_THROW(LearnerSpec::read(project()), UserError);
}

TEST_F(SessionTest, FitPersistAndReopenKeepEpochsHistoryAndTheTrainingLog) {
    std::size_t batches = 0;
    std::string state;
    {
        auto s = open();
        s->new_learner(spec());
        const auto r = s->fit(one_epoch());
        ASSERT_EQ(r.epochs.size(), 1u);
        batches = s->training_log().batches.size();
        EXPECT_EQ(batches, 2u);   // 16 training images in batches of 8
        s->persist();
        state = s->learner().state_id();
        EXPECT_TRUE(s->learner_is_trained());
    }
    EXPECT_TRUE(fs::exists(project() / TrainingLog::kFileName));
    auto t = open();
    ASSERT_TRUE(t->has_learner()) << t->learner_error();
    EXPECT_EQ(t->describe_learner(), "resnet18 at 32 px, from scratch, 1 epoch, body frozen");
    EXPECT_EQ(t->learner().epochs_trained(), 1);
    ASSERT_EQ(t->learner().epoch_history().size(), 1u);
    EXPECT_GE(t->learner().epoch_history()[0].accuracy, 0.0);
    EXPECT_LE(t->learner().epoch_history()[0].accuracy, 1.0);
    EXPECT_EQ(t->learner().state_id(), state);
    ASSERT_EQ(t->training_log().batches.size(), batches);
    EXPECT_EQ(t->training_log().learner, state);
    for (std::size_t i = 0; i < batches; ++i) EXPECT_EQ(t->training_log().batches[i].x, static_cast<long>(i));
    EXPECT_TRUE(t->learner_is_trained());

    // The batch axis continues across fits.
    t->fit(one_epoch(1e-3));
    ASSERT_EQ(t->training_log().batches.size(), 2 * batches);
    EXPECT_EQ(t->training_log().batches.back().x, static_cast<long>(2 * batches - 1));

    // Unfreezing is part of what is persisted.
    t->learner().unfreeze();
    t->persist();
    auto u = open();
    ASSERT_TRUE(u->has_learner()) << u->learner_error();
    EXPECT_EQ(u->describe_learner(), "resnet18 at 32 px, from scratch, 2 epochs, body unfrozen");
    EXPECT_EQ(u->training_log().batches.size(), 2 * batches);

    // A log written for other weights is not shown with this learner.
    TrainingLog stale = u->training_log();
    stale.learner = "someone-else";
    stale.write(project());
    auto v = open();
    EXPECT_TRUE(v->training_log().batches.empty());
}

TEST_F(SessionTest, TrainingLogRoundTripAndDamagedFiles) {
    TrainingLog log;
    log.learner = "abc";
    log.batches = {{0, 0.7, 0.69, 1e-3}, {1, 0.6, 0.65, 2e-3}};
    train::LrFindResult r;
    r.lrs = {1e-5, 1e-4};
    r.losses = {0.7, 0.6};
    r.plot_lrs = {1e-4};
    r.plot_losses = {0.6};
    r.suggestions.minimum = 1e-3;
    r.suggestions.valid = true;
    log.lr_find = r;
    fs::create_directories(project() / "models");
    log.write(project());
    const TrainingLog back = TrainingLog::read(project());
    EXPECT_EQ(back.learner, "abc");
    ASSERT_EQ(back.batches.size(), 2u);
    EXPECT_EQ(back.batches[1].x, 1);
    EXPECT_DOUBLE_EQ(back.batches[1].smooth_loss, 0.65);
    EXPECT_DOUBLE_EQ(back.batches[1].lr, 2e-3);
    ASSERT_TRUE(back.lr_find.has_value());
    EXPECT_EQ(back.lr_find->lrs, r.lrs);
    EXPECT_DOUBLE_EQ(back.lr_find->suggestions.minimum, 1e-3);
    EXPECT_TRUE(back.lr_find->suggestions.valid);

    write_file_atomically(project() / TrainingLog::kFileName, "{not json");
    EXPECT_TRUE(TrainingLog::read(project()).batches.empty());
    EXPECT_TRUE(TrainingLog::read(dir_ / "nowhere").batches.empty());

    // A damaged learner.json: the session opens, without a learner, saying why.
    write_file_atomically(project() / LearnerSpec::kFileName, "{\"arch\": ");
    EXPECT_THROW(LearnerSpec::read(project()), UserError);
    Session s(project(), options());
    EXPECT_TRUE(s.has_dataset());
    EXPECT_FALSE(s.has_learner());
    EXPECT_NE(s.learner_error().find("damaged"), std::string::npos) << s.learner_error();
    try {
        s.learner();
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
    }
    // A new learner replaces it.
    s.new_learner(spec());
    EXPECT_TRUE(s.has_learner());
    EXPECT_TRUE(*LearnerSpec::read(project()) == spec());
}

TEST_F(SessionTest, ANewLearnerKeepsTheTrainedWeightsAsACheckpoint) {
    auto s = open();
    s->new_learner(spec());
    s->fit(one_epoch());
    s->persist();
    const std::string trained_state = s->learner().state_id();
    s->predict(data::Split::Valid);
    ASSERT_TRUE(s->predictions(data::Split::Valid).has_value());

    LearnerSpec smaller = spec();
    smaller.batch_size = 4;
    const std::string kept = s->new_learner(smaller);
    EXPECT_EQ(kept.rfind("before-new-", 0), 0u) << kept;
    EXPECT_TRUE(fs::exists(project() / "models" / (kept + ".json")));
    EXPECT_TRUE(fs::exists(project() / "models" / (kept + ".safetensors")));
    // The new learner: fresh, persisted, with nothing of the old one's results.
    EXPECT_EQ(s->describe_learner(), "resnet18 at 32 px, from scratch, 0 epochs, body frozen");
    EXPECT_EQ(s->learner().config().batch_size, 4);
    EXPECT_NE(s->learner().state_id(), trained_state);
    EXPECT_FALSE(s->predictions(data::Split::Valid).has_value());
    EXPECT_TRUE(s->training_log().batches.empty());
    EXPECT_TRUE(*LearnerSpec::read(project()) == smaller);
    // The old learner's autosave is not an interrupted fit of the new one.
    EXPECT_FALSE(s->interrupted_fit().has_value());

    // The kept checkpoint is listed and loads: the trained weights come back.
    const auto list = s->checkpoints();
    const auto it = std::find_if(list.begin(), list.end(), [&](const CheckpointInfo& c) { return c.name == kept; });
    ASSERT_NE(it, list.end());
    EXPECT_EQ(it->epochs, 1);
    EXPECT_EQ(it->arch, "resnet18");
    EXPECT_EQ(it->state, trained_state);
    s->load_checkpoint(kept);
    EXPECT_EQ(s->learner().state_id(), trained_state);
    EXPECT_EQ(s->describe_learner(), "resnet18 at 32 px, from scratch, 1 epoch, body frozen");
    // load_checkpoint persists: the next program opens the loaded weights.
    auto t = open();
    ASSERT_TRUE(t->has_learner()) << t->learner_error();
    EXPECT_EQ(t->learner().state_id(), trained_state);

    // An untrained learner is replaced without a checkpoint.
    auto u = open();
    u->new_learner(spec());
    EXPECT_EQ(u->new_learner(spec()), "");

    // A learner that cannot be made leaves the session with the project's learner as it was.
    const std::string before = u->learner().state_id();
    LearnerSpec bad = spec();
    bad.arch = "no-such-net";
    EXPECT_THROW(u->new_learner(bad), UserError);
    ASSERT_TRUE(u->has_learner());
    EXPECT_EQ(u->learner().state_id(), before);
    ASSERT_TRUE(u->spec().has_value());
    EXPECT_EQ(u->spec()->arch, "resnet18");
    EXPECT_EQ(LearnerSpec::read(project())->arch, "resnet18");
}

TEST_F(SessionTest, ASubmissionComesOnlyFromTheCurrentLearnerState) {
    auto s = open();
    s->new_learner(spec());
    const auto& first = s->predict(data::Split::Test);
    EXPECT_TRUE(s->is_current(first));
    EXPECT_EQ(first.predictions->records.size(), static_cast<std::size_t>(kTest));
    EXPECT_EQ(first.model, "resnet18 at 32 px, 0 epochs");
    const LearnerState before = s->state();

    s->fit(one_epoch());
    EXPECT_NE(s->state(), before);
    ASSERT_TRUE(s->predictions(data::Split::Test).has_value());
    EXPECT_FALSE(s->is_current(*s->predictions(data::Split::Test)));
    try {
        s->write_submission(dir_ / "stale.csv");
        FAIL() << "wrote a submission from predictions of an older learner state";
    } catch (const UserError& e) {
        EXPECT_NE(e.hint().find("again"), std::string::npos) << e.hint();
        EXPECT_NE(std::string(e.what()).find("another state"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir_ / "stale.csv"));

    const auto& again = s->predict(data::Split::Test, 1);
    EXPECT_TRUE(s->is_current(again));
    EXPECT_EQ(again.tta, 1);
    EXPECT_EQ(again.model, "resnet18 at 32 px, 1 epoch");
    s->write_submission(dir_ / "sub.csv");
    EXPECT_EQ(lines_of(dir_ / "sub.csv"), static_cast<std::size_t>(kTest) + 1);   // header + one row per image
    EXPECT_THROW(s->predict(data::Split::Train), UserError);

    // Predictions of the persisted state survive a reload (they describe the weights on disk).
    s->persist();
    s->reload();
    ASSERT_TRUE(s->predictions(data::Split::Test).has_value());
    EXPECT_TRUE(s->is_current(*s->predictions(data::Split::Test)));
    EXPECT_NO_THROW(s->write_submission(dir_ / "sub2.csv"));

    // Marks change the data: the predictions no longer describe what the learner sees.
    data::Dataset d = data::Dataset::load(project());
    const auto valid = d.indices(data::Split::Valid);
    ASSERT_FALSE(valid.empty());
    ASSERT_TRUE(d.set_excluded(d.images[valid.front()].path, true));
    d.save(project());
    s->reload_dataset();
    EXPECT_FALSE(s->is_current(*s->predictions(data::Split::Test)));
    EXPECT_THROW(s->write_submission(dir_ / "sub3.csv"), UserError);
    s->predict(data::Split::Test);
    EXPECT_NO_THROW(s->write_submission(dir_ / "sub3.csv"));
}

// The next program to open the project (the workbench reopened, the CLI) finds the latest
// predictions of each split while they describe the learner's saved weights and the data:
// the same rows, probabilities, losses, TTA and model words; none after the learner trains
// again, or the data changes; a damaged file is ignored (predict again), never fatal.
TEST_F(SessionTest, PredictionsOfTheSavedStateAreThereWhenTheProjectIsOpenedAgain) {
    auto s = open();
    s->new_learner(spec());
    s->fit(one_epoch());
    s->persist();
    const SplitPredictions valid = s->predict(data::Split::Valid, 1);
    const SplitPredictions test = s->predict(data::Split::Test);

    auto expect_same = [](const SplitPredictions& a, const SplitPredictions& b) {
        ASSERT_TRUE(a.predictions && b.predictions);
        EXPECT_EQ(a.split, b.split);
        EXPECT_EQ(a.tta, b.tta);
        EXPECT_EQ(a.model, b.model);
        EXPECT_EQ(a.origin, b.origin);
        EXPECT_EQ(a.predictions->records, b.predictions->records);
        EXPECT_EQ(a.predictions->predicted, b.predictions->predicted);
        EXPECT_EQ(a.predictions->actual, b.predictions->actual);
        EXPECT_EQ(a.predictions->passes, b.predictions->passes);
        ASSERT_EQ(a.predictions->losses.size(), b.predictions->losses.size());
        for (std::size_t i = 0; i < a.predictions->losses.size(); ++i) {
            const double x = a.predictions->losses[i], y = b.predictions->losses[i];
            EXPECT_TRUE((std::isnan(x) && std::isnan(y)) || x == y) << i << ": " << x << " vs " << y;
        }
        EXPECT_TRUE(at::equal(a.predictions->probs, b.predictions->probs));
    };
    {
        auto next = open();   // another program
        ASSERT_TRUE(next->predictions(data::Split::Valid).has_value());
        ASSERT_TRUE(next->predictions(data::Split::Test).has_value());
        EXPECT_TRUE(next->is_current(*next->predictions(data::Split::Valid)));
        expect_same(*next->predictions(data::Split::Valid), valid);
        expect_same(*next->predictions(data::Split::Test), test);
        EXPECT_EQ(next->predictions(data::Split::Valid)->tta, 1);
        EXPECT_TRUE(std::isnan(next->predictions(data::Split::Test)->predictions->losses.front()));   // unlabelled
        next->write_submission(dir_ / "reopened.csv");
        s->write_submission(dir_ / "first.csv");
        EXPECT_EQ(read_file(dir_ / "reopened.csv"), read_file(dir_ / "first.csv"));
    }

    // Trained again and saved: the kept predictions describe weights that are gone.
    s->fit(one_epoch());
    s->persist();
    EXPECT_FALSE(open()->predictions(data::Split::Test).has_value());
    EXPECT_FALSE(open()->predictions(data::Split::Valid).has_value());

    // Predicted again, then the data changes (a mark): not kept for the new data.
    s->predict(data::Split::Test);
    EXPECT_TRUE(open()->predictions(data::Split::Test).has_value());
    data::Dataset d = data::Dataset::load(project());
    const auto valid_rows = d.indices(data::Split::Valid);
    ASSERT_TRUE(d.set_excluded(d.images[valid_rows.front()].path, true));
    d.save(project());
    EXPECT_FALSE(open()->predictions(data::Split::Test).has_value());

    // A damaged file (cut short) is ignored.
    s->reload_dataset();
    s->predict(data::Split::Test);
    ASSERT_TRUE(open()->predictions(data::Split::Test).has_value());
    const fs::path kept = project() / "cache" / "predictions" / "test.bin";
    ASSERT_TRUE(fs::exists(kept));
    const std::string bytes = read_file(kept);
    write_file_atomically(kept, bytes.substr(0, bytes.size() - 5));
    EXPECT_FALSE(open()->predictions(data::Split::Test).has_value());
    write_file_atomically(kept, "nonsense");
    EXPECT_FALSE(open()->predictions(data::Split::Test).has_value());
}

TEST_F(SessionTest, ARecipeStartingWithPrecomputeOnAnUnfrozenLearnerFreezesItFirst) {
    auto s = open();
    s->new_learner(spec());
    s->learner().unfreeze();
    s->learner().autosave = false;
    std::vector<std::tuple<int, int, std::string>> started;
    std::vector<std::string> notes;
    int predicted = 0;
    train::RecipeEvents ev;
    ev.step_started = [&](int n, int total, const std::string& d) { started.emplace_back(n, total, d); };
    ev.adjusted = [&](const std::string& note) { notes.push_back(note); };
    ev.predicted = [&](const train::Predictions&, data::Split, const fs::path&) { ++predicted; };
    train::RecipeResult r;
    try {
        r = s->run_recipe(R"([{"step": "precompute", "on": true}, {"step": "fit", "lr": 0.01, "cycles": 1},
                              {"step": "predict", "split": "test"}])",
                          ev);
    } catch (const UserError& e) {
        FAIL() << e.what();
    }
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(r.steps_done, 3);
    EXPECT_EQ(r.epochs.size(), 1u);
    ASSERT_EQ(started.size(), 3u);
    EXPECT_EQ(started[0], std::make_tuple(1, 3, std::string("precompute activations (train the head on cached features)")));
    EXPECT_EQ(started[1], std::make_tuple(2, 3, std::string("fit 1 epoch at a constant rate of 1.0e-02")));
    EXPECT_EQ(started[2], std::make_tuple(3, 3, std::string("predict the test set, write submission.csv")));
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_NE(notes[0].find("froze the body"), std::string::npos) << notes[0];
    EXPECT_EQ(predicted, 1);   // the caller's event still runs
    EXPECT_TRUE(s->learner().precompute());
    EXPECT_EQ(s->describe_learner(), "resnet18 at 32 px, from scratch, 1 epoch, body frozen, precompute on");
    // The recipe's predictions are the session's, and current.
    const auto& p = s->predictions(data::Split::Test);
    ASSERT_TRUE(p.has_value());
    EXPECT_TRUE(s->is_current(*p));
    EXPECT_EQ(p->predictions->records.size(), static_cast<std::size_t>(kTest));
    EXPECT_TRUE(fs::exists(project() / "submission.csv"));
    EXPECT_NO_THROW(s->write_submission(dir_ / "sub.csv"));
    EXPECT_EQ(s->training_log().batches.size(), 2u);

    // Already frozen: nothing to adjust.
    notes.clear();
    s->run_recipe(R"([{"step": "precompute", "on": true}])", ev);
    EXPECT_TRUE(notes.empty());
    // An lr_find step's curve becomes the session's.
    s->run_recipe(R"([{"step": "lr_find"}])");
    EXPECT_TRUE(s->training_log().lr_find.has_value());
    s->persist();
    auto t = open();
    EXPECT_TRUE(t->training_log().lr_find.has_value());
    EXPECT_EQ(t->describe_learner(), "resnet18 at 32 px, from scratch, 1 epoch, body frozen, precompute on");
}

TEST(DescribeStep, RecipeStepsInWords) {
    using train::describe_step;
    EXPECT_EQ(describe_step(R"({"step": "fit", "lr": ["found/100", "found/10", "found"], "cycles": 3, "cycle_len": 1,
                               "cycle_mult": 2})",
                            1e-2),
              "fit 3 cycles of 1 epoch (each cycle 2x longer) at differential rates 1.0e-04, 1.0e-03, 1.0e-02");
    EXPECT_EQ(describe_step(R"({"step": "fit", "lr": "found", "cycles": 3, "cycle_len": 1})", 3e-3),
              "fit 3 cycles of 1 epoch at 3.0e-03");
    EXPECT_EQ(describe_step(R"({"step": "fit", "lr": 0.01, "cycles": 1, "cycle_len": 2})", 0), "fit 1 cycle of 2 epochs at 1.0e-02");
    EXPECT_EQ(describe_step(R"({"step": "fit", "lr": 0.01, "cycles": 2})", 0), "fit 2 epochs at a constant rate of 1.0e-02");
    EXPECT_EQ(describe_step(R"({"step": "fit"})", 5e-3), "fit 1 epoch at a constant rate of 5.0e-03");
    EXPECT_EQ(describe_step(R"({"step": "fit", "lr": 0.002, "cycles": 10, "optimizer": "adamw", "one_cycle": true})", 0),
              "fit one cycle of 10 epochs at 2.0e-03 with AdamW");
    // A rate the recipe would refuse is shown as written.
    EXPECT_EQ(describe_step(R"({"step": "fit", "lr": "lots"})", 0), "fit 1 epoch at a constant rate of \"lots\"");

    EXPECT_EQ(describe_step(R"({"step": "precompute", "on": true})", 0), "precompute activations (train the head on cached features)");
    EXPECT_EQ(describe_step(R"({"step": "precompute", "on": false})", 0), "precompute off (train on augmented images)");
    EXPECT_EQ(describe_step(R"({"step": "unfreeze"})", 0), "unfreeze the whole network");
    EXPECT_EQ(describe_step(R"({"step": "freeze"})", 0), "freeze the body (train the head only)");
    EXPECT_EQ(describe_step(R"({"step": "bn_freeze", "on": true})", 0), "freeze BatchNorm statistics");
    EXPECT_EQ(describe_step(R"({"step": "bn_freeze", "on": false})", 0), "let BatchNorm statistics update");
    EXPECT_EQ(describe_step(R"({"step": "lr_find"})", 0), "find a learning rate (sweep 1e-05 to 10)");
    EXPECT_EQ(describe_step(R"({"step": "predict", "split": "test", "tta": 4, "out": "sub.csv"})", 0),
              "predict the test set with TTA (4 augmented passes), write sub.csv");
    EXPECT_EQ(describe_step(R"({"step": "predict", "split": "valid"})", 0), "predict the valid set");
    EXPECT_EQ(describe_step(R"({"step": "predict", "split": "valid", "tta": 1})", 0), "predict the valid set with TTA (1 augmented pass)");
    EXPECT_EQ(describe_step(R"({"step": "predict"})", 0), "predict the test set, write submission.csv");
    // Not a step it knows, or not JSON: shown as given.
    EXPECT_EQ(describe_step(R"({"step":"dance"})", 0), R"({"step":"dance"})");
    EXPECT_EQ(describe_step("not json", 0), "not json");
}

TEST_F(SessionTest, CheckpointsAreListedNewestFirstWithTheirEpochsAndMetrics) {
    auto s = open();
    s->new_learner(spec());   // writes "current" (0 epochs)
    s->save_checkpoint("untrained");
    s->fit(one_epoch());      // writes "autosave" (a finished fit)
    s->save_checkpoint("trained");
    // Not checkpoints: the training log, another JSON file, a damaged one.
    s->persist();
    write_file_atomically(project() / "models" / "notes.json", R"({"hello": 1})");
    write_file_atomically(project() / "models" / "broken.json", "{\"format\": \"whisker-checkpoint\", ");

    const auto list = list_checkpoints(project());
    std::vector<std::string> names;
    for (const auto& c : list) names.push_back(c.name);
    // Saved in this order within a few seconds: newest first, even within one second.
    EXPECT_EQ(names, (std::vector<std::string>{"current", "trained", "autosave", "untrained"}));
    ASSERT_EQ(list.size(), 4u);
    for (const auto& c : list) {
        EXPECT_EQ(c.arch, "resnet18") << c.name;
        EXPECT_EQ(c.size, 32) << c.name;
        EXPECT_EQ(c.saved.size(), 19u) << c.name << ": " << c.saved;
        EXPECT_FALSE(c.fit_in_progress) << c.name;
        EXPECT_FALSE(c.state.empty()) << c.name;
    }
    EXPECT_EQ(list[0].epochs, 1);
    ASSERT_TRUE(list[0].last_epoch.has_value());
    EXPECT_GE(list[0].last_epoch->accuracy, 0.0);
    EXPECT_LE(list[0].last_epoch->accuracy, 1.0);
    EXPECT_GT(list[0].last_epoch->val_loss, 0.0);
    EXPECT_EQ(list[0].state, s->learner().state_id());
    EXPECT_EQ(list[1].epochs, 1);
    EXPECT_EQ(list[1].state, list[0].state);   // the same weights saved twice
    EXPECT_EQ(list[3].epochs, 0);
    EXPECT_FALSE(list[3].last_epoch.has_value());
    EXPECT_NE(list[3].state, list[0].state);
    EXPECT_TRUE(list_checkpoints(dir_ / "nowhere").empty());
}

TEST_F(SessionTest, AnInterruptedFitIsOfferedAndResumed) {
    auto s = open();
    s->new_learner(spec());
    std::atomic<bool> stop{false};
    auto hook = std::make_shared<BatchHook>();
    hook->on_batch = [&](const train::BatchRecord& b) {
        if (b.epoch == 1) stop = true;   // after the first batch of the second epoch
    };
    s->learner().add_callback(hook);
    train::FitOptions o = one_epoch();
    o.n_cycle = 3;
    const auto r = s->fit(o, &stop);
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.stop_reason, "stopped by the user");
    EXPECT_EQ(r.epochs.size(), 1u);
    hook->on_batch = nullptr;
    const auto offered = s->interrupted_fit();
    ASSERT_TRUE(offered.has_value());
    EXPECT_EQ(offered->name, "autosave");
    EXPECT_TRUE(offered->fit_in_progress);
    EXPECT_EQ(offered->epochs, 1);
    s->persist();

    // Another program (or a restart) finds it too, and resume() continues it to the end.
    auto t = open();
    ASSERT_TRUE(t->has_learner()) << t->learner_error();
    ASSERT_TRUE(t->interrupted_fit().has_value());
    const auto rr = t->resume();
    EXPECT_FALSE(rr.stopped);
    ASSERT_EQ(rr.epochs.size(), 2u);
    EXPECT_EQ(rr.epochs[0].epoch, 1);
    EXPECT_EQ(rr.epochs[1].epoch, 2);
    EXPECT_EQ(t->learner().epochs_trained(), 3);
    EXPECT_FALSE(t->interrupted_fit().has_value());

    // After a fit that completes, there is nothing to resume.
    t->fit(one_epoch());
    EXPECT_FALSE(t->interrupted_fit().has_value());
    EXPECT_THROW(t->resume(), UserError);
}

TEST_F(SessionTest, ANewLearnerDoesNotResumeTheOldLearnersInterruptedFit) {
    auto s = open();
    s->new_learner(spec());
    std::atomic<bool> stop{false};
    auto hook = std::make_shared<BatchHook>();
    hook->on_batch = [&](const train::BatchRecord& b) {
        if (b.epoch == 1) stop = true;
    };
    s->learner().add_callback(hook);
    train::FitOptions o = one_epoch();
    o.n_cycle = 3;
    ASSERT_TRUE(s->fit(o, &stop).stopped);
    ASSERT_TRUE(s->interrupted_fit().has_value());

    const std::string kept = s->new_learner(spec());   // the same arch and size
    ASSERT_FALSE(kept.empty());
    EXPECT_FALSE(s->interrupted_fit().has_value());
    EXPECT_FALSE(fs::exists(project() / "models" / "autosave.json"));
    EXPECT_THROW(s->resume(), UserError);
    // The old learner's interrupted fit is kept beside its weights.
    const auto list = s->checkpoints();
    const auto it = std::find_if(list.begin(), list.end(), [&](const CheckpointInfo& c) { return c.name == kept + "-autosave"; });
    ASSERT_NE(it, list.end());
    EXPECT_TRUE(it->fit_in_progress);
    EXPECT_EQ(it->epochs, 1);
    // Another new learner within the same second gets a name of its own.
    s->fit(one_epoch());
    const std::string kept2 = s->new_learner(spec());
    EXPECT_NE(kept2, kept);
    EXPECT_TRUE(fs::exists(project() / "models" / (kept + ".json")));
    EXPECT_TRUE(fs::exists(project() / "models" / (kept2 + ".json")));
}

// TrivialAugmentWide and RandomErasing on top of a preset: chosen with the learner, named in its
// description, remembered in learner.json and given to the learner's loaders.
TEST_F(SessionTest, TheAugmentationOptionsAreRememberedWithTheLearner) {
    LearnerSpec with = spec();
    with.trivial_augment = true;
    with.random_erasing = 0.25;
    {
        auto s = open();
        s->new_learner(with);
        EXPECT_EQ(s->describe_learner(),
                  "resnet18 at 32 px, from scratch, side-on augmentation, TrivialAugmentWide, random erasing p 0.25, "
                  "0 epochs, body frozen");
    }
    const json written = json::parse(read_file(project() / LearnerSpec::kFileName));
    EXPECT_EQ(written.at("trivial_augment"), true);
    EXPECT_EQ(written.at("random_erasing"), 0.25);
    auto t = open();
    ASSERT_TRUE(t->has_learner()) << t->learner_error();
    EXPECT_TRUE(*t->spec() == with);
    EXPECT_TRUE(t->learner().config().trivial_augment);
    EXPECT_EQ(t->learner().config().random_erasing, 0.25);
    const data::AugmentSettings a = t->learner().augment_settings();
    EXPECT_TRUE(a.trivial_augment);
    EXPECT_EQ(a.random_erasing, 0.25);
    EXPECT_EQ(a.preset, data::AugmentPreset::SideOn);
}
