// Drives the real main window offscreen: the sample project is created in the background,
// the Data page shows it, and each state is saved as a screenshot to look at.
#include "background_job.h"
#include "data_page.h"
#include "main_window.h"

#include "whisker/data/prepare.h"

#include <QApplication>
#include <QDir>
#include <QLabel>
#include <QListWidget>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

using whisker::ui::MainWindow;

class MainWindowTest : public QObject {
    Q_OBJECT
private:
    QString screenshot_dir() const {
        const QString dir = qEnvironmentVariable("WHISKER_SCREENSHOT_DIR", QDir::tempPath() + "/whisker-screenshots");
        QDir().mkpath(dir);
        return dir;
    }

private slots:
    void initTestCase() {
        QCoreApplication::setOrganizationName("WhiskerTest");
        QCoreApplication::setApplicationName("WhiskerTest");
        QStandardPaths::setTestModeEnabled(true);
    }

    void starts_with_the_workflow_pages_and_quits_cleanly() {
        MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QCOMPARE(w.navigation()->count(), 4);
        QVERIFY(w.navigation()->item(0)->text().contains("Data"));
        QVERIFY(w.navigation()->item(3)->text().contains("Submit"));
        QVERIFY(w.findChild<QLabel*>("deviceLabel")->text().contains("CPU") ||
                w.findChild<QLabel*>("deviceLabel")->text().contains("GPU"));
        QVERIFY(w.grab().save(screenshot_dir() + "/empty_window.png"));
        QVERIFY(w.close());
    }

    void open_sample_project_shows_the_dataset() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        MainWindow w;
        w.resize(1100, 700);
        w.show();
        QSignalSpy done(w.job(), &whisker::ui::BackgroundJob::finished);
        QSignalSpy failed(w.job(), &whisker::ui::BackgroundJob::failed);
        QSignalSpy progress(w.job(), &whisker::ui::BackgroundJob::progressed);
        w.create_sample_project(std::filesystem::path(tmp.path().toStdString()) / "sample");
        QVERIFY(w.job()->busy());
        QVERIFY(done.wait(120000));
        QCOMPARE(failed.count(), 0);
        QVERIFY(progress.count() > 0);
        QVERIFY(!w.job()->busy());
        QCoreApplication::processEvents();
        QCOMPARE(QString::fromStdString(w.project().filename().string()), QString("sample"));
        QTableWidget* counts = w.data_page()->counts_table();
        // cat, dog, (unlabelled), total
        QCOMPARE(counts->rowCount(), 4);
        QCOMPARE(counts->verticalHeaderItem(0)->text(), QString("cat"));
        QCOMPARE(counts->item(3, 0)->text(), QString("320"));  // 80% of 400 for training
        QCOMPARE(counts->item(3, 1)->text(), QString("80"));
        QCOMPARE(counts->item(3, 2)->text(), QString("100"));
        QCOMPARE(w.data_page()->skipped_table()->rowCount(), 0);
        QVERIFY(w.grab().save(screenshot_dir() + "/data_page_sample.png"));
    }

    void a_project_with_bad_files_lists_them() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        // A tiny folder tree with one good image per class and one broken file.
        std::filesystem::create_directories(root / "src/train/a");
        std::filesystem::create_directories(root / "src/train/b");
        QImage img(64, 48, QImage::Format_RGB32);
        img.fill(Qt::red);
        QVERIFY(img.save(QString::fromStdString((root / "src/train/a/1.png").string())));
        img.fill(Qt::blue);
        QVERIFY(img.save(QString::fromStdString((root / "src/train/b/1.png").string())));
        QVERIFY(img.save(QString::fromStdString((root / "src/train/b/2.png").string())));
        QFile bad(QString::fromStdString((root / "src/train/b/broken.jpg").string()));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("not a picture");
        bad.close();
        whisker::data::PrepareOptions o;
        o.project = root / "project";
        o.source = root / "src";
        whisker::data::prepare_dataset(o);

        MainWindow w;
        w.show();
        QVERIFY(w.open_project(root / "project"));
        QTableWidget* skipped = w.data_page()->skipped_table();
        QCOMPARE(skipped->rowCount(), 1);
        QVERIFY(skipped->item(0, 0)->text().endsWith("broken.jpg"));
        QVERIFY(skipped->item(0, 1)->text().contains("not an image"));
        QVERIFY(w.grab().save(screenshot_dir() + "/data_page_skipped.png"));
    }
};

QTEST_MAIN(MainWindowTest)
#include "test_main_window.moc"
