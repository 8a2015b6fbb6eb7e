// Run records (project/runs.h) and ensembles (project/ensemble.h) on a tiny sample project
// (resnet18 at 32 px, random body): a record's numbers are the fit's, a run's checkpoint
// reloads to the same predictions, an interrupted fit and its resume are two linked runs,
// snapshots per SGDR cycle, several writers never collide, and ensemble arithmetic by hand.
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/data/prepare.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/project/ensemble.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <set>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::project;

namespace {

class RunsTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        sample_ = new test::TempDir;
        test::write_sample(*sample_ / "dl", 24, 6);
    }
    static void TearDownTestSuite() {
        delete sample_;
        sample_ = nullptr;
    }
    void SetUp() override {
        data::PrepareOptions o;
        o.project = project();
        o.source = *sample_ / "dl";
        o.valid_per_class = 4;
        o.threads = 2;
        data::prepare_dataset(o);
    }
    fs::path project() const { return dir_ / "p"; }
    static LearnerSpec spec(const std::string& arch = "resnet18") {
        LearnerSpec s;
        s.arch = arch;
        s.size = 32;
        s.batch_size = 8;
        s.pretrained = false;
        s.seed = 7;
        return s;
    }
    std::unique_ptr<Session> open() const {
        SessionOptions o;
        o.base.threads = 2;
        o.base.precision = train::Precision::FP32;
        return std::make_unique<Session>(project(), o);
    }
    static train::FitOptions epochs(int n) {
        train::FitOptions o;
        o.lrs = {1e-2};
        o.n_cycle = n;
        return o;
    }
    static bool same_probs(const train::Predictions& a, const train::Predictions& b) {
        return a.records == b.records && at::allclose(a.probs, b.probs, 1e-5, 1e-6);
    }

    static test::TempDir* sample_;
    test::TempDir dir_;
};
test::TempDir* RunsTest::sample_ = nullptr;

// Requests a stop at the end of epoch `at` (0-based) of the next fit.
struct StopAfter : train::Callback {
    int at;
    explicit StopAfter(int epoch) : at(epoch) {}
    void after_epoch(train::Learner& l, const train::EpochRecord& r) override {
        if (r.epoch == at) l.request_stop("stopped by the user");
    }
};

}  // namespace

TEST_F(RunsTest, AFitRecordHoldsTheEpochTableAndItsCheckpointReloadsToTheSamePredictions) {
    auto s = open();
    s->new_learner(spec());
    auto recorder = std::make_shared<RunRecorder>(project(), "test");
    s->learner().add_callback(recorder);
    EXPECT_EQ(recorder->begin(RunKind::Fit, s->learner(), "test fit"), 1);
    const auto asked = epochs(2);
    recorder->expect_fit(asked);
    const auto fit = s->fit(asked);
    s->persist();
    recorder->end();
    const auto preds = s->predict(data::Split::Valid).predictions;

    const auto run = read_run(project(), 1);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, "finished");
    EXPECT_EQ(run->kind, RunKind::Fit);
    EXPECT_EQ(run->arch, "resnet18");
    EXPECT_EQ(run->size, 32);
    EXPECT_EQ(run->batch_size, 8);
    EXPECT_EQ(run->seed, 7u);
    EXPECT_EQ(run->train_images, s->dataset().count(data::Split::Train));
    EXPECT_EQ(run->valid_images, 8u);
    EXPECT_EQ(run->data_sha256.size(), 64u);
    ASSERT_EQ(run->fits.size(), 1u);
    const auto& f = run->fits[0];
    EXPECT_EQ(f.lrs, std::vector<double>{1e-2});
    EXPECT_EQ(f.schedule, "constant, 2 epochs");
    EXPECT_EQ(f.optimizer, "sgd");
    EXPECT_FALSE(f.group_lrs.empty());
    EXPECT_DOUBLE_EQ(f.group_lrs.back(), 1e-2);
    // The record's numbers are the epoch table's, exactly.
    ASSERT_EQ(f.epochs.size(), fit.epochs.size());
    for (std::size_t i = 0; i < f.epochs.size(); ++i) {
        EXPECT_EQ(f.epochs[i].trn_loss, fit.epochs[i].trn_loss);
        EXPECT_EQ(f.epochs[i].val_loss, fit.epochs[i].val_loss);
        EXPECT_EQ(f.epochs[i].accuracy, fit.epochs[i].accuracy);
        EXPECT_EQ(f.epochs[i].log_loss, fit.epochs[i].log_loss);
    }
    EXPECT_EQ(f.batches.size(), 4u);   // 16 images, batch 8, 2 epochs
    EXPECT_EQ(run->end_state, s->learner().state_id());
    ASSERT_EQ(run->checkpoint, "run-0001");

    // Another learner replaces this one; the run's checkpoint brings its predictions back.
    s->new_learner(spec());
    s->fit(epochs(1));
    EXPECT_FALSE(same_probs(*s->predict(data::Split::Valid).predictions, *preds));
    s->load_checkpoint(run->checkpoint);
    EXPECT_TRUE(same_probs(*s->predict(data::Split::Valid).predictions, *preds));
}

TEST_F(RunsTest, AnInterruptedFitAndItsResumeAreTwoLinkedRuns) {
    auto s = open();
    s->new_learner(spec());
    auto recorder = std::make_shared<RunRecorder>(project(), "test");
    s->learner().add_callback(recorder);
    s->learner().add_callback(std::make_shared<StopAfter>(0));
    recorder->begin(RunKind::Fit, s->learner(), "fit 3 epochs");
    train::FitOptions o = epochs(3);
    recorder->expect_fit(o);
    const auto first = s->fit(o);
    ASSERT_TRUE(first.stopped);
    s->persist();
    recorder->end();

    // A new program resumes the interrupted fit.
    s = open();
    auto again = std::make_shared<RunRecorder>(project(), "test");
    s->learner().add_callback(again);
    EXPECT_EQ(again->begin(RunKind::Fit, s->learner(), "fit --resume"), 2);
    again->expect_resume("autosave");
    const auto rest = s->resume();
    s->persist();
    again->end();

    const auto runs = list_runs(project());
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[0].status, "stopped");
    EXPECT_EQ(runs[0].epochs(), 1);
    EXPECT_TRUE(runs[0].fits[0].stopped);
    EXPECT_EQ(runs[1].status, "finished");
    EXPECT_TRUE(runs[1].resumed);
    EXPECT_EQ(runs[1].parent, 1);
    EXPECT_TRUE(runs[1].fits[0].resumed);
    EXPECT_EQ(runs[1].fits[0].schedule, "constant, 3 epochs");   // read from the autosave
    ASSERT_EQ(runs[1].epochs(), 2);
    EXPECT_EQ(runs[1].fits[0].epochs[0].epoch, 1);   // the fit's own epoch numbers go on
    EXPECT_EQ(runs[1].fits[0].epochs[1].val_loss, rest.epochs[1].val_loss);
}

TEST_F(RunsTest, SnapshotsKeepOneCheckpointPerSgdrCycle) {
    auto s = open();
    s->new_learner(spec());
    auto recorder = std::make_shared<RunRecorder>(project(), "test");
    s->learner().add_callback(recorder);
    recorder->begin(RunKind::Fit, s->learner(), "fit with snapshots");
    train::FitOptions o;
    o.lrs = {1e-2};
    o.n_cycle = 3;
    o.cycle_len = 1;
    o.cycle_mult = 2;   // 1 + 2 + 4 epochs
    recorder->expect_fit(o, true);
    const auto r = s->fit(o);
    recorder->end();
    ASSERT_EQ(r.epochs.size(), 7u);
    const auto run = read_run(project(), 1);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->fits[0].schedule, "SGDR, 3 cycles of 1 epoch, each x2 (7 epochs)");
    const std::vector<std::string> want{"snapshot-0001-1", "snapshot-0001-2", "snapshot-0001-3"};
    EXPECT_EQ(run->fits[0].snapshots, want);
    // Each snapshot holds the weights after its cycle's last epoch (1, 3 and 7 epochs).
    std::vector<long> epochs;
    for (const auto& c : list_checkpoints(project()))
        if (c.name.rfind("snapshot-", 0) == 0) epochs.push_back(c.epochs);
    std::sort(epochs.begin(), epochs.end());
    EXPECT_EQ(epochs, (std::vector<long>{1, 3, 7}));
    // And they predict as ensemble members.
    const data::Dataset d = data::Dataset::load(project());
    train::LearnerConfig base;
    base.threads = 2;
    base.precision = train::Precision::FP32;
    const auto member = resolve_member(project(), "snapshot-0001-2", base);
    EXPECT_EQ(member.run, 1);
    EXPECT_EQ(member.config.arch, "resnet18");
    const auto p = predict_member(project(), d, member, 0, train::TtaMix::Mean);
    ASSERT_TRUE(p.valid && p.test);
    EXPECT_EQ(p.valid->records.size(), 8u);
}

TEST_F(RunsTest, LrFindAndRecipeRunsRecordTheirSteps) {
    auto s = open();
    s->new_learner(spec());
    auto recorder = std::make_shared<RunRecorder>(project(), "test");
    s->learner().add_callback(recorder);
    recorder->begin(RunKind::Recipe, s->learner(), "recipe");
    const std::string recipe = R"([{"step": "lr_find"}, {"step": "fit", "lr": ["found/100", "found/10", "found"], "cycles": 2, "cycle_len": 1, "snapshots": true},
                                   {"step": "predict", "split": "valid"}])";
    const auto r = s->run_recipe(recipe, recorder->recipe_events(recipe, {}));
    recorder->end();
    const auto run = read_run(project(), 1);
    ASSERT_TRUE(run);
    ASSERT_EQ(run->lr_finds.size(), 1u);
    EXPECT_GT(run->lr_finds[0].chosen, 0);
    ASSERT_EQ(run->fits.size(), 1u);   // the sweep is not a fit
    const double found = run->lr_finds[0].chosen;
    EXPECT_EQ(run->fits[0].lrs, (std::vector<double>{found / 100, found / 10, found}));
    EXPECT_EQ(run->fits[0].epochs.size(), r.epochs.size());
    EXPECT_EQ(run->fits[0].snapshots.size(), 2u);
    ASSERT_EQ(run->predictions.size(), 1u);
    EXPECT_EQ(run->predictions[0].split, "valid");
    EXPECT_NEAR(run->predictions[0].log_loss, s->predictions(data::Split::Valid)->predictions->log_loss(), 1e-12);
    EXPECT_FALSE(run->recipe.empty());
    ASSERT_TRUE(run->validation());
    EXPECT_EQ(run->validation()->from, "valid prediction");
}

TEST_F(RunsTest, ARunWhoseProcessDiedReadsAsInterrupted) {
    const data::Dataset d = data::Dataset::load(project());
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        RunRecorder r(project(), "child");
        r.begin(RunKind::Ensemble, d, "killed");
        _exit(0);   // no end(), no destructor: as if killed
    }
    int status = 0;
    waitpid(child, &status, 0);
    const auto run = read_run(project(), 1);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->status, "interrupted");
}

TEST_F(RunsTest, SeveralWritersNeverShareANumberOrCorruptARecord) {
    const data::Dataset d = data::Dataset::load(project());
    constexpr int kProcesses = 3, kThreads = 3, kRunsEach = 6;
    std::atomic<bool> done{false};
    std::atomic<int> bad_reads{0}, reads{0};
    // A reader (the workbench watching) reads all the while.
    std::thread reader([&] {
        while (!done) {
            for (const auto& e : fs::directory_iterator(project() / "runs")) {
                if (e.path().extension() != ".json") continue;
                try {
                    parse_run(read_file(e.path()));
                    ++reads;
                } catch (const std::exception&) {
                    ++bad_reads;
                }
            }
        }
    });
    fs::create_directories(project() / "runs");
    auto write_runs = [&](const std::string& who) {
        for (int i = 0; i < kRunsEach; ++i) {
            RunRecorder r(project(), who);
            r.begin(RunKind::Ensemble, d, who);
            RunMember m;
            m.source = who;
            m.arch = std::string(3000, 'x');   // a record long enough to be caught half-written
            r.set_members({m}, "mean");
            r.end();
        }
    };
    std::vector<pid_t> children;
    for (int p = 0; p < kProcesses; ++p) {
        const pid_t c = fork();
        if (c == 0) {
            std::vector<std::thread> threads;
            for (int t = 0; t < kThreads; ++t) threads.emplace_back(write_runs, "p" + std::to_string(p) + "t" + std::to_string(t));
            for (auto& t : threads) t.join();
            _exit(0);
        }
        children.push_back(c);
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(write_runs, "main" + std::to_string(t));
    for (auto& t : threads) t.join();
    for (pid_t c : children) {
        int status = 0;
        waitpid(c, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    done = true;
    reader.join();
    const auto runs = list_runs(project());
    const int total = (kProcesses + 1) * kThreads * kRunsEach;
    ASSERT_EQ(static_cast<int>(runs.size()), total);
    std::set<int> numbers;
    for (const auto& r : runs) {
        numbers.insert(r.number);
        EXPECT_EQ(r.status, "finished");
        ASSERT_EQ(r.members.size(), 1u);
        EXPECT_EQ(r.members[0].arch.size(), 3000u);
    }
    EXPECT_EQ(static_cast<int>(numbers.size()), total);
    EXPECT_EQ(*numbers.rbegin(), total);   // 1..total, no gaps
    EXPECT_EQ(bad_reads.load(), 0);
    EXPECT_GT(reads.load(), 0);
}

TEST_F(RunsTest, SubmissionsMeetTheirRunsValidationScore) {
    auto s = open();
    s->new_learner(spec());
    auto recorder = std::make_shared<RunRecorder>(project(), "test");
    s->learner().add_callback(recorder);
    recorder->begin(RunKind::Fit, s->learner(), "fit");
    s->fit(epochs(1));
    s->persist();
    recorder->end();
    recorder->begin(RunKind::Submission, s->learner(), "predict");
    const auto& p = *s->predict(data::Split::Test).predictions;
    const fs::path out = project() / "submission.csv";
    s->write_submission(out);
    recorder->add_prediction(p, data::Split::Test, 0, train::TtaMix::Mean, out);
    recorder->set_submission(out);
    recorder->end();
    // The history keeps a copy of the uploaded file, scored by Kaggle.
    fs::create_directories(project() / "submissions");
    fs::copy_file(out, project() / "submissions" / "1.csv");
    kaggle::SubmissionHistory h;
    kaggle::SubmissionRecord rec;
    rec.file = "submissions/1.csv";
    rec.date = "2026-12-01 10:00:00";
    rec.status = "COMPLETE";
    rec.public_score = "0.6931";
    h.submissions.push_back(rec);
    h.save(project());
    const auto scores = submission_scores(project());
    ASSERT_EQ(scores.size(), 1u);
    EXPECT_EQ(scores[0].run, 2);
    ASSERT_TRUE(scores[0].public_value);
    EXPECT_DOUBLE_EQ(*scores[0].public_value, 0.6931);
    ASSERT_TRUE(scores[0].validation);   // the parent fit's last epoch
    EXPECT_EQ(scores[0].validation->log_loss, read_run(project(), 1)->fits[0].epochs.back().log_loss);
}

// ---- ensemble arithmetic on hand-made predictions ----

namespace {

train::Predictions hand_made(const std::vector<std::size_t>& records, const std::vector<std::vector<float>>& rows,
                             const std::vector<int>& actual) {
    train::Predictions p;
    p.records = records;
    std::vector<float> flat;
    for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
    p.probs = at::tensor(flat).reshape({static_cast<long>(rows.size()), static_cast<long>(rows[0].size())});
    p.actual = actual;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        p.predicted.push_back(rows[i][0] >= rows[i][1] ? 0 : 1);
        p.losses.push_back(-std::log(rows[i][static_cast<std::size_t>(actual[i])]));
    }
    p.passes = 1;
    return p;
}

}  // namespace

TEST(Ensemble, MeansWeightsAndGeometricMeansEqualHandComputedValues) {
    // Rows of member b are in another order: they are matched by image, not position.
    const auto a = hand_made({10, 11, 12}, {{0.9f, 0.1f}, {0.4f, 0.6f}, {0.2f, 0.8f}}, {0, 0, 1});
    const auto b = hand_made({12, 10, 11}, {{0.6f, 0.4f}, {0.7f, 0.3f}, {0.8f, 0.2f}}, {1, 0, 0});

    const auto mean = combine_predictions({&a, &b}, {}, EnsembleMix::Mean);
    ASSERT_EQ(mean.records, (std::vector<std::size_t>{10, 11, 12}));
    EXPECT_NEAR(mean.probs[0][0].item<double>(), 0.8, 1e-6);    // (0.9 + 0.7) / 2
    EXPECT_NEAR(mean.probs[1][0].item<double>(), 0.6, 1e-6);    // (0.4 + 0.8) / 2
    EXPECT_NEAR(mean.probs[2][1].item<double>(), 0.6, 1e-6);    // (0.8 + 0.4) / 2
    EXPECT_EQ(mean.predicted, (std::vector<int>{0, 0, 1}));
    EXPECT_DOUBLE_EQ(mean.accuracy(), 1.0);
    EXPECT_NEAR(mean.log_loss(), -(std::log(0.8) + std::log(0.6) + std::log(0.6)) / 3, 1e-6);

    const auto weighted = combine_predictions({&a, &b}, {3, 1}, EnsembleMix::Mean);
    EXPECT_NEAR(weighted.probs[1][1].item<double>(), (3 * 0.6 + 1 * 0.2) / 4, 1e-6);   // 0.5
    EXPECT_NEAR(weighted.probs[2][1].item<double>(), (3 * 0.8 + 1 * 0.4) / 4, 1e-6);   // 0.7

    const auto geo = combine_predictions({&a, &b}, {}, EnsembleMix::Geometric);
    const double g0 = std::sqrt(0.9 * 0.7), g1 = std::sqrt(0.1 * 0.3);
    EXPECT_NEAR(geo.probs[0][0].item<double>(), g0 / (g0 + g1), 1e-6);
    const double h0 = std::sqrt(0.4 * 0.8), h1 = std::sqrt(0.6 * 0.2);
    EXPECT_NEAR(geo.probs[1][0].item<double>(), h0 / (h0 + h1), 1e-6);
    EXPECT_NEAR(geo.probs[1].sum().item<double>(), 1.0, 1e-6);
    EXPECT_NEAR(geo.losses[1], -std::log(h0 / (h0 + h1)), 1e-6);

    // One member alone is itself.
    const auto alone = combine_predictions({&b}, {}, EnsembleMix::Mean);
    EXPECT_NEAR(alone.log_loss(), b.log_loss(), 1e-6);

    EXPECT_THROW(combine_predictions({&a, &b}, {1}, EnsembleMix::Mean), UserError);
    EXPECT_THROW(combine_predictions({&a, &b}, {0, 0}, EnsembleMix::Mean), UserError);
    EXPECT_THROW(combine_predictions({&a, &b}, {}, EnsembleMix::Geometric, true), UserError);
    const auto other = hand_made({10, 11, 13}, {{0.5f, 0.5f}, {0.5f, 0.5f}, {0.5f, 0.5f}}, {0, 0, 1});
    EXPECT_THROW(combine_predictions({&a, &other}, {}, EnsembleMix::Mean), UserError);
}

TEST(RunReferences, NumbersHashesAndCheckpointNames) {
    EXPECT_EQ(parse_run_reference("7"), 7);
    EXPECT_EQ(parse_run_reference("#12"), 12);
    EXPECT_EQ(parse_run_reference("run-0003"), 3);
    EXPECT_FALSE(parse_run_reference("best"));
    EXPECT_FALSE(parse_run_reference("0"));
    EXPECT_EQ(run_checkpoint_name(3), "run-0003");
}
