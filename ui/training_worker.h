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

#include "whisker/train/learner.h"

#include <QMetaType>
#include <QObject>
#include <QString>
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
    qint64 generation = 0;      // the learner's state they came from (TrainingWorker::generation)
    QString model;              // "resnet34 at 224 px, 5 epochs" — where they came from
    bool valid() const { return predictions != nullptr && dataset != nullptr; }
};

struct LearnerSettings {
    QString project;
    QString arch = "resnet34";
    int size = 224;
    int batch_size = 64;
    bool pretrained = true;
};

class TrainingWorker : public QObject {
    Q_OBJECT
public:
    TrainingWorker();
    ~TrainingWorker() override;

    // Thread-safe; callable from the UI thread while the worker is busy.
    void request_stop() { stop_ = true; }
    // The learner, for the worker thread only (tests inspect it after a job has finished).
    train::Learner* learner() const { return learner_.get(); }

public Q_SLOTS:
    void create_learner(const whisker::ui::LearnerSettings& settings);
    void lr_find();
    void fit(const whisker::train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze);
    // The same fit in `nproc` data-parallel processes (whisker-cli fit --nproc, c10d): the
    // project's learner is saved, the workers continue from it, their epochs arrive as
    // epoch_finished, and the learner here reloads what rank 0 saved. Stop reaches every worker.
    void fit_processes(const whisker::train::FitOptions& options, bool precompute, int freeze_to, bool bn_freeze, int nproc);
    void resume();
    void save(const QString& name);
    void load(const QString& name);
    // Runs a recipe (JSON; empty = the seed's 8 steps), reporting each step.
    void run_recipe(const QString& recipe_json);
    // Predicts a split (1 valid, 2 test) with `tta` augmented passes. Without a learner, the
    // project's saved learner (learner.json + checkpoint "current", as whisker-cli leaves
    // it) is created first.
    void predict(const QString& project, int split, int tta, int mix);
    // Rereads the project's manifest (after the user marked images) for the next fit.
    void reload_dataset();

Q_SIGNALS:
    void learner_ready(const QString& description);
    void batches(const QVector<whisker::ui::LossPoint>& points);
    void epoch_finished(const whisker::train::EpochRecord& record);
    void lr_find_finished(const whisker::ui::LrCurve& curve);
    void progress(const QString& stage, qlonglong done, qlonglong total);
    void job_finished(const QString& job, bool stopped, const QString& message);
    void recipe_step(int number, const QString& description);
    void failed(const QString& job, const QString& message);
    void predictions_ready(const whisker::ui::PredictionSet& predictions);
    // A line for the log (e.g. what a data-parallel worker printed on its standard error).
    void note(const QString& line);
    // The learner's weights or data changed (a fit, a load, new marks): older predictions are stale.
    void model_changed(qint64 generation);

private:
    friend class SignalBridge;
    template <class F>
    void run_job(const QString& name, F&& body);
    void flush_points(bool force);
    // Keeps the project's learner in step with whisker-cli: learner.json and checkpoint "current".
    void persist();
    void changed();
    void create_from_settings(const LearnerSettings& settings);

    std::unique_ptr<train::Learner> learner_;
    std::atomic<bool> stop_{false};
    QVector<LossPoint> pending_;
    std::chrono::steady_clock::time_point last_flush_{};
    std::chrono::steady_clock::time_point last_progress_{};
    long iteration_base_ = 0;
    bool in_lr_find_ = false;
    qint64 generation_ = 0;
};

// Registers the value types above for queued connections (call once, before use).
void register_training_types();

}  // namespace whisker::ui

Q_DECLARE_METATYPE(whisker::ui::LossPoint)
Q_DECLARE_METATYPE(whisker::ui::LrCurve)
Q_DECLARE_METATYPE(whisker::ui::LearnerSettings)
Q_DECLARE_METATYPE(whisker::ui::PredictionSet)
Q_DECLARE_METATYPE(whisker::train::EpochRecord)
Q_DECLARE_METATYPE(whisker::train::FitOptions)
