#include "heatmap_overlay.h"

#include "train_page.h"

#include "whisker/common/errors.h"
#include "whisker/explain/gradcam.h"

#include <QCheckBox>
#include <QCoreApplication>
#include <QHBoxLayout>
#include <QLabel>
#include <QPainter>
#include <QPointer>
#include <QSlider>
#include <QVBoxLayout>

#include <algorithm>
#include <array>
#include <cmath>

namespace whisker::ui {

QImage overlay_image(const QImage& source, const explain::Heatmap& map, const explain::CropBox& crop, double opacity) {
    QImage out = source.convertToFormat(QImage::Format_RGB32);
    opacity = std::clamp(opacity, 0.0, 1.0);
    const int cols = out.width(), rows = out.height();
    const int x0 = std::clamp(static_cast<int>(std::lround(crop.x0 * cols)), 0, cols);
    const int x1 = std::clamp(static_cast<int>(std::lround(crop.x1 * cols)), x0, cols);
    const int y0 = std::clamp(static_cast<int>(std::lround(crop.y0 * rows)), 0, rows);
    const int y1 = std::clamp(static_cast<int>(std::lround(crop.y1 * rows)), y0, rows);
    // The colour and cover of 256 heat levels (the same formulas as the CLI's PNGs).
    std::array<std::array<int, 3>, 256> colour{};
    std::array<double, 256> cover{};
    for (int i = 0; i < 256; ++i) {
        const auto c = explain::heat_colour(static_cast<float>(i / 255.0));
        colour[static_cast<std::size_t>(i)] = {c[0], c[1], c[2]};
        cover[static_cast<std::size_t>(i)] = explain::heat_cover(static_cast<float>(i / 255.0), opacity);
    }
    const std::vector<float> heat = map.resampled(x1 - x0, y1 - y0);
    const double unseen = 1.0 - explain::kUnseenShade * opacity;
    for (int y = 0; y < rows; ++y) {
        auto* line = reinterpret_cast<QRgb*>(out.scanLine(y));
        for (int x = 0; x < cols; ++x) {
            const QRgb p = line[x];
            if (x < x0 || x >= x1 || y < y0 || y >= y1) {
                line[x] = qRgb(static_cast<int>(qRed(p) * unseen), static_cast<int>(qGreen(p) * unseen), static_cast<int>(qBlue(p) * unseen));
                continue;
            }
            const float v = map.empty() ? 0.f : heat[static_cast<std::size_t>((y - y0) * (x1 - x0) + (x - x0))];
            const auto level = static_cast<std::size_t>(std::clamp(static_cast<int>(std::lround(v * 255.f)), 0, 255));
            const double a = cover[level];
            const auto& c = colour[level];
            line[x] = qRgb(static_cast<int>(std::lround(qRed(p) * (1 - a) + c[0] * a)),
                           static_cast<int>(std::lround(qGreen(p) * (1 - a) + c[1] * a)),
                           static_cast<int>(std::lround(qBlue(p) * (1 - a) + c[2] * a)));
        }
    }
    if (x0 > 0 || y0 > 0 || x1 < cols || y1 < rows) {
        QPainter painter(&out);
        painter.setPen(QPen(QColor(255, 255, 255, 200), 1, Qt::DashLine));
        painter.drawRect(QRect(x0, y0, std::max(1, x1 - x0) - 1, std::max(1, y1 - y0) - 1));
    }
    return out;
}

// ---- HeatmapStore ----

HeatmapStore::HeatmapStore(TrainPage* train, QObject* parent) : QObject(parent), train_(train) {
    connect(train_, &TrainPage::busy_changed, this, [this](bool busy) {
        if (!busy) retry();
    });
}

void HeatmapStore::reset(const PredictionSet& predictions) {
    predictions_ = predictions;
    maps_.clear();
    wanted_.clear();
    error_.clear();
    ++generation_;   // a job still running delivers into the void
    running_ = false;
    row_of_record_.clear();
    if (!predictions_.valid()) return;
    const auto& p = *predictions_.predictions;
    row_of_record_.assign(predictions_.dataset->images.size(), -1);
    for (std::size_t i = 0; i < p.records.size(); ++i) row_of_record_[p.records[i]] = static_cast<int>(i);
}

std::vector<int> HeatmapStore::classes_for(std::size_t record) const {
    if (!predictions_.valid() || record >= row_of_record_.size() || row_of_record_[record] < 0) return {};
    const auto row = static_cast<std::size_t>(row_of_record_[record]);
    const auto& p = *predictions_.predictions;
    const int predicted = p.predicted[row], actual = p.actual[row];
    if (actual >= 0 && actual != predicted) return {predicted, actual};
    // Correct (or unlabelled): the runner-up, what else it could have been.
    const int classes = p.num_classes();
    if (classes < 2) return {predicted};
    const std::vector<float> probs = [&] {
        std::vector<float> v(static_cast<std::size_t>(classes));
        const at::Tensor r = p.probs[static_cast<int64_t>(row)].to(at::kFloat).contiguous();
        std::copy_n(r.data_ptr<float>(), classes, v.begin());
        return v;
    }();
    int second = -1;
    for (int k = 0; k < classes; ++k)
        if (k != predicted && (second < 0 || probs[static_cast<std::size_t>(k)] > probs[static_cast<std::size_t>(second)])) second = k;
    return {predicted, second};
}

const explain::ImageExplanation* HeatmapStore::find(std::size_t record) const {
    const auto it = maps_.find(record);
    return it == maps_.end() ? nullptr : &it->second;
}

void HeatmapStore::set_opacity(double opacity) {
    opacity = std::clamp(opacity, 0.0, 1.0);
    if (opacity == opacity_) return;
    opacity_ = opacity;
    Q_EMIT opacity_changed(opacity_);
}

bool HeatmapStore::request(const std::vector<std::size_t>& records) {
    if (!predictions_.valid() || running_) {
        if (running_)
            for (std::size_t r : records)
                if (!find(r)) wanted_.push_back(r);
        return false;
    }
    if (train_->session_view().state != predictions_.state) {
        error_ = tr("The learner changed since these predictions: predict again to see where the current model looks.");
        Q_EMIT failed(error_);
        return false;
    }
    std::vector<explain::ExplainRequest> requests;
    std::vector<std::size_t> asked;
    for (std::size_t r : records) {
        if (find(r) || std::find(asked.begin(), asked.end(), r) != asked.end()) continue;
        auto classes = classes_for(r);
        if (classes.empty()) continue;
        requests.push_back({r, std::move(classes)});
        asked.push_back(r);
        if (static_cast<int>(requests.size()) >= kMaxPerRequest) break;
    }
    if (requests.empty()) return false;
    const std::uint64_t generation = generation_;
    const auto dataset = predictions_.dataset;
    const QString state = predictions_.state;
    QPointer<HeatmapStore> self(this);
    const bool started = train_->run_on_worker(
        tr("Computing heatmaps…"), [self, generation, dataset, requests, state](TrainingWorker* w) {
            // On the worker thread: the learner is this thread's.
            try {
                project::Session* s = static_cast<const TrainingWorker*>(w)->session();   // the public one
                if (!s || !s->has_learner()) throw UserError("the project has no learner");
                const auto st = s->state();
                if (QString::fromStdString(st.weights + "/" + st.data) != state)
                    throw UserError("the learner changed since these predictions", "predict the validation set again");
                explain::ExplainOptions o;
                o.progress = [w](std::size_t done, std::size_t total) {
                    Q_EMIT w->progress(QObject::tr("Heatmaps"), static_cast<qlonglong>(done), static_cast<qlonglong>(total));
                };
                auto maps = explain::explain_images(*w->learner(), *dataset, requests, o);
                // Back to the UI thread (qApp lives there); the store may be gone by then.
                QMetaObject::invokeMethod(
                    QCoreApplication::instance(), [self, generation, maps = std::move(maps)] {
                        if (self) self->deliver(generation, maps);
                    },
                    Qt::QueuedConnection);
                Q_EMIT w->job_finished("Heatmaps", false, {});
            } catch (const std::exception& e) {
                QString message = QString::fromStdString(e.what());
                if (const auto* u = dynamic_cast<const UserError*>(&e); u && !u->hint().empty())
                    message += "\n\n" + QString::fromStdString(u->hint());
                QMetaObject::invokeMethod(
                    QCoreApplication::instance(), [self, generation, message] {
                        if (self && self->generation_ == generation) {
                            self->running_ = false;
                            self->error_ = message;
                            Q_EMIT self->failed(message);
                        }
                    },
                    Qt::QueuedConnection);
                Q_EMIT w->failed("Heatmaps", message);
            }
        });
    if (!started) {
        for (std::size_t r : asked) wanted_.push_back(r);
        return false;
    }
    running_ = true;
    error_.clear();
    wanted_.erase(std::remove_if(wanted_.begin(), wanted_.end(), [&](std::size_t r) {
                      return std::find(asked.begin(), asked.end(), r) != asked.end();
                  }),
                  wanted_.end());
    return true;
}

void HeatmapStore::retry() {
    if (running_ || wanted_.empty() || !error_.isEmpty()) return;
    const auto wanted = wanted_;
    wanted_.clear();
    request(wanted);
}

void HeatmapStore::deliver(std::uint64_t generation, const std::vector<explain::ImageExplanation>& maps) {
    if (generation != generation_) return;
    running_ = false;
    for (const auto& e : maps) maps_[e.record] = e;
    Q_EMIT ready();
}

// ---- HeatmapView ----

HeatmapView::HeatmapView(const QImage& image, QWidget* parent) : QWidget(parent), image_(image) {
    overlay_box_ = new QCheckBox(tr("Overlay: where it &looked"));
    overlay_box_->setObjectName("largeOverlay");
    overlay_box_->setToolTip(tr("Grad-CAM: which parts of the image made the model choose each class (the plain "
                                "validation view; the dashed square is what the model sees)"));
    opacity_ = new QSlider(Qt::Horizontal);
    opacity_->setObjectName("overlayOpacity");
    opacity_->setRange(0, 100);
    opacity_->setValue(50);
    opacity_->setMaximumWidth(160);
    opacity_->setToolTip(tr("Opacity of the heatmap"));
    note_ = new QLabel;
    note_->setObjectName("overlayNote");
    note_->setStyleSheet("color: #555");
    note_->setWordWrap(true);
    panels_ = new QWidget;
    panels_->setObjectName("overlayPanels");
    auto* bar = new QHBoxLayout;
    bar->addWidget(overlay_box_);
    bar->addWidget(new QLabel(tr("Opacity")));
    bar->addWidget(opacity_);
    bar->addWidget(note_, 1);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(bar);
    layout->addWidget(panels_, 1);
    new QHBoxLayout(panels_);
    panels_->layout()->setContentsMargins(0, 0, 0, 0);
    connect(overlay_box_, &QCheckBox::toggled, this, [this](bool on) {
        opacity_->setEnabled(on);
        rebuild();
        Q_EMIT overlay_toggled(on);
    });
    connect(opacity_, &QSlider::valueChanged, this, [this](int v) {
        rebuild();
        Q_EMIT opacity_changed(v / 100.0);
    });
    opacity_->setEnabled(false);
    rebuild();
}

void HeatmapView::set_maps(const explain::ImageExplanation* maps, const std::vector<QString>& titles) {
    has_maps_ = maps != nullptr;
    if (maps) maps_ = *maps;
    titles_ = titles;
    rebuild();
}

void HeatmapView::set_note(const QString& note) { note_->setText(note); }

void HeatmapView::set_overlay(bool on) { overlay_box_->setChecked(on); }

void HeatmapView::set_opacity(double opacity) {
    const int v = static_cast<int>(std::lround(std::clamp(opacity, 0.0, 1.0) * 100));
    if (v != opacity_->value()) opacity_->setValue(v);
}

bool HeatmapView::overlay() const { return overlay_box_->isChecked(); }

int HeatmapView::panels_shown() const { return shown_; }

void HeatmapView::rebuild() {
    auto* layout = static_cast<QHBoxLayout*>(panels_->layout());
    while (QLayoutItem* item = layout->takeAt(0)) {
        if (QWidget* w = item->widget()) w->deleteLater();
        delete item;
    }
    const bool overlay = overlay_box_->isChecked() && has_maps_ && !maps_.maps.empty() && !image_.isNull();
    if (!overlay) {
        auto* picture = new QLabel;
        picture->setObjectName("largePicture");
        picture->setAlignment(Qt::AlignCenter);
        if (!image_.isNull())
            picture->setPixmap(QPixmap::fromImage(image_.scaled(640, 520, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        layout->addWidget(picture);
        shown_ = image_.isNull() ? 0 : 1;
        return;
    }
    // One panel per map, side by side: why the predicted class, and what spoke for the other.
    const int n = static_cast<int>(maps_.maps.size());
    const int side = n > 1 ? 400 : 560;
    const QImage base = image_.scaled(side, side, Qt::KeepAspectRatio, Qt::SmoothTransformation);
    const double opacity = opacity_->value() / 100.0;
    for (int i = 0; i < n; ++i) {
        auto* panel = new QWidget;
        auto* pl = new QVBoxLayout(panel);
        pl->setContentsMargins(0, 0, 0, 0);
        QString text = i < static_cast<int>(titles_.size()) ? titles_[static_cast<std::size_t>(i)] : QString();
        // Grad-CAM keeps only positive evidence: a map of zeros means nothing argued for the class.
        if (maps_.maps[static_cast<std::size_t>(i)].peak <= 0) text += "\n" + tr("(nothing in the image speaks for it)");
        auto* title = new QLabel(text);
        title->setObjectName(QString("overlayTitle%1").arg(i));
        title->setWordWrap(true);
        // Room for two lines in every title, so that the pictures line up.
        title->setMinimumHeight(2 * title->fontMetrics().lineSpacing() + 4);
        title->setAlignment(Qt::AlignHCenter | Qt::AlignBottom);
        auto* picture = new QLabel;
        picture->setObjectName(QString("overlayPicture%1").arg(i));
        picture->setAlignment(Qt::AlignHCenter | Qt::AlignTop);
        picture->setPixmap(QPixmap::fromImage(overlay_image(base, maps_.maps[static_cast<std::size_t>(i)], maps_.crop, opacity)));
        pl->addWidget(title);
        pl->addWidget(picture, 1);
        layout->addWidget(panel, 1);
    }
    shown_ = n;
}

}  // namespace whisker::ui
