#pragma once
// One project, one truth: the state of a project folder, owned by one object.
//
// A Session holds everything a program knows about the project it has open: the dataset
// (PROJECT/dataset.json), the learner (PROJECT/learner.json + checkpoint "current": config,
// weights, epoch count, freezing, precompute), the latest predictions per split — each tagged
// with the learner state and data it came from, and kept in PROJECT/cache/predictions/ for the
// next program while that state lasts — the LR-finder curve and the batch losses
// (PROJECT/models/training_log.json), and the checkpoints and submissions on disk. whisker-cli
// and the workbench both work through it, so both follow the same rules:
//
//   - Opening a project loads its learner as it was left ("resnet34 at 224 px, pretrained,
//     11 epochs, body unfrozen"), ready to continue.
//   - new_learner() keeps trained weights as a named checkpoint before replacing them.
//   - Results carry their origin (LearnerState); a submission is written only from test
//     predictions of the current state (write_submission refuses others).
//   - persist() leaves the learner where the next program (CLI or workbench) picks it up.
//
// Writes need the project's lock (project_lock.h): callers hold a ProjectLock for the job
// (lock() takes one). Opening and reading take none.
// Threading: a Session is used by one thread at a time (the workbench's training thread);
// it never touches Qt. Values it returns are copies or shared read-only objects.

#include "whisker/data/dataset.h"
#include "whisker/project/project_lock.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace whisker::project {

// PROJECT/learner.json: how the project's learner was created.
struct LearnerSpec {
    static constexpr const char* kFileName = "learner.json";
    std::string arch = "resnet34";
    int size = 224;
    int batch_size = 64;
    bool pretrained = true;
    std::uint64_t seed = 42;
    // The training augmentation (data/transforms.h); files written before these existed read
    // as side-on, max_zoom 1.1, with flips. Keys "augment" (augment_preset_name), "max_zoom",
    // "no_flip".
    data::AugmentPreset augment = data::AugmentPreset::SideOn;
    double max_zoom = 1.1;
    bool no_flip = false;
    // On top of the preset (keys "trivial_augment", "random_erasing"; older files: off).
    bool trivial_augment = false;
    double random_erasing = 0.0;   // RandomErasing's p, 0 = off
    // The validation view's resize as a ratio of the size (key "val_resize"; 0 or absent: the
    // architecture's default, ArchInfo::default_eval_resize_ratio).
    double val_resize = 0.0;

    // Nothing when the project has no learner; UserError when the file is damaged (an unknown
    // augmentation name or a max_zoom below 1 included).
    static std::optional<LearnerSpec> read(const std::filesystem::path& project);
    void write(const std::filesystem::path& project) const;   // atomic
    bool operator==(const LearnerSpec& o) const {
        return arch == o.arch && size == o.size && batch_size == o.batch_size && pretrained == o.pretrained && seed == o.seed &&
               augment == o.augment && max_zoom == o.max_zoom && no_flip == o.no_flip &&
               trivial_augment == o.trivial_augment && random_erasing == o.random_erasing && val_resize == o.val_resize;
    }
    // The learner these settings describe, on top of the program's `base` (threads, precision,
    // data-parallel group…).
    train::LearnerConfig config(const train::LearnerConfig& base) const;
};

// Where a result came from: the learner's weights (Learner::state_id) and the data it saw
// (a fingerprint of the manifest: marks change it).
struct LearnerState {
    std::string weights;
    std::string data;
    bool operator==(const LearnerState& o) const { return weights == o.weights && data == o.data; }
    bool operator!=(const LearnerState& o) const { return !(*this == o); }
};

// Predictions of one split with their origin.
struct SplitPredictions {
    std::shared_ptr<const train::Predictions> predictions;
    std::shared_ptr<const data::Dataset> dataset;   // as the learner saw it (rows index its images)
    data::Split split = data::Split::Valid;
    int tta = 0;                                    // augmented passes besides the plain one
    train::TtaMix mix = train::TtaMix::Mean;
    LearnerState origin;
    std::string model;                              // "resnet34 at 224 px, 5 epochs"
};

// A saved checkpoint (PROJECT/models/<name>.json), for a "Load…" list.
struct CheckpointInfo {
    std::string name;
    std::string saved;                  // local time, "2026-12-01 10:31:05" (the file's time for old ones)
    std::string arch;
    int size = 0;
    long epochs = 0;                    // epochs trained
    std::optional<train::EpochRecord> last_epoch;   // its latest validation metrics
    bool fit_in_progress = false;       // an interrupted fit that resume() continues
    std::string state;                  // Learner::state_id of its weights
};
// Newest first. Damaged entries are left out.
std::vector<CheckpointInfo> list_checkpoints(const std::filesystem::path& project);

// One point of the batch-loss plot; x counts batches over the learner's life (continuous
// across stops, resumes and fits).
struct BatchPoint {
    long x = 0;
    double loss = 0, smooth_loss = 0, lr = 0;
};

struct TrainingLog {
    static constexpr const char* kFileName = "models/training_log.json";
    std::vector<BatchPoint> batches;
    std::optional<train::LrFindResult> lr_find;     // the latest sweep
    std::string learner;                            // the learner state the log belongs to ("" = any)
    static TrainingLog read(const std::filesystem::path& project);   // empty when missing or damaged
    void write(const std::filesystem::path& project) const;          // atomic
};

struct SessionOptions {
    // Threads, distributed group, precision: copied into every learner the session creates.
    train::LearnerConfig base;
    train::ProgressCallback progress;
    // Load the project's learner on open (false: only its dataset and files).
    bool load_learner = true;
};

class Session {
public:
    // Opens a project folder. Reads only; never throws for a missing or damaged dataset or
    // learner (see dataset_error() / learner_error()), only for a path that is not a folder.
    explicit Session(std::filesystem::path project, SessionOptions options = {});
    // The precision of forward passes from now on, for this learner and the ones it creates
    // (a choice of the program, not of the project: nothing is written).
    void set_precision(train::Precision precision);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    const std::filesystem::path& project() const { return project_; }
    // Takes the project's lock for a job that writes (throws ProjectBusy naming the holder).
    ProjectLock lock(const std::string& action) const { return ProjectLock::acquire(project_, action); }

    // ---- dataset ----
    bool has_dataset() const { return dataset_ != nullptr; }
    // Throws UserError (with what to do) when the project has no usable dataset.
    const data::Dataset& dataset() const;
    const std::string& dataset_error() const { return dataset_error_; }
    // Rereads the manifest (marks changed); the learner uses it from its next job.
    void reload_dataset();

    // ---- learner ----
    bool has_learner() const { return learner_ != nullptr; }
    // Throws UserError "this project has no learner yet" when there is none.
    train::Learner& learner();
    const train::Learner& learner() const;
    const std::optional<LearnerSpec>& spec() const { return spec_; }
    const std::string& learner_error() const { return learner_error_; }
    // "resnet34 at 224 px, pretrained, 11 epochs, body unfrozen"; "" without a learner. An
    // augmentation other than the default (side-on, max zoom 1.1, flips) is named after the
    // weights: "…, pretrained, top-down augmentation, 11 epochs, …".
    std::string describe_learner() const;
    // A learner worth keeping: it has trained, or its weights came from a checkpoint.
    bool learner_is_trained() const;
    // Replaces the learner with a new one made from `spec` (downloading pretrained weights if
    // needed). Trained weights are first saved as checkpoint "before-new-<time>", whose name
    // is returned ("" when there was nothing to keep). An interrupted fit of the old learner
    // (its autosave) is kept as "before-new-<time>-autosave", so that resume() never continues
    // it with the new one. Persists the new learner. When the new learner cannot be made
    // (unknown arch, no pretrained weights) it throws and the old one stays.
    std::string new_learner(const LearnerSpec& spec);
    // Rereads everything from disk (another program changed the project): dataset, learner,
    // training log. Predictions of a state that is no longer current are dropped.
    void reload();

    // ---- where results come from ----
    LearnerState state() const;
    bool is_current(const SplitPredictions& p) const { return has_learner() && p.origin == state(); }

    // ---- jobs (callers hold the lock when they write) ----
    train::LrFindResult lr_find(double start = 1e-5, double end = 10, bool linear = false,
                                const std::atomic<bool>* stop = nullptr);
    // Applies freezing/precompute as asked, then fits. Precompute on an unfrozen learner
    // freezes it first (the recipe's rule).
    train::FitResult fit(const train::FitOptions& options, const std::atomic<bool>* stop = nullptr);
    train::FitResult resume(const std::atomic<bool>* stop = nullptr);
    // Runs a recipe; its lr_find curves and predictions become the session's.
    train::RecipeResult run_recipe(const std::string& recipe_json, const train::RecipeEvents& events = {},
                                   const std::atomic<bool>* stop = nullptr);
    const SplitPredictions& predict(data::Split split, int tta = 0, train::TtaMix mix = train::TtaMix::Mean,
                                    const std::atomic<bool>* stop = nullptr);
    // The latest predictions of a split (of any state: check is_current), or nothing.
    const std::optional<SplitPredictions>& predictions(data::Split split) const;
    // Writes a Kaggle submission from the current state's test predictions; UserError when
    // there are none, or when they came from another learner state ("predict the test set
    // again").
    void write_submission(const std::filesystem::path& path, double clip = 0, bool labels = false) const;
    void save_checkpoint(const std::string& name);
    void load_checkpoint(const std::string& name);
    // Progressive resizing: the learner continues at `size` px with the same weights
    // (Learner::set_size); learner.json and "current" are updated, earlier predictions dropped.
    void resize_learner(int size);
    // The learner's batch size from now on (Learner::set_batch_size); learner.json is updated.
    void set_batch_size(int batch_size);
    std::vector<CheckpointInfo> checkpoints() const { return list_checkpoints(project_); }
    // The autosave of an interrupted fit of this learner, if any: what resume() continues.
    std::optional<CheckpointInfo> interrupted_fit() const;

    const TrainingLog& training_log() const { return log_; }

    // Leaves the learner for the next program: learner.json, checkpoint "current" and the
    // training log (rank 0 alone writes in a data-parallel group).
    void persist();

private:
    class Recorder;
    void open_learner();
    void attach(std::unique_ptr<train::Learner> learner);
    train::LearnerConfig config_of(const LearnerSpec& spec) const;
    std::string model_words() const;
    // The latest predictions of each split, also written to PROJECT/cache/predictions/ so that
    // the next program opening the project (the workbench reopened, the CLI) has them while the
    // learner's weights and the data are the ones they came from.
    void remember(SplitPredictions p);
    std::filesystem::path kept_predictions_path(data::Split split) const;
    void keep_predictions(const SplitPredictions& p) const;
    std::optional<SplitPredictions> read_kept_predictions(data::Split split) const;

    std::filesystem::path project_;
    SessionOptions options_;
    std::shared_ptr<const data::Dataset> dataset_;
    std::string dataset_error_;
    std::string data_fingerprint_;
    std::optional<LearnerSpec> spec_;
    std::unique_ptr<train::Learner> learner_;
    std::string learner_error_;
    TrainingLog log_;
    std::optional<SplitPredictions> valid_, test_;
};

}  // namespace whisker::project
