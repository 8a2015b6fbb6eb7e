// "Where the model looked" on the Inspect page: after a short fit, the gallery's overlay toggle
// computes Grad-CAM heatmaps on the learner's worker and lays them over the tiles; a tile's
// large view shows the predicted class's map beside the actual class's (runner-up's) with an
// opacity slider; the learner's state is what it was. Screenshots of both.
#include "heatmap_overlay.h"
#include "image_browser.h"
#include "inspect_page.h"
#include "main_window.h"
#include "train_page.h"
#include "training_worker.h"
#include "ui_test_support.h"

#include "whisker/explain/gradcam.h"

#include <QCheckBox>
#include <QDialog>
#include <QLabel>
#include <QListView>
#include <QListWidget>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest/QtTest>

namespace fs = std::filesystem;
using whisker::ui::HeatmapStore;
using whisker::ui::HeatmapView;
using whisker::ui::InspectPage;
using whisker::ui::MainWindow;
using whisker::ui::TrainingWorker;

class ExplainOverlayTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void overlay_image_covers_the_crop_only() {
        QImage image(40, 20, QImage::Format_RGB32);
        image.fill(QColor(100, 100, 100));
        whisker::explain::Heatmap map;
        map.width = map.height = 1;
        map.values = {1.f};
        whisker::explain::CropBox crop{0.25, 0, 0.75, 1};   // the centre square of a 2:1 image
        const QImage out = whisker::ui::overlay_image(image, map, crop, 1.0);
        // Inside: the hottest colour (dark red) fully; outside: darkened grey.
        const auto hot = whisker::explain::heat_colour(1.f);
        QCOMPARE(QColor(out.pixel(20, 10)), QColor(hot[0], hot[1], hot[2]));
        QCOMPARE(QColor(out.pixel(2, 10)), QColor(40, 40, 40));
        // Opacity 0: the image as it was inside the crop.
        QCOMPARE(QColor(whisker::ui::overlay_image(image, map, crop, 0.0).pixel(20, 10)), QColor(100, 100, 100));
    }

    void inspect_overlay_walk() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 80, 4);
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        auto* train = w.train_page();
        TrainingWorker* worker = train->worker();
        QSignalSpy finished(worker, &TrainingWorker::job_finished);
        QSignalSpy failed(worker, &TrainingWorker::failed);
        QSignalSpy predicted(worker, &TrainingWorker::predictions_ready);

        // resnet18 from scratch at 128 px: a 4 x 4 grid under the heatmaps.
        w.navigation()->setCurrentRow(MainWindow::TrainPageIndex);
        choose_small_learner(train);
        train->size_box()->setValue(128);
        QTest::mouseClick(train->create_button(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        train->cycles_box()->setValue(1);
        QTest::mouseClick(train->start_button(), Qt::LeftButton);
        QVERIFY(finished.wait(180000));
        QCOMPARE(failed.count(), 0);

        auto* inspect = w.inspect_page();
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);
        QVERIFY(predicted.wait(120000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QVERIFY(inspect->has_predictions());
        const QString state_before = train->session_view().state;

        inspect->set_view(InspectPage::AllByLoss);
        const auto rows = inspect->gallery_rows();
        QVERIFY(rows.size() >= 4);
        inspect->gallery_model()->wait_for_thumbnails();
        QTest::qWait(100);
        const QModelIndex first = inspect->gallery_model()->index(0);
        const QImage plain = inspect->gallery_model()->data(first, Qt::DecorationRole).value<QPixmap>().toImage();

        // The toggle: heatmaps are computed on the worker for the gallery's tiles.
        HeatmapStore* store = inspect->heatmaps();
        QSignalSpy ready(store, &HeatmapStore::ready);
        inspect->overlay_box()->setChecked(true);
        QVERIFY(ready.wait(120000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QCOMPARE(failed.count(), 0);
        const auto& preds = *inspect->predictions().predictions;
        QCOMPARE(static_cast<int>(store->size()), std::min<int>(HeatmapStore::kMaxPerRequest, static_cast<int>(rows.size())));
        for (std::size_t r : rows) {
            const auto* e = store->find(preds.records[r]);
            QVERIFY(e);
            QVERIFY(e->error.empty());
            QCOMPARE(static_cast<int>(e->maps.size()), 2);
            QCOMPARE(e->maps[0].cls, preds.predicted[r]);
            QCOMPARE(e->maps[0].width, 4);
            QCOMPARE(e->maps[0].height, 4);
            // The second map: the actual class of a mistake, the other class of a correct one.
            QCOMPARE(e->maps[1].cls, 1 - preds.predicted[r]);
        }
        const QImage overlaid = inspect->gallery_model()->data(first, Qt::DecorationRole).value<QPixmap>().toImage();
        QCOMPARE(overlaid.size(), plain.size());
        QVERIFY(overlaid != plain);
        QVERIFY(inspect->findChild<QLabel*>("overlayStatus")->text().contains("Heatmaps"));
        // Nothing about the learner changed (its state names its weights and data).
        QCOMPARE(train->session_view().state, state_before);
        QTest::qWait(200);
        QVERIFY(w.grab().save(screenshot_dir() + "/inspect_overlay.png"));

        // The large view of a mistake (or of the top tile): both maps side by side.
        inspect->set_view(InspectPage::MostConfidentMistakes);
        if (inspect->gallery_rows().empty()) inspect->set_view(InspectPage::AllByLoss);
        const std::size_t row = inspect->gallery_rows()[0];
        QDialog* dialog = inspect->open_tile(0);
        QVERIFY(dialog);
        auto* view = dialog->findChild<HeatmapView*>("largeView");
        QVERIFY(view);
        QVERIFY(view->overlay());
        QCOMPARE(view->panels_shown(), 2);
        QTRY_VERIFY(dialog->findChild<QLabel*>("overlayTitle0"));
        const QString t0 = dialog->findChild<QLabel*>("overlayTitle0")->text();
        const QString t1 = dialog->findChild<QLabel*>("overlayTitle1")->text();
        QVERIFY2(t0.contains("predicted"), qPrintable(t0));
        QVERIFY2(t1.contains(preds.actual[row] != preds.predicted[row] ? "actual" : "runner-up"), qPrintable(t1));
        // Opacity: the picture changes, and the galleries follow.
        QTest::qWait(50);
        const QImage before = dialog->findChild<QLabel*>("overlayPicture0")->pixmap().toImage();
        view->opacity_slider()->setValue(80);
        QTest::qWait(50);
        const QImage after = dialog->findChild<QLabel*>("overlayPicture0")->pixmap().toImage();
        QVERIFY(before != after);
        QCOMPARE(store->opacity(), 0.8);
        QTest::qWait(200);
        QVERIFY(dialog->grab().save(screenshot_dir() + "/inspect_large_view_heatmaps.png"));
        // Overlay off in the large view: the image alone.
        view->overlay_box()->setChecked(false);
        QCOMPARE(view->panels_shown(), 1);
        dialog->close();

        // Turning the gallery's overlay off gives the plain thumbnails back.
        inspect->set_view(InspectPage::AllByLoss);
        inspect->overlay_box()->setChecked(false);
        QCOMPARE(inspect->gallery_model()->data(first, Qt::DecorationRole).value<QPixmap>().toImage(), plain);
    }
};

int run_explain_tests(int argc, char** argv) {
    ExplainOverlayTest t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_explain.moc"
