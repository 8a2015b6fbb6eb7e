// The Runs page: lists the runs a short session records (whisker-cli fits made while the
// workbench has the project open: the page follows them through its file watcher), sorts and
// filters them, overlays the epoch curves of two, and plots CV against the leaderboard for the
// submissions made against the Kaggle stand-in on 127.0.0.1 — one from the Submit page, one
// by `whisker-cli kaggle submit --project` — each of which is a run of its own. Then an
// ensemble of two runs goes through the Ensemble… dialog and the Submit page to a score.
#include "ui_test_support.h"

#include "background_job.h"
#include "ensemble_dialog.h"
#include "main_window.h"
#include "qcustomplot_include.h"
#include "runs_page.h"
#include "submit_page.h"
#include "training_worker.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/project/runs.h"
#include "whisker/project/session.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QElapsedTimer>
#include <QLabel>
#include <QLineEdit>
#include <QPainter>
#include <QProcess>
#include <QPushButton>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTableView>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <memory>
#include <optional>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::ui;

namespace {

const char* kCompetition = "dogs-vs-cats-redux-kernels-edition";

bool cli(const QStringList& args) {
    QProcess p;
    p.start(WHISKER_CLI_PATH, QStringList{"-q", "--threads", "2"} + args);
    if (!p.waitForFinished(300000) || p.exitCode() != 0) {
        qWarning("whisker-cli %s failed: %s", qPrintable(args.join(' ')), p.readAllStandardError().constData());
        return false;
    }
    return true;
}

QString q(const fs::path& p) { return QString::fromStdString(p.string()); }

// The Kaggle stand-in for the sample competition under `root` (its solution scores the
// uploads), with the credentials it expects in the environment; stopped when destroyed.
class KaggleStandIn {
public:
    explicit KaggleStandIn(const fs::path& root) {
        fs::create_directories(root / "state");
        server_.setProcessChannelMode(QProcess::ForwardedErrorChannel);
        server_.start("python3", {QString(WHISKER_TESTS_DIR) + "/support/kaggle_test_server.py", "--state", q(root / "state"),
                                  "--competition", kCompetition, "--archive", q(root / "dl/train.zip"), "--solution",
                                  q(root / "dl/sample_solution.csv")});
        if (!server_.waitForStarted(10000) || !server_.waitForReadyRead(20000)) return;
        const QString line = QString::fromUtf8(server_.readLine()).trimmed();
        if (!line.startsWith("PORT ")) return;
        qputenv("KAGGLE_API_ENDPOINT", ("http://127.0.0.1:" + line.mid(5)).toUtf8());
        qputenv("KAGGLE_CONFIG_DIR", q(root / "kaggle").toUtf8());
        qputenv("KAGGLE_USERNAME", "tester");
        qputenv("KAGGLE_KEY", "secret-key-123");
        qunsetenv("KAGGLE_API_TOKEN");
        ready_ = true;
    }
    ~KaggleStandIn() {
        for (const char* v : {"KAGGLE_API_ENDPOINT", "KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME", "KAGGLE_KEY"}) qunsetenv(v);
        server_.kill();
        server_.waitForFinished(5000);
    }
    bool ready() const { return ready_; }

private:
    QProcess server_;
    bool ready_ = false;
};

// Submits what the Submit page shows, with one click, and waits for Kaggle's score.
bool submit_and_wait(SubmitPage* submit, const QString& message) {
    submit->set_poll_interval(0.2);
    submit->competition_edit()->setText(kCompetition);
    submit->message_edit()->setText(message);
    if (!submit->submit_button()->isEnabled()) {
        qWarning("submit disabled: %s", qPrintable(submit->submit_button()->toolTip()));
        return false;
    }
    QSignalSpy done(submit->job(), &BackgroundJob::finished);
    QTest::mouseClick(submit->submit_button(), Qt::LeftButton);
    QElapsedTimer t;   // (the spy may have it already: count, do not wait for another)
    t.start();
    while (done.count() == 0 && t.elapsed() < 60000) QTest::qWait(20);
    if (done.count() == 0) return false;
    return submit->score_label()->text().startsWith("Public score: ");
}

// The history record of the submission with this message.
std::optional<kaggle::SubmissionRecord> history_entry(const fs::path& project, const std::string& message) {
    for (const auto& s : kaggle::SubmissionHistory::load(project).submissions)
        if (s.message == message) return s;
    return std::nullopt;
}

// Writes the record of run `number` as the recorder would (PROJECT/runs/NNNN-kind.json):
// a resnet18 run with these fits, each a list of (trn_loss, val_loss) epochs.
void write_run(const fs::path& project, int number, const std::string& kind, const std::string& status,
               const std::vector<std::vector<std::pair<double, double>>>& fits) {
    nlohmann::json fit_list = nlohmann::json::array();
    for (const auto& epochs : fits) {
        nlohmann::json list = nlohmann::json::array();
        for (std::size_t e = 0; e < epochs.size(); ++e)
            list.push_back({{"epoch", e}, {"trn_loss", epochs[e].first}, {"val_loss", epochs[e].second},
                            {"accuracy", 0.75}, {"log_loss", epochs[e].second}, {"seconds", 3.0}});
        fit_list.push_back({{"epochs", list}, {"stopped", status == "stopped"},
                            {"stop_reason", status == "stopped" ? "stopped by the user" : ""}});
    }
    const nlohmann::json run{{"format", "whisker-run"}, {"version", 1}, {"number", number}, {"kind", kind}, {"status", status},
                             {"started", "2026-12-01 10:31:05"}, {"program", "whisker"},
                             {"learner", {{"arch", "resnet18"}, {"size", 32}, {"batch_size", 8}}}, {"fits", fit_list}};
    char name[32];
    std::snprintf(name, sizeof name, "%04d-%s.json", number, kind.c_str());
    fs::create_directories(project / "runs");
    write_file_atomically(project / "runs" / name, run.dump(1));
}

// The centred line an empty plot shows instead of axes ("" when it shows data).
QString plot_message(QCustomPlot* plot) {
    for (int i = 0; i < plot->itemCount(); ++i)
        if (auto* text = qobject_cast<QCPItemText*>(plot->item(i)); text && text->objectName() == "emptyPlotMessage")
            return text->text();
    return {};
}

// A 1280x720 window on `project`, showing the Runs page; false when the project did not open.
bool open_on_runs_page(MainWindow& w, const fs::path& project) {
    w.resize(1280, 720);
    w.show();
    if (!open_and_wait(w, project)) return false;
    w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
    return true;
}

// An empty plot has no numbers on its axes (they would read 0–5), and no grid.
bool axes_bare(QCustomPlot* plot) {
    for (QCPAxis* axis : {plot->xAxis, plot->yAxis})
        if (axis->ticks() || axis->tickLabels() || axis->grid()->visible()) return false;
    return true;
}

// The table row of run `number` (-1 when it is not listed).
int row_of(RunsPage* page, int number) {
    for (int row = 0; row < page->proxy()->rowCount(); ++row)
        if (page->proxy()->index(row, RunsPage::Number).data(Qt::UserRole).toInt() == number) return row;
    return -1;
}

}  // namespace

class RunsPageTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    // Plots without data say what would fill them, and show no tick range of their own.
    void an_empty_plot_says_what_to_do() {
        QTemporaryDir tmp;
        const fs::path project = fs::path(tmp.path().toStdString()) / "project";
        fs::create_directories(project);
        MainWindow w;
        QVERIFY(open_on_runs_page(w, project));
        RunsPage* page = w.runs_page();
        // No runs at all.
        QCOMPARE(page->model()->rowCount(), 0);
        QVERIFY2(plot_message(page->curves()).contains("No runs yet"), qPrintable(plot_message(page->curves())));
        QVERIFY(axes_bare(page->curves()));
        QVERIFY2(plot_message(page->cv_plot()).contains("No scored submissions yet"), qPrintable(plot_message(page->cv_plot())));
        QVERIFY(axes_bare(page->cv_plot()));

        // A fit of two epochs, a recipe stopped in its first epoch, a prediction.
        write_run(project, 1, "fit", "finished", {{{0.9, 0.8}, {0.6, 0.5}}});
        write_run(project, 2, "recipe", "stopped", {{}});
        write_run(project, 3, "predict", "finished", {});
        page->refresh();
        QCOMPARE(page->model()->rowCount(), 3);
        QVERIFY(page->selected_runs().empty());
        QCOMPARE(page->curves()->graphCount(), 0);
        QVERIFY2(plot_message(page->curves()).contains("Select runs"), qPrintable(plot_message(page->curves())));
        QVERIFY(axes_bare(page->curves()));

        // The recipe stopped before an epoch ended: its plot says so.
        page->select_runs({2});
        QCOMPARE(page->curves()->graphCount(), 0);
        QVERIFY2(plot_message(page->curves()).contains("Run #2 has no epochs: it was stopped before its first epoch ended"),
                 qPrintable(plot_message(page->curves())));
        QVERIFY(axes_bare(page->curves()));
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/runs_page_empty_plots.png"));
        page->select_runs({3});
        QVERIFY2(plot_message(page->curves()).contains("Run #3 is a predict run: it trains no epochs"),
                 qPrintable(plot_message(page->curves())));
        page->select_runs({2, 3});
        QVERIFY2(plot_message(page->curves()).contains("None of the 2 selected runs has epochs"),
                 qPrintable(plot_message(page->curves())));

        // Data: the message goes and the axes have their ticks again; then none again.
        page->select_runs({1, 2});
        QCOMPARE(page->curves()->graphCount(), 2);
        QVERIFY(plot_message(page->curves()).isEmpty());
        QVERIFY(page->curves()->xAxis->tickLabels() && page->curves()->yAxis->tickLabels());
        QVERIFY(page->curves()->yAxis->grid()->visible());
        QCOMPARE(page->curves()->yAxis->range().upper, 0.9 * 1.1);
        page->select_runs({});
        QVERIFY(plot_message(page->curves()).contains("Select runs"));
        QVERIFY(axes_bare(page->curves()));
    }

    // A run that ended before its first epoch was over says how it ended in the Epochs column,
    // not "0"; one that finished epochs, or is still in its first, shows its count.
    void a_run_stopped_in_its_first_epoch_says_so() {
        QTemporaryDir tmp;
        const fs::path project = fs::path(tmp.path().toStdString()) / "project";
        write_run(project, 1, "fit", "finished", {{{0.9, 0.8}, {0.6, 0.5}}});
        write_run(project, 2, "recipe", "stopped", {{}});            // stopped during epoch 1
        write_run(project, 3, "recipe", "stopped", {});              // stopped in its LR sweep
        write_run(project, 4, "fit", "failed", {{}});                // a NaN loss in epoch 1
        write_run(project, 5, "recipe", "stopped", {{{0.9, 0.8}}});  // stopped after an epoch
        MainWindow w;
        QVERIFY(open_on_runs_page(w, project));
        RunsPage* page = w.runs_page();
        QCOMPARE(page->model()->rowCount(), 5);
        auto epochs = [page](int run) { return page->proxy()->index(row_of(page, run), RunsPage::Epochs); };
        QCOMPARE(epochs(1).data().toString(), QString("2"));
        QCOMPARE(epochs(2).data().toString(), QString("stopped in epoch 1"));
        QVERIFY2(epochs(2).data(Qt::ToolTipRole).toString().contains("during its first epoch"),
                 qPrintable(epochs(2).data(Qt::ToolTipRole).toString()));
        QCOMPARE(epochs(3).data().toString(), QString("stopped before epoch 1"));
        QCOMPARE(epochs(4).data().toString(), QString("failed in epoch 1"));
        QCOMPARE(epochs(5).data().toString(), QString("1"));
        QVERIFY(epochs(5).data(Qt::ToolTipRole).toString().isEmpty());
        // It sorts as no epochs, before the runs that have some; the filter finds it by its words.
        page->table()->sortByColumn(RunsPage::Epochs, Qt::AscendingOrder);
        QCOMPARE(page->proxy()->index(3, RunsPage::Epochs).data().toString(), QString("1"));
        QCOMPARE(page->proxy()->index(4, RunsPage::Epochs).data().toString(), QString("2"));
        page->filter()->setText("in epoch 1");
        QCOMPARE(page->proxy()->rowCount(), 2);
        page->filter()->clear();
        page->table()->sortByColumn(RunsPage::Number, Qt::DescendingOrder);
        page->select_runs({2});
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/runs_page_stopped_in_epoch_1.png"));
    }

    void lists_overlays_and_plots_cv_against_the_leaderboard() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 24, 6);
        const fs::path project = root / "project";
        const QString p = q(project);
        KaggleStandIn kaggle(root);
        QVERIFY(kaggle.ready());
        MainWindow w;
        QVERIFY(open_on_runs_page(w, project));
        RunsPage* page = w.runs_page();
        QCOMPARE(page->model()->rowCount(), 0);

        // A short session beside the workbench: two architectures.
        QVERIFY(cli({"fit", p, "--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained", "--lr", "1e-2", "--cycles", "2"}));
        QVERIFY(cli({"fit", p, "--arch", "mobilenet_v3_small", "--size", "32", "--bs", "8", "--no-pretrained", "--new-learner",
                     "--lr", "1e-2", "--cycles", "3"}));
        QTRY_COMPARE_WITH_TIMEOUT(page->model()->rowCount(), 2, 10000);   // the watcher saw them

        // The workbench takes the project's learner as whisker-cli left it, predicts the test
        // set (run 3) and submits from the Submit page (run 4) to the stand-in.
        QVERIFY(open_and_wait(w, project));
        SubmitPage* submit = w.submit_page();
        w.navigation()->setCurrentRow(MainWindow::SubmitPageIndex);
        QSignalSpy predicted(w.train_page()->worker(), &TrainingWorker::predictions_ready);
        submit->tta_box()->setValue(0);
        QTest::mouseClick(submit->predict_button(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(predicted.count(), 1, 120000);
        QTRY_VERIFY_WITH_TIMEOUT(!w.train_page()->busy(), 10000);
        QVERIFY2(submit->check_passed(), qPrintable(submit->check_label()->text()));
        QCOMPARE(submit->predictions().run, 3);
        QVERIFY(submit_and_wait(submit, "mobilenet"));
        const auto gui = history_entry(project, "mobilenet");
        QVERIFY(gui);
        QCOMPARE(QString::fromStdString(gui->status), QString("COMPLETE"));
        QCOMPARE(gui->run, 4);
        QCOMPARE(gui->source_run, 3);
        QCOMPARE(submit->history_table()->item(0, 7)->text(), QString("#4 from #3"));

        // The submission is a run: the kept file and its hash, where it came from, the message
        // and Kaggle's verdict.
        const auto run4 = project::read_run(project, 4);
        QVERIFY(run4);
        QCOMPARE(run4->kind, project::RunKind::Submission);
        QCOMPARE(QString::fromStdString(run4->status), QString("finished"));
        QCOMPARE(run4->parent, 3);
        QCOMPARE(run4->submission, gui->file);
        QCOMPARE(run4->submission_sha256, sha256_file(project / gui->file));
        QVERIFY(run4->kaggle);
        QCOMPARE(QString::fromStdString(run4->kaggle->competition), QString(kCompetition));
        QCOMPARE(QString::fromStdString(run4->kaggle->message), QString("mobilenet"));
        QCOMPARE(QString::fromStdString(run4->kaggle->status), QString("COMPLETE"));
        QCOMPARE(run4->kaggle->public_score, gui->public_score);
        QVERIFY(!run4->kaggle->ref.empty());

        // whisker-cli: a prediction that writes a file (run 5), sent with kaggle submit
        // --project (run 6, whose parent is the run that wrote the file).
        QVERIFY(cli({"predict", p, "--out", p + "/cli.csv"}));
        QVERIFY(cli({"kaggle", "submit", kCompetition, "-f", p + "/cli.csv", "-m", "from the cli", "--project", p,
                     "--poll-interval", "0.2"}));
        const auto from_cli = history_entry(project, "from the cli");
        QVERIFY(from_cli);
        QCOMPARE(from_cli->run, 6);
        QCOMPARE(from_cli->source_run, 5);
        const auto run6 = project::read_run(project, 6);
        QVERIFY(run6 && run6->kaggle);
        QCOMPARE(run6->kind, project::RunKind::Submission);
        QCOMPARE(run6->parent, 5);
        QCOMPARE(run6->submission_sha256, sha256_file(project / "cli.csv"));
        QCOMPARE(QString::fromStdString(run6->kaggle->status), QString("COMPLETE"));
        QCOMPARE(run6->kaggle->public_score, from_cli->public_score);
        w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
        QTRY_COMPARE_WITH_TIMEOUT(page->model()->rowCount(), 6, 10000);

        // Newest first; the kinds, the best metrics and the public scores are there: on the
        // submission runs, and on the runs whose predictions were sent.
        page->refresh();
        auto cell = [page](int row, int column) { return page->proxy()->index(row, column).data().toString(); };
        QCOMPARE(cell(0, RunsPage::Number), QString("6"));
        QCOMPARE(cell(0, RunsPage::Kind), QString("submission"));
        QCOMPARE(cell(0, RunsPage::Public), QString::fromStdString(from_cli->public_score));
        QCOMPARE(cell(0, RunsPage::Model), QString("to Kaggle: %1").arg(kCompetition));
        QCOMPARE(cell(1, RunsPage::Public), QString::fromStdString(from_cli->public_score));   // run 5 wrote it
        QCOMPARE(cell(2, RunsPage::Number), QString("4"));
        QCOMPARE(cell(2, RunsPage::Public), QString::fromStdString(gui->public_score));
        QCOMPARE(cell(2, RunsPage::From), QString("#3"));
        QCOMPARE(cell(3, RunsPage::Kind), QString("predict"));
        QCOMPARE(cell(3, RunsPage::Public), QString::fromStdString(gui->public_score));
        QCOMPARE(cell(5, RunsPage::Kind), QString("fit"));
        QCOMPARE(cell(5, RunsPage::Epochs), QString("2"));
        const auto run1 = project::read_run(project, 1);
        QVERIFY(run1);
        QCOMPARE(cell(5, RunsPage::LogLoss), QString::number(run1->best_epoch()->log_loss, 'f', 4));
        // Sorting by epochs: 2, 3, then the runs without epochs; the filter finds one architecture.
        page->table()->sortByColumn(RunsPage::Epochs, Qt::AscendingOrder);
        QCOMPARE(cell(0, RunsPage::Number), QString("1"));
        QCOMPARE(cell(1, RunsPage::Number), QString("2"));
        QCOMPARE(cell(2, RunsPage::Epochs), QString("-"));
        page->filter()->setText("resnet18");
        QCOMPARE(page->proxy()->rowCount(), 1);
        page->filter()->clear();
        QCOMPARE(page->proxy()->rowCount(), 6);

        // Two runs overlaid: a validation curve each (training curves dashed, not in the legend).
        page->select_runs({1, 2});
        QCOMPARE(page->selected_runs(), (std::vector<int>{1, 2}));
        QCOMPARE(page->curves()->graphCount(), 4);
        QCOMPARE(page->curves()->graph(0)->data()->size(), 2);
        QCOMPARE(page->curves()->graph(2)->data()->size(), 3);
        QVERIFY(page->curves()->graph(0)->name().contains("#1 resnet18"));
        QVERIFY(!page->load_button()->isEnabled());   // one run at a time
        QVERIFY(page->ensemble_button()->isEnabled());
        page->select_runs({1});
        QVERIFY(page->load_button()->isEnabled());

        // CV against the leaderboard: both submissions, at the validation log loss of the model
        // that made them (run 2's last epoch: the predictions have none of their own).
        const auto run2 = project::read_run(project, 2);
        QVERIFY(run2);
        const auto* points = page->cv_plot()->graph(0)->data().data();
        QCOMPARE(points->size(), 2);
        std::vector<double> scores, expected{std::stod(gui->public_score), std::stod(from_cli->public_score)};
        for (int i = 0; i < 2; ++i) {
            QCOMPARE(points->at(i)->key, run2->fits[0].epochs.back().log_loss);
            scores.push_back(points->at(i)->value);
        }
        std::sort(scores.begin(), scores.end());
        std::sort(expected.begin(), expected.end());
        QCOMPARE(scores, expected);

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

    void an_ensemble_goes_through_submit_to_a_score() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 24, 6);
        const fs::path project = root / "project";
        const QString p = q(project);
        KaggleStandIn kaggle(root);
        QVERIFY(kaggle.ready());
        // Two trained runs and a prediction (which has no weights of its own).
        QVERIFY(cli({"fit", p, "--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained", "--lr", "1e-2", "--cycles", "2"}));
        QVERIFY(cli({"fit", p, "--arch", "mobilenet_v3_small", "--size", "32", "--bs", "8", "--no-pretrained", "--new-learner",
                     "--lr", "1e-2", "--cycles", "2"}));
        QVERIFY(cli({"predict", p, "--out", p + "/submission.csv"}));

        MainWindow w;
        QVERIFY(open_on_runs_page(w, project));
        RunsPage* page = w.runs_page();
        QCOMPARE(page->model()->rowCount(), 3);
        page->select_runs({1, 2, 3});
        QTest::mouseClick(page->ensemble_button(), Qt::LeftButton);
        EnsembleDialog* dialog = page->ensemble_dialog();
        QVERIFY(dialog);
        QVERIFY(dialog->isVisible());

        // The members: the two fits (architecture, size, their own scores); the prediction is
        // listed but cannot be one, and the dialog says why.
        QCOMPARE(dialog->candidate_count(), 3);
        QVERIFY(dialog->is_usable(0) && dialog->is_usable(1) && !dialog->is_usable(2));
        QVERIFY(dialog->is_member(0) && dialog->is_member(1) && !dialog->is_member(2));
        dialog->set_member(2, true);
        QVERIFY(!dialog->is_member(2));
        QCOMPARE(dialog->table()->item(0, EnsembleDialog::Architecture)->text(), QString("resnet18"));
        QCOMPARE(dialog->table()->item(1, EnsembleDialog::Size)->text(), QString("32"));
        const auto run1 = project::read_run(project, 1);
        QCOMPARE(dialog->table()->item(0, EnsembleDialog::RecordedLogLoss)->text(),
                 QString::number(run1->validation()->log_loss, 'f', 4));
        QVERIFY(dialog->table()->item(2, EnsembleDialog::Member)->text().contains("not a member"));
        QVERIFY2(dialog->excluded_label()->text().contains("#3") && dialog->excluded_label()->text().contains("select #2"),
                 qPrintable(dialog->excluded_label()->text()));
        QVERIFY(!dialog->send_button()->isEnabled());

        // Bad input: weights that add up to 0 are refused with a message; fewer than two members too.
        dialog->mix_box()->setCurrentIndex(EnsembleDialog::WeightedMean);
        dialog->weight_box(0)->setValue(0);
        dialog->weight_box(1)->setValue(0);
        QVERIFY(!dialog->compute());
        QVERIFY2(dialog->status_label()->text().contains("add up to 0"), qPrintable(dialog->status_label()->text()));
        dialog->set_member(1, false);
        QVERIFY(!dialog->compute());
        QVERIFY(dialog->status_label()->text().contains("at least two members"));
        dialog->set_member(1, true);

        // Weights 1 and 0: the ensemble is its first member (each member predicted once, with TTA).
        TrainingWorker* worker = w.train_page()->worker();
        QSignalSpy finished(worker, &TrainingWorker::job_finished);
        QSignalSpy failed(worker, &TrainingWorker::failed);
        dialog->weight_box(0)->setValue(1);
        dialog->tta_box()->setValue(1);
        QVERIFY(dialog->compute());
        QVERIFY(w.train_page()->busy());
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 180000);   // the spy records in the worker's thread
        QCOMPARE(failed.count(), 0);
        QTRY_VERIFY_WITH_TIMEOUT(dialog->has_result() && dialog->compute_button()->isEnabled() && !w.train_page()->busy(), 10000);
        const EnsembleResult first = dialog->result();
        QCOMPARE(first.members.size(), 2);
        QVERIFY(std::isfinite(first.log_loss));
        QVERIFY(std::abs(first.log_loss - first.members[0].log_loss) < 1e-5);
        QCOMPARE(first.accuracy, first.members[0].accuracy);
        QCOMPARE(first.run, 4);

        // Weights 2 and 1: the settings changed, so Compute again (no member is predicted anew).
        dialog->weight_box(0)->setValue(2);
        dialog->weight_box(1)->setValue(1);
        QVERIFY(!dialog->has_result());
        QVERIFY(!dialog->send_button()->isEnabled());
        QVERIFY(dialog->compute());
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 60000);
        QCOMPARE(failed.count(), 0);
        QTRY_VERIFY_WITH_TIMEOUT(dialog->has_result() && dialog->compute_button()->isEnabled() && !w.train_page()->busy(), 10000);
        const EnsembleResult ensemble = dialog->result();
        QCOMPARE(ensemble.run, 5);
        QCOMPARE(ensemble.mix, QString("weighted mean"));
        for (int i = 0; i < 2; ++i) {
            QCOMPARE(ensemble.members[i].log_loss, first.members[i].log_loss);   // the same predictions
            QCOMPARE(dialog->table()->item(i, EnsembleDialog::LogLoss)->text(), QString::number(ensemble.members[i].log_loss, 'f', 4));
        }
        QCOMPARE(dialog->table()->item(3, EnsembleDialog::LogLoss)->text(), QString::number(ensemble.log_loss, 'f', 4));
        // Recorded as an ensemble run, as whisker-cli ensemble records one.
        const auto run5 = project::read_run(project, 5);
        QVERIFY(run5);
        QCOMPARE(run5->kind, project::RunKind::Ensemble);
        QCOMPARE(static_cast<int>(run5->members.size()), 2);
        QCOMPARE(QString::fromStdString(run5->members[0].source), QString("#1"));
        QCOMPARE(run5->members[0].weight, 2.0);
        QCOMPARE(run5->members[1].weight, 1.0);
        QCOMPARE(QString::fromStdString(run5->ensemble_mix), QString("weighted mean"));
        QVERIFY(run5->validation());
        QCOMPARE(run5->validation()->log_loss, ensemble.log_loss);
        QCOMPARE(run5->predictions.back().tta, 1);

        // The dialog over the workbench, at 1280×720.
        QVERIFY(save_dialog_screenshot(w, dialog, "ensemble_dialog.png"));

        // Send to Submit: the Submit page shows the ensemble and its members, checks the file,
        // and submits it with one click; the history names the members, the submission is a run.
        QVERIFY(dialog->send_button()->isEnabled());
        QTest::mouseClick(dialog->send_button(), Qt::LeftButton);
        QTRY_VERIFY(!page->ensemble_dialog());   // closed (and deleted)
        QCOMPARE(w.navigation()->currentRow(), static_cast<int>(MainWindow::SubmitPageIndex));
        SubmitPage* submit = w.submit_page();
        QVERIFY(submit->predictions().is_ensemble());
        QCOMPARE(submit->predictions().run, 5);
        QVERIFY(submit->predictions_current());
        QVERIFY(submit->model_label_text().contains("predicted by ensemble #5"));
        QVERIFY(submit->members_label()->text().contains("ensemble #5 (weighted mean) of 2 members"));
        QVERIFY(submit->members_label()->isVisible());
        QVERIFY(submit->members_label()->text().contains("#1 resnet18 at 32 px, weight 2"));
        QVERIFY(submit->members_label()->text().contains("#2 mobilenet_v3_small at 32 px, weight 1"));
        QVERIFY(submit->members_label()->text().contains(QString::number(ensemble.log_loss, 'f', 4)));
        QVERIFY2(submit->check_passed(), qPrintable(submit->check_label()->text()));
        QCOMPARE(submit->preview_table()->rowCount(), 6);
        QVERIFY(submit_and_wait(submit, "ensemble of two"));
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/submit_ensemble.png"));

        const auto entry = history_entry(project, "ensemble of two");
        QVERIFY(entry);
        QCOMPARE(QString::fromStdString(entry->status), QString("COMPLETE"));
        QCOMPARE(entry->source_run, 5);
        QCOMPARE(entry->run, 6);
        QCOMPARE(static_cast<int>(entry->members.size()), 2);
        QCOMPARE(QString::fromStdString(entry->members[0]), QString("#1 resnet18 at 32 px, weight 2"));
        QVERIFY(entry->checkpoint.empty());   // the members' checkpoints are the model
        QVERIFY(submit->history_table()->item(0, 6)->text().contains("#2 mobilenet_v3_small"));
        const auto run6 = project::read_run(project, 6);
        QVERIFY(run6 && run6->kaggle);
        QCOMPARE(run6->kind, project::RunKind::Submission);
        QCOMPARE(run6->parent, 5);
        QCOMPARE(run6->kaggle->public_score, entry->public_score);
        QCOMPARE(run6->submission_sha256, sha256_file(project / entry->file));

        // Back on the Runs page: the submission run with its score, and the ensemble's point on
        // the CV-against-leaderboard plot at the ensemble's own validation log loss.
        w.navigation()->setCurrentRow(MainWindow::RunsPageIndex);
        QTRY_COMPARE_WITH_TIMEOUT(page->model()->rowCount(), 6, 10000);
        page->refresh();
        QCOMPARE(page->proxy()->index(0, RunsPage::Public).data().toString(), QString::fromStdString(entry->public_score));
        QCOMPARE(page->proxy()->index(1, RunsPage::Model).data().toString(), QString("ensemble of 2"));
        QCOMPARE(page->proxy()->index(1, RunsPage::Public).data().toString(), QString::fromStdString(entry->public_score));
        QCOMPARE(page->cv_plot()->graph(0)->data()->size(), 1);
        QCOMPARE(page->cv_plot()->graph(0)->data()->at(0)->key, ensemble.log_loss);
        QCOMPARE(page->cv_plot()->graph(0)->data()->at(0)->value, std::stod(entry->public_score));
    }
};

int run_runs_page_tests(int argc, char** argv) {
    RunsPageTest t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_runs_page.moc"
