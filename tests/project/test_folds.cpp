// Cross-validation's bookkeeping (project/folds.h, project/ensemble.h): fold runs' out-of-fold
// predictions written and read back, the summary naming missing folds and assembling every
// usable labelled image exactly once when all folds have a run, stale predictions after the
// folds are dealt again, and an ensemble of fold runs scored out of fold. No training: the runs
// are recorded with made-up probabilities.
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"
#include "whisker/project/ensemble.h"
#include "whisker/project/folds.h"
#include "whisker/project/runs.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::project;

namespace {

data::Dataset make_dataset() {
    data::Dataset d;
    d.classes = {"cat", "dog"};
    for (int i = 0; i < 30; ++i) {
        data::ImageRecord im;
        im.path = "data/train/" + std::string(i % 2 ? "dog" : "cat") + "." + std::to_string(i) + ".jpg";
        im.split = i % 6 == 0 ? data::Split::Valid : data::Split::Train;
        im.labels = {i % 2};
        d.images.push_back(im);
    }
    data::ImageRecord t;
    t.path = "data/test/1.jpg";
    t.split = data::Split::Test;
    d.images.push_back(t);
    data::assign_folds(d, {3, 11, {}, ""});
    return d;
}

// Probabilities for fold `fold`'s images: P(dog) = p_dog for every row.
train::Predictions fold_predictions(const data::Dataset& d, int fold, float p_dog) {
    const auto records = data::fold_members(d)[static_cast<std::size_t>(fold)];
    at::Tensor probs = at::empty({static_cast<long>(records.size()), 2}, at::kFloat);
    probs.select(1, 0).fill_(1 - p_dog);
    probs.select(1, 1).fill_(p_dog);
    return predictions_from_probabilities(d, records, probs);
}

// Records a finished fold run with these out-of-fold predictions; returns its number.
int record_fold_run(const fs::path& project, const data::Dataset& d, int fold, const train::Predictions& p) {
    RunRecorder rec(project, "test");
    const int n = rec.begin(RunKind::Recipe, d, "test");
    rec.set_fold(fold, d.folds(), "autosave");
    const fs::path file = oof_path(project, d.folds(), n);
    write_oof_csv(file, d, p);
    rec.add_prediction(p, data::Split::Valid, 0, train::TtaMix::Mean);
    rec.set_oof(file);
    rec.end();
    return n;
}

}  // namespace

TEST(CrossValidation, OutOfFoldPredictionsRoundTrip) {
    test::TempDir dir;
    const auto d = make_dataset();
    d.save(dir.path());
    const auto p = fold_predictions(d, 2, 0.75f);
    const int run = record_fold_run(dir.path(), d, 2, p);
    const auto rec = read_run(dir.path(), run);
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->fold, 2);
    EXPECT_EQ(rec->folds, 3);
    EXPECT_EQ(rec->oof, "folds/k3/oof/run-0001.csv");
    std::string why;
    const auto back = read_oof(dir.path(), d, *rec, &why);
    ASSERT_TRUE(back) << why;
    EXPECT_EQ(back->records, p.records);
    EXPECT_NEAR(back->log_loss(), p.log_loss(), 1e-6);
    EXPECT_NEAR(back->accuracy(), 0.5, 0.1);
    EXPECT_NEAR(back->log_loss(), (-std::log(0.75) - std::log(0.25)) / 2, 0.1);
}

TEST(CrossValidation, SummaryNamesMissingFoldsThenCoversEveryImageOnce) {
    test::TempDir dir;
    const auto d = make_dataset();
    d.save(dir.path());
    record_fold_run(dir.path(), d, 0, fold_predictions(d, 0, 0.6f));
    record_fold_run(dir.path(), d, 2, fold_predictions(d, 2, 0.6f));
    auto s = cross_validation_summary(dir.path(), d);
    EXPECT_FALSE(s.complete());
    EXPECT_EQ(s.missing_folds(), std::vector<int>{1});
    EXPECT_NE(s.per_fold[1].missing.find("--fold 1"), std::string::npos) << s.per_fold[1].missing;
    EXPECT_EQ(s.per_fold[0].run, 1);

    // An unfinished run of fold 1 does not count; a finished one completes the folds.
    {
        RunRecorder open(dir.path(), "test");
        open.begin(RunKind::Recipe, d, "test");
        open.set_fold(1, 3, "autosave");
        EXPECT_FALSE(cross_validation_summary(dir.path(), d).complete());
        open.end("killed");
    }
    record_fold_run(dir.path(), d, 1, fold_predictions(d, 1, 0.6f));
    s = cross_validation_summary(dir.path(), d);
    ASSERT_TRUE(s.complete());
    std::multiset<std::size_t> rows(s.oof->records.begin(), s.oof->records.end());
    std::set<std::size_t> labelled;
    for (std::size_t i = 0; i < d.images.size(); ++i)
        if (d.images[i].split != data::Split::Test) labelled.insert(i);
    EXPECT_EQ(rows.size(), labelled.size()) << "every labelled image once";
    EXPECT_EQ(std::set<std::size_t>(rows.begin(), rows.end()), labelled);
    EXPECT_NEAR(s.oof->log_loss(), (-std::log(0.6) - std::log(0.4)) / 2, 1e-5);

    // The newest finished run of a fold counts.
    const int newer = record_fold_run(dir.path(), d, 1, fold_predictions(d, 1, 0.9f));
    EXPECT_EQ(cross_validation_summary(dir.path(), d).per_fold[1].run, newer);

    // Folds dealt again: the runs' predictions no longer cover them, and say why.
    data::Dataset redealt = d;
    data::assign_folds(redealt, {3, 12, {}, ""});
    const auto stale = cross_validation_summary(dir.path(), redealt);
    EXPECT_FALSE(stale.complete());
    EXPECT_NE(stale.per_fold[0].missing.find("dealt again"), std::string::npos) << stale.per_fold[0].missing;
}

TEST(CrossValidation, EnsembleOfFoldRunsIsScoredOutOfFold) {
    test::TempDir dir;
    const auto d = make_dataset();
    d.save(dir.path());
    std::vector<EnsembleMember> members;
    const float p_dog[] = {0.6f, 0.7f, 0.8f, 0.9f};   // folds 0, 1, 2, and a second member of fold 2
    const int folds[] = {0, 1, 2, 2};
    for (int m = 0; m < 4; ++m) {
        EnsembleMember e;
        e.run = record_fold_run(dir.path(), d, folds[m], fold_predictions(d, folds[m], p_dog[m]));
        e.source = std::to_string(e.run);
        e.fold = folds[m];
        e.folds = 3;
        members.push_back(e);
    }
    const auto oof = out_of_fold_ensemble(dir.path(), d, members, {}, EnsembleMix::Mean);
    ASSERT_EQ(oof.predictions.records.size(), 30u);
    ASSERT_EQ(oof.member_log_loss.size(), 4u);
    // Fold 2's rows are the mean of its two members: P(dog) = 0.85.
    const auto fold2 = data::fold_members(d)[2];
    for (std::size_t r = 0; r < oof.predictions.records.size(); ++r) {
        const std::size_t image = oof.predictions.records[r];
        const int fold = d.images[image].fold;
        const float want = fold == 0 ? 0.6f : fold == 1 ? 0.7f : 0.85f;
        EXPECT_NEAR(oof.predictions.probs[static_cast<long>(r)][1].item<float>(), want, 1e-5) << image;
    }
    // Without a member of fold 1 there is no out-of-fold score.
    std::vector<EnsembleMember> partial = {members[0], members[2]};
    try {
        out_of_fold_ensemble(dir.path(), d, partial, {}, EnsembleMix::Mean);
        FAIL() << "fold 1 has no member";
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("no member validated fold 1"), std::string::npos) << e.what();
    }
    // A member that is not a fold run cannot be scored out of fold.
    EnsembleMember plain;
    plain.source = "current";
    partial = {members[0], members[1], members[2], plain};
    EXPECT_THROW(out_of_fold_ensemble(dir.path(), d, partial, {}, EnsembleMix::Mean), UserError);
}
