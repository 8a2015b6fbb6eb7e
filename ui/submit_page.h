#pragma once
// The Submit page: from the trained model to a scored Kaggle submission.
//
// Predict the test set with TTA (fastai 0.7's mean or v2's beta mix) on the Train page's
// worker; the page then writes PROJECT/submission.csv exactly as `whisker-cli predict` does
// (same function, same settings), previews it (first rows, row count, a histogram of the
// probabilities), and checks it against sample_submission.csv before anything is sent.
// Export writes .csv or .csv.gz anywhere. Submit keeps a copy of the file and a checkpoint of
// the model, uploads with progress, follows the submission until Kaggle scores it, and shows
// the public score; the history table lists the project's submissions
// (PROJECT/submissions.json). Without Kaggle credentials, a dialog explains where to get the
// key and saves kaggle.json (mode 0600).
//
// An ensemble's test predictions (the Runs page's Ensemble… dialog) come here too: the same
// file, checks and one-click submit; the page names the members, and the history entry lists
// them. Each submission is a run of the project (kind "submission": the kept file and its
// SHA-256, the run or ensemble it came from, the message and Kaggle's verdict).

#include "training_worker.h"

#include <QWidget>

#include <filesystem>

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QDialog;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace whisker::ui {

class BackgroundJob;
class ElidingLabel;
class TrainPage;

class SubmitPage : public QWidget {
    Q_OBJECT
public:
    explicit SubmitPage(TrainPage* train, QWidget* parent = nullptr);

    void set_project(const std::filesystem::path& project);
    // Starts predicting the test set with the TTA settings shown (false when busy).
    bool predict();
    void show_predictions(const PredictionSet& predictions);
    // The project's session changed: adopt its state (older predictions can no longer be
    // written or sent) and its latest test predictions (a recipe makes them too).
    void show_session(const SessionView& view);
    // The predictions shown came from the learner as it is now.
    // An ensemble's stay current while the data is the same (they do not depend on the learner).
    bool predictions_current() const;
    bool has_predictions() const { return predictions_.valid(); }
    // Writes the submission with the current settings (.csv, or gzip when it ends in .gz).
    bool export_to(const QString& file);
    // One click: checks, keeps a copy and a checkpoint, uploads, waits for the score.
    // Returns false when it did not start (a message says why).
    bool submit();
    // Asks Kaggle for the project's submissions and merges their scores into the history.
    bool refresh_history();
    // The dialog that saves kaggle.json (non-modal; submit() opens it modally when needed).
    QDialog* open_credentials_dialog();

    // Seconds between checks of a submission's state (tests use a short one).
    void set_poll_interval(double seconds) { poll_interval_ = seconds; }
    BackgroundJob* job() const { return job_; }
    std::filesystem::path submission_file() const { return project_ / "submission.csv"; }
    // The predictions shown (for tests: an ensemble's carry its members).
    const PredictionSet& predictions() const { return predictions_; }

    // For tests and keyboard users.
    QPushButton* predict_button() const { return predict_button_; }
    QPushButton* submit_button() const { return submit_button_; }
    // Why Submit is disabled, under it (hidden while it is enabled or a submission runs).
    QLabel* submit_note() const { return submit_note_; }
    // The Kaggle account in use ("User NAME\nfrom FILE"), elided to the column; whole in its tooltip.
    QLabel* account_label() const;
    QSpinBox* tta_box() const { return tta_; }
    QComboBox* mix_box() const { return mix_; }
    QCheckBox* ema_box() const { return ema_; }
    QDoubleSpinBox* clip_box() const { return clip_; }
    QCheckBox* labels_box() const { return labels_; }
    QLineEdit* competition_edit() const { return competition_; }
    QLineEdit* message_edit() const { return message_; }
    QTableWidget* preview_table() const { return preview_; }
    QTableWidget* history_table() const { return history_; }
    QLabel* rows_label() const { return rows_label_; }
    // An ensemble's members and validation score (hidden for one model's predictions).
    QLabel* members_label() const { return members_label_; }
    QLabel* check_label() const { return check_label_; }
    QLabel* score_label() const { return score_label_; }
    QCustomPlot* histogram() const { return histogram_; }
    bool check_passed() const { return check_ok_; }
    // "12 test images predicted with resnet18 at 32 px, 3 epochs, EMA weights."
    QString model_label_text() const;

Q_SIGNALS:
    void log(const QString& line);
    void progress_changed(const QString& stage, qlonglong done, qlonglong total);
    void busy_changed(bool busy);

private:
    void rewrite_submission();     // PROJECT/submission.csv from the predictions + settings
    void fill_preview();
    void fill_histogram();
    void run_checks();
    void fill_history();
    void update_buttons();
    void update_account_label();
    QString model_description() const;
    QString suggested_competition() const;

    TrainPage* train_;
    std::filesystem::path project_;
    PredictionSet predictions_;
    // The session's latest test predictions as last seen: a newer set replaces what is shown
    // (an ensemble's included), the same set again does not.
    std::shared_ptr<const train::Predictions> seen_session_test_;
    QString learner_state_;
    bool has_learner_ = false;
    bool check_ok_ = false;
    bool has_sample_ = false;
    double poll_interval_ = 5.0;
    BackgroundJob* job_;

    QSpinBox* tta_;
    QComboBox* mix_;
    QCheckBox* ema_;
    QPushButton* predict_button_;
    QLabel* predictions_label_;
    QDoubleSpinBox* clip_;
    QCheckBox* labels_;
    QTableWidget* preview_;
    QLabel* rows_label_;
    QLabel* members_label_;
    QCustomPlot* histogram_;
    QLabel* check_label_;
    QPushButton* export_button_;
    QLineEdit* competition_;
    QLineEdit* message_;
    ElidingLabel* account_label_;
    QPushButton* account_button_;
    QPushButton* submit_button_;
    QLabel* submit_note_;
    QProgressBar* progress_;
    QLabel* state_label_;
    QLabel* score_label_;
    QTableWidget* history_;
    QPushButton* refresh_button_;
};

}  // namespace whisker::ui
