#pragma once
// The image browser: a thumbnail grid over a dataset's images, filtered by split and class.
//
// Model/view with uniform item sizes, so 25,000 images scroll smoothly; thumbnails are decoded
// on a thread pool (JPEGs reduced in the DCT domain) only when a row is shown, and kept in a
// bounded cache. Activating a tile opens the image large with its path, size and label; "What
// the model sees" shows the training transform applied to it a few times.

#include "whisker/data/dataset.h"
#include "whisker/data/transforms.h"

#include <QAbstractListModel>
#include <QCache>
#include <QDialog>
#include <QImage>
#include <QPixmap>
#include <QSet>
#include <QThreadPool>
#include <QWidget>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

class QCheckBox;
class QComboBox;
class QLabel;
class QListView;
class QPushButton;

namespace whisker::ui {

// Decodes an image for display (any format Whisker reads, EXIF orientation applied); throws
// on unreadable files.
QImage load_display_image(const std::filesystem::path& file);

// What an image is to training, in the words the large views show: "Training image",
// "Validation image — not trained on", "Test image (unlabelled)", or, for an image the user
// excluded, "Excluded by you: …". (The user's relabelling is described separately.)
QString image_use_text(const data::ImageRecord& image);

// Natural order of names: digit runs compare as numbers ("cat.2" < "cat.10"), letters without
// regard to case; ties fall back to plain byte order. Strict weak ordering.
bool natural_less(std::string_view a, std::string_view b);

// The side (px) of the learner PROJECT/learner.json describes, or nothing when the project
// has no learner or the file is damaged.
std::optional<int> learner_size_of(const std::filesystem::path& project);
// The training transform of the project's learner at `size` px (learner.json's "augment",
// "max_zoom", "no_flip"), or fastai's side-on default when it has none.
data::AugmentSettings learner_augmentation_of(const std::filesystem::path& project, int size);

class ThumbnailModel : public QAbstractListModel {
    Q_OBJECT
public:
    static constexpr int kThumbSize = 128;
    explicit ThumbnailModel(QObject* parent = nullptr);
    ~ThumbnailModel() override;

    void set_dataset(const std::filesystem::path& project, std::shared_ptr<const data::Dataset> dataset);
    // -1 = all; split: 0 train, 1 valid, 2 test. Excluded images are left out, unless
    // `marked_only`: then only the images the user excluded or relabelled are shown.
    // Rows are in natural order of file name (cat.2 before cat.10) within each folder, folders
    // in manifest order; the order is computed once per dataset, so a filter is one pass.
    void set_filter(int split, int label, bool marked_only = false);
    // Shows exactly these records, in this order (the Inspect page's galleries).
    void set_records(std::vector<std::size_t> records);
    // Optional per-record caption and tile colour (default: file name and label, no colour).
    void set_caption(std::function<QString(std::size_t record)> caption) { caption_ = std::move(caption); }
    void set_tint(std::function<QColor(std::size_t record)> tint) { tint_ = std::move(tint); }
    // Optional: draws over a decoded thumbnail (the Inspect page's "where it looked" overlay);
    // returns the thumbnail itself for records it has nothing to add to. Call refresh_all()
    // when what it draws changes.
    void set_decoration(std::function<QPixmap(std::size_t record, const QPixmap& thumbnail)> decoration) {
        decoration_ = std::move(decoration);
    }
    // Captions or tints changed (e.g. a mark was set): repaint every tile.
    void refresh_all();

    int rowCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role) const override;
    std::size_t record_at(int row) const { return rows_.at(static_cast<std::size_t>(row)); }
    std::filesystem::path path_at(int row) const;
    const data::Dataset* dataset() const { return dataset_.get(); }
    // Thumbnails decoded so far (tests wait for them).
    int thumbnails_ready() const { return ready_; }
    // Thumbnails asked for so far: only rows that were shown are ever decoded.
    int thumbnails_requested() const { return requested_; }
    void wait_for_thumbnails() { pool_.waitForDone(); }

Q_SIGNALS:
    void thumbnail_ready(int row);

private:
    void request(std::size_t record) const;
    void deliver(std::size_t record, const QImage& image, const QString& error);

    std::filesystem::path project_;
    std::shared_ptr<const data::Dataset> dataset_;
    void index_rows();
    std::function<QString(std::size_t)> caption_;
    std::function<QColor(std::size_t)> tint_;
    std::function<QPixmap(std::size_t, const QPixmap&)> decoration_;
    std::vector<std::size_t> rows_;
    std::vector<std::size_t> order_;   // every record, in display order (set_dataset)
    std::vector<int> row_of_record_;
    mutable QCache<std::size_t, QPixmap> cache_{3000};
    mutable QSet<std::size_t> pending_;
    QSet<std::size_t> failed_;
    mutable QThreadPool pool_;
    int ready_ = 0;
    mutable int requested_ = 0;
    std::uint64_t generation_ = 0;
};

class ImageBrowser : public QWidget {
    Q_OBJECT
public:
    explicit ImageBrowser(QWidget* parent = nullptr);
    void set_dataset(const std::filesystem::path& project, std::shared_ptr<const data::Dataset> dataset);
    ThumbnailModel* model() const { return model_; }
    QListView* view() const { return view_; }
    QComboBox* split_box() const { return split_; }
    QComboBox* class_box() const { return class_; }
    QCheckBox* marked_box() const { return marked_; }
    // Opens the large view of a row (what a click does). A marked image's view has "Undo marks".
    QDialog* open_row(int row);
    // The training transform applied to a row's image 8 times, at `model_size` px; 0 = the
    // size model_size() gives.
    QDialog* open_model_view(int row, int model_size = 0);
    // The side the model sees: set by set_model_size(), else the project's learner.json
    // (read when asked), else 224.
    int model_size() const;
    // The main window tells the browser the learner's size when it changes; 0 = back to
    // reading learner.json. Opening another project clears it.
    void set_model_size(int px) { model_size_override_ = px > 0 ? px : 0; }

Q_SIGNALS:
    // The user asked to take back the marks (exclusion, corrected label) of this image.
    void undo_marks_requested(const QString& path);

private:
    void apply_filter();
    void filter_changed();   // a user's change: applies it and scrolls back to the top
    std::filesystem::path project_;
    int model_size_override_ = 0;
    ThumbnailModel* model_;
    QListView* view_;
    QComboBox* split_;
    QComboBox* class_;
    QCheckBox* marked_;
    QLabel* count_;
    QPushButton* model_view_;
};

}  // namespace whisker::ui
