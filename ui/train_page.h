#pragma once
// The Train page: create the learner, find a learning rate on a live plot (click to choose),
// train with SGDR / differential rates / freezing / precompute, and watch the batch loss,
// the learning-rate schedule, the epoch metrics and fastai's epoch table fill in as it runs.
// All work happens on a TrainingWorker thread; Stop takes effect within one batch.

#include "training_worker.h"

#include <QWidget>

#include <filesystem>
#include <functional>

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace whisker::ui {

class TrainPage : public QWidget {
    Q_OBJECT
public:
    explicit TrainPage(QWidget* parent = nullptr);
    ~TrainPage() override;

    void set_project(const std::filesystem::path& project);
    bool busy() const { return busy_; }
    void stop();

    // For tests and keyboard users: the controls.
    QPushButton* create_button() const { return create_; }
    QPushButton* lr_find_button() const { return lr_find_; }
    QPushButton* start_button() const { return start_; }
    QPushButton* stop_button() const { return stop_button_; }
    QPushButton* recipe_button() const { return recipe_; }
    QComboBox* arch_box() const { return arch_; }
    QSpinBox* size_box() const { return size_; }
    QSpinBox* batch_box() const { return batch_; }
    QCheckBox* pretrained_box() const { return pretrained_; }
    QLineEdit* lr_edit() const { return lr_; }
    QSpinBox* cycles_box() const { return cycles_; }
    QSpinBox* processes_box() const { return processes_; }
    QCheckBox* all_gpus_box() const { return all_gpus_; }
    QTableWidget* epoch_table() const { return table_; }
    QCustomPlot* lr_plot() const { return lr_plot_; }
    QCustomPlot* loss_plot() const { return loss_plot_; }
    QCustomPlot* metrics_plot() const { return metrics_plot_; }
    TrainingWorker* worker() const { return worker_; }
    void choose_learning_rate(double lr);   // what a click on the LR-finder curve does
    bool has_learner() const { return has_learner_; }
    // Runs `call` on the worker thread as a job of this page's worker (other pages use the
    // same learner: Inspect and Submit predict with it). Returns false, changing nothing, when
    // the worker is busy.
    bool run_on_worker(const QString& what, std::function<void(TrainingWorker*)> call);

Q_SIGNALS:
    void log(const QString& line);
    void busy_changed(bool busy);
    void progress_changed(const QString& stage, qlonglong done, qlonglong total);

private:
    void set_busy(bool busy, const QString& what = {});
    void start_fit();
    void show_lr_curve(const LrCurve& curve);
    void add_points(const QVector<LossPoint>& points);
    void add_epoch(const train::EpochRecord& r);
    void update_weights_state();

    std::filesystem::path project_;
    QThread thread_;
    TrainingWorker* worker_ = nullptr;
    bool busy_ = false;
    bool has_learner_ = false;

    QComboBox* arch_;
    QSpinBox* size_;
    QSpinBox* batch_;
    QCheckBox* pretrained_;
    QLabel* weights_state_;
    QPushButton* create_;
    QLabel* learner_label_;
    QPushButton* lr_find_;
    QCustomPlot* lr_plot_;
    QLineEdit* lr_;
    QSpinBox* cycles_;
    QDoubleSpinBox* cycle_len_;
    QSpinBox* cycle_mult_;
    QDoubleSpinBox* wd_;
    QCheckBox* precompute_;
    QComboBox* trainable_;
    QCheckBox* bn_freeze_;
    QSpinBox* processes_;
    QCheckBox* all_gpus_;
    QPushButton* start_;
    QPushButton* stop_button_;
    QPushButton* resume_;
    QPushButton* save_;
    QPushButton* load_;
    QPushButton* recipe_;
    QProgressBar* progress_;
    QLabel* status_;
    QCustomPlot* loss_plot_;
    QCustomPlot* metrics_plot_;
    QTableWidget* table_;
    int epochs_shown_ = 0;
};

}  // namespace whisker::ui
