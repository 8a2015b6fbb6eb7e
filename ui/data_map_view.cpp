#include "data_map_view.h"

#include "image_browser.h"
#include "train_page.h"
#include "training_worker.h"
#include "qcustomplot_include.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>

#include "whisker/common/errors.h"

#include <algorithm>
#include <cmath>

namespace fs = std::filesystem;

namespace whisker::ui {

namespace {
// Tableau's 10 colours: distinct for the usual handful of classes, then they repeat.
const QColor kPalette[] = {QColor(31, 119, 180), QColor(255, 127, 14), QColor(44, 160, 44), QColor(214, 39, 40),
                           QColor(148, 103, 189), QColor(140, 86, 75), QColor(227, 119, 194), QColor(188, 189, 34),
                           QColor(23, 190, 207), QColor(127, 127, 127)};
QColor class_colour(int k) { return kPalette[static_cast<std::size_t>(k) % (sizeof(kPalette) / sizeof(kPalette[0]))]; }
}  // namespace

DataMapView::DataMapView(QWidget* parent) : QWidget(parent) {
    compute_ = new QPushButton(tr("&Map the data"));
    compute_->setObjectName("computeMapButton");
    compute_->setToolTip(tr("Runs every image (train, valid, test) through the model once and places it by the body's "
                            "features (computed once per learner state, then cached in the project)"));
    projection_ = new QComboBox;
    projection_->setObjectName("mapProjection");
    projection_->addItems({tr("UMAP (neighbourhoods)"), tr("PCA (first two components)")});
    projection_->setToolTip(tr("UMAP keeps each image's neighbours together: clusters show. PCA is a plain linear view."));
    show_test_ = new QCheckBox(tr("Test images"));
    show_test_->setChecked(true);
    stop_button_ = new QPushButton(tr("S&top"));
    stop_button_->setObjectName("stopMapButton");
    stop_button_->setToolTip(tr("Stop computing the map (after the current batch, or within a few UMAP epochs); "
                                "a map shown before stays"));
    stop_button_->setVisible(false);
    reset_ = new QPushButton(tr("Reset zoom"));
    message_ = new QLabel;
    message_->setObjectName("mapMessage");
    message_->setWordWrap(true);
    legend_note_ = new QLabel(tr("Colour: actual class · black outline: a mistake of the model · grey: test (unlabelled). "
                                 "Hover for the image, click to open it, drag a box to show the images in the gallery, "
                                 "wheel to zoom."));
    legend_note_->setWordWrap(true);
    legend_note_->setStyleSheet("color: #555");   // palette(mid) is too faint to read on the window's grey

    plot_ = new QCustomPlot;
    plot_->setObjectName("dataMapPlot");
    plot_->setMinimumSize(320, 240);
    plot_->setInteraction(QCP::iRangeZoom, true);
    plot_->setSelectionRectMode(QCP::srmCustom);
    plot_->selectionRect()->setPen(QPen(QColor(40, 40, 40), 1, Qt::DashLine));
    plot_->selectionRect()->setBrush(QColor(60, 120, 220, 40));
    plot_->xAxis->setTickLabels(false);
    plot_->yAxis->setTickLabels(false);
    plot_->xAxis->grid()->setVisible(false);
    plot_->yAxis->grid()->setVisible(false);
    plot_->legend->setVisible(true);
    plot_->legend->setBrush(QColor(255, 255, 255, 220));
    plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    plot_->setMouseTracking(true);

    hover_ = new QLabel(plot_);
    hover_->setObjectName("mapHover");
    hover_->setFrameShape(QFrame::Box);
    hover_->setStyleSheet("background: #fffff4; color: black; padding: 4px");
    hover_->setAlignment(Qt::AlignCenter);
    hover_->setAttribute(Qt::WA_TransparentForMouseEvents);
    hover_->hide();

    auto* bar = new QHBoxLayout;
    bar->addWidget(compute_);
    bar->addWidget(stop_button_);
    bar->addWidget(new QLabel(tr("Layout")));
    bar->addWidget(projection_);
    bar->addWidget(show_test_);
    bar->addWidget(reset_);
    bar->addStretch(1);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(bar);
    layout->addWidget(message_);
    layout->addWidget(plot_, 1);
    layout->addWidget(legend_note_);

    connect(compute_, &QPushButton::clicked, this, &DataMapView::compute_requested);
    connect(stop_button_, &QPushButton::clicked, this, &DataMapView::stop);
    connect(projection_, &QComboBox::currentIndexChanged, this, &DataMapView::rebuild);
    connect(show_test_, &QCheckBox::toggled, this, &DataMapView::rebuild);
    connect(reset_, &QPushButton::clicked, this, [this] {
        plot_->rescaleAxes();
        plot_->xAxis->scaleRange(1.08);
        plot_->yAxis->scaleRange(1.08);
        plot_->replot();
    });
    connect(plot_, &QCustomPlot::mousePress, this, &DataMapView::mouse_pressed);
    connect(plot_, &QCustomPlot::mouseMove, this, &DataMapView::mouse_moved);
    connect(plot_, &QCustomPlot::mouseRelease, this, &DataMapView::mouse_released);
    connect(plot_->selectionRect(), &QCPSelectionRect::accepted, this, [this](const QRect& rect, QMouseEvent*) {
        const auto records = records_in(QRectF(rect));
        QVector<qulonglong> out;
        for (auto r : records) out.push_back(static_cast<qulonglong>(r));
        set_message(tr("%n image(s) selected: shown in the gallery.", nullptr, static_cast<int>(out.size())));
        Q_EMIT images_selected(out);
    });
    clear(tr("No map yet: click \"Map the data\" (needs a learner; it runs every image through the model once)."));
}

void DataMapView::attach_worker(TrainPage* train) {
    TrainingWorker* worker = train->worker();
    connect(worker, &TrainingWorker::session_changed, this, [this](const SessionView& v) {
        // Another project: nothing of the last one's map (or of its messages) stays.
        if (!computing() && property("sessionProject").toString() != v.project) {
            setProperty("sessionProject", v.project);
            clear(tr("No map of this project yet: click \"Map the data\" (needs a learner; it runs every image through the "
                     "model once)."));
        }
        set_current_state(v.state);
    });
    // The Train page's Stop (and a project switch, closing the window) ends the map too.
    connect(train, &TrainPage::stop_requested, this, &DataMapView::stop);
    connect(worker, &TrainingWorker::progress, this, [this](const QString& stage, qlonglong done, qlonglong total) {
        if (!computing() || stop_->load()) return;
        set_message(total > 0 ? tr("Mapping the data: %1, %2 of %3…").arg(stage).arg(done).arg(total)
                              : tr("Mapping the data: %1…").arg(stage));
    });
    connect(worker, &TrainingWorker::job_finished, this, [this](const QString& job, bool stopped, const QString&) {
        if (job != QLatin1String("map") || !computing()) return;
        job_ended(stopped ? tr("Stopped: the map was not finished and nothing unfinished was kept. Click \"Map the data\" to "
                               "compute it again (a finished stage, such as the images' features, is reused).")
                          : QString());
    });
    connect(worker, &TrainingWorker::failed, this, [this](const QString& job, const QString& message) {
        if (job != QLatin1String("map") || !computing()) return;
        job_ended(tr("The map could not be made: %1").arg(message));
    });
    connect(this, &DataMapView::compute_requested, this, [this, train] {
        if (computing()) return;
        if (!train->has_learner()) {
            set_message(tr("This project has no learner yet: create or train one on the Train page; the map shows how it "
                           "sees the images."));
            return;
        }
        auto stop = std::make_shared<std::atomic<bool>>(false);
        const bool started = train->run_on_worker(tr("Mapping the data…"), [this, stop](TrainingWorker* w) {
            try {
                // The public, const accessor (the non-const one is the worker's own).
                project::Session* open = static_cast<const TrainingWorker*>(w)->session();
                if (!open) throw UserError("no project is open");
                project::Session& session = *open;
                const auto progress = [w](const std::string& stage, long done, long total) {
                    Q_EMIT w->progress(QString::fromStdString(stage), done, total);
                };
                auto map = std::make_shared<explain::DataMap>(explain::data_map(session, progress, stop.get()));
                auto dataset = std::make_shared<const data::Dataset>(session.learner().dataset());
                const fs::path project = session.project();
                QMetaObject::invokeMethod(this, [this, map, dataset, project] {
                    setProperty("project", QString::fromStdString(project.string()));
                    set_map(project, dataset, std::move(*map));
                }, Qt::QueuedConnection);
                Q_EMIT w->job_finished(QStringLiteral("map"), false, {});
            } catch (const Cancelled&) {
                Q_EMIT w->job_finished(QStringLiteral("map"), true, QStringLiteral("nothing unfinished was kept"));
            } catch (const UserError& e) {
                QString message = QString::fromStdString(e.what());
                if (!e.hint().empty()) message += "\n\n" + QString::fromStdString(e.hint());
                Q_EMIT w->failed(QStringLiteral("map"), message);
            } catch (const std::exception& e) {   // c10::Error included: never across the thread
                Q_EMIT w->failed(QStringLiteral("map"), QString::fromStdString(e.what()));
            }
        });
        if (!started) {
            set_message(tr("The learner is busy (see the Train page): map the data when it is done."));
            return;
        }
        stop_ = stop;
        compute_->setEnabled(false);
        stop_button_->setEnabled(true);
        stop_button_->setVisible(true);
        set_message(tr("Mapping the data: every image through the model once (cached per learner state), then UMAP…"));
    });
}

void DataMapView::stop() {
    if (!stop_ || stop_->load()) return;
    stop_->store(true);
    stop_button_->setEnabled(false);
    set_message(tr("Stopping the map…"));
}

void DataMapView::job_ended(const QString& message) {
    stop_.reset();
    compute_->setEnabled(true);
    stop_button_->setVisible(false);
    if (!message.isEmpty()) set_message(message);
}

void DataMapView::clear(const QString& message) {
    map_ = {};
    dataset_.reset();
    thumbnails_.clear();
    rebuild();
    set_message(message);
}

void DataMapView::set_message(const QString& text) {
    message_->setText(text);
    message_->setVisible(!text.isEmpty());
}

void DataMapView::set_map(const fs::path& project, std::shared_ptr<const data::Dataset> dataset, explain::DataMap map) {
    project_ = project;
    dataset_ = std::move(dataset);
    map_ = std::move(map);
    thumbnails_.clear();
    rebuild();
    plot_->rescaleAxes();
    plot_->xAxis->scaleRange(1.08);
    plot_->yAxis->scaleRange(1.08);
    plot_->replot();
    std::size_t mistakes = 0, test = 0;
    for (const auto& p : map_.points) {
        mistakes += p.mistake();
        test += p.split == data::Split::Test;
    }
    set_message(tr("%1 images (%2 test) · %3 mistakes · %4 · %5")
                    .arg(map_.points.size()).arg(test).arg(mistakes)
                    .arg(QString::fromStdString(map_.model), QString::fromStdString(map_.method)));
    set_current_state(current_state_);
}

QString DataMapView::state() const {
    return QString::fromStdString(map_.origin.weights + "/" + map_.origin.data);
}

bool DataMapView::stale() const { return has_map() && !current_state_.isEmpty() && current_state_ != state(); }

void DataMapView::set_current_state(const QString& state) {
    current_state_ = state;
    if (stale()) {
        compute_->setText(tr("&Map the data again"));
        compute_->setStyleSheet("color: #b35900");
        compute_->setToolTip(tr("The learner or the data changed since this map: compute it for the current model"));
    } else {
        compute_->setText(tr("&Map the data"));
        compute_->setStyleSheet({});
    }
}

QString DataMapView::class_name(int k) const {
    if (!dataset_ || k < 0 || k >= static_cast<int>(dataset_->classes.size())) return tr("(none)");
    return QString::fromStdString(dataset_->classes[static_cast<std::size_t>(k)]);
}

QPointF DataMapView::coords_of(const explain::MapPoint& p) const {
    return projection_->currentIndex() == 1 ? QPointF(p.pca_x, p.pca_y) : QPointF(p.x, p.y);
}

bool DataMapView::shown(const explain::MapPoint& p) const { return show_test_->isChecked() || p.split != data::Split::Test; }

void DataMapView::rebuild() {
    plot_->clearGraphs();
    hover_->hide();
    const int classes = dataset_ ? static_cast<int>(dataset_->classes.size()) : 0;
    auto add_graph = [this](const QString& name, const QCPScatterStyle& style) {
        QCPGraph* g = plot_->addGraph();
        g->setName(name);
        g->setLineStyle(QCPGraph::lsNone);
        g->setScatterStyle(style);
        g->setAdaptiveSampling(false);   // every mistake must stay visible
        return g;
    };
    // Test first (underneath), then each class, then the mistakes on top.
    QCPGraph* test = add_graph(tr("test (unlabelled)"),
                               QCPScatterStyle(QCPScatterStyle::ssDisc, QColor(150, 150, 150, 150), 5));
    std::vector<QCPGraph*> correct, wrong;
    for (int k = 0; k < classes; ++k)
        correct.push_back(add_graph(class_name(k), QCPScatterStyle(QCPScatterStyle::ssDisc, class_colour(k), 6)));
    for (int k = 0; k < classes; ++k) {
        QCPGraph* g = add_graph(tr("%1, mistaken").arg(class_name(k)),
                                QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::black, 1.6), QBrush(class_colour(k)), 8));
        g->removeFromLegend();
        wrong.push_back(g);
    }
    // One legend entry for all the outlined points.
    QCPGraph* mistake_key = add_graph(tr("mistake (outlined)"),
                                      QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::black, 1.6), QBrush(Qt::white), 8));
    Q_UNUSED(mistake_key);
    for (const auto& p : map_.points) {
        if (!shown(p)) continue;
        const QPointF c = coords_of(p);
        if (p.split == data::Split::Test || p.actual < 0 || p.actual >= classes) test->addData(c.x(), c.y());
        else if (p.mistake()) wrong[static_cast<std::size_t>(p.actual)]->addData(c.x(), c.y());
        else correct[static_cast<std::size_t>(p.actual)]->addData(c.x(), c.y());
    }
    if (test->dataCount() == 0) test->removeFromLegend();
    plot_->legend->setVisible(has_map());   // no key to an empty plot
    plot_->replot();
}

std::optional<QPointF> DataMapView::pixel_of(std::size_t record) const {
    for (const auto& p : map_.points)
        if (p.record == record && shown(p)) {
            const QPointF c = coords_of(p);
            return QPointF(plot_->xAxis->coordToPixel(c.x()), plot_->yAxis->coordToPixel(c.y()));
        }
    return std::nullopt;
}

std::optional<std::size_t> DataMapView::record_at(const QPointF& pixel, double radius) const {
    std::optional<std::size_t> best;
    double best_d2 = radius * radius;
    for (const auto& p : map_.points) {
        if (!shown(p)) continue;
        const QPointF c = coords_of(p);
        const double dx = plot_->xAxis->coordToPixel(c.x()) - pixel.x(), dy = plot_->yAxis->coordToPixel(c.y()) - pixel.y();
        if (dx * dx + dy * dy <= best_d2) {
            best_d2 = dx * dx + dy * dy;
            best = p.record;
        }
    }
    return best;
}

std::vector<std::size_t> DataMapView::records_in(const QRectF& pixels) const {
    std::vector<std::size_t> out;
    const QRectF r = pixels.normalized();
    for (const auto& p : map_.points) {
        if (!shown(p)) continue;
        const QPointF c = coords_of(p);
        if (r.contains(plot_->xAxis->coordToPixel(c.x()), plot_->yAxis->coordToPixel(c.y()))) out.push_back(p.record);
    }
    return out;
}

QPixmap DataMapView::thumbnail(std::size_t record) {
    if (QPixmap* p = thumbnails_.object(record)) return *p;
    QPixmap pix;
    try {
        pix = QPixmap::fromImage(load_display_image(dataset_->resolve(project_, dataset_->images[record]))
                                     .scaled(160, 160, Qt::KeepAspectRatio, Qt::SmoothTransformation));
    } catch (const std::exception&) {
        pix = QPixmap(160, 120);
        pix.fill(QColor(200, 200, 200));
    }
    thumbnails_.insert(record, new QPixmap(pix));
    return pix;
}

bool DataMapView::hover(const QPointF& pixel) {
    const auto record = record_at(pixel);
    if (!record || !dataset_) {
        hover_->hide();
        return false;
    }
    const auto it = std::find_if(map_.points.begin(), map_.points.end(), [&](const auto& p) { return p.record == *record; });
    const auto& im = dataset_->images[*record];
    QString text = QString::fromStdString(fs::path(im.path).filename().string()) + " · " +
                   QString::fromStdString(data::split_name(im.split));
    if (it->actual >= 0) text += "\n" + tr("actual %1 · predicted %2%3").arg(class_name(it->actual), class_name(it->predicted),
                                                                           it->mistake() ? tr("  ✗") : QString());
    else text += "\n" + tr("predicted %1").arg(class_name(it->predicted));
    const QPixmap pix = thumbnail(*record);
    // A picture above its caption, in one label: rich text would need files; draw it instead.
    const QFontMetrics fm(hover_->font());
    const int width = std::max(pix.width(), std::max(fm.horizontalAdvance(text.section('\n', 0, 0)),
                                                     fm.horizontalAdvance(text.section('\n', 1, 1)))) + 8;
    QPixmap card(width, pix.height() + 2 * fm.height() + 10);
    card.fill(QColor(255, 255, 244));
    {
        QPainter painter(&card);
        painter.drawPixmap((width - pix.width()) / 2, 4, pix);
        painter.setPen(Qt::black);
        painter.drawText(QRect(0, pix.height() + 6, width, 2 * fm.height() + 2), Qt::AlignHCenter | Qt::AlignTop, text);
    }
    hover_->setPixmap(card);
    hover_->adjustSize();
    // Beside the cursor, inside the plot.
    QPoint at = pixel.toPoint() + QPoint(14, 14);
    if (at.x() + hover_->width() > plot_->width()) at.setX(static_cast<int>(pixel.x()) - 14 - hover_->width());
    if (at.y() + hover_->height() > plot_->height()) at.setY(static_cast<int>(pixel.y()) - 14 - hover_->height());
    hover_->move(std::max(0, at.x()), std::max(0, at.y()));
    hover_->show();
    hover_->raise();
    return true;
}

void DataMapView::mouse_pressed(QMouseEvent* event) {
    pressed_ = event->button() == Qt::LeftButton;
    press_pixel_ = event->position();
    hover_->hide();
}

void DataMapView::mouse_moved(QMouseEvent* event) {
    if (event->buttons() != Qt::NoButton) return;
    hover(event->position());
}

void DataMapView::mouse_released(QMouseEvent* event) {
    if (!pressed_) return;
    pressed_ = false;
    const QPointF d = event->position() - press_pixel_;
    if (std::hypot(d.x(), d.y()) > 4) return;   // a box selection
    if (const auto record = record_at(event->position())) Q_EMIT image_clicked(static_cast<qulonglong>(*record));
}

QDialog* DataMapView::open_image(std::size_t record) {
    if (!dataset_ || record >= dataset_->images.size()) return nullptr;
    const auto it = std::find_if(map_.points.begin(), map_.points.end(), [&](const auto& p) { return p.record == record; });
    if (it == map_.points.end()) return nullptr;
    const auto& im = dataset_->images[record];
    const fs::path file = dataset_->resolve(project_, im);
    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setObjectName("mapImageDialog");
    dialog->setWindowTitle(QString::fromStdString(file.filename().string()));
    auto* picture = new QLabel;
    picture->setAlignment(Qt::AlignCenter);
    QString info = tr("%1\n%2 × %3 px · %4 · actual %5 · predicted %6 (%7)")
                       .arg(QString::fromStdString(file.string())).arg(im.width).arg(im.height)
                       .arg(image_use_text(im), it->actual >= 0 ? class_name(it->actual) : tr("unknown (test)"),
                            class_name(it->predicted), QString::fromStdString(map_.model));
    try {
        picture->setPixmap(QPixmap::fromImage(load_display_image(file).scaled(640, 520, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
    } catch (const std::exception& e) {
        info += "\n" + tr("cannot show it: %1").arg(QString::fromStdString(e.what()));
    }
    auto* info_label = new QLabel(info);
    info_label->setObjectName("imageInfo");
    info_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* state = new QLabel;
    state->setObjectName("markState");
    auto* l = new QVBoxLayout(dialog);
    l->addWidget(picture, 1);
    l->addWidget(info_label);
    l->addWidget(state);
    if (im.split != data::Split::Test) {
        auto* exclude = new QPushButton(tr("&Exclude from training"));
        exclude->setObjectName("excludeButton");
        auto* relabel_box = new QComboBox;
        relabel_box->setObjectName("relabelBox");
        for (int k = 0; k < static_cast<int>(dataset_->classes.size()); ++k) relabel_box->addItem(class_name(k));
        relabel_box->setCurrentIndex(std::max(0, it->predicted));
        auto* relabel = new QPushButton(tr("Mark &mislabelled: it is"));
        relabel->setObjectName("relabelButton");
        auto* undo = new QPushButton(tr("&Undo marks"));
        undo->setObjectName("undoMarksButton");
        connect(exclude, &QPushButton::clicked, dialog, [this, record, state] {
            Q_EMIT exclude_requested(record);
            state->setText(tr("Excluded: the next fit leaves it out (the file is not touched)."));
        });
        connect(relabel, &QPushButton::clicked, dialog, [this, record, relabel_box, state] {
            Q_EMIT relabel_requested(record, relabel_box->currentIndex());
            state->setText(tr("Relabelled as %1 for the next fit.").arg(relabel_box->currentText()));
        });
        connect(undo, &QPushButton::clicked, dialog, [this, record, state] {
            Q_EMIT undo_marks_requested(record);
            state->setText(tr("Marks taken back."));
        });
        auto* row = new QHBoxLayout;
        row->addWidget(exclude);
        row->addWidget(relabel);
        row->addWidget(relabel_box);
        row->addStretch(1);
        row->addWidget(undo);
        l->addLayout(row);
        if (im.excluded) state->setText(tr("Excluded by you."));
        else if (im.relabelled()) state->setText(tr("Relabelled by you."));
    }
    dialog->resize(760, 680);
    dialog->show();
    return dialog;
}

}  // namespace whisker::ui
