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
    std::string checkpoint;         // PROJECT/models/<checkpoint>.*
    train::LearnerConfig config;    // arch, size, batch, augmentation, resize
};

// Resolves a run reference or a checkpoint name. `base` carries the program's threads and
// precision. UserError naming what is missing (a run without a checkpoint, an unknown name).
EnsembleMember resolve_member(const std::filesystem::path& project, const std::string& reference,
                              const train::LearnerConfig& base);

struct MemberPredictions {
    std::optional<train::Predictions> valid, test;   // each when the split has images
};

// Builds the member's learner, loads its checkpoint and predicts the valid and test splits
// with `tta` augmented passes; the learner is freed before returning.
MemberPredictions predict_member(const std::filesystem::path& project, const data::Dataset& dataset,
                                 const EnsembleMember& member, int tta, train::TtaMix mix,
                                 const train::ProgressCallback& progress = {}, const std::atomic<bool>* stop = nullptr);

}  // namespace whisker::project
