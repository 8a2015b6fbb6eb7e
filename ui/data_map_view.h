#pragma once
// The map of the data: every image of the project as a point, placed by the learner's view of
// it (the body's pooled features projected to 2-D: UMAP, or the first two principal
// components — whisker/explain/embeddings.h), coloured by its actual class. Mistakes (the
// head's most probable class is not the label) are outlined in black, test images are grey.
// A cluster of one class inside another's is where labels are wrong, or where the model
// cannot tell the classes apart.
//
// Hovering a point shows its thumbnail and labels; clicking it emits image_clicked (the
// Inspect page opens its large view); dragging a box selects the points inside it
// (images_selected: the Inspect page shows them in its gallery); the wheel zooms.
// The map is computed on the learner's worker (the host asks for it through
// compute_requested) and carries the learner state it came from: when the learner or the data
// changes, the page says so and offers to compute it again. While it is computed, "Stop" (or
// the Train page's Stop, a project switch, closing the window) ends it after the current batch
// or a few UMAP epochs; a map shown before stays, and "Map the data" computes it again.

#include "whisker/data/dataset.h"
#include "whisker/explain/embeddings.h"

#include <QCache>
#include <QPixmap>
#include <QPointF>
#include <QVector>
#include <QWidget>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QCPGraph;
class QDialog;
class QLabel;
class QMouseEvent;
class QPushButton;

namespace whisker::ui {

class TrainPage;

class DataMapView : public QWidget {
    Q_OBJECT
public:
    explicit DataMapView(QWidget* parent = nullptr);

    // Computes maps with the learner of `train`'s worker (compute_requested runs there, in the
    // background, as one of its jobs) and follows its session: another project clears the map,
    // a new learner state marks it stale.
    void attach_worker(TrainPage* train);
    // Shows `map` of the project's `dataset` (labels, paths and marks as the map was made).
    void set_map(const std::filesystem::path& project, std::shared_ptr<const data::Dataset> dataset, explain::DataMap map);
    // No map: an empty plot and `message` (e.g. "Train a model first").
    void clear(const QString& message = {});
    // A line above the plot (progress, errors).
    void set_message(const QString& text);
    // The learner state now (SessionView::state): a map of another state is marked as stale.
    void set_current_state(const QString& state);
    bool has_map() const { return !map_.points.empty(); }
    // A map is being computed on the worker.
    bool computing() const { return static_cast<bool>(stop_); }
    // Asks the running map job to stop (nothing when none runs).
    void stop();
    bool stale() const;
    const explain::DataMap& map() const { return map_; }
    // The map's origin in SessionView::state's words ("weights/data").
    QString state() const;

    // Where a record's point is, in the plot widget's pixels (nothing when it is not shown).
    std::optional<QPointF> pixel_of(std::size_t record) const;
    // The shown point nearest to `pixel` within `radius` pixels.
    std::optional<std::size_t> record_at(const QPointF& pixel, double radius = 8) const;
    // The shown points inside a rectangle of plot pixels.
    std::vector<std::size_t> records_in(const QRectF& pixels) const;
    // What hovering does: the thumbnail and labels of the point under `pixel` (false: none).
    bool hover(const QPointF& pixel);
    // What a click on a point does when nobody else opens it: the image large, with its labels
    // and the marking buttons (they emit the *_requested signals).
    QDialog* open_image(std::size_t record);

    QCustomPlot* plot() const { return plot_; }
    QPushButton* compute_button() const { return compute_; }
    QPushButton* stop_button() const { return stop_button_; }
    QComboBox* projection_box() const { return projection_; }
    QCheckBox* test_box() const { return show_test_; }
    QLabel* hover_label() const { return hover_; }
    QLabel* message_label() const { return message_; }

Q_SIGNALS:
    void compute_requested();
    void image_clicked(qulonglong record);
    void images_selected(const QVector<qulonglong>& records);
    void exclude_requested(qulonglong record);
    void relabel_requested(qulonglong record, int label);
    void undo_marks_requested(qulonglong record);

private:
    void rebuild();
    // The map job ended (done, stopped or failed): the buttons go back, the message says how.
    void job_ended(const QString& message);
    void mouse_pressed(QMouseEvent* event);
    void mouse_moved(QMouseEvent* event);
    void mouse_released(QMouseEvent* event);
    QPointF coords_of(const explain::MapPoint& p) const;
    bool shown(const explain::MapPoint& p) const;
    QString class_name(int k) const;
    QPixmap thumbnail(std::size_t record);

    std::filesystem::path project_;
    std::shared_ptr<const data::Dataset> dataset_;
    explain::DataMap map_;
    QString current_state_;
    QCache<std::size_t, QPixmap> thumbnails_{400};
    QPointF press_pixel_;
    bool pressed_ = false;

    QCustomPlot* plot_;
    QPushButton* compute_;
    QPushButton* stop_button_;
    QPushButton* reset_;
    // The running job's stop flag (null: none runs); the job holds it too.
    std::shared_ptr<std::atomic<bool>> stop_;
    QComboBox* projection_;
    QCheckBox* show_test_;
    QLabel* message_;
    QLabel* hover_;
    QLabel* legend_note_;
};

}  // namespace whisker::ui
