// Continues the workbench walk on the sample competition, against the Kaggle stand-in on
// 127.0.0.1: train an epoch → Inspect (galleries sorted by loss, the confusion matrix, a click
// on a cell, a tile marked as excluded, the next fit leaves it out, the mistakes exported) →
// Submit (TTA predictions, preview and checks, an export identical to `whisker-cli predict`,
// the credentials dialog, one-click submit with the server's score, the history table).
#include "background_job.h"
#include "data_page.h"
#include "image_browser.h"
#include "inspect_page.h"
#include "main_window.h"
#include "submit_page.h"
#include "train_page.h"
#include "training_worker.h"
#include "ui_test_support.h"
#include "qcustomplot_include.h"

#include "whisker/common/files.h"
#include "whisker/data/prepare.h"
#include "whisker/kaggle/credentials.h"
#include "whisker/kaggle/submission_history.h"
#include "whisker/sample/sample_competition.h"
#include "whisker/train/distributed.h"

#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QProcess>
#include <QRegularExpression>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest/QtTest>

#include <sys/stat.h>

#include <cmath>

namespace fs = std::filesystem;
using whisker::ui::MainWindow;
using whisker::ui::PredictionSet;
using whisker::ui::TrainingWorker;

class InspectSubmitTest : public QObject {
    Q_OBJECT
private:
    static QString q(const fs::path& p) { return QString::fromStdString(p.string()); }

private Q_SLOTS:
    void inspect_and_submit_walk() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const std::string comp = "dogs-vs-cats-redux-kernels-edition";
        const auto prepared = prepare_sample_project(root, 80, 12);
        const int valid_count = static_cast<int>(prepared.count(whisker::data::Split::Valid));
        QVERIFY(valid_count > 4);

        // The Kaggle stand-in, with no credentials set up yet.
        fs::create_directories(root / "state");
        QProcess server;
        struct StopServer {
            QProcess& p;
            ~StopServer() {
                p.kill();
                p.waitForFinished(5000);
            }
        } stop_server{server};
        server.setProcessChannelMode(QProcess::ForwardedErrorChannel);
        server.start("python3", {QString(WHISKER_TESTS_DIR) + "/support/kaggle_test_server.py", "--state", q(root / "state"),
                                 "--competition", QString::fromStdString(comp), "--archive", q(root / "dl/train.zip"),
                                 "--solution", q(root / "dl/sample_solution.csv")});
        QVERIFY(server.waitForStarted(10000));
        QVERIFY(server.waitForReadyRead(20000));
        const QString port_line = QString::fromUtf8(server.readLine()).trimmed();
        QVERIFY2(port_line.startsWith("PORT "), qPrintable(port_line));
        qputenv("KAGGLE_API_ENDPOINT", ("http://127.0.0.1:" + port_line.mid(5)).toUtf8());
        qputenv("KAGGLE_CONFIG_DIR", q(root / "kaggle").toUtf8());
        for (const char* v : {"KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"}) qunsetenv(v);

        MainWindow w;
        w.resize(1360, 900);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        auto* train = w.train_page();
        TrainingWorker* worker = train->worker();
        QSignalSpy finished(worker, &TrainingWorker::job_finished);
        QSignalSpy failed(worker, &TrainingWorker::failed);
        QSignalSpy predicted(worker, &TrainingWorker::predictions_ready);

        // Inspect and Submit are selectable pages now.
        QVERIFY(w.navigation()->item(MainWindow::InspectPageIndex)->flags() & Qt::ItemIsEnabled);
        QVERIFY(w.navigation()->item(MainWindow::SubmitPageIndex)->flags() & Qt::ItemIsEnabled);

        // A learner and one epoch.
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        choose_small_learner(train);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        train->cycles_box()->setValue(1);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(finished.wait(120000));
        QCOMPARE(failed.count(), 0);

        // ---- Inspect: opening the page predicts the validation set in the background ----
        auto* inspect = w.inspect_page();
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);
        QVERIFY(train->busy());
        QVERIFY(predicted.wait(120000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QCOMPARE(failed.count(), 0);
        QVERIFY(inspect->has_predictions());
        QVERIFY(!inspect->stale());
        const auto& preds = *inspect->predictions().predictions;
        QCOMPARE(static_cast<int>(preds.records.size()), valid_count);

        // The confusion matrix: 2×2, cells sum to the validation count.
        QTableWidget* cm = inspect->confusion_table();
        QCOMPARE(cm->rowCount(), 2);
        QCOMPARE(cm->columnCount(), 2);
        int sum = 0;
        for (int a = 0; a < 2; ++a)
            for (int p = 0; p < 2; ++p) sum += cm->item(a, p)->text().toInt();
        QCOMPARE(sum, valid_count);
        QCOMPARE(inspect->class_table()->rowCount(), 2);
        QVERIFY(inspect->summary_label()->text().contains("accuracy"));

        // Galleries sorted by loss: all images, and the mistakes (tiles carry the labels).
        inspect->set_view(whisker::ui::InspectPage::AllByLoss);
        QCOMPARE(static_cast<int>(inspect->gallery_rows().size()), valid_count);
        for (std::size_t i = 1; i < inspect->gallery_rows().size(); ++i)
            QVERIFY(preds.losses[inspect->gallery_rows()[i - 1]] >= preds.losses[inspect->gallery_rows()[i]]);
        inspect->set_view(whisker::ui::InspectPage::MostConfidentMistakes);
        const auto mistakes = inspect->gallery_rows();
        QVERIFY2(!mistakes.empty(), "a model trained for one epoch from scratch should make mistakes");
        for (std::size_t i = 0; i < mistakes.size(); ++i) {
            QVERIFY(preds.actual[mistakes[i]] != preds.predicted[mistakes[i]]);
            if (i) QVERIFY(preds.losses[mistakes[i - 1]] >= preds.losses[mistakes[i]]);
        }
        const QString caption = inspect->gallery_model()->data(inspect->gallery_model()->index(0), Qt::DisplayRole).toString();
        QVERIFY2(caption.contains("→") && caption.contains("p="), qPrintable(caption));
        inspect->set_view(whisker::ui::InspectPage::MostConfidentCorrect);
        for (std::size_t r : inspect->gallery_rows()) QCOMPARE(preds.actual[r], preds.predicted[r]);
        inspect->set_view(whisker::ui::InspectPage::MostUncertain);
        QCOMPARE(static_cast<int>(inspect->gallery_rows().size()), valid_count);

        // Clicking a cell filters the gallery to the images behind it.
        int a_cell = 0, p_cell = 1;
        if (cm->item(0, 1)->text().toInt() == 0) std::swap(a_cell, p_cell);
        const int expected = cm->item(a_cell, p_cell)->text().toInt();
        const QRect rect = cm->visualItemRect(cm->item(a_cell, p_cell));
        QTest::mouseClick(cm->viewport(), Qt::LeftButton, {}, rect.center());
        QCOMPARE(inspect->view_box()->currentIndex(), static_cast<int>(whisker::ui::InspectPage::ConfusionCell));
        QCOMPARE(static_cast<int>(inspect->gallery_rows().size()), expected);
        for (std::size_t r : inspect->gallery_rows()) {
            QCOMPARE(preds.actual[r], a_cell);
            QCOMPARE(preds.predicted[r], p_cell);
        }
        inspect->normalised_box()->setChecked(true);
        QVERIFY(cm->item(a_cell, p_cell)->text().contains('.'));
        inspect->gallery_model()->wait_for_thumbnails();
        QTest::qWait(300);
        QVERIFY(w.grab().save(screenshot_dir() + "/inspect_page.png"));

        // The mistakes export as CSV, highest loss first.
        const fs::path mistakes_csv = root / "mistakes.csv";
        QVERIFY(inspect->export_mistakes(q(mistakes_csv)));
        const std::string csv = whisker::read_file(mistakes_csv);
        QVERIFY(csv.rfind("path,id,actual,predicted,probability,probability_actual,loss,p_cat,p_dog\n", 0) == 0);
        QCOMPARE(static_cast<int>(std::count(csv.begin(), csv.end(), '\n')), 1 + static_cast<int>(mistakes.size()));

        // A tile opens large with every class's probability; exclude the image.
        inspect->set_view(whisker::ui::InspectPage::MostConfidentMistakes);
        const std::size_t marked_record = preds.records[inspect->gallery_rows()[0]];
        QDialog* tile = inspect->open_tile(0);
        QVERIFY(tile);
        QCOMPARE(tile->findChild<QTableWidget*>("classProbabilities")->rowCount(), 2);
        QTest::mouseClick(tile->findChild<QPushButton*>("excludeButton"), Qt::LeftButton);
        QVERIFY(tile->findChild<QLabel*>("markState")->text().contains("Excluded"));
        QVERIFY(tile->grab().save(screenshot_dir() + "/inspect_image.png"));
        tile->close();
        {
            const auto manifest = whisker::data::Dataset::load(root / "project");
            QVERIFY(manifest.images[marked_record].excluded);
            QCOMPARE(static_cast<int>(manifest.count(whisker::data::Split::Valid)), valid_count - 1);
        }
        // Undo, then mark again: marks can be taken back.
        QVERIFY(inspect->clear_marks(marked_record));
        QVERIFY(!whisker::data::Dataset::load(root / "project").images[marked_record].excluded);
        QVERIFY(inspect->set_excluded(marked_record, true));
        // The Data page lists the marked images and can undo them too; mark again afterwards.
        {
            auto* browser = w.data_page()->browser();
            browser->marked_box()->setChecked(true);
            QCOMPARE(browser->model()->rowCount(), 1);
            QDialog* large = browser->open_row(0);
            QVERIFY(large->findChild<QLabel*>("markState")->text().contains("Excluded"));
            QTest::mouseClick(large->findChild<QPushButton*>("undoMarksButton"), Qt::LeftButton);
            QCOMPARE(browser->model()->rowCount(), 0);
            QVERIFY(!whisker::data::Dataset::load(root / "project").images[marked_record].excluded);
            QVERIFY(!inspect->dataset()->images[marked_record].excluded);
            browser->marked_box()->setChecked(false);
            QVERIFY(inspect->set_excluded(marked_record, true));
        }

        // The next fit honours the mark: the learner leaves the image out.
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(finished.wait(120000));
        QCOMPARE(failed.count(), 0);
        QVERIFY(worker->learner()->dataset().images[marked_record].excluded);
        QVERIFY(inspect->stale());
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);
        QVERIFY(predicted.wait(120000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        const auto& after = *inspect->predictions().predictions;
        QCOMPARE(static_cast<int>(after.records.size()), valid_count - 1);
        QVERIFY(std::find(after.records.begin(), after.records.end(), marked_record) == after.records.end());

        // ---- Submit ----
        auto* submit = w.submit_page();
        submit->set_poll_interval(0.2);
        w.navigation()->setCurrentRow(MainWindow::SubmitPageIndex);
        QVERIFY(!submit->submit_button()->isEnabled());
        submit->tta_box()->setValue(2);
        QTest::mouseClick(submit->predict_button(), Qt::LeftButton);
        QVERIFY(predicted.wait(120000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QCOMPARE(failed.count(), 0);
        QVERIFY(submit->has_predictions());
        QCOMPARE(submit->preview_table()->columnCount(), 2);
        QCOMPARE(submit->preview_table()->rowCount(), 12);
        QVERIFY(submit->rows_label()->text().contains("12 rows"));
        QVERIFY2(submit->check_passed(), qPrintable(submit->check_label()->text()));
        QVERIFY(submit->check_label()->text().contains("Matches sample_submission.csv"));
        auto* bars = static_cast<QCPBars*>(submit->histogram()->plottable(0));
        double counted = 0;
        for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) counted += it->value;
        QCOMPARE(counted, 12.0);

        // The exported file is byte for byte what whisker-cli predict writes for the same
        // checkpoint ("current", saved after the fit) and settings.
        const fs::path gui_csv = root / "gui.csv", gui_gz = root / "gui.csv.gz", cli_csv = root / "cli.csv";
        QVERIFY(submit->export_to(q(gui_csv)));
        QVERIFY(submit->export_to(q(gui_gz)));
        QProcess cli;
        cli.setProcessChannelMode(QProcess::ForwardedChannels);
        cli.start(WHISKER_CLI_PATH, {"-q", "predict", q(root / "project"), "--tta", "2", "--out", q(cli_csv)});
        QVERIFY(cli.waitForFinished(180000));
        QCOMPARE(cli.exitCode(), 0);
        QCOMPARE(QString::fromStdString(whisker::read_file(gui_csv)), QString::fromStdString(whisker::read_file(cli_csv)));
        QCOMPARE(QString::fromStdString(whisker::read_file(submit->submission_file())), QString::fromStdString(whisker::read_file(cli_csv)));
        QVERIFY(whisker::read_file(gui_gz).substr(0, 2) == "\x1f\x8b");

        // Submit with no credentials: the dialog asks for them and saves kaggle.json (0600).
        submit->message_edit()->setText("gui walk");
        QCOMPARE(submit->competition_edit()->text().isEmpty(), true);  // a sample project: no download to name it
        submit->competition_edit()->setText(QString::fromStdString(comp));
        QVERIFY(submit->submit_button()->isEnabled());
        bool dialog_seen = false;
        QTimer::singleShot(300, this, [&] {
            auto* dialog = qobject_cast<QDialog*>(QApplication::activeModalWidget());
            if (!dialog || dialog->objectName() != "credentialsDialog") return;
            dialog_seen = true;
            dialog->findChild<QLineEdit*>("kaggleUsername")->setText("tester");
            dialog->findChild<QLineEdit*>("kaggleKey")->setText("secret-key-123");
            dialog->grab().save(screenshot_dir() + "/credentials_dialog.png");
            QTest::mouseClick(dialog->findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Save), Qt::LeftButton);
        });
        QSignalSpy job_done(submit->job(), &whisker::ui::BackgroundJob::finished);
        QTest::mouseClick(submit->submit_button(), Qt::LeftButton);
        QVERIFY(dialog_seen);
        struct stat st{};
        QCOMPARE(::stat((root / "kaggle/kaggle.json").c_str(), &st), 0);
        QCOMPARE(st.st_mode & 0777, 0600u);
        QVERIFY(job_done.wait(60000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        // The stand-in scores the log loss of the uploaded file against the sample's solution.
        QVERIFY2(QRegularExpression("^Public score: \\d+\\.\\d{5}$").match(submit->score_label()->text()).hasMatch(),
                 qPrintable(submit->score_label()->text()));

        // The server received exactly the file, and the history records the score and checkpoint.
        const QStringList uploads = QDir(q(root / "state/uploads")).entryList(QDir::Files);
        QCOMPARE(uploads.size(), 1);
        QCOMPARE(QString::fromStdString(whisker::read_file(root / "state/uploads" / uploads[0].toStdString())),
                 QString::fromStdString(whisker::read_file(cli_csv)));
        const auto history = whisker::kaggle::SubmissionHistory::load(root / "project");
        QCOMPARE(history.competition, comp);
        QCOMPARE(static_cast<int>(history.submissions.size()), 1);
        const auto& rec = history.submissions[0];
        QCOMPARE(rec.status, std::string("COMPLETE"));
        QCOMPARE(QString("Public score: ") + QString::fromStdString(rec.public_score), submit->score_label()->text());
        QCOMPARE(rec.message, std::string("gui walk"));
        QVERIFY(!rec.checkpoint.empty());
        QVERIFY(fs::exists(root / "project/models" / (rec.checkpoint + ".safetensors")));
        QVERIFY(fs::exists(root / "project" / rec.file));
        QCOMPARE(submit->history_table()->rowCount(), 1);
        QCOMPARE(submit->history_table()->item(0, 1)->text(), QString("COMPLETE"));
        QCOMPARE(submit->history_table()->item(0, 2)->text(), QString::fromStdString(rec.public_score));
        QCOMPARE(submit->history_table()->item(0, 6)->text(), QString::fromStdString(rec.checkpoint));

        // Refreshing from Kaggle keeps the one record (matched, not duplicated).
        QVERIFY(submit->refresh_history());
        QVERIFY(job_done.wait(30000));
        QCOMPARE(submit->history_table()->rowCount(), 1);
        QTest::qWait(200);
        QVERIFY(w.grab().save(screenshot_dir() + "/submit_page.png"));

    }

    // Submit disabled says why under the button, not only in its tooltip: first "predict", then,
    // with a checked file of a project prepared from local data, that it has no competition.
    void submit_says_why_it_is_disabled() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 24, 6);
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        auto* train = w.train_page();
        auto* submit = w.submit_page();
        w.navigation()->setCurrentRow(MainWindow::SubmitPageIndex);
        QVERIFY(submit->competition_edit()->text().isEmpty());   // local data: no competition known
        QVERIFY(!submit->submit_button()->isEnabled());
        QVERIFY(submit->submit_note()->isVisible());
        QVERIFY2(submit->submit_note()->text().contains("Predict the test set first"), qPrintable(submit->submit_note()->text()));

        // A learner (untrained will do) predicts the test set; the file passes its checks.
        TrainingWorker* worker = train->worker();
        QSignalSpy finished(worker, &TrainingWorker::job_finished);
        QSignalSpy predicted(worker, &TrainingWorker::predictions_ready);
        choose_small_learner(train);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        QTRY_VERIFY(train->has_learner() && !train->busy());
        submit->tta_box()->setValue(0);
        QTest::mouseClick(submit->predict_button(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(predicted.count(), 1, 120000);
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QVERIFY2(submit->check_passed(), qPrintable(submit->check_label()->text()));

        // Everything is ready but the competition: the page says so where the user looks.
        QVERIFY(!submit->submit_button()->isEnabled());
        QVERIFY(submit->submit_note()->isVisible());
        QVERIFY2(submit->submit_note()->text().contains("No Kaggle competition yet: name it above"),
                 qPrintable(submit->submit_note()->text()));
        QVERIFY(submit->submit_button()->toolTip().contains("no Kaggle competition yet"));
        // The whole line shows (not squeezed under its neighbours at 1280x720).
        QVERIFY2(submit->submit_note()->height() >= submit->submit_note()->heightForWidth(submit->submit_note()->width()),
                 qPrintable(QString("%1 px for %2").arg(submit->submit_note()->height())
                                .arg(submit->submit_note()->heightForWidth(submit->submit_note()->width()))));
        QTest::qWait(50);
        QVERIFY(w.grab().save(screenshot_dir() + "/submit_page_no_competition.png"));
        // Named: Submit is enabled and the note goes; emptied again: it is back.
        QTest::keyClicks(submit->competition_edit(), "dogs-vs-cats-redux-kernels-edition");
        QVERIFY(submit->submit_button()->isEnabled());
        QVERIFY(!submit->submit_note()->isVisible());
        submit->competition_edit()->clear();
        QVERIFY(!submit->submit_button()->isEnabled());
        QVERIFY(submit->submit_note()->isVisible());
    }

    // The Kaggle account line (who, and the file the key came from, often a long path) is
    // readable at a laptop's 1280x720 and at 1920x1080: each line whole or elided in the middle,
    // the whole text in its tooltip, nothing cut or overlapping its neighbours.
    void submit_account_line_is_readable() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const fs::path config = root / "a-rather-long-folder-name-as-people-have" / "settings-of-the-kaggle-command" / "kaggle";
        whisker::kaggle::write_kaggle_json("someone-with-a-long-kaggle-name", "0123456789abcdef0123456789abcdef", config);
        qputenv("KAGGLE_CONFIG_DIR", q(config).toUtf8());
        for (const char* v : {"KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"}) qunsetenv(v);
        fs::create_directories(root / "project");
        for (const QSize size : {QSize(1280, 720), QSize(1920, 1080)}) {
            MainWindow w;
            w.resize(size);
            w.show();
            QVERIFY(open_and_wait(w, root / "project"));
            w.navigation()->setCurrentRow(MainWindow::SubmitPageIndex);
            QTest::qWait(50);
            QLabel* account = w.submit_page()->account_label();
            QVERIFY(account->isVisible());
            const QString whole = account->toolTip();
            QVERIFY2(whole.contains("someone-with-a-long-kaggle-name") && whole.contains("kaggle.json"), qPrintable(whole));
            const QFontMetrics fm(account->font());
            const QStringList shown = account->text().split('\n'), full = whole.split('\n');
            QCOMPARE(shown.size(), full.size());
            for (int i = 0; i < shown.size(); ++i) {
                QVERIFY2(fm.horizontalAdvance(shown[i]) <= account->contentsRect().width(),
                         qPrintable(QString("'%1' is wider than its %2 px").arg(shown[i]).arg(account->contentsRect().width())));
                // Elided in the middle only: the start and the end are the real ones.
                if (shown[i] != full[i]) {
                    QVERIFY2(shown[i].contains(QChar(0x2026)), qPrintable(shown[i]));
                    QVERIFY(full[i].startsWith(shown[i].section(QChar(0x2026), 0, 0)));
                    QVERIFY(full[i].endsWith(shown[i].section(QChar(0x2026), 1)));
                }
            }
            QVERIFY(shown[0].contains("someone-with-a-long-kaggle-name"));   // the name itself fits
            QVERIFY(shown.last().endsWith("kaggle.json"));
            QVERIFY2(fm.lineSpacing() * shown.size() <= account->contentsRect().height(),
                     qPrintable(QString("%1 lines in %2 px").arg(shown.size()).arg(account->contentsRect().height())));
            // Its column is not widened by the path: the label is inside the Submit box.
            const QWidget* box = account->parentWidget();
            QVERIFY(QRect(QPoint(0, 0), box->size()).contains(QRect(account->mapTo(box, QPoint(0, 0)), account->size())));
            QVERIFY(w.grab().save(screenshot_dir() + QString("/submit_account_%1x%2.png").arg(size.width()).arg(size.height())));
        }
        qunsetenv("KAGGLE_CONFIG_DIR");
    }
};

// The Train page's "Processes" option: the fit runs data-parallel in two whisker-cli workers
// (Gloo on 127.0.0.1), their epochs fill the table, and the window's learner continues from
// what rank 0 saved.
class ParallelFitTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void fit_in_two_processes() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 40, 4);
        qputenv("WHISKER_CLI", WHISKER_CLI_PATH);

        MainWindow w;
        w.resize(1280, 860);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        auto* train = w.train_page();
        TrainingWorker* worker = train->worker();
        QSignalSpy finished(worker, &TrainingWorker::job_finished);
        QSignalSpy failed(worker, &TrainingWorker::failed);
        choose_small_learner(train);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        QVERIFY(!train->all_gpus_box()->isEnabled() || whisker::train::local_gpu_count() >= 2);
        train->processes_box()->setValue(2);
        train->cycles_box()->setValue(2);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(train->busy());
        QVERIFY(finished.wait(240000));
        QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed.first().at(1).toString()));
        QCOMPARE(finished.last().at(1).toBool(), false);
        QCOMPARE(train->epoch_table()->rowCount(), 2);
        QCOMPARE(worker->learner()->epochs_trained(), 2L);
        QVERIFY(train->loss_plot()->graph(0)->dataCount() > 0);   // rank 0's batches, plotted live
        QVERIFY(w.grab().save(screenshot_dir() + "/train_page_two_processes.png"));

        // Workers that fail: what they printed on stderr reaches the log and the error message.
        const fs::path broken = root / "broken-cli.sh";
        whisker::write_file_atomically(broken, "#!/bin/sh\necho \"cannot train: out of memory on rank $RANK\" >&2\nexit 1\n");
        fs::permissions(broken, fs::perms::owner_all);
        qputenv("WHISKER_CLI", QByteArray::fromStdString(broken.string()));
        QTimer dismiss;   // the failure is also shown in a message box: close it
        connect(&dismiss, &QTimer::timeout, [] {
            if (QWidget* box = QApplication::activeModalWidget()) box->close();
        });
        dismiss.start(100);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(failed.wait(60000));
        const QString message = failed.last().at(1).toString();
        QVERIFY2(message.contains("[rank 1] cannot train: out of memory on rank 1"), qPrintable(message));
        QVERIFY2(message.contains("exited with code 1"), qPrintable(message));
        QVERIFY(!train->busy());
        qputenv("WHISKER_CLI", WHISKER_CLI_PATH);
    }
};

int run_inspect_submit_tests(int argc, char** argv) {
    int status = 0;
    {
        ParallelFitTest t;
        status |= QTest::qExec(&t, argc, argv);
    }
    // Runs whatever the first said (a test function named on the command line is in one of them).
    InspectSubmitTest t;
    return status | QTest::qExec(&t, argc, argv);
}

#include "test_inspect_submit.moc"
