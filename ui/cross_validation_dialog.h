#pragma once
// The Runs page's "Cross-validation…" dialog: K-fold cross-validation without the terminal,
// the way whisker-cli does it (whisker/project/folds.h, data/folds.h; docs/runs.md).
//
//   Folds      K (2–10), seed, "keep near-duplicates in one fold"; "Make folds" deals them on
//              the Train page's worker (TrainingWorker::make_folds, under the project's lock).
//              A dataset that cannot be dealt into K folds (a class with fewer usable images
//              than K) is refused at once, with core's message. With folds: their description
//              and "Make new folds…", which asks first (the folds' runs become stale).
//   Table      one row per fold, as `whisker-cli cv` prints it: images, state (not started;
//              cut off midway, resumable; finished: run, model, accuracy, log loss; stale: its
//              run was made for other folds), refreshed as each fold finishes.
//   Training   "Train all folds" trains the folds without a finished run and those cut off
//              midway (selected rows: just those) with the Train page's recipe — or a recipe
//              file — and the project's learner's setup (TrainingWorker::train_folds, as
//              `whisker-cli run --folds`); Stop stops at the next batch, and the fold continues
//              from its last finished step (inside a fit, from its autosave) next time.
//   Score      the out-of-fold accuracy and log loss over every labelled image once every fold
//              has a finished run, with a note when the folds' runs are of different models.
//   Ensemble   "Ensemble the folds → Send to Submit" predicts the test set with the K fold
//              models (TrainingWorker::ensemble with EnsembleRequest::folds, as `whisker-cli
//              ensemble --folds`), records the ensemble run (scored out of fold) and hands its
//              test predictions to the Submit page (send_to_submit), as the Ensemble dialog does.
//
// While the worker runs another job (any page's), everything that would start one is
// disabled and the status line says why. Non-modal; the UI thread only. Reading the folds and
// runs takes no lock (as `whisker-cli cv`).
#include "training_worker.h"

#include <QDialog>

#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

class QCheckBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace whisker::ui {

class TrainPage;

class CrossValidationDialog : public QDialog {
    Q_OBJECT
public:
    enum Column { Fold = 0, Images, State, Run, Model, Accuracy, LogLoss, ColumnCount };
    // A fold's state as the table shows it.
    enum class FoldState { NotStarted, Training, CutOff, Finished, Stale };

    CrossValidationDialog(TrainPage* train, std::filesystem::path project, QWidget* parent = nullptr);
    ~CrossValidationDialog() override;

    // Reads the dataset's folds, the runs and the folds' recipe progress again.
    void refresh();
    // "Make folds" / "Make new folds…" with the K, seed and grouping shown. False when refused
    // (the data cannot be dealt into K folds, the worker is busy, the user said no): the status
    // line says why.
    bool make_folds();
    // Trains the selected folds, or else every fold without a finished run or cut off midway.
    bool train_folds();
    void stop();
    // Ensembles the folds' models and, once done, sends the test predictions to the Submit page
    // and closes. False when refused (a fold without a finished run, no test images, busy).
    bool ensemble_folds();
    // The recipe the folds train with: a JSON file (false, keeping the one before, when it cannot
    // be read or is not a recipe) or, with an empty path, the Train page's.
    bool set_recipe_file(const QString& path);

    // How "Make new folds…" asks (default: a question box); tests answer it themselves.
    void set_confirmation(std::function<bool(const QString& question)> ask) { confirm_ = std::move(ask); }

    // For tests and keyboard users.
    int folds() const { return folds_; }
    FoldState fold_state(int fold) const;
    std::vector<int> folds_to_train() const;   // what train_folds() would train now
    bool out_of_fold_complete() const { return oof_complete_; }
    double out_of_fold_accuracy() const { return oof_accuracy_; }
    double out_of_fold_log_loss() const { return oof_log_loss_; }
    bool running() const { return job_ != Job::None; }
    QSpinBox* folds_box() const { return k_; }
    QSpinBox* seed_box() const { return seed_; }
    QCheckBox* group_box() const { return group_; }
    QPushButton* make_button() const { return make_button_; }
    QLabel* folds_label() const { return folds_label_; }
    QTableWidget* table() const { return table_; }
    QLabel* learner_label() const { return learner_label_; }
    QPushButton* recipe_button() const { return recipe_button_; }
    QLabel* recipe_label() const { return recipe_label_; }
    QPushButton* train_button() const { return train_button_; }
    QPushButton* stop_button() const { return stop_button_; }
    QProgressBar* progress_bar() const { return progress_; }
    QLabel* status_label() const { return status_; }
    QLabel* score_label() const { return score_; }
    QLabel* models_note() const { return models_note_; }
    QSpinBox* tta_box() const { return tta_; }
    QPushButton* ensemble_button() const { return ensemble_button_; }

Q_SIGNALS:
    void send_to_submit(const whisker::ui::PredictionSet& predictions);
    void log(const QString& line);

private:
    enum class Job { None, Folds, Train, Ensemble };
    struct Snapshot;   // the folds and runs as last read
    void fill_table();
    void update_buttons();
    void say(const QString& text, const char* colour = nullptr);
    QString recipe_json() const;
    void job_ended();

    TrainPage* train_;
    std::filesystem::path project_;
    std::unique_ptr<Snapshot> snap_;
    int folds_ = 0;
    bool oof_complete_ = false;
    double oof_accuracy_ = 0, oof_log_loss_ = 0;
    QString recipe_file_, recipe_text_;   // empty: the Train page's recipe
    Job job_ = Job::None;
    int training_fold_ = -1;
    int request_id_ = 0;
    bool ensemble_ready_ = false;
    EnsembleResult ensemble_result_;
    std::function<bool(const QString&)> confirm_;

    QSpinBox* k_;
    QSpinBox* seed_;
    QCheckBox* group_;
    QLabel* group_note_;
    QPushButton* make_button_;
    QLabel* folds_label_;
    QTableWidget* table_;
    QLabel* learner_label_;
    QPushButton* recipe_button_;
    QPushButton* default_recipe_button_;
    QLabel* recipe_label_;
    QPushButton* train_button_;
    QPushButton* stop_button_;
    QProgressBar* progress_;
    QLabel* status_;
    QLabel* score_;
    QLabel* models_note_;
    QSpinBox* tta_;
    QPushButton* ensemble_button_;
};

}  // namespace whisker::ui
