// The map of the data on the Inspect page (hover a point, click it: the large view opens that
// image; drag a box: the gallery shows the images inside), and the Data page's duplicates
// report with a planted copy across train and valid (keep in train, undo). Screenshots of both.
#include "data_map_view.h"
#include "data_page.h"
#include "image_browser.h"
#include "inspect_page.h"
#include "main_window.h"
#include "train_page.h"
#include "training_worker.h"
#include "ui_test_support.h"

#include "qcustomplot_include.h"

#include "whisker/project/session.h"

#include <QDialog>

#include <algorithm>
#include <functional>
#include <QLabel>
#include <QListView>
#include <QListWidget>
#include <QPushButton>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTreeWidget>
#include <QtTest/QtTest>

namespace fs = std::filesystem;
using whisker::ui::DataMapView;
using whisker::ui::InspectPage;
using whisker::ui::MainWindow;
using whisker::ui::TrainingWorker;

namespace {

// A learner made headless (resnet18 at 32 px, from scratch), as the CLI leaves one.
void create_small_learner(const fs::path& project) {
    whisker::project::SessionOptions o;
    o.base.threads = 2;
    whisker::project::Session s(project, o);
    whisker::project::LearnerSpec spec;
    spec.arch = "resnet18";
    spec.size = 32;
    spec.batch_size = 16;
    spec.pretrained = false;
    s.new_learner(spec);
    s.persist();
}

QDialog* find_visible_dialog(const QString& name) {
    for (QWidget* w : QApplication::topLevelWidgets())
        if (auto* d = qobject_cast<QDialog*>(w); d && d->objectName() == name && d->isVisible()) return d;
    return nullptr;
}

void send_mouse(QWidget* target, QEvent::Type type, QPointF at, Qt::MouseButtons buttons) {
    QMouseEvent e(type, at, target->mapToGlobal(at), type == QEvent::MouseMove ? Qt::NoButton : Qt::LeftButton, buttons,
                  Qt::NoModifier);
    QApplication::sendEvent(target, &e);
}

}  // namespace

class DataMapTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void map_click_hover_and_box_selection() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 60, 10);
        create_small_learner(root / "project");
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, root / "project"));
        auto* train = w.train_page();
        TrainingWorker* worker = train->worker();
        QSignalSpy failed(worker, &TrainingWorker::failed);
        QSignalSpy predicted(worker, &TrainingWorker::predictions_ready);
        auto* inspect = w.inspect_page();
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);   // predicts the validation set
        QVERIFY(predicted.wait(120000));
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);

        auto* map = inspect->findChild<DataMapView*>("dataMap");
        QVERIFY(map);
        auto* tabs = inspect->findChild<QTabWidget*>("inspectRightTabs");
        QVERIFY(tabs);
        tabs->setCurrentWidget(map);
        QVERIFY(!map->has_map());
        QTest::mouseClick(map->compute_button(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(map->has_map(), 120000);
        QTRY_VERIFY_WITH_TIMEOUT(!train->busy(), 10000);
        QCOMPARE(failed.count(), 0);
        const auto& d = *inspect->dataset();
        QCOMPARE(map->map().points.size(), d.images.size());   // train, valid and test
        QVERIFY(!map->stale());
        QVERIFY(map->message_label()->text().contains("UMAP"));
        // Cached per learner state: a second request is answered from the project's cache.
        QVERIFY(fs::exists(whisker::explain::embeddings_cache_file(root / "project", map->map().origin)));

        // Hover: the thumbnail card beside the point.
        std::size_t valid_record = d.images.size(), train_record = d.images.size();
        for (const auto& p : map->map().points) {
            if (p.split == whisker::data::Split::Valid && valid_record == d.images.size()) valid_record = p.record;
            if (p.split == whisker::data::Split::Train && train_record == d.images.size()) train_record = p.record;
        }
        QVERIFY(valid_record < d.images.size() && train_record < d.images.size());
        const auto at = map->pixel_of(valid_record);
        QVERIFY(at.has_value());
        QCOMPARE(map->record_at(*at).value(), valid_record);
        QVERIFY(map->hover(*at));
        QVERIFY(map->hover_label()->isVisible());
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/inspect_data_map.png"));

        // Click a validation point: the Inspect page's large view opens that image.
        QTest::mouseClick(map->plot(), Qt::LeftButton, Qt::NoModifier, at->toPoint());
        QTRY_VERIFY_WITH_TIMEOUT(find_visible_dialog("inspectImageDialog") != nullptr, 5000);
        QDialog* large = find_visible_dialog("inspectImageDialog");
        const QString file = QString::fromStdString(fs::path(d.images[valid_record].path).filename().string());
        QCOMPARE(large->windowTitle(), file);
        QVERIFY(large->findChild<QLabel*>("imageInfo")->text().contains(file));
        large->close();
        // A training point (no validation prediction): the map's own large view, with marks.
        const auto train_at = map->pixel_of(train_record);
        QVERIFY(train_at.has_value());
        const auto clicked = map->record_at(*train_at).value();
        QTest::mouseClick(map->plot(), Qt::LeftButton, Qt::NoModifier, train_at->toPoint());
        QTRY_VERIFY_WITH_TIMEOUT(find_visible_dialog("mapImageDialog") != nullptr, 5000);
        QDialog* own = find_visible_dialog("mapImageDialog");
        QCOMPARE(own->windowTitle(), QString::fromStdString(fs::path(d.images[clicked].path).filename().string()));
        QVERIFY(own->findChild<QPushButton*>("relabelButton"));
        own->close();

        // Drag a box over the plot's middle: the gallery shows exactly the points inside it.
        QCustomPlot* plot = map->plot();
        const QRect area = plot->axisRect()->rect();
        const QPointF from(area.left() + area.width() * 0.2, area.top() + area.height() * 0.2);
        const QPointF to(area.left() + area.width() * 0.8, area.top() + area.height() * 0.8);
        // The selection is whole pixels, its corners included (QCPSelectionRect keeps a QRect):
        // a point on the edge is inside it.
        const auto inside = map->records_in(QRectF(QRect(from.toPoint(), to.toPoint()).normalized()));
        QVERIFY(!inside.empty());
        QSignalSpy selected(map, &DataMapView::images_selected);
        send_mouse(plot, QEvent::MouseButtonPress, from, Qt::LeftButton);
        for (int i = 1; i <= 5; ++i) send_mouse(plot, QEvent::MouseMove, from + (to - from) * (i / 5.0), Qt::LeftButton);
        send_mouse(plot, QEvent::MouseButtonRelease, to, Qt::NoButton);
        QCOMPARE(selected.count(), 1);
        QCOMPARE(static_cast<std::size_t>(selected.first().first().value<QVector<qulonglong>>().size()), inside.size());
        QCOMPARE(tabs->currentIndex(), 0);
        QCOMPARE(static_cast<std::size_t>(inspect->gallery_model()->rowCount()), inside.size());
        inspect->gallery_model()->wait_for_thumbnails();
        QTest::qWait(100);
        QVERIFY(w.grab().save(screenshot_dir() + "/inspect_map_selection.png"));
    }

    // The map job stops from the map's own Stop and from the Train page's, leaving no map cache;
    // the page says so and computes it again on request.
    void map_can_be_stopped_and_computed_again() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        prepare_sample_project(root, 40, 6);
        const fs::path project = root / "project";
        create_small_learner(project);
        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, project));
        auto* train = w.train_page();
        TrainingWorker* worker = train->worker();
        QSignalSpy finished(worker, &TrainingWorker::job_finished);
        QSignalSpy failed(worker, &TrainingWorker::failed);
        auto* map = w.inspect_page()->findChild<DataMapView*>("dataMap");
        QVERIFY(map);
        auto map_files = [&project] {
            int n = 0;
            std::error_code ec;
            for (const auto& e : fs::directory_iterator(project / "cache" / "explain", ec))
                n += e.path().filename().string().rfind("map-", 0) == 0;
            return n;
        };
        auto stopped_by = [&](const std::function<void()>& press_stop) {
            map->compute_button()->click();
            if (!map->computing()) return false;
            if (!map->stop_button()->isVisibleTo(map) || map->compute_button()->isEnabled()) return false;
            press_stop();
            QElapsedTimer t;
            t.start();
            while ((map->computing() || train->busy()) && t.elapsed() < 60000) QTest::qWait(20);
            return !map->computing() && !train->busy();
        };
        // The map's own Stop (pressed before the first batch is through).
        QVERIFY(stopped_by([&] { map->stop_button()->click(); }));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(finished.last().at(0).toString(), QString("map"));
        QVERIFY(finished.last().at(1).toBool());
        QVERIFY(!map->has_map());
        QVERIFY2(map->message_label()->text().startsWith("Stopped"), qPrintable(map->message_label()->text()));
        QVERIFY(map->compute_button()->isEnabled());
        QVERIFY(!map->stop_button()->isVisibleTo(map));
        QCOMPARE(map_files(), 0);
        w.navigation()->setCurrentRow(MainWindow::InspectPageIndex);   // predicts the validation set
        QTRY_VERIFY_WITH_TIMEOUT(w.inspect_page()->has_predictions() && !train->busy(), 60000);
        w.inspect_page()->findChild<QTabWidget*>("inspectRightTabs")->setCurrentWidget(map);
        QTest::qWait(50);
        QVERIFY(w.grab().save(screenshot_dir() + "/inspect_map_stopped.png"));
        // The Train page's Stop ends it too.
        QVERIFY(stopped_by([&] { train->stop_button()->click(); }));
        QVERIFY(finished.last().at(1).toBool());
        QVERIFY(map->message_label()->text().startsWith("Stopped"));
        QCOMPARE(map_files(), 0);
        // Computed again, to the end.
        map->compute_button()->click();
        QTRY_VERIFY_WITH_TIMEOUT(map->has_map() && !map->computing() && !train->busy(), 120000);
        QCOMPARE(failed.count(), 0);
        QVERIFY(map->message_label()->text().contains("UMAP"));
        QCOMPARE(map_files(), 1);
    }

    void duplicates_report_and_actions() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        auto d = prepare_sample_project(root, 40, 6);
        const fs::path project = root / "project";
        // Plant a copy of a training image in valid, with the same label.
        std::size_t original = 0;
        while (d.images[original].split != whisker::data::Split::Train) ++original;
        whisker::data::ImageRecord copy = d.images[original];
        copy.path = "planted-copy.jpg";
        copy.split = whisker::data::Split::Valid;
        fs::copy_file(d.resolve(project, d.images[original]), project / copy.path);
        d.images.push_back(copy);
        // And one picture under both labels: a copy of another training image, labelled otherwise.
        std::size_t other = original + 1;
        while (d.images[other].split != whisker::data::Split::Train) ++other;
        whisker::data::ImageRecord relabelled = d.images[other];
        relabelled.path = "planted-other-label.jpg";
        relabelled.labels = {1 - d.images[other].labels[0]};
        fs::copy_file(d.resolve(project, d.images[other]), project / relabelled.path);
        d.images.push_back(relabelled);
        d.save(project);

        MainWindow w;
        w.resize(1280, 720);
        w.show();
        QVERIFY(open_and_wait(w, project));
        auto* page = w.data_page();
        page->tabs()->setCurrentIndex(2);
        QCOMPARE(page->tabs()->tabText(2), QString("Duplicates"));
        QSignalSpy marked(page, &whisker::ui::DataPage::marks_changed);
        QVERIFY(page->find_duplicates());
        page->wait_for_duplicates();
        QTRY_COMPARE(page->duplicates().groups.size(), std::size_t{2});
        const auto inflating = std::find_if(page->duplicates().groups.begin(), page->duplicates().groups.end(),
                                            [](const auto& x) { return x.inflates_validation; });
        QVERIFY(inflating != page->duplicates().groups.end());
        const auto g = *inflating;
        QVERIFY(g.exact && !g.labels_differ);
        QCOMPARE(page->duplicates().count_label_conflicts(), std::size_t{1});
        QTRY_VERIFY(page->duplicates_summary()->text().contains("1 group(s) inflating the validation score"));
        QTreeWidget* tree = page->duplicates_tree();
        QCOMPARE(tree->topLevelItemCount(), 2);
        auto item_of = [tree](int id) -> QTreeWidgetItem* {
            for (int i = 0; i < tree->topLevelItemCount(); ++i)
                if (tree->topLevelItem(i)->data(0, Qt::UserRole).toInt() == id) return tree->topLevelItem(i);
            return nullptr;
        };
        QVERIFY(item_of(g.id));
        QCOMPARE(item_of(g.id)->childCount(), 2);
        QCOMPARE(item_of(g.id)->text(3), QString("inflates validation"));
        item_of(g.id)->setSelected(true);
        QTest::qWait(50);
        QVERIFY(w.grab().save(screenshot_dir() + "/data_duplicates.png"));

        // Keep in train: the valid copy is excluded (a mark in the manifest), the group resolved.
        QVERIFY(page->keep_group_in_split(g.id, whisker::data::Split::Train));
        QCOMPARE(marked.count(), 1);
        auto on_disk = whisker::data::Dataset::load(project);
        QVERIFY(on_disk.images[on_disk.images.size() - 2].excluded);
        QVERIFY(!on_disk.images[original].excluded);
        QVERIFY(page->duplicates().group(g.id)->resolved());
        QCOMPARE(item_of(g.id)->text(3), QString("resolved"));
        QVERIFY(item_of(g.id)->child(1)->text(3).contains("excluded by you"));
        QVERIFY(fs::exists(project / copy.path));   // files are never touched
        // Undo: as it was.
        QVERIFY(page->undo_group(g.id));
        on_disk = whisker::data::Dataset::load(project);
        QCOMPARE(on_disk.marked_count(), std::size_t{0});
        QVERIFY(page->duplicates().group(g.id)->inflates_validation);
    }
};

int run_data_map_tests(int argc, char** argv) {
    DataMapTest t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_data_map.moc"
