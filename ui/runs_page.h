#pragma once
// The Runs page: every recorded run of the project (PROJECT/runs/, whisker/project/runs.h) in a
// sortable, filterable table with its best validation metrics; the epoch curves of the
// selected runs overlaid; "Load this run's checkpoint" (through the Train page's worker, which
// holds the project's session and takes its lock); and CV against the leaderboard: the
// validation log loss of every run whose submission Kaggle scored, against its public score.
// "Ensemble…" opens the ensemble dialog (ensemble_dialog.h) with the selected runs as members;
// its "Send to Submit" reaches the Submit page through send_to_submit. "Cross-validation…"
// opens the cross-validation dialog (cross_validation_dialog.h: folds, training every fold, the
// out-of-fold score, the folds' ensemble to the Submit page, also through send_to_submit).
// Fold runs are listed like any run ("fold 1/5" in the Kind column). Submissions sent to
// Kaggle are runs too (kind "submission", with their public score).
// The page reads the records only (no lock) and follows new ones as they are written (a
// file watcher on PROJECT/runs), by this program or another (whisker-cli).
#include "training_worker.h"

#include <QPointer>
#include <QWidget>

#include <filesystem>
#include <memory>
#include <vector>

class QCustomPlot;
class QFileSystemWatcher;
class QLabel;
class QLineEdit;
class QPushButton;
class QSortFilterProxyModel;
class QStandardItemModel;
class QTableView;

namespace whisker::ui {

class CrossValidationDialog;
class EnsembleDialog;
class TrainPage;

class RunsPage : public QWidget {
    Q_OBJECT
public:
    enum Column { Number = 0, Kind, Status, Started, Model, Epochs, ValLoss, Accuracy, LogLoss, Public, Time, From, Output, ColumnCount };

    explicit RunsPage(TrainPage* train, QWidget* parent = nullptr);
    ~RunsPage() override;
    void set_project(const std::filesystem::path& project);
    // Reads the records again (keeps the selection).
    void refresh();
    // Selects these runs in the table (and overlays their curves).
    void select_runs(const std::vector<int>& numbers);
    std::vector<int> selected_runs() const;
    // Loads the selected run's checkpoint into the project's learner (a learner of the run's
    // architecture and size is created first when the current one differs).
    void load_selected_checkpoint();
    // Opens the ensemble dialog with the selected runs (non-modal; nothing when none is selected).
    EnsembleDialog* open_ensemble_dialog();
    EnsembleDialog* ensemble_dialog() const;   // the open one, or nothing
    // Opens the cross-validation dialog for the project (non-modal). Closing only hides it (a
    // job it started goes on, and reopening shows its progress); a new project replaces it.
    CrossValidationDialog* open_cross_validation_dialog();
    CrossValidationDialog* cross_validation_dialog() const;   // the project's, open or hidden, or nothing

    QTableView* table() const { return table_; }
    QStandardItemModel* model() const { return model_; }
    QSortFilterProxyModel* proxy() const { return proxy_; }
    QLineEdit* filter() const { return filter_; }
    QCustomPlot* curves() const { return curves_; }
    QCustomPlot* cv_plot() const { return cv_plot_; }
    QPushButton* load_button() const { return load_button_; }
    QPushButton* ensemble_button() const { return ensemble_button_; }
    QPushButton* cross_validation_button() const { return cross_validation_button_; }

Q_SIGNALS:
    void log(const QString& line);
    // An ensemble's test predictions for the Submit page.
    void send_to_submit(const whisker::ui::PredictionSet& predictions);

private:
    void selection_changed();
    void draw_curves();
    // What the empty curves plot says instead (nothing selected, runs without epochs).
    QString curves_message(const std::vector<int>& chosen) const;
    void draw_cv_plot();

    TrainPage* train_ = nullptr;
    std::filesystem::path project_;
    QStandardItemModel* model_ = nullptr;
    QSortFilterProxyModel* proxy_ = nullptr;
    QTableView* table_ = nullptr;
    QLineEdit* filter_ = nullptr;
    QLabel* summary_ = nullptr;
    QLabel* details_ = nullptr;
    QCustomPlot* curves_ = nullptr;
    QCustomPlot* cv_plot_ = nullptr;
    QPushButton* load_button_ = nullptr;
    QPushButton* ensemble_button_ = nullptr;
    QPushButton* cross_validation_button_ = nullptr;
    QPointer<EnsembleDialog> ensemble_dialog_;
    QPointer<CrossValidationDialog> cross_validation_dialog_;
    QFileSystemWatcher* watcher_ = nullptr;
    std::filesystem::file_time_type history_time_{};   // of submissions.json when last read
    struct Records;   // the records as last read
    std::unique_ptr<Records> records_;
};

}  // namespace whisker::ui
