#include "main_window.h"

#include "background_job.h"
#include "data_page.h"
#include "inspect_page.h"
#include "runs_page.h"
#include "submit_page.h"
#include "train_page.h"

#include "whisker/common/device.h"
#include "whisker/data/prepare.h"
#include "whisker/kaggle/client.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/project/project_lock.h"
#include "whisker/sample/sample_competition.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDateTime>
#include <QDockWidget>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMenuBar>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QSettings>
#include <QStackedWidget>
#include <QStandardPaths>
#include <QStatusBar>
#include <QStyle>
#include <QGuiApplication>
#include <QScreen>
#include <QTimer>
#include <QToolButton>

#include <algorithm>
#include <iterator>

namespace fs = std::filesystem;

namespace whisker::ui {

namespace {
QString qstr(const fs::path& p) { return QString::fromStdString(p.string()); }

data::PrepareOptions prepare_options(const fs::path& project, const fs::path& source, const PrepareRequest& split,
                                     const ProgressFn& progress, const std::atomic<bool>& cancel) {
    data::PrepareOptions po;
    po.project = project;
    po.source = source;
    po.valid_frac = split.valid_frac;
    po.valid_per_class = split.valid_per_class;
    po.seed = split.seed;
    po.progress = progress;
    po.cancel = &cancel;
    return po;
}
}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setWindowTitle(tr("Whisker"));
    setObjectName("WhiskerMainWindow");
    job_ = new BackgroundJob(this);

    nav_ = new QListWidget;
    nav_->setObjectName("workflowNavigation");
    nav_->setIconSize(QSize(24, 24));
    nav_->setFixedWidth(150);
    const struct { const char* name; QStyle::StandardPixmap icon; const char* tip; } steps[] = {
        {QT_TR_NOOP("1  Data"), QStyle::SP_DirOpenIcon, QT_TR_NOOP("Get the images, split them, look at them")},
        {QT_TR_NOOP("2  Train"), QStyle::SP_MediaPlay, QT_TR_NOOP("Fine-tune a pretrained network: LR finder, fit, live plots")},
        {QT_TR_NOOP("3  Inspect"), QStyle::SP_FileDialogContentsView, QT_TR_NOOP("See what the model gets wrong: galleries by loss, confusion matrix, marks")},
        {QT_TR_NOOP("4  Submit"), QStyle::SP_ArrowUp, QT_TR_NOOP("Predict the test set, check and export the CSV, submit it to Kaggle")},
        {QT_TR_NOOP("5  Runs"), QStyle::SP_FileDialogDetailedView, QT_TR_NOOP("Every fit, sweep, prediction and ensemble: compare them, load one, CV against the leaderboard")},
    };
    for (const auto& s : steps) {
        auto* item = new QListWidgetItem(style()->standardIcon(s.icon), tr(s.name));
        item->setToolTip(tr(s.tip));
        nav_->addItem(item);
    }

    pages_ = new QStackedWidget;
    data_page_ = new DataPage;
    pages_->addWidget(data_page_);
    train_page_ = new TrainPage;
    pages_->addWidget(train_page_);
    inspect_page_ = new InspectPage(train_page_);
    pages_->addWidget(inspect_page_);
    submit_page_ = new SubmitPage(train_page_);
    pages_->addWidget(submit_page_);
    runs_page_ = new RunsPage(train_page_);
    pages_->addWidget(runs_page_);
    connect(runs_page_, &RunsPage::log, this, &MainWindow::log);
    // An ensemble computed on the Runs page goes to the Submit page (its checks, one-click submit).
    connect(runs_page_, &RunsPage::send_to_submit, this, [this](const PredictionSet& p) {
        submit_page_->show_predictions(p);
        nav_->setCurrentRow(SubmitPageIndex);
    });
    connect(train_page_, &TrainPage::log, this, &MainWindow::log);
    connect(inspect_page_, &InspectPage::log, this, &MainWindow::log);
    connect(submit_page_, &SubmitPage::log, this, &MainWindow::log);
    // Marks made on the Inspect page show on the Data page at once.
    connect(inspect_page_, &InspectPage::dataset_changed, this, [this] {
        try {
            data_page_->show_dataset(project_, data::Dataset::load(project_));
        } catch (const std::exception& e) {
            log(QString::fromStdString(e.what()));
        }
    });
    connect(submit_page_, &SubmitPage::progress_changed, this, &MainWindow::show_progress);
    connect(submit_page_, &SubmitPage::busy_changed, this, &MainWindow::page_busy);
    connect(data_page_, &DataPage::prepare_requested, this, [this](const PrepareRequest& r) { prepare_from(r); });
    // Marks taken back on the Data page: the manifest, the Inspect page and the learner follow.
    connect(data_page_, &DataPage::undo_marks_requested, this, [this](const QString& path) {
        try {
            const auto lock = project::ProjectLock::acquire(project_, "marks");
            data::Dataset d = data::Dataset::load(project_);
            if (!d.clear_marks(path.toStdString())) return;
            d.save(project_);
            data_page_->show_dataset(project_, d);
        } catch (const std::exception& e) {
            QMessageBox::warning(this, tr("Cannot undo the marks"), QString::fromStdString(e.what()));
            return;
        }
        QMetaObject::invokeMethod(train_page_->worker(), [w = train_page_->worker()] { w->reload_dataset(); }, Qt::QueuedConnection);
        inspect_page_->reload_marks();
        log(tr("Undid the marks of %1").arg(path));
    });
    // Marks made on the Data page's Duplicates tab (keep in one split, relabel, exclude): the
    // learner and the Inspect page follow, as for an undo.
    connect(data_page_, &DataPage::marks_changed, this, [this](const QString& what) {
        QMetaObject::invokeMethod(train_page_->worker(), [w = train_page_->worker()] { w->reload_dataset(); }, Qt::QueuedConnection);
        inspect_page_->reload_marks();
        log(what);
    });
    connect(data_page_, &DataPage::download_requested, this, &MainWindow::download_competition);
    // The Data page's buttons while no project is open: the File menu's actions.
    connect(data_page_, &DataPage::new_project_requested, this, &MainWindow::choose_new_project);
    connect(data_page_, &DataPage::open_project_requested, this, &MainWindow::choose_project);
    connect(data_page_, &DataPage::sample_project_requested, this, &MainWindow::choose_sample_folder);
    connect(nav_, &QListWidget::currentRowChanged, this, [this](int row) {
        if (row >= 0 && row < pages_->count()) pages_->setCurrentIndex(row);
        remember_page(row);
        // Opening Inspect after a fit shows the current model's mistakes without a click.
        if (row == InspectPageIndex) inspect_page_->refresh_if_stale();
    });
    nav_->setCurrentRow(DataPageIndex);

    auto* central = new QWidget;
    auto* layout = new QHBoxLayout(central);
    layout->addWidget(nav_);
    layout->addWidget(pages_, 1);
    setCentralWidget(central);

    log_ = new QPlainTextEdit;
    log_->setObjectName("logPanel");
    log_->setReadOnly(true);
    log_->setMaximumBlockCount(5000);
    auto* dock = new QDockWidget(tr("Log"), this);
    dock->setObjectName("logDock");
    dock->setWidget(log_);
    addDockWidget(Qt::BottomDockWidgetArea, dock);
    resizeDocks({dock}, {100}, Qt::Vertical);   // five lines: a laptop's plots need the height

    build_menus();
    build_status_bar();

    connect(job_, &BackgroundJob::progressed, this, [this](const QString& stage, qulonglong done, qulonglong total) {
        show_progress(stage, static_cast<qlonglong>(done), static_cast<qlonglong>(total));
    });
    connect(train_page_, &TrainPage::progress_changed, this, &MainWindow::show_progress);
    // "What the model sees" at the learner's size.
    connect(train_page_->worker(), &TrainingWorker::session_changed, this, [this](const SessionView& v) {
        if (v.has_learner && fs::path(v.project.toStdString()) == project_) data_page_->set_model_size(v.settings.size);
        // The device and, once a learner exists, the precision its passes use ("CPU: 2 threads · bf16").
        static const QString device = QString::fromStdString(detect_compute_device().describe());
        const QString precision = v.precision.section(' ', 0, 0);
        device_label_->setText(v.has_learner && !precision.isEmpty() ? tr("%1 · %2").arg(device, precision) : device);
        device_label_->setToolTip(v.precision);
    });
    connect(train_page_, &TrainPage::busy_changed, this, &MainWindow::page_busy);
    connect(job_, &BackgroundJob::succeeded, this, [this] {
        if (open_when_done_.empty()) return;
        const fs::path p = open_when_done_;
        open_when_done_.clear();
        open_project(p);
    });
    connect(job_, &BackgroundJob::cancelled, this, [this](const QString& name) { log(tr("%1 stopped").arg(name)); });
    // A failed job (prepare, download, the sample) says why; nothing is opened.
    connect(job_, &BackgroundJob::failed, this, [this](const QString& name, const QString& message) {
        open_when_done_.clear();
        log(tr("%1 failed: %2").arg(name, QString(message).replace('\n', ' ')));
        // After `finished` has put the status bar back (a modal box would hold it until closed).
        QMetaObject::invokeMethod(this, [this, name, message] { QMessageBox::warning(this, tr("%1 failed").arg(name), message); },
                                  Qt::QueuedConnection);
    });
    connect(job_, &BackgroundJob::finished, this, [this] {
        open_when_done_.clear();
        data_page_->set_busy(false);
        job_label_->setText(tr("Ready"));
        progress_->setRange(0, 1000);
        progress_->setValue(0);
        progress_->setVisible(false);
        cancel_button_->setVisible(false);
    });

    auto* lock_timer = new QTimer(this);
    connect(lock_timer, &QTimer::timeout, this, &MainWindow::watch_project_lock);
    lock_timer->start(1000);

    QSettings settings;
    restoreGeometry(settings.value("window/geometry").toByteArray());
    restoreState(settings.value("window/state").toByteArray());
    if (!settings.contains("window/geometry")) resize(1100, 720);
    // Never larger than the screen (a geometry saved on a bigger monitor, a laptop's 1280x720).
    if (const QScreen* screen = QGuiApplication::primaryScreen()) {
        const QRect available = screen->availableGeometry();
        if (width() > available.width() || height() > available.height())
            resize(std::min(width(), available.width()), std::min(height(), available.height()));
    }
    log(tr("Whisker %1 — %2").arg(QStringLiteral(WHISKER_VERSION), QString::fromStdString(detect_compute_device().describe())));
}

MainWindow::~MainWindow() = default;

void MainWindow::build_menus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* open = file->addAction(style()->standardIcon(QStyle::SP_DirOpenIcon), tr("&Open project…"), this,
                                    &MainWindow::choose_project);
    open->setShortcut(QKeySequence::Open);
    QAction* create = file->addAction(style()->standardIcon(QStyle::SP_FileDialogNewFolder), tr("&New project…"), this,
                                      &MainWindow::choose_new_project);
    create->setShortcut(QKeySequence::New);
    QAction* sample = file->addAction(tr("Open &sample project…"), this, &MainWindow::choose_sample_folder);
    sample->setShortcut(QKeySequence(tr("Ctrl+Shift+O")));
    recent_menu_ = file->addMenu(tr("&Recent projects"));
    refresh_recent_menu();
    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu* go = menuBar()->addMenu(tr("&Go"));
    for (int i = 0; i < nav_->count(); ++i) {
        QAction* a = go->addAction(nav_->item(i)->text().mid(3), this, [this, i] {
            if (nav_->item(i)->flags() & Qt::ItemIsEnabled) nav_->setCurrentRow(i);
        });
        a->setShortcut(QKeySequence(QStringLiteral("Ctrl+%1").arg(i + 1)));
    }
}

void MainWindow::build_status_bar() {
    device_label_ = new QLabel(QString::fromStdString(detect_compute_device().describe()));
    device_label_->setObjectName("deviceLabel");
    job_label_ = new QLabel(tr("Ready"));
    progress_ = new QProgressBar;
    progress_->setMaximumWidth(220);
    progress_->setRange(0, 1000);
    progress_->setVisible(false);
    cancel_button_ = new QToolButton;
    cancel_button_->setIcon(style()->standardIcon(QStyle::SP_DialogCancelButton));
    cancel_button_->setToolTip(tr("Stop the current job"));
    cancel_button_->setVisible(false);
    connect(cancel_button_, &QToolButton::clicked, this, [this] { job_->cancel(); });
    holder_label_ = new QLabel;
    holder_label_->setObjectName("holderLabel");
    holder_label_->setStyleSheet("color: #8a5300; font-weight: bold;");
    holder_label_->setVisible(false);
    statusBar()->addWidget(job_label_, 1);
    statusBar()->addPermanentWidget(holder_label_);
    statusBar()->addPermanentWidget(progress_);
    statusBar()->addPermanentWidget(cancel_button_);
    statusBar()->addPermanentWidget(device_label_);
}

void MainWindow::show_progress(const QString& stage, qlonglong done, qlonglong total) {
    const qint64 now = QDateTime::currentMSecsSinceEpoch();
    if (stage != eta_stage_) {
        eta_stage_ = stage;
        eta_start_ms_ = now;
    }
    QString text = stage;
    if (total > 0) {
        progress_->setRange(0, 1000);
        progress_->setValue(static_cast<int>(1000.0 * static_cast<double>(done) / static_cast<double>(total)));
        const double elapsed = static_cast<double>(now - eta_start_ms_) / 1000.0;
        if (done > 0 && elapsed > 0.5) {
            const auto left = static_cast<qint64>(elapsed / static_cast<double>(done) * static_cast<double>(total - done));
            text += tr(" — %1/%2, %3 left").arg(done).arg(total).arg(
                left >= 3600 ? QString("%1:%2:%3").arg(left / 3600).arg((left / 60) % 60, 2, 10, QChar('0')).arg(left % 60, 2, 10, QChar('0'))
                             : QString("%1:%2").arg(left / 60).arg(left % 60, 2, 10, QChar('0')));
        }
    } else {
        progress_->setRange(0, 0);
    }
    progress_->setVisible(true);
    job_label_->setText(text);
}

void MainWindow::page_busy(bool busy) {
    progress_->setVisible(busy);
    if (!busy) {
        job_label_->setText(tr("Ready"));
        eta_stage_.clear();
    }
}

void MainWindow::log(const QString& line) {
    log_->appendPlainText(QDateTime::currentDateTime().toString("HH:mm:ss  ") + line);
}

bool MainWindow::finish_project_jobs(const fs::path& next, bool ask) {
    const bool training = train_page_->busy();
    const bool submitting = submit_page_->job()->busy();
    if (!training && !submitting) return true;
    if (ask && !project_.empty()) {
        const QString what = training ? tr("The learner of %1 is busy (training, predicting or opening).").arg(qstr(project_.filename()))
                                      : tr("A submission of %1 is being uploaded.").arg(qstr(project_.filename()));
        const auto answer = QMessageBox::question(this, tr("Open %1").arg(qstr(next.filename())),
                                                  what + "\n\n" + tr("Stop it and open %1? A stopped fit keeps its model and can be resumed.")
                                                                        .arg(qstr(next)),
                                                  QMessageBox::Yes | QMessageBox::No, QMessageBox::No);
        if (answer != QMessageBox::Yes) return false;
    }
    if (submitting) {
        submit_page_->job()->cancel();
        submit_page_->job()->wait();
    }
    if (training) {
        train_page_->stop();
        job_label_->setText(tr("Stopping the current job of %1…").arg(qstr(project_.filename())));
        if (!train_page_->wait_until_idle(10 * 60 * 1000)) {
            QMessageBox::warning(this, tr("Still busy"), tr("The learner did not stop in time; try again in a moment."));
            return false;
        }
    }
    return true;
}

void MainWindow::watch_project_lock() {
    if (project_.empty()) return;
    const auto holder = project::ProjectLock::holder(project_);
    const QString text = holder && !holder->is_this_process() ? QString::fromStdString(holder->describe()) : QString();
    if (text == external_holder_) return;
    const bool released = !external_holder_.isEmpty() && text.isEmpty();
    external_holder_ = text;
    train_page_->set_external_holder(text);
    holder_label_->setText(text.isEmpty() ? QString() : tr("In use by %1").arg(text));
    holder_label_->setVisible(!text.isEmpty());
    if (!text.isEmpty()) log(tr("%1 is using this project; the workbench follows when it is done").arg(text));
    if (!released) return;
    // Follow what the other program did: dataset, learner, plots, predictions.
    log(tr("The other program is done with %1: reading its results").arg(qstr(project_)));
    try {
        if (data::Dataset::exists(project_)) data_page_->show_dataset(project_, data::Dataset::load(project_));
    } catch (const std::exception& e) {
        log(QString::fromStdString(e.what()));
    }
    train_page_->run_on_worker(tr("Reading the project…"), [](TrainingWorker* w) { w->reload(); });
    submit_page_->set_project(project_);
}

bool MainWindow::open_project(const fs::path& folder) {
    std::error_code ec;
    // One spelling per folder ("proj", "./proj/" and "/home/me/proj" are the same project): the
    // title names it, and what is remembered per project finds it again.
    fs::path project = fs::absolute(folder, ec).lexically_normal();
    if (ec) project = folder;
    if (!project.has_filename() && project.has_parent_path()) project = project.parent_path();
    if (!fs::is_directory(project, ec)) {
        const bool missing = !fs::exists(project, ec);
        QMessageBox::warning(this, tr("Cannot open project"),
                             missing ? tr("There is no folder %1.\n\nWas it moved or deleted? Open the project where it is now "
                                          "(File ▸ Open project…), or make a new one (File ▸ New project…).").arg(qstr(project))
                                     : tr("%1 is a file, not a folder: a project is a folder (File ▸ Open project…).").arg(qstr(project)));
        if (missing) forget_recent(project);
        return false;
    }
    if (!finish_project_jobs(project, project != project_)) return false;
    project_ = project;
    external_holder_.clear();
    holder_label_->setVisible(false);
    train_page_->set_project(project);
    inspect_page_->set_project(project);
    submit_page_->set_project(project);
    runs_page_->set_project(project);
    setWindowTitle(tr("Whisker — %1").arg(qstr(project.filename())));
    try {
        if (data::Dataset::exists(project)) {
            const data::Dataset d = data::Dataset::load(project);
            data_page_->show_dataset(project, d);
            log(tr("Opened %1: %2 images, %3 classes, %4 skipped files")
                    .arg(qstr(project)).arg(d.images.size()).arg(d.classes.size()).arg(d.skipped.size()));
        } else {
            data_page_->show_no_dataset(project);
            log(tr("Opened %1 (no dataset yet)").arg(qstr(project)));
        }
    } catch (const std::exception& e) {
        data_page_->show_no_dataset(project, QString::fromStdString(e.what()));
        log(tr("Cannot read the dataset of %1: %2").arg(qstr(project), QString::fromStdString(e.what())));
        QMessageBox::warning(this, tr("Cannot read the dataset"), QString::fromStdString(e.what()));
    }
    remember_recent(project);
    // Where the user left this project (a page without results shows its own empty state).
    nav_->setCurrentRow(remembered_page(project));
    watch_project_lock();
    return true;
}

void MainWindow::create_sample_project(const fs::path& folder) {
    const fs::path download = folder / "download";
    const bool started = job_->start(tr("Creating the sample project"), [folder, download](const ProgressFn& progress,
                                                                                          const std::atomic<bool>& cancel) {
        sample::SampleOptions so;
        so.progress = progress;
        so.cancel = &cancel;
        sample::write_sample_competition(download, so);
        const auto lock = project::ProjectLock::acquire(folder, "prepare");
        data::PrepareOptions po;
        po.project = folder;
        po.source = download;
        po.progress = progress;
        po.cancel = &cancel;
        data::prepare_dataset(po);
    });
    if (!started) {
        QMessageBox::information(this, tr("Busy"), tr("Wait for the current job to finish, or stop it."));
        return;
    }
    progress_->setVisible(true);
    cancel_button_->setVisible(true);
    log(tr("Creating the sample project in %1").arg(qstr(folder)));
    open_when_done_ = folder;
}

bool MainWindow::start_job(const QString& name, std::function<void(const ProgressFn&, const std::atomic<bool>&)> work) {
    if (job_->start(name, std::move(work))) return true;
    QMessageBox::information(this, tr("Busy"), tr("Wait for the current job to finish, or stop it."));
    return false;
}

void MainWindow::choose_new_project() {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder for the new project (an empty folder)"));
    if (dir.isEmpty()) return;
    open_project(dir.toStdString());
    log(tr("New project %1: get data on the Data page").arg(dir));
}

void MainWindow::prepare_from(const PrepareRequest& r) {
    if (project_.empty()) {
        QMessageBox::information(this, tr("No project"), tr("Open or create a project first (File menu)."));
        return;
    }
    if (train_page_->busy()) {
        QMessageBox::information(this, tr("Busy"), tr("The learner is busy (see the Train page): wait for it, or stop it, "
                                                      "before the dataset is rebuilt."));
        return;
    }
    const fs::path project = project_;
    const bool started = start_job(tr("Preparing the dataset"), [project, r](const ProgressFn& progress,
                                                                               const std::atomic<bool>& cancel) {
        const auto lock = project::ProjectLock::acquire(project, "prepare");
        data::prepare_dataset(prepare_options(project, r.source.toStdString(), r, progress, cancel));
    });
    if (started) job_started(project, tr("Preparing %1 from %2").arg(qstr(project), r.source));
}

void MainWindow::download_competition(const QString& competition) {
    if (project_.empty()) {
        QMessageBox::information(this, tr("No project"), tr("Open or create a project first (File menu)."));
        return;
    }
    if (train_page_->busy()) {
        QMessageBox::information(this, tr("Busy"), tr("The learner is busy (see the Train page): wait for it, or stop it, "
                                                      "before the dataset is rebuilt."));
        return;
    }
    const fs::path project = project_;
    const PrepareRequest split = data_page_->request_for({});
    const std::string comp = competition.toStdString();
    const bool started = start_job(tr("Downloading %1").arg(competition), [project, split, comp](const ProgressFn& progress,
                                                                                                  const std::atomic<bool>& cancel) {
        const auto lock = project::ProjectLock::acquire(project, "download");
        kaggle::ClientOptions co;
        co.cancel = &cancel;
        kaggle::Client client(kaggle::require_credentials(), co);
        const auto report = client.download_all(comp, project / "download", false, progress);
        // The Submit page submits to the competition the data came from.
        auto history = kaggle::SubmissionHistory::load(project);
        history.competition = comp;
        history.save(project);
        data::prepare_dataset(prepare_options(project, report.file, split, progress, cancel));
    });
    if (started)
        job_started(project, tr("Downloading the Kaggle competition %1 into %2").arg(competition, qstr(project / "download")));
}

void MainWindow::job_started(const fs::path& reopen, const QString& message) {
    progress_->setVisible(true);
    cancel_button_->setVisible(true);
    data_page_->set_busy(true);
    log(message);
    open_when_done_ = reopen;
}

void MainWindow::choose_project() {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Open project folder"));
    if (!dir.isEmpty()) open_project(dir.toStdString());
}

void MainWindow::choose_sample_folder() {
    const QString base = QStandardPaths::writableLocation(QStandardPaths::DocumentsLocation);
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder for the sample project"), base);
    if (dir.isEmpty()) return;
    // A folder of its own that does not exist yet (never over an earlier sample or project).
    fs::path target = fs::path(dir.toStdString()) / "whisker-sample";
    for (int n = 2; fs::exists(target); ++n) target = fs::path(dir.toStdString()) / ("whisker-sample-" + std::to_string(n));
    create_sample_project(target);
}

void MainWindow::remember_recent(const fs::path& project) {
    QSettings settings;
    QStringList recent = settings.value("projects/recent").toStringList();
    recent.removeAll(qstr(project));
    recent.prepend(qstr(project));
    while (recent.size() > 8) recent.removeLast();
    settings.setValue("projects/recent", recent);
    refresh_recent_menu();
}

namespace {
// Pages by name, not index, so that a new page in the sidebar does not move the remembered ones.
const char* const kPageNames[] = {"data", "train", "inspect", "submit", "runs"};
constexpr int kRememberedPages = 64;
}  // namespace

void MainWindow::remember_page(int page) {
    if (project_.empty() || page < 0 || page >= static_cast<int>(std::size(kPageNames))) return;
    const QString entry = QStringLiteral("%1\t%2").arg(QLatin1String(kPageNames[page]), qstr(project_));
    QSettings settings;
    QStringList pages = settings.value("projects/pages").toStringList();
    if (!pages.isEmpty() && pages.first() == entry) return;
    const QString suffix = "\t" + qstr(project_);
    pages.erase(std::remove_if(pages.begin(), pages.end(), [&](const QString& e) { return e.endsWith(suffix); }), pages.end());
    pages.prepend(entry);
    while (pages.size() > kRememberedPages) pages.removeLast();
    settings.setValue("projects/pages", pages);
}

int MainWindow::remembered_page(const fs::path& project) const {
    const QString suffix = "\t" + qstr(project);
    for (const QString& e : QSettings().value("projects/pages").toStringList()) {
        if (!e.endsWith(suffix)) continue;
        const QString name = e.left(e.size() - suffix.size());
        for (int i = 0; i < static_cast<int>(std::size(kPageNames)); ++i)
            if (name == QLatin1String(kPageNames[i]) && (nav_->item(i)->flags() & Qt::ItemIsEnabled)) return i;
        break;
    }
    return DataPageIndex;
}

void MainWindow::forget_recent(const fs::path& project) {
    QSettings settings;
    QStringList recent = settings.value("projects/recent").toStringList();
    if (recent.removeAll(qstr(project)) == 0) return;
    settings.setValue("projects/recent", recent);
    refresh_recent_menu();
}

void MainWindow::refresh_recent_menu() {
    recent_menu_->clear();
    const QStringList recent = QSettings().value("projects/recent").toStringList();
    for (const QString& p : recent)
        recent_menu_->addAction(p, this, [this, p] { open_project(p.toStdString()); });
    recent_menu_->setEnabled(!recent.isEmpty());
}

void MainWindow::closeEvent(QCloseEvent* event) {
    if (train_page_->busy()) train_page_->stop();
    if (submit_page_->job()->busy()) {
        submit_page_->job()->cancel();
        submit_page_->job()->wait();
    }
    if (job_->busy()) {
        job_->cancel();
        job_->wait();
    }
    QSettings settings;
    settings.setValue("window/geometry", saveGeometry());
    settings.setValue("window/state", saveState());
    event->accept();
}

}  // namespace whisker::ui
