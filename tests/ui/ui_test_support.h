#pragma once
// Shared by the UI tests: where screenshots go (WHISKER_SCREENSHOT_DIR, set by CTest to
// build/screenshots; a temporary folder otherwise).
#include <QDir>
#include <QString>

inline QString screenshot_dir() {
    const QString dir = qEnvironmentVariable("WHISKER_SCREENSHOT_DIR", QDir::tempPath() + "/whisker-screenshots");
    QDir().mkpath(dir);
    return dir;
}

#include "main_window.h"
#include "train_page.h"

#include <QElapsedTimer>
#include <QPainter>
#include <QPixmap>
#include <QTest>

#include "whisker/data/prepare.h"
#include "whisker/sample/sample_competition.h"

#include <QCheckBox>
#include <QComboBox>
#include <QSpinBox>

#include <filesystem>

// The built-in sample competition (train_images, test_images) written to root/dl and
// prepared as the project root/<project>.
inline whisker::data::Dataset prepare_sample_project(const std::filesystem::path& root, int train_images, int test_images,
                                                     const std::string& project = "project") {
    whisker::sample::SampleOptions so;
    so.train_images = train_images;
    so.test_images = test_images;
    whisker::sample::write_sample_competition(root / "dl", so);
    whisker::data::PrepareOptions po;
    po.project = root / project;
    po.source = root / "dl";
    return whisker::data::prepare_dataset(po);
}

// The Train page's settings for a learner that trains in seconds: resnet18 at 32 px, batch 8,
// from scratch (no weights to download).
inline void choose_small_learner(whisker::ui::TrainPage* page) {
    page->arch_box()->setCurrentText("resnet18");
    page->size_box()->setValue(32);
    page->batch_box()->setValue(8);
    page->pretrained_box()->setChecked(false);
}

// Opens a project as File > Open does and waits until its session is loaded (the learner
// opens on the Train page's worker thread).
inline bool open_and_wait(whisker::ui::MainWindow& w, const std::filesystem::path& project, int timeout_ms = 60000) {
    if (!w.open_project(project)) return false;
    QElapsedTimer t;
    t.start();
    while (w.train_page()->busy() && t.elapsed() < timeout_ms) QTest::qWait(20);
    return !w.train_page()->busy();
}

// A dialog over the workbench, as a user sees it (the window dimmed behind it), saved as
// screenshot_dir()/name.
inline bool save_dialog_screenshot(whisker::ui::MainWindow& w, QWidget* dialog, const QString& name) {
    QTest::qWait(100);
    QPixmap shot = w.grab();
    const QPixmap d = dialog->grab();
    QPainter painter(&shot);
    painter.fillRect(shot.rect(), QColor(0, 0, 0, 60));
    painter.drawPixmap((shot.width() - d.width()) / 2, (shot.height() - d.height()) / 2, d);
    painter.end();
    return shot.save(screenshot_dir() + "/" + name);
}
