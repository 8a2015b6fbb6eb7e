#pragma once
// Every run recorded: what was asked, on which data, what came out, and what it continued.
//
// A run is one job on a project: a fit, an lr_find sweep, a recipe, a prediction, a submission
// or an ensemble. Each has one JSON file, PROJECT/runs/<NNNN>-<kind>.json ("0007-fit.json"):
//
//   asked     the learner (architecture, size, batch, precision, augmentation, seed,
//             accumulation, processes) and, per fit, the learning rates (asked, and per
//             trainable layer group as the optimiser got them), schedule, weight decay,
//             optimiser, freezing, precompute, BatchNorm freezing, MixUp/CutMix/EMA/label
//             smoothing, snapshots; for recipes the whole recipe and each fit's step; for
//             predictions the split, TTA and mix; the command line or the workbench action
//   data      the manifest's SHA-256, the usable images per split, marked images, classes
//   came out  per fit the epoch table (exactly the EpochRecords the fit produced), the
//             batch-loss curve (thinned to at most ~2000 points a fit), the lr_find curve and
//             its suggestions, predictions' scores and files (with their SHA-256, which ties
//             a submission to the Kaggle history), wall time, device, and the checkpoint the
//             run produced: "run-<NNNN>", a hard link to the fit's autosave (no extra disk; a
//             later fit replaces the autosave by renaming, which leaves the link's files as
//             they were), loadable like any checkpoint
//   lineage   the learner state (Learner::state_id) it started from and ended with; `parent`
//             is the run whose weights it started from (the newest fit/recipe/ensemble run
//             that ended in that state): a fit continuing another, a prediction made by
//             a run's weights. A fit interrupted and resumed is TWO linked runs: the first
//             ends "stopped" (or "interrupted" if its process died), the resumed one has
//             resumed = true and parent = the first.
//
// Status: "running" while its process works on it (the file is rewritten atomically at each
// epoch), then "finished", "stopped" (by the user or early stopping: resumable), "failed"
// (an error or a NaN loss). A run whose process ended without finishing it (killed, crashed)
// reads as "interrupted" (its "running" file names a PID on this host that is gone).
//
// Several writers, one folder: a run's number is claimed under an flock on PROJECT/runs/.lock
// (scan the highest number, write the new file, unlock), so processes and threads never get
// the same number; afterwards each run's file is written only by the recorder that owns it,
// always by temp-file-and-rename, so readers (the workbench watching a CLI fit) see either
// the previous or the next complete version. Runs are never renumbered or removed.
// In a data-parallel group only rank 0 records (the other ranks' recorders are silent).
//
// Threading: a RunRecorder is used by the thread that runs the job; reading runs is safe from
// any thread and any process, and takes no lock.

#include "whisker/data/dataset.h"
#include "whisker/train/learner.h"
#include "whisker/train/recipe.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace whisker::project {

enum class RunKind { Fit, LrFind, Recipe, Predict, Submission, Ensemble };
const char* run_kind_name(RunKind kind);                        // "fit", "lr_find", …
std::optional<RunKind> parse_run_kind(const std::string& name);

// One fit inside a run (a recipe has several; a fit run has one).
struct RunFit {
    std::string asked;                  // JSON of what was asked: the FitOptions, or the recipe step
    std::string schedule;               // "SGDR, 3 cycles of 1 epoch, x2", "one-cycle, 3 epochs", "constant, 2 epochs"
    std::string optimizer;              // "sgd", "adamw" ("" when not told)
    std::vector<double> lrs;            // the learning rates asked (one, or per group), "found" resolved
    std::vector<double> group_lrs;      // the optimiser's base rate per trainable layer group at the start
    std::vector<double> wds;
    int frozen_groups = 0;              // Learner::frozen_groups at the start
    bool precompute = false, bn_freeze = false;
    bool resumed = false;               // continues an interrupted fit (its checkpoint's schedule)
    long epochs_before = 0;             // the learner's epochs_trained at the start
    std::vector<train::EpochRecord> epochs;
    struct Batch {
        long iteration = 0;
        double loss = 0, smooth_loss = 0, lr = 0;
    };
    std::vector<Batch> batches;         // thinned to at most ~2000 points
    bool stopped = false;
    std::string stop_reason;
    std::vector<std::string> snapshots; // checkpoints kept at the end of each SGDR cycle
};

// One prediction a run made.
struct RunPrediction {
    std::string split;                  // "valid", "test"
    int tta = 0;
    std::string mix;                    // "mean", "beta"
    std::size_t rows = 0;
    // Labelled rows only (valid): accuracy and log loss; NaN for test predictions.
    double accuracy = 0, log_loss = 0;
    std::string file;                   // the file written (relative to the project when inside), "" none
    std::string file_sha256;
};

// An lr_find sweep a run made.
struct RunLrFind {
    std::vector<double> lrs, losses;
    double minimum = 0, steepest = 0, valley = 0;
    bool suggestions_valid = false, stopped_early = false;
    double chosen = 0;                  // the rate a recipe took from it (0: none)
};

// A member of an ensemble run, with its own validation score.
struct RunMember {
    std::string source;                 // "#3" (a run) or a checkpoint name
    std::string checkpoint;
    std::string arch;
    int size = 0;
    double weight = 1;
    double accuracy = 0, log_loss = 0;  // on the valid split
};

// What a submission run sent to Kaggle (runs of kind Submission made by `whisker-cli kaggle
// submit --project` or the workbench's Submit page; a `predict` run that only wrote a file has
// none) and Kaggle's verdict once it is known (update_submission_run brings in later scores).
struct RunKaggle {
    std::string competition, message;
    std::string ref;                    // Kaggle's reference ("" while uploading)
    std::string status;                 // UPLOADING, PENDING, COMPLETE, ERROR, UPLOAD FAILED
    std::string public_score, private_score, error;
};

struct RunRecord {
    int number = 0;
    RunKind kind = RunKind::Fit;
    std::string status;                 // running, finished, stopped, failed, interrupted
    std::string error;                  // for failed runs
    std::string started, ended;         // local time, "2026-12-01 10:31:05"
    double wall_seconds = 0;
    std::string program;                // "whisker-cli", "whisker"
    std::string command;                // the command line, or the workbench action
    long pid = 0;
    std::string host;
    std::string device;                 // "CPU (16 threads)", "NVIDIA H200 …"

    // The learner.
    std::string arch;
    int size = 0, batch_size = 0;
    bool pretrained = false;
    std::uint64_t seed = 0;
    std::string precision;              // resolved: fp32, bf16, fp16
    std::string augmentation;           // "side-on augmentation"
    // The augmentation as the learner's settings (what an ensemble member is rebuilt with).
    std::string augment_preset;         // data::augment_preset_name
    double max_zoom = 1.1;
    bool no_flip = false, trivial_augment = false;
    double random_erasing = 0;
    double val_resize = 0;
    int accumulate = 1;
    int processes = 1;                  // data-parallel world size

    // The data.
    std::string data_sha256;            // of PROJECT/dataset.json (marks change it)
    std::size_t train_images = 0, valid_images = 0, test_images = 0, marked_images = 0;
    std::vector<std::string> classes;

    // What it did and made.
    std::string recipe;                 // recipes: the recipe's JSON
    std::vector<RunFit> fits;
    std::vector<RunLrFind> lr_finds;
    std::vector<RunPrediction> predictions;
    std::vector<RunMember> members;     // ensembles
    std::string ensemble_mix;           // "mean", "weighted mean", "geometric mean"
    std::string checkpoint;             // the checkpoint the run produced ("" none)
    std::string submission;             // the submission file it wrote ("" none)
    std::string submission_sha256;
    std::optional<RunKaggle> kaggle;    // submissions sent to Kaggle (see RunKaggle)

    // Cross-validation (project/folds.h): the fold this run validated on, of `folds` (-1 and 0
    // for runs on the project's own train/valid split), and the file of its out-of-fold
    // predictions (relative to the project; "" until the run finished its fold). Keys "fold",
    // "folds", "oof", written only for fold runs.
    int fold = -1, folds = 0;
    std::string oof;

    // Lineage.
    std::string start_state, end_state; // Learner::state_id before and after
    int parent = 0;                     // the run whose weights it started from (0: none known)
    bool resumed = false;

    std::string json;                   // the file's text, for --json output

    // Every epoch of every fit, in order.
    std::vector<train::EpochRecord> all_epochs() const;
    // The epoch with the lowest validation log loss (nothing without epochs).
    std::optional<train::EpochRecord> best_epoch() const;
    // The run's validation score: its own valid prediction if it made one (the last), else
    // its last epoch's metrics; nothing when it has neither.
    struct Score {
        double accuracy = 0, log_loss = 0;
        std::string from;               // "valid prediction, TTA x4", "epoch 7"
    };
    std::optional<Score> validation() const;
    long epochs() const;                // epochs trained in this run
};

// Reads the record of run `number`; nothing when there is none. Damaged files read as nothing.
std::optional<RunRecord> read_run(const std::filesystem::path& project, int number);
// All runs, oldest first (damaged files left out). A "running" run whose process is gone reads
// as "interrupted".
std::vector<RunRecord> list_runs(const std::filesystem::path& project);
// Parses a record (UserError for malformed JSON).
RunRecord parse_run(const std::string& json_text);

// What was asked, flattened to (setting, value) in a fixed order, for compare tables:
// "arch", "size", "batch", …, "fit 1: lr", "fit 1: schedule", …
std::vector<std::pair<std::string, std::string>> run_settings(const RunRecord& run);

// CV against the leaderboard: each run that wrote a submission file which was then sent to
// Kaggle (the file's SHA-256 matched against the copies PROJECT/submissions.json keeps), with
// the run's validation score (its own valid prediction or last epoch; for a run that only
// predicted the test set, its parent's) and Kaggle's public score. Oldest first.
struct SubmissionScore {
    int run = 0;
    std::string file;                   // the kept copy of the uploaded file
    std::string date, message, status;
    std::optional<RunRecord::Score> validation;
    std::string public_score;           // as Kaggle gave it ("" while pending)
    std::optional<double> public_value; // parsed
};
std::vector<SubmissionScore> submission_scores(const std::filesystem::path& project);

// The newest run that wrote (or predicted into) a file with this SHA-256, not counting the runs
// that sent it to Kaggle; 0 when none did.
int run_that_wrote(const std::filesystem::path& project, const std::string& sha256);
// Rewrites the Kaggle verdict of submission run `number` once Kaggle has scored it (the run
// has ended: its program may be long gone). False when there is no such run, or when it is
// still open in a live process (that process writes it).
bool update_submission_run(const std::filesystem::path& project, int number, const RunKaggle& kaggle);
// Brings the verdicts PROJECT/submissions.json holds (after SubmissionHistory::merge) into the
// submission runs its records name.
void record_submission_verdicts(const std::filesystem::path& project);

// The run a reference names: "7", "#7" or "run-0007"; nothing when it is not a run reference.
std::optional<int> parse_run_reference(const std::string& text);

// The checkpoint a run produced is named run_checkpoint_name(7) = "run-0007".
std::string run_checkpoint_name(int number);

// Records the runs of one learner: attach it once (Learner::add_callback) and bracket each job
// with begin() … end(). Between jobs it ignores the learner's events. Fits and lr_find sweeps
// inside a job are recorded from the learner's callbacks; predictions and submissions are
// reported by the caller (add_prediction, set_submission).
class RunRecorder : public train::Callback {
public:
    // `program` names who records ("whisker-cli", "whisker").
    RunRecorder(std::filesystem::path project, std::string program);
    ~RunRecorder() override;   // a run still open is left "interrupted"

    // Starts a run: claims its number, finds its parent, writes it as "running". Returns the
    // number; 0 on ranks > 0 of a data-parallel group (nothing is recorded there).
    int begin(RunKind kind, const train::Learner& learner, const std::string& command);
    // A run of no single learner (an ensemble): the data only.
    int begin(RunKind kind, const data::Dataset& dataset, const std::string& command);
    // Finishes the run: "finished", or "stopped"/"failed" when its last fit was; `error`
    // non-empty marks it failed. Hard-links the fit's autosave as checkpoint run-<NNNN> when
    // the run trained. Safe to call twice, or without a run.
    void end(const std::string& error = {});
    // Ends the run as stopped (by the user; "failed" when `reason` names a NaN loss).
    void end_stopped(const std::string& reason);
    bool active() const { return open_ != nullptr; }
    int number() const;
    // The record as it stands (for tests and the programs' summaries).
    const RunRecord* current() const;

    // What the next fit was asked (before Learner::fit). `snapshots`: keep a checkpoint
    // "snapshot-<NNNN>-<cycle>" at the end of each SGDR cycle (a hard link of the autosave the
    // learner writes at that epoch's end; needs Learner::autosave, the default).
    void expect_fit(const train::FitOptions& options, bool snapshots = false);
    // The next fit resumes the interrupted fit kept in checkpoint `name` (its options are read
    // from there).
    void expect_resume(const std::string& checkpoint = "autosave");
    // Recipes: the recipe's JSON, and events that record its steps (lr_find results and the
    // rate chosen, each fit's step — a fit step with "snapshots": true keeps cycle snapshots —
    // and its predictions) before calling `events`.
    train::RecipeEvents recipe_events(const std::string& recipe_json, train::RecipeEvents events);
    void add_lr_find(const train::LrFindResult& result, double chosen = 0);
    void add_prediction(const train::Predictions& predictions, data::Split split, int tta, train::TtaMix mix,
                        const std::filesystem::path& written = {});
    void set_submission(const std::filesystem::path& file);
    // Submission runs: what was sent to Kaggle and its verdict so far; the run the sent
    // predictions came from (a predict or ensemble run).
    void set_kaggle(const RunKaggle& kaggle);
    void set_parent(int run);
    void set_members(const std::vector<RunMember>& members, const std::string& mix);
    void set_device(const std::string& device);   // runs begun without a learner
    // This run trains cross-validation fold `fold` of `folds` with a learner that keeps its
    // checkpoints in the fold's own folder: `autosave` names that learner's autosave relative
    // to PROJECT/models ("../folds/k5/fold-2/models/autosave"), and the run's checkpoint
    // run-<NNNN> (and its snapshots) are linked from there instead of PROJECT/models/autosave.
    void set_fold(int fold, int folds, const std::string& autosave);
    // The fold run's out-of-fold predictions, once written (project/folds.h).
    void set_oof(const std::filesystem::path& file);

    void before_fit(train::Learner& learner) override;
    void after_batch(train::Learner& learner, const train::BatchRecord& batch) override;
    void after_epoch(train::Learner& learner, const train::EpochRecord& record) override;
    void after_fit(train::Learner& learner, const train::FitResult& result) override;

    struct Open;   // runs.cpp

private:
    void write();
    int claim(std::unique_ptr<Open> open, RunKind kind);
    void fill_data(RunRecord& r, const data::Dataset& dataset) const;
    int parent_of(const std::string& state) const;
    std::filesystem::path project_;
    std::string program_;
    std::unique_ptr<Open> open_;
};

}  // namespace whisker::project
