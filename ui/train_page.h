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
class QCPAxis;
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

class ArchitecturePicker;

class TrainPage : public QWidget {
    Q_OBJECT
public:
    explicit TrainPage(QWidget* parent = nullptr);
    ~TrainPage() override;

    // A project is being opened: everything of the previous one is cleared at once; the page
    // fills in again from the session the worker sends (show_session). The learning rate is
    // the one last chosen for this project (remembered per project in QSettings), else 1e-2.
    void set_project(const std::filesystem::path& project);
    // Rebuilds the whole page from the project's session: learner, plots, table, buttons.
    void show_session(const SessionView& view);
    const SessionView& session_view() const { return view_; }
    bool busy() const { return busy_; }
    void stop();
    // Another program holds the project (text names it; empty: nobody): the controls that
    // write are disabled meanwhile and a banner says why.
    void set_external_holder(const QString& text);
    // Waits (processing events) until the worker has finished its job; false on timeout.
    bool wait_until_idle(int timeout_ms);
    // The dialog that lists the project's checkpoints (Load…); non-modal for tests.
    QDialog* open_checkpoint_dialog();
    // The sortable table of architectures (Compare…); choosing one sets the architecture box
    // (and the size, while it is still the previous architecture's default).
    ArchitecturePicker* open_architecture_picker();

    // For tests and keyboard users: the controls.
    QPushButton* create_button() const { return create_; }
    QPushButton* lr_find_button() const { return lr_find_; }
    QPushButton* start_button() const { return start_; }
    QPushButton* stop_button() const { return stop_button_; }
    QPushButton* recipe_button() const { return recipe_; }
    QPushButton* resume_button() const { return resume_; }
    QPushButton* save_button() const { return save_; }
    QPushButton* load_button() const { return load_; }
    QLabel* learner_label() const { return learner_label_; }
    QLabel* holder_banner() const { return holder_banner_; }
    QComboBox* arch_box() const { return arch_; }
    QComboBox* precision_box() const { return precision_; }
    QLabel* precision_label() const { return precision_used_; }
    QPushButton* arch_table_button() const { return arch_table_; }
    QSpinBox* size_box() const { return size_; }
    QSpinBox* batch_box() const { return batch_; }
    QCheckBox* pretrained_box() const { return pretrained_; }
    QComboBox* augment_box() const { return augment_; }
    QDoubleSpinBox* max_zoom_box() const { return max_zoom_; }
    QCheckBox* no_flip_box() const { return no_flip_; }
    QCheckBox* trivial_augment_box() const { return trivial_augment_; }
    QDoubleSpinBox* random_erasing_box() const { return random_erasing_; }
    QDoubleSpinBox* mixup_box() const { return mixup_; }
    QDoubleSpinBox* cutmix_box() const { return cutmix_; }
    QDoubleSpinBox* ema_box() const { return ema_; }
    QDoubleSpinBox* label_smoothing_box() const { return label_smoothing_; }
    QPushButton* resize_button() const { return resize_; }
    QLineEdit* lr_edit() const { return lr_; }
    QSpinBox* cycles_box() const { return cycles_; }
    QSpinBox* processes_box() const { return processes_; }
    QCheckBox* all_gpus_box() const { return all_gpus_; }
    QCheckBox* sync_bn_box() const { return sync_bn_; }
    QSpinBox* accumulate_box() const { return accumulate_; }
    QLabel* effective_batch_label() const { return effective_batch_; }
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
    // stop() was called (the Stop button, a project switch, closing): every job on the worker
    // ends, including those other pages run with a stop flag of their own (the map of the data).
    void stop_requested();
    void progress_changed(const QString& stage, qlonglong done, qlonglong total);

private:
    void set_busy(bool busy, const QString& what = {});
    // Keeps the learning rate(s) shown as the open project's (when they read as rates).
    void remember_learning_rate();
    void start_fit();
    // `choose`: a new sweep sets the learning rate to its suggestion; a rebuilt page keeps it.
    void show_lr_curve(const LrCurve& curve, bool choose = true);
    void add_points(const QVector<LossPoint>& points);
    void add_epoch(const train::EpochRecord& r);
    void update_weights_state();
    void update_scratch_note();   // the hint under "Train" for a from-scratch learner with its body frozen
    void architecture_changed(const QString& arch);
    void update_buttons();
    void clear_plots();
    void draw_lr_curve(const QVector<double>& lrs, const QVector<double>& losses);
    void mark_chosen_rate(double lr);
    // Log scale on a loss axis when its values span more than two decades (one exploded
    // val_loss would flatten the rest).
    static void fit_loss_axis(QCustomPlot* plot, QCPAxis* axis, const QVector<double>& values);

    std::filesystem::path project_;
    QThread thread_;
    TrainingWorker* worker_ = nullptr;
    bool busy_ = false;
    bool has_learner_ = false;
    SessionView view_;
    QString external_holder_;
    QVector<double> epoch_losses_;      // every trn/val loss plotted (for the axis scale)

    QComboBox* arch_;
    QComboBox* precision_;
    QLabel* precision_used_;
    QPushButton* arch_table_;
    QString shown_arch_ = "resnet34";   // the architecture the size box last followed
    QSpinBox* size_;
    QSpinBox* batch_;
    QCheckBox* pretrained_;
    QComboBox* augment_;
    QDoubleSpinBox* max_zoom_;
    QCheckBox* no_flip_;
    QCheckBox* trivial_augment_;
    QDoubleSpinBox* random_erasing_;
    QLabel* weights_state_;
    QPushButton* create_;
    QLabel* learner_label_;
    QLabel* holder_banner_;
    QPushButton* lr_find_;
    QCustomPlot* lr_plot_;
    QLineEdit* lr_;
    QSpinBox* cycles_;
    QDoubleSpinBox* cycle_len_;
    QSpinBox* cycle_mult_;
    QDoubleSpinBox* wd_;
    QDoubleSpinBox* mixup_;
    QDoubleSpinBox* cutmix_;
    QDoubleSpinBox* ema_;
    QDoubleSpinBox* label_smoothing_;
    QPushButton* resize_;
    QCheckBox* precompute_;
    QComboBox* trainable_;
    QLabel* scratch_note_;
    QCheckBox* bn_freeze_;
    QSpinBox* processes_;
    QCheckBox* all_gpus_;
    QCheckBox* sync_bn_;          // --sync-bn, with more than one process
    QSpinBox* accumulate_;        // gradient accumulation: batches per optimiser step
    QLabel* effective_batch_;     // "= 256 per step"
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
