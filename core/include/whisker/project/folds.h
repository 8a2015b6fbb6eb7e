#pragma once
// Cross-validation: one learner per fold, each trained on the other folds and validated on its
// own (data/folds.h deals the folds), and their out-of-fold predictions scored together.
//
// A fold's learner never touches the project's learner: it lives in a folder of its own, as a
// project of its own, and copies the project's learner's setup (architecture, starting weights,
// seed, augmentation, size) as it was when the folds' first learner was made:
//
//   PROJECT/folds/k<K>/learner.json         the setup every fold's learner starts from
//   PROJECT/folds/k<K>/fold-<i>/            fold i's learner: learner.json, fold.json (the folds
//                                           it was trained on), models/current (its state),
//                                           models/autosave (its fit in progress), cache/,
//                                           recipe.json (where its recipe run is)
//   PROJECT/folds/k<K>/oof/run-<NNNN>.csv   the out-of-fold predictions of fold run NNNN:
//                                           path, fold, label, p_<class>… (one row per image)
//   PROJECT/models/run-<NNNN>.*             a fold run's checkpoint (hard links), as any run's
//
// Each fold job (a fit, a recipe) is a run in PROJECT/runs (runs.h) that carries its fold and K
// and, once it finished, its out-of-fold predictions. The cross-validation score is assembled
// from the newest finished run of every fold whose predictions cover that fold as it is now:
// every usable labelled image exactly once (cross_validation_summary).
//
// A fold's learner follows the project's: when the project's learner gets another setup (a new
// learner with another architecture, say), the folds' learners start over from the new one; their
// runs, checkpoints and predictions stay. When the folds are dealt again, a fold's learner that
// trained on other folds starts over too.
//
// Threading: the calling thread. Jobs that write need the project's lock (project_lock.h),
// taken by the caller.

#include "whisker/common/parallel.h"
#include "whisker/data/dataset.h"
#include "whisker/data/folds.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::project {

std::filesystem::path folds_folder(const std::filesystem::path& project, int folds);            // PROJECT/folds/k5
std::filesystem::path fold_folder(const std::filesystem::path& project, int folds, int fold);   // …/k5/fold-2
std::filesystem::path oof_path(const std::filesystem::path& project, int folds, int run);       // …/k5/oof/run-0007.csv

// The same architecture, starting weights, seed, augmentation and validation resize: what the
// weights learnt from (the size and batch size may change: progressive resizing, memory).
bool same_learner_setup(const LearnerSpec& a, const LearnerSpec& b);

// The setup the folds' learners start from: PROJECT/folds/k<K>/learner.json, written from
// `project_spec` (the project's learner) when missing. When the project's learner has another
// setup now, the file is rewritten and every fold's learner of these folds starts over (at its
// next job; runs, checkpoints and predictions stay) — `note` then says so.
LearnerSpec folds_learner_spec(const std::filesystem::path& project, int folds, const LearnerSpec& project_spec,
                               std::string* note = nullptr);

// Fold `fold`'s learner, opened from its folder, or made new from `spec` (its starting weights)
// when the fold has none, when `fresh` is asked, when it was made from another setup, or when
// it trained on other folds than the dataset's now. `base` carries the program's settings
// (threads, precision, accumulation, data-parallel group); the rest comes from `spec` and the
// fold's own state. UserError as data::check_fold for a fold the dataset does not have.
class FoldLearner {
public:
    FoldLearner(const std::filesystem::path& project, const data::Dataset& dataset, int fold, const LearnerSpec& spec,
                const train::LearnerConfig& base, bool fresh = false, const train::ProgressCallback& progress = {});
    ~FoldLearner();
    FoldLearner(const FoldLearner&) = delete;
    FoldLearner& operator=(const FoldLearner&) = delete;

    int fold() const { return fold_; }
    int folds() const { return folds_; }
    const std::filesystem::path& folder() const { return folder_; }
    train::Learner& learner() { return *learner_; }
    const train::Learner& learner() const { return *learner_; }
    // The dataset as this fold sees it (data::fold_view; image paths absolute).
    const data::Dataset& view() const { return learner_->dataset(); }
    // How it was opened: "new learner", "continues its learner", "starts over: <why>".
    const std::string& note() const { return note_; }
    bool is_new() const { return is_new_; }
    // "fold 2 of 5: resnet18 at 64 px, 3 epochs, body unfrozen"
    std::string describe() const;
    // The learner's autosave as a checkpoint name relative to PROJECT/models (for
    // RunRecorder::set_fold and expect_resume).
    std::string autosave_reference() const;
    // An interrupted fit of this learner waits in its autosave (resume() continues it).
    bool has_interrupted_fit() const;
    // Leaves the learner for the next job: models/current, learner.json, fold.json.
    void persist();
    // A job outside a recipe changed the learner (fit --fold): the fold's recipe progress goes,
    // so `run --folds` no longer counts the fold as done or resumes its recipe.
    void forget_recipe();
    // Writes fold run `run`'s out-of-fold predictions (the fold's valid split, rows indexing
    // the project's manifest) atomically to oof_path() and returns the file.
    std::filesystem::path write_oof(const train::Predictions& valid, int run) const;

private:
    std::filesystem::path project_, folder_;
    int fold_ = 0, folds_ = 0;
    LearnerSpec spec_;
    std::string fingerprint_, note_;
    bool is_new_ = false;
    std::unique_ptr<train::Learner> learner_;
    std::shared_ptr<const data::Dataset> manifest_;   // the project's, for the OOF file's paths
};

// ---- dealing the folds (data/folds.h), near-duplicates kept together ----

// Whether the duplicates finder left its fingerprints (PROJECT/cache/duplicates/, see
// explain/duplicates.h): then grouping near-duplicates decodes only new or changed files;
// without them it decodes every image once (and leaves the fingerprints for next time).
bool has_duplicate_fingerprints(const std::filesystem::path& project);

// Finds the dataset's near-duplicates (explain::find_duplicates, default threshold) and adds
// each group with at least two labelled images to `options.groups`, so that assign_folds
// deals it into one fold (no copy of a fold's image trains that fold's model); sets
// `options.grouping`. Returns a line for the user: "3 groups of near-duplicates (7 labelled
// images) kept in one fold each". `threads` 0: all cores. Cancelled when `cancel` becomes true.
std::string group_near_duplicates(const std::filesystem::path& project, const data::Dataset& dataset, data::FoldOptions& options,
                                  int threads = 0, const ProgressFn& progress = {}, const std::atomic<bool>* cancel = nullptr);

// ---- a fold's recipe, resumable ----

// The recipe the folds run when none is given (`whisker-cli run --folds`, the workbench's
// "Train all folds"): the one train::recipe_for gives the project's learner — the seed's 8
// steps, or train::from_scratch_recipe() for a learner without pretrained weights.
std::string default_folds_recipe(const LearnerSpec& project_spec);

// Where fold `fold`'s recipe stands, as run_fold_recipes would find it for `recipe_json`, a
// learner of `spec`'s setup (the project's LearnerSpec answers as folds_learner_spec's would)
// and the folds as the dataset has them now. Reads only. UserError for a bad recipe or fold.
struct FoldRecipeState {
    bool done = false;          // done with this recipe: run_fold_recipes skips the fold
    bool interrupted = false;   // cut off midway: run_fold_recipes continues after `steps_done`
    bool in_fit = false;        // … and within the fit after it, from the fold's autosave
    int steps_done = 0;
    int steps = 0;              // the recipe's
    int run = 0;                // the run that did the latest steps (0: none yet)
};
FoldRecipeState fold_recipe_state(const std::filesystem::path& project, const data::Dataset& dataset, const LearnerSpec& spec,
                                  const std::string& recipe_json, int fold);

struct FoldRecipeEvents {
    // A fold begins (`note`: "new learner", "resumes at step 5 of 10 (run #7 was interrupted)")
    // or is skipped (`skipped`: done in run #N with this recipe).
    std::function<void(int fold, int folds, const std::string& note, bool skipped)> fold_started;
    // The fold's learner was made: attach printers, progress (its callbacks end with it).
    std::function<void(train::Learner& learner)> learner_ready;
    // The recipe's own events (recorded in the fold's run first).
    train::RecipeEvents recipe;
    // The fold is done: its run and its out-of-fold predictions.
    std::function<void(int fold, int run, const train::Predictions& oof)> fold_done;
};

struct FoldRecipeOptions {
    std::string recipe_json;
    std::vector<int> folds;             // which folds, in order; empty: all of them
    std::string program = "whisker-cli";
    std::string command;                // recorded in each run
};

struct FoldRecipeResult {
    std::vector<int> done;              // folds trained to the end now
    std::vector<int> skipped;           // folds already done with this recipe
    bool stopped = false;
    std::string stop_reason;
    int stopped_fold = -1;
};

// Runs the recipe on each fold in turn, each fold one run (kind Recipe) with its checkpoint and
// out-of-fold predictions (the recipe's last valid prediction when it was made by the final
// weights, else a plain prediction of the fold at the end). "predict" steps of the test split
// are skipped (the test set is predicted by the folds' ensemble: ensemble.h). Resumable at any
// point: a fold done with the same recipe, setup and folds is skipped; an interrupted one
// continues after its last finished step (a fit interrupted midway from its autosave); the others
// start from a new learner. Stops (result.stopped) when `stop` is set or a fit stops; UserError
// when a fold fails.
FoldRecipeResult run_fold_recipes(const std::filesystem::path& project, const data::Dataset& dataset, const LearnerSpec& spec,
                                  const train::LearnerConfig& base, const FoldRecipeOptions& options,
                                  const FoldRecipeEvents& events = {}, const std::atomic<bool>* stop = nullptr,
                                  const train::ProgressCallback& progress = {});

// ---- out-of-fold predictions ----

// Predictions of the given images from a probability matrix [rows, classes] (rows in the order of
// `records`, Dataset::images indices): predicted, actual and losses filled as Learner::predict
// fills them (actual: the first label).
train::Predictions predictions_from_probabilities(const data::Dataset& dataset, std::vector<std::size_t> records,
                                                  const at::Tensor& probs, int passes = 1);
// The rows of several predictions one after another.
train::Predictions concat_predictions(const std::vector<const train::Predictions*>& parts);

// A fold run's out-of-fold predictions for the usable images its fold has in `dataset` now (in
// manifest order); nothing, with `why` set, when the run has none or they do not cover the fold
// as it is now (the folds were dealt again, images were added or included again).
std::optional<train::Predictions> read_oof(const std::filesystem::path& project, const data::Dataset& dataset,
                                           const RunRecord& run, std::string* why = nullptr);

struct FoldScore {
    int fold = 0;
    std::size_t images = 0;             // usable images of the fold now
    int run = 0;                        // the run whose predictions count (0: none)
    std::string model;                  // "resnet18 64px" of that run
    double accuracy = 0, log_loss = 0;  // of those predictions (NaN without)
    std::string missing;                // why there is none, with what to do
    // The newest finished run of the fold whose predictions no longer cover it as it is now
    // (the folds were dealt again, images were included again): stale. 0: none.
    int stale_run = 0;
};

struct CrossValidationSummary {
    int folds = 0;
    std::vector<FoldScore> per_fold;
    // Every usable labelled image once (rows fold by fold) when every fold has its run.
    std::optional<train::Predictions> oof;
    std::vector<int> missing_folds() const;
    bool complete() const { return oof.has_value(); }
};

// The cross-validation as the runs have it now: per fold the newest finished run of that fold
// (of these K) whose out-of-fold predictions cover it. UserError when the dataset has no folds.
CrossValidationSummary cross_validation_summary(const std::filesystem::path& project, const data::Dataset& dataset);

// The runs of the folds' ensemble (`whisker-cli ensemble --folds`, the workbench's "Ensemble the
// folds"): each fold's run as cross_validation_summary counts it, in fold order. UserError
// naming the folds without a finished run, and how to train them.
std::vector<int> fold_ensemble_runs(const std::filesystem::path& project, const data::Dataset& dataset);

// Writes out-of-fold predictions as CSV (path, fold, label, p_<class>…; paths as the manifest
// stores them), atomically.
void write_oof_csv(const std::filesystem::path& file, const data::Dataset& dataset, const train::Predictions& oof);

}  // namespace whisker::project
