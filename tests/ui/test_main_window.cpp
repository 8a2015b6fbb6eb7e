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

#include "inspect_page.h"
#include "submit_page.h"

#include "architecture_picker.h"
#include "whisker/common/device.h"
#include "whisker/data/prepare.h"
#include "whisker/models/arch_stats.h"
#include "whisker/models/zoo.h"
#include "whisker/train/learner.h"

#include <QAbstractButton>
#include <QAbstractScrollArea>
#include <QGroupBox>
#include <QHeaderView>
#include <QProcess>
#include <QTimer>

#include <csignal>
#include <map>
#include "whisker/sample/sample_competition.h"
#include "whisker/kaggle/submission_history.h"

#include <QApplication>
#include <QListView>
#include <QTabWidget>
#include <QCheckBox>
#include <QComboBox>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QDir>
#include <QFileDialog>
#include <QLabel>
#include <QListWidget>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

using whisker::ui::MainWindow;

// Answers the folder dialog that is about to open (QFileDialog::getExistingDirectory): keeps
// its title in *title and chooses `folder`, or cancels when `folder` is empty.
void answer_next_folder_dialog(QString* title, const QString& folder) {
    QTimer::singleShot(200, [title, folder] {
        auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
        if (!dialog) return answer_next_folder_dialog(title, folder);
        *title = dialog->windowTitle();
        if (folder.isEmpty()) return dialog->reject();
        dialog->setDirectory(folder);
        static_cast<QDialog*>(dialog)->accept();   // (QFileDialog's own is protected; this calls it)
    });
}

class MainWindowTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    // With no project open, the Data page offers the ways to one as buttons, which do what the
    // File menu's actions do (the same folder dialogs; the folder chosen opens).
    void the_data_page_offers_a_way_to_a_project() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        std::filesystem::create_directories(root / "existing");
        std::filesystem::create_directories(root / "fresh");
        {
            MainWindow w;
            w.resize(1280, 720);
            w.show();
            QVERIFY(QTest::qWaitForWindowExposed(&w));
            auto* data = w.data_page();
            QVERIFY(w.project().empty());
            for (QPushButton* b : {data->new_project_button(), data->open_project_button(), data->sample_project_button()}) {
                QVERIFY2(b->isVisible() && b->isEnabled(), qPrintable(b->text()));
            }
            QVERIFY(w.grab().save(screenshot_dir() + "/data_page_no_project.png"));
            QString title;
            answer_next_folder_dialog(&title, {});
            data->sample_project_button()->click();
            QCOMPARE(title, QString("Folder for the sample project"));
            QVERIFY(!w.job()->busy());
            answer_next_folder_dialog(&title, {});
            data->new_project_button()->click();
            QCOMPARE(title, QString("Folder for the new project (an empty folder)"));
            QVERIFY(w.project().empty());
            // Open project…: the folder chosen is opened, and the buttons make way for its data.
            answer_next_folder_dialog(&title, QString::fromStdString((root / "existing").string()));
            data->open_project_button()->click();
            QCOMPARE(title, QString("Open project folder"));
            QCOMPARE(w.project(), root / "existing");
            QVERIFY(!data->open_project_button()->isVisible());
            QVERIFY(!data->new_project_button()->isVisible());
            QVERIFY(data->get_data_box()->isVisible() && data->get_data_box()->isEnabled());
            QTRY_VERIFY_WITH_TIMEOUT(!w.train_page()->busy(), 30000);
        }
        // New project… in a window of its own: the empty folder chosen becomes the project.
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QString title;
        answer_next_folder_dialog(&title, QString::fromStdString((root / "fresh").string()));
        w.data_page()->new_project_button()->click();
        QCOMPARE(w.project(), root / "fresh");
        QVERIFY(w.findChild<QPlainTextEdit*>("logPanel")->toPlainText().contains("New project"));
        QTRY_VERIFY_WITH_TIMEOUT(!w.train_page()->busy(), 30000);
    }

    void starts_with_the_workflow_pages_and_quits_cleanly() {
        MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QCOMPARE(w.navigation()->count(), 5);
        for (int i = 0; i < 5; ++i) QVERIFY(w.navigation()->item(i)->flags() & Qt::ItemIsEnabled);
        QVERIFY(w.navigation()->item(0)->text().contains("Data"));
        QVERIFY(w.navigation()->item(3)->text().contains("Submit"));
        QVERIFY(w.navigation()->item(4)->text().contains("Runs"));
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
        QVERIFY(open_and_wait(w, root / "project"));
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
    // Compare…: every architecture in a sortable table with the speed measured here; choosing
    // one sets the architecture and its default size (a size the user typed stays).
    void architecture_picker_table() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        qputenv("XDG_CACHE_HOME", QByteArray::fromStdString((root / "cache").string()));
        whisker::models::record_speed("mobilenet_v3_small", "train", {123.4, 224, 16, "CPU (2 threads)", "2026-12-01 10:00"});
        prepare_sample_project(root, 16, 2);
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        auto* page = w.train_page();
        QVERIFY(!page->has_learner());
        QVERIFY(page->arch_table_button()->isVisible());
        QVERIFY(page->arch_box()->toolTip().contains("ImageNet top-1"));
        // Precision: auto by default, saying what it chose; fp32 when the user picks it.
        QCOMPARE(page->precision_box()->currentText(), QString("auto"));
        QTRY_VERIFY2(page->precision_label()->toolTip().contains("(auto: "), qPrintable(page->precision_label()->toolTip()));
        const QString chosen = whisker::detect_compute_device().cpu_bf16 ? "→ bf16" : "→ fp32";
        QCOMPARE(page->precision_label()->text(), chosen);
        page->precision_box()->setCurrentText("fp32");
        QTRY_COMPARE(page->precision_label()->text(), QString("→ fp32"));
        QCOMPARE(page->precision_label()->toolTip(), QString("fp32"));
        page->precision_box()->setCurrentText("auto");
        QTRY_VERIFY(page->precision_label()->toolTip().contains("(auto: "));

        auto* picker = page->open_architecture_picker();
        auto* table = picker->table();
        QCOMPARE(table->rowCount(), static_cast<int>(whisker::models::all_architectures().size()));
        QCOMPARE(picker->chosen(), QString("resnet34"));   // the current one is selected
        // Sorted by GFLOPs (a click on the header), the cheapest comes first.
        QTest::mouseClick(table->horizontalHeader()->viewport(), Qt::LeftButton, {},
                          QPoint(table->horizontalHeader()->sectionViewportPosition(3) + 5, 5));
        QCOMPARE(table->horizontalHeader()->sortIndicatorSection(), 3);
        const bool ascending = table->horizontalHeader()->sortIndicatorOrder() == Qt::AscendingOrder;
        const int first = ascending ? 0 : table->rowCount() - 1;
        QCOMPARE(table->item(first, 0)->text(), QString("mobilenet_v3_small"));
        QCOMPARE(table->item(first, 7)->text(), QString("123.4"));   // measured training speed
        QVERIFY(table->item(first, 7)->toolTip().contains("batch 16"));
        QCOMPARE(table->item(first, 8)->text(), QString("–"));       // prediction not measured
        QVERIFY(picker->grab().save(screenshot_dir() + "/architecture_picker.png"));
        for (int r = 0; r < table->rowCount(); ++r)
            if (table->item(r, 0)->text() == "efficientnet_b3") table->selectRow(r);
        QCOMPARE(picker->chosen(), QString("efficientnet_b3"));
        picker->findChild<QPushButton*>("useArchitectureButton")->click();
        QCOMPARE(page->arch_box()->currentText(), QString("efficientnet_b3"));
        QCOMPARE(page->size_box()->value(), 300);
        // The size follows while it is the previous default, and stays once the user chose one.
        page->arch_box()->setCurrentText("swin_t");
        QCOMPARE(page->size_box()->value(), 224);
        QCOMPARE(page->size_box()->singleStep(), 32);
        page->size_box()->setValue(96);
        page->arch_box()->setCurrentText("convnext_tiny");
        QCOMPARE(page->size_box()->value(), 96);
        qunsetenv("XDG_CACHE_HOME");
    }

    void train_page_walk() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        prepare_sample_project(root, 64, 4);

        MainWindow w;
        w.resize(1280, 860);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        auto* page = w.train_page();
        auto* worker = page->worker();
        choose_small_learner(page);

        QSignalSpy finished(worker, &whisker::ui::TrainingWorker::job_finished);
        QSignalSpy failed(worker, &whisker::ui::TrainingWorker::failed);
        QVERIFY(!page->has_learner());
        QCOMPARE(page->create_button()->text(), QString("&Create learner"));
        QTest::mouseClick(page->create_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        QCOMPARE(failed.count(), 0);
        QTRY_VERIFY(page->has_learner());
        QVERIFY2(page->learner_label()->text().contains("resnet18 at 32 px, from scratch, 0 epochs, body frozen"),
                 qPrintable(page->learner_label()->text()));
        QCOMPARE(page->create_button()->text(), QString("&New learner…"));
        QVERIFY(!page->resume_button()->isEnabled());   // nothing interrupted yet

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
        // The interrupted fit can be resumed (and only now).
        QTRY_VERIFY(page->resume_button()->isEnabled());

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

// Waits for the spy's next signal. Unlike QSignalSpy::wait, it also sees a signal that a
// fast job on the worker thread sent before the wait began (each call consumes one).
bool next_signal(QSignalSpy& spy, int timeout_ms) {
    // Opening a project (open_and_wait) is a worker job too; those are not what tests wait for.
    auto relevant = [&spy] {
        int n = 0;
        for (const auto& args : spy) {
            const QString job = args.isEmpty() ? QString() : args.at(0).toString();
            n += job != "open" && job != "reload";
        }
        return n;
    };
    static std::map<const QSignalSpy*, int> consumed;
    int& seen = consumed[&spy];
    if (seen > relevant()) seen = 0;   // a new spy at a reused address
    QElapsedTimer t;
    t.start();
    while (relevant() <= seen && t.elapsed() < timeout_ms) QTest::qWait(10);
    if (relevant() <= seen) return false;
    ++seen;
    // The pages' queued handlers of the same signal were posted before the spy saw it.
    QCoreApplication::processEvents();
    return true;
}

// Clicks the button called `text` of the modal dialog that is about to open.
void click_in_next_dialog(const QString& text) {
    QTimer::singleShot(300, [text] {
        QWidget* box = QApplication::activeModalWidget();
        if (!box) return click_in_next_dialog(text);
        for (auto* b : box->findChildren<QAbstractButton*>())
            if (b->text().remove('&') == text) return b->click();
        box->close();
    });
}

// One project, one truth: every page shows the open project's state only, the learner's
// lifecycle is explicit, and another program holding the project is respected and followed.
class ProjectSessionTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void switching_projects_shows_only_the_open_one() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        prepare_sample_project(root, 48, 6, "a");
        whisker::sample::SampleOptions so;
        so.train_images = 40;
        so.test_images = 5;
        so.seed = 7;
        whisker::sample::write_sample_competition(root / "dlb", so);
        whisker::data::PrepareOptions po;
        po.project = root / "b";
        po.source = root / "dlb";
        whisker::data::prepare_dataset(po);

        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "a"));
        auto* train = w.train_page();
        auto* worker = train->worker();
        auto* inspect = w.inspect_page();
        auto* submit = w.submit_page();
        QSignalSpy finished(worker, &whisker::ui::TrainingWorker::job_finished);
        QSignalSpy failed(worker, &whisker::ui::TrainingWorker::failed);
        QSignalSpy steps(worker, &whisker::ui::TrainingWorker::recipe_step);

        // A: learner, LR finder, one epoch, test predictions, validation predictions.
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        choose_small_learner(train);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(next_signal(finished, 60000));
        QTest::mouseClick(train->lr_find_button(), Qt::LeftButton);
        QVERIFY(next_signal(finished, 120000));
        train->choose_learning_rate(0.01);
        train->cycles_box()->setValue(1);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(next_signal(finished, 120000));
        QCOMPARE(failed.count(), 0);
        QVERIFY(submit->predict());
        QVERIFY(next_signal(finished, 60000));
        QTRY_VERIFY(submit->has_predictions());
        QVERIFY(submit->predictions_current());
        QVERIFY(std::filesystem::exists(root / "a/submission.csv"));
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);   // predicts the valid set
        QVERIFY(next_signal(finished, 60000));
        QTRY_VERIFY_WITH_TIMEOUT(inspect->has_predictions(), 60000);
        QTRY_VERIFY(!train->busy());

        // B: nothing of A on any page.
        QVERIFY(open_and_wait(w, root / "b"));
        QVERIFY(!train->has_learner());
        QVERIFY2(train->learner_label()->text().contains("No learner yet"), qPrintable(train->learner_label()->text()));
        QCOMPARE(train->epoch_table()->rowCount(), 0);
        QCOMPARE(train->loss_plot()->graph(0)->dataCount(), 0);
        QCOMPARE(train->metrics_plot()->graph(1)->dataCount(), 0);
        QCOMPARE(train->lr_plot()->graph(0)->dataCount(), 0);
        QVERIFY(!train->lr_find_button()->isEnabled());
        QVERIFY(!inspect->has_predictions());
        QVERIFY(!submit->has_predictions());
        QVERIFY(!submit->submit_button()->isEnabled());
        QVERIFY(!submit->predict_button()->isEnabled());
        QVERIFY(!submit->predict());
        QVERIFY(!submit->export_to(QString::fromStdString((root / "b/out.csv").string())));
        QVERIFY(!std::filesystem::exists(root / "b/submission.csv"));
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);
        QVERIFY(!train->busy());   // no learner: nothing to predict
        QVERIFY(!inspect->has_predictions());
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        QVERIFY(w.grab().save(screenshot_dir() + "/switch_to_b_train_1280x720.png"));

        // An empty folder (File > New project): no dataset, nothing of A either; the Data page
        // offers to get the images.
        std::filesystem::create_directories(root / "empty");
        QVERIFY(open_and_wait(w, root / "empty"));
        QVERIFY(!train->has_learner());
        QCOMPARE(train->epoch_table()->rowCount(), 0);
        QVERIFY(!train->create_button()->isEnabled());
        QVERIFY(!inspect->has_predictions());
        QVERIFY(!submit->has_predictions());
        QVERIFY(w.data_page()->get_data_box()->isEnabled());
        // File > Open sample project from A's window: the new sample shows, not A.
        QVERIFY(open_and_wait(w, root / "a"));
        QVERIFY(train->has_learner());
        w.create_sample_project(root / "sample");
        QTRY_VERIFY_WITH_TIMEOUT(!w.job()->busy(), 120000);
        QTRY_VERIFY_WITH_TIMEOUT(w.project() == root / "sample" && !train->busy(), 60000);
        QVERIFY(!train->has_learner());
        QCOMPARE(train->loss_plot()->graph(0)->dataCount(), 0);
        QVERIFY(!submit->has_predictions());
        QVERIFY(!inspect->has_predictions());

        // Back to A: its learner from disk, usable at once, with its curve, batches and epoch.
        QVERIFY(open_and_wait(w, root / "a"));
        QVERIFY(train->has_learner());
        QVERIFY2(train->learner_label()->text().contains("resnet18 at 32 px, from scratch, 1 epoch, body frozen"),
                 qPrintable(train->learner_label()->text()));
        QCOMPARE(train->epoch_table()->rowCount(), 1);
        QVERIFY(train->loss_plot()->graph(0)->dataCount() > 0);
        QVERIFY(train->lr_plot()->graph(0)->dataCount() > 10);
        QVERIFY(train->lr_find_button()->isEnabled());
        QVERIFY(train->start_button()->isEnabled());
        // A's predictions come back with it: they describe the weights it left on disk.
        QTRY_VERIFY(submit->has_predictions());
        QVERIFY(submit->predictions_current());
        QTRY_VERIFY(inspect->has_predictions());

        // New learner… asks; "Continue" keeps everything.
        click_in_next_dialog("Continue with the current one");
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QTest::qWait(800);
        QVERIFY(!train->busy());
        QVERIFY(train->learner_label()->text().contains("1 epoch"));
        // "New learner" replaces it and keeps the trained weights as a checkpoint.
        click_in_next_dialog("New learner");
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(next_signal(finished, 60000));
        QCOMPARE(failed.count(), 0);
        QTRY_VERIFY(train->learner_label()->text().contains("0 epochs"));
        QCOMPARE(train->epoch_table()->rowCount(), 0);
        QString kept;
        for (const auto& e : std::filesystem::directory_iterator(root / "a/models"))
            if (e.path().filename().string().rfind("before-new-", 0) == 0 && e.path().extension() == ".json")
                kept = QString::fromStdString(e.path().stem().string());
        QVERIFY(!kept.isEmpty());

        // Load… lists the checkpoints; loading the kept one brings the trained learner back.
        QDialog* dialog = train->open_checkpoint_dialog();
        auto* table = dialog->findChild<QTableWidget*>("checkpointTable");
        QVERIFY(table && table->rowCount() >= 2);
        int row = -1;
        for (int r = 0; r < table->rowCount(); ++r)
            if (table->item(r, 0)->data(Qt::UserRole).toString() == kept) row = r;
        QVERIFY(row >= 0);
        QCOMPARE(table->item(row, 3)->text(), QString("1"));
        QVERIFY(w.grab().save(screenshot_dir() + "/checkpoint_dialog.png") && dialog->grab().save(screenshot_dir() + "/checkpoint_list.png"));
        table->selectRow(row);
        dialog->findChild<QPushButton*>("loadCheckpointButton")->click();
        QVERIFY(next_signal(finished, 60000));
        QTRY_VERIFY(train->learner_label()->text().contains("1 epoch"));

        // A recipe right after an unfrozen fit: it freezes for precompute instead of failing,
        // says its steps in words, and its test predictions reach the Submit page.
        whisker::train::FitOptions o;
        o.lrs = {1e-3};
        QVERIFY(train->run_on_worker("unfrozen fit", [o](whisker::ui::TrainingWorker* wk) { wk->fit(o, false, 0, false); }));
        QVERIFY(next_signal(finished, 120000));
        QTRY_VERIFY(train->learner_label()->text().contains("body unfrozen"));
        QVERIFY(train->run_on_worker("recipe", [](whisker::ui::TrainingWorker* wk) {
            wk->run_recipe(R"([{"step": "precompute", "on": true}, {"step": "fit", "lr": 0.01, "cycles": 1},
                               {"step": "predict", "split": "test"}])");
        }));
        QVERIFY(next_signal(finished, 120000));
        QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed.first().at(1).toString()));
        QCOMPARE(finished.last().at(0).toString(), QString("recipe"));
        QCOMPARE(steps.count(), 3);
        QVERIFY2(steps.first().at(1).toString().startsWith("Step 1 of 3: precompute"), qPrintable(steps.first().at(1).toString()));
        QTRY_VERIFY(submit->has_predictions());
        QVERIFY(submit->predictions_current());
        QVERIFY(train->learner_label()->text().contains("body frozen"));
        // A fit afterwards makes those predictions old: they can no longer be written or sent.
        QVERIFY(train->run_on_worker("fit", [o](whisker::ui::TrainingWorker* wk) { wk->fit(o, false, 2, false); }));
        QVERIFY(next_signal(finished, 120000));
        QTRY_VERIFY(!submit->predictions_current());
        QVERIFY(!submit->submit_button()->isEnabled());
        QVERIFY(!submit->export_to(QString::fromStdString((root / "a/old.csv").string())));

        // The modern fit options from the page: MixUp and a weight EMA, whose columns appear.
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        QVERIFY(train->epoch_table()->isColumnHidden(6));
        train->mixup_box()->setValue(0.4);
        train->ema_box()->setValue(0.9);
        train->cycles_box()->setValue(1);
        train->choose_learning_rate(0.01);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(next_signal(finished, 120000));
        QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed.last().at(1).toString()));
        QTRY_VERIFY(!train->epoch_table()->isColumnHidden(6));
        const int last = train->epoch_table()->rowCount() - 1;
        QVERIFY(train->epoch_table()->item(last, 6) && !train->epoch_table()->item(last, 6)->text().isEmpty());
        QVERIFY(std::filesystem::exists(root / "a/models/current.ema.safetensors"));
        // The Submit page can predict with the EMA weights.
        QTRY_VERIFY(submit->ema_box()->isEnabled());
        submit->ema_box()->setChecked(true);
        submit->tta_box()->setValue(0);
        QVERIFY(submit->predict());
        QVERIFY(next_signal(finished, 60000));
        QTRY_VERIFY(submit->predictions_current());
        QVERIFY2(submit->model_label_text().contains("EMA weights"), qPrintable(submit->model_label_text()));
        train->mixup_box()->setValue(0);
        train->ema_box()->setValue(0);
        // Progressive resizing: the learner goes on at 48 px.
        QVERIFY(!train->resize_button()->isEnabled());
        train->size_box()->setValue(48);
        QVERIFY(train->resize_button()->isEnabled());
        QTest::mouseClick(train->resize_button(), Qt::LeftButton);
        QVERIFY(next_signal(finished, 60000));
        QTRY_VERIFY2(train->learner_label()->text().contains("at 48 px"), qPrintable(train->learner_label()->text()));
        QVERIFY(!train->resize_button()->isEnabled());
    }

    // Every page at a laptop's 1280x720 and at 1600x1000: the window needs no more than the
    // screen, no widget lies outside it, the epoch table shows at least 5 rows on the large one.
    void layout_fits_the_screen() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        prepare_sample_project(root, 24, 4);
        for (const QSize size : {QSize(1280, 720), QSize(1600, 1000)}) {
            MainWindow w;
            w.resize(size);
            w.show();
            QVERIFY(open_and_wait(w, root / "project"));
            for (int page = 0; page < w.navigation()->count(); ++page) {
                w.navigation()->setCurrentRow(page);
                QTest::qWait(50);
                const QSize need = w.minimumSizeHint();
                QVERIFY2(need.width() <= 1280 && need.height() <= 720,
                         qPrintable(QString("page %1 needs %2x%3").arg(page).arg(need.width()).arg(need.height())));
                QCOMPARE(w.size(), size);
                for (QWidget* c : w.findChildren<QWidget*>()) {
                    if (!c->isVisible() || c->isWindow()) continue;
                    bool scrolled = false;   // inside a scroll area it may extend beyond the view
                    for (QWidget* p = c->parentWidget(); p && p != &w; p = p->parentWidget())
                        scrolled = scrolled || qobject_cast<QAbstractScrollArea*>(p) != nullptr;
                    if (scrolled) continue;
                    const QRect r(c->mapTo(&w, QPoint(0, 0)), c->size());
                    QVERIFY2(w.rect().contains(r), qPrintable(QString("%1 (%2) at %3,%4 %5x%6 lies outside the %7x%8 window on page %9")
                                                               .arg(c->metaObject()->className(), c->objectName())
                                                               .arg(r.x()).arg(r.y()).arg(r.width()).arg(r.height())
                                                               .arg(size.width()).arg(size.height()).arg(page)));
                }
                QVERIFY(w.grab().save(screenshot_dir() + QString("/page%1_%2x%3.png").arg(page).arg(size.width()).arg(size.height())));
            }
            if (size.height() >= 1000) {
                w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
                QTest::qWait(50);
                auto* table = w.train_page()->epoch_table();
                const int rows = table->viewport()->height() / table->verticalHeader()->defaultSectionSize();
                QVERIFY2(rows >= 5, qPrintable(QString("the epoch table shows %1 rows").arg(rows)));
            }
        }
    }

    // Each project opens on the page it was left on (a project never opened: Data), also after a
    // restart; a page that has nothing to show for it says what is missing.
    void a_project_opens_on_the_page_it_was_left_on() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        prepare_sample_project(root, 16, 2, "a");
        std::filesystem::create_directories(root / "b");   // File > New project: no images yet
        auto row = [](MainWindow& w) { return w.navigation()->currentRow(); };
        {
            MainWindow w;
            w.resize(1280, 720);
            w.show();
            QVERIFY(open_and_wait(w, root / "a"));
            QCOMPARE(row(w), int(MainWindow::DataPageIndex));
            w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
            QVERIFY(open_and_wait(w, root / "b"));
            QCOMPARE(row(w), int(MainWindow::DataPageIndex));
            w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);
            QVERIFY(open_and_wait(w, root / "a"));
            QCOMPARE(row(w), int(MainWindow::TrainPageIndex));
            // b by another spelling of its path is the same project, back on Inspect, which says
            // what it needs first.
            QVERIFY(open_and_wait(w, (root / "b").string() + "/"));
            QCOMPARE(w.project(), root / "b");
            QVERIFY2(w.windowTitle().endsWith("— b"), qPrintable(w.windowTitle()));
            QCOMPARE(row(w), int(MainWindow::InspectPageIndex));
            auto* inspect = w.inspect_page();
            QTRY_VERIFY2(inspect->summary_label()->text().contains("no images yet"), qPrintable(inspect->summary_label()->text()));
            QVERIFY(!inspect->predict_button()->isEnabled());
            QVERIFY(w.grab().save(screenshot_dir() + "/reopened_on_inspect_no_data.png"));
            QVERIFY(open_and_wait(w, root / "a"));
            w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);
            QTRY_VERIFY2(inspect->summary_label()->text().contains("No model yet"), qPrintable(inspect->summary_label()->text()));
            QVERIFY(!inspect->predict_button()->isEnabled());
            w.close();
        }
        // The workbench started again on a: where it was left.
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "a"));
        QCOMPARE(row(w), int(MainWindow::InspectPageIndex));
        // A folder that is not there: refused with a message that says so; a stays open.
        QString said;
        QTimer::singleShot(300, &w, [&said] {
            if (auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget())) {
                said = box->text();
                box->close();
            }
        });
        QVERIFY(!w.open_project(root / "gone"));
        QVERIFY2(said.contains("There is no folder"), qPrintable(said));
        QCOMPARE(w.project(), root / "a");
    }

    // Nonsense on the Data page is answered, never ignored: an empty or wrong competition name, a
    // path that is not there, and a job that fails (a folder without images) say what to do.
    void the_data_page_says_what_is_wrong() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        std::filesystem::create_directories(root / "p");
        std::filesystem::create_directories(root / "no-images");
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "p"));
        auto* data = w.data_page();
        // The text of the next message box (closed at once); empty when none opened.
        auto next_box = [&w](const std::function<void()>& action) {
            auto said = std::make_shared<QString>();
            QTimer poll;
            QObject::connect(&poll, &QTimer::timeout, [said] {
                if (auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget())) {
                    *said = box->text();
                    box->close();
                }
            });
            poll.start(50);
            action();
            QElapsedTimer t;
            t.start();
            while (said->isEmpty() && t.elapsed() < 3000) QTest::qWait(20);
            return *said;
        };
        data->competition_edit()->clear();
        QVERIFY(next_box([&] { data->download_button()->click(); }).contains("Type the competition's name"));
        data->competition_edit()->setText("Dogs vs Cats!");
        QVERIFY(next_box([&] { data->download_button()->click(); }).contains("is not a competition's name"));
        QVERIFY(!w.job()->busy());
        data->source_edit()->setText(QString::fromStdString((root / "does-not-exist").string()));
        QVERIFY(next_box([&] { data->prepare_button()->click(); }).contains("There is no file or folder"));
        QVERIFY(!w.job()->busy());
        // A folder without images: the job fails, and says why (and the log keeps it).
        data->source_edit()->setText(QString::fromStdString((root / "no-images").string()));
        const QString failure = next_box([&] {
            data->prepare_button()->click();
            QVERIFY(w.job()->busy());
        });
        QVERIFY2(!failure.isEmpty(), "no message about the failed job");
        QVERIFY(!w.job()->busy());
        QVERIFY(w.findChild<QPlainTextEdit*>("logPanel")->toPlainText().contains("Preparing the dataset failed"));
        QVERIFY(!whisker::data::Dataset::exists(root / "p"));
    }

    // The learning rate chosen for a project (typed, or picked on the LR-finder curve) is the
    // one it opens with again, after a switch and after a restart; each project keeps its own.
    void the_learning_rate_is_remembered_per_project() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        std::filesystem::create_directories(root / "a");
        std::filesystem::create_directories(root / "b");
        std::filesystem::create_directories(root / "c");
        {
            MainWindow w;
            w.resize(1280, 720);
            w.show();
            auto* train = w.train_page();
            QVERIFY(open_and_wait(w, root / "a"));
            w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
            QCOMPARE(train->lr_edit()->text(), QString("1e-2"));   // never chosen: the default
            train->lr_edit()->clear();
            QTest::keyClicks(train->lr_edit(), "3e-3");
            QVERIFY(open_and_wait(w, root / "b"));
            QCOMPARE(train->lr_edit()->text(), QString("1e-2"));   // not a's
            train->choose_learning_rate(4.5e-4);                    // a click on the finder's curve
            QCOMPARE(train->lr_edit()->text(), QString("0.00045"));
            QVERIFY(open_and_wait(w, root / "c"));
            train->lr_edit()->clear();
            QTest::keyClicks(train->lr_edit(), "1e-4, 1e-3, 1e-2");   // differential rates, Enter
            QTest::keyClick(train->lr_edit(), Qt::Key_Return);
            QTest::keyClicks(train->lr_edit(), ", 5");                 // four rates read as none: not kept
            QVERIFY(open_and_wait(w, root / "a"));
            QCOMPARE(train->lr_edit()->text(), QString("3e-3"));
            QVERIFY(open_and_wait(w, (root / "b").string() + "/"));   // the same project by another spelling
            QCOMPARE(train->lr_edit()->text(), QString("0.00045"));
            w.close();
        }
        // The workbench started again.
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        auto* train = w.train_page();
        QVERIFY(open_and_wait(w, root / "c"));
        QCOMPARE(train->lr_edit()->text(), QString("1e-4, 1e-3, 1e-2"));
        QVERIFY(open_and_wait(w, root / "a"));
        QCOMPARE(train->lr_edit()->text(), QString("3e-3"));
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        QTest::qWait(50);
        QVERIFY(w.grab().save(screenshot_dir() + "/train_page_remembered_rate.png"));
        QVERIFY(open_and_wait(w, root / "b"));
        QCOMPARE(train->lr_edit()->text(), QString("0.00045"));
    }

    // The Data page's local-data path and competition belong to the open project: another
    // project does not show what was typed for the previous one; the same project keeps it.
    void the_data_fields_belong_to_the_open_project() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        std::filesystem::create_directories(root / "a");
        std::filesystem::create_directories(root / "b");
        auto history = whisker::kaggle::SubmissionHistory::load(root / "b");
        history.competition = "dogs-vs-cats-redux-kernels-edition";   // b was downloaded from Kaggle
        history.save(root / "b");
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        auto* data = w.data_page();
        QVERIFY(open_and_wait(w, root / "a"));
        const QString photos = QString::fromStdString((root / "photos-of-a").string());
        QTest::keyClicks(data->source_edit(), photos);
        QTest::keyClicks(data->competition_edit(), "plant-seedlings-classification");
        QVERIFY(open_and_wait(w, root / "b"));
        QCOMPARE(data->source_edit()->text(), QString());
        QCOMPARE(data->competition_edit()->text(), QString("dogs-vs-cats-redux-kernels-edition"));   // b's own
        QTest::qWait(50);
        QVERIFY(w.grab().save(screenshot_dir() + "/data_page_other_project_fields.png"));
        QTest::keyClicks(data->source_edit(), "/somewhere/else");
        QVERIFY(open_and_wait(w, root / "a"));
        QCOMPARE(data->source_edit()->text(), QString());
        QCOMPARE(data->competition_edit()->text(), QString());
        // Opened again (as after Prepare or a download): what was typed for it stays.
        QTest::keyClicks(data->source_edit(), photos);
        QVERIFY(open_and_wait(w, root / "a"));
        QCOMPARE(data->source_edit()->text(), photos);
    }

    void another_program_holds_the_project() {
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        prepare_sample_project(root, 48, 4);
        const QString project = QString::fromStdString((root / "project").string());
        // A learner made by whisker-cli: the workbench opens it ready to continue.
        QProcess first;
        first.start(WHISKER_CLI_PATH, {"-q", "fit", project, "--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained",
                                       "--aug", "top-down", "--no-flip", "--trivial-augment", "--lr", "1e-3", "--cycles", "1"});
        QVERIFY(first.waitForFinished(120000));
        QCOMPARE(first.exitCode(), 0);

        MainWindow w;
        w.resize(1600, 1000);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        auto* train = w.train_page();
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        QVERIFY(train->has_learner());
        QVERIFY2(train->learner_label()->text().contains("resnet18 at 32 px, from scratch, top-down augmentation without flips, TrivialAugmentWide, 1 epoch"),
                 qPrintable(train->learner_label()->text()));
        QVERIFY(train->start_button()->isEnabled());
        // The learner's augmentation shows in its settings and in "What the model sees".
        QCOMPARE(train->augment_box()->currentText(), QString("top-down"));
        QVERIFY(train->no_flip_box()->isChecked());
        QVERIFY(train->trivial_augment_box()->isChecked());
        w.navigation()->setCurrentRow(MainWindow::DataPageIndex);
        QDialog* seen = w.data_page()->browser()->open_model_view(0);
        QVERIFY(seen);
        auto* note = seen->findChild<QLabel*>("modelViewNote");
        QVERIFY2(note && note->text().contains("top-down augmentation without flips") && note->text().contains("TrivialAugmentWide") && note->text().contains("32 px"),
                 note ? qPrintable(note->text()) : "no note");
        seen->close();
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        QCOMPARE(train->epoch_table()->rowCount(), 1);

        // whisker-cli trains the project: the workbench says so and writes nothing meanwhile.
        QProcess cli;
        cli.start(WHISKER_CLI_PATH, {"fit", project, "--lr", "1e-3", "--cycles", "300"});
        QVERIFY(cli.waitForStarted());
        QTRY_VERIFY_WITH_TIMEOUT(train->holder_banner()->isVisible(), 30000);
        QVERIFY2(train->holder_banner()->text().contains(QString("whisker-cli fit (PID %1)").arg(cli.processId())),
                 qPrintable(train->holder_banner()->text()));
        QVERIFY(!train->start_button()->isEnabled());
        QVERIFY(w.grab().save(screenshot_dir() + "/train_page_held_by_cli.png"));
        QSignalSpy failed(train->worker(), &whisker::ui::TrainingWorker::failed);
        QTimer dismiss;   // the refusal is also shown in a message box: close it
        connect(&dismiss, &QTimer::timeout, [] {
            if (QWidget* box = QApplication::activeModalWidget()) box->close();
        });
        dismiss.start(100);
        whisker::train::FitOptions o;
        QVERIFY(train->run_on_worker("fit", [o](whisker::ui::TrainingWorker* wk) { wk->fit(o, false, 2, false); }));
        QVERIFY(next_signal(failed, 30000));
        QVERIFY2(failed.last().at(1).toString().contains("in use by whisker-cli fit"), qPrintable(failed.last().at(1).toString()));
        dismiss.stop();

        // Ctrl-C after two of its epochs: the CLI saves and releases; the workbench shows them.
        QByteArray printed;
        QTRY_VERIFY_WITH_TIMEOUT((printed += cli.readAllStandardOutput()).count("\n    1 ") >= 1, 60000);
        ::kill(static_cast<pid_t>(cli.processId()), SIGINT);
        QVERIFY(cli.waitForFinished(60000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->holder_banner()->isVisible(), 10000);
        QTRY_VERIFY_WITH_TIMEOUT(train->epoch_table()->rowCount() >= 3, 30000);
        QTRY_VERIFY(!train->busy());
        QVERIFY(train->start_button()->isEnabled());
        QVERIFY(!train->learner_label()->text().contains(" 1 epoch,"));
    }
};

int run_inspect_submit_tests(int argc, char** argv);  // test_inspect_submit.cpp
int run_explain_tests(int argc, char** argv);          // test_explain.cpp
int run_data_map_tests(int argc, char** argv);         // test_data_map.cpp
int run_runs_page_tests(int argc, char** argv);        // test_runs_page.cpp
int run_cross_validation_tests(int argc, char** argv); // test_cross_validation.cpp

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
    {
        ProjectSessionTest t;
        status |= QTest::qExec(&t, argc, argv);
    }
    status |= run_inspect_submit_tests(argc, argv);
    status |= run_explain_tests(argc, argv);
    status |= run_data_map_tests(argc, argv);
    status |= run_runs_page_tests(argc, argv);
    status |= run_cross_validation_tests(argc, argv);
    return status;
}
#include "test_main_window.moc"
