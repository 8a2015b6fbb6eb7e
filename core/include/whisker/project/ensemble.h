#pragma once
// Ensembles: several trained models' probabilities averaged into one prediction.
//
//   auto members = {resolve_member(project, "3", base), resolve_member(project, "snapshot-0004-2", base)};
//   for each: predict_member(...)  -> its valid and test Predictions (its own arch and size)
//   combine_predictions({&a.valid, &b.valid}, weights, EnsembleMix::Mean) -> the ensemble's
//
// A member is a run (its checkpoint "run-NNNN" and the learner settings the run recorded:
// architecture, size, batch, augmentation for TTA, validation resize) or a checkpoint by name
// (its architecture and size; augmentation and resize from PROJECT/learner.json when that
// learner has the same architecture, else the defaults). Members are predicted one at a
// time, so only one network is in memory. Rows are matched by image (Predictions::records),
// not by position.
// Threading: the calling thread; nothing is shared.

#include "whisker/data/dataset.h"
#include "whisker/train/learner.h"

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace whisker::project {

enum class EnsembleMix {
    Mean,       // Σ w·p / Σ w (a plain mean with equal weights)
    Geometric   // exp(Σ w·log p / Σ w), each row renormalised to sum 1 (single-label only):
                // punishes a member's confident mistake less than the mean does for log loss
};
const char* ensemble_mix_name(EnsembleMix mix, bool weighted);   // "mean", "weighted mean", "geometric mean", …

// The members' probabilities combined row by row. Every member must have the same images
// (in any order; rows follow the first member's); `weights` empty = equal, else one
// non-negative weight per member with a positive sum. The result's predicted/actual/losses
// are filled as Learner::predict fills them, so accuracy() and log_loss() score it.
// UserError on mismatched members, bad weights, or Geometric on multi-label data.
train::Predictions combine_predictions(const std::vector<const train::Predictions*>& members,
                                       const std::vector<double>& weights, EnsembleMix mix,
                                       bool multi_label = false);

struct EnsembleMember {
    std::string source;             // as given: "3", "#3", "run-0003", "snapshot-0004-2"
    int run = 0;                    // the run it came from, 0 for a bare checkpoint
    int fold = -1, folds = 0;       // a cross-validation fold run's fold and K (it predicts on that fold's view)
    std::string checkpoint;         // PROJECT/models/<checkpoint>.*
    train::LearnerConfig config;    // arch, size, batch, augmentation, resize
};

// Resolves a run reference or a checkpoint name. `base` carries the program's threads and
// precision. UserError naming what is missing (a run without a checkpoint, an unknown name).
EnsembleMember resolve_member(const std::filesystem::path& project, const std::string& reference,
                              const train::LearnerConfig& base);

struct RunMember;   // runs.h
// How an ensemble run records `member` ("#3", or "snapshot-0004-2" for a run's snapshot), with
// its weight; the caller adds the member's validation scores.
RunMember run_member_of(const EnsembleMember& member, double weight);

struct MemberPredictions {
    std::optional<train::Predictions> valid, test;   // each when the split has images
};

// Builds the member's learner, loads its checkpoint and predicts the valid and test splits
// with `tta` augmented passes (the valid split only with `predict_valid`); the learner is freed
// before returning.
MemberPredictions predict_member(const std::filesystem::path& project, const data::Dataset& dataset,
                                 const EnsembleMember& member, int tta, train::TtaMix mix,
                                 const train::ProgressCallback& progress = {}, const std::atomic<bool>* stop = nullptr,
                                 bool predict_valid = true);

// ---- ensembles of cross-validation folds (project/folds.h) ----
// A fold run trained on the other folds, which include most of the project's valid split: its
// score there means nothing. An ensemble of fold runs is scored out of fold instead: for each
// fold, the out-of-fold predictions of the members that validated on it, combined as
// combine_predictions combines (with their weights), then the folds one after another — every
// usable labelled image once, each predicted only by members that did not train on it. (Members
// may repeat folds: two architectures' K runs make 2K members.)

// Whether a member is a fold run, and of how many folds (0: not one).
int member_folds(const std::filesystem::path& project, const EnsembleMember& member);

struct OutOfFoldEnsemble {
    train::Predictions predictions;               // rows fold by fold
    std::vector<double> member_accuracy, member_log_loss;   // each member on its own fold
};
// UserError when a member is not a fold run of the dataset's K folds, when a fold has no member
// (naming it and how to train it), or when a member's predictions do not cover its fold as the
// dataset has it now.
OutOfFoldEnsemble out_of_fold_ensemble(const std::filesystem::path& project, const data::Dataset& dataset,
                                       const std::vector<EnsembleMember>& members, const std::vector<double>& weights,
                                       EnsembleMix mix);

}  // namespace whisker::project
