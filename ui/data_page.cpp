#include "data_page.h"

#include "whisker/data/report.h"

#include "background_job.h"
#include "image_browser.h"

#include "whisker/common/errors.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/project/project_lock.h"

#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QRegularExpression>
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
#include <QStyle>
#include <QTableWidget>
#include <QToolButton>
#include <QVBoxLayout>
#include <QMessageBox>
#include <QTreeWidget>

#include <algorithm>

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
    details_ = new QLabel(tr("Start a new project in an empty folder, open a project folder, or try the built-in sample "
                             "competition (also in the File menu)."));
    details_->setObjectName("dataDetails");
    details_->setWordWrap(true);
    details_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    // The same ways forward as buttons, while there is no project.
    new_project_ = new QPushButton(style()->standardIcon(QStyle::SP_FileDialogNewFolder), tr("&New project…"));
    new_project_->setObjectName("newProjectButton");
    new_project_->setToolTip(tr("Choose an empty folder for the project, then get its images here"));
    open_project_ = new QPushButton(style()->standardIcon(QStyle::SP_DirOpenIcon), tr("&Open project…"));
    open_project_->setObjectName("openProjectButton");
    open_project_->setToolTip(tr("Open a project folder made before (by the workbench or whisker-cli)"));
    sample_project_ = new QPushButton(tr("Open &sample project…"));
    sample_project_->setObjectName("sampleProjectButton");
    sample_project_->setToolTip(tr("The built-in sample competition (cats and dogs), made and prepared in a folder you choose"));
    connect(new_project_, &QPushButton::clicked, this, &DataPage::new_project_requested);
    connect(open_project_, &QPushButton::clicked, this, &DataPage::open_project_requested);
    connect(sample_project_, &QPushButton::clicked, this, &DataPage::sample_project_requested);
    no_project_row_ = new QWidget;
    auto* npl = new QHBoxLayout(no_project_row_);
    npl->setContentsMargins(0, 4, 0, 4);
    npl->addWidget(new_project_);
    npl->addWidget(open_project_);
    npl->addWidget(sample_project_);
    npl->addStretch(1);

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
        QString name = competition_->text().trimmed();
        // A pasted address works too: https://www.kaggle.com/competitions/NAME/data → NAME.
        static const QRegularExpression url(QStringLiteral("kaggle\\.com/(?:c|competitions)/([^/?#\\s]+)"));
        if (const auto m = url.match(name); m.hasMatch()) competition_->setText(name = m.captured(1));
        static const QRegularExpression slug(QStringLiteral("^[a-z0-9][a-z0-9-]*$"));
        if (name.isEmpty() || !slug.match(name).hasMatch()) {
            QMessageBox::information(this, tr("Which competition?"),
                                     (name.isEmpty() ? tr("Type the competition's name first.")
                                                     : tr("'%1' is not a competition's name.").arg(name)) +
                                         "\n\n" + tr("It is the last part of the competition's address: for "
                                                      "kaggle.com/competitions/dogs-vs-cats-redux-kernels-edition it is "
                                                      "dogs-vs-cats-redux-kernels-edition (lower case, digits and dashes)."));
            competition_->setFocus();
            return;
        }
        Q_EMIT download_requested(name);
    });
    connect(prepare_, &QPushButton::clicked, this, [this] {
        const QString source = source_->text().trimmed();
        if (source.isEmpty()) {
            QMessageBox::information(this, tr("Where are the images?"),
                                     tr("Choose the local data first (Folder… or Zip / CSV…), or type its path: a folder of "
                                        "train/<class>/ images, Kaggle's zips, or a CSV of file names and labels."));
            source_->setFocus();
            return;
        }
        if (!QFileInfo::exists(QDir::cleanPath(source))) {
            QMessageBox::information(this, tr("Nothing there"),
                                     tr("There is no file or folder %1.\n\nCheck the path, or choose it with Folder… or Zip / CSV….")
                                         .arg(source));
            source_->setFocus();
            return;
        }
        Q_EMIT prepare_requested(request_for(source));
    });

    browser_ = new ImageBrowser;
    connect(browser_, &ImageBrowser::undo_marks_requested, this, &DataPage::undo_marks_requested);
    tabs_ = new QTabWidget;
    tabs_->addTab(split, tr("Summary"));
    tabs_->addTab(browser_, tr("Images"));
    tabs_->addTab(build_duplicates_tab(), tr("Duplicates"));

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
    layout->addWidget(no_project_row_);
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
    no_project_row_->setVisible(project.empty());
    // What was typed for the previous project is not this one's data: the local path starts
    // empty, the competition is this project's own (the one it was downloaded from or
    // submitted to), if it has one.
    source_->clear();
    competition_->clear();
    try {
        if (!project.empty()) competition_->setText(QString::fromStdString(kaggle::SubmissionHistory::load(project).competition));
    } catch (const std::exception&) {
        // an unreadable history names no competition; the Submit page says what is wrong with it
    }
    // Another project: the copies found in the last one mean nothing here.
    dup_job_->cancel();
    duplicates_ = {};
    dataset_.reset();
    show_duplicates();
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
    dataset_.reset();
    duplicates_ = {};
    show_duplicates();
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
    // The groups found stay (their numbers too); what they mean follows the marks.
    // Group members are manifest indices: they survive new marks, not a rebuilt manifest.
    const bool same_images = dataset_ && dataset_->images.size() == d.images.size() &&
                             std::equal(d.images.begin(), d.images.end(), dataset_->images.begin(),
                                        [](const auto& a, const auto& b) { return a.path == b.path; });
    dataset_ = std::make_shared<const data::Dataset>(d);
    if (!same_images) duplicates_ = {};
    else explain::update_kinds(d, duplicates_.groups);
    show_duplicates();
}

// ---- duplicates ----

QWidget* DataPage::build_duplicates_tab() {
    dup_job_ = new BackgroundJob(this);
    dup_threshold_ = new QDoubleSpinBox;
    dup_threshold_->setObjectName("duplicatesThreshold");
    dup_threshold_->setDecimals(3);
    dup_threshold_->setRange(0.5, 1.001);
    dup_threshold_->setSingleStep(0.005);
    dup_threshold_->setValue(explain::kDefaultNearThreshold);
    dup_threshold_->setToolTip(tr("Near copies: the cosine similarity of two images' 8×8 colour thumbnails is at least this. "
                                  "%1 (the default) finds resized and recompressed copies without false matches on the "
                                  "sample competition; above 1 finds exact copies only.")
                                   .arg(explain::kDefaultNearThreshold));
    dup_find_ = new QPushButton(tr("&Find copies"));
    dup_find_->setObjectName("findDuplicatesButton");
    dup_find_->setToolTip(tr("Decodes every image once (then cached) and compares them all: exact copies (same pixels) and "
                             "near copies (resized, recompressed)"));
    dup_summary_ = new QLabel;
    dup_summary_->setObjectName("duplicatesSummary");
    dup_summary_->setWordWrap(true);
    dup_summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    dup_tree_ = new QTreeWidget;
    dup_tree_->setObjectName("duplicatesTree");
    dup_tree_->setColumnCount(4);
    dup_tree_->setHeaderLabels({tr("Group / image"), tr("Split"), tr("Label"), tr("What it means / mark")});
    dup_tree_->setSelectionMode(QAbstractItemView::SingleSelection);
    dup_tree_->setUniformRowHeights(true);
    dup_keep_train_ = new QPushButton(tr("Keep in &train"));
    dup_keep_train_->setToolTip(tr("The group's copies in valid are excluded (marks, undoable): the model is no longer "
                                   "validated on pictures it trains on"));
    dup_keep_valid_ = new QPushButton(tr("Keep in &valid"));
    dup_keep_valid_->setToolTip(tr("The group's copies in train are excluded (marks, undoable)"));
    dup_relabel_class_ = new QComboBox;
    dup_relabel_ = new QPushButton(tr("&Relabel all as"));
    dup_relabel_->setToolTip(tr("Gives the group's labelled images this class (relabel marks, undoable)"));
    dup_exclude_ = new QPushButton(tr("E&xclude all"));
    dup_exclude_->setToolTip(tr("Excludes the group's labelled images from training (marks, undoable)"));
    dup_undo_ = new QPushButton(tr("&Undo marks"));
    dup_undo_->setToolTip(tr("Takes back every mark of the group's images"));

    auto* top = new QHBoxLayout;
    top->addWidget(new QLabel(tr("Near-copy similarity ≥")));
    top->addWidget(dup_threshold_);
    top->addWidget(dup_find_);
    top->addStretch(1);
    auto* actions = new QHBoxLayout;
    actions->addWidget(new QLabel(tr("Selected group:")));
    actions->addWidget(dup_keep_train_);
    actions->addWidget(dup_keep_valid_);
    actions->addWidget(dup_relabel_);
    actions->addWidget(dup_relabel_class_);
    actions->addWidget(dup_exclude_);
    actions->addStretch(1);
    actions->addWidget(dup_undo_);
    auto* tab = new QWidget;
    auto* l = new QVBoxLayout(tab);
    l->addLayout(top);
    l->addWidget(dup_summary_);
    l->addWidget(dup_tree_, 1);
    l->addLayout(actions);

    connect(dup_find_, &QPushButton::clicked, this, [this] { find_duplicates(); });
    connect(dup_tree_, &QTreeWidget::itemSelectionChanged, this, [this] {
        const auto* g = duplicates_.group(selected_group());
        bool any_valid = false, any_train = false;
        if (g && dataset_)
            for (std::size_t r : g->records) {
                any_train |= dataset_->images[r].split == data::Split::Train;
                any_valid |= dataset_->images[r].split == data::Split::Valid;
            }
        dup_keep_train_->setEnabled(g && any_train && any_valid);
        dup_keep_valid_->setEnabled(g && any_train && any_valid);
        dup_relabel_->setEnabled(g && (any_train || any_valid));
        dup_relabel_class_->setEnabled(g && (any_train || any_valid));
        dup_exclude_->setEnabled(g && (any_train || any_valid));
        dup_undo_->setEnabled(g != nullptr);
    });
    connect(dup_keep_train_, &QPushButton::clicked, this, [this] { keep_group_in_split(selected_group(), data::Split::Train); });
    connect(dup_keep_valid_, &QPushButton::clicked, this, [this] { keep_group_in_split(selected_group(), data::Split::Valid); });
    connect(dup_relabel_, &QPushButton::clicked, this, [this] { relabel_group(selected_group(), dup_relabel_class_->currentIndex()); });
    connect(dup_exclude_, &QPushButton::clicked, this, [this] { exclude_group(selected_group()); });
    connect(dup_undo_, &QPushButton::clicked, this, [this] { undo_group(selected_group()); });
    connect(dup_job_, &BackgroundJob::progressed, this, [this](const QString& stage, qulonglong done, qulonglong total) {
        dup_summary_->setText(total ? tr("%1: %2 of %3…").arg(stage).arg(done).arg(total) : stage + "…");
    });
    connect(dup_job_, &BackgroundJob::failed, this, [this](const QString&, const QString& message) {
        dup_summary_->setText(tr("Cannot look for copies: %1").arg(message));
    });
    connect(dup_job_, &BackgroundJob::finished, this, [this](const QString&) { dup_find_->setEnabled(true); });
    connect(dup_job_, &BackgroundJob::succeeded, this, [this](const QString&) {
        if (!dup_running_ || dup_running_project_ != project_ || !dataset_) return;   // another project since
        duplicates_ = *dup_running_;
        dup_running_.reset();
        explain::update_kinds(*dataset_, duplicates_.groups);   // marks may have changed meanwhile
        show_duplicates();
    });
    show_duplicates();
    return tab;
}

bool DataPage::find_duplicates() {
    if (!dataset_ || dataset_->images.empty() || dup_job_->busy()) return false;
    auto result = std::make_shared<explain::DuplicateReport>();
    const std::filesystem::path project = project_;
    const auto dataset = dataset_;
    const double threshold = dup_threshold_->value();
    dup_running_ = result;
    dup_running_project_ = project;
    dup_find_->setEnabled(false);
    dup_summary_->setText(tr("Looking for copies…"));
    return dup_job_->start(tr("Looking for copies"), [result, project, dataset, threshold](const ProgressFn& progress,
                                                                                          const std::atomic<bool>& cancel) {
        explain::DuplicateOptions o;
        o.threshold = threshold;
        o.progress = progress;
        o.cancel = &cancel;
        *result = explain::find_duplicates(project, *dataset, o);
    });
}

void DataPage::wait_for_duplicates() { dup_job_->wait(); }

int DataPage::selected_group() const {
    const auto items = dup_tree_->selectedItems();
    if (items.isEmpty()) return 0;
    const QTreeWidgetItem* item = items.first();
    if (item->parent()) item = item->parent();
    return item->data(0, Qt::UserRole).toInt();
}

void DataPage::show_duplicates() {
    const int keep = selected_group();
    dup_tree_->clear();
    {
        const QSignalBlocker block(dup_relabel_class_);
        dup_relabel_class_->clear();
        if (dataset_)
            for (const auto& c : dataset_->classes) dup_relabel_class_->addItem(QString::fromStdString(c));
    }
    const auto& r = duplicates_;
    if (!dataset_ || r.images == 0) {
        dup_summary_->setText(dataset_ ? tr("Find copies of the same picture within and across train, valid and test: a copy in "
                                            "train and valid inflates the validation score, one with another label is a "
                                            "labelling mistake, one in train and test is a leak.")
                                       : QString());
    } else {
        QString text = tr("%1 images scanned (near copies: similarity ≥ %2): ").arg(r.images).arg(r.threshold, 0, 'f', 3) +
                       tr("<b>%n group(s)</b> of copies, ", nullptr, static_cast<int>(r.groups.size())) +
                       tr("<b>%1 to act on</b>").arg(r.count_unresolved());
        if (r.count_inflating())
            text += tr(" · <span style='color:#b00'>%n group(s) inflating the validation score</span> (the model is validated "
                       "on pictures it trains on: keep each group in one split)", nullptr, static_cast<int>(r.count_inflating()));
        if (r.count_label_conflicts())
            text += tr(" · <span style='color:#b00'>%n with different labels</span> (at least one label is wrong: relabel or "
                       "exclude)", nullptr,
                       static_cast<int>(r.count_label_conflicts()));
        if (r.count_test_leaks())
            text += tr(" · %n leak into test (the answer is in the training data)", nullptr, static_cast<int>(r.count_test_leaks()));
        if (!r.unreadable.empty()) text += tr(" · %n unreadable", nullptr, static_cast<int>(r.unreadable.size()));
        if (r.groups.empty()) text += tr(" — no copies found.");
        dup_summary_->setText(text);
    }
    auto label_of = [this](const data::ImageRecord& im) {
        QStringList names;
        for (int l : im.labels) names << QString::fromStdString(dataset_->classes[static_cast<std::size_t>(l)]);
        return names.isEmpty() ? tr("—") : names.join('+');
    };
    // Groups to act on first, in their numbers' order; resolved ones after.
    std::vector<const explain::DuplicateGroup*> order;
    for (const auto& g : r.groups) order.push_back(&g);
    std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return !a->resolved() && b->resolved(); });
    QTreeWidgetItem* selected = nullptr;
    for (const auto* g : order) {
        auto* top = new QTreeWidgetItem(dup_tree_);
        top->setText(0, tr("Group %1 · %2 · %n image(s)", nullptr, static_cast<int>(g->records.size()))
                            .arg(g->id)
                            .arg(g->exact ? tr("exact copies") : tr("near copies (≥ %1)").arg(g->min_similarity, 0, 'f', 3)));
        top->setText(3, QString::fromStdString(g->kinds()));
        top->setData(0, Qt::UserRole, g->id);
        QFont bold = top->font(0);
        bold.setBold(true);
        top->setFont(0, bold);
        if (g->labels_differ || g->inflates_validation) top->setForeground(3, QColor(176, 0, 0));
        else if (g->resolved()) top->setForeground(3, QColor(0, 120, 0));
        for (std::size_t rec : g->records) {
            const auto& im = dataset_->images[rec];
            auto* child = new QTreeWidgetItem(top);
            child->setText(0, QString::fromStdString(im.path));
            child->setToolTip(0, QString::fromStdString(dataset_->resolve(project_, im).string()));
            child->setText(1, QString::fromStdString(data::split_name(im.split)));
            child->setText(2, label_of(im));
            if (im.excluded) child->setText(3, tr("excluded by you"));
            else if (im.relabelled()) {
                data::ImageRecord was = im;
                was.labels = im.original_labels;
                child->setText(3, tr("relabelled by you (was %1)").arg(label_of(was)));
            }
        }
        top->setExpanded(true);
        if (g->id == keep) selected = top;
    }
    dup_tree_->resizeColumnToContents(0);
    if (dup_tree_->columnWidth(0) > 420) dup_tree_->setColumnWidth(0, 420);
    if (selected) selected->setSelected(true);
    Q_EMIT dup_tree_->itemSelectionChanged();
}

bool DataPage::act_on_group(int group, const QString& what,
                            const std::function<std::vector<std::string>(data::Dataset&, const explain::DuplicateGroup&)>& action) {
    const auto* g = duplicates_.group(group);
    if (!g || project_.empty()) return false;
    data::Dataset d;
    std::size_t changed = 0;
    try {
        // Marks write the project: not while another program does.
        const auto lock = project::ProjectLock::acquire(project_, "marks");
        d = data::Dataset::load(project_);
        if (d.images.size() != dataset_->images.size())
            throw UserError("the dataset changed since the copies were found", "find the copies again");
        changed = action(d, *g).size();
        d.save(project_);
    } catch (const std::exception& e) {
        QMessageBox::warning(this, tr("Cannot mark the group"), QString::fromStdString(e.what()));
        return false;
    }
    show_dataset(project_, d);   // counts, browser and the groups' meaning
    Q_EMIT marks_changed(tr("Group %1: %2 (%n image(s) marked; undo with \"Undo marks\")", nullptr, static_cast<int>(changed))
                             .arg(group).arg(what));
    return true;
}

bool DataPage::keep_group_in_split(int group, data::Split split) {
    return act_on_group(group, tr("kept in %1").arg(data::split_name(split)),
                        [split](data::Dataset& d, const explain::DuplicateGroup& g) { return explain::keep_group_in_split(d, g, split); });
}

bool DataPage::relabel_group(int group, int label) {
    if (!dataset_ || label < 0 || label >= static_cast<int>(dataset_->classes.size())) return false;
    return act_on_group(group, tr("relabelled %1").arg(QString::fromStdString(dataset_->classes[static_cast<std::size_t>(label)])),
                        [label](data::Dataset& d, const explain::DuplicateGroup& g) { return explain::relabel_group(d, g, label); });
}

bool DataPage::exclude_group(int group) {
    return act_on_group(group, tr("excluded"),
                        [](data::Dataset& d, const explain::DuplicateGroup& g) { return explain::exclude_group(d, g, false); });
}

bool DataPage::undo_group(int group) {
    return act_on_group(group, tr("marks undone"),
                        [](data::Dataset& d, const explain::DuplicateGroup& g) { return explain::undo_group(d, g); });
}

}  // namespace whisker::ui
