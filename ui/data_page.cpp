#include "data_page.h"

#include "whisker/data/report.h"

#include "image_browser.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTabWidget>
#include <QLabel>
#include <QPlainTextEdit>
#include <QSplitter>
#include <QTableWidget>
#include <QToolButton>
#include <QVBoxLayout>

namespace whisker::ui {

namespace {
QTableWidgetItem* number_item(std::size_t n) {
    auto* item = new QTableWidgetItem(QString::number(static_cast<qulonglong>(n)));
    item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return item;
}
}  // namespace

DataPage::DataPage(QWidget* parent) : QWidget(parent) {
    heading_ = new QLabel(tr("No project open"));
    QFont f = heading_->font();
    f.setPointSizeF(f.pointSizeF() * 1.4);
    f.setBold(true);
    heading_->setFont(f);
    details_ = new QLabel(tr("Open a project folder (File ▸ Open project…), start a new one in an empty folder "
                             "(File ▸ New project…), or try the built-in sample competition "
                             "(File ▸ Open sample project…)."));
    details_->setObjectName("dataDetails");
    details_->setWordWrap(true);
    details_->setTextInteractionFlags(Qt::TextSelectableByMouse);

    counts_ = new QTableWidget(0, 3);
    counts_->setObjectName("countsTable");
    counts_->setHorizontalHeaderLabels({tr("train"), tr("valid"), tr("test")});
    counts_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    counts_->setEditTriggers(QAbstractItemView::NoEditTriggers);

    skipped_ = new QTableWidget(0, 2);
    skipped_->setObjectName("skippedTable");
    skipped_->setHorizontalHeaderLabels({tr("Skipped file"), tr("Reason")});
    skipped_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Interactive);
    skipped_->horizontalHeader()->setStretchLastSection(true);
    skipped_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    skipped_->setSelectionBehavior(QAbstractItemView::SelectRows);

    warnings_ = new QPlainTextEdit;
    warnings_->setReadOnly(true);
    warnings_->setMaximumHeight(90);
    warnings_->setPlaceholderText(tr("No warnings"));

    auto* counts_box = new QWidget;
    auto* cl = new QVBoxLayout(counts_box);
    cl->setContentsMargins(0, 0, 0, 0);
    cl->addWidget(new QLabel(tr("<b>Images per class and split</b>")));
    cl->addWidget(counts_);
    auto* skipped_box = new QWidget;
    auto* sl = new QVBoxLayout(skipped_box);
    sl->setContentsMargins(0, 0, 0, 0);
    sl->addWidget(new QLabel(tr("<b>Warnings</b>")));
    sl->addWidget(warnings_);
    sl->addWidget(new QLabel(tr("<b>Files left out, and why</b>")));
    sl->addWidget(skipped_);

    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(counts_box);
    split->addWidget(skipped_box);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);

    // ---- get data ----
    competition_ = new QLineEdit;
    competition_->setObjectName("competitionEdit");
    competition_->setPlaceholderText("dogs-vs-cats-redux-kernels-edition");
    download_ = new QPushButton(tr("&Download from Kaggle"));
    source_ = new QLineEdit;
    source_->setObjectName("sourceEdit");
    source_->setPlaceholderText(tr("a folder (train/<class>/…), Kaggle zips, or a labels CSV"));
    auto* browse_folder = new QPushButton(tr("Folder…"));
    auto* browse_file = new QPushButton(tr("Zip / CSV…"));
    split_mode_ = new QComboBox;
    split_mode_->addItems({tr("fraction of each class"), tr("images per class")});
    valid_frac_ = new QDoubleSpinBox;
    valid_frac_->setRange(0.0, 0.9);
    valid_frac_->setSingleStep(0.05);
    valid_frac_->setValue(0.2);
    valid_per_class_ = new QSpinBox;
    valid_per_class_->setRange(0, 1000000);
    valid_per_class_->setValue(2000);
    valid_per_class_->setVisible(false);
    seed_ = new QSpinBox;
    seed_->setRange(0, 1000000);
    seed_->setValue(42);
    prepare_ = new QPushButton(tr("&Prepare dataset"));
    prepare_->setObjectName("prepareButton");
    download_->setObjectName("downloadButton");
    download_->setToolTip(tr("Downloads the competition's files into PROJECT/download and prepares the dataset "
                             "(needs your Kaggle API token, ~/.kaggle/kaggle.json)"));
    prepare_->setToolTip(tr("Reads the images of the local data, checks every file and splits off a validation set"));
    get_box_ = new QGroupBox(tr("Get data"));
    get_box_->setObjectName("getDataBox");
    auto* get = get_box_;
    auto* gl = new QFormLayout(get);
    gl->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
    auto* kaggle_row = new QHBoxLayout;
    kaggle_row->addWidget(competition_, 1);
    kaggle_row->addWidget(download_);
    gl->addRow(tr("Kaggle competition"), kaggle_row);
    auto* source_row = new QHBoxLayout;
    source_row->addWidget(source_, 1);
    source_row->addWidget(browse_folder);
    source_row->addWidget(browse_file);
    gl->addRow(tr("Or local data"), source_row);
    auto* split_row = new QHBoxLayout;
    split_row->addWidget(split_mode_);
    split_row->addWidget(valid_frac_);
    split_row->addWidget(valid_per_class_);
    split_row->addWidget(new QLabel(tr("seed")));
    split_row->addWidget(seed_);
    split_row->addStretch(1);
    split_row->addWidget(prepare_);
    gl->addRow(tr("Validation split"), split_row);
    split_mode_->setToolTip(tr("How many training images are kept aside to validate on (used by Download and Prepare; "
                               "a source with its own valid/ folder keeps it)"));
    connect(split_mode_, &QComboBox::currentIndexChanged, this, [this](int mode) {
        valid_frac_->setVisible(mode == 0);
        valid_per_class_->setVisible(mode == 1);
    });
    connect(browse_folder, &QPushButton::clicked, this, [this] {
        const QString d = QFileDialog::getExistingDirectory(this, tr("Data folder"));
        if (!d.isEmpty()) source_->setText(d);
    });
    connect(browse_file, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Kaggle zip or labels CSV"), {}, tr("Data (*.zip *.csv)"));
        if (!f.isEmpty()) source_->setText(f);
    });
    connect(download_, &QPushButton::clicked, this, [this] {
        if (!competition_->text().trimmed().isEmpty()) Q_EMIT download_requested(competition_->text().trimmed());
    });
    connect(prepare_, &QPushButton::clicked, this, [this] {
        if (source_->text().trimmed().isEmpty()) return;
        Q_EMIT prepare_requested(request_for(source_->text().trimmed()));
    });

    browser_ = new ImageBrowser;
    connect(browser_, &ImageBrowser::undo_marks_requested, this, &DataPage::undo_marks_requested);
    tabs_ = new QTabWidget;
    tabs_->addTab(split, tr("Summary"));
    tabs_->addTab(browser_, tr("Images"));

    other_data_ = new QToolButton;
    other_data_->setObjectName("otherDataButton");
    other_data_->setText(tr("Get other data…"));
    other_data_->setToolTip(tr("Download or prepare the dataset again (your marks are kept)"));
    other_data_->setCheckable(true);
    other_data_->setVisible(false);
    connect(other_data_, &QToolButton::toggled, get_box_, &QWidget::setVisible);

    auto* head_row = new QHBoxLayout;
    head_row->addWidget(heading_, 1);
    head_row->addWidget(other_data_);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(head_row);
    layout->addWidget(details_);
    layout->addWidget(get);
    layout->addWidget(tabs_, 1);
    layout->addStretch(0);   // takes the room while the tabs are hidden (no dataset)
    // No project yet: nothing to get data into.
    get_box_->setEnabled(false);
    tabs_->setVisible(false);
    set_busy(false);
}

void DataPage::set_project(const std::filesystem::path& project) {
    if (project == project_) return;
    project_ = project;
    const QSignalBlocker block(other_data_);
    other_data_->setChecked(false);
}

void DataPage::set_model_size(int px) { browser_->set_model_size(px); }

PrepareRequest DataPage::request_for(const QString& source) const {
    PrepareRequest r;
    r.source = source;
    if (split_mode_->currentIndex() == 0) r.valid_frac = valid_frac_->value();
    else r.valid_per_class = valid_per_class_->value();
    r.seed = static_cast<std::uint64_t>(seed_->value());
    return r;
}

void DataPage::set_busy(bool busy) {
    download_->setEnabled(!busy);
    prepare_->setEnabled(!busy);
}

void DataPage::show_no_dataset(const std::filesystem::path& project, const QString& problem) {
    set_project(project);
    heading_->setText(QString::fromStdString(project.filename().string()));
    details_->setTextFormat(Qt::PlainText);
    if (problem.isEmpty())
        details_->setText(tr("This folder has no dataset yet: get the images from Kaggle or a local folder/zip/CSV below."));
    else
        details_->setText(tr("The dataset of this folder cannot be read (%1). Get the images again from Kaggle or a "
                             "local folder/zip/CSV below.")
                              .arg(problem));
    // The source controls are the page now: shown, enabled, nothing empty below them.
    other_data_->setVisible(false);
    get_box_->setTitle(tr("Get the images"));
    get_box_->setEnabled(true);
    get_box_->setVisible(true);
    tabs_->setVisible(false);
    if (competition_->text().isEmpty() && source_->text().isEmpty()) competition_->setFocus(Qt::OtherFocusReason);
    counts_->setRowCount(0);
    skipped_->setRowCount(0);
    warnings_->clear();
    browser_->set_dataset(project, std::make_shared<const data::Dataset>());
}

void DataPage::show_dataset(const std::filesystem::path& project, const data::Dataset& d) {
    set_project(project);
    const data::DatasetSummary s = data::summarize(d);
    heading_->setText(QString::fromStdString(project.filename().string()));
    details_->setTextFormat(Qt::PlainText);
    // The dataset is the page now; getting other data is one click away.
    get_box_->setTitle(tr("Get other data (prepared again, your marks kept)"));
    get_box_->setEnabled(true);
    other_data_->setVisible(true);
    get_box_->setVisible(other_data_->isChecked());
    tabs_->setVisible(true);
    QString size_text;
    if (s.sizes.count)
        size_text = tr("Image sizes: %1×%2 to %3×%4 px (median %5×%6).")
                        .arg(s.sizes.min_width).arg(s.sizes.min_height).arg(s.sizes.max_width)
                        .arg(s.sizes.max_height).arg(s.sizes.median_width).arg(s.sizes.median_height);
    details_->setText(tr("%1 classes · %2 train · %3 valid · %4 test · %5 skipped. %6\nSource: %7")
                          .arg(d.classes.size()).arg(s.totals[0]).arg(s.totals[1]).arg(s.totals[2])
                          .arg(d.skipped.size()).arg(size_text)
                          .arg(QString::fromStdString(d.source)));

    const bool has_test = s.totals[2] > 0;
    counts_->setRowCount(static_cast<int>(d.classes.size()) + (has_test ? 1 : 0) + 1);
    QStringList rows;
    int r = 0;
    for (std::size_t c = 0; c < d.classes.size(); ++c, ++r) {
        rows << QString::fromStdString(d.classes[c]);
        counts_->setItem(r, 0, number_item(s.counts[c][0]));
        counts_->setItem(r, 1, number_item(s.counts[c][1]));
        counts_->setItem(r, 2, new QTableWidgetItem());
    }
    if (has_test) {
        rows << tr("(unlabelled)");
        counts_->setItem(r, 0, new QTableWidgetItem());
        counts_->setItem(r, 1, new QTableWidgetItem());
        counts_->setItem(r, 2, number_item(s.counts[d.classes.size()][2]));
        ++r;
    }
    rows << tr("total");
    for (int k = 0; k < 3; ++k) {
        auto* item = number_item(s.totals[static_cast<std::size_t>(k)]);
        QFont bold = item->font();
        bold.setBold(true);
        item->setFont(bold);
        counts_->setItem(r, k, item);
    }
    counts_->setVerticalHeaderLabels(rows);

    skipped_->setRowCount(static_cast<int>(d.skipped.size()));
    for (int i = 0; i < static_cast<int>(d.skipped.size()); ++i) {
        const auto& sk = d.skipped[static_cast<std::size_t>(i)];
        auto* path = new QTableWidgetItem(QString::fromStdString(sk.path));
        path->setToolTip(QString::fromStdString(sk.path));
        skipped_->setItem(i, 0, path);
        skipped_->setItem(i, 1, new QTableWidgetItem(QString::fromStdString(sk.reason)));
    }
    skipped_->resizeColumnToContents(0);
    if (skipped_->columnWidth(0) > 320) skipped_->setColumnWidth(0, 320);

    QStringList warnings;
    for (const auto& w : d.warnings) warnings << QString::fromStdString(w);
    warnings_->setPlainText(warnings.join('\n'));
    browser_->set_dataset(project, std::make_shared<const data::Dataset>(d));
}

}  // namespace whisker::ui
