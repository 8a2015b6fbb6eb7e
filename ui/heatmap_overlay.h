#pragma once
// "Where it looked": Grad-CAM heatmaps (whisker/explain/gradcam.h) on the Inspect page.
//
//   HeatmapStore  computes the heatmaps of a prediction set's images on the learner's worker
//                 thread (a job of the Train page's worker, like predictions) and keeps them
//                 per record until the predictions are replaced.
//   HeatmapView   the large view's picture: the image alone, or — overlay on — the heatmap of
//                 the predicted class beside the one of the actual class (of the runner-up for
//                 a correct prediction), with an opacity slider.
//   overlay_image paints one heatmap over an image, as whisker-cli explain does.
//
// Heatmaps are computed from the learner's current weights; the store refuses (with a
// message) when the learner changed since the predictions it explains.

#include "training_worker.h"

#include "whisker/explain/heatmap.h"

#include <QImage>
#include <QObject>
#include <QPixmap>
#include <QString>
#include <QWidget>

#include <map>
#include <memory>
#include <vector>

class QCheckBox;
class QLabel;
class QSlider;

namespace whisker::ui {

class TrainPage;

// `image` (the whole upright image at any size) with `map` laid over the crop the model saw;
// the rest darkened. heat_colour/heat_cover of heatmap.h at `opacity` in [0, 1].
QImage overlay_image(const QImage& image, const explain::Heatmap& map, const explain::CropBox& crop, double opacity);

class HeatmapStore : public QObject {
    Q_OBJECT
public:
    static constexpr int kMaxPerRequest = 64;   // images per job (the galleries' first tiles)

    HeatmapStore(TrainPage* train, QObject* parent = nullptr);

    // New predictions: forgets every map (they explained another state or other rows).
    void reset(const PredictionSet& predictions);
    // Starts a job for those of `records` that have no maps yet (at most kMaxPerRequest):
    // the predicted class and the actual one (mistakes) or the runner-up (correct). Returns
    // false when nothing was started: all there, a job already running, no predictions, or the
    // learner busy (then `waiting()` is true and retry() starts it once the learner is free).
    bool request(const std::vector<std::size_t>& records);
    // Starts what request() could not start while the learner was busy.
    void retry();
    bool waiting() const { return !wanted_.empty() && !running_; }
    bool running() const { return running_; }
    // The maps of a record, or nullptr.
    const explain::ImageExplanation* find(std::size_t record) const;
    std::size_t size() const { return maps_.size(); }
    // Why the latest request failed ("" when it did not).
    const QString& error() const { return error_; }
    // The classes a record's maps are for: predicted first, then actual or runner-up.
    std::vector<int> classes_for(std::size_t record) const;

    double opacity() const { return opacity_; }
    void set_opacity(double opacity);

Q_SIGNALS:
    void ready();                    // new maps arrived
    void failed(const QString& message);
    void opacity_changed(double opacity);

private:
    void deliver(std::uint64_t generation, const std::vector<explain::ImageExplanation>& maps);

    TrainPage* train_;
    PredictionSet predictions_;
    std::vector<int> row_of_record_;
    std::map<std::size_t, explain::ImageExplanation> maps_;
    std::vector<std::size_t> wanted_;    // asked for while the learner was busy
    std::uint64_t generation_ = 0;
    bool running_ = false;
    QString error_;
    double opacity_ = 0.5;
};

class HeatmapView : public QWidget {
    Q_OBJECT
public:
    // `image`: the whole image; `titles`: a line per panel ("Predicted: dog (p 0.93)").
    HeatmapView(const QImage& image, QWidget* parent = nullptr);

    // The maps to show (predicted first) with their titles; empty: none yet.
    void set_maps(const explain::ImageExplanation* maps, const std::vector<QString>& titles);
    void set_note(const QString& note);   // e.g. "Computing the heatmaps…"
    void set_overlay(bool on);
    void set_opacity(double opacity);
    bool overlay() const;
    int panels_shown() const;             // images on screen: 1 without overlay, else one per map

    QCheckBox* overlay_box() const { return overlay_box_; }
    QSlider* opacity_slider() const { return opacity_; }

Q_SIGNALS:
    void overlay_toggled(bool on);
    void opacity_changed(double opacity);

private:
    void rebuild();

    QImage image_;
    explain::ImageExplanation maps_;
    bool has_maps_ = false;
    std::vector<QString> titles_;
    QCheckBox* overlay_box_;
    QSlider* opacity_;
    QLabel* note_;
    QWidget* panels_;
    int shown_ = 0;
};

}  // namespace whisker::ui
