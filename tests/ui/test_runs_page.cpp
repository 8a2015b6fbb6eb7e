// The Runs page: lists the runs a short session records (whisker-cli fits and a submission,
// made while the workbench has the project open: the page follows them through its file
// watcher), sorts and filters them, overlays the epoch curves of two, and plots the
// submission's validation log loss against its public score from the project's Kaggle history.
#include "ui_test_support.h"

#include "runs_page.h"
#include "main_window.h"
#include "qcustomplot_include.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"

#include <QLineEdit>
#include <QProcess>
#include <QSortFilterProxyModel>
#include <QStandardItemModel>
#include <QTableView>
#include <QTemporaryDir>
#include <QTest>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::ui;

namespace {

bool cli(const QStringList& args) {
    QProcess p;
    p.start(WHISKER_CLI_PATH, QStringList{"-q", "--threads", "2"} + args);
    if (!p.waitForFinished(300000) || p.exitCode() != 0) {
        qWarning("whisker-cli %s failed: %s", qPrintable(args.join(' ')), p.readAllStandardError().constData());
        return false;
    }
    return true;
}

}  // namespace

class RunsPageTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void lists_overlays_and_plots_cv_against_the_leaderboard() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 24, 6);
        const fs::path project = root / "project";
        const QString p = QString::fromStdString(project.string());
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, project));
        RunsPage* page = w.runs_page();
        w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
        QCOMPARE(page->model()->rowCount(), 0);

        // A short session beside the workbench: two architectures, then a submission.
        QVERIFY(cli({"fit", p, "--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained", "--lr", "1e-2", "--cycles", "2"}));
        QVERIFY(cli({"fit", p, "--arch", "mobilenet_v3_small", "--size", "32", "--bs", "8", "--no-pretrained", "--new-learner",
                     "--lr", "1e-2", "--cycles", "3"}));
        QVERIFY(cli({"predict", p, "--out", p + "/submission.csv"}));
        QTRY_COMPARE_WITH_TIMEOUT(page->model()->rowCount(), 3, 10000);   // the watcher saw them

        // The history keeps a copy of the uploaded file and Kaggle's score, as the stand-in leaves it.
        fs::create_directories(project / "submissions");
        fs::copy_file(project / "submission.csv", project / "submissions" / "submission-1.csv");
        kaggle::SubmissionHistory h;
        kaggle::SubmissionRecord rec;
        rec.date = "2026-12-01 10:00:00";
        rec.file = "submissions/submission-1.csv";
        rec.message = "mobilenet";
        rec.status = "COMPLETE";
        rec.public_score = "0.68420";
        h.submissions.push_back(rec);
        h.save(project);
        page->refresh();

        // Newest first; the kinds and the best metrics are there.
        auto cell = [page](int row, int column) { return page->proxy()->index(row, column).data().toString(); };
        QCOMPARE(cell(0, RunsPage::Number), QString("3"));
        QCOMPARE(cell(0, RunsPage::Kind), QString("submission"));
        QCOMPARE(cell(0, RunsPage::Public), QString("0.68420"));
        QCOMPARE(cell(2, RunsPage::Kind), QString("fit"));
        QCOMPARE(cell(2, RunsPage::Epochs), QString("2"));
        const auto run1 = project::read_run(project, 1);
        QVERIFY(run1);
        QCOMPARE(cell(2, RunsPage::LogLoss), QString::number(run1->best_epoch()->log_loss, 'f', 4));
        // Sorting by epochs: 2, 3, then the run without epochs; the filter finds one architecture.
        page->table()->sortByColumn(RunsPage::Epochs, Qt::AscendingOrder);
        QCOMPARE(cell(0, RunsPage::Number), QString("1"));
        QCOMPARE(cell(1, RunsPage::Number), QString("2"));
        QCOMPARE(cell(2, RunsPage::Epochs), QString("-"));
        page->filter()->setText("mobilenet");
        QCOMPARE(page->proxy()->rowCount(), 2);
        page->filter()->clear();
        QCOMPARE(page->proxy()->rowCount(), 3);

        // Two runs overlaid: a validation curve each (training curves dashed, not in the legend).
        page->select_runs({1, 2});
        QCOMPARE(page->selected_runs(), (std::vector<int>{1, 2}));
        QCOMPARE(page->curves()->graphCount(), 4);
        QCOMPARE(page->curves()->graph(0)->data()->size(), 2);
        QCOMPARE(page->curves()->graph(2)->data()->size(), 3);
        QVERIFY(page->curves()->graph(0)->name().contains("#1 resnet18"));
        QVERIFY(!page->load_button()->isEnabled());   // one run at a time
        page->select_runs({1});
        QVERIFY(page->load_button()->isEnabled());

        // CV against the leaderboard: the submission at (its parent's validation log loss, 0.6842).
        QCOMPARE(page->cv_plot()->graph(0)->data()->size(), 1);
        const auto run2 = project::read_run(project, 2);
        QVERIFY(run2);
        QCOMPARE(page->cv_plot()->graph(0)->data()->at(0)->key, run2->fits[0].epochs.back().log_loss);
        QCOMPARE(page->cv_plot()->graph(0)->data()->at(0)->value, 0.6842);

        page->select_runs({1, 2});
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/runs_page.png"));

        // Loading run 1's checkpoint (another architecture) makes it the project's learner.
        page->select_runs({1});
        page->load_selected_checkpoint();
        QTest::qWait(50);
        QTRY_VERIFY_WITH_TIMEOUT(!w.train_page()->busy(), 60000);
        const auto spec = project::LearnerSpec::read(project);
        QVERIFY(spec);
        QCOMPARE(QString::fromStdString(spec->arch), QString("resnet18"));
    }
};

int run_runs_page_tests(int argc, char** argv) {
    RunsPageTest t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_runs_page.moc"
