// whisker: the desktop workbench.
#include "whisker/common/allocator.h"
#include "main_window.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>
#include <QTimer>

int main(int argc, char** argv) {
    whisker::keep_tensor_memory_for_reuse();   // before anything allocates (common/allocator.h)
    QApplication app(argc, argv);
    QApplication::setApplicationName("Whisker");
    QApplication::setOrganizationName("Whisker");
    QApplication::setApplicationVersion(WHISKER_VERSION);
    QApplication::setDesktopFileName(WHISKER_APP_ID);  // Wayland finds the icon through the .desktop file
    QApplication::setWindowIcon(QIcon(":/icons/whisker.svg"));

    QCommandLineParser parser;
    parser.setApplicationDescription("Whisker: train image classifiers by transfer learning");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument("project", "Project folder to open");
    QCommandLineOption screenshot("screenshot", "Save a PNG of the window once it is shown, then quit.", "file");
    QCommandLineOption quit_after("quit-after", "Quit after this many milliseconds (smoke tests).", "ms");
    parser.addOption(screenshot);
    parser.addOption(quit_after);
    parser.process(app);

    whisker::ui::MainWindow window;
    window.show();
    if (!parser.positionalArguments().isEmpty()) window.open_project(parser.positionalArguments().first().toStdString());

    if (parser.isSet(screenshot)) {
        const QString file = parser.value(screenshot);
        QTimer::singleShot(500, &window, [&window, file] {
            const bool ok = window.grab().save(file, "PNG");
            QApplication::exit(ok ? 0 : 3);
        });
    } else if (parser.isSet(quit_after)) {
        QTimer::singleShot(parser.value(quit_after).toInt(), &window, &QWidget::close);
    }
    return app.exec();
}
