#pragma once
// The Runs page's "Ensemble…" dialog: the selected runs as the members of an ensemble.
//
// Each member is listed with its architecture, size and its own recorded validation score;
// runs that trained no weights (an LR sweep, a prediction, an ensemble, a fit that failed
// before its first epoch) are listed greyed out with the reason, and cannot be members. A
// run's SGDR snapshots are offered as members too (unticked). The weights are editable; the
// mix is the mean, the weighted mean or the (weighted) geometric mean; TTA applies to every
// member. "Compute" runs TrainingWorker::ensemble on the Train page's worker (under the
// project's lock, stoppable, progress shown): each member's and the ensemble's validation
// accuracy and log loss appear in the table, and the ensemble is recorded as a run. "Send to
// Submit" hands its test predictions to the Submit page (send_to_submit). Changing a setting
// after computing asks for Compute again (the members' predictions are kept by the worker, so
// that is quick).
//
// Non-modal; the UI thread only.
#include "training_worker.h"

#include "whisker/project/runs.h"

#include <QDialog>

#include <filesystem>
#include <vector>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace whisker::ui {

class TrainPage;

class EnsembleDialog : public QDialog {
    Q_OBJECT
public:
    enum Column { Member = 0, Architecture, Size, RecordedAccuracy, RecordedLogLoss, Weight, Accuracy, LogLoss, ColumnCount };
    enum Mix { Mean = 0, WeightedMean, Geometric };

    // `runs`: the runs selected on the Runs page (oldest first).
    EnsembleDialog(TrainPage* train, std::filesystem::path project, const std::vector<project::RunRecord>& runs,
                   QWidget* parent = nullptr);

    // Starts computing the ticked members with the settings shown. False when refused (fewer
    // than two members, weights that add up to 0, the learner busy): status_label() says why.
    bool compute();
    // Hands the computed ensemble's test predictions to the Submit page (false: nothing
    // computed for the settings shown).
    bool send();

    // For tests and keyboard users. Rows: the candidates in order, then the ensemble's row.
    QTableWidget* table() const { return table_; }
    int candidate_count() const { return static_cast<int>(candidates_.size()); }
    bool is_usable(int row) const;
    QString reference(int row) const;              // "#3", "snapshot-0001-2"
    void set_member(int row, bool ticked);
    bool is_member(int row) const;
    QDoubleSpinBox* weight_box(int row) const;
    QComboBox* mix_box() const { return mix_; }
    QSpinBox* tta_box() const { return tta_; }
    QPushButton* compute_button() const { return compute_button_; }
    QPushButton* stop_button() const { return stop_button_; }
    QPushButton* send_button() const { return send_button_; }
    QLabel* status_label() const { return status_; }
    QLabel* excluded_label() const { return excluded_; }
    bool has_result() const { return has_result_ && !stale_; }
    const EnsembleResult& result() const { return result_; }

Q_SIGNALS:
    void send_to_submit(const whisker::ui::PredictionSet& predictions);
    void log(const QString& line);

private:
    struct Candidate {
        QString reference;          // what TrainingWorker::ensemble resolves
        QString label;              // "#3 fit", "snapshot-0001-2 (cycle 2 of #1)"
        QString arch;
        int size = 0;
        double accuracy = 0, log_loss = 0;   // recorded; NaN when unknown
        QString why_not;            // non-empty: not usable, and why
        bool ticked = false;
    };
    void fill_table();
    void settings_changed();
    void show_result();
    void update_buttons();
    void say(const QString& text, const char* colour = nullptr);

    TrainPage* train_;
    std::filesystem::path project_;
    std::vector<Candidate> candidates_;
    QTableWidget* table_;
    QComboBox* mix_;
    QSpinBox* tta_;
    QPushButton* compute_button_;
    QPushButton* stop_button_;
    QPushButton* send_button_;
    QProgressBar* progress_;
    QLabel* status_;
    QLabel* excluded_;
    bool computing_ = false;
    bool has_result_ = false;
    bool stale_ = false;
    int request_id_ = 0;
    EnsembleResult result_;
};

}  // namespace whisker::ui
