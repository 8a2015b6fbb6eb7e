#pragma once
// The Learner on a worker thread (design.md #3).
//
// A TrainingWorker lives in its own QThread (TrainingWorker::start_thread). The UI calls its
// slots through queued connections (QMetaObject::invokeMethod); results come back as queued
// signals carrying plain value types. Stopping uses an atomic flag the UI sets directly —
// a busy worker never reaches its event loop — and takes effect before the next batch.
// Exceptions never cross the thread: failures arrive as failed(job, message).
// Batch updates are throttled (at most ~5 signals a second, each carrying all new points), so
// the UI never stalls however fast the batches come.

#include "whisker/project/session.h"
#include "whisker/train/learner.h"

#include <QMetaType>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QThread>
#include <QVector>

#include <atomic>
#include <chrono>
#include <memory>

namespace whisker::ui {

struct LossPoint {
    long iteration = 0;      // across the learner's life (for a continuous plot)
    double loss = 0;
    double smooth_loss = 0;
    double lr = 0;
};

struct LrCurve {
    QVector<double> lrs, losses;    // the plotted part (first 10 and last 5 points dropped)
    double minimum = 0, steepest = 0, valley = 0;
    bool valid = false;
    bool stopped_early = false;
};

// Predictions of the learner on one split, with the dataset as the learner saw it. Shared,
// read-only: pages keep them while the worker goes on.
struct PredictionSet {
    std::shared_ptr<const train::Predictions> predictions;
    std::shared_ptr<const data::Dataset> dataset;
    QString project;
    int split = 1;              // data::Split as int: 1 valid, 2 test
    int tta = 0;                // augmented passes besides the plain one
    int mix = 0;                // train::TtaMix as int
    QString state;              // the learner state they came from (SessionView::state)
    QString model;              // "resnet34 at 224 px, 5 epochs" — where they came from
    int run = 0;                // the run that made them (PROJECT/runs/; 0: not known)
    // An ensemble's predictions (TrainingWorker::ensemble): its members, one line each
    // ("#3 resnet18 at 32 px, weight 2"). They depend on the data, not on the learner: `state`
    // is "ensemble/<data>", and they stay current until the data changes.
    QStringList members;
    bool is_ensemble() const { return !members.isEmpty(); }
    bool valid() const { return predictions != nullptr && dataset != nullptr; }
};

// What TrainingWorker::ensemble combines: members by run reference ("#3") or checkpoint name
// ("snapshot-0004-2"), one weight each (non-negative, positive sum), the mix and TTA.
struct EnsembleRequest {
    int id = 0;                     // echoed in the result
    QStringList members;
    QVector<double> weights;
    bool geometric = false;         // false: the (weighted) arithmetic mean
    int tta = 0;                    // augmented passes besides the plain one, for every member
    // The members are the cross-validation's fold runs, one per fold as
    // project::cross_validation_summary counts them (`members` is ignored): the ensemble of
    // `whisker-cli ensemble --folds`, scored out of fold.
    bool folds = false;
};

struct EnsembleMemberScore {
    QString source, checkpoint, arch;
    int size = 0;
    double weight = 1;
    double accuracy = 0, log_loss = 0;   // on the valid split; NaN without validation images
};

struct EnsembleResult {
    int id = 0;
    int run = 0;                    // the ensemble run recorded
    QString mix;                    // "weighted mean"
    QVector<EnsembleMemberScore> members;
    double accuracy = 0, log_loss = 0;   // the ensemble's on the valid split (NaN: none)
    // Fold runs among the members: the scores above are out of fold (each member on the fold
    // it did not train on, the ensemble on every labelled image; project/ensemble.h).
    bool out_of_fold = false;
    PredictionSet test;             // its test predictions, for the Submit page
};

struct LearnerSettings {
    QString project;
    QString arch = "resnet34";
    int size = 224;
    int batch_size = 64;
    bool pretrained = true;
    QString augment = "side-on";    // data::augment_preset_name
    double max_zoom = 1.1;
    bool no_flip = false;
    bool trivial_augment = false;   // TrivialAugmentWide on top of the preset
    double random_erasing = 0;      // RandomErasing's p; 0 = off
};

struct CheckpointRow {
    QString name, saved, arch;
    int size = 0;
    long epochs = 0;
    bool has_metrics = false;
    double val_loss = 0, accuracy = 0;
    bool fit_in_progress = false;
};

// Everything the pages show of the open project, as plain values: the worker sends a new one
// after opening a project and after every job, and each page rebuilds from it. Nothing of an
// earlier project survives a new view.
struct SessionView {
    QString project;
    bool has_dataset = false;
    QString dataset_error;
    bool has_learner = false;
    QString learner;                // "resnet34 at 224 px, pretrained, 11 epochs, body unfrozen"
    QString learner_error;
    LearnerSettings settings;       // the learner's (or the defaults)
    bool trained = false;           // New learner… asks before replacing it
    int frozen_groups = 2;
    bool precompute = false;
    bool bn_freeze = false;
    bool has_ema = false;           // the latest fit kept a weight EMA (predict can use it)
    QVector<train::EpochRecord> epochs;
    QVector<LossPoint> batches;
    LrCurve lr_curve;
    QString precision;              // what forward passes use: "bf16 (auto: this CPU has …)"
    QString state;                  // the learner state results are compared with
    bool can_resume = false;
    QString resume_text;            // "epoch 2 of 7 of the interrupted fit"
    QVector<CheckpointRow> checkpoints;
    PredictionSet valid, test;      // the latest of each split (any state: compare .state)
};

class TrainingWorker : public QObject {
    Q_OBJECT
public:
    TrainingWorker();
    ~TrainingWorker() override;

    // Thread-safe; callable from the UI thread while the worker is busy.
    void request_stop() { stop_ = true; }
    // The project's session and learner, for the worker thread only (tests inspect them after
    // a job has finished).
    project::Session* session() const { return session_.get(); }
    train::Learner* learner() const { return session_ && session_->has_learner() ? &session_->learner() : nullptr; }

public Q_SLOTS:
    // Replaces the session with the project's (its learner loaded as it was left); publishes
    // a SessionView. An empty path closes the session.
    void open(const QString& project);
    // Rereads the project from disk (another program changed it).
    void reload();
    // A new learner replacing the project's; trained weights are kept as a checkpoint first.
    void create_learner(const whisker::ui::LearnerSettings& settings);
    void lr_find();
    void fit(const whisker::train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze);
    // The same fit in `nproc` data-parallel processes (whisker-cli fit --nproc, c10d): the
    // project's learner is saved, the workers continue from it, their epochs arrive as
    // epoch_finished, and the learner here reloads what rank 0 saved. Stop reaches every worker.
    // With `sync_bn`, BatchNorm statistics over the global batch (--sync-bn).
    void fit_processes(const whisker::train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze, int nproc,
                       bool sync_bn = false);
    void resume();
    // Progressive resizing: the learner goes on at `size` px with the same weights.
    void resize(int size);
    void save(const QString& name);
    void load(const QString& name);
    // Runs a recipe (JSON; empty = the seed's 8 steps), reporting each step.
    void run_recipe(const QString& recipe_json);
    // Predicts a split (1 valid, 2 test) with `tta` augmented passes; with `ema`, the weight
    // EMA of the latest fit that kept one (SessionView::has_ema).
    void predict(int split, int tta, int mix, bool ema = false);
    // Rereads the project's manifest (after the user marked images) for the next fit.
    void reload_dataset();
    // The precision of forward passes (train::Precision as int) for this and later sessions.
    void set_precision(int precision);
    // Gradient accumulation (batches per optimiser step) of the sweeps and recipes from now
    // on; a fit takes its own from FitOptions::accumulate.
    void set_accumulate(int batches);
    // Predicts every member (its own learner, architecture and size, one at a time; the
    // project's learner is left alone) on the valid and test splits, scores each and their
    // combination, and records an ensemble run, as `whisker-cli ensemble` does; under the
    // project's lock. Members' predictions are kept for the session, so computing again with
    // other weights or mix predicts nothing anew. Emits ensemble_ready, then
    // job_finished("Ensemble"); stoppable (request_stop).
    void ensemble(const whisker::ui::EnsembleRequest& request);
    // Cross-validation (whisker/project/folds.h), as whisker-cli does it; each under the
    // project's lock. make_folds deals the labelled images into `folds` stratified folds
    // (`whisker-cli data folds --folds K --seed S`), with `group_duplicates` finding
    // near-duplicates first and keeping each group in one fold; the session rereads the
    // manifest. Job "Folds"; emits note(the folds in words) before job_finished.
    void make_folds(int folds, qulonglong seed, bool group_duplicates);
    // Runs `recipe_json` (empty: project::default_folds_recipe, the Train page's recipe) on
    // each of `folds` (empty: all) with its own learner, as `whisker-cli run --folds` does:
    // the setup is the project's learner's, each fold one run with its out-of-fold
    // predictions; a fold done with this recipe is skipped, one cut off midway continues after
    // its last finished step (inside a fit, from its autosave). Stoppable: the current fold
    // stops at the next batch and continues from there next time. Job "Cross-validation";
    // fold_started / fold_finished per fold, progress all along.
    void train_folds(const QString& recipe_json, const QVector<int>& folds);

Q_SIGNALS:
    void session_changed(const whisker::ui::SessionView& view);
    // The lr_find sweep so far (lr, smoothed loss), for drawing the curve while it runs.
    void lr_find_points(const QVector<double>& lrs, const QVector<double>& losses);
    void batches(const QVector<whisker::ui::LossPoint>& points);
    void epoch_finished(const whisker::train::EpochRecord& record);
    void lr_find_finished(const whisker::ui::LrCurve& curve);
    void progress(const QString& stage, qlonglong done, qlonglong total);
    void job_finished(const QString& job, bool stopped, const QString& message);
    void recipe_step(int number, const QString& description);
    void failed(const QString& job, const QString& message);
    void predictions_ready(const whisker::ui::PredictionSet& predictions);
    void ensemble_ready(const whisker::ui::EnsembleResult& result);
    // train_folds: fold `fold` of `folds` begins (`note`: "a new learner", "resumes after step
    // 2 of 8 …") or is skipped (done with this recipe), and a fold has finished into run `run`
    // with its out-of-fold scores.
    void fold_started(int fold, int folds, const QString& note, bool skipped);
    void fold_finished(int fold, int run, double accuracy, double log_loss);
    // A line for the log (e.g. what a data-parallel worker printed on its standard error).
    void note(const QString& line);

private:
    friend class SignalBridge;
    template <class F>
    void run_job(const QString& name, F&& body);
    void flush_points(bool force);
    // Sends the session as it is now to the pages.
    void publish();
    project::Session& session();
    void attach_bridge();

    std::unique_ptr<project::Session> session_;
    std::atomic<bool> stop_{false};
    QVector<LossPoint> pending_;
    QVector<double> finder_lrs_, finder_losses_;
    std::chrono::steady_clock::time_point last_flush_{};
    std::chrono::steady_clock::time_point last_progress_{};
    long process_x_base_ = 0;      // batch-plot x of a multi-process fit's first batch
    bool in_lr_find_ = false;
    train::Precision precision_ = train::Precision::Auto;
    int accumulate_ = 1;
    struct MemberCache;             // members' predictions, per checkpoint, TTA and data
    std::unique_ptr<MemberCache> member_cache_;
};

// Registers the value types above for queued connections (call once, before use).
void register_training_types();

}  // namespace whisker::ui

Q_DECLARE_METATYPE(whisker::ui::LossPoint)
Q_DECLARE_METATYPE(whisker::ui::LrCurve)
Q_DECLARE_METATYPE(whisker::ui::LearnerSettings)
Q_DECLARE_METATYPE(whisker::ui::PredictionSet)
Q_DECLARE_METATYPE(whisker::ui::EnsembleRequest)
Q_DECLARE_METATYPE(whisker::ui::EnsembleResult)
Q_DECLARE_METATYPE(whisker::ui::SessionView)
Q_DECLARE_METATYPE(whisker::train::EpochRecord)
Q_DECLARE_METATYPE(whisker::train::FitOptions)
