#include "inspect_page.h"

#include "whisker/project/project_lock.h"

#include "heatmap_overlay.h"
#include "data_map_view.h"
#include "image_browser.h"
#include "train_page.h"

#include "whisker/common/errors.h"
#include "whisker/common/random.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QFileDialog>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QListView>
#include <QMessageBox>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTabWidget>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fs = std::filesystem;

namespace whisker::ui {

namespace {
QTableWidgetItem* cell(const QString& text, Qt::Alignment align = Qt::AlignRight | Qt::AlignVCenter) {
    auto* item = new QTableWidgetItem(text);
    item->setTextAlignment(align);
    item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
    return item;
}
}  // namespace

InspectPage::InspectPage(TrainPage* train, QWidget* parent) : QWidget(parent), train_(train) {
    predict_button_ = new QPushButton(tr("&Predict the validation set"));
    predict_button_->setObjectName("inspectPredict");
    tta_ = new QCheckBox(tr("Test-time augmentation"));
    tta_count_ = new QSpinBox;
    tta_count_->setRange(1, 32);
    tta_count_->setValue(4);
    tta_count_->setSuffix(tr(" augmented passes"));
    tta_count_->setEnabled(false);
    connect(tta_, &QCheckBox::toggled, tta_count_, &QWidget::setEnabled);
    summary_ = new QLabel(tr("No predictions yet: train a model, then predict the validation set."));
    summary_->setObjectName("inspectSummary");
    summary_->setWordWrap(true);
    summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    stale_label_ = new QLabel;
    stale_label_->setStyleSheet("color: #b35900");
    stale_label_->setVisible(false);

    confusion_ = new QTableWidget;
    confusion_->setObjectName("confusionMatrix");
    confusion_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    confusion_->setSelectionMode(QAbstractItemView::SingleSelection);
    confusion_->setToolTip(tr("Rows: actual class; columns: predicted class. Click a cell to see its images."));
    normalised_ = new QCheckBox(tr("Normalised (share of each actual class)"));
    class_table_ = new QTableWidget(0, 4);
    class_table_->setObjectName("classMetrics");
    class_table_->setHorizontalHeaderLabels({tr("precision"), tr("recall"), tr("images"), tr("predicted as")});
    class_table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    class_table_->horizontalHeader()->setStretchLastSection(true);
    class_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);

    view_box_ = new QComboBox;
    view_box_->setObjectName("galleryView");
    view_box_->addItems({tr("Most confident mistakes (highest loss)"), tr("Most uncertain"), tr("Most confident correct"),
                         tr("Random correct"), tr("All, highest loss first"), tr("Confusion matrix cell")});
    class_box_ = new QComboBox;
    class_box_->setObjectName("galleryClass");
    class_box_->setToolTip(tr("Only images of this actual class"));
    class_box_->setSizeAdjustPolicy(QComboBox::AdjustToContents);   // "All classes" whole, not cut
    view_count_ = new QLabel;
    auto* shuffle = new QPushButton(tr("Shuffle"));
    shuffle->setToolTip(tr("Another random sample (Random correct)"));
    export_button_ = new QPushButton(tr("&Export mistakes…"));
    export_button_->setToolTip(tr("A CSV of the misclassified images: path, labels, probabilities, loss"));

    gallery_model_ = new ThumbnailModel(this);
    gallery_model_->set_caption([this](std::size_t r) { return caption(r); });
    gallery_model_->set_tint([this](std::size_t r) { return tint(r); });
    gallery_ = new QListView;
    gallery_->setObjectName("inspectGallery");
    gallery_->setViewMode(QListView::IconMode);
    gallery_->setUniformItemSizes(true);
    gallery_->setResizeMode(QListView::Adjust);
    gallery_->setMovement(QListView::Static);
    gallery_->setIconSize(QSize(ThumbnailModel::kThumbSize, ThumbnailModel::kThumbSize));
    gallery_->setSpacing(4);
    gallery_->setWordWrap(true);
    gallery_->setModel(gallery_model_);
    heatmaps_ = new HeatmapStore(train_, this);
    overlay_ = new QCheckBox(tr("Overlay: where it looked"));
    overlay_->setObjectName("galleryOverlay");
    overlay_->setToolTip(tr("Lay a heatmap of the predicted class over each tile (Grad-CAM: which parts of the image "
                            "made the model choose it). Open a tile for the actual class's map beside it."));
    overlay_note_ = new QLabel;
    overlay_note_->setObjectName("overlayStatus");
    overlay_note_->setStyleSheet("color: #555");
    gallery_model_->set_decoration([this](std::size_t r, const QPixmap& thumb) { return decorate(r, thumb); });

    // ---- layout ----
    auto* top = new QHBoxLayout;
    top->addWidget(predict_button_);
    top->addWidget(tta_);
    top->addWidget(tta_count_);
    top->addStretch(1);
    top->addWidget(export_button_);
    auto* left = new QWidget;
    auto* ll = new QVBoxLayout(left);
    ll->setContentsMargins(0, 0, 0, 0);
    auto* cm_box = new QGroupBox(tr("Confusion matrix (rows: actual, columns: predicted; click a cell)"));
    auto* cl = new QVBoxLayout(cm_box);
    cl->addWidget(confusion_, 1);
    cl->addWidget(normalised_);
    auto* metrics_box = new QGroupBox(tr("Per class"));
    auto* ml = new QVBoxLayout(metrics_box);
    ml->addWidget(class_table_);
    ll->addWidget(cm_box, 3);
    ll->addWidget(metrics_box, 2);
    auto* right = new QWidget;
    auto* rl = new QVBoxLayout(right);
    rl->setContentsMargins(0, 0, 0, 0);
    auto* bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("Show")));
    bar->addWidget(view_box_, 1);
    bar->addWidget(class_box_);
    bar->addWidget(shuffle);
    bar->addWidget(view_count_);
    rl->addLayout(bar);
    auto* overlay_bar = new QHBoxLayout;
    overlay_bar->addWidget(overlay_);
    overlay_bar->addWidget(overlay_note_, 1);
    rl->addLayout(overlay_bar);
    rl->addWidget(gallery_, 1);
    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(left);
    // The map of the data beside the gallery (data_map_view.h).
    auto* map = new DataMapView;
    map->setObjectName("dataMap");
    auto* right_tabs = new QTabWidget;
    right_tabs->setObjectName("inspectRightTabs");
    right_tabs->addTab(right, tr("Gallery"));
    right_tabs->addTab(map, tr("Map of the data"));
    split->addWidget(right_tabs);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(top);
    layout->addWidget(summary_);
    layout->addWidget(stale_label_);
    layout->addWidget(split, 1);

    // ---- wiring ----
    connect(predict_button_, &QPushButton::clicked, this, [this] {
        if (predict()) return;
        if (!train_->has_learner())
            QMessageBox::information(this, tr("No learner yet"), tr("Create and train a learner on the Train page first."));
        else
            QMessageBox::information(this, tr("Busy"), tr("The learner is busy (see the Train page): wait for it, or stop it."));
    });
    connect(train_, &TrainPage::busy_changed, this, &InspectPage::show_empty_state);
    connect(normalised_, &QCheckBox::toggled, this, &InspectPage::fill_confusion);
    connect(confusion_, &QTableWidget::cellClicked, this, [this](int r, int c) { select_cell(r, c); });
    connect(view_box_, &QComboBox::currentIndexChanged, this, &InspectPage::apply_view);
    connect(class_box_, &QComboBox::currentIndexChanged, this, &InspectPage::apply_view);
    connect(shuffle, &QPushButton::clicked, this, [this] {
        ++shuffle_seed_;
        if (view_box_->currentIndex() == RandomCorrect) apply_view();
        else view_box_->setCurrentIndex(RandomCorrect);
    });
    connect(gallery_, &QListView::activated, this, [this](const QModelIndex& i) { open_tile(i.row()); });
    connect(export_button_, &QPushButton::clicked, this, [this] {
        const QString file = QFileDialog::getSaveFileName(this, tr("Export the mistakes"),
                                                          QString::fromStdString((project_ / "mistakes.csv").string()),
                                                          tr("CSV (*.csv)"));
        if (!file.isEmpty()) export_mistakes(file);
    });
    TrainingWorker* worker = train_->worker();
    connect(worker, &TrainingWorker::predictions_ready, this, [this](const PredictionSet& p) {
        if (p.split == static_cast<int>(data::Split::Valid) && fs::path(p.project.toStdString()) == project_) show_predictions(p);
    });
    connect(worker, &TrainingWorker::session_changed, this, &InspectPage::show_session);
    // The map: a click opens the image large (with every probability when it is a validation
    // image), a box selection fills the gallery, its large view marks through this page.
    map->attach_worker(train_);
    auto row_of = [this](qulonglong record) { return record < row_of_record_.size() ? row_of_record_[record] : -1; };
    connect(map, &DataMapView::image_clicked, this, [this, map, row_of](qulonglong record) {
        const int row = row_of(record);
        if (row < 0) return void(map->open_image(record));
        shown_ = {static_cast<std::size_t>(row)};
        gallery_model_->set_records({static_cast<std::size_t>(record)});
        view_count_->setText(tr("1 image, from the map"));
        open_tile(0);
    });
    connect(map, &DataMapView::images_selected, this, [this, map, right_tabs, row_of](const QVector<qulonglong>& records) {
        // The gallery shows the images of the current manifest, which comes with predictions.
        if (!marks_) return map->set_message(tr("Predict the validation set first: the gallery shows its images."));
        // Validation images first (their tiles open with every probability), then the others.
        std::vector<std::size_t> first, rest;
        shown_.clear();
        for (qulonglong r : records) {
            if (r >= marks_->images.size()) continue;
            const int row = row_of(r);
            if (row >= 0) shown_.push_back(static_cast<std::size_t>(row)), first.push_back(r);
            else rest.push_back(r);
        }
        first.insert(first.end(), rest.begin(), rest.end());
        gallery_model_->set_records(first);
        view_count_->setText(tr("%n image(s) selected on the map", nullptr, static_cast<int>(first.size())));
        right_tabs->setCurrentIndex(0);
    });
    connect(gallery_, &QListView::activated, map, [this, map](const QModelIndex& i) {
        if (i.row() >= static_cast<int>(shown_.size())) map->open_image(gallery_model_->record_at(i.row()));
    });
    connect(map, &DataMapView::exclude_requested, this, [this](qulonglong r) { set_excluded(r, true); });
    connect(map, &DataMapView::relabel_requested, this, [this](qulonglong r, int label) { relabel(r, label); });
    connect(map, &DataMapView::undo_marks_requested, this, [this](qulonglong r) { clear_marks(r); });
    connect(overlay_, &QCheckBox::toggled, this, [this](bool on) {
        if (on) request_heatmaps();
        else overlay_note_->clear();
        gallery_model_->refresh_all();
    });
    connect(heatmaps_, &HeatmapStore::ready, this, [this] {
        overlay_note_->setText(tr("Heatmaps of the predicted class for %n image(s) · open a tile for the actual class too",
                                  nullptr, static_cast<int>(heatmaps_->size())));
        gallery_model_->refresh_all();
        if (overlay_->isChecked()) request_heatmaps();   // the tiles beyond the first job's
    });
    connect(heatmaps_, &HeatmapStore::failed, this, [this](const QString& message) { overlay_note_->setText(message); });
    connect(heatmaps_, &HeatmapStore::opacity_changed, this, [this] { gallery_model_->refresh_all(); });
    export_button_->setEnabled(false);
    show_empty_state();
}

void InspectPage::set_project(const fs::path& project) {
    project_ = project;
    predictions_ = {};
    probs_.clear();
    classes_ = 0;
    marks_.reset();
    shown_.clear();
    gallery_model_->set_dataset(project, nullptr);
    confusion_->clear();
    confusion_->setRowCount(0);
    confusion_->setColumnCount(0);
    class_table_->setRowCount(0);
    export_button_->setEnabled(false);
    stale_label_->setVisible(false);
    learner_state_.clear();
    session_ = {};
    show_empty_state();
    heatmaps_->reset({});
    overlay_note_->clear();
}

void InspectPage::show_session(const SessionView& v) {
    if (v.project.isEmpty() || fs::path(v.project.toStdString()) != project_) return;
    learner_state_ = v.state;
    session_.known = true;
    session_.has_dataset = v.has_dataset;
    session_.has_learner = v.has_learner;
    const PredictionSet& p = v.valid;
    if (p.valid() && (!predictions_.valid() || p.predictions != predictions_.predictions)) show_predictions(p);
    else fill_summary();
    show_empty_state();
}

void InspectPage::show_empty_state() {
    predict_button_->setEnabled(!project_.empty() && session_.has_learner && !train_->busy());
    if (predictions_.valid()) return;
    // What this page needs that the project does not have yet, and where to get it.
    QString text;
    if (project_.empty()) text = tr("No project open: open one or make the sample project (File menu).");
    else if (!session_.known) text = tr("Opening the project…");
    else if (!session_.has_dataset) text = tr("This project has no images yet: get them on the Data page, train a model on the Train page, then see its mistakes here.");
    else if (!session_.has_learner) text = tr("No model yet: create and train a learner on the Train page, then see what it gets wrong here.");
    else if (train_->busy()) text = tr("No predictions of the validation set yet: the learner is busy (see the Train page); predict once it is done.");
    else text = tr("No predictions of the validation set yet: click <b>Predict the validation set</b> to see what the model gets wrong.");
    summary_->setText(text);
}

bool InspectPage::predict() {
    if (project_.empty()) return false;
    if (!train_->has_learner()) return false;
    const int tta = tta_->isChecked() ? tta_count_->value() : 0;
    const bool started = train_->run_on_worker(tr("Predicting the validation set…"), [tta](TrainingWorker* w) {
        w->predict(static_cast<int>(data::Split::Valid), tta, 0);
    });
    if (started) Q_EMIT log(tr("Predicting the validation set%1").arg(tta ? tr(" with TTA (%1 augmented passes)").arg(tta) : ""));
    return started;
}

void InspectPage::refresh_if_stale() {
    if (project_.empty() || train_->busy() || !stale() || !train_->has_learner()) return;
    predict();
}

float InspectPage::probability(std::size_t row, int cls) const {
    return probs_[row * static_cast<std::size_t>(classes_) + static_cast<std::size_t>(cls)];
}

QString InspectPage::class_name(int k) const {
    if (!marks_ || k < 0 || k >= static_cast<int>(marks_->classes.size())) return tr("(none)");
    return QString::fromStdString(marks_->classes[static_cast<std::size_t>(k)]);
}

void InspectPage::show_predictions(const PredictionSet& p) {
    predictions_ = p;
    heatmaps_->reset(p);
    overlay_note_->clear();
    const auto& preds = *p.predictions;
    probs_ = preds.probability_matrix();
    classes_ = preds.num_classes();
    // The manifest as it is now (marks may be newer than the learner's copy).
    try {
        marks_ = std::make_shared<data::Dataset>(data::Dataset::load(project_));
        if (marks_->images.size() != p.dataset->images.size()) marks_ = std::make_shared<data::Dataset>(*p.dataset);
    } catch (const std::exception&) {
        marks_ = std::make_shared<data::Dataset>(*p.dataset);
    }
    row_of_record_.assign(marks_->images.size(), -1);
    for (std::size_t i = 0; i < preds.records.size(); ++i) row_of_record_[preds.records[i]] = static_cast<int>(i);
    gallery_model_->set_dataset(project_, marks_);
    {
        const QSignalBlocker block(class_box_);
        const int keep = class_box_->currentIndex();
        class_box_->clear();
        class_box_->addItem(tr("All classes"));
        for (const auto& c : marks_->classes) class_box_->addItem(QString::fromStdString(c));
        class_box_->setCurrentIndex(keep >= 0 && keep < class_box_->count() ? keep : 0);
    }
    export_button_->setEnabled(true);
    fill_confusion();
    fill_class_table();
    fill_summary();
    apply_view();
    Q_EMIT log(tr("Validation: %1 images, accuracy %2, log loss %3")
                   .arg(preds.records.size())
                   .arg(preds.accuracy(), 0, 'f', 4)
                   .arg(preds.log_loss(), 0, 'f', 4));
}

void InspectPage::fill_summary() {
    if (!predictions_.valid()) return;
    const auto& preds = *predictions_.predictions;
    QString text = tr("<b>%1</b> validation images · accuracy <b>%2</b> · log loss <b>%3</b> · %4%5")
                       .arg(preds.records.size())
                       .arg(preds.accuracy(), 0, 'f', 4)
                       .arg(preds.log_loss(), 0, 'f', 4)
                       .arg(predictions_.model)
                       .arg(predictions_.tta ? tr(", TTA ×%1").arg(predictions_.tta) : QString());
    if (marks_ && marks_->marked_count()) text += tr(" · %n image(s) marked by you", nullptr, static_cast<int>(marks_->marked_count()));
    // Multi-label data has no single "actual" class: the views below use each image's first
    // label and the most probable class, which is only a rough guide there.
    if (predictions_.dataset->multi_label)
        text += tr("<br><i>Multi-label dataset: the matrix and galleries compare each image's first label with its most "
                   "probable class.</i>");
    summary_->setText(text);
    stale_label_->setVisible(stale());
    stale_label_->setText(tr("The learner or the data changed since these predictions: predict again to see the current model."));
}

void InspectPage::fill_confusion() {
    confusion_->clear();
    if (!predictions_.valid()) return;
    const auto cm = predictions_.predictions->confusion_matrix(classes_);
    confusion_->setRowCount(classes_);
    confusion_->setColumnCount(classes_);
    QStringList names;
    for (int k = 0; k < classes_; ++k) names << class_name(k);
    confusion_->setHorizontalHeaderLabels(names);
    confusion_->setVerticalHeaderLabels(names);
    const bool norm = normalised_->isChecked();
    for (int a = 0; a < classes_; ++a) {
        int row_total = 0;
        for (int q = 0; q < classes_; ++q) row_total += cm[static_cast<std::size_t>(a)][static_cast<std::size_t>(q)];
        for (int q = 0; q < classes_; ++q) {
            const int n = cm[static_cast<std::size_t>(a)][static_cast<std::size_t>(q)];
            const double share = row_total ? static_cast<double>(n) / row_total : 0.0;
            auto* item = cell(norm ? QString("%1\n(%2)").arg(share, 0, 'f', 2).arg(n) : QString::number(n), Qt::AlignCenter);
            item->setData(Qt::UserRole, n);
            item->setToolTip(tr("%1 %2 image(s) predicted as %3 (%4% of %2)")
                                 .arg(n).arg(class_name(a), class_name(q)).arg(share * 100, 0, 'f', 1));
            // Heat: white to deep blue by the share of the actual class; mistakes in red.
            const int level = static_cast<int>(std::lround(share * 255));
            const QColor bg = a == q ? QColor(255 - level * 4 / 5, 255 - level * 3 / 5, 255) : QColor(255, 255 - level * 3 / 5, 255 - level * 3 / 5);
            item->setBackground(bg);
            item->setForeground(level > 150 ? QColor(Qt::white) : QColor(Qt::black));
            confusion_->setItem(a, q, item);
        }
    }
    confusion_->horizontalHeader()->setSectionResizeMode(classes_ <= 8 ? QHeaderView::Stretch : QHeaderView::ResizeToContents);
    confusion_->verticalHeader()->setSectionResizeMode(classes_ <= 8 ? QHeaderView::Stretch : QHeaderView::ResizeToContents);
}

void InspectPage::fill_class_table() {
    const auto m = predictions_.predictions->per_class(classes_);
    class_table_->setRowCount(classes_);
    QStringList names;
    for (int k = 0; k < classes_; ++k) {
        names << class_name(k);
        const auto& c = m[static_cast<std::size_t>(k)];
        class_table_->setItem(k, 0, cell(QString::number(c.precision, 'f', 3)));
        class_table_->setItem(k, 1, cell(QString::number(c.recall, 'f', 3)));
        class_table_->setItem(k, 2, cell(QString::number(c.support)));
        class_table_->setItem(k, 3, cell(QString::number(c.predicted)));
    }
    class_table_->setVerticalHeaderLabels(names);
}

void InspectPage::select_cell(int actual, int predicted) {
    if (!predictions_.valid() || actual < 0 || predicted < 0 || actual >= classes_ || predicted >= classes_) return;
    cell_actual_ = actual;
    cell_predicted_ = predicted;
    const QSignalBlocker b1(view_box_), b2(class_box_);
    view_box_->setCurrentIndex(ConfusionCell);
    class_box_->setCurrentIndex(actual + 1);
    apply_view();
}

void InspectPage::set_view(View view, int actual_class) {
    const QSignalBlocker b1(view_box_), b2(class_box_);
    view_box_->setCurrentIndex(view);
    class_box_->setCurrentIndex(actual_class + 1);
    apply_view();
}

void InspectPage::apply_view() {
    shown_.clear();
    if (!predictions_.valid()) {
        gallery_model_->set_records({});
        return;
    }
    const auto& p = *predictions_.predictions;
    const int view = view_box_->currentIndex();
    const int only = class_box_->currentIndex() - 1;
    if (view == ConfusionCell && cell_actual_ >= 0 && only != cell_actual_) cell_actual_ = only;
    std::vector<std::size_t> rows;
    for (std::size_t i = 0; i < p.records.size(); ++i) {
        const int a = p.actual[i], q = p.predicted[i];
        if (a < 0) continue;
        if (only >= 0 && a != only) continue;
        switch (view) {
            case MostConfidentMistakes: if (a == q) continue; break;
            case MostConfidentCorrect:
            case RandomCorrect: if (a != q) continue; break;
            case ConfusionCell: if (cell_actual_ < 0 || a != cell_actual_ || q != cell_predicted_) continue; break;
            default: break;
        }
        rows.push_back(i);
    }
    auto by_loss_desc = [&](std::size_t x, std::size_t y) { return p.losses[x] > p.losses[y]; };
    // Uncertainty: the margin between the two most probable classes (0.5/0.5 for two classes
    // is the most uncertain).
    auto margin = [&](std::size_t r) {
        float first = 0, second = 0;
        for (int k = 0; k < classes_; ++k) {
            const float v = probability(r, k);
            if (v > first) {
                second = first;
                first = v;
            } else if (v > second) {
                second = v;
            }
        }
        return first - second;
    };
    switch (view) {
        case MostConfidentMistakes:
        case AllByLoss:
        case ConfusionCell: std::stable_sort(rows.begin(), rows.end(), by_loss_desc); break;
        case MostConfidentCorrect:
            std::stable_sort(rows.begin(), rows.end(), [&](std::size_t x, std::size_t y) { return p.losses[x] < p.losses[y]; });
            break;
        case MostUncertain:
            std::stable_sort(rows.begin(), rows.end(), [&](std::size_t x, std::size_t y) { return margin(x) < margin(y); });
            break;
        case RandomCorrect: {
            Rng rng(derive_seed(shuffle_seed_, 0x1a5));
            for (std::size_t i = rows.size(); i > 1; --i)
                std::swap(rows[i - 1], rows[static_cast<std::size_t>(rng.uniform_int(0, static_cast<std::int64_t>(i) - 1))]);
            break;
        }
        default: break;
    }
    shown_ = rows;
    std::vector<std::size_t> records;
    records.reserve(rows.size());
    for (std::size_t r : rows) records.push_back(p.records[r]);
    gallery_model_->set_records(std::move(records));
    view_count_->setText(tr("%n image(s)", nullptr, static_cast<int>(rows.size())));
    if (overlay_->isChecked()) request_heatmaps();
}

void InspectPage::request_heatmaps() {
    if (!predictions_.valid() || shown_.empty()) return;
    std::vector<std::size_t> records;
    for (std::size_t r : shown_) records.push_back(predictions_.predictions->records[r]);
    if (heatmaps_->request(records)) overlay_note_->setText(tr("Computing heatmaps…"));
    else if (heatmaps_->waiting()) overlay_note_->setText(tr("Heatmaps wait for the learner (busy)…"));
}

QPixmap InspectPage::decorate(std::size_t record, const QPixmap& thumbnail) const {
    if (!overlay_->isChecked()) return thumbnail;
    const explain::ImageExplanation* e = heatmaps_->find(record);
    if (!e || e->maps.empty()) return thumbnail;
    return QPixmap::fromImage(overlay_image(thumbnail.toImage(), e->maps.front(), e->crop, heatmaps_->opacity()));
}

QString InspectPage::caption(std::size_t record) const {
    if (!marks_ || record >= row_of_record_.size() || row_of_record_[record] < 0) return {};
    const auto row = static_cast<std::size_t>(row_of_record_[record]);
    const auto& p = *predictions_.predictions;
    const int a = p.actual[row], q = p.predicted[row];
    QString text = a == q ? tr("%1 ✓").arg(class_name(a)) : tr("%1 → %2").arg(class_name(a), class_name(q));
    text += tr("\np=%1  loss %2").arg(probability(row, q), 0, 'f', 3).arg(p.losses[row], 0, 'f', 2);
    const auto& im = marks_->images[record];
    if (im.excluded) text += tr("\n[excluded]");
    else if (im.relabelled()) text += tr("\n[now %1]").arg(class_name(im.labels.empty() ? -1 : im.labels[0]));
    return text;
}

QColor InspectPage::tint(std::size_t record) const {
    if (!marks_ || record >= row_of_record_.size() || row_of_record_[record] < 0) return {};
    const auto& im = marks_->images[record];
    if (im.excluded || im.relabelled()) return QColor(200, 200, 200);
    const auto row = static_cast<std::size_t>(row_of_record_[record]);
    const auto& p = *predictions_.predictions;
    return p.actual[row] == p.predicted[row] ? QColor(215, 240, 215) : QColor(250, 215, 210);
}

QDialog* InspectPage::open_tile(int gallery_row) {
    if (gallery_row < 0 || static_cast<std::size_t>(gallery_row) >= shown_.size()) return nullptr;
    const std::size_t row = shown_[static_cast<std::size_t>(gallery_row)];
    const auto& p = *predictions_.predictions;
    const std::size_t record = p.records[row];
    const auto& im = marks_->images[record];
    const fs::path file = marks_->resolve(project_, im);

    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setObjectName("inspectImageDialog");
    dialog->setWindowTitle(QString::fromStdString(file.filename().string()));
    QImage image;
    QString info = tr("%1\n%2 × %3 px · actual %4 · predicted %5 · loss %6")
                       .arg(QString::fromStdString(file.string()))
                       .arg(im.width).arg(im.height)
                       .arg(class_name(p.actual[row]), class_name(p.predicted[row]))
                       .arg(p.losses[row], 0, 'f', 4);
    try {
        image = load_display_image(file).scaled(800, 800, Qt::KeepAspectRatio, Qt::SmoothTransformation);
    } catch (const std::exception& e) {
        info += "\n" + tr("cannot show it: %1").arg(QString::fromStdString(e.what()));
    }
    // The picture, or with the overlay on the heatmaps of the predicted class and of the
    // actual one (the runner-up when the prediction is right) side by side.
    auto* picture = new HeatmapView(image);
    picture->setObjectName("largeView");
    picture->set_opacity(heatmaps_->opacity());
    auto show_maps = [this, picture, record, row] {
        const auto classes = heatmaps_->classes_for(record);
        const explain::ImageExplanation* e = heatmaps_->find(record);
        const auto& pr = *predictions_.predictions;
        std::vector<QString> titles;
        for (std::size_t i = 0; i < classes.size(); ++i) {
            const int k = classes[i];
            const QString p_text = tr("p %1").arg(probability(row, k), 0, 'f', 3);
            if (i == 0) titles.push_back(tr("Why %1 — predicted (%2)").arg(class_name(k), p_text));
            else if (k == pr.actual[row]) titles.push_back(tr("What looked like %1 — actual (%2)").arg(class_name(k), p_text));
            else titles.push_back(tr("What looked like %1 — runner-up (%2)").arg(class_name(k), p_text));
        }
        picture->set_maps(e, titles);
        if (!picture->overlay()) picture->set_note({});
        else if (e && !e->error.empty()) picture->set_note(tr("No heatmap: %1").arg(QString::fromStdString(e->error)));
        else if (e)
            picture->set_note(predictions_.tta ? tr("Heatmaps of the plain view (the probabilities are with TTA)") : QString());
        else if (!heatmaps_->error().isEmpty()) picture->set_note(heatmaps_->error());
        else if (heatmaps_->running()) picture->set_note(tr("Computing the heatmaps…"));
        else if (heatmaps_->waiting()) picture->set_note(tr("The heatmaps wait for the learner (busy)…"));
    };
    connect(picture, &HeatmapView::overlay_toggled, dialog, [this, record, show_maps](bool on) {
        if (on && !heatmaps_->find(record)) heatmaps_->request({record});
        show_maps();
    });
    connect(picture, &HeatmapView::opacity_changed, heatmaps_, &HeatmapStore::set_opacity);
    connect(heatmaps_, &HeatmapStore::ready, dialog, show_maps);
    connect(heatmaps_, &HeatmapStore::failed, dialog, show_maps);
    show_maps();
    picture->set_overlay(overlay_->isChecked());
    auto* info_label = new QLabel(info);
    info_label->setObjectName("imageInfo");
    info_label->setTextInteractionFlags(Qt::TextSelectableByMouse);

    // Every class's probability, most probable first.
    auto* probs = new QTableWidget(classes_, 2);
    probs->setObjectName("classProbabilities");
    probs->setHorizontalHeaderLabels({tr("class"), tr("probability")});
    probs->verticalHeader()->setVisible(false);
    probs->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    probs->setEditTriggers(QAbstractItemView::NoEditTriggers);
    std::vector<int> order(static_cast<std::size_t>(classes_));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return probability(row, x) > probability(row, y); });
    for (int i = 0; i < classes_; ++i) {
        const int k = order[static_cast<std::size_t>(i)];
        QString name = class_name(k);
        if (k == p.actual[row]) name += tr("  (actual)");
        probs->setItem(i, 0, cell(name, Qt::AlignLeft | Qt::AlignVCenter));
        probs->setItem(i, 1, cell(QString::number(probability(row, k), 'f', 4)));
    }

    auto* state = new QLabel;
    state->setObjectName("markState");
    auto* exclude = new QPushButton(tr("&Exclude from training"));
    exclude->setObjectName("excludeButton");
    auto* relabel_box = new QComboBox;
    relabel_box->setObjectName("relabelBox");
    for (int k = 0; k < classes_; ++k) relabel_box->addItem(class_name(k));
    relabel_box->setCurrentIndex(p.predicted[row]);
    auto* relabel_button = new QPushButton(tr("Mark &mislabelled: it is"));
    relabel_button->setObjectName("relabelButton");
    auto* undo = new QPushButton(tr("&Undo marks"));
    undo->setObjectName("undoMarksButton");
    auto refresh = [this, record, state, exclude, undo] {
        const auto& m = marks_->images[record];
        // Say what the image is really used for: Inspect shows validation images (never trained on).
        QString s = image_use_text(m) + " · " + tr("label: %1").arg(class_name(m.labels.empty() ? -1 : m.labels[0]));
        if (m.excluded) s = tr("Excluded: the next fit leaves it out (the file is not touched).");
        else if (m.relabelled())
            s = tr("Relabelled from %1 to %2 for the next fit.").arg(class_name(m.original_labels[0]), class_name(m.labels[0]));
        state->setText(s);
        exclude->setEnabled(!m.excluded);
        undo->setEnabled(m.excluded || m.relabelled());
    };
    connect(exclude, &QPushButton::clicked, dialog, [this, record, refresh] {
        set_excluded(record, true);
        refresh();
    });
    connect(relabel_button, &QPushButton::clicked, dialog, [this, record, relabel_box, refresh] {
        relabel(record, relabel_box->currentIndex());
        refresh();
    });
    connect(undo, &QPushButton::clicked, dialog, [this, record, refresh] {
        clear_marks(record);
        refresh();
    });
    refresh();

    auto* marks_row = new QHBoxLayout;
    marks_row->addWidget(exclude);
    marks_row->addWidget(relabel_button);
    marks_row->addWidget(relabel_box);
    marks_row->addStretch(1);
    marks_row->addWidget(undo);
    auto* side = new QVBoxLayout;
    side->addWidget(probs, 1);
    auto* body = new QHBoxLayout;
    body->addWidget(picture, 3);
    body->addLayout(side, 1);
    auto* l = new QVBoxLayout(dialog);
    l->addLayout(body, 1);
    l->addWidget(info_label);
    l->addWidget(state);
    l->addLayout(marks_row);
    dialog->resize(1100, 680);
    dialog->show();
    return dialog;
}

bool InspectPage::save_marks(const std::function<bool(data::Dataset&)>& change, const QString& what) {
    if (!marks_) return false;
    try {
        // Marks write the project: not while another program does.
        const auto lock = project::ProjectLock::acquire(project_, "marks");
        // Change the manifest on disk (the current one: the Data page may have rebuilt it) and
        // our copy in the same way.
        data::Dataset on_disk = data::Dataset::load(project_);
        if (!change(on_disk)) throw UserError("the image is no longer in the dataset", "prepare the dataset again");
        on_disk.save(project_);
        change(*marks_);
    } catch (const std::exception& e) {
        QMessageBox::warning(this, tr("Cannot save the mark"), QString::fromStdString(e.what()));
        return false;
    }
    // The learner rereads the manifest (after a fit in progress, if any).
    QMetaObject::invokeMethod(train_->worker(), [w = train_->worker()] { w->reload_dataset(); }, Qt::QueuedConnection);
    gallery_model_->refresh_all();
    fill_summary();
    Q_EMIT log(what);
    Q_EMIT dataset_changed();
    return true;
}

bool InspectPage::set_excluded(std::size_t record, bool excluded) {
    if (!marks_ || record >= marks_->images.size()) return false;
    const std::string path = marks_->images[record].path;
    return save_marks([&](data::Dataset& d) { return d.set_excluded(path, excluded); },
                      (excluded ? tr("Excluded %1 from training") : tr("%1 is used for training again")).arg(QString::fromStdString(path)));
}

bool InspectPage::relabel(std::size_t record, int label) {
    if (!marks_ || record >= marks_->images.size()) return false;
    const std::string path = marks_->images[record].path;
    return save_marks([&](data::Dataset& d) { return d.relabel(path, {label}); },
                      tr("Marked %1 as mislabelled: it is %2").arg(QString::fromStdString(path), class_name(label)));
}

bool InspectPage::clear_marks(std::size_t record) {
    if (!marks_ || record >= marks_->images.size()) return false;
    const std::string path = marks_->images[record].path;
    return save_marks([&](data::Dataset& d) { return d.clear_marks(path); },
                      tr("Undid the marks of %1").arg(QString::fromStdString(path)));
}

void InspectPage::reload_marks() {
    if (!marks_) return;
    try {
        const data::Dataset on_disk = data::Dataset::load(project_);
        if (on_disk.images.size() != marks_->images.size()) return;
        *marks_ = on_disk;
    } catch (const std::exception&) {
        return;
    }
    gallery_model_->refresh_all();
    fill_summary();
}

bool InspectPage::export_mistakes(const QString& file) {
    if (!predictions_.valid()) return false;
    try {
        train::write_predictions_csv(file.toStdString(), project_, *predictions_.dataset, *predictions_.predictions, true);
    } catch (const std::exception& e) {
        QMessageBox::warning(this, tr("Cannot export"), QString::fromStdString(e.what()));
        return false;
    }
    Q_EMIT log(tr("Exported the mistakes to %1").arg(file));
    return true;
}

}  // namespace whisker::ui
