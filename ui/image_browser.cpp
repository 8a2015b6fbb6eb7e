#include "image_browser.h"

#include "whisker/common/random.h"
#include "whisker/data/image_decode.h"
#include "whisker/data/transforms.h"

#include <QCheckBox>
#include <QComboBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QListView>
#include <QPainter>
#include <QPushButton>
#include <QRunnable>
#include <QScrollArea>
#include <QVBoxLayout>

#include <QPointer>

namespace whisker::ui {

namespace {
QImage to_qimage(const cv::Mat& rgb) {
    return QImage(rgb.data, rgb.cols, rgb.rows, static_cast<int>(rgb.step), QImage::Format_RGB888).copy();
}
QImage thumbnail_of(const std::filesystem::path& file, int side) {
    data::DecodeOptions o;
    o.min_shorter_side = side;
    const data::DecodedImage img = data::decode_image_file(file, o);
    QImage q = to_qimage(img.rgb);
    return q.scaled(side, side, Qt::KeepAspectRatio, Qt::SmoothTransformation);
}
}  // namespace

QImage load_display_image(const std::filesystem::path& file) { return to_qimage(data::decode_image_file(file).rgb); }

ThumbnailModel::ThumbnailModel(QObject* parent) : QAbstractListModel(parent) {
    pool_.setMaxThreadCount(std::max(1, QThread::idealThreadCount()));
}

ThumbnailModel::~ThumbnailModel() {
    pool_.clear();
    pool_.waitForDone();
}

void ThumbnailModel::set_dataset(const std::filesystem::path& project, std::shared_ptr<const data::Dataset> dataset) {
    pool_.clear();
    pool_.waitForDone();
    beginResetModel();
    project_ = project;
    dataset_ = std::move(dataset);
    cache_.clear();
    pending_.clear();
    failed_.clear();
    ++generation_;
    rows_.clear();
    endResetModel();
    set_filter(-1, -1);
}

void ThumbnailModel::set_filter(int split, int label, bool marked_only) {
    beginResetModel();
    rows_.clear();
    if (dataset_) {
        for (std::size_t i = 0; i < dataset_->images.size(); ++i) {
            const auto& im = dataset_->images[i];
            if (marked_only ? !(im.excluded || im.relabelled()) : im.excluded) continue;
            if (split >= 0 && static_cast<int>(im.split) != split) continue;
            if (label >= 0 && std::find(im.labels.begin(), im.labels.end(), label) == im.labels.end()) continue;
            rows_.push_back(i);
        }
    }
    index_rows();
    endResetModel();
}

void ThumbnailModel::set_records(std::vector<std::size_t> records) {
    beginResetModel();
    rows_ = std::move(records);
    if (dataset_) {
        const std::size_t n = dataset_->images.size();
        rows_.erase(std::remove_if(rows_.begin(), rows_.end(), [n](std::size_t r) { return r >= n; }), rows_.end());
    }
    index_rows();
    endResetModel();
}

void ThumbnailModel::index_rows() {
    row_of_record_.assign(dataset_ ? dataset_->images.size() : 0, -1);
    for (std::size_t row = 0; row < rows_.size(); ++row) row_of_record_[rows_[row]] = static_cast<int>(row);
}

void ThumbnailModel::refresh_all() {
    if (!rows_.empty()) Q_EMIT dataChanged(index(0), index(static_cast<int>(rows_.size()) - 1));
}

int ThumbnailModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : static_cast<int>(rows_.size()); }

std::filesystem::path ThumbnailModel::path_at(int row) const {
    return dataset_->resolve(project_, dataset_->images.at(record_at(row)));
}

QVariant ThumbnailModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || !dataset_) return {};
    const std::size_t record = record_at(index.row());
    const auto& im = dataset_->images[record];
    switch (role) {
        case Qt::DisplayRole: {
            if (caption_) return caption_(record);
            QString label = im.labels.empty() ? tr("test") : QString::fromStdString(dataset_->classes[static_cast<std::size_t>(im.labels[0])]);
            if (im.excluded) label += tr(" [excluded]");
            else if (im.relabelled()) label += tr(" [corrected]");
            return QString::fromStdString(std::filesystem::path(im.path).filename().string()) + "\n" + label;
        }
        case Qt::ToolTipRole:
            return QString("%1\n%2 × %3 px, %4").arg(QString::fromStdString(im.path)).arg(im.width).arg(im.height)
                .arg(QString::fromStdString(data::split_name(im.split)));
        case Qt::DecorationRole: {
            if (QPixmap* p = cache_.object(record)) return *p;
            if (!failed_.contains(record)) request(record);
            QPixmap placeholder(kThumbSize, kThumbSize);
            placeholder.fill(QColor(128, 128, 128, 40));
            return placeholder;
        }
        case Qt::BackgroundRole:
            if (tint_) {
                const QColor c = tint_(record);
                if (c.isValid()) return c;
            }
            return {};
        case Qt::SizeHintRole: return QSize(kThumbSize + 16, kThumbSize + (caption_ ? 56 : 40));
        default: return {};
    }
}

void ThumbnailModel::request(std::size_t record) const {
    if (pending_.contains(record)) return;
    pending_.insert(record);
    ++requested_;
    const std::filesystem::path file = dataset_->resolve(project_, dataset_->images[record]);
    const std::uint64_t gen = generation_;
    auto* self = const_cast<ThumbnailModel*>(this);
    QPointer<ThumbnailModel> guard(self);
    pool_.start([guard, file, record, gen] {
        QImage image;
        QString error;
        try {
            image = thumbnail_of(file, kThumbSize);
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        }
        QMetaObject::invokeMethod(guard, [guard, record, image, error, gen] {
            if (guard && guard->generation_ == gen) guard->deliver(record, image, error);
        }, Qt::QueuedConnection);
    });
}

void ThumbnailModel::deliver(std::size_t record, const QImage& image, const QString& error) {
    pending_.remove(record);
    if (error.isEmpty()) cache_.insert(record, new QPixmap(QPixmap::fromImage(image)));
    else failed_.insert(record);
    ++ready_;
    const int row = record < row_of_record_.size() ? row_of_record_[record] : -1;
    if (row >= 0) {
        const QModelIndex idx = index(row);
        Q_EMIT dataChanged(idx, idx, {Qt::DecorationRole});
        Q_EMIT thumbnail_ready(row);
    }
}

ImageBrowser::ImageBrowser(QWidget* parent) : QWidget(parent) {
    model_ = new ThumbnailModel(this);
    view_ = new QListView;
    view_->setObjectName("imageGrid");
    view_->setViewMode(QListView::IconMode);
    view_->setUniformItemSizes(true);
    view_->setLayoutMode(QListView::Batched);
    view_->setBatchSize(200);
    view_->setResizeMode(QListView::Adjust);
    view_->setMovement(QListView::Static);
    view_->setIconSize(QSize(ThumbnailModel::kThumbSize, ThumbnailModel::kThumbSize));
    view_->setSpacing(4);
    view_->setWordWrap(true);
    view_->setModel(model_);
    split_ = new QComboBox;
    split_->addItems({tr("All splits"), tr("train"), tr("valid"), tr("test")});
    class_ = new QComboBox;
    marked_ = new QCheckBox(tr("Only marked by you"));
    marked_->setObjectName("markedOnly");
    marked_->setToolTip(tr("Images excluded or relabelled on the Inspect page; open one to undo its marks"));
    count_ = new QLabel;
    auto* model_view = new QPushButton(tr("What the model sees…"));
    model_view->setToolTip(tr("The training transform (zoom, rotation, lighting, flip, crop) applied to the selected image"));
    auto* bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("Show")));
    bar->addWidget(split_);
    bar->addWidget(class_);
    bar->addWidget(marked_);
    bar->addWidget(count_, 1);
    bar->addWidget(model_view);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(bar);
    layout->addWidget(view_, 1);
    connect(split_, &QComboBox::currentIndexChanged, this, &ImageBrowser::apply_filter);
    connect(class_, &QComboBox::currentIndexChanged, this, &ImageBrowser::apply_filter);
    connect(marked_, &QCheckBox::toggled, this, &ImageBrowser::apply_filter);
    connect(view_, &QListView::activated, this, [this](const QModelIndex& i) { open_row(i.row()); });
    connect(model_view, &QPushButton::clicked, this, [this] {
        const QModelIndex i = view_->currentIndex();
        open_model_view(i.isValid() ? i.row() : 0);
    });
}

void ImageBrowser::set_dataset(const std::filesystem::path& project, std::shared_ptr<const data::Dataset> dataset) {
    project_ = project;
    const QSignalBlocker block(class_);
    class_->clear();
    class_->addItem(tr("All classes"));
    for (const auto& c : dataset->classes) class_->addItem(QString::fromStdString(c));
    model_->set_dataset(project, std::move(dataset));
    apply_filter();
}

void ImageBrowser::apply_filter() {
    model_->set_filter(split_->currentIndex() - 1, class_->currentIndex() - 1, marked_->isChecked());
    count_->setText(tr("%n image(s)", nullptr, model_->rowCount()));
}

QDialog* ImageBrowser::open_row(int row) {
    if (row < 0 || row >= model_->rowCount()) return nullptr;
    const auto& d = *model_->dataset();
    const auto& im = d.images[model_->record_at(row)];
    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setWindowTitle(QString::fromStdString(std::filesystem::path(im.path).filename().string()));
    auto* picture = new QLabel;
    picture->setAlignment(Qt::AlignCenter);
    QString label = im.labels.empty() ? tr("(unlabelled test image)") : QString();
    for (int l : im.labels) label += (label.isEmpty() ? "" : ", ") + QString::fromStdString(d.classes[static_cast<std::size_t>(l)]);
    QString text = tr("%1\n%2 × %3 px · %4 · %5").arg(QString::fromStdString(model_->path_at(row).string()))
                       .arg(im.width).arg(im.height).arg(QString::fromStdString(data::split_name(im.split)), label);
    try {
        const QImage q = to_qimage(data::decode_image_file(model_->path_at(row)).rgb);
        picture->setPixmap(QPixmap::fromImage(q.scaled(800, 600, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
    } catch (const std::exception& e) {
        text += "\n" + tr("cannot show it: %1").arg(QString::fromStdString(e.what()));
    }
    auto* info = new QLabel(text);
    info->setObjectName("imageInfo");
    info->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* l = new QVBoxLayout(dialog);
    l->addWidget(picture, 1);
    l->addWidget(info);
    if (im.excluded || im.relabelled()) {
        QString mark = im.excluded ? tr("Excluded by you: training leaves it out.") : QString();
        if (im.relabelled())
            mark += (mark.isEmpty() ? "" : " ") + tr("Relabelled by you (the source said %1).")
                        .arg(QString::fromStdString(d.classes[static_cast<std::size_t>(im.original_labels.at(0))]));
        auto* row = new QHBoxLayout;
        auto* mark_label = new QLabel(mark);
        mark_label->setObjectName("markState");
        auto* undo = new QPushButton(tr("&Undo marks"));
        undo->setObjectName("undoMarksButton");
        const QString path = QString::fromStdString(im.path);
        connect(undo, &QPushButton::clicked, dialog, [this, dialog, path] {
            Q_EMIT undo_marks_requested(path);
            dialog->close();
        });
        row->addWidget(mark_label, 1);
        row->addWidget(undo);
        l->addLayout(row);
    }
    dialog->show();
    return dialog;
}

QDialog* ImageBrowser::open_model_view(int row, int model_size) {
    if (row < 0 || row >= model_->rowCount()) return nullptr;
    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setWindowTitle(tr("What the model sees (training transform, %1 px)").arg(model_size));
    auto* grid = new QGridLayout(dialog);
    try {
        const cv::Mat rgb = data::decode_image_file(model_->path_at(row)).rgb;
        const data::AugmentSettings s = data::AugmentSettings::side_on(model_size);
        Rng rng(derive_seed(static_cast<std::uint64_t>(row), 0x5ee));
        for (int k = 0; k < 8; ++k) {
            const cv::Mat view = data::training_transform_preview(rgb, s, data::draw_augmentation(s, rng));
            auto* tile = new QLabel;
            tile->setObjectName("augmentedSample");
            tile->setPixmap(QPixmap::fromImage(to_qimage(view).scaled(180, 180, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
            grid->addWidget(tile, k / 4, k % 4);
        }
    } catch (const std::exception& e) {
        grid->addWidget(new QLabel(tr("cannot show it: %1").arg(QString::fromStdString(e.what()))), 0, 0);
    }
    dialog->show();
    return dialog;
}

}  // namespace whisker::ui
