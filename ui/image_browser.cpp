#include "image_browser.h"

#include "whisker/common/files.h"
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
#include <QScreen>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <unordered_map>

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

QString image_use_text(const data::ImageRecord& im) {
    if (im.excluded) {
        switch (im.split) {
            case data::Split::Train: return QObject::tr("Excluded by you (training image): the next fit leaves it out.");
            case data::Split::Valid: return QObject::tr("Excluded by you (validation image): left out of the validation metrics.");
            case data::Split::Test: return QObject::tr("Excluded by you (test image).");
        }
    }
    switch (im.split) {
        case data::Split::Train: return QObject::tr("Training image");
        case data::Split::Valid: return QObject::tr("Validation image — not trained on");
        case data::Split::Test:
            return im.labels.empty() ? QObject::tr("Test image (unlabelled)") : QObject::tr("Test image — not trained on");
    }
    return {};
}

bool natural_less(std::string_view a, std::string_view b) {
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    const auto lower = [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return static_cast<unsigned char>(u >= 'A' && u <= 'Z' ? u - 'A' + 'a' : u);
    };
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (digit(a[i]) && digit(b[j])) {
            // Compare the numbers: skip leading zeros, then the longer run is larger, then digits.
            std::size_t i0 = i, j0 = j;
            while (i0 < a.size() && a[i0] == '0') ++i0;
            while (j0 < b.size() && b[j0] == '0') ++j0;
            std::size_t i1 = i0, j1 = j0;
            while (i1 < a.size() && digit(a[i1])) ++i1;
            while (j1 < b.size() && digit(b[j1])) ++j1;
            if (i1 - i0 != j1 - j0) return i1 - i0 < j1 - j0;
            const int c = a.substr(i0, i1 - i0).compare(b.substr(j0, j1 - j0));
            if (c != 0) return c < 0;
            i = i1;
            j = j1;
            continue;
        }
        const unsigned char x = lower(a[i]), y = lower(b[j]);
        if (x != y) return x < y;
        ++i;
        ++j;
    }
    if ((i < a.size()) != (j < b.size())) return j < b.size();   // a prefix comes first
    return a < b;   // equal but for case or leading zeros
}

std::optional<int> learner_size_of(const std::filesystem::path& project) {
    if (project.empty()) return std::nullopt;
    const std::filesystem::path file = project / "learner.json";
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) return std::nullopt;
    try {
        const auto j = nlohmann::json::parse(read_file(file));
        const int size = j.value("size", 224);
        if (size > 0) return size;
    } catch (const std::exception&) {
        // A damaged learner.json: the Train page reports it; here the default size serves.
    }
    return std::nullopt;
}

data::AugmentSettings learner_augmentation_of(const std::filesystem::path& project, int size) {
    data::AugmentSettings s = data::AugmentSettings::side_on(size);
    std::error_code ec;
    if (project.empty() || !std::filesystem::is_regular_file(project / "learner.json", ec)) return s;
    try {
        const auto j = nlohmann::json::parse(read_file(project / "learner.json"));
        const auto preset = data::parse_augment_preset(j.value("augment", std::string("side-on")));
        if (!preset) return s;
        data::AugmentSettings a = data::AugmentSettings::for_preset(*preset, size, j.value("max_zoom", data::default_max_zoom(*preset)),
                                                                    j.value("no_flip", false));
        a.trivial_augment = j.value("trivial_augment", false);
        a.random_erasing = j.value("random_erasing", 0.0);
        return a;
    } catch (const std::exception&) {
        return s;   // a damaged learner.json: the Train page says so
    }
}

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
    // Display order, once per dataset: folders in manifest order (train/ before test/), file
    // names within a folder in natural order.
    order_.clear();
    if (dataset_) {
        const auto& images = dataset_->images;
        const std::size_t n = images.size();
        std::vector<int> folder(n);
        std::vector<std::string_view> name(n);
        std::unordered_map<std::string_view, int> folder_rank;
        for (std::size_t i = 0; i < n; ++i) {
            const std::string_view p = images[i].path;
            const std::size_t slash = p.find_last_of("/\\");
            const std::string_view dir = slash == std::string_view::npos ? std::string_view{} : p.substr(0, slash);
            name[i] = slash == std::string_view::npos ? p : p.substr(slash + 1);
            folder[i] = folder_rank.emplace(dir, static_cast<int>(folder_rank.size())).first->second;
        }
        order_.resize(n);
        for (std::size_t i = 0; i < n; ++i) order_[i] = i;
        std::stable_sort(order_.begin(), order_.end(), [&](std::size_t x, std::size_t y) {
            if (folder[x] != folder[y]) return folder[x] < folder[y];
            return natural_less(name[x], name[y]);
        });
    }
    endResetModel();
    set_filter(-1, -1);
}

void ThumbnailModel::set_filter(int split, int label, bool marked_only) {
    beginResetModel();
    rows_.clear();
    if (dataset_) {
        for (const std::size_t i : order_) {
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
            if (QPixmap* p = cache_.object(record)) return decoration_ ? decoration_(record, *p) : *p;
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
    auto* model_view = model_view_ = new QPushButton(tr("What the model sees…"));
    model_view->setObjectName("modelViewButton");
    model_view->setToolTip(tr("The training transform (zoom, rotation, lighting, flip, crop) applied to the selected "
                              "image, at the size of the project's learner"));
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
    connect(split_, &QComboBox::currentIndexChanged, this, &ImageBrowser::filter_changed);
    connect(class_, &QComboBox::currentIndexChanged, this, &ImageBrowser::filter_changed);
    connect(marked_, &QCheckBox::toggled, this, &ImageBrowser::filter_changed);
    connect(view_, &QListView::activated, this, [this](const QModelIndex& i) { open_row(i.row()); });
    connect(model_view, &QPushButton::clicked, this, [this] {
        const QModelIndex i = view_->currentIndex();
        open_model_view(i.isValid() ? i.row() : 0);
    });
}

void ImageBrowser::set_dataset(const std::filesystem::path& project, std::shared_ptr<const data::Dataset> dataset) {
    const bool same_project = project == project_;
    if (!same_project) model_size_override_ = 0;   // the size told belonged to the other project's learner
    project_ = project;
    if (!dataset) dataset = std::make_shared<const data::Dataset>();
    // The same project reread (a mark was undone): keep the class the user was looking at.
    const QString shown_class = same_project && class_->currentIndex() > 0 ? class_->currentText() : QString();
    {
        const QSignalBlocker block(class_);
        class_->clear();
        class_->addItem(tr("All classes"));
        for (const auto& c : dataset->classes) class_->addItem(QString::fromStdString(c));
        if (!shown_class.isEmpty()) class_->setCurrentIndex(std::max(0, class_->findText(shown_class)));
    }
    if (!same_project) {
        const QSignalBlocker block_split(split_);
        const QSignalBlocker block_marked(marked_);
        split_->setCurrentIndex(0);
        marked_->setChecked(false);
    }
    model_->set_dataset(project, std::move(dataset));
    apply_filter();
    if (!same_project) view_->scrollToTop();
}

void ImageBrowser::apply_filter() {
    model_->set_filter(split_->currentIndex() - 1, class_->currentIndex() - 1, marked_->isChecked());
    count_->setText(tr("%n image(s)", nullptr, model_->rowCount()));
    model_view_->setEnabled(model_->rowCount() > 0);
}

void ImageBrowser::filter_changed() {
    apply_filter();
    view_->scrollToTop();
}

int ImageBrowser::model_size() const {
    if (model_size_override_ > 0) return model_size_override_;
    return learner_size_of(project_).value_or(224);
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
    QString label = im.labels.empty() ? tr("no label") : QString();
    for (int l : im.labels) label += (label.isEmpty() ? "" : ", ") + QString::fromStdString(d.classes[static_cast<std::size_t>(l)]);
    QString text = tr("%1\n%2 × %3 px · %4").arg(QString::fromStdString(model_->path_at(row).string()))
                       .arg(im.width).arg(im.height).arg(label);
    // The picture fits the screen with room for the text below it (a 1280×720 screen too).
    QSize fit(800, 600);
    if (const QScreen* screen = this->screen()) {
        const QRect avail = screen->availableGeometry();
        fit = fit.boundedTo(QSize(std::max(200, avail.width() - 80), std::max(150, avail.height() - 220)));
    }
    try {
        const QImage q = to_qimage(data::decode_image_file(model_->path_at(row)).rgb);
        picture->setPixmap(QPixmap::fromImage(q.scaled(fit, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
    } catch (const std::exception& e) {
        text += "\n" + tr("cannot show it: %1").arg(QString::fromStdString(e.what()));
    }
    auto* info = new QLabel(text);
    info->setObjectName("imageInfo");
    info->setWordWrap(true);
    info->setTextInteractionFlags(Qt::TextSelectableByMouse);
    // What the image is to training: its split, or the user's exclusion; and a relabelling.
    QString use = image_use_text(im);
    if (im.relabelled())
        use += " · " + tr("Relabelled by you (the source said %1).")
                           .arg(QString::fromStdString(d.classes[static_cast<std::size_t>(im.original_labels.at(0))]));
    auto* use_label = new QLabel(use);
    use_label->setObjectName("markState");
    use_label->setWordWrap(true);
    QFont bold = use_label->font();
    bold.setBold(true);
    use_label->setFont(bold);
    auto* l = new QVBoxLayout(dialog);
    l->addWidget(picture, 1);
    l->addWidget(info);
    auto* state_row = new QHBoxLayout;
    state_row->addWidget(use_label, 1);
    if (im.excluded || im.relabelled()) {
        auto* undo = new QPushButton(tr("&Undo marks"));
        undo->setObjectName("undoMarksButton");
        const QString path = QString::fromStdString(im.path);
        connect(undo, &QPushButton::clicked, dialog, [this, dialog, path] {
            Q_EMIT undo_marks_requested(path);
            dialog->close();
        });
        state_row->addWidget(undo);
    }
    l->addLayout(state_row);
    dialog->show();
    return dialog;
}

QDialog* ImageBrowser::open_model_view(int row, int model_size) {
    if (row < 0 || row >= model_->rowCount()) return nullptr;
    const bool told = model_size > 0 || model_size_override_ > 0;
    const std::optional<int> from_learner = told ? std::nullopt : learner_size_of(project_);
    if (model_size <= 0) model_size = this->model_size();
    const auto& im = model_->dataset()->images[model_->record_at(row)];
    auto* dialog = new QDialog(this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setWindowTitle(tr("What the model sees: %1 (training transform, %2 px)")
                               .arg(QString::fromStdString(std::filesystem::path(im.path).filename().string()))
                               .arg(model_size));
    auto* layout = new QVBoxLayout(dialog);
    auto* note = new QLabel(told || from_learner
                                ? tr("Eight draws of the training transform at %1 px, the size of the project's learner.").arg(model_size)
                                : tr("Eight draws of the training transform at %1 px: the project has no learner yet, so "
                                     "this is the default size.").arg(model_size));
    note->setObjectName("modelViewNote");
    note->setWordWrap(true);
    layout->addWidget(note);
    auto* grid = new QGridLayout;
    layout->addLayout(grid);
    // Tiles show the model's pixels: a small size is enlarged by a whole factor without
    // smoothing (a 64-px learner's tiles are 128 px of visible pixels), a large one shrunk to 180.
    const int scale = model_size < 180 ? std::max(1, 180 / model_size) : 0;
    const int tile_side = scale ? model_size * scale : 180;
    try {
        const cv::Mat rgb = data::decode_image_file(model_->path_at(row)).rgb;
        const data::AugmentSettings s = learner_augmentation_of(project_, model_size);
        note->setText(note->text() + " " + tr("Augmentation: %1.").arg(QString::fromStdString(
                                                 data::describe_augmentation(s.preset, s.max_zoom, s.no_flip, s.trivial_augment, s.random_erasing))));
        Rng rng(derive_seed(static_cast<std::uint64_t>(model_->record_at(row)), 0x5ee));
        for (int k = 0; k < 8; ++k) {
            const cv::Mat view = data::training_transform_preview(rgb, s, data::draw_augmentation(s, rng));
            auto* tile = new QLabel;
            tile->setObjectName("augmentedSample");
            tile->setAlignment(Qt::AlignCenter);
            const QImage q = to_qimage(view);
            const Qt::TransformationMode mode = scale ? Qt::FastTransformation : Qt::SmoothTransformation;
            tile->setPixmap(QPixmap::fromImage(q.scaled(tile_side, tile_side, Qt::KeepAspectRatio, mode)));
            tile->setToolTip(tr("%1 × %2 px as the model gets it").arg(view.cols).arg(view.rows));
            grid->addWidget(tile, k / 4, k % 4);
        }
    } catch (const std::exception& e) {
        grid->addWidget(new QLabel(tr("cannot show it: %1").arg(QString::fromStdString(e.what()))), 0, 0);
    }
    dialog->show();
    return dialog;
}

}  // namespace whisker::ui
