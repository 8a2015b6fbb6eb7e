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
