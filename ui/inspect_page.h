#pragma once
// The Inspect page: what the model gets wrong on the validation set.
//
// Predictions (optionally with TTA) are computed on the Train page's worker, in the
// background. The page shows fastai's views for any number of classes — most confident
// mistakes (by loss), most uncertain, most confident correct, random correct — as galleries
// filtered by actual class, a clickable confusion matrix (counts or row-normalised) whose cells
// open the images behind them, per-class precision/recall, accuracy and the competition's log
// loss. A tile opens the image large with every class probability; there the user can exclude
// it or correct its label. Marks go into the project's manifest (files are never touched), the
// next fit uses them, and they can be undone. The mistakes export as CSV.
// "Overlay: where it looked" lays Grad-CAM heatmaps (heatmap_overlay.h) over the gallery's
// tiles and, in the large view, shows the predicted class's map beside the actual class's.

#include "training_worker.h"

#include <QWidget>

#include <filesystem>
#include <memory>
#include <vector>

class QCheckBox;
class QComboBox;
class QDialog;
class QLabel;
class QListView;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace whisker::ui {

class HeatmapStore;
class ThumbnailModel;
class TrainPage;

class InspectPage : public QWidget {
    Q_OBJECT
public:
    enum View { MostConfidentMistakes = 0, MostUncertain, MostConfidentCorrect, RandomCorrect, AllByLoss, ConfusionCell };

    explicit InspectPage(TrainPage* train, QWidget* parent = nullptr);

    void set_project(const std::filesystem::path& project);
    // Starts predictions on the validation set (false when the learner is busy).
    bool predict();
    // Predicts when the shown predictions are missing or older than the learner (the page was
    // opened after a fit). Does nothing while the worker is busy.
    void refresh_if_stale();
    void show_predictions(const PredictionSet& predictions);
    bool has_predictions() const { return predictions_.valid(); }
    bool stale() const { return !predictions_.valid() || predictions_.state != learner_state_; }
    // The project's session changed (opened, trained, reloaded): adopt its state and its
    // latest validation predictions.
    void show_session(const SessionView& view);

    // What a click on a cell of the confusion matrix does.
    void select_cell(int actual, int predicted);
    void set_view(View view, int actual_class = -1);
    // Prediction rows shown in the gallery, in order.
    const std::vector<std::size_t>& gallery_rows() const { return shown_; }
    // Opens a gallery tile large, with probabilities and the marking buttons.
    QDialog* open_tile(int gallery_row);
    // The marks (each saved to the manifest at once; the learner rereads it before the next fit).
    bool set_excluded(std::size_t record, bool excluded);
    bool relabel(std::size_t record, int label);
    bool clear_marks(std::size_t record);
    bool export_mistakes(const QString& file);
    // Rereads the marks from the manifest (they were changed elsewhere, e.g. on the Data page).
    void reload_marks();

    // For tests and keyboard users.
    QPushButton* predict_button() const { return predict_button_; }
    QCheckBox* tta_box() const { return tta_; }
    QComboBox* view_box() const { return view_box_; }
    QComboBox* class_box() const { return class_box_; }
    QCheckBox* normalised_box() const { return normalised_; }
    QTableWidget* confusion_table() const { return confusion_; }
    QTableWidget* class_table() const { return class_table_; }
    QLabel* summary_label() const { return summary_; }
    ThumbnailModel* gallery_model() const { return gallery_model_; }
    QListView* gallery() const { return gallery_; }
    QCheckBox* overlay_box() const { return overlay_; }
    HeatmapStore* heatmaps() const { return heatmaps_; }
    const PredictionSet& predictions() const { return predictions_; }
    const data::Dataset* dataset() const { return marks_.get(); }

Q_SIGNALS:
    void log(const QString& line);
    // The manifest changed (marks): the Data page shows it again.
    void dataset_changed();

private:
    // Without predictions: what is missing and where to get it; the Predict button follows.
    void show_empty_state();
    void fill_confusion();
    void fill_class_table();
    void fill_summary();
    void apply_view();
    bool save_marks(const std::function<bool(data::Dataset&)>& change, const QString& what);
    QString caption(std::size_t record) const;
    QColor tint(std::size_t record) const;
    float probability(std::size_t row, int cls) const;
    QString class_name(int k) const;
    void request_heatmaps();   // for the gallery's tiles, when the overlay is on
    QPixmap decorate(std::size_t record, const QPixmap& thumbnail) const;

    TrainPage* train_;
    std::filesystem::path project_;
    PredictionSet predictions_;
    std::vector<float> probs_;                 // [rows * classes], row-major
    int classes_ = 0;
    std::vector<int> row_of_record_;           // record -> prediction row (-1 none)
    std::shared_ptr<data::Dataset> marks_;     // the manifest with the user's current marks
    std::vector<std::size_t> shown_;
    int cell_actual_ = -1, cell_predicted_ = -1;
    std::uint64_t shuffle_seed_ = 1;
    QString learner_state_;
    struct {
        bool known = false;                    // a SessionView of this project has arrived
        bool has_dataset = false, has_learner = false;
    } session_;

    QPushButton* predict_button_;
    QCheckBox* tta_;
    QSpinBox* tta_count_;
    QLabel* summary_;
    QLabel* stale_label_;
    QTableWidget* confusion_;
    QCheckBox* normalised_;
    QTableWidget* class_table_;
    QComboBox* view_box_;
    QComboBox* class_box_;
    QLabel* view_count_;
    QPushButton* export_button_;
    ThumbnailModel* gallery_model_;
    QListView* gallery_;
    QCheckBox* overlay_;
    QLabel* overlay_note_;
    HeatmapStore* heatmaps_;
};

}  // namespace whisker::ui
