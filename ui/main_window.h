#pragma once
// Whisker's main window: the workflow's pages (Data → Train → Inspect → Submit) in a sidebar,
// a log panel, and a status bar with the compute device, the current job and its progress.
// Long work runs in a BackgroundJob; the window stays responsive and can cancel it.

#include <QMainWindow>

#include "data_page.h"

#include "whisker/common/parallel.h"

#include <atomic>
#include <functional>

#include <filesystem>

class QLabel;
class QListWidget;
class QPlainTextEdit;
class QProgressBar;
class QStackedWidget;
class QMenu;
class QToolButton;

namespace whisker::ui {

class BackgroundJob;
class DataPage;
class InspectPage;
class RunsPage;
class SubmitPage;
class TrainPage;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum Page { DataPageIndex = 0, TrainPageIndex, InspectPageIndex, SubmitPageIndex, RunsPageIndex };

    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    // Opens a project folder (shows its dataset if it has one). Returns false on failure.
    bool open_project(const std::filesystem::path& project);
    // Creates a project from the built-in sample competition in `folder` in the background
    // (sample → prepare), then opens it.
    void create_sample_project(const std::filesystem::path& folder);
    // Prepares the open project's dataset from a local source, in the background.
    void prepare_from(const PrepareRequest& request);
    // Downloads a Kaggle competition into PROJECT/download and prepares it, in the background.
    void download_competition(const QString& competition);

    const std::filesystem::path& project() const { return project_; }
    DataPage* data_page() const { return data_page_; }
    TrainPage* train_page() const { return train_page_; }
    InspectPage* inspect_page() const { return inspect_page_; }
    SubmitPage* submit_page() const { return submit_page_; }
    RunsPage* runs_page() const { return runs_page_; }
    BackgroundJob* job() const { return job_; }
    QListWidget* navigation() const { return nav_; }
    void log(const QString& line);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void build_menus();
    void build_status_bar();
    void choose_project();
    void choose_new_project();
    void choose_sample_folder();
    void remember_recent(const std::filesystem::path& project);
    // A recent project that is gone (moved, deleted) leaves the Recent menu.
    void forget_recent(const std::filesystem::path& project);
    // The page last shown for each project (QSettings "projects/pages", newest first): a
    // project opens where the user left it; one never opened opens on the Data page.
    void remember_page(int page);
    int remembered_page(const std::filesystem::path& project) const;
    void refresh_recent_menu();
    void show_progress(const QString& stage, qlonglong done, qlonglong total);
    // A page's job started or ended: the status bar's progress follows it.
    void page_busy(bool busy);
    // Starts a background job, or says the window is busy (false).
    bool start_job(const QString& name, std::function<void(const ProgressFn&, const std::atomic<bool>&)> work);
    // Shows a started job in the status bar; the project is reopened when it succeeds.
    void job_started(const std::filesystem::path& reopen, const QString& message);
    // Ends what runs for the open project before another is opened (asking first when
    // `ask`); false when the user keeps it running.
    bool finish_project_jobs(const std::filesystem::path& next, bool ask);
    // Who else holds the open project's lock: the Train page says so, and the session is read
    // again from disk once they are done.
    void watch_project_lock();

    std::filesystem::path project_;
    std::filesystem::path open_when_done_;   // opened when the running job succeeds
    QListWidget* nav_ = nullptr;
    QStackedWidget* pages_ = nullptr;
    DataPage* data_page_ = nullptr;
    TrainPage* train_page_ = nullptr;
    InspectPage* inspect_page_ = nullptr;
    SubmitPage* submit_page_ = nullptr;
    RunsPage* runs_page_ = nullptr;
    QPlainTextEdit* log_ = nullptr;
    QLabel* device_label_ = nullptr;
    QLabel* job_label_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QToolButton* cancel_button_ = nullptr;
    QMenu* recent_menu_ = nullptr;
    // For the status bar's "time left" of the current stage.
    QString eta_stage_;
    qint64 eta_start_ms_ = 0;
    BackgroundJob* job_ = nullptr;
    QString external_holder_;
    QLabel* holder_label_ = nullptr;
};

}  // namespace whisker::ui
