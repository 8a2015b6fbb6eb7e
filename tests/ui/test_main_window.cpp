// Drives the real main window offscreen: the sample project is created in the background,
// the Data page shows it, and each state is saved as a screenshot to look at.
#include "background_job.h"
#include "image_browser.h"
#include "data_page.h"
#include "main_window.h"
#include "train_page.h"
#include "training_worker.h"
#include "ui_test_support.h"
#include "qcustomplot_include.h"

#include "whisker/data/prepare.h"
#include "whisker/sample/sample_competition.h"

#include <QApplication>
#include <QListView>
#include <QTabWidget>
#include <QCheckBox>
#include <QComboBox>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
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
private Q_SLOTS:
    void starts_with_the_workflow_pages_and_quits_cleanly() {
        MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QCOMPARE(w.navigation()->count(), 4);
        for (int i = 0; i < 4; ++i) QVERIFY(w.navigation()->item(i)->flags() & Qt::ItemIsEnabled);
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

        // The image browser shows every image, filters by split and class, decodes thumbnails
        // off the UI thread, and opens an image large.
        auto* browser = w.data_page()->browser();
        w.data_page()->tabs()->setCurrentIndex(1);
        QCOMPARE(browser->model()->rowCount(), 500);
        QTRY_VERIFY_WITH_TIMEOUT(browser->model()->thumbnails_ready() > 0, 20000);
        browser->split_box()->setCurrentIndex(2);  // valid
        QCOMPARE(browser->model()->rowCount(), 80);
        browser->class_box()->setCurrentIndex(2);  // dog
        QCOMPARE(browser->model()->rowCount(), 40);
        browser->split_box()->setCurrentIndex(0);
        browser->class_box()->setCurrentIndex(0);
        browser->model()->wait_for_thumbnails();
        QTest::qWait(300);
        QVERIFY(w.grab().save(screenshot_dir() + "/data_page_images.png"));
        QDialog* large = browser->open_row(0);
        QVERIFY(large);
        QVERIFY(large->findChild<QLabel*>("imageInfo")->text().contains("cat.0.jpg"));
        QVERIFY(large->grab().save(screenshot_dir() + "/image_large.png"));
        large->close();
        QDialog* seen = browser->open_model_view(0, 128);
        QCOMPARE(seen->findChildren<QLabel*>("augmentedSample").size(), 8);
        QVERIFY(seen->grab().save(screenshot_dir() + "/what_the_model_sees.png"));
        seen->close();
    }

    void browser_scales_to_25000_images() {
        // 25,000 records (pointing at a few real files): the grid fills at once, and only the
        // rows shown are decoded, however far the user scrolls.
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        whisker::sample::SampleOptions so;
        so.train_images = 8;
        so.test_images = 0;
        whisker::sample::write_sample_competition(root / "dl", so);
        whisker::data::PrepareOptions po;
        po.project = root / "p";
        po.source = root / "dl";
        auto d = std::make_shared<whisker::data::Dataset>(whisker::data::prepare_dataset(po));
        const auto base = d->images;
        d->images.clear();
        for (int i = 0; i < 25000; ++i) d->images.push_back(base[static_cast<std::size_t>(i) % base.size()]);
        whisker::ui::ImageBrowser browser;
        browser.resize(1000, 700);
        browser.show();
        QVERIFY(QTest::qWaitForWindowExposed(&browser));
        browser.set_dataset(root / "p", d);
        QCOMPARE(browser.model()->rowCount(), 25000);
        QTest::qWait(200);
        browser.view()->scrollToBottom();
        QTest::qWait(200);
        browser.view()->scrollTo(browser.model()->index(12500));
        QTest::qWait(200);
        browser.model()->wait_for_thumbnails();
        QVERIFY2(browser.model()->thumbnails_requested() < 600,
                 qPrintable(QString::number(browser.model()->thumbnails_requested())));
        QVERIFY(browser.model()->thumbnails_requested() > 0);
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
        // Prepared from the Data page, in the background.
        std::filesystem::create_directories(root / "project");
        MainWindow w;
        w.show();
        QVERIFY(w.open_project(root / "project"));
        QSignalSpy done(w.job(), &whisker::ui::BackgroundJob::finished);
        w.data_page()->source_edit()->setText(QString::fromStdString((root / "src").string()));
        QTest::mouseClick(w.data_page()->prepare_button(), Qt::LeftButton);
        QVERIFY(done.wait(60000));
        QCoreApplication::processEvents();
        QTableWidget* skipped = w.data_page()->skipped_table();
        QCOMPARE(skipped->rowCount(), 1);
        QVERIFY(skipped->item(0, 0)->text().endsWith("broken.jpg"));
        QVERIFY(skipped->item(0, 1)->text().contains("not an image"));
        QVERIFY(w.grab().save(screenshot_dir() + "/data_page_skipped.png"));
    }
};

// The Train page on a small prepared sample: learner -> LR finder -> one epoch -> Stop during
// a longer fit -> save and load a checkpoint; screenshots along the way.
class TrainPageTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void train_page_walk() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        prepare_sample_project(root, 64, 4);

        MainWindow w;
        w.resize(1280, 860);
        w.show();
        QVERIFY(w.open_project(root / "project"));
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        auto* page = w.train_page();
        auto* worker = page->worker();
        choose_small_learner(page);

        QSignalSpy finished(worker, &whisker::ui::TrainingWorker::job_finished);
        QSignalSpy failed(worker, &whisker::ui::TrainingWorker::failed);
        QSignalSpy ready(worker, &whisker::ui::TrainingWorker::learner_ready);
        QTest::mouseClick(page->create_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(ready.count(), 1);

        // LR finder: the curve has points and a suggestion sets the learning rate.
        QTest::mouseClick(page->lr_find_button(), Qt::LeftButton);
        QVERIFY(finished.wait(120000));
        QCOMPARE(failed.count(), 0);
        QVERIFY(page->lr_plot()->graph(0)->dataCount() > 10);
        QVERIFY(page->lr_plot()->graph(1)->dataCount() >= 1);
        QCOMPARE(page->loss_plot()->graph(0)->dataCount(), 0);  // the sweep is not training
        const double suggested = page->lr_edit()->text().toDouble();
        QVERIFY(suggested > 0);
        page->choose_learning_rate(0.01);
        QCOMPARE(page->lr_edit()->text(), QString("0.01"));

        // One epoch: a table row and plotted batches.
        page->cycles_box()->setValue(1);
        QTest::mouseClick(page->start_button(), Qt::LeftButton);
        QVERIFY(page->busy());
        QVERIFY(finished.wait(120000));
        QCOMPARE(failed.count(), 0);
        QCoreApplication::processEvents();
        QCOMPARE(page->epoch_table()->rowCount(), 1);
        QVERIFY(page->loss_plot()->graph(0)->dataCount() > 0);
        QCOMPARE(page->metrics_plot()->graph(1)->dataCount(), 1);
        QVERIFY(w.grab().save(screenshot_dir() + "/train_page.png"));

        // Stop during a longer fit: it ends within a batch, before its second epoch.
        page->cycles_box()->setValue(20);
        QSignalSpy batches(worker, &whisker::ui::TrainingWorker::batches);
        QTest::mouseClick(page->start_button(), Qt::LeftButton);
        QVERIFY(batches.wait(60000));
        QTest::mouseClick(page->stop_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        const auto args = finished.takeLast();
        QCOMPARE(args.at(0).toString(), QString("fit"));
        QCOMPARE(args.at(1).toBool(), true);
        QVERIFY(page->epoch_table()->rowCount() <= 2);
        QVERIFY(!page->busy());

        // Save and load a checkpoint through the worker.
        QMetaObject::invokeMethod(worker, [worker] { worker->save("ui-test"); }, Qt::QueuedConnection);
        QVERIFY(finished.wait(60000));
        QVERIFY(std::filesystem::exists(root / "project/models/ui-test.safetensors"));
        QMetaObject::invokeMethod(worker, [worker] { worker->load("ui-test"); }, Qt::QueuedConnection);
        QVERIFY(finished.wait(60000));
        QCOMPARE(failed.count(), 0);
        // The project's learner is shared with whisker-cli.
        QVERIFY(std::filesystem::exists(root / "project/learner.json"));
        QVERIFY(std::filesystem::exists(root / "project/models/current.json"));

        // "Run the recipe": the seed's steps one after the other, each reported, to a submission.
        QSignalSpy steps(worker, &whisker::ui::TrainingWorker::recipe_step);
        QTest::mouseClick(page->recipe_button(), Qt::LeftButton);
        QVERIFY(finished.wait(300000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(steps.count(), 10);
        QVERIFY(std::filesystem::exists(root / "project/submission.csv"));
        QVERIFY(page->epoch_table()->rowCount() >= 12);
        QVERIFY(w.grab().save(screenshot_dir() + "/train_page_recipe.png"));
    }
};

int run_inspect_submit_tests(int argc, char** argv);  // test_inspect_submit.cpp

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QCoreApplication::setOrganizationName("WhiskerTest");
    QCoreApplication::setApplicationName("WhiskerTest");
    QStandardPaths::setTestModeEnabled(true);
    int status = 0;
    {
        MainWindowTest t;
        status |= QTest::qExec(&t, argc, argv);
    }
    {
        TrainPageTest t;
        status |= QTest::qExec(&t, argc, argv);
    }
    status |= run_inspect_submit_tests(argc, argv);
    return status;
}
#include "test_main_window.moc"
